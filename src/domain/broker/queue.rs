//! Reservations and the serving of the queue.
//!
//! # Serving
//!
//! [`Broker::serve_queue`] walks the pending reservations in serving order (priority with
//! aging, FIFO among equals; `domain/queue.rs`) over the free resources:
//!
//! - a reservation whose every group can be allocated from the free resources not yet
//!   taken in this walk is fulfilled: its locks are granted, with their TTL starting now;
//! - one that cannot *holds* the free resources that match it (up to the quantity of each
//!   group), so that later or smaller requests cannot keep taking them: this is what
//!   keeps a request for 3 boards from starving behind a stream of requests for 1.
//!   Resources draining for a maintenance window are not held (see `plan`);
//! - free resources that no earlier reservation can use go to later ones (backfill).
//!
//! Holds bind direct locks too: a held resource is refused to `lock` with a message
//! naming the reservation. The walk stops as soon as every free resource is taken or
//! held, so a release with 10 000 waiters costs what the first few waiters cost.
//!
//! Serving is triggered by whatever may let a waiter in: a release (unlock, expiry, an
//! unclaimed reservation running out), a new or ended reservation, and a change of queue
//! order through aging. It runs inside the operation that caused it; nothing polls.
//! After serving, serving again changes nothing ([`Broker::is_settled`]).

use std::collections::{HashMap, HashSet};

use super::*;
use crate::domain::image::EndedReservation;
use crate::domain::queue::sort_key;
use crate::domain::reservation::{Allocation, Priority, ReservationRequest, ReservationStatus};

/// Why a pending reservation waits, group by group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitingFor {
    pub groups: Vec<GroupWait>,
    /// When enough of the locks now held will have expired to serve it, if locks alone
    /// stand in the way (ignores early unlocks and reservations ahead).
    pub estimated_available_at: Option<Timestamp>,
}

/// One group's view of the resources it could use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupWait {
    pub quantity: u32,
    /// Resources meeting the criteria and allowing the reservation's TTL.
    pub matching: usize,
    pub locked: usize,
    /// The earliest expiry among the locked ones.
    pub next_release_at: Option<Timestamp>,
    /// Free, but held for (or about to be served to) reservations ahead in the queue.
    pub held_for_earlier: usize,
    /// Out of service, or draining for a maintenance window the reservation's locks
    /// would cross.
    pub unavailable: usize,
    /// Free and not held: usable by this reservation now.
    pub free: usize,
}

/// What one walk of the queue decided.
#[derive(Debug, Default)]
struct Plan {
    fulfil: Vec<(ReservationId, Vec<(usize, ResourceId)>)>,
    holds: HashMap<ResourceId, ReservationId>,
    /// Every free resource the walk gave out: allocated or held.
    taken: HashSet<ResourceId>,
}

impl Broker {
    /// Queues a reservation; it is fulfilled at once if its resources are free. Returns
    /// its id; read it back with [`Broker::reservation`].
    ///
    /// # Errors
    /// `InvalidTags` or `TooManyResources` over the limits; `NoMatch` when a group
    /// matches nothing, `Unsatisfiable` when the request could never be served (too few
    /// resources match, or allow the TTL); `QueueFull` when [`Policy::max_pending`]
    /// reservations wait and this one would too.
    /// [`Broker::reserve`] for `who`: the reservation and the locks it is granted are
    /// its own, within its caps.
    ///
    /// # Errors
    /// As [`Broker::reserve`]; first `TooManyReservations` when `who` has its
    /// `max_pending` reservations waiting, or `TooManyLocks` when the locks it asks for
    /// would take `who` over its `max_locks` (counted now: a cap is checked when asked).
    pub fn reserve_as(
        &mut self,
        mut request: ReservationRequest,
        who: &Principal,
        now: Timestamp,
    ) -> Result<ReservationId, DomainError> {
        self.expire_due(now);
        if let (Some(max), Some(name)) = (who.caps.max_pending, &who.name) {
            let pending = self.owned(name).pending;
            if pending >= max {
                return Err(DomainError::TooManyReservations {
                    pending,
                    max,
                    retry_after_secs: CAP_RETRY_SECS,
                });
            }
        }
        self.check_lock_cap(who, request.total_quantity())?;
        request.meta.owner.clone_from(&who.name);
        self.reserve(request, now)
    }

