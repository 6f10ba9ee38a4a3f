//! Operators: maintenance (now and scheduled), force unlock, the expiry history, lock
//! metadata and `expiring-soon`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{ARM_1, ARM_2, COFFEE, PRINTER, Reply, TestApp, UNKNOWN, X86_1, spawn_app};

/// 2026-01-15T10:00:00Z (the test clock's start) plus `secs`, as the API writes it.
fn t(secs: u64) -> String {
    let at = crate::helpers::T0
        .checked_add(Duration::from_secs(secs))
        .unwrap();
    at.to_rfc3339()
}

impl TestApp {
    async fn mark_unavailable(&self, id: u32, body: Value) -> Reply {
        self.post_json(&format!("/api/v1/resources/{id}/unavailable"), body)
            .await
    }

    async fn force_unlock(&self, id: u32, body: Value) -> Reply {
        self.post_json(&format!("/api/v1/resources/{id}/force-unlock"), body)
            .await
    }
}

#[tokio::test]
async fn unavailable_shows_reason_since_and_until_and_new_locks_get_409_with_the_reason() {
    let app = spawn_app().await;

    let body = app
        .mark_unavailable(COFFEE, json!({"reason": "descaling", "until": t(3600)}))
        .await
        .expect_json(200);

    assert_eq!(body["message"], "Resource marked unavailable");
    let resource = &body["resource"];
    assert_eq!(resource["unavailable"], true);
    assert_eq!(resource["unavailable-reason"], "descaling");
    assert_eq!(resource["unavailable-since"], t(0));
    assert_eq!(resource["unavailable-until"], t(3600));
    assert_eq!(app.resource(COFFEE).await, *resource);
    let refused = app.lock(COFFEE).await.expect_json(409);
    assert_eq!(refused["code"], "resource_unavailable");
    assert_eq!(refused["message"], "Resource is unavailable: descaling");
    assert_eq!(refused["until"], t(3600));
    let by_tag = app.lock_where("tag=coffee").await.expect_json(409);
    assert_eq!(by_tag["code"], "all_matches_unavailable");
}

#[tokio::test]
async fn a_held_lock_is_not_broken_and_the_resource_stays_out_once_it_is_released() {
    let app = spawn_app().await;
    let held = app.locked(ARM_1, 600).await;

    app.mark_unavailable(ARM_1, json!({"reason": "reflash"}))
        .await
        .expect_json(200);

    let resource = app.resource(ARM_1).await;
    assert_eq!(resource["lock-token"], held.token.as_str());
    assert_eq!(resource["unavailable"], true);
    app.unlock(ARM_1, &held.token).await.expect_json(200);
    assert_eq!(
        app.lock(ARM_1).await.expect_json(409)["code"],
        "resource_unavailable"
    );
    // Lock by tag passes over it.
    let other = app.lock_where("tag=arm").await.expect_json(200);
    assert_eq!(other["resource"]["id"], ARM_2);
}

#[tokio::test]
async fn available_returns_the_resource_to_service_and_serves_a_waiting_reservation() {
    let app = spawn_app().await;
    app.mark_unavailable(X86_1, json!({"reason": "fan"}))
        .await
        .expect_json(200);
    let created = app
        .post_json(
            "/api/v1/reservations",
            json!({"tags": ["x86"], "quantity": 1}),
        )
        .await
        .expect_json(201);
    let rid = created["reservation_id"].as_str().unwrap();
    let waiting = app
        .get(&format!("/api/v1/reservations/{rid}"))
        .await
        .expect_json(200);
    assert_eq!(waiting["status"], "pending");
    assert_eq!(waiting["waiting_for"]["unavailable"], 1);
    assert_eq!(waiting["waiting_for"]["free"], 0);

    let body = app
        .post(&format!("/api/v1/resources/{X86_1}/available"))
        .await
        .expect_json(200);

    assert_eq!(body["message"], "Resource available");
    assert_eq!(body["resource"]["unavailable"], false);
    assert_eq!(body["resource"]["unavailable-reason"], Value::Null);
    assert_eq!(
        body["resource"]["lock-details"], "Resource locked",
        "served at once"
    );
    let served = app
        .get(&format!("/api/v1/reservations/{rid}"))
        .await
        .expect_json(200);
    assert_eq!(served["status"], "fulfilled");
    assert_eq!(served["resource_ids"], json!([X86_1]));
}

