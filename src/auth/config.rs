//! The auth config file (`--auth-config FILE`, `RENTABOT_AUTH_CONFIG`), parsed strictly.
//!
//! ```yaml
//! api_keys:
//!   - name: "Jenkins Production"     # unique; what the audit log and ownership show
//!     key: "0f6c...64 hex..."        # at least 16 characters; or, to keep secrets out
//!     # key_sha256: "<64 hex>"       #   of the file: printf %s KEY | sha256sum
//!     role: user                     # admin | operator | user | readonly
//!     rate_limit: {requests_per_second: 10, burst: 20}   # optional, overrides the default
//!     max_locks: 50                  # optional ceiling on locks this key holds
//!     max_pending_reservations: 20   # optional ceiling on its pending reservations
//! rate_limit: {requests_per_second: 50, burst: 100}      # every key; default 50/100
//! anonymous_rate_limit: {requests_per_second: 20, burst: 40}  # per client address; 20/40
//! jwt:                               # optional
//!   hs256_secret: "..."              # at least 32 bytes; or
//!   # public_key_file: jwt.pem       #   a PEM public key (relative to this file)
//!   # algorithm: RS256               #   with RS256 or ES256
//!   issuer: "https://sso.example"    # optional; checked when set
//!   audience: "rentabot"             # optional; checked when set
//!   role_claim: rentabot_role        # default; the caller's name is `sub`
//! metrics_require_key: false         # true: /metrics needs a key (any role)
//! ```
//!
//! A rate is `{requests_per_second, burst}` (burst defaults to requests_per_second
//! rounded up), applied to reads and to writes as two buckets; or, to set them apart,
//! `{reads: {...}, writes: {...}}`.
//!
//! Strict, unlike the descriptor: a typo in a security setting must not silently widen
//! access, so an unknown key, a duplicate name or key, a short key or an unknown role is
//! an error naming the line (of the entry, for checks across fields) and what to fix.
//! [`AuthConfig::parse`] is pure; [`AuthConfig::load`] reads the file and adds its path
//! to errors. Plain keys are hashed as they are read: only digests are kept.

use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::jwt::{DEFAULT_ROLE_CLAIM, JwtAlgorithm};
use super::keys::{KeyDigest, MIN_KEY_CHARS, is_jwt_shaped};
use super::limits::{Rate, RateLimit};
use super::roles::{ANONYMOUS, Caps, Role};

/// Config files larger than this are refused before parsing (1 MiB: thousands of keys).
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The longest key name, in characters.
pub const MAX_NAME_CHARS: usize = 128;

/// The shortest HS256 secret, in bytes (RFC 7518 §3.2: at least the hash's 256 bits).
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// Names the audit log uses for callers that are not keys: no key may take them.
pub const RESERVED_NAMES: [&str; 2] = [ANONYMOUS, "system"];

/// What the auth config file says.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    pub api_keys: Vec<ApiKeyConfig>,
    /// Every key's limit unless its entry sets one.
    pub rate_limit: RateLimit,
    /// Each client address's limit when a request carries no credential (or a wrong
    /// one): the open routes, and failed attempts.
    pub anonymous_rate_limit: RateLimit,
    pub jwt: Option<JwtConfig>,
    /// Whether `GET /metrics` needs a credential (any role). Off by default: Prometheus
    /// scrapes without one.
    pub metrics_require_key: bool,
}

/// One entry of `api_keys`.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiKeyConfig {
    pub name: String,
    pub role: Role,
    pub digest: KeyDigest,
    pub rate_limit: Option<RateLimit>,
    pub caps: Caps,
}

/// The `jwt` section.
#[derive(Clone, Debug)]
pub struct JwtConfig {
    pub key: JwtKey,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub role_claim: String,
}

/// What verifies a token's signature.
#[derive(Clone)]
pub enum JwtKey {
    /// `hs256_secret`: a shared secret.
    Hs256(SecretString),
    /// `public_key_file` with `algorithm`: a PEM public key, read when the service
    /// builds its verifier; a relative path is relative to the config file's folder.
    PublicKeyFile {
        algorithm: JwtAlgorithm,
        path: PathBuf,
    },
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtKey::Hs256(_) => f.write_str("Hs256(<redacted>)"),
            JwtKey::PublicKeyFile { algorithm, path } => f
                .debug_struct("PublicKeyFile")
                .field("algorithm", algorithm)
                .field("path", path)
                .finish(),
        }
    }
}

