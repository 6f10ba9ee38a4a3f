//! A resource, its lock, and the small value types that name them.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::clock::Timestamp;
use super::reservation::ReservationId;

/// A resource's id: 1, 2, 3... in descriptor order (the 1.0 numbering).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceId(u32);

impl ResourceId {
    pub const fn new(id: u32) -> Self {
        ResourceId(id)
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for ResourceId {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(ResourceId)
    }
}

/// The secret that proves a caller holds a lock: a random UUID.
///
/// It is compared in constant time and deliberately has no `Display`: render it with
/// [`LockToken::reveal`] only where the holder is the one being answered.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LockToken(Uuid);

impl LockToken {
    /// The token of these 128 random bits, as a UUID v4 (six of the bits become the
    /// version and variant).
    pub fn from_random(bits: u128) -> Self {
        LockToken(uuid::Builder::from_random_bytes(bits.to_be_bytes()).into_uuid())
    }

    /// The token `candidate` (caller input) spells, if it is a token at all.
    pub fn parse(candidate: &str) -> Option<LockToken> {
        Uuid::try_parse(candidate.trim()).ok().map(LockToken)
    }

    /// Whether `candidate` (caller input, possibly garbage) is this token.
    pub fn matches(&self, candidate: &str) -> bool {
        match Uuid::try_parse(candidate.trim()) {
            Ok(c) => bool::from(self.0.as_bytes().ct_eq(c.as_bytes())),
            Err(_) => false,
        }
    }

    /// The token as the holder sees it (hyphenated lowercase UUID).
    pub fn reveal(&self) -> String {
        self.0.hyphenated().to_string()
    }
}

impl fmt::Debug for LockToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LockToken(<redacted>)")
    }
}

/// A broker-wide counter stamped on every lock grant. It only grows, so a downstream
/// system that remembers the highest token it has seen can refuse a holder whose lock
/// was lost (expired and granted again) in the meantime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FencingToken(u64);

impl FencingToken {
    pub const fn new(value: u64) -> Self {
        FencingToken(value)
    }

    pub const fn get(self) -> u64 {
        self.0
    }
}

/// A validated lock duration in whole seconds: at least 1 s, at most [`Ttl::MAX_SECS`].
///
/// The upper bound keeps every deadline (`now + ttl`) far inside the range of both
/// [`Timestamp`] and RFC 3339, so no arithmetic on a `Ttl` can overflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ttl(u64);

impl Ttl {
    /// 100 years: longer than any lab will hold anything.
    pub const MAX_SECS: u64 = 100 * 365 * 24 * 3600;
    /// The lock TTL when a request names none (1.0 behaviour).
    pub const DEFAULT: Ttl = Ttl(3600);
    /// The per-resource `max-lock-duration` when a descriptor names none (1.0 behaviour).
    pub const DEFAULT_MAX: Ttl = Ttl(86_400);

    /// # Errors
    /// [`TtlOutOfRange`] when `secs` is 0 or above [`Ttl::MAX_SECS`].
    pub const fn from_secs(secs: u64) -> Result<Ttl, TtlOutOfRange> {
        if secs == 0 || secs > Self::MAX_SECS {
            Err(TtlOutOfRange)
        } else {
            Ok(Ttl(secs))
        }
    }

    pub const fn as_secs(self) -> u64 {
        self.0
    }

    pub const fn as_duration(self) -> Duration {
        Duration::from_secs(self.0)
    }
}

/// A duration outside `1..=Ttl::MAX_SECS` seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("must be a whole number of seconds between 1 and {max}", max = Ttl::MAX_SECS)]
pub struct TtlOutOfRange;

/// Who holds a lock and why, in the locker's own words (a job URL, a user name): shown
/// to operators on the resource and in the expiry history. Never used for decisions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LockMeta {
    pub holder: Option<String>,
    pub note: Option<String>,
    /// The authenticated caller that made the lock (or the reservation it was granted
    /// to): only it and admins see its token and may unlock or extend it. `None` when
    /// auth is off or the caller anonymous. Set by the broker, never by the request.
    pub owner: Option<Arc<str>>,
}

/// What a lock request asks for: how long, and who is asking. A bare [`Ttl`] converts
/// into terms with no metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockTerms {
    pub ttl: Ttl,
    pub meta: LockMeta,
}

impl From<Ttl> for LockTerms {
    fn from(ttl: Ttl) -> Self {
        LockTerms {
            ttl,
            meta: LockMeta::default(),
        }
    }
}

/// A granted lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub token: LockToken,
    pub fencing: FencingToken,
    pub acquired_at: Timestamp,
    pub expires_at: Timestamp,
    /// The reservation the lock was granted to; `None` for a direct lock.
    pub reservation: Option<ReservationId>,
    pub meta: LockMeta,
}

