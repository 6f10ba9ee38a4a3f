//! The broker's state as plain rows ([`Image`]), and what one broker call did to them
//! ([`Delta`]).
//!
//! This is what persistence stores: the resources and reservations as they stand, the
//! bounded histories and the counters. Indexes (names, tokens, tags, deadlines, the queue,
//! holds) are not part of it: [`Broker::restore`](super::Broker::restore) rebuilds them,
//! so a store never has to replay code to get the state back.
//!
//! ```text
//!   Broker call ──▶ Delta (final row images of what it touched) ──▶ store: upsert/delete
//!   start       ◀── Image (every row)                           ◀── store: load
//! ```
//!
//! `Image::apply` is the reference meaning of a delta: the SQLite and PostgreSQL stores
//! do the same with SQL, and the queue property test checks, after every step, that a
//! broker restored from the applied deltas equals the live one.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::broker::{ENDED_MEMORY, EXPIRY_HISTORY, ExpiredLock};
use super::clock::Timestamp;
use super::reservation::{EndReason, Reservation, ReservationId};
use super::resource::{Resource, ResourceId};

/// A reservation as stored: the reservation, and when a pending one next improves its
/// priority (`None` once it reached level 1, or when not pending).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredReservation {
    /// Shared with the broker (a row image costs a pointer copy).
    pub reservation: Arc<Reservation>,
    pub next_aging: Option<Timestamp>,
}

/// A reservation that ended recently: remembered so that a late claim gets "gone" (410)
/// and a watcher learns why, not "not found".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndedReservation {
    pub id: ReservationId,
    pub reason: EndReason,
    pub at: Timestamp,
}

/// The counters that must never go back, not even across a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counters {
    /// The id the next new resource gets: ids are never reused.
    pub next_resource_id: u32,
    /// The fencing token of the next grant: it only grows.
    pub next_fencing: u64,
    /// The creation sequence of the next reservation (FIFO order within a priority).
    pub next_reservation_seq: u64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            next_resource_id: 1,
            next_fencing: 1,
            next_reservation_seq: 0,
        }
    }
}

/// Every row of a broker's state. Rows are shared (`Arc`) with the broker that made
/// them: an image or a delta copies pointers, not resources.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Image {
    pub resources: BTreeMap<ResourceId, Arc<Resource>>,
    pub reservations: BTreeMap<ReservationId, StoredReservation>,
    /// Oldest first, at most [`ENDED_MEMORY`].
    pub ended: VecDeque<EndedReservation>,
    /// Oldest first, at most [`EXPIRY_HISTORY`].
    pub expired: VecDeque<ExpiredLock>,
    pub counters: Counters,
}

/// What one broker call changed, as rows: the final image of every resource and
/// reservation it touched (`None`: it is gone), what it appended to the histories, and
/// the counters after it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    pub resources: Vec<(ResourceId, Option<Arc<Resource>>)>,
    pub reservations: Vec<(ReservationId, Option<StoredReservation>)>,
    /// Appended, oldest first. The oldest entries beyond [`ENDED_MEMORY`] drop out.
    pub ended: Vec<EndedReservation>,
    /// Appended, oldest first. The oldest entries beyond [`EXPIRY_HISTORY`] drop out.
    pub expired: Vec<ExpiredLock>,
    pub counters: Counters,
}

impl Delta {
    /// Whether the call changed no row (the counters only move with a row change).
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
            && self.reservations.is_empty()
            && self.ended.is_empty()
            && self.expired.is_empty()
    }

    /// Folds `later` into `self`, as if both calls had been one: later images win.
    pub fn absorb(&mut self, later: Delta) {
        self.resources.extend(later.resources);
        self.reservations.extend(later.reservations);
        self.ended.extend(later.ended);
        self.expired.extend(later.expired);
        self.counters = later.counters;
    }
}

