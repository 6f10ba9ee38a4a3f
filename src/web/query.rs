//! The dashboard's query string: `tag` (repeatable, each value may list several tags
//! separated by commas), `name`, `state`, `page`, `per_page`. Strict like the API (an
//! unknown or repeated parameter, or a bad value, is a 400 JSON naming it) and bounded,
//! but an empty value counts as absent: the filter form sends its empty fields.

use actix_web::HttpRequest;
use serde_json::json;

use crate::api::error::ApiError;
use crate::api::params::{self, Query};
use crate::domain::ResourceState;
use crate::domain::descriptor;

/// The longest query string the page reads (bytes, as sent).
pub const MAX_QUERY_BYTES: usize = 2048;
/// The most tags a filter may name.
pub const MAX_FILTER_TAGS: usize = 16;
/// The longest name filter, in characters.
pub const MAX_NAME_CHARS: usize = 128;
/// Resources per page when the query names none.
pub const DEFAULT_PER_PAGE: usize = 100;
/// The most resources one page shows.
pub const MAX_PER_PAGE: usize = 500;
/// The highest page number (far beyond any lab: 2^32 resources at one per page).
pub const MAX_PAGE: u64 = u32::MAX as u64;

const KNOWN: [&str; 5] = ["tag", "name", "state", "page", "per_page"];

/// What the page shows: the filters and which page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DashboardQuery {
    /// Every one must be present on a resource.
    pub tags: Vec<String>,
    /// A case-insensitive substring of the name, as given.
    pub name: Option<String>,
    pub state: Option<ResourceState>,
    /// 1-based.
    pub page: u64,
    pub per_page: usize,
}

impl Default for DashboardQuery {
    fn default() -> Self {
        DashboardQuery {
            tags: Vec::new(),
            name: None,
            state: None,
            page: 1,
            per_page: DEFAULT_PER_PAGE,
        }
    }
}

impl DashboardQuery {
    /// The query of `req`.
    ///
    /// # Errors
    /// A 400: the query string too long (`query_too_long`), not decodable
    /// (`invalid_query`), an unknown (`unknown_parameter`) or repeated
    /// (`repeated_parameter`) parameter, too many tags (`too_many_tags`), a name filter
    /// too long or with control characters, an unknown state or a page out of range
    /// (`invalid_parameter`).
    pub fn parse(req: &HttpRequest) -> Result<DashboardQuery, ApiError> {
        let raw = req.query_string();
        if raw.len() > MAX_QUERY_BYTES {
            return Err(ApiError::bad_request(
                "query_too_long",
                format!(
                    "the query string is {} bytes; the dashboard reads at most {MAX_QUERY_BYTES}",
                    raw.len()
                ),
            )
            .with("max", MAX_QUERY_BYTES));
        }
        let query = Query::parse(req)?;
        let mut seen: Vec<&str> = Vec::new();
        for key in query.keys() {
            if !KNOWN.contains(&key) {
                return Err(ApiError::bad_request(
                    "unknown_parameter",
                    format!(
                        "unknown query parameter {key:?}: the dashboard's are {}",
                        KNOWN.join(", ")
                    ),
                )
                .with("parameter", key)
                .with("known", json!(KNOWN)));
            }
            if key != "tag" && seen.contains(&key) {
                return Err(ApiError::bad_request(
                    "repeated_parameter",
                    format!("query parameter {key:?} is given more than once: give it once"),
                )
                .with("parameter", key));
            }
            seen.push(key);
        }
        let given = |key: &str| query.get(key).filter(|v| !v.trim().is_empty());

        let mut tags: Vec<String> = Vec::new();
        for value in query.all("tag") {
            for tag in descriptor::parse_tags(value).0 {
                if !tags.contains(&tag) {
                    tags.push(tag);
                }
            }
            if tags.len() > MAX_FILTER_TAGS {
                return Err(ApiError::bad_request(
                    "too_many_tags",
                    format!("the tag filter names more than {MAX_FILTER_TAGS} tags"),
                )
                .with("parameter", "tag")
                .with("max", MAX_FILTER_TAGS));
            }
        }
        let name = match given("name") {
            None => None,
            Some(name) => {
                let name = name.trim();
                if name.chars().count() > MAX_NAME_CHARS {
                    return Err(params::invalid_parameter(
                        "name",
                        name,
                        &format!("at most {MAX_NAME_CHARS} characters"),
                    ));
                }
                params::check_text("name", name).map_err(|e| e.with("parameter", "name"))?;
                Some(name.to_owned())
            }
        };
        let state = match given("state") {
            None => None,
            Some(raw) => Some(ResourceState::parse(raw.trim()).ok_or_else(|| {
                params::invalid_parameter(
                    "state",
                    raw,
                    "free, locked, held, draining, unavailable or retiring",
                )
            })?),
        };
        let number = |key: &str, max: u64, default: u64| -> Result<u64, ApiError> {
            let Some(raw) = given(key) else {
                return Ok(default);
            };
            let raw = raw.trim();
            let digits = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit());
            digits
                .then(|| raw.parse::<u64>().ok())
                .flatten()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    params::invalid_parameter(key, raw, &format!("a whole number from 1 to {max}"))
                })
        };
        let page = number("page", MAX_PAGE, 1)?;
        let per_page = number("per_page", MAX_PER_PAGE as u64, DEFAULT_PER_PAGE as u64)?;
        Ok(DashboardQuery {
            tags,
            name,
            state,
            page,
            per_page: usize::try_from(per_page).expect("at most MAX_PER_PAGE"),
        })
    }

    /// Whether any filter is set.
    pub fn is_filtered(&self) -> bool {
        !self.tags.is_empty() || self.name.is_some() || self.state.is_some()
    }

    /// The query string of page `page` of this view (no leading `?`), leaving out what
    /// is at its default.
    pub fn to_query_string(&self, page: u64) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        if !self.tags.is_empty() {
            pairs.push(("tag", self.tags.join(",")));
        }
        if let Some(name) = &self.name {
            pairs.push(("name", name.clone()));
        }
        if let Some(state) = self.state {
            pairs.push(("state", state.as_str().to_owned()));
        }
        if page != 1 {
            pairs.push(("page", page.to_string()));
        }
        if self.per_page != DEFAULT_PER_PAGE {
            pairs.push(("per_page", self.per_page.to_string()));
        }
        serde_urlencoded::to_string(&pairs).unwrap_or_default()
    }

    /// This view with `state` as its state filter, on its first page.
    pub fn with_state(&self, state: ResourceState) -> DashboardQuery {
        DashboardQuery {
            state: Some(state),
            page: 1,
            ..self.clone()
        }
    }

    /// This view filtered by `tag` alone (keeping the page size).
    pub fn only_tag(&self, tag: &str) -> DashboardQuery {
        DashboardQuery {
            tags: vec![tag.to_owned()],
            per_page: self.per_page,
            ..DashboardQuery::default()
        }
    }
}
