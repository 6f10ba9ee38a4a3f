//! Rate limits: per key (or JWT subject, or client address when no credential is sent),
//! reads and writes counted in separate buckets, with the `governor` crate's GCRA
//! limiters (lock-free, one atomic compare-and-swap per check).
//!
//! - A key's buckets are made when the config is loaded and kept across reloads while the
//!   key keeps its name and rate: rotating a key's secret does not refill its bucket.
//! - JWT subjects and anonymous client addresses are not known in advance, so they live
//!   in a `ClientTable` bounded to [`MAX_TRACKED_CLIENTS`] entries each. When it is
//!   full, entries idle long enough to have refilled (so indistinguishable from new ones)
//!   are dropped, at most once per [`PRUNE_INTERVAL`]; if it is still full, the newcomers
//!   share one overflow bucket pair with the same rate, so a flood of addresses cannot grow
//!   memory, and is still limited, as one client.
//! - IPv6 clients are counted per /64 (one host usually holds a whole /64, so per address
//!   would be per request for an attacker); IPv4 and IPv4-mapped IPv6 per address.
//!
//! Time comes from the app's [`Clock`] (wall clock anchored once, then monotonic; a
//! `ManualClock` in tests, so no test sleeps). Its resolution is a millisecond: rates up
//! to 1000 per second are exact; above that, requests within one millisecond draw on the
//! burst.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::Clock as GovernorClock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::domain::Clock;

/// How many JWT subjects, and separately how many anonymous client addresses, have
/// buckets of their own. About 250 bytes each: at most ~2.5 MB per table.
pub const MAX_TRACKED_CLIENTS: usize = 10_000;

/// A full table is swept for idle entries at most this often, so a flood of new
/// addresses costs one O(table) sweep per interval, not one per request.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(1);

/// Which bucket a request draws on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// Reads (GET, HEAD): lists, details, event streams, the dashboard.
    Read,
    /// Everything that changes state: lock, unlock, reserve, administration.
    Write,
    /// Never limited: `/health`, `/readiness` and `/metrics`, so that probes and scrapes
    /// are not refused while a client misbehaves.
    Unlimited,
}

impl Class {
    pub const fn as_str(self) -> &'static str {
        match self {
            Class::Read => "read",
            Class::Write => "write",
            Class::Unlimited => "unlimited",
        }
    }
}

/// A sustained rate and the burst allowed above it (a token bucket of `burst` tokens
/// refilled at `per_second`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    per_second: f64,
    burst: NonZeroU32,
}

impl Rate {
    /// The highest rate accepted: one request per microsecond.
    pub const MAX_PER_SECOND: f64 = 1_000_000.0;
    /// The largest burst accepted.
    pub const MAX_BURST: u32 = 1_000_000;

    /// # Errors
    /// A message saying what to fix when `per_second` is not in (0, 1 000 000] or
    /// `burst` not in [1, 1 000 000].
    pub fn new(per_second: f64, burst: u32) -> Result<Rate, String> {
        if !(per_second > 0.0 && per_second <= Rate::MAX_PER_SECOND) {
            return Err(format!(
                "requests_per_second must be above 0 and at most {}, got {per_second}",
                Rate::MAX_PER_SECOND
            ));
        }
        match NonZeroU32::new(burst) {
            Some(b) if burst <= Rate::MAX_BURST => Ok(Rate {
                per_second,
                burst: b,
            }),
            _ => Err(format!(
                "burst must be from 1 to {}, got {burst}",
                Rate::MAX_BURST
            )),
        }
    }

    const fn fixed(per_second: u32, burst: u32) -> Rate {
        Rate {
            per_second: per_second as f64,
            burst: NonZeroU32::new(burst).expect("the built-in bursts are not zero"),
        }
    }

    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    pub fn burst(&self) -> u32 {
        self.burst.get()
    }

    fn quota(&self) -> Quota {
        // `new` bounds the rate, so the period is at least a microsecond, never zero.
        Quota::with_period(Duration::from_secs_f64(1.0 / self.per_second))
            .expect("a bounded rate has a non-zero period")
            .allow_burst(self.burst)
    }

    /// How long an emptied bucket takes to fill again: after that long without a
    /// request, a client's state is the same as a new client's.
    fn refill(&self) -> Duration {
        Duration::from_secs_f64(f64::from(self.burst.get()) / self.per_second)
    }
}

/// The limits one caller (or client address) gets: reads and writes are separate
/// buckets, so a dashboard polling hard cannot starve its own key's locks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    pub reads: Rate,
    pub writes: Rate,
}

