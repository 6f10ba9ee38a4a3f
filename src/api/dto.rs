//! The wire format: the Rent-A-Bot 1.0 JSON vocabulary, and nowhere else.
//!
//! Resource keys are hyphenated (`lock-token`, `max-lock-duration`): a 1.0 quirk that
//! clients depend on. Timestamps are RFC 3339 UTC strings or null.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Bytes;
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::resource::RETIRING_REASON;
use crate::domain::{
    Criteria, ExpiredLock, GroupWait, LockState, LockToken, Principal, Released, ReservationStatus,
    Resource, ResourceSnapshot, Timestamp, WaitingFor,
};
use crate::runtime::{BrokerHandle, Grant, ReservationSnapshot};

/// A resource as 1.0 shows it, plus rentabot's keys: `fencing-token`, lock metadata,
/// `expiring-soon` and maintenance.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": 1, "name": "coffee-machine", "description": "Kitchen coffee machine",
    "lock-token": "", "lock-details": "Resource is available",
    "endpoint": "tcp://192.168.1.50", "tags": "coffee,kitchen,food",
    "lock-acquired-at": null, "lock-expires-at": null, "max-lock-duration": 86400,
    "fencing-token": null, "lock-holder": null, "lock-note": null, "expiring-soon": false,
    "unavailable": false, "unavailable-reason": null, "unavailable-since": null,
    "unavailable-until": null
}))]
pub struct ResourceView {
    pub id: u32,
    pub name: String,
    pub description: String,
    /// `""` when free; the holder's UUID when locked (see [`ResourceView::redacted`]).
    #[serde(rename = "lock-token")]
    pub lock_token: String,
    /// "Resource is available", "Resource locked", "Resource available",
    /// `"Auto-expired at <RFC 3339>"` or `"Force-unlocked at <RFC 3339>: <reason>"`.
    #[serde(rename = "lock-details")]
    pub lock_details: String,
    pub endpoint: String,
    /// Comma-separated.
    pub tags: String,
    #[serde(rename = "lock-acquired-at")]
    pub lock_acquired_at: Option<String>,
    #[serde(rename = "lock-expires-at")]
    pub lock_expires_at: Option<String>,
    /// Seconds.
    #[serde(rename = "max-lock-duration")]
    pub max_lock_duration: u64,
    /// The current lock's fencing token; null when free.
    #[serde(rename = "fencing-token")]
    pub fencing_token: Option<u64>,
    /// Who holds the lock, as the locker said (`holder` in the lock request).
    #[serde(rename = "lock-holder")]
    pub lock_holder: Option<String>,
    /// Why, as the locker said (`note` in the lock request).
    #[serde(rename = "lock-note")]
    pub lock_note: Option<String>,
    /// Locked, and the lock ends within the expiry warning period (`--expiry-warning`).
    /// Left out of the resource shown inside an error.
    #[serde(rename = "expiring-soon", skip_serializing_if = "Option::is_none")]
    pub expiring_soon: Option<bool>,
    /// Out of service: in a maintenance window, or removed from the descriptor while
    /// locked. No new lock is granted.
    pub unavailable: bool,
    #[serde(rename = "unavailable-reason")]
    pub unavailable_reason: Option<String>,
    /// When the maintenance window opened or, if in the future, opens: until then the
    /// resource drains (only locks ending by then are granted).
    #[serde(rename = "unavailable-since")]
    pub unavailable_since: Option<String>,
    /// When the resource returns to service by itself; null: when an operator says so.
    #[serde(rename = "unavailable-until")]
    pub unavailable_until: Option<String>,
}

/// What replaces the holder's token when a resource is shown to someone else.
pub const REDACTED: &str = "<redacted>";

/// What replaces a lock token shown, with auth on, to a caller who neither owns the lock
/// nor is an admin: the resource reads as locked, with holder and expiry, but the token
/// that would let the caller unlock it stays with its owner.
pub const HIDDEN: &str = "<hidden>";

