//! The broker: every resource and lock, as a synchronous state machine.
//!
//! Pure: no IO, no async, no clock. Each operation takes `now` and first expires whatever
//! is due at `now`, so every caller sees the state as of `now`; the runtime's timer only
//! makes expiry *prompt*, it is never needed for correctness.
//!
//! ```text
//!            lock / lock_matching                 unlock (token)
//!   Free ─────────────────────────────▶ Locked ───────────────────▶ Free(Unlocked)
//!                                       │   ▲ extend (token)
//!                                       │   └──┘
//!                                       └── now >= expires_at ────▶ Free(Expired)
//! ```
//!
//! Mutations record [`Event`]s, drained by the runtime with [`Broker::drain_events`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::clock::Timestamp;
use super::error::{DomainError, TokenUse};
use super::events::Event;
use super::resource::{
    FencingToken, Lease, LockState, LockToken, Released, Resource, ResourceId, ResourceSpec, Ttl,
};
use super::tags::TagIndex;

/// How a lock request picks its resource (1.0 `POST /resources/lock` criteria).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    Id(ResourceId),
    Name(String),
    /// Every tag must be present; the free match with the lowest id wins.
    Tags(Vec<String>),
}

/// Something that falls due at a deadline. One ordered index holds them all, so the timer
/// needs only the first entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Due {
    LockExpiry(ResourceId),
}

#[derive(Debug)]
pub struct Broker {
    resources: BTreeMap<ResourceId, Resource>,
    by_name: HashMap<String, ResourceId>,
    tags: TagIndex,
    deadlines: BTreeSet<(Timestamp, Due)>,
    /// The fencing token of the next grant. Starts at 1 and only grows.
    next_fencing: u64,
    events: Vec<Event>,
}

impl Broker {
    /// A broker holding `specs`, numbered 1, 2, 3... in order, all free.
    ///
    /// # Panics
    /// If two specs share a name: descriptors are validated before they get here.
    pub fn new(specs: impl IntoIterator<Item = ResourceSpec>) -> Self {
        let mut broker = Broker {
            resources: BTreeMap::new(),
            by_name: HashMap::new(),
            tags: TagIndex::default(),
            deadlines: BTreeSet::new(),
            next_fencing: 1,
            events: Vec::new(),
        };
        for (index, spec) in specs.into_iter().enumerate() {
            let id = ResourceId::new(u32::try_from(index + 1).expect("fewer than 4e9 resources"));
            let previous = broker.by_name.insert(spec.name.clone(), id);
            assert!(previous.is_none(), "duplicate resource name {}", spec.name);
            let resource = Resource {
                id,
                spec,
                state: LockState::Free(Released::Never),
            };
            broker.tags.insert(&resource);
            broker.resources.insert(id, resource);
        }
        broker
    }

    pub fn resource(&self, id: ResourceId) -> Option<&Resource> {
        self.resources.get(&id)
    }

    /// Every resource, in id order.
    pub fn resources(&self) -> impl ExactSizeIterator<Item = &Resource> {
        self.resources.values()
    }

    /// The earliest pending deadline, for the timer.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// Takes the events recorded since the last call.
    pub fn drain_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Locks resource `id` for `ttl`.
    ///
    /// # Errors
    /// `ResourceNotFound`, `AlreadyLocked`, or `TtlAboveMax` (checked in that order, as 1.0).
    pub fn lock(
        &mut self,
        id: ResourceId,
        ttl: Ttl,
        now: Timestamp,
    ) -> Result<(LockToken, Lease), DomainError> {
        self.expire_due(now);
        self.grant(id, ttl, now)
    }

    /// Locks the resource `selector` picks. Criteria precedence is the caller's business:
    /// the API turns the 1.0 query (id, then name, then tags) into one selector.
    ///
    /// # Errors
    /// As [`Broker::lock`], plus `NameNotFound`, `NoTagMatch` (no resource carries every
    /// tag) and `AllMatchesLocked`.
    pub fn lock_matching(
        &mut self,
        selector: &Selector,
        ttl: Ttl,
        now: Timestamp,
    ) -> Result<(ResourceId, LockToken, Lease), DomainError> {
        self.expire_due(now);
        let id = match selector {
            Selector::Id(id) => *id,
            Selector::Name(name) => *self
                .by_name
                .get(name)
                .ok_or_else(|| DomainError::NameNotFound(name.clone()))?,
            Selector::Tags(tags) => match self.tags.first_free_match(tags, &self.resources) {
                Some(id) => id,
                None if self.tags.any_match(tags, &self.resources) => {
                    return Err(DomainError::AllMatchesLocked(tags.clone()));
                }
                None => return Err(DomainError::NoTagMatch(tags.clone())),
            },
        };
        let (token, lease) = self.grant(id, ttl, now)?;
        Ok((id, token, lease))
    }

    /// Releases the lock on `id` held with `token`.
    ///
    /// # Errors
    /// `ResourceNotFound`, `NotLocked`, or `InvalidToken` (also for a missing token).
    pub fn unlock(
        &mut self,
        id: ResourceId,
        token: Option<&str>,
        now: Timestamp,
    ) -> Result<(), DomainError> {
        self.expire_due(now);
        let lease = self.held_lease(id, token, TokenUse::Unlock)?;
        self.release(id, lease.expires_at, Released::Unlocked);
        self.events.push(Event::Unlocked {
            resource: id,
            fencing: lease.fencing,
            at: now,
        });
        Ok(())
    }

