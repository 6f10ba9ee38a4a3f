//! Read-only queries over the broker at lab scale: filtered, sorted, paginated lists of
//! resources and reservations (roadmap phase 7, `GET /resources?...`).
//!
//! A query never changes the broker; the caller brings it to `now` first
//! ([`Broker::expire_due`]), as every read does.
//!
//! # Cost
//!
//! A page of 50 out of 100 000 resources must cost well under a millisecond
//! (BENCHMARKS.md), so a query reads the tag index's [`Columns`] (a byte of flags per
//! id, inline tag numbers, the names in one buffer) and touches the resources only to
//! clone the page. The matches come from the set of the rarest required tag when that
//! set is small (the free set when the query asks for free, in-service resources), else
//! from a branch-free scan of the flags, or one substring search over every name. When
//! the candidate set *is* the answer (one tag, the free pool, everything), the total
//! needs no counting and the page comes straight from an order. Sorting by name or by
//! expiry walks the name order or the deadline index while the page is near their
//! start, and partially sorts the matches otherwise: only as far as the page needs.

use std::cmp::Ordering;
use std::ops::Range;

use memchr::memmem;

use super::*;
use crate::domain::columns::{Columns, Flags, LIVE};
use crate::domain::reservation::{Priority, ReservationStatus};
use crate::domain::tags::TagTest;

/// The largest page a query may ask for. Keeps one answer, and the time the broker's
/// mutex is held for it, bounded.
pub const MAX_PAGE_LIMIT: usize = 1_000;

/// The page size when a query names none.
pub const DEFAULT_PAGE_LIMIT: usize = 100;

/// What to sort a resource list by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResourceSort {
    /// The id: descriptor order, the 1.0 list's order.
    #[default]
    Id,
    /// The name, byte by byte (names are unique, so there are no ties).
    Name,
    /// The current lock's expiry, ties by id (both in the query's order). Free resources
    /// have none and come after every locked one in both orders, by id in the query's
    /// order: "which lock ends first / last" is what this sort is for.
    LockExpiresAt,
}

/// Ascending or descending.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortOrder {
    #[default]
    Asc,
    Desc,
}

/// One page of a list: which page (1-based) and how many items a page holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    /// 1-based.
    pub number: u64,
    /// 1 to [`MAX_PAGE_LIMIT`] (the API enforces it; the broker only relies on it being
    /// small).
    pub limit: usize,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            number: 1,
            limit: DEFAULT_PAGE_LIMIT,
        }
    }
}

impl Page {
    /// How many matches come before this page; `None` when that overflows (a page far
    /// past any end).
    fn offset(self) -> Option<usize> {
        usize::try_from(self.number.saturating_sub(1))
            .ok()?
            .checked_mul(self.limit)
    }

    /// The range of `0..total` this page covers (empty past the end).
    fn range(self, total: usize) -> Range<usize> {
        let start = self.offset().unwrap_or(usize::MAX).min(total);
        start..start.saturating_add(self.limit).min(total)
    }
}

/// Which resources a list shows, in what order, and which page of them. The default
/// matches every resource, in id order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceQuery {
    /// Locked (`Some(true)`) or free (`Some(false)`) only.
    pub locked: Option<bool>,
    /// In service (`Some(true)`, the API's `available`) or out of it (`Some(false)`,
    /// `unavailable`: an open maintenance window, or retiring). See
    /// [`Resource::in_service`].
    pub in_service: Option<bool>,
    /// Every one must hold (tags and a label expression combine with AND).
    pub criteria: Vec<Criteria>,
    /// A substring of the name, compared case-insensitively.
    pub name: Option<String>,
    pub sort: ResourceSort,
    pub order: SortOrder,
    pub page: Page,
}

/// One page of resources, and how many matched in all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourcePage {
    /// Every match, on every page.
    pub total: usize,
    /// This page's matches, in the query's order.
    pub items: Vec<Arc<Resource>>,
}

/// Which reservations a list shows, and which page of them. Their order is the list's
/// (pending in queue order, then the others by creation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReservationQuery {
    /// Any of these statuses; empty means any status.
    pub statuses: Vec<ReservationStatus>,
    /// Every tag must be asked for by some group: a tag group's tags, an expression
    /// group's required tags ([`Criteria::required_tags`]).
    pub tags: Vec<String>,
    /// The priority it was created with (not the aged one, which changes as it waits).
    pub priority: Option<Priority>,
    pub page: Page,
}

