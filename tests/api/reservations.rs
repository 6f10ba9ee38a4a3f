//! The reservation queue over HTTP: the 1.0 endpoints, priorities, holds, groups, label
//! expressions, long-polling, and direct N-of-M locks.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

const RESERVATIONS: &str = "/api/v1/reservations";

/// An RFC 3339 timestamp `secs` after [`T0`].
fn ts(secs: u64) -> String {
    T0.checked_add(Duration::from_secs(secs))
        .unwrap()
        .to_rfc3339()
}

impl TestApp {
    async fn reserve(&self, body: Value) -> Reply {
        self.send(self.client.post(self.url(RESERVATIONS)).json(&body))
            .await
    }

    /// Creates a reservation, expecting 201; returns its JSON.
    async fn reserved(&self, body: Value) -> Value {
        self.reserve(body).await.expect_json(201)
    }

    async fn reservation(&self, id: &str) -> Reply {
        self.get(&format!("{RESERVATIONS}/{id}")).await
    }

    async fn claim(&self, id: &str) -> Reply {
        self.post(&format!("{RESERVATIONS}/{id}/claim")).await
    }

    async fn cancel(&self, id: &str) -> Reply {
        self.send(
            self.client
                .delete(self.url(&format!("{RESERVATIONS}/{id}"))),
        )
        .await
    }
}

fn rid(reservation: &Value) -> &str {
    reservation["reservation_id"].as_str().expect("an id")
}

#[tokio::test]
async fn holder_and_note_of_a_reservation_show_on_it_and_on_the_locks_it_is_granted() {
    let app = spawn_app().await;

    let body = app
        .reserve(json!({"tags": ["x86"], "quantity": 1, "holder": "ci/job/9", "note": "soak"}))
        .await
        .expect_json(201);

    assert_eq!(
        (&body["holder"], &body["note"]),
        (&json!("ci/job/9"), &json!("soak"))
    );
    let resource = app.resource(X86_1).await;
    assert_eq!(resource["lock-holder"], "ci/job/9");
    assert_eq!(resource["lock-note"], "soak");
    let refused = app
        .reserve(json!({"tags": ["x86"], "holder": 1}))
        .await
        .expect_json(400);
    assert_eq!(refused["field"], "holder");
}

#[tokio::test]
async fn create_returns_201_and_fulfils_at_once_when_the_resources_are_free() {
    let app = spawn_app().await;

    let reply = app.reserve(json!({"tags": ["arm"], "quantity": 2})).await;

    let body = reply.expect_json(201);
    let id = rid(&body).to_owned();
    assert!(id.starts_with("res_") && id.len() == 36, "{id}");
    assert_eq!(
        reply.header("location"),
        format!("/api/v1/reservations/{id}")
    );
    assert_eq!(
        keys(&body),
        [
            "reservation_id",
            "status",
            "tags",
            "quantity",
            "ttl",
            "position_in_queue",
            "created_at",
            "expires_at",
            "fulfilled_at",
            "claim_expires_at",
            "claimed_at",
            "resource_ids",
            "lock_tokens",
            "priority",
            "auto_claim",
            "holder",
            "note",
            "groups",
            "waiting_for",
        ]
    );
    let tokens = body["lock_tokens"].as_array().unwrap().clone();
    assert_eq!(
        body,
        json!({
            "reservation_id": id, "status": "fulfilled", "tags": ["arm"], "quantity": 2,
            "ttl": 3600, "position_in_queue": null, "created_at": ts(0),
            "expires_at": ts(3600), "fulfilled_at": ts(0), "claim_expires_at": ts(60),
            "claimed_at": null, "resource_ids": [ARM_1, ARM_2], "lock_tokens": tokens,
            "priority": 5, "auto_claim": false, "holder": null, "note": null,
            "groups": [{"tags": ["arm"], "quantity": 2, "resource_ids": [ARM_1, ARM_2]}],
            "waiting_for": null,
        })
    );
    // The tokens are the resources' locks, usable with the ordinary unlock endpoint.
    for (resource, token) in [ARM_1, ARM_2].into_iter().zip(&tokens) {
        assert_eq!(app.resource(resource).await["lock-token"], *token);
    }
    app.unlock(ARM_1, tokens[0].as_str().unwrap())
        .await
        .expect_json(200);
}

