//! Reading what the caller sent: query strings, the lock-token header, TTLs, bodies.
//!
//! Parsed by hand rather than with actix extractors so that every mistake becomes an
//! [`ApiError`] with the 1.0 body and a message that says what to fix.
//!
//! Every endpoint documents what it takes with one type per request part: an
//! `IntoParams` type for its query, a `ToSchema` type for its body. The names those
//! types document are the only ones accepted ([`Known`] and [`Fields`] read them from the
//! generated schema), and each field's schema comes from [`schema`], written beside the
//! parser of that kind of value: so the OpenAPI document and the parser cannot disagree
//! on what a request may name, and are checked on values by schemathesis
//! (`tests/schemathesis.sh`).

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::sync::LazyLock;
use std::task::Poll;
use std::time::Duration;

use actix_web::HttpRequest;
use actix_web::http::header;
use actix_web::web::{Bytes, Payload};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::{RefOr, Required};
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use crate::domain::tags::{MAX_TAGS_PER_CRITERIA, check_tags};
use crate::domain::{
    Criteria, Expr, Group, LockMeta, LockTerms, Priority, ResourceId, Timestamp, Ttl, descriptor,
};

/// The header that may carry the lock token instead of `?lock-token=`.
pub const LOCK_TOKEN_HEADER: &str = "X-Lock-Token";

/// A decoded query string, keeping repeated keys (`?tag=a&tag=b`).
pub struct Query(Vec<(String, String)>);

impl Query {
    /// The query, whatever it names (for endpoints that ignore unknown parameters, as
    /// 1.0 did on reads).
    ///
    /// # Errors
    /// A query string that cannot be decoded.
    pub fn parse(req: &HttpRequest) -> Result<Query, ApiError> {
        if req.query_string().is_empty() {
            return Ok(Query(Vec::new()));
        }
        serde_urlencoded::from_str(req.query_string())
            .map(Query)
            .map_err(|e| {
                ApiError::bad_request(
                    "invalid_query",
                    format!("the query string is not valid: {e}"),
                )
            })
    }

