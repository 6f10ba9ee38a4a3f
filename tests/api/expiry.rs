//! TTL expiry with the manual clock: reads see the state at `now`, so nothing sleeps.

use std::time::Duration;

use serde_json::json;

use rentabot::domain::{Event, FencingToken, ResourceId, Timestamp};

use crate::helpers::{ARM_1, ARM_2, COFFEE, T0, held, spawn_app};

fn at(offset: Duration) -> Timestamp {
    T0.checked_add(offset).unwrap()
}

#[tokio::test]
async fn lock_stays_until_its_last_millisecond_and_is_released_when_its_ttl_has_elapsed() {
    // Arrange
    let app = spawn_app().await;
    let held = app.locked(COFFEE, 30).await;

    // Act + Assert: 29.999 s later it is still held...
    app.advance(Duration::from_millis(29_999));
    let resource = app.resource(COFFEE).await;
    assert_eq!(resource["lock-token"], held.token.as_str());
    assert_eq!(resource["lock-details"], "Resource locked");

    // ...and 1 ms more frees it.
    app.advance(Duration::from_millis(1));
    assert_eq!(
        app.resource(COFFEE).await,
        json!({
            "id": 1,
            "name": "coffee-machine",
            "description": "Kitchen coffee machine",
            "lock-token": "",
            "lock-details": "Auto-expired at 2026-01-15T10:00:30.000Z",
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
async fn lock_details_follow_the_1_0_transitions_when_locked_unlocked_and_expired() {
    let app = spawn_app().await;
    let details = |v: serde_json::Value| v["lock-details"].as_str().unwrap().to_owned();
    let mut seen = vec![details(app.resource(COFFEE).await)];

    let first = app.locked(COFFEE, 60).await;
    seen.push(details(app.resource(COFFEE).await));
    app.unlock(COFFEE, &first.token).await.expect_json(200);
    seen.push(details(app.resource(COFFEE).await));
    app.locked(COFFEE, 60).await;
    app.advance(Duration::from_secs(60));
    seen.push(details(app.resource(COFFEE).await));

    assert_eq!(
        seen,
        [
            "Resource is available",
            "Resource locked",
            "Resource available",
            "Auto-expired at 2026-01-15T10:01:00.000Z",
        ]
    );
}

#[tokio::test]
async fn list_and_page_show_the_lock_released_when_its_ttl_has_elapsed() {
    let app = spawn_app().await;
    app.locked(COFFEE, 30).await;
    app.advance(Duration::from_secs(30));

    let list = app.get("/api/v1/resources").await.expect_json(200);
    let page = app.get("/").await;

    assert_eq!(list["resources"][0]["lock-token"], "");
    assert_eq!(
        list["resources"][0]["lock-details"],
        "Auto-expired at 2026-01-15T10:00:30.000Z"
    );
    assert!(
        page.text
            .contains("<p id=\"utilisation\">0 of 5 locked (0%)</p>"),
        "{}",
        page.text
    );
    assert!(
        page.text.contains(
            "Lock auto-expired at <time class=\"local\" datetime=\"2026-01-15T10:00:30.000Z\">"
        ),
        "{}",
        page.text
    );
}

#[tokio::test]
async fn lock_is_granted_again_when_the_previous_lock_has_expired() {
    let app = spawn_app().await;
    let old = app.locked(COFFEE, 30).await;
    app.advance(Duration::from_secs(30));

    let new = app.locked(COFFEE, 30).await;

    assert_ne!(new.token, old.token);
    assert_eq!(new.fencing, 2);
    assert_eq!(new.body["locked-at"], "2026-01-15T10:00:30.000Z");
    assert_eq!(new.body["expires-at"], "2026-01-15T10:01:00.000Z");
}

#[tokio::test]
async fn lock_by_tags_picks_the_expired_resource_when_it_is_the_lowest_free_match() {
    let app = spawn_app().await;
    app.locked(ARM_1, 30).await;
    app.advance(Duration::from_secs(30));

    let granted = held(app.lock_where("tag=arm").await);

    assert_eq!(granted.body["resource"]["id"], ARM_1);
}

#[tokio::test]
async fn lock_by_tags_grants_the_expired_match_when_every_match_was_locked_until_now() {
    let app = spawn_app().await;
    app.locked(ARM_1, 30).await;
    app.locked(ARM_2, 60).await;
    app.advance(Duration::from_millis(29_999));
    app.lock_where("tag=arm").await.expect_json(403);

    app.advance(Duration::from_millis(1));
    let granted = held(app.lock_where("tag=arm").await);

    assert_eq!(granted.body["resource"]["id"], ARM_1);
}

#[tokio::test]
async fn unlock_returns_403_already_unlocked_when_the_lock_has_expired() {
    let app = spawn_app().await;
    let held = app.locked(COFFEE, 30).await;
    app.advance(Duration::from_secs(30));

    let reply = app.unlock(COFFEE, &held.token).await;

    assert_eq!(
        reply.expect_json(403),
        json!({"resource_id": 1, "message": "Resource is already unlocked", "code": "not_locked"})
    );
}

#[tokio::test]
async fn extend_returns_403_not_locked_when_the_lock_has_expired() {
    let app = spawn_app().await;
    let held = app.locked(COFFEE, 30).await;
    app.advance(Duration::from_secs(30));

    let reply = app.extend(COFFEE, &held.token, "60").await;

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
async fn lock_expires_at_the_new_deadline_not_the_first_when_it_was_extended() {
    // Arrange: 30 s lock, extended 20 s in by 30 s: due at 10:00:50.
    let app = spawn_app().await;
    let held = app.locked(COFFEE, 30).await;
    app.advance(Duration::from_secs(20));
    app.extend(COFFEE, &held.token, "30").await.expect_json(200);

    // Act + Assert: past the first deadline, up to the last millisecond of the new one.
    app.advance(Duration::from_millis(29_999));
    let resource = app.resource(COFFEE).await;
    assert_eq!(resource["lock-token"], held.token.as_str());
    assert_eq!(resource["lock-expires-at"], "2026-01-15T10:00:50.000Z");

    app.advance(Duration::from_millis(1));
    let resource = app.resource(COFFEE).await;
    assert_eq!(resource["lock-token"], "");
    assert_eq!(
        resource["lock-details"],
        "Auto-expired at 2026-01-15T10:00:50.000Z"
    );
}

#[tokio::test]
async fn lock_expires_at_the_earlier_deadline_when_extend_shortened_it() {
    let app = spawn_app().await;
    let held = app.locked(COFFEE, 600).await;
    app.extend(COFFEE, &held.token, "10").await.expect_json(200);

    app.advance(Duration::from_secs(10));

    assert_eq!(
        app.resource(COFFEE).await["lock-details"],
        "Auto-expired at 2026-01-15T10:00:10.000Z"
    );
}

#[tokio::test]
async fn extend_keeps_the_lock_when_it_lands_in_the_last_millisecond_before_expiry() {
    let app = spawn_app().await;
    let held = app.locked(COFFEE, 30).await;
    app.advance(Duration::from_millis(29_999));

    let reply = app.extend(COFFEE, &held.token, "30").await;

    assert_eq!(
        reply.expect_json(200),
        json!({
            "message": "Lock extended",
            "new-expires-at": "2026-01-15T10:00:59.999Z",
            "total-lock-duration": 59,
        })
    );
}

#[tokio::test]
async fn sweep_expires_due_locks_and_reports_the_next_deadline_when_called_directly() {
    // Arrange
    let app = spawn_app().await;
    app.locked(COFFEE, 30).await;
    app.locked(ARM_1, 60).await;
    assert_eq!(app.broker.sweep(), Some(at(Duration::from_secs(30))));
    let mut events = app.broker.subscribe();
    app.advance(Duration::from_secs(30));

    // Act
    let next = app.broker.sweep();

    // Assert
    assert_eq!(next, Some(at(Duration::from_secs(60))));
    assert_eq!(
        events.try_recv().expect("an expiry event").events,
        [Event::Expired {
            resource: ResourceId::new(COFFEE),
            fencing: FencingToken::new(1),
            deadline: at(Duration::from_secs(30)),
        }]
    );
    assert!(events.try_recv().is_err(), "exactly one change");
}
