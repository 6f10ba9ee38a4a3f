//! Resource administration while the broker runs: create, change and delete resources,
//! and merge a re-read descriptor into the lab (reload).
//!
//! The rules, whichever way a change arrives:
//!
//! - A held lock is never broken, except by a forced delete (recorded as a force unlock:
//!   [`Event::ForceUnlocked`], and the holder's token unlocks nothing afterwards).
//! - Ids are never reused: a new resource takes `next_id`, a removed id stays unused.
//! - A resource removed from the descriptor while locked is *retiring*: lent to no one
//!   (the tag index files it as not free), and removed the moment its lock ends, however
//!   it ends. [`Broker::release`] queues it in `retired`; the next serving of the queue,
//!   still inside the same operation, removes it, after the release's own events.
//! - Whatever may let a waiter in (a new resource, a changed tag, a removed hold) marks
//!   the queue dirty, and the operation serves it before returning. Whatever may shut a
//!   waiter out for good (a removal, a tag or max-lock-duration change) also has the
//!   pending reservations re-examined before serving: those no remaining resources could
//!   ever serve end with [`EndReason::Unsatisfiable`] instead of waiting for nothing.
//!
//! ```text
//!   reload, per descriptor name:   new ─▶ added (next id)
//!                                  known, differs (or retiring, or API-created) ─▶ updated
//!                                  known, same ─▶ unchanged
//!   per descriptor resource the file no longer names:
//!                                  free ─▶ removed now      locked ─▶ retiring ─(lock ends)─▶ removed
//!   resources created through the API and not named: left alone
//! ```

use super::*;
use crate::domain::events::Field;
use crate::domain::queue::Shape;

/// A change to a resource's properties (`PATCH`): each `Some` replaces the current value.
/// The name and id never change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourcePatch {
    pub description: Option<String>,
    pub endpoint: Option<String>,
    /// Validated tags, in order, without duplicates.
    pub tags: Option<Vec<String>>,
    /// Applies to later grants and extensions; a held lock keeps its expiry.
    pub max_lock_duration: Option<Ttl>,
}

/// Resources that changed or went since the waiters were last re-examined (see
/// [`Broker::end_unsatisfiable`]), by the tags they had; past a few, every waiter is
/// re-examined instead of matching each against each.
#[derive(Debug, Default)]
pub(super) enum Recheck {
    #[default]
    Nobody,
    Tags(Vec<Vec<String>>),
    Everyone,
}

/// How many changed resources are remembered by their tags; past that, every waiter is
/// re-examined.
const RECHECK_BY_TAGS: usize = 4_096;

/// The most (changed resource, waiters' criteria) pairs matched one by one (tens of
/// nanoseconds each); past that, every waiter is re-examined instead.
const RECHECK_PAIRS: usize = 100_000;

impl Recheck {
    /// A resource that had `tags` changed what it can serve, or went.
    pub(super) fn add(&mut self, tags: &[String]) {
        match self {
            Recheck::Nobody => *self = Recheck::Tags(vec![tags.to_vec()]),
            Recheck::Tags(old) if old.len() < RECHECK_BY_TAGS => old.push(tags.to_vec()),
            Recheck::Tags(_) | Recheck::Everyone => *self = Recheck::Everyone,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        matches!(self, Recheck::Nobody)
    }
}

/// Refuses a resource's tag list over the limits (`domain::tags`).
fn check_resource_tags(tags: &[String]) -> Result<(), DomainError> {
    tags::check_tags(tags, tags::MAX_TAGS_PER_RESOURCE, "a resource")
        .map_err(DomainError::InvalidTags)
}

/// A re-read descriptor compared with the lab: what a reload has to change.
///
/// Comparing 100 000 specs takes tens of milliseconds; the runtime does it outside the
/// broker mutex, against a snapshot, and the broker then applies only the differences
/// ([`Broker::apply_reload`]): its time follows what changed, not the size of the lab.
#[derive(Debug)]
pub struct ReloadDiff {
    /// The file's specs in file order, each with what it is to the lab.
    specs: Vec<(ResourceSpec, Verdict)>,
    /// Indexes into `specs` of the new and the differing ones.
    changed: Vec<usize>,
    /// Descriptor resources the file no longer names, in id order.
    gone: Vec<ResourceId>,
    unchanged: usize,
    /// [`Broker::spec_version`] when compared.
    version: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    New,
    Same,
    Differs(ResourceId),
}

impl ReloadDiff {
    /// Compares `specs` (a validated descriptor: unique names) with `snapshot`, taken at
    /// [`Broker::spec_version`] `version`. Pure: call it without the broker.
    pub fn new(snapshot: &ResourceSnapshot, version: u64, specs: Vec<ResourceSpec>) -> Self {
        let by_name: HashMap<&str, ResourceId> = snapshot
            .iter()
            .map(|r| (r.spec.name.as_str(), r.id))
            .collect();
        Self::compare(
            snapshot.iter(),
            |name| by_name.get(name).copied(),
            specs,
            version,
        )
    }

