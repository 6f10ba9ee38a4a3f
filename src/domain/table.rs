//! [`ResourceTable`]: every resource by id, copy-on-write, so that a snapshot of the whole
//! lab costs what a few hundred pointers cost, not what 100 000 resources cost.
//!
//! Ids are dense and never reused, so the table is an array indexed by id, cut into
//! chunks of [`CHUNK`] slots. Each chunk sits behind an `Arc`, and each resource behind
//! its own. [`ResourceTable::snapshot`] clones the chunk pointers (100 for 100 000
//! resources) and hands them out: whoever holds the snapshot reads the lab as it was,
//! outside the broker mutex (serialising the 1.0 list, rendering the page), while the
//! broker goes on changing its own copy.
//!
//! Every change goes through [`ResourceTable::get_mut`] (or `insert`/`remove`): it makes
//! the chunk, then the resource, unique before handing out `&mut` (`Arc::make_mut`). With
//! no snapshot alive, both are already unique and nothing is copied: the hot path pays
//! two reference-count checks. With one alive, the first change to a chunk copies its
//! 1 024 pointers (microseconds) and the first change to a resource copies it; the
//! snapshot keeps the old ones.
//!
//! The same three doors record what changed when the broker records rows for a store
//! ([`ResourceTable::record_changes`]): whatever goes through them is in the next
//! [`ResourceTable::take_changed`], so no change can be left out of what is persisted.

use std::collections::BTreeSet;
use std::ops::Index;
use std::sync::Arc;

use super::resource::{Resource, ResourceId};

/// Slots per chunk: a snapshot of 100 000 resources clones 98 pointers, and the first
/// change to a shared chunk copies 1 024 (about 8 KiB).
const CHUNK: usize = 1024;

type Chunk = Vec<Option<Arc<Resource>>>;

/// The broker's resources, by id. See the module documentation.
#[derive(Clone, Debug, Default)]
pub(crate) struct ResourceTable {
    chunks: Vec<Arc<Chunk>>,
    len: usize,
    /// The ids changed, inserted or removed since the last `take_changed`; `None`
    /// unless recording.
    changed: Option<BTreeSet<ResourceId>>,
}

fn place(id: ResourceId) -> (usize, usize) {
    let index = id.get() as usize;
    (index / CHUNK, index % CHUNK)
}

impl ResourceTable {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn get(&self, id: &ResourceId) -> Option<&Resource> {
        self.get_shared(id).map(|r| &**r)
    }

    /// The resource as the broker shares it: cloning the `Arc` is the cheap copy.
    pub(crate) fn get_shared(&self, id: &ResourceId) -> Option<&Arc<Resource>> {
        let (chunk, slot) = place(*id);
        self.chunks.get(chunk)?.get(slot)?.as_ref()
    }

    /// The one way to change a resource in place. Copies its chunk and the resource
    /// first if a snapshot shares them.
    pub(crate) fn get_mut(&mut self, id: &ResourceId) -> Option<&mut Resource> {
        let (chunk, slot) = place(*id);
        let chunk = self.chunks.get_mut(chunk)?;
        // Only copy the chunk if the slot is filled: a miss changes nothing.
        chunk.get(slot)?.as_ref()?;
        if let Some(changed) = &mut self.changed {
            changed.insert(*id);
        }
        let resource = Arc::make_mut(chunk)[slot].as_mut()?;
        Some(Arc::make_mut(resource))
    }

    /// Files `resource` under its id.
    ///
    /// # Panics
    /// If the id is taken: ids are never reused.
    pub(crate) fn insert(&mut self, resource: Resource) {
        let (chunk, slot) = place(resource.id);
        if self.chunks.len() <= chunk {
            self.chunks
                .resize_with(chunk + 1, || Arc::new(vec![None; CHUNK]));
        }
        if let Some(changed) = &mut self.changed {
            changed.insert(resource.id);
        }
        let entry = &mut Arc::make_mut(&mut self.chunks[chunk])[slot];
        assert!(entry.is_none(), "resource ids are never reused");
        *entry = Some(Arc::new(resource));
        self.len += 1;
    }

    /// Takes resource `id` out; the caller gets it (a copy, if a snapshot shares it).
    pub(crate) fn remove(&mut self, id: &ResourceId) -> Option<Resource> {
        let (chunk, slot) = place(*id);
        let chunk = self.chunks.get_mut(chunk)?;
        chunk.get(slot)?.as_ref()?;
        if let Some(changed) = &mut self.changed {
            changed.insert(*id);
        }
        let resource = Arc::make_mut(chunk)[slot].take()?;
        self.len -= 1;
        Some(Arc::unwrap_or_clone(resource))
    }

