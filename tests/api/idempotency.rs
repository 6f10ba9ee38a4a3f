//! Retry-safe POSTs: `Idempotency-Key` on the lock endpoints and on create-reservation.

use std::time::Duration;

use rentabot::domain::descriptor;
use serde_json::{Value, json};

use crate::helpers::*;

const KEY: &str = "3f2c1a9e-0b7d-4c55-9a61-2b8f0e6d4c11";
const REPLAYED: &str = "Idempotent-Replayed";

/// `POST path` with `body` as JSON and, if given, an `Idempotency-Key`.
async fn post_keyed(app: &TestApp, path: &str, key: Option<&str>, body: Value) -> Reply {
    let mut request = app.client.post(app.url(path)).json(&body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    app.send(request).await
}

/// `POST /api/v1/resources/{id}/lock` with `{"ttl": ttl}` and the key.
async fn lock_keyed(app: &TestApp, id: u32, key: &str, ttl: u64) -> Reply {
    let path = format!("/api/v1/resources/{id}/lock");
    post_keyed(app, &path, Some(key), json!({ "ttl": ttl })).await
}

fn is_replayed(reply: &Reply) -> bool {
    match reply.headers.get(REPLAYED) {
        None => false,
        Some(value) => {
            assert_eq!(value, "true");
            true
        }
    }
}

/// The fencing token the next grant gets: fencing tokens count every grant, so this
/// tells how many locks were taken so far. Takes one lock on the printer, so the
/// printer must be free.
async fn next_fencing(app: &TestApp) -> u64 {
    app.locked(PRINTER, 10).await.fencing
}

#[tokio::test]
async fn retried_lock_returns_the_original_grant_when_the_key_is_the_same() {
    let app = spawn_app().await;
    let first = held(lock_keyed(&app, COFFEE, KEY, 60).await);

    let retry = lock_keyed(&app, COFFEE, KEY, 60).await;

    let body = retry.expect_json(200);
    assert!(is_replayed(&retry));
    assert_eq!(body, first.body);
    assert_eq!(body["lock-token"], first.token.as_str());
    assert_eq!(app.resource(COFFEE).await["fencing-token"], first.fencing);
    assert_eq!(
        next_fencing(&app).await,
        first.fencing + 1,
        "no second grant"
    );
}

#[tokio::test]
async fn retried_lock_by_criteria_keeps_the_first_match_when_the_key_is_the_same() {
    let app = spawn_app().await;
    let path = "/api/v1/resources/lock?tag=arm";
    let first = held(post_keyed(&app, path, Some(KEY), json!({"ttl": 60})).await);
    assert_eq!(first.body["resource"]["id"], ARM_1);

    // Without the key, this retry would lock the other arm board.
    let retry = post_keyed(&app, path, Some(KEY), json!({"ttl": 60})).await;

    assert_eq!(retry.expect_json(200), first.body);
    assert!(is_replayed(&retry));
    assert_eq!(app.resource(ARM_2).await["lock-token"], "");
}

#[tokio::test]
async fn reused_key_is_refused_with_422_when_the_body_differs() {
    let app = spawn_app().await;
    held(lock_keyed(&app, COFFEE, KEY, 60).await);

    let reply = lock_keyed(&app, COFFEE, KEY, 120).await;

    let body = reply.expect_json(422);
    assert_eq!(body["code"], "idempotency_key_reused");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key"),
        "{body}"
    );
}

#[tokio::test]
async fn same_key_is_another_request_when_the_path_differs() {
    let app = spawn_app().await;

    let coffee = held(lock_keyed(&app, COFFEE, KEY, 60).await);
    let arm = lock_keyed(&app, ARM_1, KEY, 60).await;

    assert!(!is_replayed(&arm));
    assert_eq!(held(arm).fencing, coffee.fencing + 1);
}

#[tokio::test]
async fn refused_lock_is_not_remembered_so_the_retry_succeeds_once_the_resource_is_free() {
    let app = spawn_app().await;
    let other = app.locked(COFFEE, 60).await;
    let refused = lock_keyed(&app, COFFEE, KEY, 60).await;
    assert_eq!(refused.expect_json(403)["code"], "already_locked");
    app.unlock(COFFEE, &other.token).await.expect_json(200);

    let retry = lock_keyed(&app, COFFEE, KEY, 60).await;

    assert!(!is_replayed(&retry));
    let granted = held(retry);
    assert_eq!(granted.fencing, other.fencing + 1);
}

/// The second request arrives while the first is still running, for certain: the first
/// is held inside its handler (a reload reading a FIFO the test writes only later), and
/// the test lets it finish only once the second is counted as waiting for it. Run one
/// after the other, the second could not be waiting, and the test would time out.
#[cfg(unix)]
#[tokio::test]
async fn concurrent_requests_with_one_key_run_once_and_both_get_the_first_answer() {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("lab.yaml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let app = start(
        lab(),
        Options {
            descriptor: Some(fifo.clone()),
            ..Options::default()
        },
    )
    .await;
    let reload = || {
        app.client
            .post(app.url("/api/v1/admin/reload"))
            .header("Idempotency-Key", KEY)
            .send()
    };

    let first = tokio::spawn(reload());
    // A FIFO opens for writing (without blocking) only once a reader has it open: then
    // the first request is inside its handler, its key in flight.
    let mut writer = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&fifo)
            {
                Ok(writer) => return writer,
                Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    })
    .await
    .expect("the first reload opened the descriptor");
    let second = tokio::spawn(reload());
    app.until_waiting(1).await;
    writer
        .write_all(format!("{LAB}board-new:\n    tags: \"ci\"\n").as_bytes())
        .unwrap();
    drop(writer);

    let first = read(first.await.unwrap().unwrap()).await;
    let second = read(second.await.unwrap().unwrap()).await;

    let body = first.expect_json(200);
    assert_eq!(body["added"], json!(["board-new"]));
    assert!(!is_replayed(&first));
    assert!(is_replayed(&second), "the second waited, then replayed");
    assert_eq!(second.expect_json(200), body);
    let names = app.get("/api/v1/resources").await.expect_json(200);
    assert_eq!(
        names["resources"].as_array().unwrap().len(),
        6,
        "one reload"
    );
}