#[tokio::test]
async fn at_until_the_resource_is_back_and_the_queue_is_served_in_the_same_step() {
    let app = spawn_app().await;
    app.mark_unavailable(X86_1, json!({"reason": "fan", "until": t(120)}))
        .await
        .expect_json(200);
    let created = app
        .post_json(
            "/api/v1/reservations",
            json!({"tags": ["x86"], "quantity": 1}),
        )
        .await
        .expect_json(201);
    let rid = created["reservation_id"].as_str().unwrap().to_owned();

    app.advance(Duration::from_millis(119_999));
    assert_eq!(app.resource(X86_1).await["unavailable"], true);
    app.advance(Duration::from_millis(1));
    app.broker.sweep();

    let resource = app.resource(X86_1).await;
    assert_eq!(resource["unavailable"], false);
    assert_eq!(resource["lock-acquired-at"], t(120));
    let served = app
        .get(&format!("/api/v1/reservations/{rid}"))
        .await
        .expect_json(200);
    assert_eq!(served["fulfilled_at"], t(120));
}

#[tokio::test]
async fn a_scheduled_window_drains_locks_that_would_cross_it_get_409_naming_it() {
    let app = spawn_app().await;

    let body = app
        .mark_unavailable(
            ARM_1,
            json!({"reason": "rack move", "from": t(600), "until": t(7200)}),
        )
        .await
        .expect_json(200);

    assert_eq!(
        body["message"],
        "Maintenance scheduled: the resource drains until the window opens"
    );
    assert_eq!(body["resource"]["unavailable"], false);
    assert_eq!(body["resource"]["unavailable-since"], t(600));
    let crossing = app.lock_for(ARM_1, 601).await.expect_json(409);
    assert_eq!(crossing["code"], "crosses_maintenance");
    assert_eq!(crossing["maintenance_from"], t(600));
    assert_eq!(crossing["maintenance_until"], t(7200));
    assert_eq!(crossing["longest_ttl"], 600);
    assert!(
        crossing["message"]
            .as_str()
            .unwrap()
            .contains("at most 600s"),
        "{crossing}"
    );
    // Exactly up to the window: granted; extending past it: refused.
    let fits = app.locked(ARM_1, 600).await;
    assert_eq!(fits.body["expires-at"], t(600));
    let extend = app.extend(ARM_1, &fits.token, "601").await.expect_json(409);
    assert_eq!(extend["code"], "crosses_maintenance");
    // At `from` the window opens.
    app.advance(Duration::from_secs(600));
    let resource = app.resource(ARM_1).await;
    assert_eq!(resource["unavailable"], true);
    assert_eq!(
        resource["lock-token"], "",
        "the lock ended as the window opened"
    );
}

#[tokio::test]
async fn lock_by_tag_is_granted_on_another_resource_when_one_drains() {
    let app = spawn_app().await;
    app.mark_unavailable(ARM_1, json!({"reason": "rack move", "from": t(60)}))
        .await
        .expect_json(200);

    let granted = app.lock_where("tag=arm").await.expect_json(200);

    assert_eq!(granted["resource"]["id"], ARM_2);
}

#[tokio::test]
async fn unavailable_refuses_a_missing_reason_bad_dates_and_an_empty_window() {
    let app = spawn_app().await;
    let cases = [
        (json!({}), "missing_reason", "reason"),
        (json!({"reason": "  "}), "missing_reason", "reason"),
        (json!({"reason": 5}), "invalid_body", "reason"),
        (
            json!({"reason": "x", "until": "tomorrow"}),
            "invalid_body",
            "until",
        ),
        (
            json!({"reason": "x", "until": "2026-01-15T12:00:00"}),
            "invalid_body",
            "until",
        ),
        (json!({"reason": "x", "from": 17}), "invalid_body", "from"),
    ];
    for (body, code, field) in cases {
        let refused = app
            .mark_unavailable(COFFEE, body.clone())
            .await
            .expect_json(400);
        assert_eq!(refused["code"], code, "{body}");
        assert_eq!(refused["field"], field, "{body}");
    }
    let empty = app
        .mark_unavailable(
            COFFEE,
            json!({"reason": "x", "from": t(60), "until": t(60)}),
        )
        .await
        .expect_json(400);
    assert_eq!(empty["code"], "invalid_window");
    let past = app
        .mark_unavailable(
            COFFEE,
            json!({"reason": "x", "until": "2020-01-01T00:00:00Z"}),
        )
        .await
        .expect_json(400);
    assert_eq!(past["code"], "invalid_window");
    assert_eq!(
        app.resource(COFFEE).await["unavailable-reason"],
        Value::Null
    );
    let unknown = app
        .mark_unavailable(UNKNOWN, json!({"reason": "x"}))
        .await
        .expect_json(404);
    assert_eq!(unknown["code"], "resource_not_found");
    let not_json = app
        .post_body(
            &format!("/api/v1/resources/{COFFEE}/unavailable"),
            b"reason=x",
            None,
        )
        .await
        .expect_json(400);
    assert_eq!(not_json["code"], "invalid_body");
}

