//! The query parameters of the two lists (`GET /resources`, `GET /reservations`):
//! filters, sorting, pagination, and the RFC 8288 `Link` header of a page.
//!
//! Without any of these parameters a list is exactly the 1.0 one, which ignored query
//! strings: so a query string naming none of them is ignored too. Once one is given,
//! every parameter must be known (a typo such as `sortt=name` is a 400 listing the known
//! ones, rather than a silently unfiltered list), single-valued ones may appear once, and
//! every value is checked. Each refusal is a 400 whose body names the `parameter`.

use actix_web::HttpRequest;
use serde_json::json;

use super::error::ApiError;
use super::params::{self, Query};
use crate::domain::{
    Criteria, MAX_PAGE_LIMIT, Page, Priority, ReservationQuery, ReservationStatus, ResourceQuery,
    ResourceSort, SortOrder, descriptor,
};

/// The parameters of `GET /resources`, in the order the error message lists them.
pub const RESOURCE_PARAMETERS: [&str; 11] = [
    "locked",
    "available",
    "unavailable",
    "tag",
    "tags",
    "expr",
    "name",
    "sort",
    "order",
    "page",
    "limit",
];

/// The parameters of `GET /reservations`.
pub const RESERVATION_PARAMETERS: [&str; 6] =
    ["status", "tag", "tags", "priority", "page", "limit"];

/// Parameters that may be repeated (their values add up).
const REPEATABLE: [&str; 3] = ["tag", "tags", "status"];

/// `GET /resources`'s query, or `None` when the query string names none of its
/// parameters (the 1.0 list).
///
/// `tag` (alias `tags`; repeatable, each value may be a comma-separated list) and
/// `expr` combine with AND: a resource must carry every tag and satisfy the expression.
///
/// # Errors
/// A 400 naming the parameter: unknown, repeated, or with an invalid value.
pub fn resource_query(query: &Query) -> Result<Option<ResourceQuery>, ApiError> {
    if !check_parameters(query, &RESOURCE_PARAMETERS)? {
        return Ok(None);
    }
    let available = params::query_flag(query, "available")?;
    let unavailable = params::query_flag(query, "unavailable")?;
    let in_service = match (available, unavailable.map(|u| !u)) {
        (Some(a), Some(u)) if a != u => {
            return Err(ApiError::bad_request(
                "conflicting_parameters",
                format!(
                    "available={} and unavailable={} contradict each other: give one of them",
                    available.unwrap_or_default(),
                    unavailable.unwrap_or_default()
                ),
            )
            .with("parameter", "unavailable"));
        }
        (a, u) => a.or(u),
    };
    let mut criteria = Vec::new();
    let tags = tag_list(query)?;
    if !tags.is_empty() {
        criteria.push(Criteria::Tags(tags));
    }
    if let Some(expr) = query.get("expr") {
        criteria.push(Criteria::Expr(
            params::parse_expr("expr", expr).map_err(|e| e.with("parameter", "expr"))?,
        ));
    }
    Ok(Some(ResourceQuery {
        locked: params::query_flag(query, "locked")?,
        in_service,
        criteria,
        name: query.get("name").map(str::to_owned),
        sort: params::query_choice(
            query,
            "sort",
            &[
                ("id", ResourceSort::Id),
                ("name", ResourceSort::Name),
                ("lock-expires-at", ResourceSort::LockExpiresAt),
            ],
        )?
        .unwrap_or_default(),
        order: params::query_choice(
            query,
            "order",
            &[("asc", SortOrder::Asc), ("desc", SortOrder::Desc)],
        )?
        .unwrap_or_default(),
        page: page(query)?,
    }))
}