    /// The query of a request that must name only the parameters in `known`, each once
    /// unless it is a list.
    ///
    /// # Errors
    /// A 400 naming the parameter: unknown (with the known ones), or repeated.
    pub fn strict(req: &HttpRequest, known: &Known) -> Result<Query, ApiError> {
        let query = Query::parse(req)?;
        known.check(&query)?;
        Ok(query)
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

    /// Every key and value, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &String)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// The query parameters one endpoint takes, read from its `IntoParams` type: the
/// documented names, and which of them are lists (may be repeated). Build it once, in a
/// `static` (`LazyLock::new(Known::of::<ExtendQuery>)`): it walks the schema.
pub struct Known {
    names: Vec<String>,
    lists: Vec<String>,
}

impl Known {
    pub fn of<P: IntoParams>() -> Known {
        let mut known = Known {
            names: Vec::new(),
            lists: Vec::new(),
        };
        for parameter in P::into_params(|| None) {
            if !matches!(parameter.parameter_in, ParameterIn::Query) {
                continue;
            }
            if is_array(parameter.schema.as_ref()) {
                known.lists.push(parameter.name.clone());
            }
            known.names.push(parameter.name);
        }
        known
    }

    /// A query that names nothing.
    pub fn none() -> Known {
        Known {
            names: Vec::new(),
            lists: Vec::new(),
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// Whether `query` names any of these parameters.
    pub fn is_named_in(&self, query: &Query) -> bool {
        query.keys().any(|k| self.names.iter().any(|n| n == k))
    }

    /// Refuses a parameter not in the list, and a second value of one that is not a list.
    ///
    /// # Errors
    /// A 400 whose body names the `parameter` (and for an unknown one, the `known` ones).
    pub fn check(&self, query: &Query) -> Result<(), ApiError> {
        let mut seen: Vec<&str> = Vec::new();
        for key in query.keys() {
            if !self.names.iter().any(|n| n == key) {
                return Err(self.unknown(key));
            }
            if seen.contains(&key) && !self.lists.iter().any(|n| n == key) {
                return Err(repeated(key));
            }
            seen.push(key);
        }
        Ok(())
    }

    /// Refuses a second value of a parameter that is not a list, and ignores the names
    /// it does not know (for reads, where 1.0 ignored them).
    ///
    /// # Errors
    /// A 400 `repeated_parameter` naming it.
    pub fn check_repeats(&self, query: &Query) -> Result<(), ApiError> {
        let mut seen: Vec<&str> = Vec::new();
        for key in query.keys() {
            if !self.names.iter().any(|n| n == key) {
                continue;
            }
            if seen.contains(&key) && !self.lists.iter().any(|n| n == key) {
                return Err(repeated(key));
            }
            seen.push(key);
        }
        Ok(())
    }

    fn unknown(&self, key: &str) -> ApiError {
        let takes = if self.names.is_empty() {
            "this request takes no query parameters".to_owned()
        } else {
            format!("the parameters here are {}", self.names.join(", "))
        };
        let hint = hint(key, &self.names)
            .map(|h| format!("; {h}"))
            .unwrap_or_default();
        ApiError::bad_request(
            "unknown_parameter",
            format!("unknown query parameter {key:?}: {takes}{hint}"),
        )
        .with("parameter", key)
        .with("known", serde_json::json!(self.names))
    }
}

/// A query parameter of the document: optional, with `schema` from [`schema`]. Query
/// types implement `IntoParams` by listing these, rather than deriving it, so that each
/// parameter's schema is the one its parser is written against (a derived parameter
/// with `schema_with` loses its description and whether it is required).
pub fn param(name: &str, description: &str, schema: Schema) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .description(Some(description))
        .required(Required::False)
        .schema(Some(schema))
        .build()
}

/// A [`param`] the request must give.
pub fn required_param(name: &str, description: &str, schema: Schema) -> Parameter {
    let mut parameter = param(name, description, schema);
    parameter.required = Required::True;
    parameter
}

fn repeated(key: &str) -> ApiError {
    ApiError::bad_request(
        "repeated_parameter",
        format!("{key} may be given only once"),
    )
    .with("parameter", key)
}

fn is_array(schema: Option<&RefOr<Schema>>) -> bool {
    matches!(schema, Some(RefOr::T(Schema::Array(_))))
}

/// What to say about an unknown name: where a lock token goes, or the known name it is
/// probably a typo of (`tll` for `ttl`, `wiat` for `wait`).
fn hint(given: &str, known: &[String]) -> Option<String> {
    let squashed: String = given
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase();
    if matches!(squashed.as_str(), "locktoken" | "token" | "locktokens")
        && !known.iter().any(|k| k == "lock_tokens")
    {
        return Some(format!(
            "the lock token goes in ?lock-token=TOKEN (with a hyphen) or in the {LOCK_TOKEN_HEADER} header"
        ));
    }
    known
        .iter()
        .map(|k| (edit_distance(&given.to_ascii_lowercase(), k), k))
        .filter(|(d, k)| *d <= 2 && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| format!("did you mean {k:?}?"))
}

/// Levenshtein distance, counting a swap of two neighbours as one edit (`wiat`, `wait`).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

/// A 400 for query parameter `parameter`, whose value `given` is not `accepted`.
pub fn invalid_parameter(parameter: &str, given: &str, accepted: &str) -> ApiError {
    ApiError::bad_request(
        "invalid_parameter",
        format!("{parameter} must be {accepted}, got {given:?}"),
    )
    .with("parameter", parameter.to_owned())
    .with("value", given)
}

/// Query parameter `parameter`: one of a fixed set of words; `None` when absent.
pub fn query_choice<T: Copy>(
    query: &Query,
    parameter: &str,
    words: &[(&str, T)],
) -> Result<Option<T>, ApiError> {
    let Some(raw) = query.get(parameter) else {
        return Ok(None);
    };
    match words.iter().find(|(word, _)| *word == raw) {
        Some(&(_, value)) => Ok(Some(value)),
        None => {
            let names: Vec<&str> = words.iter().map(|(w, _)| *w).collect();
            let accepted = match names.split_last() {
                Some((last, [])) => (*last).to_owned(),
                Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
                None => String::new(),
            };
            Err(invalid_parameter(parameter, raw, &accepted))
        }
    }
}

/// Query parameter `parameter`: `true` or `false`; `None` when absent.
pub fn query_flag(query: &Query, parameter: &str) -> Result<Option<bool>, ApiError> {
    query_choice(query, parameter, &[("true", true), ("false", false)])
}

/// Query parameter `parameter`: a whole number (digits only) in `range`; `None` when
/// absent.
pub fn query_number(
    query: &Query,
    parameter: &str,
    range: std::ops::RangeInclusive<usize>,
) -> Result<Option<usize>, ApiError> {
    let Some(raw) = query.get(parameter) else {
        return Ok(None);
    };
    let digits = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| raw.parse().ok())
        .flatten()
        .filter(|n| range.contains(n))
        .map(Some)
        .ok_or_else(|| {
            let accepted = if *range.end() == usize::MAX {
                format!("a whole number from {}", range.start())
            } else {
                format!("a whole number from {} to {}", range.start(), range.end())
            };
            invalid_parameter(parameter, raw, &accepted)
        })
}

/// A resource id from the path or the query: decimal digits only (no sign, no spaces).
pub fn resource_id(raw: &str) -> Result<ResourceId, ApiError> {
    let digits_only = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit());
    let parsed = if digits_only { raw.parse().ok() } else { None };
    parsed.ok_or_else(|| {
        ApiError::bad_request(
            "invalid_resource_id",
            format!(
                "resource id must be a whole number from 0 to {}, got {raw:?}",
                u32::MAX
            ),
        )
        .with("resource_id", raw)
    })
}

/// The caller's lock token: `?lock-token=` (1.0), or the `X-Lock-Token` header; `None`
/// when neither is given (the broker refuses with a hint on how to pass it).
///
/// # Errors
/// The header given twice, or the query and the header naming different tokens: which
/// one the caller meant is a guess, and a guess must not unlock anything.
pub fn lock_token(req: &HttpRequest, query: &Query) -> Result<Option<String>, ApiError> {
    let mut headers = req.headers().get_all(LOCK_TOKEN_HEADER);
    let from_header = match (headers.next(), headers.next()) {
        (None, _) => None,
        (Some(value), None) => Some(String::from_utf8_lossy(value.as_bytes()).into_owned()),
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "repeated_parameter",
                format!("{LOCK_TOKEN_HEADER} may be given only once"),
            )
            .with("parameter", LOCK_TOKEN_HEADER));
        }
    };
    match (query.get("lock-token"), from_header) {
        (Some(q), Some(h)) if q != h => Err(ApiError::bad_request(
            "conflicting_parameters",
            format!(
                "?lock-token= and the {LOCK_TOKEN_HEADER} header name different tokens: give the token once"
            ),
        )
        .with("parameter", LOCK_TOKEN_HEADER)),
        (Some(q), _) => Ok(Some(q.to_owned())),
        (None, h) => Ok(h),
    }
}

/// A TTL as JSON gives it. Like 1.0 (pydantic) it accepts `30`, `30.0` and `"30"`; unlike
/// 1.0 it refuses zero, negative, fractional and absurdly large values instead of granting
/// a lock that never lasted or answering 500. Documented by [`schema::ttl`].
pub fn ttl_from_json(field: &'static str, value: &Value) -> Result<Ttl, ApiError> {
    whole_number(value)
        .and_then(|s| Ttl::from_secs(s).ok())
        .ok_or_else(|| invalid_ttl(field, value.clone()))
}

/// A TTL from a query parameter (`additional-ttl`, `ttl`). Documented by
/// [`schema::ttl_query`].
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

/// How long a request body may take to arrive when `--body-timeout` is not given.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a request body may take to arrive, from the moment its handler starts to
/// read it: `--body-timeout`. Registered as app data by `app::build`; without it,
/// [`DEFAULT_BODY_TIMEOUT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyTimeout(pub Duration);

impl Default for BodyTimeout {
    fn default() -> Self {
        BodyTimeout(DEFAULT_BODY_TIMEOUT)
    }
}