/// A config that cannot be used: where (file, line, column, as far as known) and what to
/// fix. Displayed as `file:line:column: message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl ConfigError {
    pub(crate) fn message(message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: None,
            line: None,
            column: None,
            message: message.into(),
        }
    }

    /// The same error, naming `path` as the file it is in.
    pub fn in_file(mut self, path: &Path) -> ConfigError {
        self.file = Some(path.to_owned());
        self
    }

    fn from_yaml(e: &serde_yaml_ng::Error) -> ConfigError {
        let location = e.location();
        let mut message = e.to_string();
        // serde_yaml_ng appends " at line L column C"; the location is shown in front.
        if let Some(l) = &location {
            let suffix = format!(" at line {} column {}", l.line(), l.column());
            if let Some(stripped) = message.strip_suffix(&suffix) {
                message = stripped.to_owned();
            }
        }
        ConfigError {
            file: None,
            line: location.as_ref().map(|l| l.line()),
            column: location.as_ref().map(|l| l.column()),
            message,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}:", file.display())?;
        }
        if let Some(line) = self.line {
            write!(f, "{line}:")?;
            if let Some(column) = self.column {
                write!(f, "{column}:")?;
            }
        }
        if self.file.is_some() || self.line.is_some() {
            f.write_str(" ")?;
        }
        f.write_str(&self.message)
    }
}

impl AuthConfig {
    /// Parses and validates a config. Pure: the JWT key file is named, not read.
    ///
    /// # Errors
    /// The first problem, with its line and column where the parser knows them.
    pub fn parse(text: &str) -> Result<AuthConfig, ConfigError> {
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError::message(format!(
                "the auth config is {} bytes, over the limit of {MAX_CONFIG_BYTES}",
                text.len()
            )));
        }
        let raw: Option<RawConfig> =
            serde_yaml_ng::from_str(text).map_err(|e| ConfigError::from_yaml(&e))?;
        let raw = raw.ok_or_else(|| {
            ConfigError::message(
                "the auth config is empty: declare `api_keys` (or a `jwt` section); without auth, start the service without --auth-config",
            )
        })?;
        let api_keys = raw.api_keys.map(|k| k.0).unwrap_or_default();
        if api_keys.is_empty() && raw.jwt.is_none() {
            return Err(ConfigError::message(
                "the auth config declares no `api_keys` and no `jwt` section: no one could call the API; add a key",
            ));
        }
        let jwt = raw.jwt.map(|j| j.0);
        if jwt.is_some()
            && let Some(key) = api_keys.iter().find(|k| k.jwt_shaped)
        {
            return Err(ConfigError::message(format!(
                "api_keys: the key of `{}` has a JWT's shape (three base64url parts separated by dots) while a `jwt` section is set: choose a key without dots",
                key.config.name
            )));
        }
        Ok(AuthConfig {
            api_keys: api_keys.into_iter().map(|k| k.config).collect(),
            rate_limit: raw.rate_limit.map_or(RateLimit::DEFAULT_KEY, |r| r.0),
            anonymous_rate_limit: raw
                .anonymous_rate_limit
                .map_or(RateLimit::DEFAULT_ANONYMOUS, |r| r.0),
            jwt,
            metrics_require_key: raw.metrics_require_key,
        })
    }

    /// Reads and parses the file at `path`. Blocking: file IO.
    ///
    /// # Errors
    /// A [`ConfigError`] naming `path`: unreadable, too large, or invalid.
    pub fn load(path: &Path) -> Result<AuthConfig, ConfigError> {
        let fail = |message: String| ConfigError::message(message).in_file(path);
        let size = std::fs::metadata(path)
            .map_err(|e| fail(format!("cannot read the auth config: {e}")))?
            .len();
        if size > MAX_CONFIG_BYTES {
            return Err(fail(format!(
                "the auth config is {size} bytes, over the limit of {MAX_CONFIG_BYTES}"
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| fail(format!("cannot read the auth config: {e}")))?;
        AuthConfig::parse(&text).map_err(|e| e.in_file(path))
    }
}

// ---- The YAML shapes. Checks that span fields run inside the entry's own
// deserialization (a map visitor), so serde_yaml_ng reports them at the entry's line.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    api_keys: Option<ApiKeys>,
    rate_limit: Option<RateField>,
    anonymous_rate_limit: Option<RateField>,
    jwt: Option<JwtField>,
    #[serde(default)]
    metrics_require_key: bool,
}

/// Runs `check` on a map deserialized as `R`, inside the map's deserialization.
struct Checked<R, F> {
    check: F,
    expecting: &'static str,
    raw: PhantomData<R>,
}

impl<'de, R, T, F> Visitor<'de> for Checked<R, F>
where
    R: Deserialize<'de>,
    F: FnOnce(R) -> Result<T, String>,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        let raw = R::deserialize(MapAccessDeserializer::new(map))?;
        (self.check)(raw).map_err(de::Error::custom)
    }
}

