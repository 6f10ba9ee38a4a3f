//! [`RequestScope`]: what the runtime knows of the request a broker call serves.
//!
//! The API layer makes one per request and gives the broker handle to its handler
//! scoped to it ([`BrokerHandle::scoped`](super::BrokerHandle::scoped)). Every broker
//! call made through that handle records the newest change the request could have seen,
//! so that the answer goes out only once that change is committed; its changes carry the
//! request's [`Cause`]. A request with an `Idempotency-Key` arms the scope: its first
//! change then waits in the store's queue for the request's answer, so that both are
//! committed in one transaction.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::stream::Cause;
use crate::domain::Principal;

/// See the [module documentation](self).
#[derive(Debug)]
pub struct RequestScope {
    cause: Arc<Cause>,
    /// Who the request's broker calls act for (ownership, caps).
    principal: Principal,
    /// The newest change this request could have seen (0: none).
    seen: AtomicU64,
    /// Whether the request made a change of its own (not just the system's expiries
    /// that ran in its call): the audit log records one that did not by its answer.
    changed: AtomicBool,
    idempotency: Mutex<Remember>,
}

/// Where a request with an `Idempotency-Key` stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Remember {
    /// No key, or its change is already known.
    Off,
    /// The next change the request makes waits for its answer.
    Armed,
    /// Change `seq` waits for the answer.
    Awaiting(u64),
}

impl RequestScope {
    pub fn new(cause: Arc<Cause>) -> Self {
        RequestScope {
            cause,
            principal: Principal::anyone(),
            seen: AtomicU64::new(0),
            changed: AtomicBool::new(false),
            idempotency: Mutex::new(Remember::Off),
        }
    }

    pub fn cause(&self) -> &Arc<Cause> {
        &self.cause
    }

    /// The scope acting for `principal` (by default, [`Principal::anyone`]).
    #[must_use]
    pub fn acting_for(mut self, principal: Principal) -> Self {
        self.principal = principal;
        self
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The newest change this request could have seen: its answer waits for that one's
    /// commit.
    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::Acquire)
    }

    /// The request saw (or made) change `seq`.
    pub fn saw(&self, seq: u64) {
        self.seen.fetch_max(seq, Ordering::AcqRel);
    }

    /// Whether the request made a change of its own.
    pub fn changed(&self) -> bool {
        self.changed.load(Ordering::Acquire)
    }

    /// The request made a change of its own.
    pub(super) fn made_change(&self) {
        self.changed.store(true, Ordering::Release);
    }

    /// The request carries an `Idempotency-Key`: its next change must wait for its
    /// answer.
    pub fn arm(&self) {
        *self.remember() = Remember::Armed;
    }

    /// Called with the broker mutex held when the request makes change `seq`: whether
    /// that change must wait for the answer.
    pub(super) fn takes_answer_for(&self, seq: u64) -> bool {
        let mut remember = self.remember();
        if *remember == Remember::Armed {
            *remember = Remember::Awaiting(seq);
            true
        } else {
            false
        }
    }

    /// The change waiting for this request's answer, if any; hands the duty of
    /// answering it to the caller.
    pub fn take_awaiting(&self) -> Option<u64> {
        let mut remember = self.remember();
        match *remember {
            Remember::Awaiting(seq) => {
                *remember = Remember::Off;
                Some(seq)
            }
            Remember::Armed => {
                *remember = Remember::Off;
                None
            }
            Remember::Off => None,
        }
    }

    fn remember(&self) -> std::sync::MutexGuard<'_, Remember> {
        // Only plain assignments happen under this lock: it cannot be poisoned by them.
        self.idempotency.lock().unwrap_or_else(|e| e.into_inner())
    }
}