/// Reads the request body: JSON, up to [`MAX_BODY_BYTES`], within the [`BodyTimeout`].
///
/// # Errors
/// - `BodyTooLarge` (413) when `Content-Length` says more than the limit (refused before
///   reading a byte) or the body turns out larger;
/// - `BodyTimeout` (408) when the whole body has not arrived in time: without it, a
///   client that sends the headers and then trickles (or never sends) the body would
///   hold its connection, and its file descriptor, forever;
/// - `UnsupportedMediaType` (415) for a non-empty body whose `Content-Type` is not JSON:
///   forms and `text/plain` are what a web page of another site can send without asking
///   the browser first;
/// - `BadRequest` when the body cannot be read (the client broke off mid-body, a
///   malformed chunked encoding).
pub async fn read_body(req: &HttpRequest, payload: Payload) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(ApiError::BodyTooLarge {
            limit: MAX_BODY_BYTES,
        });
    }
    let timeout = req.app_data::<BodyTimeout>().copied().unwrap_or_default().0;
    // A small body usually came with the headers: read what is there first, and arm a
    // timer (a timer-wheel entry per request) only for a body still on its way.
    let mut read = std::pin::pin!(payload.to_bytes_limited(MAX_BODY_BYTES));
    let first = std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await;
    let read = match first {
        Poll::Ready(read) => Ok(read),
        Poll::Pending => tokio::time::timeout(timeout, read).await,
    };
    let body = match read {
        Err(_late) => {
            return Err(ApiError::BodyTimeout {
                secs: timeout.as_secs_f64().ceil() as u64,
            });
        }
        Ok(Ok(Ok(body))) => body,
        Ok(Ok(Err(e))) => {
            return Err(ApiError::bad_request(
                "invalid_body",
                format!("the request body could not be read: {e}"),
            ));
        }
        Ok(Err(_over_limit)) => {
            return Err(ApiError::BodyTooLarge {
                limit: MAX_BODY_BYTES,
            });
        }
    };
    if !body.is_empty()
        && let Some(content_type) = req.headers().get(header::CONTENT_TYPE)
        && !is_json(content_type.as_bytes())
    {
        return Err(ApiError::UnsupportedMediaType {
            content_type: String::from_utf8_lossy(content_type.as_bytes()).into_owned(),
        });
    }
    Ok(body)
}

