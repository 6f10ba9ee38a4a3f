//! The change stream: every broker call that changed something, in one order.
//!
//! Inside the broker mutex, [`BrokerHandle`](super::BrokerHandle) gives each change the
//! next sequence number and hands it to the [`Committer`] before the mutex is released
//! (decide inside, act after). So the committer receives changes in sequence order, and
//! everything downstream sees them in that order:
//!
//! ```text
//!   broker call ─(under the mutex)─▶ Change{seq, cause, events, delta} ─▶ Committer
//!       in memory: ─────────────────────────────────────────▶ publish ─▶ Ledger.advance(seq)
//!       store:     ─▶ writer thread ─▶ commit (group) ─▶ publish ─▶ Ledger.advance(seq)
//!   publish: log line, SSE ring buffer, broadcast (long-poll, WebSocket, SSE, metrics)
//! ```
//!
//! A request is answered only once the [`Ledger`] says every change it could have seen
//! is committed ([`Ledger::durable`]): an acknowledged change survives a crash, and no
//! answer reflects a change that could still be lost. Events are published after their
//! commit, so no watcher sees one either.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use crate::domain::{Delta, Event, Timestamp};

/// Who made a change happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    /// The broker itself: an expiry, a fulfilment, a window edge, an aging step (even
    /// when it ran inside somebody else's request).
    System,
    /// A caller the service could not name (no authentication configured).
    Anonymous,
    /// A caller identified by an API key or token: its name and role.
    Named { name: Arc<str>, role: Arc<str> },
}

impl Actor {
    /// The actor as logs and the audit log name it.
    pub fn name(&self) -> &str {
        match self {
            Actor::System => "system",
            Actor::Anonymous => "anonymous",
            Actor::Named { name, .. } => name,
        }
    }
}

/// Why a change happened: the actor, and for a request where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    pub actor: Actor,
    pub request_id: Option<Arc<str>>,
    pub client_ip: Option<IpAddr>,
    pub user_agent: Option<Arc<str>>,
}

impl Cause {
    /// The broker acting on its own.
    pub fn system() -> Arc<Cause> {
        static SYSTEM: std::sync::OnceLock<Arc<Cause>> = std::sync::OnceLock::new();
        SYSTEM
            .get_or_init(|| {
                Arc::new(Cause {
                    actor: Actor::System,
                    request_id: None,
                    client_ip: None,
                    user_agent: None,
                })
            })
            .clone()
    }

    /// A caller outside any request (tests, tools).
    pub fn anonymous() -> Arc<Cause> {
        static ANONYMOUS: std::sync::OnceLock<Arc<Cause>> = std::sync::OnceLock::new();
        ANONYMOUS
            .get_or_init(|| {
                Arc::new(Cause {
                    actor: Actor::Anonymous,
                    request_id: None,
                    client_ip: None,
                    user_agent: None,
                })
            })
            .clone()
    }
}

/// One broker call's worth of change, numbered.
#[derive(Debug)]
pub struct Change {
    /// Gapless, from 1, in the order the broker made the changes (and across restarts:
    /// the store keeps the last one).
    pub seq: u64,
    pub at: Timestamp,
    pub cause: Arc<Cause>,
    pub events: Vec<Event>,
    /// The rows it changed; only recorded when a store consumes them.
    pub delta: Option<Delta>,
    /// A request with an `Idempotency-Key` made this change: its remembered answer
    /// ([`Committer::attach`]) is committed in the same transaction, so a retry after a
    /// crash replays it rather than running again.
    pub awaits_record: bool,
}

/// A remembered `Idempotency-Key` answer, as the store keeps it. The API layer decides
/// what goes in; the runtime and the store only carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// The caller it belongs to (`anonymous` without authentication).
    pub owner: String,
    pub method: String,
    pub path: String,
    pub key: String,
    /// SHA-256 of the request (method, path, query, body).
    pub fingerprint: [u8; 32],
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub expires_at: Timestamp,
}

