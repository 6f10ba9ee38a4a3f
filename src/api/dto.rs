//! The wire format: the Rent-A-Bot 1.0 JSON vocabulary, and nowhere else.
//!
//! Resource keys are hyphenated (`lock-token`, `max-lock-duration`): a 1.0 quirk that
//! clients depend on. Timestamps are RFC 3339 UTC strings or null.

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{LockState, Released, Resource, Timestamp};
use crate::runtime::Grant;

/// A resource as 1.0 shows it, plus `fencing-token`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": 1, "name": "coffee-machine", "description": "Kitchen coffee machine",
    "lock-token": "", "lock-details": "Resource is available",
    "endpoint": "tcp://192.168.1.50", "tags": "coffee,kitchen,food",
    "lock-acquired-at": null, "lock-expires-at": null, "max-lock-duration": 86400,
    "fencing-token": null
}))]
pub struct ResourceView {
    pub id: u32,
    pub name: String,
    pub description: String,
    /// `""` when free; the holder's UUID when locked (see [`ResourceView::redacted`]).
    #[serde(rename = "lock-token")]
    pub lock_token: String,
    /// "Resource is available", "Resource locked", "Resource available" or
    /// "Auto-expired at <RFC 3339>".
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
}

/// What replaces the holder's token when a resource is shown to someone else.
pub const REDACTED: &str = "<redacted>";

impl From<&Resource> for ResourceView {
    fn from(r: &Resource) -> Self {
        let lease = r.lease();
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
        }
    }
}

impl ResourceView {
    /// The view with the holder's token hidden, for refusals sent to a non-holder.
    pub fn redacted(r: &Resource) -> Self {
        let mut view = ResourceView::from(r);
        if !view.lock_token.is_empty() {
            view.lock_token = REDACTED.to_owned();
        }
        view
    }
}

fn lock_details(state: &LockState) -> String {
    match state {
        LockState::Free(Released::Never) => "Resource is available".to_owned(),
        LockState::Free(Released::Unlocked) => "Resource available".to_owned(),
        LockState::Free(Released::Expired(at)) => format!("Auto-expired at {at}"),
        LockState::Locked(_) => "Resource locked".to_owned(),
    }
}

/// `GET /api/v1/resources`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResourceList {
    pub resources: Vec<ResourceView>,
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

impl From<Grant> for LockResponse {
    fn from(g: Grant) -> Self {
        LockResponse {
            message: "Resource locked",
            lock_token: g.token.reveal(),
            resource: ResourceView::from(&g.resource),
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