/// `token` as `viewer` may see it: itself, or [`HIDDEN`].
fn token_for(viewer: &Principal, owner: Option<&Arc<str>>, token: &LockToken) -> String {
    if viewer.may_see_token_of(owner) {
        token.reveal()
    } else {
        HIDDEN.to_owned()
    }
}

impl ResourceView {
    /// The resource as of `now`; `expiry_warning` decides `expiring-soon`.
    pub fn new(r: &Resource, now: Timestamp, expiry_warning: Duration) -> Self {
        let mut view = ResourceView::timeless(r);
        view.expiring_soon = Some(r.expiring_soon(now, expiry_warning));
        view
    }

    /// The resource as of `now`, as `viewer` may see it: a lock that is not the
    /// viewer's shows [`HIDDEN`] for its token (never with auth off).
    pub fn shown_to(
        r: &Resource,
        now: Timestamp,
        expiry_warning: Duration,
        viewer: &Principal,
    ) -> Self {
        let mut view = ResourceView::new(r, now, expiry_warning);
        // Only overwritten when hidden: the list pays nothing extra per visible lock.
        if let Some(lease) = r.lease()
            && !viewer.may_see_token_of(lease.meta.owner.as_ref())
        {
            view.lock_token = HIDDEN.to_owned();
        }
        view
    }

    /// The resource as `broker` shows it, at this moment, to the request's caller.
    pub fn current(r: &Resource, broker: &BrokerHandle) -> Self {
        ResourceView::shown_to(
            r,
            broker.now(),
            broker.policy().expiry_warning,
            broker.principal(),
        )
    }

    /// The view with the holder's token hidden, for refusals sent to a non-holder.
    pub fn redacted(r: &Resource) -> Self {
        let mut view = ResourceView::timeless(r);
        if !view.lock_token.is_empty() {
            view.lock_token = REDACTED.to_owned();
        }
        view
    }

    /// Everything that does not depend on the time it is shown at.
    fn timeless(r: &Resource) -> Self {
        let lease = r.lease();
        let (reason, since, until) = match (&r.maintenance, r.retiring) {
            (_, true) => (Some(RETIRING_REASON.to_owned()), None, None),
            (Some(m), false) => (
                Some(m.reason.clone()),
                Some(m.from.to_rfc3339()),
                m.until.map(Timestamp::to_rfc3339),
            ),
            (None, false) => (None, None, None),
        };
        ResourceView {
            id: r.id.get(),
            name: r.spec.name.clone(),
            description: r.spec.description.clone(),
            lock_token: lease.map(|l| l.token.reveal()).unwrap_or_default(),
            lock_details: lock_details(&r.state),
            endpoint: r.spec.endpoint.clone(),
            tags: r.spec.tags.join(","),
            lock_acquired_at: lease.map(|l| l.acquired_at.to_rfc3339()),
            lock_expires_at: lease.map(|l| l.expires_at.to_rfc3339()),
            max_lock_duration: r.spec.max_lock_duration.as_secs(),
            fencing_token: lease.map(|l| l.fencing.get()),
            lock_holder: lease.and_then(|l| l.meta.holder.clone()),
            lock_note: lease.and_then(|l| l.meta.note.clone()),
            expiring_soon: None,
            unavailable: !r.in_service(),
            unavailable_reason: reason,
            unavailable_since: since,
            unavailable_until: until,
        }
    }
}

fn lock_details(state: &LockState) -> String {
    match state {
        LockState::Free(Released::Never) => "Resource is available".to_owned(),
        LockState::Free(Released::Unlocked) => "Resource available".to_owned(),
        LockState::Free(Released::Expired(at)) => format!("Auto-expired at {at}"),
        LockState::Free(Released::ForceUnlocked { at, reason }) => {
            format!("Force-unlocked at {at}: {reason}")
        }
        LockState::Locked(_) => "Resource locked".to_owned(),
    }
}

/// `GET /api/v1/resources` without list parameters: the 1.0 list, every resource.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)] // documents `additionalProperties: false`: no page fields
pub struct ResourceList {
    pub resources: Vec<ResourceView>,
}

