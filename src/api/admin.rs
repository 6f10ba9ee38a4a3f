//! Resource administration without a restart: create (`POST /resources`), change
//! (`PATCH /resources/{id}`) and delete (`DELETE /resources/{id}`) resources, and re-read
//! the descriptor (`POST /admin/reload`; SIGHUP does the same, see `runtime/reload.rs`).
//! README § Administering resources shows them in use.
//!
//! Validation is the descriptor's (`domain::descriptor`: name rules, comma-separated
//! tags, the max-lock-duration range), and stricter where a typo would otherwise pass
//! silently: unknown fields are refused (a descriptor only warns), and so are
//! space-separated tags (which a descriptor reads as the pre-1.0 format).
//!
//! No authentication yet: these endpoints are as open as the rest of the API. API keys
//! and roles are a later issue.

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::web::{self, Data, Payload};
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::{IntoParams, ToSchema};

use super::broker::Broker;
use super::dto::{ErrorBody, ResourceEnvelope, ResourceView};
use super::endpoint;
use super::error::ApiError;
use super::params::{self, Body, Fields, Known, Query};
use crate::auth::{Auth, ReloadReport};
use crate::domain::{Resource, ResourcePatch, ResourceSpec, Ttl, descriptor};
use crate::runtime::BrokerHandle;
use crate::runtime::reload::{self, DescriptorSource, ReloadError, Reloaded};

/// Registers `POST /admin/reload`. The resource routes are registered with the other
/// resource routes (`resources::configure`), on the same paths.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/admin/reload").post(reload_descriptor));
}

/// The properties a resource is created with and that `PATCH` may change, as the
/// descriptor spells them: those [`ResourcePatchRequest`] documents.
static PROPERTIES: LazyLock<Fields> =
    LazyLock::new(|| Fields::of::<ResourcePatchRequest>(PATCH_EXAMPLE));

/// What a new resource may be given: `name` and the [`PROPERTIES`].
static CREATE_FIELDS: LazyLock<Fields> =
    LazyLock::new(|| Fields::of::<ResourceRequest>(CREATE_EXAMPLE));

const CREATE_EXAMPLE: &str = r#"{"name": "board-arm-03", "tags": ["board", "arm"]}"#;
const PATCH_EXAMPLE: &str = r#"{"tags": "board,arm,flaky"}"#;

/// Creates a resource from the descriptor's fields. It gets the next id (ids are never
/// reused) and may serve a waiting reservation at once.
#[utoipa::path(post, path = "/api/v1/resources", tag = "admin",
    request_body(content = ResourceRequest, description = "The new resource; only name is required"),
    responses(
        (status = 201, description = "Created; Location names it", body = ResourceEnvelope,
            headers(("Location" = String, description = "/api/v1/resources/{id}"))),
        (status = 400, description = "A missing, invalid or unknown field (the body's `field` names it)", body = ErrorBody),
        (status = 409, description = "A resource with this name exists", body = ErrorBody),
    ))]
pub async fn create_resource(
    broker: Broker,
    req: HttpRequest,
    body: Payload,
) -> Result<HttpResponse, ApiError> {
    Query::strict(&req, &Known::none())?;
    let body = Body::read(&params::read_body(&req, body).await?, CREATE_EXAMPLE)?;
    let spec = new_spec(&body)?;
    let resource = broker.add_resource(spec)?;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("{}/resources/{}", super::PREFIX, resource.id),
        ))
        .json(envelope(&broker, &resource)))
}

/// Changes a resource's `description`, `endpoint`, `tags` or `max-lock-duration`;
/// fields left out stay, `null` resets one to its default. A held lock is never broken:
/// a lower max-lock-duration binds later grants and extensions only. A tag change
/// re-indexes the resource and may serve waiting reservations; a waiting reservation
/// that no resource could ever serve any more ends (`unsatisfiable`).
#[utoipa::path(patch, path = "/api/v1/resources/{id}", tag = "admin",
    params(("id" = u32, Path, description = "Resource id: digits, 0 to 4294967295 (an unknown one: 404)", minimum = 0, maximum = 4294967295.0)),
    request_body(content = Option<ResourcePatchRequest>, description = "The properties to change"),
    responses(
        (status = 200, description = "Changed; `changed` lists what did", body = UpdatedResource),
        (status = 400, description = "An invalid, unknown or immutable field (name, id)", body = ErrorBody),
        (status = 404, description = "No such resource", body = ErrorBody),
    ))]
