//! The pure core: resources, locks, deadlines. No IO, no async, no clock reads.

pub mod broker;
pub mod clock;
pub mod descriptor;
pub mod error;
pub mod events;
pub mod expr;
pub mod resource;
mod tags;

pub use broker::{Broker, Selector};
pub use clock::{Clock, Timestamp};
pub use error::{DomainError, TokenUse};
pub use events::Event;
pub use expr::{Expr, ExprError};
pub use resource::{
    FencingToken, Lease, LockState, LockToken, Released, Resource, ResourceId, ResourceSpec, Ttl,
};