/// `GET /api/v1/resources`: the 1.0 list, or a page of it. Documentation only: the
/// handler answers one or the other.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum ResourceListBody {
    All(ResourceList),
    Page(ResourcePageList),
}

/// The 1.0 list body, byte for byte what `serde_json` writes for a [`ResourceList`] of
/// the snapshot, produced in pieces of `per_piece` resources: a client reading a list of
/// 100 000 slowly costs the server one piece and the (shared) snapshot, not the whole
/// serialised body.
pub struct ResourceListPieces {
    snapshot: ResourceSnapshot,
    /// Whose tokens show (see [`ResourceView::shown_to`]).
    viewer: Principal,
    cursor: usize,
    per_piece: usize,
    now: Timestamp,
    expiry_warning: Duration,
    started: bool,
    done: bool,
}

impl ResourceListPieces {
    /// Every resource of `snapshot` as of `now`, as `viewer` may see it.
    pub fn new(
        snapshot: ResourceSnapshot,
        now: Timestamp,
        expiry_warning: Duration,
        viewer: Principal,
        per_piece: usize,
    ) -> Self {
        ResourceListPieces {
            snapshot,
            viewer,
            cursor: 0,
            per_piece: per_piece.max(1),
            now,
            expiry_warning,
            started: false,
            done: false,
        }
    }
}

impl ResourceListPieces {
    /// Whether every piece has been produced.
    pub fn is_done(&self) -> bool {
        self.done
    }
}

impl Iterator for ResourceListPieces {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let (page, cursor) = self.snapshot.page(self.cursor, self.per_piece);
        self.cursor = cursor;
        let mut out = Vec::with_capacity(page.len() * 512 + 16);
        if !self.started {
            out.extend_from_slice(b"{\"resources\":[");
        }
        for (i, r) in page.iter().enumerate() {
            if self.started || i > 0 {
                out.push(b',');
            }
            let view = ResourceView::shown_to(r, self.now, self.expiry_warning, &self.viewer);
            serde_json::to_writer(&mut out, &view).expect("a view serialises");
        }
        self.started |= !page.is_empty();
        if page.len() < self.per_piece {
            out.extend_from_slice(b"]}");
            self.done = true;
        }
        Some(Bytes::from(out))
    }
}

/// `GET /api/v1/resources/expired`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExpiredList {
    /// Newest first.
    pub expired: Vec<ExpiredView>,
    /// How many the broker remembers; older ones are forgotten.
    pub capacity: usize,
}

/// A lock that ran out: whose it was, and when.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExpiredView {
    #[serde(rename = "resource-id")]
    pub resource_id: u32,
    /// The resource's name when the lock expired.
    #[serde(rename = "resource-name")]
    pub resource_name: String,
    #[serde(rename = "lock-holder")]
    pub lock_holder: Option<String>,
    #[serde(rename = "lock-note")]
    pub lock_note: Option<String>,
    #[serde(rename = "fencing-token")]
    pub fencing_token: u64,
    #[serde(rename = "lock-acquired-at")]
    pub lock_acquired_at: String,
    #[serde(rename = "expired-at")]
    pub expired_at: String,
    /// The reservation the lock was granted to, if any.
    #[serde(rename = "reservation-id")]
    pub reservation_id: Option<String>,
}

impl From<&ExpiredLock> for ExpiredView {
    fn from(e: &ExpiredLock) -> Self {
        ExpiredView {
            resource_id: e.resource.get(),
            resource_name: e.name.clone(),
            lock_holder: e.meta.holder.clone(),
            lock_note: e.meta.note.clone(),
            fencing_token: e.fencing.get(),
            lock_acquired_at: e.acquired_at.to_rfc3339(),
            expired_at: e.expired_at.to_rfc3339(),
            reservation_id: e.reservation.map(|r| r.to_string()),
        }
    }
}

/// `GET /api/v1/resources/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResourceEnvelope {
    pub resource: ResourceView,
}

