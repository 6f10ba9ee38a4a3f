//! Ownership with `--auth-config` (issue 11): a lock or reservation is its maker's. Its
//! token shows only to its owner and admins, only they may unlock, extend, claim or
//! cancel it (403 `not_owner`), `Idempotency-Key` answers are each caller's own, and a
//! key's caps answer 429. Without auth nothing changes (the rest of this binary).

use std::sync::Arc;

use rentabot::app::{self, Persist, Settings};
use rentabot::runtime::ManualClock;
use rentabot::store::PersistUrl;
use reqwest::{Client, Method};
use serde_json::{Value, json};

use crate::helpers::{
    ARM_1, ARM_2, COFFEE, Options, PRINTER, Reply, T0, TestApp, X86_1, lab, start,
};

const ADMIN: &str = "admin-key-0123456789";
const OPERATOR: &str = "operator-key-0123456789";
const ALICE: &str = "alice-key-0123456789";
const BOB: &str = "bob-key-0123456789";
const CAROL: &str = "carol-key-0123456789";
const HIDDEN: &str = "<hidden>";

/// Two users, bob with a cap of two locks, carol with one waiting reservation.
fn config() -> String {
    format!(
        r#"
api_keys:
  - {{name: "root", key: "{ADMIN}", role: admin}}
  - {{name: "ops", key: "{OPERATOR}", role: operator}}
  - {{name: "alice", key: "{ALICE}", role: user}}
  - {{name: "bob", key: "{BOB}", role: user, max_locks: 2}}
  - {{name: "carol", key: "{CAROL}", role: user, max_pending_reservations: 1}}
rate_limit: {{requests_per_second: 1000, burst: 1000}}
anonymous_rate_limit: {{requests_per_second: 1000, burst: 1000}}
"#
    )
}

fn write_config(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("auth.yaml");
    std::fs::write(&path, config()).unwrap();
    path
}

async fn app() -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let auth = write_config(&dir);
    let app = start(
        lab(),
        Options {
            auth: Some(auth),
            ..Options::default()
        },
    )
    .await;
    (app, dir)
}

/// `method path` as the caller of `key`, with `body` as JSON if given.
async fn call(app: &TestApp, key: &str, method: Method, path: &str, body: Option<Value>) -> Reply {
    let mut request = app
        .client
        .request(method, app.url(path))
        .header("X-API-Key", key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    app.send(request).await
}

async fn get(app: &TestApp, key: &str, path: &str) -> Value {
    call(app, key, Method::GET, path, None)
        .await
        .expect_json(200)
}

async fn post(app: &TestApp, key: &str, path: &str, body: Value) -> Reply {
    call(app, key, Method::POST, path, Some(body)).await
}

/// Locks `id` as `key`'s caller; its token.
async fn lock_as(app: &TestApp, key: &str, id: u32) -> String {
    let body = post(
        app,
        key,
        &format!("/api/v1/resources/{id}/lock"),
        json!({"ttl": 60}),
    )
    .await
    .expect_json(200);
    body["lock-token"].as_str().unwrap().to_owned()
}

/// The `lock-token` of resource `id` in every view that shows one, as `key` sees it:
/// the 1.0 list, the single resource, a list query.
async fn tokens_seen(app: &TestApp, key: &str, id: u32) -> [String; 3] {
    let pick = |list: &Value| {
        list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .map(|r| r["lock-token"].as_str().unwrap().to_owned())
            .unwrap()
    };
    let list = get(app, key, "/api/v1/resources").await;
    let one = get(app, key, &format!("/api/v1/resources/{id}")).await;
    let query = get(app, key, "/api/v1/resources?locked=true&limit=100").await;
    [
        pick(&list),
        one["resource"]["lock-token"].as_str().unwrap().to_owned(),
        pick(&query),
    ]
}

#[tokio::test]
async fn another_users_lock_token_is_hidden_in_every_view_and_shown_to_its_owner_and_admins() {
    let (app, _dir) = app().await;
    let token = lock_as(&app, ALICE, COFFEE).await;

    let mine = [token.clone(), token.clone(), token.clone()];
    assert_eq!(tokens_seen(&app, ALICE, COFFEE).await, mine);
    assert_eq!(tokens_seen(&app, ADMIN, COFFEE).await, mine);
    let hidden = [HIDDEN.to_owned(), HIDDEN.to_owned(), HIDDEN.to_owned()];
    assert_eq!(tokens_seen(&app, BOB, COFFEE).await, hidden);
    assert_eq!(tokens_seen(&app, OPERATOR, COFFEE).await, hidden);
    // Others still see that it is locked, by whom and until when.
    let seen = get(&app, BOB, &format!("/api/v1/resources/{COFFEE}")).await;
    assert_eq!(seen["resource"]["lock-details"], "Resource locked");
    assert!(seen["resource"]["lock-expires-at"].is_string());
    assert!(seen["resource"]["fencing-token"].is_u64());
    // The page at / shows no token to anyone.
    let page = call(&app, BOB, Method::GET, "/", None).await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("Locked") && !page.text.contains(&token));
}

