//! [`BrokerHandle`]: the only owner of the broker's mutex.
//!
//! Every broker call goes through [`BrokerHandle::with_broker`], which reads the clock,
//! locks, runs one synchronous operation, drains its events and unlocks; only then does it
//! wake the timer and publish the events. The methods are synchronous on purpose: a guard
//! cannot be held across an `.await` in code that has none.

use std::cell::Cell;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, broadcast};

use crate::domain::{
    Broker, Clock, DomainError, Event, ExpiredLock, Granted, Group, Lease, LockTerms, LockToken,
    Policy, ReloadDiff, ReloadReport, Reservation, ReservationId, ReservationQuery,
    ReservationRequest, ReservationStatus, Resource, ResourceId, ResourcePage, ResourcePatch,
    ResourceQuery, ResourceSnapshot, ResourceSpec, Selector, Timestamp, Ttl, Unavailability,
    WaitingFor,
};

/// A cheap, cloneable reference to the one broker of this process.
#[derive(Clone)]
pub struct BrokerHandle {
    shared: Arc<Shared>,
}

struct Shared {
    /// A std mutex, not tokio's: critical sections are short and never await, so
    /// contended waits are brief and an async mutex would only add overhead.
    broker: Mutex<Broker>,
    /// The broker's policy, which never changes: readable without the mutex.
    policy: Policy,
    clock: Arc<dyn Clock>,
    /// Poked when the earliest deadline moves earlier, so the timer re-plans its nap.
    /// `Notify` keeps one permit when nobody waits, so a poke during a sweep is not lost.
    deadline_changed: Notify,
    /// Every event, for whoever listens (the load tool today; the event stream, metrics
    /// and notifications later). Sending never blocks: a receiver that falls more than
    /// [`EVENT_BUFFER`] events behind is told it lagged and skips ahead.
    events: broadcast::Sender<Event>,
}

/// How many events a slow subscriber may fall behind before it misses some.
pub const EVENT_BUFFER: usize = 4096;

/// A granted lock together with the resource as it stands after the grant.
#[derive(Debug)]
pub struct Grant {
    pub token: LockToken,
    pub lease: Lease,
    pub resource: Arc<Resource>,
}

impl Grant {
    fn new(b: &Broker, granted: Granted) -> Self {
        Grant {
            token: granted.token,
            lease: granted.lease,
            resource: shared(b, granted.resource),
        }
    }
}

/// Resource `id` as it stands, shared with the broker (a pointer copy, under the lock).
fn shared(b: &Broker, id: ResourceId) -> Arc<Resource> {
    b.resource_shared(id)
        .expect("the caller just found or changed it")
        .clone()
}

/// A reservation as it stands, with what the broker knows about its wait.
#[derive(Clone, Debug)]
pub struct ReservationSnapshot {
    /// Shared with the broker until it changes the reservation.
    pub reservation: Arc<Reservation>,
    /// 1-based place in the queue; `None` unless pending.
    pub position: Option<usize>,
    /// Why it waits; `None` unless pending (and in lists).
    pub waiting_for: Option<WaitingFor>,
}

impl ReservationSnapshot {
    fn of(b: &Broker, id: ReservationId, now: Timestamp) -> Option<Self> {
        let reservation = b.reservation_shared(id)?.clone();
        let position = b.queue_position(id, now);
        Some(ReservationSnapshot {
            waiting_for: b.waiting_for(id, now),
            reservation,
            position,
        })
    }
}

impl BrokerHandle {
    pub fn new(broker: Broker, clock: Arc<dyn Clock>) -> Self {
        BrokerHandle {
            shared: Arc::new(Shared {
                policy: broker.policy(),
                broker: Mutex::new(broker),
                clock,
                deadline_changed: Notify::new(),
                events: broadcast::channel(EVENT_BUFFER).0,
            }),
        }
    }

    pub fn now(&self) -> Timestamp {
        self.shared.clock.now()
    }

    pub fn policy(&self) -> Policy {
        self.shared.policy
    }

    /// How long from now until `t` (zero if `t` has passed).
    pub fn until(&self, t: Timestamp) -> Duration {
        t.saturating_duration_since(self.now())
    }

    /// See [`Broker::lock`].
    pub fn lock(&self, id: ResourceId, terms: impl Into<LockTerms>) -> Result<Grant, DomainError> {
        let terms = terms.into();
        self.with_broker(|b, now| b.lock(id, terms, now).map(|g| Grant::new(b, g)))
    }

    /// See [`Broker::lock_matching`].
    pub fn lock_matching(
        &self,
        selector: &Selector,
        terms: impl Into<LockTerms>,
    ) -> Result<Grant, DomainError> {
        let terms = terms.into();
        self.with_broker(|b, now| {
            b.lock_matching(selector, terms, now)
                .map(|g| Grant::new(b, g))
        })
    }