/// A granted lock: both lock endpoints.
#[derive(Debug, Serialize, ToSchema)]
pub struct LockResponse {
    /// Always "Resource locked".
    pub message: &'static str,
    /// The secret that unlocks and extends this lock.
    #[serde(rename = "lock-token")]
    pub lock_token: String,
    pub resource: ResourceView,
    #[serde(rename = "locked-at")]
    pub locked_at: String,
    #[serde(rename = "expires-at")]
    pub expires_at: String,
    /// Grows with every grant, broker-wide; see the README on fencing.
    #[serde(rename = "fencing-token")]
    pub fencing_token: u64,
}

impl LockResponse {
    /// The answer to the lock request that got `g`.
    pub fn new(g: Grant, expiry_warning: Duration) -> Self {
        LockResponse {
            message: "Resource locked",
            lock_token: g.token.reveal(),
            resource: ResourceView::new(&g.resource, g.lease.acquired_at, expiry_warning),
            locked_at: g.lease.acquired_at.to_rfc3339(),
            expires_at: g.lease.expires_at.to_rfc3339(),
            fencing_token: g.lease.fencing.get(),
        }
    }
}

/// `POST /api/v1/resources/{id}/unlock`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageResponse {
    pub message: &'static str,
}

/// `POST /api/v1/resources/{id}/extend`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExtendResponse {
    /// Always "Lock extended".
    pub message: &'static str,
    #[serde(rename = "new-expires-at")]
    pub new_expires_at: String,
    /// Expiry minus acquisition, in whole seconds.
    #[serde(rename = "total-lock-duration")]
    pub total_lock_duration: u64,
}

impl ExtendResponse {
    pub fn new(acquired_at: Timestamp, expires_at: Timestamp) -> Self {
        ExtendResponse {
            message: "Lock extended",
            new_expires_at: expires_at.to_rfc3339(),
            total_lock_duration: expires_at.saturating_duration_since(acquired_at).as_secs(),
        }
    }
}

/// `GET /health` and `GET /readiness`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    pub status: &'static str,
}

/// Every error: `message`, a stable `code`, and context fields such as `resource_id`,
/// `resource_name`, `tags`, `ttl` (the 1.0 error body, plus `code`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"resource_id": 42, "message": "Resource not found", "code": "resource_not_found"}))]
pub struct ErrorBody {
    pub message: String,
    /// Stable snake_case identifier of the error, for programs to match on.
    pub code: String,
}

/// Several locks granted at once (`POST /api/v1/resources/lock` with `quantity` or
/// `groups`).
#[derive(Debug, Serialize, ToSchema)]
pub struct MultiLockResponse {
    /// Always "Resources locked".
    pub message: &'static str,
    /// Every token, in the order of `locks`.
    #[serde(rename = "lock-tokens")]
    pub lock_tokens: Vec<String>,
    pub locks: Vec<GroupLock>,
}

/// One lock of a [`MultiLockResponse`].
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupLock {
    /// Index of the group (0 for the one-group form).
    pub group: usize,
    #[serde(flatten)]
    pub lock: LockResponse,
}

impl MultiLockResponse {
    pub fn new(grants: Vec<(usize, Grant)>, expiry_warning: Duration) -> Self {
        let locks: Vec<GroupLock> = grants
            .into_iter()
            .map(|(group, grant)| GroupLock {
                group,
                lock: LockResponse::new(grant, expiry_warning),
            })
            .collect();
        MultiLockResponse {
            message: "Resources locked",
            lock_tokens: locks.iter().map(|l| l.lock.lock_token.clone()).collect(),
            locks,
        }
    }
}

/// `POST /api/v1/resources/unlock-batch`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnlockBatchResponse {
    /// Always "Resources unlocked".
    pub message: &'static str,
    /// The resources released, in the order of the tokens.
    pub resource_ids: Vec<u32>,
}

