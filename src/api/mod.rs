//! The HTTP API: the Rent-A-Bot 1.0 contract, plus the OpenAPI document and explorer.
//!
//! Each area is a module with a `configure` function; [`configure`] mounts them all.
//! The 1.0 paths live under `/api/v1`; the pre-1.0 prefix `/rentabot/api/v1.0` still
//! answers, with `Deprecation` and `Link` headers pointing at the new path, as 1.0 did,
//! and a `Sunset` header with the date it may stop (docs/VERSIONING.md).

pub mod admin;
pub mod audit;
pub mod broker;
pub mod dto;
pub mod error;
pub mod events;
pub mod guard;
pub mod health;
pub mod idempotency;
pub mod maintenance;
pub mod middleware;
pub mod params;
pub mod query;
pub mod reservations;
pub mod resources;

use std::collections::BTreeSet;

use actix_web::dev::{AppService, HttpServiceFactory, Service};
use actix_web::http::Method;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::from_fn;
use actix_web::{
    FromRequest, Handler, HttpMessage, HttpRequest, HttpResponse, Resource, Responder, web,
};
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{AdditionalProperties, Schema};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

pub use error::ApiError;

/// How the HTTP layer bounds requests, and whose web pages may send changes: from
/// `--body-timeout` and `--allowed-origin`.
#[derive(Clone, Debug)]
pub struct RequestPolicy {
    /// How long a request body may take to arrive (408 after).
    pub body_timeout: std::time::Duration,
    /// Origins besides the service's own whose pages may POST, PATCH, DELETE and open
    /// the WebSocket.
    pub allowed_origins: guard::AllowedOrigins,
}

impl Default for RequestPolicy {
    fn default() -> Self {
        RequestPolicy {
            body_timeout: params::DEFAULT_BODY_TIMEOUT,
            allowed_origins: guard::AllowedOrigins::default(),
        }
    }
}

/// The current API prefix.
pub const PREFIX: &str = "/api/v1";
/// The pre-1.0 prefix, still served.
pub const LEGACY_PREFIX: &str = "/rentabot/api/v1.0";
/// When [`LEGACY_PREFIX`] may stop answering (RFC 8594 `Sunset`, an HTTP-date): at least
/// 12 months after the first release that sends this header, as the deprecation policy
/// says (docs/VERSIONING.md). Moving it earlier breaks that promise.
pub const LEGACY_SUNSET: &str = "Wed, 01 Dec 2027 00:00:00 GMT";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "rentabot",
        description = "Resource locking and reservation broker. Speaks the Rent-A-Bot 1.0 API.",
    ),
    paths(
        health::health,
        health::readiness,
        resources::list_resources,
        resources::get_resource,
        resources::lock_resource,
        resources::lock_by_criteria,
        resources::unlock_resource,
        resources::extend_lock,
        resources::unlock_batch,
        resources::expired_locks,
        maintenance::mark_unavailable,
        maintenance::mark_available,
        maintenance::force_unlock,
        reservations::create_reservation,
        reservations::list_reservations,
        reservations::get_reservation,
        reservations::claim_reservation,
        reservations::cancel_reservation,
        events::stream_events,
        admin::create_resource,
        admin::update_resource,
        admin::delete_resource,
        admin::reload_descriptor,
        audit::audit_log,
    ),
    components(schemas(params::GroupRequest)),
    modifiers(&CommonRefusals),
    tags(
        (name = "resources", description = "Lock, unlock and extend (Rent-A-Bot 1.0)"),
        (name = "maintenance", description = "Operators: take resources out of service, return them, break locks"),
        (name = "reservations", description = "The queue: reserve, wait, claim, cancel"),
        (name = "events", description = "Every broker change as server-sent events"),
        (name = "admin", description = "Create, change and delete resources; reload the descriptor and the auth config (role admin with --auth-config)"),
        (name = "audit", description = "Who changed what, and what was refused (role admin with --auth-config)"),
        (name = "health", description = "Probes"),
    )
)]
pub struct ApiDoc;

