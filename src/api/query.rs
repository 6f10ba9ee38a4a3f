//! The query parameters of the two lists (`GET /resources`, `GET /reservations`):
//! filters, sorting, pagination, and the RFC 8288 `Link` header of a page.
//!
//! Without any of these parameters a list is exactly the 1.0 one, which ignored query
//! strings: so a query string naming none of them is ignored too. Once one is given,
//! every parameter must be known (a typo such as `sortt=name` is a 400 listing the known
//! ones, rather than a silently unfiltered list), single-valued ones may appear once, and
//! every value is checked. Each refusal is a 400 whose body names the `parameter`.

use std::sync::LazyLock;

use actix_web::HttpRequest;
use utoipa::IntoParams;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

use super::error::ApiError;
use super::params::{self, Known, Query, param, schema};
use crate::domain::{
    Criteria, MAX_PAGE_LIMIT, Page, Priority, ReservationQuery, ReservationStatus, ResourceQuery,
    ResourceSort, SortOrder, descriptor,
};

/// The highest page number: far past the end of any list, and exact as a JSON number.
pub const MAX_PAGE: usize = u32::MAX as usize;

/// The parameters of `GET /resources`, in the order the error message lists them. Lists
/// (`tag`, `tags`) may be repeated; their values add up.
pub struct ResourceListQuery;

impl IntoParams for ResourceListQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            param(
                "locked",
                "Only locked (true) or only free (false) resources",
                schema::boolean(),
            ),
            param(
                "available",
                "Only resources in service (true) or out of it (false)",
                schema::boolean(),
            ),
            param(
                "unavailable",
                "Only resources out of service: in maintenance or retiring (true); contradicting `available` is a 400 `conflicting_parameters`",
                schema::boolean(),
            ),
            param(
                "tag",
                "Required tag; repeat it or separate with commas",
                schema::tag_query(),
            ),
            param("tags", "Alias of `tag`", schema::tag_query()),
            param(
                "expr",
                "Label expression, e.g. `linux && !flaky` (one that does not parse: 400 `invalid_expr`)",
                schema::non_empty(),
            ),
            param(
                "name",
                "Substring of the name, ignoring case",
                schema::string(),
            ),
            param(
                "sort",
                "id (default), name or lock-expires-at (free resources last)",
                schema::words(&["id", "name", "lock-expires-at"]),
            ),
            param(
                "order",
                "asc (default) or desc",
                schema::words(&["asc", "desc"]),
            ),
            page_param(),
            limit_param(),
        ]
    }
}

/// The parameters of `GET /reservations`.
pub struct ReservationListQuery;

impl IntoParams for ReservationListQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            param(
                "status",
                "pending, fulfilled or claimed; repeat it or separate with commas",
                status_list_schema(),
            ),
            param(
                "tag",
                "A tag some group asks for (an expression group: a tag it requires)",
                schema::tag_query(),
            ),
            param("tags", "Alias of `tag`", schema::tag_query()),
            param(
                "priority",
                "The priority it was created with, 1 to 10",
                schema::integer(1, 10),
            ),
            page_param(),
            limit_param(),
        ]
    }
}

fn page_param() -> Parameter {
    param(
        "page",
        "1-based page, default 1",
        schema::integer(1, MAX_PAGE as u64),
    )
}

fn limit_param() -> Parameter {
    param(
        "limit",
        "Page size, 1 to 1000, default 100",
        schema::integer(1, MAX_PAGE_LIMIT as u64),
    )
}

static RESOURCE_PARAMETERS: LazyLock<Known> = LazyLock::new(Known::of::<ResourceListQuery>);
static RESERVATION_PARAMETERS: LazyLock<Known> = LazyLock::new(Known::of::<ReservationListQuery>);

/// Statuses, each value a comma-separated list of them.
fn status_list_schema() -> Schema {
    let ws = schema::WHITE_SPACE;
    let status = "(pending|fulfilled|claimed)";
    schema::repeated(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(format!(
                "^[{ws}]*{status}[{ws}]*(,[{ws}]*{status}[{ws}]*)*$"
            )))
            .build()
            .into(),
    )
}

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
            return Err(params::conflict(
                "unavailable",
                format!(
                    "available={} and unavailable={} contradict each other: give one of them",
                    available.unwrap_or_default(),
                    unavailable.unwrap_or_default()
                ),
            ));
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
            raw.parse()
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
fn check_parameters(query: &Query, known: &Known) -> Result<bool, ApiError> {
    if !known.is_named_in(query) {
        return Ok(false);
    }
    known.check(query)?;
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
    if let Some(number) = params::query_number(query, "page", 1..=MAX_PAGE)? {
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
