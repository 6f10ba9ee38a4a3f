//! Reservations: requests for resources that wait their turn in the queue.
//!
//! ```text
//!   reserve ──▶ Pending ──(served: locks granted)──▶ Fulfilled ──claim──▶ Claimed
//!                 │                                     │  (auto_claim skips this step)
//!                 ├── cancel ─────────▶ Ended(Cancelled) │
//!                 └── max_wait over ──▶ Ended(Expired)   └── claim window over ──▶ Ended(ClaimExpired)
//!   Fulfilled/Claimed ── every lock released or expired ──▶ Ended(Released)
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::clock::Timestamp;
use super::expr::Expr;
use super::resource::{LockMeta, LockToken, Resource, ResourceId, Ttl};

/// A reservation's id: `res_` and 32 lowercase hex digits (the 1.0 format).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReservationId(u128);

impl ReservationId {
    /// The id of these 128 random bits.
    pub const fn from_u128(bits: u128) -> Self {
        ReservationId(bits)
    }
}

impl fmt::Display for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "res_{:032x}", self.0)
    }
}

/// Not of the form `res_` + 32 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a reservation id is \"res_\" followed by 32 hex digits")]
pub struct InvalidReservationId;

impl FromStr for ReservationId {
    type Err = InvalidReservationId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s.strip_prefix("res_").ok_or(InvalidReservationId)?;
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(InvalidReservationId);
        }
        u128::from_str_radix(hex, 16)
            .map(ReservationId)
            .map_err(|_| InvalidReservationId)
    }
}

/// Queue priority: 1 is served first, 10 last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(u8);

impl Priority {
    pub const HIGHEST: Priority = Priority(1);
    pub const LOWEST: Priority = Priority(10);
    pub const DEFAULT: Priority = Priority(5);

    /// # Errors
    /// [`PriorityOutOfRange`] outside 1..=10.
    pub fn new(level: u64) -> Result<Priority, PriorityOutOfRange> {
        match u8::try_from(level) {
            Ok(l @ 1..=10) => Ok(Priority(l)),
            _ => Err(PriorityOutOfRange),
        }
    }

    pub const fn get(self) -> u8 {
        self.0
    }

    /// The level after `waited`, improved by one per `aging` waited, never above 1.
    pub fn aged(self, waited: Duration, aging: Duration) -> Priority {
        // u64 milliseconds: 584 million years, and much cheaper to divide than u128.
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let steps = millis(waited) / millis(aging).max(1);
        let steps = u8::try_from(steps).unwrap_or(u8::MAX);
        Priority(self.0.saturating_sub(steps).max(1))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("priority must be a whole number from 1 (served first) to 10")]
pub struct PriorityOutOfRange;

/// What one group asks for: resources carrying every tag of a list, or resources a label
/// expression selects.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Criteria {
    /// Every tag must be present (the 1.0 form). Not empty.
    Tags(Vec<String>),
    Expr(Expr),
}

impl Criteria {
    pub fn matches(&self, resource: &Resource) -> bool {
        match self {
            Criteria::Tags(tags) => resource.has_all_tags(tags),
            Criteria::Expr(expr) => expr.matches(|t| resource.has_tag(t)),
        }
    }

    /// Whether a resource carrying exactly `tags` meets the criteria (for resources
    /// no longer in the tag index: a changed one's old tags).
    pub fn matches_tags(&self, tags: &[String]) -> bool {
        let has = |t: &str| tags.iter().any(|x| x == t);
        match self {
            Criteria::Tags(wanted) => wanted.iter().all(|t| has(t)),
            Criteria::Expr(expr) => expr.matches(has),
        }
    }

    /// Tags every match carries, for the tag index to narrow candidates. Empty when the
    /// criteria need none in particular (then every resource is a candidate).
    pub fn required_tags(&self) -> Vec<&str> {
        match self {
            Criteria::Tags(tags) => tags.iter().map(String::as_str).collect(),
            Criteria::Expr(expr) => expr.required_tags(),
        }
    }
}

impl fmt::Display for Criteria {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Criteria::Tags(tags) => write!(f, "tags {}", tags.join(",")),
            Criteria::Expr(expr) => write!(f, "expr `{expr}`"),
        }
    }
}

/// `quantity` resources meeting `criteria`. The resources of one request's groups never
/// overlap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub criteria: Criteria,
    pub quantity: u32,
}

