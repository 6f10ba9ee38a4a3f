//! What every request goes through before its route: an id and a log span, the head
//! limits, the request's scope and its commit, and the request's debug line. `app::build`
//! mounts them in this order:
//!
//! ```text
//! TracingLogger<RequestSpan>   picks the id (the caller's X-Request-Id, or a new one) and
//!                              opens the `request{id=…}` span the rest runs in
//!   envelope                   refuses an oversized head with a JSON 414/431; admits the
//!                              caller (auth: 401/403/429, see crate::auth); gives the
//!                              request its scope (cause; what it saw); runs the route;
//!                              holds the answer until every change the route could have
//!                              seen is committed (503 if the store fails); echoes
//!                              X-Request-Id, logs `request` at debug, and records a
//!                              refused change (or one that changed nothing) in the
//!                              audit log (`audit_answer`)
//!     routes
//! ```
//!
//! # Acknowledged means committed
//!
//! Handlers reach the broker only through [`Broker`](super::broker::Broker), scoped to the
//! request: each call records the newest change the request could have seen (its own, or
//! one it read). The envelope answers only once that change is committed
//! ([`BrokerHandle::durable`]): in memory at once, with `--persist` after the store's
//! group commit. While commits fail, every request that reaches the broker is refused
//! with 503 before it runs (the probes still answer, and `/readiness` says why).
//!
//! # Head limits
//!
//! actix-http's HTTP/1 parser refuses some requests itself, before any service sees them,
//! with an empty body: a head over 128 KiB or with more than 96 headers (431), a URI over
//! 65 534 bytes, a malformed request line, header or framing (400), a head not received
//! within `--head-timeout` (408). Those limits are constants of actix-http. Ours are
//! smaller, so a request that is merely too large reaches [`envelope`] and gets the JSON
//! error body every other refusal has; only what the parser cannot read at all still gets
//! actix's empty answer (README § Limits lists both).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::USER_AGENT;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web::Data;
use actix_web::{Error, HttpMessage};
use tracing::Span;
use tracing_actix_web::RootSpanBuilder;

use super::broker::Registered;
use super::error::{ApiError, ErrorCode};
use crate::audit::{self, AuditLog};
use crate::auth::{Auth, AuthError, Caller, Role, Rule, Via, actix_glue, rules};
use crate::domain::{OwnerCaps, Principal, Timestamp};
use crate::metrics::{Metrics, Route};
use crate::runtime::{Actor, BrokerHandle, Cause, RequestScope};

/// The request and response header carrying the request id.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The longest caller-supplied request id kept; a longer one is replaced.
pub const MAX_REQUEST_ID_LEN: usize = 128;
/// The longest request target (path and query string), in bytes: 414 above.
pub const MAX_URI_BYTES: usize = 16 * 1024;
/// The most header lines: 431 above.
pub const MAX_HEADERS: usize = 64;
/// The largest single header (name and value), in bytes: 431 above.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// The largest header section (every name and value, plus 4 bytes a line), in bytes.
pub const MAX_HEADER_SECTION_BYTES: usize = 32 * 1024;

/// The id of the request being served, in the request's extensions.
#[derive(Clone, Debug)]
pub struct RequestId(HeaderValue);

impl RequestId {
    pub fn as_str(&self) -> &str {
        // Only ever built from visible ASCII (see `is_valid_request_id`, and UUIDs).
        self.0.to_str().unwrap_or("-")
    }
}

/// A caller's id is kept when it is 1 to [`MAX_REQUEST_ID_LEN`] characters of
/// `A-Z a-z 0-9 - _ . : / + = @`: enough for UUIDs, ULIDs, trace ids and most proxies'
/// ids, and nothing that could disturb a log line. Anything else is replaced, not
/// refused: a bad id is no reason to fail a request.
pub fn is_valid_request_id(value: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&value.len())
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(b))
}

