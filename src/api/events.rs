//! Push notifications: every broker event as server-sent events (`GET /api/v1/events`),
//! and one reservation's status changes over a WebSocket (`/ws/reservations/{rid}`).
//!
//! Both listen to the change stream's [`Publisher`], which publishes each change once it
//! is committed, after the broker mutex is released: nothing here ever holds the lock
//! while it writes to a socket. Every event has a number, global and never reused with
//! `--persist` (the SSE `id`); a stream resumes after `Last-Event-ID` from the last
//! 10 000 events. A listener that falls further behind skips ahead; the event stream
//! says so with a `lagged` event, and the WebSocket reads the reservation again in case
//! its own change was among those skipped.
//!
//! ```text
//! SSE frame:   id: 7\nevent: locked\ndata: {"type":"locked","resource_id":2,...}\n\n
//! idle:        : keep-alive\n\n                           (every 15 s without a frame)
//! WebSocket:   {"type":"reservation","reservation":{...}}  on connect and on each change
//!              {"type":"ended","reservation_id":"res_...","reason":"cancelled","at":"..."}
//!              then a Normal (1000) close frame
//! ```
//!
//! When the service stops ([`Shutdown`]), event streams end (the chunked body is
//! terminated) and sockets close with Going Away (1001), at once, rather than holding
//! the stop until actix's grace time runs out.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::web::{self, Bytes, Data, Payload};
use actix_web::{HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason, Message, MessageStream, Session};
use futures_util::Stream;
use serde::Serialize;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::{self, Instant, Interval, MissedTickBehavior};
use utoipa::ToSchema;

use super::broker::Broker;
use super::dto::{ErrorBody, ReservationView};
use super::endpoint;
use super::error::ApiError;
use super::params::Query;
use crate::domain::{DomainError, Event, Principal, ReservationId, ReservationStatus, Timestamp};
use crate::runtime::shutdown::Watch;
use crate::runtime::{
    BrokerHandle, Committed, Gap, Publisher, ReservationSnapshot, Shutdown, Subscription,
};

/// How long a connection may stay silent before we send something anyway: below the
/// 30–60 s idle timeouts of common proxies, and the bound on how long a vanished client
/// keeps its subscription (a write to a dead connection is what reveals it).
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// Every `type` an [`EventView`] can have, in the order of [`Event`]'s variants.
pub const EVENT_TYPES: [&str; 16] = [
    "locked",
    "extended",
    "unlocked",
    "expired",
    "reservation_created",
    "reservation_fulfilled",
    "reservation_claimed",
    "reservation_ended",
    "force_unlocked",
    "maintenance_scheduled",
    "maintenance_started",
    "maintenance_ended",
    "resource_added",
    "resource_updated",
    "resource_retiring",
    "resource_removed",
];

/// Registers `GET /events`; mounted under `/api/v1`.
pub fn configure_api(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/events").get(stream_events));
}

/// Registers the WebSocket `GET /ws/reservations/{rid}`; mounted at the root.
pub fn configure_ws(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/ws/reservations/{rid}").get(watch_reservation));
}

/// One broker event on the wire. Resource ids and fencing tokens are integers,
/// reservation ids strings (`res_...`), times RFC 3339 UTC. Lock tokens never appear:
/// [`Event`] does not carry them.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[schema(example = json!({
    "type": "locked", "resource_id": 2, "fencing_token": 17,
    "at": "2026-01-15T10:00:00.000Z", "expires_at": "2026-01-15T11:00:00.000Z",
    "reservation_id": null
}))]
pub enum EventView {
    /// A lock was granted.
    Locked {
        resource_id: u32,
        fencing_token: u64,
        at: String,
        expires_at: String,
        /// Set when the lock was granted to fulfil this reservation.
        reservation_id: Option<String>,
    },
    /// A lock's expiry moved.
    Extended {
        resource_id: u32,
        fencing_token: u64,
        expires_at: String,
    },
    /// Its holder released a lock.
    Unlocked {
        resource_id: u32,
        fencing_token: u64,
        at: String,
    },
    /// A lock reached its deadline (`at`) and was released.
    Expired {
        resource_id: u32,
        fencing_token: u64,
        at: String,
    },
    /// A reservation joined the queue (it may be fulfilled in the same step).
    ReservationCreated {
        reservation_id: String,
        at: String,
    },
    /// A reservation's resources were locked for it.
    ReservationFulfilled {
        reservation_id: String,
        resource_ids: Vec<u32>,
        at: String,
    },
    ReservationClaimed {
        reservation_id: String,
        at: String,
    },
    /// A reservation is gone: `reason` is cancelled, expired, claim_expired, released or
    /// unsatisfiable (resources it needed were removed or changed).
    ReservationEnded {
        reservation_id: String,
        reason: &'static str,
        at: String,
    },
    /// An operator broke a lock.
    ForceUnlocked {
        resource_id: u32,
        fencing_token: u64,
        reason: String,
        at: String,
    },
    /// A maintenance window was declared or replaced; it opens at `from` (at once when
    /// `from` equals `at`).
    MaintenanceScheduled {
        resource_id: u32,
        reason: String,
        from: String,
        until: Option<String>,
        at: String,
    },
    /// A resource went out of service.
    MaintenanceStarted {
        resource_id: u32,
        at: String,
    },
    /// A resource is back in service, or its scheduled window was cancelled.
    MaintenanceEnded {
        resource_id: u32,
        at: String,
    },
    /// A resource was created, through the API or a descriptor reload.
    ResourceAdded {
        resource_id: u32,
        name: String,
        at: String,
    },
    /// A resource's properties changed: `fields` names them (`description`, `endpoint`,
    /// `tags`, `max-lock-duration`; after a reload also `retiring`, `origin`).
    ResourceUpdated {
        resource_id: u32,
        fields: Vec<&'static str>,
        at: String,
    },
    /// A reload dropped a locked resource: it goes when its lock ends.
    ResourceRetiring {
        resource_id: u32,
        name: String,
        at: String,
    },
    /// A resource is gone; its id is not reused.
    ResourceRemoved {
        resource_id: u32,
        name: String,
        at: String,
    },
}