/// `application/json`, or an `application/...+json` type, with any parameters.
fn is_json(content_type: &[u8]) -> bool {
    let essence = content_type
        .split(|b| *b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii()
        .to_ascii_lowercase();
    essence == b"application/json"
        || (essence.starts_with(b"application/") && essence.ends_with(b"+json"))
}

/// The optional lock body `{"ttl": seconds, "holder": "...", "note": "..."}`. No body,
/// an empty body, `{}` and `{"ttl": null}` all mean the default TTL (3600 s) and no
/// metadata.
pub fn lock_terms(body: &Bytes) -> Result<LockTerms, ApiError> {
    Body::parse(body, &LOCK_FIELDS)?.lock_terms()
}

/// A valid lock body, shown when one is not.
pub const LOCK_BODY_EXAMPLE: &str =
    r#"{"ttl": 600, "holder": "https://ci.example.com/job/42", "note": "nightly"}"#;

/// The longest `holder` a lock request may give.
pub const MAX_HOLDER_CHARS: usize = 256;
/// The longest `note` a lock request may give.
pub const MAX_NOTE_CHARS: usize = 1024;

/// Most groups one request may name.
pub const MAX_GROUPS: usize = 32;
/// Most resources one group may ask for.
pub const MAX_QUANTITY: u64 = 10_000;

/// The fields a JSON body may have, read from its `ToSchema` type's properties, and a
/// valid body to show when one is not. Build it once, in a `static`.
pub struct Fields {
    names: Vec<String>,
    example: &'static str,
}

impl Fields {
    pub fn of<T: ToSchema>(example: &'static str) -> Fields {
        let names = match T::schema() {
            RefOr::T(Schema::Object(object)) => object.properties.keys().cloned().collect(),
            _ => Vec::new(),
        };
        Fields { names, example }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    pub fn example(&self) -> &'static str {
        self.example
    }

    /// Refuses a field of `object` that is not one of these; `at` prefixes its name in
    /// the message (`groups[1].`).
    ///
    /// # Errors
    /// A 400 `unknown_field` naming the `field` and the `known` ones.
    pub fn check(&self, at: &str, object: &Map<String, Value>) -> Result<(), ApiError> {
        let Some(unknown) = object.keys().find(|k| !self.names.contains(k)) else {
            return Ok(());
        };
        let hint = hint(unknown, &self.names)
            .map(|h| format!("; {h}"))
            .unwrap_or_default();
        Err(ApiError::bad_request(
            "unknown_field",
            format!(
                "unknown field {at}{unknown:?}: the fields here are {}{hint}",
                self.names.join(", ")
            ),
        )
        .with("field", format!("{at}{unknown}"))
        .with("known", serde_json::json!(self.names)))
    }
}

/// The fields of a lock body (`POST /resources/{id}/lock`).
pub static LOCK_FIELDS: LazyLock<Fields> =
    LazyLock::new(|| Fields::of::<LockRequest>(LOCK_BODY_EXAMPLE));

/// The optional body of `POST /resources/{id}/lock`.
#[derive(ToSchema)]
#[allow(dead_code)] // documentation: read field by field by `Body::lock_terms`
pub struct LockRequest {
    /// Lock lifetime in seconds, 1 to the resource's `max-lock-duration`; default 3600.
    /// Or `?ttl=` (not both).
    #[schema(schema_with = schema::ttl_or_null)]
    ttl: Option<u64>,
    /// Who holds the lock (a job URL, a user), at most 256 characters; shown as
    /// `lock-holder`.
    #[schema(schema_with = schema::holder)]
    holder: Option<String>,
    /// Why, at most 1024 characters; shown as `lock-note`.
    #[schema(schema_with = schema::note)]
    note: Option<String>,
}

/// A JSON object body, read field by field so that each mistake names its field. An
/// empty body is an empty object; a field it does not document is refused.
#[derive(Debug)]
pub struct Body(Map<String, Value>);

impl Body {
    /// The body as an object whose every field is in `fields`.
    ///
    /// # Errors
    /// Not JSON, not an object, a field given twice, or a field `fields` lacks.
    pub fn parse(body: &Bytes, fields: &Fields) -> Result<Body, ApiError> {
        let parsed = Body::read(body, fields.example())?;
        fields.check("", &parsed.0)?;
        Ok(parsed)
    }

    /// The body as an object, whatever its fields (for a caller that checks them
    /// itself); `example` shows a valid body in the error message.
    ///
    /// # Errors
    /// Not JSON, not an object, or a field given twice.
    pub fn read(body: &Bytes, example: &str) -> Result<Body, ApiError> {
        // No body, a blank one and `null` all mean "nothing given", as 1.0 read them.
        let content = body.trim_ascii();
        if content.is_empty() || content == b"null" {
            return Ok(Body(Map::new()));
        }
        let repeated = RefCell::new(None);
        let mut json = serde_json::Deserializer::from_slice(body);
        let parsed = Strict {
            repeated: &repeated,
            path: String::new(),
        }
        .deserialize(&mut json)
        .and_then(|value| json.end().map(|()| value));
        if let Some(field) = repeated.into_inner() {
            return Err(ApiError::bad_request(
                "repeated_field",
                format!("{field} is given twice in the request body: give it once"),
            )
            .with("field", field));
        }
        match parsed {
            Ok(Value::Object(fields)) => Ok(Body(fields)),
            Ok(_) => Err(ApiError::bad_request(
                "invalid_body",
                format!("the request body must be a JSON object such as {example}"),
            )),
            Err(e) => Err(ApiError::bad_request(
                "invalid_body",
                format!("the request body must be JSON such as {example}: {e}"),
            )),
        }
    }

    /// Every field as sent, nulls included (for bodies where null means something).
    pub fn fields(&self) -> &Map<String, Value> {
        &self.0
    }

    /// A field, `None` when absent or null.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.0.get(field).filter(|v| !v.is_null())
    }

    pub fn has(&self, field: &str) -> bool {
        self.get(field).is_some()
    }

    /// A duration in seconds (see [`ttl_from_json`]), or `default`.
    pub fn ttl(&self, field: &'static str, default: Ttl) -> Result<Ttl, ApiError> {
        self.get(field)
            .map_or(Ok(default), |v| ttl_from_json(field, v))
    }

    /// A free-text field of at most `max_chars` characters as sent, trimmed; `None` when
    /// absent or blank. See [`check_text`] for what it may not contain.
    pub fn text(&self, field: &'static str, max_chars: usize) -> Result<Option<String>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(text)) => {
                if text.chars().count() > max_chars {
                    return Err(ApiError::bad_request(
                        "invalid_body",
                        format!("{field} must be at most {max_chars} characters"),
                    )
                    .with("field", field));
                }
                Ok(optional_text(field, text)?.map(str::to_owned))
            }
            Some(other) => Err(ApiError::bad_request(
                "invalid_body",
                format!("{field} must be a string, got {other}"),
            )
            .with("field", field)),
        }
    }

    /// An RFC 3339 date-time with an offset, e.g. `"2026-11-25T14:00:00Z"`. A date
    /// before 1970 is as much in the past as 1970 is. Documented by
    /// [`schema::timestamp_or_null`].
    pub fn timestamp(&self, field: &'static str) -> Result<Option<Timestamp>, ApiError> {
        let Some(value) = self.get(field) else {
            return Ok(None);
        };
        value
            .as_str()
            .and_then(|text| chrono::DateTime::parse_from_rfc3339(text.trim()).ok())
            .map(|t| Some(Timestamp::from_millis(u64::try_from(t.timestamp_millis()).unwrap_or(0))))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_body",
                    format!(
                        "{field} must be an RFC 3339 date-time with an offset, such as \"2026-11-25T14:00:00Z\", got {value}"
                    ),
                )
                .with("field", field)
            })
    }

    /// What a lock request asks for: `ttl` (default 3600), and who is asking: `holder`
    /// (a job URL, a user; at most [`MAX_HOLDER_CHARS`]) and `note` (at most
    /// [`MAX_NOTE_CHARS`]), both optional.
    pub fn lock_terms(&self) -> Result<LockTerms, ApiError> {
        Ok(LockTerms {
            ttl: self.ttl("ttl", Ttl::DEFAULT)?,
            meta: LockMeta {
                holder: self.text("holder", MAX_HOLDER_CHARS)?,
                note: self.text("note", MAX_NOTE_CHARS)?,
                // The broker sets it from the caller: a request cannot name an owner.
                owner: None,
            },
        })
    }

    /// `priority`: 1 (served first) to 10, default 5. Documented by
    /// [`schema::priority_or_null`].
    pub fn priority(&self) -> Result<Priority, ApiError> {
        let Some(value) = self.get("priority") else {
            return Ok(Priority::DEFAULT);
        };
        whole_number(value)
            .and_then(|n| Priority::new(n).ok())
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_priority",
                    format!(
                        "priority must be a whole number from 1 (served first) to 10, got {value}"
                    ),
                )
                .with("priority", value.clone())
            })
    }

    /// A boolean field, default false.
    pub fn flag(&self, field: &'static str) -> Result<bool, ApiError> {
        match self.get(field) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(ApiError::bad_request(
                "invalid_body",
                format!("{field} must be true or false, got {other}"),
            )
            .with(field, other.clone())),
        }
    }

    /// The groups a request asks for: `groups: [{tags|expr, quantity}, ...]`, or the
    /// one-group form `tags` (or `expr`) with `quantity` at the top level. `None` when
    /// the body names no criteria at all.
    pub fn groups(&self) -> Result<Option<Vec<Group>>, ApiError> {
        if let Some(groups) = self.get("groups") {
            if self.has("tags") || self.has("expr") {
                return Err(conflict(
                    "groups",
                    "give either groups, or tags (or expr) with quantity, not both",
                ));
            }
            let Value::Array(list) = groups else {
                return Err(groups_error(
                    "groups must be a list such as [{\"tags\": [\"dut\"], \"quantity\": 2}]",
                ));
            };
            if list.is_empty() || list.len() > MAX_GROUPS {
                return Err(groups_error(format!(
                    "groups must list 1 to {MAX_GROUPS} groups, got {}",
                    list.len()
                )));
            }
            return list
                .iter()
                .enumerate()
                .map(|(i, g)| match g {
                    Value::Object(fields) => {
                        let at = format!("groups[{i}].");
                        GROUP_FIELDS.check(&at, fields)?;
                        group(&at, fields)
                    }
                    _ => Err(groups_error(format!(
                        "groups[{i}] must be an object such as {{\"tags\": [\"dut\"], \"quantity\": 2}}"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some);
        }
        if !self.has("tags") && !self.has("expr") {
            return Ok(None);
        }
        group("", &self.0).map(|g| Some(vec![g]))
    }
}

/// Reads JSON into a [`Value`] like serde_json does, but notes the first object key that
/// appears twice (`{"ttl": 1, "ttl": 9}`, which serde_json would read as 9): which one
/// the caller meant is a guess.
struct Strict<'a> {
    repeated: &'a RefCell<Option<String>>,
    /// Where this value is, for the message (`groups[1].quantity`).
    path: String,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Strict {
            repeated: self.repeated,
            path: format!("{}[{}]", self.path, items.len()),
        })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            let value = map.next_value_seed(Strict {
                repeated: self.repeated,
                path: path.clone(),
            })?;
            if object.contains_key(&key) {
                self.repeated.borrow_mut().get_or_insert(path);
                return Err(de::Error::custom("a field is given twice"));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// Why `text` cannot be a name or a reason, if it cannot: a control character (a newline
/// that forges a log line, a terminal escape), a bidirectional override or isolate (text
/// that reads otherwise than it is), or nothing visible at all (only spaces and
/// zero-width characters). [`schema::visible`] is the same rule as a pattern.
pub fn text_problem(text: &str) -> Option<&'static str> {
    if text.chars().any(char::is_control) {
        Some("must not contain control characters (newlines, tabs, escapes)")
    } else if text.chars().any(is_bidi_control) {
        Some(
            "must not contain bidirectional control characters (U+202A-U+202E, U+2066-U+2069, U+200E, U+200F, U+061C)",
        )
    } else if text.chars().all(is_invisible) {
        Some("must contain a visible character")
    } else {
        None
    }
}

/// Free text that may be left blank: `None` when blank, else the text trimmed, once
/// [`check_text`] passes it (controls count wherever they are, also where trimming would
/// drop them). Documented by [`schema::visible_or_blank`].
///
/// # Errors
/// A 400 naming `field` when [`text_problem`] finds one.
pub fn optional_text<'a>(field: &'static str, text: &'a str) -> Result<Option<&'a str>, ApiError> {
    if text.trim().is_empty() && !text.chars().any(char::is_control) {
        return Ok(None);
    }
    check_text(field, text)?;
    Ok(Some(text.trim()))
}

/// A 400 naming `field` when [`text_problem`] finds one.
pub fn check_text(field: &'static str, text: &str) -> Result<(), ApiError> {
    match text_problem(text) {
        None => Ok(()),
        Some(problem) => Err(ApiError::bad_request(
            "invalid_text",
            format!("{field} {problem}, got {text:?}"),
        )
        .with("field", field)),
    }
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// White space, and the format and filler characters that show nothing.
fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200D}'
                | '\u{2060}'..='\u{2064}'
                | '\u{206A}'..='\u{206F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
        )
}

