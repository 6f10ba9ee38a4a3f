//! The tag index: which resources carry a tag, and which of those are free (unlocked and
//! in service: [`Resource::is_lendable`]).
//!
//! Tags are interned: while some resource carries a tag, it has a number (`TagNo`),
//! and the index, the query `Columns` and every criteria check work with numbers. A
//! request's criteria are compiled once into a `TagTest` over numbers, and checking a
//! resource reads its tag numbers from the columns (inline, or a binary search of its
//! sorted numbers): the cost does not grow with the number of tags a resource carries,
//! and no string is compared per resource.
//!
//! Selecting by tags walks the set of the requested tag with the fewest members (free
//! ones, when looking for something to lock), in id order, so its cost follows the
//! number of candidates, not the size of the lab. Criteria that require no tag in
//! particular (`!flaky`) walk the lab-wide sets.
//!
//! It also keeps the `Columns` that list queries read, in the same calls, so that
//! whatever keeps the tag index right keeps them right too.
//!
//! # Limits
//!
//! Every tag list that reaches the broker has been checked with [`check_tags`]: at most
//! [`MAX_TAGS_PER_RESOURCE`] tags on a resource, at most [`MAX_TAGS_PER_CRITERIA`] in one
//! request's tag list, each at most [`MAX_TAG_BYTES`] long. Expressions have their own
//! limits (`expr.rs`).

use std::collections::HashMap;

use super::columns::{Columns, TagNo};
use super::expr::Expr;
use super::idset::IdSet;
use super::reservation::Criteria;
use super::resource::{Resource, ResourceId};
use super::table::ResourceTable;

/// The most tags one resource may carry (descriptor, create, patch).
pub const MAX_TAGS_PER_RESOURCE: usize = 64;
/// The most tags one tag list of a request may name (a lock's or a reservation
/// group's `tag`/`tags`).
pub const MAX_TAGS_PER_CRITERIA: usize = 64;
/// The longest tag, in bytes of UTF-8.
pub const MAX_TAG_BYTES: usize = 128;

/// Checks a tag list against the limits; `what` names it in the message ("a resource",
/// "a request's tag list") and `max` is the limit that applies to it.
///
/// # Errors
/// What is over which limit, in words for the caller.
pub fn check_tags<S: AsRef<str>>(tags: &[S], max: usize, what: &str) -> Result<(), String> {
    if tags.len() > max {
        return Err(format!(
            "{what} may have at most {max} tags, got {}",
            tags.len()
        ));
    }
    match tags.iter().find(|t| t.as_ref().len() > MAX_TAG_BYTES) {
        Some(long) => {
            let long = long.as_ref();
            let start: String = long.chars().take(20).collect();
            Err(format!(
                "a tag may be at most {MAX_TAG_BYTES} bytes long, got {} bytes (\"{start}...\")",
                long.len()
            ))
        }
        None => Ok(()),
    }
}

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
    /// The number of every tag some resource carries.
    numbers: HashMap<String, TagNo>,
    /// By number: the tag and its sets. A number whose tag no resource carries any more
    /// is free (empty name and sets) and given to the next new tag.
    tags: Vec<Tag>,
    free_numbers: Vec<TagNo>,
    /// Lab-wide sets, for criteria without a required tag.
    lab: TagSets,
    /// What list queries filter and sort on, by id.
    columns: Columns,
}

#[derive(Debug, Default)]
struct Tag {
    name: String,
    sets: TagSets,
}

#[derive(Debug, Default)]
struct TagSets {
    all: IdSet,
    free: IdSet,
}

