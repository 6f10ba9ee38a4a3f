//! The resource endpoints: the 1.0 list, get, lock (by id or by criteria), unlock and
//! extend, plus all-or-nothing locks of several resources and batch unlock.
//!
//! Handlers are thin: read the request (`params`), make one broker call, render (`dto`).
//! The rules live in `domain::broker`.

use actix_web::http::header;
use actix_web::web::{self, Data, Payload};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::Value;

use super::admin;
use super::dto::{
    ErrorBody, ExpiredList, ExpiredView, ExtendResponse, LockResponse, MessageResponse,
    MultiLockResponse, ResourceEnvelope, ResourceListPieces, ResourcePageList, ResourceView,
    UnlockBatchResponse,
};
use super::error::ApiError;
use super::idempotency::Retain;
use super::params::{self, Body, Query};
use super::{maintenance, only, query};
use crate::domain::{Criteria, EXPIRY_HISTORY, Group, Selector};
use crate::runtime::BrokerHandle;

/// Resources per piece of the streamed 1.0 list: about 32 KiB, what actix buffers for a
/// connection before it stops asking the stream for more.
const LIST_PIECE: usize = 64;

/// Registers the routes under the current scope. Fixed paths come before `{id}` paths:
/// actix answers 405 from the first resource whose path matches, whatever its methods.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(the_list())
        .service(only("/resources/lock", web::post().to(lock_by_criteria)))
        .service(only(
            "/resources/unlock-batch",
            web::post().to(unlock_batch),
        ))
        .service(only("/resources/expired", web::get().to(expired_locks)))
        // One scope for the id routes: actix matches `{id}` once, then short static
        // suffixes, instead of a pattern per route (measurably cheaper per request).
        .service(
            web::scope("/resources/{id}")
                .service(the_resource())
                .service(only("/lock", web::post().to(lock_resource)))
                .service(only("/unlock", web::post().to(unlock_resource)))
                .service(only("/extend", web::post().to(extend_lock)))
                .service(only(
                    "/unavailable",
                    web::post().to(maintenance::mark_unavailable),
                ))
                .service(only(
                    "/available",
                    web::post().to(maintenance::mark_available),
                ))
                .service(only(
                    "/force-unlock",
                    web::post().to(maintenance::force_unlock),
                )),
        );
}

/// `/resources`: the list, and creation (`api/admin.rs`); other methods get a JSON 405.
fn the_list() -> actix_web::Resource {
    web::resource("/resources")
        .route(web::get().to(list_resources))
        .route(web::post().to(admin::create_resource))
        .default_service(web::to(super::method_not_allowed))
}

/// `/resources/{id}` itself: read, and change or delete (`api/admin.rs`).
fn the_resource() -> actix_web::Resource {
    web::resource("")
        .route(web::get().to(get_resource))
        .route(web::patch().to(admin::update_resource))
        .route(web::delete().to(admin::delete_resource))
        .default_service(web::to(super::method_not_allowed))
}

/// Every resource, in id order: the 1.0 list, when no query parameter below is given.
/// With any of them, one page of the matching resources (`total`, `page` and `limit` in
/// the body, RFC 8288 `Link` header with first, prev, next and last pages); an unknown
/// parameter beside them is a 400. `tag` and `expr` together: both must hold.
#[utoipa::path(get, path = "/api/v1/resources", tag = "resources",
    params(
        ("locked" = Option<bool>, Query, description = "Only locked (true) or only free (false) resources"),
        ("available" = Option<bool>, Query, description = "Only resources in service (true) or out of it (false)"),
        ("unavailable" = Option<bool>, Query, description = "Only resources out of service: in maintenance or retiring (true)"),
        ("tag" = Option<Vec<String>>, Query, description = "Required tag; repeat it or separate with commas; alias `tags`"),
        ("expr" = Option<String>, Query, description = "Label expression, e.g. `linux && !flaky`"),
        ("name" = Option<String>, Query, description = "Substring of the name, ignoring case"),
        ("sort" = Option<String>, Query, description = "id (default), name or lock-expires-at (free resources last)"),
        ("order" = Option<String>, Query, description = "asc (default) or desc"),
        ("page" = Option<u64>, Query, description = "1-based page, default 1"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 1000, default 100"),
    ),
    responses(
        (status = 200, description = "All resources (no parameter), or one page of the matches", body = ResourcePageList),
        (status = 400, description = "An unknown, repeated or invalid parameter (named in `parameter`)", body = ErrorBody),
    ))]
pub async fn list_resources(
    broker: Data<BrokerHandle>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
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
        let mut pieces = ResourceListPieces::new(resources, now, warning, LIST_PIECE);
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
                .map(|r| ResourceView::new(r, now, warning))
                .collect(),
            total: page.total,
            page: filters.page.number,
            limit: filters.page.limit,
        }))
}