#[tokio::test]
async fn create_queues_with_position_and_waiting_for_when_resources_are_locked() {
    let app = spawn_app().await;
    app.locked(ARM_1, 100).await;
    app.locked(ARM_2, 300).await;

    let body = app.reserved(json!({"tags": ["arm"], "quantity": 1})).await;

    assert_eq!(body["status"], "pending");
    assert_eq!(body["position_in_queue"], 1);
    assert_eq!(body["resource_ids"], json!([]));
    assert_eq!(body["lock_tokens"], json!([]));
    assert_eq!(
        body["waiting_for"],
        json!({
            "matching": 2, "locked": 2, "next_release_at": ts(100), "unavailable": 0,
            "held_for_earlier": 0, "free": 0, "estimated_available_at": ts(100),
            "groups": [{"quantity": 1, "matching": 2, "locked": 2, "next_release_at": ts(100),
                        "unavailable": 0, "held_for_earlier": 0, "free": 0}],
        })
    );
}

#[tokio::test]
async fn unlock_serves_the_waiting_reservation_with_a_lock_that_starts_then() {
    let app = spawn_app().await;
    let held = app.locked(X86_1, 600).await;
    let pending = app.reserved(json!({"tags": ["x86"], "ttl": 100})).await;
    app.advance(Duration::from_secs(50));

    app.unlock(X86_1, &held.token).await.expect_json(200);

    let body = app.reservation(rid(&pending)).await.expect_json(200);
    assert_eq!(body["status"], "fulfilled");
    assert_eq!(body["resource_ids"], json!([X86_1]));
    assert_eq!(body["fulfilled_at"], ts(50));
    assert_eq!(body["claim_expires_at"], ts(110));
    let resource = app.resource(X86_1).await;
    assert_eq!(resource["lock-acquired-at"], ts(50));
    assert_eq!(
        resource["lock-expires-at"],
        ts(150),
        "the TTL counts from fulfilment"
    );
    assert_eq!(resource["lock-token"], body["lock_tokens"][0]);
}

#[tokio::test]
async fn claim_confirms_a_fulfilled_reservation_and_refuses_every_other_state() {
    let app = spawn_app().await;
    let fulfilled = app.reserved(json!({"tags": ["x86"]})).await;
    let pending = app.reserved(json!({"tags": ["x86"]})).await;
    let id = rid(&fulfilled);
    app.advance(Duration::from_secs(10));

    let claimed = app.claim(id).await.expect_json(200);
    assert_eq!(claimed["status"], "claimed");
    assert_eq!(claimed["claimed_at"], ts(10));

    let again = app.claim(id).await.expect_json(409);
    assert_eq!(
        again,
        json!({"reservation_id": id, "status": "claimed",
               "message": "Reservation is already claimed: unlock its resources with its lock tokens",
               "code": "reservation_wrong_state"})
    );
    let early = app.claim(rid(&pending)).await.expect_json(409);
    assert_eq!(early["status"], "pending");
    assert_eq!(early["code"], "reservation_wrong_state");
    let unknown = "res_0123456789abcdef0123456789abcdef";
    assert_eq!(
        app.claim(unknown).await.expect_json(404),
        json!({"reservation_id": unknown, "message": "Reservation not found", "code": "reservation_not_found"})
    );
}

