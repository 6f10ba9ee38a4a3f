//! The broker: every resource, lock and reservation, as a synchronous state machine.
//!
//! Pure: no IO, no async, no clock. Each operation takes `now` and first brings the
//! broker to `now` ([`Broker::expire_due`]): locks, waits and claim windows that are due
//! end, in deadline order, and the queue is served after each. So every caller sees the
//! state as of `now`, and the state at `now` does not depend on how often the timer ran:
//! the runtime's timer only makes this *prompt*.
//!
//! ```text
//!            lock / lock_matching / lock_groups     unlock (token)
//!   Free ─────────────────────────────▶ Locked ───────────────────▶ Free(Unlocked)
//!    ▲ │ served to a waiting             │   ▲ extend (token)
//!    │ │ reservation (queue.rs)          │   └──┘
//!    │ └────────────────────────────────▶┤
//!    └───────────────────────────────────┴── now >= expires_at ───▶ Free(Expired)
//! ```
//!
//! Whatever frees a resource or changes the queue marks the queue dirty, and the same
//! operation serves it before returning (see `Broker::serve_queue` in `broker/queue.rs`):
//! there is no polling loop. Mutations record [`Event`]s, drained by the runtime with
//! [`Broker::drain_events`].

mod admin;
mod maintenance;
mod persist;
mod query;
mod queue;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use super::allocation::{self, Shortfall};
use super::clock::Timestamp;
use super::columns::{IN_SERVICE, LOCKED, RETIRING, WINDOW};
use super::entropy::{Entropy, Seeded};
use super::error::{DomainError, Owning, TokenRefusal, TokenUse};
use super::events::Event;
use super::owner::{CAP_RETRY_SECS, Owned, Principal};
use super::queue::Queue;
use super::reservation::{
    Criteria, EndReason, Group, Priority, Reservation, ReservationId, ReservationStatus,
};
use super::resource::{
    FencingToken, Lease, LockMeta, LockState, LockTerms, LockToken, Origin, Released, Resource,
    ResourceId, ResourceSpec, Ttl, deadline,
};
use super::table::{ResourceSnapshot, ResourceTable};
use super::tags::{self, Pool, TagIndex};

pub use admin::{ReloadDiff, ReloadReport, ResourcePatch};
pub use maintenance::Unavailability;
pub use query::{
    DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, Page, ReservationPage, ReservationQuery, ResourcePage,
    ResourceQuery, ResourceSort, SortOrder,
};
pub use queue::{GroupWait, WaitingFor};

/// The queue as `/metrics` counts it (see [`Broker::pending_summary`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PendingSummary {
    /// Pending reservations by the priority they asked for: index 0 is priority 1.
    pub by_priority: [u64; Priority::LOWEST.get() as usize],
    /// When the longest-waiting pending reservation was created; `None` when none waits.
    pub oldest_created_at: Option<Timestamp>,
}

/// How a lock request picks its resource (1.0 `POST /resources/lock` criteria).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    Id(ResourceId),
    Name(String),
    /// The free resource with the lowest id meeting the criteria (every tag, or the
    /// label expression).
    Matching(Criteria),
}

/// How the queue is served, and when a lock counts as about to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// A waiting reservation's priority improves by one level per `aging` waited.
    pub aging: Duration,
    /// How long a fulfilled reservation may wait for its claim.
    pub claim_window: Duration,
    /// A lock this close to its end is *expiring soon* (shown on the resource).
    pub expiry_warning: Duration,
    /// The most reservations that may wait at once: a new one that would wait is
    /// refused (`QueueFull`) while this many do. Every serving of the queue may walk
    /// them, so this bounds what a release costs.
    pub max_pending: usize,
}

/// The default [`Policy::max_pending`].
pub const DEFAULT_MAX_PENDING: usize = 10_000;

/// The most resources one request may ask for over all its groups: what one lock or
/// reservation grants, and allocates, at most.
pub const MAX_RESOURCES_PER_REQUEST: u32 = 10_000;

/// How long a refusal for a full queue tells the caller to wait before trying again.
const QUEUE_FULL_RETRY_SECS: u64 = 10;

impl Default for Policy {
    fn default() -> Self {
        Policy {
            aging: Duration::from_secs(300),
            claim_window: Duration::from_secs(60),
            expiry_warning: Duration::from_secs(300),
            max_pending: DEFAULT_MAX_PENDING,
        }
    }
}

/// Refuses a request whose tag lists or quantities are over the limits, before any of
/// it is looked at (`domain::tags`, [`MAX_RESOURCES_PER_REQUEST`]).
///
/// # Errors
/// `InvalidTags`, `TooManyResources`.
pub fn check_request(groups: &[Group]) -> Result<(), DomainError> {
    for g in groups {
        check_criteria(&g.criteria)?;
    }
    let total: u64 = groups.iter().map(|g| u64::from(g.quantity)).sum();
    if total > u64::from(MAX_RESOURCES_PER_REQUEST) {
        return Err(DomainError::TooManyResources {
            total,
            max: MAX_RESOURCES_PER_REQUEST,
        });
    }
    Ok(())
}

/// Refuses a tag list over the limits (expressions are bounded by their parser).
fn check_criteria(criteria: &Criteria) -> Result<(), DomainError> {
    match criteria {
        Criteria::Tags(tags) => {
            tags::check_tags(tags, tags::MAX_TAGS_PER_CRITERIA, "a request's tag list")
                .map_err(DomainError::InvalidTags)
        }
        Criteria::Expr(_) => Ok(()),
    }
}

/// The seed of the brokers [`Broker::new`] builds.
const TEST_SEED: u64 = 0x5eed;

