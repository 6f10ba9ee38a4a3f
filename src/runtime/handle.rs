//! [`BrokerHandle`]: the only owner of the broker's mutex.
//!
//! Every broker call goes through `BrokerHandle::with_broker`, which reads the clock,
//! locks, brings the broker to `now` (what fell due is the system's change), runs one
//! synchronous operation (the caller's change), numbers both changes and hands them to
//! the [`Committer`] in that order, and unlocks; only then does it wake the timer and
//! let the committer publish. The methods are synchronous on purpose: a guard cannot be
//! held across an `.await` in code that has none. The answer to a request waits for
//! [`BrokerHandle::durable`] (see `runtime/stream.rs`).

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, broadcast};

use super::scope::RequestScope;
use super::stream::{
    Cause, Change, CommitSnapshot, Committed, Committer, IdempotencyRecord, InMemory, Ledger,
    Publisher, Subscription, Unavailable,
};
use crate::domain::{
    Broker, Clock, DomainError, ExpiredLock, Granted, Group, Lease, LockTerms, LockToken, Policy,
    Principal, ReloadDiff, ReloadReport, Reservation, ReservationId, ReservationQuery,
    ReservationRequest, ReservationStatus, Resource, ResourceId, ResourcePage, ResourcePatch,
    ResourceQuery, ResourceSnapshot, ResourceSpec, Selector, Timestamp, Ttl, Unavailability,
    WaitingFor,
};

/// A cheap, cloneable reference to the one broker of this process, optionally scoped to
/// the request it serves.
#[derive(Clone)]
pub struct BrokerHandle {
    shared: Arc<Shared>,
    scope: Option<Arc<RequestScope>>,
}

struct Shared {
    /// A std mutex, not tokio's: critical sections are short and never await, so
    /// contended waits are brief and an async mutex would only add overhead.
    core: Mutex<Core>,
    /// The broker's policy, which never changes: readable without the mutex.
    policy: Policy,
    clock: Arc<dyn Clock>,
    /// Poked when the earliest deadline moves earlier, so the timer re-plans its nap.
    /// `Notify` keeps one permit when nobody waits, so a poke during a sweep is not lost.
    deadline_changed: Notify,
    /// Takes every change, in sequence order, under the mutex.
    committer: Arc<dyn Committer>,
    ledger: Arc<Ledger>,
    publisher: Arc<Publisher>,
    /// Set when the expiry timer's task ends ([`TimerGuard`]).
    timer_ended: AtomicBool,
}

/// See [`BrokerHandle::timer_guard`].
pub struct TimerGuard(Arc<Shared>);

impl Drop for TimerGuard {
    fn drop(&mut self) {
        self.0.timer_ended.store(true, Ordering::Release);
    }
}

/// What the mutex guards: the broker, and the number of its last change.
struct Core {
    broker: Broker,
    /// The sequence number of the last change handed to the committer.
    seq: u64,
}

impl Core {
    /// Hands what the broker changed since the last call to `committer` as change
    /// `seq + 1`, caused by `cause`; nothing if nothing changed. Returns its number.
    fn emit(
        &mut self,
        now: Timestamp,
        cause: &Arc<Cause>,
        scope: Option<&RequestScope>,
        committer: &dyn Committer,
    ) -> Option<u64> {
        let events = self.broker.drain_events();
        let delta = self.broker.take_delta();
        if events.is_empty() && delta.as_ref().is_none_or(|d| d.is_empty()) {
            return None;
        }
        self.seq += 1;
        let seq = self.seq;
        let awaits_record =
            committer.wants_rows() && scope.is_some_and(|s| s.takes_answer_for(seq));
        committer.submit(Change {
            seq,
            at: now,
            cause: cause.clone(),
            events,
            delta,
            awaits_record,
        });
        Some(seq)
    }
}

/// The broker's state as `/metrics` counts it (see [`BrokerHandle::gauge_inputs`]).
pub struct GaugeInputs {
    pub now: Timestamp,
    pub resources: ResourceSnapshot,
    pub held: Vec<ResourceId>,
    /// Index 0 is priority 1.
    pub pending_by_priority: [u64; 10],
    /// When the longest-waiting pending reservation was created; `None` when none waits.
    pub oldest_pending: Option<Timestamp>,
}

