//! Choosing resources for a request of several groups, atomically and without overlap.
//!
//! "2 resources matching `dut && arm` and 1 matching `psu`" is a bipartite matching
//! between slots (one per resource wanted) and candidate resources. Greedy picking fails
//! when groups overlap (a resource matching both groups, taken by the wrong one), so the
//! slots are matched with augmenting paths (Kuhn's algorithm). It usually finds a
//! candidate at the first try, and only searches when groups compete.
//!
//! Each group needs at most `total` candidates, `total` being the number of slots of the
//! whole request: if a matching exists, one exists within the first `total` candidates of
//! every group (at most `total - 1` of them are taken by other slots). So candidate lists
//! stay short even when thousands of resources are free.

use std::collections::{HashMap, HashSet};

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
    let slots: Vec<usize> = quantities
        .iter()
        .enumerate()
        .flat_map(|(g, &q)| std::iter::repeat_n(g, q as usize))
        .collect();
    let mut holder: HashMap<ResourceId, usize> = HashMap::with_capacity(total);
    for slot in 0..slots.len() {
        let mut visited = HashSet::new();
        if !augment(slot, &slots, &lists, &mut holder, &mut visited) {
            return Err(Shortfall { candidates: lists });
        }
    }
    let mut chosen: Vec<(usize, ResourceId)> = holder
        .into_iter()
        .map(|(resource, slot)| (slots[slot], resource))
        .collect();
    chosen.sort_unstable();
    Ok(chosen)
}

/// Finds a resource for `slot`, moving other slots to their alternatives if need be.
fn augment(
    slot: usize,
    slots: &[usize],
    lists: &[Vec<ResourceId>],
    holder: &mut HashMap<ResourceId, usize>,
    visited: &mut HashSet<ResourceId>,
) -> bool {
    for &resource in &lists[slots[slot]] {
        if !visited.insert(resource) {
            continue;
        }
        let free = match holder.get(&resource) {
            None => true,
            Some(&other) => augment(other, slots, lists, holder, visited),
        };
        if free {
            holder.insert(resource, slot);
            return true;
        }
    }
    false
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
}
