//! The reservation endpoints: the 1.0 queue API, plus priorities, groups, label
//! expressions, auto-claim and long-polling.
//!
//! A reservation is served the moment its resources free up, inside the operation that
//! frees them (see `domain::broker::queue`); `GET ...?wait=` lets a client learn it
//! without polling.

use std::time::Duration;

use actix_web::http::header;
use actix_web::web::{self, Data, Payload};
use actix_web::{HttpRequest, HttpResponse};
use tokio::sync::broadcast::error::RecvError;

use super::dto::{ErrorBody, ReservationList, ReservationPageList, ReservationView};
use super::error::ApiError;
use super::idempotency::Retain;
use super::only;
use super::params::{self, Body, Query};
use super::query;
use crate::domain::{Event, ReservationId, ReservationRequest, ReservationStatus, Ttl};
use crate::runtime::{BrokerHandle, Shutdown};

/// The longest long-poll, in seconds: below the idle timeouts of common proxies.
pub const MAX_WAIT_SECS: f64 = 300.0;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/reservations")
            .route(web::post().to(create_reservation))
            .route(web::get().to(list_reservations))
            .default_service(web::to(super::method_not_allowed)),
    )
    .service(
        web::resource("/reservations/{rid}")
            .route(web::get().to(get_reservation))
            .route(web::delete().to(cancel_reservation))
            .default_service(web::to(super::method_not_allowed)),
    )
    .service(only(
        "/reservations/{rid}/claim",
        web::post().to(claim_reservation),
    ));
}

/// Queues a reservation for resources matching tags (or a label expression), or for
/// several groups at once. It is fulfilled in this response when the resources are free.
#[utoipa::path(post, path = "/api/v1/reservations", tag = "reservations",
    request_body(content = ReservationRequestDoc, description = "What to reserve"),
    responses(
        (status = 201, description = "Queued (status pending) or already fulfilled", body = ReservationView),
        (status = 400, description = "Invalid request, or one that could never be served", body = ErrorBody),
        (status = 404, description = "No resource matches a group's criteria", body = ErrorBody),
        (status = 413, description = "Body over 256 KiB", body = ErrorBody),
    ))]
pub async fn create_reservation(
    broker: Data<BrokerHandle>,
    body: Payload,
) -> Result<HttpResponse, ApiError> {
    let body = Body::parse(
        &params::read_body(body).await?,
        r#"{"tags": ["ci", "linux"], "quantity": 2}"#,
    )?;
    let request = reservation_request(&body)?;
    // An Idempotency-Key retry must find this answer while the reservation may wait and
    // then hold its locks.
    let retain = request.max_wait.as_duration() + request.ttl.as_duration();
    let snapshot = broker.reserve(request)?;
    let view = ReservationView::from(&snapshot);
    let response = HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("{}/reservations/{}", super::PREFIX, view.reservation_id),
        ))
        .json(view);
    Ok(Retain(retain).on(response))
}

/// Every live reservation: pending ones in queue order, then the others by creation.
/// With any query parameter below, one page of the matching ones, in the same order
/// (`total`, `page` and `limit` in the body, RFC 8288 `Link` header); an unknown
/// parameter beside them is a 400.
#[utoipa::path(get, path = "/api/v1/reservations", tag = "reservations",
    params(
        ("status" = Option<Vec<String>>, Query, description = "pending, fulfilled or claimed; repeat it or separate with commas"),
        ("tag" = Option<Vec<String>>, Query, description = "A tag some group asks for (an expression group: a tag it requires); alias `tags`"),
        ("priority" = Option<u8>, Query, description = "The priority it was created with, 1 to 10"),
        ("page" = Option<u64>, Query, description = "1-based page, default 1"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 1000, default 100"),
    ),
    responses(
        (status = 200, description = "Every live reservation (no parameter), or one page of the matches", body = ReservationPageList),
        (status = 400, description = "An unknown, repeated or invalid parameter (named in `parameter`)", body = ErrorBody),
    ))]
