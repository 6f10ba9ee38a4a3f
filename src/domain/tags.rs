//! The tag index: which resources carry a tag, and which of those are free.
//!
//! Lock-by-tag walks the *free* set of the requested tag that has the fewest free
//! resources, in id order, so its cost follows the number of free candidates, not the
//! size of the lab.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::resource::{Resource, ResourceId};

#[derive(Debug, Default)]
pub(crate) struct TagIndex {
    by_tag: HashMap<String, TagSets>,
}

#[derive(Debug, Default)]
struct TagSets {
    all: BTreeSet<ResourceId>,
    free: BTreeSet<ResourceId>,
}

impl TagIndex {
    pub(crate) fn insert(&mut self, resource: &Resource) {
        for tag in &resource.spec.tags {
            let sets = self.by_tag.entry(tag.clone()).or_default();
            sets.all.insert(resource.id);
            if !resource.is_locked() {
                sets.free.insert(resource.id);
            }
        }
    }

    pub(crate) fn set_free(&mut self, resource: &Resource, is_free: bool) {
        for tag in &resource.spec.tags {
            if let Some(sets) = self.by_tag.get_mut(tag) {
                if is_free {
                    sets.free.insert(resource.id);
                } else {
                    sets.free.remove(&resource.id);
                }
            }
        }
    }

    /// The lowest-id free resource carrying every tag in `tags` (which is not empty).
    pub(crate) fn first_free_match(
        &self,
        tags: &[String],
        resources: &BTreeMap<ResourceId, Resource>,
    ) -> Option<ResourceId> {
        let narrowest = self.narrowest(tags, |s| &s.free)?;
        narrowest
            .iter()
            .copied()
            .find(|id| resources.get(id).is_some_and(|r| r.has_all_tags(tags)))
    }

    /// Whether any resource, free or not, carries every tag in `tags`.
    pub(crate) fn any_match(
        &self,
        tags: &[String],
        resources: &BTreeMap<ResourceId, Resource>,
    ) -> bool {
        self.narrowest(tags, |s| &s.all).is_some_and(|set| {
            set.iter()
                .any(|id| resources.get(id).is_some_and(|r| r.has_all_tags(tags)))
        })
    }

    /// The smallest of the chosen sets among `tags`; `None` if a tag is unknown.
    fn narrowest<'a>(
        &'a self,
        tags: &[String],
        pick: impl Fn(&'a TagSets) -> &'a BTreeSet<ResourceId>,
    ) -> Option<&'a BTreeSet<ResourceId>> {
        let mut best: Option<&BTreeSet<ResourceId>> = None;
        for tag in tags {
            let set = pick(self.by_tag.get(tag)?);
            if best.is_none_or(|b| set.len() < b.len()) {
                best = Some(set);
            }
        }
        best
    }

    /// Panics unless the index agrees with the resources it describes (test support).
    pub(crate) fn check_against(&self, resources: &BTreeMap<ResourceId, Resource>) {
        for (tag, sets) in &self.by_tag {
            for id in &sets.all {
                assert!(resources[id].has_tag(tag), "index lists {id} under {tag}");
            }
            for id in &sets.free {
                assert!(sets.all.contains(id));
                assert!(!resources[id].is_locked(), "locked {id} indexed as free");
            }
        }
        for r in resources.values() {
            for tag in &r.spec.tags {
                let sets = &self.by_tag[tag];
                assert!(sets.all.contains(&r.id));
                assert_eq!(sets.free.contains(&r.id), !r.is_locked());
            }
        }
    }
}