    /// One hash lookup per name, then one walk over the resources (in id order) beside
    /// the ids the file names (sorted), which tells what the file dropped and which
    /// named resources differ from it.
    fn compare<'a>(
        resources: impl Iterator<Item = &'a Resource>,
        id_of: impl Fn(&str) -> Option<ResourceId>,
        specs: Vec<ResourceSpec>,
        version: u64,
    ) -> Self {
        let ids: Vec<Option<ResourceId>> = specs.iter().map(|s| id_of(&s.name)).collect();
        let mut named: Vec<(ResourceId, usize)> = ids
            .iter()
            .enumerate()
            .filter_map(|(i, id)| id.map(|id| (id, i)))
            .collect();
        named.sort_unstable();
        let mut verdicts: Vec<Verdict> = vec![Verdict::New; specs.len()];
        let mut gone = Vec::new();
        let mut unchanged = 0;
        let mut named = named.into_iter().peekable();
        for r in resources {
            match named.next_if(|&(id, _)| id == r.id) {
                Some((_, i))
                    if r.spec == specs[i] && !r.retiring && r.origin == Origin::Descriptor =>
                {
                    verdicts[i] = Verdict::Same;
                    unchanged += 1;
                }
                Some((id, i)) => verdicts[i] = Verdict::Differs(id),
                None if r.origin == Origin::Descriptor => gone.push(r.id),
                None => {} // created through the API: left alone
            }
        }
        let changed = (0..specs.len())
            .filter(|&i| verdicts[i] != Verdict::Same)
            .collect();
        ReloadDiff {
            specs: specs.into_iter().zip(verdicts).collect(),
            changed,
            gone,
            unchanged,
            version,
        }
    }
}

/// What a reload did, by resource name (file order for `added` and `updated`, id order
/// for the others).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// New names, given the next ids.
    pub added: Vec<String>,
    /// Named by the file and changed: their properties, or no longer retiring, or created
    /// through the API and now the descriptor's.
    pub updated: Vec<String>,
    /// No longer named, and free: gone.
    pub removed: Vec<String>,
    /// No longer named, but locked: they go when their lock ends (also those already
    /// retiring since an earlier reload).
    pub retiring: Vec<String>,
    /// Named by the file and exactly as it says.
    pub unchanged: usize,
}

impl Broker {
    /// Creates a resource (origin [`Origin::Api`]) under the next id. It may serve a
    /// waiting reservation at once.
    ///
    /// # Errors
    /// `InvalidTags` over the tag limits; `NameTaken` when another resource has the
    /// name.
    pub fn add_resource(
        &mut self,
        spec: ResourceSpec,
        now: Timestamp,
    ) -> Result<ResourceId, DomainError> {
        self.expire_due(now);
        check_resource_tags(&spec.tags)?;
        if let Some(&id) = self.by_name.get(&spec.name) {
            return Err(DomainError::NameTaken {
                name: spec.name,
                id,
            });
        }
        let id = self.add(spec, Origin::Api, now);
        self.serve_queue_if_dirty(now);
        Ok(id)
    }

