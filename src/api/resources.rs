//! The resource endpoints: the 1.0 list, get, lock (by id or by criteria), unlock and
//! extend, plus all-or-nothing locks of several resources and batch unlock.
//!
//! Handlers are thin: read the request (`params`), make one broker call, render (`dto`).
//! The rules live in `domain::broker`.

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::web::{self, Payload};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::Value;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::{IntoParams, ToSchema};

use super::admin;
use super::broker::Broker;
use super::dto::{
    ErrorBody, ExpiredList, ExpiredView, ExtendResponse, LockResponse, MessageResponse,
    MultiLockResponse, ResourceEnvelope, ResourceListBody, ResourceListPieces, ResourcePageList,
    ResourceView, UnlockBatchResponse,
};
use super::error::ApiError;
use super::idempotency::Retain;
use super::params::{
    self, Body, Fields, GroupRequest, Known, Query, param, required_param, schema,
};
use super::{endpoint, maintenance, query};
use crate::domain::{Criteria, EXPIRY_HISTORY, Group, Selector};

/// Resources per piece of the streamed 1.0 list: about 32 KiB, what actix buffers for a
/// connection before it stops asking the stream for more.
const LIST_PIECE: usize = 64;

/// Registers the routes under the current scope. Fixed paths come before `{id}` paths:
/// actix answers 405 from the first resource whose path matches, whatever its methods.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        // `/resources`: the list, and creation (`api/admin.rs`).
        endpoint("/resources")
            .get(list_resources)
            .post(admin::create_resource),
    )
    .service(endpoint("/resources/lock").post(lock_by_criteria))
    .service(endpoint("/resources/unlock-batch").post(unlock_batch))
    .service(endpoint("/resources/expired").get(expired_locks))
    // One scope for the id routes: actix matches `{id}` once, then short static
    // suffixes, instead of a pattern per route (measurably cheaper per request).
    .service(
        web::scope("/resources/{id}")
            // The resource itself: read, and change or delete (`api/admin.rs`).
            .service(
                endpoint("")
                    .get(get_resource)
                    .patch(admin::update_resource)
                    .delete(admin::delete_resource),
            )
            .service(endpoint("/lock").post(lock_resource))
            .service(endpoint("/unlock").post(unlock_resource))
            .service(endpoint("/extend").post(extend_lock))
            .service(endpoint("/unavailable").post(maintenance::mark_unavailable))
            .service(endpoint("/available").post(maintenance::mark_available))
            .service(endpoint("/force-unlock").post(maintenance::force_unlock)),
    );
}

/// Every resource, in id order: the 1.0 list, when no query parameter below is given.
/// With any of them, one page of the matching resources (`total`, `page` and `limit` in
/// the body, RFC 8288 `Link` header with first, prev, next and last pages); an unknown
/// parameter beside them is a 400. `tag` and `expr` together: both must hold.
#[utoipa::path(get, path = "/api/v1/resources", tag = "resources",
    params(query::ResourceListQuery),
    responses(
        (status = 200, description = "All resources, the 1.0 list (no list parameter), or one page of the matches (`total`, `page`, `limit`)", body = ResourceListBody),
        (status = 400, description = "An unknown, repeated or invalid parameter (named in `parameter`)", body = ErrorBody),
    ))]