    pub fn reserve(
        &mut self,
        request: ReservationRequest,
        now: Timestamp,
    ) -> Result<ReservationId, DomainError> {
        debug_assert!(
            !request.groups.is_empty(),
            "the API asks for at least one group"
        );
        self.expire_due(now);
        check_request(&request.groups)?;
        self.check_satisfiable(&request.groups, request.ttl, now)?;
        if self.queue.len() >= self.policy.max_pending && !self.would_be_served(&request, now) {
            return Err(DomainError::QueueFull {
                max: self.policy.max_pending,
                retry_after_secs: QUEUE_FULL_RETRY_SECS,
            });
        }
        let id = ReservationId::from_u128(self.entropy.next_u128());
        let seq = self.next_seq;
        self.next_seq += 1;
        let reservation = Reservation {
            id,
            seq,
            created_at: now,
            expires_at: deadline(now, request.max_wait),
            status: ReservationStatus::Pending,
            fulfilled_at: None,
            claim_expires_at: None,
            claimed_at: None,
            allocations: Vec::new(),
            request,
        };
        let shape = persist::shape_of(&reservation.request);
        self.queue
            .insert(reservation.request.priority, seq, id, now, shape);
        count_owned(
            &mut self.owners,
            reservation.request.meta.owner.as_ref(),
            |o| o.pending += 1,
        );
        self.deadlines
            .insert((reservation.expires_at, Due::ReservationWait(id)));
        if reservation.request.priority > Priority::HIGHEST {
            self.schedule_aging(id, deadline_after(now, self.policy.aging));
        }
        self.reservations.insert(id, Arc::new(reservation));
        self.touch_reservation(id);
        self.events.push(Event::ReservationCreated {
            reservation: id,
            at: now,
        });
        self.serve_newcomer(id, now);
        Ok(id)
    }

    /// Serves the queue after reservation `id` joined it, without walking the queue when
    /// the newcomer alone can change something.
    ///
    /// The queue was settled before it came (`expire_due` served it): every waiter ahead
    /// of it keeps what the last serving gave it, because a waiter's share depends only
    /// on those ahead of it. So when the newcomer is last in serving order (the common
    /// case: a new reservation waits behind older ones of its priority), serving is
    /// deciding its own share from the free resources the others do not hold. When it
    /// overtakes some (a higher priority), it changes nothing unless some free resource
    /// not held by those ahead of it could serve it; only then is the whole queue served.
    fn serve_newcomer(&mut self, id: ReservationId, now: Timestamp) {
        let settled = !self.queue_dirty && self.recheck.is_empty() && self.retired.is_empty();
        if settled && self.queue_position(id, now) == Some(self.queue.len()) {
            match self.decide(id, now, &|r| self.held.contains_key(&r)) {
                Ok(chosen) => self.fulfil(id, chosen, now),
                Err((holds, _)) => self.held.extend(holds.into_iter().map(|r| (r, id))),
            }
            return;
        }
        if !settled || !self.is_inert(id, now) {
            self.queue_dirty = true;
            self.serve_queue_if_dirty(now);
        }
    }

    /// Whether `request`, were it queued now, would be served at once: the queue is
    /// settled, so it would be if the free resources not held for the waiters it would
    /// queue behind serve it.
    fn would_be_served(&self, request: &ReservationRequest, now: Timestamp) -> bool {
        let newcomer = (request.priority, self.next_seq);
        let ahead = |holder: ReservationId| {
            let r = &self.reservations[&holder];
            sort_key(
                r.request.priority,
                r.seq,
                r.created_at,
                now,
                self.policy.aging,
            ) < newcomer
        };
        self.allocate(&request.groups, request.ttl, Pool::Free, now, |r| {
            self.held.get(&r).is_none_or(|&w| !ahead(w))
        })
        .is_ok()
    }

