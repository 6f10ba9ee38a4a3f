//! `POST /api/v1/resources/{id}/extend?lock-token=T&additional-ttl=N`.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{ARM_1, COFFEE, UNKNOWN, spawn_app};

#[tokio::test]
async fn extend_sets_the_expiry_to_now_plus_additional_ttl_when_the_token_holds_the_lock() {
    // Arrange: locked at 10:00:00 for 600 s (until 10:10:00); 100 s later...
    let app = spawn_app().await;
    let held = app.locked(COFFEE, 600).await;
    app.advance(Duration::from_secs(100));

    // Act: ...extend by 300 s.
    let reply = app.extend(COFFEE, &held.token, "300").await;

    // Assert: now + 300 = 10:06:40, not old expiry + 300 = 10:15:00.
    assert_eq!(
        reply.expect_json(200),
        json!({
            "message": "Lock extended",
            "new-expires-at": "2026-01-15T10:06:40.000Z",
            "total-lock-duration": 400,
        })
    );
    let resource = app.resource(COFFEE).await;
    assert_eq!(resource["lock-expires-at"], "2026-01-15T10:06:40.000Z");
    assert_eq!(resource["lock-acquired-at"], "2026-01-15T10:00:00.000Z");
    assert_eq!(resource["lock-token"], held.token.as_str());
    assert_eq!(resource["fencing-token"], held.fencing);
    assert_eq!(resource["lock-details"], "Resource locked");
}

#[tokio::test]
async fn extend_shortens_the_lock_when_now_plus_additional_ttl_is_before_the_old_expiry() {
    let app = spawn_app().await;
    let held = app.locked(COFFEE, 600).await;

    let reply = app.extend(COFFEE, &held.token, "10").await;

    assert_eq!(
        reply.expect_json(200),
        json!({
            "message": "Lock extended",
            "new-expires-at": "2026-01-15T10:00:10.000Z",
            "total-lock-duration": 10,
        })
    );
}

#[tokio::test]
async fn extend_reports_whole_seconds_when_the_lock_has_lasted_a_fraction_of_one() {
    let app = spawn_app().await;
    let held = app.locked(COFFEE, 600).await;
    app.advance(Duration::from_millis(1_500));

    let reply = app.extend(COFFEE, &held.token, "10").await;

    assert_eq!(
        reply.expect_json(200),
        json!({
            "message": "Lock extended",
            "new-expires-at": "2026-01-15T10:00:11.500Z",
            "total-lock-duration": 11,
        })
    );
}

#[tokio::test]
async fn extend_accepts_the_token_when_it_comes_in_the_x_lock_token_header() {
    let app = spawn_app().await;
    let held = app.locked(COFFEE, 600).await;
    let url = app.url(&format!(
        "/api/v1/resources/{COFFEE}/extend?additional-ttl=1200"
    ));

    let reply = app
        .send(app.client.post(url).header("X-Lock-Token", &held.token))
        .await;

    assert_eq!(
        reply.expect_json(200)["new-expires-at"],
        "2026-01-15T10:20:00.000Z"
    );
}

#[tokio::test]
async fn extend_can_be_repeated_when_each_stays_within_the_max_lock_duration() {
    let app = spawn_app().await;
    let held = app.locked(ARM_1, 3600).await;
    app.advance(Duration::from_secs(3000));
    app.extend(ARM_1, &held.token, "3000")
        .await
        .expect_json(200);
    app.advance(Duration::from_secs(2000));

    let reply = app.extend(ARM_1, &held.token, "2200").await;

    assert_eq!(
        reply.expect_json(200),
        json!({
            "message": "Lock extended",
            "new-expires-at": "2026-01-15T12:00:00.000Z",
            "total-lock-duration": 7200,
        })
    );
}

#[tokio::test]
async fn extend_returns_400_and_keeps_the_expiry_when_the_total_would_exceed_the_max() {
    // Arrange: board-arm-1 allows 7200 s. Locked at 10:00:00, 1000 s pass.
    let app = spawn_app().await;
    let held = app.locked(ARM_1, 3600).await;
    app.advance(Duration::from_secs(1000));

    // Act: 1000 + 6201 = 7201 s in all.
    let reply = app.extend(ARM_1, &held.token, "6201").await;

    // Assert
    assert_eq!(
        reply.expect_json(400),
        json!({
            "resource_id": 2,
            "total_duration": 7201,
            "max_lock_duration": 7200,
            "message": "Total lock duration (7201s) would exceed maximum allowed (7200s)",
            "code": "total_above_max",
        })
    );
    let resource = app.resource(ARM_1).await;
    assert_eq!(resource["lock-expires-at"], "2026-01-15T11:00:00.000Z");
    assert_eq!(resource["lock-token"], held.token.as_str());
}