pub async fn update_resource(
    broker: Broker,
    id: web::Path<String>,
    req: HttpRequest,
    body: Payload,
) -> Result<HttpResponse, ApiError> {
    let id = params::resource_id(&id)?;
    Query::strict(&req, &Known::none())?;
    let body = Body::read(&params::read_body(&req, body).await?, PATCH_EXAMPLE)?;
    if let Some(field) = ["name", "id"]
        .iter()
        .find(|f| body.fields().contains_key(**f))
    {
        return Err(ApiError::bad_request(
            "immutable_field",
            format!(
                "{field} cannot be changed: delete the resource and create it anew, or change {}",
                PROPERTIES.names().collect::<Vec<_>>().join(", ")
            ),
        )
        .with("field", *field));
    }
    PROPERTIES.check("", body.fields())?;
    let (resource, changed) = broker.update_resource(id, patch(&body)?)?;
    let view = ResourceView::current(&resource, &broker);
    Ok(HttpResponse::Ok().json(UpdatedResource {
        resource: view,
        changed,
    }))
}

/// Deletes a resource. A locked one is refused (409) unless `force=true`, which breaks
/// the lock first (recorded as a force unlock, with `reason`): its holder's token then
/// unlocks nothing (404). A free resource held for a waiting reservation is released
/// from the hold. Answers 200 with the resource as it was when it went.
#[utoipa::path(delete, path = "/api/v1/resources/{id}", tag = "admin",
    params(("id" = u32, Path, description = "Resource id: digits, 0 to 4294967295 (an unknown one: 404)", minimum = 0, maximum = 4294967295.0), DeleteQuery),
    responses(
        (status = 200, description = "Deleted", body = DeletedResource),
        (status = 400, description = "force is not true or false, a reason with control characters, or an unknown or repeated parameter", body = ErrorBody),
        (status = 404, description = "No such resource", body = ErrorBody),
        (status = 409, description = "Locked, and force=true not given", body = ErrorBody),
    ))]
pub async fn delete_resource(
    broker: Broker,
    id: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = params::resource_id(&id)?;
    let query = Query::strict(&req, &DELETE_QUERY)?;
    let force = params::query_flag(&query, "force")?.unwrap_or(false);
    let reason = match query.get("reason") {
        Some(raw) => params::optional_text("reason", raw)?,
        None => None,
    }
    .unwrap_or("resource deleted");
    let resource = broker.remove_resource(id, force.then_some(reason))?;
    let view = ResourceView::current(&resource, &broker);
    Ok(HttpResponse::Ok().json(DeletedResource {
        message: "Resource deleted",
        resource: view,
    }))
}

/// Re-reads the descriptor the service was started with and merges it by name: new
/// resources appear (next ids), changed ones update, ones the file no longer names go
/// (at once if free; if locked they *retire*: lent to no one, gone when the lock ends).
/// Resources created through the API are left alone unless the file names them. Ids
/// stay stable and no held lock breaks. An unusable descriptor changes nothing.
#[utoipa::path(post, path = "/api/v1/admin/reload", tag = "admin",
    responses(
        (status = 200, description = "Reloaded: what changed", body = ReloadResponse),
        (status = 400, description = "The descriptor cannot be used (message names file, line, column); nothing changed", body = ErrorBody),
        (status = 409, description = "Started without a descriptor file", body = ErrorBody),
    ))]