/// Why a resource is free, which 1.0 shows as `lock-details`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Released {
    /// Never locked since the broker started.
    Never,
    /// Its holder unlocked it.
    Unlocked,
    /// Its lock ran out at this deadline.
    Expired(Timestamp),
    /// An operator broke the lock.
    ForceUnlocked { at: Timestamp, reason: String },
}

/// A maintenance window: the resource is out of service from `from` until `until` (or
/// until an operator returns it). Before `from` the resource *drains*: it is lent only
/// for locks that end by `from`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Maintenance {
    pub reason: String,
    /// When the window opens (the time it was declared, for an immediate one).
    pub from: Timestamp,
    pub until: Option<Timestamp>,
    /// Whether the window has opened. Set by the broker at `from`, so that every index
    /// changes in the same step.
    pub active: bool,
}

/// Where a resource came from, which decides what a descriptor reload may do with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Declared in the descriptor: a reload updates it, or removes it when the file no
    /// longer names it.
    Descriptor,
    /// Created through the API: a reload leaves it alone (unless the file names it,
    /// which makes it the descriptor's).
    Api,
}

/// A resource's lock state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockState {
    Free(Released),
    Locked(Lease),
}

/// What a descriptor (or, later, the admin API) declares about a resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceSpec {
    pub name: String,
    pub description: String,
    pub endpoint: String,
    /// Tags in declaration order, without duplicates.
    pub tags: Vec<String>,
    pub max_lock_duration: Ttl,
}

impl ResourceSpec {
    /// A spec with only a name, as `the-lone-resource:` in a descriptor.
    pub fn named(name: impl Into<String>) -> Self {
        ResourceSpec {
            name: name.into(),
            description: String::new(),
            endpoint: String::new(),
            tags: Vec::new(),
            max_lock_duration: Ttl::DEFAULT_MAX,
        }
    }

    pub fn with_tags(mut self, tags: &[&str]) -> Self {
        self.tags = tags.iter().map(|t| t.to_string()).collect();
        self
    }

    pub fn with_max_lock_duration(mut self, max: Ttl) -> Self {
        self.max_lock_duration = max;
        self
    }
}

/// Why a retiring resource is out of service.
pub const RETIRING_REASON: &str = "removed from the descriptor: it goes when its current lock ends";

/// A resource as the broker holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    pub id: ResourceId,
    pub spec: ResourceSpec,
    pub state: LockState,
    /// Scheduled or current maintenance.
    pub maintenance: Option<Maintenance>,
    /// Removed from the descriptor while locked: lent to no one, and gone when its lock
    /// ends.
    pub retiring: bool,
    pub origin: Origin,
}

impl Resource {
    /// A free, in-service resource, as a descriptor declares it.
    pub fn new(id: ResourceId, spec: ResourceSpec, origin: Origin) -> Self {
        Resource {
            id,
            spec,
            state: LockState::Free(Released::Never),
            maintenance: None,
            retiring: false,
            origin,
        }
    }

    /// Whether the resource may be lent at all: not in an open maintenance window, not
    /// retiring. A locked resource can be in service or not (its lock runs to its end).
    pub fn in_service(&self) -> bool {
        !self.retiring && self.maintenance.as_ref().is_none_or(|m| !m.active)
    }

    /// Why the resource is out of service and until when (`None`: until an operator
    /// says so), or `None` when it is in service.
    pub fn out_of_service(&self) -> Option<(&str, Option<Timestamp>)> {
        if self.retiring {
            return Some((RETIRING_REASON, None));
        }
        self.maintenance
            .as_ref()
            .filter(|m| m.active)
            .map(|m| (m.reason.as_str(), m.until))
    }

    /// Free and in service: what the tag index calls free.
    pub fn is_lendable(&self) -> bool {
        !self.is_locked() && self.in_service()
    }

    /// Whether a lock from `now` for `ttl` ends before the next maintenance window opens
    /// (a lock may end exactly when it opens).
    pub fn fits_before_maintenance(&self, ttl: Ttl, now: Timestamp) -> bool {
        self.ends_before_maintenance(deadline(now, ttl))
    }

    /// Whether the resource is locked and its lock ends within `warning` of `now`.
    pub fn expiring_soon(&self, now: Timestamp, warning: Duration) -> bool {
        self.lease()
            .is_some_and(|l| l.expires_at.saturating_duration_since(now) <= warning)
    }

    /// Whether a lock ending at `end` ends before the next maintenance window opens.
    pub fn ends_before_maintenance(&self, end: Timestamp) -> bool {
        self.maintenance.as_ref().is_none_or(|m| end <= m.from)
    }

    pub fn lease(&self) -> Option<&Lease> {
        match &self.state {
            LockState::Locked(lease) => Some(lease),
            LockState::Free(_) => None,
        }
    }

    pub fn is_locked(&self) -> bool {
        self.lease().is_some()
    }

