//! [`Columns`]: a dense copy, indexed by resource id, of what list queries filter and
//! sort on (lock state, service state, lock expiry, name, tags), so that a query over
//! 100 000 resources reads a few megabytes of contiguous memory instead of chasing a
//! pointer per resource (see `broker/query.rs` and BENCHMARKS.md).
//!
//! The [`TagIndex`](super::tags::TagIndex) owns it and keeps it in step: every change
//! that refreshes the tag index (a lock granted or released, a maintenance window
//! opening or closing, a resource added, removed or re-tagged) refreshes these columns
//! in the same call, so the two can never disagree. `check_against` verifies it.
//!
//! Names and tags live in append-only buffers: a row points at its slice. Re-inserting a
//! resource (a tag change) appends its new slices and leaves the old bytes as garbage,
//! which is compacted away once it outweighs the live data.

use std::cell::OnceCell;

use memchr::memmem;

use super::clock::Timestamp;
use super::resource::{Resource, ResourceId};
use super::table::ResourceTable;

/// A tag's number, interned by the [`TagIndex`](super::tags::TagIndex) while some
/// resource carries the tag.
pub(crate) type TagNo = u32;

/// How many tag numbers a row keeps inline: most resources carry a few tags, and
/// checking them there reads one small contiguous column instead of the arena.
const INLINE_TAGS: usize = 4;
/// An empty inline slot.
const NO_TAG: TagNo = TagNo::MAX;
/// In the first inline slot: more tags than fit, look in the arena.
const MORE_TAGS: TagNo = TagNo::MAX - 1;

/// One resource's lock and service state, as bits of a byte: a scan over 100 000
/// resources reads 100 KB.
pub(crate) type Flags = u8;
pub(crate) const LIVE: Flags = 1;
pub(crate) const LOCKED: Flags = 2;
pub(crate) const IN_SERVICE: Flags = 4;
/// A maintenance window is scheduled or open: whether a lock fits before it needs the
/// resource itself.
pub(crate) const WINDOW: Flags = 8;
/// Removed from the descriptor while locked: lent to no one again.
pub(crate) const RETIRING: Flags = 16;

/// Where one resource's name, lower-cased name and tags are in the buffers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Spans {
    /// The name in `names`.
    name: Span,
    /// The lower-cased name in `folded`.
    folded: Span,
    /// The tag numbers in `tags`.
    tags: Span,
}

/// A slice of one of the buffers: `at..at + len`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Span {
    at: u32,
    len: u32,
}

impl Span {
    fn of<T>(buffer: &[T], at: usize) -> Span {
        let index = |n: usize| u32::try_from(n).expect("query buffers stay below 4 GiB");
        Span {
            at: index(at),
            len: index(buffer.len() - at),
        }
    }

    fn range(self) -> std::ops::Range<usize> {
        self.at as usize..(self.at + self.len) as usize
    }
}

/// Each column is indexed by resource id (ids are dense and never reused); index 0 and
/// the indexes of removed resources are not [`LIVE`]. Kept apart, not as one row struct,
/// so that a scan reads only the columns it needs: the flags nearly always, the rest
/// only for the rows that pass them.
#[derive(Debug, Default)]
pub(crate) struct Columns {
    flags: Vec<Flags>,
    /// The current lock's expiry.
    expires: Vec<Option<Timestamp>>,
    spans: Vec<Spans>,
    /// Each resource's tag numbers when they fit, else [`MORE_TAGS`] first.
    inline_tags: Vec<[TagNo; INLINE_TAGS]>,
    /// Each resource's `max-lock-duration`, in seconds.
    max_lock: Vec<u64>,
    live: usize,
    /// Every name, back to back.
    names: String,
    /// Every name lower-cased, back to back, NUL-separated, for substring search.
    folded: String,
    /// Where each name in `folded` starts, and whose it is, in buffer order: a search hit
    /// maps back to its resource with these. Entries whose row now points elsewhere are
    /// stale and skipped.
    folded_starts: Vec<(u32, ResourceId)>,
    /// Every row's tag numbers, back to back, each row's in ascending order (a lookup is
    /// a binary search, whatever the number of tags).
    tags: Vec<TagNo>,
    /// Live resources in name order (`sort=name`), built by the first query that needs
    /// it, then kept in step by each insert and remove (a binary search and a move of
    /// the tail: microseconds at 100 000). Lazy so that loading a lab of 100 000 costs no
    /// quadratic insertion; a cell because it is built by a read (`&self`).
    name_order: OnceCell<Vec<ResourceId>>,
    /// Bytes (and tag slots) no live row points at any more.
    garbage: usize,
}

