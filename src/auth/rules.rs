//! Who may call what: one table, [`RULES`], with a rule for every route the service
//! serves, and [`find`], which matches a request against it.
//!
//! A rule names the route as actix writes it (method and pattern, `{name}` for one
//! segment, `{name:.*}` for the rest of the path), the least role that may call it, a
//! stable operation name (the audit log's `event_type`) and the bucket it draws on for
//! rate limiting. Routes of the 1.0 API (`legacy: true`) are also served under the
//! pre-1.0 prefix `/rentabot/api/v1.0` in place of `/api/v1`, under the same rule.
//!
//! A request no rule matches will get a 404 or 405; with auth on it still needs a
//! credential ([`UNMATCHED`]), so nothing answers an anonymous caller beyond the open
//! routes, even if this table and the router ever disagreed about a path.
//!
//! Match the path the router matches (`req.match_info().as_str()` in actix, which has
//! decoded percent-escapes of unreserved characters), not the raw request target.

use std::sync::LazyLock;

use super::limits::Class;
use super::roles::Role;

/// The current API prefix.
pub const PREFIX: &str = "/api/v1";
/// The pre-1.0 prefix, which serves every `legacy` rule's route too.
pub const LEGACY_PREFIX: &str = "/rentabot/api/v1.0";

/// The methods routes are served for. `HEAD` is matched as `GET`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Post,
    Patch,
    Delete,
}

impl Method {
    const COUNT: usize = 4;

    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    /// The method of a request, `HEAD` read as `GET`; `None` for any other.
    pub fn parse(method: &str) -> Option<Method> {
        match method {
            "GET" | "HEAD" => Some(Method::Get),
            "POST" => Some(Method::Post),
            "PATCH" => Some(Method::Patch),
            "DELETE" => Some(Method::Delete),
            _ => None,
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Everyone, with or without a credential (a credential is not even looked at):
    /// probes and the API's documentation.
    Public,
    /// `/metrics`: public, or any authenticated caller when the config sets
    /// `metrics_require_key`.
    Metrics,
    /// The dashboard's page at `/`: a credential, when given, is checked as for a
    /// readonly route (a bad one is refused); without one the caller is anonymous and
    /// the page shows no lab data, only the form to enter a key (browsers cannot add a
    /// header to a page load). The data comes from readonly routes.
    Page,
    /// Authenticated callers of this role or above.
    Role(Role),
}

/// One route and who may call it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub method: Method,
    /// The route as actix writes it, with the current prefix for API routes.
    pub pattern: &'static str,
    pub access: Access,
    /// A stable snake_case name for what the route does: the audit log's `event_type`.
    pub operation: &'static str,
    /// The rate-limit bucket requests draw on.
    pub class: Class,
    /// Also served under [`LEGACY_PREFIX`] in place of [`PREFIX`].
    pub legacy: bool,
}

impl Rule {
    /// Whether the route changes state (what the audit log records).
    pub fn is_write(&self) -> bool {
        self.class == Class::Write
    }

