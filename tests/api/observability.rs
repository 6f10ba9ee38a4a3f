//! The Grafana dashboard and the Prometheus alert rules shipped in `helm/rentabot/files/`
//! (README § Grafana and alerts): the rules pass `promtool check rules` and their unit
//! tests, every query of the dashboard and the rules parses and names only metrics a
//! real scrape holds, the dashboard has the shape Grafana loads, every exported metric
//! is on the dashboard (the HA pair's family from a real standby's scrape), and no
//! alert fires on a real idle service or an idle HA pair.
//!
//! promtool comes from the Debian package `prometheus` (CI installs it); without it the
//! tests that need it say so loudly and pass, as `metrics::promtool_accepts_a_real_scrape`
//! does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{ARM_1, ARM_2, COFFEE, Options, TestApp, X86_1, lab, spawn_app, start};

/// `helm/rentabot/files`.
fn files() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("helm/rentabot/files")
}

fn alerts_path() -> PathBuf {
    files().join("prometheus/alerts.yaml")
}

fn dashboard() -> Value {
    let path = files().join("grafana/rentabot.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?} is not JSON: {e}"))
}

/// The alerting rules of alerts.yaml: (alert name, expr).
fn alert_rules() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(alerts_path()).unwrap();
    let rules: Value = serde_yaml_ng::from_str(&text).expect("alerts.yaml is YAML");
    let mut out = Vec::new();
    for group in rules["groups"].as_array().expect("groups: a list") {
        for rule in group["rules"].as_array().expect("rules: a list") {
            let name = rule["alert"].as_str().expect("every rule is an alert");
            let expr = rule["expr"].as_str().expect("every rule has an expr");
            out.push((name.to_owned(), expr.to_owned()));
        }
    }
    out
}

/// Whether promtool can run; if not, says so loudly (the test then passes).
fn has_promtool(test: &str) -> bool {
    let ok = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "\n\n!!!! SKIPPED {test}: promtool is not installed \
             (apt-get install prometheus); .ci/run installs it !!!!\n\n"
        );
    }
    ok
}

/// Runs promtool with `args` in `dir`.
fn promtool(dir: &Path, args: &[&str]) -> Output {
    Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool runs")
}

fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_accepts_the_alert_rules() {
    if !has_promtool("promtool_accepts_the_alert_rules") {
        return;
    }
    let out = promtool(
        &files().join("prometheus"),
        &["check", "rules", "alerts.yaml"],
    );
    assert_success("promtool check rules alerts.yaml", &out);
}

#[test]
fn the_unit_tests_of_every_alert_pass() {
    if !has_promtool("the_unit_tests_of_every_alert_pass") {
        return;
    }
    let out = promtool(
        &files().join("prometheus"),
        &["test", "rules", "alerts.test.yaml"],
    );
    assert_success("promtool test rules alerts.test.yaml", &out);
}

/// Each alert has a case where it fires (expected alerts listed) and a scenario where it
/// must not (only empty lists for it: the evaluations before `for:` has elapsed in a
/// firing scenario do not count), so a rule that always or never fires cannot pass its
/// tests.
#[test]
fn every_alert_has_a_firing_case_and_a_quiet_scenario() {
    let text = std::fs::read_to_string(files().join("prometheus/alerts.test.yaml")).unwrap();
    let tests: Value = serde_yaml_ng::from_str(&text).expect("alerts.test.yaml is YAML");
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for test in tests["tests"].as_array().expect("tests: a list") {
        let cases = test["alert_rule_test"].as_array().into_iter().flatten();
        let fires_here: BTreeSet<&str> = cases
            .clone()
            .filter(|c| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()))
            .filter_map(|c| c["alertname"].as_str())
            .collect();
        for case in cases {
            let name = case["alertname"].as_str().expect("alertname").to_owned();
            let expected = case["exp_alerts"].as_array().map_or(0, Vec::len);
            if expected == 0 {
                if !fires_here.contains(name.as_str()) {
                    quiet.insert(name);
                }
            } else {
                // Every expected alert states its annotations, not only that it fires.
                for alert in case["exp_alerts"].as_array().unwrap() {
                    assert!(
                        alert["exp_annotations"]["summary"].is_string()
                            && alert["exp_annotations"]["description"].is_string(),
                        "{name}: expected alerts give summary and description: {alert}"
                    );
                }
                fires.insert(name);
            }
        }
    }
    for (name, _) in alert_rules() {
        assert!(fires.contains(&name), "no test case where {name} fires");
        assert!(
            quiet.contains(&name),
            "no scenario where {name} stays quiet"
        );
    }
}