fn checked<'de, D, R, T>(
    deserializer: D,
    expecting: &'static str,
    check: impl FnOnce(R) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    R: Deserialize<'de>,
{
    deserializer.deserialize_map(Checked {
        check,
        expecting,
        raw: PhantomData,
    })
}

/// `api_keys`: a list whose names and keys must be unique.
struct ApiKeys(Vec<Entry>);

struct Entry {
    config: ApiKeyConfig,
    jwt_shaped: bool,
}

impl<'de> Deserialize<'de> for ApiKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ApiKeys, D::Error> {
        struct List;
        impl<'de> Visitor<'de> for List {
            type Value = ApiKeys;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of keys (`- name: ...`)")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ApiKeys, A::Error> {
                let mut seen = Seen::default();
                let mut keys = Vec::new();
                while let Some(entry) = seq.next_element_seed(EntrySeed(&mut seen))? {
                    keys.push(entry);
                }
                Ok(ApiKeys(keys))
            }
        }
        deserializer.deserialize_seq(List)
    }
}

#[derive(Default)]
struct Seen {
    names: HashSet<String>,
    digests: Vec<(KeyDigest, String)>,
}

struct EntrySeed<'a>(&'a mut Seen);

impl<'de> DeserializeSeed<'de> for EntrySeed<'_> {
    type Value = Entry;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Entry, D::Error> {
        let seen = self.0;
        checked(
            deserializer,
            "a key entry (name, key or key_sha256, role)",
            |raw: RawKey| {
                let entry = raw.check()?;
                let name = &entry.config.name;
                if !seen.names.insert(name.clone()) {
                    return Err(format!(
                        "the name `{name}` is given to two keys: names must be unique (they say who did what)"
                    ));
                }
                if let Some((_, other)) =
                    seen.digests.iter().find(|(d, _)| *d == entry.config.digest)
                {
                    return Err(format!(
                        "the key of `{name}` is the key of `{other}`: each entry needs its own key"
                    ));
                }
                seen.digests.push((entry.config.digest, name.clone()));
                Ok(entry)
            },
        )
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    name: String,
    key: Option<String>,
    key_sha256: Option<String>,
    role: String,
    rate_limit: Option<RateField>,
    max_locks: Option<u32>,
    max_pending_reservations: Option<u32>,
}