/// Where changes go. Both methods are called in sequence order; `submit` is called with
/// the broker mutex held, so it must be quick and never block.
pub trait Committer: Send + Sync + 'static {
    /// Takes change `change.seq`.
    fn submit(&self, change: Change);
    /// Called by the submitting thread after it released the broker mutex: an
    /// in-memory committer publishes here; a store's writer thread works on its own.
    fn flush(&self) {}
    /// The remembered answer of the request that made change `seq` (flagged
    /// `awaits_record`), or `None`: there is none to remember.
    fn attach(&self, seq: u64, record: Option<IdempotencyRecord>) {
        let _ = (seq, record);
    }
    /// Whether changes must carry their rows ([`Change::delta`]).
    fn wants_rows(&self) -> bool {
        false
    }

    /// No change comes after this one: commit what is queued and stop.
    fn close(&self) {}
}

/// The last committed sequence number, whether the committer is failing, and a way to
/// wait for both. Shared by the handle (waiters) and the committer (progress).
pub struct Ledger {
    committed: AtomicU64,
    failed: AtomicBool,
    progress: watch::Sender<Progress>,
    stats: CommitStats,
}

/// The upper bounds of the commit-latency buckets, in microseconds (the last bucket is
/// everything above): fsync is about 200 us here, a slow disk tens of milliseconds.
pub const COMMIT_MICROS_BUCKETS: [u64; 12] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
];
/// The upper bounds of the batch-size buckets, in changes (the last: up to `MAX_BATCH`).
pub const BATCH_BUCKETS: [u64; 8] = [1, 2, 4, 16, 64, 256, 1_024, 4_096];

/// How the store's commits went: counts, and histograms of their latency and size. Kept
/// by the writer (one `observe` a transaction), read by the load tool and `/metrics`.
#[derive(Debug, Default)]
pub struct CommitStats {
    commits: AtomicU64,
    changes: AtomicU64,
    micros: AtomicU64,
    latency: [AtomicU64; COMMIT_MICROS_BUCKETS.len() + 1],
    size: [AtomicU64; BATCH_BUCKETS.len() + 1],
}

/// A copy of [`CommitStats`]; bucket counts are per bucket, not cumulative.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitSnapshot {
    pub commits: u64,
    pub changes: u64,
    pub micros: u64,
    pub latency: Vec<u64>,
    pub size: Vec<u64>,
}

impl CommitStats {
    /// One transaction of `changes` changes took `elapsed`, retries included.
    pub fn observe(&self, changes: usize, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let changes = changes as u64;
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.changes.fetch_add(changes, Ordering::Relaxed);
        self.micros.fetch_add(micros, Ordering::Relaxed);
        let bucket =
            |bounds: &[u64], v: u64| bounds.iter().position(|&b| v <= b).unwrap_or(bounds.len());
        self.latency[bucket(&COMMIT_MICROS_BUCKETS, micros)].fetch_add(1, Ordering::Relaxed);
        self.size[bucket(&BATCH_BUCKETS, changes)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> CommitSnapshot {
        let read = |a: &[AtomicU64]| a.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        CommitSnapshot {
            commits: self.commits.load(Ordering::Relaxed),
            changes: self.changes.load(Ordering::Relaxed),
            micros: self.micros.load(Ordering::Relaxed),
            latency: read(&self.latency),
            size: read(&self.size),
        }
    }
}

impl CommitSnapshot {
    /// What happened between `earlier` and `self`.
    #[must_use]
    pub fn since(&self, earlier: &CommitSnapshot) -> CommitSnapshot {
        let minus = |a: &[u64], b: &[u64]| {
            a.iter()
                .zip(b.iter().chain(std::iter::repeat(&0)))
                .map(|(x, y)| x.saturating_sub(*y))
                .collect()
        };
        CommitSnapshot {
            commits: self.commits.saturating_sub(earlier.commits),
            changes: self.changes.saturating_sub(earlier.changes),
            micros: self.micros.saturating_sub(earlier.micros),
            latency: minus(&self.latency, &earlier.latency),
            size: minus(&self.size, &earlier.size),
        }
    }

    /// The upper bound of the latency bucket holding quantile `q` (0..=1), in
    /// microseconds; `None` without commits or above the last bound.
    pub fn latency_quantile_micros(&self, q: f64) -> Option<u64> {
        let rank = (q * self.commits as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return COMMIT_MICROS_BUCKETS.get(i).copied();
            }
        }
        None
    }
}

/// What [`Ledger`] publishes to its waiters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub committed: u64,
    /// Why the last commit failed; `None` while commits succeed.
    pub failure: Option<Arc<str>>,
}