/// Most tokens one batch unlock may carry.
pub const MAX_BATCH: usize = 1_000;

/// A non-empty list of lock tokens (strings) in `field`.
pub fn token_list(body: &Body, field: &'static str) -> Result<Vec<String>, ApiError> {
    let invalid = |detail: String| {
        ApiError::bad_request(
            "invalid_body",
            format!("{field} must be a list of 1 to {MAX_BATCH} lock tokens (strings): {detail}"),
        )
    };
    let Some(Value::Array(items)) = body.get(field) else {
        return Err(invalid(format!(
            "got {}",
            body.get(field).cloned().unwrap_or(Value::Null)
        )));
    };
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(invalid(format!("got {} tokens", items.len())));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => Ok(s.clone()),
            other => Err(invalid(format!("item {i} is {other}"))),
        })
        .collect()
}

fn groups_error(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_groups", message)
}

/// Two parts of a request that exclude each other, or contradict each other: a rule
/// between fields that a JSON schema does not express, so it has a code of its own.
pub fn conflict(parameter: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request("conflicting_parameters", message).with("parameter", parameter.to_owned())
}

/// The fields of one group.
pub static GROUP_FIELDS: LazyLock<Fields> =
    LazyLock::new(|| Fields::of::<GroupRequest>(r#"{"tags": ["dut"], "quantity": 2}"#));

/// One group of a request: `tags` or `expr`, and `quantity`.
#[derive(ToSchema)]
#[allow(dead_code)] // documentation: read by `group`
pub struct GroupRequest {
    /// Every tag required: a list, or a comma-separated string. Or give `expr`.
    #[schema(schema_with = schema::tags_or_null)]
    tags: Option<Vec<String>>,
    /// A label expression such as `linux && (x86 || arm) && !flaky`, instead of `tags`.
    #[schema(schema_with = schema::expr_or_null)]
    expr: Option<String>,
    /// Resources wanted, 1 to 10000 (default 1).
    #[schema(schema_with = schema::quantity_or_null)]
    quantity: Option<u32>,
}

/// One group from `fields`: `tags` (a list, or a comma-separated string) or `expr`, and
/// `quantity` (default 1). `at` prefixes field names in messages (`groups[1].`).
fn group(at: &str, fields: &Map<String, Value>) -> Result<Group, ApiError> {
    let get = |f: &str| fields.get(f).filter(|v| !v.is_null());
    let criteria = match (get("tags"), get("expr")) {
        (Some(_), Some(_)) => {
            return Err(conflict(
                &format!("{at}expr"),
                format!("{at}tags and {at}expr exclude each other: give one"),
            ));
        }
        (Some(tags), None) => Criteria::Tags(tag_list(&format!("{at}tags"), tags)?),
        (None, Some(Value::String(expr))) => {
            Criteria::Expr(parse_expr(&format!("{at}expr"), expr)?)
        }
        (None, Some(other)) => {
            return Err(groups_error(format!(
                "{at}expr must be a string such as \"arm && !flaky\", got {other}"
            )));
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "no_criterion",
                format!("{at}tags (a list of tags) or {at}expr (a label expression) is required"),
            ));
        }
    };
    let quantity = match get("quantity") {
        None => 1,
        Some(value) => quantity(&format!("{at}quantity"), value)?,
    };
    Ok(Group { criteria, quantity })
}