/// The root span of every request: `request{id=…}`, nothing else, because creating it is
/// on the hot path (each field is formatted when the span opens). Its level is ERROR so
/// that it is enabled whenever any line is: at `--log-level warn` a warning still names
/// its request.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let given = request
            .headers()
            .get(&REQUEST_ID)
            .filter(|v| is_valid_request_id(v.as_bytes()))
            .cloned();
        let id = given.unwrap_or_else(|| {
            // TracingLogger has just stored a fresh UUID; a hyphenated UUID is a valid
            // header value.
            let fresh = request
                .extensions()
                .get::<tracing_actix_web::RequestId>()
                .map_or_else(uuid::Uuid::new_v4, |id| **id);
            let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
            let text = fresh.hyphenated().encode_lower(&mut text);
            HeaderValue::from_str(text).expect("a UUID is a valid header value")
        });
        let id = RequestId(id);
        #[cfg(feature = "otel")]
        if crate::telemetry::traces::is_exporting() {
            let span = traced_request_span(request, &id);
            request.extensions_mut().insert(id);
            return span;
        }
        let span = tracing::error_span!("request", id = %id.as_str());
        request.extensions_mut().insert(id);
        span
    }

    fn on_request_end<B: MessageBody>(_span: Span, _outcome: &Result<ServiceResponse<B>, Error>) {
        // The debug `request` line is written by `envelope`, which knows the latency.
        // The arguments are used only to give the exported span its status.
        #[cfg(feature = "otel")]
        if crate::telemetry::traces::is_exporting() {
            let status = match _outcome {
                Ok(response) => response.status(),
                Err(e) => e.as_response_error().status_code(),
            };
            crate::telemetry::traces::end_request(&_span, status.as_u16());
        }
    }
}

/// The request span when traces are exported (feature `otel`, README § Traces): the
/// same `request{id=…}` in the log, and for the trace a name (`GET /api/v1/resources/{id}`,
/// the metrics' route template, never the path), the server kind, the request id,
/// method and route, and the caller's `traceparent` as its parent.
#[cfg(feature = "otel")]
fn traced_request_span(request: &ServiceRequest, id: &RequestId) -> Span {
    let method = request.method().as_str();
    let route = Route::of(
        method,
        rules::find(method, actix_glue::router_path(request)),
    );
    let span = tracing::error_span!(
        "request",
        id = %id.as_str(),
        otel.name = %format_args!("{} {}", route.method, route.route),
        otel.kind = "server",
    );
    crate::telemetry::traces::start_request(
        &span,
        |name| request.headers().get(name)?.to_str().ok(),
        id.as_str(),
        route.method,
        route.route,
    );
    span
}

/// Inside the request span: refuses an oversized head, runs the route, echoes the
/// request id, and logs method, path (never the query, which may carry a lock token),
/// status and latency at debug.
///
/// # Errors
/// Only an error a middleware below returned instead of a response (handlers' errors
/// are responses); actix renders it, without the request id header.
pub async fn envelope(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let start = Instant::now();
    let id = req.extensions().get::<RequestId>().cloned();
    let broker = req.app_data::<Data<Registered>>().map(|r| r.0.clone());
    // The request's rule, found once: the auth gate checks it, the metrics label by it.
    let rule = rules::find(req.method().as_str(), actix_glue::router_path(&req));
    let http_metrics = req
        .app_data::<Data<Metrics>>()
        .map(|m| (m.clone(), Route::of(req.method().as_str(), rule)));
    // Who is calling, before anything else runs: 401, 403 or 429 refuse here.
    let (gate, known) = match check_head(&req) {
        Err(refusal) => (Err(refusal), None),
        Ok(()) => admit(&req, rule.unwrap_or(&rules::UNMATCHED), broker.as_ref()),
    };
    // The actor of what the request does, and of its refusal in the audit log: a caller
    // refused for its role or rate is still named.
    let actor = match known.as_ref().or(gate.as_ref().ok()) {
        Some(caller) if caller.is_authenticated() => Actor::Named {
            name: caller.name.clone(),
            role: role_name(caller.role),
        },
        _ => Actor::Anonymous,
    };
    let principal = gate
        .as_ref()
        .map_or_else(|_| Principal::anyone(), principal);
    let scope = Arc::new(RequestScope::new(cause(&req, id.as_ref(), actor)).acting_for(principal));
    req.extensions_mut().insert(scope.clone());
    let mut response = match gate {
        Err(refusal) => {
            if let ApiError::Auth(e) = &refusal
                && let Some((metrics, _)) = &http_metrics
            {
                metrics.record_auth_refusal(e.code());
            }
            req.error_response(refusal)
        }
        Ok(caller) => {
            // Handlers read the caller from here (ownership, the audit log).
            req.extensions_mut().insert(caller);
            match refusal_while_failing(&req, broker.as_ref()) {
                Some(refusal) => req.error_response(refusal),
                None => match next.call(req).await {
                    Ok(response) => response.map_into_boxed_body(),
                    Err(e) => {
                        let status = e.as_response_error().status_code().as_u16();
                        tracing::debug!(status, micros = micros(start), "request failed: {e}");
                        if let Some((metrics, route)) = &http_metrics {
                            metrics.record_request(*route, status, start.elapsed());
                        }
                        return Err(e);
                    }
                },
            }
        }
    };
    // Acknowledged means committed: whatever the route saw or did must be durable.
    if let Some(broker) = &broker
        && let Err(unavailable) = broker.durable(scope.seen()).await
    {
        let request = response.request().clone();
        response = ServiceResponse::new(
            request,
            actix_web::ResponseError::error_response(&ApiError::Unavailable(unavailable)),
        );
    }
    if let Some(id) = id {
        response.headers_mut().insert(REQUEST_ID, id.0);
    }
    if let Some((metrics, route)) = &http_metrics {
        metrics.record_request(*route, response.status().as_u16(), start.elapsed());
    }
    let request = response.request();
    tracing::debug!(
        method = %request.method(),
        path = request.path(),
        status = response.status().as_u16(),
        micros = micros(start),
        "request"
    );
    audit_answer(&response, &scope, broker.as_ref());
    Ok(response)
}