/// The broker's state as the dashboard at `/` shows it (see
/// [`BrokerHandle::dashboard_inputs`]): pointers copied under the lock, read after.
pub struct DashboardInputs {
    pub now: Timestamp,
    pub resources: ResourceSnapshot,
    /// Each held resource and the waiting reservation it is kept for.
    pub holds: Vec<(ResourceId, ReservationId)>,
    /// The first waiting reservations in serving order (the first is position 1).
    pub queue_head: Vec<Arc<Reservation>>,
    /// Every waiting reservation, in no particular order.
    pub pending: Vec<Arc<Reservation>>,
    /// Every fulfilled or claimed reservation, in no particular order.
    pub granted: Vec<Arc<Reservation>>,
}

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
    /// A handle over `broker` without persistence: changes are committed when made.
    pub fn new(broker: Broker, clock: Arc<dyn Clock>) -> Self {
        let ledger = Arc::new(Ledger::new(0));
        let publisher = Arc::new(Publisher::new(1));
        let committer = Arc::new(InMemory::new(ledger.clone(), publisher.clone()));
        Self::with_committer(broker, clock, committer, ledger, publisher, 0)
    }

    /// A handle over `broker` whose changes go to `committer`, numbered after `seq` (the
    /// last change the store holds).
    pub fn with_committer(
        broker: Broker,
        clock: Arc<dyn Clock>,
        committer: Arc<dyn Committer>,
        ledger: Arc<Ledger>,
        publisher: Arc<Publisher>,
        seq: u64,
    ) -> Self {
        BrokerHandle {
            shared: Arc::new(Shared {
                policy: broker.policy(),
                core: Mutex::new(Core { broker, seq }),
                clock,
                deadline_changed: Notify::new(),
                committer,
                ledger,
                publisher,
                timer_ended: AtomicBool::new(false),
            }),
            scope: None,
        }
    }

    /// This handle, making its calls for the request `scope` describes.
    pub fn scoped(&self, scope: Arc<RequestScope>) -> BrokerHandle {
        BrokerHandle {
            shared: self.shared.clone(),
            scope: Some(scope),
        }
    }

    /// Resolves once change `seq` (and every earlier one) is committed.
    ///
    /// # Errors
    /// [`Unavailable`] when the store fails or the commit takes too long.
    pub async fn durable(&self, seq: u64) -> Result<(), Unavailable> {
        self.shared.ledger.durable(seq).await
    }

    /// How the store's commits went (all zero without a store).
    pub fn commit_stats(&self) -> CommitSnapshot {
        self.shared.ledger.stats().snapshot()
    }

    /// From now on, until a commit succeeds, requests waiting for a commit (and later
    /// ones) are answered 503 for `reason`, as when the store fails.
    pub fn refuse_commits(&self, reason: &str) {
        self.shared.ledger.fail(reason);
    }

    /// Why commits fail, while they do.
    pub fn store_failure(&self) -> Option<Arc<str>> {
        self.shared.ledger.failure()
    }

    /// Whether the broker's mutex was poisoned by a panic inside a broker call: its
    /// state may be half-changed, and the process must restart.
    pub fn is_poisoned(&self) -> bool {
        self.shared.core.is_poisoned()
    }

    /// Why answers cannot be trusted now (empty when they can): the readiness probe.
    pub fn unready_reasons(&self) -> Vec<String> {
        self.readiness().reasons()
    }

    /// What [`BrokerHandle::unready_reasons`] is made of, each read once: a caller that
    /// reports the store's failure beside readiness (`/metrics`) reports one moment.
    pub fn readiness(&self) -> Readiness {
        Readiness {
            store_failure: self.store_failure(),
            poisoned: self.is_poisoned(),
            timer_ended: self.shared.timer_ended.load(Ordering::Acquire),
        }
    }

    /// Marks the expiry timer as ended when dropped (its task returned or panicked).
    pub fn timer_guard(&self) -> TimerGuard {
        TimerGuard(self.shared.clone())
    }

    /// The remembered answer of the request that made change `seq` (see
    /// [`RequestScope::take_awaiting`]).
    pub fn attach_record(&self, seq: u64, record: Option<IdempotencyRecord>) {
        self.shared.committer.attach(seq, record);
    }

    /// Whether changes are written to a store (and answers wait for commits).
    pub fn is_durable(&self) -> bool {
        self.shared.committer.wants_rows()
    }

    /// The sequence number of the last change made.
    pub fn last_seq(&self) -> u64 {
        self.shared
            .core
            .lock()
            .expect("broker mutex poisoned by an earlier panic")
            .seq
    }

    /// No change comes after this call: the committer commits what it holds and stops
    /// (at shutdown, once the server and the timer have stopped).
    pub fn close(&self) {
        self.shared.committer.close();
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

    /// Who this handle's calls act for: the request's principal, or everyone (auth off,
    /// the system, an unscoped handle).
    pub fn principal(&self) -> &Principal {
        static ANYONE: LazyLock<Principal> = LazyLock::new(Principal::anyone);
        self.scope
            .as_deref()
            .map_or(&ANYONE, RequestScope::principal)
    }

    /// See [`Broker::lock_as`]: the lock is the request's principal's.
    pub fn lock(&self, id: ResourceId, terms: impl Into<LockTerms>) -> Result<Grant, DomainError> {
        let terms = terms.into();
        self.with_broker(|b, now| {
            b.lock_as(id, terms, self.principal(), now)
                .map(|g| Grant::new(b, g))
        })
    }

    /// See [`Broker::lock_matching`].
    pub fn lock_matching(
        &self,
        selector: &Selector,
        terms: impl Into<LockTerms>,
    ) -> Result<Grant, DomainError> {
        let terms = terms.into();
        self.with_broker(|b, now| {
            b.lock_matching_as(selector, terms, self.principal(), now)
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
            let granted = b.lock_groups_as(groups, terms, self.principal(), now)?;
            Ok(granted
                .into_iter()
                .map(|(g, granted)| (g, Grant::new(b, granted)))
                .collect())
        })
    }

    /// See [`Broker::unlock_batch`].
    pub fn unlock_batch(&self, tokens: &[String]) -> Result<Vec<ResourceId>, DomainError> {
        self.with_broker(|b, now| b.unlock_batch_as(tokens, self.principal(), now))
    }

    /// See [`Broker::reserve`]: the reservation as it stands after creation (possibly
    /// already fulfilled).
    pub fn reserve(&self, request: ReservationRequest) -> Result<ReservationSnapshot, DomainError> {
        self.with_broker(|b, now| {
            let id = b.reserve_as(request, self.principal(), now)?;
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
            b.claim_as(id, self.principal(), now)?;
            Ok(ReservationSnapshot::of(b, id, now).expect("just claimed"))
        })
    }

    /// See [`Broker::cancel`].
    pub fn cancel(&self, id: ReservationId) -> Result<(), DomainError> {
        self.with_broker(|b, now| b.cancel_as(id, self.principal(), now))
    }

    /// See [`Broker::unlock`].
    pub fn unlock(&self, id: ResourceId, token: Option<&str>) -> Result<(), DomainError> {
        self.with_broker(|b, now| b.unlock_as(id, token, self.principal(), now))
    }

    /// See [`Broker::extend`].
    pub fn extend(
        &self,
        id: ResourceId,
        token: Option<&str>,
        additional: Ttl,
    ) -> Result<Lease, DomainError> {
        self.with_broker(|b, now| b.extend_as(id, token, additional, self.principal(), now))
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

    /// What `/metrics` computes its gauges from, as of now: the resources (a pointer per
    /// 1 024 of them), the ids held for waiting reservations, the queue's depth by
    /// priority and its oldest entry. The lock is held only to copy these; counting happens after.
    pub fn gauge_inputs(&self) -> GaugeInputs {
        self.with_broker(|b, now| {
            b.expire_due(now);
            let pending = b.pending_summary();
            GaugeInputs {
                now,
                resources: b.snapshot(),
                held: b.held_resources(),
                pending_by_priority: pending.by_priority,
                oldest_pending: pending.oldest_created_at,
            }
        })
    }

    /// What the dashboard renders, as of now: the resources (a pointer per 1 024), the
    /// holds, the first `queue_rows` waiting reservations in serving order, and every
    /// live reservation (a pointer each: bounded by the queue's `max_pending` plus the
    /// granted ones). The lock is held only to copy these; filtering, counting and
    /// rendering happen after.
    pub fn dashboard_inputs(&self, queue_rows: usize) -> DashboardInputs {
        self.with_broker(|b, now| {
            b.expire_due(now);
            let queue_head = b
                .queue_order(now)
                .take(queue_rows)
                .map(|id| b.reservation_shared(id).expect("queued").clone())
                .collect();
            let (pending, granted) = b
                .reservations()
                .cloned()
                .partition(|r| r.status == ReservationStatus::Pending);
            DashboardInputs {
                now,
                resources: b.snapshot(),
                holds: b.holds(),
                queue_head,
                pending,
                granted,
            }
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

    /// A receiver of every change committed from now on, in sequence order.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Committed>> {
        self.shared.publisher.subscribe()
    }

    /// Every committed change after event number `last_seen` that is still kept, and
    /// every one from now on (see [`Publisher::resume`]).
    pub fn resume(&self, last_seen: u64) -> Subscription {
        self.shared.publisher.resume(last_seen)
    }

    /// The publisher of committed changes (what event streams read).
    pub fn publisher(&self) -> Arc<Publisher> {
        self.shared.publisher.clone()
    }

    /// Every committed change from now on, and the number of the last event before them.
    pub fn subscribe_now(&self) -> (u64, broadcast::Receiver<Arc<Committed>>) {
        self.shared.publisher.subscribe_now()
    }

    /// Resolves when the earliest deadline has moved earlier since the last wait.
    pub async fn deadline_changed(&self) {
        self.shared.deadline_changed.notified().await;
    }

    /// Runs `f` on the broker under the mutex, at the current time. Everything that
    /// touches the broker comes through here.
    ///
    /// What fell due by `now` is applied first and numbered as the system's change; what
    /// `f` does is the caller's (the scope's cause). Both go to the committer before the
    /// mutex is released, so changes reach it in the order they were made.
    fn with_broker<R>(&self, f: impl FnOnce(&mut Broker, Timestamp) -> R) -> R {
        let now = self.now();
        let committer = &*self.shared.committer;
        let scope = self.scope.as_deref();
        let (out, seen, moved_earlier, changed) = {
            let mut core = self
                .shared
                .core
                .lock()
                // A panic inside the broker would leave it half-changed; refusing to go on
                // is the only safe answer, and the supervisor restarts the process.
                .expect("broker mutex poisoned by an earlier panic");
            let locked_at = Instant::now();
            let before = core.broker.next_deadline();
            core.broker.expire_due(now);
            core.emit(now, &Cause::system(), None, committer);
            let out = f(&mut core.broker, now);
            let cause = scope.map_or_else(Cause::anonymous, |s| s.cause().clone());
            let changed = core.emit(now, &cause, scope, committer).is_some();
            let after = core.broker.next_deadline();
            let moved_earlier = match (before, after) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(b), Some(a)) => a < b,
            };
            let held = locked_at.elapsed();
            LONGEST_HOLD.set(LONGEST_HOLD.get().max(held));
            (out, core.seq, moved_earlier, changed)
        }; // guard dropped: the rest runs unlocked
        committer.flush();
        if let Some(scope) = scope {
            scope.saw(seen);
            if changed {
                scope.made_change();
            }
        }
        if moved_earlier {
            self.shared.deadline_changed.notify_one();
        }
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

#[cfg(test)]
mod tests {
    //! The change stream's order under concurrent callers: what a consumer mirrors from
    //! the published changes is the broker's own history.

    use std::collections::HashMap;
    use std::sync::Arc;

    use super::*;
    use crate::domain::{Event, FencingToken, Timestamp};
    use crate::runtime::ManualClock;

    #[test]
    fn changes_are_published_in_the_order_the_broker_made_them_whoever_makes_them() {
        let specs = (1..=2).map(|i| ResourceSpec::named(format!("r{i}")));
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_768_471_200_000)));
        let handle = BrokerHandle::new(Broker::new(specs), clock);
        let mut changes = handle.subscribe();
        const CYCLES: usize = 5_000;
        // Mirror the broker from the stream alone, as it arrives: a grant of a held
        // resource, or a release of a lock the mirror does not hold, means the order is
        // wrong.
        let mirror = std::thread::spawn(move || {
            let mut holder: HashMap<ResourceId, FencingToken> = HashMap::new();
            let (mut last_seq, mut grants, mut releases) = (0, 0, 0);
            while releases < 4 * CYCLES {
                let change = changes.blocking_recv().expect("kept up with the stream");
                assert!(change.seq > last_seq, "sequence numbers only grow");
                last_seq = change.seq;
                for event in &change.events {
                    match event {
                        Event::Locked {
                            resource, fencing, ..
                        } => {
                            grants += 1;
                            let before = holder.insert(*resource, *fencing);
                            assert_eq!(before, None, "{resource} granted while held");
                        }
                        Event::Unlocked {
                            resource, fencing, ..
                        } => {
                            releases += 1;
                            assert_eq!(holder.remove(resource), Some(*fencing));
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }
            (grants, holder)
        });
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let handle = handle.clone();
                std::thread::spawn(move || {
                    let id = ResourceId::new(1 + (w % 2) as u32);
                    let mut done = 0;
                    while done < CYCLES {
                        if let Ok(grant) = handle.lock(id, Ttl::from_secs(60).unwrap()) {
                            handle.unlock(id, Some(&grant.token.reveal())).unwrap();
                            done += 1;
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        let (grants, holder) = mirror.join().expect("the mirror agreed with every change");
        assert_eq!(grants, 4 * CYCLES, "every grant was published");
        assert!(holder.is_empty());
    }
}

/// The broker's side of `/readiness`, read at one moment ([`BrokerHandle::readiness`]).
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    /// Why commits fail, while they do.
    pub store_failure: Option<Arc<str>>,
    /// A broker call panicked: the state may be half-changed.
    pub poisoned: bool,
    /// The expiry timer has ended.
    pub timer_ended: bool,
}

impl Readiness {
    /// Why the service must not take traffic, as `/readiness` says it (empty: ready).
    pub fn reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if let Some(failure) = &self.store_failure {
            reasons.push(format!("the store fails to commit: {failure}"));
        }
        if self.poisoned {
            reasons.push(
                "a broker call panicked: the state may be inconsistent; restart the service"
                    .to_owned(),
            );
        }
        if self.timer_ended {
            reasons.push("the expiry timer has ended: locks would not expire on time".to_owned());
        }
        reasons
    }
}