    pub fn has_tag(&self, tag: &str) -> bool {
        self.spec.tags.iter().any(|t| t == tag)
    }

    pub fn has_all_tags(&self, tags: &[String]) -> bool {
        tags.iter().all(|t| self.has_tag(t))
    }
}

/// A resource's state as operators see it (the `/metrics` `rentabot_resources` gauge and
/// the dashboard at `/`): each resource is in exactly one, the first that applies in the
/// order of [`ResourceState::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResourceState {
    /// Removed from the descriptor while locked: goes when its lock ends.
    Retiring,
    /// Locked (whatever its maintenance).
    Locked,
    /// In an open maintenance window.
    Unavailable,
    /// A maintenance window is scheduled: lent only for locks that end before it.
    Draining,
    /// Free but kept for a waiting reservation.
    Held,
    Free,
}

impl ResourceState {
    /// Every state, in the order [`Resource::classify`] tries them.
    pub const ALL: [ResourceState; 6] = [
        ResourceState::Retiring,
        ResourceState::Locked,
        ResourceState::Unavailable,
        ResourceState::Draining,
        ResourceState::Held,
        ResourceState::Free,
    ];

    /// The state's name: the metric's label value and the dashboard's `data-state`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ResourceState::Retiring => "retiring",
            ResourceState::Locked => "locked",
            ResourceState::Unavailable => "unavailable",
            ResourceState::Draining => "draining",
            ResourceState::Held => "held",
            ResourceState::Free => "free",
        }
    }

    /// The state named exactly `name`.
    pub fn parse(name: &str) -> Option<ResourceState> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl Resource {
    /// The resource's [`ResourceState`], given whether the queue holds it for a waiting
    /// reservation (the broker's holds, [`Broker::holds`](super::Broker::holds)).
    pub fn classify(&self, is_held: bool) -> ResourceState {
        if self.retiring {
            ResourceState::Retiring
        } else if self.is_locked() {
            ResourceState::Locked
        } else if let Some(m) = &self.maintenance {
            if m.active {
                ResourceState::Unavailable
            } else {
                ResourceState::Draining
            }
        } else if is_held {
            ResourceState::Held
        } else {
            ResourceState::Free
        }
    }
}

/// `now + ttl`. Cannot overflow: a `Ttl` is at most a century and `now` is a real date.
pub(crate) fn deadline(now: Timestamp, ttl: Ttl) -> Timestamp {
    now.checked_add(ttl.as_duration())
        .expect("a Ttl is capped far below Timestamp's range")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_token_matches_only_itself() {
        let token = LockToken::from_random(7);
        assert!(token.matches(&token.reveal()));
        assert!(token.matches(&token.reveal().to_uppercase()));
        assert!(!token.matches(&LockToken::from_random(8).reveal()));
        assert!(!token.matches(""));
        assert!(!token.matches("not-a-uuid"));
    }

    #[test]
    fn lock_token_debug_never_shows_the_secret() {
        let token = LockToken::from_random(7);
        assert!(!format!("{token:?}").contains(&token.reveal()));
    }

    #[test]
    fn classify_takes_the_first_state_that_applies() {
        let mut r = Resource::new(ResourceId::new(1), ResourceSpec::named("a"), Origin::Api);
        assert_eq!(r.classify(false), ResourceState::Free);
        assert_eq!(r.classify(true), ResourceState::Held);
        r.maintenance = Some(Maintenance {
            reason: "m".into(),
            from: Timestamp::from_millis(10),
            until: None,
            active: false,
        });
        assert_eq!(r.classify(true), ResourceState::Draining);
        r.maintenance.as_mut().unwrap().active = true;
        assert_eq!(r.classify(false), ResourceState::Unavailable);
        r.state = LockState::Locked(Lease {
            token: LockToken::from_random(1),
            fencing: FencingToken::new(1),
            acquired_at: Timestamp::from_millis(0),
            expires_at: Timestamp::from_millis(5),
            reservation: None,
            meta: LockMeta::default(),
        });
        assert_eq!(r.classify(false), ResourceState::Locked);
        r.retiring = true;
        assert_eq!(r.classify(false), ResourceState::Retiring);
        for s in ResourceState::ALL {
            assert_eq!(ResourceState::parse(s.as_str()), Some(s));
        }
        assert_eq!(ResourceState::parse("Free"), None);
    }

    #[test]
    fn ttl_accepts_one_second_to_a_century() {
        assert_eq!(Ttl::from_secs(0), Err(TtlOutOfRange));
        assert_eq!(Ttl::from_secs(1).map(Ttl::as_secs), Ok(1));
        assert!(Ttl::from_secs(Ttl::MAX_SECS).is_ok());
        assert_eq!(Ttl::from_secs(Ttl::MAX_SECS + 1), Err(TtlOutOfRange));
    }
}
