//! Resource administration over HTTP: create, patch and delete resources, and reload the
//! descriptor, against the real service.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rentabot::domain::resource::RETIRING_REASON;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::*;

const RESOURCES: &str = "/api/v1/resources";
const RELOAD: &str = "/api/v1/admin/reload";

async fn create(app: &TestApp, body: Value) -> Reply {
    app.send(app.client.post(app.url(RESOURCES)).json(&body))
        .await
}

async fn patch(app: &TestApp, id: u32, body: Value) -> Reply {
    let url = app.url(&format!("{RESOURCES}/{id}"));
    app.send(app.client.patch(url).json(&body)).await
}

/// `DELETE /api/v1/resources/{id}{query}`.
async fn delete(app: &TestApp, id: u32, query: &str) -> Reply {
    let url = app.url(&format!("{RESOURCES}/{id}{query}"));
    app.send(app.client.delete(url)).await
}

async fn reserve(app: &TestApp, body: Value) -> Value {
    let url = app.url("/api/v1/reservations");
    app.send(app.client.post(url).json(&body))
        .await
        .expect_json(201)
}

fn rid(reservation: &Value) -> String {
    reservation["reservation_id"]
        .as_str()
        .expect("an id")
        .to_owned()
}

/// Every resource's `(id, name)`, in list order.
async fn listed(app: &TestApp) -> Vec<(u64, String)> {
    let body = app.get(RESOURCES).await.expect_json(200);
    body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_u64().unwrap(),
                r["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn lab_listing() -> Vec<(u64, String)> {
    [
        "coffee-machine",
        "board-arm-1",
        "board-x86-1",
        "board-arm-2",
        "printer",
    ]
    .iter()
    .zip(1..)
    .map(|(name, id)| (id, name.to_string()))
    .collect()
}

/// The test lab written to a file, and the service started from it (`--config`).
async fn spawn_from_file() -> (TestApp, TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lab.yaml");
    std::fs::write(&path, LAB).unwrap();
    let app = spawn_app_with_descriptor(&path).await;
    (app, dir, path)
}

/// The lab's descriptor without the resources named, with `extra` appended.
fn write_lab(path: &Path, drop: &[&str], extra: &str) {
    let mut text = String::new();
    let mut skipping = false;
    for line in LAB.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            skipping = drop.contains(&line.trim_end_matches(':'));
        }
        if !skipping {
            text.push_str(line);
            text.push('\n');
        }
    }
    text.push_str(extra);
    std::fs::write(path, text).unwrap();
}

// ── POST /resources ───────────────────────────────────────────────────────────────────

#[tokio::test]
async fn create_returns_201_with_the_resource_and_its_location_when_the_body_is_valid() {
    let app = spawn_app().await;

    let reply = create(
        &app,
        json!({"name": "scope-1", "description": "Oscilloscope", "endpoint": "tcp://10.0.0.9",
               "tags": ["lab", "scope"], "max-lock-duration": 1800}),
    )
    .await;

    let body = reply.expect_json(201);
    assert_eq!(reply.header("location"), "/api/v1/resources/6");
    assert_eq!(keys(&body), ["resource"]);
    assert_eq!(keys(&body["resource"]), RESOURCE_KEYS);
    assert_eq!(body["resource"]["id"], 6);
    assert_eq!(body["resource"]["name"], "scope-1");
    assert_eq!(body["resource"]["description"], "Oscilloscope");
    assert_eq!(body["resource"]["endpoint"], "tcp://10.0.0.9");
    assert_eq!(body["resource"]["tags"], "lab,scope");
    assert_eq!(body["resource"]["max-lock-duration"], 1800);
    assert_eq!(body["resource"]["lock-details"], "Resource is available");
    assert_eq!(app.resource(6).await, body["resource"]);
}

#[tokio::test]
async fn create_takes_only_a_name_and_tags_as_a_comma_separated_string() {
    let app = spawn_app().await;

    let body = create(&app, json!({"name": "scope-2", "tags": "lab, scope"}))
        .await
        .expect_json(201);

    assert_eq!(body["resource"]["tags"], "lab,scope");
    assert_eq!(body["resource"]["description"], "");
    assert_eq!(body["resource"]["max-lock-duration"], 86400);
    let locked = held(app.lock_where("tag=scope").await);
    assert_eq!(locked.body["resource"]["id"], 6);
}

