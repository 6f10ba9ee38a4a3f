//! The audit log (issue 11): who changed what, when, from where, and what was refused.
//!
//! ```text
//!   committed change ─▶ Publisher ─(Observer, in order)─▶ AuditLog::committed ─┬▶ ring (queries)
//!     (--persist: its audit rows were written in the same transaction)         └▶ file queue ─▶ file thread
//!   refused mutating request ─▶ envelope ─▶ AuditLog::refused ─┬▶ ring, file queue
//!                                                              └▶ (--persist) writer queue
//! ```
//!
//! One [`Entry`] per event of a committed change (its `event_type` is the event's type,
//! its actor the change's [`Cause`]: `system` for what the broker did on its own), and
//! one per refused POST, PATCH or DELETE (`success: false`, the status and error `code`
//! in `details`). Entries are kept compact on the hot path (the event itself and a
//! shared pointer to the cause); the JSON [`Entry::record`] is only built for the file,
//! the store and the page a query answers.
//!
//! Layering: this module reads `domain` (events, ids, time) and `runtime` (causes, the
//! [`Observer`] seam); it knows no HTTP and no store. The store writes its rows through
//! [`Entry::record`], and the API renders [`Query`] pages.

pub mod file;
pub mod ring;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Map, Value, json};

pub use file::{FileSink, FileStatus};
pub use ring::{Page, Ring};

use crate::domain::{Event, ReservationId, ResourceId, Timestamp};
use crate::runtime::{Actor, Cause, Committed, Observer};

/// Entries kept (in memory, and in the store's table with `--persist`) unless
/// `--audit-retention` says otherwise.
pub const DEFAULT_RETENTION: usize = 100_000;
/// The largest page of `GET /api/v1/audit`.
pub const MAX_LIMIT: usize = 1000;
/// Its default page size.
pub const DEFAULT_LIMIT: usize = 50;
/// Every `event_type` the log records: the event stream's types, then the operations a
/// refusal names (`request`: no route, or a method the route does not serve).
pub const TYPES: &[&str] = &[
    "locked",
    "extended",
    "unlocked",
    "expired",
    "force_unlocked",
    "maintenance_scheduled",
    "maintenance_started",
    "maintenance_ended",
    "reservation_created",
    "reservation_fulfilled",
    "reservation_claimed",
    "reservation_ended",
    "resource_added",
    "resource_updated",
    "resource_retiring",
    "resource_removed",
    "create_resource",
    "lock",
    "lock_matching",
    "unlock_batch",
    "update_resource",
    "delete_resource",
    "unlock",
    "extend",
    "mark_unavailable",
    "mark_available",
    "force_unlock",
    "reserve",
    "cancel_reservation",
    "claim",
    "reload",
    "request",
];
/// The longest route kept in a refusal's details (longer ones are cut).
const MAX_ROUTE_BYTES: usize = 256;

/// One audit record, compact: see [`Entry::record`] for its JSON form.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub at: Timestamp,
    /// The event's type (`locked`, `expired`, …) or, for a refusal, the operation
    /// refused (`lock`, `unlock`, …).
    pub event_type: Cow<'static, str>,
    pub resource: Option<ResourceId>,
    pub reservation: Option<ReservationId>,
    pub cause: Arc<Cause>,
    pub success: bool,
    pub details: Details,
}

/// What an entry says beyond who and what.
#[derive(Clone, Debug, PartialEq)]
pub enum Details {
    /// The committed event: its fields become the details.
    Event(Event),
    /// A request's answer: a refusal, or an accepted request that changed nothing.
    Answer(Answer),
    /// Read back from the store: the details object as it was written (JSON text,
    /// parsed only when shown: a hundred thousand of them are kept in memory).
    Stored(Box<str>),
}

/// A mutating request's answer, as the envelope saw it: a refusal (4xx, 5xx), or an
/// accepted request that changed nothing (its events would record it otherwise).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub method: String,
    /// The matched route pattern (`/api/v1/resources/{id}/lock`), or the path when no
    /// route matched.
    pub route: String,
    pub status: u16,
    /// The error body's `code`, when the answer had one.
    pub code: Option<&'static str>,
}

impl Entry {
    /// One entry per event of a committed change, in the change's order.
    pub fn of_change(at: Timestamp, cause: &Arc<Cause>, events: &[Event]) -> Vec<Entry> {
        events
            .iter()
            .map(|event| Entry {
                at,
                event_type: Cow::Borrowed(event_type(event)),
                resource: event_resource(event),
                reservation: event.reservation(),
                cause: cause.clone(),
                success: true,
                details: Details::Event(event.clone()),
            })
            .collect()
    }