    /// See [`Broker::lock_groups`]: the grants, each with the index of its group.
    pub fn lock_groups(
        &self,
        groups: &[Group],
        terms: impl Into<LockTerms>,
    ) -> Result<Vec<(usize, Grant)>, DomainError> {
        let terms = terms.into();
        self.with_broker(|b, now| {
            let granted = b.lock_groups(groups, terms, now)?;
            Ok(granted
                .into_iter()
                .map(|(g, granted)| (g, Grant::new(b, granted)))
                .collect())
        })
    }

    /// See [`Broker::unlock_batch`].
    pub fn unlock_batch(&self, tokens: &[String]) -> Result<Vec<ResourceId>, DomainError> {
        self.with_broker(|b, now| b.unlock_batch(tokens, now))
    }

    /// See [`Broker::reserve`]: the reservation as it stands after creation (possibly
    /// already fulfilled).
    pub fn reserve(&self, request: ReservationRequest) -> Result<ReservationSnapshot, DomainError> {
        self.with_broker(|b, now| {
            let id = b.reserve(request, now)?;
            Ok(ReservationSnapshot::of(b, id, now).expect("just created"))
        })
    }

    /// One reservation as of now, with its queue position and why it waits.
    pub fn reservation(&self, id: ReservationId) -> Result<ReservationSnapshot, DomainError> {
        self.with_broker(|b, now| {
            b.expire_due(now);
            ReservationSnapshot::of(b, id, now).ok_or_else(|| b.missing(id))
        })
    }

    /// Every live reservation as of now: pending ones in queue order first, then the
    /// others by creation. `waiting_for` is left out (see [`BrokerHandle::reservation`]).
    pub fn reservations(&self) -> Vec<ReservationSnapshot> {
        self.with_broker(|b, now| {
            b.expire_due(now);
            let mut out: Vec<ReservationSnapshot> = b
                .queue_order(now)
                .zip(1..)
                .map(|(id, position)| ReservationSnapshot {
                    reservation: b.reservation_shared(id).expect("queued").clone(),
                    position: Some(position),
                    waiting_for: None,
                })
                .collect();
            let mut others: Vec<&Arc<Reservation>> = b
                .reservations()
                .filter(|r| r.status != ReservationStatus::Pending)
                .collect();
            others.sort_by_key(|r| r.seq);
            out.extend(others.into_iter().map(|r| ReservationSnapshot {
                reservation: r.clone(),
                position: None,
                waiting_for: None,
            }));
            out
        })
    }

    /// See [`Broker::claim`].
    pub fn claim(&self, id: ReservationId) -> Result<ReservationSnapshot, DomainError> {
        self.with_broker(|b, now| {
            b.claim(id, now)?;
            Ok(ReservationSnapshot::of(b, id, now).expect("just claimed"))
        })
    }

    /// See [`Broker::cancel`].
    pub fn cancel(&self, id: ReservationId) -> Result<(), DomainError> {
        self.with_broker(|b, now| b.cancel(id, now))
    }

    /// See [`Broker::unlock`].
    pub fn unlock(&self, id: ResourceId, token: Option<&str>) -> Result<(), DomainError> {
        self.with_broker(|b, now| b.unlock(id, token, now))
    }

    /// See [`Broker::extend`].
    pub fn extend(
        &self,
        id: ResourceId,
        token: Option<&str>,
        additional: Ttl,
    ) -> Result<Lease, DomainError> {
        self.with_broker(|b, now| b.extend(id, token, additional, now))
    }

    /// See [`Broker::mark_unavailable`]: the resource as it stands after.
    pub fn mark_unavailable(
        &self,
        id: ResourceId,
        window: Unavailability,
    ) -> Result<Arc<Resource>, DomainError> {
        self.with_broker(|b, now| {
            b.mark_unavailable(id, window, now)?;
            Ok(shared(b, id))
        })
    }

    /// See [`Broker::mark_available`]: the resource as it stands after.
    pub fn mark_available(&self, id: ResourceId) -> Result<Arc<Resource>, DomainError> {
        self.with_broker(|b, now| {
            b.mark_available(id, now)?;
            Ok(shared(b, id))
        })
    }

    /// See [`Broker::force_unlock`]: the broken lease and the resource as it stands after.
    pub fn force_unlock(
        &self,
        id: ResourceId,
        reason: String,
    ) -> Result<(Lease, Arc<Resource>), DomainError> {
        self.with_broker(|b, now| {
            let lease = b.force_unlock(id, reason, now)?;
            Ok((lease, shared(b, id)))
        })
    }