impl TagSets {
    fn pick(&self, pool: Pool) -> &IdSet {
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

/// [`Criteria`] compiled against the tag numbers: checking a resource compares numbers.
#[derive(Clone, Debug)]
pub(crate) enum TagTest {
    /// Every one of these tags (a tag list, the common case, checked without recursion).
    AllOf(Vec<TagNo>),
    /// `None`: a tag no resource carries.
    Tag(Option<TagNo>),
    Not(Box<TagTest>),
    All(Vec<TagTest>),
    Any(Vec<TagTest>),
}

impl TagTest {
    /// Whether a resource that `has` exactly the tags it has passes.
    pub(crate) fn holds(&self, has: &impl Fn(TagNo) -> bool) -> bool {
        match self {
            TagTest::AllOf(numbers) => numbers.iter().all(|&n| has(n)),
            TagTest::Tag(number) => number.is_some_and(has),
            TagTest::Not(inner) => !inner.holds(has),
            TagTest::All(tests) => tests.iter().all(|t| t.holds(has)),
            TagTest::Any(tests) => tests.iter().any(|t| t.holds(has)),
        }
    }

    /// Whether live resource `id` passes.
    #[inline]
    pub(crate) fn admits(&self, id: ResourceId, columns: &Columns) -> bool {
        match self {
            // The common case, without the recursive call.
            TagTest::AllOf(numbers) => numbers.iter().all(|&n| columns.has_tag(id, n)),
            other => other.holds(&|tag| columns.has_tag(id, tag)),
        }
    }
}

impl TagIndex {
    pub(crate) fn insert(&mut self, resource: &Resource) {
        let is_free = resource.is_lendable();
        let mut numbers: Vec<TagNo> = resource
            .spec
            .tags
            .iter()
            .map(|tag| self.intern(tag))
            .collect();
        numbers.sort_unstable();
        self.columns.insert(resource, &numbers);
        self.lab.insert(resource.id, is_free);
        for n in numbers {
            self.tags[n as usize].sets.insert(resource.id, is_free);
        }
    }

    /// Takes `resource` out of every set (before it is removed).
    pub(crate) fn remove(&mut self, resource: &Resource) {
        let numbers = self.columns.tags(resource.id).to_vec();
        self.columns.remove(resource.id);
        self.lab.remove(resource.id);
        for n in numbers {
            self.untag(n, resource.id);
        }
    }

    /// Files `resource` under its new tags (its spec has just changed; the columns
    /// still hold the old ones). Only the tags that came or went change sets, and its
    /// name keeps its place in the name order.
    pub(crate) fn retag(&mut self, resource: &Resource) {
        let id = resource.id;
        let old = self.columns.tags(id).to_vec();
        // Numbers for the new tags first: a tag it keeps keeps its number.
        let mut new: Vec<TagNo> = resource
            .spec
            .tags
            .iter()
            .map(|tag| self.intern(tag))
            .collect();
        new.sort_unstable();
        let is_free = resource.is_lendable();
        for &n in &new {
            if old.binary_search(&n).is_err() {
                self.tags[n as usize].sets.insert(id, is_free);
            }
        }
        for &n in &old {
            if new.binary_search(&n).is_err() {
                self.untag(n, id);
            }
        }
        self.columns.retag(id, &new);
    }

    /// Takes `id` out of tag `n`'s sets; frees the number when nothing carries it.
    fn untag(&mut self, n: TagNo, id: ResourceId) {
        let tag = &mut self.tags[n as usize];
        tag.sets.remove(id);
        if tag.sets.all.is_empty() {
            // No resource carries it any more: its number is free.
            let name = std::mem::take(&mut tag.name);
            self.numbers.remove(&name);
            self.free_numbers.push(n);
        }
    }

    /// Files `resource` as free or not after its lock or service state changed.
    pub(crate) fn refresh(&mut self, resource: &Resource) {
        let is_free = resource.is_lendable();
        self.columns.refresh(resource);
        self.lab.set_free(resource.id, is_free);
        for &n in self.columns.tags(resource.id) {
            self.tags[n as usize].sets.set_free(resource.id, is_free);
        }
    }

    /// Follows a lock's new expiry: only the query columns keep it, so a lock extension
    /// (a hot path) does not touch the free sets.
    pub(crate) fn expiry_moved(&mut self, resource: &Resource) {
        self.columns.refresh(resource);
    }

    /// Follows a change of `max-lock-duration` alone (the columns keep it).
    pub(crate) fn max_lock_changed(&mut self, resource: &Resource) {
        self.columns.max_lock_changed(resource);
    }

    /// The query columns (see [`Columns`]).
    pub(crate) fn columns(&self) -> &Columns {
        &self.columns
    }

    /// How many resources are free.
    pub(crate) fn free_len(&self) -> usize {
        self.lab.free.len()
    }

    /// The number of `tag`; `None` when no resource carries it.
    pub(crate) fn number(&self, tag: &str) -> Option<TagNo> {
        self.numbers.get(tag).copied()
    }

    fn intern(&mut self, tag: &str) -> TagNo {
        if let Some(&n) = self.numbers.get(tag) {
            return n;
        }
        let n = match self.free_numbers.pop() {
            Some(n) => n,
            None => {
                self.tags.push(Tag::default());
                TagNo::try_from(self.tags.len() - 1).expect("fewer than 4e9 tags")
            }
        };
        self.tags[n as usize].name = tag.to_owned();
        self.numbers.insert(tag.to_owned(), n);
        n
    }

    /// `criteria` over tag numbers, for [`TagTest::admits`].
    pub(crate) fn compile(&self, criteria: &Criteria) -> TagTest {
        match criteria {
            Criteria::Tags(tags) => match tags.iter().map(|t| self.number(t)).collect() {
                Some(numbers) => TagTest::AllOf(numbers),
                // A tag no resource carries: nothing matches.
                None => TagTest::Tag(None),
            },
            Criteria::Expr(expr) => self.compile_expr(expr),
        }
    }

    fn compile_expr(&self, expr: &Expr) -> TagTest {
        let all = |operands: &[Expr]| operands.iter().map(|e| self.compile_expr(e)).collect();
        match expr {
            Expr::Tag(tag) => TagTest::Tag(self.number(tag)),
            Expr::Not(inner) => TagTest::Not(Box::new(self.compile_expr(inner))),
            Expr::And(operands) => TagTest::All(all(operands)),
            Expr::Or(operands) => TagTest::Any(all(operands)),
        }
    }

    /// A superset of the resources in `pool` carrying every tag of `required`, in id
    /// order: the smallest of the tags' sets, or the lab-wide set when `required` is
    /// empty. Empty when a required tag is unknown. Callers still check every tag.
    pub(crate) fn candidates<S: AsRef<str>>(&self, required: &[S], pool: Pool) -> &IdSet {
        static NONE: IdSet = IdSet::Sparse(std::collections::BTreeSet::new());
        let mut best = self.lab.pick(pool);
        for (i, tag) in required.iter().enumerate() {
            let Some(n) = self.number(tag.as_ref()) else {
                return &NONE;
            };
            let set = self.tags[n as usize].sets.pick(pool);
            if i == 0 || set.len() < best.len() {
                best = set;
            }
        }
        best
    }

    /// Panics unless the index agrees with the resources it describes (test support).
    pub(crate) fn check_against(&self, resources: &ResourceTable) {
        let mut carried = 0;
        for (n, tag) in self.tags.iter().enumerate() {
            if tag.name.is_empty() {
                assert!(tag.sets.all.is_empty(), "a free number has no members");
                assert!(self.free_numbers.contains(&(n as TagNo)), "{n} is free");
                continue;
            }
            carried += 1;
            assert_eq!(self.numbers.get(&tag.name), Some(&(n as TagNo)));
            assert!(!tag.sets.all.is_empty(), "no empty tag");
        }
        assert_eq!(self.numbers.len(), carried, "every name has its number");
        let sets = self
            .tags
            .iter()
            .map(|t| (Some(&t.name), &t.sets))
            .chain([(None, &self.lab)]);
        for (tag, sets) in sets {
            for id in &sets.all {
                let r = &resources[&id];
                assert!(
                    tag.is_none_or(|t| r.has_tag(t)),
                    "index lists {id} under {tag:?}"
                );
            }
            for id in &sets.free {
                assert!(sets.all.contains(&id));
                assert!(resources[&id].is_lendable(), "{id} indexed as free");
            }
        }
        assert_eq!(self.lab.all.len(), resources.len());
        self.columns.check_against(resources, |t| self.numbers[t]);
        for r in resources.values() {
            for set in r
                .spec
                .tags
                .iter()
                .map(|t| &self.tags[self.numbers[t] as usize].sets)
                .chain([&self.lab])
            {
                assert!(set.all.contains(&r.id));
                assert_eq!(set.free.contains(&r.id), r.is_lendable());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::resource::{Origin, ResourceSpec};

    fn resource(n: u32, tags: &[&str]) -> Resource {
        Resource::new(
            ResourceId::new(n),
            ResourceSpec::named(format!("r{n}")).with_tags(tags),
            Origin::Api,
        )
    }

    fn admitted(index: &TagIndex, criteria: &Criteria, ids: &[u32]) -> Vec<u32> {
        let test = index.compile(criteria);
        ids.iter()
            .copied()
            .filter(|&n| test.admits(ResourceId::new(n), index.columns()))
            .collect()
    }

    #[test]
    fn a_tag_no_resource_carries_any_more_frees_its_number_for_the_next() {
        let mut index = TagIndex::default();
        let (a, b) = (resource(1, &["x", "y"]), resource(2, &["y"]));
        index.insert(&a);
        index.insert(&b);
        let x = index.number("x").unwrap();

        index.remove(&a);
        assert_eq!(index.number("x"), None);
        let c = resource(3, &["z"]);
        index.insert(&c);

        assert_eq!(index.number("z"), Some(x), "the free number is reused");
        let mut table = ResourceTable::default();
        table.insert(b);
        table.insert(c);
        index.check_against(&table);
    }

    #[test]
    fn compiled_criteria_select_by_numbers_on_many_tagged_resources() {
        let mut index = TagIndex::default();
        let many: Vec<String> = (0..60).map(|i| format!("t{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        index.insert(&resource(1, &many));
        index.insert(&resource(2, &["t5", "t59"]));
        index.insert(&resource(3, &["other"]));

        let tags = |t: &[&str]| Criteria::Tags(t.iter().map(|s| (*s).to_owned()).collect());
        let expr = |e: &str| Criteria::Expr(e.parse().unwrap());
        assert_eq!(admitted(&index, &tags(&["t59", "t5"]), &[1, 2, 3]), [1, 2]);
        assert_eq!(admitted(&index, &tags(&["t0", "t59"]), &[1, 2, 3]), [1]);
        assert!(admitted(&index, &tags(&["t5", "nowhere"]), &[1, 2, 3]).is_empty());
        assert_eq!(admitted(&index, &expr("t30 || other"), &[1, 2, 3]), [1, 3]);
        assert_eq!(admitted(&index, &expr("!t5 && !nowhere"), &[1, 2, 3]), [3]);
    }

    #[test]
    fn tag_lists_over_the_limits_are_refused_with_the_reason() {
        let many = vec!["t"; MAX_TAGS_PER_RESOURCE + 1];
        let err = check_tags(&many, MAX_TAGS_PER_RESOURCE, "a resource").unwrap_err();
        assert_eq!(err, "a resource may have at most 64 tags, got 65");
        assert!(check_tags(&many[1..], MAX_TAGS_PER_RESOURCE, "a resource").is_ok());
        let long = "x".repeat(MAX_TAG_BYTES + 1);
        let err = check_tags(&[long.as_str()], 8, "a request").unwrap_err();
        assert!(
            err.starts_with("a tag may be at most 128 bytes long, got 129 bytes"),
            "{err}"
        );
        assert!(check_tags(&["x".repeat(MAX_TAG_BYTES)], 8, "a request").is_ok());
    }
}
