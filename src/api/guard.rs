//! What every request and response passes through, whatever route serves it: refusing
//! cross-site changes (`Origin`), answering `HEAD` wherever `GET` is served, turning the
//! bodiless refusals of code we do not own (the explorer's assets) into JSON, and the
//! security headers of HTML pages.
//!
//! [`Guard`] is mounted once, on the whole app (`app::build`), so a route added later is
//! covered without anyone remembering to: the WebSocket at the root, both API prefixes,
//! the explorer and the page at `/`.
//!
//! ```text
//! request:  HEAD -> GET (marked [`WasHead`]), then
//!           POST/PUT/PATCH/DELETE/... or a WebSocket upgrade with a foreign Origin -> 403
//! response: 4xx/5xx without a body                -> the same status as ApiError JSON
//!           text/html                             -> CSP, nosniff, X-Frame-Options
//!           HEAD                                  -> no streamed body (the SSE stream
//!                                                    would never end)
//! ```

use std::future::{Ready, ready};
use std::rc::Rc;

use actix_web::body::{BodySize, EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{Error, HttpMessage, ResponseError};
use futures_util::future::LocalBoxFuture;

use super::error::ApiError;

/// The `Content-Security-Policy` of every HTML page: the page at `/` (inline `<style>`,
/// no script) and the Swagger UI explorer at `/docs/` (its scripts and styles from
/// `/docs/`, inline styles that it sets from script, `data:` images in its CSS, and
/// `fetch` to this service only). Nothing is loaded from elsewhere, and no page may be
/// framed (clickjacking) or post a form anywhere but here.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
font-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Put in a request's extensions when it came as `HEAD` and is routed as `GET`, so that
/// a 405 names the method the client sent.
#[derive(Clone, Copy, Debug)]
pub struct WasHead;

/// The origins, besides the service's own, whose web pages may change things here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedOrigins(Vec<String>);

impl AllowedOrigins {
    /// # Errors
    /// An entry that is not `scheme://host[:port]` (no path, no trailing slash): says
    /// which and why.
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(origins: I) -> Result<Self, String> {
        origins
            .into_iter()
            .map(|o| parse_origin(o.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map(AllowedOrigins)
    }

    fn contains(&self, origin: &str) -> bool {
        self.0.iter().any(|o| o == origin)
    }
}

/// `scheme://host[:port]`, lower-cased, without the default port of its scheme: the
/// form origins are compared in.
///
/// # Errors
/// What is wrong with `raw`, for the operator who wrote it.
pub fn parse_origin(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let (scheme, authority) = raw
        .split_once("://")
        .ok_or_else(|| format!("{raw:?} is not an origin such as https://ci.example.com"))?;
    let scheme = scheme.to_ascii_lowercase();
    if !["http", "https"].contains(&scheme.as_str()) {
        return Err(format!("{raw:?}: an origin's scheme is http or https"));
    }
    if authority.is_empty()
        || authority.contains(['/', '?', '#', '@'])
        || authority.contains(char::is_whitespace)
    {
        return Err(format!(
            "{raw:?}: an origin is scheme://host[:port], without a path or a trailing slash"
        ));
    }
    Ok(format!("{scheme}://{}", authority_key(&scheme, authority)))
}

/// `host[:port]` lower-cased, without the scheme's default port.
fn authority_key(scheme: &str, authority: &str) -> String {
    let authority = authority.to_ascii_lowercase();
    let default = if scheme == "https" { ":443" } else { ":80" };
    match authority.strip_suffix(default) {
        Some(host) => host.to_owned(),
        None => authority,
    }
}

/// Whether a request with `origin` may change things: it is this service's own page
/// (its host is the `Host` the request was sent to: a page of another site cannot send
/// our host name), or it is in `allowed`. `Origin: null` (sandboxed frames, `file:`
/// pages) is nobody's own.
fn origin_allowed(origin: &str, host: Option<&str>, allowed: &AllowedOrigins) -> bool {
    let Ok(origin) = parse_origin(origin) else {
        return false;
    };
    if allowed.contains(&origin) {
        return true;
    }
    let (scheme, authority) = origin.split_once("://").expect("parse_origin keeps it");
    host.is_some_and(|host| authority_key(scheme, host.trim()) == authority)
}

/// Methods that change nothing: everything else is refused from foreign origins.
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The middleware factory; see the module docs.
#[derive(Clone, Debug, Default)]
pub struct Guard {
    allowed: Rc<AllowedOrigins>,
}

impl Guard {
    pub fn new(allowed: AllowedOrigins) -> Self {
        Guard {
            allowed: Rc::new(allowed),
        }
    }
}

impl<S, B> Transform<S, ServiceRequest> for Guard
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = GuardService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(GuardService {
            service: Rc::new(service),
            allowed: self.allowed.clone(),
        }))
    }
}

