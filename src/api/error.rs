//! [`ApiError`]: every refusal, mapped to its 1.0 status code and body.
//!
//! The body is a JSON object of context fields, then `message` (the 1.0 text, which
//! clients may match on), then `code`, a stable snake_case name added by rentabot.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, RETRY_AFTER};
use actix_web::{HttpResponse, ResponseError};
use serde_json::{Map, Value, json};

use super::dto::ResourceView;
use crate::domain::{Criteria, DomainError, Owning, ReservationStatus, TokenUse};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The broker refused: 404, 403, 409, 410 or 400, as 1.0 answered.
    #[error(transparent)]
    Domain(#[from] DomainError),

    /// 404: no route serves this method and path.
    #[error("no route for {method} {path}")]
    NoRoute { method: String, path: String },

    /// 405: the path exists, but not for this method. `allow` lists the methods it
    /// serves (sent as the `Allow` header, as RFC 9110 requires).
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed {
        method: String,
        path: String,
        allow: String,
    },

    /// 413: the request body is over `limit` bytes (or its `Content-Length` says it will
    /// be, refused before reading any of it). Answered here rather than by actix's
    /// extractor, whose refusal is plain text: every error body is JSON. The connection
    /// closes: the rest of the body is not worth reading.
    #[error("the request body is over {limit} bytes")]
    BodyTooLarge { limit: usize },

    /// 408: the request body did not arrive within `secs` seconds
    /// (`--body-timeout`). The connection closes, so that a client trickling a body
    /// cannot hold it.
    #[error("the request body did not arrive within {secs} s")]
    BodyTimeout { secs: u64 },

    /// 415: a request body that is not JSON: its `Content-Type` is a form, text or
    /// anything but `application/json` (or a `+json` type). No content type is JSON, as
    /// 1.0 clients send it.
    #[error("the request body must be JSON, not {content_type}")]
    UnsupportedMediaType { content_type: String },

    /// 403: a change requested by a web page from another site (its `Origin` is neither
    /// this service nor in `--allowed-origin`): a browser must not be usable to lock or
    /// delete on a user's behalf.
    #[error("requests from {origin} are not allowed to change anything")]
    OriginNotAllowed { origin: String },

    /// Any other HTTP refusal that came without a body (e.g. a 404 of the explorer's
    /// assets): the status with a JSON body.
    #[error("{status} for {path}")]
    Status { status: StatusCode, path: String },

    /// 400: a parameter, header or body the caller must fix. `message` says how.
    #[error("{message}")]
    BadRequest {
        message: String,
        code: &'static str,
        context: Vec<(&'static str, Value)>,
    },

    /// 404: a reservation id that is not of the `res_` + 32 hex digits form.
    #[error("no reservation has the id {0:?}")]
    UnknownReservation(String),

    /// 422: an `Idempotency-Key` reused for a different request.
    #[error("Idempotency-Key reused for a different request")]
    IdempotencyKeyReused,

    /// 409: a reload, but the service was started without a descriptor file.
    #[error("no descriptor file to reload")]
    NoDescriptor,

    /// 503: the answer depends on a change that is not committed (the store fails, or
    /// the commit took too long). The change may still be applied later: retry with the
    /// same `Idempotency-Key` to learn its outcome.
    #[error(transparent)]
    Unavailable(#[from] crate::runtime::Unavailable),

    /// 503: this service is a standby of an HA pair (`reason` says why it is not the
    /// active one). Retry: the active one is behind the same address once the load
    /// balancer sees who is ready.
    #[error("standby: {reason}")]
    Standby { reason: String },

    /// 401, 403 or 429 from the auth gate (`api/middleware.rs`): no or a wrong
    /// credential, a role below the route's, over the rate limit.
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),

    /// 500: the server failed (a task that did not finish). The detail is for the log
    /// (the caller logs it), never sent.
    #[error("internal error: {0}")]
    Internal(String),

    /// 414: the request target (path and query) is over `limit` bytes.
    #[error("the request URI is {length} bytes, over {limit}")]
    UriTooLong { length: usize, limit: usize },

    /// 431: too many headers, one header too large, or all of them too large together.
    /// `header` names the one that is too large, when it is one.
    #[error("request headers too large: {what}")]
    HeadersTooLarge {
        what: String,
        header: Option<String>,
        limit: usize,
    },
}

/// Everything a response needs from an error.
struct Parts {
    status: StatusCode,
    code: &'static str,
    message: String,
    context: Vec<(&'static str, Value)>,
    /// The `Allow` header of a 405.
    allow: Option<String>,
    /// Close the connection after this response (its request body was not read).
    close: bool,
}

impl Parts {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Parts {
            status,
            code,
            message: message.into(),
            context: Vec::new(),
            allow: None,
            close: false,
        }
    }

    fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    fn with(mut self, key: &'static str, value: impl Into<Value>) -> Self {
        self.context.push((key, value.into()));
        self
    }

    /// The criteria as 1.0 showed tags (`"tags": [...]`), or as `"expr"`.
    fn with_criteria(self, criteria: &Criteria) -> Self {
        match criteria {
            Criteria::Tags(tags) => self.with("tags", json!(tags)),
            Criteria::Expr(expr) => self.with("expr", expr.to_string()),
        }
    }
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
            code,
            context: Vec::new(),
        }
    }

    /// Adds a context field to a `BadRequest`.
    pub fn with(mut self, key: &'static str, value: impl Into<Value>) -> Self {
        if let ApiError::BadRequest { context, .. } = &mut self {
            context.push((key, value.into()));
        }
        self
    }

    /// The stable name clients match on.
    pub fn code(&self) -> &'static str {
        self.parts().code
    }

    fn parts(&self) -> Parts {
        use StatusCode as S;
        match self {
            ApiError::BadRequest {
                message,
                code,
                context,
            } => Parts {
                context: context.clone(),
                ..Parts::new(S::BAD_REQUEST, code, message.clone())
            },
            ApiError::NoRoute { method, path } => Parts::new(
                S::NOT_FOUND,
                "no_route",
                format!("Not Found: no route for {method} {path}; the API is described at /docs"),
            )
            .with("path", path.as_str()),
            ApiError::MethodNotAllowed {
                method,
                path,
                allow,
            } => Parts {
                allow: Some(allow.clone()),
                ..Parts::new(
                    S::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!(
                        "Method Not Allowed: {method} is not served on {path}; the API is described at /docs"
                    ),
                )
                .with("path", path.as_str())
                .with("method", method.as_str())
            },
            ApiError::BodyTooLarge { limit } => Parts::new(
                S::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the request body must be at most {limit} bytes"),
            )
            .with("limit", *limit)
            .closing(),
            ApiError::BodyTimeout { secs } => Parts::new(
                S::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the request body did not arrive within {secs} s: send it whole, right after the headers"
                ),
            )
            .with("timeout", *secs)
            .closing(),
            ApiError::UnsupportedMediaType { content_type } => Parts::new(
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "the request body must be JSON: send it with Content-Type: application/json (or with no Content-Type), not {content_type:?}"
                ),
            )
            .with("content_type", content_type.as_str()),
            ApiError::OriginNotAllowed { origin } => Parts::new(
                S::FORBIDDEN,
                "origin_not_allowed",
                format!(
                    "a web page on {origin} may not change anything here: only pages of this service (and origins listed with --allowed-origin) may"
                ),
            )
            .with("origin", origin.as_str()),
            ApiError::Status { status, path } => Parts::new(
                *status,
                "http_error",
                format!(
                    "{}: {path}",
                    status.canonical_reason().unwrap_or("HTTP error")
                ),
            )
            .with("path", path.as_str()),
            ApiError::IdempotencyKeyReused => Parts::new(
                S::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request: use a new key for a new request",
            ),
            ApiError::NoDescriptor => Parts::new(
                S::CONFLICT,
                "no_descriptor",
                "Cannot reload: the service was started without a descriptor file; restart it with --config FILE to use reloads, or manage resources with POST/PATCH/DELETE /api/v1/resources",
            ),
            ApiError::Unavailable(crate::runtime::Unavailable::StoreFailing(reason)) => {
                Parts::new(
                    S::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "Service Unavailable: the state store is failing, so nothing can be acknowledged; a request that was running may still be applied once it recovers. Retry (with the same Idempotency-Key) later",
                )
                .with("reason", reason.to_string())
            }
            ApiError::Standby { reason } => Parts::new(
                S::SERVICE_UNAVAILABLE,
                "standby",
                "Service Unavailable: this rentabot is a standby of an HA pair; the active one serves. Retry (with the same Idempotency-Key): during a takeover the active one answers within seconds",
            )
            .with("reason", reason.as_str()),
            ApiError::Unavailable(crate::runtime::Unavailable::Timeout(waited)) => Parts::new(
                S::SERVICE_UNAVAILABLE,
                "commit_timeout",
                format!(
                    "Service Unavailable: the change was not committed within {} s; it may still be applied. Retry (with the same Idempotency-Key) to learn its outcome",
                    waited.as_secs()
                ),
            ),
            ApiError::Auth(e) => {
                let status = S::from_u16(e.status()).unwrap_or(S::UNAUTHORIZED);
                let mut parts = Parts::new(status, e.code(), e.to_string());
                for (key, value) in e.context() {
                    parts = parts.with(key, value);
                }
                parts
            }
            ApiError::Internal(_) => Parts::new(
                S::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Internal error: the request may not have been applied; see the service log",
            ),
            ApiError::UnknownReservation(raw) => {
                Parts::new(S::NOT_FOUND, "reservation_not_found", "Reservation not found")
                    .with("reservation_id", raw.as_str())
            }
            ApiError::Domain(e) => domain_parts(e),
            ApiError::UriTooLong { length, limit } => Parts::new(
                S::URI_TOO_LONG,
                "uri_too_long",
                format!(
                    "the request URI (path and query) is {length} bytes, over the limit of {limit}: send long criteria in a JSON body"
                ),
            )
            .with("limit", *limit),
            ApiError::HeadersTooLarge {
                what,
                header,
                limit,
            } => {
                let parts = Parts::new(
                    S::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "headers_too_large",
                    format!("request headers too large: {what}"),
                )
                .with("limit", *limit);
                match header {
                    Some(name) => parts.with("header", name.as_str()),
                    None => parts,
                }
            }
        }
    }
}

