//! The HTTP API: the Rent-A-Bot 1.0 contract, plus the OpenAPI document and explorer.
//!
//! Each area is a module with a `configure` function; [`configure`] mounts them all.
//! The 1.0 paths live under `/api/v1`; the pre-1.0 prefix `/rentabot/api/v1.0` still
//! answers, with `Deprecation` and `Link` headers pointing at the new path, as 1.0 did.

pub mod admin;
pub mod dto;
pub mod error;
pub mod events;
pub mod health;
pub mod idempotency;
pub mod maintenance;
pub mod middleware;
pub mod params;
pub mod query;
pub mod reservations;
pub mod resources;

use actix_web::dev::Service;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::from_fn;
use actix_web::{HttpRequest, HttpResponse, Resource, Route, web};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

pub use error::ApiError;

/// The current API prefix.
pub const PREFIX: &str = "/api/v1";
/// The pre-1.0 prefix, still served.
pub const LEGACY_PREFIX: &str = "/rentabot/api/v1.0";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "rentabot",
        description = "Resource locking and reservation broker. Speaks the Rent-A-Bot 1.0 API.",
    ),
    paths(
        health::health,
        health::readiness,
        resources::list_resources,
        resources::get_resource,
        resources::lock_resource,
        resources::lock_by_criteria,
        resources::unlock_resource,
        resources::extend_lock,
        resources::unlock_batch,
        resources::expired_locks,
        maintenance::mark_unavailable,
        maintenance::mark_available,
        maintenance::force_unlock,
        reservations::create_reservation,
        reservations::list_reservations,
        reservations::get_reservation,
        reservations::claim_reservation,
        reservations::cancel_reservation,
        events::stream_events,
        admin::create_resource,
        admin::update_resource,
        admin::delete_resource,
        admin::reload_descriptor,
    ),
    tags(
        (name = "resources", description = "Lock, unlock and extend (Rent-A-Bot 1.0)"),
        (name = "maintenance", description = "Operators: take resources out of service, return them, break locks"),
        (name = "reservations", description = "The queue: reserve, wait, claim, cancel"),
        (name = "events", description = "Every broker change as server-sent events"),
        (name = "admin", description = "Create, change and delete resources; reload the descriptor (no authentication yet)"),
        (name = "health", description = "Probes"),
    )
)]
pub struct ApiDoc;

/// Mounts every API route, the OpenAPI document and the explorer.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // The document's route must precede the /api/v1 scope, which would otherwise claim
    // every path under it.
    cfg.service(
        SwaggerUi::new("/docs/{_:.*}").url(format!("{PREFIX}/openapi.json"), ApiDoc::openapi()),
    )
    .route("/docs", web::get().to(docs_redirect))
    .configure(health::configure)
    .configure(events::configure_ws)
    // Retry-safe POSTs (`Idempotency-Key`) on the whole scope: the middleware acts on
    // POSTs with the header only. Inside the legacy headers, so replays get them too.
    .service(
        web::scope(PREFIX)
            .wrap(from_fn(idempotency::remember))
            .configure(configure_v1)
            .configure(events::configure_api),
    )
    .service(
        web::scope(LEGACY_PREFIX)
            .wrap(from_fn(idempotency::remember))
            .wrap_fn(|req, srv| {
                let successor = format!("{PREFIX}{}", &req.path()[LEGACY_PREFIX.len()..]);
                let response = srv.call(req);
                async move {
                    let mut response = response.await?;
                    let headers = response.headers_mut();
                    headers.insert(
                        HeaderName::from_static("deprecation"),
                        HeaderValue::from_static("true"),
                    );
                    // Joined to a Link the handler set (a list's page links), not replacing it.
                    let alternate = format!("<{successor}>; rel=alternate");
                    let link = match headers
                        .get(actix_web::http::header::LINK)
                        .and_then(|v| v.to_str().ok())
                    {
                        Some(pages) => format!("{pages}, {alternate}"),
                        None => alternate,
                    };
                    if let Ok(link) = HeaderValue::from_str(&link) {
                        headers.insert(actix_web::http::header::LINK, link);
                    }
                    Ok(response)
                }
            })
            .configure(configure_v1),
    );
}

/// The routes under `/api/v1` (and the legacy prefix).
fn configure_v1(cfg: &mut web::ServiceConfig) {
    cfg.configure(resources::configure)
        .configure(reservations::configure)
        .configure(admin::configure);
}

/// `/docs` without the trailing slash, where 1.0 users bookmarked the explorer.
async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((actix_web::http::header::LOCATION, "/docs/"))
        .finish()
}

/// A resource at `path` served by `route` alone: any other method gets a JSON 405 (1.0,
/// on FastAPI, answered 405 too), instead of falling through to the 404 of unknown paths.
pub(crate) fn only(path: &str, route: Route) -> Resource {
    web::resource(path)
        .route(route)
        .default_service(web::to(method_not_allowed))
}

pub(crate) async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed {
        method: req.method().to_string(),
        path: req.path().to_owned(),
    })
}

/// The JSON 404 for paths no route serves.
pub async fn no_route(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NoRoute {
        method: req.method().to_string(),
        path: req.path().to_owned(),
    })
}
