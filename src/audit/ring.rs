//! [`Ring`]: the latest entries, bounded, in chunks that a query can share.
//!
//! Entries are appended to an open chunk; a full chunk is sealed behind an `Arc` and
//! never changes again. A query copies the sealed chunks' pointers and the open chunk
//! (at most [`CHUNK`] entries) under the lock and scans them after, so a scan of 100 000
//! entries never holds up the publisher. The oldest chunk is dropped once every entry
//! in it is beyond the retention; until then a view skips those entries, so the ring
//! answers with exactly `retention` entries and holds at most `CHUNK` more.

use std::collections::VecDeque;
use std::sync::Arc;

use super::{Entry, Query};

/// Entries per sealed chunk.
pub const CHUNK: usize = 1024;

/// See the [module documentation](self).
#[derive(Debug)]
pub struct Ring {
    retention: usize,
    sealed: VecDeque<Arc<Vec<Entry>>>,
    open: Vec<Entry>,
    /// Entries in `sealed` and `open`.
    len: usize,
}

/// A page of entries, and how many match in all.
#[derive(Debug)]
pub struct Page {
    pub entries: Vec<Entry>,
    pub total: usize,
}

/// What a query reads: a copy of the ring's pointers.
pub struct View {
    sealed: Vec<Arc<Vec<Entry>>>,
    open: Vec<Entry>,
    /// Entries to read, newest first (the rest are beyond the retention).
    kept: usize,
}

impl Ring {
    /// A ring keeping the latest `retention` entries (at least one).
    pub fn new(retention: usize) -> Self {
        Ring {
            retention: retention.max(1),
            sealed: VecDeque::new(),
            open: Vec::new(),
            len: 0,
        }
    }

    pub fn push(&mut self, entry: Entry) {
        self.open.push(entry);
        self.len += 1;
        if self.open.len() == CHUNK {
            let full = std::mem::replace(&mut self.open, Vec::with_capacity(CHUNK));
            self.sealed.push_back(Arc::new(full));
        }
        while let Some(oldest) = self.sealed.front() {
            if self.len - oldest.len() < self.retention {
                break;
            }
            self.len -= oldest.len();
            self.sealed.pop_front();
        }
    }

    /// Entries a query can see.
    pub fn len(&self) -> usize {
        self.len.min(self.retention)
    }

    /// Entries in memory, those beyond the retention included.
    pub fn held(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A copy to scan without the lock.
    pub fn view(&self) -> View {
        View {
            sealed: self.sealed.iter().cloned().collect(),
            open: self.open.clone(),
            kept: self.len(),
        }
    }
}

impl View {
    /// Every kept entry, newest first.
    fn newest_first(&self) -> impl Iterator<Item = &Entry> {
        self.open
            .iter()
            .rev()
            .chain(self.sealed.iter().rev().flat_map(|c| c.iter().rev()))
            .take(self.kept)
    }

    /// The entries `query` selects, newest first: page `query.page` of `query.limit`.
    pub fn page(&self, query: &Query) -> Page {
        let skip = query.page.saturating_sub(1).saturating_mul(query.limit);
        let mut total = 0;
        let mut entries = Vec::new();
        for entry in self.newest_first().filter(|e| query.filter.matches(e)) {
            if total >= skip && entries.len() < query.limit {
                entries.push(entry.clone());
            }
            total += 1;
        }
        Page { entries, total }
    }
}