impl From<&Event> for EventView {
    fn from(event: &Event) -> Self {
        match event {
            Event::Locked {
                resource,
                fencing,
                at,
                expires_at,
                reservation,
            } => EventView::Locked {
                resource_id: resource.get(),
                fencing_token: fencing.get(),
                at: at.to_rfc3339(),
                expires_at: expires_at.to_rfc3339(),
                reservation_id: reservation.map(|r| r.to_string()),
            },
            Event::Extended {
                resource,
                fencing,
                expires_at,
            } => EventView::Extended {
                resource_id: resource.get(),
                fencing_token: fencing.get(),
                expires_at: expires_at.to_rfc3339(),
            },
            Event::Unlocked {
                resource,
                fencing,
                at,
            } => EventView::Unlocked {
                resource_id: resource.get(),
                fencing_token: fencing.get(),
                at: at.to_rfc3339(),
            },
            Event::Expired {
                resource,
                fencing,
                deadline,
            } => EventView::Expired {
                resource_id: resource.get(),
                fencing_token: fencing.get(),
                at: deadline.to_rfc3339(),
            },
            Event::ReservationCreated { reservation, at } => EventView::ReservationCreated {
                reservation_id: reservation.to_string(),
                at: at.to_rfc3339(),
            },
            Event::ReservationFulfilled {
                reservation,
                resources,
                at,
            } => EventView::ReservationFulfilled {
                reservation_id: reservation.to_string(),
                resource_ids: resources.iter().map(|r| r.get()).collect(),
                at: at.to_rfc3339(),
            },
            Event::ReservationClaimed { reservation, at } => EventView::ReservationClaimed {
                reservation_id: reservation.to_string(),
                at: at.to_rfc3339(),
            },
            Event::ReservationEnded {
                reservation,
                reason,
                at,
            } => EventView::ReservationEnded {
                reservation_id: reservation.to_string(),
                reason: reason.as_str(),
                at: at.to_rfc3339(),
            },
            Event::ForceUnlocked {
                resource,
                fencing,
                reason,
                at,
            } => EventView::ForceUnlocked {
                resource_id: resource.get(),
                fencing_token: fencing.get(),
                reason: reason.clone(),
                at: at.to_rfc3339(),
            },
            Event::MaintenanceScheduled {
                resource,
                reason,
                from,
                until,
                at,
            } => EventView::MaintenanceScheduled {
                resource_id: resource.get(),
                reason: reason.clone(),
                from: from.to_rfc3339(),
                until: until.map(Timestamp::to_rfc3339),
                at: at.to_rfc3339(),
            },
            Event::MaintenanceStarted { resource, at } => EventView::MaintenanceStarted {
                resource_id: resource.get(),
                at: at.to_rfc3339(),
            },
            Event::MaintenanceEnded { resource, at } => EventView::MaintenanceEnded {
                resource_id: resource.get(),
                at: at.to_rfc3339(),
            },
            Event::ResourceAdded { resource, name, at } => EventView::ResourceAdded {
                resource_id: resource.get(),
                name: name.clone(),
                at: at.to_rfc3339(),
            },
            Event::ResourceUpdated {
                resource,
                fields,
                at,
            } => EventView::ResourceUpdated {
                resource_id: resource.get(),
                fields: fields.clone(),
                at: at.to_rfc3339(),
            },
            Event::ResourceRetiring { resource, name, at } => EventView::ResourceRetiring {
                resource_id: resource.get(),
                name: name.clone(),
                at: at.to_rfc3339(),
            },
            Event::ResourceRemoved { resource, name, at } => EventView::ResourceRemoved {
                resource_id: resource.get(),
                name: name.clone(),
                at: at.to_rfc3339(),
            },
        }
    }
}

