//! `GET /metrics`: what Prometheus scrapes (README § Metrics).
//!
//! Four kinds of metric, fed four ways:
//!
//! - **gauges of the broker's state** (`rentabot_resources`, `rentabot_active_locks`,
//!   `rentabot_reservation_queue_depth`, `rentabot_reservation_oldest_wait_seconds`,
//!   `rentabot_resource_utilization_ratio`, `rentabot_locks_expiring`) are computed at
//!   scrape time: [`BrokerHandle::gauge_inputs`] copies a snapshot under the mutex (a
//!   pointer per 1 024 resources, the held ids, 10 queue counts and the oldest pending
//!   reservation's age) and the counting happens here, after the lock is released;
//!   `rentabot_ready` asks what `/readiness` asks;
//! - **what happened** (locks acquired, how long locks were held, queue wait, expiry
//!   lag) comes from the change stream: [`Metrics`] is an [`Observer`] of the publisher,
//!   beside the audit log, so it sees every committed event once, in order;
//! - **HTTP** counters and latencies are recorded by `api::middleware::envelope`
//!   through [`Metrics::record_request`], labelled by the route's template (the auth
//!   rule's pattern, never the raw path), and so are the auth gate's refusals;
//! - **read when scraped**: the clients waiting on open responses (counted by
//!   `Shutdown`), the store's commit histograms and failure flag, and the process's
//!   figures (`collect.rs`).
//!
//! One [`Metrics`] per app (tests build many): the registry lives in app state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::header::{ACCEPT, CONTENT_TYPE};
use actix_web::web::{self, Data};
use actix_web::{HttpRequest, HttpResponse};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::audit::AuditLog;
use crate::auth::Rule;
use crate::domain::events::Event;
use crate::domain::reservation::ReservationId;
use crate::domain::resource::{Resource, ResourceState};
use crate::runtime::ha::HaStatus;
use crate::runtime::{BrokerHandle, Committed, GaugeInputs, Ledger, Observer, Shutdown, Waiting};

mod collect;

/// At most this many `tag` values of `rentabot_active_locks`: the tags with the most
/// locks (then by name); the rest are summed under [`OTHER_TAGS`].
pub const MAX_TAG_LABELS: usize = 100;
/// The `tag` label of the locks on tags beyond [`MAX_TAG_LABELS`].
pub const OTHER_TAGS: &str = "_other";
/// The `route` label of a request no route serves.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The content type of the Prometheus text format, the default.
pub const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// The content type of OpenMetrics text, served when `Accept` asks for it.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The horizons of `rentabot_locks_expiring`, in seconds: a minute to an hour.
pub const EXPIRING_WITHIN: [u32; 4] = [60, 300, 900, 3600];

/// Seconds a lock was held: from a second to a day.
const LOCK_DURATION_BUCKETS: [f64; 13] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0,
];
/// Seconds a reservation waited: none (served at once) to six hours.
const QUEUE_WAIT_BUCKETS: [f64; 12] = [
    0.0, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0,
];
/// Seconds between a lock's deadline and its expiry: the timer is prompt to a few ms.
const EXPIRY_LAG_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Seconds a request took: 100 us to 10 s (long-polls land in the last buckets).
const HTTP_DURATION_BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

/// A resource's state as `rentabot_resources` counts it: the label of each
/// [`ResourceState`], in the same order.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(
    non_camel_case_types,
    reason = "the label values are the variants' names"
)]
enum State {
    /// Removed from the descriptor while locked: goes when its lock ends.
    retiring,
    /// Locked (whatever its maintenance).
    locked,
    /// In an open maintenance window.
    unavailable,
    /// A maintenance window is scheduled: lent only for locks that end before it.
    draining,
    /// Free but kept for a waiting reservation.
    held,
    free,
}

const STATES: [State; 6] = [
    State::retiring,
    State::locked,
    State::unavailable,
    State::draining,
    State::held,
    State::free,
];