impl RawKey {
    fn check(self) -> Result<Entry, String> {
        let name = self.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            return Err(format!(
                "a key's name must have 1 to {MAX_NAME_CHARS} characters"
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(format!(
                "the name `{}` has a control character: use printable characters",
                name.escape_debug()
            ));
        }
        if RESERVED_NAMES.contains(&name.as_str()) {
            return Err(format!(
                "the name `{name}` is reserved (the audit log uses it for callers without a key): choose another"
            ));
        }
        let role = Role::parse(&self.role).ok_or_else(|| {
            format!(
                "key `{name}`: role `{}` is not a role: use admin, operator, user or readonly",
                self.role
            )
        })?;
        let (digest, jwt_shaped) = match (self.key, self.key_sha256) {
            (Some(key), None) => {
                let chars = key.chars().count();
                if chars < MIN_KEY_CHARS {
                    return Err(format!(
                        "key `{name}`: the key has {chars} characters, fewer than {MIN_KEY_CHARS}: use a long random key, e.g. `openssl rand -hex 32`"
                    ));
                }
                if !key.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(format!(
                        "key `{name}`: the key has spaces or characters outside visible ASCII, which no HTTP header can carry"
                    ));
                }
                (KeyDigest::of(&key), is_jwt_shaped(&key))
            }
            (None, Some(hex)) => (
                KeyDigest::from_hex(hex.trim()).ok_or_else(|| {
                    format!(
                        "key `{name}`: key_sha256 must be 64 hexadecimal digits, as `printf %s KEY | sha256sum` prints them"
                    )
                })?,
                false,
            ),
            (Some(_), Some(_)) => {
                return Err(format!(
                    "key `{name}`: give `key` or `key_sha256`, not both"
                ));
            }
            (None, None) => {
                return Err(format!(
                    "key `{name}`: give the key as `key` (at least {MIN_KEY_CHARS} characters) or its digest as `key_sha256`"
                ));
            }
        };
        for (field, value) in [
            ("max_locks", self.max_locks),
            ("max_pending_reservations", self.max_pending_reservations),
        ] {
            if value == Some(0) {
                return Err(format!(
                    "key `{name}`: {field} must be at least 1 (leave it out for no ceiling; role readonly forbids locking)"
                ));
            }
        }
        Ok(Entry {
            config: ApiKeyConfig {
                name,
                role,
                digest,
                rate_limit: self.rate_limit.map(|r| r.0),
                caps: Caps {
                    max_locks: self.max_locks,
                    max_pending_reservations: self.max_pending_reservations,
                },
            },
            jwt_shaped,
        })
    }
}

/// A rate limit: `{requests_per_second, burst}` or `{reads: {...}, writes: {...}}`.
struct RateField(RateLimit);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    requests_per_second: Option<f64>,
    burst: Option<u32>,
    reads: Option<RawRate>,
    writes: Option<RawRate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    requests_per_second: f64,
    burst: Option<u32>,
}

impl RawRate {
    fn check(per_second: f64, burst: Option<u32>) -> Result<Rate, String> {
        // Default burst: one second's worth, at least one request.
        let burst = burst
            .unwrap_or_else(|| per_second.ceil().clamp(1.0, f64::from(Rate::MAX_BURST)) as u32);
        Rate::new(per_second, burst)
    }
}

impl<'de> Deserialize<'de> for RateField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RateField, D::Error> {
        checked(
            deserializer,
            "a rate limit: {requests_per_second: N, burst: N}",
            |raw: RawRateLimit| {
                let limit = match (raw.requests_per_second, raw.reads, raw.writes) {
                    (Some(per_second), None, None) => {
                        RateLimit::same(RawRate::check(per_second, raw.burst)?)
                    }
                    (None, Some(reads), Some(writes)) if raw.burst.is_none() => RateLimit {
                        reads: RawRate::check(reads.requests_per_second, reads.burst)
                            .map_err(|e| format!("reads: {e}"))?,
                        writes: RawRate::check(writes.requests_per_second, writes.burst)
                            .map_err(|e| format!("writes: {e}"))?,
                    },
                    _ => {
                        return Err(
                            "a rate limit is `{requests_per_second: N, burst: N}` for reads and writes alike, or `{reads: {requests_per_second: N, burst: N}, writes: {...}}`"
                                .to_owned(),
                        );
                    }
                };
                Ok(RateField(limit))
            },
        )
    }
}

/// The `jwt` section.
struct JwtField(JwtConfig);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    hs256_secret: Option<String>,
    public_key_file: Option<PathBuf>,
    algorithm: Option<String>,
    issuer: Option<String>,
    audience: Option<String>,
    role_claim: Option<String>,
}

