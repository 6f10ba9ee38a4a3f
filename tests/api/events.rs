//! Push notifications: the server-sent event stream (`GET /api/v1/events`) and the
//! reservation WebSocket (`/ws/reservations/{rid}`).
//!
//! Nothing sleeps: changes come from HTTP calls, broker calls and the manual clock, and
//! every wait for a message has a timeout only as a safety net.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rentabot::domain::{
    Criteria, Group, LockMeta, Priority, ReservationId, ReservationRequest, Timestamp, Ttl,
};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use crate::helpers::{ARM_1, COFFEE, T0, TestApp, X86_1, spawn_app};

/// The safety net around every wait for a message.
const PATIENCE: Duration = Duration::from_secs(5);

fn at(offset_secs: u64) -> String {
    Timestamp::from_millis(T0.as_millis() + offset_secs * 1000).to_rfc3339()
}

/// One server-sent event.
#[derive(Debug)]
struct SseEvent {
    id: u64,
    event: String,
    data: Value,
    /// The frame as sent.
    raw: String,
}

/// An open event stream, read frame by frame.
struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    /// Opens `GET /api/v1/events{query}`, expecting a 200 event stream. Once this returns,
    /// the server has subscribed: every later change is on the stream.
    async fn open(app: &TestApp, query: &str) -> EventStream {
        Self::resume(app, query, None).await
    }

    /// As [`EventStream::open`], resuming after event `last_seen` (`Last-Event-ID`).
    async fn resume(app: &TestApp, query: &str, last_seen: Option<&str>) -> EventStream {
        let mut request = app.client.get(app.url(&format!("/api/v1/events{query}")));
        if let Some(last) = last_seen {
            request = request.header("Last-Event-ID", last);
        }
        let response = request.send().await.expect("the request reaches the app");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "{:?}",
            response.headers()
        );
        assert_eq!(response.headers()["cache-control"], "no-cache");
        EventStream {
            response,
            buffer: String::new(),
        }
    }

    /// The next event, skipping comments (heartbeats).
    async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let raw: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse_frame(&raw) {
                    return event;
                }
                continue;
            }
            let chunk = timeout(PATIENCE, self.response.chunk())
                .await
                .expect("an event within the safety timeout")
                .expect("the stream can be read")
                .expect("the stream is still open");
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("the stream is UTF-8"));
        }
    }
}

/// A frame's fields, or `None` for a comment-only frame.
fn parse_frame(raw: &str) -> Option<SseEvent> {
    let (mut id, mut event, mut data) = (None, None, None);
    for line in raw.lines() {
        if let Some(v) = line.strip_prefix("id: ") {
            id = Some(v.parse().expect("a numeric id"));
        } else if let Some(v) = line.strip_prefix("event: ") {
            event = Some(v.to_owned());
        } else if let Some(v) = line.strip_prefix("data: ") {
            data = Some(serde_json::from_str(v).expect("data is JSON"));
        } else {
            assert!(
                line.starts_with(':') || line.is_empty(),
                "odd line {line:?}"
            );
        }
    }
    Some(SseEvent {
        // A frame without an id (`lagged`) leaves the client's last id as it was.
        id: id.unwrap_or(0),
        event: event?,
        data: data.expect("a data line"),
        raw: raw.to_owned(),
    })
}

/// The events of the service's start: one `resource_added` per resource of the lab, as
/// the descriptor is merged into the (empty) state.
const AT_START: u64 = 5;

/// A pending-capable reservation of one resource tagged `tag`.
fn one(tag: &str, max_wait: u64) -> ReservationRequest {
    ReservationRequest {
        groups: vec![Group {
            criteria: Criteria::Tags(vec![tag.to_owned()]),
            quantity: 1,
        }],
        priority: Priority::DEFAULT,
        ttl: Ttl::from_secs(600).unwrap(),
        max_wait: Ttl::from_secs(max_wait).unwrap(),
        auto_claim: false,
        meta: LockMeta::default(),
    }
}

