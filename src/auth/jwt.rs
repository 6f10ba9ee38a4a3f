//! JWT verification (`Authorization: Bearer <jwt>`), with the `jsonwebtoken` crate.
//!
//! One algorithm is accepted, the one configured: HS256 with a shared secret, or RS256 /
//! ES256 with a public key file. A token whose header names another algorithm is refused
//! before any signature check, which closes the classic confusion attack (an HS256 token
//! "signed" with the RS256 public key as the secret).
//!
//! The crate checks the signature only; every claim is checked here against the `now`
//! the caller passes, so tests control time without sleeping:
//!
//! - `exp` is required, and `nbf` honoured when present, each with [`LEEWAY_SECS`] of
//!   leeway for clock skew between the issuer and this service;
//! - `iss` and `aud` must match when the config sets `issuer` / `audience` (a token
//!   without them is refused then); otherwise they are not looked at;
//! - `sub` is the caller's name; the role comes from the configured claim
//!   (`rentabot_role` by default), one of admin, operator, user, readonly.

use std::fmt;
use std::path::Path;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};

use super::config::{ConfigError, JwtConfig, JwtKey};
use super::roles::Role;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 30;

/// The claim that carries the role when the config names none.
pub const DEFAULT_ROLE_CLAIM: &str = "rentabot_role";

/// The longest `sub` accepted as a caller name (it appears in the audit log).
pub const MAX_SUBJECT_CHARS: usize = 128;

/// The largest public key file read (PEM), in bytes.
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// The algorithms a config may choose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JwtAlgorithm {
    Hs256,
    Rs256,
    Es256,
}

impl JwtAlgorithm {
    pub const fn as_str(self) -> &'static str {
        match self {
            JwtAlgorithm::Hs256 => "HS256",
            JwtAlgorithm::Rs256 => "RS256",
            JwtAlgorithm::Es256 => "ES256",
        }
    }

    /// The public-key algorithms, by the name a config spells (`RS256`, `ES256`).
    pub fn parse_public(name: &str) -> Option<JwtAlgorithm> {
        match name {
            "RS256" => Some(JwtAlgorithm::Rs256),
            "ES256" => Some(JwtAlgorithm::Es256),
            _ => None,
        }
    }

    fn jsonwebtoken(self) -> Algorithm {
        match self {
            JwtAlgorithm::Hs256 => Algorithm::HS256,
            JwtAlgorithm::Rs256 => Algorithm::RS256,
            JwtAlgorithm::Es256 => Algorithm::ES256,
        }
    }
}

/// Why a token was refused. [`JwtError::reason`] is the stable name sent to clients.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("it is not a well-formed JWT (three base64url parts: header, claims, signature)")]
    Malformed,
    #[error(
        "its signature does not verify with the service's key: was it issued for this service?"
    )]
    BadSignature,
    #[error(
        "its header names another algorithm than {expected}, the only one this service accepts"
    )]
    WrongAlgorithm { expected: &'static str },
    #[error("it has expired (`exp` is past, beyond 30 s of leeway): get a new token")]
    Expired,
    #[error(
        "it is not valid yet (`nbf` is ahead, beyond 30 s of leeway): check the issuer's clock"
    )]
    NotYetValid,
    #[error("it has no `exp` claim (a number): tokens must expire")]
    MissingExpiry,
    #[error("its `iss` claim is not the issuer this service trusts")]
    WrongIssuer,
    #[error("its `aud` claim does not name this service's audience")]
    WrongAudience,
    #[error("it has no `sub` claim (a name of 1 to 128 visible characters) to name the caller")]
    MissingSubject,
    #[error(
        "it has no `{claim}` claim to give the caller's role (admin, operator, user or readonly)"
    )]
    MissingRole { claim: String },
    #[error("its `{claim}` claim is not a role: use admin, operator, user or readonly")]
    UnknownRole { claim: String },
    #[error("its `sub` is the name of an API key: a token may not act as a key's owner")]
    SubjectIsKeyName,
}

impl JwtError {
    /// A stable snake_case name for the body's `reason` and the challenge.
    pub fn reason(&self) -> &'static str {
        match self {
            JwtError::Malformed => "malformed",
            JwtError::BadSignature => "bad_signature",
            JwtError::WrongAlgorithm { .. } => "wrong_algorithm",
            JwtError::Expired => "expired",
            JwtError::NotYetValid => "not_yet_valid",
            JwtError::MissingExpiry => "missing_expiry",
            JwtError::WrongIssuer => "wrong_issuer",
            JwtError::WrongAudience => "wrong_audience",
            JwtError::MissingSubject => "missing_subject",
            JwtError::MissingRole { .. } => "missing_role",
            JwtError::UnknownRole { .. } => "unknown_role",
            JwtError::SubjectIsKeyName => "subject_is_key_name",
        }
    }
}

