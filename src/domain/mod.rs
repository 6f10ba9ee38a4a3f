//! The pure core: resources, locks, reservations, the queue, deadlines. No IO, no async,
//! no clock reads.

mod allocation;
pub mod broker;
pub mod clock;
mod columns;
pub mod descriptor;
pub mod entropy;
pub mod error;
pub mod events;
pub mod expr;
mod idset;
pub mod image;
pub mod owner;
mod queue;
pub mod reservation;
pub mod resource;
mod table;
pub mod tags;

pub use broker::{
    Broker, DEFAULT_MAX_PENDING, DEFAULT_PAGE_LIMIT, ENDED_MEMORY, EXPIRY_HISTORY, ExpiredLock,
    Granted, GroupWait, MAX_PAGE_LIMIT, MAX_RESOURCES_PER_REQUEST, Page, PendingSummary, Policy,
    ReloadDiff, ReloadReport, ReservationPage, ReservationQuery, ResourcePage, ResourcePatch,
    ResourceQuery, ResourceSort, Selector, SortOrder, Unavailability, WaitingFor,
};
pub use clock::{Clock, Timestamp};
pub use entropy::{Entropy, Seeded};
pub use error::{DomainError, Owning, TokenRefusal, TokenUse};
pub use events::Event;
pub use expr::{Expr, ExprError};
pub use image::{Counters, Delta, EndedReservation, Image, StoredReservation};
pub use owner::{CAP_RETRY_SECS, Owned, OwnerCaps, Principal};
pub use reservation::{
    Allocation, Criteria, EndReason, Group, Priority, Reservation, ReservationId,
    ReservationRequest, ReservationStatus,
};
pub use resource::{
    FencingToken, Lease, LockMeta, LockState, LockTerms, LockToken, Maintenance, Origin, Released,
    Resource, ResourceId, ResourceSpec, ResourceState, Ttl,
};
pub use table::ResourceSnapshot;
