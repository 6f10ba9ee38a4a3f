//! Liveness and readiness probes (1.0 paths and bodies).
//!
//! `/health` is the liveness probe: 200 while the process serves HTTP, whatever else is
//! wrong (restarting would not help a failing disk). `/readiness` says whether answers
//! can be trusted: 503, with the reasons, while the store fails to commit, once the
//! expiry timer has ended, once a panic inside a broker call poisoned the broker, or
//! while the audit log's file cannot be written or falls behind. A
//! load balancer then sends traffic elsewhere; the process itself exits when a task it
//! needs ends (see `app::App::run_until_stopped`).

use actix_web::web::Data;
use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::broker::Registered;
use super::dto::Status;
use super::endpoint;
use crate::audit::AuditLog;
use crate::runtime::ha::HaStatus;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/health").get(health))
        .service(endpoint("/readiness").get(readiness));
}

/// The liveness probe's answer.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    status: &'static str,
    /// With a `postgres://` store (the HA pair): `active`, or `standby` (whose every
    /// other answer is 503).
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    /// With a `postgres://` store: the epoch of this service's latest term as the
    /// active one (0: never active).
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<u64>,
}

/// 200 while the process serves HTTP. With a `postgres://` store, also its role in the
/// HA pair.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, body = Health, example = json!({"status": "ok"}))))]
pub async fn health(ha: Option<Data<HaStatus>>) -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok",
        role: ha
            .as_ref()
            .map(|ha| if ha.is_active() { "active" } else { "standby" }),
        epoch: ha.map(|ha| ha.epoch()),
    })
}

/// The readiness probe's refusal.
#[derive(Serialize, ToSchema)]
pub struct NotReady {
    /// Always `not_ready`.
    status: &'static str,
    /// What is wrong, one sentence each.
    reasons: Vec<String>,
}

/// 200 when answers can be trusted; 503 with the reasons when not: the store fails to
/// commit, the expiry timer has ended, the broker was poisoned by a panic, or the audit
/// log's file cannot be written (or falls behind and drops entries).
#[utoipa::path(get, path = "/readiness", tag = "health",
    responses(
        (status = 200, body = Status, example = json!({"status": "ready"})),
        (status = 503, body = NotReady, example = json!({"status": "not_ready", "reasons": ["the store fails to commit: disk I/O error"]})),
    ))]
pub async fn readiness(
    broker: Option<Data<Registered>>,
    audit: Option<Data<AuditLog>>,
    ha: Option<Data<HaStatus>>,
) -> HttpResponse {
    let mut reasons = broker.map_or_else(Vec::new, |b| b.0.unready_reasons());
    // Deposed, and stopping: the active one is elsewhere.
    if let Some(ha) = ha.filter(|ha| !ha.is_active()) {
        reasons.push(ha.standby_reason());
    }
    reasons.extend(audit.map_or_else(Vec::new, |a| a.unready_reasons()));
    if reasons.is_empty() {
        HttpResponse::Ok().json(Status { status: "ready" })
    } else {
        HttpResponse::ServiceUnavailable().json(NotReady {
            status: "not_ready",
            reasons,
        })
    }
}