pub async fn reload_descriptor(
    broker: Broker,
    source: Data<DescriptorSource>,
    auth: Option<Data<Auth>>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    Query::strict(&req, &Known::none())?;
    // The auth config first: a key rotation must not depend on the descriptor, and an
    // unusable auth file changes nothing at all.
    let auth_report = match auth
        .as_ref()
        .and_then(|a| Some((a, a.source()?.to_owned())))
    {
        Some((auth, path)) => {
            let auth = auth.get_ref().clone();
            let reloaded = web::block(move || auth.reload(&path))
                .await
                .map_err(|e| ApiError::Internal(format!("the auth reload did not finish: {e}")))?
                .map_err(|e| {
                    tracing::warn!("the auth config was not reloaded, the one in force stays: {e}");
                    ApiError::bad_request(
                        "invalid_auth_config",
                        format!("the auth config cannot be used, nothing was changed: {e}"),
                    )
                })?;
            tracing::info!("auth config reloaded: {reloaded}");
            Some(AuthReloaded::from(reloaded))
        }
        None => None,
    };
    let (handle, source) = (BrokerHandle::clone(&broker), source.get_ref().clone());
    // Reading the file is blocking IO: off the worker's event loop.
    let outcome = web::block(move || reload::reload(&handle, &source))
        .await
        .map_err(|e| {
            tracing::error!(error.cause_chain = ?e, "descriptor reload did not finish");
            ApiError::Internal(format!("the reload did not finish: {e}"))
        })?;
    reload::log_outcome(&outcome);
    match outcome {
        Ok(reloaded) => {
            let mut response = ReloadResponse::from(reloaded);
            response.auth = auth_report;
            Ok(HttpResponse::Ok().json(response))
        }
        Err(ReloadError::NoDescriptor) if auth_report.is_some() => {
            Ok(HttpResponse::Ok().json(ReloadResponse {
                message: "Auth config reloaded",
                descriptor: None,
                auth: auth_report,
                ..ReloadResponse::default()
            }))
        }
        Err(ReloadError::NoDescriptor) => Err(ApiError::NoDescriptor),
        Err(e @ ReloadError::Invalid { .. }) => {
            let (line, column, resource) = e.location();
            let ReloadError::Invalid { path, .. } = &e else {
                unreachable!("matched above")
            };
            let mut error = ApiError::bad_request(
                "invalid_descriptor",
                format!("the descriptor cannot be used, nothing was changed: {e}"),
            )
            .with("descriptor", path.display().to_string());
            for (key, value) in [("line", line), ("column", column)] {
                if let Some(value) = value {
                    error = error.with(key, value);
                }
            }
            if let Some(resource) = resource {
                error = error.with("resource", resource);
            }
            Err(error)
        }
    }
}

/// The spec of a new resource: `name`, and any of [`PROPERTIES`].
fn new_spec(body: &Body) -> Result<ResourceSpec, ApiError> {
    if body.fields().contains_key("id") {
        return Err(ApiError::bad_request(
            "immutable_field",
            "id is assigned by the broker (the next unused number): leave it out",
        )
        .with("field", "id"));
    }
    CREATE_FIELDS.check("", body.fields())?;
    let name = match body.get("name") {
        Some(Value::String(name)) => name,
        None => {
            return Err(ApiError::bad_request(
                "missing_field",
                format!("name is required: send a body such as {CREATE_EXAMPLE}"),
            )
            .with("field", "name"));
        }
        Some(other) => return Err(invalid_name(format!("name must be a string, got {other}"))),
    };
    descriptor::check_name(name).map_err(|problem| invalid_name(problem.to_owned()))?;
    if let Some(problem) = params::text_problem(name) {
        return Err(invalid_name(format!(
            "a resource name {problem}, got {name:?}"
        )));
    }
    let patch = patch(body)?;
    Ok(ResourceSpec {
        name: name.clone(),
        description: patch.description.unwrap_or_default(),
        endpoint: patch.endpoint.unwrap_or_default(),
        tags: patch.tags.unwrap_or_default(),
        max_lock_duration: patch.max_lock_duration.unwrap_or(Ttl::DEFAULT_MAX),
    })
}