impl<'de> Deserialize<'de> for JwtField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JwtField, D::Error> {
        checked(deserializer, "the jwt section", |raw: RawJwt| {
            let key = match (raw.hs256_secret, raw.public_key_file) {
                (Some(secret), None) => {
                    if raw.algorithm.as_deref().is_some_and(|a| a != "HS256") {
                        return Err(
                            "hs256_secret goes with algorithm HS256 (or none); RS256 and ES256 need public_key_file"
                                .to_owned(),
                        );
                    }
                    if secret.len() < MIN_HS256_SECRET_BYTES {
                        return Err(format!(
                            "hs256_secret has {} bytes, fewer than {MIN_HS256_SECRET_BYTES}: use a long random secret, e.g. `openssl rand -hex 32`",
                            secret.len()
                        ));
                    }
                    JwtKey::Hs256(SecretString::from(secret))
                }
                (None, Some(path)) => {
                    let algorithm = raw
                        .algorithm
                        .as_deref()
                        .ok_or("public_key_file needs `algorithm: RS256` or `algorithm: ES256`")?;
                    let algorithm = JwtAlgorithm::parse_public(algorithm).ok_or_else(|| {
                        format!(
                            "algorithm `{algorithm}` is not accepted with a public key: use RS256 or ES256"
                        )
                    })?;
                    JwtKey::PublicKeyFile { algorithm, path }
                }
                (Some(_), Some(_)) => {
                    return Err("give hs256_secret or public_key_file, not both".to_owned());
                }
                (None, None) => {
                    return Err(
                        "give hs256_secret, or public_key_file with algorithm (RS256 or ES256)"
                            .to_owned(),
                    );
                }
            };
            let role_claim = raw
                .role_claim
                .unwrap_or_else(|| DEFAULT_ROLE_CLAIM.to_owned());
            if role_claim.trim().is_empty() {
                return Err("role_claim must name a claim".to_owned());
            }
            for (field, value) in [("issuer", &raw.issuer), ("audience", &raw.audience)] {
                if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                    return Err(format!("{field} is empty: leave it out to not check it"));
                }
            }
            Ok(JwtField(JwtConfig {
                key,
                issuer: raw.issuer,
                audience: raw.audience,
                role_claim,
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JENKINS: &str = "jenkins-0123456789abcdef";

    const FULL: &str = r#"
api_keys:
  - key: "jenkins-0123456789abcdef"
    name: "Jenkins Production"
    role: user
    rate_limit: {requests_per_second: 10, burst: 20}
    max_locks: 50
    max_pending_reservations: 20
  - key_sha256: "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
    name: Dashboard
    role: readonly
  - {key: "operator-0123456789ab", name: Ops, role: operator}
  - {key: "admin-0123456789abcdef", name: Admin Console, role: admin}
rate_limit: {requests_per_second: 50, burst: 100}
anonymous_rate_limit: {requests_per_second: 20, burst: 40}
jwt:
  hs256_secret: "a-test-secret-of-at-least-32-bytes!!"
  issuer: "https://sso.example"
  audience: rentabot
metrics_require_key: true
"#;

    fn rate(per_second: f64, burst: u32) -> RateLimit {
        RateLimit::same(Rate::new(per_second, burst).unwrap())
    }

    #[test]
    fn the_roadmap_format_parses_with_every_option() {
        let config = AuthConfig::parse(FULL).unwrap();
        let names: Vec<_> = config
            .api_keys
            .iter()
            .map(|k| (k.name.as_str(), k.role))
            .collect();
        assert_eq!(
            names,
            [
                ("Jenkins Production", Role::User),
                ("Dashboard", Role::Readonly),
                ("Ops", Role::Operator),
                ("Admin Console", Role::Admin),
            ]
        );
        let jenkins = &config.api_keys[0];
        assert_eq!(jenkins.digest, KeyDigest::of(JENKINS));
        assert_eq!(jenkins.rate_limit, Some(rate(10.0, 20)));
        assert_eq!(
            jenkins.caps,
            Caps {
                max_locks: Some(50),
                max_pending_reservations: Some(20)
            }
        );
        assert_eq!(config.api_keys[1].digest, KeyDigest::of(""));
        assert_eq!(config.api_keys[1].rate_limit, None);
        assert_eq!(config.api_keys[1].caps, Caps::default());
        assert_eq!(config.rate_limit, rate(50.0, 100));
        assert_eq!(config.anonymous_rate_limit, rate(20.0, 40));
        assert!(config.metrics_require_key);
        let jwt = config.jwt.unwrap();
        assert!(matches!(jwt.key, JwtKey::Hs256(_)));
        assert_eq!(jwt.issuer.as_deref(), Some("https://sso.example"));
        assert_eq!(jwt.audience.as_deref(), Some("rentabot"));
        assert_eq!(jwt.role_claim, "rentabot_role");
    }

    #[test]
    fn omitted_settings_take_their_documented_defaults() {
        let config = AuthConfig::parse(
            "api_keys:\n  - {key: jenkins-0123456789abcdef, name: ci, role: user}\n",
        )
        .unwrap();
        assert_eq!(config.rate_limit, RateLimit::DEFAULT_KEY);
        assert_eq!(config.rate_limit, rate(50.0, 100));
        assert_eq!(config.anonymous_rate_limit, RateLimit::DEFAULT_ANONYMOUS);
        assert_eq!(config.anonymous_rate_limit, rate(20.0, 40));
        assert!(config.jwt.is_none());
        assert!(!config.metrics_require_key);
    }

    #[test]
    fn a_rate_may_set_reads_and_writes_apart_and_burst_defaults_to_a_second() {
        let config = AuthConfig::parse(
            "api_keys: []\njwt: {hs256_secret: a-test-secret-of-at-least-32-bytes!!}\n\
             rate_limit: {reads: {requests_per_second: 100, burst: 300}, writes: {requests_per_second: 2.5}}\n\
             anonymous_rate_limit: {requests_per_second: 0.5}\n",
        )
        .unwrap();
        assert_eq!(config.rate_limit.reads, Rate::new(100.0, 300).unwrap());
        assert_eq!(config.rate_limit.writes, Rate::new(2.5, 3).unwrap());
        assert_eq!(config.anonymous_rate_limit, rate(0.5, 1));
    }

    #[test]
    fn a_jwt_section_alone_is_enough_and_a_public_key_needs_its_algorithm() {
        let config = AuthConfig::parse(
            "jwt:\n  public_key_file: keys/sso.pem\n  algorithm: ES256\n  role_claim: groups_role\n",
        )
        .unwrap();
        assert!(config.api_keys.is_empty());
        let jwt = config.jwt.unwrap();
        assert_eq!(jwt.role_claim, "groups_role");
        match jwt.key {
            JwtKey::PublicKeyFile { algorithm, path } => {
                assert_eq!(algorithm, JwtAlgorithm::Es256);
                assert_eq!(path, Path::new("keys/sso.pem"));
            }
            other => panic!("{other:?}"),
        }
    }

    /// (config, line, what the message says).
    const REFUSED: &[(&str, Option<usize>, &str)] = &[
        (
            "api_keys: []\nrate_limits: {requests_per_second: 1}\n",
            Some(2),
            "unknown field `rate_limits`",
        ),
        (
            "api_keys:\n  - key: jenkins-0123456789abcdef\n    name: ci\n    role: user\n    max_lock: 5\n",
            Some(5),
            "api_keys[0]: unknown field `max_lock`",
        ),
        (
            "api_keys:\n  - {key: jenkins-0123456789abcdef, name: ci, role: user}\n  - {key: other-0123456789abcdef, name: ci, role: admin}\n",
            Some(3),
            "api_keys[1]: the name `ci` is given to two keys",
        ),
        (
            "api_keys:\n  - {key: jenkins-0123456789abcdef, name: ci, role: user}\n  - {key: jenkins-0123456789abcdef, name: ci2, role: admin}\n",
            Some(3),
            "the key of `ci2` is the key of `ci`",
        ),
        (
            "api_keys:\n  - {key: jenkins-0123456789abcdef, name: ci, role: user}\n  - {key_sha256: 85f8c0a1d7d9a4b50b4e0e0ea7b8ec0c8f6a5f4f0f7b5d3cb0b3e3f6f4a3e2d1, name: b, role: user}\n  - {key_sha256: 85F8C0A1D7D9A4B50B4E0E0EA7B8EC0C8F6A5F4F0F7B5D3CB0B3E3F6F4A3E2D1, name: c, role: user}\n",
            Some(4),
            "the key of `c` is the key of `b`",
        ),
        (
            "api_keys:\n  - {key: short-key, name: ci, role: user}\n",
            Some(2),
            "the key has 9 characters, fewer than 16",
        ),
        (
            "api_keys:\n  - {key: jenkins 0123456789abcdef, name: ci, role: user}\n",
            Some(2),
            "outside visible ASCII",
        ),
        (
            "api_keys:\n  - {key: jenkins-0123456789abcdef, name: ci, role: maintainer}\n",
            Some(2),
            "role `maintainer` is not a role: use admin, operator, user or readonly",
        ),
        (
            "api_keys:\n  - {key: jenkins-0123456789abcdef, name: ci}\n",
            Some(2),
            "missing field `role`",
        ),
        (
            "api_keys:\n  - {key: jenkins-0123456789abcdef, key_sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855, name: ci, role: user}\n",
            Some(2),
            "give `key` or `key_sha256`, not both",
        ),
        (
            "api_keys:\n  - {name: ci, role: user}\n",
            Some(2),
            "give the key as `key`",
        ),
        (
            "api_keys:\n  - {key_sha256: e3b0c442, name: ci, role: user}\n",
            Some(2),
            "key_sha256 must be 64 hexadecimal digits",
        ),
        (
            "api_keys:\n  - {key: jenkins-0123456789abcdef, name: ci, role: user, max_locks: 0}\n",
            Some(2),
            "max_locks must be at least 1",
        ),
        (
            "api_keys:\n  - {key: jenkins-0123456789abcdef, name: ci, role: user, max_pending_reservations: -1}\n",
            Some(2),
            "max_pending_reservations",
        ),
        (
            "api_keys:\n  - {key: jenkins-0123456789abcdef, name: system, role: admin}\n",
            Some(2),
            "the name `system` is reserved",
        ),
        (
            "api_keys:\n  - {key: jenkins-0123456789abcdef, name: '  ', role: admin}\n",
            Some(2),
            "a key's name must have 1 to 128 characters",
        ),
        ("api_keys: {name: ci}\n", Some(1), "expected a list of keys"),
        ("", None, "the auth config is empty"),
        ("api_keys: []\n", None, "no `api_keys` and no `jwt` section"),
        (
            "metrics_require_key: true\n",
            None,
            "no `api_keys` and no `jwt` section",
        ),
        (
            "api_keys:\n  - {key: jenkins-0123456789abcdef, name: ci, role: user}\nrate_limit: {requests_per_second: 0, burst: 10}\n",
            Some(3),
            "requests_per_second must be above 0",
        ),
        (
            "api_keys:\n  - {key: jenkins-0123456789abcdef, name: ci, role: user}\nrate_limit: {requests_per_second: 5, burst: 0}\n",
            Some(3),
            "burst must be from 1",
        ),
        (
            "api_keys:\n  - {key: jenkins-0123456789abcdef, name: ci, role: user}\nrate_limit: {burst: 10}\n",
            Some(3),
            "a rate limit is `{requests_per_second: N, burst: N}`",
        ),
        (
            "api_keys:\n  - {key: jenkins-0123456789abcdef, name: ci, role: user}\nrate_limit: {reads: {requests_per_second: 1}}\n",
            Some(3),
            "or `{reads: {requests_per_second: N, burst: N}, writes: {...}}`",
        ),
        (
            "api_keys:\n  - {key: jenkins-0123456789abcdef, name: ci, role: user}\nrate_limit: {reads: {requests_per_second: 1}, writes: {requests_per_second: -2}}\n",
            Some(3),
            "writes: requests_per_second must be above 0",
        ),
        (
            "api_keys:\n  - {key: jenkins-0123456789abcdef, name: ci, role: user, rate_limit: {requests_per_second: 1, bursts: 2}}\n",
            Some(2),
            "unknown field `bursts`",
        ),
        (
            "jwt: {hs256_secret: too-short}\n",
            Some(1),
            "hs256_secret has 9 bytes, fewer than 32",
        ),
        (
            "jwt: {hs256_secret: a-test-secret-of-at-least-32-bytes!!, public_key_file: k.pem}\n",
            Some(1),
            "give hs256_secret or public_key_file, not both",
        ),
        (
            "jwt: {issuer: x}\n",
            Some(1),
            "give hs256_secret, or public_key_file",
        ),
        (
            "jwt: {public_key_file: k.pem}\n",
            Some(1),
            "public_key_file needs `algorithm: RS256`",
        ),
        (
            "jwt: {public_key_file: k.pem, algorithm: HS256}\n",
            Some(1),
            "algorithm `HS256` is not accepted with a public key",
        ),
        (
            "jwt: {public_key_file: k.pem, algorithm: rs256}\n",
            Some(1),
            "algorithm `rs256` is not accepted",
        ),
        (
            "jwt: {hs256_secret: a-test-secret-of-at-least-32-bytes!!, algorithm: RS256}\n",
            Some(1),
            "hs256_secret goes with algorithm HS256",
        ),
        (
            "jwt: {hs256_secret: a-test-secret-of-at-least-32-bytes!!, audience: ''}\n",
            Some(1),
            "jwt: audience is empty",
        ),
        (
            "jwt: {hs256_secret: a-test-secret-of-at-least-32-bytes!!, role: admin}\n",
            Some(1),
            "unknown field `role`",
        ),
        (
            "api_keys:\n  - {key: eyJhbGciOiJI.eyJzdWIiOiJhIn0.c2ln, name: ci, role: user}\njwt: {hs256_secret: a-test-secret-of-at-least-32-bytes!!}\n",
            None,
            "the key of `ci` has a JWT's shape",
        ),
        (
            "metrics_require_key: maybe\napi_keys: []\n",
            Some(1),
            "metrics_require_key",
        ),
    ];

    #[test]
    fn mistakes_are_refused_naming_the_line_and_what_to_fix() {
        for (text, line, why) in REFUSED {
            let err = match AuthConfig::parse(text) {
                Ok(_) => panic!("accepted:\n{text}"),
                Err(e) => e,
            };
            assert!(err.message.contains(why), "{text}\n=> {err}\nwanted: {why}");
            assert_eq!(err.line, *line, "{text}\n=> {err}");
        }
    }

    #[test]
    fn a_jwt_shaped_key_is_fine_without_a_jwt_section() {
        let config = AuthConfig::parse(
            "api_keys:\n  - {key: eyJhbGciOiJI.eyJzdWIiOiJhIn0.c2ln, name: ci, role: user}\n",
        )
        .unwrap();
        assert_eq!(config.api_keys.len(), 1);
    }

    #[test]
    fn loading_names_the_file_in_every_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.yaml");
        std::fs::write(&path, "api_keys:\n  - {key: short, name: ci, role: user}\n").unwrap();
        let err = AuthConfig::load(&path).unwrap_err();
        assert_eq!(err.file.as_deref(), Some(path.as_path()));
        assert_eq!(
            err.to_string(),
            format!(
                "{}:2:5: api_keys[0]: key `ci`: the key has 5 characters, fewer than 16: use a long random key, e.g. `openssl rand -hex 32`",
                path.display()
            )
        );
        let missing = dir.path().join("nope.yaml");
        let err = AuthConfig::load(&missing).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "{}: cannot read the auth config",
                missing.display()
            )),
            "{err}"
        );
        std::fs::write(&path, vec![b'#'; MAX_CONFIG_BYTES as usize + 1]).unwrap();
        assert!(
            AuthConfig::load(&path)
                .unwrap_err()
                .message
                .contains("over the limit")
        );
    }

    #[test]
    fn debug_of_a_config_shows_no_key_or_secret() {
        let shown = format!("{:?}", AuthConfig::parse(FULL).unwrap());
        for secret in [JENKINS, "a-test-secret-of-at-least-32-bytes!!", "e3b0c442"] {
            assert!(
                !shown.to_lowercase().contains(secret),
                "{secret} in {shown}"
            );
        }
        assert!(shown.contains("Jenkins Production"));
    }
}
