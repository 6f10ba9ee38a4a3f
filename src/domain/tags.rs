//! The tag index: which resources carry a tag, and which of those are free (unlocked and
//! in service: [`Resource::is_lendable`]).
//!
//! Selecting by tags walks the set of the requested tag with the fewest members (free
//! ones, when looking for something to lock), in id order, so its cost follows the
//! number of candidates, not the size of the lab. Criteria that require no tag in
//! particular (`!flaky`) walk the lab-wide sets.
//!
//! It also keeps the [`Columns`] that list queries read, in the same calls, so that
//! whatever keeps the tag index right keeps them right too.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::columns::Columns;
use super::resource::{Resource, ResourceId};

/// Which resources a lookup draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pool {
    /// Every resource: can a request ever be served?
    All,
    /// Resources with no lock, in service: what can be granted now?
    Free,
}

#[derive(Debug, Default)]
pub(crate) struct TagIndex {
    by_tag: HashMap<String, TagSets>,
    /// Lab-wide sets, for criteria without a required tag.
    lab: TagSets,
    /// What list queries filter and sort on, by id.
    columns: Columns,
}

#[derive(Debug, Default)]
struct TagSets {
    all: BTreeSet<ResourceId>,
    free: BTreeSet<ResourceId>,
}

impl TagSets {
    fn pick(&self, pool: Pool) -> &BTreeSet<ResourceId> {
        match pool {
            Pool::All => &self.all,
            Pool::Free => &self.free,
        }
    }

    fn insert(&mut self, id: ResourceId, is_free: bool) {
        self.all.insert(id);
        if is_free {
            self.free.insert(id);
        }
    }

    fn set_free(&mut self, id: ResourceId, is_free: bool) {
        if is_free {
            self.free.insert(id);
        } else {
            self.free.remove(&id);
        }
    }

    fn remove(&mut self, id: ResourceId) {
        self.all.remove(&id);
        self.free.remove(&id);
    }
}

impl TagIndex {
    pub(crate) fn insert(&mut self, resource: &Resource) {
        let is_free = resource.is_lendable();
        self.columns.insert(resource);
        self.lab.insert(resource.id, is_free);
        for tag in &resource.spec.tags {
            self.by_tag
                .entry(tag.clone())
                .or_default()
                .insert(resource.id, is_free);
        }
    }

    /// Takes `resource` out of every set (before it is removed, or its tags change).
    pub(crate) fn remove(&mut self, resource: &Resource) {
        self.columns.remove(resource.id);
        self.lab.remove(resource.id);
        for tag in &resource.spec.tags {
            if let Some(sets) = self.by_tag.get_mut(tag) {
                sets.remove(resource.id);
                if sets.all.is_empty() {
                    self.by_tag.remove(tag);
                }
            }
        }
    }

    /// Files `resource` as free or not after its lock or service state changed.
    pub(crate) fn refresh(&mut self, resource: &Resource) {
        let is_free = resource.is_lendable();
        self.columns.refresh(resource);
        self.lab.set_free(resource.id, is_free);
        for tag in &resource.spec.tags {
            if let Some(sets) = self.by_tag.get_mut(tag) {
                sets.set_free(resource.id, is_free);
            }
        }
    }

    /// Follows a lock's new expiry: only the query columns keep it, so a lock extension
    /// (a hot path) does not touch the free sets.
    pub(crate) fn expiry_moved(&mut self, resource: &Resource) {
        self.columns.refresh(resource);
    }

    /// The query columns (see [`Columns`]).
    pub(crate) fn columns(&self) -> &Columns {
        &self.columns
    }

    /// How many resources are free.
    pub(crate) fn free_len(&self) -> usize {
        self.lab.free.len()
    }

    /// A superset of the resources in `pool` carrying every tag of `required`, in id
    /// order: the smallest of the tags' sets, or the lab-wide set when `required` is
    /// empty. Empty when a required tag is unknown. Callers still check every tag.
    pub(crate) fn candidates<S: AsRef<str>>(
        &self,
        required: &[S],
        pool: Pool,
    ) -> &BTreeSet<ResourceId> {
        static NONE: BTreeSet<ResourceId> = BTreeSet::new();
        let mut best = self.lab.pick(pool);
        for (i, tag) in required.iter().enumerate() {
            let Some(sets) = self.by_tag.get(tag.as_ref()) else {
                return &NONE;
            };
            let set = sets.pick(pool);
            if i == 0 || set.len() < best.len() {
                best = set;
            }
        }
        best
    }

    /// Panics unless the index agrees with the resources it describes (test support).
    pub(crate) fn check_against(&self, resources: &BTreeMap<ResourceId, Resource>) {
        let sets = self.by_tag.iter().map(|(t, s)| (Some(t), s));
        for (tag, sets) in sets.chain([(None, &self.lab)]) {
            for id in &sets.all {
                let r = &resources[id];
                assert!(
                    tag.is_none_or(|t| r.has_tag(t)),
                    "index lists {id} under {tag:?}"
                );
            }
            for id in &sets.free {
                assert!(sets.all.contains(id));
                assert!(resources[id].is_lendable(), "{id} indexed as free");
            }
        }
        assert_eq!(self.lab.all.len(), resources.len());
        self.columns.check_against(resources);
        assert!(
            self.by_tag.values().all(|s| !s.all.is_empty()),
            "no empty tag"
        );
        for r in resources.values() {
            for set in r
                .spec
                .tags
                .iter()
                .map(|t| &self.by_tag[t])
                .chain([&self.lab])
            {
                assert!(set.all.contains(&r.id));
                assert_eq!(set.free.contains(&r.id), r.is_lendable());
            }
        }
    }
}
