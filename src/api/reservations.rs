//! The reservation endpoints: the 1.0 queue API, plus priorities, groups, label
//! expressions, auto-claim and long-polling.
//!
//! A reservation is served the moment its resources free up, inside the operation that
//! frees them (see `domain::broker::queue`); `GET ...?wait=` lets a client learn it
//! without polling.

use std::sync::LazyLock;
use std::time::Duration;

use actix_web::http::header;
use actix_web::web::{self, Data, Payload};
use actix_web::{HttpRequest, HttpResponse};
use tokio::sync::broadcast::error::RecvError;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::{IntoParams, ToSchema};

use super::broker::Broker;
use super::dto::{
    ErrorBody, ReservationList, ReservationListBody, ReservationPageList, ReservationView,
};
use super::endpoint;
use super::error::ApiError;
use super::events::changes_status;
use super::idempotency::Retain;
use super::params::{self, Body, Fields, GroupRequest, Known, Query, param};
use super::query;
use crate::domain::{ReservationId, ReservationRequest, ReservationStatus, Ttl};
use crate::runtime::Shutdown;

/// The longest long-poll, in seconds: below the idle timeouts of common proxies.
pub const MAX_WAIT_SECS: f64 = 300.0;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        endpoint("/reservations")
            .post(create_reservation)
            .get(list_reservations),
    )
    .service(
        endpoint("/reservations/{rid}")
            .get(get_reservation)
            .delete(cancel_reservation),
    )
    .service(endpoint("/reservations/{rid}/claim").post(claim_reservation));
}

/// Queues a reservation for resources matching tags (or a label expression), or for
/// several groups at once. It is fulfilled in this response when the resources are free.
#[utoipa::path(post, path = "/api/v1/reservations", tag = "reservations",
    request_body(content = ReserveRequest, description = "What to reserve"),
    responses(
        (status = 201, description = "Queued (status pending) or already fulfilled", body = ReservationView,
            headers(("Location" = String, description = "/api/v1/reservations/{rid}"))),
        (status = 400, description = "Invalid request, no criteria (`no_criterion`), criteria that exclude each other (`conflicting_parameters`), an expression that does not parse (`invalid_expr`), or one that could never be served (`unsatisfiable`)", body = ErrorBody),
        (status = 404, description = "No resource matches a group's criteria", body = ErrorBody),
        (status = 429, description = "The queue is full (`queue_full`), or, with auth, the key is at its `max_pending_reservations` (`too_many_reservations`) or `max_locks` (`too_many_locks`); Retry-After says when to try again", body = ErrorBody),
    ))]
pub async fn create_reservation(
    broker: Broker,
    req: HttpRequest,
    body: Payload,
) -> Result<HttpResponse, ApiError> {
    Query::strict(&req, &Known::none())?;
    let body = Body::parse(&params::read_body(&req, body).await?, &RESERVATION_FIELDS)?;
    let request = reservation_request(&body)?;
    // An Idempotency-Key retry must find this answer while the reservation may wait and
    // then hold its locks.
    let retain = request.max_wait.as_duration() + request.ttl.as_duration();
    let snapshot = broker.reserve(request)?;
    let view = ReservationView::shown_to(&snapshot, broker.principal());
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
    params(super::query::ReservationListQuery),
    responses(
        (status = 200, description = "Every live reservation (no list parameter), or one page of the matches (`total`, `page`, `limit`)", body = ReservationListBody),
        (status = 400, description = "An unknown, repeated or invalid parameter (named in `parameter`)", body = ErrorBody),
    ))]
