//! The operator's endpoints on one resource: take it out of service (now or in a
//! scheduled window), return it, and break a lock.
//!
//! The rules (draining, what a held lock does, when the queue is served) live in
//! `domain::broker::maintenance`; these handlers read the request and render.

use std::sync::LazyLock;

use actix_web::web::{self, Payload};
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::broker::Broker;
use super::dto::{ErrorBody, ResourceView};
use super::error::ApiError;
use super::params::{self, Body, Fields, Known, Query};
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
    params(("id" = u32, Path, description = "Resource id: digits, 0 to 4294967295 (an unknown one: 404)", minimum = 0, maximum = 4294967295.0)),
    request_body(content = UnavailableRequest),
    responses(
        (status = 200, description = "Out of service, or draining for the window", body = OperatorResponse),
        (status = 400, description = "No reason, a bad date, an unknown field, or until not after the window opens and now (`invalid_window`)", body = ErrorBody),
        (status = 404, description = "No such resource", body = ErrorBody),
    ))]
pub async fn mark_unavailable(
    broker: Broker,
    id: web::Path<String>,
    req: HttpRequest,
    body: Payload,
) -> Result<HttpResponse, ApiError> {
    let id = params::resource_id(&id)?;
    Query::strict(&req, &Known::none())?;
    let body = Body::parse(&params::read_body(&req, body).await?, &UNAVAILABLE_FIELDS)?;
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
    params(("id" = u32, Path, description = "Resource id: digits, 0 to 4294967295 (an unknown one: 404)", minimum = 0, maximum = 4294967295.0)),
    responses(
        (status = 200, description = "In service", body = OperatorResponse),
        (status = 400, description = "A bad id, or a query parameter (it takes none)", body = ErrorBody),
        (status = 404, description = "No such resource", body = ErrorBody),
    ))]
pub async fn mark_available(
    broker: Broker,
    id: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = params::resource_id(&id)?;
    Query::strict(&req, &Known::none())?;
    let resource = broker.mark_available(id)?;
    Ok(OperatorResponse::respond(
        "Resource available",
        &resource,
        &broker,
    ))
}

/// Breaks the lock on a resource, whoever holds it; `reason` shows in `lock-details`.
/// The holder's token stops working; the queue is served.
#[utoipa::path(post, path = "/api/v1/resources/{id}/force-unlock", tag = "maintenance",
    params(("id" = u32, Path, description = "Resource id: digits, 0 to 4294967295 (an unknown one: 404)", minimum = 0, maximum = 4294967295.0)),
    request_body(content = ForceUnlockRequest),
    responses(
        (status = 200, description = "Unlocked", body = OperatorResponse),
        (status = 400, description = "No reason, or an unknown field", body = ErrorBody),
        (status = 404, description = "No such resource", body = ErrorBody),
        (status = 409, description = "Not locked", body = ErrorBody),
    ))]
pub async fn force_unlock(
    broker: Broker,
    id: web::Path<String>,
    req: HttpRequest,
    body: Payload,
) -> Result<HttpResponse, ApiError> {
    let id = params::resource_id(&id)?;
    Query::strict(&req, &Known::none())?;
    let body = Body::parse(&params::read_body(&req, body).await?, &FORCE_UNLOCK_FIELDS)?;
    let (_, resource) = broker.force_unlock(id, reason(&body)?)?;
    Ok(OperatorResponse::respond(
        "Resource force-unlocked",
        &resource,
        &broker,
    ))
}

/// The required `reason`: something visible (see `params::text_problem`).
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
#[allow(dead_code)] // documentation: read field by field by `params::Body`
pub struct UnavailableRequest {
    /// Why (at most 1024 characters, something visible), shown as `unavailable-reason`.
    #[schema(schema_with = params::schema::reason)]
    reason: String,
    /// When the window opens (RFC 3339); absent or past: now. Until then the resource
    /// drains: only locks ending by then are granted.
    #[schema(schema_with = params::schema::timestamp_or_null)]
    from: Option<String>,
    /// When the resource returns to service by itself (RFC 3339), after `from` and after
    /// now; absent: on `POST .../available`.
    #[schema(schema_with = params::schema::timestamp_or_null)]
    until: Option<String>,
}

static UNAVAILABLE_FIELDS: LazyLock<Fields> = LazyLock::new(|| {
    Fields::of::<UnavailableRequest>(
        r#"{"reason": "replacing the disk", "until": "2026-11-25T18:00:00Z"}"#,
    )
});

/// `POST /resources/{id}/force-unlock`.
#[derive(ToSchema)]
#[allow(dead_code)] // documentation: read by `reason`
pub struct ForceUnlockRequest {
    /// Why (at most 1024 characters, something visible), shown in `lock-details`.
    #[schema(schema_with = params::schema::reason)]
    reason: String,
}

static FORCE_UNLOCK_FIELDS: LazyLock<Fields> = LazyLock::new(|| {
    Fields::of::<ForceUnlockRequest>(r#"{"reason": "job 4711 hung holding the board"}"#)
});
