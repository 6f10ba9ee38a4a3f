//! Time as the broker sees it: wall-clock milliseconds, passed in by the caller.
//!
//! The domain never reads a clock. Every operation takes `now: Timestamp`, which is what
//! makes TTLs and expiry testable to the millisecond without sleeping. The runtime owns
//! the real clock (`runtime::clock`).

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

/// A point in time: milliseconds since the Unix epoch, UTC.
///
/// Wall-clock on purpose: deadlines are shown to users (RFC 3339 on the wire) and will be
/// persisted, so they must mean the same thing after a restart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch, 1970-01-01T00:00:00Z.
    pub const EPOCH: Timestamp = Timestamp(0);

    pub const fn from_millis(ms: u64) -> Self {
        Timestamp(ms)
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// `self + d`, or `None` when the result would not fit.
    pub fn checked_add(self, d: Duration) -> Option<Timestamp> {
        let ms = u64::try_from(d.as_millis()).ok()?;
        self.0.checked_add(ms).map(Timestamp)
    }

    /// The time from `earlier` to `self`; zero when `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// An RFC 3339 date-time with an offset (`2026-11-25T14:00:00Z`,
    /// `2026-11-25T15:00:00+01:00`), to the millisecond; `None` if it is not one or is
    /// before the epoch.
    pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
        let t = DateTime::parse_from_rfc3339(text.trim()).ok()?;
        u64::try_from(t.timestamp_millis()).ok().map(Timestamp)
    }

    /// RFC 3339 in UTC with millisecond precision, e.g. `2026-11-22T18:30:07.123Z`.
    pub fn to_rfc3339(self) -> String {
        match i64::try_from(self.0)
            .ok()
            .and_then(DateTime::<Utc>::from_timestamp_millis)
        {
            Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
            // Unreachable for timestamps built from a `Ttl`, which is capped far below
            // chrono's range; render something honest rather than panic.
            None => format!("@{}ms", self.0),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Where the runtime gets `now` from. Implemented by the real clock and by the manual
/// clock that tests advance by hand.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rfc3339_utc_with_milliseconds() {
        assert_eq!(Timestamp::EPOCH.to_rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp::from_millis(1_764_000_000_123).to_rfc3339(),
            "2025-11-24T16:00:00.123Z"
        );
    }

    #[test]
    fn parse_rfc3339_reads_offsets_and_refuses_the_rest() {
        let t = Timestamp::parse_rfc3339("2026-01-15T10:00:00Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-01-15T10:00:00.000Z");
        assert_eq!(
            Timestamp::parse_rfc3339("2026-01-15T11:00:00.250+01:00")
                .unwrap()
                .as_millis(),
            t.as_millis() + 250
        );
        assert_eq!(Timestamp::parse_rfc3339("2026-01-15 10:00"), None);
        assert_eq!(
            Timestamp::parse_rfc3339("2026-01-15T10:00:00"),
            None,
            "no offset"
        );
        assert_eq!(Timestamp::parse_rfc3339("1969-12-31T23:59:59Z"), None);
    }

    #[test]
    fn checked_add_refuses_overflow() {
        let t = Timestamp::from_millis(u64::MAX - 5);
        assert_eq!(
            t.checked_add(Duration::from_millis(5)),
            Some(Timestamp(u64::MAX))
        );
        assert_eq!(t.checked_add(Duration::from_millis(6)), None);
        assert_eq!(t.checked_add(Duration::MAX), None);
    }
}