    /// The pattern under the legacy prefix, for a legacy rule.
    pub fn legacy_pattern(&self) -> Option<String> {
        let rest = self.pattern.strip_prefix(PREFIX)?;
        self.legacy.then(|| format!("{LEGACY_PREFIX}{rest}"))
    }
}

const fn rule(
    method: Method,
    pattern: &'static str,
    access: Access,
    operation: &'static str,
    class: Class,
    legacy: bool,
) -> Rule {
    Rule {
        method,
        pattern,
        access,
        operation,
        class,
        legacy,
    }
}

use Access::{Metrics, Public};
use Class::{Read, Unlimited, Write};
use Method::{Delete, Get, Patch, Post};

const READONLY: Access = Access::Role(Role::Readonly);
const USER: Access = Access::Role(Role::User);
const OPERATOR: Access = Access::Role(Role::Operator);
const ADMIN: Access = Access::Role(Role::Admin);

/// Every route of the service. Keep it in step with `api::configure`: the tests below
/// check it against the OpenAPI document and against the real router.
pub static RULES: &[Rule] = &[
    // The root: probes, the page, the documentation, the WebSocket.
    rule(Get, "/health", Public, "health", Unlimited, false),
    rule(Get, "/readiness", Public, "readiness", Unlimited, false),
    rule(Get, "/metrics", Metrics, "metrics", Unlimited, false),
    rule(Get, "/", Access::Page, "dashboard", Read, false),
    rule(
        Get,
        "/dashboard/fragment",
        READONLY,
        "dashboard_fragment",
        Read,
        false,
    ),
    // The dashboard's script and stylesheet: no lab data, and needed before a key.
    rule(Get, "/static/{file}", Public, "static", Read, false),
    rule(Get, "/docs", Public, "docs", Read, false),
    rule(Get, "/docs/{_:.*}", Public, "docs", Read, false),
    rule(Get, "/api/v1/openapi.json", Public, "openapi", Read, false),
    rule(
        Get,
        "/ws/reservations/{rid}",
        READONLY,
        "watch_reservation",
        Read,
        false,
    ),
    // Resources (Rent-A-Bot 1.0).
    rule(
        Get,
        "/api/v1/resources",
        READONLY,
        "list_resources",
        Read,
        true,
    ),
    rule(
        Get,
        "/api/v1/resources/expired",
        READONLY,
        "list_expired_locks",
        Read,
        true,
    ),
    rule(
        Get,
        "/api/v1/resources/{id}",
        READONLY,
        "get_resource",
        Read,
        true,
    ),
    rule(
        Post,
        "/api/v1/resources/lock",
        USER,
        "lock_matching",
        Write,
        true,
    ),
    rule(
        Post,
        "/api/v1/resources/unlock-batch",
        USER,
        "unlock_batch",
        Write,
        true,
    ),
    rule(
        Post,
        "/api/v1/resources/{id}/lock",
        USER,
        "lock",
        Write,
        true,
    ),
    rule(
        Post,
        "/api/v1/resources/{id}/unlock",
        USER,
        "unlock",
        Write,
        true,
    ),
    rule(
        Post,
        "/api/v1/resources/{id}/extend",
        USER,
        "extend",
        Write,
        true,
    ),
    // Maintenance.
    rule(
        Post,
        "/api/v1/resources/{id}/unavailable",
        OPERATOR,
        "mark_unavailable",
        Write,
        true,
    ),
    rule(
        Post,
        "/api/v1/resources/{id}/available",
        OPERATOR,
        "mark_available",
        Write,
        true,
    ),
    rule(
        Post,
        "/api/v1/resources/{id}/force-unlock",
        OPERATOR,
        "force_unlock",
        Write,
        true,
    ),
    // Reservations.
    rule(
        Get,
        "/api/v1/reservations",
        READONLY,
        "list_reservations",
        Read,
        true,
    ),
    rule(
        Get,
        "/api/v1/reservations/{rid}",
        READONLY,
        "get_reservation",
        Read,
        true,
    ),
    rule(Post, "/api/v1/reservations", USER, "reserve", Write, true),
    rule(
        Post,
        "/api/v1/reservations/{rid}/claim",
        USER,
        "claim",
        Write,
        true,
    ),
    rule(
        Delete,
        "/api/v1/reservations/{rid}",
        USER,
        "cancel_reservation",
        Write,
        true,
    ),
    // Administration.
    rule(
        Post,
        "/api/v1/resources",
        ADMIN,
        "create_resource",
        Write,
        true,
    ),
    rule(
        Patch,
        "/api/v1/resources/{id}",
        ADMIN,
        "update_resource",
        Write,
        true,
    ),
    rule(
        Delete,
        "/api/v1/resources/{id}",
        ADMIN,
        "delete_resource",
        Write,
        true,
    ),
    rule(Post, "/api/v1/admin/reload", ADMIN, "reload", Write, true),
    rule(Get, "/api/v1/audit", ADMIN, "audit", Read, false),
    // Streams, current prefix only.
    rule(Get, "/api/v1/events", READONLY, "events", Read, false),
];

/// The rule of a request no route serves (it will get a 404 or 405): any authenticated
/// caller, counted as a read.
pub static UNMATCHED: Rule = rule(Get, "", READONLY, "no_route", Read, false);

/// The rule for `method` on `path`, if a route serves it. `HEAD` matches `GET` rules.
///
/// Cost: a walk down a tree of path segments built once from [`RULES`]; no allocation,
/// linear in the number of segments (a literal segment is tried before `{param}`, and
/// the tree is shallow, so backtracking is bounded by its depth).
pub fn find(method: &str, path: &str) -> Option<&'static Rule> {
    let method = Method::parse(method)?;
    let rest = path.strip_prefix('/')?;
    let tree = &*TREE;
    tree.walk(0, rest, method).map(|i| &RULES[i as usize])
}