/// Locks X86_1 over HTTP, then queues a reservation for it: pending, first in line.
async fn pending_reservation(app: &TestApp) -> (ReservationId, String) {
    let held = app.locked(X86_1, 600).await;
    let snapshot = app.broker.reserve(one("x86", 300)).expect("reserved");
    (snapshot.reservation.id, held.token)
}

#[tokio::test]
async fn event_stream_sends_locked_then_unlocked_when_a_resource_is_locked_and_unlocked() {
    let app = spawn_app().await;
    let mut events = EventStream::open(&app, "").await;

    let held = app.locked(ARM_1, 60).await;
    assert_eq!(app.unlock(ARM_1, &held.token).await.status, 200);

    let locked = events.next().await;
    assert_eq!((locked.id, locked.event.as_str()), (AT_START + 1, "locked"));
    assert_eq!(
        locked.data,
        serde_json::json!({
            "type": "locked", "resource_id": ARM_1, "fencing_token": held.fencing,
            "at": at(0), "expires_at": at(60), "reservation_id": null,
        })
    );
    let unlocked = events.next().await;
    assert_eq!(
        (unlocked.id, unlocked.event.as_str()),
        (AT_START + 2, "unlocked")
    );
    assert_eq!(
        unlocked.data,
        serde_json::json!({
            "type": "unlocked", "resource_id": ARM_1, "fencing_token": held.fencing, "at": at(0),
        })
    );
    for frame in [&locked.raw, &unlocked.raw] {
        assert!(!frame.contains(&held.token), "a lock token leaked: {frame}");
    }
}

#[tokio::test]
async fn event_stream_sends_reservation_created_then_fulfilled_when_a_queued_reservation_is_served()
{
    let app = spawn_app().await;
    let mut events = EventStream::open(
        &app,
        "?types=reservation_created,reservation_fulfilled,locked",
    )
    .await;
    let (id, token) = pending_reservation(&app).await;
    assert_eq!(events.next().await.event, "locked"); // the HTTP lock on X86_1

    app.advance(Duration::from_secs(5));
    assert_eq!(app.unlock(X86_1, &token).await.status, 200);

    let created = events.next().await;
    assert_eq!(
        created.data,
        serde_json::json!({"type": "reservation_created", "reservation_id": id.to_string(), "at": at(0)})
    );
    let locked = events.next().await;
    assert_eq!(locked.data["resource_id"], X86_1);
    assert_eq!(locked.data["reservation_id"], id.to_string());
    let fulfilled = events.next().await;
    assert_eq!(fulfilled.event, "reservation_fulfilled");
    assert_eq!(
        fulfilled.data,
        serde_json::json!({
            "type": "reservation_fulfilled", "reservation_id": id.to_string(),
            "resource_ids": [X86_1], "at": at(5),
        })
    );
    assert_eq!(
        [created.id, locked.id, fulfilled.id],
        [AT_START + 2, AT_START + 4, AT_START + 5],
        "ids are the events' numbers in the broker's stream (3 is the unlock, filtered out)"
    );
}

#[tokio::test]
async fn event_stream_sends_only_the_named_types_when_filtered() {
    let app = spawn_app().await;
    let mut events = EventStream::open(&app, "?types=unlocked").await;

    let first = app.locked(COFFEE, 60).await;
    assert_eq!(app.unlock(COFFEE, &first.token).await.status, 200);
    let second = app.locked(COFFEE, 60).await;
    assert_eq!(app.unlock(COFFEE, &second.token).await.status, 200);

    let a = events.next().await;
    let b = events.next().await;
    assert_eq!((a.id, a.event.as_str()), (AT_START + 2, "unlocked"));
    assert_eq!(a.data["fencing_token"], first.fencing);
    assert_eq!((b.id, b.event.as_str()), (AT_START + 4, "unlocked"));
    assert_eq!(b.data["fencing_token"], second.fencing);
}