pub async fn list_resources(broker: Broker, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    // 1.0 ignored query strings: one that cannot even be read names no parameter.
    let filters = match Query::parse(&req) {
        Ok(query) => query::resource_query(&query)?.map(|q| (query, q)),
        Err(_) => None,
    };
    let warning = broker.policy().expiry_warning;
    let Some((query, filters)) = filters else {
        // A snapshot (a pointer per 1 024 resources, under the lock), serialised after
        // the lock is released and streamed in pieces as the client reads: every slow
        // reader of a 100 000-resource list costs one piece, not the whole body.
        let resources = broker.resources();
        let now = broker.now();
        let viewer = broker.principal().clone();
        let mut pieces = ResourceListPieces::new(resources, now, warning, viewer, LIST_PIECE);
        let first = pieces.next().expect("at least the opening piece");
        let json = (header::CONTENT_TYPE, "application/json");
        if pieces.is_done() {
            return Ok(HttpResponse::Ok().insert_header(json).body(first));
        }
        let rest = futures_util::stream::iter(std::iter::once(first).chain(pieces))
            .map(Ok::<_, std::convert::Infallible>);
        return Ok(HttpResponse::Ok().insert_header(json).streaming(rest));
    };
    let page = broker.query_resources(&filters);
    let now = broker.now();
    Ok(HttpResponse::Ok()
        .insert_header((
            header::LINK,
            query::page_links(&req, &query, filters.page, page.total),
        ))
        .json(ResourcePageList {
            resources: page
                .items
                .iter()
                .map(|r| ResourceView::shown_to(r, now, warning, broker.principal()))
                .collect(),
            total: page.total,
            page: filters.page.number,
            limit: filters.page.limit,
        }))
}

/// The latest auto-expired locks, newest first: whose they were and when they ran out.
/// The broker remembers the last 1000; `?limit=` (1 to 1000, default 100) shows fewer.
#[utoipa::path(get, path = "/api/v1/resources/expired", tag = "resources",
    params(ExpiredQuery),
    responses(
        (status = 200, body = ExpiredList),
        (status = 400, description = "A bad limit", body = ErrorBody),
    ))]
pub async fn expired_locks(broker: Broker, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let query = Query::parse(&req)?;
    EXPIRED_QUERY.check_repeats(&query)?;
    let limit = params::query_number(&query, "limit", 1..=EXPIRY_HISTORY)?.unwrap_or(100);
    let expired = broker.expired_locks(limit);
    Ok(HttpResponse::Ok().json(ExpiredList {
        expired: expired.iter().map(ExpiredView::from).collect(),
        capacity: EXPIRY_HISTORY,
    }))
}

/// One resource.
#[utoipa::path(get, path = "/api/v1/resources/{id}", tag = "resources",
    params(("id" = u32, Path, description = "Resource id: digits, 0 to 4294967295 (an unknown one: 404)", minimum = 0, maximum = 4294967295.0)),
    responses(
        (status = 200, body = ResourceEnvelope),
        (status = 400, description = "The id is not a whole number", body = ErrorBody),
        (status = 404, description = "No such resource", body = ErrorBody),
    ))]
pub async fn get_resource(broker: Broker, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let resource = broker.resource(params::resource_id(&id)?)?;
    Ok(HttpResponse::Ok().json(ResourceEnvelope {
        resource: ResourceView::current(&resource, &broker),
    }))
}

/// Locks a resource by id. The optional JSON body `{"ttl": seconds}` (or `?ttl=`) sets
/// the lock's lifetime (default 3600, at most the resource's `max-lock-duration`).
#[utoipa::path(post, path = "/api/v1/resources/{id}/lock", tag = "resources",
    params(("id" = u32, Path, description = "Resource id: digits, 0 to 4294967295 (an unknown one: 404)", minimum = 0, maximum = 4294967295.0), LockQuery),
    request_body(content = Option<params::LockRequest>, description = "Optional: lock lifetime, holder and note"),
    responses(
        (status = 200, description = "Locked", body = LockResponse),
        (status = 400, description = "An unknown field or parameter, a bad TTL, a TTL above max-lock-duration (`ttl_above_max`), or ttl in both query and body (`conflicting_parameters`)", body = ErrorBody),
        (status = 403, description = "Already locked, or held for a waiting reservation", body = ErrorBody),
        (status = 429, description = "With auth: over the key's `max_locks` (`too_many_locks`, Retry-After)", body = ErrorBody),
        (status = 404, description = "No such resource", body = ErrorBody),
        (status = 409, description = "Out of service, or the lock would cross a maintenance window", body = ErrorBody),
    ))]
