//! The broker as rows: recording what each call touched ([`Broker::take_delta`]), the
//! whole state ([`Broker::image`]), and a broker rebuilt from rows ([`Broker::restore`]).
//!
//! Recording is off unless the broker was restored with `record_rows`: a broker without a
//! store pays one branch per mutation. When on, the resource table records every id that
//! goes through its doors (`get_mut`, `insert`, `remove`), and the few places that change
//! a reservation (`reservation_mut`, insert, remove, aging) *touch* it;
//! [`Broker::take_delta`] then takes the final image of each changed row (a pointer
//! copy). The queue property test checks, after every step, that a broker restored from
//! the image built by applying the deltas equals the live one, which is what catches a
//! change that was not recorded.

use super::*;
use crate::domain::entropy::Entropy;
use crate::domain::image::{Counters, Delta, EndedReservation, Image, StoredReservation};
use crate::domain::reservation::ReservationStatus;

/// What changed since the last [`Broker::take_delta`].
#[derive(Debug, Default)]
pub(super) struct Touched {
    reservations: BTreeSet<ReservationId>,
    ended: Vec<EndedReservation>,
    expired: Vec<ExpiredLock>,
}

impl Broker {
    /// A broker holding exactly the state in `image`, with its indexes rebuilt. Nothing
    /// is expired or served: the first operation (at its own `now`) does that, so a lock
    /// that ran out while the service was down expires then, in deadline order, and
    /// serves the queue.
    ///
    /// With `record_rows`, the broker records what each call changes, for
    /// [`Broker::take_delta`].
    pub fn restore(
        image: Image,
        policy: Policy,
        entropy: Box<dyn Entropy>,
        record_rows: bool,
    ) -> Broker {
        let Image {
            resources,
            reservations,
            ended,
            expired,
            counters,
        } = image;
        let mut broker = Broker::empty(policy, entropy);
        broker.next_id = counters.next_resource_id;
        broker.next_fencing = counters.next_fencing;
        broker.next_seq = counters.next_reservation_seq;
        for (id, resource) in resources {
            broker.by_name.insert(resource.spec.name.clone(), id);
            if let Some(lease) = resource.lease() {
                broker.by_token.insert(lease.token, id);
                broker
                    .deadlines
                    .insert((lease.expires_at, Due::LockExpiry(id)));
            }
            if let Some(m) = &resource.maintenance {
                if !m.active {
                    broker.deadlines.insert((m.from, Due::MaintenanceStart(id)));
                }
                if let Some(until) = m.until {
                    broker.deadlines.insert((until, Due::MaintenanceEnd(id)));
                }
            }
            broker.tags.insert(&resource);
            broker.resources.insert(Arc::unwrap_or_clone(resource));
        }
        // The queue takes its waiters in creation order.
        let mut reservations: Vec<StoredReservation> = reservations.into_values().collect();
        reservations.sort_unstable_by_key(|stored| stored.reservation.seq);
        for stored in reservations {
            let r = stored.reservation;
            let id = r.id;
            match r.status {
                ReservationStatus::Pending => {
                    broker.queue.insert(
                        r.request.priority,
                        r.seq,
                        id,
                        r.created_at,
                        shape_of(&r.request),
                    );
                    broker
                        .deadlines
                        .insert((r.expires_at, Due::ReservationWait(id)));
                    if let Some(at) = stored.next_aging {
                        broker.aging.insert(id, at);
                        broker.deadlines.insert((at, Due::Aging(id)));
                    }
                }
                ReservationStatus::Fulfilled => {
                    let window = r
                        .claim_expires_at
                        .expect("a fulfilled reservation has a claim window");
                    broker.deadlines.insert((window, Due::ClaimWindow(id)));
                }
                ReservationStatus::Claimed => {}
            }
            broker.reservations.insert(id, r);
        }
        broker.spec_version += 1;
        for e in ended {
            broker.ended.insert(e.id, (e.reason, e.at));
            broker.ended_order.push_back(e.id);
        }
        broker.expired = expired;
        broker.owners = broker.recount_owners();
        // Holds are not stored: serving recomputes them, as it would have left them.
        broker.queue_dirty = true;
        if record_rows {
            broker.touched = Some(Touched::default());
            broker.resources.record_changes();
        }
        broker
    }

    /// Every row of the broker's state.
    pub fn image(&self) -> Image {
        Image {
            resources: self
                .resources
                .values()
                .map(|r| {
                    (
                        r.id,
                        self.resources.get_shared(&r.id).expect("listed").clone(),
                    )
                })
                .collect(),
            reservations: self
                .reservations
                .keys()
                .map(|&id| (id, self.stored_reservation(id).expect("listed")))
                .collect(),
            ended: self
                .ended_order
                .iter()
                .map(|&id| {
                    let (reason, at) = self.ended[&id];
                    EndedReservation { id, reason, at }
                })
                .collect(),
            expired: self.expired.clone(),
            counters: self.counters(),
        }
    }

    /// The rows changed since the last call (empty unless recording). Counters are
    /// always the current ones.
    pub fn take_delta(&mut self) -> Option<Delta> {
        let touched = std::mem::take(self.touched.as_mut()?);
        Some(Delta {
            resources: self
                .resources
                .take_changed()
                .into_iter()
                .map(|id| (id, self.resources.get_shared(&id).cloned()))
                .collect(),
            reservations: touched
                .reservations
                .into_iter()
                .map(|id| (id, self.stored_reservation(id)))
                .collect(),
            ended: touched.ended,
            expired: touched.expired,
            counters: self.counters(),
        })
    }

    fn counters(&self) -> Counters {
        Counters {
            next_resource_id: self.next_id,
            next_fencing: self.next_fencing,
            next_reservation_seq: self.next_seq,
        }
    }

    fn stored_reservation(&self, id: ReservationId) -> Option<StoredReservation> {
        self.reservations.get(&id).map(|r| StoredReservation {
            reservation: Arc::clone(r),
            next_aging: self.aging.get(&id).copied(),
        })
    }

    /// Records that reservation `id` changed (or went).
    pub(super) fn touch_reservation(&mut self, id: ReservationId) {
        if let Some(touched) = &mut self.touched {
            touched.reservations.insert(id);
        }
    }

    pub(super) fn touch_ended(&mut self, ended: EndedReservation) {
        if let Some(touched) = &mut self.touched {
            touched.ended.push(ended);
        }
    }

    pub(super) fn touch_expired(&mut self, expired: &ExpiredLock) {
        if let Some(touched) = &mut self.touched {
            touched.expired.push(expired.clone());
        }
    }
}

/// What a reservation asks for, as the queue's shapes key it.
pub(super) fn shape_of(
    request: &crate::domain::ReservationRequest,
) -> crate::domain::queue::ShapeKey {
    (
        request.groups.iter().map(|g| g.criteria.clone()).collect(),
        request.ttl,
    )
}