/// Why an answer cannot be given: its change (or one it saw) is not committed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("the store is failing: {0}")]
    StoreFailing(Arc<str>),
    #[error("the change was not committed within {0:?}")]
    Timeout(Duration),
}

/// How long an answer waits for its commit before the caller is told 503: far above a
/// group commit (milliseconds), below client timeouts.
pub const COMMIT_WAIT: Duration = Duration::from_secs(10);

impl Ledger {
    /// A ledger whose changes up to `committed` are already durable (the store's last
    /// sequence number at start).
    pub fn new(committed: u64) -> Self {
        Ledger {
            committed: AtomicU64::new(committed),
            failed: AtomicBool::new(false),
            progress: watch::Sender::new(Progress {
                committed,
                failure: None,
            }),
            stats: CommitStats::default(),
        }
    }

    /// How the store's commits went (all zero in memory).
    pub fn stats(&self) -> &CommitStats {
        &self.stats
    }

    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Why commits fail, if they do.
    pub fn failure(&self) -> Option<Arc<str>> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        self.progress.borrow().failure.clone()
    }

    /// Changes up to `seq` are committed; a failure is over.
    pub fn advance(&self, seq: u64) {
        self.committed.fetch_max(seq, Ordering::AcqRel);
        self.failed.store(false, Ordering::Release);
        self.progress.send_modify(|p| {
            p.committed = p.committed.max(seq);
            p.failure = None;
        });
    }

    /// Commits fail, for `reason`: nobody waiting for one is answered success.
    pub fn fail(&self, reason: &str) {
        self.failed.store(true, Ordering::Release);
        let reason: Arc<str> = reason.into();
        self.progress.send_modify(|p| p.failure = Some(reason));
    }

    /// Resolves once change `seq` is committed.
    ///
    /// # Errors
    /// [`Unavailable`] when the store fails, or the commit takes longer than
    /// [`COMMIT_WAIT`].
    pub async fn durable(&self, seq: u64) -> Result<(), Unavailable> {
        if self.committed() >= seq {
            return Ok(());
        }
        let mut rx = self.progress.subscribe();
        let wait = rx.wait_for(|p| p.committed >= seq || p.failure.is_some());
        match tokio::time::timeout(COMMIT_WAIT, wait).await {
            Ok(Ok(p)) if p.committed >= seq => Ok(()),
            Ok(Ok(p)) => Err(Unavailable::StoreFailing(
                p.failure.clone().unwrap_or_else(|| "unknown".into()),
            )),
            // The sender lives as long as the ledger: a closed channel cannot happen.
            Ok(Err(_closed)) => Err(Unavailable::StoreFailing("shut down".into())),
            Err(_elapsed) => Err(Unavailable::Timeout(COMMIT_WAIT)),
        }
    }
}

/// A committed change as watchers receive it.
#[derive(Debug)]
pub struct Committed {
    pub seq: u64,
    /// When the broker made it.
    pub at: Timestamp,
    /// Who made it happen (the audit log's actor, client and request id).
    pub cause: Arc<Cause>,
    /// The number of its first event: events are numbered from 1 in stream order
    /// (the SSE `id`).
    pub first_event: u64,
    pub events: Vec<Event>,
}

