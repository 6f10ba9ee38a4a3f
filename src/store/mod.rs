//! Persistence: the change stream's durable consumer.
//!
//! ```text
//!   BrokerHandle ─(under the mutex, in order)─▶ Writer::submit ─▶ channel ─▶ writer thread
//!   writer thread: take every queued change (group commit) ─▶ Backend::commit (one
//!                  transaction) ─▶ Publisher::publish ─▶ Ledger::advance ─▶ answers go out
//! ```
//!
//! A backend stores rows ([`crate::domain::Image`]), never replays code: `load` gives the
//! image back at start and [`Broker::restore`](crate::domain::Broker::restore) rebuilds
//! the indexes from it. SQLite ([`sqlite`]) is the single-node store; PostgreSQL
//! ([`postgres`]), the same rows on a database server, is what the HA pair stands on.

pub mod leader;
pub mod memory;
pub mod postgres;
pub mod sqlite;
pub mod url;
pub mod writer;

pub use memory::MemoryStore;
pub use url::PersistUrl;
pub use writer::{Failpoint, Writer};

use crate::audit;
use crate::domain::{Image, Timestamp};
use crate::runtime::{Change, IdempotencyRecord};

/// What a store holds, as read at start.
#[derive(Debug, Default)]
pub struct Loaded {
    pub image: Image,
    /// The sequence number of the last committed change (0 for a new store).
    pub seq: u64,
    /// The number the next published event gets (1 for a new store).
    pub next_event: u64,
    /// Remembered `Idempotency-Key` answers that have not expired.
    pub records: Vec<IdempotencyRecord>,
    /// The audit log's latest entries (at most the retention), oldest first.
    pub audit: Vec<audit::Entry>,
}

/// One transaction's worth of changes, in sequence order.
pub struct Batch<'a> {
    pub changes: &'a [Change],
    /// The remembered answers of the requests that made some of these changes.
    pub records: &'a [IdempotencyRecord],
    /// The number the first event after this batch gets.
    pub next_event: u64,
    /// Remembered answers that expired by now may be forgotten.
    pub now: Timestamp,
    /// Audit entries of requests' answers (refusals, accepted requests that changed
    /// nothing), stored with this transaction; the changes' own entries are derived
    /// from the changes ([`audit::Entry::of_change`]). A batch may hold only these.
    pub answers: &'a [audit::Entry],
}

/// Why a commit failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The commit may succeed if tried again (a busy or full disk, a lost connection).
    #[error("{0}")]
    Failed(String),
    /// The store refuses this service's commits for good: another service took over
    /// (the HA pair's epoch moved on). Nothing of the commit is stored.
    #[error("{0}")]
    Deposed(String),
}

/// A place changes are committed to.
pub trait Backend: Send + 'static {
    /// Writes `batch` in one transaction: all of it or none.
    ///
    /// # Errors
    /// [`StoreError`] when the transaction did not commit; nothing of it is stored.
    fn commit(&mut self, batch: &Batch<'_>) -> Result<(), StoreError>;
}

/// Opens the store `url` names, checks it and reads it. It keeps the latest
/// `audit_retention` audit entries. A PostgreSQL store is opened by the active service
/// only, with the `epoch` of its term ([`leader`]).
///
/// # Errors
/// A store that cannot be opened or created, is corrupt, or was written by a newer
/// version; the message says which and what to do.
pub fn open(
    url: &PersistUrl,
    audit_retention: usize,
    epoch: Option<u64>,
) -> anyhow::Result<(Box<dyn Backend>, Loaded)> {
    match url {
        PersistUrl::Sqlite(path) => {
            let (store, loaded) = sqlite::SqliteStore::open_keeping(path, audit_retention)?;
            Ok((Box::new(store), loaded))
        }
        PersistUrl::Postgres(url) => {
            let Some(epoch) = epoch else {
                anyhow::bail!("{url} is opened by the active service of the HA pair only");
            };
            // The blocking client drives a runtime of its own, which cannot run inside
            // the caller's (`app::build` is called on one): open on a thread of its own.
            // The writer thread, a plain thread, uses it afterwards.
            let (store, loaded) = std::thread::scope(|s| {
                s.spawn(|| postgres::PostgresStore::open(url, audit_retention, epoch))
                    .join()
            })
            .map_err(|_| anyhow::anyhow!("opening {url} panicked"))??;
            Ok((Box::new(store), loaded))
        }
    }
}

/// A backend's view of the changes in a batch: the final image of each row, whatever
/// order they were touched in.
pub(crate) fn coalesce<'a>(changes: &'a [Change]) -> Coalesced<'a> {
    use std::collections::BTreeMap;
    let mut out = Coalesced::default();
    let mut resources = BTreeMap::new();
    let mut reservations = BTreeMap::new();
    for change in changes {
        let Some(delta) = &change.delta else { continue };
        for (id, row) in &delta.resources {
            resources.insert(*id, row.as_deref());
        }
        for (id, row) in &delta.reservations {
            reservations.insert(*id, row.as_ref());
        }
        out.ended.extend(&delta.ended);
        out.expired.extend(&delta.expired);
        out.counters = Some(delta.counters);
    }
    out.resources = resources.into_iter().collect();
    out.reservations = reservations.into_iter().collect();
    out.seq = changes.last().map(|c| c.seq);
    out
}

/// See [`coalesce`].
#[derive(Default)]
pub(crate) struct Coalesced<'a> {
    pub resources: Vec<(
        crate::domain::ResourceId,
        Option<&'a crate::domain::Resource>,
    )>,
    pub reservations: Vec<(
        crate::domain::ReservationId,
        Option<&'a crate::domain::StoredReservation>,
    )>,
    pub ended: Vec<&'a crate::domain::EndedReservation>,
    pub expired: Vec<&'a crate::domain::ExpiredLock>,
    pub counters: Option<crate::domain::Counters>,
    pub seq: Option<u64>,
}
