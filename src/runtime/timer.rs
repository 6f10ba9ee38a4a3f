//! The expiry timer: one task that sleeps until the earliest deadline.
//!
//! Each turn it sweeps (expires everything due, in one critical section), asks for the
//! next deadline and sleeps until then. A request that adds an earlier deadline pokes
//! `deadline_changed`, which cuts the nap short so the new deadline is honoured; the
//! `Notify` permit means a poke that lands mid-sweep is not lost. Nothing polls on a grid.
//!
//! Correctness never depends on this task: every broker operation expires what is due
//! first. The timer makes expiry *prompt*, so that watchers (the page, metrics, queued
//! reservations) see it on time.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::handle::BrokerHandle;

/// The longest nap without a deadline, a backstop against a missed wake-up.
const MAX_NAP: Duration = Duration::from_secs(30);

/// Runs until `cancel` fires.
pub async fn run_expiry_timer(handle: BrokerHandle, cancel: CancellationToken) {
    loop {
        let nap = handle
            .sweep()
            .map_or(MAX_NAP, |next| handle.until(next).min(MAX_NAP));
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(nap) => {}
            () = handle.deadline_changed() => {}
        }
    }
    tracing::debug!("expiry timer stopped");
}
