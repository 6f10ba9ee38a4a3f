//! The runtime around the pure broker: the clock, the handle that owns the mutex, and the
//! timer task.

pub mod clock;
pub mod handle;
pub mod timer;

pub use clock::{ManualClock, SystemClock};
pub use handle::{BrokerHandle, Grant, ReservationSnapshot};
pub use timer::run_expiry_timer;
