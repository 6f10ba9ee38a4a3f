//! Liveness and readiness probes (1.0 paths and bodies).

use actix_web::{HttpResponse, web};

use super::dto::Status;
use super::endpoint;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/health").get(health))
        .service(endpoint("/readiness").get(readiness));
}

/// 200 while the process serves HTTP.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, body = Status, example = json!({"status": "ok"}))))]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(Status { status: "ok" })
}

/// 200 once the broker is loaded, which is before the server accepts its first request.
#[utoipa::path(get, path = "/readiness", tag = "health",
    responses((status = 200, body = Status, example = json!({"status": "ready"}))))]
pub async fn readiness() -> HttpResponse {
    HttpResponse::Ok().json(Status { status: "ready" })
}
