//! Retry-safe POSTs: an `Idempotency-Key` header makes a retried request return the
//! original result instead of taking a second lock or queueing a second reservation.
//!
//! [`remember`] is the middleware (mounted with `actix_web::middleware::from_fn`), and
//! [`IdempotencyStore`] the table it keeps, one per service, registered as app data.
//!
//! For a `POST` carrying the header, per key (scoped by method and path):
//!
//! ```text
//! unknown key                 -> run the handler (the entry is "in flight")
//!     2xx                     -> remember status, headers and body until
//!                                now + max(Retain, DEFAULT_RETENTION)
//!     anything else, or the   -> forget the key: a retry runs again (a refused lock may
//!     request is dropped         succeed later, and the caller must not be stuck with it)
//! in flight, same request     -> wait for the first to end, then replay (or run, if it failed)
//! remembered, same request    -> replay, with `Idempotent-Replayed: true`
//! same key, other request     -> 422 idempotency_key_reused
//! ```
//!
//! "Same request" means the same fingerprint: SHA-256 of method, path, query string and
//! body bytes. Requests without the header, and other methods, pass straight through.
//!
//! Memory is bounded: remembered entries expire lazily (an index ordered by expiry is
//! popped on every lookup), at most [`MAX_ENTRIES`] entries and [`MAX_STORED_BYTES`] bytes
//! are kept (the entries that expire first make room), and responses over
//! [`MAX_RESPONSE_BYTES`] are not remembered at all. In-flight entries are not counted:
//! there is one per running request, so open connections bound them.
//!
//! Trade-off: the key is not scoped by caller, as the API has no callers yet; when
//! authentication arrives, the caller belongs in `Scope`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix_web::body::{self, BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes};
use actix_web::{Error, HttpMessage, HttpResponse};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::error::ApiError;
use super::params;
use crate::auth::Caller;
use crate::auth::roles::ANONYMOUS;
use crate::domain::Timestamp;
use crate::runtime::{BrokerHandle, IdempotencyRecord, RequestScope, Shutdown};

/// The request header that names a retry-safe request.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// Set to `true` on a response replayed from the store.
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// The longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 255;
/// How long a response is remembered at least: longer than any retry loop runs.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// The most remembered responses kept at once.
pub const MAX_ENTRIES: usize = 100_000;
/// The most bytes (bodies, headers, keys) kept at once.
pub const MAX_STORED_BYTES: usize = 64 * 1024 * 1024;
/// Responses larger than this pass through unremembered. A lock response is under 1 KiB.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Inserted into a response's extensions by a handler whose result must be remembered
/// longer than [`DEFAULT_RETENTION`] (a lock: at least its TTL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retain(pub Duration);

impl Retain {
    /// `response`, marked to be remembered for at least this long.
    pub fn on(self, mut response: HttpResponse) -> HttpResponse {
        response.extensions_mut().insert(self);
        response
    }
}

/// The remembered requests of this service. Cheap to clone: every clone shares one table.
/// Built once in `app::build` and registered with `.app_data(store)`.
#[derive(Clone)]
pub struct IdempotencyStore {
    shared: Arc<Shared>,
}

struct Shared {
    /// A std mutex: every critical section is a few map operations, never an `.await`.
    table: Mutex<Table>,
    /// The broker's clock, so that tests with a manual clock control retention.
    clock: BrokerHandle,
}