/// [`find`], or [`UNMATCHED`].
pub fn resolve(method: &str, path: &str) -> &'static Rule {
    find(method, path).unwrap_or(&UNMATCHED)
}

/// Every pattern the table serves, legacy copies included, with its rule.
pub fn patterns() -> impl Iterator<Item = (String, &'static Rule)> {
    RULES.iter().flat_map(|r| {
        std::iter::once((r.pattern.to_owned(), r)).chain(r.legacy_pattern().map(|p| (p, r)))
    })
}

/// A segment of a pattern.
#[derive(Debug, PartialEq, Eq)]
enum Segment<'a> {
    Literal(&'a str),
    /// `{name}`: one non-empty segment.
    Param,
    /// `{name:.*}`, last: the rest of the path, possibly empty.
    Tail,
}

/// Splits a pattern into segments; `None` if it is not well-formed (no leading `/`, an
/// empty segment other than the root's, a brace out of place, a tail not last, or a
/// regex other than `.*`).
fn segments(pattern: &str) -> Option<Vec<Segment<'_>>> {
    let rest = pattern.strip_prefix('/')?;
    if rest.is_empty() {
        return Some(vec![Segment::Literal("")]);
    }
    let parts: Vec<&str> = rest.split('/').collect();
    let last = parts.len() - 1;
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let inner = part.strip_prefix('{').and_then(|p| p.strip_suffix('}'));
            match inner {
                Some(inner) => {
                    let (name, regex) = inner.split_once(':').unwrap_or((inner, ""));
                    let named = !name.is_empty()
                        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                    match regex {
                        "" if named => Some(Segment::Param),
                        ".*" if named && i == last => Some(Segment::Tail),
                        _ => None,
                    }
                }
                None if part.is_empty() || part.contains(['{', '}']) => None,
                None => Some(Segment::Literal(part)),
            }
        })
        .collect()
}

/// The rules as a tree of segments.
struct Tree {
    nodes: Vec<Node>,
}

#[derive(Default)]
struct Node {
    literals: Vec<(Box<str>, usize)>,
    param: Option<usize>,
    /// Rules ending here, per method (index into [`RULES`]).
    rules: [Option<u16>; Method::COUNT],
    /// Rules whose `{name:.*}` tail starts here, per method.
    tail: [Option<u16>; Method::COUNT],
}

static TREE: LazyLock<Tree> = LazyLock::new(|| {
    let mut tree = Tree {
        nodes: vec![Node::default()],
    };
    for (index, rule) in RULES.iter().enumerate() {
        let index = u16::try_from(index).expect("fewer than 65 536 rules");
        for pattern in std::iter::once(rule.pattern.to_owned()).chain(rule.legacy_pattern()) {
            let segments = segments(&pattern).expect("every pattern is well-formed (tested)");
            tree.insert(&segments, rule.method, index);
        }
    }
    tree
});