impl Columns {
    /// Files `resource`, whose tags have the numbers `tags` (in ascending order), or
    /// re-files it after its spec changed.
    pub(crate) fn insert(&mut self, resource: &Resource, tags: &[TagNo]) {
        debug_assert!(tags.is_sorted(), "tag numbers in ascending order");
        let index = resource.id.get() as usize;
        if self.flags.len() <= index {
            self.flags.resize(index + 1, 0);
            self.expires.resize(index + 1, None);
            self.spans.resize(index + 1, Spans::default());
            self.inline_tags.resize(index + 1, [NO_TAG; INLINE_TAGS]);
            self.max_lock.resize(index + 1, 0);
        }
        if self.is_live(resource.id) {
            self.remove(resource.id);
        }
        let name = &resource.spec.name;
        let at = self.names.len();
        self.names.push_str(name);
        let name_span = Span::of(self.names.as_bytes(), at);
        let at = self.folded.len();
        self.folded.push_str(&name.to_lowercase());
        let folded = Span::of(self.folded.as_bytes(), at);
        self.folded.push('\0');
        self.folded_starts.push((folded.at, resource.id));
        let tags = self.file_tags(index, tags);
        self.spans[index] = Spans {
            name: name_span,
            folded,
            tags,
        };
        self.flags[index] = LIVE;
        self.max_lock[index] = resource.spec.max_lock_duration.as_secs();
        self.live += 1;
        if let Some(at) = self.name_position(name) {
            let order = self.name_order.get_mut().expect("built");
            order.insert(at, resource.id);
        }
        self.refresh(resource);
    }

    /// Appends a row's tag numbers (ascending) and fills its inline ones.
    fn file_tags(&mut self, index: usize, numbers: &[TagNo]) -> Span {
        let at = self.tags.len();
        self.tags.extend_from_slice(numbers);
        let mut inline = [NO_TAG; INLINE_TAGS];
        if numbers.len() <= INLINE_TAGS {
            inline[..numbers.len()].copy_from_slice(numbers);
        } else {
            inline[0] = MORE_TAGS;
        }
        self.inline_tags[index] = inline;
        Span::of(&self.tags, at)
    }

    /// Gives live resource `id` new tag numbers (ascending); its name stays where it is.
    pub(crate) fn retag(&mut self, id: ResourceId, numbers: &[TagNo]) {
        debug_assert!(numbers.is_sorted(), "tag numbers in ascending order");
        let index = id.get() as usize;
        self.garbage += self.spans[index].tags.len as usize;
        self.spans[index].tags = self.file_tags(index, numbers);
        if self.garbage > 64 * 1024 && self.garbage > self.names.len() {
            self.compact();
        }
    }

    /// Follows a change of lock or service state.
    pub(crate) fn refresh(&mut self, resource: &Resource) {
        let index = resource.id.get() as usize;
        let mut flags = LIVE;
        if resource.is_locked() {
            flags |= LOCKED;
        }
        if resource.in_service() {
            flags |= IN_SERVICE;
        }
        if resource.maintenance.is_some() {
            flags |= WINDOW;
        }
        if resource.retiring {
            flags |= RETIRING;
        }
        self.flags[index] = flags;
        self.expires[index] = resource.lease().map(|l| l.expires_at);
    }

    /// Follows a change of `max-lock-duration` alone.
    pub(crate) fn max_lock_changed(&mut self, resource: &Resource) {
        self.max_lock[resource.id.get() as usize] = resource.spec.max_lock_duration.as_secs();
    }

    pub(crate) fn remove(&mut self, id: ResourceId) {
        if !self.is_live(id) {
            return;
        }
        let index = id.get() as usize;
        self.flags[index] = 0;
        self.expires[index] = None;
        let row = self.spans[index];
        self.live -= 1;
        if let Some(at) = self.name_position(&self.names[row.name.range()]) {
            let order = self.name_order.get_mut().expect("built");
            debug_assert_eq!(order[at], id, "names are unique");
            order.remove(at);
        }
        self.garbage += (row.name.len + row.folded.len + 1 + row.tags.len) as usize;
        if self.garbage > 64 * 1024 && self.garbage > self.names.len() {
            self.compact();
        }
    }