/// A role's name, shared: naming the actor of a request allocates nothing.
fn role_name(role: Role) -> Arc<str> {
    static NAMES: LazyLock<[Arc<str>; 4]> =
        LazyLock::new(|| Role::ALL.map(|r| Arc::from(r.as_str())));
    let index = Role::ALL.iter().position(|r| *r == role).unwrap_or(0);
    NAMES[index].clone()
}

/// The auth gate: the route's rule, the request's credentials, [`Auth::admit`]. With
/// auth off (no `--auth-config`) everyone is [`Caller::open`], at the cost of one check.
/// A caller refused for its role or its rate is known: it comes back beside the refusal,
/// for the audit log.
fn admit(
    req: &ServiceRequest,
    rule: &Rule,
    broker: Option<&BrokerHandle>,
) -> (Result<Caller, ApiError>, Option<Caller>) {
    let Some(auth) = req.app_data::<Data<Auth>>().filter(|a| a.is_enabled()) else {
        return (Ok(Caller::open()), None);
    };
    let credentials = match actix_glue::credentials(req.headers()) {
        Ok(credentials) => credentials,
        Err(e) => return (Err(e.into()), None),
    };
    let client = actix_glue::client_ip(req).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let now = broker.map_or(Timestamp::EPOCH, BrokerHandle::now);
    match auth.admit(rule, &credentials, client, now) {
        Ok(caller) => (Ok(caller), None),
        Err(e @ (AuthError::Forbidden { .. } | AuthError::RateLimited { .. })) => {
            // Authentication succeeded (or admit would have said so): asking again
            // names the caller, and counts nothing (only failures are counted).
            (
                Err(e.into()),
                auth.authenticate(&credentials, client, now).ok(),
            )
        }
        Err(e) => (Err(e.into()), None),
    }
}

// The audit log's hook (issue 11). Kept apart from the rest of `envelope`, which calls
// it once with the final answer: accepted changes are recorded from the change stream
// (`audit::AuditLog` observes the publisher); refusals, and accepted requests that
// changed nothing, are recorded here.