#[tokio::test]
async fn create_returns_409_naming_the_resource_when_the_name_is_taken() {
    let app = spawn_app().await;

    let body = create(&app, json!({"name": "printer"}))
        .await
        .expect_json(409);

    assert_eq!(body["code"], "name_taken");
    assert_eq!(body["resource_name"], "printer");
    assert_eq!(body["resource_id"], PRINTER);
    assert!(
        body["message"].as_str().unwrap().contains("\"printer\""),
        "{body}"
    );
    assert_eq!(listed(&app).await, lab_listing());
}

#[tokio::test]
async fn create_returns_400_naming_the_field_and_creates_nothing_when_the_body_is_invalid() {
    let app = spawn_app().await;
    let cases = [
        (json!({}), "missing_field", "name"),
        (json!({"name": ""}), "invalid_name", "name"),
        (json!({"name": ["x"]}), "invalid_name", "name"),
        (json!({"name": "x", "id": 9}), "immutable_field", "id"),
        (json!({"name": "x", "tag": "lab"}), "unknown_field", "tag"),
        (
            json!({"name": "x", "tags": "lab scope"}),
            "invalid_tags",
            "tags",
        ),
        (
            json!({"name": "x", "tags": {"a": 1}}),
            "invalid_tags",
            "tags",
        ),
        (
            json!({"name": "x", "description": 3}),
            "invalid_field",
            "description",
        ),
        (
            json!({"name": "x", "max-lock-duration": 0}),
            "invalid_ttl",
            "max-lock-duration",
        ),
        (
            json!({"name": "x", "max-lock-duration": -60}),
            "invalid_ttl",
            "max-lock-duration",
        ),
        (
            json!({"name": "x", "max-lock-duration": "a day"}),
            "invalid_ttl",
            "max-lock-duration",
        ),
    ];
    for (body, code, field) in cases {
        let reply = create(&app, body.clone()).await.expect_json(400);
        assert_eq!(reply["code"], code, "{body}: {reply}");
        assert_eq!(reply["field"], field, "{body}: {reply}");
        assert!(
            reply["message"].as_str().unwrap().contains(field),
            "{body}: {reply}"
        );
    }
    let not_json = app
        .post_body(RESOURCES, b"name: x", Some("application/json"))
        .await
        .expect_json(400);
    assert_eq!(not_json["code"], "invalid_body");
    assert_eq!(listed(&app).await, lab_listing());
}

#[tokio::test]
async fn create_serves_a_waiting_reservation_at_once_when_the_resource_matches() {
    let app = spawn_app().await;
    app.locked(ARM_1, 600).await;
    app.locked(ARM_2, 600).await;
    let pending = reserve(&app, json!({"tags": ["arm"]})).await;
    assert_eq!(pending["status"], "pending");

    create(&app, json!({"name": "board-arm-3", "tags": "ci,linux,arm"}))
        .await
        .expect_json(201);

    let served = app
        .get(&format!("/api/v1/reservations/{}", rid(&pending)))
        .await
        .expect_json(200);
    assert_eq!(served["status"], "fulfilled");
    assert_eq!(served["resource_ids"], json!([6]));
}

#[tokio::test]
async fn other_methods_on_the_resource_list_still_get_a_json_405() {
    let app = spawn_app().await;

    let reply = app
        .send(app.client.put(app.url(RESOURCES)))
        .await
        .expect_json(405);

    assert_eq!(reply["code"], "method_not_allowed");
}

// ── PATCH /resources/{id} ─────────────────────────────────────────────────────────────

