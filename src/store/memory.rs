//! [`MemoryStore`]: a [`Backend`] that keeps the rows in memory, the reference for what a
//! store does with a batch ([`Image::apply`], one delta after the other). Tests use it to
//! watch commits and to make them fail or wait, without a disk.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::{Backend, Batch, Loaded, StoreError};
use crate::domain::Image;
use crate::runtime::IdempotencyRecord;

/// A store in memory, with switches for tests. Clones share one store.
#[derive(Clone, Default)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when `held` or `commits` change.
    changed: Condvar,
}

#[derive(Default)]
struct State {
    image: Image,
    records: Vec<IdempotencyRecord>,
    seq: u64,
    next_event: u64,
    /// Commits refuse with this reason while set.
    failing: Option<String>,
    /// Commits wait while set.
    held: bool,
    /// Commits begun, and waiting because `held`.
    waiting: usize,
    commits: usize,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("seq", &self.seq())
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// What a service starting on this store loads.
    pub fn loaded(&self) -> Loaded {
        let state = self.state();
        Loaded {
            image: state.image.clone(),
            seq: state.seq,
            next_event: state.next_event.max(1),
            records: state.records.clone(),
            // Audit rows are the SQLite store's: a memory store keeps none.
            audit: Vec::new(),
        }
    }

    /// The rows as committed so far.
    pub fn image(&self) -> Image {
        self.state().image.clone()
    }

    /// The remembered `Idempotency-Key` answers committed so far.
    pub fn records(&self) -> Vec<IdempotencyRecord> {
        self.state().records.clone()
    }

    /// The last committed sequence number.
    pub fn seq(&self) -> u64 {
        self.state().seq
    }

    /// Commits refuse with `reason` from now on (`None`: they succeed again).
    pub fn fail(&self, reason: Option<&str>) {
        self.state().failing = reason.map(str::to_owned);
    }

    /// Commits wait from now on until `release` (they do not fail).
    pub fn hold(&self) {
        self.state().held = true;
    }

    /// Lets held commits go on.
    pub fn release(&self) {
        self.state().held = false;
        self.shared.changed.notify_all();
    }

    /// Blocks until a commit is waiting on [`MemoryStore::hold`].
    pub fn wait_for_held_commit(&self) {
        let mut state = self.state();
        while state.waiting == 0 {
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Backend for MemoryStore {
    fn commit(&mut self, batch: &Batch<'_>) -> Result<(), StoreError> {
        let mut state = self.state();
        if state.held {
            state.waiting += 1;
            self.shared.changed.notify_all();
            while state.held {
                state = self
                    .shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(|e| e.into_inner());
            }
            state.waiting -= 1;
        }
        if let Some(reason) = &state.failing {
            return Err(StoreError::Failed(reason.clone()));
        }
        for change in batch.changes {
            if let Some(delta) = &change.delta {
                state.image.apply(delta);
            }
            state.seq = change.seq;
        }
        for record in batch.records {
            let same = |r: &IdempotencyRecord| {
                (&r.owner, &r.method, &r.path, &r.key)
                    == (&record.owner, &record.method, &record.path, &record.key)
            };
            state.records.retain(|r| !same(r));
            state.records.push(record.clone());
        }
        state.next_event = batch.next_event;
        state.commits += 1;
        self.shared.changed.notify_all();
        Ok(())
    }
}