#[tokio::test]
async fn force_unlock_frees_the_resource_shows_why_and_the_old_token_stops_working() {
    let app = spawn_app().await;
    let held = app.locked(PRINTER, 60).await;

    let body = app
        .force_unlock(PRINTER, json!({"reason": "job 4711 hung"}))
        .await
        .expect_json(200);

    assert_eq!(body["message"], "Resource force-unlocked");
    assert_eq!(
        body["resource"]["lock-details"],
        format!("Force-unlocked at {}: job 4711 hung", t(0))
    );
    assert_eq!(app.resource(PRINTER).await, body["resource"]);
    let stale = app.unlock(PRINTER, &held.token).await.expect_json(403);
    assert_eq!(stale["code"], "not_locked");
    app.locked(PRINTER, 60).await;
}

#[tokio::test]
async fn force_unlock_refuses_a_free_resource_and_a_missing_reason() {
    let app = spawn_app().await;

    let free = app
        .force_unlock(COFFEE, json!({"reason": "x"}))
        .await
        .expect_json(409);
    assert_eq!(free["code"], "not_locked");
    app.locked(COFFEE, 60).await;
    let no_reason = app.force_unlock(COFFEE, json!({})).await.expect_json(400);
    assert_eq!(no_reason["code"], "missing_reason");
    assert_eq!(
        app.resource(COFFEE).await["lock-details"],
        "Resource locked"
    );
}

#[tokio::test]
async fn lock_holder_and_note_show_on_the_lock_the_resource_and_the_expiry_history() {
    let app = spawn_app().await;
    let body = json!({"ttl": 30, "holder": "https://ci.example.com/job/42", "note": "nightly"});

    let locked = app
        .post_json(&format!("/api/v1/resources/{ARM_1}/lock"), body)
        .await
        .expect_json(200);

    assert_eq!(
        locked["resource"]["lock-holder"],
        "https://ci.example.com/job/42"
    );
    assert_eq!(locked["resource"]["lock-note"], "nightly");
    assert_eq!(
        app.resource(ARM_1).await["lock-holder"],
        "https://ci.example.com/job/42"
    );
    let by_tag = app
        .post_json("/api/v1/resources/lock?tag=x86", json!({"holder": "alice"}))
        .await
        .expect_json(200);
    assert_eq!(by_tag["resource"]["lock-holder"], "alice");
    assert_eq!(by_tag["resource"]["lock-note"], Value::Null);

    app.advance(Duration::from_secs(30));
    let history = app.get("/api/v1/resources/expired").await.expect_json(200);

    assert_eq!(history["capacity"], 1000);
    assert_eq!(
        history["expired"],
        json!([{
            "resource-id": ARM_1,
            "resource-name": "board-arm-1",
            "lock-holder": "https://ci.example.com/job/42",
            "lock-note": "nightly",
            "fencing-token": locked["fencing-token"],
            "lock-acquired-at": t(0),
            "expired-at": t(30),
            "reservation-id": null,
        }])
    );
    assert_eq!(app.resource(ARM_1).await["lock-holder"], Value::Null);
}

#[tokio::test]
async fn the_expiry_history_lists_newest_first_honours_limit_and_refuses_a_bad_one() {
    let app = spawn_app().await;
    app.locked(COFFEE, 10).await;
    app.locked(ARM_1, 20).await;
    app.advance(Duration::from_secs(20));

    let all = app.get("/api/v1/resources/expired").await.expect_json(200);
    let one = app
        .get("/api/v1/resources/expired?limit=1")
        .await
        .expect_json(200);

    let ids: Vec<&Value> = all["expired"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource-id"])
        .collect();
    assert_eq!(ids, [&json!(ARM_1), &json!(COFFEE)]);
    assert_eq!(one["expired"].as_array().unwrap().len(), 1);
    for bad in ["0", "1001", "x", "-1"] {
        let refused = app
            .get(&format!("/api/v1/resources/expired?limit={bad}"))
            .await
            .expect_json(400);
        assert_eq!(refused["parameter"], "limit", "{bad}");
    }
}

#[tokio::test]
async fn a_lock_is_expiring_soon_within_the_warning_period_of_its_end() {
    let app = spawn_app().await;
    let long = app.locked(ARM_1, 600).await;
    let short = app.locked(PRINTER, 60).await;

    assert_eq!(long.body["resource"]["expiring-soon"], false);
    assert_eq!(short.body["resource"]["expiring-soon"], true);
    app.advance(Duration::from_millis(299_999));
    assert_eq!(app.resource(ARM_1).await["expiring-soon"], false);
    app.advance(Duration::from_millis(1));
    assert_eq!(app.resource(ARM_1).await["expiring-soon"], true);
    assert_eq!(app.resource(COFFEE).await["expiring-soon"], false, "free");
}

#[tokio::test]
async fn the_operator_endpoints_answer_under_the_legacy_prefix_too() {
    let app = spawn_app().await;

    let body = app
        .post_json(
            &format!("/rentabot/api/v1.0/resources/{COFFEE}/unavailable"),
            json!({"reason": "descaling"}),
        )
        .await
        .expect_json(200);

    assert_eq!(body["resource"]["unavailable"], true);
}
