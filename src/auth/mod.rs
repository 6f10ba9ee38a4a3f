//! Who may do what: API keys, JWTs, roles, the rule of every route, rate limits.
//!
//! The building blocks the HTTP layer wires in front of the handlers. Per request:
//!
//! ```text
//! let rule = rules::resolve(method, router_path);             // one table, every route
//! let credentials = Credentials::from_headers(x_api_key, authorization)?;
//! let caller = auth.admit(rule, &credentials, client_ip, now)?;  // 401 / 403 / 429
//! // handlers get `caller` (name, role, via, caps) beside `now`
//! ```
//!
//! - [`Auth`] holds the config in force and swaps it atomically on reload (SIGHUP,
//!   `POST /api/v1/admin/reload`). Without a config, [`Auth::open`]: every caller is
//!   anonymous with every right, as in Rent-A-Bot 1.0.
//! - [`config`]: the YAML file, parsed strictly. [`keys`]: SHA-256 digests compared in
//!   constant time; the two header forms. [`jwt`]: HS256 / RS256 / ES256 tokens.
//!   [`roles`]: `readonly < user < operator < admin`, and [`Caller`]. [`rules`]: the
//!   table. [`limits`]: `governor` buckets per caller, reads and writes apart.
//! - Nothing here needs actix except [`actix_glue`], which reads the headers and the
//!   client address of an actix request.
//! - No key, secret or token is ever logged: the types that hold them redact `Debug`.

pub mod actix_glue;
pub mod config;
pub mod error;
mod handle;
pub mod jwt;
pub mod keys;
pub mod limits;
pub mod roles;
pub mod rules;

pub use config::{AuthConfig, ConfigError};
pub use error::AuthError;
pub use handle::{Auth, ReloadReport};
pub use keys::Credentials;
pub use roles::{Caller, Caps, Role, Via};
pub use rules::Rule;