impl EventView {
    /// Its `type`: the SSE event name and what `?types=` filters on.
    pub fn kind(&self) -> &'static str {
        let index = match self {
            EventView::Locked { .. } => 0,
            EventView::Extended { .. } => 1,
            EventView::Unlocked { .. } => 2,
            EventView::Expired { .. } => 3,
            EventView::ReservationCreated { .. } => 4,
            EventView::ReservationFulfilled { .. } => 5,
            EventView::ReservationClaimed { .. } => 6,
            EventView::ReservationEnded { .. } => 7,
            EventView::ForceUnlocked { .. } => 8,
            EventView::MaintenanceScheduled { .. } => 9,
            EventView::MaintenanceStarted { .. } => 10,
            EventView::MaintenanceEnded { .. } => 11,
            EventView::ResourceAdded { .. } => 12,
            EventView::ResourceUpdated { .. } => 13,
            EventView::ResourceRetiring { .. } => 14,
            EventView::ResourceRemoved { .. } => 15,
        };
        EVENT_TYPES[index]
    }
}

/// The `lagged` event: events this listener will never get (`missed`; `None` when the
/// count cannot be told). It must read the state again.
#[derive(Debug, Serialize)]
struct Lagged {
    r#type: &'static str,
    missed: Option<u64>,
}

impl Lagged {
    fn new(missed: Option<u64>) -> Self {
        Lagged {
            r#type: "lagged",
            missed,
        }
    }
}

/// Which event types a stream sends: `None` for all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct TypeFilter(Option<Vec<&'static str>>);

impl TypeFilter {
    /// `?types=locked,unlocked` (repeatable, comma-separated). Absent means every type.
    fn parse(query: &Query) -> Result<TypeFilter, ApiError> {
        let mut given = query.all("types").peekable();
        if given.peek().is_none() {
            return Ok(TypeFilter(None));
        }
        let mut types = Vec::new();
        for raw in given {
            for name in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let known = EVENT_TYPES.iter().find(|t| **t == name).ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_event_type",
                        format!(
                            "unknown event type {name:?} in types: choose from {}",
                            EVENT_TYPES.join(", ")
                        ),
                    )
                    .with("types", raw)
                })?;
                if !types.contains(known) {
                    types.push(*known);
                }
            }
        }
        if types.is_empty() {
            return Err(ApiError::bad_request(
                "invalid_event_type",
                format!(
                    "types names no event type: give a comma-separated list from {}, or leave it out for all",
                    EVENT_TYPES.join(", ")
                ),
            ));
        }
        Ok(TypeFilter(Some(types)))
    }

    fn admits(&self, kind: &str) -> bool {
        self.0.as_ref().is_none_or(|types| types.contains(&kind))
    }
}

/// Every broker event, as server-sent events, from now on or, with `Last-Event-ID`, from
/// after the event the client saw last.
///
/// `event:` is the type, `data:` the `EventView` as JSON, `id:` the event's number in the
/// broker's stream (it only grows; with `--persist`, also across restarts). Events are
/// sent once their change is committed, in the order they happened. A client that
/// reconnects with `Last-Event-ID` (browsers' `EventSource` does it by itself) gets every
/// event it missed while the stream still keeps it (the last 10 000); one that falls
/// behind a live stream catches up the same way. Whatever is no longer kept is reported
/// as `event: lagged`, `{"type":"lagged","missed":N}` (`null` when it cannot be told,
/// after a restart without `--persist`): read the state again. A `: keep-alive` comment
/// follows 15 s of silence.
#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    params(
        ("types" = Option<String>, Query,
            description = "Only these event types, comma-separated (e.g. locked,unlocked); default all",
            pattern = "^(?:[\\t\\n\\x0b\\x0c\\r\\x85 \\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*,)*[\\t\\n\\x0b\\x0c\\r\\x85 \\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*(?:locked|extended|unlocked|expired|reservation_created|reservation_fulfilled|reservation_claimed|reservation_ended|force_unlocked|maintenance_scheduled|maintenance_started|maintenance_ended|resource_added|resource_updated|resource_retiring|resource_removed)[\\t\\n\\x0b\\x0c\\r\\x85 \\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*(?:,[\\t\\n\\x0b\\x0c\\r\\x85 \\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*(?:(?:locked|extended|unlocked|expired|reservation_created|reservation_fulfilled|reservation_claimed|reservation_ended|force_unlocked|maintenance_scheduled|maintenance_started|maintenance_ended|resource_added|resource_updated|resource_retiring|resource_removed)[\\t\\n\\x0b\\x0c\\r\\x85 \\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*)?)*$"),
        ("Last-Event-ID" = Option<String>, Header,
            description = "The `id` of the last event the client saw: resume after it"),
    ),
    responses(
        (status = 200, description = "A text/event-stream of broker events; each data line is one EventView",
            content_type = "text/event-stream", body = EventView),
        (status = 400, description = "An unknown event type in types", body = ErrorBody),
    ))]
