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
    let available = boolean(query, "available")?;
    let unavailable = boolean(query, "unavailable")?;
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
        locked: boolean(query, "locked")?,
        in_service,
        criteria,
        name: query.get("name").map(str::to_owned),
        sort: choice(
            query,
            "sort",
            &[
                ("id", ResourceSort::Id),
                ("name", ResourceSort::Name),
                ("lock-expires-at", ResourceSort::LockExpiresAt),
            ],
        )?
        .unwrap_or_default(),
        order: choice(
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
                invalid(
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
                .ok_or_else(|| invalid("priority", raw, "a whole number from 1 to 10"))?,
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

/// A 400 for `parameter`'s value `given`, saying what it accepts.
fn invalid(parameter: &str, given: &str, accepted: &str) -> ApiError {
    ApiError::bad_request(
        "invalid_parameter",
        format!("{parameter} must be {accepted}, got {given:?}"),
    )
    .with("parameter", parameter.to_owned())
    .with("value", given)
}

/// `true` or `false`.
fn boolean(query: &Query, parameter: &str) -> Result<Option<bool>, ApiError> {
    choice(query, parameter, &[("true", true), ("false", false)])
}

/// One of a fixed set of words.
fn choice<T: Copy>(
    query: &Query,
    parameter: &str,
    words: &[(&str, T)],
) -> Result<Option<T>, ApiError> {
    let Some(raw) = query.get(parameter) else {
        return Ok(None);
    };
    match words.iter().find(|(word, _)| *word == raw) {
        Some(&(_, value)) => Ok(Some(value)),
        None => {
            let names: Vec<&str> = words.iter().map(|(w, _)| *w).collect();
            let accepted = match names.split_last() {
                Some((last, [])) => (*last).to_owned(),
                Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
                None => String::new(),
            };
            Err(invalid(parameter, raw, &accepted))
        }
    }
}

/// Every tag of every `tag` and `tags` value (each may be a comma-separated list),
/// without repeats.
fn tag_list(query: &Query) -> Result<Vec<String>, ApiError> {
    let mut tags: Vec<String> = Vec::new();
    for parameter in ["tag", "tags"] {
        for value in query.all(parameter) {
            let parsed = descriptor::parse_tags(value).0;
            if parsed.is_empty() {
                return Err(invalid(
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
    if let Some(raw) = query.get("page") {
        page.number = digits(raw)
            .and_then(|d| d.parse().ok())
            .filter(|&n| n >= 1)
            .ok_or_else(|| invalid("page", raw, "a whole number from 1"))?;
    }
    if let Some(raw) = query.get("limit") {
        page.limit = digits(raw)
            .and_then(|d| d.parse().ok())
            .filter(|n| (1..=MAX_PAGE_LIMIT).contains(n))
            .ok_or_else(|| {
                invalid(
                    "limit",
                    raw,
                    &format!("a whole number from 1 to {MAX_PAGE_LIMIT}"),
                )
            })?;
    }
    Ok(page)
}

/// `raw` if it is decimal digits only (no sign, no spaces).
fn digits(raw: &str) -> Option<&str> {
    (!raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit())).then_some(raw)
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
