//! Choosing resources for a request of several groups, atomically and without overlap.
//!
//! "2 resources matching `dut && arm` and 1 matching `psu`" is a bipartite matching
//! between groups (each wanting `quantity` resources) and candidate resources. Each
//! group first takes its candidates greedily, lowest ids first, with a cursor over its
//! list that never moves back (a resource once given out stays given out), so a request
//! whose groups do not compete costs one pass over its candidate lists: 10 000 resources
//! in one group cost 10 000 steps, not 10 000 searches.
//!
//! Greedy picking fails when groups overlap (a resource matching both groups, taken by
//! the wrong one). Only then does a group search an *augmenting path*: take a resource
//! from another group that can replace it with one of its own, and so on, breadth
//! first over the (at most 32) groups, iteratively (no recursion, whatever the
//! quantities). To find "a resource of my list that group `h` holds" without scanning
//! lists, each pair of groups keeps a stack of such resources, refreshed as resources
//! change hands and cleaned lazily; it is built the first time a search is needed.
//! Every path found adds one resource to the matching, so the whole costs
//! O(candidates + augmentations × groups²).
//!
//! Each group needs at most `total` candidates, `total` being the number of resources of
//! the whole request: if a matching exists, one exists within the first `total`
//! candidates of every group (at most `total - 1` of them are taken by other groups). So
//! candidate lists stay short even when thousands of resources are free.

use std::collections::{HashMap, VecDeque};

use super::resource::ResourceId;

/// Why a request cannot be allocated from the candidates offered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shortfall {
    /// Per group: the candidates found (at most the `total` asked for), in id order.
    pub candidates: Vec<Vec<ResourceId>>,
}

/// Picks `quantities[g]` distinct resources for every group `g`, from
/// `candidates(g, limit)`, which returns up to `limit` eligible resources of group `g` in
/// id order. Prefers lower ids. Returns `(group, resource)` pairs in group order.
///
/// # Errors
/// [`Shortfall`] when no choice serves every group at once.
pub fn allocate(
    quantities: &[u32],
    mut candidates: impl FnMut(usize, usize) -> Vec<ResourceId>,
) -> Result<Vec<(usize, ResourceId)>, Shortfall> {
    let total: usize = quantities.iter().map(|&q| q as usize).sum();
    let lists: Vec<Vec<ResourceId>> = (0..quantities.len())
        .map(|g| candidates(g, total))
        .collect();
    if lists
        .iter()
        .zip(quantities)
        .any(|(list, &q)| list.len() < q as usize)
    {
        return Err(Shortfall { candidates: lists });
    }
    let mut matching = Matching::new(&lists);
    for (g, &q) in quantities.iter().enumerate() {
        while matching.count[g] < q as usize {
            match matching.next_unowned(g) {
                Some(r) => matching.give(r, g),
                None if matching.augment(g) => {}
                None => return Err(Shortfall { candidates: lists }),
            }
        }
    }
    let mut chosen: Vec<(usize, ResourceId)> = matching
        .owner
        .into_iter()
        .map(|(resource, group)| (group, resource))
        .collect();
    chosen.sort_unstable();
    Ok(chosen)
}

/// A matching in progress: who owns which resource.
struct Matching<'a> {
    lists: &'a [Vec<ResourceId>],
    owner: HashMap<ResourceId, usize>,
    count: Vec<usize>,
    /// Per group, the index in its list before which every resource is owned.
    cursor: Vec<usize>,
    /// Built by the first augmenting search; `None` while greedy picking suffices.
    pairs: Option<Pairs>,
}

/// For augmenting searches: which groups list each resource, and per pair of groups
/// `(g, h)` a stack of resources of `g`'s list that `h` owned when pushed (stale entries
/// are dropped when met).
struct Pairs {
    listed_by: HashMap<ResourceId, Vec<usize>>,
    /// Keyed `(g, h)`; only pairs of groups that share resources have an entry.
    held_by: HashMap<(usize, usize), Vec<ResourceId>>,
}

impl<'a> Matching<'a> {
    fn new(lists: &'a [Vec<ResourceId>]) -> Self {
        let total = lists.iter().map(Vec::len).sum::<usize>();
        Matching {
            lists,
            owner: HashMap::with_capacity(total.min(1 << 16)),
            count: vec![0; lists.len()],
            cursor: vec![0; lists.len()],
            pairs: None,
        }
    }

    /// The first resource of `g`'s list nobody owns. Owned resources stay owned, so the
    /// cursor only moves forward.
    fn next_unowned(&mut self, g: usize) -> Option<ResourceId> {
        let list = &self.lists[g];
        while let Some(r) = list.get(self.cursor[g]) {
            if !self.owner.contains_key(r) {
                return Some(*r);
            }
            self.cursor[g] += 1;
        }
        None
    }

