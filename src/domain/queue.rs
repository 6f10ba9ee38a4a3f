//! The order in which pending reservations are served.
//!
//! Served by *effective* priority (1 first), FIFO among equals. A reservation's effective
//! priority improves by one level per `aging` period waited, so nothing waits forever.
//!
//! Ten FIFO buckets, one per base priority. Within a bucket the older reservation has
//! waited longer, so its effective priority is never worse: each bucket is already in
//! serving order, and the queue is a lazy ten-way merge of the buckets. Walking the first
//! k reservations costs O(k), whatever the length of the queue.
//!
//! Each entry also carries its *shape*: a small number standing for what the reservation
//! asks for (its groups' criteria and its TTL), the same for every reservation asking the
//! same. Serving skips every waiter of a shape that nothing free can serve by comparing
//! numbers, without touching the reservations themselves: thousands of waiters cost what
//! their queue entries cost, not a cache miss each.

use std::collections::btree_map;
use std::collections::{BTreeMap, HashMap};
use std::iter::Peekable;
use std::time::Duration;

use super::clock::Timestamp;
use super::reservation::{Criteria, Priority, ReservationId};
use super::resource::Ttl;

/// What a reservation asks for, as far as serving is concerned.
pub(crate) type ShapeKey = (Vec<Criteria>, Ttl);

/// A shape's number, dense from 0: index a `Vec<bool>` with it.
pub(crate) type Shape = usize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    id: ReservationId,
    created_at: Timestamp,
    shape: Shape,
}

#[derive(Debug, Default)]
pub(crate) struct Queue {
    /// `buckets[p - 1]`: pending reservations of base priority p, by creation sequence.
    buckets: [BTreeMap<u64, Entry>; 10],
    len: usize,
    /// Interned shapes: number and how many queued reservations have it.
    shapes: HashMap<ShapeKey, (Shape, usize)>,
    /// By number: the key (to forget it when unused); `None` for a free number.
    shape_keys: Vec<Option<ShapeKey>>,
}

impl Queue {
    pub(crate) fn insert(
        &mut self,
        priority: Priority,
        seq: u64,
        id: ReservationId,
        created_at: Timestamp,
        shape: ShapeKey,
    ) {
        let shape = self.intern(shape);
        let previous = self.bucket(priority).insert(
            seq,
            Entry {
                id,
                created_at,
                shape,
            },
        );
        debug_assert!(previous.is_none(), "sequence numbers are unique");
        self.len += 1;
    }

    pub(crate) fn remove(&mut self, priority: Priority, seq: u64) {
        if let Some(entry) = self.bucket(priority).remove(&seq) {
            self.len -= 1;
            self.release(entry.shape);
        }
    }

    /// How many shape numbers are in use or free: the length for a `Vec` indexed by shape.
    pub(crate) fn shape_count(&self) -> usize {
        self.shape_keys.len()
    }

    fn intern(&mut self, key: ShapeKey) -> Shape {
        if let Some((shape, refs)) = self.shapes.get_mut(&key) {
            *refs += 1;
            return *shape;
        }
        let shape = match self.shape_keys.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                self.shape_keys.push(None);
                self.shape_keys.len() - 1
            }
        };
        self.shape_keys[shape] = Some(key.clone());
        self.shapes.insert(key, (shape, 1));
        shape
    }

    fn release(&mut self, shape: Shape) {
        let key = self.shape_keys[shape].as_ref().expect("a live shape");
        let (_, refs) = self.shapes.get_mut(key).expect("interned");
        *refs -= 1;
        if *refs == 0 {
            let key = self.shape_keys[shape].take().expect("a live shape");
            self.shapes.remove(&key);
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
                .filter(|(bucket, _)| !bucket.is_empty())
                .map(|(bucket, level)| {
                    let priority = Priority::new(u64::from(level)).expect("1..=10");
                    (priority, bucket.iter().peekable())
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
    /// A reservation and its shape.
    type Item = (ReservationId, Shape);

    fn next(&mut self) -> Option<(ReservationId, Shape)> {
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
        self.heads[best]
            .1
            .next()
            .map(|(_, entry)| (entry.id, entry.shape))
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
            q.insert(
                p(level),
                seq as u64,
                *id,
                at(created),
                (Vec::new(), Ttl::DEFAULT),
            );
        }
        (q, ids)
    }

    fn order(q: &Queue, now: Timestamp, ids: &[ReservationId]) -> Vec<usize> {
        q.in_order(now, AGING)
            .map(|(id, _)| ids.iter().position(|i| *i == id).unwrap())
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

    #[test]
    fn equal_requests_share_a_shape_that_is_forgotten_with_its_last_user() {
        let mut q = Queue::default();
        let key = |tag: &str| (vec![Criteria::Tags(vec![tag.to_owned()])], Ttl::DEFAULT);
        q.insert(p(5), 0, ReservationId::generate(), at(0), key("a"));
        q.insert(p(5), 1, ReservationId::generate(), at(0), key("b"));
        q.insert(p(1), 2, ReservationId::generate(), at(0), key("a"));
        let shapes: Vec<Shape> = q.in_order(at(0), AGING).map(|(_, s)| s).collect();
        assert_eq!(shapes, [0, 0, 1]);
        q.remove(p(5), 0);
        q.remove(p(1), 2);
        assert_eq!(q.shapes.len(), 1, "no reservation asks for a any more");
        q.insert(p(5), 3, ReservationId::generate(), at(0), key("c"));
        assert_eq!(q.shape_count(), 2, "the free number is reused");
    }
}
