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
    // Readiness fails from the moment this task ends, however it ends.
    let _alive = handle.timer_guard();
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

#[cfg(test)]
mod tests {
    //! The timer loop, on its own, in Tokio's paused time: the runtime jumps straight to
    //! the next timer, so these run instantly and measure lateness exactly.

    use std::sync::Arc;

    use tokio::sync::broadcast::Receiver;
    use tokio::time::Instant;

    use super::*;
    use crate::domain::{Broker, Clock, Event, ResourceId, ResourceSpec, Timestamp, Ttl};
    use crate::runtime::Committed;

    const T0: Timestamp = Timestamp::from_millis(1_764_000_000_000);

    /// Broker time that follows Tokio's (paused) clock, so the timer's naps and the
    /// broker's deadlines are on one time line.
    struct TokioClock(Instant);

    impl Clock for TokioClock {
        fn now(&self) -> Timestamp {
            T0.checked_add(self.0.elapsed()).unwrap()
        }
    }

    fn start() -> (BrokerHandle, Receiver<Arc<Committed>>, CancellationToken) {
        let specs = [ResourceSpec::named("a"), ResourceSpec::named("b")];
        let handle = BrokerHandle::new(Broker::new(specs), Arc::new(TokioClock(Instant::now())));
        let events = handle.subscribe();
        let cancel = CancellationToken::new();
        tokio::spawn(run_expiry_timer(handle.clone(), cancel.clone()));
        (handle, events, cancel)
    }

    /// A safety net in (paused, so instant) Tokio time: a timer that never publishes
    /// fails the test after an hour of virtual time instead of hanging it, as the
    /// runtime would otherwise skip from one 30 s nap to the next forever.
    const PATIENCE: Duration = Duration::from_secs(3600);

    /// The next expiry, and the broker time at which the timer published it.
    async fn next_expiry(
        events: &mut Receiver<Arc<Committed>>,
        handle: &BrokerHandle,
    ) -> (ResourceId, Timestamp, Timestamp) {
        let expiry = async {
            loop {
                let change = events.recv().await.unwrap();
                for event in &change.events {
                    if let Event::Expired {
                        resource, deadline, ..
                    } = event
                    {
                        return (*resource, *deadline, handle.now());
                    }
                }
            }
        };
        tokio::time::timeout(PATIENCE, expiry)
            .await
            .expect("the timer published the expiry within an hour")
    }

    #[tokio::test(start_paused = true)]
    async fn timer_releases_a_lock_exactly_at_its_deadline() {
        let (handle, mut events, cancel) = start();
        tokio::task::yield_now().await; // the timer takes its first, deadline-free nap
        handle
            .lock(ResourceId::new(1), Ttl::from_secs(1).unwrap())
            .unwrap();

        let (resource, deadline, seen_at) = next_expiry(&mut events, &handle).await;
        assert_eq!(resource, ResourceId::new(1));
        assert_eq!(deadline, Timestamp::from_millis(T0.as_millis() + 1_000));
        assert_eq!(seen_at, deadline, "neither early nor late");
        cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn timer_wakes_early_when_an_earlier_deadline_appears() {
        let (handle, mut events, cancel) = start();
        handle
            .lock(ResourceId::new(1), Ttl::from_secs(3_600).unwrap())
            .unwrap();
        tokio::task::yield_now().await; // the timer now naps towards the far deadline
        handle
            .lock(ResourceId::new(2), Ttl::from_secs(2).unwrap())
            .unwrap();

        let (resource, deadline, seen_at) = next_expiry(&mut events, &handle).await;
        assert_eq!(resource, ResourceId::new(2));
        assert_eq!(seen_at, deadline, "not at the end of a {MAX_NAP:?} nap");
        cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn timer_stops_when_cancelled() {
        let handle = BrokerHandle::new(Broker::new([]), Arc::new(TokioClock(Instant::now())));
        let cancel = CancellationToken::new();
        let timer = tokio::spawn(run_expiry_timer(handle, cancel.clone()));
        cancel.cancel();
        tokio::time::timeout(PATIENCE, timer)
            .await
            .expect("the timer stopped")
            .unwrap();
    }
}