    /// Changes a resource's properties. A tag change re-indexes it and may serve (or shut
    /// out for good) waiting reservations; a held lock is never broken. Returns what
    /// changed, by wire name (empty when nothing did).
    ///
    /// # Errors
    /// `ResourceNotFound`; `InvalidTags` over the tag limits.
    pub fn update_resource(
        &mut self,
        id: ResourceId,
        patch: ResourcePatch,
        now: Timestamp,
    ) -> Result<Vec<Field>, DomainError> {
        self.expire_due(now);
        if let Some(tags) = &patch.tags {
            check_resource_tags(tags)?;
        }
        let current = &self
            .resources
            .get(&id)
            .ok_or(DomainError::ResourceNotFound(id))?
            .spec;
        let spec = ResourceSpec {
            name: current.name.clone(),
            description: patch
                .description
                .unwrap_or_else(|| current.description.clone()),
            endpoint: patch.endpoint.unwrap_or_else(|| current.endpoint.clone()),
            tags: patch.tags.unwrap_or_else(|| current.tags.clone()),
            max_lock_duration: patch.max_lock_duration.unwrap_or(current.max_lock_duration),
        };
        let fields = self.respecify(id, spec);
        self.record_update(id, &fields, now);
        self.serve_queue_if_dirty(now);
        Ok(fields)
    }

    /// Deletes a resource. A free resource held for a waiting reservation is released
    /// from the hold. A locked one is refused unless `force` gives a reason: then its lock
    /// is broken first. Returns the resource as it was when it went (free).
    ///
    /// # Errors
    /// `ResourceNotFound`; `ResourceLocked` when locked and not forced.
    pub fn remove_resource(
        &mut self,
        id: ResourceId,
        force: Option<&str>,
        now: Timestamp,
    ) -> Result<Resource, DomainError> {
        self.expire_due(now);
        let resource = self
            .resources
            .get(&id)
            .ok_or(DomainError::ResourceNotFound(id))?;
        if let Some(lease) = resource.lease().cloned() {
            let reason = force.ok_or(DomainError::ResourceLocked(id))?;
            self.break_lock(id, &lease, reason.to_owned(), now);
        }
        let removed = self.forget(id, now);
        self.serve_queue_if_dirty(now);
        Ok(removed)
    }

    /// Merges a re-read descriptor by name (see the module documentation). Ids of the
    /// resources that stay do not change; no held lock is broken.
    ///
    /// `specs` come from a validated descriptor: names are unique. This compares and
    /// applies in one go; the runtime compares outside the broker mutex instead
    /// ([`ReloadDiff::new`], then [`Broker::apply_reload`]).
    pub fn reload(&mut self, specs: Vec<ResourceSpec>, now: Timestamp) -> ReloadReport {
        self.expire_due(now);
        let mut diff = self.diff(specs);
        self.apply_reload(&mut diff, now)
    }

    /// A number that changes whenever a resource is added, removed, or changes its
    /// spec, origin or retiring state: a [`ReloadDiff`] made at one version applies
    /// as is only at the same version.
    pub fn spec_version(&self) -> u64 {
        self.spec_version
    }