/// The [`PROPERTIES`] present in `body`; `null` stands for the default (empty text, no
/// tags, 86400 s).
fn patch(body: &Body) -> Result<ResourcePatch, ApiError> {
    let fields = body.fields();
    let mut patch = ResourcePatch::default();
    if let Some(value) = fields.get("description") {
        patch.description = Some(text("description", value)?);
    }
    if let Some(value) = fields.get("endpoint") {
        patch.endpoint = Some(text("endpoint", value)?);
    }
    if let Some(value) = fields.get("tags") {
        patch.tags = Some(tags(value)?);
    }
    if let Some(value) = fields.get("max-lock-duration") {
        patch.max_lock_duration = Some(match value {
            Value::Null => Ttl::DEFAULT_MAX,
            value => params::ttl_from_json("max-lock-duration", value)
                .map_err(|e| e.with("field", "max-lock-duration"))?,
        });
    }
    Ok(patch)
}

fn text(field: &'static str, value: &Value) -> Result<String, ApiError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        other => Err(ApiError::bad_request(
            "invalid_field",
            format!("{field} must be a string, got {other}"),
        )
        .with("field", field)),
    }
}

/// Tags as a descriptor writes them (`"a,b"`) or as a list (`["a", "b"]`, each item may
/// itself be comma-separated); duplicates dropped, order kept. Space-separated tags are
/// refused: a descriptor reads them as the pre-1.0 format, which is a guess.
fn tags(value: &Value) -> Result<Vec<String>, ApiError> {
    use crate::domain::tags::{MAX_TAGS_PER_RESOURCE, check_tags};
    let invalid = |detail: String| {
        ApiError::bad_request(
            "invalid_tags",
            format!(
                "tags must be a comma-separated string such as \"board,arm\" or a list such as [\"board\", \"arm\"]: {detail}"
            ),
        )
        .with("field", "tags")
        .with("tags", value.clone())
    };
    let items: Vec<&str> = match value {
        Value::Null => Vec::new(),
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s.as_str()),
                other => Err(invalid(format!("item {i} is {other}, not a string"))),
            })
            .collect::<Result<_, _>>()?,
        other => return Err(invalid(format!("got {other}"))),
    };
    let mut tags: Vec<String> = Vec::new();
    for item in items {
        let (parsed, space_separated) = descriptor::parse_tags(item);
        if space_separated {
            return Err(invalid(format!(
                "{item:?} is space-separated; separate tags with commas"
            )));
        }
        for tag in parsed {
            if !tags.contains(&tag) {
                tags.push(tag);
            }
            // Refused as soon as over the limit, before the rest of the list is read.
            check_tags(&tags, MAX_TAGS_PER_RESOURCE, "a resource").map_err(&invalid)?;
        }
    }
    Ok(tags)
}

fn invalid_name(message: String) -> ApiError {
    ApiError::bad_request("invalid_name", message).with("field", "name")
}

fn envelope(broker: &BrokerHandle, resource: &Resource) -> ResourceEnvelope {
    ResourceEnvelope {
        resource: ResourceView::current(resource, broker),
    }
}

/// `PATCH /api/v1/resources/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UpdatedResource {
    pub resource: ResourceView,
    /// What changed (`description`, `endpoint`, `tags`, `max-lock-duration`); empty when
    /// the patch changed nothing.
    pub changed: Vec<&'static str>,
}

/// `DELETE /api/v1/resources/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeletedResource {
    /// Always "Resource deleted".
    pub message: &'static str,
    /// The resource as it was when it went; after a forced delete of a locked resource
    /// its `lock-details` say the lock was broken.
    pub resource: ResourceView,
}

