//! A clean stop (what SIGTERM does, through `Stopper::stop`): waiting long-polls answer
//! with their state, event streams end, sockets close with Going Away, and the server
//! stops without waiting out its grace time. `tests/cli.rs` does the same with the real
//! binary and a real signal.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::time::timeout;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::helpers::*;

/// The safety net around each wait: far below the 120 s long-poll and actix's 5 s
/// grace time is not what ends these waits.
const PATIENCE: Duration = Duration::from_secs(30);

/// A reservation that waits: the x86 board is locked for 10 minutes.
async fn pending_reservation(app: &TestApp) -> String {
    app.locked(X86_1, 600).await;
    let reply = app
        .send(
            app.client
                .post(app.url("/api/v1/reservations"))
                .json(&json!({"tags": ["x86"]})),
        )
        .await
        .expect_json(201);
    reply["reservation_id"].as_str().unwrap().to_owned()
}

/// Stops the service, expecting the stop to end within the safety net.
async fn stop(app: &TestApp) {
    timeout(PATIENCE, app.stopper.stop())
        .await
        .expect("the server stopped");
}

#[tokio::test]
async fn waiting_long_poll_answers_with_the_current_state_when_the_service_stops() {
    let app = spawn_app().await;
    let rid = pending_reservation(&app).await;
    let url = app.url(&format!("/api/v1/reservations/{rid}?wait=120"));
    let poll = tokio::spawn(app.client.get(url).send());
    app.until_waiting(1).await;

    let stopping = tokio::spawn({
        let stopper = app.stopper.clone();
        async move { stopper.stop().await }
    });

    let response = timeout(PATIENCE, poll)
        .await
        .expect("the long-poll answered when the service stopped")
        .unwrap()
        .expect("an answer, not a dropped connection");
    let body = read(response).await.expect_json(200);
    assert_eq!(body["status"], "pending");
    assert_eq!(body["reservation_id"], rid.as_str());
    timeout(PATIENCE, stopping).await.unwrap().unwrap();
    assert_eq!(app.stopper.shutdown().watchers(), 0);
}

#[tokio::test]
async fn long_poll_answers_at_once_when_the_service_is_already_stopping() {
    let app = spawn_app().await;
    let rid = pending_reservation(&app).await;
    // Only the signal to waiting responses: the server itself keeps serving.
    app.stopper.shutdown().begin();

    let reply = timeout(
        PATIENCE,
        app.get(&format!("/api/v1/reservations/{rid}?wait=120")),
    )
    .await
    .expect("answered without waiting");

    assert_eq!(reply.expect_json(200)["status"], "pending");
}

#[tokio::test]
async fn event_stream_ends_when_the_service_stops() {
    let app = spawn_app().await;
    let mut response = app
        .client
        .get(app.url("/api/v1/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    app.until_waiting(1).await;

    stop(&app).await;

    // The body ends cleanly (no error, no more frames) instead of being cut off.
    let rest = timeout(PATIENCE, response.chunk())
        .await
        .expect("the stream ended when the service stopped")
        .expect("a clean end of the body");
    assert_eq!(rest, None);
}

#[tokio::test]
async fn reservation_socket_closes_with_going_away_when_the_service_stops() {
    let app = spawn_app().await;
    let rid = pending_reservation(&app).await;
    let url = format!(
        "{}/ws/reservations/{rid}",
        app.address.replace("http://", "ws://")
    );
    let (mut socket, _) = timeout(PATIENCE, connect_async(url))
        .await
        .unwrap()
        .expect("the upgrade succeeds");
    let first = match timeout(PATIENCE, socket.next()).await.unwrap() {
        Some(Ok(Message::Text(text))) => serde_json::from_str::<Value>(text.as_str()).unwrap(),
        other => panic!("expected the reservation, got {other:?}"),
    };
    assert_eq!(first["reservation"]["status"], "pending");
    app.until_waiting(1).await;

    let stopping = tokio::spawn({
        let stopper = app.stopper.clone();
        async move { stopper.stop().await }
    });

    match timeout(PATIENCE, socket.next()).await.unwrap() {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(frame.code, CloseCode::Away);
            assert_eq!(frame.reason.as_str(), "the service is stopping");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    timeout(PATIENCE, stopping).await.unwrap().unwrap();
}

#[tokio::test]
async fn stopped_service_refuses_new_connections() {
    let app = spawn_app().await;
    app.get("/health").await.expect_json(200);

    stop(&app).await;

    // A new client: no pooled connection to the stopped server.
    let refused = reqwest::Client::new().get(app.url("/health")).send().await;
    assert!(refused.is_err(), "{refused:?}");
}