/// How many ended reservations the broker remembers (so that a late claim gets "gone"
/// rather than "not found").
pub const ENDED_MEMORY: usize = 10_000;

/// Something that falls due at a deadline. One ordered index holds them all, so the timer
/// needs only the first entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Due {
    LockExpiry(ResourceId),
    /// A pending reservation's `max_wait` is over.
    ReservationWait(ReservationId),
    /// A fulfilled reservation was not claimed in time.
    ClaimWindow(ReservationId),
    /// A pending reservation's effective priority improves: the queue order may change.
    Aging(ReservationId),
    /// A scheduled maintenance window opens. After lock expiries of the same instant, so
    /// a lock that ends exactly when the window opens is not counted as crossing it.
    MaintenanceStart(ResourceId),
    /// A maintenance window closes: the resource returns to service.
    MaintenanceEnd(ResourceId),
}

/// How many auto-expired locks the broker remembers for `GET /resources/expired`.
pub const EXPIRY_HISTORY: usize = 1_000;

/// A lock that ran out, as the expiry history shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiredLock {
    pub resource: ResourceId,
    /// The resource's name when it expired (the resource may be gone since).
    pub name: String,
    pub fencing: FencingToken,
    pub acquired_at: Timestamp,
    pub expired_at: Timestamp,
    pub reservation: Option<ReservationId>,
    pub meta: LockMeta,
}

/// A lock as granted: which resource, the holder's token, and the lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Granted {
    pub resource: ResourceId,
    pub token: LockToken,
    pub lease: Lease,
}

#[derive(Debug)]
pub struct Broker {
    /// Every resource, copy-on-write (`table.rs`): changed only through
    /// `ResourceTable::get_mut`, `insert` and `remove`.
    resources: ResourceTable,
    /// The id the next new resource gets: ids are never reused.
    next_id: u32,
    by_name: HashMap<String, ResourceId>,
    by_token: HashMap<LockToken, ResourceId>,
    tags: TagIndex,
    deadlines: BTreeSet<(Timestamp, Due)>,
    /// The fencing token of the next grant. Starts at 1 and only grows.
    next_fencing: u64,
    /// Live reservations, shared with readers (`Arc`): a snapshot is a pointer copy.
    /// Changed only through `reservation_mut`, `insert` and `remove`.
    reservations: HashMap<ReservationId, Arc<Reservation>>,
    /// The pending reservations, in serving order.
    queue: Queue,
    next_seq: u64,
    /// When each pending reservation next improves its priority (mirrors `Due::Aging`).
    aging: HashMap<ReservationId, Timestamp>,
    /// Free resources kept for waiting reservations (see `broker/queue.rs`).
    held: HashMap<ResourceId, ReservationId>,
    /// Set by whatever may let a waiting reservation be served; cleared by serving.
    queue_dirty: bool,
    ended: HashMap<ReservationId, (EndReason, Timestamp)>,
    ended_order: VecDeque<ReservationId>,
    /// Retiring resources whose lock has just ended: removed before the queue is next
    /// served (`broker/admin.rs`), so that their release's events come first.
    retired: Vec<ResourceId>,
    /// Set when resources changed or went: before the queue is next served, waiters that
    /// can now never be served end (`EndReason::Unsatisfiable`).
    recheck: admin::Recheck,
    /// See [`Broker::spec_version`].
    spec_version: u64,
    /// The latest auto-expired locks, oldest first, at most [`EXPIRY_HISTORY`].
    expired: VecDeque<ExpiredLock>,
    policy: Policy,
    events: Vec<Event>,
    /// Where lock tokens and reservation ids come from.
    entropy: Box<dyn Entropy>,
    /// Reservations and history changed since the last `take_delta`; `None` unless
    /// recording rows (`broker/persist.rs`). Resources record their own changes
    /// (`ResourceTable`).
    touched: Option<persist::Touched>,
    /// Per owner, the locks it holds and its waiting reservations: kept by `set_state`
    /// and the queue's insert and remove, so a cap costs a lookup (see `domain/owner.rs`).
    /// An owner holding nothing has no entry.
    owners: HashMap<Arc<str>, Owned>,
}

impl Broker {
    /// A broker holding `specs`, numbered 1, 2, 3... in order, all free, with the default
    /// queue policy. Its tokens and ids come from a fixed seed, so runs replay exactly:
    /// for tests and benches. A service builds its broker with [`Broker::restore`], which
    /// takes the entropy to use.
    ///
    /// # Panics
    /// If two specs share a name: descriptors are validated before they get here.
    pub fn new(specs: impl IntoIterator<Item = ResourceSpec>) -> Self {
        Self::with_policy(specs, Policy::default())
    }

    /// As [`Broker::new`], with a queue policy.
    ///
    /// # Panics
    /// If two specs share a name.
    pub fn with_policy(specs: impl IntoIterator<Item = ResourceSpec>, policy: Policy) -> Self {
        let mut broker = Broker::empty(policy, Box::new(Seeded::new(TEST_SEED)));
        for spec in specs {
            let name = spec.name.clone();
            let added = broker.insert_resource(spec, Origin::Descriptor);
            assert!(added.is_some(), "duplicate resource name {name}");
        }
        broker
    }