#[tokio::test]
async fn a_reservations_lock_tokens_are_hidden_from_other_users() {
    let (app, _dir) = app().await;
    let created = post(
        &app,
        ALICE,
        "/api/v1/reservations",
        json!({"tags": ["arm"], "quantity": 2, "auto_claim": true}),
    )
    .await
    .expect_json(201);
    let rid = created["reservation_id"].as_str().unwrap();
    assert_eq!(created["status"], "claimed");
    let tokens = created["lock_tokens"].clone();
    assert_eq!(tokens.as_array().unwrap().len(), 2);
    assert!(tokens[0].as_str().unwrap() != HIDDEN);

    let path = format!("/api/v1/reservations/{rid}");
    assert_eq!(get(&app, ALICE, &path).await["lock_tokens"], tokens);
    assert_eq!(get(&app, ADMIN, &path).await["lock_tokens"], tokens);
    assert_eq!(
        get(&app, BOB, &path).await["lock_tokens"],
        json!([HIDDEN, HIDDEN])
    );
    let list = get(&app, BOB, "/api/v1/reservations").await;
    assert_eq!(
        list["reservations"][0]["lock_tokens"],
        json!([HIDDEN, HIDDEN])
    );
    let page = get(&app, BOB, "/api/v1/reservations?status=claimed").await;
    assert_eq!(
        page["reservations"][0]["lock_tokens"],
        json!([HIDDEN, HIDDEN])
    );
    // The locks it was granted are alice's too.
    assert_eq!(tokens_seen(&app, BOB, ARM_1).await[1], HIDDEN);
    assert_eq!(
        tokens_seen(&app, ALICE, ARM_1).await[1],
        get(&app, ADMIN, &format!("/api/v1/resources/{ARM_1}")).await["resource"]["lock-token"]
            .as_str()
            .unwrap()
    );
}

fn assert_not_owner(reply: &Reply) {
    let body = reply.expect_json(403);
    assert_eq!(body["code"], "not_owner", "{body}");
}