impl RateLimit {
    /// Every key's limit when the config sets no `rate_limit`: 50 per second, bursts of
    /// 100, for reads and for writes.
    pub const DEFAULT_KEY: RateLimit = RateLimit::same(Rate::fixed(50, 100));
    /// Each client address's limit, without a credential, when the config sets no
    /// `anonymous_rate_limit`: 20 per second, bursts of 40.
    pub const DEFAULT_ANONYMOUS: RateLimit = RateLimit::same(Rate::fixed(20, 40));

    /// The same rate for reads and writes (still two buckets).
    pub const fn same(rate: Rate) -> RateLimit {
        RateLimit {
            reads: rate,
            writes: rate,
        }
    }

    fn refill(&self) -> Duration {
        self.reads.refill().max(self.writes.refill())
    }
}

/// A refusal: how long until the next request of this class would be allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait(pub Duration);

impl Wait {
    /// Whole seconds for `Retry-After`, rounded up so a client that waits that long is
    /// allowed, and at least 1 (0 would invite an immediate retry).
    pub fn retry_after_secs(self) -> u64 {
        let d = self.0;
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }
}

/// The app's clock as `governor` reads it: time since the Unix epoch, to the millisecond.
#[derive(Clone)]
pub struct RateClock(Arc<dyn Clock>);

impl RateClock {
    pub fn new(clock: Arc<dyn Clock>) -> RateClock {
        RateClock(clock)
    }

    fn now_ms(&self) -> u64 {
        self.0.now().as_millis()
    }
}

impl GovernorClock for RateClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Duration::from_millis(self.now_ms())
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, RateClock, NoOpMiddleware<Duration>>;

/// One caller's pair of buckets.
pub(crate) struct Buckets {
    rate: RateLimit,
    read: Limiter,
    write: Limiter,
}

impl Buckets {
    pub(crate) fn new(rate: RateLimit, clock: &RateClock) -> Buckets {
        Buckets {
            rate,
            read: RateLimiter::direct_with_clock(rate.reads.quota(), clock.clone()),
            write: RateLimiter::direct_with_clock(rate.writes.quota(), clock.clone()),
        }
    }

    pub(crate) fn rate(&self) -> RateLimit {
        self.rate
    }

    /// Takes one token from the class's bucket.
    pub(crate) fn check(&self, class: Class) -> Result<(), Wait> {
        let limiter = match class {
            Class::Read => &self.read,
            Class::Write => &self.write,
            Class::Unlimited => return Ok(()),
        };
        limiter
            .check()
            .map_err(|not_until| Wait(not_until.wait_time_from(limiter.clock().now())))
    }
}

/// `d` in milliseconds, rounded up.
fn ceil_ms(d: Duration) -> u64 {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    ms.saturating_add(u64::from(!d.subsec_nanos().is_multiple_of(1_000_000)))
}

/// Where an anonymous request comes from, as rate limiting counts it: an IPv4 address,
/// or an IPv6 /64 prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientAddr {
    V4(u32),
    V6Prefix(u64),
}

