//! [`ApiError`]: every refusal, mapped to its 1.0 status code and body.
//!
//! The body is a JSON object of context fields, then `message` (the 1.0 text, which
//! clients may match on), then `code`, a stable snake_case name added by rentabot.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::{Map, Value, json};

use super::dto::ResourceView;
use crate::domain::{DomainError, TokenUse};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The broker refused: 404, 403 or 400 as 1.0 answered.
    #[error(transparent)]
    Domain(#[from] DomainError),

    /// 404: no route serves this method and path.
    #[error("no route for {method} {path}")]
    NoRoute { method: String, path: String },

    /// 405: the path exists, but not for this method.
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },

    /// 413: the request body is over `limit` bytes. Answered here rather than by
    /// actix's extractor, whose refusal is plain text: every error body is JSON.
    #[error("the request body is over {limit} bytes")]
    BodyTooLarge { limit: usize },

    /// 400: a parameter, header or body the caller must fix. `message` says how.
    #[error("{message}")]
    BadRequest {
        message: String,
        code: &'static str,
        context: Vec<(&'static str, Value)>,
    },
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
            code,
            context: Vec::new(),
        }
    }

    /// Adds a context field to a `BadRequest`.
    pub fn with(mut self, key: &'static str, value: impl Into<Value>) -> Self {
        if let ApiError::BadRequest { context, .. } = &mut self {
            context.push((key, value.into()));
        }
        self
    }

    /// The stable name clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } => code,
            ApiError::NoRoute { .. } => "no_route",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::BodyTooLarge { .. } => "body_too_large",
            ApiError::Domain(e) => match e {
                DomainError::ResourceNotFound(_) | DomainError::NameNotFound(_) => {
                    "resource_not_found"
                }
                DomainError::NoTagMatch(_) => "no_tag_match",
                DomainError::AllMatchesLocked(_) => "all_matches_locked",
                DomainError::AlreadyLocked(_) => "already_locked",
                DomainError::NotLocked(..) => "not_locked",
                DomainError::InvalidToken { .. } => "invalid_lock_token",
                DomainError::TtlAboveMax { .. } => "ttl_above_max",
                DomainError::TotalAboveMax { .. } => "total_above_max",
            },
        }
    }

    /// The 1.0 message and context fields.
    fn message_and_context(&self) -> (String, Vec<(&'static str, Value)>) {
        let e = match self {
            ApiError::BadRequest {
                message, context, ..
            } => return (message.clone(), context.clone()),
            ApiError::NoRoute { method, path } => {
                return (
                    format!(
                        "Not Found: no route for {method} {path}; the API is described at /docs"
                    ),
                    vec![("path", json!(path))],
                );
            }
            ApiError::MethodNotAllowed { method, path } => {
                return (
                    format!(
                        "Method Not Allowed: {method} is not served on {path}; the API is described at /docs"
                    ),
                    vec![("path", json!(path)), ("method", json!(method))],
                );
            }
            ApiError::BodyTooLarge { limit } => {
                return (
                    format!(
                        "the request body must be at most {limit} bytes: a lock body is {{\"ttl\": seconds}}"
                    ),
                    vec![("limit", json!(limit))],
                );
            }
            ApiError::Domain(e) => e,
        };
        match e {
            DomainError::ResourceNotFound(id) => (
                "Resource not found".into(),
                vec![("resource_id", json!(id.get()))],
            ),
            DomainError::NameNotFound(name) => (
                "Resource not found".into(),
                vec![("resource_name", json!(name))],
            ),
            DomainError::NoTagMatch(tags) => (
                "No resource found matching the tag(s)".into(),
                vec![("tags", json!(tags))],
            ),
            DomainError::AllMatchesLocked(tags) => (
                "No available resource found matching the tag(s)".into(),
                vec![("tags", json!(tags))],
            ),
            DomainError::AlreadyLocked(id) => (
                "Cannot lock the requested resource, resource is already locked".into(),
                vec![("resource_id", json!(id.get()))],
            ),
            DomainError::NotLocked(id, used_for) => (
                match used_for {
                    TokenUse::Unlock => "Resource is already unlocked",
                    TokenUse::Extend => "Cannot extend lock on unlocked resource",
                }
                .into(),
                vec![("resource_id", json!(id.get()))],
            ),
            DomainError::InvalidToken {
                resource,
                provided,
                used_for,
            } => (
                match used_for {
                    TokenUse::Unlock => "Cannot unlock resource, the lock token is not valid.",
                    TokenUse::Extend => "Cannot extend lock, the lock token is not valid.",
                }
                .into(),
                // 1.0 echoed the holder's real token here; the view is redacted.
                vec![
                    ("resource", json!(ResourceView::redacted(resource))),
                    ("invalid-lock-token", json!(provided)),
                ],
            ),
            DomainError::TtlAboveMax { id, ttl, max } => (
                format!(
                    "Requested TTL ({}s) exceeds maximum allowed duration ({}s)",
                    ttl.as_secs(),
                    max.as_secs()
                ),
                vec![
                    ("resource_id", json!(id.get())),
                    ("ttl", json!(ttl.as_secs())),
                    ("max_lock_duration", json!(max.as_secs())),
                ],
            ),
            DomainError::TotalAboveMax {
                id,
                total_secs,
                max,
            } => (
                format!(
                    "Total lock duration ({total_secs}s) would exceed maximum allowed ({}s)",
                    max.as_secs()
                ),
                vec![
                    ("resource_id", json!(id.get())),
                    ("total_duration", json!(total_secs)),
                    ("max_lock_duration", json!(max.as_secs())),
                ],
            ),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::NoRoute { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Domain(e) => match e {
                DomainError::ResourceNotFound(_)
                | DomainError::NameNotFound(_)
                | DomainError::NoTagMatch(_) => StatusCode::NOT_FOUND,
                DomainError::AllMatchesLocked(_)
                | DomainError::AlreadyLocked(_)
                | DomainError::NotLocked(..)
                | DomainError::InvalidToken { .. } => StatusCode::FORBIDDEN,
                DomainError::TtlAboveMax { .. } | DomainError::TotalAboveMax { .. } => {
                    StatusCode::BAD_REQUEST
                }
            },
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (message, context) = self.message_and_context();
        let mut body = Map::new();
        for (key, value) in context {
            body.insert(key.to_owned(), value);
        }
        body.insert("message".into(), Value::String(message));
        body.insert("code".into(), Value::String(self.code().into()));
        HttpResponse::build(self.status_code()).json(Value::Object(body))
    }
}