pub async fn stream_events(
    broker: Broker,
    shutdown: Data<Shutdown>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let filter = TypeFilter::parse(&Query::parse(&req)?)?;
    // Subscribed before the response head goes out: a client that has seen the 200 sees
    // every event committed after it.
    let last_seen = req
        .headers()
        .get(LAST_EVENT_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let (subscription, last) = match last_seen {
        Some(last) => (broker.resume(last), last),
        None => {
            let (last, live) = broker.subscribe_now();
            let fresh = Subscription {
                backlog: Vec::new(),
                gap: Gap::None,
                live,
            };
            (fresh, last)
        }
    };
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // nginx buffers responses unless told not to.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(event_stream(
            broker.publisher(),
            subscription,
            last,
            filter,
            HEARTBEAT,
            shutdown.get_ref().clone(),
        )))
}

/// The request header a reconnecting event-stream client sends.
const LAST_EVENT_ID: &str = "Last-Event-ID";

/// What [`event_stream`] carries from one frame to the next.
struct Sse {
    publisher: Arc<Publisher>,
    live: broadcast::Receiver<Arc<Committed>>,
    /// Committed changes received (or replayed) and not yet sent out in full.
    queued: VecDeque<Arc<Committed>>,
    /// The number of the last event the client has been given (or skipped by filter).
    last: u64,
    /// A gap to report before the next event.
    gap: Gap,
    filter: TypeFilter,
    heartbeat: Interval,
    shutdown: Shutdown,
    /// Counts this stream among the waiting responses while it lives.
    _watch: Watch,
}

impl Sse {
    fn frame(id: Option<u64>, kind: &str, data: &impl Serialize) -> Bytes {
        let json = serde_json::to_string(data)
            // Plain structs of strings and numbers: serializing cannot fail.
            .expect("an event view serializes");
        match id {
            Some(id) => Bytes::from(format!("id: {id}\nevent: {kind}\ndata: {json}\n\n")),
            None => Bytes::from(format!("event: {kind}\ndata: {json}\n\n")),
        }
    }

    /// The next frame from what is queued (a gap notice, then events in order), if any.
    fn next_queued(&mut self) -> Option<Bytes> {
        match std::mem::replace(&mut self.gap, Gap::None) {
            Gap::None => {}
            Gap::Missed(missed) => {
                return Some(Self::frame(None, "lagged", &Lagged::new(Some(missed))));
            }
            Gap::Unknown => return Some(Self::frame(None, "lagged", &Lagged::new(None))),
        }
        while let Some(change) = self.queued.front() {
            let next = change
                .numbered()
                .find(|(number, _)| *number > self.last)
                .map(|(number, event)| (number, EventView::from(event)));
            let Some((number, view)) = next else {
                self.queued.pop_front();
                continue;
            };
            self.last = number;
            if self.filter.admits(view.kind()) {
                return Some(Self::frame(Some(number), view.kind(), &view));
            }
        }
        None
    }

    /// The live subscription fell behind: pick up again from the replay buffer.
    fn catch_up(&mut self) {
        let Subscription { backlog, gap, live } = self.publisher.resume(self.last);
        self.live = live;
        self.queued = backlog.into();
        self.gap = gap;
    }
}

/// The SSE body. It ends when the service stops; when the client goes away, actix drops
/// it on the next failed write (at the latest one heartbeat later), which drops the
/// receiver and so unsubscribes.
fn event_stream(
    publisher: Arc<Publisher>,
    subscription: Subscription,
    last: u64,
    filter: TypeFilter,
    heartbeat: Duration,
    shutdown: Shutdown,
) -> impl Stream<Item = Result<Bytes, Infallible>> + 'static {
    let mut ticks = time::interval_at(Instant::now() + heartbeat, heartbeat);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let Subscription { backlog, gap, live } = subscription;
    let state = Sse {
        publisher,
        live,
        queued: backlog.into(),
        last,
        gap,
        filter,
        heartbeat: ticks,
        _watch: shutdown.watch_as(crate::runtime::Waiting::EventStream),
        shutdown,
    };
    futures_util::stream::unfold(state, |mut sse| async move {
        // Every branch is cancel-safe: a lost race loses neither an event nor a tick.
        let frame = loop {
            if let Some(frame) = sse.next_queued() {
                break frame;
            }
            tokio::select! {
                () = sse.shutdown.begun() => return None,
                received = sse.live.recv() => match received {
                    Ok(change) => sse.queued.push_back(change),
                    Err(RecvError::Lagged(_)) => sse.catch_up(),
                    Err(RecvError::Closed) => return None,
                },
                _ = sse.heartbeat.tick() => break Bytes::from_static(b": keep-alive\n\n"),
            }
        };
        // Silence is counted from the last frame of any kind.
        sse.heartbeat.reset();
        Some((Ok(frame), sse))
    })
}