    /// A broker with nothing in it, drawing tokens and ids from `entropy`.
    fn empty(policy: Policy, entropy: Box<dyn Entropy>) -> Self {
        Broker {
            resources: ResourceTable::default(),
            next_id: 1,
            by_name: HashMap::new(),
            by_token: HashMap::new(),
            tags: TagIndex::default(),
            deadlines: BTreeSet::new(),
            next_fencing: 1,
            reservations: HashMap::new(),
            queue: Queue::default(),
            next_seq: 0,
            aging: HashMap::new(),
            held: HashMap::new(),
            queue_dirty: false,
            ended: HashMap::new(),
            ended_order: VecDeque::new(),
            retired: Vec::new(),
            recheck: admin::Recheck::Nobody,
            spec_version: 0,
            expired: VecDeque::new(),
            policy,
            events: Vec::new(),
            entropy,
            touched: None,
            owners: HashMap::new(),
        }
    }

    /// Files a new resource under the next id; `None` if the name is taken.
    fn insert_resource(&mut self, spec: ResourceSpec, origin: Origin) -> Option<ResourceId> {
        if self.by_name.contains_key(&spec.name) {
            return None;
        }
        let id = ResourceId::new(self.next_id);
        self.next_id = self
            .next_id
            .checked_add(1)
            .expect("fewer than 4e9 resources");
        self.by_name.insert(spec.name.clone(), id);
        let resource = Resource::new(id, spec, origin);
        self.tags.insert(&resource);
        self.resources.insert(resource);
        self.spec_version += 1;
        Some(id)
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    pub fn resource(&self, id: ResourceId) -> Option<&Resource> {
        self.resources.get(&id)
    }

    /// Resource `id` as the broker shares it: cloning the `Arc` copies nothing.
    pub fn resource_shared(&self, id: ResourceId) -> Option<&Arc<Resource>> {
        self.resources.get_shared(&id)
    }

    /// Every resource, in id order.
    pub fn resources(&self) -> impl DoubleEndedIterator<Item = &Resource> {
        self.resources.values()
    }

    /// How many resources there are.
    pub fn resource_count(&self) -> usize {
        self.resources.len()
    }

    /// Every resource as it stands now, to read after the broker has moved on: costs a
    /// pointer per 1 024 resources (see `domain/table.rs`).
    pub fn snapshot(&self) -> ResourceSnapshot {
        self.resources.snapshot()
    }

    /// The resources kept free for waiting reservations (what `/metrics` calls `held`).
    /// Costs one copy per held resource.
    pub fn held_resources(&self) -> Vec<ResourceId> {
        self.held.keys().copied().collect()
    }

    /// Every hold: a free resource kept for the waiting reservation named beside it.
    /// Costs one copy per held resource.
    pub fn holds(&self) -> Vec<(ResourceId, ReservationId)> {
        self.held.iter().map(|(&r, &w)| (r, w)).collect()
    }

    /// Pending reservations by the priority they asked for (index 0 is priority 1), and
    /// when the oldest of them was created. One pass over the live reservations (a few
    /// microseconds per thousand).
    pub fn pending_summary(&self) -> PendingSummary {
        let mut summary = PendingSummary::default();
        for r in self.reservations.values() {
            if r.status == ReservationStatus::Pending {
                summary.by_priority[usize::from(r.request.priority.get() - 1)] += 1;
                summary.oldest_created_at = Some(
                    summary
                        .oldest_created_at
                        .map_or(r.created_at, |t| t.min(r.created_at)),
                );
            }
        }
        summary
    }

    /// The waiting reservation `id` is held for, if it is.
    pub fn held_for(&self, id: ResourceId) -> Option<ReservationId> {
        self.held.get(&id).copied()
    }

    /// The latest auto-expired locks, newest first.
    pub fn expired_locks(&self) -> impl ExactSizeIterator<Item = &ExpiredLock> {
        self.expired.iter().rev()
    }

    /// The earliest pending deadline, for the timer.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// Takes the events recorded since the last call.
    pub fn drain_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Locks resource `id` for `ttl`.
    ///
    /// # Errors
    /// `ResourceNotFound`, `AlreadyLocked`, `HeldForReservation` or `TtlAboveMax`
    /// (checked in that order, as 1.0 for the ones it had).
    pub fn lock(
        &mut self,
        id: ResourceId,
        terms: impl Into<LockTerms>,
        now: Timestamp,
    ) -> Result<Granted, DomainError> {
        self.expire_due(now);
        let terms = terms.into();
        self.grant(id, terms.ttl, now, None, &terms.meta)
    }

    /// [`Broker::lock`] for `who`: the lock is its own (`owner`), within its caps.
    ///
    /// # Errors
    /// As [`Broker::lock`]; first `TooManyLocks` when `who` holds its `max_locks`.
    pub fn lock_as(
        &mut self,
        id: ResourceId,
        terms: impl Into<LockTerms>,
        who: &Principal,
        now: Timestamp,
    ) -> Result<Granted, DomainError> {
        self.expire_due(now);
        self.check_lock_cap(who, 1)?;
        self.lock(id, owned_terms(terms, who), now)
    }

    /// [`Broker::lock_matching`] for `who` (see [`Broker::lock_as`]).
    ///
    /// # Errors
    /// As [`Broker::lock_matching`], and `TooManyLocks`.
    pub fn lock_matching_as(
        &mut self,
        selector: &Selector,
        terms: impl Into<LockTerms>,
        who: &Principal,
        now: Timestamp,
    ) -> Result<Granted, DomainError> {
        self.expire_due(now);
        self.check_lock_cap(who, 1)?;
        self.lock_matching(selector, owned_terms(terms, who), now)
    }

    /// [`Broker::lock_groups`] for `who` (see [`Broker::lock_as`]): every lock counts.
    ///
    /// # Errors
    /// As [`Broker::lock_groups`], and `TooManyLocks`.
    pub fn lock_groups_as(
        &mut self,
        groups: &[Group],
        terms: impl Into<LockTerms>,
        who: &Principal,
        now: Timestamp,
    ) -> Result<Vec<(usize, Granted)>, DomainError> {
        self.expire_due(now);
        let wanted = groups
            .iter()
            .map(|g| g.quantity)
            .fold(0u32, u32::saturating_add);
        self.check_lock_cap(who, wanted)?;
        self.lock_groups(groups, owned_terms(terms, who), now)
    }

    /// Locks the resource `selector` picks. Criteria precedence is the caller's business:
    /// the API turns the 1.0 query (id, then name, then tags) into one selector.
    ///
    /// Like 1.0, the lowest free match is chosen first and the TTL checked against it.
    ///
    /// # Errors
    /// As [`Broker::lock`], plus `NameNotFound`, `NoMatch` (no resource meets the
    /// criteria) and `AllMatchesLocked`.
    pub fn lock_matching(
        &mut self,
        selector: &Selector,
        terms: impl Into<LockTerms>,
        now: Timestamp,
    ) -> Result<Granted, DomainError> {
        self.expire_due(now);
        let LockTerms { ttl, meta } = terms.into();
        let criteria = match selector {
            Selector::Id(id) => return self.grant(*id, ttl, now, None, &meta),
            Selector::Name(name) => {
                let id = *self
                    .by_name
                    .get(name)
                    .ok_or_else(|| DomainError::NameNotFound(name.clone()))?;
                return self.grant(id, ttl, now, None, &meta);
            }
            Selector::Matching(criteria) => criteria,
        };
        check_criteria(criteria)?;
        // The lowest free, unheld match whose maintenance window (if any) the lock
        // would not cross; if only such crossings stand in the way, say so.
        let lock_end = deadline(now, ttl);
        let mut crossing = None;
        let free = self.eligible(
            criteria,
            None,
            Pool::Free,
            now,
            |id| {
                if self.held.contains_key(&id) {
                    return false;
                }
                // Free resources are in service: only a window can refuse the lock.
                let refusal = (self.tags.columns().flags(id) & WINDOW != 0)
                    .then(|| maintenance::maintenance_refusal(&self.resources[&id], lock_end, now))
                    .flatten();
                if crossing.is_none() {
                    crossing = refusal.clone();
                }
                refusal.is_none()
            },
            1,
        );
        match (free.first(), crossing) {
            (Some(&id), _) => self.grant(id, ttl, now, None, &meta),
            (None, Some(crossing)) => Err(crossing),
            (None, None) => Err(self.none_available(criteria.clone(), ttl, now)),
        }
    }

    /// Locks, all or nothing, resources for every group (N-of-M, roadmap phase 2): lowest
    /// ids first, never one resource for two groups. Returns the grants in group order.
    ///
    /// # Errors
    /// `NoMatch` when a group matches nothing, `Unsatisfiable` when it could never be
    /// served, `NotEnoughAvailable` when too few are free now. Nothing is locked then.
    pub fn lock_groups(
        &mut self,
        groups: &[Group],
        terms: impl Into<LockTerms>,
        now: Timestamp,
    ) -> Result<Vec<(usize, Granted)>, DomainError> {
        self.expire_due(now);
        let LockTerms { ttl, meta } = terms.into();
        check_request(groups)?;
        self.check_satisfiable(groups, ttl, now)?;
        let chosen = self
            .allocate(groups, ttl, Pool::Free, now, |id| {
                !self.held.contains_key(&id)
            })
            .map_err(|shortfall| {
                let (group, available) = shortfall
                    .candidates
                    .iter()
                    .map(Vec::len)
                    .enumerate()
                    .find(|&(g, n)| n < groups[g].quantity as usize)
                    // The groups overlap: each alone has enough, together they have not.
                    .unwrap_or((0, shortfall.candidates[0].len()));
                DomainError::NotEnoughAvailable {
                    group,
                    criteria: groups[group].criteria.clone(),
                    wanted: groups[group].quantity,
                    available,
                }
            })?;
        Ok(chosen
            .into_iter()
            .map(|(group, id)| {
                let granted = self
                    .grant(id, ttl, now, None, &meta)
                    .expect("allocated from free, unheld resources allowing the ttl");
                (group, granted)
            })
            .collect())
    }

    /// Releases the lock on `id` held with `token`.
    ///
    /// # Errors
    /// `ResourceNotFound`, `NotLocked`, or `InvalidToken` (also for a missing token).
    pub fn unlock(
        &mut self,
        id: ResourceId,
        token: Option<&str>,
        now: Timestamp,
    ) -> Result<(), DomainError> {
        self.unlock_as(id, token, &Principal::anyone(), now)
    }

    /// [`Broker::unlock`] by `who`.
    ///
    /// # Errors
    /// As [`Broker::unlock`]; `NotOwner` when the token is right but the lock is
    /// another's and `who` does not override.
    pub fn unlock_as(
        &mut self,
        id: ResourceId,
        token: Option<&str>,
        who: &Principal,
        now: Timestamp,
    ) -> Result<(), DomainError> {
        self.expire_due(now);
        let lease = self.held_lease(id, token, TokenUse::Unlock)?;
        Self::check_lock_owner(who, id, &lease)?;
        self.unlock_held(id, &lease, now);
        self.serve_queue_if_dirty(now);
        Ok(())
    }

    /// Releases, all or nothing, the locks held with `tokens`. Returns the resources
    /// released, in the order of the tokens.
    ///
    /// # Errors
    /// `BatchRefused`, listing every token that is not a current lock's (or repeats one);
    /// nothing is released then.
    pub fn unlock_batch(
        &mut self,
        tokens: &[String],
        now: Timestamp,
    ) -> Result<Vec<ResourceId>, DomainError> {
        self.unlock_batch_as(tokens, &Principal::anyone(), now)
    }

    /// [`Broker::unlock_batch`] by `who`.
    ///
    /// # Errors
    /// As [`Broker::unlock_batch`]; then `NotOwner`, naming the first lock that is
    /// another's, when every token is right. Nothing is released then.
    pub fn unlock_batch_as(
        &mut self,
        tokens: &[String],
        who: &Principal,
        now: Timestamp,
    ) -> Result<Vec<ResourceId>, DomainError> {
        self.expire_due(now);
        let mut found = Vec::with_capacity(tokens.len());
        let mut refused = Vec::new();
        let mut seen = HashSet::new();
        for (index, raw) in tokens.iter().enumerate() {
            let problem = match LockToken::parse(raw) {
                None => "not a lock token (a UUID)",
                Some(token) => match self.by_token.get(&token) {
                    None => "no current lock has this token (unlocked, expired, or never granted)",
                    Some(&id) if !seen.insert(id) => "repeats an earlier token of this batch",
                    Some(&id) => {
                        found.push(id);
                        continue;
                    }
                },
            };
            refused.push(TokenRefusal { index, problem });
        }
        if !refused.is_empty() {
            return Err(DomainError::BatchRefused(refused));
        }
        for &id in &found {
            let lease = self.resources[&id].lease().expect("indexed by token");
            Self::check_lock_owner(who, id, lease)?;
        }
        for &id in &found {
            let lease = self.resources[&id]
                .lease()
                .expect("indexed by token")
                .clone();
            self.unlock_held(id, &lease, now);
        }
        self.serve_queue_if_dirty(now);
        Ok(found)
    }

    /// Breaks the lock on `id` whoever holds it, for `reason` (an operator's word, shown
    /// in `lock-details`). A reservation it was granted to loses it as on unlock.
    ///
    /// # Errors
    /// `ResourceNotFound`; `NothingToForce` when the resource is not locked.
    pub fn force_unlock(
        &mut self,
        id: ResourceId,
        reason: String,
        now: Timestamp,
    ) -> Result<Lease, DomainError> {
        self.expire_due(now);
        let lease = self
            .resources
            .get(&id)
            .ok_or(DomainError::ResourceNotFound(id))?
            .lease()
            .ok_or(DomainError::NothingToForce(id))?
            .clone();
        self.break_lock(id, &lease, reason, now);
        self.serve_queue_if_dirty(now);
        Ok(lease)
    }

    /// Releases `lease` on `id` against its holder's will, recording why: the one way an
    /// operator's action ends a lock (force unlock, forced delete).
    fn break_lock(&mut self, id: ResourceId, lease: &Lease, reason: String, now: Timestamp) {
        self.events.push(Event::ForceUnlocked {
            resource: id,
            fencing: lease.fencing,
            reason: reason.clone(),
            at: now,
        });
        self.release(id, lease, Released::ForceUnlocked { at: now, reason }, now);
    }

    /// Moves the lock's expiry to `now + additional` (1.0 semantics: not old expiry +
    /// additional). The lock keeps its token and fencing token.
    ///
    /// # Errors
    /// `ResourceNotFound`, `NotLocked`, `InvalidToken`, or `TotalAboveMax` when the lock,
    /// counted from its acquisition, would outlast the resource's `max-lock-duration`.
    pub fn extend(
        &mut self,
        id: ResourceId,
        token: Option<&str>,
        additional: Ttl,
        now: Timestamp,
    ) -> Result<Lease, DomainError> {
        self.extend_as(id, token, additional, &Principal::anyone(), now)
    }

    /// [`Broker::extend`] by `who`.
    ///
    /// # Errors
    /// As [`Broker::extend`]; `NotOwner` as for [`Broker::unlock_as`].
    pub fn extend_as(
        &mut self,
        id: ResourceId,
        token: Option<&str>,
        additional: Ttl,
        who: &Principal,
        now: Timestamp,
    ) -> Result<Lease, DomainError> {
        self.expire_due(now);
        let lease = self.held_lease(id, token, TokenUse::Extend)?;
        Self::check_lock_owner(who, id, &lease)?;
        let resource = &self.resources[&id];
        let max = resource.spec.max_lock_duration;
        let new_expiry = deadline(now, additional);
        let total = new_expiry.saturating_duration_since(lease.acquired_at);
        if total > max.as_duration() {
            return Err(DomainError::TotalAboveMax {
                id,
                total_secs: total.as_millis().div_ceil(1000) as u64,
                max,
            });
        }
        // A retiring resource's holder may extend: a reload breaks no lock's plans.
        if !resource.retiring
            && let Some(refusal) = maintenance::maintenance_refusal(resource, new_expiry, now)
        {
            return Err(refusal);
        }
        self.deadlines
            .remove(&(lease.expires_at, Due::LockExpiry(id)));
        self.deadlines.insert((new_expiry, Due::LockExpiry(id)));
        let resource = self.resources.get_mut(&id).expect("held_lease checked it");
        let LockState::Locked(stored) = &mut resource.state else {
            unreachable!("held_lease checked the resource is locked")
        };
        stored.expires_at = new_expiry;
        let extended = stored.clone();
        // The query columns keep each lock's expiry (for sort=lock-expires-at).
        self.tags.expiry_moved(resource);
        self.events.push(Event::Extended {
            resource: id,
            fencing: lease.fencing,
            expires_at: new_expiry,
        });
        Ok(extended)
    }

    /// Brings the broker to `now`: everything due at or before `now` ends, in deadline
    /// order, and the queue is served as it would have been at each deadline. A lock is
    /// therefore never released before its deadline, and is released by the first
    /// operation or timer tick at or after it.
    pub fn expire_due(&mut self, now: Timestamp) {
        while let Some(&(at, due)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            match due {
                Due::LockExpiry(id) => {
                    let resource = &self.resources[&id];
                    let lease = resource
                        .lease()
                        .expect("a lock deadline points at a locked resource")
                        .clone();
                    let name = resource.spec.name.clone();
                    self.events.push(Event::Expired {
                        resource: id,
                        fencing: lease.fencing,
                        deadline: at,
                    });
                    self.release(id, &lease, Released::Expired(at), at);
                    self.remember_expired(id, name, lease, at);
                }
                Due::ReservationWait(rid) => self.end_reservation(rid, EndReason::Expired, at),
                Due::ClaimWindow(rid) => self.end_reservation(rid, EndReason::ClaimExpired, at),
                Due::Aging(rid) => self.age(rid, at),
                Due::MaintenanceStart(id) => self.open_window(id, at),
                Due::MaintenanceEnd(id) => self.end_maintenance(id, at),
            }
            // Serve once all that fell due at this instant is done.
            if self.next_deadline().is_none_or(|next| next > at) {
                self.serve_queue_if_dirty(at);
            }
        }
        self.serve_queue_if_dirty(now);
    }

    /// Panics unless the broker's indexes agree with its resources and reservations
    /// (test support).
    pub fn check_invariants(&self) {
        let mut expected = BTreeSet::new();
        let mut max_fencing = 0;
        let mut tokens = 0;
        for r in self.resources.values() {
            assert_eq!(self.by_name.get(&r.spec.name), Some(&r.id));
            if let Some(m) = &r.maintenance {
                if !m.active {
                    expected.insert((m.from, Due::MaintenanceStart(r.id)));
                }
                if let Some(until) = m.until {
                    assert!(until > m.from, "{}: window ends after it opens", r.id);
                    expected.insert((until, Due::MaintenanceEnd(r.id)));
                }
            }
            if let Some(lease) = r.lease() {
                assert!(
                    lease.acquired_at < lease.expires_at,
                    "{}: empty lease",
                    r.id
                );
                expected.insert((lease.expires_at, Due::LockExpiry(r.id)));
                max_fencing = max_fencing.max(lease.fencing.get());
                assert_eq!(self.by_token.get(&lease.token), Some(&r.id), "token index");
                tokens += 1;
                if let Some(rid) = lease.reservation {
                    let reservation = &self.reservations[&rid];
                    assert!(
                        reservation
                            .allocations
                            .iter()
                            .any(|a| a.resource == r.id && a.token == lease.token),
                        "{} is locked for {rid}, which does not list it",
                        r.id
                    );
                }
            }
        }
        assert_eq!(self.by_token.len(), tokens, "no stale token in the index");
        assert_eq!(self.by_name.len(), self.resources.len());
        assert!(max_fencing < self.next_fencing, "fencing tokens only grow");
        self.tags.check_against(&self.resources);
        self.check_admin();
        self.check_reservations(&mut expected);
        assert_eq!(
            self.deadlines, expected,
            "every deadline belongs to a live item"
        );
        assert_eq!(
            self.owners,
            self.recount_owners(),
            "the owners' counts match what they own"
        );
    }

    fn grant(
        &mut self,
        id: ResourceId,
        ttl: Ttl,
        now: Timestamp,
        reservation: Option<ReservationId>,
        meta: &LockMeta,
    ) -> Result<Granted, DomainError> {
        let resource = self
            .resources
            .get(&id)
            .ok_or(DomainError::ResourceNotFound(id))?;
        // Out of service outranks locked: the caller learns it will not come back soon.
        if let Some((reason, until)) = resource.out_of_service() {
            return Err(DomainError::Unavailable {
                id,
                reason: reason.to_owned(),
                until,
            });
        }
        if resource.is_locked() {
            return Err(DomainError::AlreadyLocked(id));
        }
        if let Some(&holder) = self.held.get(&id)
            && Some(holder) != reservation
        {
            return Err(DomainError::HeldForReservation {
                id,
                reservation: holder,
            });
        }
        let max = resource.spec.max_lock_duration;
        if ttl > max {
            return Err(DomainError::TtlAboveMax { id, ttl, max });
        }
        if let Some(refusal) = maintenance::maintenance_refusal(resource, deadline(now, ttl), now) {
            return Err(refusal);
        }
        let token = LockToken::from_random(self.entropy.next_u128());
        let lease = Lease {
            token,
            fencing: FencingToken::new(self.next_fencing),
            acquired_at: now,
            expires_at: deadline(now, ttl),
            reservation,
            meta: meta.clone(),
        };
        self.next_fencing += 1;
        self.held.remove(&id);
        self.deadlines
            .insert((lease.expires_at, Due::LockExpiry(id)));
        self.by_token.insert(token, id);
        self.set_state(id, LockState::Locked(lease.clone()));
        self.events.push(Event::Locked {
            resource: id,
            fencing: lease.fencing,
            at: now,
            expires_at: lease.expires_at,
            reservation,
        });
        Ok(Granted {
            resource: id,
            token,
            lease,
        })
    }

    /// The lease on `id`, if `token` is its holder's.
    fn held_lease(
        &self,
        id: ResourceId,
        token: Option<&str>,
        used_for: TokenUse,
    ) -> Result<Lease, DomainError> {
        let resource = self
            .resources
            .get(&id)
            .ok_or(DomainError::ResourceNotFound(id))?;
        let lease = resource
            .lease()
            .ok_or(DomainError::NotLocked(id, used_for))?;
        if token.is_some_and(|t| lease.token.matches(t)) {
            Ok(lease.clone())
        } else {
            Err(DomainError::InvalidToken {
                resource: Box::new(resource.clone()),
                provided: token.map(str::to_owned),
                used_for,
            })
        }
    }

    fn unlock_held(&mut self, id: ResourceId, lease: &Lease, now: Timestamp) {
        self.release(id, lease, Released::Unlocked, now);
        self.events.push(Event::Unlocked {
            resource: id,
            fencing: lease.fencing,
            at: now,
        });
    }

    /// Frees `id`. The queue is marked dirty: the resource may serve a waiter. A
    /// reservation whose last lock this was ends. A retiring resource goes when the queue
    /// is served next (before this operation returns).
    fn release(&mut self, id: ResourceId, lease: &Lease, why: Released, now: Timestamp) {
        // An expiry's deadline was just taken off the set by `expire_due`: looking for it
        // again would cost a descent of the tree per expired lock.
        if !matches!(why, Released::Expired(_)) {
            self.deadlines
                .remove(&(lease.expires_at, Due::LockExpiry(id)));
        }
        self.by_token.remove(&lease.token);
        self.set_state(id, LockState::Free(why));
        self.queue_dirty = true;
        if let Some(rid) = lease.reservation {
            self.on_reservation_lock_released(rid, now);
        }
        if self.resources[&id].retiring {
            self.retired.push(id);
        }
    }

    /// The one place a resource's lock state changes, so the tag index follows it.
    /// It also keeps the owners' lock counts.
    fn set_state(&mut self, id: ResourceId, state: LockState) {
        let resource = self.resources.get_mut(&id).expect("caller checked the id");
        let before = resource.lease().and_then(|l| l.meta.owner.clone());
        let after = match &state {
            LockState::Locked(lease) => lease.meta.owner.clone(),
            LockState::Free(_) => None,
        };
        resource.state = state;
        self.tags.refresh(resource);
        count_owned(&mut self.owners, before.as_ref(), |o| o.locks -= 1);
        count_owned(&mut self.owners, after.as_ref(), |o| o.locks += 1);
    }

    /// What `owner` holds now. O(1).
    pub fn owned(&self, owner: &str) -> Owned {
        self.owners.get(owner).copied().unwrap_or_default()
    }

    /// The owners' counts recomputed from the resources and reservations: what
    /// `owners` must equal (restore builds it so; `check_invariants` compares).
    fn recount_owners(&self) -> HashMap<Arc<str>, Owned> {
        let mut owners = HashMap::new();
        for resource in self.resources.values() {
            let owner = resource.lease().and_then(|l| l.meta.owner.as_ref());
            count_owned(&mut owners, owner, |o| o.locks += 1);
        }
        for r in self.reservations.values() {
            if r.status == ReservationStatus::Pending {
                count_owned(&mut owners, r.request.meta.owner.as_ref(), |o| {
                    o.pending += 1;
                });
            }
        }
        owners
    }

    /// Refuses `who` a lock of `wanted` more resources over its `max_locks`.
    fn check_lock_cap(&self, who: &Principal, wanted: u32) -> Result<(), DomainError> {
        let (Some(max), Some(name)) = (who.caps.max_locks, &who.name) else {
            return Ok(());
        };
        let held = self.owned(name).locks;
        if held.saturating_add(wanted) > max {
            return Err(DomainError::TooManyLocks {
                held,
                wanted,
                max,
                retry_after_secs: CAP_RETRY_SECS,
            });
        }
        Ok(())
    }

    /// Refuses `who` the lock `lease` on `id` unless it may act on it.
    fn check_lock_owner(who: &Principal, id: ResourceId, lease: &Lease) -> Result<(), DomainError> {
        if who.may_act_on(lease.meta.owner.as_ref()) {
            Ok(())
        } else {
            Err(DomainError::NotOwner {
                what: Owning::Lock(id),
            })
        }
    }

    /// Resources meeting `criteria` in `pool` and passing `available`, lowest ids first,
    /// at most `limit`. With a `ttl`, only those whose max-lock-duration allows it and,
    /// from the free pool, that a lock from `now` would not keep past the opening of a
    /// maintenance window.
    fn eligible(
        &self,
        criteria: &Criteria,
        ttl: Option<Ttl>,
        pool: Pool,
        now: Timestamp,
        mut available: impl FnMut(ResourceId) -> bool,
        limit: usize,
    ) -> Vec<ResourceId> {
        self.matching(criteria, pool)
            .filter(|&id| {
                ttl.is_none_or(|ttl| {
                    self.allows(id, ttl) && (pool == Pool::All || self.fits(id, ttl, now))
                })
            })
            .filter(|&id| available(id))
            .take(limit)
            .collect()
    }

    /// Whether resource `id`'s `max-lock-duration` allows a lock of `ttl`.
    fn allows(&self, id: ResourceId, ttl: Ttl) -> bool {
        self.tags.columns().max_lock_secs(id) >= ttl.as_secs()
    }

    /// Whether a lock of `ttl` from `now` on resource `id` ends before its maintenance
    /// window opens (always, without one: the resource is read only when it has one).
    fn fits(&self, id: ResourceId, ttl: Ttl, now: Timestamp) -> bool {
        self.tags.columns().flags(id) & WINDOW == 0
            || self.resources[&id].fits_before_maintenance(ttl, now)
    }

    /// Resources meeting `criteria` in `pool`, in id order. The criteria are compiled
    /// once to tag numbers, and each candidate is checked against the query columns:
    /// no resource is read, no string compared.
    fn matching(&self, criteria: &Criteria, pool: Pool) -> impl Iterator<Item = ResourceId> + '_ {
        // Tags need no allocation: they are their own required tags.
        let candidates = match criteria {
            Criteria::Tags(tags) => self.tags.candidates(tags, pool),
            Criteria::Expr(expr) => self.tags.candidates(&expr.required_tags(), pool),
        };
        let test = self.tags.compile(criteria);
        let columns = self.tags.columns();
        candidates
            .iter()
            .filter(move |&id| test.admits(id, columns))
    }

