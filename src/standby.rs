//! The standby's server: what a service of the HA pair answers while another one is
//! active. Every API call gets 503 `standby` with `Retry-After: 1`; `/health` is 200
//! with the role (the process is alive: restarting it would not help); `/readiness` is
//! 503, so that a Kubernetes Service or a load balancer sends traffic to the active one
//! only; `/metrics` gives the HA family, so that a scrape shows both members.
//!
//! It holds no state: on takeover it stops, and the active service is built on the same
//! listener (`app::serve_pair`). Connections are not kept alive, so that the stop never
//! waits for an idle client.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use actix_web::http::KeepAlive;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::web::{self, Data};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::api::error::ApiError;
use crate::runtime::ha::HaStatus;

/// A running standby server.
pub struct Standby {
    server: ServerHandle,
    task: JoinHandle<std::io::Result<()>>,
}

/// Serves `listener` as a standby, on one worker (its answers cost microseconds).
///
/// # Errors
/// The listener cannot be served.
pub fn start(listener: TcpListener, status: Arc<HaStatus>) -> anyhow::Result<Standby> {
    let status = Data::from(status);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(status.clone())
            .route("/health", web::get().to(health))
            .route("/readiness", web::get().to(readiness))
            .route("/metrics", web::get().to(metrics))
            .default_service(web::to(refuse))
    })
    .workers(1)
    .keep_alive(KeepAlive::Disabled)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    Ok(Standby {
        server: server.handle(),
        task: tokio::spawn(server),
    })
}

impl Standby {
    /// Stops serving; requests in flight finish first (at most a second).
    pub async fn stop(self) {
        self.server.stop(true).await;
        let _ = self.task.await;
    }
}

async fn health(status: Data<HaStatus>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "role": "standby",
        "epoch": status.epoch(),
    }))
}

async fn readiness(status: Data<HaStatus>) -> HttpResponse {
    HttpResponse::ServiceUnavailable().json(json!({
        "status": "not_ready",
        "reasons": [status.standby_reason()],
    }))
}

async fn metrics(req: HttpRequest, status: Data<HaStatus>) -> HttpResponse {
    let openmetrics = crate::metrics::wants_openmetrics(&req);
    let (body, content_type) = crate::metrics::render_standby(&status, openmetrics);
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, content_type))
        .body(body)
}

async fn refuse(status: Data<HaStatus>) -> Result<HttpResponse, ApiError> {
    Err(ApiError::Standby {
        reason: status.standby_reason(),
    })
}