/// What the reservation socket sends.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum SocketMessage {
    /// The reservation as `GET /api/v1/reservations/{rid}` shows it.
    Reservation { reservation: Box<ReservationView> },
    /// It has ended; the socket closes after this.
    Ended {
        reservation_id: String,
        reason: &'static str,
        at: String,
    },
}

impl SocketMessage {
    fn ended(id: ReservationId, reason: crate::domain::EndReason, at: Timestamp) -> Self {
        SocketMessage::Ended {
            reservation_id: id.to_string(),
            reason: reason.as_str(),
            at: at.to_rfc3339(),
        }
    }
}

/// `GET /ws/reservations/{rid}`: a WebSocket that sends the reservation on connect and
/// again on each status change (fulfilled, claimed), then `ended` and a normal close.
/// An unknown, malformed or ended id is answered with the JSON 404 instead of an upgrade;
/// a request without the WebSocket handshake headers with a JSON 400.
///
/// The reservation JSON includes `lock_tokens` once fulfilled, as the GET does: the
/// reservation id is what entitles a caller to its locks.
pub async fn watch_reservation(
    broker: Broker,
    shutdown: Data<Shutdown>,
    rid: web::Path<String>,
    req: HttpRequest,
    body: Payload,
) -> Result<HttpResponse, ApiError> {
    let id: ReservationId = rid
        .parse()
        .map_err(|_| ApiError::UnknownReservation(rid.to_string()))?;
    // Subscribe before reading, so that a change committed between the two is not lost.
    let events = broker.subscribe();
    let first = broker.reservation(id)?;
    let (response, session, messages) = actix_ws::handle(&req, body).map_err(|e| {
        ApiError::bad_request(
            "websocket_required",
            format!("this is a WebSocket endpoint: connect with a WebSocket client ({e})"),
        )
    })?;
    // Runs on this worker's runtime; it ends with the socket or the reservation.
    actix_web::rt::spawn(run_reservation_socket(
        BrokerHandle::clone(&broker),
        id,
        first,
        events,
        session,
        messages,
        shutdown.get_ref().clone(),
    ));
    Ok(response)
}

/// Whether `change` may change the status of reservation `id`. Its `Locked` events and
/// its creation change nothing a watcher has not seen.
pub(crate) fn changes_status(change: &Committed, id: ReservationId) -> bool {
    change.events.iter().any(|event| {
        event.reservation() == Some(id)
            && matches!(
                event,
                Event::ReservationFulfilled { .. }
                    | Event::ReservationClaimed { .. }
                    | Event::ReservationEnded { .. }
            )
    })
}

/// How `change` ended reservation `id`, if it did.
fn ending(change: &Committed, id: ReservationId) -> Option<SocketMessage> {
    change.events.iter().find_map(|event| match event {
        Event::ReservationEnded {
            reservation,
            reason,
            at,
        } if *reservation == id => Some(SocketMessage::ended(id, *reason, *at)),
        _ => None,
    })
}

