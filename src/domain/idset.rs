//! [`IdSet`]: an ordered set of resource ids that is a B-tree while sparse and a bitmap
//! once dense.
//!
//! The tag index keeps two sets per tag and two for the lab, and every lock, unlock and
//! expiry inserts into or removes from one per tag the resource carries. In a B-tree of
//! 50 000 ids that is a descent of a few cache misses (about 100 ns); in a bitmap it is
//! one bit. A bitmap costs `universe / 8` bytes whatever it holds, so a set becomes one
//! only when it holds at least one id in [`DENSE_EVERY`] of its range, which keeps it no
//! larger than the B-tree it replaces, and turns back into a B-tree below a quarter of
//! that density (no flapping at the edge). Iteration is in id order both ways, as the
//! B-tree's: a dense set is read a word (64 ids) at a time.

use std::collections::BTreeSet;

use super::resource::ResourceId;

/// A set is dense when it holds at least one id per this many of `0..=max`.
const DENSE_EVERY: usize = 32;
/// Below this many ids a set stays a B-tree: small sets are cheap either way.
const DENSE_MIN: usize = 1_024;

#[derive(Clone, Debug)]
pub(crate) enum IdSet {
    Sparse(BTreeSet<ResourceId>),
    Dense { words: Vec<u64>, len: usize },
}

impl Default for IdSet {
    fn default() -> Self {
        IdSet::Sparse(BTreeSet::new())
    }
}

impl PartialEq for IdSet {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

fn bit(id: ResourceId) -> (usize, u64) {
    let n = id.get() as usize;
    (n / 64, 1 << (n % 64))
}

impl IdSet {
    pub(crate) fn len(&self) -> usize {
        match self {
            IdSet::Sparse(set) => set.len(),
            IdSet::Dense { len, .. } => *len,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn contains(&self, id: &ResourceId) -> bool {
        match self {
            IdSet::Sparse(set) => set.contains(id),
            IdSet::Dense { words, .. } => {
                let (word, mask) = bit(*id);
                words.get(word).is_some_and(|w| w & mask != 0)
            }
        }
    }

    /// Adds `id`; whether it was new.
    pub(crate) fn insert(&mut self, id: ResourceId) -> bool {
        let added = match self {
            IdSet::Sparse(set) => set.insert(id),
            IdSet::Dense { words, len } => {
                let (word, mask) = bit(id);
                if words.len() <= word {
                    words.resize(word + 1, 0);
                }
                let added = words[word] & mask == 0;
                words[word] |= mask;
                *len += usize::from(added);
                added
            }
        };
        if let IdSet::Sparse(set) = self
            && set.len() >= DENSE_MIN
            && set.len() * DENSE_EVERY > set.last().map_or(0, |id| id.get() as usize)
        {
            let mut words = vec![0u64; set.last().map_or(0, |id| id.get() as usize / 64 + 1)];
            for &id in set.iter() {
                let (word, mask) = bit(id);
                words[word] |= mask;
            }
            *self = IdSet::Dense {
                len: set.len(),
                words,
            };
        }
        added
    }

    /// Takes `id` out; whether it was there.
    pub(crate) fn remove(&mut self, id: &ResourceId) -> bool {
        let removed = match self {
            IdSet::Sparse(set) => set.remove(id),
            IdSet::Dense { words, len } => {
                let (word, mask) = bit(*id);
                let removed = words.get(word).is_some_and(|w| w & mask != 0);
                if removed {
                    words[word] &= !mask;
                    *len -= 1;
                }
                removed
            }
        };
        if let IdSet::Dense { words, len } = self
            && *len * DENSE_EVERY * 4 < words.len() * 64
        {
            *self = IdSet::Sparse(DenseIter::new(words).collect());
        }
        removed
    }

    /// Every id, in ascending order (reversible).
    pub(crate) fn iter(&self) -> Iter<'_> {
        match self {
            IdSet::Sparse(set) => Iter::Sparse(set.iter()),
            IdSet::Dense { words, .. } => Iter::Dense(DenseIter::new(words)),
        }
    }

    /// Whether this set is held as a bitmap (tests).
    #[cfg(test)]
    fn is_dense(&self) -> bool {
        matches!(self, IdSet::Dense { .. })
    }
}

impl<'a> IntoIterator for &'a IdSet {
    type Item = ResourceId;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl FromIterator<ResourceId> for IdSet {
    fn from_iter<I: IntoIterator<Item = ResourceId>>(ids: I) -> Self {
        let mut set = IdSet::default();
        for id in ids {
            set.insert(id);
        }
        set
    }
}

/// See [`IdSet::iter`].
pub(crate) enum Iter<'a> {
    Sparse(std::collections::btree_set::Iter<'a, ResourceId>),
    Dense(DenseIter<'a>),
}

impl Iterator for Iter<'_> {
    type Item = ResourceId;

    fn next(&mut self) -> Option<ResourceId> {
        match self {
            Iter::Sparse(it) => it.next().copied(),
            Iter::Dense(it) => it.next(),
        }
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<ResourceId> {
        match self {
            Iter::Sparse(it) => it.next_back().copied(),
            Iter::Dense(it) => it.next_back(),
        }
    }
}

/// The ids of a bitmap, from both ends: the words `front..=back` remain, with only the
/// bits of `front_bits` (of word `front`) and `back_bits` (of word `back`) left in the
/// end words (both masks apply when they are the same word).
pub(crate) struct DenseIter<'a> {
    words: &'a [u64],
    front: usize,
    back: usize,
    front_bits: u64,
    back_bits: u64,
    done: bool,
}

impl<'a> DenseIter<'a> {
    fn new(words: &'a [u64]) -> Self {
        DenseIter {
            words,
            front: 0,
            back: words.len().saturating_sub(1),
            front_bits: words.first().copied().unwrap_or(0),
            back_bits: words.last().copied().unwrap_or(0),
            done: words.is_empty(),
        }
    }

