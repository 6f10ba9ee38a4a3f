//! Fencing tokens: a broker-wide counter stamped on every grant, shown on the resource.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{ARM_1, COFFEE, X86_1, held, spawn_app};

#[tokio::test]
async fn fencing_tokens_strictly_increase_when_grants_follow_each_other() {
    // Arrange
    let app = spawn_app().await;
    let mut tokens = Vec::new();

    // Act: across resources, lock endpoints, unlock and relock, and expiry.
    let coffee = app.locked(COFFEE, 60).await;
    tokens.push(coffee.fencing);
    tokens.push(app.locked(ARM_1, 60).await.fencing);
    tokens.push(held(app.lock_where("tag=x86").await).fencing);
    app.unlock(COFFEE, &coffee.token).await.expect_json(200);
    tokens.push(app.locked(COFFEE, 60).await.fencing);
    app.advance(Duration::from_secs(60));
    tokens.push(app.locked(ARM_1, 60).await.fencing);
    tokens.push(held(app.lock_where("name=board-arm-2").await).fencing);

    // Assert
    assert_eq!(tokens, [1, 2, 3, 4, 5, 6]);
}

#[tokio::test]
async fn fencing_token_is_not_consumed_when_a_lock_is_refused() {
    let app = spawn_app().await;
    app.locked(COFFEE, 60).await;
    app.lock(COFFEE).await.expect_json(403);
    app.lock_for(ARM_1, 99_999).await.expect_json(400);
    app.lock_where("tag=nope").await.expect_json(404);

    let next = app.locked(ARM_1, 60).await;

    assert_eq!(next.fencing, 2);
}

#[tokio::test]
async fn fencing_token_shows_on_the_resource_when_it_is_locked() {
    let app = spawn_app().await;
    app.locked(COFFEE, 60).await;
    let x86 = app.locked(X86_1, 60).await;

    let resource = app.resource(X86_1).await;

    assert_eq!(x86.fencing, 2);
    assert_eq!(resource["fencing-token"], 2);
    assert_eq!(x86.body["resource"]["fencing-token"], 2);
}

#[tokio::test]
async fn fencing_token_is_kept_when_the_lock_is_extended() {
    let app = spawn_app().await;
    app.locked(COFFEE, 60).await;
    let arm = app.locked(ARM_1, 60).await;

    app.extend(ARM_1, &arm.token, "120").await.expect_json(200);

    assert_eq!(app.resource(ARM_1).await["fencing-token"], 2);
}

#[tokio::test]
async fn fencing_token_is_null_when_the_resource_is_free_again() {
    let app = spawn_app().await;
    let coffee = app.locked(COFFEE, 60).await;
    app.unlock(COFFEE, &coffee.token).await.expect_json(200);

    let resource = app.resource(COFFEE).await;

    assert_eq!(resource["fencing-token"], Value::Null);
}