pub async fn lock_resource(
    broker: Broker,
    id: web::Path<String>,
    req: HttpRequest,
    body: Payload,
) -> Result<HttpResponse, ApiError> {
    let id = params::resource_id(&id)?;
    let query = Query::strict(&req, &LOCK_QUERY)?;
    let body = Body::parse(&params::read_body(&req, body).await?, &params::LOCK_FIELDS)?;
    let terms = lock_terms(&query, &body)?;
    let ttl = terms.ttl;
    let grant = broker.lock(id, terms)?;
    // An Idempotency-Key retry must find this lock's answer for as long as it lives.
    Ok(Retain(ttl.as_duration())
        .on(HttpResponse::Ok().json(LockResponse::new(grant, broker.policy().expiry_warning))))
}

/// The lock terms of a body, with the TTL from `?ttl=` if the query gives it (1.0
/// ignored it, and granted an hour).
fn lock_terms(query: &Query, body: &Body) -> Result<crate::domain::LockTerms, ApiError> {
    let mut terms = body.lock_terms()?;
    if let Some(raw) = query.get("ttl") {
        if body.has("ttl") {
            return Err(params::conflict(
                "ttl",
                "ttl is given both in the query and in the body: give it once",
            ));
        }
        terms.ttl = params::ttl_from_query("ttl", raw)?;
    }
    Ok(terms)
}

/// Locks the first free resource matching the criteria. Precedence: `id`, then `name`,
/// then `tag` (repeatable; a resource must carry every tag; lowest id wins) or `expr` (a
/// label expression). With `quantity=N`, or a body `{"groups": [...]}`, locks several
/// resources at once, all or none, and answers with every token.
#[utoipa::path(post, path = "/api/v1/resources/lock", tag = "resources",
    params(LockMatchingQuery),
    request_body(content = Option<LockMatchingRequest>, description = "Optional: lock lifetime, holder, note, and groups"),
    responses(
        (status = 200, description = "Locked (one resource, the 1.0 body; several, the multi-lock body)", body = LockResponse),
        (status = 400, description = "No criterion (`no_criterion`), criteria that exclude each other (`conflicting_parameters`), a bad TTL, quantity or expression (`invalid_expr`), a TTL above max-lock-duration, or more than could ever be served (`unsatisfiable`)", body = ErrorBody),
        (status = 403, description = "Every match is locked, or not enough are free now (nothing locked)", body = ErrorBody),
        (status = 429, description = "With auth: over the key's `max_locks` (`too_many_locks`, Retry-After)", body = ErrorBody),
        (status = 404, description = "Nothing matches", body = ErrorBody),
        (status = 409, description = "Every match is out of service, or the lock would cross a maintenance window", body = ErrorBody),
    ))]
pub async fn lock_by_criteria(
    broker: Broker,
    req: HttpRequest,
    body: Payload,
) -> Result<HttpResponse, ApiError> {
    let query = Query::strict(&req, &LOCK_MATCHING_QUERY)?;
    let body = Body::parse(&params::read_body(&req, body).await?, &LOCK_MATCHING_FIELDS)?;
    let terms = lock_terms(&query, &body)?;
    let ttl = terms.ttl;
    let groups = if body.has("groups") {
        if has_criterion(&query) {
            return Err(params::conflict(
                "groups",
                "give the criteria either in the query (id, name, tag, expr) or as groups in the body, not both",
            ));
        }
        body.groups()?
    } else if let Some(quantity) = quantity(&query)? {
        let criteria = match selector(&query)? {
            Selector::Matching(criteria) => criteria,
            Selector::Id(_) | Selector::Name(_) => {
                return Err(params::conflict(
                    "quantity",
                    "quantity goes with tag or expr: id and name name one resource",
                ));
            }
        };
        Some(vec![Group { criteria, quantity }])
    } else {
        None
    };
    match groups {
        Some(groups) => {
            let grants = broker.lock_groups(&groups, terms)?;
            Ok(
                Retain(ttl.as_duration()).on(HttpResponse::Ok().json(MultiLockResponse::new(
                    grants,
                    broker.policy().expiry_warning,
                ))),
            )
        }
        None => {
            let grant = broker.lock_matching(&selector(&query)?, terms)?;
            Ok(Retain(ttl.as_duration())
                .on(HttpResponse::Ok()
                    .json(LockResponse::new(grant, broker.policy().expiry_warning))))
        }
    }
}

