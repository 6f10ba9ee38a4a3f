//! The live dashboard at `/` (README § The dashboard): each resource's state with its
//! details, countdowns and the expiry warning, the queue and the fulfilled reservations,
//! the overview, filters and pages (bounded at 100 000 resources), strict 400s, the
//! static assets under the Content-Security-Policy, the fragment the script swaps in,
//! and auth. The script's live behaviour is tested in a real browser (tests/browser/).

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::helpers::{
    ARM_1, ARM_2, COFFEE, Options, T0, TestApp, X86_1, lab, spawn_app, spawn_app_with,
    spawn_app_with_descriptor, start,
};
use rentabot::domain::{ResourceSpec, Timestamp};

/// The `<tr>` of resource `name` in the resources table.
fn row<'a>(html: &'a str, name: &str) -> &'a str {
    let table = table(html, "resources");
    let key = format!("data-name=\"{name}\"");
    let at = table
        .find(&key)
        .unwrap_or_else(|| panic!("no row for {name} in {table}"));
    let start = table[..at]
        .rfind("<tr")
        .expect("a row starts before its name");
    let end = at + table[at..].find("</tr>").expect("the row ends") + "</tr>".len();
    &table[start..end]
}

/// The `<table id="{id}">` element.
fn table<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<table id=\"{id}\""))
        .unwrap_or_else(|| panic!("no table {id} in {html}"));
    let end = start + html[start..].find("</table>").expect("the table ends");
    &html[start..end]
}

/// The `<section id="{id}">` element.
fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<section id=\"{id}\""))
        .unwrap_or_else(|| panic!("no section {id} in {html}"));
    let end = start + html[start..].find("</section>").expect("the section ends");
    &html[start..end]
}