    /// The entry of a refused request: `operation` names what was refused.
    pub fn refused(
        at: Timestamp,
        cause: Arc<Cause>,
        operation: &'static str,
        resource: Option<ResourceId>,
        reservation: Option<ReservationId>,
        answer: Answer,
    ) -> Entry {
        Self::answered(at, cause, operation, resource, reservation, answer, false)
    }

    /// The entry of a mutating request's answer: a refusal (`success` false), or an
    /// accepted request that changed nothing (`success` true).
    pub fn answered(
        at: Timestamp,
        cause: Arc<Cause>,
        operation: &'static str,
        resource: Option<ResourceId>,
        reservation: Option<ReservationId>,
        mut answer: Answer,
        success: bool,
    ) -> Entry {
        if answer.route.len() > MAX_ROUTE_BYTES {
            let mut cut = MAX_ROUTE_BYTES;
            while !answer.route.is_char_boundary(cut) {
                cut -= 1;
            }
            answer.route.truncate(cut);
        }
        Entry {
            at,
            event_type: Cow::Borrowed(operation),
            resource,
            reservation,
            cause,
            success,
            details: Details::Answer(answer),
        }
    }

    /// The actor as the record names it: the key's name, `system` or `anonymous`.
    pub fn actor(&self) -> &str {
        self.cause.actor.name()
    }

    /// The actor's role; `None` for the system and anonymous callers.
    pub fn role(&self) -> Option<&str> {
        match &self.cause.actor {
            Actor::Named { role, .. } if !role.is_empty() => Some(role),
            _ => None,
        }
    }

    /// The record as the file, the store and the endpoint give it, keys in this order:
    /// `timestamp` (RFC 3339, ms), `event_type`, `resource_id`, `reservation_id`,
    /// `actor`, `role`, `client_ip`, `user_agent`, `request_id`, `success`, `details`.
    pub fn record(&self) -> Value {
        // A struct of two `String`s and a `Value` always converts.
        serde_json::to_value(self.view()).unwrap_or_default()
    }

    /// [`Entry::record`] as one line of JSON, appended to `out` (no newline): what the
    /// file's thread writes, without building the record as a `Value` first.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Serializing into a Vec cannot fail.
        let _ = serde_json::to_writer(out, &self.view());
    }

    fn view(&self) -> RecordView<'_> {
        RecordView {
            timestamp: self.at.to_rfc3339(),
            event_type: &self.event_type,
            resource_id: self.resource.map(ResourceId::get),
            reservation_id: self.reservation.map(|r| r.to_string()),
            actor: self.actor(),
            role: self.role(),
            client_ip: self.cause.client_ip,
            user_agent: self.cause.user_agent.as_deref(),
            request_id: self.cause.request_id.as_deref(),
            success: self.success,
            details: Value::Object(self.details()),
        }
    }

    /// The `details` object.
    pub fn details(&self) -> Map<String, Value> {
        match &self.details {
            Details::Event(event) => event_details(event),
            Details::Answer(r) => {
                let mut map = Map::new();
                map.insert("status".into(), json!(r.status));
                map.insert("code".into(), json!(r.code));
                map.insert("method".into(), json!(r.method));
                map.insert("route".into(), json!(r.route));
                map
            }
            Details::Stored(text) => serde_json::from_str(text).unwrap_or_default(),
        }
    }

    /// An entry as the store read it back: the columns of one row. `None` when its
    /// reservation id is not one.
    #[allow(clippy::too_many_arguments)] // one argument per column of the table
    pub fn stored(
        at: Timestamp,
        event_type: String,
        resource: Option<u32>,
        reservation: Option<&str>,
        actor: &str,
        role: Option<&str>,
        client_ip: Option<&str>,
        user_agent: Option<&str>,
        request_id: Option<&str>,
        success: bool,
        details: &str,
    ) -> Option<Entry> {
        let actor = match (actor, role) {
            ("system", None) => Actor::System,
            ("anonymous", None) => Actor::Anonymous,
            (name, role) => Actor::Named {
                name: name.into(),
                role: role.unwrap_or_default().into(),
            },
        };
        Some(Entry {
            at,
            event_type: Cow::Owned(event_type),
            resource: resource.map(ResourceId::new),
            reservation: reservation.map(str::parse).transpose().ok()?,
            cause: Arc::new(Cause {
                actor,
                request_id: request_id.map(Arc::from),
                client_ip: client_ip.and_then(|ip| ip.parse::<IpAddr>().ok()),
                user_agent: user_agent.map(Arc::from),
            }),
            success,
            details: Details::Stored(details.into()),
        })
    }
}

