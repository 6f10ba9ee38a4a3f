//! The audit log (README § Audit log): a record for every committed event and every
//! refused change, `GET /api/v1/audit`, the JSON-lines file, and the store's table.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    ARM_1, COFFEE, Options, PRINTER, T0, TestApp, X86_1, lab, spawn_app, start, start_running,
};
use rentabot::app::{AuditSettings, Persist};
use rentabot::store::PersistUrl;

const AUDIT: &str = "/api/v1/audit";

impl TestApp {
    /// `GET /api/v1/audit?{query}`, expecting 200.
    async fn audit(&self, query: &str) -> Value {
        self.get(&format!("{AUDIT}?{query}")).await.expect_json(200)
    }

    /// The entries of `GET /api/v1/audit?{query}`.
    async fn entries(&self, query: &str) -> Vec<Value> {
        self.audit(query).await["entries"]
            .as_array()
            .expect("entries is a list")
            .clone()
    }
}

fn t(secs: u64) -> String {
    T0.checked_add(Duration::from_secs(secs))
        .unwrap()
        .to_rfc3339()
}

/// `(event_type, resource_id, actor, success)` of each entry.
fn summary(entries: &[Value]) -> Vec<(String, Value, String, bool)> {
    entries
        .iter()
        .map(|e| {
            (
                e["event_type"].as_str().unwrap().to_owned(),
                e["resource_id"].clone(),
                e["actor"].as_str().unwrap().to_owned(),
                e["success"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn row(
    event_type: &str,
    resource: Value,
    actor: &str,
    success: bool,
) -> (String, Value, String, bool) {
    (event_type.to_owned(), resource, actor.to_owned(), success)
}

#[tokio::test]
async fn lock_and_unlock_are_recorded_newest_first_with_who_asked() {
    let app = spawn_app().await;
    let lock = app
        .client
        .post(app.url(&format!("/api/v1/resources/{ARM_1}/lock")))
        .header("X-Request-Id", "audit-lock-1")
        .header("User-Agent", "audit-test/1.0")
        .json(&json!({"ttl": 60}));
    let held = crate::helpers::held(app.send(lock).await);
    app.unlock(ARM_1, &held.token).await.expect_json(200);

    let entries = app.entries("").await;
    assert_eq!(
        summary(&entries[..2]),
        [
            row("unlocked", json!(ARM_1), "anonymous", true),
            row("locked", json!(ARM_1), "anonymous", true),
        ]
    );
    let locked = &entries[1];
    assert_eq!(locked["timestamp"], t(0));
    assert_eq!(locked["role"], Value::Null);
    assert_eq!(locked["client_ip"], "127.0.0.1");
    assert_eq!(locked["user_agent"], "audit-test/1.0");
    assert_eq!(locked["request_id"], "audit-lock-1");
    assert_eq!(locked["details"]["fencing_token"], held.fencing);
    assert_eq!(locked["details"]["expires_at"], t(60));
    assert!(
        !locked.to_string().contains(&held.token),
        "a lock token never reaches the audit log"
    );
    // The descriptor loaded at start is the service's own doing.
    let added = app.entries("type=resource_added").await;
    assert_eq!(added.len(), 5);
    assert!(added.iter().all(|e| e["actor"] == "system"), "{added:?}");
}

#[tokio::test]
async fn an_expiry_is_recorded_as_the_systems() {
    let app = spawn_app().await;
    let held = app.locked(X86_1, 30).await;
    app.advance(Duration::from_secs(30));
    app.broker.sweep();

    let expired = app.entries("type=expired").await;
    assert_eq!(
        summary(&expired),
        [row("expired", json!(X86_1), "system", true)]
    );
    assert_eq!(expired[0]["timestamp"], t(30));
    assert_eq!(expired[0]["details"]["fencing_token"], held.fencing);
    assert_eq!(expired[0]["request_id"], Value::Null);
}

#[tokio::test]
async fn a_reservation_fulfilled_when_a_lock_expires_is_recorded_as_the_systems() {
    let app = spawn_app().await;
    app.locked(X86_1, 30).await;
    let reservation = app
        .send(
            app.client
                .post(app.url("/api/v1/reservations"))
                .json(&json!({"tags": ["x86"], "quantity": 1})),
        )
        .await
        .expect_json(201);
    let id = reservation["reservation_id"].as_str().unwrap();
    app.advance(Duration::from_secs(30));
    app.broker.sweep();

    let created = app.entries("type=reservation_created").await;
    assert_eq!(created[0]["reservation_id"], id);
    assert_eq!(created[0]["actor"], "anonymous");
    let fulfilled = app.entries("type=reservation_fulfilled").await;
    assert_eq!(fulfilled.len(), 1);
    assert_eq!(fulfilled[0]["reservation_id"], id);
    assert_eq!(fulfilled[0]["actor"], "system");
    assert_eq!(fulfilled[0]["details"]["resource_ids"], json!([X86_1]));
    // The lock it was granted names the reservation too.
    let locked = app.entries(&format!("type=locked&resource={X86_1}")).await;
    assert_eq!(locked[0]["reservation_id"], id);
}

#[tokio::test]
async fn a_maintenance_window_opening_and_closing_is_recorded() {
    let app = spawn_app().await;
    let window = json!({"reason": "rewiring", "from": t(100), "until": t(200)});
    let url = app.url(&format!("/api/v1/resources/{COFFEE}/unavailable"));
    app.send(app.client.post(url).json(&window))
        .await
        .expect_json(200);
    app.advance(Duration::from_secs(100));
    app.broker.sweep();
    app.advance(Duration::from_secs(100));
    app.broker.sweep();

    let entries = app.entries(&format!("resource={COFFEE}")).await;
    assert_eq!(
        summary(&entries[..3]),
        [
            row("maintenance_ended", json!(COFFEE), "system", true),
            row("maintenance_started", json!(COFFEE), "system", true),
            row("maintenance_scheduled", json!(COFFEE), "anonymous", true),
        ]
    );
    assert_eq!(entries[2]["details"]["reason"], "rewiring");
    assert_eq!(entries[1]["timestamp"], t(100));
    assert_eq!(entries[0]["timestamp"], t(200));
}

#[tokio::test]
async fn a_refused_change_is_recorded_with_its_status_and_code() {
    let app = spawn_app().await;
    app.locked(ARM_1, 60).await;
    let wrong = app
        .client
        .post(app.url(&format!("/api/v1/resources/{ARM_1}/unlock")))
        .query(&[("lock-token", "0".repeat(32))])
        .header("X-Request-Id", "bad-unlock");
    app.send(wrong).await.expect_json(403);
    // A read that fails is not a change: not recorded.
    app.get("/api/v1/resources/99").await.expect_json(404);

    let entries = app.entries("").await;
    assert_eq!(
        summary(&entries[..2]),
        [
            row("unlock", json!(ARM_1), "anonymous", false),
            row("locked", json!(ARM_1), "anonymous", true),
        ]
    );
    let refused = &entries[0];
    assert_eq!(refused["request_id"], "bad-unlock");
    assert_eq!(
        refused["details"],
        json!({
            "status": 403,
            "code": "invalid_lock_token",
            "method": "POST",
            "route": "/api/v1/resources/{id}/unlock",
        })
    );
    assert_eq!(
        app.entries("type=unlock").await.len(),
        1,
        "queryable by operation"
    );

    // A change nobody serves is recorded too, as a `request`.
    app.post("/api/v1/nowhere").await.expect_json(404);
    let last = &app.entries("limit=1").await[0];
    assert_eq!(last["event_type"], "request");
    assert_eq!(last["details"]["route"], "/api/v1/nowhere");
    assert_eq!(last["details"]["code"], "no_route");
}

#[tokio::test]
async fn queries_filter_page_and_count_newest_first() {
    let app = spawn_app().await;
    for (id, secs) in [(ARM_1, 0), (X86_1, 10), (PRINTER, 20)] {
        app.advance(Duration::from_secs(secs));
        app.locked(id, 30).await;
    }
    // Locked at T0 + 0, 10, 30.
    let page = app.audit("type=locked&limit=2").await;
    assert_eq!(
        (
            page["total"].clone(),
            page["page"].clone(),
            page["limit"].clone()
        ),
        (json!(3), json!(1), json!(2))
    );
    assert_eq!(
        summary(page["entries"].as_array().unwrap()),
        [
            row("locked", json!(PRINTER), "anonymous", true),
            row("locked", json!(X86_1), "anonymous", true),
        ]
    );
    let second = app.entries("type=locked&limit=2&page=2").await;
    assert_eq!(
        summary(&second),
        [row("locked", json!(ARM_1), "anonymous", true)]
    );

    let from = app.entries(&format!("type=locked&from={}", t(10))).await;
    assert_eq!(from.len(), 2, "from is inclusive");
    let to = app.entries(&format!("type=locked&to={}", t(10))).await;
    assert_eq!(
        summary(&to),
        [row("locked", json!(ARM_1), "anonymous", true)],
        "to is exclusive"
    );
    assert_eq!(
        summary(&app.entries(&format!("resource={X86_1}")).await),
        [
            row("locked", json!(X86_1), "anonymous", true),
            row("resource_added", json!(X86_1), "system", true),
        ]
    );
    assert_eq!(app.entries("actor=system&type=locked").await.len(), 0);
    assert_eq!(app.audit("actor=anonymous").await["total"], 3);
    assert_eq!(app.audit("").await["limit"], 50, "the default page size");
    assert_eq!(app.audit("limit=1000").await["limit"], 1000);
}

#[tokio::test]
async fn bad_query_parameters_are_refused_with_400_naming_them() {
    let app = spawn_app().await;
    for (query, code, parameter) in [
        ("actr=ci", "unknown_parameter", "actr"),
        ("limit=1&limit=2", "repeated_parameter", "limit"),
        ("limit=0", "invalid_parameter", "limit"),
        ("limit=1001", "invalid_parameter", "limit"),
        ("page=0", "invalid_parameter", "page"),
        ("from=yesterday", "invalid_parameter", "from"),
        ("to=2026-13-01T00:00:00Z", "invalid_parameter", "to"),
        ("resource=arm", "invalid_parameter", "resource"),
        ("type=lockd", "invalid_parameter", "type"),
        ("actor=", "invalid_parameter", "actor"),
    ] {
        let body = app.get(&format!("{AUDIT}?{query}")).await.expect_json(400);
        assert_eq!(body["code"], code, "{query}: {body}");
        assert_eq!(body["parameter"], parameter, "{query}: {body}");
    }
}

#[tokio::test]
async fn the_json_lines_file_gets_every_record_and_the_ring_keeps_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let options = Options {
        audit: AuditSettings {
            file: Some(file.clone()),
            retention: 3,
        },
        ..Options::default()
    };
    let (app, running) = start_running(lab(), options).await;
    let held = app.locked(ARM_1, 60).await;
    app.unlock(ARM_1, &held.token).await.expect_json(200);
    app.unlock(ARM_1, &held.token).await; // refused: the lock is gone
    let page = app.audit("").await;
    assert_eq!(page["total"], 3, "only the retention is kept");
    app.stopper.stop().await;
    running.await.unwrap().unwrap();

    let lines: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 5 resources added at start, locked, unlocked, the refusal: the file is not trimmed.
    assert_eq!(lines.len(), 8, "{lines:?}");
    assert_eq!(
        summary(&lines[5..]),
        [
            row("locked", json!(ARM_1), "anonymous", true),
            row("unlocked", json!(ARM_1), "anonymous", true),
            row("unlock", json!(ARM_1), "anonymous", false),
        ]
    );
    assert_eq!(
        &lines[5..],
        &page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .cloned()
            .collect::<Vec<_>>()[..]
    );
}

#[tokio::test]
async fn with_persist_records_are_committed_with_their_change_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let options = || Options {
        persist: Persist::Url(PersistUrl::Sqlite(path.clone())),
        ..Options::default()
    };
    let (app, running) = start_running(lab(), options()).await;
    let held = app.locked(ARM_1, 60).await;
    // The answer waited for the commit: the change's row is already in the table.
    let rows = |what: &str| -> i64 {
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        conn.query_row(
            "SELECT count(*) FROM audit WHERE event_type = ?1",
            [what],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(rows("locked"), 1);
    app.unlock(ARM_1, "0".repeat(32).as_str())
        .await
        .expect_json(403);
    let before = app.entries("").await;
    app.stopper.stop().await;
    running.await.unwrap().unwrap();
    assert_eq!(
        rows("unlock"),
        1,
        "the refusal is stored by the next transaction"
    );

    let again = start(lab(), options()).await;
    let after = again.entries("").await;
    assert_eq!(after, before, "the same records, in the same order");
    assert_eq!(after[0]["details"]["code"], "invalid_lock_token");
    assert_eq!(after[1]["details"]["fencing_token"], held.fencing);
}

#[tokio::test]
async fn the_endpoint_is_in_the_api_document() {
    let app = spawn_app().await;
    let doc = app.get("/api/v1/openapi.json").await.expect_json(200);
    let get = &doc["paths"]["/api/v1/audit"]["get"];
    let names: Vec<&str> = get["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["from", "to", "actor", "resource", "type", "page", "limit"]
    );
}

#[tokio::test]
async fn an_audit_file_that_cannot_be_written_makes_the_service_unready_but_serves_requests() {
    let options = Options {
        audit: AuditSettings {
            // Every write fails: "No space left on device".
            file: Some("/dev/full".into()),
            ..AuditSettings::default()
        },
        ..Options::default()
    };
    let app = start(lab(), options).await;
    let held = app.locked(ARM_1, 60).await;
    app.unlock(ARM_1, &held.token).await.expect_json(200);
    // The file's thread fails on its own time: poll readiness (bounded) until it says so.
    let unready = async {
        loop {
            let reply = app.get("/readiness").await;
            if reply.status == 503 {
                return reply.expect_json(503);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    let body = tokio::time::timeout(Duration::from_secs(30), unready)
        .await
        .expect("readiness reports the audit file");
    assert!(
        body["reasons"][0]
            .as_str()
            .unwrap()
            .contains("the audit log /dev/full cannot be written"),
        "{body}"
    );
    assert_eq!(
        app.audit("type=unlocked").await["total"],
        1,
        "the endpoint still answers"
    );
}

#[tokio::test]
async fn an_accepted_change_that_changed_nothing_is_recorded_by_its_answer() {
    let app = spawn_app().await;
    let lock = || {
        app.client
            .post(app.url(&format!("/api/v1/resources/{ARM_1}/lock")))
            .header("Idempotency-Key", "audit-replay-1")
            .json(&json!({"ttl": 60}))
    };
    let first = app.send(lock()).await.expect_json(200);
    let replay = app.send(lock()).await;
    assert_eq!(replay.header("idempotent-replayed"), "true");
    assert_eq!(replay.expect_json(200)["lock-token"], first["lock-token"]);

    let entries = app.entries(&format!("resource={ARM_1}")).await;
    assert_eq!(
        summary(&entries[..2]),
        [
            row("lock", json!(ARM_1), "anonymous", true),
            row("locked", json!(ARM_1), "anonymous", true),
        ],
        "the replay made no change, and is recorded once, by its answer"
    );
    assert_eq!(
        entries[0]["details"],
        json!({"status": 200, "code": null, "method": "POST", "route": "/api/v1/resources/{id}/lock"})
    );
}

#[tokio::test]
async fn a_change_reaches_the_audit_log_only_once_it_is_committed() {
    let store = rentabot::store::MemoryStore::new();
    let app = crate::helpers::spawn_app_on(&store, lab()).await;
    store.hold();
    let lock = tokio::spawn({
        let (client, url) = (
            app.client.clone(),
            app.url(&format!("/api/v1/resources/{ARM_1}/lock")),
        );
        async move { crate::helpers::read(client.post(url).send().await.unwrap()).await }
    });
    let held = store.clone();
    tokio::task::spawn_blocking(move || held.wait_for_held_commit())
        .await
        .unwrap();
    // The change is made and waits for its commit: not recorded yet.
    assert_eq!(app.audit("type=locked").await["total"], 0);

    store.release();
    lock.await.unwrap().expect_json(200);
    // Answered, so committed and published: recorded.
    assert_eq!(app.audit("type=locked").await["total"], 1);
}

/// Any valid RFC 3339 time filters, one before 1970 included (it is before every entry);
/// only what is not a time is refused.
#[tokio::test]
async fn times_before_1970_filter_and_non_times_are_refused() {
    let app = crate::helpers::spawn_app().await;
    app.post("/api/v1/resources/1/lock").await;
    let all = app
        .get("/api/v1/audit?from=1900-01-01T00:00:00Z")
        .await
        .expect_json(200);
    assert!(all["total"].as_u64().unwrap() >= 1, "{all}");
    let none = app
        .get("/api/v1/audit?to=1900-01-01T00:00:00%2B01:00")
        .await
        .expect_json(200);
    assert_eq!(none["total"], 0, "{none}");
    let refused = app.get("/api/v1/audit?from=0").await.expect_json(400);
    assert_eq!(refused["parameter"], "from");
}