/// One page of reservations, with each one's 1-based place in the whole queue (`None`
/// unless pending), and how many matched in all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservationPage {
    pub total: usize,
    pub items: Vec<(Arc<Reservation>, Option<usize>)>,
}

/// The filters of a [`ResourceQuery`], compiled against the [`Columns`]: checking a
/// resource allocates nothing and reads its flags first, its tags and name only if those
/// pass.
#[derive(Clone)]
struct RowFilter<'q> {
    /// The flags that must be set, among `mask`.
    want: Flags,
    mask: Flags,
    /// Every one must hold.
    criteria: Vec<TagTest>,
    /// The lower-cased name substring.
    name: Option<memmem::Finder<'q>>,
}

impl<'q> RowFilter<'q> {
    fn new(query: &ResourceQuery, folded_name: Option<&'q str>, tags: &TagIndex) -> Self {
        let mut want = LIVE;
        let mut mask = LIVE;
        for (filter, flag) in [(query.locked, LOCKED), (query.in_service, IN_SERVICE)] {
            if let Some(set) = filter {
                mask |= flag;
                if set {
                    want |= flag;
                }
            }
        }
        RowFilter {
            want,
            mask,
            criteria: query.criteria.iter().map(|c| tags.compile(c)).collect(),
            name: folded_name.map(memmem::Finder::new),
        }
    }

    /// Whether the filter requires locked (`Some(true)`) or free resources.
    fn locked(&self) -> Option<bool> {
        (self.mask & LOCKED != 0).then_some(self.want & LOCKED != 0)
    }

    /// Whether every live resource passes.
    fn is_trivial(&self) -> bool {
        self.mask == LIVE && self.criteria.is_empty() && self.name.is_none()
    }

    /// The filter left to check on resources whose flags passed.
    fn beyond_flags(&self) -> Self {
        RowFilter {
            want: LIVE,
            mask: LIVE,
            ..self.clone()
        }
    }

    /// The filter left to check on the candidates of `pool` drawn for the tags every
    /// criterion requires: when those are a single tag list of one tag, its candidate set
    /// holds exactly the resources with it; the free pool holds exactly the free,
    /// in-service ones.
    fn beyond_candidates(&self, query: &ResourceQuery, pool: Pool) -> Self {
        let mut single = query.criteria.iter().map(|c| match c {
            Criteria::Tags(tags) if tags.len() == 1 => Some(&tags[0]),
            _ => None,
        });
        let first = single.next().flatten();
        let is_one_tag = first.is_some() && single.all(|t| t == first);
        let mask = match pool {
            Pool::Free => LIVE,
            Pool::All => self.mask,
        };
        RowFilter {
            want: self.want & mask,
            mask,
            criteria: if is_one_tag {
                Vec::new()
            } else {
                self.criteria.clone()
            },
            name: self.name.clone(),
        }
    }

    #[inline]
    fn admits(&self, id: ResourceId, flags: Flags, columns: &Columns) -> bool {
        flags & self.mask == self.want
            && self.criteria.iter().all(|c| c.admits(id, columns))
            && self
                .name
                .as_ref()
                .is_none_or(|f| f.find(columns.folded_name(id)).is_some())
    }

    fn admits_id(&self, id: ResourceId, columns: &Columns) -> bool {
        self.admits(id, columns.flags(id), columns)
    }
}

/// Whether walking an ordered index of `universe` entries until `end` matches are seen
/// is cheaper than ordering all `total` matches: the walk takes about
/// `end * universe / total` steps of cost `walk_step`, the ordering about `total` steps
/// of cost `order_step` (rough relative costs, from the benches).
fn walk_is_cheaper(
    end: usize,
    universe: usize,
    total: usize,
    walk_step: u128,
    order_step: u128,
) -> bool {
    (end as u128) * (universe as u128) * walk_step <= order_step * (total as u128) * (total as u128)
}

/// The `range` of `items` once ordered by `cmp`, ordering only what the page needs:
/// everything before the page's end is moved in front (linear time), then only the page
/// is sorted.
fn select_page<T: Copy>(
    mut items: Vec<T>,
    range: Range<usize>,
    cmp: impl Fn(&T, &T) -> Ordering,
) -> Vec<T> {
    if range.is_empty() {
        return Vec::new();
    }
    if range.end < items.len() {
        items.select_nth_unstable_by(range.end, &cmp);
    }
    let before_end = &mut items[..range.end];
    if range.start > 0 {
        before_end.select_nth_unstable_by(range.start, &cmp);
    }
    let page = &mut before_end[range.start..];
    page.sort_unstable_by(&cmp);
    page.to_vec()
}