#[tokio::test]
async fn unlock_extend_claim_and_cancel_with_another_users_token_are_403_not_owner() {
    let (app, _dir) = app().await;
    let token = lock_as(&app, ALICE, COFFEE).await;
    let unlock = format!("/api/v1/resources/{COFFEE}/unlock?lock-token={token}");
    let extend = format!("/api/v1/resources/{COFFEE}/extend?lock-token={token}&additional-ttl=900");
    for key in [BOB, OPERATOR] {
        assert_not_owner(&call(&app, key, Method::POST, &unlock, None).await);
        assert_not_owner(&call(&app, key, Method::POST, &extend, None).await);
        let batch = json!({"lock_tokens": [token]});
        assert_not_owner(&post(&app, key, "/api/v1/resources/unlock-batch", batch).await);
    }
    assert_eq!(
        tokens_seen(&app, ALICE, COFFEE).await[1],
        token,
        "still alice's lock"
    );

    // A reservation that waits (alice holds both arm boards), and one fulfilled.
    lock_as(&app, ALICE, ARM_1).await;
    lock_as(&app, ALICE, ARM_2).await;
    let waiting = post(
        &app,
        ALICE,
        "/api/v1/reservations",
        json!({"tags": ["arm"]}),
    )
    .await
    .expect_json(201);
    let waiting = waiting["reservation_id"].as_str().unwrap();
    let fulfilled = post(
        &app,
        ALICE,
        "/api/v1/reservations",
        json!({"tags": ["x86"]}),
    )
    .await
    .expect_json(201);
    assert_eq!(fulfilled["status"], "fulfilled");
    let fulfilled = fulfilled["reservation_id"].as_str().unwrap();
    let cancel = format!("/api/v1/reservations/{waiting}");
    assert_not_owner(&call(&app, BOB, Method::DELETE, &cancel, None).await);
    let claim = format!("/api/v1/reservations/{fulfilled}/claim");
    assert_not_owner(&call(&app, BOB, Method::POST, &claim, None).await);

    // The owner and an admin may.
    assert_eq!(
        call(&app, ALICE, Method::POST, &claim, None).await.status,
        200
    );
    assert_eq!(
        call(&app, ADMIN, Method::DELETE, &cancel, None)
            .await
            .status,
        204
    );
    assert_eq!(
        call(&app, ALICE, Method::POST, &extend, None).await.status,
        200
    );
    assert_eq!(
        call(&app, ADMIN, Method::POST, &unlock, None).await.status,
        200
    );
}

#[tokio::test]
async fn the_same_idempotency_key_from_two_callers_gives_each_its_own_answer() {
    let (app, _dir) = app().await;
    let lock = |key: &'static str| {
        let request = app
            .client
            .post(app.url(&format!("/api/v1/resources/{PRINTER}/lock")))
            .header("X-API-Key", key)
            .header("Idempotency-Key", "job-42")
            .json(&json!({"ttl": 60}));
        app.send(request)
    };
    let first = lock(ALICE).await.expect_json(200);
    // Bob's request runs (and finds the printer locked): it never replays alice's
    // answer, which carries her token.
    let other = lock(BOB).await.expect_json(403);
    assert_eq!(other["code"], "already_locked", "{other}");
    assert!(
        !other
            .to_string()
            .contains(first["lock-token"].as_str().unwrap())
    );
    // Alice's retry replays hers.
    assert_eq!(lock(ALICE).await.expect_json(200), first);
}

#[tokio::test]
async fn locks_and_reservations_over_a_keys_caps_are_429_with_retry_after() {
    let (app, _dir) = app().await;
    lock_as(&app, BOB, COFFEE).await;
    lock_as(&app, BOB, ARM_1).await;
    let over = post(
        &app,
        BOB,
        &format!("/api/v1/resources/{X86_1}/lock"),
        json!({}),
    )
    .await;
    let body = over.expect_json(429);
    assert_eq!(body["code"], "too_many_locks", "{body}");
    assert_eq!(body["max_locks"], 2);
    assert_eq!(over.header("retry-after"), "30");
    let by_tag = post(&app, BOB, "/api/v1/resources/lock?tag=x86", json!({})).await;
    assert_eq!(by_tag.expect_json(429)["code"], "too_many_locks");
    // Alice is not charged for bob's locks, and bob may lock again once one ends.
    lock_as(&app, ALICE, X86_1).await;
    let token =
        get(&app, BOB, &format!("/api/v1/resources/{COFFEE}")).await["resource"]["lock-token"]
            .as_str()
            .unwrap()
            .to_owned();
    let unlock = format!("/api/v1/resources/{COFFEE}/unlock?lock-token={token}");
    assert_eq!(
        call(&app, BOB, Method::POST, &unlock, None).await.status,
        200
    );
    lock_as(&app, BOB, PRINTER).await;

    // Carol may have one reservation waiting (x86 is alice's).
    let reserve = json!({"tags": ["x86"]});
    post(&app, CAROL, "/api/v1/reservations", reserve.clone())
        .await
        .expect_json(201);
    let over = post(&app, CAROL, "/api/v1/reservations", reserve).await;
    let body = over.expect_json(429);
    assert_eq!(body["code"], "too_many_reservations", "{body}");
    assert_eq!(over.header("retry-after"), "30");
}