#[tokio::test]
async fn claim_returns_410_once_the_claim_window_is_over_and_the_resources_are_free() {
    let app = spawn_app().await;
    let fulfilled = app.reserved(json!({"tags": ["x86"]})).await;
    let id = rid(&fulfilled);

    app.advance(Duration::from_secs(59));
    assert_eq!(app.resource(X86_1).await["lock-details"], "Resource locked");
    app.advance(Duration::from_secs(1));

    assert_eq!(
        app.claim(id).await.expect_json(410),
        json!({"reservation_id": id,
               "message": "Claim window expired: the reservation's resources were released",
               "code": "claim_window_over"})
    );
    assert_eq!(app.resource(X86_1).await["lock-token"], "");
    let gone = app.reservation(id).await.expect_json(404);
    assert_eq!(gone["ended"], "claim_expired");
    assert_eq!(gone["ended_at"], ts(60));
}

#[tokio::test]
async fn cancel_withdraws_a_pending_reservation_only() {
    let app = spawn_app().await;
    let fulfilled = app.reserved(json!({"tags": ["x86"]})).await;
    let pending = app.reserved(json!({"tags": ["x86"]})).await;

    let reply = app.cancel(rid(&pending)).await;
    assert_eq!(reply.status, 204);
    assert_eq!(reply.text, "");
    let gone = app.reservation(rid(&pending)).await.expect_json(404);
    assert_eq!(
        gone,
        json!({"reservation_id": rid(&pending), "ended": "cancelled", "ended_at": ts(0),
               "message": "Reservation not found", "code": "reservation_not_found"})
    );
    assert_eq!(app.cancel(rid(&pending)).await.status, 404);

    let refused = app.cancel(rid(&fulfilled)).await.expect_json(409);
    assert_eq!(refused["status"], "fulfilled");
    assert_eq!(
        app.cancel("not-an-id").await.expect_json(404)["reservation_id"],
        "not-an-id"
    );
}

#[tokio::test]
async fn list_shows_pending_reservations_in_queue_order_then_the_others() {
    let app = spawn_app().await;
    let served = app.reserved(json!({"tags": ["x86"]})).await;
    let normal = app.reserved(json!({"tags": ["x86"]})).await;
    let urgent = app.reserved(json!({"tags": ["x86"], "priority": 1})).await;

    let body = app.get(RESERVATIONS).await.expect_json(200);

    let listed: Vec<(&str, &Value)> = body["reservations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["reservation_id"].as_str().unwrap(),
                &r["position_in_queue"],
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (rid(&urgent), &json!(1)),
            (rid(&normal), &json!(2)),
            (rid(&served), &Value::Null)
        ]
    );
    assert_eq!(
        body["reservations"][0]["waiting_for"],
        Value::Null,
        "only on GET one"
    );
}