/// Releases several locks at once, all or none: `{"lock_tokens": ["...", ...]}`.
#[utoipa::path(post, path = "/api/v1/resources/unlock-batch", tag = "resources",
    request_body(content = UnlockBatchRequest, description = "The tokens to release"),
    responses(
        (status = 200, description = "All unlocked", body = UnlockBatchResponse),
        (status = 400, description = "Not a list of tokens, or an unknown field or parameter", body = ErrorBody),
        (status = 403, description = "Some tokens hold no lock: nothing was unlocked; `errors` lists them by index. With auth, a token of another caller's lock (`not_owner`)", body = ErrorBody),
    ))]
pub async fn unlock_batch(
    broker: Broker,
    req: HttpRequest,
    body: Payload,
) -> Result<HttpResponse, ApiError> {
    Query::strict(&req, &Known::none())?;
    let body = Body::parse(&params::read_body(&req, body).await?, &UNLOCK_BATCH_FIELDS)?;
    let tokens = params::token_list(&body, "lock_tokens")?;
    let released = broker.unlock_batch(&tokens)?;
    Ok(HttpResponse::Ok().json(UnlockBatchResponse {
        message: "Resources unlocked",
        resource_ids: released.iter().map(|id| id.get()).collect(),
    }))
}

/// Releases a lock. The token comes as `?lock-token=` or in the `X-Lock-Token` header.
#[utoipa::path(post, path = "/api/v1/resources/{id}/unlock", tag = "resources",
    params(
        ("id" = u32, Path, description = "Resource id: digits, 0 to 4294967295 (an unknown one: 404)", minimum = 0, maximum = 4294967295.0),
        UnlockQuery,
        ("X-Lock-Token" = Option<String>, Header, description = "Alternative to ?lock-token= (not both, unless they agree)"),
    ),
    responses(
        (status = 200, description = "Unlocked", body = MessageResponse),
        (status = 400, description = "A bad id, an unknown or repeated parameter, or two different tokens", body = ErrorBody),
        (status = 403, description = "Not locked, or a wrong (`invalid_lock_token`) or missing (`missing_lock_token`) token; with auth, another caller's lock (`not_owner`: operators force-unlock)", body = ErrorBody),
        (status = 404, description = "No such resource", body = ErrorBody),
    ))]
pub async fn unlock_resource(
    broker: Broker,
    id: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = params::resource_id(&id)?;
    let query = Query::strict(&req, &UNLOCK_QUERY)?;
    broker.unlock(id, params::lock_token(&req, &query)?.as_deref())?;
    Ok(HttpResponse::Ok().json(MessageResponse {
        message: "Resource unlocked",
    }))
}

/// Moves a lock's expiry to now + `additional-ttl` seconds (not old expiry + it), as long
/// as the lock, counted from its acquisition, stays within `max-lock-duration`.
#[utoipa::path(post, path = "/api/v1/resources/{id}/extend", tag = "resources",
    params(
        ("id" = u32, Path, description = "Resource id: digits, 0 to 4294967295 (an unknown one: 404)", minimum = 0, maximum = 4294967295.0),
        ExtendQuery,
        ("X-Lock-Token" = Option<String>, Header, description = "Alternative to ?lock-token= (not both, unless they agree)"),
    ),
    responses(
        (status = 200, description = "Extended", body = ExtendResponse),
        (status = 400, description = "Bad or missing additional-ttl, an unknown or repeated parameter, or the lock would exceed max-lock-duration (`total_above_max`)", body = ErrorBody),
        (status = 403, description = "Not locked, or a wrong or missing token; with auth, another caller's lock (`not_owner`)", body = ErrorBody),
        (status = 404, description = "No such resource", body = ErrorBody),
        (status = 409, description = "The lock would cross a maintenance window", body = ErrorBody),
    ))]