#[tokio::test]
async fn extend_succeeds_when_the_total_equals_the_max_lock_duration() {
    let app = spawn_app().await;
    let held = app.locked(ARM_1, 3600).await;
    app.advance(Duration::from_secs(1000));

    let reply = app.extend(ARM_1, &held.token, "6200").await;

    assert_eq!(
        reply.expect_json(200),
        json!({
            "message": "Lock extended",
            "new-expires-at": "2026-01-15T12:00:00.000Z",
            "total-lock-duration": 7200,
        })
    );
}

#[tokio::test]
async fn extend_rounds_the_refused_total_up_when_it_exceeds_the_max_by_a_fraction() {
    let app = spawn_app().await;
    let held = app.locked(ARM_1, 3600).await;
    app.advance(Duration::from_millis(1));

    let reply = app.extend(ARM_1, &held.token, "7200").await;

    let body = reply.expect_json(400);
    assert_eq!(body["total_duration"], 7201);
    assert_eq!(body["code"], "total_above_max");
}

#[tokio::test]
async fn extend_returns_404_naming_the_id_when_the_resource_does_not_exist() {
    let app = spawn_app().await;

    let reply = app
        .extend(UNKNOWN, "6f1c2b8e-5a43-4b7e-9d2a-0c1e2f3a4b5c", "60")
        .await;

    assert_eq!(
        reply.expect_json(404),
        json!({"resource_id": 99, "message": "Resource not found", "code": "resource_not_found"})
    );
}

#[tokio::test]
async fn extend_returns_403_when_the_resource_is_not_locked() {
    let app = spawn_app().await;

    let reply = app
        .extend(COFFEE, "6f1c2b8e-5a43-4b7e-9d2a-0c1e2f3a4b5c", "60")
        .await;

    assert_eq!(
        reply.expect_json(403),
        json!({
            "resource_id": 1,
            "message": "Cannot extend lock on unlocked resource",
            "code": "not_locked",
        })
    );
}

#[tokio::test]
async fn extend_returns_403_without_revealing_the_token_when_the_token_is_wrong_or_missing() {
    let cases = [
        (Some("6f1c2b8e-5a43-4b7e-9d2a-0c1e2f3a4b5c"), "another UUID"),
        (Some("garbage"), "not a UUID"),
        (None, "no token"),
    ];
    for (token, why) in cases {
        // Arrange
        let app = spawn_app().await;
        let held = app.locked(COFFEE, 600).await;
        let mut query = vec![("additional-ttl", "60")];
        query.extend(token.map(|t| ("lock-token", t)));
        let url = app.url(&format!("/api/v1/resources/{COFFEE}/extend"));

        // Act
        let reply = app.send(app.client.post(url).query(&query)).await;

        // Assert
        assert!(!reply.text.contains(&held.token), "{why}: {}", reply.text);
        let body = reply.expect_json(403);
        assert_eq!(
            body["message"], "Cannot extend lock, the lock token is not valid.",
            "{why}"
        );
        // A missing token has a code of its own, and a hint on how to pass it.
        let code = if token.is_some() {
            "invalid_lock_token"
        } else {
            "missing_lock_token"
        };
        assert_eq!(body["code"], code, "{why}");
        assert_eq!(body["invalid-lock-token"], json!(token), "{why}");
        assert_eq!(body["resource"]["lock-token"], "<redacted>", "{why}");
        assert_eq!(
            app.resource(COFFEE).await["lock-expires-at"],
            "2026-01-15T10:10:00.000Z",
            "{why}"
        );
    }
}

#[tokio::test]
async fn extend_returns_400_when_additional_ttl_is_missing() {
    let app = spawn_app().await;
    let held = app.locked(COFFEE, 600).await;
    let url = app.url(&format!("/api/v1/resources/{COFFEE}/extend"));

    let reply = app
        .send(app.client.post(url).query(&[("lock-token", &held.token)]))
        .await;

    assert_eq!(
        reply.expect_json(400),
        json!({
            "message": "additional-ttl is required: the lock's new lifetime in seconds from now",
            "code": "missing_parameter",
        })
    );
}

#[tokio::test]
async fn extend_returns_400_saying_what_it_must_be_when_additional_ttl_is_invalid() {
    let cases = [
        ("", "empty"),
        ("0", "zero"),
        ("-5", "negative"),
        ("abc", "not a number"),
        ("1.5", "fractional"),
        ("1e3", "exponent notation"),
        ("3153600001", "over a century"),
        ("18446744073709551616", "overflows u64"),
        ("99999999999999999999999", "overflows any deadline"),
    ];
    for (additional, why) in cases {
        // Arrange
        let app = spawn_app().await;
        let held = app.locked(COFFEE, 600).await;

        // Act
        let reply = app.extend(COFFEE, &held.token, additional).await;

        // Assert
        assert_eq!(
            reply.expect_json(400),
            json!({
                "additional-ttl": additional,
                "message": format!("additional-ttl must be a whole number of seconds between 1 and 3153600000, got {additional:?}"),
                "code": "invalid_ttl",
            }),
            "{why}"
        );
        assert_eq!(
            app.resource(COFFEE).await["lock-expires-at"],
            "2026-01-15T10:10:00.000Z",
            "{why}"
        );
    }
}