impl Tree {
    fn insert(&mut self, segments: &[Segment<'_>], method: Method, rule: u16) {
        let mut node = 0;
        for segment in segments {
            node = match segment {
                Segment::Literal(lit) => {
                    match self.nodes[node].literals.iter().find(|(l, _)| &**l == *lit) {
                        Some(&(_, child)) => child,
                        None => {
                            let child = self.push();
                            self.nodes[node].literals.push((Box::from(*lit), child));
                            child
                        }
                    }
                }
                Segment::Param => match self.nodes[node].param {
                    Some(child) => child,
                    None => {
                        let child = self.push();
                        self.nodes[node].param = Some(child);
                        child
                    }
                },
                Segment::Tail => {
                    self.nodes[node].tail[method.index()] = Some(rule);
                    return;
                }
            };
        }
        self.nodes[node].rules[method.index()] = Some(rule);
    }

    fn push(&mut self) -> usize {
        self.nodes.push(Node::default());
        self.nodes.len() - 1
    }

    /// The rule for `rest` (the path after a `/`) from `node`.
    fn walk(&self, node: usize, rest: &str, method: Method) -> Option<u16> {
        let node_ref = &self.nodes[node];
        let (segment, next) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let descend = |child: usize| match next {
            None => self.nodes[child].rules[method.index()],
            Some(next) => self.walk(child, next, method),
        };
        if let Some(&(_, child)) = node_ref.literals.iter().find(|(l, _)| &**l == segment)
            && let Some(found) = descend(child)
        {
            return Some(found);
        }
        if !segment.is_empty()
            && let Some(child) = node_ref.param
            && let Some(found) = descend(child)
        {
            return Some(found);
        }
        node_ref.tail[method.index()]
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_pattern_is_well_formed_and_every_operation_snake_case() {
        for (pattern, rule) in patterns() {
            assert!(segments(&pattern).is_some(), "{pattern}");
            assert!(
                !rule.operation.is_empty()
                    && rule
                        .operation
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{}",
                rule.operation
            );
            // Only API routes can be legacy, and writes need a role.
            assert!(
                !rule.legacy || rule.pattern.starts_with(PREFIX),
                "{pattern}"
            );
            if rule.is_write() {
                assert!(
                    matches!(rule.access, Access::Role(r) if r >= Role::User),
                    "{pattern}"
                );
            }
        }
        let malformed = [
            "",
            "api",
            "/api//v1",
            "/api/",
            "/a/{}",
            "/a/{id",
            "/a/id}",
            "/a/x{id}",
            "/a/{i d}",
            "/a/{tail:.*}/b",
            "/a/{id:\\d+}",
        ];
        for pattern in malformed {
            assert!(segments(pattern).is_none(), "{pattern}");
        }
        assert_eq!(segments("/"), Some(vec![Segment::Literal("")]));
        assert_eq!(
            segments("/docs/{_:.*}"),
            Some(vec![Segment::Literal("docs"), Segment::Tail])
        );
    }

    #[test]
    fn no_method_and_pattern_has_two_rules() {
        let mut seen = HashSet::new();
        for (pattern, rule) in patterns() {
            assert!(
                seen.insert((rule.method, pattern.clone())),
                "{:?} {pattern}",
                rule.method
            );
        }
    }

    /// A concrete path for a pattern: `{id}` -> 7, `{rid}` -> a reservation id, a tail ->
    /// `index.html`, `{file}` -> `dashboard.js`.
    fn instantiate(pattern: &str) -> String {
        pattern
            .replace("{id}", "7")
            .replace("{rid}", "res_0123456789abcdef0123456789abcdef")
            .replace("{_:.*}", "index.html")
            .replace("{file}", "dashboard.js")
    }

    #[test]
    fn every_rule_is_found_for_its_own_routes_under_both_prefixes() {
        for (pattern, rule) in patterns() {
            let path = instantiate(&pattern);
            assert_eq!(find(rule.method.as_str(), &path), Some(rule), "{pattern}");
            if rule.method == Method::Get {
                assert_eq!(find("HEAD", &path), Some(rule), "HEAD {pattern}");
            }
        }
    }

    #[test]
    fn requests_match_the_route_actix_would_serve() {
        let rid = "res_0123456789abcdef0123456789abcdef";
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("GET", "/", Some("dashboard")),
            ("GET", "/dashboard/fragment", Some("dashboard_fragment")),
            ("GET", "/static/dashboard.css", Some("static")),
            ("GET", "/static/nothing.js", Some("static")),
            ("GET", "/health", Some("health")),
            ("HEAD", "/readiness", Some("readiness")),
            ("GET", "/metrics", Some("metrics")),
            ("GET", "/docs", Some("docs")),
            ("GET", "/docs/", Some("docs")),
            ("GET", "/docs/swagger-ui/index.css", Some("docs")),
            ("GET", "/api/v1/openapi.json", Some("openapi")),
            ("GET", "/api/v1/resources", Some("list_resources")),
            ("POST", "/api/v1/resources", Some("create_resource")),
            ("POST", "/api/v1/resources/lock", Some("lock_matching")),
            ("POST", "/api/v1/resources/42/lock", Some("lock")),
            ("POST", "/api/v1/resources/board-1/unlock", Some("unlock")),
            // As actix does: `lock` is the id here (the handler then refuses it).
            ("POST", "/api/v1/resources/lock/unlock", Some("unlock")),
            (
                "GET",
                "/api/v1/resources/expired",
                Some("list_expired_locks"),
            ),
            ("GET", "/api/v1/resources/lock", Some("get_resource")),
            ("PATCH", "/api/v1/resources/3", Some("update_resource")),
            ("DELETE", "/api/v1/resources/3", Some("delete_resource")),
            (
                "POST",
                "/api/v1/resources/3/force-unlock",
                Some("force_unlock"),
            ),
            (
                "POST",
                "/rentabot/api/v1.0/resources/3/force-unlock",
                Some("force_unlock"),
            ),
            (
                "GET",
                "/rentabot/api/v1.0/resources",
                Some("list_resources"),
            ),
            (
                "DELETE",
                &format!("/api/v1/reservations/{rid}"),
                Some("cancel_reservation"),
            ),
            (
                "POST",
                &format!("/rentabot/api/v1.0/reservations/{rid}/claim"),
                Some("claim"),
            ),
            ("POST", "/api/v1/admin/reload", Some("reload")),
            ("GET", "/api/v1/audit", Some("audit")),
            ("GET", "/api/v1/events", Some("events")),
            (
                "GET",
                &format!("/ws/reservations/{rid}"),
                Some("watch_reservation"),
            ),
            // Served by no route: 404 or 405 follows.
            ("GET", "/rentabot/api/v1.0/events", None),
            ("GET", "/rentabot/api/v1.0/audit", None),
            ("GET", "/api/v1/resources/", None),
            ("GET", "/api/v1//resources", None),
            ("POST", "/api/v1/resources//lock", None),
            ("GET", "/api/v1/resources/3/lock", None),
            ("PUT", "/api/v1/resources/3", None),
            ("OPTIONS", "/api/v1/resources", None),
            ("get", "/api/v1/resources", None),
            ("POST", "/api/v1/resources/3/lock/extra", None),
            ("GET", "/api/v2/resources", None),
            ("GET", "/api", None),
            ("GET", "", None),
            ("GET", "health", None),
            ("GET", "/healthz", None),
            ("GET", "/docsx", None),
            ("GET", "/ws/reservations/", None),
        ];
        for (method, path, operation) in cases {
            assert_eq!(
                find(method, path).map(|r| r.operation),
                *operation,
                "{method} {path}"
            );
        }
        assert_eq!(resolve("PUT", "/api/v1/resources/3"), &UNMATCHED);
        assert_eq!(UNMATCHED.access, Access::Role(Role::Readonly));
    }

    #[test]
    fn roles_follow_the_issue() {
        let role = |method: &str, path: &str| find(method, path).map(|r| r.access);
        let r = |role| Some(Access::Role(role));
        assert_eq!(role("GET", "/api/v1/resources/1"), r(Role::Readonly));
        assert_eq!(role("POST", "/api/v1/resources/1/lock"), r(Role::User));
        assert_eq!(role("POST", "/api/v1/resources/1/extend"), r(Role::User));
        assert_eq!(role("POST", "/api/v1/reservations"), r(Role::User));
        assert_eq!(
            role("POST", "/api/v1/resources/1/unavailable"),
            r(Role::Operator)
        );
        assert_eq!(
            role("POST", "/api/v1/resources/1/available"),
            r(Role::Operator)
        );
        assert_eq!(
            role("POST", "/api/v1/resources/1/force-unlock"),
            r(Role::Operator)
        );
        assert_eq!(role("POST", "/api/v1/resources"), r(Role::Admin));
        assert_eq!(role("PATCH", "/api/v1/resources/1"), r(Role::Admin));
        assert_eq!(role("DELETE", "/api/v1/resources/1"), r(Role::Admin));
        assert_eq!(role("POST", "/api/v1/admin/reload"), r(Role::Admin));
        assert_eq!(role("GET", "/api/v1/audit"), r(Role::Admin));
        assert_eq!(role("GET", "/health"), Some(Access::Public));
        assert_eq!(role("GET", "/metrics"), Some(Access::Metrics));
        assert_eq!(role("GET", "/"), Some(Access::Page));
        assert_eq!(role("GET", "/dashboard/fragment"), r(Role::Readonly));
        assert_eq!(role("GET", "/static/dashboard.js"), Some(Access::Public));
        let class = |method: &str, path: &str| find(method, path).map(|r| r.class);
        assert_eq!(class("GET", "/health"), Some(Class::Unlimited));
        assert_eq!(class("GET", "/metrics"), Some(Class::Unlimited));
        assert_eq!(class("GET", "/api/v1/resources"), Some(Class::Read));
        assert_eq!(
            class("POST", "/api/v1/resources/1/lock"),
            Some(Class::Write)
        );
    }

    #[test]
    fn every_route_of_the_openapi_document_has_its_rule() {
        use utoipa::OpenApi;
        let doc = crate::api::ApiDoc::openapi();
        let mut checked = 0;
        for (path, item) in &doc.paths.paths {
            let methods = [
                ("GET", item.get.is_some()),
                ("POST", item.post.is_some()),
                ("PATCH", item.patch.is_some()),
                ("DELETE", item.delete.is_some()),
                ("PUT", item.put.is_some()),
                ("HEAD", item.head.is_some()),
                ("OPTIONS", item.options.is_some()),
                ("TRACE", item.trace.is_some()),
            ];
            for (method, _) in methods.iter().filter(|(_, present)| *present) {
                let rule = RULES
                    .iter()
                    .find(|r| r.method.as_str() == *method && r.pattern == path);
                assert!(
                    rule.is_some(),
                    "{method} {path} is documented but has no rule"
                );
                checked += 1;
            }
        }
        assert!(checked >= 20, "only {checked} documented routes");
    }

    /// Rules for routes the lead is adding: they must not be served yet. When one is
    /// mounted, this test fails: remove it from the list (the test below then checks it).
    const NOT_YET_MOUNTED: [&str; 0] = [];

    /// The service's routes, as `app::build` mounts them, over an empty broker.
    fn app() -> actix_web::App<
        impl actix_web::dev::ServiceFactory<
            actix_web::dev::ServiceRequest,
            Config = (),
            Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
            Error = actix_web::Error,
            InitError = (),
        >,
    > {
        use std::sync::Arc;

        use actix_web::{App, web};

        use crate::api;
        use crate::domain::{Broker, Policy, Timestamp};
        use crate::runtime::{BrokerHandle, DescriptorSource, ManualClock};

        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_780_000_000_000)));
        let handle = BrokerHandle::new(Broker::with_policy(Vec::new(), Policy::default()), clock);
        App::new()
            .app_data(api::broker::Registered::data(handle.clone()))
            .app_data(web::Data::new(DescriptorSource::new(None)))
            .app_data(api::idempotency::IdempotencyStore::new(
                handle.clone(),
                Vec::new(),
            ))
            .app_data(web::Data::new(crate::metrics::Exporter {
                metrics: Arc::new(crate::metrics::Metrics::new()),
                broker: handle,
                waiting: None,
                audit: None,
                ha: None,
            }))
            .configure(api::configure)
            .configure(crate::web::configure)
            .configure(crate::metrics::configure)
            .default_service(web::to(api::no_route))
    }

    /// Whether a route of `app` serves `method` on `path` (not the 404 of unknown paths,
    /// not a 405).
    macro_rules! served {
        ($app:expr, $method:expr, $path:expr) => {{
            use actix_web::test;
            let req = test::TestRequest::default()
                .method(actix_web::http::Method::from_bytes($method.as_bytes()).unwrap())
                .uri($path)
                .insert_header(("content-type", "application/json"))
                .set_payload("{}")
                .to_request();
            let response = test::call_service($app, req).await;
            // Streams never end: judge by the head alone unless it is an error.
            if response.status().as_u16() < 400 {
                true
            } else {
                let body = test::read_body(response).await;
                let code = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["code"].as_str().map(str::to_owned));
                !matches!(code.as_deref(), Some("no_route" | "method_not_allowed"))
            }
        }};
    }

    /// Every rule's route is served by the real router: no rule for a path that does not
    /// exist (a typo would leave the real route without its rule).
    #[actix_web::test]
    async fn every_rule_names_a_route_the_router_serves() {
        let app = actix_web::test::init_service(app()).await;
        for (pattern, rule) in patterns() {
            let path = instantiate(&pattern);
            let is_served = served!(&app, rule.method.as_str(), &path);
            if NOT_YET_MOUNTED.contains(&rule.pattern) {
                assert!(
                    !is_served,
                    "{pattern} is mounted now: remove it from NOT_YET_MOUNTED"
                );
            } else {
                assert!(is_served, "{} {path} is not served", rule.method.as_str());
            }
        }
    }

    /// Spellings of a route's path that the router might also serve (a trailing slash,
    /// doubled slashes, escapes, dot segments, other case): wherever it does, the rule
    /// found for the path it routes on must be the route's own, or a caller could reach
    /// a route under a weaker rule (`UNMATCHED` needs only readonly).
    #[actix_web::test]
    async fn any_spelling_the_router_serves_finds_the_same_rule() {
        use actix_web::test;

        use crate::auth::actix_glue::router_path;

        let app = test::init_service(app()).await;
        let mut tried = 0;
        for (pattern, _) in patterns() {
            let path = instantiate(&pattern);
            let last = path.rfind('/').unwrap();
            let escaped_last = match path[last + 1..].chars().next() {
                Some(c) if c.is_ascii_alphabetic() => {
                    format!("{}%{:02X}{}", &path[..=last], c as u8, &path[last + 2..])
                }
                _ => path.clone(),
            };
            let variants = [
                format!("{path}/"),
                format!("/{path}"),
                path.replacen('/', "//", 2),
                format!("{}/.{}", &path[..last], &path[last..]),
                format!("{}/x/..{}", &path[..last], &path[last..]),
                path.to_uppercase(),
                escaped_last,
                format!("{path}?x=1"),
            ];
            for variant in variants {
                for method in ["GET", "POST", "PATCH", "DELETE", "PUT"] {
                    if !served!(&app, method, &variant) {
                        continue;
                    }
                    tried += 1;
                    let req = test::TestRequest::default().uri(&variant).to_srv_request();
                    let routed = router_path(&req).to_owned();
                    let original = RULES.iter().find(|r| {
                        r.method.as_str() == method
                            && (r.pattern == pattern
                                || r.legacy_pattern().as_deref() == Some(pattern.as_str()))
                    });
                    let found = find(method, &routed);
                    // A variant may reach another route (`/resources/LOCK` is resource
                    // LOCK): then its rule must be that route's, which `find` gives for
                    // the path the router saw.
                    match original {
                        Some(rule) if routed == path => {
                            assert_eq!(found, Some(rule), "{method} {variant}")
                        }
                        _ => assert!(
                            found.is_some(),
                            "{method} {variant} (routed as {routed}) is served but has no rule"
                        ),
                    }
                }
            }
        }
        assert!(tried > 0);
    }
}