    /// Copies the live slices into fresh buffers, dropping the garbage.
    fn compact(&mut self) {
        let (names, folded, tags) = (
            std::mem::take(&mut self.names),
            std::mem::take(&mut self.folded),
            std::mem::take(&mut self.tags),
        );
        self.folded_starts.clear();
        for (index, row) in self.spans.iter_mut().enumerate() {
            if self.flags[index] & LIVE == 0 {
                continue;
            }
            let at = self.names.len();
            self.names.push_str(&names[row.name.range()]);
            row.name = Span::of(self.names.as_bytes(), at);
            let at = self.folded.len();
            self.folded.push_str(&folded[row.folded.range()]);
            row.folded = Span::of(self.folded.as_bytes(), at);
            self.folded.push('\0');
            let id = ResourceId::new(u32::try_from(index).expect("ids are u32"));
            self.folded_starts.push((row.folded.at, id));
            let at = self.tags.len();
            self.tags.extend_from_slice(&tags[row.tags.range()]);
            row.tags = Span::of(&self.tags, at);
        }
        self.garbage = 0;
    }

    /// How many resources are filed.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// The flags of `id`; 0 (not [`LIVE`]) for an unknown id.
    pub(crate) fn flags(&self, id: ResourceId) -> Flags {
        self.flags.get(id.get() as usize).copied().unwrap_or(0)
    }

    pub(crate) fn is_live(&self, id: ResourceId) -> bool {
        self.flags(id) & LIVE != 0
    }

    /// The `max-lock-duration` of a live resource, in seconds.
    #[inline]
    pub(crate) fn max_lock_secs(&self, id: ResourceId) -> u64 {
        self.max_lock[id.get() as usize]
    }

    /// The expiry of the lock on `id`, if it is locked.
    pub(crate) fn expires_at(&self, id: ResourceId) -> Option<Timestamp> {
        self.expires.get(id.get() as usize).copied().flatten()
    }

    /// Every resource whose flags, masked with `mask`, are `want`, in id order.
    ///
    /// Branch-free: every index is written and the length advances only on a match, so
    /// an irregular pattern of matches (every other resource locked) costs no
    /// mispredicted branches. About a nanosecond per resource.
    pub(crate) fn scan(&self, mask: Flags, want: Flags) -> Vec<ResourceId> {
        let mut out = vec![ResourceId::new(0); self.flags.len()];
        let mut len = 0;
        for (index, &flags) in self.flags.iter().enumerate() {
            out[len] = ResourceId::new(index as u32);
            len += usize::from(flags & mask == want);
        }
        out.truncate(len);
        out
    }

