//! `POST /api/v1/resources/{id}/unlock`: the token by query or header, and refusals that
//! never give the holder's token away.

use serde_json::{Value, json};

use crate::helpers::{COFFEE, Held, Reply, TestApp, UNKNOWN, spawn_app};

/// The coffee machine as a refused caller sees it while `held` holds it.
fn redacted_coffee_machine() -> Value {
    json!({
        "id": 1,
        "name": "coffee-machine",
        "description": "Kitchen coffee machine",
        "lock-token": "<redacted>",
        "lock-details": "Resource locked",
        "endpoint": "tcp://192.168.1.50",
        "tags": "coffee,kitchen,food",
        "lock-acquired-at": "2026-01-15T10:00:00.000Z",
        "lock-expires-at": "2026-01-15T10:10:00.000Z",
        "max-lock-duration": 86400,
        "fencing-token": 1,
        "lock-holder": null,
        "lock-note": null,
        "unavailable": false,
        "unavailable-reason": null,
        "unavailable-since": null,
        "unavailable-until": null,
    })
}

/// Asserts the refusal does not contain the holder's token, in any spelling.
fn assert_token_not_leaked(reply: &Reply, held: &Held) {
    let text = reply.text.to_lowercase();
    assert!(!text.contains(&held.token), "token leaked: {}", reply.text);
    assert!(
        !text.contains(&held.token.replace('-', "")),
        "token leaked: {}",
        reply.text
    );
    for (name, value) in &reply.headers {
        let value = value.to_str().unwrap_or_default().to_lowercase();
        assert!(!value.contains(&held.token), "token leaked in {name}");
    }
}

async fn assert_still_held(app: &TestApp, held: &Held) {
    let resource = app.resource(COFFEE).await;
    assert_eq!(resource["lock-token"], held.token.as_str());
    assert_eq!(resource["lock-details"], "Resource locked");
}

#[tokio::test]
async fn unlock_frees_the_resource_when_the_token_is_given_in_the_query() {
    // Arrange
    let app = spawn_app().await;
    let held = app.locked(COFFEE, 600).await;

    // Act
    let reply = app.unlock(COFFEE, &held.token).await;

    // Assert
    assert_eq!(
        reply.expect_json(200),
        json!({"message": "Resource unlocked"})
    );
    assert_eq!(
        app.resource(COFFEE).await,
        json!({
            "id": 1,
            "name": "coffee-machine",
            "description": "Kitchen coffee machine",
            "lock-token": "",
            "lock-details": "Resource available",
            "endpoint": "tcp://192.168.1.50",
            "tags": "coffee,kitchen,food",
            "lock-acquired-at": null,
            "lock-expires-at": null,
            "max-lock-duration": 86400,
            "fencing-token": null,
            "lock-holder": null,
            "lock-note": null,
            "expiring-soon": false,
            "unavailable": false,
            "unavailable-reason": null,
            "unavailable-since": null,
            "unavailable-until": null,
        })
    );
}

#[tokio::test]
async fn unlock_frees_the_resource_when_the_token_is_given_in_the_x_lock_token_header() {
    let app = spawn_app().await;
    let held = app.locked(COFFEE, 600).await;

    let reply = app.unlock_with_header(COFFEE, &held.token).await;

    assert_eq!(
        reply.expect_json(200),
        json!({"message": "Resource unlocked"})
    );
    assert_eq!(
        app.resource(COFFEE).await["lock-details"],
        "Resource available"
    );
}

#[tokio::test]
async fn unlock_accepts_the_token_when_it_differs_only_in_letter_case_or_blanks() {
    let cases = [
        (str::to_uppercase as fn(&str) -> String, "upper case"),
        (|t: &str| format!(" {t} "), "blanks around it"),
    ];
    for (spell, why) in cases {
        let app = spawn_app().await;
        let held = app.locked(COFFEE, 600).await;

        let reply = app.unlock(COFFEE, &spell(&held.token)).await;

        assert_eq!(reply.status, 200, "{why}: {}", reply.text);
    }
}

#[tokio::test]
async fn unlock_returns_404_naming_the_id_when_the_resource_does_not_exist() {
    let app = spawn_app().await;

    let reply = app
        .unlock(UNKNOWN, "6f1c2b8e-5a43-4b7e-9d2a-0c1e2f3a4b5c")
        .await;

    assert_eq!(
        reply.expect_json(404),
        json!({"resource_id": 99, "message": "Resource not found", "code": "resource_not_found"})
    );
}

#[tokio::test]
async fn unlock_returns_403_when_the_resource_was_never_locked() {
    let app = spawn_app().await;

    let reply = app
        .unlock(COFFEE, "6f1c2b8e-5a43-4b7e-9d2a-0c1e2f3a4b5c")
        .await;

    assert_eq!(
        reply.expect_json(403),
        json!({"resource_id": 1, "message": "Resource is already unlocked", "code": "not_locked"})
    );
}

#[tokio::test]
async fn unlock_returns_403_when_the_resource_is_already_unlocked() {
    let app = spawn_app().await;
    let held = app.locked(COFFEE, 600).await;
    app.unlock(COFFEE, &held.token).await.expect_json(200);

    let reply = app.unlock(COFFEE, &held.token).await;

    assert_eq!(
        reply.expect_json(403),
        json!({"resource_id": 1, "message": "Resource is already unlocked", "code": "not_locked"})
    );
}