impl IdempotencyStore {
    /// A store holding `records` (what the state store kept), through `clock`'s broker.
    pub fn new(clock: BrokerHandle, records: Vec<IdempotencyRecord>) -> Self {
        let mut table = Table::new(MAX_ENTRIES, MAX_STORED_BYTES);
        let now = clock.now();
        for record in records {
            table.restore(record, now);
        }
        IdempotencyStore {
            shared: Arc::new(Shared {
                table: Mutex::new(table),
                clock,
            }),
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.shared
            .table
            .lock()
            // Table methods do not panic on any input; if one did, the table may be
            // half-changed, and refusing to go on is safer than replaying from it.
            .expect("idempotency table mutex poisoned by an earlier panic")
    }

    fn begin(&self, scope: &Scope, fingerprint: Fingerprint) -> Begin<Ticket> {
        let now = self.shared.clock.now();
        match self.table().begin(scope, fingerprint, now) {
            Begin::Run((id, done)) => Begin::Run(Ticket {
                store: self.clone(),
                scope: scope.clone(),
                id,
                _done: done,
                is_finished: false,
            }),
            Begin::Wait(rx) => Begin::Wait(rx),
            Begin::Replay(stored) => Begin::Replay(stored),
            Begin::Mismatch => Begin::Mismatch,
        }
    }
}

/// What a key is remembered under: the same key on another path is another entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Scope {
    /// Whose answers: the caller's name (a key's or a JWT subject's; `anonymous` with
    /// auth off). Two callers never see each other's answers, even for the same key.
    owner: Arc<str>,
    method: Method,
    path: String,
    key: String,
}

impl Scope {
    fn bytes(&self) -> usize {
        self.owner.len() + self.path.len() + self.key.len()
    }
}

/// SHA-256 of the request: method, path, query string, body.
type Fingerprint = [u8; 32];

fn fingerprint(method: &Method, path: &str, query: &str, body: &[u8]) -> Fingerprint {
    let mut hash = Sha256::new();
    // Length-prefixed, so that no two different requests hash the same bytes.
    for part in [
        method.as_str().as_bytes(),
        path.as_bytes(),
        query.as_bytes(),
        body,
    ] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.finalize().into()
}

/// A remembered response.
#[derive(Debug)]
struct Stored {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    /// The change the response reports (0: none, or committed before the service
    /// started). A replay is an answer too: it goes out once that change is committed.
    seq: u64,
}

impl Stored {
    /// Bytes held, roughly: body, headers, and a fixed overhead for the entry.
    fn bytes(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum();
        self.body.len() + headers + 128
    }

    fn replay(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        for (name, value) in &self.headers {
            response.append_header((name.clone(), value.clone()));
        }
        response.insert_header((REPLAYED, HeaderValue::from_static("true")));
        response.body(self.body.clone())
    }
}

/// What to do with a request, per [`Table::begin`]. `R` is what the runner gets.
#[derive(Debug)]
enum Begin<R> {
    /// Unknown key: run the handler, then complete or release the entry.
    Run(R),
    /// The same request is in flight: wait until this receiver's sender is dropped.
    Wait(watch::Receiver<()>),
    Replay(Arc<Stored>),
    Mismatch,
}

/// The table behind the store: pure, with `now` passed in, so the tests pick the times.
struct Table {
    entries: HashMap<Arc<Scope>, Entry>,
    /// Every remembered (not in-flight) entry, by expiry then id.
    by_expiry: BTreeMap<(Timestamp, u64), Arc<Scope>>,
    stored_bytes: usize,
    next_id: u64,
    max_entries: usize,
    max_bytes: usize,
}

struct Entry {
    /// Tells this entry from a later one under the same scope.
    id: u64,
    fingerprint: Fingerprint,
    state: State,
}

enum State {
    /// The handler runs. Waiters wake when the runner drops the sender.
    InFlight(watch::Receiver<()>),
    Done {
        response: Arc<Stored>,
        bytes: usize,
    },
}

impl Table {
    fn new(max_entries: usize, max_bytes: usize) -> Self {
        Table {
            entries: HashMap::new(),
            by_expiry: BTreeMap::new(),
            stored_bytes: 0,
            next_id: 0,
            max_entries,
            max_bytes,
        }
    }

    /// Looks `scope` up; if unknown, marks it in flight and hands the caller the id of its
    /// entry and the sender whose drop wakes the waiters.
    fn begin(
        &mut self,
        scope: &Scope,
        fingerprint: Fingerprint,
        now: Timestamp,
    ) -> Begin<(u64, watch::Sender<()>)> {
        self.purge(now);
        if let Some(entry) = self.entries.get(scope) {
            if entry.fingerprint != fingerprint {
                return Begin::Mismatch;
            }
            return match &entry.state {
                State::InFlight(rx) => Begin::Wait(rx.clone()),
                State::Done { response, .. } => Begin::Replay(response.clone()),
            };
        }
        let (tx, rx) = watch::channel(());
        let id = self.next_id;
        self.next_id += 1;
        self.entries.insert(
            Arc::new(scope.clone()),
            Entry {
                id,
                fingerprint,
                state: State::InFlight(rx),
            },
        );
        Begin::Run((id, tx))
    }

