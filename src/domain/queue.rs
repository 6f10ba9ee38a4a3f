//! The order in which pending reservations are served.
//!
//! Served by *effective* priority (1 first), FIFO among equals. A reservation's effective
//! priority improves by one level per `aging` period waited, so nothing waits forever.
//!
//! Ten buckets, one per base priority, each in creation order. Within a bucket the older
//! reservation has waited longer, so its effective priority is never worse: each bucket
//! is already in serving order, and the queue is a lazy ten-way merge of the buckets.
//! Walking the first k reservations costs O(k), whatever the length of the queue.
//!
//! A bucket is a vector in creation order plus a Fenwick tree counting the live entries
//! (a removed entry stays, marked, until they outnumber the live ones; then the bucket
//! is compacted). Serving order is a sort key that grows along each bucket
//! (effective priority, then creation), so the place of a reservation in the whole
//! queue is, per bucket, one binary search for how many entries sort before it and one
//! prefix count: O(log n), where walking the queue to count was O(n). Inserting (at the
//! end of its bucket) and removing are O(log n) too.
//!
//! Each entry also carries its *shape*: a small number standing for what the reservation
//! asks for (its groups' criteria and its TTL), the same for every reservation asking the
//! same; and each shape lists its groups' *criteria numbers*, the same for every
//! reservation asking by the same criteria whatever its TTL or quantity. Serving skips
//! waiters by comparing these numbers, without touching the reservations themselves
//! (see `broker/queue.rs`).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use super::clock::Timestamp;
use super::reservation::{Criteria, Priority, ReservationId};
use super::resource::Ttl;

/// What a reservation asks for, as far as serving is concerned.
pub(crate) type ShapeKey = (Vec<Criteria>, Ttl);

/// A shape's number, dense from 0: index a `Vec` with it.
pub(crate) type Shape = usize;

/// A criteria's number, dense from 0: index a `Vec` with it.
pub(crate) type CritNo = usize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    seq: u64,
    id: ReservationId,
    created_at: Timestamp,
    shape: Shape,
    live: bool,
}

/// Numbers for values, reused once no queued reservation uses them.
#[derive(Debug)]
struct Interner<K> {
    numbers: HashMap<K, (usize, usize)>,
    /// By number: the value (to forget it when unused); `None` for a free number.
    keys: Vec<Option<K>>,
    free: Vec<usize>,
}