    /// Whether waiting reservation `id` finds no free resource that the waiters ahead of
    /// it do not hold, for any of its groups: then it holds nothing and is not served,
    /// and those after it find the same as before.
    fn is_inert(&self, id: ReservationId, now: Timestamp) -> bool {
        let request = &self.reservations[&id].request;
        request.groups.iter().all(|group| {
            self.eligible(
                &group.criteria,
                Some(request.ttl),
                Pool::Free,
                now,
                |r| !self.held_ahead_of(r, id, now),
                1,
            )
            .is_empty()
        })
    }

    /// Whether free resource `r` is held for a waiter served before waiting reservation
    /// `id` (at `now`; the queue settled).
    fn held_ahead_of(&self, r: ResourceId, id: ReservationId, now: Timestamp) -> bool {
        self.held
            .get(&r)
            .is_some_and(|&holder| holder != id && self.is_ahead_of(holder, id, now))
    }

    /// Whether waiting reservation `a` is served before waiting reservation `b` at `now`.
    fn is_ahead_of(&self, a: ReservationId, b: ReservationId, now: Timestamp) -> bool {
        let key = |id| {
            let r = &self.reservations[&id];
            sort_key(
                r.request.priority,
                r.seq,
                r.created_at,
                now,
                self.policy.aging,
            )
        };
        key(a) < key(b)
    }

    /// The 1-based place of waiting reservation `id` in serving order at `now` (1.0
    /// `position_in_queue`); `None` unless it is pending. O(log n), see `domain/queue.rs`.
    pub fn queue_position(&self, id: ReservationId, now: Timestamp) -> Option<usize> {
        let r = self.reservations.get(&id)?;
        (r.status == ReservationStatus::Pending).then(|| {
            self.queue.position(
                r.request.priority,
                r.seq,
                r.created_at,
                now,
                self.policy.aging,
            )
        })
    }

    /// Confirms a fulfilled reservation: its locks are now the caller's to use and unlock.
    ///
    /// # Errors
    /// `ReservationNotFound`; `ClaimWindowOver` when it was not claimed in time;
    /// `ReservationWrongState` when pending or already claimed.
    pub fn claim(
        &mut self,
        id: ReservationId,
        now: Timestamp,
    ) -> Result<&Reservation, DomainError> {
        self.claim_as(id, &Principal::anyone(), now)
    }

    /// [`Broker::claim`] by `who`.
    ///
    /// # Errors
    /// As [`Broker::claim`]; `NotOwner` when the reservation is another's and `who`
    /// does not override.
    pub fn claim_as(
        &mut self,
        id: ReservationId,
        who: &Principal,
        now: Timestamp,
    ) -> Result<&Reservation, DomainError> {
        self.expire_due(now);
        if let Some(r) = self.reservations.get(&id) {
            self.check_reservation_owner(who, r)?;
        }
        let Some(reservation) = self.reservation_mut(id) else {
            return Err(match self.ended.get(&id) {
                Some((EndReason::ClaimExpired, _)) => DomainError::ClaimWindowOver(id),
                _ => self.missing(id),
            });
        };
        if reservation.status != ReservationStatus::Fulfilled {
            return Err(DomainError::ReservationWrongState {
                id,
                status: reservation.status,
            });
        }
        let window = reservation
            .claim_expires_at
            .expect("a fulfilled reservation has a claim window");
        reservation.status = ReservationStatus::Claimed;
        reservation.claimed_at = Some(now);
        self.deadlines.remove(&(window, Due::ClaimWindow(id)));
        self.events.push(Event::ReservationClaimed {
            reservation: id,
            at: now,
        });
        Ok(&self.reservations[&id])
    }