pub async fn extend_lock(
    broker: Broker,
    id: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = params::resource_id(&id)?;
    let query = Query::strict(&req, &EXTEND_QUERY)?;
    let additional = query.get("additional-ttl").ok_or_else(|| {
        ApiError::bad_request(
            "missing_parameter",
            "additional-ttl is required: the lock's new lifetime in seconds from now",
        )
    })?;
    let additional = params::ttl_from_query("additional-ttl", additional)?;
    let lease = broker.extend(id, params::lock_token(&req, &query)?.as_deref(), additional)?;
    Ok(HttpResponse::Ok().json(ExtendResponse::new(lease.acquired_at, lease.expires_at)))
}

/// The 1.0 criteria: `id`, else `name`, else every `tag` (each may also be a
/// comma-separated list), or, new, `expr`. Empty values count as absent, as in 1.0.
fn selector(query: &Query) -> Result<Selector, ApiError> {
    if let Some(id) = query.get("id").filter(|v| !v.is_empty()) {
        return Ok(Selector::Id(params::resource_id(id)?));
    }
    if let Some(name) = query.get("name").filter(|v| !v.is_empty()) {
        return Ok(Selector::Name(name.to_owned()));
    }
    let mut tags: Vec<String> = Vec::new();
    for value in query.all("tag") {
        params::add_tags("tag", &mut tags, value)?;
    }
    let expr = query.get("expr").filter(|v| !v.trim().is_empty());
    match (tags.is_empty(), expr) {
        (false, None) => return Ok(Selector::Matching(Criteria::Tags(tags))),
        (true, Some(expr)) => {
            return Ok(Selector::Matching(Criteria::Expr(params::parse_expr(
                "expr", expr,
            )?)));
        }
        (false, Some(_)) => {
            return Err(params::conflict(
                "expr",
                "give tag or expr, not both: write the tags into the expression (a && b)",
            ));
        }
        (true, None) => {}
    }
    let given: Vec<&str> = query.keys().collect();
    Err(ApiError::bad_request("no_criterion", "Bad Request").with(
        "hint",
        format!(
            "give one of the query parameters id, name, tag (repeatable) or expr; got {}",
            if given.is_empty() {
                "none".to_owned()
            } else {
                given.join(", ")
            }
        ),
    ))
}

fn has_criterion(query: &Query) -> bool {
    ["id", "name", "tag", "expr"]
        .iter()
        .any(|k| query.get(k).is_some_and(|v| !v.is_empty()))
}

/// `?quantity=N`, from 1 to [`params::MAX_QUANTITY`].
fn quantity(query: &Query) -> Result<Option<u32>, ApiError> {
    query
        .get("quantity")
        .map(|raw| params::quantity("quantity", &Value::String(raw.to_owned())))
        .transpose()
}

/// `POST /resources/{id}/lock`.
pub struct LockQuery;

impl IntoParams for LockQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![param(
            "ttl",
            "Lock lifetime in seconds, instead of the body's `ttl` (not both)",
            schema::ttl_query(),
        )]
    }
}

static LOCK_QUERY: LazyLock<Known> = LazyLock::new(Known::of::<LockQuery>);

/// `POST /resources/lock`.
pub struct LockMatchingQuery;

