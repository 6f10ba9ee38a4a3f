//! [`BrokerHandle`]: the only owner of the broker's mutex.
//!
//! Every broker call goes through [`BrokerHandle::with_broker`], which reads the clock,
//! locks, runs one synchronous operation, drains its events and unlocks; only then does it
//! wake the timer and publish the events. The methods are synchronous on purpose: a guard
//! cannot be held across an `.await` in code that has none.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, broadcast};

use crate::domain::{
    Broker, Clock, DomainError, Event, Lease, LockToken, Resource, ResourceId, Selector, Timestamp,
    Ttl,
};

/// A cheap, cloneable reference to the one broker of this process.
#[derive(Clone)]
pub struct BrokerHandle {
    shared: Arc<Shared>,
}

struct Shared {
    /// A std mutex, not tokio's: critical sections are short and never await, so
    /// contended waits are brief and an async mutex would only add overhead.
    broker: Mutex<Broker>,
    clock: Arc<dyn Clock>,
    /// Poked when the earliest deadline moves earlier, so the timer re-plans its nap.
    /// `Notify` keeps one permit when nobody waits, so a poke during a sweep is not lost.
    deadline_changed: Notify,
    /// Every event, for whoever listens (the load tool today; the event stream, metrics
    /// and notifications later). Sending never blocks: a receiver that falls more than
    /// [`EVENT_BUFFER`] events behind is told it lagged and skips ahead.
    events: broadcast::Sender<Event>,
}

/// How many events a slow subscriber may fall behind before it misses some.
pub const EVENT_BUFFER: usize = 4096;

/// A granted lock together with the resource as it stands after the grant.
#[derive(Debug)]
pub struct Grant {
    pub token: LockToken,
    pub lease: Lease,
    pub resource: Resource,
}

impl BrokerHandle {
    pub fn new(broker: Broker, clock: Arc<dyn Clock>) -> Self {
        BrokerHandle {
            shared: Arc::new(Shared {
                broker: Mutex::new(broker),
                clock,
                deadline_changed: Notify::new(),
                events: broadcast::channel(EVENT_BUFFER).0,
            }),
        }
    }

    pub fn now(&self) -> Timestamp {
        self.shared.clock.now()
    }

    /// How long from now until `t` (zero if `t` has passed).
    pub fn until(&self, t: Timestamp) -> Duration {
        t.saturating_duration_since(self.now())
    }

    /// See [`Broker::lock`].
    pub fn lock(&self, id: ResourceId, ttl: Ttl) -> Result<Grant, DomainError> {
        self.with_broker(|b, now| {
            let (token, lease) = b.lock(id, ttl, now)?;
            Ok(grant(b, id, token, lease))
        })
    }

    /// See [`Broker::lock_matching`].
    pub fn lock_matching(&self, selector: &Selector, ttl: Ttl) -> Result<Grant, DomainError> {
        self.with_broker(|b, now| {
            let (id, token, lease) = b.lock_matching(selector, ttl, now)?;
            Ok(grant(b, id, token, lease))
        })
    }

    /// See [`Broker::unlock`].
    pub fn unlock(&self, id: ResourceId, token: Option<&str>) -> Result<(), DomainError> {
        self.with_broker(|b, now| b.unlock(id, token, now))
    }

    /// See [`Broker::extend`].
    pub fn extend(
        &self,
        id: ResourceId,
        token: Option<&str>,
        additional: Ttl,
    ) -> Result<Lease, DomainError> {
        self.with_broker(|b, now| b.extend(id, token, additional, now))
    }

    /// The resource as of now.
    pub fn resource(&self, id: ResourceId) -> Result<Resource, DomainError> {
        self.with_broker(|b, now| {
            b.expire_due(now);
            b.resource(id)
                .cloned()
                .ok_or(DomainError::ResourceNotFound(id))
        })
    }

    /// Every resource as of now, in id order.
    pub fn resources(&self) -> Vec<Resource> {
        self.with_broker(|b, now| {
            b.expire_due(now);
            b.resources().cloned().collect()
        })
    }

    /// Expires everything due now and returns the next deadline. The timer's step, and
    /// what tests call instead of waiting for the timer.
    pub fn sweep(&self) -> Option<Timestamp> {
        self.with_broker(|b, now| {
            b.expire_due(now);
            b.next_deadline()
        })
    }

    /// A receiver of every event published from now on, in the order they happened.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// Resolves when the earliest deadline has moved earlier since the last wait.
    pub async fn deadline_changed(&self) {
        self.shared.deadline_changed.notified().await;
    }

    /// Runs `f` on the broker under the mutex, at the current time. Everything that
    /// touches the broker comes through here.
    fn with_broker<R>(&self, f: impl FnOnce(&mut Broker, Timestamp) -> R) -> R {
        let now = self.now();
        let (out, events, moved_earlier) = {
            let mut broker = self
                .shared
                .broker
                .lock()
                // A panic inside the broker would leave it half-changed; refusing to go on
                // is the only safe answer, and the supervisor restarts the process.
                .expect("broker mutex poisoned by an earlier panic");
            let before = broker.next_deadline();
            let out = f(&mut broker, now);
            let after = broker.next_deadline();
            let moved_earlier = match (before, after) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(b), Some(a)) => a < b,
            };
            (out, broker.drain_events(), moved_earlier)
        }; // guard dropped: the rest runs unlocked
        if moved_earlier {
            self.shared.deadline_changed.notify_one();
        }
        self.publish(events);
        out
    }
}

fn grant(b: &Broker, id: ResourceId, token: LockToken, lease: Lease) -> Grant {
    let resource = b.resource(id).expect("just granted").clone();
    Grant {
        token,
        lease,
        resource,
    }
}

impl BrokerHandle {
    /// Fans events out, after the mutex is released: to the log, then to subscribers.
    /// Lock tokens are never part of an event, so nothing secret is logged or sent.
    fn publish(&self, events: Vec<Event>) {
        for event in events {
            log(&event);
            // An error only means nobody is subscribed.
            let _ = self.shared.events.send(event);
        }
    }
}

fn log(event: &Event) {
    match event {
        Event::Locked {
            resource,
            fencing,
            expires_at,
            ..
        } => {
            tracing::info!(resource = %resource, fencing = fencing.get(), expires_at = %expires_at, "locked")
        }
        Event::Extended {
            resource,
            fencing,
            expires_at,
        } => {
            tracing::info!(resource = %resource, fencing = fencing.get(), expires_at = %expires_at, "lock extended")
        }
        Event::Unlocked {
            resource, fencing, ..
        } => tracing::info!(resource = %resource, fencing = fencing.get(), "unlocked"),
        Event::Expired {
            resource,
            fencing,
            deadline,
        } => {
            tracing::info!(resource = %resource, fencing = fencing.get(), deadline = %deadline, "lock expired")
        }
    }
}