#[tokio::test]
async fn event_stream_resumes_after_the_last_event_id_a_reconnecting_client_sends() {
    let app = spawn_app().await;
    let first = app.locked(COFFEE, 60).await; // event AT_START + 1
    assert_eq!(app.unlock(COFFEE, &first.token).await.status, 200); // + 2

    // The client saw event 1, lost its connection, and reconnects.
    let seen = (AT_START + 1).to_string();
    let mut events = EventStream::resume(&app, "", Some(&seen)).await;
    let second = app.locked(ARM_1, 60).await; // + 3, after the reconnect

    let missed = events.next().await;
    assert_eq!(
        (missed.id, missed.event.as_str()),
        (AT_START + 2, "unlocked")
    );
    assert_eq!(missed.data["fencing_token"], first.fencing);
    let live = events.next().await;
    assert_eq!((live.id, live.event.as_str()), (AT_START + 3, "locked"));
    assert_eq!(live.data["fencing_token"], second.fencing);
}

#[tokio::test]
async fn event_stream_tells_a_client_with_an_unknown_last_event_id_to_read_the_state_again() {
    let app = spawn_app().await;
    app.locked(COFFEE, 60).await; // the stream has never numbered 500

    let mut events = EventStream::resume(&app, "", Some("500")).await;

    let gap = events.next().await;
    assert_eq!(gap.event, "lagged");
    assert_eq!(
        gap.data,
        serde_json::json!({"type": "lagged", "missed": null})
    );
    assert!(
        !gap.raw.contains("id:"),
        "a gap notice moves no client's last id"
    );
}

