//! [`AuthError`]: why a request was refused before its handler ran, with everything the
//! HTTP layer needs to answer it (status, a stable `code`, a message that says what to
//! do, context fields, `WWW-Authenticate`, `Retry-After`), and nothing that ties it to
//! actix.

use serde_json::{Value, json};

use super::jwt::JwtError;
use super::limits::Class;
use super::roles::Role;

/// The realm every `WWW-Authenticate` challenge names.
pub const REALM: &str = "rentabot";

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// 401 `missing_credentials`: the route needs a credential and none was sent.
    #[error(
        "this route needs a credential: send `X-API-Key: KEY` or `Authorization: Bearer KEY` with a key from the service's auth config"
    )]
    MissingCredentials,

    /// 401 `invalid_api_key`: no configured key matches (mistyped, revoked, rotated).
    /// `jwt_shaped` when the value looked like a JWT but the config accepts none.
    #[error("{}", unknown_key_message(*.jwt_shaped))]
    UnknownKey { jwt_shaped: bool },

    /// 401 `malformed_credentials`: a header that cannot hold a credential (empty, not
    /// visible ASCII, too long, another scheme than Bearer, two different credentials).
    #[error("{0}")]
    MalformedCredentials(&'static str),

    /// 401 `invalid_token`: a JWT that does not verify; the reason says which check.
    #[error("the JWT was refused: {0}")]
    InvalidToken(JwtError),

    /// 403 `forbidden`: the caller is known but its role is below the route's.
    #[error(
        "role `{role}` may not `{operation}`: it needs role `{required}` or above; ask an administrator for a key with that role"
    )]
    Forbidden {
        role: Role,
        required: Role,
        operation: &'static str,
    },

    /// 429 `rate_limited`: this caller (or client address) is over its rate for this
    /// class of request.
    #[error(
        "too many {} requests from this caller: retry after {retry_after_secs} s (limits are set by `rate_limit` in the auth config)",
        class.as_str()
    )]
    RateLimited { class: Class, retry_after_secs: u64 },
}

fn unknown_key_message(jwt_shaped: bool) -> &'static str {
    if jwt_shaped {
        "the credential is not a valid API key; it looks like a JWT, but this service accepts no JWTs (its auth config has no `jwt` section)"
    } else {
        "the API key is not valid (mistyped, revoked or rotated): ask an administrator for a current key"
    }
}

impl AuthError {
    /// The HTTP status: 401, 403 or 429.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::MissingCredentials
            | AuthError::UnknownKey { .. }
            | AuthError::MalformedCredentials(_)
            | AuthError::InvalidToken(_) => 401,
            AuthError::Forbidden { .. } => 403,
            AuthError::RateLimited { .. } => 429,
        }
    }

    /// The stable snake_case name clients and tests match on.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingCredentials => "missing_credentials",
            AuthError::UnknownKey { .. } => "invalid_api_key",
            AuthError::MalformedCredentials(_) => "malformed_credentials",
            AuthError::InvalidToken(_) => "invalid_token",
            AuthError::Forbidden { .. } => "forbidden",
            AuthError::RateLimited { .. } => "rate_limited",
        }
    }

    /// Fields for the JSON error body beside `message` and `code`.
    pub fn context(&self) -> Vec<(&'static str, Value)> {
        match self {
            AuthError::InvalidToken(e) => vec![("reason", json!(e.reason()))],
            AuthError::Forbidden {
                role,
                required,
                operation,
            } => vec![
                ("role", json!(role.as_str())),
                ("required_role", json!(required.as_str())),
                ("operation", json!(operation)),
            ],
            AuthError::RateLimited {
                class,
                retry_after_secs,
            } => vec![
                ("class", json!(class.as_str())),
                ("retry_after", json!(retry_after_secs)),
            ],
            _ => Vec::new(),
        }
    }

    /// The `WWW-Authenticate` challenge a 401 must carry (RFC 7235 §3.1; the Bearer
    /// scheme's parameters from RFC 6750 §3). `None` for 403 and 429.
    pub fn www_authenticate(&self) -> Option<String> {
        let description = match self {
            AuthError::MissingCredentials => return Some(format!("Bearer realm=\"{REALM}\"")),
            AuthError::UnknownKey { .. } => "unknown API key",
            AuthError::MalformedCredentials(_) => "malformed credential",
            AuthError::InvalidToken(e) => e.reason(),
            AuthError::Forbidden { .. } | AuthError::RateLimited { .. } => return None,
        };
        Some(format!(
            "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{description}\""
        ))
    }

    /// Seconds for the `Retry-After` header of a 429.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            AuthError::RateLimited {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_error() -> Vec<AuthError> {
        vec![
            AuthError::MissingCredentials,
            AuthError::UnknownKey { jwt_shaped: false },
            AuthError::UnknownKey { jwt_shaped: true },
            AuthError::MalformedCredentials("the X-API-Key header is empty: put the API key in it"),
            AuthError::InvalidToken(JwtError::Expired),
            AuthError::Forbidden {
                role: Role::User,
                required: Role::Operator,
                operation: "force_unlock",
            },
            AuthError::RateLimited {
                class: Class::Write,
                retry_after_secs: 3,
            },
        ]
    }

    #[test]
    fn each_error_has_its_status_code_and_challenge() {
        let got: Vec<_> = every_error()
            .iter()
            .map(|e| {
                (
                    e.status(),
                    e.code(),
                    e.www_authenticate().is_some(),
                    e.retry_after(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (401, "missing_credentials", true, None),
                (401, "invalid_api_key", true, None),
                (401, "invalid_api_key", true, None),
                (401, "malformed_credentials", true, None),
                (401, "invalid_token", true, None),
                (403, "forbidden", false, None),
                (429, "rate_limited", false, Some(3)),
            ]
        );
    }

    #[test]
    fn challenges_follow_rfc_6750() {
        assert_eq!(
            AuthError::MissingCredentials.www_authenticate().unwrap(),
            "Bearer realm=\"rentabot\""
        );
        assert_eq!(
            AuthError::InvalidToken(JwtError::Expired)
                .www_authenticate()
                .unwrap(),
            "Bearer realm=\"rentabot\", error=\"invalid_token\", error_description=\"expired\""
        );
        // Each parameter is a quoted-string, which may not hold a quote or a backslash.
        for e in every_error() {
            let Some(challenge) = e.www_authenticate() else {
                continue;
            };
            let params = challenge.strip_prefix("Bearer ").unwrap();
            for param in params.split(", ") {
                let (_, value) = param.split_once('=').unwrap();
                let inner = value.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
                assert!(
                    inner.is_some_and(|v| !v.contains(['"', '\\'])),
                    "{challenge}"
                );
            }
        }
    }

    #[test]
    fn messages_say_what_to_do_and_context_names_the_rule() {
        let forbidden = &every_error()[5];
        assert_eq!(
            forbidden.to_string(),
            "role `user` may not `force_unlock`: it needs role `operator` or above; ask an administrator for a key with that role"
        );
        assert_eq!(
            forbidden.context(),
            vec![
                ("role", json!("user")),
                ("required_role", json!("operator")),
                ("operation", json!("force_unlock")),
            ]
        );
        let limited = &every_error()[6];
        assert!(limited.to_string().contains("retry after 3 s"));
        assert_eq!(
            limited.context(),
            vec![("class", json!("write")), ("retry_after", json!(3))]
        );
        assert!(every_error()[2].to_string().contains("no `jwt` section"));
        assert_eq!(
            AuthError::InvalidToken(JwtError::WrongAudience).context(),
            vec![("reason", json!("wrong_audience"))]
        );
    }
}