/// What a request without a lock token is told.
pub const MISSING_TOKEN_HINT: &str = "no lock token was given: pass the token the lock returned as ?lock-token=TOKEN (with a hyphen) or in the X-Lock-Token header";

/// The 1.0 status, message and context fields of each broker refusal.
fn domain_parts(e: &DomainError) -> Parts {
    use StatusCode as S;
    match e {
        DomainError::ResourceNotFound(id) => {
            Parts::new(S::NOT_FOUND, "resource_not_found", "Resource not found").with("resource_id", id.get())
        }
        DomainError::NameNotFound(name) => Parts::new(S::NOT_FOUND, "resource_not_found", "Resource not found")
            .with("resource_name", name.as_str()),
        DomainError::NoMatch(criteria) => Parts::new(
            S::NOT_FOUND,
            "no_match",
            "No resource found matching the tag(s)",
        )
        .with_criteria(criteria),
        DomainError::AllMatchesLocked {
            criteria,
            held_for,
            unavailable,
        } => {
            let mut parts = Parts::new(
                S::FORBIDDEN,
                "all_matches_locked",
                "No available resource found matching the tag(s)",
            )
            .with_criteria(criteria);
            if !held_for.is_empty() {
                let ids: Vec<String> = held_for.iter().map(ToString::to_string).collect();
                parts = parts.with("held_for", json!(ids));
            }
            if *unavailable > 0 {
                parts = parts.with("unavailable", *unavailable);
            }
            parts
        }
        DomainError::AllMatchesUnavailable { criteria, count } => Parts::new(
            S::CONFLICT,
            "all_matches_unavailable",
            format!(
                "Every resource matching the criteria ({count}) is unavailable (maintenance); see unavailable-reason on each"
            ),
        )
        .with_criteria(criteria)
        .with("unavailable", *count),
        DomainError::Unavailable { id, reason, until } => Parts::new(
            S::CONFLICT,
            "resource_unavailable",
            format!("Resource is unavailable: {reason}"),
        )
        .with("resource_id", id.get())
        .with("reason", reason.as_str())
        .with("until", json!(until.map(|t| t.to_rfc3339()))),
        DomainError::CrossesMaintenance {
            id,
            reason,
            from,
            until,
            longest_ttl_secs,
        } => Parts::new(
            S::CONFLICT,
            "crosses_maintenance",
            if *longest_ttl_secs == 0 {
                format!(
                    "Resource goes into maintenance at {from} ({reason}): no lock fits before then"
                )
            } else {
                format!(
                    "Resource goes into maintenance at {from} ({reason}): the lock must end by then; a ttl of at most {longest_ttl_secs}s fits"
                )
            },
        )
        .with("resource_id", id.get())
        .with("reason", reason.as_str())
        .with("maintenance_from", from.to_rfc3339())
        .with("maintenance_until", json!(until.map(|t| t.to_rfc3339())))
        .with("longest_ttl", *longest_ttl_secs),
        DomainError::InvalidWindow { from, until, now } => Parts::new(
            S::BAD_REQUEST,
            "invalid_window",
            format!(
                "until ({until}) must be after the window opens ({from}) and after now ({now})"
            ),
        )
        .with("until", until.to_rfc3339()),
        DomainError::NothingToForce(id) => Parts::new(
            S::CONFLICT,
            "not_locked",
            "Resource is not locked: there is nothing to force-unlock",
        )
        .with("resource_id", id.get()),
        DomainError::AlreadyLocked(id) => Parts::new(
            S::FORBIDDEN,
            "already_locked",
            "Cannot lock the requested resource, resource is already locked",
        )
        .with("resource_id", id.get()),
        DomainError::HeldForReservation { id, reservation } => Parts::new(
            S::FORBIDDEN,
            "held_for_reservation",
            format!(
                "Cannot lock the requested resource, it is held for waiting reservation {reservation}"
            ),
        )
        .with("resource_id", id.get())
        .with("reservation_id", reservation.to_string()),
        DomainError::NotLocked(id, used_for) => Parts::new(
            S::FORBIDDEN,
            "not_locked",
            match used_for {
                TokenUse::Unlock => "Resource is already unlocked",
                TokenUse::Extend => "Cannot extend lock on unlocked resource",
            },
        )
        .with("resource_id", id.get()),
        DomainError::InvalidToken {
            resource,
            provided,
            used_for,
        } => {
            let parts = Parts::new(
                S::FORBIDDEN,
                if provided.is_some() {
                    "invalid_lock_token"
                } else {
                    "missing_lock_token"
                },
                match used_for {
                    TokenUse::Unlock => "Cannot unlock resource, the lock token is not valid.",
                    TokenUse::Extend => "Cannot extend lock, the lock token is not valid.",
                },
            )
            // 1.0 echoed the holder's real token here; the view is redacted.
            .with("resource", json!(ResourceView::redacted(resource)))
            .with("invalid-lock-token", json!(provided));
            if provided.is_some() {
                parts
            } else {
                // The 1.0 message stays (clients match on it); the hint says what to do.
                parts.with("hint", MISSING_TOKEN_HINT)
            }
        }
        DomainError::TtlAboveMax { id, ttl, max } => Parts::new(
            S::BAD_REQUEST,
            "ttl_above_max",
            format!(
                "Requested TTL ({}s) exceeds maximum allowed duration ({}s)",
                ttl.as_secs(),
                max.as_secs()
            ),
        )
        .with("resource_id", id.get())
        .with("ttl", ttl.as_secs())
        .with("max_lock_duration", max.as_secs()),
        DomainError::TotalAboveMax {
            id,
            total_secs,
            max,
        } => Parts::new(
            S::BAD_REQUEST,
            "total_above_max",
            format!(
                "Total lock duration ({total_secs}s) would exceed maximum allowed ({}s)",
                max.as_secs()
            ),
        )
        .with("resource_id", id.get())
        .with("total_duration", *total_secs)
        .with("max_lock_duration", max.as_secs()),
        DomainError::Unsatisfiable {
            group,
            criteria,
            wanted,
            matching,
            eligible,
            ttl,
        } => Parts::new(
            S::BAD_REQUEST,
            "unsatisfiable",
            format!(
                "This request can never be served: {wanted} resources wanted, but only {eligible} match and allow a lock of {}s ({matching} match in all); ask for fewer, a shorter ttl, or other criteria",
                ttl.as_secs()
            ),
        )
        .with("group", *group)
        .with_criteria(criteria)
        .with("quantity", *wanted)
        .with("matching", *matching)
        .with("eligible", *eligible),
        DomainError::NotEnoughAvailable {
            group,
            criteria,
            wanted,
            available,
        } => Parts::new(
            S::FORBIDDEN,
            "not_enough_available",
            format!(
                "Not enough available resources: {wanted} wanted, {available} available now; nothing was locked (reserve them to wait in the queue)"
            ),
        )
        .with("group", *group)
        .with_criteria(criteria)
        .with("quantity", *wanted)
        .with("available", *available),
        DomainError::ReservationNotFound(id) => {
            Parts::new(S::NOT_FOUND, "reservation_not_found", "Reservation not found")
                .with("reservation_id", id.to_string())
        }
        DomainError::ReservationEnded { id, reason, at } => {
            Parts::new(S::NOT_FOUND, "reservation_not_found", "Reservation not found")
                .with("reservation_id", id.to_string())
                .with("ended", reason.as_str())
                .with("ended_at", at.to_rfc3339())
        }
        DomainError::ReservationWrongState { id, status } => Parts::new(
            S::CONFLICT,
            "reservation_wrong_state",
            match status {
                ReservationStatus::Pending => "Reservation is still pending: claim it once it is fulfilled",
                ReservationStatus::Fulfilled => {
                    "Cannot cancel a fulfilled reservation: claim it, or unlock its resources with its lock tokens"
                }
                ReservationStatus::Claimed => {
                    "Reservation is already claimed: unlock its resources with its lock tokens"
                }
            },
        )
        .with("reservation_id", id.to_string())
        .with("status", status.as_str()),
        DomainError::ClaimWindowOver(id) => Parts::new(
            S::GONE,
            "claim_window_over",
            "Claim window expired: the reservation's resources were released",
        )
        .with("reservation_id", id.to_string()),
        DomainError::NameTaken { name, id } => Parts::new(
            S::CONFLICT,
            "name_taken",
            format!(
                "A resource named {name:?} already exists (id {id}): choose another name, or change that resource with PATCH"
            ),
        )
        .with("resource_name", name.as_str())
        .with("resource_id", id.get()),
        DomainError::ResourceLocked(id) => Parts::new(
            S::CONFLICT,
            "resource_locked",
            "Cannot delete a locked resource: delete it once unlocked, or now with ?force=true, which breaks the lock",
        )
        .with("resource_id", id.get()),
        DomainError::InvalidTags(problem) => Parts::new(
            S::BAD_REQUEST,
            "invalid_tags",
            format!("{problem}; see the limits in the README (Limits)"),
        ),
        DomainError::TooManyResources { total, max } => Parts::new(
            S::BAD_REQUEST,
            "invalid_quantity",
            format!(
                "{total} resources asked for in one request, over the limit of {max}: ask for fewer, or split the request"
            ),
        )
        .with("quantity", *total)
        .with("max", *max),
        DomainError::QueueFull {
            max,
            retry_after_secs,
        } => Parts::new(
            S::TOO_MANY_REQUESTS,
            "queue_full",
            format!(
                "The queue is full: {max} reservations already wait; try again in {retry_after_secs} s, or lock what is free now"
            ),
        )
        .with("max_pending", *max)
        .with("retry_after", *retry_after_secs),
        DomainError::NotOwner { what } => {
            let parts = Parts::new(
                S::FORBIDDEN,
                "not_owner",
                format!(
                    "{what} belongs to another caller: only its owner and admins may use it (an operator may force-unlock a lock)"
                ),
            );
            match what {
                Owning::Lock(id) => parts.with("resource_id", id.get()),
                Owning::Reservation(id) => parts.with("reservation_id", id.to_string()),
            }
        }
        DomainError::TooManyLocks {
            held,
            wanted,
            max,
            retry_after_secs,
        } => Parts::new(
            S::TOO_MANY_REQUESTS,
            "too_many_locks",
            format!(
                "this key holds {held} locks and asks for {wanted} more, over its cap of {max} (max_locks in the auth config): unlock some first"
            ),
        )
        .with("held", *held)
        .with("max_locks", *max)
        .with("retry_after", *retry_after_secs),
        DomainError::TooManyReservations {
            pending,
            max,
            retry_after_secs,
        } => Parts::new(
            S::TOO_MANY_REQUESTS,
            "too_many_reservations",
            format!(
                "this key has {pending} reservations waiting, its cap is {max} (max_pending_reservations in the auth config): cancel one or wait"
            ),
        )
        .with("pending", *pending)
        .with("max_pending_reservations", *max)
        .with("retry_after", *retry_after_secs),
        DomainError::BatchRefused(refusals) => {
            let errors: Vec<Value> = refusals
                .iter()
                .map(|r| json!({"index": r.index, "message": r.problem}))
                .collect();
            Parts::new(
                S::FORBIDDEN,
                "batch_refused",
                format!(
                    "Nothing was unlocked: {} of the lock tokens cannot be unlocked",
                    refusals.len()
                ),
            )
            .with("errors", json!(errors))
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.parts().status
    }

    fn error_response(&self) -> HttpResponse {
        let Parts {
            status,
            code,
            message,
            context,
            allow,
            close,
        } = self.parts();
        let mut body = Map::new();
        for (key, value) in context {
            body.insert(key.to_owned(), value);
        }
        body.insert("message".into(), Value::String(message));
        body.insert("code".into(), Value::String(code.into()));
        let mut response = HttpResponse::build(status);
        if let Some(allow) = allow {
            response.insert_header((header::ALLOW, allow));
        }
        if close {
            response.force_close();
        }
        match self {
            ApiError::Domain(
                DomainError::QueueFull {
                    retry_after_secs, ..
                }
                | DomainError::TooManyLocks {
                    retry_after_secs, ..
                }
                | DomainError::TooManyReservations {
                    retry_after_secs, ..
                },
            ) => {
                response.insert_header((RETRY_AFTER, retry_after_secs.to_string()));
            }
            ApiError::Unavailable(_) | ApiError::Standby { .. } => {
                response.insert_header((RETRY_AFTER, "1"));
            }
            ApiError::Auth(e) => {
                if let Some(challenge) = e.www_authenticate() {
                    response.insert_header((header::WWW_AUTHENTICATE, challenge));
                }
                if let Some(secs) = e.retry_after() {
                    response.insert_header((RETRY_AFTER, secs.to_string()));
                }
            }
            _ => {}
        }
        let mut response = response.json(Value::Object(body));
        // For the audit log's record of the refusal (`middleware::audit_refusal`).
        response.extensions_mut().insert(ErrorCode(code));
        response
    }
}

/// The `code` of an error answer, kept in the response's extensions so that middleware
/// can tell it without reading the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorCode(pub &'static str);