/// Every alert says how bad it is and what it is about.
#[test]
fn every_alert_has_a_severity_a_summary_a_description_and_a_for() {
    let text = std::fs::read_to_string(alerts_path()).unwrap();
    let rules: Value = serde_yaml_ng::from_str(&text).unwrap();
    for rule in rules["groups"][0]["rules"].as_array().unwrap() {
        let name = &rule["alert"];
        let severity = rule["labels"]["severity"].as_str();
        assert!(
            matches!(severity, Some("critical" | "warning" | "info")),
            "{name}: severity {severity:?}"
        );
        for key in ["summary", "description"] {
            assert!(
                rule["annotations"][key]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{name}: no {key}"
            );
        }
        assert!(rule["for"].is_string(), "{name}: no `for:`");
    }
}

/// Every panel of the dashboard, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels: a list") {
        out.push(panel);
        for nested in panel["panels"].as_array().into_iter().flatten() {
            out.push(nested);
        }
    }
    out
}

/// The dashboard's queries, with Grafana's interval variables replaced by durations
/// PromQL parses (other variables only appear inside label values, which parse).
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("every target has an expr");
            out.push((
                format!("panel {:?} {}", panel["title"], target["refId"]),
                grafana_to_promql(expr),
            ));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if variable["type"] == "query" {
            // The classic string form, which every Grafana since 7 reads (the editor's
            // object form changed between versions).
            let query = variable["query"]
                .as_str()
                .expect("a query variable's query is a string");
            assert_eq!(variable["definition"], query);
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.rsplit_once(','))
                .map(|(selector, _label)| selector)
                .unwrap_or_else(|| {
                    panic!("variable query is label_values(selector, label): {query}")
                });
            out.push((
                format!("variable {}", variable["name"]),
                grafana_to_promql(inner),
            ));
        }
    }
    out
}

fn grafana_to_promql(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
}

#[test]
fn the_dashboard_has_the_shape_grafana_loads() {
    let d = dashboard();
    assert_eq!(
        d["uid"], "rentabot-overview",
        "a fixed uid keeps links stable"
    );
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    assert!(
        d["id"].is_null(),
        "no instance-specific id: Grafana assigns one"
    );

    let variables = d["templating"]["list"].as_array().expect("templating.list");
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} variable"))
    };
    let datasource = variable("datasource");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    for name in ["job", "instance"] {
        assert_eq!(variable(name)["type"], "query");
        assert_eq!(variable(name)["datasource"]["uid"], "${datasource}");
    }

    let mut ids = BTreeSet::new();
    let mut cells: BTreeMap<(u64, u64), String> = BTreeMap::new();
    let all = panels(&d);
    assert!(all.len() > 20, "{} panels", all.len());
    for panel in all {
        let title = panel["title"].as_str().expect("every panel has a title");
        let id = panel["id"].as_u64().expect("every panel has an id");
        assert!(ids.insert(id), "panel id {id} ({title}) is used twice");
        let grid = &panel["gridPos"];
        let [h, w, x, y] = ["h", "w", "x", "y"].map(|k| {
            grid[k]
                .as_u64()
                .unwrap_or_else(|| panic!("{title}: gridPos.{k}"))
        });
        assert!(h > 0 && w > 0 && x + w <= 24, "{title}: gridPos {grid}");
        // No two panels cover the same cell.
        for row in y..y + h {
            for col in x..x + w {
                if let Some(other) = cells.insert((row, col), title.to_owned()) {
                    panic!("{title} overlaps {other} at row {row}, column {col}");
                }
            }
        }
        if panel["type"] == "row" {
            continue;
        }
        assert!(
            panel["description"].as_str().is_some_and(|s| !s.is_empty()),
            "{title}: no description"
        );
        assert!(
            panel["fieldConfig"]["defaults"]["unit"].is_string(),
            "{title}: no unit"
        );
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        let mut refs = BTreeSet::new();
        for target in targets {
            assert!(
                target["expr"].as_str().is_some_and(|e| !e.is_empty()),
                "{title}: a target without expr"
            );
            assert!(
                refs.insert(target["refId"].as_str().expect("refId")),
                "{title}: refId twice"
            );
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            let expr = target["expr"].as_str().unwrap();
            // Every query follows the job and instance variables.
            assert!(
                expr.contains(r#"job=~"$job""#) && expr.contains(r#"instance=~"$instance""#),
                "{title}: {expr} ignores $job or $instance"
            );
        }
    }
}