/// A set of resource ids as a bitmap: 12.5 KB for 100 000 ids, so a walk in another
/// order (by name, by deadline) tests membership without the cache misses of reading
/// each resource's columns in that order.
struct IdSet(Vec<u64>);

impl IdSet {
    /// `ids` in ascending order.
    fn new(ids: &[ResourceId]) -> Self {
        let words = ids.last().map_or(0, |id| id.get() as usize / 64 + 1);
        let mut bits = vec![0u64; words];
        for id in ids {
            bits[id.get() as usize / 64] |= 1 << (id.get() % 64);
        }
        IdSet(bits)
    }

    fn contains(&self, id: ResourceId) -> bool {
        self.0
            .get(id.get() as usize / 64)
            .is_some_and(|w| w & (1 << (id.get() % 64)) != 0)
    }
}

/// How a walk in another order than the ids' tells a match.
enum Members<'c> {
    /// The filter is on flags only: read them (100 KB at 100 000, cache-resident).
    Flags(Flags, Flags, &'c Columns),
    Set(IdSet),
}

impl<'c> Members<'c> {
    /// The matches of `filter`, given as `matches` (ascending ids).
    fn new(filter: &RowFilter, matches: &[ResourceId], columns: &'c Columns) -> Self {
        if filter.beyond_flags().is_trivial() {
            Members::Flags(filter.mask, filter.want, columns)
        } else {
            Members::Set(IdSet::new(matches))
        }
    }

    fn contains(&self, id: ResourceId) -> bool {
        match self {
            Members::Flags(mask, want, columns) => columns.flags(id) & mask == *want,
            Members::Set(set) => set.contains(id),
        }
    }
}

/// The `range` of the ids `order` yields that are `members`.
fn walk_page(
    order: impl Iterator<Item = ResourceId>,
    members: &Members,
    range: Range<usize>,
) -> Vec<ResourceId> {
    order
        .filter(|&id| members.contains(id))
        .skip(range.start)
        .take(range.len())
        .collect()
}

/// `ids` (in ascending order) in `order`, the `range` of them.
fn id_page(ids: &[ResourceId], order: SortOrder, range: Range<usize>) -> Vec<ResourceId> {
    match order {
        SortOrder::Asc => ids[range].to_vec(),
        SortOrder::Desc => ids
            .iter()
            .rev()
            .skip(range.start)
            .take(range.len())
            .copied()
            .collect(),
    }
}