impl<K> Default for Interner<K> {
    fn default() -> Self {
        Interner {
            numbers: HashMap::new(),
            keys: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<K: Clone + Eq + Hash> Interner<K> {
    /// The number of `key`, counting one more user.
    fn intern(&mut self, key: K) -> usize {
        if let Some((number, refs)) = self.numbers.get_mut(&key) {
            *refs += 1;
            return *number;
        }
        let number = match self.free.pop() {
            Some(free) => free,
            None => {
                self.keys.push(None);
                self.keys.len() - 1
            }
        };
        self.keys[number] = Some(key.clone());
        self.numbers.insert(key, (number, 1));
        number
    }

    /// One user fewer; the value is forgotten with its last. Returns it then.
    fn release(&mut self, number: usize) -> Option<K> {
        let key = self.keys[number].as_ref().expect("a live number");
        let (_, refs) = self.numbers.get_mut(key).expect("interned");
        *refs -= 1;
        if *refs > 0 {
            return None;
        }
        let key = self.keys[number].take().expect("a live number");
        self.numbers.remove(&key);
        self.free.push(number);
        Some(key)
    }

    fn get(&self, number: usize) -> &K {
        self.keys[number].as_ref().expect("a live number")
    }
}

#[derive(Debug, Default)]
pub(crate) struct Queue {
    /// `buckets[p - 1]`: pending reservations of base priority p, by creation sequence.
    buckets: [Bucket; 10],
    len: usize,
    shapes: Interner<ShapeKey>,
    /// By shape number: its groups' criteria numbers (empty for a free number).
    shape_criteria: Vec<Vec<CritNo>>,
    criteria: Interner<Criteria>,
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
        self.bucket(priority).push(Entry {
            seq,
            id,
            created_at,
            shape,
            live: true,
        });
        self.len += 1;
    }

    pub(crate) fn remove(&mut self, priority: Priority, seq: u64) {
        if let Some(entry) = self.bucket(priority).remove(seq) {
            self.len -= 1;
            self.release(entry.shape);
        }
    }

    /// How many criteria numbers are in use or free: the length for a `Vec` indexed by
    /// criteria number.
    pub(crate) fn criteria_count(&self) -> usize {
        self.criteria.keys.len()
    }

    /// The criteria number of each group of `shape`, in group order.
    pub(crate) fn shape_criteria(&self, shape: Shape) -> &[CritNo] {
        &self.shape_criteria[shape]
    }

    /// The TTL every reservation of `shape` asks for.
    pub(crate) fn shape_ttl(&self, shape: Shape) -> Ttl {
        self.shapes.get(shape).1
    }

    /// The criteria a live number stands for.
    pub(crate) fn criteria(&self, number: CritNo) -> &Criteria {
        self.criteria.get(number)
    }

    /// Every criteria some queued reservation asks by, with its number.
    pub(crate) fn every_criteria(&self) -> impl Iterator<Item = (CritNo, &Criteria)> {
        self.criteria
            .keys
            .iter()
            .enumerate()
            .filter_map(|(n, k)| k.as_ref().map(|k| (n, k)))
    }

    fn intern(&mut self, key: ShapeKey) -> Shape {
        let shape = self.shapes.intern(key);
        if self.shape_criteria.len() <= shape {
            self.shape_criteria.resize(shape + 1, Vec::new());
        }
        if self.shape_criteria[shape].is_empty() {
            let groups = self.shapes.get(shape).0.clone();
            self.shape_criteria[shape] = groups
                .into_iter()
                .map(|c| self.criteria.intern(c))
                .collect();
        }
        shape
    }

    fn release(&mut self, shape: Shape) {
        if self.shapes.release(shape).is_some() {
            for number in std::mem::take(&mut self.shape_criteria[shape]) {
                self.criteria.release(number);
            }
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
                .filter(|(bucket, _)| bucket.live > 0)
                .map(|(bucket, level)| {
                    let priority = Priority::new(u64::from(level)).expect("1..=10");
                    (priority, &bucket.entries[..], 0)
                })
                .collect(),
            now,
            aging,
        }
    }

    /// The 1-based place at `now` of the queued reservation `seq` of base `priority`,
    /// created at `created_at`. O(log n) per bucket.
    pub(crate) fn position(
        &self,
        priority: Priority,
        seq: u64,
        created_at: Timestamp,
        now: Timestamp,
        aging: Duration,
    ) -> usize {
        let key = sort_key(priority, seq, created_at, now, aging);
        let ahead: usize = self
            .buckets
            .iter()
            .zip(1u8..)
            .filter(|(bucket, _)| bucket.live > 0)
            .map(|(bucket, level)| {
                let base = Priority::new(u64::from(level)).expect("1..=10");
                let before = bucket
                    .entries
                    .partition_point(|e| sort_key(base, e.seq, e.created_at, now, aging) < key);
                bucket.live_before(before)
            })
            .sum();
        ahead + 1
    }

    fn bucket(&mut self, priority: Priority) -> &mut Bucket {
        &mut self.buckets[usize::from(priority.get()) - 1]
    }
}

/// Where a reservation stands in serving order at `now`: lower first.
pub(crate) fn sort_key(
    base: Priority,
    seq: u64,
    created_at: Timestamp,
    now: Timestamp,
    aging: Duration,
) -> (Priority, u64) {
    let waited = now.saturating_duration_since(created_at);
    (base.aged(waited, aging), seq)
}

/// One base priority's reservations, in creation order, with the live ones counted.
#[derive(Debug, Default)]
struct Bucket {
    entries: Vec<Entry>,
    /// A Fenwick tree over `entries`: 1 per live entry.
    counts: Vec<u32>,
    live: usize,
}

impl Bucket {
    fn push(&mut self, entry: Entry) {
        debug_assert!(
            self.entries.last().is_none_or(|last| last.seq < entry.seq),
            "sequence numbers grow"
        );
        self.entries.push(entry);
        // Node i (1-based) covers the entries i - lowbit(i) + 1 ..= i: the new one, and
        // the live ones among those before it that the node spans.
        let i = self.entries.len();
        let from = i - (i & i.wrapping_neg());
        let spanned = self.live_before(i - 1) - self.live_before(from);
        self.counts.push(1 + spanned as u32);
        self.live += 1;
    }

    fn remove(&mut self, seq: u64) -> Option<Entry> {
        let at = self.entries.binary_search_by_key(&seq, |e| e.seq).ok()?;
        let entry = &mut self.entries[at];
        if !entry.live {
            return None;
        }
        entry.live = false;
        let entry = *entry;
        let mut i = at + 1;
        while i <= self.counts.len() {
            self.counts[i - 1] -= 1;
            i += i & i.wrapping_neg();
        }
        self.live -= 1;
        if self.entries.len() > 32 && self.entries.len() > 2 * self.live {
            self.compact();
        }
        Some(entry)
    }

    /// How many of the first `n` entries are live.
    fn live_before(&self, n: usize) -> usize {
        let mut sum = 0;
        let mut i = n;
        while i > 0 {
            sum += self.counts[i - 1] as usize;
            i &= i - 1;
        }
        sum
    }

    /// Drops the removed entries and rebuilds the counts: O(n), once the removed ones
    /// outnumber the live, so O(1) per removal over time.
    fn compact(&mut self) {
        let entries = std::mem::take(&mut self.entries);
        self.counts.clear();
        self.live = 0;
        for entry in entries.into_iter().filter(|e| e.live) {
            self.push(entry);
        }
    }
}

/// See [`Queue::in_order`].
pub(crate) struct InOrder<'a> {
    /// Per non-empty bucket: its base priority, its entries, and the next to look at.
    heads: Vec<(Priority, &'a [Entry], usize)>,
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
            .filter_map(|(i, (base, entries, next))| {
                while entries.get(*next).is_some_and(|e| !e.live) {
                    *next += 1;
                }
                let entry = entries.get(*next)?;
                Some((sort_key(*base, entry.seq, entry.created_at, now, aging), i))
            })
            .min()?
            .1;
        let (_, entries, next) = &mut self.heads[best];
        let entry = entries[*next];
        *next += 1;
        Some((entry.id, entry.shape))
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
        let ids: Vec<_> = (1..=entries.len() as u128)
            .map(ReservationId::from_u128)
            .collect();
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

    /// Every reservation's position, as `position` computes it and as counting along
    /// the serving order does.
    fn positions(
        q: &Queue,
        now: Timestamp,
        entries: &[(u64, u64)],
        ids: &[ReservationId],
        gone: &[usize],
    ) {
        let order: Vec<ReservationId> = q.in_order(now, AGING).map(|(id, _)| id).collect();
        for (seq, (&(level, created), id)) in entries.iter().zip(ids).enumerate() {
            if gone.contains(&seq) {
                continue;
            }
            let counted = order.iter().position(|i| i == id).unwrap() + 1;
            assert_eq!(
                q.position(p(level), seq as u64, at(created), now, AGING),
                counted,
                "reservation {seq} at {now:?}"
            );
        }
    }

    #[test]
    fn a_position_is_its_place_in_serving_order_without_walking_the_queue() {
        let entries: Vec<(u64, u64)> = (0..300).map(|i| (1 + (i * 7) % 10, i * 10)).collect();
        let (mut q, ids) = queue(&entries);
        let mut gone = Vec::new();
        for now in [at(3_000), at(4_000), at(9_000), at(50_000)] {
            positions(&q, now, &entries, &ids, &gone);
        }
        // Remove most of them, so the buckets compact, and check again.
        for (seq, &(level, _)) in entries.iter().enumerate() {
            if seq % 5 != 0 {
                q.remove(p(level), seq as u64);
                gone.push(seq);
            }
        }
        assert_eq!(q.len(), 60);
        for now in [at(3_000), at(9_000)] {
            positions(&q, now, &entries, &ids, &gone);
        }
    }

    #[test]
    fn equal_requests_share_a_shape_that_is_forgotten_with_its_last_user() {
        let mut q = Queue::default();
        let key = |tag: &str| (vec![Criteria::Tags(vec![tag.to_owned()])], Ttl::DEFAULT);
        q.insert(p(5), 0, ReservationId::from_u128(101), at(0), key("a"));
        q.insert(p(5), 1, ReservationId::from_u128(102), at(0), key("b"));
        q.insert(p(1), 2, ReservationId::from_u128(103), at(0), key("a"));
        let shapes: Vec<Shape> = q.in_order(at(0), AGING).map(|(_, s)| s).collect();
        assert_eq!(shapes, [0, 0, 1]);
        q.remove(p(5), 0);
        q.remove(p(1), 2);
        assert_eq!(
            q.shapes.numbers.len(),
            1,
            "no reservation asks for a any more"
        );
        assert_eq!(q.every_criteria().count(), 1);
        q.insert(p(5), 3, ReservationId::from_u128(104), at(0), key("c"));
        assert_eq!(q.shapes.keys.len(), 2, "the free number is reused");
    }
}