#[tokio::test]
async fn create_returns_400_naming_what_to_fix_when_the_request_is_invalid() {
    let cases = [
        (json!({}), "no_criterion", "no criteria"),
        (json!({"tags": []}), "invalid_tags", "empty tags"),
        (json!({"tags": [1]}), "invalid_tags", "tags not strings"),
        (json!({"tags": {"a": 1}}), "invalid_tags", "tags not a list"),
        (
            json!({"tags": ["ci"], "quantity": 0}),
            "invalid_quantity",
            "zero quantity",
        ),
        (
            json!({"tags": ["ci"], "quantity": -1}),
            "invalid_quantity",
            "negative quantity",
        ),
        (
            json!({"tags": ["ci"], "quantity": "two"}),
            "invalid_quantity",
            "quantity not a number",
        ),
        (json!({"tags": ["ci"], "ttl": 0}), "invalid_ttl", "zero ttl"),
        (
            json!({"tags": ["ci"], "ttl": -5}),
            "invalid_ttl",
            "negative ttl",
        ),
        (
            json!({"tags": ["ci"], "max_wait_time": 0}),
            "invalid_ttl",
            "zero wait",
        ),
        (
            json!({"tags": ["ci"], "priority": 0}),
            "invalid_priority",
            "priority 0",
        ),
        (
            json!({"tags": ["ci"], "priority": 11}),
            "invalid_priority",
            "priority 11",
        ),
        (
            json!({"tags": ["ci"], "auto_claim": "yes"}),
            "invalid_body",
            "auto_claim not a bool",
        ),
        (
            json!({"expr": "ci &&"}),
            "invalid_expr",
            "expression cut short",
        ),
        (
            json!({"expr": 5}),
            "invalid_groups",
            "expression not a string",
        ),
        (
            json!({"tags": ["ci"], "expr": "ci"}),
            "conflicting_parameters",
            "tags and expr",
        ),
        (json!({"groups": []}), "invalid_groups", "no groups"),
        (
            json!({"groups": [{"quantity": 1}]}),
            "no_criterion",
            "a group without criteria",
        ),
        (
            json!({"groups": [{"tags": ["ci"]}], "tags": ["ci"]}),
            "conflicting_parameters",
            "groups and tags",
        ),
        (
            json!({"tags": ["ci"], "quantity": 3, "ttl": 7201}),
            "unsatisfiable",
            "ttl over every max",
        ),
        (
            json!({"tags": ["arm"], "quantity": 3}),
            "unsatisfiable",
            "more than exist",
        ),
    ];
    let app = spawn_app().await;
    for (body, code, why) in cases {
        let reply = app.reserve(body).await.expect_json(400);
        assert_eq!(reply["code"], code, "{why}: {reply}");
        assert!(
            reply["message"].as_str().unwrap().len() > 20,
            "{why}: {reply}"
        );
    }
    let not_json = app
        .post_body(RESERVATIONS, b"{tags", Some("application/json"))
        .await;
    assert_eq!(not_json.expect_json(400)["code"], "invalid_body");
    assert_eq!(
        app.get(RESERVATIONS).await.expect_json(200)["reservations"],
        json!([])
    );
}

#[tokio::test]
async fn an_expression_error_points_at_its_position() {
    let app = spawn_app().await;
    let body = app
        .reserve(json!({"expr": "linux && (x86 || arm"}))
        .await
        .expect_json(400);
    assert_eq!(body["position"], 20);
    assert_eq!(body["expr"], "linux && (x86 || arm");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("expr: invalid expression at position 20"),
        "{body}"
    );
    let lock = app.lock_where("expr=a%20%26%20b").await.expect_json(400);
    assert_eq!(lock["code"], "invalid_expr");
    assert_eq!(lock["position"], 2);
}

#[tokio::test]
async fn create_returns_404_when_no_resource_matches_a_group() {
    let app = spawn_app().await;
    let body = app
        .reserve(json!({"tags": ["gpu"], "quantity": 1}))
        .await
        .expect_json(404);
    assert_eq!(
        body,
        json!({"tags": ["gpu"], "message": "No resource found matching the tag(s)", "code": "no_match"})
    );
}

#[tokio::test]
async fn groups_are_granted_together_and_reported_per_group() {
    let app = spawn_app().await;

    let body = app
        .reserved(json!({"groups": [
            {"tags": ["linux"], "quantity": 2},
            {"expr": "arm && !x86", "quantity": 1},
        ]}))
        .await;

    assert_eq!(body["status"], "fulfilled");
    assert_eq!(body["tags"], json!([]));
    assert_eq!(body["quantity"], 3);
    assert_eq!(
        body["groups"],
        json!([
            {"tags": ["linux"], "quantity": 2, "resource_ids": [ARM_1, X86_1]},
            {"expr": "arm && !x86", "quantity": 1, "resource_ids": [ARM_2]},
        ])
    );
}

#[tokio::test]
async fn auto_claim_makes_the_fulfilled_reservation_claimed() {
    let app = spawn_app().await;
    let body = app
        .reserved(json!({"tags": ["x86"], "auto_claim": true}))
        .await;
    assert_eq!(body["status"], "claimed");
    assert_eq!(body["claimed_at"], ts(0));
    assert_eq!(body["claim_expires_at"], Value::Null);
    assert_eq!(body["auto_claim"], true);
}