/// A reservation: the 1.0 keys (snake_case, a 1.0 quirk we keep), then rentabot's.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "reservation_id": "res_0f3c9a1e5b7d4c2a8e6f1b3d5a7c9e1f", "status": "pending",
    "tags": ["ci", "linux"], "quantity": 2, "ttl": 3600, "position_in_queue": 1,
    "created_at": "2026-11-25T10:00:00.000Z", "expires_at": "2026-11-25T11:00:00.000Z",
    "fulfilled_at": null, "claim_expires_at": null, "claimed_at": null,
    "resource_ids": [], "lock_tokens": [], "priority": 5, "auto_claim": false,
    "holder": "https://ci.example.com/job/42", "note": null,
    "groups": [{"tags": ["ci", "linux"], "quantity": 2, "resource_ids": []}],
    "waiting_for": {"matching": 3, "locked": 2, "next_release_at": "2026-11-25T10:20:00.000Z",
        "unavailable": 0, "held_for_earlier": 0, "free": 1,
        "estimated_available_at": "2026-11-25T10:20:00.000Z", "groups": []}
}))]
pub struct ReservationView {
    pub reservation_id: String,
    /// pending, fulfilled or claimed.
    pub status: &'static str,
    /// The tags of a one-group request by tags; empty otherwise (see `groups`).
    pub tags: Vec<String>,
    /// Resources asked for, over all groups.
    pub quantity: u32,
    /// Lock lifetime once fulfilled, seconds.
    pub ttl: u64,
    /// 1-based place among pending reservations; null unless pending.
    pub position_in_queue: Option<usize>,
    pub created_at: String,
    /// When a pending reservation gives up.
    pub expires_at: String,
    pub fulfilled_at: Option<String>,
    pub claim_expires_at: Option<String>,
    pub claimed_at: Option<String>,
    pub resource_ids: Vec<u32>,
    pub lock_tokens: Vec<String>,
    pub priority: u8,
    pub auto_claim: bool,
    /// Who asked, as the request said; given to every lock it is granted.
    pub holder: Option<String>,
    /// Why, as the request said.
    pub note: Option<String>,
    /// What each group asked for and, once fulfilled, which resources it got.
    pub groups: Vec<GroupView>,
    /// Why a pending reservation waits; null otherwise (and in lists).
    pub waiting_for: Option<WaitingForView>,
}

/// One group of a reservation.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupView {
    /// Set when the group asked by tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Set when the group asked by label expression.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expr: Option<String>,
    pub quantity: u32,
    pub resource_ids: Vec<u32>,
}

/// Why a reservation waits: the resources its groups could use, summed over groups,
/// then group by group.
#[derive(Debug, Serialize, ToSchema)]
pub struct WaitingForView {
    #[serde(flatten)]
    pub totals: WaitCounts,
    /// When the locks' expiries alone would let it be served; null when they cannot.
    pub estimated_available_at: Option<String>,
    pub groups: Vec<GroupWaitView>,
}

/// One group's share of [`WaitingForView`].
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupWaitView {
    pub quantity: u32,
    #[serde(flatten)]
    pub counts: WaitCounts,
}

/// The resources a reservation (or one of its groups) could use, by state.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct WaitCounts {
    /// Resources meeting the criteria (and allowing the TTL).
    pub matching: usize,
    pub locked: usize,
    /// The earliest expiry among the locked ones.
    pub next_release_at: Option<String>,
    /// Out of service for maintenance.
    pub unavailable: usize,
    /// Free, but held for reservations ahead in the queue.
    pub held_for_earlier: usize,
    /// Free and usable now (short of the quantity, or it would have been served).
    pub free: usize,
}

impl From<&GroupWait> for WaitCounts {
    fn from(g: &GroupWait) -> Self {
        WaitCounts {
            matching: g.matching,
            locked: g.locked,
            next_release_at: g.next_release_at.map(Timestamp::to_rfc3339),
            unavailable: g.unavailable,
            held_for_earlier: g.held_for_earlier,
            free: g.free,
        }
    }
}