#[tokio::test]
async fn patch_changes_the_given_fields_and_a_tag_change_reindexes() {
    let app = spawn_app().await;

    let body = patch(
        &app,
        PRINTER,
        json!({"description": "Zebra", "tags": ["labels", "office"]}),
    )
    .await
    .expect_json(200);

    assert_eq!(keys(&body), ["resource", "changed"]);
    assert_eq!(body["changed"], json!(["description", "tags"]));
    assert_eq!(body["resource"]["description"], "Zebra");
    assert_eq!(body["resource"]["tags"], "labels,office");
    assert_eq!(body["resource"]["name"], "printer");
    assert_eq!(body["resource"]["max-lock-duration"], 60, "untouched");
    assert_eq!(app.resource(PRINTER).await, body["resource"]);
    let by_new_tag = app
        .post_body("/api/v1/resources/lock?tag=labels", br#"{"ttl": 30}"#, None)
        .await;
    assert_eq!(by_new_tag.expect_json(200)["resource"]["id"], PRINTER);
    assert_eq!(
        app.lock_where("tag=printer").await.expect_json(404)["code"],
        "no_match"
    );
}

#[tokio::test]
async fn patch_resets_a_field_to_its_default_when_it_is_null() {
    let app = spawn_app().await;

    let body = patch(
        &app,
        COFFEE,
        json!({"endpoint": null, "max-lock-duration": null}),
    )
    .await
    .expect_json(200);

    assert_eq!(body["resource"]["endpoint"], "");
    assert_eq!(body["resource"]["max-lock-duration"], 86400);
    assert_eq!(body["changed"], json!(["endpoint"]));
}

#[tokio::test]
async fn patch_returns_400_naming_the_field_and_changes_nothing_when_it_is_refused() {
    let app = spawn_app().await;
    let before = app.resource(ARM_1).await;
    let cases = [
        (json!({"name": "renamed"}), "immutable_field", "name"),
        (json!({"id": 7}), "immutable_field", "id"),
        (json!({"colour": "red"}), "unknown_field", "colour"),
        (
            json!({"tags": "arm", "owner": "me"}),
            "unknown_field",
            "owner",
        ),
        (json!({"tags": 5}), "invalid_tags", "tags"),
        (json!({"endpoint": false}), "invalid_field", "endpoint"),
        (
            json!({"max-lock-duration": 0}),
            "invalid_ttl",
            "max-lock-duration",
        ),
    ];
    for (body, code, field) in cases {
        let reply = patch(&app, ARM_1, body.clone()).await.expect_json(400);
        assert_eq!(reply["code"], code, "{body}: {reply}");
        assert_eq!(reply["field"], field, "{body}: {reply}");
    }
    assert_eq!(app.resource(ARM_1).await, before);
}

#[tokio::test]
async fn patch_returns_404_for_an_unknown_resource_and_400_for_a_bad_id() {
    let app = spawn_app().await;

    let missing = patch(&app, UNKNOWN, json!({"description": "x"}))
        .await
        .expect_json(404);
    let url = app.url(&format!("{RESOURCES}/abc"));
    let bad = app
        .send(app.client.patch(url).json(&json!({})))
        .await
        .expect_json(400);

    assert_eq!(missing["code"], "resource_not_found");
    assert_eq!(bad["code"], "invalid_resource_id");
}

#[tokio::test]
async fn patch_never_breaks_a_held_lock_and_a_lower_maximum_binds_later_requests() {
    let app = spawn_app().await;
    let lock = app.locked(ARM_1, 3600).await;
    let before = app.resource(ARM_1).await;

    let body = patch(&app, ARM_1, json!({"max-lock-duration": 600}))
        .await
        .expect_json(200);

    assert_eq!(body["resource"]["lock-token"], lock.token);
    assert_eq!(
        body["resource"]["lock-expires-at"],
        before["lock-expires-at"]
    );
    let extend = app
        .extend(ARM_1, &lock.token, "3600")
        .await
        .expect_json(400);
    assert_eq!(extend["code"], "total_above_max");
    assert_eq!(app.unlock(ARM_1, &lock.token).await.status, 200);
    let refused = app.lock_for(ARM_1, 601).await.expect_json(400);
    assert_eq!(refused["code"], "ttl_above_max");
    assert_eq!(app.lock_for(ARM_1, 600).await.status, 200);
}

#[tokio::test]
async fn patch_serves_a_waiting_reservation_when_a_new_tag_matches_it() {
    let app = spawn_app().await;
    app.locked(ARM_1, 600).await;
    app.locked(ARM_2, 600).await;
    let pending = reserve(&app, json!({"tags": ["arm"]})).await;

    patch(&app, X86_1, json!({"tags": "ci,linux,x86,arm"}))
        .await
        .expect_json(200);

    let served = app
        .get(&format!("/api/v1/reservations/{}", rid(&pending)))
        .await
        .expect_json(200);
    assert_eq!(served["status"], "fulfilled");
    assert_eq!(served["resource_ids"], json!([X86_1]));
}

#[tokio::test]
async fn a_waiting_reservation_ends_unsatisfiable_and_its_long_poll_says_so() {
    let app = spawn_app().await;
    app.locked(ARM_1, 600).await;
    app.locked(ARM_2, 600).await;
    let pending = reserve(&app, json!({"tags": ["arm"], "quantity": 2})).await;
    let url = app.url(&format!("/api/v1/reservations/{}?wait=120", rid(&pending)));
    let poll = tokio::spawn(app.client.get(url).send());
    // The poll waits before the change: only its wake-up can answer it in time.
    app.until_waiting(1).await;

    // Only one arm board is left: two can never be had.
    patch(&app, ARM_2, json!({"tags": "ci,linux"}))
        .await
        .expect_json(200);

    let response = tokio::time::timeout(Duration::from_secs(30), poll)
        .await
        .expect("the long-poll answered when the reservation ended")
        .unwrap()
        .unwrap();
    let body = read(response).await.expect_json(404);
    assert_eq!(body["ended"], "unsatisfiable");
    assert_eq!(body["ended_at"], T0.to_rfc3339());
}

// ── DELETE /resources/{id} ────────────────────────────────────────────────────────────

#[tokio::test]
async fn delete_returns_200_with_the_resource_and_it_is_gone() {
    let app = spawn_app().await;

    let body = delete(&app, PRINTER, "").await.expect_json(200);

    assert_eq!(keys(&body), ["message", "resource"]);
    assert_eq!(body["message"], "Resource deleted");
    assert_eq!(body["resource"]["name"], "printer");
    let gone = app
        .get(&format!("{RESOURCES}/{PRINTER}"))
        .await
        .expect_json(404);
    assert_eq!(gone["code"], "resource_not_found");
    assert_eq!(listed(&app).await, lab_listing()[..4]);
    assert_eq!(app.lock_where("name=printer").await.status, 404);
}

#[tokio::test]
async fn delete_returns_409_and_changes_nothing_when_the_resource_is_locked() {
    let app = spawn_app().await;
    let lock = app.locked(X86_1, 600).await;

    for query in ["", "?force=false"] {
        let body = delete(&app, X86_1, query).await.expect_json(409);
        assert_eq!(body["code"], "resource_locked", "{query}");
        assert_eq!(body["resource_id"], X86_1);
        assert!(
            body["message"].as_str().unwrap().contains("force=true"),
            "{body}"
        );
    }

    assert_eq!(app.resource(X86_1).await["lock-token"], lock.token);
    assert_eq!(app.unlock(X86_1, &lock.token).await.status, 200);
}

#[tokio::test]
async fn delete_with_force_breaks_the_lock_and_the_holders_unlock_gets_404() {
    let app = spawn_app().await;
    let lock = app.locked(X86_1, 600).await;

    let body = delete(&app, X86_1, "?force=true&reason=board%20died")
        .await
        .expect_json(200);

    assert_eq!(body["resource"]["lock-token"], "");
    assert_eq!(
        body["resource"]["lock-details"],
        format!("Force-unlocked at {}: board died", T0.to_rfc3339())
    );
    let unlock = app.unlock(X86_1, &lock.token).await.expect_json(404);
    assert_eq!(unlock["code"], "resource_not_found");
    let batch = app
        .send(
            app.client
                .post(app.url("/api/v1/resources/unlock-batch"))
                .json(&json!({"lock_tokens": [lock.token]})),
        )
        .await
        .expect_json(403);
    assert_eq!(batch["code"], "batch_refused");
}

#[tokio::test]
async fn delete_returns_400_naming_force_when_it_is_not_a_boolean() {
    let app = spawn_app().await;

    let body = delete(&app, COFFEE, "?force=yes").await.expect_json(400);

    assert_eq!(body["code"], "invalid_parameter");
    assert_eq!(body["parameter"], "force");
    assert_eq!(app.resource(COFFEE).await["name"], "coffee-machine");
}

#[tokio::test]
async fn delete_returns_404_for_an_unknown_resource() {
    let app = spawn_app().await;

    let body = delete(&app, UNKNOWN, "").await.expect_json(404);

    assert_eq!(body["code"], "resource_not_found");
    assert_eq!(body["resource_id"], UNKNOWN);
}

#[tokio::test]
async fn delete_takes_a_held_resource_from_its_waiter_which_keeps_waiting() {
    // Four arm boards, three locked: a reservation for two holds the fourth.
    let app = spawn_app().await;
    create(&app, json!({"name": "board-arm-3", "tags": "arm"}))
        .await
        .expect_json(201);
    create(&app, json!({"name": "board-arm-4", "tags": "arm"}))
        .await
        .expect_json(201);
    for id in [ARM_1, ARM_2, 6] {
        app.locked(id, 600).await;
    }
    let pending = reserve(&app, json!({"tags": ["arm"], "quantity": 2})).await;
    assert_eq!(
        app.lock(7).await.expect_json(403)["code"],
        "held_for_reservation"
    );

    delete(&app, 7, "").await.expect_json(200);

    let waiting = app
        .get(&format!("/api/v1/reservations/{}", rid(&pending)))
        .await
        .expect_json(200);
    assert_eq!(waiting["status"], "pending");
    assert_eq!(waiting["waiting_for"]["matching"], 3);
}

#[tokio::test]
async fn a_deleted_id_is_never_given_to_a_new_resource() {
    let app = spawn_app().await;
    delete(&app, PRINTER, "").await.expect_json(200);

    let body = create(&app, json!({"name": "printer"}))
        .await
        .expect_json(201);

    assert_eq!(body["resource"]["id"], 6);
}

// ── POST /admin/reload ────────────────────────────────────────────────────────────────

#[tokio::test]
async fn reload_merges_the_edited_descriptor_by_name_keeping_ids_and_locks() {
    let (app, _dir, path) = spawn_from_file().await;
    let lock = app.locked(ARM_2, 600).await;
    write_lab(
        &path,
        &["board-arm-2", "printer", "coffee-machine"],
        "coffee-machine:\n    description: \"Espresso\"\n    tags: \"coffee\"\nscope-1:\n    tags: \"lab\"\n",
    );

    let body = app.post(RELOAD).await.expect_json(200);

    assert_eq!(
        body,
        json!({
            "message": "Descriptor reloaded",
            "descriptor": path.display().to_string(),
            "added": ["scope-1"],
            "updated": ["coffee-machine"],
            "removed": ["printer"],
            "retiring": ["board-arm-2"],
            "unchanged": 2,
            "warnings": [],
        })
    );
    assert_eq!(
        listed(&app).await,
        [
            (1, "coffee-machine".into()),
            (2, "board-arm-1".into()),
            (3, "board-x86-1".into()),
            (4, "board-arm-2".into()),
            (6, "scope-1".into()),
        ]
    );
    let coffee = app.resource(COFFEE).await;
    assert_eq!(coffee["description"], "Espresso");
    assert_eq!(coffee["endpoint"], "");
    let retiring = app.resource(ARM_2).await;
    assert_eq!(retiring["lock-token"], lock.token, "the lock runs on");
    assert_eq!(retiring["unavailable"], true);
    assert_eq!(retiring["unavailable-reason"], RETIRING_REASON);

    // Gone when its lock ends.
    assert_eq!(app.unlock(ARM_2, &lock.token).await.status, 200);
    assert_eq!(app.get(&format!("{RESOURCES}/{ARM_2}")).await.status, 404);
}

#[tokio::test]
async fn reload_retires_a_locked_resource_that_goes_when_its_lock_expires() {
    let (app, _dir, path) = spawn_from_file().await;
    app.locked(ARM_2, 60).await;
    write_lab(&path, &["board-arm-2"], "");
    app.post(RELOAD).await.expect_json(200);
    assert_eq!(
        app.lock_where("tag=arm&quantity=2").await.expect_json(400)["code"],
        "unsatisfiable",
        "a retiring board is lent to no one"
    );

    app.advance(Duration::from_secs(60));
    app.broker.sweep();

    assert_eq!(app.get(&format!("{RESOURCES}/{ARM_2}")).await.status, 404);
}

#[tokio::test]
async fn reload_leaves_api_created_resources_alone_and_brings_back_a_retiring_one() {
    let (app, _dir, path) = spawn_from_file().await;
    let lock = app.locked(PRINTER, 60).await;
    create(&app, json!({"name": "scope-1", "tags": "lab"}))
        .await
        .expect_json(201);
    write_lab(&path, &["printer"], "");
    let first = app.post(RELOAD).await.expect_json(200);
    assert_eq!(first["retiring"], json!(["printer"]));
    assert_eq!(first["removed"], json!([]));

    std::fs::write(&path, LAB).unwrap();
    let second = app.post(RELOAD).await.expect_json(200);

    assert_eq!(second["updated"], json!(["printer"]));
    assert_eq!(second["unchanged"], 4);
    assert_eq!(app.resource(PRINTER).await["unavailable"], false);
    assert_eq!(app.unlock(PRINTER, &lock.token).await.status, 200);
    assert_eq!(app.resource(PRINTER).await["lock-token"], "", "stays");
    assert_eq!(app.resource(6).await["name"], "scope-1");
}

#[tokio::test]
async fn reload_returns_400_with_the_parse_error_and_changes_nothing_when_the_file_is_bad() {
    let (app, _dir, path) = spawn_from_file().await;
    let before = app.get(RESOURCES).await.expect_json(200);
    std::fs::write(&path, "a:\n  tags: ok\nb:\n  max-lock-duration: soon\n").unwrap();

    let body = app.post(RELOAD).await.expect_json(400);

    assert_eq!(body["code"], "invalid_descriptor");
    assert_eq!(body["descriptor"], path.display().to_string());
    assert_eq!(
        (body["line"].clone(), body["column"].clone()),
        (json!(4), json!(22))
    );
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("lab.yaml"), "{message}");
    assert!(message.contains("b.max-lock-duration"), "{message}");
    assert!(message.contains("nothing was changed"), "{message}");
    assert_eq!(app.get(RESOURCES).await.expect_json(200), before);
}