    /// Every live resource with its flags, in id order.
    pub(crate) fn live(&self) -> impl DoubleEndedIterator<Item = (ResourceId, Flags)> + '_ {
        self.flags
            .iter()
            .enumerate()
            .filter(|(_, f)| **f & LIVE != 0)
            .map(|(i, f)| (ResourceId::new(i as u32), *f))
    }

    /// The name of a live resource.
    pub(crate) fn name(&self, id: ResourceId) -> &str {
        &self.names[self.spans[id.get() as usize].name.range()]
    }

    /// The lower-cased name of a live resource.
    pub(crate) fn folded_name(&self, id: ResourceId) -> &[u8] {
        &self.folded.as_bytes()[self.spans[id.get() as usize].folded.range()]
    }

    /// The tag numbers of a live resource, in ascending order.
    pub(crate) fn tags(&self, id: ResourceId) -> &[TagNo] {
        &self.tags[self.spans[id.get() as usize].tags.range()]
    }

    /// Whether the live resource `id` carries tag number `tag`: a look at the inline
    /// numbers, or a binary search, so a resource with many tags costs no more than
    /// `log2` of their number.
    #[inline]
    pub(crate) fn has_tag(&self, id: ResourceId, tag: TagNo) -> bool {
        let inline = &self.inline_tags[id.get() as usize];
        if inline[0] == MORE_TAGS {
            self.tags(id).binary_search(&tag).is_ok()
        } else {
            inline.contains(&tag)
        }
    }

    /// Live resources in name order (byte order; names are unique).
    pub(crate) fn by_name(&self) -> impl DoubleEndedIterator<Item = ResourceId> + '_ {
        self.name_order
            .get_or_init(|| {
                let mut ids: Vec<ResourceId> = self.live().map(|(id, _)| id).collect();
                ids.sort_unstable_by(|&a, &b| self.name(a).cmp(self.name(b)));
                ids
            })
            .iter()
            .copied()
    }

    /// Where `name` is or would go in the name order, if the order is built.
    fn name_position(&self, name: &str) -> Option<usize> {
        let order = self.name_order.get()?;
        Some(order.partition_point(|&id| self.name(id) < name))
    }

    /// Live resources whose lower-cased name contains `needle` (lower-cased), in id
    /// order. One pass of a vectorised substring search over every name at once.
    pub(crate) fn names_containing(&self, needle: &str) -> Vec<ResourceId> {
        let haystack = self.folded.as_bytes();
        let finder = memmem::Finder::new(needle.as_bytes());
        let mut found = Vec::new();
        let mut entry = 0;
        let mut from = 0;
        while let Some(hit) = finder.find(&haystack[from..]).map(|h| h + from) {
            // The entry whose name starts at or before the hit: the starts only grow.
            while entry + 1 < self.folded_starts.len()
                && self.folded_starts[entry + 1].0 as usize <= hit
            {
                entry += 1;
            }
            let (start, id) = self.folded_starts[entry];
            let row = self.spans[id.get() as usize].folded;
            let end = (start + row.len) as usize;
            if self.is_live(id) && row.at == start && hit + needle.len() <= end {
                found.push(id);
            }
            // One hit per name is enough: go on after this name's separator.
            from = end.max(hit) + 1;
            if from > haystack.len() {
                break;
            }
        }
        // Re-filed resources sit later in the buffer than their id suggests.
        found.sort_unstable();
        found.dedup();
        found
    }

    /// Panics unless the columns agree with `resources`, whose tags have the numbers
    /// `number` gives (test support).
    pub(crate) fn check_against(&self, resources: &ResourceTable, number: impl Fn(&str) -> TagNo) {
        assert_eq!(self.live, resources.len(), "live rows");
        if let Some(order) = self.name_order.get() {
            let mut by_name: Vec<(&String, ResourceId)> =
                resources.values().map(|r| (&r.spec.name, r.id)).collect();
            by_name.sort();
            let expected: Vec<ResourceId> = by_name.into_iter().map(|(_, id)| id).collect();
            assert_eq!(*order, expected, "name order");
        }
        for (id, flags) in self.live() {
            let r = resources
                .get(&id)
                .unwrap_or_else(|| panic!("a live row for {id}, which is gone"));
            assert_eq!(self.name(id), r.spec.name, "{id}: name");
            assert_eq!(
                self.folded_name(id),
                r.spec.name.to_lowercase().as_bytes(),
                "{id}: folded name"
            );
            let mut tags: Vec<TagNo> = r.spec.tags.iter().map(|t| number(t)).collect();
            tags.sort_unstable();
            assert_eq!(self.tags(id), tags, "{id}: tags");
            for n in &tags {
                assert!(self.has_tag(id, *n), "{id}: inline tags");
            }
            assert_eq!(flags & LOCKED != 0, r.is_locked(), "{id}: locked");
            assert_eq!(flags & IN_SERVICE != 0, r.in_service(), "{id}: in service");
            assert_eq!(flags & WINDOW != 0, r.maintenance.is_some(), "{id}: window");
            assert_eq!(flags & RETIRING != 0, r.retiring, "{id}: retiring");
            assert_eq!(
                self.max_lock_secs(id),
                r.spec.max_lock_duration.as_secs(),
                "{id}: max-lock-duration"
            );
            assert_eq!(
                self.expires_at(id),
                r.lease().map(|l| l.expires_at),
                "{id}: expiry"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::resource::{Origin, ResourceSpec};

    fn resource(n: u32, name: &str, tags: &[&str]) -> Resource {
        let spec = ResourceSpec::named(name).with_tags(tags);
        Resource::new(ResourceId::new(n), spec, Origin::Api)
    }

    fn filed(resources: &[Resource]) -> ResourceTable {
        let mut table = ResourceTable::default();
        for r in resources {
            table.insert(r.clone());
        }
        table
    }

    /// Tag numbers in order of first use, as the tag index gives them out.
    #[derive(Default)]
    struct Numbers(std::collections::HashMap<String, TagNo>);

    impl Numbers {
        fn of(&mut self, tag: &str) -> TagNo {
            let next = self.0.len() as TagNo;
            *self.0.entry(tag.to_owned()).or_insert(next)
        }

        fn sorted(&mut self, r: &Resource) -> Vec<TagNo> {
            let mut numbers: Vec<TagNo> = r.spec.tags.iter().map(|t| self.of(t)).collect();
            numbers.sort_unstable();
            numbers
        }

        fn insert(&mut self, columns: &mut Columns, r: &Resource) {
            let numbers = self.sorted(r);
            columns.insert(r, &numbers);
        }

        fn check(&self, columns: &Columns, resources: &[Resource]) {
            columns.check_against(&filed(resources), |t| self.0[t]);
        }
    }

    #[test]
    fn a_refiled_resource_is_found_by_its_new_tags_and_once_by_name() {
        let mut columns = Columns::default();
        let mut numbers = Numbers::default();
        let (a, b) = (resource(1, "Alpha", &["x"]), resource(2, "beta", &["y"]));
        numbers.insert(&mut columns, &a);
        numbers.insert(&mut columns, &b);
        assert_eq!(columns.by_name().count(), 2, "the name order is built");

        let a = resource(1, "Alpha", &["z", "y"]);
        numbers.insert(&mut columns, &a);

        numbers.check(&columns, &[a, b]);
        assert_eq!(columns.len(), 2);
        assert_eq!(
            columns.tags(ResourceId::new(1)),
            [numbers.of("y"), numbers.of("z")],
            "in ascending order"
        );
        assert_eq!(columns.names_containing("alph"), [ResourceId::new(1)]);
        assert_eq!(
            columns.names_containing("a"),
            [ResourceId::new(1), ResourceId::new(2)]
        );
        let by_name: Vec<ResourceId> = columns.by_name().collect();
        assert_eq!(by_name, [ResourceId::new(1), ResourceId::new(2)]);
    }

    #[test]
    fn tags_beyond_the_inline_ones_are_found_in_the_arena() {
        let mut columns = Columns::default();
        let mut numbers = Numbers::default();
        let few = resource(1, "few", &["a", "b"]);
        let many = resource(2, "many", &["f", "a", "e", "b", "c", "d"]);
        numbers.insert(&mut columns, &few);
        numbers.insert(&mut columns, &many);

        numbers.check(&columns, &[few, many]);
        let mut number = |t| numbers.of(t);
        let (a, b, f, g) = (number("a"), number("b"), number("f"), number("g"));
        assert!(columns.has_tag(ResourceId::new(2), f));
        assert!(columns.has_tag(ResourceId::new(2), a));
        assert!(!columns.has_tag(ResourceId::new(2), g));
        assert!(!columns.has_tag(ResourceId::new(1), f));
        assert!(columns.has_tag(ResourceId::new(1), b));
    }

    #[test]
    fn removed_resources_are_forgotten_and_their_bytes_compacted_away() {
        let mut columns = Columns::default();
        let mut numbers = Numbers::default();
        let long = "x".repeat(1000);
        let mut kept = Vec::new();
        for n in 1..=200 {
            let r = resource(n, &format!("{long}-{n}"), &["t"]);
            numbers.insert(&mut columns, &r);
            kept.push(r);
        }
        assert_eq!(columns.by_name().count(), 200, "the name order is built");
        for r in kept.drain(..150) {
            columns.remove(r.id);
        }

        numbers.check(&columns, &kept);
        assert_eq!(
            columns.garbage, 0,
            "compacted once garbage outweighed live data"
        );
        assert!(columns.names.len() < 60_000, "{}", columns.names.len());
        assert!(!columns.is_live(ResourceId::new(1)));
        assert_eq!(columns.names_containing("x-2"), [ResourceId::new(200)]);
        assert_eq!(columns.names_containing("x-151").len(), 1);
        assert!(columns.names_containing("x-15\0").is_empty());
    }
}