    /// Makes `g` the owner of `r` (taking it from its owner, if any).
    fn give(&mut self, r: ResourceId, g: usize) {
        if let Some(previous) = self.owner.insert(r, g) {
            self.count[previous] -= 1;
        }
        self.count[g] += 1;
        if let Some(pairs) = &mut self.pairs {
            pairs.owned(r, g);
        }
    }

    /// Finds room for one more resource in group `g0`: a path `g0` takes `r1` from `h1`,
    /// `h1` takes `r2` from `h2`, ... and the last group takes a resource nobody owns.
    /// Breadth first over the groups; `false` when there is none (the matching is
    /// maximal for `g0`).
    fn augment(&mut self, g0: usize) -> bool {
        let groups = self.lists.len();
        if self.pairs.is_none() {
            self.pairs = Some(Pairs::build(self.lists, &self.owner));
        }
        // How each group was reached: from which group, through which resource.
        let mut came_from: Vec<Option<(usize, ResourceId)>> = vec![None; groups];
        let mut seen = vec![false; groups];
        seen[g0] = true;
        let mut queue = VecDeque::from([g0]);
        while let Some(g) = queue.pop_front() {
            if g != g0
                && let Some(free) = self.next_unowned(g)
            {
                // Shift along the path: `g` takes the free one, each group before it
                // takes what the next gave up.
                self.give(free, g);
                let mut at = g;
                while let Some((from, r)) = came_from[at] {
                    self.give(r, from);
                    at = from;
                }
                return true;
            }
            for h in 0..groups {
                if seen[h] || h == g {
                    continue;
                }
                if let Some(r) = self.held_in_list(g, h) {
                    seen[h] = true;
                    came_from[h] = Some((g, r));
                    queue.push_back(h);
                }
            }
        }
        false
    }

    /// A resource of `g`'s list that `h` owns, if any.
    fn held_in_list(&mut self, g: usize, h: usize) -> Option<ResourceId> {
        let pairs = self.pairs.as_mut().expect("built before searching");
        let stack = pairs.held_by.get_mut(&(g, h))?;
        while let Some(&r) = stack.last() {
            if self.owner.get(&r) == Some(&h) {
                return Some(r);
            }
            stack.pop();
        }
        None
    }
}

impl Pairs {
    fn build(lists: &[Vec<ResourceId>], owner: &HashMap<ResourceId, usize>) -> Self {
        let mut listed_by: HashMap<ResourceId, Vec<usize>> = HashMap::new();
        for (g, list) in lists.iter().enumerate() {
            for &r in list {
                listed_by.entry(r).or_default().push(g);
            }
        }
        let mut held_by: HashMap<(usize, usize), Vec<ResourceId>> = HashMap::new();
        // In list order, highest ids pushed first, so the lowest is offered first (and
        // the result does not depend on the hash map's order).
        for (g, list) in lists.iter().enumerate() {
            for &r in list.iter().rev() {
                if let Some(&h) = owner.get(&r)
                    && h != g
                {
                    held_by.entry((g, h)).or_default().push(r);
                }
            }
        }
        Pairs { listed_by, held_by }
    }