/// Mounts every API route, the OpenAPI document and the explorer.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // The document's route must precede the /api/v1 scope, which would otherwise claim
    // every path under it.
    cfg.service(
        SwaggerUi::new("/docs/{_:.*}").url(format!("{PREFIX}/openapi.json"), ApiDoc::openapi()),
    )
    .route("/docs", web::get().to(docs_redirect))
    .configure(health::configure)
    .configure(events::configure_ws)
    // Retry-safe POSTs (`Idempotency-Key`) on the whole scope: the middleware acts on
    // POSTs with the header only. Inside the legacy headers, so replays get them too.
    .service(
        web::scope(PREFIX)
            .wrap(from_fn(idempotency::remember))
            .configure(configure_v1)
            .configure(events::configure_api),
    )
    .service(
        web::scope(LEGACY_PREFIX)
            .wrap(from_fn(idempotency::remember))
            .wrap_fn(|req, srv| {
                let successor = format!("{PREFIX}{}", &req.path()[LEGACY_PREFIX.len()..]);
                let response = srv.call(req);
                async move {
                    let mut response = response.await?;
                    let headers = response.headers_mut();
                    headers.insert(
                        HeaderName::from_static("deprecation"),
                        HeaderValue::from_static("true"),
                    );
                    headers.insert(
                        HeaderName::from_static("sunset"),
                        HeaderValue::from_static(LEGACY_SUNSET),
                    );
                    // Joined to a Link the handler set (a list's page links), not replacing it.
                    let alternate = format!("<{successor}>; rel=alternate");
                    let link = match headers
                        .get(actix_web::http::header::LINK)
                        .and_then(|v| v.to_str().ok())
                    {
                        Some(pages) => format!("{pages}, {alternate}"),
                        None => alternate,
                    };
                    if let Ok(link) = HeaderValue::from_str(&link) {
                        headers.insert(actix_web::http::header::LINK, link);
                    }
                    Ok(response)
                }
            })
            .configure(configure_v1),
    );
}

/// The routes under `/api/v1` (and the legacy prefix).
fn configure_v1(cfg: &mut web::ServiceConfig) {
    cfg.configure(resources::configure)
        .configure(reservations::configure)
        .configure(admin::configure)
        .configure(audit::configure);
}

/// `/docs` without the trailing slash, where 1.0 users bookmarked the explorer.
async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((actix_web::http::header::LOCATION, "/docs/"))
        .finish()
}

/// A path and the methods it serves: `endpoint("/x").get(read).post(write)`. Any other
/// method gets a JSON 405 (1.0, on FastAPI, answered 405 too) whose `Allow` header lists
/// the methods served, instead of falling through to the 404 of unknown paths. `HEAD` is
/// served wherever `GET` is (see [`guard`]), and listed in `Allow`.
pub(crate) fn endpoint(path: &str) -> Endpoint {
    Endpoint {
        resource: web::resource(path),
        methods: Vec::new(),
    }
}

/// See [`endpoint`]. Registered with `.service(...)`.
pub(crate) struct Endpoint {
    resource: Resource,
    methods: Vec<Method>,
}

impl Endpoint {
    pub(crate) fn get<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.on(Method::GET, handler)
    }

    pub(crate) fn post<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.on(Method::POST, handler)
    }

    pub(crate) fn patch<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.on(Method::PATCH, handler)
    }

    pub(crate) fn delete<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.on(Method::DELETE, handler)
    }

    fn on<F, Args>(mut self, method: Method, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.resource = self
            .resource
            .route(web::route().method(method.clone()).to(handler));
        self.methods.push(method);
        self
    }

    /// The `Allow` header: the methods served, `HEAD` after `GET`.
    fn allow(&self) -> String {
        let mut allow: Vec<&str> = Vec::new();
        for method in &self.methods {
            allow.push(method.as_str());
            if method == Method::GET {
                allow.push(Method::HEAD.as_str());
            }
        }
        allow.join(", ")
    }
}

impl HttpServiceFactory for Endpoint {
    fn register(self, config: &mut AppService) {
        let allow = self.allow();
        self.resource
            .default_service(web::to(move |req: HttpRequest| {
                std::future::ready(method_not_allowed(&req, allow.clone()))
            }))
            .register(config);
    }
}

fn method_not_allowed(req: &HttpRequest, allow: String) -> Result<HttpResponse, ApiError> {
    let method = if req.extensions().contains::<guard::WasHead>() {
        Method::HEAD.to_string()
    } else {
        req.method().to_string()
    };
    Err(ApiError::MethodNotAllowed {
        method,
        path: req.path().to_owned(),
        allow,
    })
}

/// The JSON 404 for paths no route serves.
pub async fn no_route(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NoRoute {
        method: req.method().to_string(),
        path: req.path().to_owned(),
    })
}

/// What the document says of every operation because a layer below the handlers does it
/// to every request (so the handlers' annotations need not repeat it, and cannot forget
/// it):
///
/// - a request body is read by `params::read_body`: 408 when it is late, 413 when it is
///   too large, 415 when it is not JSON; and its schema is closed
///   (`additionalProperties: false`), because `params::Body` refuses fields the schema
///   does not name (it reads the names from the same schema);
/// - a change (POST, PATCH, DELETE) is refused with 403 when a foreign web page asks
///   (`guard`), and with 400 for an unknown or repeated query parameter;
/// - a query parameter that is invalid is a 400.
struct CommonRefusals;