impl Committed {
    /// Every event with its number.
    pub fn numbered(&self) -> impl Iterator<Item = (u64, &Event)> {
        (self.first_event..).zip(&self.events)
    }
}

/// How many committed changes a slow subscriber may fall behind before it misses some.
pub const SUBSCRIBER_BUFFER: usize = 4096;
/// How many recent events the stream keeps for a reconnecting SSE client
/// (`Last-Event-ID`).
pub const REPLAY_EVENTS: usize = 10_000;

/// A consumer that must see every committed change, in order, and cannot lag behind
/// as a broadcast subscriber can (the audit log). Called by [`Publisher::publish`] under
/// its lock, on the thread that publishes (a request's, or the store's writer): it must
/// be quick and must never block.
pub trait Observer: Send + Sync + 'static {
    fn committed(&self, change: &Committed);
}

/// Several observers, called in the order given (the audit log, then metrics).
pub struct Observers(pub Vec<Arc<dyn Observer>>);

impl Observer for Observers {
    fn committed(&self, change: &Committed) {
        for observer in &self.0 {
            observer.committed(change);
        }
    }
}

/// The consumers every committed change goes to, in order: the log, the replay buffer,
/// the observer (if any), the subscribers.
pub struct Publisher {
    inner: Mutex<Replay>,
    subscribers: broadcast::Sender<Arc<Committed>>,
    observer: Option<Arc<dyn Observer>>,
}

struct Replay {
    /// The number the next event gets.
    next_event: u64,
    recent: VecDeque<Arc<Committed>>,
    /// Events in `recent`.
    events: usize,
}

/// What a subscriber gets: the committed changes after the ones it had seen.
pub struct Subscription {
    /// Committed changes kept for replay that hold events after the requested one
    /// (possibly none). The first may also hold earlier events: skip those by number.
    pub backlog: Vec<Arc<Committed>>,
    /// What could not be replayed.
    pub gap: Gap,
    pub live: broadcast::Receiver<Arc<Committed>>,
}

/// Events a resuming subscriber missed for good: it must read the state again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gap {
    /// Nothing: the backlog continues where the subscriber left off.
    None,
    /// This many events after the requested one are no longer kept.
    Missed(u64),
    /// The requested event is unknown to this stream (an id from before a restart of a
    /// service without persistence): how much was missed cannot be told.
    Unknown,
}

impl Publisher {
    /// A publisher whose next event is number `next_event`.
    pub fn new(next_event: u64) -> Self {
        Self::with_observer(next_event, None)
    }

    /// A publisher that also hands every committed change to `observer`.
    pub fn with_observer(next_event: u64, observer: Option<Arc<dyn Observer>>) -> Self {
        Publisher {
            inner: Mutex::new(Replay {
                next_event: next_event.max(1),
                recent: VecDeque::new(),
                events: 0,
            }),
            subscribers: broadcast::channel(SUBSCRIBER_BUFFER).0,
            observer,
        }
    }

    /// The number the next event will get.
    pub fn next_event(&self) -> u64 {
        self.replay().next_event
    }

    /// Publishes committed changes, in sequence order.
    pub fn publish(&self, changes: impl IntoIterator<Item = Change>) {
        let mut replay = self.replay();
        for Change {
            seq,
            at,
            cause,
            events,
            ..
        } in changes
        {
            if events.is_empty() {
                continue;
            }
            for event in &events {
                log(event);
            }
            let committed = Arc::new(Committed {
                seq,
                at,
                cause,
                first_event: replay.next_event,
                events,
            });
            if let Some(observer) = &self.observer {
                observer.committed(&committed);
            }
            replay.next_event += committed.events.len() as u64;
            replay.events += committed.events.len();
            replay.recent.push_back(committed.clone());
            while replay.events > REPLAY_EVENTS {
                let old = replay.recent.pop_front().expect("counted");
                replay.events -= old.events.len();
            }
            // An error only means nobody listens.
            let _ = self.subscribers.send(committed);
        }
    }