/// Writes each query as a recording rule and has promtool parse the file.
#[test]
fn every_dashboard_and_alert_query_parses() {
    if !has_promtool("every_dashboard_and_alert_query_parses") {
        return;
    }
    let mut queries = dashboard_queries(&dashboard());
    queries.extend(
        alert_rules()
            .into_iter()
            .map(|(name, expr)| (format!("alert {name}"), expr)),
    );
    let rules: Vec<Value> = queries
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| json!({"record": format!("query:{i}"), "expr": expr}))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    // JSON is YAML: promtool reads it as a rule file.
    std::fs::write(
        dir.path().join("queries.yaml"),
        json!({"groups": [{"name": "queries", "rules": rules}]}).to_string(),
    )
    .unwrap();
    let out = promtool(dir.path(), &["check", "rules", "queries.yaml"]);
    let listing: String = queries
        .iter()
        .enumerate()
        .map(|(i, (at, expr))| format!("query:{i} = {at}: {expr}\n"))
        .collect();
    assert_success(&format!("parsing the queries\n{listing}"), &out);
}

/// The series names a PromQL expression selects: identifiers that are not functions,
/// aggregations, keywords or label names (inside `{}`, `by ()`, `on ()`, …), skipping
/// strings, ranges and numbers.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const AGGREGATIONS: [&str; 12] = [
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    const LABEL_LISTS: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const KEYWORDS: [&str; 8] = [
        "and", "or", "unless", "bool", "offset", "inf", "nan", "atan2",
    ];
    let s: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // Skips from an opening bracket to its closing one, strings included.
    let skip_group = |mut i: usize, open: char, close: char| {
        let mut depth = 0;
        while i < s.len() {
            match s[i] {
                c if c == open => depth += 1,
                c if c == close => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                '"' | '\'' | '`' => i = skip_string(&s, i) - 1,
                _ => {}
            }
            i += 1;
        }
        i
    };
    let next_non_space = |mut i: usize| {
        while i < s.len() && s[i].is_whitespace() {
            i += 1;
        }
        i
    };
    while i < s.len() {
        let c = s[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&s, i);
        } else if c == '{' {
            i = skip_group(i, '{', '}');
        } else if c == '[' {
            i = skip_group(i, '[', ']');
        } else if c.is_ascii_digit() || (c == '.' && s.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // A number or a duration (5m, 1e3, 0.5).
            while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == '_' || s[i] == ':') {
                i += 1;
            }
            let word: String = s[start..i].iter().collect();
            let next = next_non_space(i);
            let called = s.get(next) == Some(&'(');
            if LABEL_LISTS.contains(&word.as_str()) {
                if called {
                    i = skip_group(next, '(', ')');
                }
            } else if AGGREGATIONS.contains(&word.as_str())
                || KEYWORDS.contains(&word.as_str())
                || called
            {
                // A function, an aggregation or an operator.
            } else {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The index just past the string literal opening at `i`.
fn skip_string(s: &[char], i: usize) -> usize {
    let quote = s[i];
    let mut j = i + 1;
    while j < s.len() && s[j] != quote {
        if s[j] == '\\' && quote != '`' {
            j += 1;
        }
        j += 1;
    }
    j + 1
}

#[test]
fn metric_names_are_found_in_promql_and_labels_are_not() {
    let expr = r#"histogram_quantile(0.99, sum by (job, le) (rate(a_bucket{job=~"$job", le!="x"}[5m])))
        / on (instance) group_left(version) b_info > bool 0.5 and count without (x) (c:recorded offset 1h)
        or absent(up{job="a{b}"}) unless sum(rate(d_total[$__rate_interval] @ 100))"#;
    let want: BTreeSet<String> = ["a_bucket", "b_info", "c:recorded", "up", "d_total"]
        .map(String::from)
        .into();
    assert_eq!(metric_names(expr), want);
}

impl TestApp {
    /// `GET /metrics`, expecting 200: the text.
    async fn exposition(&self) -> String {
        let reply = self.get("/metrics").await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.text
    }
}

/// What a scrape holds: the series names (as the text format writes them: `_bucket`,
/// `_sum`, `_count`, `_total`, `_info`) and the families (`# TYPE` lines).
struct Exported {
    series: BTreeSet<String>,
    /// Family name and type.
    families: BTreeMap<String, String>,
}

impl Exported {
    fn add(&mut self, scrape: &str) {
        for line in scrape.lines() {
            if let Some(family) = line.strip_prefix("# TYPE ") {
                let (name, kind) = family.split_once(' ').expect("# TYPE name type");
                self.families.insert(name.to_owned(), kind.to_owned());
            } else if !line.starts_with('#') && !line.is_empty() {
                let end = line.find(['{', ' ']).expect("a sample line");
                self.series.insert(line[..end].to_owned());
            }
        }
    }
}

/// Scrapes taken after traffic that makes every family appear: locks taken, unlocked,
/// expired and forced; a reservation that waited and one still waiting; requests; and,
/// on a second app with API keys and a rate limit, auth refusals and a 429.
async fn everything_exported() -> Exported {
    let mut exported = Exported {
        series: BTreeSet::new(),
        families: BTreeMap::new(),
    };
    let store = rentabot::store::MemoryStore::new();
    let app = crate::helpers::spawn_app_on(&store, lab()).await;
    let arm = app.locked(ARM_1, 600).await;
    app.locked(X86_1, 30).await;
    app.locked(COFFEE, 600).await;
    app.locked(ARM_2, 600).await;
    let reply = app
        .send(
            app.client
                .post(app.url("/api/v1/reservations"))
                .json(&json!({"tags": ["arm"], "priority": 2})),
        )
        .await;
    reply.expect_json(201);
    app.advance(Duration::from_secs(31));
    app.broker.sweep();
    app.unlock(ARM_1, &arm.token).await.expect_json(200);
    app.send(
        app.client
            .post(app.url(&format!("/api/v1/resources/{COFFEE}/force-unlock")))
            .json(&json!({"reason": "hung"})),
    )
    .await
    .expect_json(200);
    app.send(
        app.client
            .post(app.url("/api/v1/reservations"))
            .json(&json!({"tags": ["arm"], "quantity": 2})),
    )
    .await
    .expect_json(201);
    exported.add(&app.exposition().await);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.yaml");
    std::fs::write(
        &path,
        "api_keys:\n  - {name: \"Prometheus\", key: \"scraper-key-0123456789\", role: readonly}\n\
         rate_limit: {requests_per_second: 1, burst: 1}\n",
    )
    .unwrap();
    let guarded = start(
        lab(),
        Options {
            auth: Some(path),
            ..Options::default()
        },
    )
    .await;
    let list = || {
        guarded
            .client
            .get(guarded.url("/api/v1/resources"))
            .header("X-API-Key", "scraper-key-0123456789")
    };
    assert_eq!(guarded.send(list()).await.status, 200);
    assert_eq!(guarded.send(list()).await.status, 429);
    let refused = guarded
        .send(
            guarded
                .client
                .get(guarded.url("/api/v1/resources"))
                .header("X-API-Key", "not-a-key-0123456789"),
        )
        .await;
    assert_eq!(refused.status, 401);
    exported.add(&guarded.exposition().await);

    // The HA pair's family (`rentabot_ha_*`), which only a postgres:// store exports: a
    // standby's whole scrape, from its real server, which needs no database.
    exported.add(&standby_scrape(rentabot::runtime::ha::HaStatus::new()).await);
    exported
}

/// `GET /metrics` on a standby's server (`rentabot::standby`) for `status`: the build
/// and the HA pair's family (`metrics::render_standby`). The family is
/// `metrics::render_ha`, the very function an active service's scrape ends with
/// (`metrics::Exporter::ha`), so it is the same on both members of a pair.
async fn standby_scrape(status: std::sync::Arc<rentabot::runtime::ha::HaStatus>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let standby = rentabot::standby::start(listener, status).expect("the standby serves");
    let reply = reqwest::get(format!("http://{address}/metrics"))
        .await
        .expect("the standby answers");
    assert_eq!(reply.status(), 200);
    let text = reply.text().await.unwrap();
    standby.stop().await;
    assert!(
        text.contains("# TYPE rentabot_ha_is_active gauge"),
        "{text}"
    );
    text
}

/// Series Prometheus makes itself, not the service.
const MADE_BY_PROMETHEUS: [&str; 1] = ["up"];

#[tokio::test]
async fn every_metric_the_dashboard_and_the_alerts_name_is_exported() {
    let exported = everything_exported().await;
    let d = dashboard();
    let mut queries = dashboard_queries(&d);
    queries.extend(
        alert_rules()
            .into_iter()
            .map(|(name, expr)| (format!("alert {name}"), expr)),
    );
    let mut unknown = Vec::new();
    let mut used = BTreeSet::new();
    for (at, expr) in &queries {
        let names = metric_names(expr);
        assert!(
            !names.is_empty() || expr.starts_with("vector("),
            "{at}: no metric found in {expr}"
        );
        for name in names {
            if !exported.series.contains(&name) && !MADE_BY_PROMETHEUS.contains(&name.as_str()) {
                unknown.push(format!("{at}: {name}"));
            }
            used.insert(name);
        }
    }
    assert!(
        unknown.is_empty(),
        "queries name series the service does not export:\n{}\n\nexported: {:?}",
        unknown.join("\n"),
        exported.series
    );

    // And the other way round: every family the service exports is on the dashboard.
    let dashboard_names: BTreeSet<String> = dashboard_queries(&d)
        .iter()
        .flat_map(|(_, expr)| metric_names(expr))
        .collect();
    let missing: Vec<&String> = exported
        .families
        .iter()
        .filter(|(family, kind)| {
            let forms = if kind.as_str() == "histogram" {
                vec![
                    format!("{family}_bucket"),
                    format!("{family}_sum"),
                    format!("{family}_count"),
                ]
            } else {
                vec![(*family).clone()]
            };
            !forms.iter().any(|f| dashboard_names.contains(f))
        })
        .map(|(family, _)| family)
        .collect();
    assert!(
        missing.is_empty(),
        "exported but on no dashboard panel: {missing:?}"
    );
    assert!(exported.families.len() >= 20, "{:?}", exported.families);
}

/// A real idle service's scrape, held for two hours as promtool's input series (plus
/// `up`), fires no alert.
#[tokio::test]
async fn no_alert_fires_on_a_real_idle_service() {
    if !has_promtool("no_alert_fires_on_a_real_idle_service") {
        return;
    }
    let scrape = idle_scrape().await;
    let series = input_series("rb-0:8000", &scrape);
    assert!(series.len() > 50, "{scrape}");
    assert_no_alert_fires(series, &format!("alerts on an idle service:\n{scrape}"));
}

/// An idle HA pair, held for two hours: rb-0 active since its first takeover (an idle
/// service's scrape, ending with the HA family as `metrics::Exporter` appends it), and
/// rb-1 a standby (its real server's scrape), fires no alert.
#[tokio::test]
async fn no_alert_fires_on_a_real_idle_pair() {
    if !has_promtool("no_alert_fires_on_a_real_idle_pair") {
        return;
    }
    let leader = rentabot::runtime::ha::HaStatus::new();
    let _lease = leader.take_over(1);
    // As the active's scrape is made: its registry, then the HA family.
    let active = idle_scrape().await + &rentabot::metrics::render_ha(&leader, false);
    assert!(active.contains("rentabot_ha_is_active 1"), "{active}");
    let standby = standby_scrape(rentabot::runtime::ha::HaStatus::new()).await;
    assert!(standby.contains("rentabot_ha_is_active 0"), "{standby}");

    let mut series = input_series("rb-0:8000", &active);
    series.extend(input_series("rb-1:8000", &standby));
    assert_no_alert_fires(
        series,
        &format!("alerts on an idle pair:\n{active}\n{standby}"),
    );
}

/// The scrape of a real idle service, after what an idle service sees: a readiness
/// probe and a scrape.
async fn idle_scrape() -> String {
    let store = rentabot::store::MemoryStore::new();
    let app = crate::helpers::spawn_app_on(&store, lab()).await;
    assert_eq!(app.get("/readiness").await.status, 200);
    app.exposition().await;
    app.exposition().await
}

/// `scrape`'s samples as promtool input series of the target `instance` of job
/// `rentabot`, each held for two hours, and its `up`.
fn input_series(instance: &str, scrape: &str) -> Vec<Value> {
    let target = format!(r#"job="rentabot",instance="{instance}""#);
    let mut series = vec![json!({"series": format!("up{{{target}}}"), "values": "1x120"})];
    for line in scrape.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line.rsplit_once(' ').expect("name value");
        let labelled = match name.split_once('{') {
            Some((metric, labels)) => format!("{metric}{{{target},{labels}"),
            None => format!("{name}{{{target}}}"),
        };
        let value: f64 = value.parse().expect("a number");
        series.push(json!({"series": labelled, "values": format!("{value}x120")}));
    }
    series
}

/// Runs every alert over `series` for two hours, expecting none to fire.
fn assert_no_alert_fires(series: Vec<Value>, what: &str) {
    let cases: Vec<Value> = alert_rules()
        .into_iter()
        .flat_map(|(name, _)| {
            ["10m", "60m", "120m"]
                .map(|t| json!({"eval_time": t, "alertname": name, "exp_alerts": []}))
        })
        .collect();
    let tests = json!({
        "rule_files": [alerts_path()],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": cases}],
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("idle.test.yaml"), tests.to_string()).unwrap();
    let out = promtool(dir.path(), &["test", "rules", "idle.test.yaml"]);
    assert_success(what, &out);
}

/// The new gauges, exactly: locks by how soon they end, the oldest wait, readiness and
/// the store's failure flag.
#[tokio::test]
async fn gauges_count_locks_ending_soon_and_the_oldest_wait() {
    let app = spawn_app().await;
    app.locked(ARM_1, 30).await;
    app.locked(X86_1, 600).await;
    app.locked(ARM_2, 3000).await;
    app.locked(COFFEE, 7200).await;
    // Waits for an arm board from T0.
    app.send(
        app.client
            .post(app.url("/api/v1/reservations"))
            .json(&json!({"tags": ["arm"]})),
    )
    .await
    .expect_json(201);
    app.advance(Duration::from_secs(10));

    let s = app.exposition().await;
    let value = |series: &str| sample(&s, series);
    // Left: 20 s, 590 s, 2990 s, 7190 s.
    assert_eq!(
        value(r#"rentabot_locks_expiring{within_seconds="60"}"#),
        1.0
    );
    assert_eq!(
        value(r#"rentabot_locks_expiring{within_seconds="300"}"#),
        1.0
    );
    assert_eq!(
        value(r#"rentabot_locks_expiring{within_seconds="900"}"#),
        2.0
    );
    assert_eq!(
        value(r#"rentabot_locks_expiring{within_seconds="3600"}"#),
        3.0
    );
    assert_eq!(value("rentabot_reservation_oldest_wait_seconds"), 10.0);
    assert_eq!(value("rentabot_ready"), 1.0);
    assert_eq!(value("rentabot_store_failing"), 0.0);

    // The arm lock expires at 30 s and the reservation gets it: nothing waits.
    app.advance(Duration::from_secs(20));
    app.broker.sweep();
    let s = app.exposition().await;
    assert_eq!(sample(&s, "rentabot_reservation_oldest_wait_seconds"), 0.0);
    assert_eq!(
        sample(&s, r#"rentabot_locks_expiring{within_seconds="60"}"#),
        0.0
    );
    assert_eq!(
        sample(&s, r#"rentabot_locks_expiring{within_seconds="3600"}"#),
        3.0
    );
}

/// The value of the sample `series` (name and labels as encoded) in `scrape`.
fn sample(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no {series} in\n{scrape}"))
}

#[tokio::test]
async fn a_failing_store_shows_in_the_store_and_readiness_gauges() {
    let store = rentabot::store::MemoryStore::new();
    let app = crate::helpers::spawn_app_on(&store, lab()).await;
    store.fail(Some("disk full"));
    // Answered once its commit has failed.
    assert_eq!(app.lock(ARM_1).await.status, 503);

    let s = app.exposition().await;
    assert_eq!(sample(&s, "rentabot_store_failing"), 1.0);
    assert_eq!(sample(&s, "rentabot_ready"), 0.0);

    // The writer retries with backoff: both clear once a commit succeeds (a safety net
    // of 30 s, no sleep).
    store.fail(None);
    let recovered = async {
        loop {
            let s = app.exposition().await;
            if sample(&s, "rentabot_store_failing") == 0.0 {
                return s;
            }
            tokio::task::yield_now().await;
        }
    };
    let s = tokio::time::timeout(Duration::from_secs(30), recovered)
        .await
        .expect("the store recovers");
    assert_eq!(sample(&s, "rentabot_ready"), 1.0);
}

#[test]
fn the_chart_is_versioned_as_the_crate() {
    let chart: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(files().join("../Chart.yaml")).unwrap())
            .unwrap();
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["name"], "rentabot");
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
}

/// The chart's manifests for `values` (crate::chart::render: after `helm lint
/// --strict`); `None` (said loudly) without the Helm library.
fn render_chart(test: &str, values: &Value) -> Option<BTreeMap<String, Value>> {
    crate::chart::render(test, values).map(|r| r.manifests)
}

#[test]
fn the_chart_ships_the_dashboard_and_the_rules_as_they_are() {
    let Some(manifests) = render_chart(
        "the_chart_ships_the_dashboard_and_the_rules_as_they_are",
        &json!({"metrics": {"prometheusRule": {"enabled": true, "labels": {"release": "kps"}}}}),
    ) else {
        return;
    };
    let dashboard_map = &manifests["rentabot/templates/grafana-dashboard.yaml"];
    assert_eq!(dashboard_map["kind"], "ConfigMap");
    assert_eq!(dashboard_map["metadata"]["namespace"], "lab");
    assert_eq!(
        dashboard_map["metadata"]["labels"]["grafana_dashboard"],
        "1"
    );
    let shipped: Value =
        serde_json::from_str(dashboard_map["data"]["rentabot.json"].as_str().unwrap()).unwrap();
    assert_eq!(
        shipped,
        dashboard(),
        "the ConfigMap holds the dashboard file"
    );

    let rule = &manifests["rentabot/templates/prometheusrule.yaml"];
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["kind"], "PrometheusRule");
    assert_eq!(rule["metadata"]["labels"]["release"], "kps");
    let file: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(alerts_path()).unwrap()).unwrap();
    assert_eq!(
        rule["spec"]["groups"], file["groups"],
        "the PrometheusRule holds the rules file"
    );
}

#[test]
fn the_chart_leaves_out_add_and_label_alerts_as_values_say() {
    let values = json!({"metrics": {
        "grafanaDashboard": {"enabled": false},
        "prometheusRule": {
            "enabled": true,
            "namespace": "monitoring",
            "additionalAlertLabels": {"team": "lab", "severity": "page"},
            "disabledAlerts": ["RentabotExpiryLagHigh"],
            "additionalRules": [{"alert": "LabEmpty", "expr": "sum(rentabot_resources) == 0"}],
        },
    }});
    let Some(manifests) = render_chart(
        "the_chart_leaves_out_add_and_label_alerts_as_values_say",
        &values,
    ) else {
        return;
    };
    assert!(!manifests.contains_key("rentabot/templates/grafana-dashboard.yaml"));
    let rule = &manifests["rentabot/templates/prometheusrule.yaml"];
    assert_eq!(rule["metadata"]["namespace"], "monitoring");
    let groups = rule["spec"]["groups"].as_array().unwrap();
    let ours = groups[0]["rules"].as_array().unwrap();
    let names: Vec<&str> = ours.iter().filter_map(|r| r["alert"].as_str()).collect();
    assert_eq!(names.len(), alert_rules().len() - 1);
    assert!(!names.contains(&"RentabotExpiryLagHigh"), "{names:?}");
    for rule in ours {
        assert_eq!(rule["labels"]["team"], "lab", "{rule}");
        // The rule's own labels win.
        assert_ne!(rule["labels"]["severity"], "page", "{rule}");
    }
    assert_eq!(groups[1]["rules"][0]["alert"], "LabEmpty");

    // Of the monitoring, only the dashboard is rendered by default.
    let Some(defaults) = render_chart(
        "the_chart_leaves_out_add_and_label_alerts_as_values_say",
        &json!({}),
    ) else {
        return;
    };
    assert!(defaults.contains_key("rentabot/templates/grafana-dashboard.yaml"));
    assert!(!defaults.contains_key("rentabot/templates/prometheusrule.yaml"));
    assert!(!defaults.contains_key("rentabot/templates/servicemonitor.yaml"));
}

/// README § Metrics names every family a scrape holds, and § Grafana and alerts every
/// alert of the rules.
#[tokio::test]
async fn the_readme_documents_every_metric_and_every_alert() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let metrics = &readme[readme.find("\n## Metrics").expect("README § Metrics")..];
    let metrics = &metrics[..metrics[1..].find("\n## ").map_or(metrics.len(), |i| i + 1)];
    for family in everything_exported().await.families.keys() {
        assert!(
            metrics.contains(&format!("| `{family}` |")),
            "README § Metrics has no row for {family}"
        );
    }
    let alerts = &metrics[metrics
        .find("### Grafana and alerts")
        .expect("README § Grafana and alerts")..];
    for (name, _) in alert_rules() {
        assert!(
            alerts.contains(&format!("| `{name}` |")),
            "README § Grafana and alerts has no row for {name}"
        );
    }
}