    /// `h` now owns `r`: every other group listing `r` can take it from `h`.
    fn owned(&mut self, r: ResourceId, h: usize) {
        if let Some(listing) = self.listed_by.get(&r) {
            for &g in listing {
                if g != h {
                    self.held_by.entry((g, h)).or_default().push(r);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(ns: &[u32]) -> Vec<ResourceId> {
        ns.iter().map(|&n| ResourceId::new(n)).collect()
    }

    /// Candidate lists per group, truncated to the limit as the broker does.
    fn from(lists: Vec<Vec<u32>>) -> impl FnMut(usize, usize) -> Vec<ResourceId> {
        move |g, limit| ids(&lists[g]).into_iter().take(limit).collect()
    }

    fn pairs(p: &[(usize, u32)]) -> Vec<(usize, ResourceId)> {
        p.iter().map(|&(g, n)| (g, ResourceId::new(n))).collect()
    }

    #[test]
    fn one_group_takes_the_lowest_ids() {
        assert_eq!(
            allocate(&[2], from(vec![vec![3, 5, 9]])),
            Ok(pairs(&[(0, 3), (0, 5)]))
        );
    }

    #[test]
    fn overlapping_groups_are_matched_not_picked_greedily() {
        // Group 0 may use 1 or 2; group 1 only 1. Greedy would give 1 to group 0.
        assert_eq!(
            allocate(&[1, 1], from(vec![vec![1, 2], vec![1]])),
            Ok(pairs(&[(0, 2), (1, 1)]))
        );
    }

    #[test]
    fn a_shortfall_reports_the_candidates_found() {
        let err = allocate(&[2, 1], from(vec![vec![1, 2], vec![1, 2]])).unwrap_err();
        assert_eq!(err.candidates, vec![ids(&[1, 2]), ids(&[1, 2])]);
        let err = allocate(&[3], from(vec![vec![4]])).unwrap_err();
        assert_eq!(err.candidates, vec![ids(&[4])]);
    }

    #[test]
    fn candidate_lists_are_capped_at_the_total_asked_for() {
        let mut limits = Vec::new();
        let result = allocate(&[1, 2], |g, limit| {
            limits.push(limit);
            ids(&[10 + g as u32 * 10, 11 + g as u32 * 10, 12 + g as u32 * 10])
        });
        assert_eq!(limits, [3, 3]);
        assert_eq!(result, Ok(pairs(&[(0, 10), (1, 20), (1, 21)])));
    }

    #[test]
    fn nothing_asked_is_nothing_given() {
        assert_eq!(allocate(&[], from(vec![])), Ok(vec![]));
    }

    #[test]
    fn thousands_of_conflicts_are_resolved_by_moving_the_greedy_choice() {
        // Greedy gives group 0 all of 1..=5000, the only resources group 1 may use:
        // every one of group 1's picks moves one of group 0's to 5001.. instead.
        let result = allocate(
            &[5_000, 5_000],
            from(vec![(1..=10_000).collect(), (1..=5_000).collect()]),
        )
        .unwrap();
        let of = |g| -> Vec<u32> {
            result
                .iter()
                .filter(|(group, _)| *group == g)
                .map(|(_, r)| r.get())
                .collect()
        };
        assert_eq!(of(0), (5_001..=10_000).collect::<Vec<_>>());
        assert_eq!(of(1), (1..=5_000).collect::<Vec<_>>());
    }

    #[test]
    fn a_path_through_every_group_is_found() {
        // Group g may use resources g and g + 1; group 31 only 31. Greedy gives each
        // group g its resource g, so group 31 must push every other group one up.
        let mut lists: Vec<Vec<u32>> = (1..32).map(|g| vec![g, g + 1]).collect();
        lists.push(vec![1]);
        let quantities = vec![1; 32];
        let result = allocate(&quantities, from(lists)).unwrap();
        let expected: Vec<(usize, u32)> = (0..31)
            .map(|g| (g, g as u32 + 2))
            .chain([(31, 1)])
            .collect();
        assert_eq!(result, pairs(&expected));
    }

    /// Whether `quantities` can be met from `lists` without sharing, by trying every
    /// assignment (small cases only).
    fn feasible(quantities: &[u32], lists: &[Vec<u32>]) -> bool {
        fn go(slots: &[usize], lists: &[Vec<u32>], used: &mut Vec<u32>) -> bool {
            let Some((&g, rest)) = slots.split_first() else {
                return true;
            };
            for &r in &lists[g] {
                if !used.contains(&r) {
                    used.push(r);
                    if go(rest, lists, used) {
                        return true;
                    }
                    used.pop();
                }
            }
            false
        }
        let slots: Vec<usize> = quantities
            .iter()
            .enumerate()
            .flat_map(|(g, &q)| std::iter::repeat_n(g, q as usize))
            .collect();
        go(&slots, lists, &mut Vec::new())
    }

    proptest::proptest! {
        #[test]
        fn allocates_exactly_when_some_choice_serves_every_group(
            groups in proptest::collection::vec(
                (1u32..=3, proptest::collection::btree_set(1u32..=8, 0..=6)),
                1..=4,
            )
        ) {
            let quantities: Vec<u32> = groups.iter().map(|(q, _)| *q).collect();
            let lists: Vec<Vec<u32>> = groups.iter().map(|(_, l)| l.iter().copied().collect()).collect();
            let result = allocate(&quantities, from(lists.clone()));
            proptest::prop_assert_eq!(result.is_ok(), feasible(&quantities, &lists));
            if let Ok(chosen) = result {
                let mut taken: Vec<u32> = chosen.iter().map(|(_, r)| r.get()).collect();
                taken.sort_unstable();
                taken.dedup();
                proptest::prop_assert_eq!(taken.len(), chosen.len(), "no resource twice");
                for (g, &q) in quantities.iter().enumerate() {
                    let mine: Vec<u32> = chosen.iter().filter(|(h, _)| *h == g).map(|(_, r)| r.get()).collect();
                    proptest::prop_assert_eq!(mine.len(), q as usize);
                    proptest::prop_assert!(mine.iter().all(|r| lists[g].contains(r)));
                }
            }
        }
    }
}