impl From<&WaitingFor> for WaitingForView {
    fn from(w: &WaitingFor) -> Self {
        let sum = |f: fn(&GroupWait) -> usize| w.groups.iter().map(f).sum();
        let earliest = w.groups.iter().filter_map(|g| g.next_release_at).min();
        WaitingForView {
            totals: WaitCounts {
                matching: sum(|g| g.matching),
                locked: sum(|g| g.locked),
                next_release_at: earliest.map(Timestamp::to_rfc3339),
                unavailable: sum(|g| g.unavailable),
                held_for_earlier: sum(|g| g.held_for_earlier),
                free: sum(|g| g.free),
            },
            estimated_available_at: w.estimated_available_at.map(Timestamp::to_rfc3339),
            groups: w
                .groups
                .iter()
                .map(|g| GroupWaitView {
                    quantity: g.quantity,
                    counts: WaitCounts::from(g),
                })
                .collect(),
        }
    }
}

impl ReservationView {
    /// The reservation as `viewer` may see it: another's `lock_tokens` are [`HIDDEN`]
    /// (never with auth off).
    pub fn shown_to(snapshot: &ReservationSnapshot, viewer: &Principal) -> Self {
        let r = &snapshot.reservation;
        let request = &r.request;
        let groups = request
            .groups
            .iter()
            .enumerate()
            .map(|(index, g)| {
                let (tags, expr) = match &g.criteria {
                    Criteria::Tags(tags) => (Some(tags.clone()), None),
                    Criteria::Expr(expr) => (None, Some(expr.to_string())),
                };
                GroupView {
                    tags,
                    expr,
                    quantity: g.quantity,
                    resource_ids: r
                        .allocations
                        .iter()
                        .filter(|a| a.group == index)
                        .map(|a| a.resource.get())
                        .collect(),
                }
            })
            .collect();
        let tags = match request.groups.as_slice() {
            [only] => match &only.criteria {
                Criteria::Tags(tags) => tags.clone(),
                Criteria::Expr(_) => Vec::new(),
            },
            _ => Vec::new(),
        };
        ReservationView {
            reservation_id: r.id.to_string(),
            status: r.status.as_str(),
            tags,
            quantity: request.total_quantity(),
            ttl: request.ttl.as_secs(),
            position_in_queue: snapshot
                .position
                .filter(|_| r.status == ReservationStatus::Pending),
            created_at: r.created_at.to_rfc3339(),
            expires_at: r.expires_at.to_rfc3339(),
            fulfilled_at: r.fulfilled_at.map(Timestamp::to_rfc3339),
            claim_expires_at: r.claim_expires_at.map(Timestamp::to_rfc3339),
            claimed_at: r.claimed_at.map(Timestamp::to_rfc3339),
            resource_ids: r.allocations.iter().map(|a| a.resource.get()).collect(),
            lock_tokens: r
                .allocations
                .iter()
                .map(|a| token_for(viewer, request.meta.owner.as_ref(), &a.token))
                .collect(),
            priority: request.priority.get(),
            auto_claim: request.auto_claim,
            holder: request.meta.holder.clone(),
            note: request.meta.note.clone(),
            groups,
            waiting_for: snapshot.waiting_for.as_ref().map(WaitingForView::from),
        }
    }
}

/// `GET /api/v1/reservations` without list parameters: every live reservation.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)] // documents `additionalProperties: false`: no page fields
pub struct ReservationList {
    pub reservations: Vec<ReservationView>,
}

/// `GET /api/v1/reservations`: every live reservation, or a page of them. Documentation
/// only: the handler answers one or the other.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum ReservationListBody {
    All(ReservationList),
    Page(ReservationPageList),
}

/// `GET /api/v1/resources` with query parameters: one page of the matches.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResourcePageList {
    pub resources: Vec<ResourceView>,
    /// Every match, on every page.
    pub total: usize,
    /// This page, 1-based.
    pub page: u64,
    /// Most resources a page holds.
    pub limit: usize,
}