impl From<IpAddr> for ClientAddr {
    fn from(ip: IpAddr) -> ClientAddr {
        match ip {
            IpAddr::V4(v4) => ClientAddr::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientAddr::V4(u32::from(v4)),
                None => ClientAddr::V6Prefix((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// Buckets for callers not known in advance (JWT subjects, client addresses), bounded to
/// `cap` entries; see the module doc for what happens when it is full.
///
/// One mutex: these callers are the slow path already (a JWT is verified per request;
/// anonymous callers reach only open routes), and a critical section is one hash lookup
/// and one bucket check.
pub(crate) struct ClientTable<K> {
    rate: RateLimit,
    clock: RateClock,
    cap: usize,
    clients: Mutex<Clients<K>>,
    overflow: Buckets,
}

struct Clients<K> {
    map: HashMap<K, Tracked>,
    pruned_at_ms: Option<u64>,
}

struct Tracked {
    buckets: Buckets,
    seen_ms: u64,
}

impl<K: Hash + Eq + Clone> ClientTable<K> {
    pub(crate) fn new(rate: RateLimit, clock: &RateClock, cap: usize) -> ClientTable<K> {
        ClientTable {
            rate,
            clock: clock.clone(),
            cap,
            clients: Mutex::new(Clients {
                map: HashMap::new(),
                pruned_at_ms: None,
            }),
            overflow: Buckets::new(rate, clock),
        }
    }

    pub(crate) fn rate(&self) -> RateLimit {
        self.rate
    }

    /// Takes one token from `key`'s bucket of this class, tracking `key` if there is room.
    pub(crate) fn check(&self, key: &K, class: Class) -> Result<(), Wait> {
        if class == Class::Unlimited {
            return Ok(());
        }
        let now_ms = self.clock.now_ms();
        // A poisoned mutex means a panic in a bucket check, which cannot leave the map
        // inconsistent: keep using it.
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tracked) = clients.map.get_mut(key) {
            tracked.seen_ms = now_ms;
            return tracked.buckets.check(class);
        }
        if clients.map.len() >= self.cap {
            let due = clients
                .pruned_at_ms
                .is_none_or(|at| now_ms.saturating_sub(at) >= PRUNE_INTERVAL.as_millis() as u64);
            if due {
                let idle_ms = ceil_ms(self.rate.refill());
                clients
                    .map
                    .retain(|_, t| now_ms.saturating_sub(t.seen_ms) < idle_ms);
                clients.pruned_at_ms = Some(now_ms);
            }
        }
        if clients.map.len() >= self.cap {
            drop(clients);
            return self.overflow.check(class);
        }
        let tracked = Tracked {
            buckets: Buckets::new(self.rate, &self.clock),
            seen_ms: now_ms,
        };
        let result = tracked.buckets.check(class);
        clients.map.insert(key.clone(), tracked);
        result
    }

    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.clients.lock().unwrap().map.len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::domain::Timestamp;
    use crate::runtime::ManualClock;

    fn clock() -> (Arc<ManualClock>, RateClock) {
        let manual = Arc::new(ManualClock::new(Timestamp::from_millis(1_700_000_000_000)));
        (manual.clone(), RateClock::new(manual))
    }

    fn rate(per_second: f64, burst: u32) -> RateLimit {
        RateLimit::same(Rate::new(per_second, burst).unwrap())
    }

    #[test]
    fn a_burst_is_allowed_then_refused_with_the_wait_until_the_next_token() {
        let (manual, clock) = clock();
        let buckets = Buckets::new(rate(10.0, 3), &clock);
        for _ in 0..3 {
            assert_eq!(buckets.check(Class::Write), Ok(()));
        }
        assert_eq!(
            buckets.check(Class::Write),
            Err(Wait(Duration::from_millis(100)))
        );
        manual.advance(Duration::from_millis(99));
        assert_eq!(
            buckets.check(Class::Write),
            Err(Wait(Duration::from_millis(1)))
        );
        manual.advance(Duration::from_millis(1));
        assert_eq!(buckets.check(Class::Write), Ok(()));
        assert!(buckets.check(Class::Write).is_err());
    }

    #[test]
    fn reads_and_writes_are_separate_buckets_and_unlimited_is_never_refused() {
        let (_manual, clock) = clock();
        let buckets = Buckets::new(rate(1.0, 2), &clock);
        assert!(buckets.check(Class::Read).is_ok());
        assert!(buckets.check(Class::Read).is_ok());
        assert!(buckets.check(Class::Read).is_err());
        assert!(buckets.check(Class::Write).is_ok());
        assert!(buckets.check(Class::Write).is_ok());
        assert!(buckets.check(Class::Write).is_err());
        for _ in 0..1000 {
            assert!(buckets.check(Class::Unlimited).is_ok());
        }
    }

    #[test]
    fn read_and_write_rates_may_differ() {
        let (_manual, clock) = clock();
        let limit = RateLimit {
            reads: Rate::new(100.0, 5).unwrap(),
            writes: Rate::new(0.5, 1).unwrap(),
        };
        let buckets = Buckets::new(limit, &clock);
        assert!(buckets.check(Class::Write).is_ok());
        assert_eq!(
            buckets.check(Class::Write),
            Err(Wait(Duration::from_secs(2)))
        );
        for _ in 0..5 {
            assert!(buckets.check(Class::Read).is_ok());
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_and_is_at_least_one() {
        let cases = [
            (Duration::from_millis(1), 1),
            (Duration::ZERO, 1),
            (Duration::from_millis(999), 1),
            (Duration::from_secs(1), 1),
            (Duration::from_millis(1001), 2),
            (Duration::from_millis(2500), 3),
            (Duration::from_secs(60), 60),
        ];
        for (wait, secs) in cases {
            assert_eq!(Wait(wait).retry_after_secs(), secs, "{wait:?}");
        }
    }

    #[test]
    fn rates_out_of_range_are_refused_with_what_to_fix() {
        let cases = [
            (0.0, 1, "requests_per_second must be above 0"),
            (-1.0, 1, "requests_per_second must be above 0"),
            (f64::NAN, 1, "requests_per_second must be above 0"),
            (2_000_000.0, 1, "at most 1000000"),
            (1.0, 0, "burst must be from 1 to 1000000, got 0"),
            (1.0, 1_000_001, "burst must be from 1"),
        ];
        for (per_second, burst, why) in cases {
            let err = Rate::new(per_second, burst).unwrap_err();
            assert!(err.contains(why), "{per_second}/{burst}: {err}");
        }
        assert!(Rate::new(0.01, 1).is_ok());
    }

    #[test]
    fn clients_have_their_own_buckets() {
        let (_manual, clock) = clock();
        let table = ClientTable::<ClientAddr>::new(rate(1.0, 1), &clock, 100);
        let a = ClientAddr::from(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        let b = ClientAddr::from(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
        assert!(table.check(&a, Class::Read).is_ok());
        assert!(table.check(&a, Class::Read).is_err());
        assert!(table.check(&b, Class::Read).is_ok());
        assert_eq!(table.tracked(), 2);
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
        let one: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        let mapped: Ipv6Addr = "::ffff:10.0.0.1".parse().unwrap();
        let addr = |ip: Ipv6Addr| ClientAddr::from(IpAddr::V6(ip));
        assert_eq!(addr(one), addr(same_64));
        assert_ne!(addr(one), addr(other_64));
        assert_eq!(
            addr(mapped),
            ClientAddr::from(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))
        );
    }

    #[test]
    fn a_full_table_sends_newcomers_to_one_shared_bucket_and_never_grows() {
        let (_manual, clock) = clock();
        let table = ClientTable::<u32>::new(rate(1.0, 2), &clock, 3);
        for k in 0..3 {
            assert!(table.check(&k, Class::Read).is_ok());
        }
        // All three are active (seen just now), so nothing can be pruned: newcomers share
        // the overflow pair, which allows one burst between them.
        assert!(table.check(&100, Class::Read).is_ok());
        assert!(table.check(&101, Class::Read).is_ok());
        assert!(table.check(&102, Class::Read).is_err());
        assert_eq!(table.tracked(), 3);
        // A tracked client keeps its own bucket meanwhile.
        assert!(table.check(&0, Class::Read).is_ok());
    }

    #[test]
    fn idle_clients_are_dropped_once_refilled_making_room_for_new_ones() {
        let (manual, clock) = clock();
        // Refill time: burst 2 at 1 per second = 2 s.
        let table = ClientTable::<u32>::new(rate(1.0, 2), &clock, 2);
        assert!(table.check(&1, Class::Read).is_ok());
        assert!(table.check(&2, Class::Read).is_ok());
        manual.advance(Duration::from_millis(1999));
        // Not yet refilled: client 1 stays, 3 goes to the overflow.
        assert!(table.check(&3, Class::Read).is_ok());
        assert_eq!(table.tracked(), 2);
        // A sweep was just made: the next one waits for PRUNE_INTERVAL, even though the
        // entries are idle long enough by then.
        manual.advance(Duration::from_millis(1));
        assert!(table.check(&4, Class::Read).is_ok());
        assert_eq!(table.tracked(), 2);
        manual.advance(PRUNE_INTERVAL);
        assert!(table.check(&5, Class::Read).is_ok());
        assert_eq!(table.tracked(), 1, "1 and 2 were idle and dropped; 5 added");
    }

    #[test]
    fn a_dropped_client_comes_back_as_fresh_as_it_would_have_been() {
        let (manual, clock) = clock();
        let table = ClientTable::<u32>::new(rate(1.0, 2), &clock, 1);
        assert!(table.check(&1, Class::Read).is_ok());
        assert!(table.check(&1, Class::Read).is_ok());
        assert!(table.check(&1, Class::Read).is_err());
        manual.advance(Duration::from_secs(2));
        // 2 evicts 1 (idle and refilled); 1 returns with a full bucket, as it would have.
        assert!(table.check(&2, Class::Read).is_ok());
        assert_eq!(table.tracked(), 1);
        manual.advance(PRUNE_INTERVAL + Duration::from_secs(2));
        assert!(table.check(&1, Class::Read).is_ok());
        assert!(table.check(&1, Class::Read).is_ok());
        assert!(table.check(&1, Class::Read).is_err());
    }
}
