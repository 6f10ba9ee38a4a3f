//! Reading what the caller sent: query strings, the lock-token header, TTLs, bodies.
//!
//! Parsed by hand rather than with actix extractors so that every mistake becomes an
//! [`ApiError`] with the 1.0 body and a message that says what to fix.

use actix_web::HttpRequest;
use actix_web::web::{Bytes, Payload};
use serde_json::{Map, Value};

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

    /// Every key and value, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &String)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
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
    whole_number(value)
        .and_then(|s| Ttl::from_secs(s).ok())
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

/// The optional lock body `{"ttl": seconds, "holder": "...", "note": "..."}`. No body,
/// an empty body, `{}` and `{"ttl": null}` all mean the default TTL (3600 s) and no
/// metadata. The content type is not checked: 1.0 clients send this body with and
/// without one.
pub fn lock_terms(body: &Bytes) -> Result<LockTerms, ApiError> {
    Body::parse(body, LOCK_BODY_EXAMPLE)?.lock_terms()
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

/// A JSON object body, read field by field so that each mistake names its field. An
/// empty body is an empty object; unknown fields are ignored (as 1.0 did).
pub struct Body(Map<String, Value>);

impl Body {
    /// `example` shows a valid body in the error message.
    pub fn parse(body: &Bytes, example: &str) -> Result<Body, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body(Map::new()));
        }
        let json: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(
                "invalid_body",
                format!("the request body must be JSON such as {example}: {e}"),
            )
        })?;
        match json {
            Value::Object(fields) => Ok(Body(fields)),
            _ => Err(ApiError::bad_request(
                "invalid_body",
                format!("the request body must be a JSON object such as {example}"),
            )),
        }
    }

    /// Every field as sent, nulls included (for bodies where null means something, and
    /// to refuse unknown fields).
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

    /// A free-text field of at most `max_chars` characters, trimmed; `None` when absent
    /// or blank.
    pub fn text(&self, field: &'static str, max_chars: usize) -> Result<Option<String>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(text)) => {
                let text = text.trim();
                if text.chars().count() > max_chars {
                    return Err(ApiError::bad_request(
                        "invalid_body",
                        format!("{field} must be at most {max_chars} characters"),
                    )
                    .with("field", field));
                }
                Ok((!text.is_empty()).then(|| text.to_owned()))
            }
            Some(other) => Err(ApiError::bad_request(
                "invalid_body",
                format!("{field} must be a string, got {other}"),
            )
            .with("field", field)),
        }
    }

    /// An RFC 3339 date-time with an offset, e.g. `"2026-11-25T14:00:00Z"`.
    pub fn timestamp(&self, field: &'static str) -> Result<Option<Timestamp>, ApiError> {
        let Some(value) = self.get(field) else {
            return Ok(None);
        };
        value
            .as_str()
            .and_then(Timestamp::parse_rfc3339)
            .map(Some)
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
            },
        })
    }

    /// `priority`: 1 (served first) to 10, default 5.
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
                return Err(ApiError::bad_request(
                    "invalid_body",
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
                    Value::Object(fields) => group(&format!("groups[{i}]."), fields),
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

/// One group from `fields`: `tags` (a list, or a comma-separated string) or `expr`, and
/// `quantity` (default 1). `at` prefixes field names in messages (`groups[1].`).
fn group(at: &str, fields: &Map<String, Value>) -> Result<Group, ApiError> {
    let get = |f: &str| fields.get(f).filter(|v| !v.is_null());
    let criteria = match (get("tags"), get("expr")) {
        (Some(_), Some(_)) => {
            return Err(groups_error(format!(
                "{at}tags and {at}expr exclude each other: give one"
            )));
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
            return Err(groups_error(format!(
                "{at}tags (a list of tags) or {at}expr (a label expression) is required"
            )));
        }
    };
    let quantity = match get("quantity") {
        None => 1,
        Some(value) => quantity(&format!("{at}quantity"), value)?,
    };
    Ok(Group { criteria, quantity })
}

/// A non-empty tag list: `["a", "b"]` or `"a,b"`.
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
    match value {
        Value::String(s) => add_tags(field, &mut tags, s)?,
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::String(s) => add_tags(field, &mut tags, s)?,
                    _ => return Err(invalid()),
                }
            }
        }
        _ => return Err(invalid()),
    }
    if tags.is_empty() {
        Err(invalid())
    } else {
        Ok(tags)
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
/// of a query parameter given as a JSON string.
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lock_body_ttl_defaults_when_absent() {
        for body in ["", "  \n", "{}", "{\"ttl\": null}", "{\"other\": 1}"] {
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
}