    /// Files a remembered answer the state store kept, unless it has expired.
    fn restore(&mut self, record: IdempotencyRecord, now: Timestamp) {
        if record.expires_at <= now {
            return;
        }
        let Ok(method) = Method::from_bytes(record.method.as_bytes()) else {
            return;
        };
        let scope = Scope {
            owner: Arc::from(record.owner),
            method,
            path: record.path,
            key: record.key,
        };
        let mut headers = HeaderMap::new();
        for (name, value) in record.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                headers.append(name, value);
            }
        }
        let response = Stored {
            status: StatusCode::from_u16(record.status).unwrap_or(StatusCode::OK),
            headers,
            body: Bytes::from(record.body),
            seq: 0,
        };
        let Begin::Run((id, _done)) = self.begin(&scope, record.fingerprint, now) else {
            return; // two records for one scope: the first stays
        };
        self.complete_until(&scope, id, response, record.expires_at);
    }

    /// Remembers the response of in-flight entry `id` until `now + max(retain, default)`,
    /// first evicting the entries that expire first if the table is full. A response that
    /// could never fit is forgotten instead.
    fn complete(
        &mut self,
        scope: &Scope,
        id: u64,
        response: Stored,
        retain: Duration,
        now: Timestamp,
    ) {
        self.complete_until(scope, id, response, expiry(retain, now));
    }

    /// As [`Table::complete`], remembered until `expires_at`.
    fn complete_until(&mut self, scope: &Scope, id: u64, response: Stored, expires_at: Timestamp) {
        let Some((key, entry)) = self.entries.get_key_value(scope) else {
            return;
        };
        if entry.id != id || !matches!(entry.state, State::InFlight(_)) {
            return;
        }
        let key = key.clone();
        let bytes = response.bytes() + scope.bytes();
        if bytes > self.max_bytes || self.max_entries == 0 {
            self.entries.remove(scope);
            return;
        }
        // Make room before inserting, so the new entry is never the one evicted: its
        // waiters are about to replay it.
        while self.by_expiry.len() >= self.max_entries || self.stored_bytes + bytes > self.max_bytes
        {
            let Some((_, oldest)) = self.by_expiry.pop_first() else {
                break;
            };
            self.forget(&oldest);
        }
        self.by_expiry.insert((expires_at, id), key);
        self.stored_bytes += bytes;
        let entry = self.entries.get_mut(scope).expect("looked up above");
        entry.state = State::Done {
            response: Arc::new(response),
            bytes,
        };
    }

    /// Forgets in-flight entry `id`: its request failed or was dropped.
    fn release(&mut self, scope: &Scope, id: u64) {
        if let Some(entry) = self.entries.get(scope)
            && entry.id == id
            && matches!(entry.state, State::InFlight(_))
        {
            self.entries.remove(scope);
        }
    }

    /// Forgets every remembered entry whose time is up.
    fn purge(&mut self, now: Timestamp) {
        while let Some(entry) = self.by_expiry.first_entry()
            && entry.key().0 <= now
        {
            let scope = entry.remove();
            self.forget(&scope);
        }
    }

    /// Removes a remembered entry already taken out of `by_expiry`.
    fn forget(&mut self, scope: &Scope) {
        if let Some(Entry {
            state: State::Done { bytes, .. },
            ..
        }) = self.entries.get(scope)
        {
            self.stored_bytes -= bytes;
            self.entries.remove(scope);
        }
    }

    #[cfg(test)]
    fn expiry_of(&self, scope: &Scope) -> Option<Timestamp> {
        self.by_expiry
            .iter()
            .find(|(_, s)| ***s == *scope)
            .map(|((t, _), _)| *t)
    }
}

