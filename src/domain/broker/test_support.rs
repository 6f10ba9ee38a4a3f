//! What the broker's unit tests share: a fixed start time and short constructors, so
//! each test reads as the scenario it checks.

use std::time::Duration;

use super::*;
use crate::domain::reservation::{Priority, ReservationRequest};

/// Every test broker's clock starts here (2025-11-24T16:00:00Z).
pub(super) const T0: Timestamp = Timestamp::from_millis(1_764_000_000_000);

/// `secs` seconds after [`T0`].
pub(super) fn at(secs: u64) -> Timestamp {
    T0.checked_add(Duration::from_secs(secs)).unwrap()
}

pub(super) fn secs(s: u64) -> Ttl {
    Ttl::from_secs(s).unwrap()
}

pub(super) fn id(n: u32) -> ResourceId {
    ResourceId::new(n)
}

/// Criteria requiring every tag of `t`.
pub(super) fn tags(t: &[&str]) -> Criteria {
    Criteria::Tags(t.iter().map(|s| s.to_string()).collect())
}

pub(super) fn group(t: &[&str], quantity: u32) -> Group {
    Group {
        criteria: tags(t),
        quantity,
    }
}

/// A request for `quantity` resources with every tag of `t`: priority 5, ttl 600 s,
/// waiting up to an hour.
pub(super) fn request(t: &[&str], quantity: u32) -> ReservationRequest {
    ReservationRequest {
        groups: vec![group(t, quantity)],
        priority: Priority::DEFAULT,
        ttl: secs(600),
        max_wait: secs(3_600),
        auto_claim: false,
        meta: LockMeta::default(),
    }
}

pub(super) fn with_priority(mut r: ReservationRequest, level: u64) -> ReservationRequest {
    r.priority = Priority::new(level).unwrap();
    r
}
