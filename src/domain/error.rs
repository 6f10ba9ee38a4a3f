//! Why the broker refused an operation. Knows nothing about HTTP: `api::error` maps each
//! variant to its 1.0 status code and body.

use super::clock::Timestamp;
use super::reservation::{Criteria, EndReason, ReservationId, ReservationStatus};
use super::resource::{Resource, ResourceId, Ttl};

/// Which operation presented a lock token; 1.0 words its refusals differently for each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenUse {
    Unlock,
    Extend,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("resource {0} does not exist")]
    ResourceNotFound(ResourceId),

    #[error("no resource is named `{0}`")]
    NameNotFound(String),

    /// No resource at all meets the criteria.
    #[error("no resource matches {0}")]
    NoMatch(Criteria),

    /// Resources meet the criteria, but each is locked or held for a waiting reservation.
    #[error("every resource matching {criteria} is locked or held for a reservation")]
    AllMatchesLocked {
        criteria: Criteria,
        /// The reservations that free matches are held for, if any.
        held_for: Vec<ReservationId>,
        /// How many matches are out of service or drain for a window the lock would cross.
        unavailable: usize,
    },

    #[error("resource {0} is already locked")]
    AlreadyLocked(ResourceId),

    /// Out of service (maintenance, or removed from the descriptor while locked).
    #[error("resource {id} is unavailable: {reason}")]
    Unavailable {
        id: ResourceId,
        reason: String,
        until: Option<Timestamp>,
    },

    /// Every resource meeting the criteria is out of service.
    #[error("every resource matching {criteria} is unavailable")]
    AllMatchesUnavailable { criteria: Criteria, count: usize },

    /// The resource drains for a maintenance window: a lock (or extension) must end by
    /// the time it opens.
    #[error("resource {id} goes into maintenance at {from} ({reason}): a lock must end by then")]
    CrossesMaintenance {
        id: ResourceId,
        reason: String,
        from: Timestamp,
        until: Option<Timestamp>,
        /// The longest lock that still fits, in whole seconds (0: none).
        longest_ttl_secs: u64,
    },

    /// A maintenance window that ends before it starts.
    #[error(
        "a maintenance window must end after it starts ({from}) and after now ({now}); until was {until}"
    )]
    InvalidWindow {
        from: Timestamp,
        until: Timestamp,
        now: Timestamp,
    },

    /// A force unlock of a resource that is not locked.
    #[error("resource {0} is not locked: there is nothing to force")]
    NothingToForce(ResourceId),

    /// The resource is free, but kept for a reservation that is waiting for it.
    #[error("resource {id} is held for waiting reservation {reservation}")]
    HeldForReservation {
        id: ResourceId,
        reservation: ReservationId,
    },

    #[error("resource {0} is not locked")]
    NotLocked(ResourceId, TokenUse),

    /// The caller's token is missing or is not the holder's. Carries the resource so the
    /// refusal can describe it (with its token redacted).
    #[error("the lock token does not match the lock on resource {}", .resource.id)]
    InvalidToken {
        resource: Box<Resource>,
        provided: Option<String>,
        used_for: TokenUse,
    },

    #[error("a lock of {ttl}s exceeds resource {id}'s max-lock-duration of {max}s", ttl = .ttl.as_secs(), max = .max.as_secs())]
    TtlAboveMax { id: ResourceId, ttl: Ttl, max: Ttl },

    /// Extending would make the lock, counted from its acquisition, outlast the maximum.
    #[error("the lock would last {total_secs}s, over resource {id}'s max-lock-duration of {max}s", max = .max.as_secs())]
    TotalAboveMax {
        id: ResourceId,
        total_secs: u64,
        max: Ttl,
    },

    /// A request that can never be served, whatever is released: too few resources meet
    /// a group's criteria (or allow a lock that long), or the groups together want more
    /// distinct resources than exist.
    #[error("{criteria}: {wanted} wanted, but only {eligible} resources match and allow a {ttl}s lock ({matching} match)", ttl = .ttl.as_secs())]
    Unsatisfiable {
        group: usize,
        criteria: Criteria,
        wanted: u32,
        /// Resources meeting the criteria.
        matching: usize,
        /// Of those, resources whose max-lock-duration allows `ttl`.
        eligible: usize,
        ttl: Ttl,
    },

    /// An all-or-nothing lock of several resources, refused because too few are free now.
    #[error("{criteria}: {wanted} wanted, {available} available now")]
    NotEnoughAvailable {
        group: usize,
        criteria: Criteria,
        wanted: u32,
        available: usize,
    },

    #[error("reservation {0} does not exist")]
    ReservationNotFound(ReservationId),

    /// The reservation existed but has ended; ended reservations are gone, as in 1.0.
    #[error("reservation {id} has ended ({})", .reason.as_str())]
    ReservationEnded {
        id: ReservationId,
        reason: EndReason,
        at: Timestamp,
    },

    /// Claim or cancel in a state that does not allow it.
    #[error("reservation {id} is {}", .status.as_str())]
    ReservationWrongState {
        id: ReservationId,
        status: ReservationStatus,
    },

    /// The reservation was fulfilled but not claimed in time; its locks were released.
    #[error("the claim window of reservation {0} is over")]
    ClaimWindowOver(ReservationId),

    /// An all-or-nothing unlock of several tokens, refused: nothing was unlocked.
    #[error("{} of the lock tokens cannot be unlocked", .0.len())]
    BatchRefused(Vec<TokenRefusal>),

    /// A new resource's name is already another resource's.
    #[error("a resource named `{name}` already exists (id {id})")]
    NameTaken { name: String, id: ResourceId },

    /// Deleting a locked resource without force: the lock would be broken.
    #[error("resource {0} is locked")]
    ResourceLocked(ResourceId),

    /// A tag list over a limit (`domain::tags`): too many tags, or one too long.
    #[error("{0}")]
    InvalidTags(String),

    /// One request asks for more resources, over all its groups, than any request may.
    #[error("{total} resources asked for in one request, over the limit of {max}")]
    TooManyResources { total: u64, max: u32 },

    /// The queue holds as many pending reservations as it may, and this one would wait.
    #[error("{max} reservations already wait: the queue is full")]
    QueueFull {
        max: usize,
        /// When to try again, in seconds: a hint, not a promise.
        retry_after_secs: u64,
    },

    /// An unlock, extend, claim or cancel with a valid token or id, by an authenticated
    /// caller who neither made the lock or reservation nor overrides (an admin).
    #[error("{what} belongs to another caller")]
    NotOwner { what: Owning },

    /// The caller already holds its `max_locks` locks (or would, with this request).
    #[error("{held} locks held, {wanted} more asked, over the cap of {max}")]
    TooManyLocks {
        held: u32,
        wanted: u32,
        max: u32,
        retry_after_secs: u64,
    },

    /// The caller already has its `max_pending_reservations` reservations waiting.
    #[error("{pending} reservations wait, the cap is {max}")]
    TooManyReservations {
        pending: u32,
        max: u32,
        retry_after_secs: u64,
    },
}

/// What a [`DomainError::NotOwner`] refusal is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owning {
    /// The lock on this resource.
    Lock(ResourceId),
    Reservation(ReservationId),
}

impl std::fmt::Display for Owning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owning::Lock(id) => write!(f, "the lock on resource {id}"),
            Owning::Reservation(id) => write!(f, "reservation {id}"),
        }
    }
}

/// Why one token of a batch unlock was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRefusal {
    /// Position in the batch, from 0.
    pub index: usize,
    pub problem: &'static str,
}
