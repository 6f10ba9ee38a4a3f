//! The operator's endpoints on one resource: take it out of service (now or in a
//! scheduled window), return it, and break a lock.
//!
//! The rules (draining, what a held lock does, when the queue is served) live in
//! `domain::broker::maintenance`; these handlers read the request and render.

use actix_web::HttpResponse;
use actix_web::web::{self, Data, Payload};
use serde::Serialize;
use utoipa::ToSchema;

use super::dto::{ErrorBody, ResourceView};
use super::error::ApiError;
use super::params::{self, Body};
use crate::domain::{Resource, Unavailability};
use crate::runtime::BrokerHandle;

/// The longest maintenance or force-unlock reason.
pub const MAX_REASON_CHARS: usize = 1024;

/// An operator's change to a resource, and the resource as it stands after it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OperatorResponse {
    pub message: &'static str,
    pub resource: ResourceView,
}

impl OperatorResponse {
    fn respond(message: &'static str, resource: &Resource, broker: &BrokerHandle) -> HttpResponse {
        HttpResponse::Ok().json(OperatorResponse {
            message,
            resource: ResourceView::current(resource, broker),
        })
    }
}

/// Takes a resource out of service, now or from `from`, until `until` (or until
/// `POST .../available`). A held lock runs to its end; before `from` only locks that end
/// by `from` are granted, so the resource is free when the window opens.
#[utoipa::path(post, path = "/api/v1/resources/{id}/unavailable", tag = "maintenance",
    params(("id" = u32, Path, description = "Resource id")),
    request_body(content = UnavailableRequestDoc),
    responses(
        (status = 200, description = "Out of service, or draining for the window", body = OperatorResponse),
        (status = 400, description = "No reason, a bad date, or until not after the window opens", body = ErrorBody),
        (status = 404, description = "No such resource", body = ErrorBody),
    ))]
pub async fn mark_unavailable(
    broker: Data<BrokerHandle>,
    id: web::Path<String>,
    body: Payload,
) -> Result<HttpResponse, ApiError> {
    let id = params::resource_id(&id)?;
    let body = Body::parse(
        &params::read_body(body).await?,
        r#"{"reason": "replacing the disk", "until": "2026-11-25T18:00:00Z"}"#,
    )?;
    let window = Unavailability {
        reason: reason(&body)?,
        from: body.timestamp("from")?,
        until: body.timestamp("until")?,
    };
    let resource = broker.mark_unavailable(id, window)?;
    Ok(OperatorResponse::respond(
        if resource.in_service() {
            "Maintenance scheduled: the resource drains until the window opens"
        } else {
            "Resource marked unavailable"
        },
        &resource,
        &broker,
    ))
}

/// Returns a resource to service (or cancels its scheduled window) and serves the queue.
/// Marking an available resource available changes nothing.
#[utoipa::path(post, path = "/api/v1/resources/{id}/available", tag = "maintenance",
    params(("id" = u32, Path, description = "Resource id")),
    responses(
        (status = 200, description = "In service", body = OperatorResponse),
        (status = 404, description = "No such resource", body = ErrorBody),
    ))]
pub async fn mark_available(
    broker: Data<BrokerHandle>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let resource = broker.mark_available(params::resource_id(&id)?)?;
    Ok(OperatorResponse::respond(
        "Resource available",
        &resource,
        &broker,
    ))
}

/// Breaks the lock on a resource, whoever holds it; `reason` shows in `lock-details`.
/// The holder's token stops working; the queue is served.
#[utoipa::path(post, path = "/api/v1/resources/{id}/force-unlock", tag = "maintenance",
    params(("id" = u32, Path, description = "Resource id")),
    request_body(content = ForceUnlockRequestDoc),
    responses(
        (status = 200, description = "Unlocked", body = OperatorResponse),
        (status = 400, description = "No reason", body = ErrorBody),
        (status = 404, description = "No such resource", body = ErrorBody),
        (status = 409, description = "Not locked", body = ErrorBody),
    ))]
pub async fn force_unlock(
    broker: Data<BrokerHandle>,
    id: web::Path<String>,
    body: Payload,
) -> Result<HttpResponse, ApiError> {
    let id = params::resource_id(&id)?;
    let body = Body::parse(
        &params::read_body(body).await?,
        r#"{"reason": "job 4711 hung holding the board"}"#,
    )?;
    let (_, resource) = broker.force_unlock(id, reason(&body)?)?;
    Ok(OperatorResponse::respond(
        "Resource force-unlocked",
        &resource,
        &broker,
    ))
}

/// The required `reason`.
fn reason(body: &Body) -> Result<String, ApiError> {
    body.text("reason", MAX_REASON_CHARS)?.ok_or_else(|| {
        ApiError::bad_request(
            "missing_reason",
            "reason is required: say why, for whoever finds the resource this way",
        )
        .with("field", "reason")
    })
}

/// `POST /resources/{id}/unavailable`.
#[derive(ToSchema)]
#[allow(dead_code)] // documentation only: parsed by Body
pub struct UnavailableRequestDoc {
    /// Why (at most 1024 characters), shown as `unavailable-reason`.
    reason: String,
    /// When the window opens (RFC 3339); absent or past: now. Until then the resource
    /// drains: only locks ending by then are granted.
    from: Option<String>,
    /// When the resource returns to service by itself (RFC 3339); absent: on
    /// `POST .../available`.
    until: Option<String>,
}

/// `POST /resources/{id}/force-unlock`.
#[derive(ToSchema)]
#[allow(dead_code)] // documentation only: parsed by Body
pub struct ForceUnlockRequestDoc {
    /// Why (at most 1024 characters), shown in `lock-details`.
    reason: String,
}