/// Who a verified token says the caller is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub subject: String,
    pub role: Role,
}

/// Verifies tokens against one configured key.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    algorithm: JwtAlgorithm,
    issuer: Option<String>,
    audience: Option<String>,
    role_claim: String,
}

impl fmt::Debug for JwtVerifier {
    /// No key material, even a public key's.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("role_claim", &self.role_claim)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// Builds the verifier, reading the public key file (relative to `base_dir`, the auth
    /// config's folder) when the config names one. Blocking: file IO.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key file when it cannot be read or holds no key of
    /// the configured algorithm.
    pub fn new(config: &JwtConfig, base_dir: &Path) -> Result<JwtVerifier, ConfigError> {
        let (algorithm, key) = match &config.key {
            JwtKey::Hs256(secret) => (
                JwtAlgorithm::Hs256,
                DecodingKey::from_secret(secret.expose_secret().as_bytes())
                    .map_err(|e| ConfigError::message(format!("jwt.hs256_secret: {e}")))?,
            ),
            JwtKey::PublicKeyFile { algorithm, path } => {
                let path = base_dir.join(path);
                let fail = |message: String| ConfigError::message(message).in_file(&path);
                let pem = read_small(&path).map_err(fail)?;
                let key = match algorithm {
                    JwtAlgorithm::Rs256 => DecodingKey::from_rsa_pem(&pem),
                    JwtAlgorithm::Es256 => DecodingKey::from_ec_pem(&pem),
                    JwtAlgorithm::Hs256 => unreachable!("the config refuses HS256 with a key file"),
                }
                .map_err(|e| {
                    fail(format!(
                        "no {} public key in this file ({e}): give a PEM `-----BEGIN PUBLIC KEY-----` block{}",
                        algorithm.as_str(),
                        match algorithm {
                            JwtAlgorithm::Rs256 => " of an RSA key",
                            _ => " of a P-256 EC key",
                        }
                    ))
                })?;
                (*algorithm, key)
            }
        };
        let mut validation = Validation::new(algorithm.jsonwebtoken());
        // Claims are checked in `verify`, against the injected `now`.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        Ok(JwtVerifier {
            key,
            validation,
            algorithm,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            role_claim: config.role_claim.clone(),
        })
    }

    pub fn algorithm(&self) -> JwtAlgorithm {
        self.algorithm
    }

    /// Verifies `token` at `now` (seconds since the Unix epoch).
    ///
    /// # Errors
    /// The first check that fails, in this order: shape and algorithm, signature, `exp`,
    /// `nbf`, `iss`, `aud`, `sub`, role.
    pub fn verify(&self, token: &str, now_secs: u64) -> Result<Identity, JwtError> {
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => JwtError::BadSignature,
                ErrorKind::InvalidAlgorithm => JwtError::WrongAlgorithm {
                    expected: self.algorithm.as_str(),
                },
                _ => JwtError::Malformed,
            })?
            .claims;
        let now = now_secs as f64;
        let leeway = LEEWAY_SECS as f64;
        match claims.get("exp") {
            None => return Err(JwtError::MissingExpiry),
            Some(exp) => {
                let exp = numeric_date(exp).ok_or(JwtError::MissingExpiry)?;
                if now >= exp + leeway {
                    return Err(JwtError::Expired);
                }
            }
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = numeric_date(nbf).ok_or(JwtError::Malformed)?;
            if now + leeway < nbf {
                return Err(JwtError::NotYetValid);
            }
        }
        if let Some(issuer) = &self.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str())
        {
            return Err(JwtError::WrongIssuer);
        }
        if let Some(audience) = &self.audience {
            let named = match claims.get("aud") {
                Some(Value::String(aud)) => aud == audience,
                Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(audience)),
                _ => false,
            };
            if !named {
                return Err(JwtError::WrongAudience);
            }
        }
        let subject = match claims.get("sub") {
            Some(Value::String(sub)) if is_subject(sub) => sub.clone(),
            _ => return Err(JwtError::MissingSubject),
        };
        let role = match claims.get(&self.role_claim) {
            None => {
                return Err(JwtError::MissingRole {
                    claim: self.role_claim.clone(),
                });
            }
            Some(value) => {
                value
                    .as_str()
                    .and_then(Role::parse)
                    .ok_or_else(|| JwtError::UnknownRole {
                        claim: self.role_claim.clone(),
                    })?
            }
        };
        Ok(Identity { subject, role })
    }
}