#[tokio::test]
async fn reload_returns_400_naming_the_file_when_it_is_gone_or_empty() {
    let (app, dir, path) = spawn_from_file().await;

    std::fs::write(&path, "# nothing\n").unwrap();
    let empty = app.post(RELOAD).await.expect_json(400);
    std::fs::remove_file(&path).unwrap();
    let missing = app.post(RELOAD).await.expect_json(400);

    assert_eq!(empty["code"], "invalid_descriptor");
    assert!(
        empty["message"].as_str().unwrap().contains("no resources"),
        "{empty}"
    );
    assert!(
        missing["message"].as_str().unwrap().contains("cannot read"),
        "{missing}"
    );
    assert_eq!(listed(&app).await, lab_listing());
    drop(dir);
}

#[tokio::test]
async fn reload_returns_409_when_the_service_was_started_without_a_descriptor() {
    let app = spawn_app().await;

    let body = app.post(RELOAD).await.expect_json(409);

    assert_eq!(body["code"], "no_descriptor");
    assert!(
        body["message"].as_str().unwrap().contains("--config"),
        "{body}"
    );
}

#[tokio::test]
async fn admin_changes_are_on_the_event_stream() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url(
            "/api/v1/events?types=resource_added,resource_updated,resource_removed,force_unlocked",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    app.locked(PRINTER, 60).await;

    create(&app, json!({"name": "scope-1"}))
        .await
        .expect_json(201);
    patch(&app, 6, json!({"tags": "lab"}))
        .await
        .expect_json(200);
    delete(&app, PRINTER, "?force=true").await.expect_json(200);

    let kinds = read_events(response, 4).await;
    assert_eq!(
        kinds,
        [
            json!({"type": "resource_added", "resource_id": 6, "name": "scope-1", "at": T0.to_rfc3339()}),
            json!({"type": "resource_updated", "resource_id": 6, "fields": ["tags"], "at": T0.to_rfc3339()}),
            json!({"type": "force_unlocked", "resource_id": PRINTER, "fencing_token": 1,
                   "at": T0.to_rfc3339(), "reason": "resource deleted"}),
            json!({"type": "resource_removed", "resource_id": PRINTER, "name": "printer", "at": T0.to_rfc3339()}),
        ]
    );
}

/// The `data` of the next `n` server-sent events.
async fn read_events(mut response: reqwest::Response, n: usize) -> Vec<Value> {
    let mut buffer = String::new();
    let mut events = Vec::new();
    while events.len() < n {
        let chunk = tokio::time::timeout(Duration::from_secs(5), response.chunk())
            .await
            .expect("an event within the safety net")
            .unwrap()
            .expect("the stream stays open");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                events.push(serde_json::from_str(data).unwrap());
            }
        }
    }
    events
}