/// A record's fields, in their documented order ([`Entry::record`]).
#[derive(serde::Serialize)]
struct RecordView<'a> {
    timestamp: String,
    event_type: &'a str,
    resource_id: Option<u32>,
    reservation_id: Option<String>,
    actor: &'a str,
    role: Option<&'a str>,
    client_ip: Option<IpAddr>,
    user_agent: Option<&'a str>,
    request_id: Option<&'a str>,
    success: bool,
    details: Value,
}

/// An event's type: the names of the event stream (`GET /api/v1/events`).
pub fn event_type(event: &Event) -> &'static str {
    match event {
        Event::Locked { .. } => "locked",
        Event::Extended { .. } => "extended",
        Event::Unlocked { .. } => "unlocked",
        Event::Expired { .. } => "expired",
        Event::ForceUnlocked { .. } => "force_unlocked",
        Event::MaintenanceScheduled { .. } => "maintenance_scheduled",
        Event::MaintenanceStarted { .. } => "maintenance_started",
        Event::MaintenanceEnded { .. } => "maintenance_ended",
        Event::ReservationCreated { .. } => "reservation_created",
        Event::ReservationFulfilled { .. } => "reservation_fulfilled",
        Event::ReservationClaimed { .. } => "reservation_claimed",
        Event::ReservationEnded { .. } => "reservation_ended",
        Event::ResourceAdded { .. } => "resource_added",
        Event::ResourceUpdated { .. } => "resource_updated",
        Event::ResourceRetiring { .. } => "resource_retiring",
        Event::ResourceRemoved { .. } => "resource_removed",
    }
}

/// The resource an event is about, if it is about one.
fn event_resource(event: &Event) -> Option<ResourceId> {
    match event {
        Event::Locked { resource, .. }
        | Event::Extended { resource, .. }
        | Event::Unlocked { resource, .. }
        | Event::Expired { resource, .. }
        | Event::ForceUnlocked { resource, .. }
        | Event::MaintenanceScheduled { resource, .. }
        | Event::MaintenanceStarted { resource, .. }
        | Event::MaintenanceEnded { resource, .. }
        | Event::ResourceAdded { resource, .. }
        | Event::ResourceUpdated { resource, .. }
        | Event::ResourceRetiring { resource, .. }
        | Event::ResourceRemoved { resource, .. } => Some(*resource),
        Event::ReservationCreated { .. }
        | Event::ReservationFulfilled { .. }
        | Event::ReservationClaimed { .. }
        | Event::ReservationEnded { .. } => None,
    }
}

/// The event's own fields, by the event stream's names (never a lock token: events
/// carry none).
fn event_details(event: &Event) -> Map<String, Value> {
    let time = |t: &Timestamp| json!(t.to_rfc3339());
    let value = match event {
        Event::Locked {
            fencing,
            at,
            expires_at,
            ..
        } => {
            json!({"fencing_token": fencing.get(), "at": time(at), "expires_at": time(expires_at)})
        }
        Event::Extended {
            fencing,
            expires_at,
            ..
        } => json!({"fencing_token": fencing.get(), "expires_at": time(expires_at)}),
        Event::Unlocked { fencing, at, .. } => {
            json!({"fencing_token": fencing.get(), "at": time(at)})
        }
        Event::Expired {
            fencing, deadline, ..
        } => json!({"fencing_token": fencing.get(), "at": time(deadline)}),
        Event::ForceUnlocked {
            fencing,
            reason,
            at,
            ..
        } => json!({"fencing_token": fencing.get(), "reason": reason, "at": time(at)}),
        Event::MaintenanceScheduled {
            reason,
            from,
            until,
            at,
            ..
        } => json!({
            "reason": reason,
            "from": time(from),
            "until": until.as_ref().map(time),
            "at": time(at),
        }),
        Event::MaintenanceStarted { at, .. }
        | Event::MaintenanceEnded { at, .. }
        | Event::ReservationCreated { at, .. }
        | Event::ReservationClaimed { at, .. } => json!({"at": time(at)}),
        Event::ReservationFulfilled { resources, at, .. } => json!({
            "resource_ids": resources.iter().map(|r| r.get()).collect::<Vec<_>>(),
            "at": time(at),
        }),
        Event::ReservationEnded { reason, at, .. } => {
            json!({"reason": reason.as_str(), "at": time(at)})
        }
        Event::ResourceAdded { name, at, .. }
        | Event::ResourceRetiring { name, at, .. }
        | Event::ResourceRemoved { name, at, .. } => json!({"name": name, "at": time(at)}),
        Event::ResourceUpdated { fields, at, .. } => json!({"fields": fields, "at": time(at)}),
    };
    match value {
        Value::Object(map) => map,
        _ => unreachable!("every arm builds an object"),
    }
}