    /// Applies a reload compared at [`Broker::spec_version`] `diff.version`: only what
    /// differs is touched, so the broker's time follows the changes, not the lab. If
    /// the lab changed since, the comparison is made again first. The specs left in
    /// `diff` (the unchanged ones) are the caller's to drop, outside the mutex.
    pub fn apply_reload(&mut self, diff: &mut ReloadDiff, now: Timestamp) -> ReloadReport {
        self.expire_due(now);
        if diff.version != self.spec_version {
            let specs = std::mem::take(&mut diff.specs)
                .into_iter()
                .map(|(spec, _)| spec)
                .collect();
            *diff = self.diff(specs);
        }
        let mut report = ReloadReport {
            unchanged: diff.unchanged,
            ..ReloadReport::default()
        };
        // Removals first, so that a hold they release can go to a waiter in this step.
        for &id in &diff.gone {
            let resource = self
                .resources
                .get_mut(&id)
                .expect("compared at this version");
            let name = resource.spec.name.clone();
            if !resource.is_locked() {
                self.forget(id, now);
                report.removed.push(name);
                continue;
            }
            if !resource.retiring {
                resource.retiring = true;
                self.tags.refresh(resource);
                self.queue_dirty = true;
                self.recheck.add(&resource.spec.tags);
                self.spec_version += 1;
                self.events.push(Event::ResourceRetiring {
                    resource: id,
                    name: name.clone(),
                    at: now,
                });
            }
            report.retiring.push(name);
        }
        for &at in &diff.changed {
            let (spec, verdict) = &mut diff.specs[at];
            // An empty name allocates nothing: the spec moves out, a husk stays.
            let spec = std::mem::replace(spec, ResourceSpec::named(String::new()));
            let Verdict::Differs(id) = *verdict else {
                report.added.push(spec.name.clone());
                self.add(spec, Origin::Descriptor, now);
                continue;
            };
            let name = spec.name.clone();
            let mut fields = self.respecify(id, spec);
            let resource = self.resources.get_mut(&id).expect("indexed by name");
            if resource.retiring {
                // Named again: its lock runs on and it stays.
                resource.retiring = false;
                self.tags.refresh(resource);
                fields.push("retiring");
            }
            if resource.origin == Origin::Api {
                resource.origin = Origin::Descriptor;
                fields.push("origin");
            }
            debug_assert!(!fields.is_empty(), "found to differ");
            self.record_update(id, &fields, now);
            report.updated.push(name);
        }
        self.serve_queue_if_dirty(now);
        report
    }

    /// Compares `specs` with the lab, under the mutex (see [`ReloadDiff::new`]).
    fn diff(&self, specs: Vec<ResourceSpec>) -> ReloadDiff {
        ReloadDiff::compare(
            self.resources.values(),
            |name| self.by_name.get(name).copied(),
            specs,
            self.spec_version,
        )
    }

    /// Files a new resource and records it. The queue is dirty: it may serve a waiter.
    fn add(&mut self, spec: ResourceSpec, origin: Origin, now: Timestamp) -> ResourceId {
        let name = spec.name.clone();
        let id = self
            .insert_resource(spec, origin)
            .expect("the caller checked the name is free");
        self.events.push(Event::ResourceAdded {
            resource: id,
            name,
            at: now,
        });
        self.queue_dirty = true;
        id
    }

    /// Gives resource `id` the properties `spec` (same name), re-indexing its tags when
    /// they change. Returns what changed.
    fn respecify(&mut self, id: ResourceId, spec: ResourceSpec) -> Vec<Field> {
        let resource = self
            .resources
            .get_mut(&id)
            .expect("the caller checked the id");
        debug_assert_eq!(resource.spec.name, spec.name, "names never change");
        let old = &resource.spec;
        let mut fields = Vec::new();
        if old.description != spec.description {
            fields.push("description");
        }
        if old.endpoint != spec.endpoint {
            fields.push("endpoint");
        }
        self.spec_version += 1;
        let retagged = old.tags != spec.tags;
        if retagged {
            fields.push("tags");
        }
        if old.max_lock_duration != spec.max_lock_duration {
            fields.push("max-lock-duration");
        }
        let max_changed = old.max_lock_duration != spec.max_lock_duration;
        if retagged || max_changed {
            // Who the resource can serve changed: it may let a waiter in, move the holds,
            // or leave a waiter nothing that could ever serve it.
            self.queue_dirty = true;
            self.recheck.add(&old.tags);
        }
        resource.spec = spec;
        if retagged {
            self.tags.retag(resource);
        }
        if max_changed {
            self.tags.max_lock_changed(resource);
        }
        fields
    }

    fn record_update(&mut self, id: ResourceId, fields: &[Field], now: Timestamp) {
        if !fields.is_empty() {
            self.events.push(Event::ResourceUpdated {
                resource: id,
                fields: fields.to_vec(),
                at: now,
            });
        }
    }