/// A non-empty tag list: `["a", "b"]` or `"a,b"`; every item names at least one tag
/// (`["ci", ""]` is a mistake, not a list of one). Documented by [`schema::tags`].
fn tag_list(field: &str, value: &Value) -> Result<Vec<String>, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_tags",
            format!(
                "{field} must be a non-empty list of tags such as [\"ci\", \"linux\"], got {value}"
            ),
        )
        .with("tags", value.clone())
    };
    let mut tags: Vec<String> = Vec::new();
    // Every item must name a tag: an empty one is a mistake, not a shorter list.
    let mut add = |raw: &str| -> Result<bool, ApiError> {
        if descriptor::parse_tags(raw).0.is_empty() {
            return Ok(false);
        }
        add_tags(field, &mut tags, raw)?;
        Ok(true)
    };
    let all_name_tags = match value {
        Value::String(s) => add(s)?,
        Value::Array(items) if !items.is_empty() => {
            let mut all = true;
            for item in items {
                all = match item {
                    Value::String(s) => add(s)?,
                    _ => false,
                };
                if !all {
                    break;
                }
            }
            all
        }
        _ => false,
    };
    if all_name_tags {
        Ok(tags)
    } else {
        Err(invalid())
    }
}

/// Adds the tags of `raw` (comma-separated) to a request's tag list `tags`, skipping
/// repeats; a 400 naming `field` once the list would hold more than
/// [`MAX_TAGS_PER_CRITERIA`] tags or a tag is over
/// [`MAX_TAG_BYTES`](crate::domain::tags::MAX_TAG_BYTES). Refused as soon as
/// the limit is passed, before the rest of a hostile list is read.
pub fn add_tags(field: &str, tags: &mut Vec<String>, raw: &str) -> Result<(), ApiError> {
    for tag in descriptor::parse_tags(raw).0 {
        if tags.contains(&tag) {
            continue;
        }
        tags.push(tag);
        if let Err(problem) = check_tags(tags, MAX_TAGS_PER_CRITERIA, "a request's tag list") {
            return Err(ApiError::bad_request(
                "invalid_tags",
                format!("{field}: {problem}; see the limits in the README (Limits)"),
            )
            .with("field", field.to_owned()));
        }
    }
    Ok(())
}

/// A label expression; a syntax error is a 400 that points at the position.
pub fn parse_expr(field: &str, text: &str) -> Result<Expr, ApiError> {
    Expr::parse(text).map_err(|e| {
        ApiError::bad_request("invalid_expr", format!("{field}: {e}"))
            .with("expr", text)
            .with("position", e.position)
    })
}

/// A group's `quantity`, from 1 to [`MAX_QUANTITY`]: a JSON whole number, or the text
/// of a query parameter given as a JSON string. Documented by [`schema::quantity`].
pub fn quantity(field: &str, value: &Value) -> Result<u32, ApiError> {
    whole_number(value)
        .filter(|n| (1..=MAX_QUANTITY).contains(n))
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_quantity",
                format!("{field} must be a whole number from 1 to {MAX_QUANTITY}, got {value}"),
            )
            .with("quantity", value.clone())
        })
}

/// A JSON whole number: `3`, `3.0` or `"3"`.
fn whole_number(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1e15)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The JSON schemas of the values the parsers above accept, for the OpenAPI document
/// (`#[schema(schema_with = ...)]`, `#[param(schema_with = ...)]`). Each says what its
/// parser takes, no more and no less: schemathesis sends what a schema allows and
/// expects it accepted, and what it forbids and expects it refused.
pub mod schema {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{
        ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
    };

    use super::{MAX_BATCH, MAX_GROUPS, MAX_HOLDER_CHARS, MAX_NOTE_CHARS, MAX_QUANTITY};
    use crate::api::maintenance::MAX_REASON_CHARS;
    use crate::domain::Ttl;

    /// White space as Rust's `char::is_whitespace` (and `str::trim`) know it, for
    /// patterns: a regex's `\s` is a different set.
    pub const WHITE_SPACE: &str =
        r"\t\n\x0b\x0c\r\x85 \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

    /// Control characters and bidirectional controls: refused anywhere in a name,
    /// holder, note or reason ([`super::text_problem`]).
    const BANNED: &str = r"\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069";
    /// White space that is not a control character (Rust's `char::is_whitespace`).
    const SPACE: &str = r" \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
    /// The rest of [`super::is_invisible`].
    const INVISIBLE: &str = r"\xad\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200d\u2060-\u2064\u206a-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0";

    /// Text with something visible and nothing banned.
    pub fn visible() -> String {
        format!("^[^{BANNED}]*[^{BANNED}{SPACE}{INVISIBLE}][^{BANNED}]*$")
    }

    /// Like [`visible`], or blank (read as absent).
    pub fn visible_or_blank() -> String {
        format!("^([{SPACE}]*|[^{BANNED}]*[^{BANNED}{SPACE}{INVISIBLE}][^{BANNED}]*)$")
    }

    /// Contains a tag: a character that is neither white space nor a comma.
    fn names_a_tag() -> String {
        format!("[^,{WHITE_SPACE}]")
    }

    fn null() -> Schema {
        ObjectBuilder::new().schema_type(Type::Null).build().into()
    }

    fn or_null(schema: Schema) -> Schema {
        let mut variants = match schema {
            Schema::OneOf(one_of) => one_of.items,
            other => vec![other.into()],
        };
        variants.push(null().into());
        let mut builder = OneOfBuilder::new();
        for variant in variants {
            builder = builder.item(variant);
        }
        builder.build().into()
    }

    /// `true` or `false` ([`super::query_flag`]).
    pub fn boolean() -> Schema {
        ObjectBuilder::new()
            .schema_type(Type::Boolean)
            .build()
            .into()
    }

    /// Any text.
    pub fn string() -> Schema {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .build()
            .into()
    }