/// How a lock ended, for `rentabot_lock_duration_seconds`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(
    non_camel_case_types,
    reason = "the label values are the variants' names"
)]
enum Ending {
    unlock,
    expiry,
    force,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: State,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TagLabel {
    tag: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WithinLabel {
    within_seconds: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PriorityLabel {
    priority: u8,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndedLabel {
    ended_by: Ending,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabel {
    transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: &'static str,
}

/// Every metric the service exports, and what the change stream needs remembered to
/// compute durations (when each live lock began, when each waiting reservation joined).
pub struct Metrics {
    registry: Registry,
    /// Scrapes set the gauges, then encode: one at a time, so two scrapes never mix.
    scrape: Mutex<()>,
    resources: Family<StateLabel, Gauge>,
    active_locks: Family<TagLabel, Gauge>,
    queue_depth: Family<PriorityLabel, Gauge>,
    oldest_wait: Gauge<f64, std::sync::atomic::AtomicU64>,
    utilization: Gauge<f64, std::sync::atomic::AtomicU64>,
    expiring: Family<WithinLabel, Gauge>,
    ready: Gauge,
    store_failing: Gauge,
    locks_acquired: Counter,
    lock_duration: Family<EndedLabel, Histogram>,
    queue_wait: Histogram,
    expiry_lag: Histogram,
    http_requests: Family<RequestLabels, Counter>,
    http_duration: Family<RouteLabels, Histogram>,
    connected: Family<TransportLabel, Gauge>,
    auth_failures: Family<CodeLabel, Counter>,
    rate_limited: Counter,
    started: Mutex<Started>,
}

/// When what is still going on began (broker time, Unix ms). Locks taken before a
/// restart are not known here, so their duration is not observed.
#[derive(Default)]
struct Started {
    /// By fencing token: unique per grant.
    locks: HashMap<u64, u64>,
    reservations: HashMap<ReservationId, u64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric but the store's and the process's (see [`Metrics::with_ledger`]).
    pub fn new() -> Self {
        Self::build(None)
    }

    /// Every metric, the store's commit histograms read from `ledger` and the process's
    /// figures from /proc at each scrape.
    pub fn with_ledger(ledger: Arc<Ledger>) -> Self {
        Self::build(Some(ledger))
    }

    fn build(ledger: Option<Arc<Ledger>>) -> Self {
        let mut registry = Registry::default();
        let connected = Family::<TransportLabel, Gauge>::default();
        let auth_failures = Family::<CodeLabel, Counter>::default();
        let rate_limited = Counter::default();
        let resources = Family::<StateLabel, Gauge>::default();
        let active_locks = Family::<TagLabel, Gauge>::default();
        let queue_depth = Family::<PriorityLabel, Gauge>::default();
        let utilization = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        let oldest_wait = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        let expiring = Family::<WithinLabel, Gauge>::default();
        let ready = Gauge::default();
        let store_failing = Gauge::default();
        let locks_acquired = Counter::default();
        let lock_duration = Family::<EndedLabel, Histogram>::new_with_constructor(
            (|| Histogram::new(LOCK_DURATION_BUCKETS)) as fn() -> Histogram,
        );
        let queue_wait = Histogram::new(QUEUE_WAIT_BUCKETS);
        let expiry_lag = Histogram::new(EXPIRY_LAG_BUCKETS);
        let http_requests = Family::<RequestLabels, Counter>::default();
        let http_duration = Family::<RouteLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(HTTP_DURATION_BUCKETS)) as fn() -> Histogram,
        );
        register_build(&mut registry);
        registry.register(
            "rentabot_resources",
            "Resources by state (retiring, locked, unavailable, draining, held, free; each resource in the first that applies)",
            resources.clone(),
        );
        registry.register(
            "rentabot_active_locks",
            "Locked resources carrying each tag (the 100 tags with most locks; the rest summed under tag=_other)",
            active_locks.clone(),
        );
        registry.register(
            "rentabot_reservation_queue_depth",
            "Pending reservations by the priority they asked for (1 is served first)",
            queue_depth.clone(),
        );
        registry.register(
            "rentabot_reservation_oldest_wait_seconds",
            "How long the longest-waiting pending reservation has waited (0 when none waits)",
            oldest_wait.clone(),
        );
        registry.register(
            "rentabot_locks_expiring",
            "Locks whose deadline is at most within_seconds away (60, 300, 900, 3600; cumulative: a lock due within 60 s counts under every label)",
            expiring.clone(),
        );
        registry.register(
            "rentabot_ready",
            "1 when /readiness answers 200, 0 while it answers 503 (store failing, expiry timer ended, broker poisoned, audit file failing)",
            ready.clone(),
        );
        registry.register(
            "rentabot_store_failing",
            "1 while the store fails to commit (changes are answered 503 store_unavailable), 0 otherwise",
            store_failing.clone(),
        );
        registry.register(
            "rentabot_resource_utilization_ratio",
            "Locked resources in service over resources in service (0 when none is in service)",
            utilization.clone(),
        );
        // The encoder adds `_total` to counters.
        registry.register(
            "rentabot_locks_acquired",
            "Locks granted, directly or to fulfil a reservation",
            locks_acquired.clone(),
        );
        registry.register(
            "rentabot_lock_duration_seconds",
            "How long locks were held, by how they ended (unlock, expiry, force)",
            lock_duration.clone(),
        );
        registry.register(
            "rentabot_queue_wait_seconds",
            "How long reservations waited in the queue before they were fulfilled",
            queue_wait.clone(),
        );
        registry.register(
            "rentabot_expiry_lag_seconds",
            "How late locks expired: from their deadline to the change that expired them",
            expiry_lag.clone(),
        );
        registry.register(
            "rentabot_http_requests",
            "HTTP requests answered, by method, route template and status",
            http_requests.clone(),
        );
        registry.register(
            "rentabot_http_request_duration_seconds",
            "How long HTTP requests took to answer, by method and route template",
            http_duration.clone(),
        );
        registry.register(
            "rentabot_connected_clients",
            "Clients waiting on an open response: event streams (sse), reservation sockets (websocket), reservation long-polls (long_poll)",
            connected.clone(),
        );
        registry.register(
            "rentabot_auth_failures",
            "Requests the auth gate refused, by error code (missing_credentials, invalid_api_key, malformed_credentials, invalid_token, forbidden)",
            auth_failures.clone(),
        );
        registry.register(
            "rentabot_rate_limited_requests",
            "Requests refused with 429 rate_limited by the auth gate",
            rate_limited.clone(),
        );
        if let Some(ledger) = ledger {
            registry.register_collector(Box::new(collect::Collected { ledger }));
        }
        // Every ending from the start, so a dashboard sees zeros rather than nothing.
        for ended_by in [Ending::unlock, Ending::expiry, Ending::force] {
            drop(lock_duration.get_or_create(&EndedLabel { ended_by }));
        }
        Metrics {
            registry,
            scrape: Mutex::new(()),
            resources,
            active_locks,
            queue_depth,
            oldest_wait,
            utilization,
            expiring,
            ready,
            store_failing,
            locks_acquired,
            lock_duration,
            queue_wait,
            expiry_lag,
            http_requests,
            http_duration,
            connected,
            auth_failures,
            rate_limited,
            started: Mutex::new(Started::default()),
        }
    }

    /// Counts one answered request of `route`. Two lookups in read-locked maps: no
    /// allocation once a label set has been seen.
    pub fn record_request(&self, route: Route, status: u16, elapsed: Duration) {
        let Route { method, route } = route;
        self.http_requests
            .get_or_create(&RequestLabels {
                method,
                route,
                status,
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels { method, route })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a refusal of the auth gate by its code (`rate_limited` apart).
    pub fn record_auth_refusal(&self, code: &'static str) {
        if code == "rate_limited" {
            self.rate_limited.inc();
        } else {
            self.auth_failures.get_or_create(&CodeLabel { code }).inc();
        }
    }

    /// The whole exposition, with the gauges computed from `broker` (and the clients
    /// `waiting` counts, and the `audit` log's health) now: the Prometheus text format,
    /// or OpenMetrics when `openmetrics`.
    pub fn render(
        &self,
        broker: &BrokerHandle,
        waiting: Option<&Shutdown>,
        audit: Option<&AuditLog>,
        openmetrics: bool,
    ) -> String {
        let inputs = broker.gauge_inputs();
        let gauges = Gauges::count(&inputs);
        // The same reasons `/readiness` gives, read outside the broker's lock, and once:
        // the store's failure and readiness describe the same moment.
        let readiness = broker.readiness();
        let failing = readiness.store_failure.is_some();
        let ready =
            readiness.reasons().is_empty() && audit.is_none_or(|a| a.unready_reasons().is_empty());
        let _one_at_a_time = self
            .scrape
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.set(&gauges);
        self.ready.set(i64::from(ready));
        self.store_failing.set(i64::from(failing));
        if let Some(waiting) = waiting {
            for kind in Waiting::ALL {
                self.connected
                    .get_or_create(&TransportLabel {
                        transport: kind.as_str(),
                    })
                    .set(i64::try_from(waiting.waiting(kind)).unwrap_or(i64::MAX));
            }
        }
        let mut out = String::with_capacity(16 * 1024);
        let encoded = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        };
        // Writing to a String cannot fail; the encoder returns fmt::Error only from its
        // writer.
        encoded.expect("encoding into a String");
        out
    }

    fn set(&self, gauges: &Gauges) {
        for (state, n) in STATES.iter().zip(gauges.states) {
            self.resources
                .get_or_create(&StateLabel { state: *state })
                .set(n);
        }
        self.active_locks.clear();
        for (tag, n) in &gauges.tags {
            self.active_locks
                .get_or_create(&TagLabel { tag: tag.clone() })
                .set(*n);
        }
        for (priority, n) in (1..).zip(gauges.pending_by_priority) {
            self.queue_depth
                .get_or_create(&PriorityLabel { priority })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.utilization.set(gauges.utilization);
        self.oldest_wait.set(gauges.oldest_wait);
        for (within_seconds, n) in EXPIRING_WITHIN.iter().zip(gauges.expiring) {
            self.expiring
                .get_or_create(&WithinLabel {
                    within_seconds: *within_seconds,
                })
                .set(n);
        }
    }

    fn observe(&self, started: &mut Started, at: u64, event: &Event) {
        let seconds = |from: u64, to: u64| to.saturating_sub(from) as f64 / 1000.0;
        let mut ended = |fencing: u64, ended_by: Ending, when: u64| {
            if let Some(from) = started.locks.remove(&fencing) {
                self.lock_duration
                    .get_or_create(&EndedLabel { ended_by })
                    .observe(seconds(from, when));
            }
        };
        match event {
            Event::Locked { fencing, at, .. } => {
                self.locks_acquired.inc();
                started.locks.insert(fencing.get(), at.as_millis());
            }
            Event::Unlocked { fencing, at, .. } => {
                ended(fencing.get(), Ending::unlock, at.as_millis())
            }
            Event::ForceUnlocked { fencing, at, .. } => {
                ended(fencing.get(), Ending::force, at.as_millis())
            }
            Event::Expired {
                fencing, deadline, ..
            } => {
                ended(fencing.get(), Ending::expiry, deadline.as_millis());
                self.expiry_lag.observe(seconds(deadline.as_millis(), at));
            }
            Event::ReservationCreated { reservation, at } => {
                started.reservations.insert(*reservation, at.as_millis());
            }
            Event::ReservationFulfilled {
                reservation, at, ..
            } => {
                if let Some(from) = started.reservations.remove(reservation) {
                    self.queue_wait.observe(seconds(from, at.as_millis()));
                }
            }
            Event::ReservationEnded { reservation, .. } => {
                started.reservations.remove(reservation);
            }
            _ => {}
        }
    }
}

impl Observer for Metrics {
    fn committed(&self, change: &Committed) {
        let mut started = self
            .started
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for event in &change.events {
            self.observe(&mut started, change.at.as_millis(), event);
        }
    }
}

/// The gauges' values, counted from a snapshot outside the broker's lock.
struct Gauges {
    /// In the order of [`STATES`].
    states: [i64; 6],
    tags: Vec<(String, i64)>,
    pending_by_priority: [u64; 10],
    /// Seconds the oldest pending reservation has waited.
    oldest_wait: f64,
    /// Locks due within each of [`EXPIRING_WITHIN`].
    expiring: [i64; EXPIRING_WITHIN.len()],
    utilization: f64,
}

impl Gauges {
    fn count(inputs: &GaugeInputs) -> Self {
        let held: std::collections::HashSet<_> = inputs.held.iter().copied().collect();
        let mut states = [0i64; 6];
        let mut tags: HashMap<&str, i64> = HashMap::new();
        let (mut in_service, mut busy) = (0u64, 0u64);
        let mut expiring = [0i64; EXPIRING_WITHIN.len()];
        let now = inputs.now.as_millis();
        for r in inputs.resources.iter() {
            if let Some(lease) = r.lease() {
                let left = lease.expires_at.as_millis().saturating_sub(now);
                for (n, within) in expiring.iter_mut().zip(EXPIRING_WITHIN) {
                    *n += i64::from(left <= u64::from(within) * 1000);
                }
            }
            let state = state_of(r, held.contains(&r.id));
            states[state as usize] += 1;
            if r.in_service() {
                in_service += 1;
                busy += u64::from(r.is_locked());
            }
            for tag in &r.spec.tags {
                let n = tags.entry(tag.as_str()).or_insert(0);
                *n += i64::from(r.is_locked());
            }
        }
        let mut tags: Vec<(&str, i64)> = tags.into_iter().collect();
        tags.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let other: i64 = tags.iter().skip(MAX_TAG_LABELS).map(|t| t.1).sum();
        let has_other = tags.len() > MAX_TAG_LABELS;
        let mut tags: Vec<(String, i64)> = tags
            .into_iter()
            .take(MAX_TAG_LABELS)
            .map(|(t, n)| (t.to_owned(), n))
            .collect();
        if has_other {
            tags.push((OTHER_TAGS.to_owned(), other));
        }
        Gauges {
            states,
            tags,
            pending_by_priority: inputs.pending_by_priority,
            oldest_wait: inputs.oldest_pending.map_or(0.0, |t| {
                inputs.now.as_millis().saturating_sub(t.as_millis()) as f64 / 1000.0
            }),
            expiring,
            utilization: if in_service == 0 {
                0.0
            } else {
                busy as f64 / in_service as f64
            },
        }
    }
}

/// The label of a resource's state: the domain's classification ([`Resource::classify`],
/// which the dashboard shows too).
fn state_of(r: &Resource, is_held: bool) -> State {
    match r.classify(is_held) {
        ResourceState::Retiring => State::retiring,
        ResourceState::Locked => State::locked,
        ResourceState::Unavailable => State::unavailable,
        ResourceState::Draining => State::draining,
        ResourceState::Held => State::held,
        ResourceState::Free => State::free,
    }
}

/// The method label: the standard methods by name, anything else as `other`, so a
/// client cannot grow the label set.
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// A request's `method` and `route` labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    pub route: &'static str,
}

impl Route {
    /// The labels of `method` served by `rule` (the request's rule, which the envelope
    /// finds once for the auth gate and these labels): the rule's template, or
    /// [`UNMATCHED_ROUTE`]. No allocation.
    pub fn of(method: &str, rule: Option<&'static Rule>) -> Route {
        let route = match rule {
            Some(rule) if !rule.pattern.is_empty() => rule.pattern,
            _ => UNMATCHED_ROUTE,
        };
        Route {
            method: method_label(method),
            route,
        }
    }
}

/// What the `/metrics` route needs: the registry and the broker to count.
pub struct Exporter {
    pub metrics: Arc<Metrics>,
    pub broker: BrokerHandle,
    /// Counts the waiting responses (`None`: none are counted).
    pub waiting: Option<Shutdown>,
    /// Whose health `rentabot_ready` includes, as `/readiness` does (`None`: the
    /// broker's alone).
    pub audit: Option<Arc<AuditLog>>,
    /// The HA pair's role, with a `postgres://` store: the `rentabot_ha_*` family.
    pub ha: Option<Arc<HaStatus>>,
}

/// `rentabot_build_info`: on every scrape, a standby's too (dashboards list instances
/// by it).
fn register_build(registry: &mut Registry) {
    registry.register(
        "rentabot_build",
        "The running build: its version and the git commit it was built from",
        Info::new(vec![
            ("version", env!("CARGO_PKG_VERSION")),
            ("commit", env!("RENTABOT_BUILD_COMMIT")),
        ]),
    );
}

/// The HA pair's family (`rentabot_ha_*`), as `status` says now.
fn register_ha(registry: &mut Registry, status: &HaStatus) {
    let is_active = Gauge::<i64>::default();
    let epoch = Gauge::<i64>::default();
    let takeovers = Counter::<u64>::default();
    is_active.set(i64::from(status.is_active()));
    epoch.set(i64::try_from(status.epoch()).unwrap_or(i64::MAX));
    takeovers.inc_by(status.takeovers());
    registry.register(
        "rentabot_ha_is_active",
        "1 on the active service of the HA pair (the one whose commits the store takes), \
         0 on a standby",
        is_active,
    );
    registry.register(
        "rentabot_ha_epoch",
        "The epoch of this service's latest term as the active one (0: never active); \
         every takeover moves the store's epoch by one",
        epoch,
    );
    registry.register(
        "rentabot_ha_takeovers",
        "Times this service became the active one of the HA pair",
        takeovers,
    );
}

fn encode(registry: &Registry, openmetrics: bool) -> String {
    let mut out = String::with_capacity(1024);
    let encoded = if openmetrics {
        prometheus_client::encoding::text::encode(&mut out, registry)
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut out, registry)
    };
    // Writing to a String cannot fail.
    encoded.expect("encoding into a String");
    out
}

/// A standby's whole scrape: the build and the HA pair's family, nothing of a broker it
/// does not run (no `rentabot_ready`: a standby is not a service that failed). Returns
/// the body and its content type.
pub fn render_standby(status: &HaStatus, openmetrics: bool) -> (String, &'static str) {
    let mut registry = Registry::default();
    register_build(&mut registry);
    register_ha(&mut registry, status);
    (
        encode(&registry, openmetrics),
        if openmetrics {
            OPENMETRICS_TEXT
        } else {
            PROMETHEUS_TEXT
        },
    )
}

/// The HA pair's family alone: the end of an active service's scrape.
pub fn render_ha(status: &HaStatus, openmetrics: bool) -> String {
    let mut registry = Registry::default();
    register_ha(&mut registry, status);
    encode(&registry, openmetrics)
}

/// Mounts `GET /metrics` (the auth gate applies its rule: open unless
/// `metrics_require_key`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(scrape));
}

/// Whether the scraper asks for OpenMetrics (its `Accept` names it); else the
/// Prometheus text format 0.0.4.
pub fn wants_openmetrics(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
}

/// `GET /metrics`: see README § Metrics. OpenMetrics when `Accept` names
/// `application/openmetrics-text`, the Prometheus text format 0.0.4 otherwise.
async fn scrape(req: HttpRequest, exporter: Data<Exporter>) -> HttpResponse {
    let openmetrics = wants_openmetrics(&req);
    let exporter = exporter.into_inner();
    // Counting 100 000 resources takes milliseconds: off the worker's event loop.
    let body = web::block(move || {
        let mut body = exporter.metrics.render(
            &exporter.broker,
            exporter.waiting.as_ref(),
            exporter.audit.as_deref(),
            openmetrics,
        );
        if let Some(ha) = &exporter.ha {
            // One exposition: OpenMetrics ends once, with the HA family's `# EOF`.
            if openmetrics && body.ends_with("# EOF\n") {
                body.truncate(body.len() - "# EOF\n".len());
            }
            body.push_str(&render_ha(ha, openmetrics));
        }
        body
    })
    .await;
    match body {
        Ok(body) => HttpResponse::Ok()
            .insert_header((
                CONTENT_TYPE,
                if openmetrics {
                    OPENMETRICS_TEXT
                } else {
                    PROMETHEUS_TEXT
                },
            ))
            .body(body),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}