    /// Every committed change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Committed>> {
        self.subscribers.subscribe()
    }

    /// Every committed change from now on, and the number of the last event before
    /// them (where a later [`Publisher::resume`] would pick up).
    pub fn subscribe_now(&self) -> (u64, broadcast::Receiver<Arc<Committed>>) {
        let replay = self.replay();
        (replay.next_event - 1, self.subscribers.subscribe())
    }

    /// Every committed change after event `last_seen`, and from now on. Taken under the
    /// same lock `publish` holds, so nothing falls between the backlog and the live
    /// receiver.
    pub fn resume(&self, last_seen: u64) -> Subscription {
        let replay = self.replay();
        let live = self.subscribers.subscribe();
        if last_seen + 1 >= replay.next_event {
            // Nothing after it yet, or an id ahead of this stream's: one from another run.
            let gap = if last_seen >= replay.next_event {
                Gap::Unknown
            } else {
                Gap::None
            };
            return Subscription {
                backlog: Vec::new(),
                gap,
                live,
            };
        }
        let oldest = replay
            .recent
            .front()
            .map_or(replay.next_event, |c| c.first_event);
        let backlog = replay
            .recent
            .iter()
            .filter(|c| c.first_event + c.events.len() as u64 > last_seen + 1)
            .cloned()
            .collect();
        let gap = match oldest.saturating_sub(last_seen + 1) {
            0 => Gap::None,
            missed => Gap::Missed(missed),
        };
        Subscription { backlog, gap, live }
    }

    fn replay(&self) -> std::sync::MutexGuard<'_, Replay> {
        self.inner
            .lock()
            // Publishing does not panic on any input; a poisoned lock means a bug, and
            // the process is better restarted than left publishing from a torn buffer.
            .expect("publisher mutex poisoned")
    }
}

/// The committer of a service without persistence: a change is committed when it is
/// made. Changes queue under the broker mutex and are published by whichever caller
/// flushes next, in order, outside the broker mutex.
pub struct InMemory {
    ledger: Arc<Ledger>,
    publisher: Arc<Publisher>,
    queue: Mutex<VecDeque<Change>>,
}

impl InMemory {
    pub fn new(ledger: Arc<Ledger>, publisher: Arc<Publisher>) -> Self {
        InMemory {
            ledger,
            publisher,
            queue: Mutex::new(VecDeque::new()),
        }
    }
}

impl Committer for InMemory {
    fn submit(&self, change: Change) {
        self.queue
            .lock()
            .expect("change queue poisoned")
            .push_back(change);
    }

    fn flush(&self) {
        // Draining under the queue's lock keeps publication in sequence order even when
        // several threads flush at once: a later flusher finds what an earlier one left.
        let mut queue = self.queue.lock().expect("change queue poisoned");
        let Some(last) = queue.back().map(|c| c.seq) else {
            return;
        };
        self.publisher.publish(queue.drain(..));
        drop(queue);
        self.ledger.advance(last);
    }
}

