//! The runtime around the pure broker: the clock, the handle that owns the mutex, the
//! timer task, and descriptor reloads.

pub mod clock;
pub mod entropy;
pub mod ha;
pub mod handle;
pub mod reload;
pub mod scope;
pub mod shutdown;
pub mod stream;
pub mod timer;

pub use clock::{ManualClock, SystemClock};
pub use entropy::OsEntropy;
pub use handle::{
    BrokerHandle, DashboardInputs, GaugeInputs, Grant, Readiness, ReservationSnapshot,
};
pub use reload::DescriptorSource;
#[cfg(unix)]
pub use reload::run_reload_on_hangup;
pub use scope::RequestScope;
pub use shutdown::{Shutdown, Waiting};
pub use stream::{
    Actor, BATCH_BUCKETS, COMMIT_MICROS_BUCKETS, Cause, Change, CommitSnapshot, CommitStats,
    Committed, Committer, Gap, IdempotencyRecord, InMemory, Ledger, Observer, Observers, Publisher,
    Subscription, Unavailable,
};
pub use timer::run_expiry_timer;