    /// Moves the lock's expiry to `now + additional` (1.0 semantics: not old expiry +
    /// additional). The lock keeps its token and fencing token.
    ///
    /// # Errors
    /// `ResourceNotFound`, `NotLocked`, `InvalidToken`, or `TotalAboveMax` when the lock,
    /// counted from its acquisition, would outlast the resource's `max-lock-duration`.
    pub fn extend(
        &mut self,
        id: ResourceId,
        token: Option<&str>,
        additional: Ttl,
        now: Timestamp,
    ) -> Result<Lease, DomainError> {
        self.expire_due(now);
        let lease = self.held_lease(id, token, TokenUse::Extend)?;
        let max = self.resources[&id].spec.max_lock_duration;
        let new_expiry = deadline(now, additional);
        let total = new_expiry.saturating_duration_since(lease.acquired_at);
        if total > max.as_duration() {
            return Err(DomainError::TotalAboveMax {
                id,
                total_secs: total.as_millis().div_ceil(1000) as u64,
                max,
            });
        }
        self.deadlines
            .remove(&(lease.expires_at, Due::LockExpiry(id)));
        self.deadlines.insert((new_expiry, Due::LockExpiry(id)));
        let resource = self.resources.get_mut(&id).expect("held_lease checked it");
        let LockState::Locked(stored) = &mut resource.state else {
            unreachable!("held_lease checked the resource is locked")
        };
        stored.expires_at = new_expiry;
        self.events.push(Event::Extended {
            resource: id,
            fencing: lease.fencing,
            expires_at: new_expiry,
        });
        Ok(stored.clone())
    }

    /// Releases every lock whose deadline is `<= now`. A lock is therefore never released
    /// before its deadline, and is released by the first operation or timer tick at or
    /// after it.
    pub fn expire_due(&mut self, now: Timestamp) {
        while let Some(&(at, due)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            match due {
                Due::LockExpiry(id) => {
                    let fencing = self.resources[&id]
                        .lease()
                        .expect("a lock deadline points at a locked resource")
                        .fencing;
                    self.set_state(id, LockState::Free(Released::Expired(at)));
                    self.events.push(Event::Expired {
                        resource: id,
                        fencing,
                        deadline: at,
                    });
                }
            }
        }
    }

    /// Panics unless the broker's indexes agree with its resources (test support).
    pub fn check_invariants(&self) {
        let mut expected = BTreeSet::new();
        let mut max_fencing = 0;
        for r in self.resources.values() {
            assert_eq!(self.by_name.get(&r.spec.name), Some(&r.id));
            if let Some(lease) = r.lease() {
                assert!(
                    lease.acquired_at < lease.expires_at,
                    "{}: empty lease",
                    r.id
                );
                expected.insert((lease.expires_at, Due::LockExpiry(r.id)));
                max_fencing = max_fencing.max(lease.fencing.get());
            }
        }
        assert_eq!(self.by_name.len(), self.resources.len());
        assert_eq!(
            self.deadlines, expected,
            "every lock has exactly its deadline"
        );
        assert!(max_fencing < self.next_fencing, "fencing tokens only grow");
        self.tags.check_against(&self.resources);
    }

    fn grant(
        &mut self,
        id: ResourceId,
        ttl: Ttl,
        now: Timestamp,
    ) -> Result<(LockToken, Lease), DomainError> {
        let resource = self
            .resources
            .get(&id)
            .ok_or(DomainError::ResourceNotFound(id))?;
        if resource.is_locked() {
            return Err(DomainError::AlreadyLocked(id));
        }
        let max = resource.spec.max_lock_duration;
        if ttl > max {
            return Err(DomainError::TtlAboveMax { id, ttl, max });
        }
        let token = LockToken::generate();
        let lease = Lease {
            token,
            fencing: FencingToken::new(self.next_fencing),
            acquired_at: now,
            expires_at: deadline(now, ttl),
        };
        self.next_fencing += 1;
        self.deadlines
            .insert((lease.expires_at, Due::LockExpiry(id)));
        self.set_state(id, LockState::Locked(lease.clone()));
        self.events.push(Event::Locked {
            resource: id,
            fencing: lease.fencing,
            at: now,
            expires_at: lease.expires_at,
        });
        Ok((token, lease))
    }

    /// The lease on `id`, if `token` is its holder's.
    fn held_lease(
        &self,
        id: ResourceId,
        token: Option<&str>,
        used_for: TokenUse,
    ) -> Result<Lease, DomainError> {
        let resource = self
            .resources
            .get(&id)
            .ok_or(DomainError::ResourceNotFound(id))?;
        let lease = resource
            .lease()
            .ok_or(DomainError::NotLocked(id, used_for))?;
        if token.is_some_and(|t| lease.token.matches(t)) {
            Ok(lease.clone())
        } else {
            Err(DomainError::InvalidToken {
                resource: Box::new(resource.clone()),
                provided: token.map(str::to_owned),
                used_for,
            })
        }
    }

    fn release(&mut self, id: ResourceId, expires_at: Timestamp, why: Released) {
        self.deadlines.remove(&(expires_at, Due::LockExpiry(id)));
        self.set_state(id, LockState::Free(why));
    }

    /// The one place a resource's lock state changes, so the tag index follows it.
    fn set_state(&mut self, id: ResourceId, state: LockState) {
        let resource = self.resources.get_mut(&id).expect("caller checked the id");
        let is_free = matches!(state, LockState::Free(_));
        resource.state = state;
        self.tags.set_free(resource, is_free);
    }
}

/// `now + ttl`. Cannot overflow: a `Ttl` is at most a century and `now` is a real date.
fn deadline(now: Timestamp, ttl: Ttl) -> Timestamp {
    now.checked_add(ttl.as_duration())
        .expect("a Ttl is capped far below Timestamp's range")
}

#[cfg(test)]
mod tests;