    /// One of `words` ([`super::query_choice`]).
    pub fn words(words: &[&str]) -> Schema {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(words.iter().copied()))
            .build()
            .into()
    }

    /// A list of values given by repeating a query parameter.
    pub fn repeated(item: Schema) -> Schema {
        ArrayBuilder::new().items(RefOr::T(item)).build().into()
    }

    /// A whole number in `min..=max` ([`super::query_number`]).
    pub fn integer(min: u64, max: u64) -> Schema {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(min as f64))
            .maximum(Some(max as f64))
            .build()
            .into()
    }

    /// A whole number as a JSON number or a string of digits, `min..=max` (see
    /// `whole_number`). The string form is documented up to nine digits: its parser takes
    /// longer ones up to `max`, which a pattern cannot bound exactly.
    fn whole(min: u64, max: u64, description: &str) -> Schema {
        let digits = if min == 0 { "[0-9]" } else { "[1-9]" };
        let string = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(if max < 10 {
                format!("^[{min}-{max}]$")
            } else if max == 10 {
                format!("^([{min}-9]|10)$")
            } else {
                format!(
                    "^{digits}[0-9]{{0,{}}}$",
                    (max.ilog10() as usize).min(9) - 1
                )
            }))
            .build();
        OneOfBuilder::new()
            .item(integer(min, max))
            .item(string)
            .description(Some(description))
            .build()
            .into()
    }

    /// A duration in whole seconds ([`super::ttl_from_json`]).
    pub fn ttl() -> Schema {
        whole(
            1,
            Ttl::MAX_SECS,
            "Seconds, 1 to 3153600000 (100 years): a number, or a string of digits",
        )
    }

    pub fn ttl_or_null() -> Schema {
        or_null(ttl())
    }

    /// A duration in a query parameter ([`super::ttl_from_query`]).
    pub fn ttl_query() -> Schema {
        integer(1, Ttl::MAX_SECS)
    }

    pub fn quantity() -> Schema {
        whole(
            1,
            MAX_QUANTITY,
            "1 to 10000: a number, or a string of digits",
        )
    }

    pub fn quantity_or_null() -> Schema {
        or_null(quantity())
    }

    pub fn quantity_query() -> Schema {
        integer(1, MAX_QUANTITY)
    }

    pub fn priority_or_null() -> Schema {
        or_null(whole(
            1,
            10,
            "1 (served first) to 10: a number, or a string of digits",
        ))
    }

    /// A resource id in a query parameter ([`super::resource_id`]).
    pub fn resource_id() -> Schema {
        integer(0, u64::from(u32::MAX))
    }

    fn text(max_chars: usize, pattern: String) -> Schema {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(max_chars))
            .pattern(Some(pattern))
            .build()
            .into()
    }

    pub fn holder() -> Schema {
        or_null(text(MAX_HOLDER_CHARS, visible_or_blank()))
    }

    pub fn note() -> Schema {
        or_null(text(MAX_NOTE_CHARS, visible_or_blank()))
    }

    /// A required reason: something visible, at most 1024 characters.
    pub fn reason() -> Schema {
        text(MAX_REASON_CHARS, visible())
    }

    /// A resource name: something visible ([`super::text_problem`]).
    pub fn name() -> Schema {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(visible()))
            .build()
            .into()
    }

    /// An RFC 3339 date-time ([`super::Body::timestamp`]).
    pub fn timestamp() -> Schema {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .build()
            .into()
    }

    /// [`timestamp`], or `null`.
    pub fn timestamp_or_null() -> Schema {
        or_null(timestamp())
    }

    /// A tag list (`tag_list`): a comma-separated string, or a list of them.
    pub fn tags() -> Schema {
        let tag_text = || {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(names_a_tag()))
                .build()
        };
        OneOfBuilder::new()
            .item(
                ArrayBuilder::new()
                    .items(tag_text())
                    .min_items(Some(1))
                    .build(),
            )
            .item(tag_text())
            .description(Some(
                "Tags: a list such as [\"ci\", \"linux\"], or a comma-separated string such as \"ci,linux\"",
            ))
            .build()
            .into()
    }

    pub fn tags_or_null() -> Schema {
        or_null(tags())
    }

    /// Tags in a query parameter, repeated: each value names at least one tag (a
    /// comma-separated list may name several).
    pub fn tag_query() -> Schema {
        repeated(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(names_a_tag()))
                .build()
                .into(),
        )
    }

    /// A non-empty text (an expression in a list query: blank does not parse).
    pub fn non_empty() -> Schema {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .build()
            .into()
    }

    /// A number of seconds, fractions allowed ([`crate::api::reservations`]'s wait).
    pub fn seconds(max: f64) -> Schema {
        ObjectBuilder::new()
            .schema_type(Type::Number)
            .minimum(Some(0.0))
            .maximum(Some(max))
            .build()
            .into()
    }

    /// A label expression ([`super::parse_expr`]): its grammar is in the README; one
    /// that does not parse is a 400 `invalid_expr` pointing at the position.
    pub fn expr_or_null() -> Schema {
        or_null(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .build()
                .into(),
        )
    }

    pub fn bool_or_null() -> Schema {
        or_null(
            ObjectBuilder::new()
                .schema_type(Type::Boolean)
                .build()
                .into(),
        )
    }

    /// Several groups ([`super::Body::groups`]).
    pub fn groups_or_null() -> Schema {
        or_null(
            ArrayBuilder::new()
                .items(utoipa::openapi::Ref::from_schema_name("GroupRequest"))
                .min_items(Some(1))
                .max_items(Some(MAX_GROUPS))
                .build()
                .into(),
        )
    }

    /// The tokens of a batch unlock ([`super::token_list`]).
    pub fn token_list() -> Schema {
        ArrayBuilder::new()
            .items(ObjectBuilder::new().schema_type(Type::String))
            .min_items(Some(1))
            .max_items(Some(MAX_BATCH))
            .build()
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lock_body_ttl_defaults_when_absent() {
        for body in ["", "  \n", "{}", "{\"ttl\": null}"] {
            assert_eq!(
                lock_terms(&Bytes::from(body)).unwrap().ttl,
                Ttl::DEFAULT,
                "{body:?}"
            );
        }
    }

    #[test]
    fn lock_body_ttl_accepts_what_pydantic_accepted() {
        for body in ["{\"ttl\": 30}", "{\"ttl\": 30.0}", "{\"ttl\": \"30\"}"] {
            assert_eq!(
                lock_terms(&Bytes::from(body)).unwrap().ttl.as_secs(),
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
    fn lock_body_reads_holder_and_note_trimmed_and_blank_as_absent() {
        let terms = lock_terms(&Bytes::from(
            r#"{"ttl": 60, "holder": " https://ci/job/7 ", "note": "flash + soak"}"#,
        ))
        .unwrap();
        assert_eq!(terms.ttl.as_secs(), 60);
        assert_eq!(terms.meta.holder.as_deref(), Some("https://ci/job/7"));
        assert_eq!(terms.meta.note.as_deref(), Some("flash + soak"));
        let blank = lock_terms(&Bytes::from(r#"{"holder": "  ", "note": null}"#)).unwrap();
        assert_eq!(blank.meta, LockMeta::default());
    }

    #[test]
    fn lock_body_refuses_metadata_that_is_not_short_text() {
        let long = "x".repeat(MAX_HOLDER_CHARS + 1);
        for body in [
            r#"{"holder": 7}"#.to_owned(),
            r#"{"note": ["a"]}"#.to_owned(),
            format!(r#"{{"holder": "{long}"}}"#),
        ] {
            let err = lock_terms(&Bytes::from(body.clone())).expect_err(&body);
            assert_eq!(err.code(), "invalid_body", "{body}");
        }
    }

    #[test]
    fn bad_bodies_are_refused_with_a_message() {
        for body in ["{", "[1]", "30", "ttl=30"] {
            let err = lock_terms(&Bytes::from(body)).expect_err(body);
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

    #[test]
    fn text_problem_refuses_controls_bidi_and_invisible_only_text() {
        let refused = [
            ("a\nb", "control"),
            ("a\tb", "control"),
            ("\u{7f}", "control"),
            ("\u{85}", "control"),
            ("a\u{202e}b", "bidirectional"),
            ("a\u{2067}b", "bidirectional"),
            ("\u{200f}x", "bidirectional"),
            ("\u{200b}", "visible"),
            ("\u{feff}\u{00ad}", "visible"),
            ("\u{3000}", "visible"),
            ("", "visible"),
        ];
        for (text, problem) in refused {
            let found = text_problem(text).unwrap_or_else(|| panic!("{text:?} passed"));
            assert!(found.contains(problem), "{text:?}: {found}");
        }
        for text in ["board-1", "Prüfstand 東京", "a\u{200d}b", "👩‍🔬", " x "] {
            assert_eq!(text_problem(text), None, "{text:?}");
        }
    }

    /// The patterns of the document say what `text_problem` says (as a JSON schema
    /// validator reads them: the `regex` crate is what schemathesis's validator uses).
    #[test]
    fn the_documented_text_patterns_agree_with_the_parser() {
        let visible = regex::Regex::new(&schema::visible()).unwrap();
        let blank_or_visible = regex::Regex::new(&schema::visible_or_blank()).unwrap();
        let samples = [
            "",
            " ",
            "x",
            " x ",
            "a\nb",
            "x\n",
            "\n",
            "a\u{202e}b",
            "\u{200b}",
            "\u{200b}x",
            "\u{3000}\u{a0}",
            "\u{85}",
            "\u{9f}",
            "\u{a0}x",
            "\u{1c}",
            "Prüfstand 東京",
            "👩‍🔬",
            "\u{feff}",
            "\u{2060}",
            "\u{2065}",
            "\u{180e}",
            "\u{2800}",
            "a\u{2069}",
        ];
        for text in samples {
            assert_eq!(
                visible.is_match(text),
                text_problem(text).is_none(),
                "visible: {text:?}"
            );
            let blank = text.trim().is_empty() && !text.chars().any(char::is_control);
            assert_eq!(
                blank_or_visible.is_match(text),
                blank || text_problem(text).is_none(),
                "blank or visible: {text:?}"
            );
        }
    }

    #[test]
    fn the_documented_tag_pattern_agrees_with_the_tag_parser() {
        let pattern = schema::tags();
        let utoipa::openapi::schema::Schema::OneOf(one_of) = pattern else {
            panic!("tags: a list or a string")
        };
        let json = serde_json::to_value(&one_of.items[1]).unwrap();
        let names_a_tag = regex::Regex::new(json["pattern"].as_str().unwrap()).unwrap();
        for text in [
            "a", " a ", "a,b", ",", " , ", "", "\u{3000}", "a b", "\u{feff}", ",,x",
        ] {
            assert_eq!(
                names_a_tag.is_match(text),
                !descriptor::parse_tags(text).0.is_empty(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_known_list_reads_names_and_lists_from_the_parameters() {
        struct Sample;
        impl IntoParams for Sample {
            fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
                vec![
                    param("tag", "", schema::tag_query()),
                    param("limit", "", schema::integer(1, 10)),
                ]
            }
        }
        let known = Known::of::<Sample>();
        let query = |q: &str| Query(serde_urlencoded::from_str(q).unwrap());

        assert!(known.check(&query("tag=a&tag=b&limit=1")).is_ok());
        assert_eq!(
            known.check(&query("limit=1&limit=2")).unwrap_err().code(),
            "repeated_parameter"
        );
        let unknown = known.check(&query("limt=1")).unwrap_err();
        assert_eq!(unknown.code(), "unknown_parameter");
        assert!(
            unknown.to_string().contains("did you mean \"limit\"?"),
            "{unknown}"
        );
    }

    #[test]
    fn hints_name_the_likely_parameter_or_where_the_token_goes() {
        let known = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            hint("wiat", &known(&["wait", "status"])).unwrap(),
            "did you mean \"wait\"?"
        );
        assert_eq!(
            hint("tll", &known(&["ttl", "holder", "note"])).unwrap(),
            "did you mean \"ttl\"?"
        );
        assert!(
            hint("lock_token", &known(&["lock-token"]))
                .unwrap()
                .contains("X-Lock-Token")
        );
        assert!(hint("Token", &known(&[])).unwrap().contains("?lock-token="));
        assert_eq!(hint("colour", &known(&["ttl", "holder", "note"])), None);
        assert_eq!(hint("x", &known(&["id"])), None, "too short to guess");
    }

    #[test]
    fn json_content_types_are_recognised_with_parameters_and_suffixes() {
        for json in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/merge-patch+json",
            " application/json ",
        ] {
            assert!(is_json(json.as_bytes()), "{json}");
        }
        for other in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/json",
            "application/jsonx",
            "",
        ] {
            assert!(!is_json(other.as_bytes()), "{other}");
        }
    }

    #[test]
    fn a_body_reads_null_as_nothing_and_refuses_repeated_keys_at_any_depth() {
        assert!(
            Body::read(&Bytes::from(" null "), "{}")
                .unwrap()
                .fields()
                .is_empty()
        );
        for (body, field) in [
            (r#"{"a": 1, "a": 2}"#, "a"),
            (r#"{"g": [{"q": 1}, {"q": 1, "q": 2}]}"#, "g[1].q"),
            (r#"{"o": {"x": {"y": 1, "y": 1}}}"#, "o.x.y"),
        ] {
            let err = Body::read(&Bytes::from(body), "{}").expect_err(body);
            assert_eq!(err.code(), "repeated_field", "{body}");
            assert!(err.to_string().contains(field), "{body}: {err}");
        }
    }
}