/// A NumericDate (RFC 7519 §2): seconds since the epoch, possibly fractional.
fn numeric_date(value: &Value) -> Option<f64> {
    value.as_f64().filter(|t| t.is_finite() && *t >= 0.0)
}

/// A usable caller name: 1 to 128 characters, none of them a control character.
fn is_subject(sub: &str) -> bool {
    !sub.trim().is_empty()
        && sub.chars().count() <= MAX_SUBJECT_CHARS
        && !sub.chars().any(char::is_control)
}

fn read_small(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot open the public key file: {e}"))?;
    let mut pem = Vec::new();
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut pem)
        .map_err(|e| format!("cannot read the public key file: {e}"))?;
    if pem.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(format!(
            "the public key file is over {MAX_KEY_FILE_BYTES} bytes: it should hold one PEM public key"
        ));
    }
    Ok(pem)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::PathBuf;

    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    use super::*;

    /// A moment in 2026, seconds since the epoch: every test's `now`.
    pub(crate) const NOW: u64 = 1_780_000_000;
    pub(crate) const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

    pub(crate) fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/auth")
    }

    fn pem(name: &str) -> Vec<u8> {
        std::fs::read(fixtures().join(name)).unwrap()
    }

    pub(crate) fn hs256_config() -> JwtConfig {
        JwtConfig {
            key: JwtKey::Hs256(SECRET.into()),
            issuer: None,
            audience: None,
            role_claim: DEFAULT_ROLE_CLAIM.to_owned(),
        }
    }

    fn public_config(algorithm: JwtAlgorithm, file: &str) -> JwtConfig {
        JwtConfig {
            key: JwtKey::PublicKeyFile {
                algorithm,
                path: PathBuf::from(file),
            },
            ..hs256_config()
        }
    }

    fn verifier(config: &JwtConfig) -> JwtVerifier {
        JwtVerifier::new(config, &fixtures()).unwrap()
    }

    /// Claims valid at [`NOW`]: an hour left, role user.
    pub(crate) fn claims() -> Value {
        json!({"sub": "alice", "exp": NOW + 3600, "nbf": NOW - 10, "rentabot_role": "user"})
    }

    pub(crate) fn hs256(claims: &Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn rs256(claims: &Value, key_file: &str) -> String {
        encode(
            &Header::new(Algorithm::RS256),
            claims,
            &EncodingKey::from_rsa_pem(&pem(key_file)).unwrap(),
        )
        .unwrap()
    }

    fn es256(claims: &Value) -> String {
        encode(
            &Header::new(Algorithm::ES256),
            claims,
            &EncodingKey::from_ec_pem(&pem("es256-private.pem")).unwrap(),
        )
        .unwrap()
    }

    fn alice(role: Role) -> Identity {
        Identity {
            subject: "alice".to_owned(),
            role,
        }
    }

    fn with(mut claims: Value, key: &str, value: Value) -> Value {
        claims[key] = value;
        claims
    }

    fn without(mut claims: Value, key: &str) -> Value {
        claims.as_object_mut().unwrap().remove(key);
        claims
    }

    #[test]
    fn a_valid_token_names_its_subject_and_role_with_each_algorithm() {
        let hs = verifier(&hs256_config());
        assert_eq!(hs.verify(&hs256(&claims()), NOW), Ok(alice(Role::User)));
        let rs = verifier(&public_config(JwtAlgorithm::Rs256, "rs256-public.pem"));
        assert_eq!(
            rs.verify(&rs256(&claims(), "rs256-private.pem"), NOW),
            Ok(alice(Role::User))
        );
        let es = verifier(&public_config(JwtAlgorithm::Es256, "es256-public.pem"));
        assert_eq!(es.verify(&es256(&claims()), NOW), Ok(alice(Role::User)));
        for role in Role::ALL {
            let token = hs256(&with(claims(), "rentabot_role", json!(role.as_str())));
            assert_eq!(hs.verify(&token, NOW), Ok(alice(role)));
        }
    }

    #[test]
    fn expiry_is_checked_against_the_given_now_with_leeway() {
        let hs = verifier(&hs256_config());
        let token = hs256(&with(claims(), "exp", json!(NOW)));
        assert!(hs.verify(&token, NOW + LEEWAY_SECS - 1).is_ok());
        assert_eq!(hs.verify(&token, NOW + LEEWAY_SECS), Err(JwtError::Expired));
        assert_eq!(hs.verify(&token, NOW + 86_400), Err(JwtError::Expired));
        // A fractional NumericDate is a date too.
        let token = hs256(&with(claims(), "exp", json!(NOW as f64 + 0.5)));
        assert!(hs.verify(&token, NOW).is_ok());
        let token = hs256(&without(claims(), "exp"));
        assert_eq!(hs.verify(&token, NOW), Err(JwtError::MissingExpiry));
        let token = hs256(&with(claims(), "exp", json!("tomorrow")));
        assert_eq!(hs.verify(&token, NOW), Err(JwtError::MissingExpiry));
    }

    #[test]
    fn a_token_not_yet_valid_is_refused_until_its_nbf_less_leeway() {
        let hs = verifier(&hs256_config());
        let token = hs256(&with(claims(), "nbf", json!(NOW + 600)));
        assert_eq!(hs.verify(&token, NOW), Err(JwtError::NotYetValid));
        assert_eq!(
            hs.verify(&token, NOW + 600 - LEEWAY_SECS - 1),
            Err(JwtError::NotYetValid)
        );
        assert!(hs.verify(&token, NOW + 600 - LEEWAY_SECS).is_ok());
        // No nbf: valid from the start.
        assert!(hs.verify(&hs256(&without(claims(), "nbf")), NOW).is_ok());
    }

    #[test]
    fn a_bad_signature_is_refused() {
        let hs = verifier(&hs256_config());
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &with(claims(), "rentabot_role", json!("admin")),
            &EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes").unwrap(),
        )
        .unwrap();
        assert_eq!(hs.verify(&forged, NOW), Err(JwtError::BadSignature));
        // Claims swapped under a valid signature.
        let token = hs256(&claims());
        let admin = hs256(&with(claims(), "rentabot_role", json!("admin")));
        let (head, _, sig) = split(&token);
        let (_, admin_claims, _) = split(&admin);
        let tampered = format!("{head}.{admin_claims}.{sig}");
        assert_eq!(hs.verify(&tampered, NOW), Err(JwtError::BadSignature));
        let rs = verifier(&public_config(JwtAlgorithm::Rs256, "rs256-public.pem"));
        assert_eq!(
            rs.verify(&rs256(&claims(), "other-rs256-private.pem"), NOW),
            Err(JwtError::BadSignature)
        );
    }

    fn split(token: &str) -> (&str, &str, &str) {
        let mut parts = token.split('.');
        (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        )
    }

    #[test]
    fn an_hs256_token_is_refused_when_rs256_is_configured_even_keyed_with_the_public_key() {
        // The confusion attack: sign HS256 with the RSA public key's bytes as the secret,
        // hoping the verifier uses its "key" as an HMAC secret.
        let rs = verifier(&public_config(JwtAlgorithm::Rs256, "rs256-public.pem"));
        let confused = encode(
            &Header::new(Algorithm::HS256),
            &with(claims(), "rentabot_role", json!("admin")),
            &EncodingKey::from_secret(&pem("rs256-public.pem")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            rs.verify(&confused, NOW),
            Err(JwtError::WrongAlgorithm { expected: "RS256" })
        );
        // And the other way: an RS256 token where HS256 is configured.
        let hs = verifier(&hs256_config());
        assert_eq!(
            hs.verify(&rs256(&claims(), "rs256-private.pem"), NOW),
            Err(JwtError::WrongAlgorithm { expected: "HS256" })
        );
        // An ES256 token where RS256 is configured.
        assert_eq!(
            rs.verify(&es256(&claims()), NOW),
            Err(JwtError::WrongAlgorithm { expected: "RS256" })
        );
    }

    #[test]
    fn an_unsigned_token_is_refused() {
        let hs = verifier(&hs256_config());
        let signed = hs256(&with(claims(), "rentabot_role", json!("admin")));
        let (_, body, _) = split(&signed);
        // {"alg":"none","typ":"JWT"}
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{body}.");
        assert_eq!(hs.verify(&none, NOW), Err(JwtError::Malformed));
        assert_eq!(hs.verify("not-a-jwt", NOW), Err(JwtError::Malformed));
        assert_eq!(hs.verify("a.b.c", NOW), Err(JwtError::Malformed));
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let config = JwtConfig {
            issuer: Some("https://sso.example".to_owned()),
            audience: Some("rentabot".to_owned()),
            ..hs256_config()
        };
        let strict = verifier(&config);
        let good = with(
            with(claims(), "iss", json!("https://sso.example")),
            "aud",
            json!("rentabot"),
        );
        assert!(strict.verify(&hs256(&good), NOW).is_ok());
        let listed = with(good.clone(), "aud", json!(["grafana", "rentabot"]));
        assert!(strict.verify(&hs256(&listed), NOW).is_ok());
        let cases = [
            (
                with(good.clone(), "aud", json!("grafana")),
                JwtError::WrongAudience,
            ),
            (
                with(good.clone(), "aud", json!(["grafana"])),
                JwtError::WrongAudience,
            ),
            (without(good.clone(), "aud"), JwtError::WrongAudience),
            (
                with(good.clone(), "iss", json!("https://evil.example")),
                JwtError::WrongIssuer,
            ),
            (without(good.clone(), "iss"), JwtError::WrongIssuer),
        ];
        for (claims, why) in cases {
            assert_eq!(
                strict.verify(&hs256(&claims), NOW),
                Err(why.clone()),
                "{claims}"
            );
        }
        // Not configured: not looked at, whatever the token says.
        let lax = verifier(&hs256_config());
        let other = with(with(claims(), "iss", json!("x")), "aud", json!("y"));
        assert!(lax.verify(&hs256(&other), NOW).is_ok());
    }

    #[test]
    fn the_role_comes_from_the_configured_claim_and_must_be_a_role() {
        let hs = verifier(&hs256_config());
        assert_eq!(
            hs.verify(&hs256(&without(claims(), "rentabot_role")), NOW),
            Err(JwtError::MissingRole {
                claim: "rentabot_role".to_owned()
            })
        );
        for bad in [
            json!("superuser"),
            json!("Admin"),
            json!(3),
            json!(["admin"]),
            json!(null),
        ] {
            let token = hs256(&with(claims(), "rentabot_role", bad.clone()));
            assert_eq!(
                hs.verify(&token, NOW),
                Err(JwtError::UnknownRole {
                    claim: "rentabot_role".to_owned()
                }),
                "{bad}"
            );
        }
        let custom = verifier(&JwtConfig {
            role_claim: "https://lab.example/role".to_owned(),
            ..hs256_config()
        });
        let token = hs256(&with(
            without(claims(), "rentabot_role"),
            "https://lab.example/role",
            json!("operator"),
        ));
        assert_eq!(custom.verify(&token, NOW), Ok(alice(Role::Operator)));
        // The default claim means nothing to a verifier told another.
        assert!(custom.verify(&hs256(&claims()), NOW).is_err());
    }

    #[test]
    fn the_subject_must_name_the_caller() {
        let hs = verifier(&hs256_config());
        let long = "x".repeat(MAX_SUBJECT_CHARS + 1);
        for bad in [
            json!(""),
            json!("  "),
            json!(42),
            json!("a\nb"),
            json!(long),
        ] {
            let token = hs256(&with(claims(), "sub", bad.clone()));
            assert_eq!(
                hs.verify(&token, NOW),
                Err(JwtError::MissingSubject),
                "{bad}"
            );
        }
        let token = hs256(&without(claims(), "sub"));
        assert_eq!(hs.verify(&token, NOW), Err(JwtError::MissingSubject));
    }

    #[test]
    fn a_key_file_that_holds_no_usable_key_is_an_error_naming_it() {
        let cases = [
            (
                JwtAlgorithm::Rs256,
                "missing.pem",
                "cannot open the public key file",
            ),
            (
                JwtAlgorithm::Rs256,
                "es256-public.pem",
                "no RS256 public key in this file",
            ),
            (
                JwtAlgorithm::Es256,
                "rs256-public.pem",
                "no ES256 public key in this file",
            ),
            (
                JwtAlgorithm::Rs256,
                "README.md",
                "no RS256 public key in this file",
            ),
        ];
        for (algorithm, file, why) in cases {
            let err = JwtVerifier::new(&public_config(algorithm, file), &fixtures()).unwrap_err();
            assert_eq!(err.file, Some(fixtures().join(file)));
            assert!(err.message.contains(why), "{file}: {err}");
        }
    }

    #[test]
    fn debug_shows_no_key_material() {
        let shown = format!("{:?} {:?}", verifier(&hs256_config()), hs256_config());
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
