//! What the dashboard shows, computed from [`DashboardInputs`] (copied under the broker's
//! lock) after the lock is released: one pass over the resources filters the table's
//! page and counts the overview; the queue and the fulfilled reservations are bounded
//! lists.

use std::collections::HashMap;
use std::time::Duration;

use super::query::DashboardQuery;
use crate::domain::{
    Criteria, Reservation, ReservationId, Resource, ResourceId, ResourceState, Timestamp,
};
use crate::runtime::DashboardInputs;

/// Waiting reservations the queue table shows (the first in serving order); each costs a
/// `waiting_for` computation for its estimated start.
pub const QUEUE_ROWS: usize = 20;
/// Fulfilled or claimed reservations the page shows, latest first.
pub const FULFILLED_ROWS: usize = 20;
/// Tags the free-per-tag table shows: those on most resources.
pub const TAG_ROWS: usize = 50;
/// Tags the "most contended" list shows.
pub const CONTENDED_ROWS: usize = 5;

/// Everything one rendering needs, borrowing from the inputs.
pub struct View<'a> {
    pub now: Timestamp,
    pub warning: Duration,
    pub query: &'a DashboardQuery,
    pub overview: Overview,
    /// This page's rows.
    pub rows: Vec<Row<'a>>,
    /// Resources matching the filters, on every page.
    pub matched: usize,
    pub queue: Vec<QueueRow<'a>>,
    pub pending_total: usize,
    pub fulfilled: Vec<FulfilledRow<'a>>,
    pub granted_total: usize,
}

/// A resource on this page.
pub struct Row<'a> {
    pub resource: &'a Resource,
    pub state: ResourceState,
    /// The waiting reservation it is kept for (held resources only).
    pub held_for: Option<ReservationId>,
}

/// The lab at a glance.
pub struct Overview {
    /// By state, in the order of [`ResourceState::ALL`].
    pub counts: [usize; 6],
    pub total: usize,
    pub in_service: usize,
    pub locked_in_service: usize,
    /// The [`TAG_ROWS`] tags on most resources.
    pub tags: Vec<TagCount>,
    /// Distinct tags in the lab.
    pub tag_total: usize,
    /// The reservation that has waited longest, and since when.
    pub longest_wait: Option<(ReservationId, Timestamp)>,
    pub contended: Vec<TagCount>,
}

/// One tag's resources.
#[derive(Clone, Debug, Default)]
pub struct TagCount {
    pub tag: String,
    /// In state `free` (lendable now, held for nobody).
    pub free: usize,
    pub locked: usize,
    pub total: usize,
    /// Resources waiting reservations ask for with groups requiring this tag.
    pub wanted: u64,
}

/// A waiting reservation.
pub struct QueueRow<'a> {
    pub position: usize,
    pub reservation: &'a Reservation,
    /// The priority it is served at now (aged).
    pub effective_priority: u8,
    /// When enough locks will have expired to serve it; `None`: unknown.
    pub eta: Option<Timestamp>,
}

/// A fulfilled or claimed reservation and the names of its resources.
pub struct FulfilledRow<'a> {
    pub reservation: &'a Reservation,
    /// Per group of the request.
    pub groups: Vec<GroupShown<'a>>,
}

/// One group of a fulfilled reservation: its criteria, quantity and resources.
pub struct GroupShown<'a> {
    pub criteria: &'a Criteria,
    pub quantity: u32,
    /// Id and name of each resource allocated to the group.
    pub resources: Vec<(ResourceId, &'a str)>,
}

impl<'a> View<'a> {
    /// The view of `inputs` for `query`. `etas` are the estimated starts of the queue's
    /// first reservations; `aging` and `warning` are the broker's policy.
    pub fn build(
        inputs: &'a DashboardInputs,
        query: &'a DashboardQuery,
        etas: &HashMap<ReservationId, Option<Timestamp>>,
        aging: Duration,
        warning: Duration,
    ) -> View<'a> {
        let now = inputs.now;
        let holds: HashMap<ResourceId, ReservationId> = inputs.holds.iter().copied().collect();
        let needle = query.name.as_deref().map(Needle::new);
        let offset = usize::try_from(query.page.saturating_sub(1))
            .ok()
            .and_then(|p| p.checked_mul(query.per_page))
            .unwrap_or(usize::MAX);

        let mut counts = [0usize; 6];
        let (mut in_service, mut locked_in_service) = (0, 0);
        let mut tags: HashMap<&str, TagCount> = HashMap::new();
        let mut rows = Vec::with_capacity(query.per_page.min(inputs.resources.len()));
        let mut matched = 0usize;
        for r in inputs.resources.iter() {
            let held_for = holds.get(&r.id).copied();
            let state = r.classify(held_for.is_some());
            counts[state as usize] += 1;
            if r.in_service() {
                in_service += 1;
                locked_in_service += usize::from(r.is_locked());
            }
            for tag in &r.spec.tags {
                let t = tags.entry(tag.as_str()).or_default();
                t.total += 1;
                t.free += usize::from(state == ResourceState::Free);
                t.locked += usize::from(r.is_locked());
            }
            let passes = query.state.is_none_or(|s| s == state)
                && r.has_all_tags(&query.tags)
                && needle.as_ref().is_none_or(|n| n.is_in(&r.spec.name));
            if passes {
                if matched >= offset && rows.len() < query.per_page {
                    rows.push(Row {
                        resource: r,
                        state,
                        held_for: held_for.filter(|_| state == ResourceState::Held),
                    });
                }
                matched += 1;
            }
        }