/// The latest auto-expired locks, newest first: whose they were and when they ran out.
/// The broker remembers the last 1000; `?limit=` (1 to 1000, default 100) shows fewer.
#[utoipa::path(get, path = "/api/v1/resources/expired", tag = "resources",
    params(("limit" = Option<u32>, Query, description = "At most this many, 1 to 1000 (default 100)")),
    responses(
        (status = 200, body = ExpiredList),
        (status = 400, description = "A bad limit", body = ErrorBody),
    ))]
pub async fn expired_locks(
    broker: Data<BrokerHandle>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = Query::parse(&req)?;
    let limit = params::query_number(&query, "limit", 1..=EXPIRY_HISTORY)?.unwrap_or(100);
    let expired = broker.expired_locks(limit);
    Ok(HttpResponse::Ok().json(ExpiredList {
        expired: expired.iter().map(ExpiredView::from).collect(),
        capacity: EXPIRY_HISTORY,
    }))
}

/// One resource.
#[utoipa::path(get, path = "/api/v1/resources/{id}", tag = "resources",
    params(("id" = u32, Path, description = "Resource id")),
    responses(
        (status = 200, body = ResourceEnvelope),
        (status = 400, description = "The id is not a positive integer", body = ErrorBody),
        (status = 404, description = "No such resource", body = ErrorBody),
    ))]
pub async fn get_resource(
    broker: Data<BrokerHandle>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let resource = broker.resource(params::resource_id(&id)?)?;
    Ok(HttpResponse::Ok().json(ResourceEnvelope {
        resource: ResourceView::current(&resource, &broker),
    }))
}

/// Locks a resource by id. The optional JSON body `{"ttl": seconds}` sets the lock's
/// lifetime (default 3600, at most the resource's `max-lock-duration`).
#[utoipa::path(post, path = "/api/v1/resources/{id}/lock", tag = "resources",
    params(("id" = u32, Path, description = "Resource id")),
    request_body(content = Option<LockRequestDoc>, description = "Optional lock lifetime"),
    responses(
        (status = 200, description = "Locked", body = LockResponse),
        (status = 400, description = "Bad TTL, or TTL above max-lock-duration", body = ErrorBody),
        (status = 403, description = "Already locked", body = ErrorBody),
        (status = 404, description = "No such resource", body = ErrorBody),
        (status = 413, description = "Body over 256 KiB", body = ErrorBody),
    ))]
pub async fn lock_resource(
    broker: Data<BrokerHandle>,
    id: web::Path<String>,
    body: Payload,
) -> Result<HttpResponse, ApiError> {
    let id = params::resource_id(&id)?;
    let terms = params::lock_terms(&params::read_body(body).await?)?;
    let ttl = terms.ttl;
    let grant = broker.lock(id, terms)?;
    // An Idempotency-Key retry must find this lock's answer for as long as it lives.
    Ok(Retain(ttl.as_duration())
        .on(HttpResponse::Ok().json(LockResponse::new(grant, broker.policy().expiry_warning))))
}

/// Locks the first free resource matching the criteria. Precedence: `id`, then `name`,
/// then `tag` (repeatable; a resource must carry every tag; lowest id wins) or `expr` (a
/// label expression). With `quantity=N`, or a body `{"groups": [...]}`, locks several
/// resources at once, all or none, and answers with every token.
#[utoipa::path(post, path = "/api/v1/resources/lock", tag = "resources",
    params(
        ("id" = Option<u32>, Query, description = "Resource id"),
        ("name" = Option<String>, Query, description = "Resource name"),
        ("tag" = Option<Vec<String>>, Query, description = "Required tag; repeat for several"),
        ("expr" = Option<String>, Query, description = "Label expression, e.g. `linux && (x86 || arm) && !flaky`"),
        ("quantity" = Option<u32>, Query, description = "Lock this many matching resources, all or none"),
    ),
    request_body(content = Option<LockRequestDoc>, description = "Optional lock lifetime, and groups"),
    responses(
        (status = 200, description = "Locked (one resource, the 1.0 body; several, the multi-lock body)", body = LockResponse),
        (status = 400, description = "No criterion, a bad TTL, quantity or expression, or more than could ever be served", body = ErrorBody),
        (status = 403, description = "Every match is locked, or not enough are free now (nothing locked)", body = ErrorBody),
        (status = 404, description = "Nothing matches", body = ErrorBody),
        (status = 413, description = "Body over 256 KiB", body = ErrorBody),
    ))]
