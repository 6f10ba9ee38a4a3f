//! `GET /metrics`: scraped and parsed after real requests, with the manual clock.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{ARM_1, COFFEE, Options, Reply, TestApp, X86_1, lab, spawn_app, start};

impl TestApp {
    async fn send_json(&self, path: &str, body: Value) -> Reply {
        self.send(self.client.post(self.url(path)).json(&body))
            .await
    }

    /// `GET /metrics` as Prometheus scrapes it (text 0.0.4), expecting 200.
    async fn scrape(&self) -> Scrape {
        let reply = self.get("/metrics").await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(
            reply.header("content-type"),
            "text/plain; version=0.0.4; charset=utf-8"
        );
        Scrape(reply.text)
    }
}

/// A scrape's text.
struct Scrape(String);

impl Scrape {
    /// The value of the sample named exactly `series` (name and labels as encoded), or
    /// panics naming what the scrape holds.
    fn value(&self, series: &str) -> f64 {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                (name == series).then(|| value.parse::<f64>().expect("a number"))
            })
            .unwrap_or_else(|| panic!("no sample {series} in:\n{}", self.0))
    }

    fn has(&self, series_prefix: &str) -> bool {
        self.0.lines().any(|l| l.starts_with(series_prefix))
    }
}

#[tokio::test]
async fn gauges_count_resources_by_state_locks_by_tag_and_the_queue() {
    let app = spawn_app().await;
    app.locked(ARM_1, 600).await;
    app.locked(X86_1, 600).await;
    app.send_json(
        &format!("/api/v1/resources/{COFFEE}/unavailable"),
        json!({"reason": "descaling"}),
    )
    .await
    .expect_json(200);
    app.send_json(
        "/api/v1/reservations",
        json!({"tags": ["x86"], "priority": 2}),
    )
    .await
    .expect_json(201);

    let s = app.scrape().await;

    assert_eq!(s.value(r#"rentabot_resources{state="locked"}"#), 2.0);
    assert_eq!(s.value(r#"rentabot_resources{state="unavailable"}"#), 1.0);
    assert_eq!(s.value(r#"rentabot_resources{state="free"}"#), 2.0);
    assert_eq!(s.value(r#"rentabot_resources{state="held"}"#), 0.0);
    assert_eq!(s.value(r#"rentabot_resources{state="draining"}"#), 0.0);
    assert_eq!(s.value(r#"rentabot_resources{state="retiring"}"#), 0.0);
    assert_eq!(s.value(r#"rentabot_active_locks{tag="ci"}"#), 2.0);
    assert_eq!(s.value(r#"rentabot_active_locks{tag="arm"}"#), 1.0);
    assert_eq!(s.value(r#"rentabot_active_locks{tag="coffee"}"#), 0.0);
    assert_eq!(
        s.value(r#"rentabot_reservation_queue_depth{priority="2"}"#),
        1.0
    );
    assert_eq!(
        s.value(r#"rentabot_reservation_queue_depth{priority="5"}"#),
        0.0
    );
    // 2 locked of the 4 in service (the coffee machine is out).
    assert_eq!(s.value("rentabot_resource_utilization_ratio"), 0.5);
    assert_eq!(s.value("rentabot_locks_acquired_total"), 2.0);
    assert!(s.has(r#"rentabot_build_info{version=""#));
    // build.rs names the commit for every target of the package, tests included.
    let commit = format!(r#"commit="{}""#, env!("RENTABOT_BUILD_COMMIT"));
    assert!(
        s.0.lines()
            .any(|l| l.starts_with("rentabot_build_info{") && l.contains(&commit)),
        "{commit}"
    );
}

#[tokio::test]
async fn a_resource_kept_for_a_waiting_reservation_counts_as_held() {
    let app = spawn_app().await;
    let arm = app.locked(ARM_1, 600).await;
    // Needs both arm boards: ARM_2 is free and kept for it while ARM_1 is locked.
    app.send_json(
        "/api/v1/reservations",
        json!({"tags": ["arm"], "quantity": 2}),
    )
    .await
    .expect_json(201);

    let s = app.scrape().await;
    assert_eq!(s.value(r#"rentabot_resources{state="held"}"#), 1.0);
    assert_eq!(
        s.value(r#"rentabot_reservation_queue_depth{priority="5"}"#),
        1.0
    );

    // Released: the reservation gets both boards after waiting 7 s.
    app.advance(Duration::from_secs(7));
    app.unlock(ARM_1, &arm.token).await.expect_json(200);
    let s = app.scrape().await;
    assert_eq!(s.value(r#"rentabot_resources{state="held"}"#), 0.0);
    assert_eq!(s.value(r#"rentabot_resources{state="locked"}"#), 2.0);
    assert_eq!(
        s.value(r#"rentabot_reservation_queue_depth{priority="5"}"#),
        0.0
    );
    assert_eq!(s.value("rentabot_queue_wait_seconds_count"), 1.0);
    assert_eq!(s.value("rentabot_queue_wait_seconds_sum"), 7.0);
}

#[tokio::test]
async fn lock_durations_are_observed_by_how_the_lock_ended() {
    let app = spawn_app().await;
    let arm = app.locked(ARM_1, 600).await;
    app.locked(X86_1, 30).await;
    app.locked(COFFEE, 600).await;

    // Unlocked after 10 s; expired at its deadline (30 s); broken after 45 s.
    app.advance(Duration::from_secs(10));
    app.unlock(ARM_1, &arm.token).await.expect_json(200);
    app.advance(Duration::from_secs(20));
    app.broker.sweep();
    app.advance(Duration::from_secs(15));
    app.send_json(
        &format!("/api/v1/resources/{COFFEE}/force-unlock"),
        json!({"reason": "hung"}),
    )
    .await
    .expect_json(200);

    let s = app.scrape().await;
    for (ended_by, seconds) in [("unlock", 10.0), ("expiry", 30.0), ("force", 45.0)] {
        let labels = format!(r#"{{ended_by="{ended_by}"}}"#);
        assert_eq!(
            s.value(&format!("rentabot_lock_duration_seconds_count{labels}")),
            1.0,
            "{ended_by}"
        );
        assert_eq!(
            s.value(&format!("rentabot_lock_duration_seconds_sum{labels}")),
            seconds,
            "{ended_by}"
        );
    }
    // 10 s and 30 s fall in the le=15 and le=30 buckets (cumulative).
    assert_eq!(
        s.value(r#"rentabot_lock_duration_seconds_bucket{ended_by="unlock",le="15"}"#),
        1.0
    );
    assert_eq!(
        s.value(r#"rentabot_lock_duration_seconds_bucket{ended_by="expiry",le="15"}"#),
        0.0
    );
    // The sweep ran exactly at the deadline: no lag.
    assert_eq!(s.value("rentabot_expiry_lag_seconds_count"), 1.0);
    assert_eq!(s.value("rentabot_expiry_lag_seconds_sum"), 0.0);
    assert_eq!(s.value("rentabot_locks_acquired_total"), 3.0);
}

#[tokio::test]
async fn requests_are_counted_by_method_route_template_and_status() {
    let app = spawn_app().await;
    app.resource(ARM_1).await;
    app.resource(X86_1).await;
    assert_eq!(app.get("/api/v1/resources/99").await.status, 404);
    assert_eq!(app.get("/no/such/path").await.status, 404);
    assert_eq!(app.get("/no/such/other/path").await.status, 404);

    let s = app.scrape().await;

    let by_id = r#"method="GET",route="/api/v1/resources/{id}""#;
    assert_eq!(
        s.value(&format!(
            r#"rentabot_http_requests_total{{{by_id},status="200"}}"#
        )),
        2.0
    );
    assert_eq!(
        s.value(&format!(
            r#"rentabot_http_requests_total{{{by_id},status="404"}}"#
        )),
        1.0
    );
    // Unknown paths share one label: a client cannot grow the series.
    assert_eq!(
        s.value(r#"rentabot_http_requests_total{method="GET",route="unmatched",status="404"}"#),
        2.0
    );
    assert!(!s.0.contains("/no/such"), "raw paths never become labels");
    assert_eq!(
        s.value(&format!(
            "rentabot_http_request_duration_seconds_count{{{by_id}}}"
        )),
        3.0
    );
}

#[tokio::test]
async fn openmetrics_is_served_when_accept_asks_for_it() {
    let app = spawn_app().await;
    let reply = app
        .send(
            app.client
                .get(app.url("/metrics"))
                .header("Accept", "application/openmetrics-text; version=1.0.0"),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(reply.text.ends_with("# EOF\n"), "{}", reply.text);
    assert!(reply.text.contains("rentabot_locks_acquired_total 0"));
}

const SCRAPER: &str = "scraper-key-0123456789";

async fn app_with_auth(metrics_require_key: bool) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.yaml");
    std::fs::write(
        &path,
        format!(
            "api_keys:\n  - {{name: \"Prometheus\", key: \"{SCRAPER}\", role: readonly}}\nmetrics_require_key: {metrics_require_key}\n"
        ),
    )
    .unwrap();
    let app = start(
        lab(),
        Options {
            auth: Some(path),
            ..Options::default()
        },
    )
    .await;
    (app, dir)
}

#[tokio::test]
async fn metrics_need_a_key_only_when_the_auth_config_says_so() {
    let (open, _dir) = app_with_auth(false).await;
    assert_eq!(open.get("/metrics").await.status, 200);

    let (closed, _dir) = app_with_auth(true).await;
    let refused = closed.get("/metrics").await;
    assert_eq!(refused.status, 401, "{}", refused.text);
    let keyed = closed
        .send(
            closed
                .client
                .get(closed.url("/metrics"))
                .header("X-API-Key", SCRAPER),
        )
        .await;
    assert_eq!(keyed.status, 200, "{}", keyed.text);
    assert!(keyed.text.contains("rentabot_build_info"));
    let wrong = closed
        .send(
            closed
                .client
                .get(closed.url("/metrics"))
                .header("X-API-Key", "not-a-key-0123456789"),
        )
        .await;
    assert_eq!(wrong.status, 401);

    let s = Scrape(
        closed
            .send(
                closed
                    .client
                    .get(closed.url("/metrics"))
                    .header("X-API-Key", SCRAPER),
            )
            .await
            .text,
    );
    assert_eq!(
        s.value(r#"rentabot_auth_failures_total{code="missing_credentials"}"#),
        1.0
    );
    assert_eq!(
        s.value(r#"rentabot_auth_failures_total{code="invalid_api_key"}"#),
        1.0
    );
    assert_eq!(s.value("rentabot_rate_limited_requests_total"), 0.0);
}

/// `promtool check metrics` on a real scrape after traffic of every kind. CI installs
/// promtool (.ci/run, Debian package `prometheus`); without it the test says so loudly
/// and passes, so a developer's `cargo test` works without it.
#[tokio::test]
async fn promtool_accepts_a_real_scrape() {
    let Ok(status) = std::process::Command::new("promtool")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
    else {
        eprintln!(
            "\n\n!!!! SKIPPED promtool_accepts_a_real_scrape: promtool is not installed \
             (apt-get install prometheus); .ci/run installs it !!!!\n\n"
        );
        return;
    };
    assert!(status.success(), "promtool --version fails");
    let app = spawn_app().await;
    let arm = app.locked(ARM_1, 600).await;
    app.locked(X86_1, 30).await;
    app.unlock(ARM_1, &arm.token).await.expect_json(200);
    app.advance(Duration::from_secs(31));
    app.broker.sweep();
    app.send_json(
        "/api/v1/reservations",
        json!({"tags": ["arm"], "quantity": 3}),
    )
    .await;
    app.get("/nowhere").await;
    let scrape = app.scrape().await;

    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool starts");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("piped");
        stdin.write_all(scrape.0.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics:\n{}{}\nscrape:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        scrape.0
    );
}

#[tokio::test]
async fn store_commits_and_the_process_are_exported() {
    let store = rentabot::store::MemoryStore::new();
    let app = crate::helpers::spawn_app_on(&store, lab()).await;
    let before = app
        .scrape()
        .await
        .value("rentabot_store_commit_duration_seconds_count");
    let arm = app.locked(ARM_1, 600).await;
    app.unlock(ARM_1, &arm.token).await.expect_json(200);

    let s = app.scrape().await;
    let commits = s.value("rentabot_store_commit_duration_seconds_count");
    assert!(commits >= before + 1.0, "{commits} commits after {before}");
    assert_eq!(s.value("rentabot_store_commit_batch_size_count"), commits);
    // Each change is one of the batch: at least the lock and the unlock.
    assert!(s.value("rentabot_store_commit_batch_size_sum") >= 2.0);
    assert!(s.value("rentabot_process_resident_memory_bytes") > 1e6);
    assert!(s.value("rentabot_process_open_fds") >= 3.0);
    assert!(s.value("rentabot_process_cpu_seconds_total") >= 0.0);
}

#[tokio::test]
async fn open_event_streams_count_as_connected_clients() {
    let app = spawn_app().await;
    let stream = app
        .client
        .get(app.url("/api/v1/events"))
        .send()
        .await
        .expect("the stream opens");
    assert_eq!(stream.status(), 200);
    app.until_waiting(1).await;

    let s = app.scrape().await;
    assert_eq!(
        s.value(r#"rentabot_connected_clients{transport="sse"}"#),
        1.0
    );
    assert_eq!(
        s.value(r#"rentabot_connected_clients{transport="websocket"}"#),
        0.0
    );
    assert_eq!(
        s.value(r#"rentabot_connected_clients{transport="long_poll"}"#),
        0.0
    );

    // (The count drops when the server next writes to a closed stream: the 15 s
    // heartbeat. Not waited for here.)
    drop(stream);
}

#[tokio::test]
async fn rate_limited_requests_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.yaml");
    std::fs::write(
        &path,
        format!(
            "api_keys:\n  - {{name: \"Prometheus\", key: \"{SCRAPER}\", role: readonly}}\nrate_limit: {{requests_per_second: 1, burst: 1}}\n"
        ),
    )
    .unwrap();
    let app = start(
        lab(),
        Options {
            auth: Some(path),
            ..Options::default()
        },
    )
    .await;
    let list = || {
        app.client
            .get(app.url("/api/v1/resources"))
            .header("X-API-Key", SCRAPER)
    };
    assert_eq!(app.send(list()).await.status, 200);
    assert_eq!(app.send(list()).await.status, 429);

    let s = app.scrape().await;
    assert_eq!(s.value("rentabot_rate_limited_requests_total"), 1.0);
    assert_eq!(
        s.value(
            r#"rentabot_http_requests_total{method="GET",route="/api/v1/resources",status="429"}"#
        ),
        1.0
    );
}

/// With metrics off (the load tool's `unmetered` server) there is no `/metrics`, and
/// the API works as with them.
#[tokio::test]
async fn metrics_off_serves_no_scrape_and_the_api_as_before() {
    let app = start(
        lab(),
        Options {
            unmetered: true,
            ..Options::default()
        },
    )
    .await;
    let locked = app.send_json("/api/v1/resources/1/lock", json!({})).await;
    assert_eq!(locked.status, 200, "{}", locked.text);
    let reply = app.get("/metrics").await;
    assert_eq!(reply.status, 404, "{}", reply.text);
}