/// `POST /api/v1/admin/reload`: what the reload did, by resource name.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct ReloadResponse {
    /// "Descriptor reloaded"; "Auth config reloaded" when only the auth config was
    /// (a service with `--auth-config` and no descriptor).
    pub message: &'static str,
    /// The descriptor read; `null` when there is none.
    pub descriptor: Option<String>,
    /// New names, given the next ids.
    pub added: Vec<String>,
    /// Changed properties; or no longer retiring; or created through the API and now the
    /// descriptor's.
    pub updated: Vec<String>,
    /// No longer named and free: gone.
    pub removed: Vec<String>,
    /// No longer named but locked: lent to no one, gone when the lock ends.
    pub retiring: Vec<String>,
    /// Named and exactly as the file says.
    pub unchanged: usize,
    /// Loaded, but probably mistakes (unknown keys, space-separated tags).
    pub warnings: Vec<String>,
    /// With `--auth-config`: the auth config, read again (key names, never keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthReloaded>,
}

/// What a reload changed in the auth config: key names only.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthReloaded {
    /// API keys configured now.
    pub keys: usize,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Keys whose secret, role, rate or caps changed.
    pub changed: Vec<String>,
    /// Whether JWTs are accepted.
    pub jwt: bool,
}

impl From<ReloadReport> for AuthReloaded {
    fn from(r: ReloadReport) -> Self {
        AuthReloaded {
            keys: r.keys,
            added: r.added,
            removed: r.removed,
            changed: r.changed,
            jwt: r.jwt,
        }
    }
}

impl From<Reloaded> for ReloadResponse {
    fn from(r: Reloaded) -> Self {
        ReloadResponse {
            message: "Descriptor reloaded",
            descriptor: Some(r.path.display().to_string()),
            added: r.report.added,
            updated: r.report.updated,
            removed: r.report.removed,
            retiring: r.report.retiring,
            unchanged: r.report.unchanged,
            warnings: r.warnings,
            auth: None,
        }
    }
}

/// The body of `POST /api/v1/resources`.
#[derive(ToSchema)]
#[allow(dead_code)] // documentation: the body is parsed field by field (`new_spec`)
pub struct ResourceRequest {
    /// Unique, with something visible, no control characters.
    #[schema(schema_with = params::schema::name)]
    name: String,
    #[schema(schema_with = text_or_null)]
    description: Option<String>,
    #[schema(schema_with = text_or_null)]
    endpoint: Option<String>,
    /// `"board,arm"` or `["board", "arm"]` (not space-separated).
    #[schema(schema_with = resource_tags)]
    tags: Option<Vec<String>>,
    /// Seconds, 1 to 100 years; default 86400.
    #[schema(rename = "max-lock-duration", schema_with = params::schema::ttl_or_null)]
    max_lock_duration: Option<u64>,
}

/// The body of `PATCH /api/v1/resources/{id}`: any of these; null resets to the default.
#[derive(ToSchema)]
#[allow(dead_code)] // documentation: the body is parsed field by field (`patch`)
pub struct ResourcePatchRequest {
    #[schema(schema_with = text_or_null)]
    description: Option<String>,
    #[schema(schema_with = text_or_null)]
    endpoint: Option<String>,
    /// `"board,arm"` or `["board", "arm"]` (not space-separated).
    #[schema(schema_with = resource_tags)]
    tags: Option<Vec<String>>,
    /// Seconds; applies to later grants and extensions.
    #[schema(rename = "max-lock-duration", schema_with = params::schema::ttl_or_null)]
    max_lock_duration: Option<u64>,
}

/// `DELETE /api/v1/resources/{id}`.
pub struct DeleteQuery;

impl IntoParams for DeleteQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            params::param(
                "force",
                "true: delete even if locked, breaking the lock",
                params::schema::boolean(),
            ),
            params::param(
                "reason",
                "Why the lock is broken, with force=true (no control characters)",
                delete_reason(),
            ),
        ]
    }
}

static DELETE_QUERY: LazyLock<Known> = LazyLock::new(Known::of::<DeleteQuery>);

fn text_or_null() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::Array(vec![
            Type::String,
            Type::Null,
        ]))
        .build()
        .into()
}

/// A reason in the query: blank (the default reason) or visible text.
fn delete_reason() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(params::schema::visible_or_blank()))
        .build()
        .into()
}