    /// The latest auto-expired locks as of now, newest first, at most `limit`.
    pub fn expired_locks(&self, limit: usize) -> Vec<ExpiredLock> {
        self.with_broker(|b, now| {
            b.expire_due(now);
            b.expired_locks().take(limit).cloned().collect()
        })
    }

    /// The resource as of now.
    pub fn resource(&self, id: ResourceId) -> Result<Arc<Resource>, DomainError> {
        self.with_broker(|b, now| {
            b.expire_due(now);
            b.resource_shared(id)
                .cloned()
                .ok_or(DomainError::ResourceNotFound(id))
        })
    }

    /// Every resource as of now, in id order: a snapshot the broker shares until it
    /// changes them, taken in about a microsecond per thousand resources. Read it (and
    /// serialise it) after the lock is released.
    pub fn resources(&self) -> ResourceSnapshot {
        self.with_broker(|b, now| {
            b.expire_due(now);
            b.snapshot()
        })
    }

    /// One page of the resources `query` selects, as of now. See
    /// [`Broker::query_resources`].
    pub fn query_resources(&self, query: &ResourceQuery) -> ResourcePage {
        self.with_broker(|b, now| {
            b.expire_due(now);
            b.query_resources(query)
        })
    }

    /// One page of the live reservations `query` selects, as of now, in the list's order
    /// (`waiting_for` left out, as in [`BrokerHandle::reservations`]), and how many
    /// matched in all.
    pub fn query_reservations(
        &self,
        query: &ReservationQuery,
    ) -> (usize, Vec<ReservationSnapshot>) {
        self.with_broker(|b, now| {
            b.expire_due(now);
            let page = b.query_reservations(query, now);
            let items = page
                .items
                .into_iter()
                .map(|(reservation, position)| ReservationSnapshot {
                    reservation,
                    position,
                    waiting_for: None,
                })
                .collect();
            (page.total, items)
        })
    }

    /// Expires everything due now and returns the next deadline. The timer's step, and
    /// what tests call instead of waiting for the timer.
    pub fn sweep(&self) -> Option<Timestamp> {
        self.with_broker(|b, now| {
            b.expire_due(now);
            b.next_deadline()
        })
    }

    /// A receiver of every event published from now on, in the order they happened.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// Resolves when the earliest deadline has moved earlier since the last wait.
    pub async fn deadline_changed(&self) {
        self.shared.deadline_changed.notified().await;
    }

    /// Runs `f` on the broker under the mutex, at the current time. Everything that
    /// touches the broker comes through here.
    fn with_broker<R>(&self, f: impl FnOnce(&mut Broker, Timestamp) -> R) -> R {
        let now = self.now();
        let (out, events, moved_earlier) = {
            let mut broker = self
                .shared
                .broker
                .lock()
                // A panic inside the broker would leave it half-changed; refusing to go on
                // is the only safe answer, and the supervisor restarts the process.
                .expect("broker mutex poisoned by an earlier panic");
            let locked_at = Instant::now();
            let before = broker.next_deadline();
            let out = f(&mut broker, now);
            let after = broker.next_deadline();
            let moved_earlier = match (before, after) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(b), Some(a)) => a < b,
            };
            let events = broker.drain_events();
            let held = locked_at.elapsed();
            LONGEST_HOLD.set(LONGEST_HOLD.get().max(held));
            (out, events, moved_earlier)
        }; // guard dropped: the rest runs unlocked
        if moved_earlier {
            self.shared.deadline_changed.notify_one();
        }
        self.publish(events);
        out
    }
}