/// Serves one reservation socket until the reservation ends, the client closes, a write
/// fails (the client is gone) or the service stops (close code 1001, Going Away). Pings
/// every [`HEARTBEAT`] keep proxies from cutting an idle socket and reveal a vanished
/// client.
async fn run_reservation_socket(
    broker: BrokerHandle,
    id: ReservationId,
    first: ReservationSnapshot,
    mut events: broadcast::Receiver<Arc<Committed>>,
    mut session: Session,
    mut messages: MessageStream,
    shutdown: Shutdown,
) {
    // Subscribed in the handler, so nothing is missed from here on.
    let _watch = shutdown.watch_as(crate::runtime::Waiting::WebSocket);
    let mut last = first.reservation.status;
    if send(
        &mut session,
        &reservation_message(&first, broker.principal()),
    )
    .await
    .is_err()
    {
        return;
    }
    let mut pings = time::interval_at(Instant::now() + HEARTBEAT, HEARTBEAT);
    pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let close = loop {
        tokio::select! {
            () = shutdown.begun() => break CloseCode::Away,
            received = events.recv() => {
                let outcome = match received {
                    Ok(change) => match ending(&change, id) {
                        Some(ended) => Read::Ended(ended),
                        None if changes_status(&change, id) => read(&broker, id, &mut last),
                        None => Read::Unchanged,
                    },
                    // Our change may be among the missed: read the state again.
                    Err(RecvError::Lagged(_)) => read(&broker, id, &mut last),
                    // The broker is going away with the server.
                    Err(RecvError::Closed) => break CloseCode::Away,
                };
                match outcome {
                    Read::Unchanged => {}
                    Read::Changed(message) => {
                        if send(&mut session, &message).await.is_err() {
                            return;
                        }
                    }
                    Read::Ended(message) => {
                        if send(&mut session, &message).await.is_err() {
                            return;
                        }
                        break CloseCode::Normal;
                    }
                    Read::Gone => break CloseCode::Normal,
                }
            }
            message = messages.recv() => match message {
                Some(Ok(Message::Ping(bytes))) => {
                    if session.pong(&bytes).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(reason))) => {
                    // Echo the client's close, as RFC 6455 asks; the connection then ends.
                    let _ = session.close(reason).await;
                    return;
                }
                // Nothing is expected from the client; text, binary and pongs are ignored.
                Some(Ok(_)) => {}
                Some(Err(_)) => break CloseCode::Protocol,
                // The connection is gone.
                None => return,
            },
            _ = pings.tick() => {
                if session.ping(b"").await.is_err() {
                    return;
                }
            }
        }
    };
    let description = (close == CloseCode::Away).then(|| "the service is stopping".to_owned());
    let _ = session
        .close(Some(CloseReason {
            code: close,
            description,
        }))
        .await;
}

/// What a fresh read of the reservation found.
enum Read {
    /// Its status differs from the last one sent (which is updated).
    Changed(SocketMessage),
    Unchanged,
    Ended(SocketMessage),
    /// Ended so long ago that the broker no longer remembers why.
    Gone,
}

fn read(broker: &BrokerHandle, id: ReservationId, last: &mut ReservationStatus) -> Read {
    match broker.reservation(id) {
        Ok(snapshot) if snapshot.reservation.status == *last => Read::Unchanged,
        Ok(snapshot) => {
            *last = snapshot.reservation.status;
            Read::Changed(reservation_message(&snapshot, broker.principal()))
        }
        Err(DomainError::ReservationEnded { reason, at, .. }) => {
            Read::Ended(SocketMessage::ended(id, reason, at))
        }
        Err(_) => Read::Gone,
    }
}

fn reservation_message(snapshot: &ReservationSnapshot, viewer: &Principal) -> SocketMessage {
    SocketMessage::Reservation {
        reservation: Box::new(ReservationView::shown_to(snapshot, viewer)),
    }
}

