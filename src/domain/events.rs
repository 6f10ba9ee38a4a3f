//! What changed. Every mutating broker operation records events; the runtime drains them
//! after releasing the mutex and fans them out (logs today; metrics, audit, persistence
//! and notifications consume the same stream).

use super::clock::Timestamp;
use super::resource::{FencingToken, ResourceId};

/// One state change. Holds no secrets: lock tokens never leave the broker this way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Locked {
        resource: ResourceId,
        fencing: FencingToken,
        at: Timestamp,
        expires_at: Timestamp,
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
}