        // What waiting reservations ask for, by tag.
        for reservation in &inputs.pending {
            for group in &reservation.request.groups {
                for tag in group.criteria.required_tags() {
                    if let Some(t) = tags.get_mut(tag) {
                        t.wanted += u64::from(group.quantity);
                    }
                }
            }
        }
        let tag_total = tags.len();
        let mut all: Vec<TagCount> = tags
            .into_iter()
            .map(|(tag, count)| TagCount {
                tag: tag.to_owned(),
                ..count
            })
            .collect();
        let mut contended: Vec<TagCount> = all
            .iter()
            .filter(|t| t.wanted > 0 || t.locked > 0)
            .cloned()
            .collect();
        // Most wanted by waiters first, then the largest share locked.
        contended.sort_by(|a, b| {
            b.wanted
                .cmp(&a.wanted)
                .then_with(|| (b.locked * a.total).cmp(&(a.locked * b.total)))
                .then_with(|| a.tag.cmp(&b.tag))
        });
        contended.truncate(CONTENDED_ROWS);
        all.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.tag.cmp(&b.tag)));
        all.truncate(TAG_ROWS);

        let longest_wait = inputs
            .pending
            .iter()
            .min_by_key(|r| (r.created_at, r.seq))
            .map(|r| (r.id, r.created_at));

        let queue = inputs
            .queue_head
            .iter()
            .enumerate()
            .map(|(i, reservation)| QueueRow {
                position: i + 1,
                reservation,
                effective_priority: reservation.effective_priority(now, aging).get(),
                eta: etas.get(&reservation.id).copied().flatten(),
            })
            .collect();

        let mut granted: Vec<&Reservation> = inputs.granted.iter().map(|r| &**r).collect();
        granted.sort_by(|a, b| {
            b.fulfilled_at
                .cmp(&a.fulfilled_at)
                .then_with(|| b.seq.cmp(&a.seq))
        });
        let fulfilled = granted
            .into_iter()
            .take(FULFILLED_ROWS)
            .map(|reservation| FulfilledRow {
                reservation,
                groups: reservation
                    .request
                    .groups
                    .iter()
                    .enumerate()
                    .map(|(i, g)| {
                        let resources = reservation
                            .allocations
                            .iter()
                            .filter(|a| a.group == i)
                            .map(|a| {
                                let name = inputs
                                    .resources
                                    .get(a.resource)
                                    .map_or("(removed)", |r| r.spec.name.as_str());
                                (a.resource, name)
                            })
                            .collect();
                        GroupShown {
                            criteria: &g.criteria,
                            quantity: g.quantity,
                            resources,
                        }
                    })
                    .collect(),
            })
            .collect();

        View {
            now,
            warning,
            query,
            overview: Overview {
                counts,
                total: inputs.resources.len(),
                in_service,
                locked_in_service,
                tags: all,
                tag_total,
                longest_wait,
                contended,
            },
            rows,
            matched,
            queue,
            pending_total: inputs.pending.len(),
            fulfilled,
            granted_total: inputs.granted.len(),
        }
    }

    /// The last page number (1 when nothing matches).
    pub fn last_page(&self) -> u64 {
        (self.matched as u64)
            .div_ceil(self.query.per_page as u64)
            .max(1)
    }
}

/// A case-insensitive substring, as the API's `name` filter compares (lower-cased).
struct Needle {
    lower: String,
}

impl Needle {
    fn new(text: &str) -> Needle {
        Needle {
            lower: text.to_lowercase(),
        }
    }

    fn is_in(&self, name: &str) -> bool {
        if self.lower.is_ascii() && name.is_ascii() {
            // No allocation for the common case.
            let n = self.lower.as_bytes();
            n.is_empty()
                || name
                    .as_bytes()
                    .windows(n.len())
                    .any(|w| w.eq_ignore_ascii_case(n))
        } else {
            name.to_lowercase().contains(&self.lower)
        }
    }
}

/// `1h 02m 03s`, `4m 05s`, `12s`: whole seconds, rounded down.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_the_countdown() {
        assert_eq!(format_duration(Duration::from_secs(0)), "0s");
        assert_eq!(format_duration(Duration::from_millis(12_999)), "12s");
        assert_eq!(format_duration(Duration::from_secs(245)), "4m 05s");
        assert_eq!(format_duration(Duration::from_secs(3723)), "1h 02m 03s");
        assert_eq!(format_duration(Duration::from_secs(90_000)), "25h 00m 00s");
    }

    #[test]
    fn names_match_without_case() {
        assert!(Needle::new("ARM").is_in("board-arm-1"));
        assert!(Needle::new("arm").is_in("BOARD-ARM-1"));
        assert!(!Needle::new("x86").is_in("board-arm-1"));
        assert!(Needle::new("ÉTÉ").is_in("salle-été"));
    }
}