/// When an answer remembered at `now` for at least `retain` is forgotten.
fn expiry(retain: Duration, now: Timestamp) -> Timestamp {
    now.checked_add(retain.max(DEFAULT_RETENTION))
        .unwrap_or(Timestamp::from_millis(u64::MAX))
}

/// The right to run the handler for an in-flight entry. Completing it remembers the
/// response; dropping it any other way (an error status, a dropped request, a panic)
/// forgets the key. Either way the sender drops last, waking the waiters once the table
/// already says what happened.
struct Ticket {
    store: IdempotencyStore,
    scope: Scope,
    id: u64,
    _done: watch::Sender<()>,
    is_finished: bool,
}

impl Ticket {
    fn complete(mut self, response: Stored, retain: Duration) {
        let now = self.store.shared.clock.now();
        self.store
            .table()
            .complete(&self.scope, self.id, response, retain, now);
        self.is_finished = true;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.is_finished {
            self.store.table().release(&self.scope, self.id);
        }
    }
}

/// The request's scope (set by the envelope).
fn request_scope(req: &ServiceRequest) -> Option<Arc<RequestScope>> {
    req.extensions().get::<Arc<RequestScope>>().cloned()
}

/// The duty to hand the store the answer of the request whose change waits for it
/// ([`BrokerHandle::attach_record`]). Whatever happens (an error status, a dropped
/// request, a panic), dropping it sends "no answer", so the store never waits for one
/// that will not come.
struct Answer {
    broker: BrokerHandle,
    request: Option<Arc<RequestScope>>,
    /// The change waiting, once the handler has run.
    seq: Option<u64>,
}

impl Answer {
    fn attach(mut self, record: Option<IdempotencyRecord>) {
        if let Some(seq) = self.seq.take() {
            self.broker.attach_record(seq, record);
        }
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        // The handler may not have returned (the request was dropped mid-way): the scope
        // still knows whether a change waits.
        let seq = self
            .seq
            .take()
            .or_else(|| self.request.as_ref().and_then(|r| r.take_awaiting()));
        if let Some(seq) = seq {
            self.broker.attach_record(seq, None);
        }
    }
}

