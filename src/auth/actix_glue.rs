//! The only part of `auth` that knows actix: reading a request's credentials and
//! client address.

use std::net::IpAddr;

use actix_web::dev::ServiceRequest;
use actix_web::http::header::{AUTHORIZATION, HeaderMap, HeaderName};

use super::error::AuthError;
use super::keys::Credentials;

/// The `X-API-Key` header.
pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The request's credentials. A repeated header is refused: which copy a proxy or the
/// server would read is not well defined.
///
/// # Errors
/// [`AuthError::MalformedCredentials`], as [`Credentials::from_headers`], or for a
/// repeated header.
pub fn credentials(headers: &HeaderMap) -> Result<Credentials<'_>, AuthError> {
    let one = |name: &HeaderName, repeated: &'static str| {
        let mut values = headers.get_all(name);
        let first = values.next();
        match values.next() {
            Some(_) => Err(AuthError::MalformedCredentials(repeated)),
            None => Ok(first.map(|v| v.as_bytes())),
        }
    };
    let key = one(&X_API_KEY, "the X-API-Key header is repeated: send it once")?;
    let authorization = one(
        &AUTHORIZATION,
        "the Authorization header is repeated: send it once",
    )?;
    Credentials::from_headers(key, authorization)
}

/// The address rate limits count an anonymous request against: the TCP peer.
///
/// Behind a reverse proxy every request has the proxy's address; forwarded headers
/// (`X-Forwarded-For`) are not trusted here, since any client can send them. `None` for
/// a request without a peer (a test request), which the caller may count as
/// `0.0.0.0`.
pub fn client_ip(req: &ServiceRequest) -> Option<IpAddr> {
    req.peer_addr().map(|a| a.ip())
}

/// The path the router matches (percent-escapes of unreserved characters decoded), which
/// is what [`rules::find`](super::rules::find) must be given, not the raw request target.
pub fn router_path(req: &ServiceRequest) -> &str {
    req.match_info().as_str()
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn credentials_are_read_from_either_header_and_repeats_are_refused() {
        let mut headers = HeaderMap::new();
        assert_eq!(credentials(&headers), Ok(Credentials::None));
        headers.insert(X_API_KEY, HeaderValue::from_static("0123456789abcdef"));
        assert_eq!(
            credentials(&headers),
            Ok(Credentials::ApiKey("0123456789abcdef"))
        );
        headers.append(X_API_KEY, HeaderValue::from_static("fedcba9876543210"));
        assert_eq!(
            credentials(&headers),
            Err(AuthError::MalformedCredentials(
                "the X-API-Key header is repeated: send it once"
            ))
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer 0123456789abcdef"),
        );
        assert_eq!(
            credentials(&headers),
            Ok(Credentials::Bearer("0123456789abcdef"))
        );
    }

    #[test]
    fn the_router_path_has_unreserved_escapes_decoded() {
        // `%6C` is `l`: actix routes this to the lock route, so the rule must be looked
        // up on the decoded path, or an escape would dodge the table.
        let req = TestRequest::post()
            .uri("/api/v1/resources/1/%6Cock")
            .to_srv_request();
        assert_eq!(req.path(), "/api/v1/resources/1/%6Cock");
        assert_eq!(router_path(&req), "/api/v1/resources/1/lock");
        assert_eq!(
            super::super::rules::find("POST", router_path(&req)).map(|r| r.operation),
            Some("lock")
        );
    }
}