async fn send(session: &mut Session, message: &SocketMessage) -> Result<(), actix_ws::Closed> {
    let json = serde_json::to_string(message)
        // Plain structs of strings and numbers: serializing cannot fail.
        .expect("a socket message serializes");
    session.text(json).await
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;
    use crate::domain::{EndReason, FencingToken, ResourceId};
    use crate::runtime::stream::{REPLAY_EVENTS, SUBSCRIBER_BUFFER};

    const T: Timestamp = Timestamp::from_millis(1_768_471_200_000);

    fn unlocked(resource: u32) -> Event {
        Event::Unlocked {
            resource: ResourceId::new(resource),
            fencing: FencingToken::new(resource.into()),
            at: T,
        }
    }

    fn text(frame: Option<Result<Bytes, Infallible>>) -> String {
        let bytes = frame.expect("a frame").expect("infallible");
        String::from_utf8(bytes.to_vec()).expect("frames are UTF-8")
    }

    fn one_of_each() -> Vec<Event> {
        let r = ReservationId::from_u128(0x5eed);
        let resource = ResourceId::new(2);
        let fencing = FencingToken::new(9);
        vec![
            Event::Locked {
                resource,
                fencing,
                at: T,
                expires_at: T,
                reservation: Some(r),
            },
            Event::Extended {
                resource,
                fencing,
                expires_at: T,
            },
            unlocked(2),
            Event::Expired {
                resource,
                fencing,
                deadline: T,
            },
            Event::ReservationCreated {
                reservation: r,
                at: T,
            },
            Event::ReservationFulfilled {
                reservation: r,
                resources: vec![resource],
                at: T,
            },
            Event::ReservationClaimed {
                reservation: r,
                at: T,
            },
            Event::ReservationEnded {
                reservation: r,
                reason: EndReason::ClaimExpired,
                at: T,
            },
            Event::ForceUnlocked {
                resource,
                fencing,
                reason: "board hung".into(),
                at: T,
            },
            Event::MaintenanceScheduled {
                resource,
                reason: "disk swap".into(),
                from: T,
                until: None,
                at: T,
            },
            Event::MaintenanceStarted { resource, at: T },
            Event::MaintenanceEnded { resource, at: T },
            Event::ResourceAdded {
                resource,
                name: "board".into(),
                at: T,
            },
            Event::ResourceUpdated {
                resource,
                fields: vec!["tags"],
                at: T,
            },
            Event::ResourceRetiring {
                resource,
                name: "board".into(),
                at: T,
            },
            Event::ResourceRemoved {
                resource,
                name: "board".into(),
                at: T,
            },
        ]
    }

    #[test]
    fn every_event_serializes_with_its_kind_as_type() {
        let events = one_of_each();
        let kinds: Vec<&str> = events.iter().map(|e| EventView::from(e).kind()).collect();
        assert_eq!(kinds, EVENT_TYPES);
        for event in &events {
            let view = EventView::from(event);
            let json = serde_json::to_value(&view).unwrap();
            assert_eq!(json["type"], view.kind(), "{json}");
        }
    }

    #[test]
    fn locked_event_renders_ids_as_numbers_and_reservation_as_string() {
        let r = ReservationId::from_u128(0x5eed);
        let json = serde_json::to_value(EventView::from(&Event::Locked {
            resource: ResourceId::new(3),
            fencing: FencingToken::new(42),
            at: T,
            expires_at: Timestamp::from_millis(T.as_millis() + 60_000),
            reservation: Some(r),
        }))
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "type": "locked", "resource_id": 3, "fencing_token": 42,
                "at": "2026-01-15T10:00:00.000Z", "expires_at": "2026-01-15T10:01:00.000Z",
                "reservation_id": r.to_string(),
            })
        );
    }

    /// A publisher and a stream over it that starts after event `last` (`None`: now).
    fn stream_over(
        publisher: &Arc<Publisher>,
        last: Option<u64>,
        filter: TypeFilter,
        shutdown: Shutdown,
    ) -> impl Stream<Item = Result<Bytes, Infallible>> + use<> {
        let (subscription, last) = match last {
            Some(last) => (publisher.resume(last), last),
            None => {
                let (last, live) = publisher.subscribe_now();
                let fresh = Subscription {
                    backlog: Vec::new(),
                    gap: Gap::None,
                    live,
                };
                (fresh, last)
            }
        };
        event_stream(
            publisher.clone(),
            subscription,
            last,
            filter,
            HEARTBEAT,
            shutdown,
        )
    }

    /// Publishes one change per event, numbered from `first_seq`.
    fn publish(publisher: &Publisher, first_seq: u64, events: Vec<Event>) {
        publisher.publish(
            events
                .into_iter()
                .zip(first_seq..)
                .map(|(event, seq)| change(seq, vec![event])),
        );
    }

    /// Change `seq`, made by the system.
    fn change(seq: u64, events: Vec<Event>) -> crate::runtime::Change {
        crate::runtime::Change {
            seq,
            at: T,
            cause: crate::runtime::Cause::system(),
            events,
            delta: None,
            awaits_record: false,
        }
    }

    #[tokio::test]
    async fn stream_numbers_frames_by_their_place_in_the_broker_stream() {
        let publisher = Arc::new(Publisher::new(1));
        publish(&publisher, 1, vec![unlocked(7)]); // before the client connected
        let mut stream = Box::pin(stream_over(
            &publisher,
            None,
            TypeFilter(None),
            Shutdown::new(),
        ));
        publish(&publisher, 2, vec![unlocked(1), unlocked(2)]);

        let first = text(stream.next().await);
        let second = text(stream.next().await);

        assert_eq!(
            first,
            "id: 2\nevent: unlocked\ndata: {\"type\":\"unlocked\",\"resource_id\":1,\"fencing_token\":1,\"at\":\"2026-01-15T10:00:00.000Z\"}\n\n"
        );
        assert!(second.starts_with("id: 3\nevent: unlocked\n"), "{second}");
    }

    #[tokio::test]
    async fn stream_resumes_after_the_last_event_id_from_the_replay_buffer() {
        let publisher = Arc::new(Publisher::new(1));
        publish(&publisher, 1, (1..=5).map(unlocked).collect());
        let mut stream = Box::pin(stream_over(
            &publisher,
            Some(3),
            TypeFilter(None),
            Shutdown::new(),
        ));
        publish(&publisher, 6, vec![unlocked(6)]);

        let mut ids = Vec::new();
        for _ in 0..3 {
            let frame = text(stream.next().await);
            ids.push(frame.lines().next().unwrap().to_owned());
        }
        assert_eq!(
            ids,
            ["id: 4", "id: 5", "id: 6"],
            "no event twice, none lost"
        );
    }

    #[tokio::test]
    async fn stream_numbers_skip_filtered_events_without_sending_them() {
        let publisher = Arc::new(Publisher::new(1));
        let filter = TypeFilter(Some(vec!["expired"]));
        let mut stream = Box::pin(stream_over(&publisher, None, filter, Shutdown::new()));
        // One change with one event of each kind: the expired one is the fourth.
        publisher.publish([change(1, one_of_each())]);
        publish(&publisher, 2, vec![unlocked(1)]);

        let frame = text(stream.next().await);
        assert!(frame.starts_with("id: 4\nevent: expired\n"), "{frame}");
        publish(
            &publisher,
            3,
            vec![Event::Expired {
                resource: ResourceId::new(1),
                fencing: FencingToken::new(1),
                deadline: T,
            }],
        );
        let frame = text(stream.next().await);
        assert!(frame.starts_with("id: 18\nevent: expired\n"), "{frame}");
    }

    #[tokio::test]
    async fn a_listener_that_falls_behind_catches_up_from_the_replay_buffer() {
        let publisher = Arc::new(Publisher::new(1));
        let mut stream = Box::pin(stream_over(
            &publisher,
            None,
            TypeFilter(None),
            Shutdown::new(),
        ));
        // More changes than a subscriber's buffer holds, fewer than the replay keeps.
        let n = SUBSCRIBER_BUFFER as u32 + 100;
        publish(&publisher, 1, (1..=n).map(unlocked).collect());

        for expected in 1..=u64::from(n) {
            let frame = text(stream.next().await);
            assert!(
                frame.starts_with(&format!("id: {expected}\nevent: unlocked\n")),
                "frame {expected}: {frame}"
            );
        }
    }

    #[tokio::test]
    async fn what_the_replay_buffer_no_longer_holds_is_reported_as_missed() {
        let publisher = Arc::new(Publisher::new(1));
        let n = REPLAY_EVENTS as u32 + 250;
        publish(&publisher, 1, (1..=n).map(unlocked).collect());
        let mut stream = Box::pin(stream_over(
            &publisher,
            Some(0),
            TypeFilter(None),
            Shutdown::new(),
        ));

        assert_eq!(
            text(stream.next().await),
            "event: lagged\ndata: {\"type\":\"lagged\",\"missed\":250}\n\n"
        );
        assert!(text(stream.next().await).starts_with("id: 251\n"));
    }

    #[tokio::test]
    async fn an_id_from_another_run_is_reported_as_an_unknown_gap() {
        let publisher = Arc::new(Publisher::new(1));
        publish(&publisher, 1, vec![unlocked(1)]);
        let mut stream = Box::pin(stream_over(
            &publisher,
            Some(500),
            TypeFilter(None),
            Shutdown::new(),
        ));

        assert_eq!(
            text(stream.next().await),
            "event: lagged\ndata: {\"type\":\"lagged\",\"missed\":null}\n\n"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stream_sends_a_keep_alive_comment_after_fifteen_idle_seconds() {
        let publisher = Arc::new(Publisher::new(1));
        let mut stream = Box::pin(stream_over(
            &publisher,
            None,
            TypeFilter(None),
            Shutdown::new(),
        ));
        let started = Instant::now();

        let frame = text(stream.next().await);

        assert_eq!(frame, ": keep-alive\n\n");
        assert_eq!(started.elapsed(), HEARTBEAT);
        publish(&publisher, 1, vec![unlocked(1)]);
        assert!(text(stream.next().await).starts_with("id: 1\n"));
    }

    #[tokio::test]
    async fn stream_ends_and_stops_counting_itself_when_the_service_stops() {
        let publisher = Arc::new(Publisher::new(1));
        let shutdown = Shutdown::new();
        let mut stream = Box::pin(stream_over(
            &publisher,
            None,
            TypeFilter(None),
            shutdown.clone(),
        ));
        assert_eq!(shutdown.watchers(), 1);

        shutdown.begin();

        assert!(stream.next().await.is_none());
        drop(stream);
        assert_eq!(shutdown.watchers(), 0);
    }

    fn query(raw: &str) -> Query {
        let req = actix_web::test::TestRequest::get()
            .uri(&format!("/api/v1/events?{raw}"))
            .to_http_request();
        Query::parse(&req).unwrap()
    }

    #[test]
    fn type_filter_accepts_known_types_comma_separated_or_repeated() {
        assert_eq!(TypeFilter::parse(&query("")).unwrap(), TypeFilter(None));
        assert_eq!(
            TypeFilter::parse(&query("types=locked,%20unlocked&types=locked")).unwrap(),
            TypeFilter(Some(vec!["locked", "unlocked"]))
        );
    }

    #[test]
    fn type_filter_is_refused_when_it_names_an_unknown_or_no_type() {
        for (raw, why) in [
            ("types=locked,bogus", "an unknown type"),
            ("types=Locked", "types are lowercase"),
            ("types=", "no type at all"),
            ("types=,", "only separators"),
        ] {
            let error = TypeFilter::parse(&query(raw)).expect_err(why);
            assert_eq!(error.code(), "invalid_event_type", "{why}");
        }
    }
}