impl Broker {
    /// The page of resources `query` asks for, as the broker stands (bring it to `now`
    /// first). Clones only the page's resources.
    ///
    /// Reads the `Columns` only. The matches are found among the tag index's
    /// candidates when they are a small part of the lab, else by one scan of the flags
    /// column (or one substring search over every name). They are then ordered only as
    /// far as the page needs: by walking
    /// an ordered index (names, lock deadlines) when the page is near its start, by a
    /// partial sort otherwise.
    pub fn query_resources(&self, query: &ResourceQuery) -> ResourcePage {
        let columns = self.tags.columns();
        let required: Vec<&str> = query
            .criteria
            .iter()
            .flat_map(Criteria::required_tags)
            .collect();
        // The free sets hold exactly the unlocked, in-service resources.
        let pool = if query.locked == Some(false) && query.in_service == Some(true) {
            Pool::Free
        } else {
            Pool::All
        };
        let candidates = self.tags.candidates(&required, pool);
        let folded = query
            .name
            .as_deref()
            .filter(|n| !n.is_empty())
            .map(str::to_lowercase);
        let filter = RowFilter::new(query, folded.as_deref(), &self.tags);
        // What the candidates do not guarantee. When nothing, they are the matches.
        let rest = filter.beyond_candidates(query, pool);
        let is_exact = rest.is_trivial();
        // A step through the tree of candidates (~7 ns) costs several steps of the scan
        // of the flags column (~1 ns): only a small set of candidates is walked.
        let is_narrow = candidates.len() <= columns.len() / 4;
        let total_if_exact = is_exact.then(|| {
            if required.is_empty() && pool == Pool::All {
                columns.len()
            } else {
                candidates.len()
            }
        });
        let sort = query.sort;

        // The page straight from an order, when the total is known without counting and
        // the page is near enough to the start of the order.
        if let Some(total) = total_if_exact {
            let range = query.page.range(total);
            let dense = columns
                .live()
                .filter(|&(id, flags)| filter.admits(id, flags, columns))
                .map(|(id, _)| id);
            let ids = match (sort, query.order) {
                (ResourceSort::Id, SortOrder::Asc) if is_narrow => Some(
                    candidates
                        .iter()
                        .skip(range.start)
                        .take(range.len())
                        .collect(),
                ),
                (ResourceSort::Id, SortOrder::Desc) if is_narrow => Some(
                    candidates
                        .iter()
                        .rev()
                        .skip(range.start)
                        .take(range.len())
                        .collect(),
                ),
                (ResourceSort::Id, SortOrder::Asc) => {
                    Some(dense.skip(range.start).take(range.len()).collect())
                }
                (ResourceSort::Id, SortOrder::Desc) => {
                    Some(dense.rev().skip(range.start).take(range.len()).collect())
                }
                // Each step of this walk reads the walked resource's columns out of id
                // order (cache misses): worth it only near the start.
                (ResourceSort::Name, order)
                    if walk_is_cheaper(range.end, columns.len(), total, 16, 4) =>
                {
                    let admitted = |id: &ResourceId| filter.admits_id(*id, columns);
                    let names = columns.by_name();
                    Some(match order {
                        SortOrder::Asc => names
                            .filter(admitted)
                            .skip(range.start)
                            .take(range.len())
                            .collect(),
                        SortOrder::Desc => names
                            .rev()
                            .filter(admitted)
                            .skip(range.start)
                            .take(range.len())
                            .collect(),
                    })
                }
                // Every resource: the locked ones are the deadline index's locks.
                (ResourceSort::LockExpiresAt, order) if filter.is_trivial() => {
                    Some(self.all_by_expiry(order, range))
                }
                _ => None,
            };
            if let Some(ids) = ids {
                return self.page_of(total, ids);
            }
        }

        let matches: Vec<ResourceId> = match folded.as_deref() {
            _ if is_narrow && is_exact => candidates.iter().collect(),
            _ if is_narrow => candidates
                .iter()
                .filter(|&id| rest.admits_id(id, columns))
                .collect(),
            // When the candidates are most of the lab, one search over every name beats
            // a search in each candidate's.
            Some(needle) => columns
                .names_containing(needle)
                .into_iter()
                .filter(|&id| filter.admits_id(id, columns))
                .collect(),
            None => {
                let mut ids = columns.scan(filter.mask, filter.want);
                let rest = filter.beyond_flags();
                if !rest.is_trivial() {
                    ids.retain(|&id| rest.admits_id(id, columns));
                }
                ids
            }
        };
        let total = matches.len();
        let range = query.page.range(total);
        let ids = match sort {
            ResourceSort::Id => id_page(&matches, query.order, range),
            ResourceSort::Name => {
                // A step of ordering compares strings; a walk step reads an id from a
                // vector and a bit.
                if walk_is_cheaper(range.end, columns.len(), total, 1, 4) {
                    let members = Members::new(&filter, &matches, columns);
                    match query.order {
                        SortOrder::Asc => walk_page(columns.by_name(), &members, range),
                        SortOrder::Desc => walk_page(columns.by_name().rev(), &members, range),
                    }
                } else {
                    let keyed: Vec<(&str, ResourceId)> =
                        matches.iter().map(|&id| (columns.name(id), id)).collect();
                    let page = match query.order {
                        SortOrder::Asc => select_page(keyed, range, |a, b| a.cmp(b)),
                        SortOrder::Desc => select_page(keyed, range, |a, b| b.cmp(a)),
                    };
                    page.into_iter().map(|(_, id)| id).collect()
                }
            }
            ResourceSort::LockExpiresAt => self.expiry_page(&matches, &filter, query.order, range),
        };
        self.page_of(total, ids)
    }

    /// The `range` of every resource by lock expiry (see [`Broker::expiry_page`]),
    /// without looking at the resources before the page.
    fn all_by_expiry(&self, order: SortOrder, range: Range<usize>) -> Vec<ResourceId> {
        let columns = self.tags.columns();
        // Every lock has a token: this counts the locked resources.
        let split = self.by_token.len();
        let locked_range = range.start.min(split)..range.end.min(split);
        let free_range = range.start.max(split) - split..range.end.max(split) - split;
        let locks = self.deadlines.iter().filter_map(|(_, due)| match due {
            Due::LockExpiry(id) => Some(*id),
            _ => None,
        });
        let mut ids: Vec<ResourceId> = match order {
            SortOrder::Asc => locks
                .skip(locked_range.start)
                .take(locked_range.len())
                .collect(),
            SortOrder::Desc => locks
                .rev()
                .skip(locked_range.start)
                .take(locked_range.len())
                .collect(),
        };
        let free = columns
            .live()
            .filter(|&(_, flags)| flags & LOCKED == 0)
            .map(|(id, _)| id);
        match order {
            SortOrder::Asc => ids.extend(free.skip(free_range.start).take(free_range.len())),
            SortOrder::Desc => ids.extend(free.rev().skip(free_range.start).take(free_range.len())),
        }
        ids
    }