/// Tags as [`tags`] reads them: a string or a list of strings, none of them
/// space-separated without a comma, or null (no tags).
fn resource_tags() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
    let ws = params::schema::WHITE_SPACE;
    // A comma anywhere, or no white space between two other characters.
    let item = || {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(format!("^(.*,.*|[{ws}]*[^{ws}]*[{ws}]*)$")))
            .build()
    };
    OneOfBuilder::new()
        .item(item())
        .item(ArrayBuilder::new().items(item()).build())
        .item(ObjectBuilder::new().schema_type(Type::Null).build())
        .build()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(value: Value) -> Body {
        Body::read(&value.to_string().into(), "{}").unwrap()
    }

    #[test]
    fn a_new_spec_takes_the_descriptor_fields_and_defaults() {
        let spec = new_spec(&body(json!({
            "name": "board-9", "description": "Pi", "endpoint": "ssh://pi@x",
            "tags": ["board", "arm,linux", "board"], "max-lock-duration": 600
        })))
        .unwrap();
        assert_eq!(spec.name, "board-9");
        assert_eq!(spec.description, "Pi");
        assert_eq!(spec.endpoint, "ssh://pi@x");
        assert_eq!(spec.tags, ["board", "arm", "linux"]);
        assert_eq!(spec.max_lock_duration.as_secs(), 600);

        let bare = new_spec(&body(json!({"name": "lone", "tags": "a, b"}))).unwrap();
        assert_eq!(bare.tags, ["a", "b"]);
        assert_eq!(bare.max_lock_duration, Ttl::DEFAULT_MAX);
        assert_eq!(bare.description, "");
    }

    #[test]
    fn bad_fields_are_refused_naming_the_field() {
        let cases = [
            (json!({}), "missing_field", "name"),
            (json!({"name": null}), "missing_field", "name"),
            (json!({"name": "  "}), "invalid_name", "name"),
            (json!({"name": 7}), "invalid_name", "name"),
            (json!({"name": "a", "id": 3}), "immutable_field", "id"),
            (
                json!({"name": "a", "colour": "red"}),
                "unknown_field",
                "colour",
            ),
            (
                json!({"name": "a", "tags": "ci linux"}),
                "invalid_tags",
                "tags",
            ),
            (json!({"name": "a", "tags": [1]}), "invalid_tags", "tags"),
            (json!({"name": "a", "tags": 5}), "invalid_tags", "tags"),
            (
                json!({"name": "a", "description": 5}),
                "invalid_field",
                "description",
            ),
            (
                json!({"name": "a", "endpoint": []}),
                "invalid_field",
                "endpoint",
            ),
            (
                json!({"name": "a", "max-lock-duration": 0}),
                "invalid_ttl",
                "max-lock-duration",
            ),
            (
                json!({"name": "a", "max-lock-duration": "soon"}),
                "invalid_ttl",
                "max-lock-duration",
            ),
            (
                json!({"name": "a", "max-lock-duration": 1.5}),
                "invalid_ttl",
                "max-lock-duration",
            ),
        ];
        for (value, code, field) in cases {
            let err = new_spec(&body(value.clone())).expect_err(&value.to_string());
            assert_eq!(err.code(), code, "{value}");
            let ApiError::BadRequest { context, .. } = &err else {
                panic!("{err:?}")
            };
            assert!(
                context.contains(&("field", json!(field))),
                "{value}: {context:?}"
            );
        }
    }

    #[test]
    fn a_patch_resets_null_fields_to_their_defaults() {
        let patch = patch(&body(json!({
            "description": null, "endpoint": null, "tags": null, "max-lock-duration": null
        })))
        .unwrap();
        assert_eq!(
            patch,
            ResourcePatch {
                description: Some(String::new()),
                endpoint: Some(String::new()),
                tags: Some(Vec::new()),
                max_lock_duration: Some(Ttl::DEFAULT_MAX),
            }
        );
    }
}
