//! `GET /api/v1/audit`: the audit log, newest first, filtered and paged (README § Audit
//! log). With `--auth-config`, for the admin role only (the rule table); without, open
//! like every other route.

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::web::Data;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::{IntoParams, ToSchema};

use super::dto::ErrorBody;
use super::endpoint;
use super::error::ApiError;
use super::params::{self, Known, Query, param, schema};
use super::query::{self, MAX_PAGE};
use crate::audit::{self, AuditLog, DEFAULT_LIMIT, Filter, MAX_LIMIT};
use crate::domain::{Page, Timestamp};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/audit").get(audit_log));
}

/// The parameters of `GET /audit`.
pub struct AuditQuery;

impl IntoParams for AuditQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            param(
                "from",
                "Entries at or after this time (RFC 3339, e.g. 2026-01-15T10:00:00Z)",
                schema::timestamp(),
            ),
            param(
                "to",
                "Entries before this time (RFC 3339)",
                schema::timestamp(),
            ),
            param(
                "actor",
                "Whose: an API key's name, `system` or `anonymous`",
                schema::non_empty(),
            ),
            param(
                "resource",
                "About this resource id",
                schema::integer(0, u64::from(u32::MAX)),
            ),
            param(
                "type",
                "This event type (`locked`, `expired`, …) or refused operation (`lock`, `unlock`, …)",
                schema::words(audit::TYPES),
            ),
            param(
                "page",
                "1-based page, default 1",
                schema::integer(1, MAX_PAGE as u64),
            ),
            param(
                "limit",
                "Page size, 1 to 1000, default 50",
                schema::integer(1, MAX_LIMIT as u64),
            ),
        ]
    }
}

static AUDIT_PARAMETERS: LazyLock<Known> = LazyLock::new(Known::of::<AuditQuery>);

/// One page of the audit log.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    #[schema(value_type = Vec<AuditRecord>)]
    pub entries: Vec<Value>,
    /// Every match, on every page.
    pub total: usize,
    /// This page, 1-based.
    pub page: u64,
    /// Most entries a page holds.
    pub limit: usize,
}

/// One audit record (also one line of the `--audit-log` file).
#[derive(ToSchema)]
#[allow(dead_code)] // documentation: rendered by audit::Entry::record
pub struct AuditRecord {
    /// When (RFC 3339, milliseconds, UTC).
    timestamp: String,
    /// The event's type (`locked`, `expired`, `reservation_fulfilled`, …) for a change;
    /// the operation (`lock`, `unlock`, …, `request` for an unknown route) for a refusal.
    event_type: String,
    resource_id: Option<u32>,
    reservation_id: Option<String>,
    /// The API key's name; `system` for what the broker did on its own (expiries,
    /// fulfilments, maintenance windows); `anonymous` without authentication.
    actor: String,
    /// The key's role; null for the system and anonymous callers.
    role: Option<String>,
    client_ip: Option<String>,
    user_agent: Option<String>,
    request_id: Option<String>,
    /// `false` for a refused request.
    success: bool,
    /// The event's fields; for a refusal `status`, `code`, `method` and `route`.
    #[schema(value_type = Object)]
    details: Value,
}

/// The audit log, newest first: every committed change (one entry per event) and every
/// refused POST, PATCH or DELETE. Unknown, repeated or invalid parameters are a 400.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, body = AuditPage),
        (status = 400, description = "An unknown, repeated or invalid parameter", body = ErrorBody),
    ))]
pub async fn audit_log(req: HttpRequest, log: Data<AuditLog>) -> Result<HttpResponse, ApiError> {
    let query = Query::strict(&req, &AUDIT_PARAMETERS)?;
    let audit_query = audit_query(&query)?;
    let page = Page {
        number: audit_query.page as u64,
        limit: audit_query.limit,
    };
    // A scan of up to the whole retention: off the worker thread.
    let result = web::block(move || {
        let found = log.query(&audit_query);
        let entries: Vec<Value> = found.entries.iter().map(audit::Entry::record).collect();
        (entries, found.total)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the audit query failed: {e}")))?;
    let (entries, total) = result;
    Ok(HttpResponse::Ok()
        .insert_header((header::LINK, query::page_links(&req, &query, page, total)))
        .json(AuditPage {
            entries,
            total,
            page: page.number,
            limit: page.limit,
        }))
}

/// The query's filters and page.
///
/// # Errors
/// A 400 naming the parameter whose value is invalid.
fn audit_query(query: &Query) -> Result<audit::Query, ApiError> {
    let time = |name: &str| -> Result<Option<Timestamp>, ApiError> {
        query
            .get(name)
            .map(|raw| {
                // Any valid time filters: one before 1970 is before every entry.
                chrono::DateTime::parse_from_rfc3339(raw.trim())
                    .ok()
                    .map(|t| {
                        Timestamp::from_millis(u64::try_from(t.timestamp_millis()).unwrap_or(0))
                    })
                    .ok_or_else(|| {
                        params::invalid_parameter(
                            name,
                            raw,
                            "an RFC 3339 time such as 2026-01-15T10:00:00Z",
                        )
                    })
            })
            .transpose()
    };
    let text = |name: &str| -> Result<Option<String>, ApiError> {
        match query.get(name) {
            Some(raw) if raw.trim().is_empty() => {
                Err(params::invalid_parameter(name, raw, "not blank"))
            }
            other => Ok(other.map(str::to_owned)),
        }
    };
    let resource = query
        .get("resource")
        .map(|raw| {
            params::resource_id(raw)
                .map_err(|_| params::invalid_parameter("resource", raw, "a resource id (digits)"))
        })
        .transpose()?;
    let event_type = text("type")?;
    if let Some(t) = &event_type
        && !audit::TYPES.contains(&t.as_str())
    {
        return Err(params::invalid_parameter(
            "type",
            t,
            "an event type or operation the audit log records (see the API document)",
        ));
    }
    Ok(audit::Query {
        filter: Filter {
            from: time("from")?,
            to: time("to")?,
            actor: text("actor")?,
            resource,
            event_type,
        },
        page: params::query_number(query, "page", 1..=MAX_PAGE)?.unwrap_or(1),
        limit: params::query_number(query, "limit", 1..=MAX_LIMIT)?.unwrap_or(DEFAULT_LIMIT),
    })
}