pub async fn lock_by_criteria(
    broker: Data<BrokerHandle>,
    req: HttpRequest,
    body: Payload,
) -> Result<HttpResponse, ApiError> {
    let query = Query::parse(&req)?;
    let body = Body::parse(&params::read_body(body).await?, params::LOCK_BODY_EXAMPLE)?;
    let terms = body.lock_terms()?;
    let ttl = terms.ttl;
    let groups = if body.has("groups") {
        if has_criterion(&query) {
            return Err(ApiError::bad_request(
                "invalid_body",
                "give the criteria either in the query (id, name, tag, expr) or as groups in the body, not both",
            ));
        }
        body.groups()?
    } else if let Some(quantity) = quantity(&query)? {
        let criteria = match selector(&query)? {
            Selector::Matching(criteria) => criteria,
            Selector::Id(_) | Selector::Name(_) => {
                return Err(ApiError::bad_request(
                    "invalid_quantity",
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
    request_body(content = UnlockBatchDoc, description = "The tokens to release"),
    responses(
        (status = 200, description = "All unlocked", body = UnlockBatchResponse),
        (status = 400, description = "Not a list of tokens", body = ErrorBody),
        (status = 403, description = "Some tokens hold no lock: nothing was unlocked; `errors` lists them by index", body = ErrorBody),
        (status = 413, description = "Body over 256 KiB", body = ErrorBody),
    ))]
pub async fn unlock_batch(
    broker: Data<BrokerHandle>,
    body: Payload,
) -> Result<HttpResponse, ApiError> {
    let body = Body::parse(
        &params::read_body(body).await?,
        r#"{"lock_tokens": ["6f1c..."]}"#,
    )?;
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
        ("id" = u32, Path, description = "Resource id"),
        ("lock-token" = Option<String>, Query, description = "The token the lock returned"),
        ("X-Lock-Token" = Option<String>, Header, description = "Alternative to ?lock-token="),
    ),
    responses(
        (status = 200, description = "Unlocked", body = MessageResponse),
        (status = 403, description = "Not locked, or wrong/missing token", body = ErrorBody),
        (status = 404, description = "No such resource", body = ErrorBody),
    ))]
pub async fn unlock_resource(
    broker: Data<BrokerHandle>,
    id: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = params::resource_id(&id)?;
    let query = Query::parse(&req)?;
    broker.unlock(id, params::lock_token(&req, &query).as_deref())?;
    Ok(HttpResponse::Ok().json(MessageResponse {
        message: "Resource unlocked",
    }))
}

/// Moves a lock's expiry to now + `additional-ttl` seconds (not old expiry + it), as long
/// as the lock, counted from its acquisition, stays within `max-lock-duration`.
#[utoipa::path(post, path = "/api/v1/resources/{id}/extend", tag = "resources",
    params(
        ("id" = u32, Path, description = "Resource id"),
        ("lock-token" = Option<String>, Query, description = "The token the lock returned"),
        ("X-Lock-Token" = Option<String>, Header, description = "Alternative to ?lock-token="),
        ("additional-ttl" = u64, Query, description = "Seconds from now"),
    ),
    responses(
        (status = 200, description = "Extended", body = ExtendResponse),
        (status = 400, description = "Bad or missing additional-ttl, or the lock would exceed max-lock-duration", body = ErrorBody),
        (status = 403, description = "Not locked, or wrong/missing token", body = ErrorBody),
        (status = 404, description = "No such resource", body = ErrorBody),
    ))]
pub async fn extend_lock(
    broker: Data<BrokerHandle>,
    id: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = params::resource_id(&id)?;
    let query = Query::parse(&req)?;
    let additional = query.get("additional-ttl").ok_or_else(|| {
        ApiError::bad_request(
            "missing_parameter",
            "additional-ttl is required: the lock's new lifetime in seconds from now",
        )
    })?;
    let additional = params::ttl_from_query("additional-ttl", additional)?;
    let lease = broker.extend(id, params::lock_token(&req, &query).as_deref(), additional)?;
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
            return Err(ApiError::bad_request(
                "invalid_query",
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

/// The optional lock request body.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documentation only: the body is parsed leniently by params::lock_ttl
pub struct LockRequestDoc {
    /// Lock lifetime in seconds, 1 to max-lock-duration. Default 3600.
    ttl: Option<u64>,
    /// On `/resources/lock` only: several groups locked at once, all or none, e.g.
    /// `[{"tags": ["dut","arm"], "quantity": 2}, {"expr": "psu", "quantity": 1}]`.
    groups: Option<Vec<super::reservations::GroupDoc>>,
}

/// The batch unlock body.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documentation only: parsed by params::token_list
pub struct UnlockBatchDoc {
    /// The lock tokens to release (at most 1000).
    lock_tokens: Vec<String>,
}
