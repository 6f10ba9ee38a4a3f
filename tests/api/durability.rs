//! Acknowledged means committed (issue 10), over HTTP, with the state in a
//! [`MemoryStore`] the tests watch and disturb: an answer waits for the commit of what it
//! reports, a failing store fails closed and recovers, and a service started on the same
//! store restores what the first one acknowledged.
//!
//! The store's writer is a real thread: the tests wait for its commits through the store
//! itself (blocking on its condition variable, off the async runtime), never by sleeping.

use std::time::Duration;

use rentabot::store::MemoryStore;
use serde_json::{Value, json};
use tokio::time::timeout;

use crate::helpers::*;

/// The safety net around every wait: far longer than any commit takes.
const PATIENCE: Duration = Duration::from_secs(10);
/// How long a request that must not be answered yet is given to answer anyway.
const NOT_YET: Duration = Duration::from_millis(300);

/// Blocks (off the runtime) until a commit waits on the store's hold.
async fn commit_held(store: &MemoryStore) {
    let store = store.clone();
    timeout(
        PATIENCE,
        tokio::task::spawn_blocking(move || store.wait_for_held_commit()),
    )
    .await
    .expect("a commit began within the safety timeout")
    .unwrap();
}

/// Polls `/readiness` until it answers `status` (the writer retries on its own time).
async fn readiness_becomes(app: &TestApp, status: u16) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let reply = app.get("/readiness").await;
        if reply.status.as_u16() == status {
            return serde_json::from_str(&reply.text).unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readiness stayed {}: {}",
            reply.status,
            reply.text
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_lock_is_answered_only_once_it_is_committed() {
    let store = MemoryStore::new();
    let app = spawn_app_on(&store, lab()).await;
    store.hold();

    let lock = tokio::spawn({
        let (client, url) = (app.client.clone(), app.url("/api/v1/resources/2/lock"));
        async move { read(client.post(url).send().await.unwrap()).await }
    });
    commit_held(&store).await;
    let mut lock = std::pin::pin!(lock);
    assert!(
        timeout(NOT_YET, &mut lock).await.is_err(),
        "answered while its change was not committed"
    );

    store.release();
    let reply = timeout(PATIENCE, lock).await.unwrap().unwrap();
    let body = reply.expect_json(200);
    let stored = &store.image().resources[&rentabot::domain::ResourceId::new(ARM_1)];
    let lease = stored.lease().expect("the committed row holds the lock");
    assert!(lease.token.matches(body["lock-token"].as_str().unwrap()));
}

#[tokio::test]
async fn a_read_of_an_uncommitted_change_waits_for_its_commit() {
    let store = MemoryStore::new();
    let app = spawn_app_on(&store, lab()).await;
    store.hold();
    let lock = tokio::spawn({
        let (client, url) = (app.client.clone(), app.url("/api/v1/resources/2/lock"));
        async move { read(client.post(url).send().await.unwrap()).await }
    });
    commit_held(&store).await;

    // The broker already shows the lock; the store does not have it yet.
    let read_it = tokio::spawn({
        let (client, url) = (app.client.clone(), app.url("/api/v1/resources/2"));
        async move { read(client.get(url).send().await.unwrap()).await }
    });
    let mut read_it = std::pin::pin!(read_it);
    assert!(
        timeout(NOT_YET, &mut read_it).await.is_err(),
        "answered with a lock that could still be lost"
    );

    store.release();
    let shown = timeout(PATIENCE, read_it).await.unwrap().unwrap();
    assert_ne!(shown.expect_json(200)["resource"]["lock-token"], "");
    timeout(PATIENCE, lock)
        .await
        .unwrap()
        .unwrap()
        .expect_json(200);
}

#[tokio::test]
async fn a_failing_store_fails_closed_then_recovers_with_nothing_lost() {
    let store = MemoryStore::new();
    let app = spawn_app_on(&store, lab()).await;
    store.fail(Some("disk full"));

    // The lock runs, but its change cannot be committed: no success answer.
    let first = app.lock(ARM_1).await;
    let body = first.expect_json(503);
    assert_eq!(body["code"], "store_unavailable");
    assert_eq!(body["reason"], "disk full");
    assert_eq!(first.header("retry-after"), "1");
    let ready = app.get("/readiness").await;
    assert_eq!(ready.status, 503);
    let ready: Value = serde_json::from_str(&ready.text).unwrap();
    assert_eq!(ready["status"], "not_ready");
    assert!(
        ready["reasons"][0]
            .as_str()
            .unwrap()
            .contains("the store fails to commit: disk full"),
        "{ready}"
    );
    assert_eq!(app.get("/health").await.status, 200, "alive all the same");
    // While it fails, requests are refused before they change anything.
    assert_eq!(
        app.lock(X86_1).await.expect_json(503)["code"],
        "store_unavailable"
    );

    store.fail(None);
    readiness_becomes(&app, 200).await;
    // The first lock was retried until committed; the refused one never ran.
    assert_ne!(app.resource(ARM_1).await["lock-token"], "");
    assert_eq!(app.resource(X86_1).await["lock-token"], "");
    let image = store.image();
    let stored = |id: u32| image.resources[&rentabot::domain::ResourceId::new(id)].is_locked();
    assert!(stored(ARM_1) && !stored(X86_1));
}

#[tokio::test]
async fn a_service_started_on_the_same_store_restores_what_was_acknowledged() {
    let store = MemoryStore::new();
    let first = spawn_app_on(&store, lab()).await;
    let (held, queued) = first.make_every_kind_of_state().await;
    first.advance(Duration::from_secs(5));
    let resources = first.get("/api/v1/resources").await.text;
    let reservations = first.get("/api/v1/reservations").await.text;
    first.stopper.stop().await;

    let second = start(
        lab(),
        Options {
            persist: rentabot::app::Persist::Memory(store.clone()),
            clock_at: Some(first.broker.now()),
            ..Options::default()
        },
    )
    .await;
    assert_eq!(second.get("/api/v1/resources").await.text, resources);
    assert_eq!(second.get("/api/v1/reservations").await.text, reservations);
    // The restored lock is its holder's: its token unlocks it, and the fencing counter
    // went on from where it was (the reservation's two grants came after `held`).
    assert_eq!(second.unlock(ARM_1, &held.token).await.status, 200);
    let rid = queued["reservation_id"].as_str().unwrap();
    let fulfilled = second
        .get(&format!("/api/v1/reservations/{rid}"))
        .await
        .expect_json(200);
    assert_eq!(
        fulfilled["status"], "fulfilled",
        "served when board-arm-3 came"
    );
    let after = second.locked(PRINTER, 30).await;
    assert_eq!(
        after.fencing,
        held.fencing + 4,
        "fencing tokens go on, never back"
    );
}

#[tokio::test]
async fn a_lock_that_ran_out_while_the_service_was_down_expires_at_start_and_serves_the_queue() {
    let store = MemoryStore::new();
    let first = spawn_app_on(&store, lab()).await;
    first.locked(ARM_1, 60).await;
    first.locked(ARM_2, 3600).await;
    let queued = first
        .send(
            first
                .client
                .post(first.url("/api/v1/reservations"))
                .json(&json!({"tags": ["arm"], "auto_claim": true})),
        )
        .await
        .expect_json(201);
    assert_eq!(queued["status"], "pending");
    first.stopper.stop().await;

    // Down for two minutes: the 60 s lock ran out meanwhile.
    let second = start(
        lab(),
        Options {
            persist: rentabot::app::Persist::Memory(store.clone()),
            clock_at: T0.checked_add(Duration::from_secs(120)),
            ..Options::default()
        },
    )
    .await;
    let rid = queued["reservation_id"].as_str().unwrap();
    let served = second
        .get(&format!("/api/v1/reservations/{rid}"))
        .await
        .expect_json(200);
    assert_eq!(served["status"], "claimed");
    assert_eq!(served["resource_ids"], json!([ARM_1]));
    let expired = second
        .get("/api/v1/resources/expired")
        .await
        .expect_json(200);
    assert_eq!(expired["expired"][0]["resource-id"], ARM_1);
    assert_eq!(
        expired["expired"][0]["expired-at"], "2026-01-15T10:01:00.000Z",
        "expired at its deadline, not at the restart"
    );
}

#[tokio::test]
async fn a_retry_after_a_restart_replays_the_original_answer() {
    let store = MemoryStore::new();
    let first = spawn_app_on(&store, lab()).await;
    let request = |app: &TestApp| {
        app.client
            .post(app.url("/api/v1/resources/lock?tag=arm"))
            .header("Idempotency-Key", "job-42-attempt-1")
            .json(&json!({"ttl": 600}))
    };
    let original = first.send(request(&first)).await.expect_json(200);
    assert_eq!(store.records().len(), 1, "committed with the lock");
    first.stopper.stop().await;

    let second = start(
        lab(),
        Options {
            persist: rentabot::app::Persist::Memory(store.clone()),
            clock_at: Some(first.broker.now()),
            ..Options::default()
        },
    )
    .await;
    let retry = second.send(request(&second)).await;
    assert_eq!(retry.header("idempotent-replayed"), "true");
    assert_eq!(
        retry.expect_json(200),
        original,
        "the same answer, not a second lock"
    );
    let locked: Vec<Value> = second
        .get("/api/v1/resources?locked=true")
        .await
        .expect_json(200)["resources"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(locked.len(), 1);
}