    /// The bits left in the front word.
    fn front_left(&self) -> u64 {
        if self.front == self.back {
            self.front_bits & self.back_bits
        } else {
            self.front_bits
        }
    }

    fn back_left(&self) -> u64 {
        if self.front == self.back {
            self.front_bits & self.back_bits
        } else {
            self.back_bits
        }
    }

    fn id(word: usize, bit: u32) -> ResourceId {
        ResourceId::new(u32::try_from(word * 64 + bit as usize).expect("ids are u32"))
    }
}

impl Iterator for DenseIter<'_> {
    type Item = ResourceId;

    fn next(&mut self) -> Option<ResourceId> {
        while !self.done {
            let bits = self.front_left();
            if bits != 0 {
                let bit = bits.trailing_zeros();
                self.front_bits &= !(1 << bit);
                if self.front == self.back {
                    self.back_bits &= !(1 << bit);
                }
                return Some(Self::id(self.front, bit));
            }
            if self.front == self.back {
                self.done = true;
            } else {
                self.front += 1;
                self.front_bits = if self.front == self.back {
                    self.back_bits
                } else {
                    self.words[self.front]
                };
            }
        }
        None
    }
}

impl DoubleEndedIterator for DenseIter<'_> {
    fn next_back(&mut self) -> Option<ResourceId> {
        while !self.done {
            let bits = self.back_left();
            if bits != 0 {
                let bit = 63 - bits.leading_zeros();
                self.back_bits &= !(1 << bit);
                if self.front == self.back {
                    self.front_bits &= !(1 << bit);
                }
                return Some(Self::id(self.back, bit));
            }
            if self.front == self.back {
                self.done = true;
            } else {
                self.back -= 1;
                self.back_bits = if self.front == self.back {
                    self.front_bits
                } else {
                    self.words[self.back]
                };
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ids(set: &IdSet) -> Vec<u32> {
        set.iter().map(ResourceId::get).collect()
    }

    #[test]
    fn a_set_turns_dense_when_full_enough_and_back_when_emptied() {
        let mut set = IdSet::default();
        for n in 1..=2_000 {
            set.insert(ResourceId::new(n));
        }
        assert!(set.is_dense());
        assert_eq!(set.len(), 2_000);
        assert_eq!(ids(&set), (1..=2_000).collect::<Vec<_>>());
        assert_eq!(set.iter().next_back(), Some(ResourceId::new(2_000)));
        for n in 1..=1_990 {
            assert!(set.remove(&ResourceId::new(n)));
        }
        assert!(!set.is_dense(), "10 left of 2 000");
        assert_eq!(ids(&set), (1_991..=2_000).collect::<Vec<_>>());
        assert!(!set.remove(&ResourceId::new(5)));
    }

    #[test]
    fn a_sparse_set_stays_a_tree() {
        let set: IdSet = (0..2_000).map(|n| ResourceId::new(n * 1_000)).collect();
        assert!(!set.is_dense());
    }

    proptest! {
        #[test]
        fn behaves_as_a_btree_set(
            ops in prop::collection::vec((any::<bool>(), 0u32..3_000), 0..6_000),
            ends in prop::collection::vec(any::<bool>(), 0..200),
        ) {
            let (mut set, mut model) = (IdSet::default(), BTreeSet::new());
            for (insert, n) in ops {
                let id = ResourceId::new(n);
                if insert {
                    prop_assert_eq!(set.insert(id), model.insert(id));
                } else {
                    prop_assert_eq!(set.remove(&id), model.remove(&id));
                }
                prop_assert_eq!(set.len(), model.len());
            }
            for n in [0, 1, 63, 64, 2_999, 3_000] {
                let id = ResourceId::new(n);
                prop_assert_eq!(set.contains(&id), model.contains(&id));
            }
            prop_assert_eq!(ids(&set), model.iter().map(|id| id.get()).collect::<Vec<_>>());
            // From both ends at once.
            let (mut it, mut expected) = (set.iter(), model.iter());
            for from_front in ends {
                let (got, want) = if from_front {
                    (it.next(), expected.next().copied())
                } else {
                    (it.next_back(), expected.next_back().copied())
                };
                prop_assert_eq!(got, want);
            }
            prop_assert_eq!(it.collect::<Vec<_>>(), expected.copied().collect::<Vec<_>>());
        }
    }
}