impl IntoParams for LockMatchingQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            param(
                "id",
                "Resource id (first in precedence; empty means absent)",
                schema::resource_id(),
            ),
            param(
                "name",
                "Resource name (second; empty means absent)",
                schema::string(),
            ),
            param(
                "tag",
                "Required tag; repeat it for several, or separate them with commas",
                schema::repeated(schema::string()),
            ),
            param(
                "expr",
                "Label expression, e.g. `linux && (x86 || arm) && !flaky` (not with tag; one that does not parse: 400 `invalid_expr`)",
                schema::string(),
            ),
            param(
                "quantity",
                "Lock this many matching resources, all or none (with tag or expr)",
                schema::quantity_query(),
            ),
            param(
                "ttl",
                "Lock lifetime in seconds, instead of the body's `ttl` (not both)",
                schema::ttl_query(),
            ),
        ]
    }
}

static LOCK_MATCHING_QUERY: LazyLock<Known> = LazyLock::new(Known::of::<LockMatchingQuery>);

/// The optional body of `POST /resources/lock`: the lock body, and groups.
#[derive(ToSchema)]
#[allow(dead_code)] // documentation: read field by field by `params::Body`
pub struct LockMatchingRequest {
    /// Lock lifetime in seconds, 1 to max-lock-duration; default 3600. Or `?ttl=`.
    #[schema(schema_with = schema::ttl_or_null)]
    ttl: Option<u64>,
    /// Who holds the locks, at most 256 characters.
    #[schema(schema_with = schema::holder)]
    holder: Option<String>,
    /// Why, at most 1024 characters.
    #[schema(schema_with = schema::note)]
    note: Option<String>,
    /// Several groups locked at once, all or none, instead of query criteria, e.g.
    /// `[{"tags": ["dut","arm"], "quantity": 2}, {"expr": "psu", "quantity": 1}]`.
    #[schema(schema_with = schema::groups_or_null)]
    groups: Option<Vec<GroupRequest>>,
}

static LOCK_MATCHING_FIELDS: LazyLock<Fields> = LazyLock::new(|| {
    Fields::of::<LockMatchingRequest>(
        r#"{"ttl": 600, "groups": [{"tags": ["dut", "arm"], "quantity": 2}]}"#,
    )
});

/// `POST /resources/{id}/unlock`.
pub struct UnlockQuery;

impl IntoParams for UnlockQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![lock_token_param()]
    }
}

fn lock_token_param() -> Parameter {
    param(
        "lock-token",
        "The token the lock returned (or the X-Lock-Token header; both only if they agree)",
        schema::string(),
    )
}

static UNLOCK_QUERY: LazyLock<Known> = LazyLock::new(Known::of::<UnlockQuery>);

/// `POST /resources/{id}/extend`.
pub struct ExtendQuery;

impl IntoParams for ExtendQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            lock_token_param(),
            required_param(
                "additional-ttl",
                "The lock's new lifetime, in seconds from now",
                schema::ttl_query(),
            ),
        ]
    }
}

static EXTEND_QUERY: LazyLock<Known> = LazyLock::new(Known::of::<ExtendQuery>);

/// `GET /resources/expired`.
pub struct ExpiredQuery;

impl IntoParams for ExpiredQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![param(
            "limit",
            "At most this many, 1 to 1000 (default 100)",
            schema::integer(1, EXPIRY_HISTORY as u64),
        )]
    }
}

static EXPIRED_QUERY: LazyLock<Known> = LazyLock::new(Known::of::<ExpiredQuery>);

/// The batch unlock body.
#[derive(ToSchema)]
#[allow(dead_code)] // documentation: parsed by params::token_list
pub struct UnlockBatchRequest {
    /// The lock tokens to release (1 to 1000).
    #[schema(schema_with = schema::token_list)]
    lock_tokens: Vec<String>,
}

static UNLOCK_BATCH_FIELDS: LazyLock<Fields> =
    LazyLock::new(|| Fields::of::<UnlockBatchRequest>(r#"{"lock_tokens": ["6f1c..."]}"#));