/// What a caller asks to reserve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservationRequest {
    /// At least one.
    pub groups: Vec<Group>,
    pub priority: Priority,
    /// The lifetime of each lock once fulfilled, counted from fulfilment.
    pub ttl: Ttl,
    /// How long it may wait in the queue before it expires.
    pub max_wait: Ttl,
    /// Fulfilment is the claim: no claim window, no second step.
    pub auto_claim: bool,
    /// Who asks and why: given to every lock it is granted.
    pub meta: LockMeta,
}

impl ReservationRequest {
    pub fn total_quantity(&self) -> u32 {
        self.groups.iter().map(|g| g.quantity).sum()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReservationStatus {
    Pending,
    Fulfilled,
    Claimed,
}

impl ReservationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationStatus::Pending => "pending",
            ReservationStatus::Fulfilled => "fulfilled",
            ReservationStatus::Claimed => "claimed",
        }
    }
}

/// One resource locked for a fulfilled reservation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// Index into the request's groups.
    pub group: usize,
    pub resource: ResourceId,
    pub token: LockToken,
}

/// A live reservation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub id: ReservationId,
    pub request: ReservationRequest,
    /// Creation order, broker-wide: FIFO within a priority.
    pub seq: u64,
    pub created_at: Timestamp,
    /// When a pending reservation gives up (created_at + max_wait).
    pub expires_at: Timestamp,
    pub status: ReservationStatus,
    pub fulfilled_at: Option<Timestamp>,
    pub claim_expires_at: Option<Timestamp>,
    pub claimed_at: Option<Timestamp>,
    /// Filled at fulfilment, in group order then id order.
    pub allocations: Vec<Allocation>,
}

impl Reservation {
    /// The priority it is served at, at `now`.
    pub fn effective_priority(&self, now: Timestamp, aging: Duration) -> Priority {
        self.request
            .priority
            .aged(now.saturating_duration_since(self.created_at), aging)
    }
}

/// Why a reservation ended. Ended reservations are gone from the API (as in 1.0), but the
/// broker remembers recent ones so that a late claim gets 410 and watchers learn the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    Cancelled,
    /// Pending past its `max_wait`.
    Expired,
    /// Fulfilled, but not claimed within the claim window: its locks were released.
    ClaimExpired,
    /// Every lock it was granted has been unlocked or has expired.
    Released,
    /// Pending, but an operator removed or changed resources so that it can never be
    /// served: it ends rather than wait until its `max_wait` for nothing.
    Unsatisfiable,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Cancelled => "cancelled",
            EndReason::Expired => "expired",
            EndReason::ClaimExpired => "claim_expired",
            EndReason::Released => "released",
            EndReason::Unsatisfiable => "unsatisfiable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservation_ids_round_trip_in_the_1_0_format() {
        let id = ReservationId::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let text = id.to_string();
        assert!(text.starts_with("res_") && text.len() == 36, "{text}");
        assert_eq!(text.parse::<ReservationId>(), Ok(id));
        for bad in [
            "",
            "res_",
            "res_xyz",
            "abc_0123456789abcdef0123456789abcdef",
            "res_0123456789abcdef0123456789abcde",
        ] {
            assert_eq!(
                bad.parse::<ReservationId>(),
                Err(InvalidReservationId),
                "{bad}"
            );
        }
    }

    #[test]
    fn priority_is_one_to_ten() {
        assert!(Priority::new(0).is_err());
        assert_eq!(Priority::new(1), Ok(Priority::HIGHEST));
        assert_eq!(Priority::new(10), Ok(Priority::LOWEST));
        assert!(Priority::new(11).is_err());
        assert!(Priority::new(256 + 5).is_err());
    }

    #[test]
    fn aging_improves_one_level_per_period_and_stops_at_one() {
        let aging = Duration::from_secs(300);
        let p = Priority::new(5).unwrap();
        assert_eq!(p.aged(Duration::from_secs(299), aging).get(), 5);
        assert_eq!(p.aged(Duration::from_secs(300), aging).get(), 4);
        assert_eq!(p.aged(Duration::from_secs(1_199), aging).get(), 2);
        assert_eq!(p.aged(Duration::from_secs(1_200), aging).get(), 1);
        assert_eq!(p.aged(Duration::from_secs(1_000_000), aging).get(), 1);
    }
}