/// A service on the SQLite file at `url` with the auth config at `auth`, and the task
/// that runs it (done once its store is closed).
async fn start_persisted(
    url: &str,
    auth: &std::path::Path,
    at: rentabot::domain::Timestamp,
) -> (TestApp, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let clock = Arc::new(ManualClock::new(at));
    let settings = Settings {
        host: "127.0.0.1".to_owned(),
        port: 0,
        workers: Some(1),
        handle_signals: false,
        persist: Persist::Url(PersistUrl::parse(url).unwrap()),
        auth: Some(auth.to_owned()),
        ..Settings::default()
    };
    let app = app::build(&settings, lab(), clock.clone()).expect("the app builds");
    app.ready().await.unwrap();
    let test_app = TestApp {
        address: format!("http://127.0.0.1:{}", app.port()),
        client: Client::new(),
        clock,
        broker: app.handle(),
        stopper: app.stopper(),
    };
    (test_app, tokio::spawn(app.run_until_stopped()))
}

#[tokio::test]
async fn ownership_survives_a_restart_on_the_same_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let auth = write_config(&dir);
    let url = format!("sqlite:///{}", dir.path().join("state.db").display());
    let (first, running) = start_persisted(&url, &auth, T0).await;
    let token = lock_as(&first, ALICE, COFFEE).await;
    let now = first.broker.now();
    first.stopper.stop().await;
    running.await.unwrap().unwrap(); // the store is closed

    let (second, _running) = start_persisted(&url, &auth, now).await;
    assert_eq!(tokens_seen(&second, ALICE, COFFEE).await[1], token);
    assert_eq!(tokens_seen(&second, BOB, COFFEE).await[1], HIDDEN);
    let unlock = format!("/api/v1/resources/{COFFEE}/unlock?lock-token={token}");
    assert_not_owner(&call(&second, BOB, Method::POST, &unlock, None).await);
    assert_eq!(
        call(&second, ALICE, Method::POST, &unlock, None)
            .await
            .status,
        200
    );
}

/// The first message of the reservation socket, as `key`'s caller sees it.
async fn first_socket_message(app: &TestApp, key: &str, rid: &str) -> Value {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!(
        "{}/ws/reservations/{rid}",
        app.address.replace("http://", "ws://")
    );
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("X-API-Key", key.parse().unwrap());
    let patience = std::time::Duration::from_secs(10);
    let (mut socket, _) = tokio::time::timeout(patience, tokio_tungstenite::connect_async(request))
        .await
        .expect("connected within the safety timeout")
        .expect("the upgrade succeeds");
    let frame = tokio::time::timeout(patience, socket.next())
        .await
        .expect("a frame within the safety timeout");
    match frame {
        Some(Ok(Message::Text(text))) => serde_json::from_str(text.as_str()).unwrap(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

#[tokio::test]
async fn the_reservation_socket_hides_another_users_lock_tokens() {
    let (app, _dir) = app().await;
    let created = post(
        &app,
        ALICE,
        "/api/v1/reservations",
        json!({"tags": ["x86"], "auto_claim": true}),
    )
    .await
    .expect_json(201);
    let rid = created["reservation_id"].as_str().unwrap();
    let seen = first_socket_message(&app, BOB, rid).await;
    assert_eq!(
        seen["reservation"]["lock_tokens"],
        json!([HIDDEN]),
        "{seen}"
    );
    let seen = first_socket_message(&app, ALICE, rid).await;
    assert_eq!(seen["reservation"]["lock_tokens"], created["lock_tokens"]);
}
