//! The HA role of this service, as the leader election (`store::leader`) decides it and
//! the rest reads it: `/health`, `/readiness`, `/metrics`, and the app, which serves as
//! the active one for as long as its [`Lease`] is not deposed.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// One term as the active service: the epoch it moved the store to, and the word that
/// it is over.
#[derive(Clone, Debug)]
pub struct Lease {
    epoch: u64,
    deposed: CancellationToken,
}

impl Lease {
    /// A lease at `epoch`, for a service that leads by itself (tests).
    pub fn new(epoch: u64) -> Lease {
        Lease {
            epoch,
            deposed: CancellationToken::new(),
        }
    }

    /// The epoch every commit of this term is fenced by.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Ends the term: the writer found its commits fenced, or the leader session was
    /// lost.
    pub fn depose(&self) {
        self.deposed.cancel();
    }

    pub fn is_deposed(&self) -> bool {
        self.deposed.is_cancelled()
    }

    /// Resolves when the term ends.
    pub async fn deposed(&self) {
        self.deposed.cancelled().await;
    }
}

/// What the election says, shared by the leader thread and the service.
#[derive(Debug)]
pub struct HaStatus {
    /// The current term, if this service is active.
    lease: watch::Sender<Option<Lease>>,
    /// The highest epoch this service knows of (its own, or the one that deposed it).
    epoch: AtomicU64,
    takeovers: AtomicU64,
    /// Why this service is not active, for `/readiness`.
    reason: Mutex<String>,
}

impl HaStatus {
    pub fn new() -> Arc<HaStatus> {
        Arc::new(HaStatus {
            lease: watch::Sender::new(None),
            epoch: AtomicU64::new(0),
            takeovers: AtomicU64::new(0),
            reason: Mutex::new("standby: waiting to become the active rentabot".to_owned()),
        })
    }

    /// This service became the active one at `epoch`: its term begins.
    pub fn take_over(&self, epoch: u64) -> Lease {
        let lease = Lease::new(epoch);
        self.epoch.fetch_max(epoch, Ordering::AcqRel);
        self.takeovers.fetch_add(1, Ordering::AcqRel);
        self.lease.send_replace(Some(lease.clone()));
        lease
    }

    /// `lease`'s term is over, for `reason`: this service is a standby again.
    pub fn step_down(&self, lease: &Lease, reason: &str) {
        lease.depose();
        self.set_reason(format!(
            "standby: this rentabot was active at epoch {} until {reason}; another one is \
             active or will be",
            lease.epoch()
        ));
        self.lease.send_if_modified(|current| {
            if current.as_ref().is_some_and(|l| l.epoch == lease.epoch) {
                *current = None;
                true
            } else {
                false
            }
        });
    }

    /// A standby cannot campaign, for `reason` (the database is unreachable).
    pub fn not_ready(&self, reason: &str) {
        self.set_reason(format!(
            "standby: cannot reach the store to campaign: {reason}"
        ));
    }

    fn set_reason(&self, reason: String) {
        *self
            .reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = reason;
    }

    /// The current term, if this service is active and it is not over.
    pub fn lease(&self) -> Option<Lease> {
        self.lease.borrow().clone().filter(|l| !l.is_deposed())
    }

    pub fn is_active(&self) -> bool {
        self.lease().is_some()
    }

    /// The epoch of this service's latest term (0: never active).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// How many times this service became the active one.
    pub fn takeovers(&self) -> u64 {
        self.takeovers.load(Ordering::Acquire)
    }

    /// Why this service does not serve, while it is a standby.
    pub fn standby_reason(&self) -> String {
        self.reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Resolves with the next term above epoch `after`: when this service becomes the
    /// active one.
    pub async fn next_lease(&self, after: u64) -> Lease {
        let mut rx = self.lease.subscribe();
        let found = rx
            .wait_for(|l| {
                l.as_ref()
                    .is_some_and(|l| l.epoch > after && !l.is_deposed())
            })
            .await
            .expect("the sender lives in self");
        found.clone().expect("checked above")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_term_begins_at_a_takeover_and_ends_when_deposed() {
        let status = HaStatus::new();
        assert!(!status.is_active());
        assert_eq!((status.epoch(), status.takeovers()), (0, 0));
        let lease = status.take_over(7);
        assert!(status.is_active());
        assert_eq!((status.epoch(), status.takeovers()), (7, 1));
        lease.depose();
        assert!(!status.is_active(), "a deposed lease is no term");
        status.step_down(&lease, "the session ended");
        assert!(
            status
                .standby_reason()
                .contains("epoch 7 until the session ended")
        );
        // An old lease stepping down leaves a newer term alone.
        let newer = status.take_over(9);
        status.step_down(&lease, "late");
        assert_eq!(status.lease().map(|l| l.epoch()), Some(9));
        assert!(!newer.is_deposed());
    }

    #[tokio::test]
    async fn the_next_term_is_one_above_the_last() {
        let status = HaStatus::new();
        let old = status.take_over(3);
        let waiting = tokio::spawn({
            let status = status.clone();
            async move { status.next_lease(3).await.epoch() }
        });
        status.step_down(&old, "fenced");
        status.take_over(4);
        assert_eq!(waiting.await.unwrap(), 4);
    }
}