#[tokio::test]
async fn event_stream_is_refused_with_400_when_the_filter_names_an_unknown_type() {
    let app = spawn_app().await;

    for (query, why) in [
        ("?types=locked,lockd", "a misspelt type"),
        ("?types=", "no type at all"),
    ] {
        let reply = app.get(&format!("/api/v1/events{query}")).await;

        let body = reply.expect_json(400);
        assert_eq!(body["code"], "invalid_event_type", "{why}: {body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("reservation_ended"),
            "{why}: the message lists the valid types: {body}"
        );
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn connect(app: &TestApp, rid: &str) -> Socket {
    let url = format!(
        "{}/ws/reservations/{rid}",
        app.address.replace("http://", "ws://")
    );
    let (socket, response) = timeout(PATIENCE, connect_async(url))
        .await
        .expect("connected within the safety timeout")
        .expect("the upgrade succeeds");
    assert_eq!(response.status(), 101);
    socket
}

/// The next frame from the server, whatever it is.
async fn next_frame(socket: &mut Socket) -> Option<Message> {
    timeout(PATIENCE, socket.next())
        .await
        .expect("a frame within the safety timeout")
        .map(|m| m.expect("a valid frame"))
}

/// The next text message as JSON.
async fn next_json(socket: &mut Socket) -> Value {
    match next_frame(socket).await {
        Some(Message::Text(text)) => serde_json::from_str(text.as_str()).expect("JSON"),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Expects a normal close frame, then the end of the stream.
async fn expect_normal_close(socket: &mut Socket) {
    match next_frame(socket).await {
        Some(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected a normal close, got {other:?}"),
    }
    assert!(next_frame(socket).await.is_none(), "the socket is closed");
}

#[tokio::test]
async fn reservation_socket_pushes_pending_then_fulfilled_then_claimed_as_its_status_changes() {
    let app = spawn_app().await;
    let (id, token) = pending_reservation(&app).await;
    let mut socket = connect(&app, &id.to_string()).await;

    let initial = next_json(&mut socket).await;
    assert_eq!(initial["type"], "reservation");
    assert_eq!(initial["reservation"]["reservation_id"], id.to_string());
    assert_eq!(initial["reservation"]["status"], "pending");
    assert_eq!(initial["reservation"]["position_in_queue"], 1);

    assert_eq!(app.unlock(X86_1, &token).await.status, 200);
    let fulfilled = next_json(&mut socket).await;
    assert_eq!(fulfilled["type"], "reservation");
    assert_eq!(fulfilled["reservation"]["status"], "fulfilled");
    assert_eq!(
        fulfilled["reservation"]["resource_ids"],
        serde_json::json!([X86_1])
    );
    assert_eq!(fulfilled["reservation"]["position_in_queue"], Value::Null);

    app.broker.claim(id).expect("claimed");
    let claimed = next_json(&mut socket).await;
    assert_eq!(claimed["reservation"]["status"], "claimed");
}

#[tokio::test]
async fn reservation_socket_sends_ended_and_closes_when_the_reservation_is_cancelled() {
    let app = spawn_app().await;
    let (id, _token) = pending_reservation(&app).await;
    let mut socket = connect(&app, &id.to_string()).await;
    assert_eq!(
        next_json(&mut socket).await["reservation"]["status"],
        "pending"
    );

    app.advance(Duration::from_secs(7));
    app.broker.cancel(id).expect("cancelled");

    assert_eq!(
        next_json(&mut socket).await,
        serde_json::json!({
            "type": "ended", "reservation_id": id.to_string(), "reason": "cancelled", "at": at(7),
        })
    );
    expect_normal_close(&mut socket).await;
}

#[tokio::test]
async fn reservation_socket_sends_ended_expired_and_closes_when_max_wait_passes() {
    let app = spawn_app().await;
    let (id, _token) = pending_reservation(&app).await;
    let mut socket = connect(&app, &id.to_string()).await;
    assert_eq!(
        next_json(&mut socket).await["reservation"]["status"],
        "pending"
    );

    app.advance(Duration::from_secs(301));
    app.broker.sweep();

    let ended = next_json(&mut socket).await;
    assert_eq!(ended["type"], "ended");
    assert_eq!(ended["reason"], "expired");
    expect_normal_close(&mut socket).await;
}

#[tokio::test]
async fn reservation_socket_answers_pings_and_echoes_the_close_when_the_client_closes() {
    let app = spawn_app().await;
    let (id, _token) = pending_reservation(&app).await;
    let mut socket = connect(&app, &id.to_string()).await;
    next_json(&mut socket).await;

    socket
        .send(Message::Ping(b"hello".to_vec().into()))
        .await
        .unwrap();
    match next_frame(&mut socket).await {
        Some(Message::Pong(payload)) => assert_eq!(&payload[..], b"hello"),
        other => panic!("expected a pong, got {other:?}"),
    }

    socket.close(None).await.unwrap();
    loop {
        match next_frame(&mut socket).await {
            Some(Message::Close(_)) => {}
            None => break,
            Some(other) => panic!("nothing but the close after closing, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn reservation_socket_answers_404_json_without_upgrading_when_the_id_is_unknown() {
    let app = spawn_app().await;
    let ws = app.address.replace("http://", "ws://");

    for (rid, why) in [
        (
            ReservationId::from_u128(0x0123_4567_89ab_cdef).to_string(),
            "no such reservation",
        ),
        ("res_nope".to_owned(), "not a reservation id"),
    ] {
        let refused = connect_async(format!("{ws}/ws/reservations/{rid}")).await;

        let Err(tokio_tungstenite::tungstenite::Error::Http(response)) = refused else {
            panic!("{why}: expected an HTTP refusal, got {refused:?}");
        };
        assert_eq!(response.status(), 404, "{why}");
        let body: Value =
            serde_json::from_slice(response.body().as_deref().expect("a body")).expect("JSON");
        assert_eq!(body["code"], "reservation_not_found", "{why}: {body}");
        assert_eq!(body["reservation_id"], rid, "{why}");
    }
}

#[tokio::test]
async fn reservation_socket_answers_404_with_the_end_when_the_reservation_has_ended() {
    let app = spawn_app().await;
    let (id, _token) = pending_reservation(&app).await;
    app.broker.cancel(id).expect("cancelled");

    let reply = app.get(&format!("/ws/reservations/{id}")).await;

    let body = reply.expect_json(404);
    assert_eq!(body["ended"], "cancelled");
}

#[tokio::test]
async fn reservation_socket_answers_400_json_when_the_request_is_not_a_websocket_upgrade() {
    let app = spawn_app().await;
    let (id, _token) = pending_reservation(&app).await;

    let reply = app.get(&format!("/ws/reservations/{id}")).await;

    assert_eq!(reply.expect_json(400)["code"], "websocket_required");
}