pub async fn list_reservations(
    broker: Data<BrokerHandle>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let filters = match Query::parse(&req) {
        Ok(query) => query::reservation_query(&query)?.map(|q| (query, q)),
        Err(_) => None,
    };
    let Some((query, filters)) = filters else {
        let reservations = broker.reservations();
        return Ok(HttpResponse::Ok().json(ReservationList {
            reservations: reservations.iter().map(ReservationView::from).collect(),
        }));
    };
    let (total, items) = broker.query_reservations(&filters);
    Ok(HttpResponse::Ok()
        .insert_header((
            header::LINK,
            query::page_links(&req, &query, filters.page, total),
        ))
        .json(ReservationPageList {
            reservations: items.iter().map(ReservationView::from).collect(),
            total,
            page: filters.page.number,
            limit: filters.page.limit,
        }))
}

/// One reservation, with `waiting_for` while pending. With `?wait=SECONDS` (at most 300,
/// fractions allowed) the answer comes as soon as its status changes, or when the wait
/// ends with the state unchanged. `&status=pending` (the status the caller last saw)
/// answers at once if it has already changed, so no change is missed between two polls.
/// When the service stops, a waiting poll answers at once with the current state.
#[utoipa::path(get, path = "/api/v1/reservations/{rid}", tag = "reservations",
    params(
        ("rid" = String, Path, description = "Reservation id (res_...)"),
        ("wait" = Option<f64>, Query, description = "Long-poll: seconds to wait for a status change"),
        ("status" = Option<String>, Query, description = "With wait: the status last seen; answer at once if it differs"),
    ),
    responses(
        (status = 200, body = ReservationView),
        (status = 400, description = "Bad wait", body = ErrorBody),
        (status = 404, description = "No such reservation, or it has ended", body = ErrorBody),
    ))]
pub async fn get_reservation(
    broker: Data<BrokerHandle>,
    shutdown: Data<Shutdown>,
    rid: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = reservation_id(&rid)?;
    let query = Query::parse(&req)?;
    let wait = long_poll_wait(&query)?;
    let last_seen = last_seen_status(&query)?;
    // Subscribe before reading, so that a change between the two is not missed.
    let mut events = broker.subscribe();
    let first = broker.reservation(id)?;
    let unchanged = last_seen.is_none_or(|s| s == first.reservation.status);
    let (Some(wait), true) = (wait, unchanged) else {
        return Ok(HttpResponse::Ok().json(ReservationView::from(&first)));
    };
    let changed = async {
        loop {
            match events.recv().await {
                Ok(event) if changes_status(&event, id) => return,
                Ok(_) => {}
                // Missed events may include ours: read the state again.
                Err(RecvError::Lagged(_)) => {
                    if broker.reservation(id).map(|s| s.reservation.status).ok()
                        != Some(first.reservation.status)
                    {
                        return;
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    };
    // Counted from here on: the subscription above sees every change after this point.
    let _watch = shutdown.watch();
    // A stopping service answers with the state as it is (at once if already stopping).
    tokio::select! {
        _ = tokio::time::timeout(wait, changed) => {}
        () = shutdown.begun() => {}
    }
    let now = broker.reservation(id)?;
    Ok(HttpResponse::Ok().json(ReservationView::from(&now)))
}

/// Confirms a fulfilled reservation within its claim window.
#[utoipa::path(post, path = "/api/v1/reservations/{rid}/claim", tag = "reservations",
    params(("rid" = String, Path, description = "Reservation id (res_...)")),
    responses(
        (status = 200, description = "Claimed", body = ReservationView),
        (status = 404, description = "No such reservation", body = ErrorBody),
        (status = 409, description = "Still pending, or already claimed", body = ErrorBody),
        (status = 410, description = "The claim window is over; its resources were released", body = ErrorBody),
    ))]
pub async fn claim_reservation(
    broker: Data<BrokerHandle>,
    rid: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let snapshot = broker.claim(reservation_id(&rid)?)?;
    Ok(HttpResponse::Ok().json(ReservationView::from(&snapshot)))
}

/// Withdraws a pending reservation.
#[utoipa::path(delete, path = "/api/v1/reservations/{rid}", tag = "reservations",
    params(("rid" = String, Path, description = "Reservation id (res_...)")),
    responses(
        (status = 204, description = "Cancelled"),
        (status = 404, description = "No such reservation", body = ErrorBody),
        (status = 409, description = "Fulfilled or claimed: unlock its resources instead", body = ErrorBody),
    ))]