/// What `GET /api/v1/audit` filters on; every given filter must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// At or after.
    pub from: Option<Timestamp>,
    /// Before (exclusive).
    pub to: Option<Timestamp>,
    /// The actor's name (`system`, `anonymous`, or a key's name).
    pub actor: Option<String>,
    pub resource: Option<ResourceId>,
    pub event_type: Option<String>,
}

impl Filter {
    pub fn matches(&self, entry: &Entry) -> bool {
        self.from.is_none_or(|from| entry.at >= from)
            && self.to.is_none_or(|to| entry.at < to)
            && self.actor.as_deref().is_none_or(|a| entry.actor() == a)
            && self.resource.is_none_or(|r| entry.resource == Some(r))
            && self
                .event_type
                .as_deref()
                .is_none_or(|t| entry.event_type == t)
    }
}

/// A query: which entries, and which page of them (1-based), newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub filter: Filter,
    pub page: usize,
    pub limit: usize,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            filter: Filter::default(),
            page: 1,
            limit: DEFAULT_LIMIT,
        }
    }
}

/// The audit log of one service: the ring queries read, the file's queue, and (with
/// `--persist`) where answers go to be stored. Shared by the publisher (committed
/// changes), the envelope (answers) and the endpoint (queries).
pub struct AuditLog {
    ring: Mutex<Ring>,
    file: Option<FileSink>,
    /// With `--persist`: queues an answer's entry for the store's next transaction.
    store: OnceLock<Box<dyn Fn(Entry) + Send + Sync>>,
}

impl AuditLog {
    /// A log keeping the latest `retention` entries, starting with `stored` (oldest
    /// first: what the store kept), writing lines to `file` if given.
    pub fn new(retention: usize, stored: Vec<Entry>, file: Option<FileSink>) -> Self {
        let mut ring = Ring::new(retention);
        for entry in stored {
            ring.push(entry);
        }
        AuditLog {
            ring: Mutex::new(ring),
            file,
            store: OnceLock::new(),
        }
    }

    /// With `--persist`: answers' entries (refusals, requests that changed nothing) go
    /// to `queue` (the store's writer), committed with its next transaction. Set once,
    /// at start.
    pub fn store_answers_with(&self, queue: impl Fn(Entry) + Send + Sync + 'static) {
        let _ = self.store.set(Box::new(queue));
    }

    /// Records a request's answer (a refusal, or an accepted request that changed
    /// nothing). Never waits for a commit or the file.
    pub fn answered(&self, entry: Entry) {
        if let Some(store) = self.store.get() {
            store(entry.clone());
        }
        self.add(std::iter::once(entry));
    }

    /// One page of the entries `query` selects, newest first.
    pub fn query(&self, query: &Query) -> Page {
        // The ring's lock is held only to copy a view (chunk pointers and the open
        // chunk): the scan runs unlocked, so a query never holds up publishing.
        let view = self.ring().view();
        view.page(query)
    }

    /// How the file's writer is doing (`None` without `--audit-log`).
    pub fn file_status(&self) -> Option<FileStatus> {
        self.file.as_ref().map(FileSink::status)
    }

    /// Why the audit log cannot be trusted now (empty when it can): for `/readiness`.
    pub fn unready_reasons(&self) -> Vec<String> {
        self.file
            .as_ref()
            .and_then(|f| f.status().problem())
            .into_iter()
            .collect()
    }

    /// Writes what is queued to the file and stops its thread (at shutdown).
    pub fn close(&self) {
        if let Some(file) = &self.file {
            file.close();
        }
    }

    fn add(&self, entries: impl IntoIterator<Item = Entry>) {
        let mut ring = self.ring();
        for entry in entries {
            if let Some(file) = &self.file {
                file.send(entry.clone());
            }
            ring.push(entry);
        }
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        // Pushing and copying a view do not panic on any entry: a poisoned lock means a
        // bug elsewhere on this thread, and the ring itself is intact.
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Observer for AuditLog {
    fn committed(&self, change: &Committed) {
        self.add(Entry::of_change(change.at, &change.cause, &change.events));
    }
}

#[cfg(test)]
mod tests;