#[tokio::test]
async fn unlock_returns_403_without_revealing_the_token_when_the_token_is_wrong() {
    let cases = [
        ("6f1c2b8e-5a43-4b7e-9d2a-0c1e2f3a4b5c", "another UUID"),
        ("not-a-token", "not a UUID"),
        ("", "empty"),
    ];
    for (wrong, why) in cases {
        // Arrange
        let app = spawn_app().await;
        let held = app.locked(COFFEE, 600).await;

        // Act
        let reply = app.unlock(COFFEE, wrong).await;

        // Assert
        assert_token_not_leaked(&reply, &held);
        assert_eq!(
            reply.expect_json(403),
            json!({
                "resource": redacted_coffee_machine(),
                "invalid-lock-token": wrong,
                "message": "Cannot unlock resource, the lock token is not valid.",
                "code": "invalid_lock_token",
            }),
            "{why}"
        );
        assert_still_held(&app, &held).await;
    }
}

#[tokio::test]
async fn unlock_returns_403_without_revealing_the_token_when_the_header_token_is_wrong() {
    let app = spawn_app().await;
    let held = app.locked(COFFEE, 600).await;

    let reply = app
        .unlock_with_header(COFFEE, "6f1c2b8e-5a43-4b7e-9d2a-0c1e2f3a4b5c")
        .await;

    assert_token_not_leaked(&reply, &held);
    assert_eq!(
        reply.expect_json(403)["code"],
        "invalid_lock_token",
        "{}",
        reply.text
    );
    assert_still_held(&app, &held).await;
}

#[tokio::test]
async fn unlock_returns_403_without_revealing_the_token_when_no_token_is_given() {
    let app = spawn_app().await;
    let held = app.locked(COFFEE, 600).await;

    let reply = app
        .post(&format!("/api/v1/resources/{COFFEE}/unlock"))
        .await;

    assert_token_not_leaked(&reply, &held);
    assert_eq!(
        reply.expect_json(403),
        json!({
            "resource": redacted_coffee_machine(),
            "invalid-lock-token": null,
            "hint": "no lock token was given: pass the token the lock returned as ?lock-token=TOKEN (with a hyphen) or in the X-Lock-Token header",
            "message": "Cannot unlock resource, the lock token is not valid.",
            "code": "missing_lock_token",
        })
    );
    assert_still_held(&app, &held).await;
}

#[tokio::test]
async fn unlock_returns_403_when_the_token_belongs_to_an_earlier_lock_on_the_resource() {
    // Arrange: the first holder unlocked, then someone else locked the resource.
    let app = spawn_app().await;
    let first = app.locked(COFFEE, 600).await;
    app.unlock(COFFEE, &first.token).await.expect_json(200);
    let second = app.locked(COFFEE, 600).await;

    // Act
    let reply = app.unlock(COFFEE, &first.token).await;

    // Assert
    assert_token_not_leaked(&reply, &second);
    assert_eq!(reply.expect_json(403)["code"], "invalid_lock_token");
    assert_still_held(&app, &second).await;
}

#[tokio::test]
async fn unlock_returns_403_when_the_token_belongs_to_another_resource() {
    let app = spawn_app().await;
    let coffee = app.locked(COFFEE, 600).await;
    let other = app.locked(crate::helpers::ARM_1, 600).await;

    let reply = app.unlock(COFFEE, &other.token).await;

    assert_token_not_leaked(&reply, &coffee);
    assert_eq!(
        reply.expect_json(403)["invalid-lock-token"],
        other.token.as_str()
    );
    assert_still_held(&app, &coffee).await;
}

#[tokio::test]
async fn unlock_returns_400_when_the_id_is_not_an_integer() {
    let app = spawn_app().await;

    let reply = app.post("/api/v1/resources/one/unlock?lock-token=x").await;

    assert_eq!(reply.expect_json(400)["code"], "invalid_resource_id");
}

/// Issue 9: a query token and a header token that differ were settled by the query; now
/// which one the caller meant is not guessed.
#[tokio::test]
async fn unlock_refuses_a_query_and_a_header_token_that_differ_and_takes_them_when_they_agree() {
    let cases = [
        (true, false, 400, "right in the query, wrong in the header"),
        (false, true, 400, "wrong in the query, right in the header"),
        (true, true, 200, "the same token in both"),
    ];
    for (query_is_right, header_is_right, status, why) in cases {
        // Arrange
        let app = spawn_app().await;
        let held = app.locked(COFFEE, 600).await;
        let wrong = "6f1c2b8e-5a43-4b7e-9d2a-0c1e2f3a4b5c";
        let pick = |right: bool| if right { held.token.as_str() } else { wrong };
        let url = app.url(&format!("/api/v1/resources/{COFFEE}/unlock"));

        // Act
        let reply = app
            .send(
                app.client
                    .post(url)
                    .query(&[("lock-token", pick(query_is_right))])
                    .header("X-Lock-Token", pick(header_is_right)),
            )
            .await;

        // Assert
        assert_eq!(reply.status, status, "{why}: {}", reply.text);
    }
}