    /// Removes free resource `id` from every index and records it, with its maintenance
    /// window's deadlines (a free resource has no lock deadline). The queue is dirty (a
    /// hold may have gone) and the waiters are re-examined.
    fn forget(&mut self, id: ResourceId, now: Timestamp) -> Resource {
        self.unschedule_maintenance(id);
        let resource = self
            .resources
            .remove(&id)
            .expect("the caller checked the id");
        debug_assert!(!resource.is_locked(), "locks are released before removal");
        self.by_name.remove(&resource.spec.name);
        self.tags.remove(&resource);
        self.held.remove(&id);
        self.queue_dirty = true;
        self.spec_version += 1;
        self.recheck.add(&resource.spec.tags);
        self.events.push(Event::ResourceRemoved {
            resource: id,
            name: resource.spec.name.clone(),
            at: now,
        });
        resource
    }

    /// Run before every serving of the queue: retiring resources whose lock has ended go,
    /// then, if resources changed, waiters that can never be served end.
    pub(super) fn settle_admin(&mut self, now: Timestamp) {
        for id in std::mem::take(&mut self.retired) {
            // A forced delete may have removed it already.
            if self
                .resources
                .get(&id)
                .is_some_and(|r| r.retiring && !r.is_locked())
            {
                self.forget(id, now);
            }
        }
        let recheck = std::mem::take(&mut self.recheck);
        if !recheck.is_empty() {
            self.end_unsatisfiable(recheck, now);
        }
    }

    /// Ends every pending reservation that no remaining resource could ever serve.
    /// Only waiters asking by criteria that a changed or removed resource met (under
    /// its old tags) can have lost anything: the others are not looked at.
    fn end_unsatisfiable(&mut self, recheck: Recheck, now: Timestamp) {
        let affected: Vec<bool> = match recheck {
            Recheck::Nobody => return,
            Recheck::Everyone => vec![true; self.queue.criteria_count()],
            Recheck::Tags(old) if old.len() * self.queue.criteria_count() > RECHECK_PAIRS => {
                vec![true; self.queue.criteria_count()]
            }
            Recheck::Tags(old) => {
                let mut affected = vec![false; self.queue.criteria_count()];
                for (number, criteria) in self.queue.every_criteria() {
                    affected[number] = old.iter().any(|tags| criteria.matches_tags(tags));
                }
                affected
            }
        };
        if !affected.contains(&true) {
            return; // no waiter asks by criteria a changed resource met
        }
        // Waiters asking the same thing get the same answer: judge each request once.
        let mut verdicts: HashMap<(Shape, Vec<u32>), bool> = HashMap::new();
        let mut doomed = Vec::new();
        for (id, shape) in self.queue.in_order(now, self.policy.aging) {
            if !self
                .queue
                .shape_criteria(shape)
                .iter()
                .any(|&c| affected[c])
            {
                continue;
            }
            let request = &self.reservations[&id].request;
            let quantities = request.groups.iter().map(|g| g.quantity).collect();
            let servable = *verdicts.entry((shape, quantities)).or_insert_with(|| {
                self.check_satisfiable(&request.groups, request.ttl, now)
                    .is_ok()
            });
            if !servable {
                doomed.push(id);
            }
        }
        for id in doomed {
            self.end_reservation(id, EndReason::Unsatisfiable, now);
        }
    }

    /// The administration half of [`Broker::check_invariants`].
    pub(super) fn check_admin(&self) {
        assert!(
            self.retired.is_empty(),
            "retired resources are gone before an operation returns"
        );
        assert!(
            self.recheck.is_empty(),
            "waiters are re-examined before returning"
        );
        for r in self.resources.values() {
            assert!(
                !r.retiring || r.is_locked(),
                "{}: a retiring resource goes when its lock ends",
                r.id
            );
        }
        assert!(
            self.resources
                .last_id()
                .is_none_or(|id| id.get() < self.next_id),
            "ids are never reused"
        );
        // Satisfiability looks at every resource (`Pool::All`), whatever the time.
        let any_time = Timestamp::from_millis(0);
        for r in self.reservations.values() {
            if r.status == crate::domain::ReservationStatus::Pending {
                assert!(
                    self.check_satisfiable(&r.request.groups, r.request.ttl, any_time)
                        .is_ok(),
                    "{}: a pending reservation can be served some day",
                    r.id
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
