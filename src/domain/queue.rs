//! The order in which pending reservations are served.
//!
//! Served by *effective* priority (1 first), FIFO among equals. A reservation's effective
//! priority improves by one level per `aging` period waited, so nothing waits forever.
//!
//! Ten FIFO buckets, one per base priority. Within a bucket the older reservation has
//! waited longer, so its effective priority is never worse: each bucket is already in
//! serving order, and the queue is a lazy ten-way merge of the buckets. Walking the first
//! k reservations costs O(k), whatever the length of the queue.

use std::collections::BTreeMap;
use std::collections::btree_map;
use std::iter::Peekable;
use std::time::Duration;

use super::clock::Timestamp;
use super::reservation::{Priority, ReservationId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    id: ReservationId,
    created_at: Timestamp,
}

#[derive(Debug, Default)]
pub(crate) struct Queue {
    /// `buckets[p - 1]`: pending reservations of base priority p, by creation sequence.
    buckets: [BTreeMap<u64, Entry>; 10],
    len: usize,
}

impl Queue {
    pub(crate) fn insert(
        &mut self,
        priority: Priority,
        seq: u64,
        id: ReservationId,
        created_at: Timestamp,
    ) {
        let previous = self.bucket(priority).insert(seq, Entry { id, created_at });
        debug_assert!(previous.is_none(), "sequence numbers are unique");
        self.len += 1;
    }

    pub(crate) fn remove(&mut self, priority: Priority, seq: u64) {
        if self.bucket(priority).remove(&seq).is_some() {
            self.len -= 1;
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Pending reservations in serving order at `now`.
    pub(crate) fn in_order(&self, now: Timestamp, aging: Duration) -> InOrder<'_> {
        InOrder {
            heads: self
                .buckets
                .iter()
                .zip(1u8..)
                .map(|(bucket, level)| {
                    (
                        Priority::new(u64::from(level)).expect("1..=10"),
                        bucket.iter().peekable(),
                    )
                })
                .collect(),
            now,
            aging,
        }
    }

    fn bucket(&mut self, priority: Priority) -> &mut BTreeMap<u64, Entry> {
        &mut self.buckets[usize::from(priority.get()) - 1]
    }
}

/// See [`Queue::in_order`].
pub(crate) struct InOrder<'a> {
    heads: Vec<(Priority, Peekable<btree_map::Iter<'a, u64, Entry>>)>,
    now: Timestamp,
    aging: Duration,
}

impl Iterator for InOrder<'_> {
    type Item = ReservationId;

    fn next(&mut self) -> Option<ReservationId> {
        let (now, aging) = (self.now, self.aging);
        let best = self
            .heads
            .iter_mut()
            .enumerate()
            .filter_map(|(i, (base, head))| {
                let (seq, entry) = head.peek()?;
                let seq = **seq;
                let waited = now.saturating_duration_since(entry.created_at);
                Some(((base.aged(waited, aging), seq), i))
            })
            .min()?
            .1;
        self.heads[best].1.next().map(|(_, entry)| entry.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp::from_millis(1_000_000);
    const AGING: Duration = Duration::from_secs(300);

    fn at(secs: u64) -> Timestamp {
        T0.checked_add(Duration::from_secs(secs)).unwrap()
    }

    fn p(level: u64) -> Priority {
        Priority::new(level).unwrap()
    }

    /// Reservations as (priority, created at secs); returns the ids in insertion order.
    fn queue(entries: &[(u64, u64)]) -> (Queue, Vec<ReservationId>) {
        let mut q = Queue::default();
        let ids: Vec<_> = entries.iter().map(|_| ReservationId::generate()).collect();
        for (seq, (&(level, created), id)) in entries.iter().zip(&ids).enumerate() {
            q.insert(p(level), seq as u64, *id, at(created));
        }
        (q, ids)
    }

    fn order(q: &Queue, now: Timestamp, ids: &[ReservationId]) -> Vec<usize> {
        q.in_order(now, AGING)
            .map(|id| ids.iter().position(|i| *i == id).unwrap())
            .collect()
    }

    #[test]
    fn higher_priority_first_and_fifo_within_a_priority() {
        let (q, ids) = queue(&[(5, 0), (1, 1), (5, 2), (10, 3), (1, 4)]);
        assert_eq!(order(&q, at(5), &ids), [1, 4, 0, 2, 3]);
        assert_eq!(q.len(), 5);
    }

    #[test]
    fn waiting_improves_the_effective_priority() {
        // Everyone ages at the same rate, so aging lets an old request catch up with
        // newer, higher-priority ones at level 1, where the older one goes first.
        let (q, ids) = queue(&[(9, 0), (5, 100)]);
        assert_eq!(order(&q, at(2_399), &ids), [1, 0], "level 2 against 1");
        assert_eq!(
            order(&q, at(2_400), &ids),
            [0, 1],
            "both level 1: the older first"
        );
    }

    #[test]
    fn a_waiting_reservation_overtakes_newcomers_of_higher_priority() {
        let (q, ids) = queue(&[(10, 0), (1, 2_650)]);
        assert_eq!(order(&q, at(2_660), &ids), [1, 0], "level 2 against 1");
        assert_eq!(
            order(&q, at(2_700), &ids),
            [0, 1],
            "after 9 periods, level 1 and older"
        );
    }

    #[test]
    fn removed_reservations_are_skipped() {
        let (mut q, ids) = queue(&[(5, 0), (5, 1), (5, 2)]);
        q.remove(p(5), 1);
        q.remove(p(5), 1);
        assert_eq!(order(&q, at(3), &ids), [0, 2]);
        assert_eq!(q.len(), 2);
    }
}