pub async fn cancel_reservation(
    broker: Data<BrokerHandle>,
    rid: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    broker.cancel(reservation_id(&rid)?)?;
    Ok(HttpResponse::NoContent().finish())
}

/// The request body: `groups`, or `tags`/`expr` with `quantity`; `ttl`,
/// `max_wait_time`, `priority`, `auto_claim`, `holder`, `note`.
fn reservation_request(body: &Body) -> Result<ReservationRequest, ApiError> {
    let groups = body.groups()?.ok_or_else(|| {
        ApiError::bad_request(
            "invalid_tags",
            "tags is required: a non-empty list such as [\"ci\", \"linux\"] (or expr, or groups)",
        )
    })?;
    Ok(ReservationRequest {
        groups,
        priority: body.priority()?,
        ttl: body.ttl("ttl", Ttl::DEFAULT)?,
        max_wait: body.ttl("max_wait_time", Ttl::DEFAULT)?,
        auto_claim: body.flag("auto_claim")?,
        meta: body.lock_terms()?.meta,
    })
}

/// A reservation id from the path. A malformed one names no reservation: 404, as 1.0
/// answered for any unknown id.
fn reservation_id(raw: &str) -> Result<ReservationId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::UnknownReservation(raw.to_owned()))
}

/// `?wait=SECONDS`: `None` without it.
fn long_poll_wait(query: &Query) -> Result<Option<Duration>, ApiError> {
    let Some(raw) = query.get("wait") else {
        return Ok(None);
    };
    match raw.trim().parse::<f64>() {
        Ok(secs) if (0.0..=MAX_WAIT_SECS).contains(&secs) => {
            Ok(Some(Duration::from_secs_f64(secs)))
        }
        _ => Err(ApiError::bad_request(
            "invalid_wait",
            format!("wait must be a number of seconds from 0 to {MAX_WAIT_SECS}, got {raw:?}"),
        )
        .with("wait", raw)),
    }
}

/// `?status=`: the status the caller last saw.
fn last_seen_status(query: &Query) -> Result<Option<ReservationStatus>, ApiError> {
    let Some(raw) = query.get("status") else {
        return Ok(None);
    };
    [
        ReservationStatus::Pending,
        ReservationStatus::Fulfilled,
        ReservationStatus::Claimed,
    ]
    .into_iter()
    .find(|s| s.as_str() == raw)
    .map(Some)
    .ok_or_else(|| {
        ApiError::bad_request(
            "invalid_status",
            format!("status must be pending, fulfilled or claimed, got {raw:?}"),
        )
        .with("status", raw)
    })
}

/// Whether `event` changes the status of reservation `id`.
fn changes_status(event: &Event, id: ReservationId) -> bool {
    matches!(
        event,
        Event::ReservationFulfilled { reservation, .. }
        | Event::ReservationClaimed { reservation, .. }
        | Event::ReservationEnded { reservation, .. } if *reservation == id
    )
}

/// Documentation of the request body (it is parsed by hand, see `params::Body`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documentation only
pub struct ReservationRequestDoc {
    /// Every tag required (the 1.0 form). Or give `expr`, or `groups`.
    tags: Option<Vec<String>>,
    /// A label expression such as `linux && (x86 || arm) && !flaky`, instead of `tags`.
    expr: Option<String>,
    /// Resources wanted (default 1).
    quantity: Option<u32>,
    /// Several groups granted atomically, never overlapping:
    /// `[{"tags": ["dut","arm"], "quantity": 2}, {"expr": "psu", "quantity": 1}]`.
    groups: Option<Vec<GroupDoc>>,
    /// Lock lifetime once fulfilled, seconds (default 3600), counted from fulfilment.
    ttl: Option<u64>,
    /// Seconds to wait in the queue before giving up (default 3600).
    max_wait_time: Option<u64>,
    /// 1 (served first) to 10; default 5. Improves by one level per --queue-aging waited.
    priority: Option<u8>,
    /// Fulfilment is the claim: no second step (default false).
    auto_claim: Option<bool>,
}

/// One group of a request.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documentation only
pub struct GroupDoc {
    tags: Option<Vec<String>>,
    expr: Option<String>,
    quantity: Option<u32>,
}