#[tokio::test]
async fn a_waiting_reservation_holds_back_the_free_resources_it_matches() {
    let app = spawn_app().await;
    let arm1 = app.locked(ARM_1, 600).await;
    let big = app.reserved(json!({"tags": ["arm"], "quantity": 2})).await;
    assert_eq!(big["status"], "pending");

    // ARM_2 is free but kept for the big reservation.
    let refused = app.lock(ARM_2).await.expect_json(403);
    assert_eq!(
        refused,
        json!({"resource_id": ARM_2, "reservation_id": rid(&big),
               "message": format!("Cannot lock the requested resource, it is held for waiting reservation {}", rid(&big)),
               "code": "held_for_reservation"})
    );
    let by_tag = app.lock_where("tag=arm").await.expect_json(403);
    assert_eq!(by_tag["held_for"], json!([rid(&big)]));
    // A resource no waiter wants is still served (backfill).
    app.lock_where("tag=x86").await.expect_json(200);

    app.unlock(ARM_1, &arm1.token).await.expect_json(200);
    let served = app.reservation(rid(&big)).await.expect_json(200);
    assert_eq!(served["resource_ids"], json!([ARM_1, ARM_2]));
}

#[tokio::test]
async fn a_three_resource_reservation_is_served_while_single_requests_keep_arriving() {
    let app = spawn_app().await;
    let mut holders = Vec::new();
    for id in [ARM_1, X86_1, ARM_2] {
        holders.push((id, app.locked(id, 600).await));
    }
    let big = app.reserved(json!({"tags": ["ci"], "quantity": 3})).await;
    let mut small = Vec::new();
    for (id, held) in holders {
        app.advance(Duration::from_secs(5));
        small.push(app.reserved(json!({"tags": ["ci"]})).await);
        app.lock_where("tag=ci").await.expect_json(403);
        app.unlock(id, &held.token).await.expect_json(200);
    }

    let big = app.reservation(rid(&big)).await.expect_json(200);
    assert_eq!(big["status"], "fulfilled");
    assert_eq!(big["resource_ids"], json!([ARM_1, X86_1, ARM_2]));
    for s in &small {
        let s = app.reservation(rid(s)).await.expect_json(200);
        assert_eq!(s["status"], "pending");
    }
}

#[tokio::test]
async fn long_poll_returns_as_soon_as_the_reservation_is_fulfilled() {
    let app = spawn_app().await;
    let held = app.locked(X86_1, 600).await;
    let pending = app.reserved(json!({"tags": ["x86"]})).await;
    let url = app.url(&format!("{RESERVATIONS}/{}?wait=120", rid(&pending)));
    let poll = tokio::spawn(app.client.get(url).send());
    // The change comes once the poll waits for it, never before: only its wake-up can
    // answer this poll before the 120 s are up.
    app.until_waiting(1).await;

    app.unlock(X86_1, &held.token).await.expect_json(200);

    // The safety net is far below the 120 s wait: a poll that did not wake fails here.
    let response = tokio::time::timeout(Duration::from_secs(30), poll)
        .await
        .expect("the long-poll answered when the status changed")
        .unwrap()
        .unwrap();
    let body = read(response).await.expect_json(200);
    assert_eq!(body["status"], "fulfilled");
}

#[tokio::test]
async fn long_poll_answers_at_once_when_the_status_changed_before_it_came() {
    let app = spawn_app().await;
    let held = app.locked(X86_1, 600).await;
    let pending = app.reserved(json!({"tags": ["x86"]})).await;
    app.unlock(X86_1, &held.token).await.expect_json(200);

    // The caller last saw `pending`; the change came between its two requests.
    let path = format!("{RESERVATIONS}/{}?wait=120&status=pending", rid(&pending));
    let body = tokio::time::timeout(Duration::from_secs(30), app.get(&path))
        .await
        .expect("answered without waiting")
        .expect_json(200);

    assert_eq!(body["status"], "fulfilled");
}