/// Records a POST, PUT, PATCH or DELETE that its events do not record: one answered
/// 4xx or 5xx (`success: false`, with the error's `code`), or one accepted that changed
/// nothing (an idempotent replay, a reload that found nothing new). The actor is the
/// request's cause (whatever authentication set). Queues the entry only: never waits
/// for a commit or a file.
fn audit_answer(
    response: &ServiceResponse<BoxBody>,
    scope: &RequestScope,
    broker: Option<&crate::runtime::BrokerHandle>,
) {
    let status = response.status();
    let request = response.request();
    let method = request.method();
    let refused = status.is_client_error() || status.is_server_error();
    if !matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) || (!refused && scope.changed())
    {
        return;
    }
    let (Some(audit), Some(broker)) = (request.app_data::<Data<AuditLog>>(), broker) else {
        return;
    };
    let pattern = request.match_pattern();
    // Read from the path by the pattern: a middleware that answers before routing (an
    // idempotent replay) leaves `match_info` empty.
    let param = |name: &str| {
        pattern
            .as_deref()
            .and_then(|p| path_param(p, request.path(), name))
    };
    let resource = param("{id}").and_then(|id| id.parse().ok());
    let reservation = param("{rid}").and_then(|rid| rid.parse().ok());
    audit.answered(audit::Entry::answered(
        broker.now(),
        scope.cause().clone(),
        operation(method, pattern.as_deref()),
        resource.map(crate::domain::ResourceId::new),
        reservation,
        audit::Answer {
            method: method.to_string(),
            route: pattern.unwrap_or_else(|| request.path().to_owned()),
            status: status.as_u16(),
            code: response
                .response()
                .extensions()
                .get::<ErrorCode>()
                .map(|c| c.0),
        },
        !refused,
    ));
}

/// The segment of `path` where `pattern` has `name` (`{id}`): the routes' patterns are
/// plain segments, so they align with the path's.
fn path_param<'a>(pattern: &str, path: &'a str, name: &str) -> Option<&'a str> {
    let at = pattern.split('/').position(|segment| segment == name)?;
    path.split('/').nth(at)
}

/// The audit name of the operation a route pattern serves (under either prefix): the
/// rule table's (`POST /api/v1/resources/{id}/lock` is `lock`), so the audit log and
/// the auth gate name an operation alike. `request` for anything else (no route, or a
/// method the route does not serve).
pub fn operation(method: &Method, pattern: Option<&str>) -> &'static str {
    pattern
        .and_then(|p| rules::find(method.as_str(), p))
        .map_or("request", |rule| rule.operation)
}

/// Who the broker calls of `caller` act for: with auth off everyone may do everything
/// and owns nothing (1.0); with auth on, a key or JWT owns what it makes, admins
/// override ownership, and the key's caps apply.
fn principal(caller: &Caller) -> Principal {
    if caller.via == Via::Open {
        return Principal::anyone();
    }
    Principal {
        name: caller.is_authenticated().then(|| caller.name.clone()),
        overrides: caller.role == Role::Admin,
        caps: OwnerCaps {
            max_locks: caller.caps.max_locks,
            max_pending: caller.caps.max_pending_reservations,
        },
    }
}

/// Who is asking, for the changes the request makes: the caller the gate admitted
/// (anonymous without auth), the request id, the peer's address and its user agent.
fn cause(req: &ServiceRequest, id: Option<&RequestId>, actor: Actor) -> Arc<Cause> {
    Arc::new(Cause {
        actor,
        request_id: id.map(|id| Arc::from(id.as_str())),
        client_ip: req.peer_addr().map(|a| a.ip()),
        user_agent: req
            .headers()
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| Arc::from(&ua[..ua.len().min(MAX_USER_AGENT_BYTES)])),
    })
}

/// The longest user agent kept for a change's cause (longer ones are cut).
const MAX_USER_AGENT_BYTES: usize = 256;

/// While commits fail, a request that would reach the broker is refused before it runs:
/// its answer could not be acknowledged, and the changes it made would pile up behind
/// the failing commit. The probes (and the explorer) still answer.
fn refusal_while_failing(req: &ServiceRequest, broker: Option<&BrokerHandle>) -> Option<ApiError> {
    let failure = broker?.store_failure()?;
    let path = req.path();
    let exempt = matches!(path, "/health" | "/readiness" | "/metrics")
        || path.starts_with("/docs")
        || path.ends_with("/openapi.json");
    (!exempt).then(|| ApiError::Unavailable(crate::runtime::Unavailable::StoreFailing(failure)))
}

fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// The limits on the request head (see the module doc).
fn check_head(req: &ServiceRequest) -> Result<(), ApiError> {
    let length = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if length > MAX_URI_BYTES {
        return Err(ApiError::UriTooLong {
            length,
            limit: MAX_URI_BYTES,
        });
    }
    let headers = req.headers();
    if headers.len() > MAX_HEADERS {
        return Err(ApiError::HeadersTooLarge {
            what: format!(
                "{} header lines, over the limit of {MAX_HEADERS}",
                headers.len()
            ),
            header: None,
            limit: MAX_HEADERS,
        });
    }
    let mut section = 0;
    for (name, value) in headers.iter() {
        let size = name.as_str().len() + value.len();
        if size > MAX_HEADER_BYTES {
            return Err(ApiError::HeadersTooLarge {
                what: format!(
                    "the {name} header is {size} bytes, over the limit of {MAX_HEADER_BYTES}"
                ),
                header: Some(name.as_str().to_owned()),
                limit: MAX_HEADER_BYTES,
            });
        }
        section += size + 4;
    }
    if section > MAX_HEADER_SECTION_BYTES {
        return Err(ApiError::HeadersTooLarge {
            what: format!(
                "the headers are {section} bytes together, over the limit of {MAX_HEADER_SECTION_BYTES}"
            ),
            header: None,
            limit: MAX_HEADER_SECTION_BYTES,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every change a rule names is a type the audit endpoint can filter on.
    #[test]
    fn every_write_operation_of_the_rule_table_is_a_queryable_audit_type() {
        for (pattern, rule) in rules::patterns() {
            if rule.is_write() {
                assert!(
                    audit::TYPES.contains(&rule.operation),
                    "{} {pattern}: `{}` is not in audit::TYPES",
                    rule.method.as_str(),
                    rule.operation
                );
            }
        }
    }

    #[test]
    fn refused_operations_are_named_from_their_route_under_either_prefix() {
        for (method, pattern, expected) in [
            (Method::POST, "/api/v1/resources/{id}/lock", "lock"),
            (
                Method::POST,
                "/rentabot/api/v1.0/resources/{id}/lock",
                "lock",
            ),
            (Method::POST, "/api/v1/resources/lock", "lock_matching"),
            (Method::POST, "/api/v1/resources/{id}/unlock", "unlock"),
            (Method::DELETE, "/api/v1/resources/{id}", "delete_resource"),
            (Method::PATCH, "/api/v1/resources/{id}", "update_resource"),
            (
                Method::DELETE,
                "/api/v1/reservations/{rid}",
                "cancel_reservation",
            ),
            (Method::POST, "/api/v1/admin/reload", "reload"),
            (Method::DELETE, "/api/v1/resources/{id}/lock", "request"),
        ] {
            assert_eq!(
                operation(&method, Some(pattern)),
                expected,
                "{method} {pattern}"
            );
            assert!(
                audit::TYPES.contains(&expected),
                "{expected} is a queryable type"
            );
        }
        assert_eq!(operation(&Method::POST, None), "request", "no route");
        let pattern = "/api/v1/reservations/{rid}/claim";
        assert_eq!(
            path_param(pattern, "/api/v1/reservations/res_1/claim", "{rid}"),
            Some("res_1")
        );
        assert_eq!(
            path_param(pattern, "/api/v1/reservations/res_1/claim", "{id}"),
            None
        );
    }

    #[test]
    fn request_ids_are_kept_when_short_and_plain() {
        for (id, why) in [
            ("3f2c1a9e-0b7d-4c55-9a61-2b8f0e6d4c11", "a UUID"),
            ("01HF8Z5K3Q9Y7W6V5T4S3R2P1N", "a ULID"),
            (
                "Root=1-5759e988-bd862e3fe1be46a994272793",
                "an AWS trace id",
            ),
            ("job/4711:step.2@ci+x", "the allowed punctuation"),
        ] {
            assert!(is_valid_request_id(id.as_bytes()), "{why}");
        }
        let long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
        for (id, why) in [
            ("", "empty"),
            (long.as_str(), "too long"),
            ("a b", "a space"),
            ("a\nINFO forged", "a newline"),
            ("a;b", "other punctuation"),
            ("é", "not ASCII"),
        ] {
            assert!(!is_valid_request_id(id.as_bytes()), "{why}");
        }
    }
}