/// `GET /reservations`'s query, or `None` when the query string names none of its
/// parameters (the list as it always was).
///
/// # Errors
/// A 400 naming the parameter: unknown, repeated, or with an invalid value.
pub fn reservation_query(query: &Query) -> Result<Option<ReservationQuery>, ApiError> {
    if !check_parameters(query, &RESERVATION_PARAMETERS)? {
        return Ok(None);
    }
    let mut statuses = Vec::new();
    for value in query.all("status") {
        for raw in value.split(',').map(str::trim) {
            let status = [
                ReservationStatus::Pending,
                ReservationStatus::Fulfilled,
                ReservationStatus::Claimed,
            ]
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| {
                params::invalid_parameter(
                    "status",
                    raw,
                    "pending, fulfilled or claimed (repeat it, or separate them with commas)",
                )
            })?;
            if !statuses.contains(&status) {
                statuses.push(status);
            }
        }
    }
    let priority = match query.get("priority") {
        None => None,
        Some(raw) => Some(
            raw.trim()
                .parse()
                .ok()
                .and_then(|n| Priority::new(n).ok())
                .ok_or_else(|| {
                    params::invalid_parameter("priority", raw, "a whole number from 1 to 10")
                })?,
        ),
    };
    Ok(Some(ReservationQuery {
        statuses,
        tags: tag_list(query)?,
        priority,
        page: page(query)?,
    }))
}

/// Whether the query names any of `known`; if it does, refuses unknown and repeated
/// parameters.
fn check_parameters(query: &Query, known: &[&str]) -> Result<bool, ApiError> {
    if !query.keys().any(|k| known.contains(&k)) {
        return Ok(false);
    }
    let mut seen: Vec<&str> = Vec::new();
    for key in query.keys() {
        if !known.contains(&key) {
            return Err(ApiError::bad_request(
                "unknown_parameter",
                format!(
                    "unknown query parameter {key:?}: this list takes {}",
                    known.join(", ")
                ),
            )
            .with("parameter", key)
            .with("known", json!(known)));
        }
        if seen.contains(&key) && !REPEATABLE.contains(&key) {
            return Err(ApiError::bad_request(
                "repeated_parameter",
                format!("{key} may be given only once"),
            )
            .with("parameter", key));
        }
        seen.push(key);
    }
    Ok(true)
}

/// Every tag of every `tag` and `tags` value (each may be a comma-separated list),
/// without repeats.
fn tag_list(query: &Query) -> Result<Vec<String>, ApiError> {
    let mut tags: Vec<String> = Vec::new();
    for parameter in ["tag", "tags"] {
        for value in query.all(parameter) {
            let parsed = descriptor::parse_tags(value).0;
            if parsed.is_empty() {
                return Err(params::invalid_parameter(
                    parameter,
                    value,
                    "a tag, or several separated by commas",
                ));
            }
            for tag in parsed {
                if !tags.contains(&tag) {
                    tags.push(tag);
                }
            }
        }
    }
    Ok(tags)
}

/// `page` (1-based, default 1) and `limit` (1 to [`MAX_PAGE_LIMIT`], default 100).
fn page(query: &Query) -> Result<Page, ApiError> {
    let mut page = Page::default();
    if let Some(number) = params::query_number(query, "page", 1..=usize::MAX)? {
        page.number = number as u64;
    }
    if let Some(limit) = params::query_number(query, "limit", 1..=MAX_PAGE_LIMIT)? {
        page.limit = limit;
    }
    Ok(page)
}

/// The RFC 8288 `Link` header of a page: `first`, `prev` (unless on the first page),
/// `next` (unless on the last or past it) and `last`, each the request's own path and
/// query with `page` changed. The path is the one requested, so a client on the legacy
/// prefix stays on it.
pub fn page_links(req: &HttpRequest, query: &Query, page: Page, total: usize) -> String {
    let last = (total as u64).div_ceil(page.limit as u64).max(1);
    let link = |number: u64, rel: &str| {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        let mut placed = false;
        for (key, value) in query.pairs() {
            if key == "page" {
                if !placed {
                    pairs.push(("page", number.to_string()));
                    placed = true;
                }
            } else {
                pairs.push((key, value.clone()));
            }
        }
        if !placed {
            pairs.push(("page", number.to_string()));
        }
        let encoded = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        format!("<{}?{encoded}>; rel=\"{rel}\"", req.path())
    };
    let mut links = vec![link(1, "first")];
    if page.number > 1 {
        // From past the end, the previous page worth reading is the last.
        links.push(link((page.number - 1).min(last), "prev"));
    }
    if page.number < last {
        links.push(link(page.number + 1, "next"));
    }
    links.push(link(last, "last"));
    links.join(", ")
}