/// The names of the resources table's rows, in order.
fn names(html: &str) -> Vec<String> {
    table(html, "resources")
        .split("data-name=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].to_owned())
        .collect()
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

async fn page(app: &TestApp, query: &str) -> String {
    let reply = app.get(&format!("/{query}")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.header("content-type"), "text/html; charset=utf-8");
    reply.text
}

fn iso(t: Timestamp) -> String {
    t.to_rfc3339()
}

fn at(secs: u64) -> Timestamp {
    T0.checked_add(Duration::from_secs(secs)).unwrap()
}

const STATES_LAB: &str = r#"
free-board:
    tags: "lab,solo"
busy-board:
    tags: "lab,pair"
spare-board:
    tags: "lab,pair"
drain-board:
    tags: "lab"
down-board:
    tags: "lab"
old-board:
    tags: "lab"
"#;

#[tokio::test]
async fn every_state_renders_with_its_data_state_and_details() {
    // Arrange: one resource in each of the six states.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lab.yaml");
    std::fs::write(&path, STATES_LAB).unwrap();
    let app = spawn_app_with_descriptor(&path).await;
    app.post_json(
        "/api/v1/resources/2/lock",
        json!({"ttl": 600, "holder": "ci/job/<42>", "note": "soak & test"}),
    )
    .await
    .expect_json(200);
    let reservation = app
        .post_json(
            "/api/v1/reservations",
            json!({"tags": ["pair"], "quantity": 2}),
        )
        .await
        .expect_json(201)["reservation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.post_json(
        "/api/v1/resources/4/unavailable",
        json!({"reason": "firmware", "from": iso(at(3600)), "until": iso(at(7200))}),
    )
    .await
    .expect_json(200);
    app.post_json(
        "/api/v1/resources/5/unavailable",
        json!({"reason": "toner <low>", "until": iso(at(10_800))}),
    )
    .await
    .expect_json(200);
    app.lock_for(6, 60).await.expect_json(200);
    std::fs::write(
        &path,
        STATES_LAB.replace("old-board:\n    tags: \"lab\"\n", ""),
    )
    .unwrap();
    app.post("/api/v1/admin/reload").await.expect_json(200);

    // Act
    let html = page(&app, "").await;

    // Assert
    let states = [
        ("free-board", "free"),
        ("busy-board", "locked"),
        ("spare-board", "held"),
        ("drain-board", "draining"),
        ("down-board", "unavailable"),
        ("old-board", "retiring"),
    ];
    for (name, state) in states {
        let row = row(&html, name);
        assert!(row.contains(&format!("data-state=\"{state}\"")), "{row}");
        assert!(
            row.contains(&format!("<span class=\"badge state-{state}\">")),
            "{row}"
        );
    }
    let busy = row(&html, "busy-board");
    assert!(
        busy.contains("<span class=\"holder\">ci/job/&lt;42&gt;</span>"),
        "{busy}"
    );
    assert!(
        busy.contains("<span class=\"note\">soak &amp; test</span>"),
        "{busy}"
    );
    assert!(
        busy.contains(&format!(
            "<time class=\"countdown\" datetime=\"{}\">10m 00s left</time>",
            iso(at(600))
        )),
        "{busy}"
    );
    assert!(busy.contains("data-action=\"force-unlock\""), "{busy}");
    assert!(busy.contains("data-action=\"unlock\""), "{busy}");
    let spare = row(&html, "spare-board");
    assert!(
        spare.contains(&format!(
            "class=\"held-for\">Held for <code>{reservation}</code>"
        )),
        "{spare}"
    );
    let drain = row(&html, "drain-board");
    assert!(drain.contains("class=\"window\""), "{drain}");
    assert!(
        drain.contains(&format!("datetime=\"{}\"", iso(at(3600)))),
        "{drain}"
    );
    assert!(
        drain.contains(&format!("datetime=\"{}\"", iso(at(7200)))),
        "{drain}"
    );
    assert!(
        drain.contains("<span class=\"reason\">firmware</span>"),
        "{drain}"
    );
    assert!(drain.contains("data-action=\"available\""), "{drain}");
    let down = row(&html, "down-board");
    assert!(
        down.contains("<span class=\"reason\">toner &lt;low&gt;</span>"),
        "{down}"
    );
    assert!(
        down.contains(&format!(
            "<span class=\"until\">until <time class=\"local\" datetime=\"{}\"",
            iso(at(10_800))
        )),
        "{down}"
    );
    assert!(down.contains("data-action=\"available\""), "{down}");
    assert!(!down.contains("data-action=\"unavailable\""), "{down}");
    let old = row(&html, "old-board");
    assert!(old.contains("class=\"retiring\""), "{old}");
    assert!(
        old.contains("<span class=\"holder\">anonymous</span>"),
        "{old}"
    );
    let free = row(&html, "free-board");
    assert!(free.contains("data-action=\"unavailable\""), "{free}");
    assert!(!free.contains("data-action=\"unlock\""), "{free}");
    // The overview counts the same states (the metrics' classification).
    let overview = section(&html, "overview");
    for state in [
        "free",
        "locked",
        "held",
        "draining",
        "unavailable",
        "retiring",
    ] {
        assert!(
            overview.contains(&format!("<span data-count=\"{state}\">1</span>")),
            "{state}: {overview}"
        );
    }
    // Locked in service: busy-board; in service: all but down-board and old-board.
    assert!(
        overview.contains("<p id=\"utilisation\">1 of 4 locked (25%)</p>"),
        "{overview}"
    );
}

#[tokio::test]
async fn a_lock_counts_down_and_is_marked_warn_inside_the_expiry_warning() {
    let app = spawn_app().await;
    app.locked(ARM_1, 600).await;

    let before = page(&app, "").await;
    app.advance(Duration::from_secs(301));
    let inside = page(&app, "").await;

    let row_before = row(&before, "board-arm-1");
    assert!(!row_before.contains("class=\"warn\""), "{row_before}");
    assert!(row_before.contains(&format!("datetime=\"{}\">10m 00s left", iso(at(600)))));
    let row_inside = row(&inside, "board-arm-1");
    // The default warning is 300 s: 299 s left is inside it.
    assert!(row_inside.contains("class=\"warn\""), "{row_inside}");
    assert!(row_inside.contains("4m 59s left"), "{row_inside}");
    assert!(inside.contains("data-warning=\"300\""));
}

#[tokio::test]
async fn the_queue_shows_position_priority_wants_and_estimate_and_fulfilled_their_resources() {
    // Arrange: both arm boards locked, two reservations wait for them; one for x86 is
    // served at once.
    let app = spawn_app().await;
    app.locked(ARM_1, 600).await;
    app.locked(ARM_2, 1200).await;
    let urgent = app
        .post_json(
            "/api/v1/reservations",
            json!({"tags": ["arm"], "priority": 3, "holder": "nightly"}),
        )
        .await
        .expect_json(201)["reservation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let relaxed = app
        .post_json(
            "/api/v1/reservations",
            json!({"tags": ["arm"], "quantity": 2, "priority": 7}),
        )
        .await
        .expect_json(201)["reservation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let served = app
        .post_json(
            "/api/v1/reservations",
            json!({"groups": [{"tags": ["x86"], "quantity": 1}], "auto_claim": true}),
        )
        .await
        .expect_json(201)["reservation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.advance(Duration::from_secs(65));

    // Act
    let html = page(&app, "").await;

    // Assert
    let queue = table(&html, "queue-table");
    assert_eq!(count(queue, "data-reservation="), 2, "{queue}");
    let first = queue
        .find(&format!("data-reservation=\"{urgent}\""))
        .unwrap();
    let second = queue
        .find(&format!("data-reservation=\"{relaxed}\""))
        .unwrap();
    assert!(first < second, "serving order: {queue}");
    let urgent_row = &queue[first..second];
    assert!(
        urgent_row.contains("<td class=\"position\">1</td>"),
        "{urgent_row}"
    );
    assert!(
        urgent_row.contains("<td class=\"priority\">3</td>"),
        "{urgent_row}"
    );
    assert!(urgent_row.contains("1m 05s"), "age: {urgent_row}");
    assert!(
        urgent_row.contains("1 × <span class=\"tag\">arm</span>"),
        "{urgent_row}"
    );
    // Served when the first arm lock expires; the pair when both have.
    assert!(
        urgent_row.contains(&format!(
            "<td class=\"eta\"><time class=\"local\" datetime=\"{}\"",
            iso(at(600))
        )),
        "{urgent_row}"
    );
    let relaxed_row = &queue[second..];
    assert!(
        relaxed_row.contains("<td class=\"position\">2</td>"),
        "{relaxed_row}"
    );
    assert!(
        relaxed_row.contains("<td class=\"priority\">7</td>"),
        "{relaxed_row}"
    );
    assert!(
        relaxed_row.contains(&format!("datetime=\"{}\"", iso(at(1200)))),
        "{relaxed_row}"
    );
    assert!(!section(&html, "queue").contains("class=\"empty\""));
    let longest = &html[html.find("id=\"longest-wait\"").unwrap()..];
    assert!(longest[..400].contains(&urgent), "{longest}");

    let fulfilled = table(&html, "fulfilled-table");
    assert_eq!(count(fulfilled, "data-reservation="), 1, "{fulfilled}");
    assert!(
        fulfilled.contains(&format!("data-reservation=\"{served}\"")),
        "{fulfilled}"
    );
    assert!(
        fulfilled.contains(&format!(
            "<span class=\"resource\" data-id=\"{X86_1}\">board-x86-1</span>"
        )),
        "{fulfilled}"
    );
    // The contended tag is the one the queue waits for.
    let contended = &html[html.find("id=\"contended\"").unwrap()..];
    assert!(contended[..600].contains("data-tag=\"arm\""), "{contended}");
    assert!(
        contended[..600].contains("3 wanted by waiting reservations"),
        "{contended}"
    );
}

#[tokio::test]
async fn an_empty_queue_says_so_and_has_no_rows() {
    let app = spawn_app().await;

    let html = page(&app, "").await;

    let queue = section(&html, "queue");
    assert!(queue.contains("<p class=\"empty\">"), "{queue}");
    assert_eq!(count(queue, "data-reservation="), 0);
    assert!(section(&html, "fulfilled").contains("<p class=\"empty\">"));
    assert!(html.contains("Longest wait: nothing waits"));
}

#[tokio::test]
async fn filters_by_tag_name_and_state_combine() {
    let app = spawn_app().await;
    app.locked(ARM_2, 600).await;

    let all = page(&app, "").await;
    let arm = page(&app, "?tag=arm").await;
    let arm_linux = page(&app, "?tag=arm&tag=linux").await;
    let listed = page(&app, "?tag=linux,x86").await;
    let by_name = page(&app, "?name=BOARD-A").await;
    let locked = page(&app, "?state=locked").await;
    let locked_x86 = page(&app, "?tag=x86&state=locked").await;
    let empty_form = page(&app, "?tag=&name=&state=&per_page=").await;

    assert_eq!(
        names(&all),
        [
            "coffee-machine",
            "board-arm-1",
            "board-x86-1",
            "board-arm-2",
            "printer"
        ]
    );
    assert_eq!(names(&arm), ["board-arm-1", "board-arm-2"]);
    assert_eq!(names(&arm_linux), ["board-arm-1", "board-arm-2"]);
    assert_eq!(names(&listed), ["board-x86-1"]);
    assert_eq!(names(&by_name), ["board-arm-1", "board-arm-2"]);
    assert_eq!(names(&locked), ["board-arm-2"]);
    assert!(names(&locked_x86).is_empty());
    assert_eq!(names(&empty_form), names(&all));
    // The form shows the filters it applied; the overview still counts the whole lab.
    assert!(
        arm_linux.contains("name=\"tag\" value=\"arm,linux\""),
        "{arm_linux}"
    );
    assert!(
        locked.contains("<option value=\"locked\" selected>"),
        "{locked}"
    );
    assert!(locked.contains("<p id=\"utilisation\">1 of 5 locked (20%)</p>"));
}

#[tokio::test]
async fn a_lab_of_100_000_is_paged_and_a_page_stays_small() {
    let specs: Vec<ResourceSpec> = (0..100_000)
        .map(|i| {
            ResourceSpec::named(format!("r-{i:06}"))
                .with_tags(&["lab", if i % 2 == 0 { "even" } else { "odd" }])
        })
        .collect();
    let app = spawn_app_with(specs).await;

    let first = page(&app, "").await;
    let big = page(&app, "?page=3&per_page=500").await;
    let odd_last = page(&app, "?tag=odd&page=100").await;
    let past = page(&app, "?page=5000").await;

    assert_eq!(names(&first).len(), 100);
    assert_eq!(names(&first)[0], "r-000000");
    assert!(
        first.contains("<a rel=\"next\" href=\"/?page=2\">"),
        "next link"
    );
    assert!(!first.contains("rel=\"prev\""));
    assert!(
        first.len() < 150_000,
        "the first page is {} bytes",
        first.len()
    );
    assert!(first.contains("Resources 1 to 100 of 100000"));

    let big_names = names(&big);
    assert_eq!(big_names.len(), 500);
    assert_eq!(big_names[0], "r-001000");
    assert!(
        big.contains("<a rel=\"prev\" href=\"/?page=2&amp;per_page=500\">"),
        "{}",
        &big[..2000]
    );
    assert!(big.contains("<a rel=\"next\" href=\"/?page=4&amp;per_page=500\">"));
    assert!(big.len() < 700_000, "a page of 500 is {} bytes", big.len());

    // 50 000 odd ones, 100 a page: page 500 is the last.
    assert_eq!(names(&odd_last).len(), 100);
    assert!(odd_last.contains("Page 100 of 500"));
    assert!(odd_last.contains("<a rel=\"next\" href=\"/?tag=odd&amp;page=101\">"));

    assert!(names(&past).is_empty());
    assert!(
        past.contains("<a rel=\"prev\" href=\"/?page=1000\">"),
        "back to the last page"
    );
    assert!(!past.contains("rel=\"next\""));
    // The tag table has a row per tag (at most 50): lab, even, odd.
    let tags = table(&first, "free-by-tag");
    assert_eq!(count(tags, "<tr data-tag="), 3, "{tags}");
    assert!(tags.contains("<td class=\"free\">50000</td><td class=\"total\">50000</td>"));
}

#[tokio::test]
async fn a_bad_query_is_a_400_json_naming_what_to_fix() {
    let app = spawn_app().await;
    let too_many_tags = (0..17)
        .map(|i| format!("tag=t{i}"))
        .collect::<Vec<_>>()
        .join("&");
    let too_long = format!("name={}", "a".repeat(2100));
    let long_name = format!("name={}", "a".repeat(129));
    let cases = [
        ("foo=1", "unknown_parameter", "foo"),
        ("limit=10", "unknown_parameter", "limit"),
        ("name=a&name=b", "repeated_parameter", "name"),
        ("state=busy", "invalid_parameter", "state"),
        ("per_page=501", "invalid_parameter", "per_page"),
        ("per_page=0", "invalid_parameter", "per_page"),
        ("page=0", "invalid_parameter", "page"),
        ("page=x", "invalid_parameter", "page"),
        ("page=99999999999", "invalid_parameter", "page"),
        (too_many_tags.as_str(), "too_many_tags", "tag"),
        (long_name.as_str(), "invalid_parameter", "name"),
        ("name=a%07b", "invalid_text", "name"),
    ];
    for (query, code, parameter) in cases {
        for path in ["/", "/dashboard/fragment"] {
            let reply = app.get(&format!("{path}?{query}")).await;
            let body = reply.expect_json(400);
            assert_eq!(body["code"], code, "{path}?{query}: {body}");
            assert_eq!(body["parameter"], parameter, "{path}?{query}: {body}");
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }
    let body = app.get(&format!("/?{too_long}")).await.expect_json(400);
    assert_eq!(body["code"], "query_too_long", "{body}");
}

#[tokio::test]
async fn the_script_and_stylesheet_are_served_here_and_the_csp_allows_them() {
    let app = spawn_app().await;

    let reply = app.get("/").await;
    let html = &reply.text;

    // No inline script or style, nothing from elsewhere.
    let csp = reply.header("content-security-policy");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("style-src 'self'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert_eq!(count(html, "<script"), 1, "{html}");
    assert!(
        !html.contains("<style") && !html.contains(" style="),
        "{html}"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    for (file, content_type, marker) in [
        (
            "dashboard.js",
            "text/javascript; charset=utf-8",
            "EventSource",
        ),
        ("dashboard.css", "text/css; charset=utf-8", ".state-locked"),
    ] {
        let start = html
            .find(&format!("/static/{file}?v="))
            .expect("the page links it");
        let url = &html[start..start + html[start..].find('"').unwrap()];
        let asset = app.get(url).await;
        assert_eq!(asset.status, 200, "{url}");
        assert_eq!(asset.header("content-type"), content_type);
        assert_eq!(
            asset.header("cache-control"),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(asset.header("x-content-type-options"), "nosniff");
        assert!(asset.text.contains(marker), "{url}");
    }
    assert!(html.contains("<script src=\"/static/dashboard.js?v="));
    assert_eq!(
        app.get("/static/nothing.js").await.expect_json(404)["code"],
        "no_route"
    );
    assert_eq!(
        app.get("/static/dashboard.js?x=1").await.expect_json(400)["code"],
        "unknown_parameter"
    );
}

#[tokio::test]
async fn the_fragment_is_the_live_part_for_the_same_query_and_follows_changes() {
    let app = spawn_app().await;

    let before = app.get("/dashboard/fragment?tag=arm").await;
    app.locked(ARM_1, 600).await;
    let after = app.get("/dashboard/fragment?tag=arm").await;

    assert_eq!(before.status, 200);
    assert_eq!(before.header("content-type"), "text/html; charset=utf-8");
    assert_eq!(before.header("cache-control"), "no-store");
    assert!(
        before.text.starts_with("<section id=\"overview\""),
        "{}",
        before.text
    );
    assert!(!before.text.contains("<html") && !before.text.contains("id=\"filters\""));
    for part in ["overview", "resources-section", "queue", "fulfilled"] {
        assert!(
            before.text.contains(&format!("<section id=\"{part}\"")),
            "{part}"
        );
    }
    assert_eq!(names(&before.text), ["board-arm-1", "board-arm-2"]);
    assert!(row(&before.text, "board-arm-1").contains("data-state=\"free\""));
    assert!(row(&after.text, "board-arm-1").contains("data-state=\"locked\""));
    // The page holds the same live part, plus the form and the controls.
    let page = page(&app, "?tag=arm").await;
    assert!(page.contains("<main id=\"live\""));
    assert!(page.contains("<form id=\"filters\" method=\"get\" action=\"/\""));
    assert!(page.contains("<label for=\"api-key\">API key</label>"));
    assert!(page.contains("<input id=\"api-key\" type=\"password\" autocomplete=\"off\""));
    assert!(page.contains("<p id=\"action-status\" role=\"status\">"));
    assert!(page.contains("<body data-live=\"off\""));
    // Without the script, the page reloads itself as 1.0's did.
    assert!(page.contains("<noscript><meta http-equiv=\"refresh\" content=\"30\"></noscript>"));
    // Every table is captioned, and its headers scoped.
    for id in ["free-by-tag", "resources", "queue-table", "fulfilled-table"] {
        let table = table(&page, id);
        assert!(table.contains("<caption>"), "{id}");
        assert_eq!(count(table, "<th>"), 0, "unscoped header in {id}");
    }
}

#[tokio::test]
async fn a_free_resource_shows_how_its_last_lock_ended() {
    let app = spawn_app().await;
    app.locked(COFFEE, 30).await;
    app.advance(Duration::from_secs(30));

    let html = page(&app, "").await;

    let coffee = row(&html, "coffee-machine");
    assert!(coffee.contains("data-state=\"free\""), "{coffee}");
    assert!(
        coffee.contains(&format!(
            "Lock auto-expired at <time class=\"local\" datetime=\"{}\"",
            iso(at(30))
        )),
        "{coffee}"
    );
}

const READONLY: &str = "readonly-key-0123456789";
const OPERATOR: &str = "operator-key-0123456789";

async fn app_with_auth(dir: &Path) -> TestApp {
    let path = dir.join("auth.yaml");
    std::fs::write(
        &path,
        format!(
            "api_keys:\n  - {{name: \"Dashboard\", key: \"{READONLY}\", role: readonly}}\n  - {{name: \"Ops\", key: \"{OPERATOR}\", role: operator}}\n"
        ),
    )
    .unwrap();
    start(
        lab(),
        Options {
            auth: Some(path),
            ..Options::default()
        },
    )
    .await
}

#[tokio::test]
async fn with_auth_the_page_without_a_key_shows_no_lab_data_and_asks_for_one() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_auth(dir.path()).await;
    app.send(
        app.client
            .post(app.url(&format!("/api/v1/resources/{COFFEE}/lock")))
            .header("X-API-Key", OPERATOR),
    )
    .await
    .expect_json(200);
    let get = |path: &'static str, key: Option<&'static str>| {
        let mut request = app.client.get(app.url(path));
        if let Some(key) = key {
            request = request.header("X-API-Key", key);
        }
        app.send(request)
    };

    // A browser's page load carries no header: the page, without the lab.
    let shell = get("/?tag=arm", None).await;
    assert_eq!(shell.status, 200, "{}", shell.text);
    assert!(
        shell.text.contains("<body data-live=\"off\""),
        "{}",
        shell.text
    );
    assert!(shell.text.contains("data-auth=\"key\""), "{}", shell.text);
    assert!(shell.text.contains("<section id=\"auth-needed\""));
    assert!(
        shell
            .text
            .contains("<input id=\"api-key\" type=\"password\"")
    );
    assert!(
        shell.text.contains("name=\"tag\" value=\"arm\""),
        "the form keeps the query"
    );
    for data in [
        "coffee-machine",
        "board-arm-1",
        "id=\"resources\"",
        "id=\"overview\"",
    ] {
        assert!(!shell.text.contains(data), "{data} in {}", shell.text);
    }
    // The data itself needs a key, and a bad key is refused on the page too.
    assert_eq!(
        get("/dashboard/fragment", None).await.expect_json(401)["code"],
        "missing_credentials"
    );
    assert_eq!(
        get("/", Some("not-a-key-0123456789"))
            .await
            .expect_json(401)["code"],
        "invalid_api_key"
    );
    assert_eq!(
        get("/?nope=1", None).await.expect_json(400)["code"],
        "unknown_parameter"
    );
    // With a key (typed into the page, or added by a proxy), the lab.
    let full = get("/", Some(READONLY)).await;
    assert!(!full.text.contains("data-auth="), "{}", full.text);
    assert!(row(&full.text, "coffee-machine").contains("data-state=\"locked\""));
    let fragment = get("/dashboard/fragment", Some(READONLY)).await;
    assert!(row(&fragment.text, "coffee-machine").contains("data-state=\"locked\""));
    // The assets hold no data and are needed before a key.
    assert_eq!(get("/static/dashboard.js", None).await.status, 200);
    assert_eq!(get("/static/dashboard.css", None).await.status, 200);
    // What the buttons call: the operator's key may, the readonly one may not.
    let unavailable = |key: &'static str| {
        app.send(
            app.client
                .post(app.url("/api/v1/resources/1/unavailable"))
                .header("X-API-Key", key)
                .json(&json!({"reason": "maintenance from the dashboard"})),
        )
    };
    assert_eq!(
        unavailable(READONLY).await.expect_json(403)["code"],
        "forbidden"
    );
    unavailable(OPERATOR).await.expect_json(200);
}

#[tokio::test]
async fn with_auth_the_event_stream_the_script_reads_takes_the_key_as_a_header() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_auth(dir.path()).await;

    let without = app.get("/api/v1/events").await;
    let with = app
        .client
        .get(app.url("/api/v1/events"))
        .header("X-API-Key", READONLY)
        .send()
        .await
        .unwrap();

    assert_eq!(without.expect_json(401)["code"], "missing_credentials");
    assert_eq!(with.status(), 200);
    assert!(
        with.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
}
