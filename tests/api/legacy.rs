//! The pre-1.0 prefix `/rentabot/api/v1.0` still answers, marked deprecated.

use serde_json::json;

use crate::helpers::{COFFEE, UNKNOWN, held, spawn_app};

#[tokio::test]
async fn legacy_prefix_serves_the_resources_with_deprecation_headers_when_listed() {
    let app = spawn_app().await;

    let legacy = app.get("/rentabot/api/v1.0/resources").await;

    assert_eq!(legacy.header("deprecation"), "true");
    assert_eq!(legacy.header("link"), "</api/v1/resources>; rel=alternate");
    // The policy (docs/VERSIONING.md): 12 months' notice at least, counted from 0.1.0.
    let sunset = chrono::DateTime::parse_from_rfc2822(legacy.header("sunset")).unwrap();
    let first_release = chrono::DateTime::parse_from_rfc3339("2026-11-25T00:00:00Z").unwrap();
    assert!(
        sunset >= first_release + chrono::Duration::days(365),
        "{sunset}"
    );
    let current = app.get("/api/v1/resources").await.expect_json(200);
    assert_eq!(legacy.expect_json(200), current);
}

#[tokio::test]
async fn legacy_prefix_locks_and_unlocks_the_same_broker_when_mixed_with_the_current_one() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let lock = app
        .post(&format!("/rentabot/api/v1.0/resources/{COFFEE}/lock"))
        .await;
    let get = app
        .get(&format!("/rentabot/api/v1.0/resources/{COFFEE}"))
        .await;

    // Assert
    assert_eq!(lock.header("deprecation"), "true");
    assert_eq!(
        lock.header("link"),
        format!("</api/v1/resources/{COFFEE}/lock>; rel=alternate")
    );
    let held = held(lock);
    assert_eq!(get.header("link"), "</api/v1/resources/1>; rel=alternate");
    assert_eq!(
        get.expect_json(200)["resource"]["lock-token"],
        held.token.as_str()
    );
    assert_eq!(
        app.resource(COFFEE).await["lock-token"],
        held.token.as_str()
    );
    app.unlock(COFFEE, &held.token).await.expect_json(200);
}

#[tokio::test]
async fn legacy_prefix_serves_unlock_extend_and_lock_by_criteria_when_called() {
    let app = spawn_app().await;

    let lock = app
        .post("/rentabot/api/v1.0/resources/lock?tag=coffee")
        .await;
    let token = held(lock).token;
    let extend = app
        .post(&format!(
            "/rentabot/api/v1.0/resources/{COFFEE}/extend?lock-token={token}&additional-ttl=60"
        ))
        .await;
    let unlock = app
        .post(&format!(
            "/rentabot/api/v1.0/resources/{COFFEE}/unlock?lock-token={token}"
        ))
        .await;

    assert_eq!(extend.header("deprecation"), "true");
    assert_eq!(
        extend.header("link"),
        format!("</api/v1/resources/{COFFEE}/extend>; rel=alternate")
    );
    assert_eq!(
        extend.expect_json(200)["new-expires-at"],
        "2026-01-15T10:01:00.000Z"
    );
    assert_eq!(unlock.header("deprecation"), "true");
    assert_eq!(
        unlock.expect_json(200),
        json!({"message": "Resource unlocked"})
    );
}

#[tokio::test]
async fn legacy_prefix_marks_refusals_deprecated_too_when_the_request_fails() {
    let app = spawn_app().await;

    let reply = app
        .get(&format!("/rentabot/api/v1.0/resources/{UNKNOWN}"))
        .await;

    assert_eq!(reply.header("deprecation"), "true");
    assert_eq!(
        reply.header("link"),
        "</api/v1/resources/99>; rel=alternate"
    );
    assert_eq!(
        reply.expect_json(404),
        json!({"resource_id": 99, "message": "Resource not found", "code": "resource_not_found"})
    );
}

#[tokio::test]
async fn current_prefix_is_not_marked_deprecated_when_called() {
    let app = spawn_app().await;

    let reply = app.get("/api/v1/resources").await;

    assert_eq!(reply.status, 200);
    assert!(
        reply.headers.get("deprecation").is_none(),
        "{:?}",
        reply.headers
    );
    assert!(reply.headers.get("link").is_none(), "{:?}", reply.headers);
}