    /// Chooses resources for every group from `pool`, passing `available`.
    fn allocate(
        &self,
        groups: &[Group],
        ttl: Ttl,
        pool: Pool,
        now: Timestamp,
        available: impl Fn(ResourceId) -> bool,
    ) -> Result<Vec<(usize, ResourceId)>, Shortfall> {
        let quantities: Vec<u32> = groups.iter().map(|g| g.quantity).collect();
        allocation::allocate(&quantities, |g, limit| {
            self.eligible(&groups[g].criteria, Some(ttl), pool, now, &available, limit)
        })
    }

    /// Refuses a request that no release could ever serve. Maintenance does not count:
    /// every window ends, if only when an operator says so. Retiring resources do not
    /// count either: they are lent to no one again.
    ///
    /// # Errors
    /// `NoMatch` when a group matches nothing, `Unsatisfiable` when too few resources
    /// match and allow `ttl`.
    pub fn check_satisfiable(
        &self,
        groups: &[Group],
        ttl: Ttl,
        now: Timestamp,
    ) -> Result<(), DomainError> {
        let lasting = |id| self.tags.columns().flags(id) & RETIRING == 0;
        let servable = match groups {
            // One group needs no matching: enough eligible resources is enough.
            [group] => {
                let wanted = group.quantity as usize;
                self.eligible(&group.criteria, Some(ttl), Pool::All, now, lasting, wanted)
                    .len()
                    >= wanted
            }
            _ => self.allocate(groups, ttl, Pool::All, now, lasting).is_ok(),
        };
        if servable {
            return Ok(());
        }
        let mut fallback = None;
        for (group, g) in groups.iter().enumerate() {
            let matching = self.matching(&g.criteria, Pool::All).count();
            if matching == 0 {
                return Err(DomainError::NoMatch(g.criteria.clone()));
            }
            let eligible = self
                .eligible(&g.criteria, Some(ttl), Pool::All, now, lasting, usize::MAX)
                .len();
            let error = DomainError::Unsatisfiable {
                group,
                criteria: g.criteria.clone(),
                wanted: g.quantity,
                matching,
                eligible,
                ttl,
            };
            if eligible < g.quantity as usize {
                return Err(error);
            }
            fallback.get_or_insert(error);
        }
        // Each group alone could be served; together they want more than exists.
        Err(fallback.expect("at least one group"))
    }