#[tokio::test]
async fn long_poll_returns_the_unchanged_state_when_the_wait_ends() {
    let app = spawn_app().await;
    app.locked(X86_1, 600).await;
    let pending = app.reserved(json!({"tags": ["x86"]})).await;

    let body = app
        .get(&format!("{RESERVATIONS}/{}?wait=0.05", rid(&pending)))
        .await
        .expect_json(200);

    assert_eq!(body["status"], "pending");
    assert_eq!(body["position_in_queue"], 1);
    let changed = app
        .get(&format!(
            "{RESERVATIONS}/{}?wait=120&status=fulfilled",
            rid(&pending)
        ))
        .await
        .expect_json(200);
    assert_eq!(
        changed["status"], "pending",
        "answered at once: not what the caller saw"
    );
    let bad_status = app
        .get(&format!(
            "{RESERVATIONS}/{}?wait=1&status=done",
            rid(&pending)
        ))
        .await
        .expect_json(400);
    assert_eq!(bad_status["code"], "invalid_status");
    for bad in ["-1", "301", "soon", ""] {
        let reply = app
            .get(&format!("{RESERVATIONS}/{}?wait={bad}", rid(&pending)))
            .await
            .expect_json(400);
        assert_eq!(reply["code"], "invalid_wait", "{bad:?}");
    }
}

#[tokio::test]
async fn long_poll_reports_the_end_of_a_reservation_that_expires() {
    let app = spawn_app().await;
    app.locked(X86_1, 600).await;
    let pending = app
        .reserved(json!({"tags": ["x86"], "max_wait_time": 30}))
        .await;
    let url = app.url(&format!("{RESERVATIONS}/{}?wait=120", rid(&pending)));
    let poll = tokio::spawn(app.client.get(url).send());
    app.until_waiting(1).await;

    app.advance(Duration::from_secs(30));
    app.broker.sweep();

    let response = tokio::time::timeout(Duration::from_secs(30), poll)
        .await
        .expect("the long-poll answered when the reservation ended")
        .unwrap()
        .unwrap();
    let body = read(response).await.expect_json(404);
    assert_eq!(body["ended"], "expired");
    assert_eq!(body["ended_at"], ts(30));
}