    /// The `range` of `matches` (ascending ids) by lock expiry: locked ones by (expiry,
    /// id) in `order`, then the free ones by id in `order`.
    fn expiry_page(
        &self,
        matches: &[ResourceId],
        filter: &RowFilter,
        order: SortOrder,
        range: Range<usize>,
    ) -> Vec<ResourceId> {
        let columns = self.tags.columns();
        let (locked, free): (Vec<ResourceId>, Vec<ResourceId>) = match filter.locked() {
            Some(true) => (matches.to_vec(), Vec::new()),
            Some(false) => (Vec::new(), matches.to_vec()),
            None => matches
                .iter()
                .partition(|&&id| columns.flags(id) & LOCKED != 0),
        };
        let split = locked.len();
        let locked_range = range.start.min(split)..range.end.min(split);
        let free_range = range.start.max(split) - split..range.end.max(split) - split;
        let mut ids = if locked_range.is_empty() {
            Vec::new()
        } else if walk_is_cheaper(locked_range.end, self.deadlines.len(), split, 4, 1) {
            // The deadline index is in (expiry, id) order already. A step through its
            // tree costs a few steps of the partial sort of (expiry, id) pairs.
            let lock_order = |(_, due): &(Timestamp, Due)| match due {
                Due::LockExpiry(id) => Some(*id),
                _ => None,
            };
            let members = Members::new(filter, &locked, columns);
            let deadlines = self.deadlines.iter();
            match order {
                SortOrder::Asc => {
                    walk_page(deadlines.filter_map(lock_order), &members, locked_range)
                }
                SortOrder::Desc => walk_page(
                    deadlines.rev().filter_map(lock_order),
                    &members,
                    locked_range,
                ),
            }
        } else {
            let keyed: Vec<(Timestamp, ResourceId)> = locked
                .iter()
                .map(|&id| (columns.expires_at(id).expect("locked"), id))
                .collect();
            let page = match order {
                SortOrder::Asc => select_page(keyed, locked_range, |a, b| a.cmp(b)),
                SortOrder::Desc => select_page(keyed, locked_range, |a, b| b.cmp(a)),
            };
            page.into_iter().map(|(_, id)| id).collect()
        };
        ids.extend(id_page(&free, order, free_range));
        ids
    }

    /// A page of the resources `ids`, cloned, with the `total` it is a page of.
    fn page_of(&self, total: usize, ids: Vec<ResourceId>) -> ResourcePage {
        ResourcePage {
            total,
            items: ids
                .iter()
                .map(|id| self.resources.get_shared(id).expect("listed").clone())
                .collect(),
        }
    }

    /// The page of live reservations `query` asks for, in the list's order: pending ones
    /// in queue order, then the others by creation. Positions are places in the whole
    /// queue, whatever the filter.
    pub fn query_reservations(&self, query: &ReservationQuery, now: Timestamp) -> ReservationPage {
        let admits = |r: &Reservation| {
            (query.statuses.is_empty() || query.statuses.contains(&r.status))
                && query.priority.is_none_or(|p| r.request.priority == p)
                && query.tags.iter().all(|tag| {
                    r.request
                        .groups
                        .iter()
                        .any(|g| g.criteria.required_tags().contains(&tag.as_str()))
                })
        };
        let wants_pending =
            query.statuses.is_empty() || query.statuses.contains(&ReservationStatus::Pending);
        let pending = self
            .queue_order(now)
            .zip(1..)
            .filter(|_| wants_pending)
            .map(|(id, place)| (&self.reservations[&id], Some(place)));
        let mut others: Vec<&Arc<Reservation>> = self
            .reservations
            .values()
            .filter(|r| r.status != ReservationStatus::Pending && admits(r))
            .collect();
        others.sort_by_key(|r| r.seq);
        let range = query.page.range(usize::MAX);
        let mut total = 0;
        let mut items = Vec::new();
        for (r, place) in pending
            .filter(|(r, _)| admits(r))
            .chain(others.into_iter().map(|r| (r, None)))
        {
            if range.contains(&total) && items.len() < query.page.limit {
                items.push((r.clone(), place));
            }
            total += 1;
        }
        ReservationPage { total, items }
    }
}

#[cfg(test)]
mod tests;