#[tokio::test]
async fn key_is_forgotten_once_the_retention_has_passed() {
    let app = spawn_app().await;
    let first = held(lock_keyed(&app, COFFEE, KEY, 60).await);

    // Remembered for 24 h (more than the 60 s ttl), even after the lock expired.
    app.advance(Duration::from_secs(24 * 3600 - 1));
    let late = lock_keyed(&app, COFFEE, KEY, 60).await;
    assert!(is_replayed(&late));
    assert_eq!(late.expect_json(200), first.body);

    app.advance(Duration::from_secs(60 + 2));
    let forgotten = lock_keyed(&app, COFFEE, KEY, 60).await;

    assert!(!is_replayed(&forgotten));
    let again = held(forgotten);
    assert_ne!(again.token, first.token);
    assert_eq!(again.fencing, first.fencing + 1);
}

#[tokio::test]
async fn key_is_kept_for_the_lock_ttl_when_that_is_longer_than_a_day() {
    let lab = descriptor::parse("rig:\n    max-lock-duration: 259200\n")
        .expect("a valid descriptor")
        .resources;
    let app = spawn_app_with(lab).await;
    let first = held(lock_keyed(&app, 1, KEY, 48 * 3600).await);

    app.advance(Duration::from_secs(48 * 3600 - 1));
    let late = lock_keyed(&app, 1, KEY, 48 * 3600).await;
    assert!(
        is_replayed(&late),
        "the lock still holds: its answer is kept"
    );
    assert_eq!(late.expect_json(200), first.body);

    app.advance(Duration::from_secs(2));
    assert!(!is_replayed(&lock_keyed(&app, 1, KEY, 48 * 3600).await));
}

#[tokio::test]
async fn requests_without_a_key_behave_as_before() {
    let app = spawn_app().await;

    assert_eq!(app.lock_for(COFFEE, 60).await.status, 200);
    let second = app.lock_for(COFFEE, 60).await;

    assert_eq!(second.expect_json(403)["code"], "already_locked");
    assert!(!is_replayed(&second));
}

#[tokio::test]
async fn invalid_key_is_refused_with_400_and_nothing_is_locked() {
    let app = spawn_app().await;
    let too_long = "k".repeat(256);
    let cases = [
        ("", "empty"),
        (too_long.as_str(), "over 255 characters"),
        ("two words", "a space is not visible ASCII"),
    ];
    for (key, why) in cases {
        let reply = lock_keyed(&app, COFFEE, key, 60).await;

        let body = reply.expect_json(400);
        assert_eq!(body["code"], "invalid_idempotency_key", "{why}");
        assert!(
            body["message"].as_str().unwrap().contains("visible ASCII"),
            "{why}: {body}"
        );
    }
    assert_eq!(app.resource(COFFEE).await["lock-token"], "");
}

#[tokio::test]
async fn retried_reservation_is_queued_once_when_the_key_is_the_same() {
    let app = spawn_app().await;
    let request = json!({"tags": ["ci", "linux"], "quantity": 1});
    let first = post_keyed(&app, "/api/v1/reservations", Some(KEY), request.clone()).await;
    let created = first.expect_json(201);

    let retry = post_keyed(&app, "/api/v1/reservations", Some(KEY), request).await;

    assert!(is_replayed(&retry));
    assert_eq!(retry.expect_json(201), created);
    assert_eq!(retry.header("location"), first.header("location"));
    let list = app.get("/api/v1/reservations").await.expect_json(200);
    assert_eq!(list["reservations"].as_array().unwrap().len(), 1, "{list}");
}

#[tokio::test]
async fn reservation_key_is_kept_for_its_wait_plus_its_ttl_when_that_is_longer_than_a_day() {
    let app = spawn_app().await;
    app.locked(X86_1, 600).await;
    // May wait two days, then hold the board for an hour.
    let request = json!({"tags": ["x86"], "max_wait_time": 172_800, "ttl": 3600});
    let first = post_keyed(&app, "/api/v1/reservations", Some(KEY), request.clone()).await;
    let created = first.expect_json(201);

    app.advance(Duration::from_secs(172_800 + 3600 - 1));
    let late = post_keyed(&app, "/api/v1/reservations", Some(KEY), request.clone()).await;
    assert!(is_replayed(&late), "still within wait + ttl");
    assert_eq!(late.expect_json(201), created);

    app.advance(Duration::from_secs(2));
    let fresh = post_keyed(&app, "/api/v1/reservations", Some(KEY), request).await;
    assert!(!is_replayed(&fresh));
    assert_ne!(
        fresh.expect_json(201)["reservation_id"],
        created["reservation_id"]
    );
}

#[tokio::test]
async fn replay_on_the_legacy_prefix_keeps_the_deprecation_headers() {
    let app = spawn_app().await;
    let path = format!("/rentabot/api/v1.0/resources/{COFFEE}/lock");
    let first = post_keyed(&app, &path, Some(KEY), json!({"ttl": 60})).await;

    let retry = post_keyed(&app, &path, Some(KEY), json!({"ttl": 60})).await;

    assert!(is_replayed(&retry));
    assert_eq!(retry.text, first.text);
    assert_eq!(retry.header("deprecation"), "true");
}
