//! What changed. Every mutating broker operation records events; the runtime drains them
//! after releasing the mutex and fans them out (logs today; metrics, audit, persistence
//! and notifications consume the same stream).

use super::clock::Timestamp;
use super::reservation::{EndReason, ReservationId};
use super::resource::{FencingToken, ResourceId};

/// A resource property a [`Event::ResourceUpdated`] changed, by its wire name.
pub type Field = &'static str;

/// One state change. Holds no secrets: lock tokens never leave the broker this way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Locked {
        resource: ResourceId,
        fencing: FencingToken,
        at: Timestamp,
        expires_at: Timestamp,
        /// Set when the lock was granted to fulfil a reservation.
        reservation: Option<ReservationId>,
    },
    Extended {
        resource: ResourceId,
        fencing: FencingToken,
        expires_at: Timestamp,
    },
    Unlocked {
        resource: ResourceId,
        fencing: FencingToken,
        at: Timestamp,
    },
    /// The lock reached its deadline and was released.
    Expired {
        resource: ResourceId,
        fencing: FencingToken,
        deadline: Timestamp,
    },
    /// An operator broke the lock.
    ForceUnlocked {
        resource: ResourceId,
        fencing: FencingToken,
        reason: String,
        at: Timestamp,
    },
    /// A maintenance window was declared (or replaced): it opens at `from` (at once when
    /// `from` is `at`).
    MaintenanceScheduled {
        resource: ResourceId,
        reason: String,
        from: Timestamp,
        until: Option<Timestamp>,
        at: Timestamp,
    },
    /// The resource went out of service.
    MaintenanceStarted { resource: ResourceId, at: Timestamp },
    /// The resource is back in service (or its scheduled window was cancelled).
    MaintenanceEnded { resource: ResourceId, at: Timestamp },
    /// A reservation joined the queue (it may be fulfilled in the same step).
    ReservationCreated {
        reservation: ReservationId,
        at: Timestamp,
    },
    /// Its resources were locked for it.
    ReservationFulfilled {
        reservation: ReservationId,
        resources: Vec<ResourceId>,
        at: Timestamp,
    },
    ReservationClaimed {
        reservation: ReservationId,
        at: Timestamp,
    },
    /// It is gone: cancelled, expired, unclaimed in time, or all its locks released.
    ReservationEnded {
        reservation: ReservationId,
        reason: EndReason,
        at: Timestamp,
    },
    /// A resource was created (through the API or a descriptor reload).
    ResourceAdded {
        resource: ResourceId,
        name: String,
        at: Timestamp,
    },
    /// A resource's properties (or its place in the descriptor) changed.
    ResourceUpdated {
        resource: ResourceId,
        /// What changed: `description`, `endpoint`, `tags`, `max-lock-duration`, and for
        /// reloads `retiring` (it reappeared in the file) or `origin` (the file adopted
        /// a resource created through the API).
        fields: Vec<Field>,
        at: Timestamp,
    },
    /// A reload dropped a locked resource from the descriptor: it is lent to no one and
    /// goes when its lock ends.
    ResourceRetiring {
        resource: ResourceId,
        name: String,
        at: Timestamp,
    },
    /// A resource is gone; its id is never reused.
    ResourceRemoved {
        resource: ResourceId,
        name: String,
        at: Timestamp,
    },
}

impl Event {
    /// The reservation this event is about, if any.
    pub fn reservation(&self) -> Option<ReservationId> {
        match self {
            Event::Locked { reservation, .. } => *reservation,
            Event::ReservationCreated { reservation, .. }
            | Event::ReservationFulfilled { reservation, .. }
            | Event::ReservationClaimed { reservation, .. }
            | Event::ReservationEnded { reservation, .. } => Some(*reservation),
            _ => None,
        }
    }
}
