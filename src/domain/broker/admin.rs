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

/// How many changed resources are matched against the waiters' criteria one by one.
const RECHECK_BY_TAGS: usize = 8;

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
    /// `NameTaken` when another resource has the name.
    pub fn add_resource(
        &mut self,
        spec: ResourceSpec,
        now: Timestamp,
    ) -> Result<ResourceId, DomainError> {
        self.expire_due(now);
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
    /// `ResourceNotFound`.
    pub fn update_resource(
        &mut self,
        id: ResourceId,
        patch: ResourcePatch,
        now: Timestamp,
    ) -> Result<Vec<Field>, DomainError> {
        self.expire_due(now);
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
    /// `specs` come from a validated descriptor: names are unique.
    pub fn reload(&mut self, specs: Vec<ResourceSpec>, now: Timestamp) -> ReloadReport {
        self.expire_due(now);
        let mut report = ReloadReport::default();
        // At 100 000 resources this runs for milliseconds under the broker mutex, so it
        // avoids a lookup per resource: one hash lookup per name, then one ordered walk
        // over the resources beside the ids the file names (both in id order) tells
        // what the file dropped and which named resources differ from it.
        let ids: Vec<Option<ResourceId>> = specs
            .iter()
            .map(|s| self.by_name.get(&s.name).copied())
            .collect();
        let mut named: Vec<(ResourceId, usize)> = ids
            .iter()
            .enumerate()
            .filter_map(|(i, id)| id.map(|id| (id, i)))
            .collect();
        named.sort_unstable();
        let mut differs = vec![false; specs.len()];
        let mut gone = Vec::new();
        let mut named = named.into_iter().peekable();
        for r in self.resources.values() {
            match named.next_if(|&(id, _)| id == r.id) {
                Some((_, i))
                    if r.spec == specs[i] && !r.retiring && r.origin == Origin::Descriptor =>
                {
                    report.unchanged += 1;
                }
                Some((_, i)) => differs[i] = true,
                None if r.origin == Origin::Descriptor => gone.push(r.id),
                None => {} // created through the API: left alone
            }
        }
        // Removals first, so that a hold they release can go to a waiter in this step.
        for id in gone {
            let resource = self.resources.get_mut(&id).expect("listed above");
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
                self.events.push(Event::ResourceRetiring {
                    resource: id,
                    name: name.clone(),
                    at: now,
                });
            }
            report.retiring.push(name);
        }
        for ((spec, id), differs) in specs.into_iter().zip(ids).zip(differs) {
            let Some(id) = id else {
                report.added.push(spec.name.clone());
                self.add(spec, Origin::Descriptor, now);
                continue;
            };
            if !differs {
                continue; // counted unchanged above
            }
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
        if retagged {
            self.tags.remove(resource);
            resource.spec = spec;
            self.tags.insert(resource);
        } else {
            resource.spec = spec;
            if max_changed {
                self.tags.max_lock_changed(resource);
            }
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
            Recheck::Tags(old) => {
                let mut affected = vec![false; self.queue.criteria_count()];
                for (number, criteria) in self.queue.every_criteria() {
                    affected[number] = old.iter().any(|tags| criteria.matches_tags(tags));
                }
                affected
            }
        };
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