pub struct GuardService<S> {
    service: Rc<S>,
    allowed: Rc<AllowedOrigins>,
}

impl<S, B> Service<ServiceRequest> for GuardService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        let is_head = req.method() == Method::HEAD;
        if is_head {
            req.head_mut().method = Method::GET;
            req.extensions_mut().insert(WasHead);
        }
        if (!is_safe(req.method()) || is_websocket_upgrade(req.headers()))
            && let Some(origin) = req.headers().get(header::ORIGIN)
        {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok());
            let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
            if !origin_allowed(&origin, host, &self.allowed) {
                let refusal = ApiError::OriginNotAllowed { origin }.error_response();
                return Box::pin(ready(Ok(req.into_response(refusal).map_into_right_body())));
            }
        }
        let response = self.service.call(req);
        Box::pin(async move {
            let mut res = response.await?;
            if is_html(res.headers()) {
                add_security_headers(res.headers_mut());
            }
            let status = res.status();
            let body_size = res.response().body().size();
            let is_empty = matches!(body_size, BodySize::None | BodySize::Sized(0));
            if (status.is_client_error() || status.is_server_error())
                && is_empty
                && !res.headers().contains_key(header::CONTENT_TYPE)
            {
                let method = if is_head {
                    Method::HEAD.to_string()
                } else {
                    res.request().method().to_string()
                };
                let error = bodiless_error(status, method, res.request().path());
                return Ok(res
                    .into_response(error.error_response())
                    .map_into_right_body());
            }
            if is_head && matches!(body_size, BodySize::Stream) {
                // Nothing of a HEAD response's body is sent, but actix would still poll
                // a stream to its end: an event stream never ends.
                let (req, response) = res.into_parts();
                let response = response.set_body(()).map_into_boxed_body();
                return Ok(ServiceResponse::new(req, response).map_into_right_body());
            }
            Ok(res.map_into_left_body())
        })
    }
}

/// The JSON error for a refusal that came without a body.
fn bodiless_error(status: StatusCode, method: String, path: &str) -> ApiError {
    if status == StatusCode::NOT_FOUND {
        ApiError::NoRoute {
            method,
            path: path.to_owned(),
        }
    } else {
        ApiError::Status {
            status,
            path: path.to_owned(),
        }
    }
}

fn is_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"))
}

fn add_security_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // For browsers that predate CSP's frame-ancestors.
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_compared_without_case_or_default_ports() {
        let none = AllowedOrigins::default();
        let cases = [
            ("http://127.0.0.1:8000", Some("127.0.0.1:8000"), true),
            ("HTTP://Lab.Example.com", Some("lab.example.com"), true),
            ("http://lab.example.com:80", Some("lab.example.com"), true),
            ("https://lab.example.com", Some("lab.example.com:443"), true),
            ("https://lab.example.com", Some("lab.example.com"), true),
            ("http://evil.example", Some("lab.example.com"), false),
            ("http://127.0.0.1:9000", Some("127.0.0.1:8000"), false),
            ("null", Some("lab.example.com"), false),
            ("http://lab.example.com", None, false),
            ("http://lab.example.com/", Some("lab.example.com"), false),
        ];
        for (origin, host, allowed) in cases {
            assert_eq!(
                origin_allowed(origin, host, &none),
                allowed,
                "{origin} to {host:?}"
            );
        }
    }

    #[test]
    fn an_allowed_origin_may_change_things_whatever_the_host() {
        let allowed = AllowedOrigins::new(["https://dash.example.com"]).unwrap();
        assert!(origin_allowed(
            "https://dash.example.com",
            Some("10.0.0.5:8000"),
            &allowed
        ));
        assert!(!origin_allowed(
            "https://evil.example.com",
            Some("10.0.0.5:8000"),
            &allowed
        ));
    }

    #[test]
    fn allowed_origins_must_be_bare_origins() {
        for bad in [
            "dash.example.com",
            "ftp://dash.example.com",
            "https://dash.example.com/",
            "https://dash.example.com/app",
            "https://",
        ] {
            assert!(AllowedOrigins::new([bad]).is_err(), "{bad}");
        }
        assert_eq!(
            parse_origin(" HTTPS://Dash.Example.com:443 ").unwrap(),
            "https://dash.example.com"
        );
    }
}
