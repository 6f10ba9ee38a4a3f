//! The limits that keep one request's cost bounded (issue 9): tags per resource and per
//! request, resources per request, and pending reservations (429 with Retry-After).

use rentabot::domain::{Policy, ResourceSpec};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_app_with_policy};

/// `n` distinct tags, comma-separated.
fn tags(n: usize) -> String {
    (0..n)
        .map(|i| format!("t{i}"))
        .collect::<Vec<_>>()
        .join(",")
}

async fn post(app: &TestApp, path: &str, body: Value) -> crate::helpers::Reply {
    app.send(app.client.post(app.url(path)).json(&body)).await
}

#[tokio::test]
async fn a_resource_with_more_tags_than_allowed_is_refused_on_create_and_on_patch() {
    let app = spawn_app().await;

    let body = post(
        &app,
        "/api/v1/resources",
        json!({"name": "n", "tags": tags(65)}),
    )
    .await
    .expect_json(400);
    assert_eq!(body["code"], "invalid_tags");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("at most 64 tags"),
        "{body}"
    );
    assert_eq!(
        app.get("/api/v1/resources").await.expect_json(200)["resources"]
            .as_array()
            .unwrap()
            .len(),
        5
    );

    let patch = app
        .send(
            app.client
                .patch(app.url("/api/v1/resources/1"))
                .json(&json!({"tags": tags(65)})),
        )
        .await
        .expect_json(400);
    assert_eq!(patch["code"], "invalid_tags");
    let at_limit = post(
        &app,
        "/api/v1/resources",
        json!({"name": "n", "tags": tags(64)}),
    )
    .await;
    assert_eq!(at_limit.status, 201, "{}", at_limit.text);
}

#[tokio::test]
async fn a_request_naming_more_tags_than_allowed_is_refused_before_anything_is_looked_up() {
    let app = spawn_app().await;

    let by_query = app
        .lock_where(&format!("tag={}", tags(65)))
        .await
        .expect_json(400);
    assert_eq!(by_query["code"], "invalid_tags");
    assert_eq!(by_query["field"], "tag");
    let in_groups = post(
        &app,
        "/api/v1/resources/lock",
        json!({"groups": [{"tags": tags(65).split(',').collect::<Vec<_>>(), "quantity": 1}]}),
    )
    .await
    .expect_json(400);
    assert_eq!(in_groups["code"], "invalid_tags");
    assert_eq!(in_groups["field"], "groups[0].tags");
    let reserve = post(&app, "/api/v1/reservations", json!({"tags": tags(65)}))
        .await
        .expect_json(400);
    assert_eq!(reserve["code"], "invalid_tags");
    let long = post(
        &app,
        "/api/v1/reservations",
        json!({"tags": ["x".repeat(129)]}),
    )
    .await
    .expect_json(400);
    assert!(
        long["message"]
            .as_str()
            .unwrap()
            .contains("at most 128 bytes"),
        "{long}"
    );
}

#[tokio::test]
async fn a_request_for_more_resources_in_all_than_allowed_is_refused() {
    let app = spawn_app().await;
    let group = json!({"tags": ["ci"], "quantity": 10_000});

    let body = post(
        &app,
        "/api/v1/reservations",
        json!({"groups": [group, group]}),
    )
    .await
    .expect_json(400);

    assert_eq!(body["code"], "invalid_quantity");
    assert_eq!(body["quantity"], 20_000);
    assert_eq!(body["max"], 10_000);
}

#[tokio::test]
async fn a_reservation_that_would_wait_in_a_full_queue_gets_429_with_retry_after() {
    let lab = vec![
        ResourceSpec::named("board").with_tags(&["board"]),
        ResourceSpec::named("psu").with_tags(&["psu"]),
    ];
    let policy = Policy {
        max_pending: 2,
        ..Policy::default()
    };
    let app = spawn_app_with_policy(lab, policy).await;
    app.locked(1, 600).await;
    for _ in 0..2 {
        let waits = post(&app, "/api/v1/reservations", json!({"tags": ["board"]}))
            .await
            .expect_json(201);
        assert_eq!(waits["status"], "pending");
    }

    let full = post(&app, "/api/v1/reservations", json!({"tags": ["board"]})).await;

    assert_eq!(full.status, 429);
    assert_eq!(full.header("retry-after"), "10");
    let body = full.expect_json(429);
    assert_eq!(body["code"], "queue_full");
    assert_eq!(body["max_pending"], 2);
    // One that is served at once does not wait, so it is not refused.
    let served = post(&app, "/api/v1/reservations", json!({"tags": ["psu"]}))
        .await
        .expect_json(201);
    assert_eq!(served["status"], "fulfilled");
}