/// `GET /api/v1/reservations` with query parameters: one page of the matches.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReservationPageList {
    pub reservations: Vec<ReservationView>,
    /// Every match, on every page.
    pub total: usize,
    /// This page, 1-based.
    pub page: u64,
    /// Most reservations a page holds.
    pub limit: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Broker, ResourceId, ResourceSpec, Ttl, Unavailability};

    #[test]
    fn the_list_in_pieces_is_byte_for_byte_the_list_in_one_go() {
        let t0 = Timestamp::from_millis(1_768_471_200_000);
        let specs = (1..=7).map(|i| {
            ResourceSpec::named(format!("board-{i}"))
                .with_tags(&["ci", "a\"quote"])
                .with_max_lock_duration(Ttl::from_secs(600).unwrap())
        });
        let mut broker = Broker::new(specs);
        broker
            .lock(ResourceId::new(2), Ttl::from_secs(60).unwrap(), t0)
            .unwrap();
        let window = Unavailability {
            reason: "fan <noisy> & hot".into(),
            from: None,
            until: None,
        };
        broker
            .mark_unavailable(ResourceId::new(5), window, t0)
            .unwrap();
        broker
            .remove_resource(ResourceId::new(6), None, t0)
            .unwrap();
        let warning = Duration::from_secs(300);
        let whole = serde_json::to_vec(&ResourceList {
            resources: broker
                .resources()
                .map(|r| ResourceView::new(r, t0, warning))
                .collect(),
        })
        .unwrap();

        for per_piece in [1, 2, 3, 6, 7, 100] {
            let pieces: Vec<Bytes> = ResourceListPieces::new(
                broker.snapshot(),
                t0,
                warning,
                Principal::anyone(),
                per_piece,
            )
            .collect();
            assert_eq!(pieces.concat(), whole, "{per_piece} per piece");
            assert_eq!(pieces.len(), 6 / per_piece + 1, "{per_piece} per piece");
        }
        let empty: Vec<Bytes> = ResourceListPieces::new(
            Broker::new([]).snapshot(),
            t0,
            warning,
            Principal::anyone(),
            4,
        )
        .collect();
        assert_eq!(empty.concat(), br#"{"resources":[]}"#);
    }

    #[test]
    fn another_callers_token_is_hidden_in_every_resource_view_and_shown_to_its_owner() {
        let t0 = Timestamp::from_millis(1_768_471_200_000);
        let mut broker = Broker::new((1..=3).map(|i| ResourceSpec::named(format!("b{i}"))));
        let ttl = Ttl::from_secs(60).unwrap();
        let alice = Principal::named("alice");
        let bob = Principal::named("bob");
        let grant = broker.lock_as(ResourceId::new(1), ttl, &alice, t0).unwrap();
        broker.lock(ResourceId::new(2), ttl, t0).unwrap(); // unowned (auth was off)
        let token = grant.token.reveal();
        let warning = Duration::from_secs(300);
        let shown = |viewer: &Principal| -> Vec<String> {
            let list: Vec<Bytes> =
                ResourceListPieces::new(broker.snapshot(), t0, warning, viewer.clone(), 2)
                    .collect();
            let list: serde_json::Value = serde_json::from_slice(&list.concat()).unwrap();
            let from_list: Vec<String> = list["resources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["lock-token"].as_str().unwrap().to_owned())
                .collect();
            let one_by_one: Vec<String> = broker
                .resources()
                .map(|r| ResourceView::shown_to(r, t0, warning, viewer).lock_token)
                .collect();
            assert_eq!(from_list, one_by_one);
            from_list
        };
        let unowned = broker
            .resource(ResourceId::new(2))
            .unwrap()
            .lease()
            .unwrap();
        let unowned = unowned.token.reveal();
        assert_eq!(shown(&alice), [token.as_str(), HIDDEN, ""]);
        assert_eq!(shown(&bob), [HIDDEN, HIDDEN, ""]);
        let admin = Principal {
            overrides: true,
            ..Principal::named("root")
        };
        assert_eq!(shown(&admin), [token.as_str(), unowned.as_str(), ""]);
        assert_eq!(shown(&Principal::anyone()), [token, unowned, String::new()]);
    }
}
