//! The clocks the runtime reads `now` from.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::domain::{Clock, Timestamp};

/// Wall-clock time read once at start, advanced by the monotonic clock.
///
/// A wall-clock step after start (NTP, a VM resumed) therefore moves nothing: no lock can
/// expire early because the system clock jumped forward, and none is held longer because
/// it jumped back. Drift between the two clocks over a long uptime is the price, and it is
/// small (NTP slews rather than steps in normal operation).
#[derive(Debug)]
pub struct SystemClock {
    anchor_wall: Timestamp,
    anchor: Instant,
}

impl SystemClock {
    pub fn new() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        SystemClock {
            anchor_wall: Timestamp::from_millis(since_epoch.as_millis() as u64),
            anchor: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        self.anchor_wall
            .checked_add(self.anchor.elapsed())
            .expect("uptime fits in u64 milliseconds")
    }
}

/// A clock that moves only when told to: tests advance it instead of sleeping.
#[derive(Debug)]
pub struct ManualClock {
    now_ms: AtomicU64,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        ManualClock {
            now_ms: AtomicU64::new(start.as_millis()),
        }
    }

    pub fn advance(&self, by: Duration) {
        self.now_ms
            .fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn set(&self, to: Timestamp) {
        self.now_ms.store(to.as_millis(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.now_ms.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_starts_at_wall_time_and_never_goes_back() {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let clock = SystemClock::new();
        let first = clock.now();
        assert!(
            first.as_millis().abs_diff(wall) < 60_000,
            "anchored at wall time"
        );
        let mut previous = first;
        for _ in 0..1000 {
            let now = clock.now();
            assert!(now >= previous);
            previous = now;
        }
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(Timestamp::from_millis(1_000));
        assert_eq!(clock.now(), Timestamp::from_millis(1_000));
        clock.advance(Duration::from_millis(1_500));
        assert_eq!(clock.now(), Timestamp::from_millis(2_500));
        clock.set(Timestamp::from_millis(10));
        assert_eq!(clock.now(), Timestamp::from_millis(10));
    }
}