    /// Withdraws a pending reservation.
    ///
    /// # Errors
    /// `ReservationNotFound`; `ReservationWrongState` once fulfilled or claimed (as in 1.0:
    /// unlock its resources instead).
    pub fn cancel(&mut self, id: ReservationId, now: Timestamp) -> Result<(), DomainError> {
        self.cancel_as(id, &Principal::anyone(), now)
    }

    /// [`Broker::cancel`] by `who`.
    ///
    /// # Errors
    /// As [`Broker::cancel`]; `NotOwner` as for [`Broker::claim_as`].
    pub fn cancel_as(
        &mut self,
        id: ReservationId,
        who: &Principal,
        now: Timestamp,
    ) -> Result<(), DomainError> {
        self.expire_due(now);
        let reservation = self
            .reservations
            .get(&id)
            .ok_or(DomainError::ReservationNotFound(id))?;
        self.check_reservation_owner(who, reservation)?;
        if reservation.status != ReservationStatus::Pending {
            return Err(DomainError::ReservationWrongState {
                id,
                status: reservation.status,
            });
        }
        self.end_reservation(id, EndReason::Cancelled, now);
        self.serve_queue_if_dirty(now);
        Ok(())
    }

    /// Refuses `who` reservation `r` unless it may act on it.
    fn check_reservation_owner(&self, who: &Principal, r: &Reservation) -> Result<(), DomainError> {
        if who.may_act_on(r.request.meta.owner.as_ref()) {
            Ok(())
        } else {
            Err(DomainError::NotOwner {
                what: Owning::Reservation(r.id),
            })
        }
    }

    pub fn reservation(&self, id: ReservationId) -> Option<&Reservation> {
        self.reservations.get(&id).map(|r| &**r)
    }

    /// Reservation `id` as the broker shares it: cloning the `Arc` copies nothing.
    pub fn reservation_shared(&self, id: ReservationId) -> Option<&Arc<Reservation>> {
        self.reservations.get(&id)
    }

    /// Every live reservation, in no particular order.
    pub fn reservations(&self) -> impl ExactSizeIterator<Item = &Arc<Reservation>> {
        self.reservations.values()
    }

    /// The one way to change a live reservation (copied first if a reader shares it).
    fn reservation_mut(&mut self, id: ReservationId) -> Option<&mut Reservation> {
        self.touch_reservation(id);
        self.reservations.get_mut(&id).map(Arc::make_mut)
    }

    /// How and when a recently ended reservation ended.
    pub fn ended(&self, id: ReservationId) -> Option<(EndReason, Timestamp)> {
        self.ended.get(&id).copied()
    }

    /// The refusal for a reservation that is not live: ended (if remembered) or unknown.
    pub fn missing(&self, id: ReservationId) -> DomainError {
        match self.ended(id) {
            Some((reason, at)) => DomainError::ReservationEnded { id, reason, at },
            None => DomainError::ReservationNotFound(id),
        }
    }