#[tokio::test]
async fn lock_with_quantity_locks_every_resource_or_none() {
    let app = spawn_app().await;

    let body = app.lock_where("tag=arm&quantity=2").await.expect_json(200);
    assert_eq!(keys(&body), ["message", "lock-tokens", "locks"]);
    assert_eq!(body["message"], "Resources locked");
    let locks = body["locks"].as_array().unwrap();
    let ids: Vec<&Value> = locks.iter().map(|l| &l["resource"]["id"]).collect();
    assert_eq!(ids, [&json!(ARM_1), &json!(ARM_2)]);
    assert_eq!(locks[0]["group"], 0);
    assert_eq!(locks[0]["lock-token"], body["lock-tokens"][0]);
    assert_eq!(locks[1]["message"], "Resource locked");

    let refused = app
        .lock_where("tag=linux&quantity=2")
        .await
        .expect_json(403);
    assert_eq!(
        refused,
        json!({"group": 0, "tags": ["linux"], "quantity": 2, "available": 1,
               "message": "Not enough available resources: 2 wanted, 1 available now; nothing was locked (reserve them to wait in the queue)",
               "code": "not_enough_available"})
    );
    assert_eq!(
        app.resource(X86_1).await["lock-token"],
        "",
        "nothing was locked"
    );
    assert_eq!(
        app.lock_where("tag=linux&quantity=9")
            .await
            .expect_json(400)["code"],
        "unsatisfiable"
    );
    // A bad quantity, and a quantity with a criterion that names one resource: a rule
    // between parameters has a code of its own (issue 9).
    for (bad, code) in [
        ("tag=ci&quantity=0", "invalid_quantity"),
        ("tag=ci&quantity=x", "invalid_quantity"),
        ("id=1&quantity=2", "conflicting_parameters"),
        ("name=printer&quantity=1", "conflicting_parameters"),
    ] {
        assert_eq!(
            app.lock_where(bad).await.expect_json(400)["code"],
            code,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn lock_with_groups_in_the_body_locks_them_together() {
    let app = spawn_app().await;
    let body =
        json!({"ttl": 60, "groups": [{"tags": ["coffee"]}, {"expr": "x86 || arm", "quantity": 2}]});

    let reply = app
        .send(
            app.client
                .post(app.url("/api/v1/resources/lock"))
                .json(&body),
        )
        .await
        .expect_json(200);

    let got: Vec<(u64, u64)> = reply["locks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["group"].as_u64().unwrap(),
                l["resource"]["id"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [(0, COFFEE as u64), (1, ARM_1 as u64), (1, X86_1 as u64)]
    );
    assert_eq!(reply["locks"][0]["expires-at"], ts(60));
    let both = app
        .send(
            app.client
                .post(app.url("/api/v1/resources/lock?tag=ci"))
                .json(&body),
        )
        .await
        .expect_json(400);
    assert_eq!(both["code"], "conflicting_parameters");
}

#[tokio::test]
async fn lock_by_expression_takes_the_lowest_free_match() {
    let app = spawn_app().await;
    let body = app
        .lock_where("expr=linux%20%26%26%20!arm")
        .await
        .expect_json(200);
    assert_eq!(body["resource"]["id"], X86_1);
    let refused = app
        .lock_where("expr=linux%20%26%26%20!arm")
        .await
        .expect_json(403);
    assert_eq!(refused["expr"], "linux && !arm");
    assert_eq!(
        app.lock_where("expr=gpu").await.expect_json(404)["expr"],
        "gpu"
    );
    assert_eq!(
        app.lock_where("tag=ci&expr=arm").await.expect_json(400)["code"],
        "conflicting_parameters"
    );
}

#[tokio::test]
async fn unlock_batch_releases_every_lock_or_none() {
    let app = spawn_app().await;
    let a = app.locked(ARM_1, 600).await;
    let b = app.locked(ARM_2, 600).await;
    let url = app.url("/api/v1/resources/unlock-batch");

    let bad = json!({"lock_tokens": [a.token, "nope", b.token, a.token]});
    let refused = app
        .send(app.client.post(&url).json(&bad))
        .await
        .expect_json(403);
    assert_eq!(
        refused,
        json!({"errors": [
                  {"index": 1, "message": "not a lock token (a UUID)"},
                  {"index": 3, "message": "repeats an earlier token of this batch"}],
               "message": "Nothing was unlocked: 2 of the lock tokens cannot be unlocked",
               "code": "batch_refused"})
    );
    assert_ne!(app.resource(ARM_1).await["lock-token"], "");

    let ok = json!({"lock_tokens": [b.token, a.token]});
    let body = app
        .send(app.client.post(&url).json(&ok))
        .await
        .expect_json(200);
    assert_eq!(
        body,
        json!({"message": "Resources unlocked", "resource_ids": [ARM_2, ARM_1]})
    );
    let again = app
        .send(app.client.post(&url).json(&ok))
        .await
        .expect_json(403);
    assert_eq!(again["errors"][0]["index"], 0);
    for body in [
        json!({}),
        json!({"lock_tokens": []}),
        json!({"lock_tokens": [1]}),
    ] {
        let reply = app
            .send(app.client.post(&url).json(&body))
            .await
            .expect_json(400);
        assert_eq!(reply["code"], "invalid_body", "{body}");
    }
}

#[tokio::test]
async fn reservations_answer_under_the_legacy_prefix_too() {
    let app = spawn_app().await;
    let reply = app
        .send(
            app.client
                .post(app.url("/rentabot/api/v1.0/reservations"))
                .json(&json!({"tags": ["x86"]})),
        )
        .await;
    assert_eq!(reply.header("deprecation"), "true");
    assert_eq!(reply.expect_json(201)["status"], "fulfilled");
}
