//! The live dashboard at `/` (README § The dashboard).
//!
//! Server-rendered with maud and complete without JavaScript: the filters are a GET
//! form, the pages are links. A small script (`assets/dashboard.js`, served by this
//! module with its stylesheet, no inline script, no CDN) keeps it live: it listens to
//! the event stream (`/api/v1/events`) and, on any event, fetches
//! `/dashboard/fragment` with the page's own query (at most 4 times a second) and swaps
//! the live part in; it ticks the countdowns and writes times in local time.
//!
//! # Cost
//!
//! One call copies what the page needs under the broker's mutex
//! ([`BrokerHandle::dashboard_inputs`]: a pointer per 1 024 resources, the holds, a
//! pointer per live reservation); the queue's first [`view::QUEUE_ROWS`] reservations
//! then take one short call each for their estimated start (the same as `GET
//! /api/v1/reservations/{id}`). Filtering, counting and rendering run after, on a
//! blocking thread: one pass over the resources (milliseconds at 100 000), and a page
//! of at most [`query::MAX_PER_PAGE`] rows.

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::web::{self};
use actix_web::{HttpMessage, HttpRequest, HttpResponse};

use crate::api::broker::Broker;
use crate::api::error::ApiError;
use crate::auth::{Caller, Via};
use crate::domain::{ReservationId, Timestamp};
use crate::runtime::BrokerHandle;

pub mod assets;
pub mod query;
mod render;
pub mod view;

use query::DashboardQuery;
use view::View;

/// The path of the live part, fetched by the script with the page's query.
pub const FRAGMENT_PATH: &str = "/dashboard/fragment";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route(FRAGMENT_PATH, web::get().to(fragment))
        .route("/static/{file}", web::get().to(assets::serve));
}

/// `GET /`: the whole page. With auth on and no credential (a browser cannot add a
/// header to a page load), the page without lab data, asking for a key.
async fn index(broker: Broker, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let query = DashboardQuery::parse(&req)?;
    let anonymous = req
        .extensions()
        .get::<Caller>()
        .is_some_and(|c| c.via == Via::Anonymous);
    if anonymous {
        let policy = broker.policy();
        let html = render::page(&query, policy.expiry_warning, None);
        return Ok(html_response(html.into_string()));
    }
    let html = rendered(broker.clone(), query, Part::Page).await?;
    Ok(html_response(html))
}

/// `GET /dashboard/fragment`: the live part (overview, resources, queue, fulfilled) for
/// the same query as the page, which the script swaps in.
async fn fragment(broker: Broker, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let query = DashboardQuery::parse(&req)?;
    let html = rendered(broker.clone(), query, Part::Live).await?;
    Ok(html_response(html))
}

fn html_response(html: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        // Always current: the page is the lab's state now.
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(html)
}

#[derive(Clone, Copy)]
enum Part {
    Page,
    Live,
}

/// Copies the inputs (briefly under the lock), then builds and renders the view on a
/// blocking thread, off the worker's event loop.
async fn rendered(
    broker: BrokerHandle,
    query: DashboardQuery,
    part: Part,
) -> Result<String, ApiError> {
    web::block(move || {
        let inputs = broker.dashboard_inputs(view::QUEUE_ROWS);
        let etas: HashMap<ReservationId, Option<Timestamp>> = inputs
            .queue_head
            .iter()
            .map(|r| {
                let eta = broker
                    .reservation(r.id)
                    .ok()
                    .and_then(|s| s.waiting_for)
                    .and_then(|w| w.estimated_available_at);
                (r.id, eta)
            })
            .collect();
        let policy = broker.policy();
        let view = View::build(&inputs, &query, &etas, policy.aging, policy.expiry_warning);
        match part {
            Part::Page => render::page(&query, view.warning, Some(&view)).into_string(),
            Part::Live => render::live(&view).into_string(),
        }
    })
    .await
    .map_err(|_| ApiError::Internal("rendering the dashboard failed".to_owned()))
}