    /// The pending reservations in serving order at `now` (1.0 `position_in_queue` is the
    /// 1-based index in this order).
    pub fn queue_order(&self, now: Timestamp) -> impl Iterator<Item = ReservationId> + '_ {
        self.queue
            .in_order(now, self.policy.aging)
            .map(|(id, _)| id)
    }

    /// How many reservations wait.
    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// Why pending reservation `id` waits; `None` if it is not pending.
    pub fn waiting_for(&self, id: ReservationId, now: Timestamp) -> Option<WaitingFor> {
        let reservation = self.reservations.get(&id)?;
        if reservation.status != ReservationStatus::Pending {
            return None;
        }
        // What serving gave to those ahead of it: in a settled queue, their holds.
        let ahead = |r| self.held_ahead_of(r, id, now);
        let ttl = reservation.request.ttl;
        let mut estimate = Some(now);
        let groups = reservation
            .request
            .groups
            .iter()
            .map(|group| {
                let mut wait = GroupWait {
                    quantity: group.quantity,
                    matching: 0,
                    locked: 0,
                    next_release_at: None,
                    held_for_earlier: 0,
                    unavailable: 0,
                    free: 0,
                };
                let mut expiries = Vec::new();
                let columns = self.tags.columns();
                for id in self.matching(&group.criteria, Pool::All) {
                    if !self.allows(id, ttl) {
                        continue;
                    }
                    wait.matching += 1;
                    let flags = columns.flags(id);
                    // Out of service, or draining for a window this reservation's lock
                    // would cross: no release makes it usable before the window ends.
                    if flags & IN_SERVICE == 0 || !self.fits(id, ttl, now) {
                        wait.unavailable += 1;
                        continue;
                    }
                    match columns.expires_at(id) {
                        Some(expiry) => expiries.push(expiry),
                        None if ahead(id) => wait.held_for_earlier += 1,
                        None => wait.free += 1,
                    }
                }
                wait.locked = expiries.len();
                wait.next_release_at = expiries.iter().min().copied();
                let missing = (group.quantity as usize).saturating_sub(wait.free);
                // The `missing`-th earliest expiry, found without sorting them all.
                let group_estimate = match missing {
                    0 => Some(now),
                    n if n > expiries.len() => None,
                    n => Some(*expiries.select_nth_unstable(n - 1).1),
                };
                estimate = estimate.zip(group_estimate).map(|(a, b)| a.max(b));
                wait
            })
            .collect();
        Some(WaitingFor {
            groups,
            estimated_available_at: estimate,
        })
    }

    /// Whether serving the queue now would change nothing: no waiter could be fulfilled
    /// and the holds are as they should be (test support).
    pub fn is_settled(&self, now: Timestamp) -> bool {
        // Without the shortcuts serving takes (skipping waiters known to find nothing,
        // stopping once everything is taken), so that a wrong shortcut shows.
        let plan = self.plan_with(now, false);
        plan.fulfil.is_empty() && plan.holds == self.held
    }

    pub(super) fn serve_queue_if_dirty(&mut self, now: Timestamp) {
        if self.queue_dirty {
            self.serve_queue(now);
        }
    }

    /// Fulfils every reservation the free resources allow, in queue order, and records
    /// the holds of those that must still wait.
    fn serve_queue(&mut self, now: Timestamp) {
        // Retired resources go, and waiters that can then never be served end, first.
        self.settle_admin(now);
        self.queue_dirty = false;
        let plan = self.plan(now);
        self.held = plan.holds;
        for (id, chosen) in plan.fulfil {
            self.fulfil(id, chosen, now);
        }
    }

    /// Walks the queue in order and decides who is served and what is held. Changes
    /// nothing.
    fn plan(&self, now: Timestamp) -> Plan {
        self.plan_with(now, true)
    }

    /// [`Broker::plan`], with or without the shortcuts (for [`Broker::is_settled`]).
    fn plan_with(&self, now: Timestamp, shortcuts: bool) -> Plan {
        let mut plan = Plan::default();
        let free = self.tags.free_len();
        // Per criteria number: the longest TTL that an untaken free resource meeting the
        // criteria may still allow (`u64::MAX`: not known yet). A group asking longer
        // finds nothing, and the walk only ever takes more, so it never will: a waiter
        // whose every group is in that case holds nothing and is skipped on its queue
        // entry alone. This keeps a release cheap behind thousands of waiters it cannot
        // serve, whether they ask the same or (another TTL, another quantity) not.
        let mut longest = vec![u64::MAX; self.queue.criteria_count()];
        for (id, shape) in self.queue.in_order(now, self.policy.aging) {
            if shortcuts && plan.taken.len() >= free {
                break;
            }
            let criteria = self.queue.shape_criteria(shape);
            let ttl = self.queue.shape_ttl(shape).as_secs();
            if shortcuts && criteria.iter().all(|&c| ttl > longest[c]) {
                continue;
            }
            match self.decide(id, now, &|r| plan.taken.contains(&r)) {
                Ok(chosen) => {
                    plan.taken.extend(chosen.iter().map(|&(_, r)| r));
                    plan.fulfil.push((id, chosen));
                }
                Err((holds, found_none)) => {
                    for (&c, none) in criteria.iter().zip(found_none) {
                        if none {
                            if longest[c] == u64::MAX {
                                let taken = |r| plan.taken.contains(&r);
                                longest[c] =
                                    self.longest_ttl_left(self.queue.criteria(c), now, taken);
                            }
                            longest[c] = longest[c].min(ttl - 1);
                        }
                    }
                    for r in holds {
                        plan.taken.insert(r);
                        plan.holds.insert(r, id);
                    }
                }
            }
        }
        plan
    }

    /// What waiting reservation `id` gets from the free resources that `taken` (by
    /// those served before it) leaves: `Ok` the resources that serve it, or `Err` the
    /// ones it holds while it waits, with, per group, whether it found none at all.
    #[allow(clippy::type_complexity)] // a one-off pair, named by the doc above
    fn decide(
        &self,
        id: ReservationId,
        now: Timestamp,
        taken: &impl Fn(ResourceId) -> bool,
    ) -> Result<Vec<(usize, ResourceId)>, (Vec<ResourceId>, Vec<bool>)> {
        let request = &self.reservations[&id].request;
        let shortfall =
            match self.allocate(&request.groups, request.ttl, Pool::Free, now, |r| !taken(r)) {
                Ok(chosen) => return Ok(chosen),
                Err(shortfall) => shortfall,
            };
        let found_none = shortfall.candidates.iter().map(Vec::is_empty).collect();
        let listed = request.total_quantity() as usize;
        let mut holds = Vec::new();
        let mut mine = HashSet::new();
        for (list, group) in shortfall.candidates.iter().zip(&request.groups) {
            // Each group holds its first `quantity` free resources not taken before it
            // (nor by its earlier groups). A draining resource is never held: whether a
            // lock fits before its window depends on the time, and a hold must not go
            // stale between two servings (it goes out of service soon).
            let holdable = |r: &ResourceId| {
                !taken(*r) && !mine.contains(r) && self.tags.columns().flags(*r) & WINDOW == 0
            };
            let wanted = group.quantity as usize;
            let mut hold: Vec<ResourceId> =
                list.iter().copied().filter(holdable).take(wanted).collect();
            // The list is the first `listed` candidates in id order: if it was cut short
            // and came up short, look further.
            if hold.len() < wanted && list.len() == listed {
                hold = self.eligible(
                    &group.criteria,
                    Some(request.ttl),
                    Pool::Free,
                    now,
                    |r| holdable(&r),
                    wanted,
                );
            }
            for r in hold {
                if mine.insert(r) {
                    holds.push(r);
                }
            }
        }
        Err((holds, found_none))
    }

    /// The longest TTL (seconds) that a free resource meeting `criteria` and not
    /// `taken` allows (its `max-lock-duration`, or the time left before its maintenance
    /// window opens); 0 when there is none.
    fn longest_ttl_left(
        &self,
        criteria: &Criteria,
        now: Timestamp,
        taken: impl Fn(ResourceId) -> bool,
    ) -> u64 {
        let columns = self.tags.columns();
        self.matching(criteria, Pool::Free)
            .filter(|&r| !taken(r))
            .map(|r| {
                let max = columns.max_lock_secs(r);
                match &self.resources[&r].maintenance {
                    Some(m) if columns.flags(r) & WINDOW != 0 => {
                        max.min(m.from.saturating_duration_since(now).as_secs())
                    }
                    _ => max,
                }
            })
            .max()
            .unwrap_or(0)
    }

    fn fulfil(&mut self, id: ReservationId, chosen: Vec<(usize, ResourceId)>, now: Timestamp) {
        let reservation = &self.reservations[&id];
        let (ttl, priority, seq, expires_at, auto_claim) = (
            reservation.request.ttl,
            reservation.request.priority,
            reservation.seq,
            reservation.expires_at,
            reservation.request.auto_claim,
        );
        let meta = reservation.request.meta.clone();
        self.queue.remove(priority, seq);
        count_owned(&mut self.owners, meta.owner.as_ref(), |o| o.pending -= 1);
        self.deadlines
            .remove(&(expires_at, Due::ReservationWait(id)));
        self.unschedule_aging(id);
        let allocations: Vec<Allocation> = chosen
            .into_iter()
            .map(|(group, resource)| {
                let granted = self
                    .grant(resource, ttl, now, Some(id), &meta)
                    .expect("planned from free resources allowing the ttl");
                Allocation {
                    group,
                    resource,
                    token: granted.token,
                }
            })
            .collect();
        let resources = allocations.iter().map(|a| a.resource).collect();
        let claim_window = deadline_after(now, self.policy.claim_window);
        let reservation = self.reservation_mut(id).expect("planned from the queue");
        reservation.allocations = allocations;
        reservation.fulfilled_at = Some(now);
        if auto_claim {
            reservation.status = ReservationStatus::Claimed;
            reservation.claimed_at = Some(now);
        } else {
            reservation.status = ReservationStatus::Fulfilled;
            reservation.claim_expires_at = Some(claim_window);
            self.deadlines.insert((claim_window, Due::ClaimWindow(id)));
        }
        self.events.push(Event::ReservationFulfilled {
            reservation: id,
            resources,
            at: now,
        });
        if auto_claim {
            self.events.push(Event::ReservationClaimed {
                reservation: id,
                at: now,
            });
        }
    }

    /// Removes reservation `id` for `reason`, with everything that belongs to it: its place
    /// in the queue, its deadlines, its holds and, when its claim window ran out, its locks.
    pub(super) fn end_reservation(&mut self, id: ReservationId, reason: EndReason, now: Timestamp) {
        let Some(reservation) = self.reservations.remove(&id) else {
            return;
        };
        self.touch_reservation(id);
        match reservation.status {
            ReservationStatus::Pending => {
                self.queue
                    .remove(reservation.request.priority, reservation.seq);
                count_owned(
                    &mut self.owners,
                    reservation.request.meta.owner.as_ref(),
                    |o| o.pending -= 1,
                );
                self.deadlines
                    .remove(&(reservation.expires_at, Due::ReservationWait(id)));
                self.unschedule_aging(id);
            }
            ReservationStatus::Fulfilled => {
                let window = reservation.claim_expires_at.expect("fulfilled");
                self.deadlines.remove(&(window, Due::ClaimWindow(id)));
            }
            ReservationStatus::Claimed => {}
        }
        for allocation in &reservation.allocations {
            // The resource may be gone: deleted, or retired when its lock ended.
            let Some(resource) = self.resources.get(&allocation.resource) else {
                continue;
            };
            let lease = resource.lease();
            if let Some(lease) = lease.filter(|l| l.reservation == Some(id)).cloned() {
                self.unlock_held(allocation.resource, &lease, now);
            }
        }
        self.remember_ended(id, reason, now);
        self.events.push(Event::ReservationEnded {
            reservation: id,
            reason,
            at: now,
        });
        self.queue_dirty = true;
    }

    /// A lock granted to reservation `id` was released: the reservation ends with its last.
    pub(super) fn on_reservation_lock_released(&mut self, id: ReservationId, now: Timestamp) {
        let Some(reservation) = self.reservations.get(&id) else {
            return; // ending: end_reservation is releasing its locks
        };
        let any_left = reservation.allocations.iter().any(|a| {
            self.resources
                .get(&a.resource)
                .and_then(Resource::lease)
                .is_some_and(|l| l.reservation == Some(id))
        });
        if !any_left {
            self.end_reservation(id, EndReason::Released, now);
        }
    }

    /// Aging step at `at`: the queue order may change. Schedules the next step while the
    /// reservation can still improve.
    pub(super) fn age(&mut self, id: ReservationId, at: Timestamp) {
        self.aging.remove(&id);
        self.touch_reservation(id);
        let reservation = &self.reservations[&id];
        if reservation.effective_priority(at, self.policy.aging) > Priority::HIGHEST {
            self.schedule_aging(id, deadline_after(at, self.policy.aging));
        }
        self.queue_dirty = true;
    }

    fn schedule_aging(&mut self, id: ReservationId, at: Timestamp) {
        self.touch_reservation(id);
        self.aging.insert(id, at);
        self.deadlines.insert((at, Due::Aging(id)));
    }

    fn unschedule_aging(&mut self, id: ReservationId) {
        if let Some(at) = self.aging.remove(&id) {
            self.touch_reservation(id);
            self.deadlines.remove(&(at, Due::Aging(id)));
        }
    }

    fn remember_ended(&mut self, id: ReservationId, reason: EndReason, now: Timestamp) {
        if self.ended_order.len() == ENDED_MEMORY
            && let Some(oldest) = self.ended_order.pop_front()
        {
            self.ended.remove(&oldest);
        }
        self.ended_order.push_back(id);
        self.ended.insert(id, (reason, now));
        self.touch_ended(EndedReservation {
            id,
            reason,
            at: now,
        });
    }

    /// The reservation half of [`Broker::check_invariants`]; adds the deadlines the
    /// reservations account for to `expected`.
    pub(super) fn check_reservations(&self, expected: &mut BTreeSet<(Timestamp, Due)>) {
        let mut pending = 0;
        let mut allocated = HashSet::new();
        for r in self.reservations.values() {
            match r.status {
                ReservationStatus::Pending => {
                    pending += 1;
                    assert!(r.allocations.is_empty());
                    expected.insert((r.expires_at, Due::ReservationWait(r.id)));
                    if let Some(&at) = self.aging.get(&r.id) {
                        expected.insert((at, Due::Aging(r.id)));
                    }
                }
                ReservationStatus::Fulfilled => {
                    expected.insert((
                        r.claim_expires_at.expect("fulfilled"),
                        Due::ClaimWindow(r.id),
                    ));
                }
                ReservationStatus::Claimed => assert!(r.claimed_at.is_some()),
            }
            if r.status != ReservationStatus::Pending {
                let wanted: u32 = r.request.groups.iter().map(|g| g.quantity).sum();
                assert_eq!(
                    r.allocations.len(),
                    wanted as usize,
                    "{}: allocated in full",
                    r.id
                );
                let mut live = 0;
                for a in &r.allocations {
                    // Each resource matched its group when granted; an operator may since
                    // have changed its tags, or removed it (its lock ended then).
                    let lease = self
                        .resources
                        .get(&a.resource)
                        .and_then(Resource::lease)
                        .filter(|l| l.reservation == Some(r.id));
                    if let Some(lease) = lease {
                        assert!(lease.token == a.token, "{}: {} token", r.id, a.resource);
                        assert!(
                            allocated.insert(a.resource),
                            "{} granted to two reservations",
                            a.resource
                        );
                        live += 1;
                    }
                }
                assert!(
                    live > 0,
                    "{}: a reservation with no lock left has ended",
                    r.id
                );
            }
        }
        assert_eq!(
            self.queue.len(),
            pending,
            "the queue holds exactly the pending"
        );
        assert!(
            self.aging
                .keys()
                .all(|id| self.reservations[id].status == ReservationStatus::Pending)
        );
        for (resource, holder) in &self.held {
            assert!(
                self.resources.get(resource).is_some_and(|r| !r.is_locked()),
                "held {resource} is gone or locked"
            );
            assert_eq!(
                self.reservations.get(holder).map(|r| r.status),
                Some(ReservationStatus::Pending),
                "{resource} is held for a reservation that does not wait"
            );
        }
    }
}

/// `now + d`; `d` is a configured duration, far below Timestamp's range.
fn deadline_after(now: Timestamp, d: Duration) -> Timestamp {
    now.checked_add(d)
        .expect("a configured duration is far below Timestamp's range")
}

#[cfg(test)]
mod tests;
