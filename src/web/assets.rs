//! The dashboard's script and stylesheet, compiled into the binary and served at
//! `/static/{file}`: same origin (the Content-Security-Policy's `script-src 'self'`), no
//! build step, nothing fetched from elsewhere.
//!
//! The page links them as `/static/{file}?v={version}`, the version a hash of the
//! content, so they can be cached for a year (`immutable`): a new build with a changed
//! file links a new URL.

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::web;
use actix_web::{HttpRequest, HttpResponse};

use crate::api::error::ApiError;
use crate::api::params::{self, Query};

/// One embedded file.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
    version: LazyLock<String>,
}

impl Asset {
    /// The URL the page links: the path and the content's version.
    pub fn url(&self) -> String {
        format!("/static/{}?v={}", self.name, self.version())
    }

    /// A hash of the content (FNV-1a, 64 bits, hex).
    pub fn version(&self) -> &str {
        &self.version
    }
}

const fn fnv(body: &str) -> u64 {
    let bytes = body.as_bytes();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

pub static JS: Asset = Asset {
    name: "dashboard.js",
    content_type: "text/javascript; charset=utf-8",
    body: include_str!("assets/dashboard.js"),
    version: LazyLock::new(|| format!("{:016x}", fnv(include_str!("assets/dashboard.js")))),
};

pub static CSS: Asset = Asset {
    name: "dashboard.css",
    content_type: "text/css; charset=utf-8",
    body: include_str!("assets/dashboard.css"),
    version: LazyLock::new(|| format!("{:016x}", fnv(include_str!("assets/dashboard.css")))),
};

/// How long a browser may keep an asset: a year (its URL changes with its content).
pub const CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// `GET /static/{file}`: an embedded asset; `?v=` (the version the page links) is the
/// only parameter. An unknown file is a JSON 404.
pub async fn serve(req: HttpRequest, file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let query = Query::parse(&req)?;
    for key in query.keys() {
        if key != "v" {
            return Err(ApiError::bad_request(
                "unknown_parameter",
                format!(
                    "unknown query parameter {key:?}: a static file takes only v (its version)"
                ),
            )
            .with("parameter", key)
            .with("known", serde_json::json!(["v"])));
        }
    }
    if query.all("v").count() > 1 {
        return Err(params::conflict(
            "v",
            "v is given more than once: give it once",
        ));
    }
    let Some(asset) = [&JS, &CSS].into_iter().find(|a| a.name == file.as_str()) else {
        return Err(ApiError::NoRoute {
            method: req.method().to_string(),
            path: req.path().to_owned(),
        });
    };
    Ok(HttpResponse::Ok()
        .content_type(asset.content_type)
        .insert_header((header::CACHE_CONTROL, CACHE_CONTROL))
        .insert_header((header::ETAG, format!("\"{}\"", asset.version())))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(asset.body))
}
