//! Reading what the caller sent: query strings, the lock-token header, TTLs, bodies.
//!
//! Parsed by hand rather than with actix extractors so that every mistake becomes an
//! [`ApiError`] with the 1.0 body and a message that says what to fix.

use actix_web::HttpRequest;
use actix_web::web::{Bytes, Payload};
use serde_json::Value;

use super::error::ApiError;
use crate::domain::{ResourceId, Ttl};

/// The header that may carry the lock token instead of `?lock-token=`.
pub const LOCK_TOKEN_HEADER: &str = "X-Lock-Token";

/// A decoded query string, keeping repeated keys (`?tag=a&tag=b`).
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(req: &HttpRequest) -> Result<Query, ApiError> {
        serde_urlencoded::from_str(req.query_string())
            .map(Query)
            .map_err(|e| {
                ApiError::bad_request(
                    "invalid_query",
                    format!("the query string is not valid: {e}"),
                )
            })
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }
}

/// A resource id from the path or the query: decimal digits only (no sign, no spaces).
pub fn resource_id(raw: &str) -> Result<ResourceId, ApiError> {
    let digits_only = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit());
    let parsed = if digits_only { raw.parse().ok() } else { None };
    parsed.ok_or_else(|| {
        ApiError::bad_request(
            "invalid_resource_id",
            format!("resource id must be a positive integer, got {raw:?}"),
        )
        .with("resource_id", raw)
    })
}

/// The caller's lock token: `?lock-token=` (1.0), else the `X-Lock-Token` header.
pub fn lock_token(req: &HttpRequest, query: &Query) -> Option<String> {
    query.get("lock-token").map(str::to_owned).or_else(|| {
        req.headers()
            .get(LOCK_TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    })
}

/// A TTL as JSON gives it. Like 1.0 (pydantic) it accepts `30`, `30.0` and `"30"`; unlike
/// 1.0 it refuses zero, negative, fractional and absurdly large values instead of granting
/// a lock that never lasted or answering 500.
pub fn ttl_from_json(field: &'static str, value: &Value) -> Result<Ttl, ApiError> {
    let secs = match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 1.0 && *f <= Ttl::MAX_SECS as f64)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    secs.and_then(|s| Ttl::from_secs(s).ok())
        .ok_or_else(|| invalid_ttl(field, value.clone()))
}

/// A TTL from a query parameter (`additional-ttl`).
pub fn ttl_from_query(field: &'static str, raw: &str) -> Result<Ttl, ApiError> {
    raw.trim()
        .parse::<u64>()
        .ok()
        .and_then(|s| Ttl::from_secs(s).ok())
        .ok_or_else(|| invalid_ttl(field, Value::String(raw.to_owned())))
}

fn invalid_ttl(field: &'static str, given: Value) -> ApiError {
    ApiError::bad_request(
        "invalid_ttl",
        format!(
            "{field} must be a whole number of seconds between 1 and {}, got {given}",
            Ttl::MAX_SECS
        ),
    )
    .with(field, given)
}

/// The most a request body may hold: actix's default for `Bytes`, kept as it was. A lock
/// body (`{"ttl": 3600}`) is a few bytes.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Reads the request body, up to [`MAX_BODY_BYTES`].
///
/// # Errors
/// `BodyTooLarge` (413) over the limit; `BadRequest` when the body cannot be read (the
/// client broke off mid-body, a malformed chunked encoding).
pub async fn read_body(payload: Payload) -> Result<Bytes, ApiError> {
    match payload.to_bytes_limited(MAX_BODY_BYTES).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(e)) => Err(ApiError::bad_request(
            "invalid_body",
            format!("the request body could not be read: {e}"),
        )),
        Err(_over_limit) => Err(ApiError::BodyTooLarge {
            limit: MAX_BODY_BYTES,
        }),
    }
}

/// The optional lock body `{"ttl": seconds}`. No body, an empty body, `{}` and
/// `{"ttl": null}` all mean the default (3600 s). The content type is not checked:
/// 1.0 clients send this body with and without one.
pub fn lock_ttl(body: &Bytes) -> Result<Ttl, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Ttl::DEFAULT);
    }
    let json: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            "invalid_body",
            format!("the request body must be JSON such as {{\"ttl\": 600}}: {e}"),
        )
    })?;
    let Value::Object(fields) = json else {
        return Err(ApiError::bad_request(
            "invalid_body",
            "the request body must be a JSON object such as {\"ttl\": 600}",
        ));
    };
    match fields.get("ttl") {
        None | Some(Value::Null) => Ok(Ttl::DEFAULT),
        Some(value) => ttl_from_json("ttl", value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lock_body_ttl_defaults_when_absent() {
        for body in ["", "  \n", "{}", "{\"ttl\": null}", "{\"other\": 1}"] {
            assert_eq!(
                lock_ttl(&Bytes::from(body)).unwrap(),
                Ttl::DEFAULT,
                "{body:?}"
            );
        }
    }

    #[test]
    fn lock_body_ttl_accepts_what_pydantic_accepted() {
        for body in ["{\"ttl\": 30}", "{\"ttl\": 30.0}", "{\"ttl\": \"30\"}"] {
            assert_eq!(
                lock_ttl(&Bytes::from(body)).unwrap().as_secs(),
                30,
                "{body:?}"
            );
        }
    }

    #[test]
    fn bad_ttls_are_refused_with_a_message() {
        let cases = [
            (json!(0), "zero"),
            (json!(-5), "negative"),
            (json!(1.5), "fractional"),
            (json!("soon"), "not a number"),
            (json!(1e30), "overflows any deadline"),
            (json!(u64::MAX), "overflows any deadline"),
            (json!(Ttl::MAX_SECS + 1), "over the century cap"),
            (json!(true), "not a number"),
            (json!([30]), "not a number"),
        ];
        for (value, why) in cases {
            let err = ttl_from_json("ttl", &value).expect_err(why);
            assert!(
                err.to_string().starts_with("ttl must be a whole number"),
                "{why}: {err}"
            );
        }
    }

    #[test]
    fn bad_bodies_are_refused_with_a_message() {
        for body in ["{", "[1]", "30", "ttl=30"] {
            let err = lock_ttl(&Bytes::from(body)).expect_err(body);
            assert_eq!(err.code(), "invalid_body", "{body}");
        }
    }

    #[test]
    fn query_ttl_refuses_non_positive_and_overflowing_values() {
        assert_eq!(
            ttl_from_query("additional-ttl", "60").unwrap().as_secs(),
            60
        );
        for raw in ["0", "-1", "abc", "", "1e3", "99999999999999999999999"] {
            assert!(ttl_from_query("additional-ttl", raw).is_err(), "{raw:?}");
        }
    }
}
