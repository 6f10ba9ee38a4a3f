//! Maintenance: taking resources out of service, now or in a scheduled window, and
//! bringing them back.
//!
//! A window opens at `from` and closes at `until` (or when an operator says so):
//!
//! ```text
//!   declared            from                         until
//!      │   draining       │      out of service        │   back in service
//!      ├──────────────────┼────────────────────────────┼──────────────────▶
//!      │ only locks ending│ nothing is lent; a lock    │ the queue is served
//!      │ by `from` granted│ held from before runs on   │ at once
//! ```
//!
//! While draining, a lock (or an extension) is granted only if it ends by `from`, so the
//! board is free when the window opens. Out of service, the resource leaves the tag
//! index's free sets: every lookup skips it without a check of its own. Both edges are
//! deadlines of the broker's one ordered set (`Due::MaintenanceStart` / `End`), so the
//! timer opens and closes windows to the millisecond and serves the queue when a
//! resource returns.

use super::*;
use crate::domain::resource::Maintenance;

/// What an operator declares: why, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unavailability {
    pub reason: String,
    /// When the window opens; `None` (or a time already past) means now.
    pub from: Option<Timestamp>,
    /// When the resource returns to service by itself; `None`: when an operator says so.
    pub until: Option<Timestamp>,
}

impl Broker {
    /// Takes resource `id` out of service from `from` (now if absent or past) until
    /// `until`. A lock it holds is not broken. Declaring again replaces the window; a
    /// resource already out of service keeps the time it went out.
    ///
    /// # Errors
    /// `ResourceNotFound`; `InvalidWindow` when `until` is not after the window opens.
    pub fn mark_unavailable(
        &mut self,
        id: ResourceId,
        window: Unavailability,
        now: Timestamp,
    ) -> Result<&Resource, DomainError> {
        self.expire_due(now);
        let resource = self
            .resources
            .get(&id)
            .ok_or(DomainError::ResourceNotFound(id))?;
        let already_out = resource.maintenance.as_ref().filter(|m| m.active);
        let from = match window.from.filter(|&from| from > now) {
            Some(later) => later,
            // Out of service now: since it went out, if it already was.
            None => already_out.map_or(now, |m| m.from),
        };
        if let Some(until) = window.until
            && until <= from.max(now)
        {
            return Err(DomainError::InvalidWindow { from, until, now });
        }
        let was_active = already_out.is_some();
        self.unschedule_maintenance(id);
        let active = from <= now;
        let maintenance = Maintenance {
            reason: window.reason,
            from,
            until: window.until,
            active,
        };
        if !active {
            self.deadlines.insert((from, Due::MaintenanceStart(id)));
        }
        if let Some(until) = maintenance.until {
            self.deadlines.insert((until, Due::MaintenanceEnd(id)));
        }
        self.events.push(Event::MaintenanceScheduled {
            resource: id,
            reason: maintenance.reason.clone(),
            from,
            until: maintenance.until,
            at: now,
        });
        if active && !was_active {
            self.events.push(Event::MaintenanceStarted {
                resource: id,
                at: now,
            });
        }
        if !active && was_active {
            // Rescheduled to later: back in service until then.
            self.events.push(Event::MaintenanceEnded {
                resource: id,
                at: now,
            });
        }
        self.set_maintenance(id, Some(maintenance));
        self.serve_queue_if_dirty(now);
        Ok(&self.resources[&id])
    }

    /// Returns resource `id` to service, or cancels its scheduled window. Serves the
    /// queue at once. Idempotent: a resource in service is left as it is.
    ///
    /// # Errors
    /// `ResourceNotFound`.
    pub fn mark_available(
        &mut self,
        id: ResourceId,
        now: Timestamp,
    ) -> Result<&Resource, DomainError> {
        self.expire_due(now);
        let resource = self
            .resources
            .get(&id)
            .ok_or(DomainError::ResourceNotFound(id))?;
        if resource.maintenance.is_some() {
            self.end_maintenance(id, now);
            self.serve_queue_if_dirty(now);
        }
        Ok(&self.resources[&id])
    }

    /// `Due::MaintenanceStart`: the window opens.
    pub(super) fn open_window(&mut self, id: ResourceId, at: Timestamp) {
        let mut maintenance = self.resources[&id]
            .maintenance
            .clone()
            .expect("a window's start belongs to a resource with a window");
        maintenance.active = true;
        self.set_maintenance(id, Some(maintenance));
        self.events
            .push(Event::MaintenanceStarted { resource: id, at });
    }

    /// Ends the window of `id` (at `until`, or on an operator's word).
    pub(super) fn end_maintenance(&mut self, id: ResourceId, at: Timestamp) {
        self.unschedule_maintenance(id);
        self.set_maintenance(id, None);
        self.events
            .push(Event::MaintenanceEnded { resource: id, at });
    }

    /// Removes the deadlines of `id`'s window, if it has one (also before `id` is
    /// removed: `broker/admin.rs`).
    pub(super) fn unschedule_maintenance(&mut self, id: ResourceId) {
        if let Some(m) = &self.resources[&id].maintenance {
            if !m.active {
                self.deadlines.remove(&(m.from, Due::MaintenanceStart(id)));
            }
            if let Some(until) = m.until {
                self.deadlines.remove(&(until, Due::MaintenanceEnd(id)));
            }
        }
    }

    /// The one place a window changes, so the tag index follows it. Whether the resource
    /// can be lent changed, or the locks that fit changed: the queue must be looked at.
    fn set_maintenance(&mut self, id: ResourceId, maintenance: Option<Maintenance>) {
        let resource = self.resources.get_mut(&id).expect("caller checked the id");
        resource.maintenance = maintenance;
        self.tags.refresh(resource);
        self.queue_dirty = true;
    }
}

/// The refusal of a lock from `now` until `lock_end` on `resource`, if maintenance
/// forbids it: the resource is out of service, or drains and the lock would not end by
/// the time the window opens.
pub(super) fn maintenance_refusal(
    resource: &Resource,
    lock_end: Timestamp,
    now: Timestamp,
) -> Option<DomainError> {
    if let Some((reason, until)) = resource.out_of_service() {
        return Some(DomainError::Unavailable {
            id: resource.id,
            reason: reason.to_owned(),
            until,
        });
    }
    let m = resource.maintenance.as_ref()?;
    (lock_end > m.from).then(|| DomainError::CrossesMaintenance {
        id: resource.id,
        reason: m.reason.clone(),
        from: m.from,
        until: m.until,
        longest_ttl_secs: m.from.saturating_duration_since(now).as_secs(),
    })
}

#[cfg(test)]
mod tests;