pub async fn list_reservations(broker: Broker, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let filters = match Query::parse(&req) {
        Ok(query) => query::reservation_query(&query)?.map(|q| (query, q)),
        Err(_) => None,
    };
    let Some((query, filters)) = filters else {
        let reservations = broker.reservations();
        return Ok(HttpResponse::Ok().json(ReservationList {
            reservations: reservations
                .iter()
                .map(|r| ReservationView::shown_to(r, broker.principal()))
                .collect(),
        }));
    };
    let (total, items) = broker.query_reservations(&filters);
    Ok(HttpResponse::Ok()
        .insert_header((
            header::LINK,
            query::page_links(&req, &query, filters.page, total),
        ))
        .json(ReservationPageList {
            reservations: items
                .iter()
                .map(|r| ReservationView::shown_to(r, broker.principal()))
                .collect(),
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
    params(("rid" = String, Path, description = "Reservation id: `res_` and 32 hex digits (a malformed one: 404, as in 1.0)", pattern = "^res_[0-9a-fA-F]{32}$"), WaitQuery),
    responses(
        (status = 200, body = ReservationView),
        (status = 400, description = "A bad wait or status, or an unknown or repeated parameter", body = ErrorBody),
        (status = 404, description = "No such reservation, or it has ended", body = ErrorBody),
    ))]
pub async fn get_reservation(
    broker: Broker,
    shutdown: Data<Shutdown>,
    rid: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = reservation_id(&rid)?;
    let query = Query::strict(&req, &WAIT_QUERY)?;
    let wait = long_poll_wait(&query)?;
    let last_seen = last_seen_status(&query)?;
    // Subscribe before reading, so that a change committed between the two is not missed.
    let mut events = broker.subscribe();
    let first = broker.reservation(id)?;
    let unchanged = last_seen.is_none_or(|s| s == first.reservation.status);
    let (Some(wait), true) = (wait, unchanged) else {
        return Ok(HttpResponse::Ok().json(ReservationView::shown_to(&first, broker.principal())));
    };
    let changed = async {
        loop {
            match events.recv().await {
                Ok(change) if changes_status(&change, id) => return,
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
    let _watch = shutdown.watch_as(crate::runtime::Waiting::LongPoll);
    // A stopping service answers with the state as it is (at once if already stopping).
    tokio::select! {
        _ = tokio::time::timeout(wait, changed) => {}
        () = shutdown.begun() => {}
    }
    let now = broker.reservation(id)?;
    Ok(HttpResponse::Ok().json(ReservationView::shown_to(&now, broker.principal())))
}

/// Confirms a fulfilled reservation within its claim window.
#[utoipa::path(post, path = "/api/v1/reservations/{rid}/claim", tag = "reservations",
    params(("rid" = String, Path, description = "Reservation id: `res_` and 32 hex digits (a malformed one: 404, as in 1.0)", pattern = "^res_[0-9a-fA-F]{32}$")),
    responses(
        (status = 200, description = "Claimed", body = ReservationView),
        (status = 404, description = "No such reservation", body = ErrorBody),
        (status = 403, description = "With auth, another caller's reservation (`not_owner`); or a web page of another origin asked (`origin_not_allowed`)", body = ErrorBody),
        (status = 409, description = "Still pending, or already claimed", body = ErrorBody),
        (status = 410, description = "The claim window is over; its resources were released", body = ErrorBody),
    ))]
pub async fn claim_reservation(
    broker: Broker,
    rid: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = reservation_id(&rid)?;
    Query::strict(&req, &Known::none())?;
    let snapshot = broker.claim(id)?;
    Ok(HttpResponse::Ok().json(ReservationView::shown_to(&snapshot, broker.principal())))
}

/// Withdraws a pending reservation.
#[utoipa::path(delete, path = "/api/v1/reservations/{rid}", tag = "reservations",
    params(("rid" = String, Path, description = "Reservation id: `res_` and 32 hex digits (a malformed one: 404, as in 1.0)", pattern = "^res_[0-9a-fA-F]{32}$")),
    responses(
        (status = 204, description = "Cancelled"),
        (status = 404, description = "No such reservation", body = ErrorBody),
        (status = 403, description = "With auth, another caller's reservation (`not_owner`); or a web page of another origin asked (`origin_not_allowed`)", body = ErrorBody),
        (status = 409, description = "Fulfilled or claimed: unlock its resources instead", body = ErrorBody),
    ))]
pub async fn cancel_reservation(
    broker: Broker,
    rid: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = reservation_id(&rid)?;
    Query::strict(&req, &Known::none())?;
    broker.cancel(id)?;
    Ok(HttpResponse::NoContent().finish())
}

/// The request body: `groups`, or `tags`/`expr` with `quantity`; `ttl`,
/// `max_wait_time`, `priority`, `auto_claim`, `holder`, `note`.
fn reservation_request(body: &Body) -> Result<ReservationRequest, ApiError> {
    let groups = body.groups()?.ok_or_else(|| {
        ApiError::bad_request(
            "no_criterion",
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

/// `GET /reservations/{rid}`.
pub struct WaitQuery;

impl IntoParams for WaitQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            param(
                "wait",
                "Long-poll: seconds to wait for a status change, 0 to 300, fractions allowed",
                params::schema::seconds(MAX_WAIT_SECS),
            ),
            param(
                "status",
                "With wait: the status last seen; answer at once if it differs",
                params::schema::words(&["pending", "fulfilled", "claimed"]),
            ),
        ]
    }
}

static WAIT_QUERY: LazyLock<Known> = LazyLock::new(Known::of::<WaitQuery>);

/// The body of `POST /reservations`: `groups`, or `tags`/`expr` with `quantity`.
#[derive(ToSchema)]
#[allow(dead_code)] // documentation: read field by field by `params::Body`
pub struct ReserveRequest {
    /// Every tag required (the 1.0 form): a list, or a comma-separated string. Or give
    /// `expr`, or `groups`.
    #[schema(schema_with = params::schema::tags_or_null)]
    tags: Option<Vec<String>>,
    /// A label expression such as `linux && (x86 || arm) && !flaky`, instead of `tags`.
    #[schema(schema_with = params::schema::expr_or_null)]
    expr: Option<String>,
    /// Resources wanted (default 1), with `tags` or `expr`.
    #[schema(schema_with = params::schema::quantity_or_null)]
    quantity: Option<u32>,
    /// Several groups granted atomically, never overlapping, instead of `tags`/`expr`:
    /// `[{"tags": ["dut","arm"], "quantity": 2}, {"expr": "psu", "quantity": 1}]`.
    #[schema(schema_with = params::schema::groups_or_null)]
    groups: Option<Vec<GroupRequest>>,
    /// Lock lifetime once fulfilled, seconds (default 3600), counted from fulfilment.
    #[schema(schema_with = params::schema::ttl_or_null)]
    ttl: Option<u64>,
    /// Seconds to wait in the queue before giving up (default 3600).
    #[schema(schema_with = params::schema::ttl_or_null)]
    max_wait_time: Option<u64>,
    /// 1 (served first) to 10; default 5. Improves by one level per --queue-aging waited.
    #[schema(schema_with = params::schema::priority_or_null)]
    priority: Option<u8>,
    /// Fulfilment is the claim: no second step (default false).
    #[schema(schema_with = params::schema::bool_or_null)]
    auto_claim: Option<bool>,
    /// Who asks (a job URL, a user), at most 256 characters; given to every lock.
    #[schema(schema_with = params::schema::holder)]
    holder: Option<String>,
    /// Why, at most 1024 characters.
    #[schema(schema_with = params::schema::note)]
    note: Option<String>,
}

static RESERVATION_FIELDS: LazyLock<Fields> =
    LazyLock::new(|| Fields::of::<ReserveRequest>(r#"{"tags": ["ci", "linux"], "quantity": 2}"#));