thread_local! {
    /// The longest time this thread held the broker mutex since the last
    /// [`take_longest_hold`].
    static LONGEST_HOLD: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

/// How long, at most, this thread held the broker mutex in one go since the last call
/// (and resets it). Every other request waits that long, so it is the figure the hold
/// bench (`benches/hold.rs`) reports for each kind of request. Two clock reads per
/// broker call: tens of nanoseconds.
pub fn take_longest_hold() -> Duration {
    LONGEST_HOLD.replace(Duration::ZERO)
}

/// Resource administration (`domain/broker/admin.rs`). Each returns the resource as it
/// stands after the change.
impl BrokerHandle {
    /// See [`Broker::add_resource`].
    pub fn add_resource(&self, spec: ResourceSpec) -> Result<Arc<Resource>, DomainError> {
        self.with_broker(|b, now| {
            let id = b.add_resource(spec, now)?;
            Ok(shared(b, id))
        })
    }

    /// See [`Broker::update_resource`]: the resource and what changed.
    pub fn update_resource(
        &self,
        id: ResourceId,
        patch: ResourcePatch,
    ) -> Result<(Arc<Resource>, Vec<&'static str>), DomainError> {
        self.with_broker(|b, now| {
            let changed = b.update_resource(id, patch, now)?;
            Ok((shared(b, id), changed))
        })
    }

    /// See [`Broker::remove_resource`]: the resource as it was when it went.
    pub fn remove_resource(
        &self,
        id: ResourceId,
        force: Option<&str>,
    ) -> Result<Resource, DomainError> {
        self.with_broker(|b, now| b.remove_resource(id, force, now))
    }

    /// See [`Broker::reload`]. The caller has read and validated the descriptor. The
    /// comparison with the lab runs outside the mutex, against a snapshot; under it, only
    /// the differences are applied (compared again there if the lab changed meanwhile),
    /// and the unchanged specs are dropped after it is released.
    pub fn reload(&self, specs: Vec<ResourceSpec>) -> ReloadReport {
        let (snapshot, version) = self.with_broker(|b, now| {
            b.expire_due(now);
            (b.snapshot(), b.spec_version())
        });
        let mut diff = ReloadDiff::new(&snapshot, version, specs);
        // Released before applying, so that the broker's changes copy no shared chunk.
        drop(snapshot);
        let report = self.with_broker(|b, now| b.apply_reload(&mut diff, now));
        drop(diff);
        report
    }
}

impl BrokerHandle {
    /// Fans events out, after the mutex is released: to the log, then to subscribers.
    /// Lock tokens are never part of an event, so nothing secret is logged or sent.
    fn publish(&self, events: Vec<Event>) {
        for event in events {
            log(&event);
            // An error only means nobody is subscribed.
            let _ = self.shared.events.send(event);
        }
    }
}

/// Lock, unlock and extend are the hot path (thousands a second) and log at `debug`: an
/// `info` line costs the server about 8 us of CPU, a third of a lock+unlock cycle
/// (BENCHMARKS.md, run C). Expiries and the queue's changes, rarer and what operators
/// look for, log at `info`. Every change is also on the event stream (`/api/v1/events`).
fn log(event: &Event) {
    match event {
        Event::Locked {
            resource,
            fencing,
            expires_at,
            ..
        } => {
            tracing::debug!(resource = %resource, fencing = fencing.get(), expires_at = %expires_at, "locked")
        }
        Event::Extended {
            resource,
            fencing,
            expires_at,
        } => {
            tracing::debug!(resource = %resource, fencing = fencing.get(), expires_at = %expires_at, "lock extended")
        }
        Event::Unlocked {
            resource, fencing, ..
        } => tracing::debug!(resource = %resource, fencing = fencing.get(), "unlocked"),
        Event::Expired {
            resource,
            fencing,
            deadline,
        } => {
            tracing::info!(resource = %resource, fencing = fencing.get(), deadline = %deadline, "lock expired")
        }
        Event::ReservationCreated { reservation, .. } => {
            tracing::info!(reservation = %reservation, "reservation queued")
        }
        Event::ReservationFulfilled {
            reservation,
            resources,
            ..
        } => {
            tracing::info!(reservation = %reservation, resources = ?resources.iter().map(|r| r.get()).collect::<Vec<_>>(), "reservation fulfilled")
        }
        Event::ReservationClaimed { reservation, .. } => {
            tracing::info!(reservation = %reservation, "reservation claimed")
        }
        Event::ReservationEnded {
            reservation,
            reason,
            ..
        } => {
            tracing::info!(reservation = %reservation, reason = reason.as_str(), "reservation ended")
        }
        Event::ForceUnlocked {
            resource,
            fencing,
            reason,
            ..
        } => {
            tracing::warn!(resource = %resource, fencing = fencing.get(), reason = %reason, "lock force-unlocked")
        }
        Event::MaintenanceScheduled {
            resource,
            reason,
            from,
            until,
            ..
        } => {
            tracing::info!(resource = %resource, reason = %reason, from = %from, until = %until.map_or_else(|| "none".to_owned(), |t| t.to_string()), "maintenance scheduled")
        }
        Event::MaintenanceStarted { resource, .. } => {
            tracing::info!(resource = %resource, "out of service for maintenance")
        }
        Event::MaintenanceEnded { resource, .. } => {
            tracing::info!(resource = %resource, "back in service")
        }
        Event::ResourceAdded { resource, name, .. } => {
            tracing::info!(resource = %resource, name = %name, "resource added")
        }
        Event::ResourceUpdated {
            resource, fields, ..
        } => tracing::info!(resource = %resource, fields = ?fields, "resource updated"),
        Event::ResourceRetiring { resource, name, .. } => {
            tracing::info!(resource = %resource, name = %name, "resource retiring: it goes when its lock ends")
        }
        Event::ResourceRemoved { resource, name, .. } => {
            tracing::info!(resource = %resource, name = %name, "resource removed")
        }
    }
}