impl Image {
    /// Moves every deadline earlier than `until` to `until`: lock expiries, the maximum
    /// wait of pending reservations and the claim window of fulfilled ones. What the HA
    /// pair's new active does at takeover (`until` = takeover + grace): its clock may
    /// run ahead of the deposed one's, and a lock must not end early because of a
    /// takeover (etcd and Consul extend leases on failover the same way). A deadline
    /// already passed moves too: by the deposed active's clock it may not have been.
    /// Returns how many deadlines moved.
    pub fn postpone_deadlines(&mut self, until: Timestamp) -> usize {
        use super::reservation::ReservationStatus;
        use super::resource::LockState;
        let mut moved = 0;
        for resource in self.resources.values_mut() {
            if resource.lease().is_some_and(|l| l.expires_at < until) {
                if let LockState::Locked(lease) = &mut Arc::make_mut(resource).state {
                    lease.expires_at = until;
                }
                moved += 1;
            }
        }
        for stored in self.reservations.values_mut() {
            let r = &stored.reservation;
            let wait = r.status == ReservationStatus::Pending && r.expires_at < until;
            let claim = r.status == ReservationStatus::Fulfilled
                && r.claim_expires_at.is_some_and(|at| at < until);
            if wait || claim {
                let r = Arc::make_mut(&mut stored.reservation);
                if wait {
                    r.expires_at = until;
                }
                if claim {
                    r.claim_expires_at = Some(until);
                }
                moved += 1;
            }
        }
        moved
    }

    /// The state after `delta`.
    pub fn apply(&mut self, delta: &Delta) {
        for (id, row) in &delta.resources {
            match row {
                Some(resource) => {
                    self.resources.insert(*id, resource.clone());
                }
                None => {
                    self.resources.remove(id);
                }
            }
        }
        for (id, row) in &delta.reservations {
            match row {
                Some(reservation) => {
                    self.reservations.insert(*id, reservation.clone());
                }
                None => {
                    self.reservations.remove(id);
                }
            }
        }
        append_bounded(&mut self.ended, &delta.ended, ENDED_MEMORY);
        append_bounded(&mut self.expired, &delta.expired, EXPIRY_HISTORY);
        self.counters = delta.counters;
    }
}

fn append_bounded<T: Clone>(history: &mut VecDeque<T>, new: &[T], capacity: usize) {
    history.extend(new.iter().cloned());
    let excess = history.len().saturating_sub(capacity);
    history.drain(..excess);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::resource::{Origin, ResourceSpec};

    fn resource(id: u32, name: &str) -> Arc<Resource> {
        Arc::new(Resource::new(
            ResourceId::new(id),
            ResourceSpec::named(name),
            Origin::Api,
        ))
    }

    #[test]
    fn apply_upserts_and_removes_rows_and_keeps_the_last_counters() {
        let mut image = Image::default();
        let counters = Counters {
            next_resource_id: 3,
            next_fencing: 7,
            next_reservation_seq: 2,
        };
        image.apply(&Delta {
            resources: vec![
                (ResourceId::new(1), Some(resource(1, "a"))),
                (ResourceId::new(2), Some(resource(2, "b"))),
            ],
            counters,
            ..Delta::default()
        });
        image.apply(&Delta {
            resources: vec![
                (ResourceId::new(1), None),
                (ResourceId::new(2), Some(resource(2, "b2"))),
            ],
            counters,
            ..Delta::default()
        });
        assert_eq!(image.resources.len(), 1);
        assert_eq!(image.resources[&ResourceId::new(2)].spec.name, "b2");
        assert_eq!(image.counters, counters);
    }

    #[test]
    fn histories_keep_only_the_newest_entries() {
        let mut image = Image::default();
        let ended = |n: u64| EndedReservation {
            id: ReservationId::from_u128(u128::from(n)),
            reason: EndReason::Cancelled,
            at: Timestamp::from_millis(n),
        };
        let batch: Vec<_> = (0..ENDED_MEMORY as u64 + 5).map(ended).collect();
        image.apply(&Delta {
            ended: batch,
            ..Delta::default()
        });
        assert_eq!(image.ended.len(), ENDED_MEMORY);
        assert_eq!(
            image.ended.front(),
            Some(&ended(5)),
            "the oldest dropped out"
        );
    }

    #[test]
    fn absorbing_a_later_delta_lets_its_rows_win() {
        let mut first = Delta {
            resources: vec![(ResourceId::new(1), Some(resource(1, "a")))],
            ..Delta::default()
        };
        first.absorb(Delta {
            resources: vec![(ResourceId::new(1), None)],
            ..Delta::default()
        });
        let mut image = Image::default();
        image.apply(&first);
        assert!(image.resources.is_empty());
    }
}