/// Lock, unlock and extend are the hot path (thousands a second) and log at `debug`: an
/// `info` line costs the server about 8 us of CPU, a third of a lock+unlock cycle
/// (BENCHMARKS.md, run C). Expiries and the queue's changes, rarer and what operators
/// look for, log at `info`. Every change is also on the event stream (`/api/v1/events`).
fn log(event: &Event) {
    match event {
        Event::Locked {
            resource,
            fencing,
            expires_at,
            ..
        } => {
            tracing::debug!(resource = %resource, fencing = fencing.get(), expires_at = %expires_at, "locked")
        }
        Event::Extended {
            resource,
            fencing,
            expires_at,
        } => {
            tracing::debug!(resource = %resource, fencing = fencing.get(), expires_at = %expires_at, "lock extended")
        }
        Event::Unlocked {
            resource, fencing, ..
        } => tracing::debug!(resource = %resource, fencing = fencing.get(), "unlocked"),
        Event::Expired {
            resource,
            fencing,
            deadline,
        } => {
            tracing::info!(resource = %resource, fencing = fencing.get(), deadline = %deadline, "lock expired")
        }
        Event::ReservationCreated { reservation, .. } => {
            tracing::info!(reservation = %reservation, "reservation queued")
        }
        Event::ReservationFulfilled {
            reservation,
            resources,
            ..
        } => {
            tracing::info!(reservation = %reservation, resources = ?resources.iter().map(|r| r.get()).collect::<Vec<_>>(), "reservation fulfilled")
        }
        Event::ReservationClaimed { reservation, .. } => {
            tracing::info!(reservation = %reservation, "reservation claimed")
        }
        Event::ReservationEnded {
            reservation,
            reason,
            ..
        } => {
            tracing::info!(reservation = %reservation, reason = reason.as_str(), "reservation ended")
        }
        Event::ForceUnlocked {
            resource,
            fencing,
            reason,
            ..
        } => {
            tracing::warn!(resource = %resource, fencing = fencing.get(), reason = %reason, "lock force-unlocked")
        }
        Event::MaintenanceScheduled {
            resource,
            reason,
            from,
            until,
            ..
        } => {
            tracing::info!(resource = %resource, reason = %reason, from = %from, until = %until.map_or_else(|| "none".to_owned(), |t| t.to_string()), "maintenance scheduled")
        }
        Event::MaintenanceStarted { resource, .. } => {
            tracing::info!(resource = %resource, "out of service for maintenance")
        }
        Event::MaintenanceEnded { resource, .. } => {
            tracing::info!(resource = %resource, "back in service")
        }
        Event::ResourceAdded { resource, name, .. } => {
            tracing::info!(resource = %resource, name = %name, "resource added")
        }
        Event::ResourceUpdated {
            resource, fields, ..
        } => tracing::info!(resource = %resource, fields = ?fields, "resource updated"),
        Event::ResourceRetiring { resource, name, .. } => {
            tracing::info!(resource = %resource, name = %name, "resource retiring: it goes when its lock ends")
        }
        Event::ResourceRemoved { resource, name, .. } => {
            tracing::info!(resource = %resource, name = %name, "resource removed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_stats_count_and_bucket_each_commit() {
        let stats = CommitStats::default();
        stats.observe(1, Duration::from_micros(180)); // <= 250 us, 1 change
        stats.observe(3, Duration::from_micros(250)); // <= 250 us (bounds are inclusive), <= 4
        stats.observe(4_096, Duration::from_millis(7)); // <= 10 ms, <= 4096
        stats.observe(5_000, Duration::from_secs(3)); // above every bound
        let s = stats.snapshot();
        assert_eq!((s.commits, s.changes), (4, 1 + 3 + 4_096 + 5_000));
        assert_eq!(s.micros, 180 + 250 + 7_000 + 3_000_000);
        assert_eq!(s.latency, [2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(s.size, [1, 0, 1, 0, 0, 0, 0, 1, 1]);
        assert_eq!(s.latency_quantile_micros(0.5), Some(250));
        assert_eq!(s.latency_quantile_micros(0.75), Some(10_000));
        assert_eq!(s.latency_quantile_micros(1.0), None, "above the last bound");

        let later = {
            stats.observe(2, Duration::from_micros(600));
            stats.snapshot()
        };
        let d = later.since(&s);
        assert_eq!((d.commits, d.changes, d.micros), (1, 2, 600));
        assert_eq!(d.latency, [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(d.latency_quantile_micros(0.99), Some(1_000));
        assert_eq!(CommitSnapshot::default().latency_quantile_micros(0.5), None);
    }
}