    /// The refusal of a single lock of `ttl` by criteria that found nothing to grant.
    fn none_available(&self, criteria: Criteria, ttl: Ttl, now: Timestamp) -> DomainError {
        let columns = self.tags.columns();
        let mut held_for = Vec::new();
        let mut seen = HashSet::new();
        let (mut matching, mut out_of_service, mut crossing) = (0, 0, 0);
        for id in self.matching(&criteria, Pool::All) {
            matching += 1;
            let flags = columns.flags(id);
            if flags & IN_SERVICE == 0 {
                out_of_service += 1;
            } else if !self.fits(id, ttl, now) {
                crossing += 1;
            }
            // Only a free resource is held.
            if flags & LOCKED == 0
                && let Some(&rid) = self.held.get(&id)
                && seen.insert(rid)
            {
                held_for.push(rid);
            }
        }
        match matching {
            0 => DomainError::NoMatch(criteria),
            n if n == out_of_service => DomainError::AllMatchesUnavailable { criteria, count: n },
            _ => DomainError::AllMatchesLocked {
                criteria,
                held_for,
                unavailable: out_of_service + crossing,
            },
        }
    }

    fn remember_expired(&mut self, id: ResourceId, name: String, lease: Lease, at: Timestamp) {
        if self.expired.len() == EXPIRY_HISTORY {
            self.expired.pop_front();
        }
        let expired = ExpiredLock {
            resource: id,
            name,
            fencing: lease.fencing,
            acquired_at: lease.acquired_at,
            expired_at: at,
            reservation: lease.reservation,
            meta: lease.meta,
        };
        self.touch_expired(&expired);
        self.expired.push_back(expired);
    }
}

/// `terms` with `who` as the owner (whatever the request said).
fn owned_terms(terms: impl Into<LockTerms>, who: &Principal) -> LockTerms {
    let mut terms = terms.into();
    terms.meta.owner.clone_from(&who.name);
    terms
}

/// Applies `change` to `owner`'s counts (nothing for `None`), dropping an owner that
/// then holds nothing.
fn count_owned(
    owners: &mut HashMap<Arc<str>, Owned>,
    owner: Option<&Arc<str>>,
    change: impl FnOnce(&mut Owned),
) {
    let Some(owner) = owner else {
        return;
    };
    let counts = match owners.get_mut(owner) {
        Some(counts) => counts,
        None => owners.entry(owner.clone()).or_default(),
    };
    change(counts);
    if counts.is_empty() {
        owners.remove(owner);
    }
}

#[cfg(test)]
mod owner_tests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