/// A key as sent: 1 to [`MAX_KEY_LEN`] visible ASCII characters, one header only.
fn parse_key(req: &ServiceRequest) -> Result<Option<String>, ApiError> {
    let mut values = req.headers().get_all(IDEMPOTENCY_KEY);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::bad_request(
            "invalid_idempotency_key",
            format!(
                "{IDEMPOTENCY_KEY} must be one header of 1 to {MAX_KEY_LEN} visible ASCII characters (no spaces), such as a UUID"
            ),
        )
    };
    let bytes = value.as_bytes();
    let is_valid = (1..=MAX_KEY_LEN).contains(&bytes.len())
        && bytes.iter().all(u8::is_ascii_graphic)
        && values.next().is_none();
    if !is_valid {
        return Err(invalid());
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

/// The middleware: mount with `.wrap(actix_web::middleware::from_fn(remember))` over the
/// routes that must be retry-safe. Needs an [`IdempotencyStore`] in the app data.
///
/// # Errors
/// Only those of the wrapped service. Refusals (400, 413, 422) are responses.
pub async fn remember(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    if req.method() != Method::POST || !req.headers().contains_key(IDEMPOTENCY_KEY) {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    }
    let key = match parse_key(&req) {
        Ok(Some(key)) => key,
        Ok(None) => unreachable!("checked above"),
        Err(e) => return Ok(req.error_response(e)),
    };
    let Some(store) = req.app_data::<IdempotencyStore>().cloned() else {
        tracing::error!("no IdempotencyStore in the app data: {IDEMPOTENCY_KEY} ignored");
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    // Read the body to fingerprint it, under the handlers' own limit, then put it back.
    let payload = req.extract::<web::Payload>().await?;
    let body = match params::read_body(req.request(), payload).await {
        Ok(body) => body,
        Err(e) => return Ok(req.error_response(e)),
    };
    let owner = req
        .extensions()
        .get::<Caller>()
        .map_or_else(|| Arc::from(ANONYMOUS), |caller| caller.name.clone());
    let scope = Scope {
        owner,
        method: req.method().clone(),
        path: req.path().to_owned(),
        key,
    };
    let fingerprint = fingerprint(req.method(), req.path(), req.query_string(), &body);

    let ticket = loop {
        match store.begin(&scope, fingerprint) {
            Begin::Run(ticket) => break ticket,
            // Nothing is ever sent: `changed` returns (with an error) when the runner's
            // sender drops, after it updated the table. Then look again: replay, or run
            // if the first attempt failed.
            Begin::Wait(mut done) => {
                // Counted among the waiting responses meanwhile (tests wait for it).
                let _watch = req.app_data::<web::Data<Shutdown>>().map(|s| s.watch());
                while done.changed().await.is_ok() {}
            }
            Begin::Replay(stored) => {
                // The first answer may still be waiting for its commit: so does this one.
                if let Some(request) = request_scope(&req) {
                    request.saw(stored.seq);
                }
                return Ok(req.into_response(stored.replay()));
            }
            Begin::Mismatch => return Ok(req.error_response(ApiError::IdempotencyKeyReused)),
        }
    };

    // The change this request makes waits in the store's queue for its answer, so that
    // both are committed together (or neither): see `runtime/scope.rs`.
    let request = request_scope(&req);
    if let Some(request) = &request {
        request.arm();
    }
    let mut answer = Answer {
        broker: store.shared.clock.clone(),
        request,
        seq: None,
    };
    req.set_payload(body.into());
    let res = next.call(req).await?;
    answer.seq = answer.request.as_ref().and_then(|r| r.take_awaiting());
    if !res.status().is_success() {
        drop(ticket);
        return Ok(res.map_into_boxed_body());
    }
    let fits = match res.response().body().size() {
        BodySize::None => true,
        BodySize::Sized(n) => n <= MAX_RESPONSE_BYTES as u64,
        BodySize::Stream => false,
    };
    if !fits {
        drop(ticket);
        return Ok(res.map_into_boxed_body());
    }
    let retain = res
        .response()
        .extensions()
        .get::<Retain>()
        .map_or(Duration::ZERO, |r| r.0);
    let (req, response) = res.into_parts();
    let (head, response_body) = response.into_parts();
    let bytes = match body::to_bytes(response_body).await {
        Ok(bytes) => bytes,
        Err(e) => {
            // A sized body that fails to read: not seen with JSON bodies.
            let e: Box<dyn std::error::Error> = e.into();
            tracing::error!(error = %e, "response body could not be read");
            drop(ticket);
            let failed = HttpResponse::InternalServerError().json(serde_json::json!({
                "message": "the response could not be produced",
                "code": "internal",
            }));
            return Ok(ServiceResponse::new(req, failed));
        }
    };
    let now = store.shared.clock.now();
    let record = answer.seq.map(|_| IdempotencyRecord {
        owner: ticket.scope.owner.to_string(),
        method: ticket.scope.method.to_string(),
        path: ticket.scope.path.clone(),
        key: ticket.scope.key.clone(),
        fingerprint,
        status: head.status().as_u16(),
        headers: head
            .headers()
            .iter()
            .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
            .collect(),
        body: bytes.to_vec(),
        expires_at: expiry(retain, now),
    });
    ticket.complete(
        Stored {
            status: head.status(),
            headers: head.headers().clone(),
            body: bytes.clone(),
            seq: answer.seq.unwrap_or(0),
        },
        retain,
    );
    answer.attach(record);
    Ok(ServiceResponse::new(
        req,
        head.set_body(bytes).map_into_boxed_body(),
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use actix_web::middleware::from_fn;
    use actix_web::{App, test as actix_test};
    use tokio::sync::Semaphore;

    use super::*;
    use crate::domain::{Broker, Timestamp};
    use crate::runtime::ManualClock;

    const T0: Timestamp = Timestamp::from_millis(1_768_471_200_000);
    const HOUR: Duration = Duration::from_secs(3600);

    fn scope(key: &str) -> Scope {
        Scope {
            owner: Arc::from("anonymous"),
            method: Method::POST,
            path: "/api/v1/resources/1/lock".to_owned(),
            key: key.to_owned(),
        }
    }

    fn response(body: &'static str) -> Stored {
        Stored {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from_static(body.as_bytes()),
            seq: 0,
        }
    }

    fn after(t: Timestamp, d: Duration) -> Timestamp {
        t.checked_add(d).unwrap()
    }

    /// Runs and completes `key` at `now`.
    fn remembered(table: &mut Table, key: &str, fp: Fingerprint, retain: Duration, now: Timestamp) {
        let Begin::Run((id, _done)) = table.begin(&scope(key), fp, now) else {
            panic!("{key} is already known");
        };
        table.complete(&scope(key), id, response("{}"), retain, now);
    }

    fn replays(table: &mut Table, key: &str, fp: Fingerprint, now: Timestamp) -> bool {
        match table.begin(&scope(key), fp, now) {
            Begin::Replay(_) => true,
            Begin::Run((id, _)) => {
                table.release(&scope(key), id);
                false
            }
            other => panic!("{key}: {other:?}"),
        }
    }

    #[test]
    fn same_key_replays_when_the_request_is_the_same_and_refuses_when_it_differs() {
        let mut table = Table::new(10, 1 << 20);
        remembered(&mut table, "k", [1; 32], Duration::ZERO, T0);

        assert!(
            matches!(table.begin(&scope("k"), [1; 32], T0), Begin::Replay(s) if &s.body[..] == b"{}")
        );
        assert!(matches!(
            table.begin(&scope("k"), [2; 32], T0),
            Begin::Mismatch
        ));
        let other_path = Scope {
            path: "/api/v1/resources/2/lock".to_owned(),
            ..scope("k")
        };
        assert!(matches!(
            table.begin(&other_path, [2; 32], T0),
            Begin::Run(_)
        ));
    }

    #[test]
    fn another_caller_with_the_same_key_runs_its_own_request() {
        let mut table = Table::new(10, 1 << 20);
        remembered(&mut table, "k", [1; 32], Duration::ZERO, T0);
        let bob = Scope {
            owner: Arc::from("bob"),
            ..scope("k")
        };
        // The same request, the same key: still not the first caller's answer.
        assert!(matches!(table.begin(&bob, [1; 32], T0), Begin::Run(_)));
        assert!(matches!(
            table.begin(&scope("k"), [1; 32], T0),
            Begin::Replay(_)
        ));
    }

    #[test]
    fn fingerprint_tells_apart_method_path_query_and_body() {
        let base = fingerprint(&Method::POST, "/a", "x=1", b"{}");
        assert_eq!(base, fingerprint(&Method::POST, "/a", "x=1", b"{}"));
        for (other, why) in [
            (fingerprint(&Method::PUT, "/a", "x=1", b"{}"), "method"),
            (fingerprint(&Method::POST, "/b", "x=1", b"{}"), "path"),
            (fingerprint(&Method::POST, "/a", "x=2", b"{}"), "query"),
            (fingerprint(&Method::POST, "/a", "x=1", b"{ }"), "body"),
            (
                fingerprint(&Method::POST, "/a", "", b"x=1{}"),
                "field boundary",
            ),
        ] {
            assert_ne!(base, other, "{why}");
        }
    }

    #[test]
    fn in_flight_key_makes_the_retry_wait_and_a_failure_lets_it_run() {
        let mut table = Table::new(10, 1 << 20);
        let Begin::Run((id, done)) = table.begin(&scope("k"), [1; 32], T0) else {
            panic!("first attempt runs");
        };
        let Begin::Wait(waiter) = table.begin(&scope("k"), [1; 32], T0) else {
            panic!("retry waits");
        };
        assert!(matches!(
            table.begin(&scope("k"), [2; 32], T0),
            Begin::Mismatch
        ));

        table.release(&scope("k"), id);
        drop(done);
        assert!(waiter.has_changed().is_err(), "the waiter is woken");
        assert!(matches!(
            table.begin(&scope("k"), [1; 32], T0),
            Begin::Run(_)
        ));
    }

    #[test]
    fn entry_is_kept_for_the_default_retention_or_longer_when_retained() {
        let mut table = Table::new(10, 1 << 20);
        remembered(&mut table, "short", [1; 32], HOUR, T0);
        remembered(&mut table, "long", [1; 32], 48 * HOUR, T0);
        assert_eq!(
            table.expiry_of(&scope("short")),
            Some(after(T0, DEFAULT_RETENTION))
        );
        assert_eq!(table.expiry_of(&scope("long")), Some(after(T0, 48 * HOUR)));

        let almost = after(T0, DEFAULT_RETENTION - Duration::from_millis(1));
        assert!(replays(&mut table, "short", [1; 32], almost));
        assert!(!replays(
            &mut table,
            "short",
            [1; 32],
            after(T0, DEFAULT_RETENTION)
        ));
        assert!(replays(
            &mut table,
            "long",
            [1; 32],
            after(T0, DEFAULT_RETENTION)
        ));
        assert!(!replays(&mut table, "long", [1; 32], after(T0, 48 * HOUR)));
        assert_eq!(table.entries.len(), 0);
        assert_eq!(table.stored_bytes, 0);
    }

    #[test]
    fn full_table_evicts_the_entry_that_expires_first() {
        let mut table = Table::new(3, 1 << 20);
        remembered(&mut table, "a", [1; 32], Duration::ZERO, T0);
        remembered(&mut table, "b", [1; 32], 30 * HOUR, T0);
        remembered(&mut table, "c", [1; 32], Duration::ZERO, after(T0, HOUR));
        remembered(&mut table, "d", [1; 32], Duration::ZERO, after(T0, HOUR));

        assert_eq!(table.by_expiry.len(), 3);
        assert!(
            !replays(&mut table, "a", [1; 32], after(T0, HOUR)),
            "a expired first"
        );
        for key in ["b", "c", "d"] {
            assert!(replays(&mut table, key, [1; 32], after(T0, HOUR)), "{key}");
        }
    }

    #[test]
    fn byte_budget_evicts_old_entries_and_refuses_a_response_that_never_fits() {
        let one = response("{}").bytes() + scope("a").bytes();
        let mut table = Table::new(100, 2 * one);
        remembered(&mut table, "a", [1; 32], Duration::ZERO, T0);
        remembered(&mut table, "b", [1; 32], Duration::ZERO, after(T0, HOUR));
        remembered(
            &mut table,
            "c",
            [1; 32],
            Duration::ZERO,
            after(T0, 2 * HOUR),
        );
        assert_eq!(table.stored_bytes, 2 * one);
        assert!(!replays(&mut table, "a", [1; 32], after(T0, 2 * HOUR)));

        let Begin::Run((id, _done)) = table.begin(&scope("big"), [1; 32], T0) else {
            panic!("unknown key runs");
        };
        let big = Stored {
            body: Bytes::from(vec![b'x'; 4 * one]),
            ..response("")
        };
        table.complete(&scope("big"), id, big, Duration::ZERO, T0);
        assert!(!table.entries.contains_key(&scope("big")));
        assert_eq!(table.stored_bytes, 2 * one, "nothing was evicted for it");
    }

    #[test]
    fn keys_are_one_to_255_visible_ascii_characters() {
        let ok = |key: &[u8]| {
            let req = actix_test::TestRequest::post()
                .insert_header((IDEMPOTENCY_KEY, HeaderValue::from_bytes(key).unwrap()))
                .to_srv_request();
            parse_key(&req).map(|k| k.is_some()).unwrap_or(false)
        };
        assert!(ok(b"3f2c1a9e-0b7d-4c55-9a61-2b8f0e6d4c11"));
        assert!(ok(&[b'k'; MAX_KEY_LEN]));
        for (key, why) in [
            (&b""[..], "empty"),
            (&[b'k'; MAX_KEY_LEN + 1][..], "too long"),
            (b"two words", "a space"),
            (b"tab\there", "a control character"),
            (b"caf\xc3\xa9", "not ASCII"),
        ] {
            assert!(!ok(key), "{why}");
        }
        let twice = actix_test::TestRequest::post()
            .append_header((IDEMPOTENCY_KEY, "a"))
            .append_header((IDEMPOTENCY_KEY, "b"))
            .to_srv_request();
        assert!(parse_key(&twice).is_err(), "two headers");
    }

    fn store() -> IdempotencyStore {
        let clock = Arc::new(ManualClock::new(T0));
        IdempotencyStore::new(
            BrokerHandle::new(Broker::new(Vec::new()), clock),
            Vec::new(),
        )
    }

    #[actix_web::test]
    async fn concurrent_retry_waits_for_the_first_attempt_and_replays_it() {
        // The handler counts its runs and answers only once the gate opens, so the
        // second request arrives while the first is in flight.
        let runs = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Semaphore::new(0));
        let app = {
            let (runs, gate) = (runs.clone(), gate.clone());
            actix_test::init_service(App::new().app_data(store()).wrap(from_fn(remember)).route(
                "/lock",
                web::post().to(move |body: Bytes| {
                    let (runs, gate) = (runs.clone(), gate.clone());
                    async move {
                        let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
                        let _open = gate.acquire().await.expect("never closed");
                        HttpResponse::Ok().body(format!("run {run}, body {body:?}"))
                    }
                }),
            ))
            .await
        };
        let request = || {
            actix_test::TestRequest::post()
                .uri("/lock")
                .insert_header((IDEMPOTENCY_KEY, "k"))
                .set_payload("{\"ttl\": 30}")
                .to_request()
        };
        let open = async {
            while runs.load(Ordering::SeqCst) == 0 {
                tokio::task::yield_now().await;
            }
            gate.add_permits(2);
        };

        let (first, second, ()) = tokio::join!(
            actix_test::call_service(&app, request()),
            actix_test::call_service(&app, request()),
            open
        );

        assert_eq!(runs.load(Ordering::SeqCst), 1, "the handler ran once");
        assert!(first.headers().get(&REPLAYED).is_none());
        assert_eq!(second.headers().get(&REPLAYED).unwrap(), "true");
        let (first, second) = (
            actix_test::read_body(first).await,
            actix_test::read_body(second).await,
        );
        assert_eq!(first, second);
        assert_eq!(first, "run 1, body b\"{\\\"ttl\\\": 30}\"");
    }

    #[actix_web::test]
    async fn request_passes_through_when_it_is_not_a_post_with_a_key() {
        let runs = Arc::new(AtomicUsize::new(0));
        let app = {
            let runs = runs.clone();
            actix_test::init_service(App::new().app_data(store()).wrap(from_fn(remember)).route(
                "/x",
                web::route().to(move || {
                    let run = runs.fetch_add(1, Ordering::SeqCst);
                    async move { HttpResponse::Ok().body(run.to_string()) }
                }),
            ))
            .await
        };
        for request in [
            actix_test::TestRequest::post().uri("/x"),
            actix_test::TestRequest::post().uri("/x"),
            actix_test::TestRequest::put()
                .uri("/x")
                .insert_header((IDEMPOTENCY_KEY, "k")),
            actix_test::TestRequest::put()
                .uri("/x")
                .insert_header((IDEMPOTENCY_KEY, "k")),
        ] {
            let response = actix_test::call_service(&app, request.to_request()).await;
            assert!(response.headers().get(&REPLAYED).is_none());
        }
        assert_eq!(runs.load(Ordering::SeqCst), 4);
    }

    #[actix_web::test]
    async fn body_over_the_limit_is_refused_with_the_json_413() {
        let app = actix_test::init_service(
            App::new()
                .app_data(store())
                .wrap(from_fn(remember))
                .route("/x", web::post().to(HttpResponse::Ok)),
        )
        .await;
        let request = actix_test::TestRequest::post()
            .uri("/x")
            .insert_header((IDEMPOTENCY_KEY, "k"))
            .set_payload(vec![b' '; params::MAX_BODY_BYTES + 1])
            .to_request();
        let response = actix_test::call_service(&app, request).await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body: serde_json::Value = actix_test::read_body_json(response).await;
        assert_eq!(body["code"], "body_too_large");
    }
}