impl Modify for CommonRefusals {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let mut bodies: Vec<RefOr<Schema>> = Vec::new();
        for (path, item) in &mut openapi.paths.paths {
            let operations = [
                ("GET", &mut item.get, false),
                ("POST", &mut item.post, true),
                ("PATCH", &mut item.patch, true),
                ("DELETE", &mut item.delete, true),
                ("PUT", &mut item.put, true),
            ];
            for (method, operation, is_change) in operations {
                let Some(operation) = operation.as_mut() else {
                    continue;
                };
                if let Some(rule) = crate::auth::rules::find(method, path)
                    && let crate::auth::rules::Access::Role(role) = rule.access
                {
                    auth_refusals(operation, role);
                }
                if let Some(body) = &operation.request_body {
                    bodies.extend(body.content.values().filter_map(|c| c.schema.clone()));
                    refusal(
                        operation,
                        "408",
                        "The request body did not arrive in time (`--body-timeout`); the connection is closed",
                    );
                    refusal(operation, "413", "The request body is over 256 KiB");
                    refusal(
                        operation,
                        "415",
                        "The request body is not JSON (send `Content-Type: application/json`, or none)",
                    );
                }
                if is_change {
                    refusal(
                        operation,
                        "403",
                        "Refused: a web page of another origin asked (`Origin` not allowed, code `origin_not_allowed`)",
                    );
                }
                let has_query =
                    operation.parameters.iter().flatten().any(|p| {
                        matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Query)
                    });
                if is_change || has_query {
                    refusal(
                        operation,
                        "400",
                        "An unknown, repeated or invalid parameter",
                    );
                }
            }
        }
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "An API key from the service's --auth-config (only when it has one)",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key, or a JWT when the auth config has a `jwt` section",
                    ))
                    .build(),
            ),
        );
        // Close every object a request body can contain, however deep.
        let mut closed: BTreeSet<String> = BTreeSet::new();
        let mut pending: Vec<RefOr<Schema>> = bodies;
        while let Some(schema) = pending.pop() {
            match schema {
                RefOr::Ref(reference) => {
                    let name = reference
                        .ref_location
                        .rsplit('/')
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    if closed.insert(name.clone())
                        && let Some(component) = components.schemas.get_mut(&name)
                    {
                        close(component, &mut pending);
                    }
                }
                RefOr::T(mut inline) => {
                    close_schema(&mut inline, &mut pending);
                }
            }
        }
    }
}

/// Documents `status` on `operation`, unless the handler already says when it happens.
/// What the auth gate answers on a route that needs `role` (only with `--auth-config`),
/// and the credentials it takes.
fn auth_refusals(operation: &mut Operation, role: crate::auth::Role) {
    let role = role.as_str();
    refusal(
        operation,
        "401",
        "With --auth-config: no credential, or not a valid one (codes `missing_credentials`, `invalid_api_key`, `malformed_credentials`, `invalid_token`); `WWW-Authenticate` says which",
    );
    let forbidden = format!(
        "With --auth-config: the caller's role is below `{role}` (code `forbidden`, naming `role` and `required_role`)"
    );
    match operation.responses.responses.get_mut("403") {
        Some(RefOr::T(existing)) => {
            existing.description = format!("{}; or: {forbidden}", existing.description);
        }
        _ => refusal(operation, "403", &forbidden),
    }
    refusal(
        operation,
        "429",
        "With --auth-config: over the caller's rate limit (code `rate_limited`); `Retry-After` gives whole seconds",
    );
    let requirement = |scheme: &str| SecurityRequirement::new(scheme, Vec::<String>::new());
    operation.security = Some(vec![requirement("api_key"), requirement("bearer")]);
}

fn refusal(operation: &mut Operation, status: &str, description: &str) {
    operation
        .responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            )
        });
}

fn close(schema: &mut RefOr<Schema>, pending: &mut Vec<RefOr<Schema>>) {
    match schema {
        RefOr::Ref(_) => pending.push(schema.clone()),
        RefOr::T(schema) => close_schema(schema, pending),
    }
}

/// Sets `additionalProperties: false` on an object with properties, and queues what it
/// contains.
fn close_schema(schema: &mut Schema, pending: &mut Vec<RefOr<Schema>>) {
    match schema {
        Schema::Object(object) => {
            if !object.properties.is_empty() {
                object.additional_properties =
                    Some(Box::new(AdditionalProperties::FreeForm(false)));
            }
            for property in object.properties.values_mut() {
                close(property, pending);
            }
        }
        Schema::Array(array) => {
            if let utoipa::openapi::schema::ArrayItems::RefOrSchema(items) = &mut array.items {
                close(items, pending);
            }
        }
        Schema::OneOf(one_of) => {
            for item in &mut one_of.items {
                close(item, pending);
            }
        }
        Schema::AnyOf(any_of) => {
            for item in &mut any_of.items {
                close(item, pending);
            }
        }
        Schema::AllOf(all_of) => {
            for item in &mut all_of.items {
                close(item, pending);
            }
        }
        _ => {}
    }
}