    /// Every resource, in id order.
    pub(crate) fn values(&self) -> impl DoubleEndedIterator<Item = &Resource> + '_ {
        self.chunks
            .iter()
            .flat_map(|chunk| chunk.iter())
            .filter_map(|slot| slot.as_deref())
    }

    /// The highest id in use.
    pub(crate) fn last_id(&self) -> Option<ResourceId> {
        self.values().next_back().map(|r| r.id)
    }

    /// Every resource as it stands now, for reading outside the broker.
    pub(crate) fn snapshot(&self) -> ResourceSnapshot {
        ResourceSnapshot(ResourceTable {
            chunks: self.chunks.clone(),
            len: self.len,
            changed: None,
        })
    }

    /// From now on, remember which ids change (see [`ResourceTable::take_changed`]).
    pub(crate) fn record_changes(&mut self) {
        self.changed.get_or_insert_with(BTreeSet::new);
    }

    /// The ids changed, inserted or removed since the last call (empty unless
    /// recording), in id order.
    pub(crate) fn take_changed(&mut self) -> BTreeSet<ResourceId> {
        self.changed
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }
}

impl Index<&ResourceId> for ResourceTable {
    type Output = Resource;

    fn index(&self, id: &ResourceId) -> &Resource {
        self.get(id)
            .unwrap_or_else(|| panic!("resource {id} is in the table"))
    }
}

/// Every resource at one moment, in id order, shared with the broker until it changes
/// them (see `ResourceTable`). Cheap to take and to clone; read it anywhere.
#[derive(Clone, Debug)]
pub struct ResourceSnapshot(ResourceTable);

impl ResourceSnapshot {
    pub fn len(&self) -> usize {
        self.0.len
    }

    pub fn is_empty(&self) -> bool {
        self.0.len == 0
    }

    /// Every resource, in id order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Resource> + '_ {
        self.0.values()
    }

    /// Resource `id`, if the snapshot has it.
    pub fn get(&self, id: ResourceId) -> Option<&Resource> {
        self.0.get(&id)
    }

    /// Up to `max` resources from `cursor` on (0 at first), in id order, and the cursor
    /// to continue from: for reading the snapshot in pieces (the streamed 1.0 list).
    pub fn page(&self, cursor: usize, max: usize) -> (Vec<&Resource>, usize) {
        let slots = self.0.chunks.len() * CHUNK;
        let mut out = Vec::with_capacity(max.min(self.0.len));
        let mut at = cursor;
        while at < slots && out.len() < max {
            if let Some(r) = self.0.chunks[at / CHUNK][at % CHUNK].as_deref() {
                out.push(r);
            }
            at += 1;
        }
        (out, at)
    }
}

impl<'a> IntoIterator for &'a ResourceSnapshot {
    type Item = &'a Resource;
    type IntoIter = Box<dyn DoubleEndedIterator<Item = &'a Resource> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::resource::{Origin, ResourceSpec};

    fn resource(n: u32) -> Resource {
        Resource::new(
            ResourceId::new(n),
            ResourceSpec::named(format!("r{n}")),
            Origin::Api,
        )
    }

    #[test]
    fn a_snapshot_keeps_the_lab_as_it_was_while_the_table_changes() {
        let mut table = ResourceTable::default();
        for n in [1, 2, 5_000] {
            table.insert(resource(n));
        }
        let before = table.snapshot();

        table.get_mut(&ResourceId::new(2)).unwrap().spec.description = "changed".into();
        table.remove(&ResourceId::new(1));
        table.insert(resource(7));

        let then: Vec<(u32, &str)> = before
            .iter()
            .map(|r| (r.id.get(), r.spec.description.as_str()))
            .collect();
        assert_eq!(then, [(1, ""), (2, ""), (5_000, "")]);
        let now: Vec<(u32, &str)> = table
            .values()
            .map(|r| (r.id.get(), r.spec.description.as_str()))
            .collect();
        assert_eq!(now, [(2, "changed"), (7, ""), (5_000, "")]);
        assert_eq!((before.len(), table.len()), (3, 3));
        assert_eq!(table.last_id(), Some(ResourceId::new(5_000)));
    }

    #[test]
    fn a_change_copies_nothing_when_no_snapshot_shares_it() {
        let mut table = ResourceTable::default();
        table.insert(resource(3));
        let address = |t: &ResourceTable| t.get(&ResourceId::new(3)).unwrap() as *const Resource;
        let before = address(&table);
        table.get_mut(&ResourceId::new(3)).unwrap().spec.endpoint = "x".into();
        assert_eq!(address(&table), before, "changed in place");

        let snapshot = table.snapshot();
        table.get_mut(&ResourceId::new(3)).unwrap().spec.endpoint = "y".into();
        assert_ne!(address(&table), before, "copied: the snapshot shares it");
        assert_eq!(snapshot.iter().next().unwrap().spec.endpoint, "x");
    }

    #[test]
    fn pages_walk_every_resource_once_in_id_order() {
        let mut table = ResourceTable::default();
        let ids = [1, 2, 3, 1_023, 1_024, 1_025, 4_000];
        for n in ids {
            table.insert(resource(n));
        }
        let snapshot = table.snapshot();
        let (mut seen, mut cursor) = (Vec::new(), 0);
        loop {
            let (page, next) = snapshot.page(cursor, 2);
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 2);
            seen.extend(page.iter().map(|r| r.id.get()));
            cursor = next;
        }
        assert_eq!(seen, ids);
        assert!(table.get(&ResourceId::new(9_999)).is_none());
        assert!(table.get_mut(&ResourceId::new(4)).is_none());
        assert!(table.remove(&ResourceId::new(4)).is_none());
    }
}
