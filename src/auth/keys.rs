//! API keys: stored as SHA-256 digests, matched in constant time, and the credentials a
//! request carries (`X-API-Key: KEY` or `Authorization: Bearer KEY|JWT`).
//!
//! Nothing here logs or prints a key: [`Credentials`] and [`KeyDigest`] redact
//! themselves in `Debug`, and errors never quote what was sent.
//!
//! Why SHA-256 and not a password hash: keys are long random strings, not passwords, so
//! a fast hash is as safe against guessing and costs ~0.2 us per request instead of the
//! ~30 ms of argon2. A stolen config file of `key_sha256` entries yields no usable key.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::error::AuthError;
use super::roles::Caller;

/// The shortest key the config accepts in clear (`key:`): 16 characters. Generate keys
/// with e.g. `openssl rand -hex 32` (64 characters).
pub const MIN_KEY_CHARS: usize = 16;

/// The longest credential in `X-API-Key` (bytes): longer ones are refused before
/// hashing, so a large header cannot make every request hash kilobytes.
pub const MAX_KEY_BYTES: usize = 512;

/// The longest bearer credential (bytes), room for a JWT with many claims.
pub const MAX_BEARER_BYTES: usize = 8192;

/// The SHA-256 digest of an API key: what the config holds (`key_sha256`) and what a
/// presented key is compared with.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    /// The digest of `key`, as `printf %s KEY | sha256sum` prints it.
    pub fn of(key: &str) -> KeyDigest {
        KeyDigest(Sha256::digest(key.as_bytes()).into())
    }

    /// Reads 64 hexadecimal digits (either case).
    pub fn from_hex(hex: &str) -> Option<KeyDigest> {
        let hex = hex.as_bytes();
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            let digit = |c: u8| (c as char).to_digit(16);
            *byte = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
        }
        Some(KeyDigest(out))
    }

    /// Lower-case hexadecimal, for a config file's `key_sha256`.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The digest as four words, for a comparison that reads every byte.
    fn words(&self) -> [u64; 4] {
        let mut w = [0u64; 4];
        for (word, chunk) in w.iter_mut().zip(self.0.chunks_exact(8)) {
            *word = u64::from_le_bytes(chunk.try_into().expect("chunks of 8"));
        }
        w
    }
}

impl fmt::Debug for KeyDigest {
    /// Redacted: the digest of a weak key could be reversed by guessing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyDigest(<redacted>)")
    }
}

/// What a request presents as proof of identity, borrowed from its headers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Credentials<'a> {
    /// Neither header.
    None,
    /// `X-API-Key: KEY` (or the same key in both headers).
    ApiKey(&'a str),
    /// `Authorization: Bearer VALUE`: a JWT when it has a JWT's shape ([`is_jwt_shaped`])
    /// and the config has a `jwt` section (which then refuses keys of that shape), else
    /// an API key.
    Bearer(&'a str),
}

impl<'a> Credentials<'a> {
    /// Reads the two header forms, given each header's value if the request has exactly
    /// one (the HTTP glue refuses repeated headers).
    ///
    /// An `Authorization` header of another scheme (`Basic` from a proxy) is ignored when
    /// `X-API-Key` is present, and refused otherwise.
    ///
    /// # Errors
    /// [`AuthError::MalformedCredentials`] when a value is empty, not visible ASCII, too
    /// long, of a scheme other than Bearer alone, or when the two headers disagree.
    pub fn from_headers(
        x_api_key: Option<&'a [u8]>,
        authorization: Option<&'a [u8]>,
    ) -> Result<Credentials<'a>, AuthError> {
        let key = x_api_key
            .map(|v| token(v, MAX_KEY_BYTES, "X-API-Key"))
            .transpose()?;
        let bearer = match authorization.map(bearer_token) {
            None => None,
            Some(Ok(value)) => Some(value),
            // Another scheme: someone else's credential, when we were given our own.
            Some(Err(_)) if key.is_some() => None,
            Some(Err(e)) => return Err(e),
        };
        match (key, bearer) {
            (None, None) => Ok(Credentials::None),
            (Some(k), None) => Ok(Credentials::ApiKey(k)),
            (None, Some(b)) => Ok(Credentials::Bearer(b)),
            (Some(k), Some(b)) if k == b => Ok(Credentials::ApiKey(k)),
            (Some(_), Some(_)) => Err(AuthError::MalformedCredentials(
                "X-API-Key and Authorization: Bearer carry different credentials: send one",
            )),
        }
    }

    pub fn is_none(&self) -> bool {
        matches!(self, Credentials::None)
    }
}

impl fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::ApiKey(_) => f.write_str("ApiKey(<redacted>)"),
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// A header value as a credential: visible ASCII (no spaces inside), 1 to `max` bytes,
/// surrounding whitespace ignored.
fn token<'a>(value: &'a [u8], max: usize, header: &'static str) -> Result<&'a str, AuthError> {
    let value = value.trim_ascii();
    if value.is_empty() {
        return Err(AuthError::MalformedCredentials(match header {
            "X-API-Key" => "the X-API-Key header is empty: put the API key in it",
            _ => "the bearer credential is empty: send `Authorization: Bearer KEY`",
        }));
    }
    if value.len() > max {
        return Err(AuthError::MalformedCredentials(match header {
            "X-API-Key" => "the X-API-Key header is over 512 bytes: no API key is that long",
            _ => {
                "the bearer credential is over 8192 bytes: no API key or accepted JWT is that long"
            }
        }));
    }
    if !value.iter().all(u8::is_ascii_graphic) {
        return Err(AuthError::MalformedCredentials(match header {
            "X-API-Key" => {
                "the X-API-Key header has spaces or characters outside visible ASCII: no API key has them"
            }
            _ => {
                "the bearer credential has spaces or characters outside visible ASCII: no API key or JWT has them"
            }
        }));
    }
    // Visible ASCII is UTF-8.
    std::str::from_utf8(value).map_err(|_| AuthError::MalformedCredentials("not ASCII"))
}

/// The credential of `Authorization: Bearer VALUE` (scheme name in any case).
fn bearer_token(value: &[u8]) -> Result<&str, AuthError> {
    let value = value.trim_ascii();
    let scheme_len = value.iter().position(|b| *b == b' ').unwrap_or(value.len());
    if !value[..scheme_len].eq_ignore_ascii_case(b"bearer") {
        return Err(AuthError::MalformedCredentials(
            "the Authorization header must use the Bearer scheme: `Authorization: Bearer KEY`",
        ));
    }
    token(&value[scheme_len..], MAX_BEARER_BYTES, "Authorization")
}

/// Whether `value` has a JWT's (JWS compact) shape: three base64url parts separated by
/// dots, the first two not empty.
pub fn is_jwt_shaped(value: &str) -> bool {
    let base64url = |part: &str| {
        part.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let mut parts = value.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(header), Some(claims), Some(signature), None) => {
            !header.is_empty()
                && !claims.is_empty()
                && base64url(header)
                && base64url(claims)
                && base64url(signature)
        }
        _ => false,
    }
}

/// The configured keys: digests side by side for the comparison, each with the caller it
/// authenticates (name, role, caps, buckets).
pub(crate) struct KeyTable {
    digests: Box<[[u64; 4]]>,
    callers: Box<[Caller]>,
}

impl KeyTable {
    pub(crate) fn new(keys: Vec<(KeyDigest, Caller)>) -> KeyTable {
        let (digests, callers): (Vec<_>, Vec<_>) =
            keys.into_iter().map(|(d, c)| (d.words(), c)).unzip();
        KeyTable {
            digests: digests.into(),
            callers: callers.into(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.callers.len()
    }

    pub(crate) fn callers(&self) -> impl Iterator<Item = &Caller> {
        self.callers.iter()
    }

    pub(crate) fn by_name(&self, name: &str) -> Option<&Caller> {
        self.callers.iter().find(|c| &*c.name == name)
    }

    /// The caller whose key is `presented`.
    ///
    /// Constant time in which key matched, or whether one did: the presented key is
    /// hashed, then compared with *every* digest (no early exit, no branch on the
    /// bytes), and the index of the match is chosen with a constant-time select. The
    /// cost is one SHA-256 of the key plus ~1 ns per configured key.
    pub(crate) fn find(&self, presented: &str) -> Option<&Caller> {
        let wanted = KeyDigest::of(presented).words();
        // Index + 1 of the matching digest; 0 for none.
        let mut found = 0u32;
        for (i, digest) in self.digests.iter().enumerate() {
            let diff = (digest[0] ^ wanted[0])
                | (digest[1] ^ wanted[1])
                | (digest[2] ^ wanted[2])
                | (digest[3] ^ wanted[3]);
            let index = u32::try_from(i + 1).unwrap_or(u32::MAX);
            found.conditional_assign(&index, diff.ct_eq(&0));
        }
        match found {
            0 => None,
            i => self.callers.get(i as usize - 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::roles::{Role, Via};

    const KEY: &str = "0123456789abcdef-jenkins";

    #[test]
    fn digest_matches_sha256sum_and_round_trips_through_hex() {
        // printf %s 0123456789abcdef-jenkins | sha256sum
        let hex = KeyDigest::of(KEY).to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(KeyDigest::from_hex(&hex), Some(KeyDigest::of(KEY)));
        assert_eq!(
            KeyDigest::from_hex(&hex.to_uppercase()),
            Some(KeyDigest::of(KEY))
        );
        // The digest of the empty string, a known value.
        assert_eq!(
            KeyDigest::of("").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        for bad in [
            "",
            "abc",
            &hex[..63],
            &format!("{}g", &hex[..63]),
            &format!("{hex}0"),
        ] {
            assert_eq!(KeyDigest::from_hex(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn debug_never_shows_a_key_or_digest() {
        let shown = format!(
            "{:?} {:?} {:?}",
            KeyDigest::of(KEY),
            Credentials::ApiKey(KEY),
            Credentials::Bearer(KEY)
        );
        assert!(!shown.contains(KEY), "{shown}");
        assert!(
            !shown.contains(&KeyDigest::of(KEY).to_hex()[..8]),
            "{shown}"
        );
        assert!(shown.contains("<redacted>"));
    }

    fn creds<'a>(
        key: Option<&'a str>,
        auth: Option<&'a str>,
    ) -> Result<Credentials<'a>, AuthError> {
        Credentials::from_headers(key.map(str::as_bytes), auth.map(str::as_bytes))
    }

    #[test]
    fn credentials_come_from_either_header() {
        assert_eq!(creds(None, None), Ok(Credentials::None));
        assert_eq!(creds(Some(KEY), None), Ok(Credentials::ApiKey(KEY)));
        assert_eq!(
            creds(Some(&format!("  {KEY} ")), None),
            Ok(Credentials::ApiKey(KEY))
        );
        for header in [
            format!("Bearer {KEY}"),
            format!("bearer {KEY}"),
            format!("BEARER   {KEY}  "),
        ] {
            assert_eq!(
                creds(None, Some(&header)),
                Ok(Credentials::Bearer(KEY)),
                "{header}"
            );
        }
        // The same key in both headers is one credential.
        assert_eq!(
            creds(Some(KEY), Some(&format!("Bearer {KEY}"))),
            Ok(Credentials::ApiKey(KEY))
        );
        // A proxy's Basic credential beside our key is not ours to judge.
        assert_eq!(
            creds(Some(KEY), Some("Basic dXNlcjpwYXNz")),
            Ok(Credentials::ApiKey(KEY))
        );
    }

    #[test]
    fn malformed_credentials_are_refused_with_what_to_send() {
        let long_key = "k".repeat(MAX_KEY_BYTES + 1);
        let long_bearer = format!("Bearer {}", "k".repeat(MAX_BEARER_BYTES + 1));
        let cases: [(Option<&str>, Option<&str>, &str); 9] = [
            (Some(""), None, "X-API-Key header is empty"),
            (Some("   "), None, "X-API-Key header is empty"),
            (
                Some("two words"),
                None,
                "spaces or characters outside visible ASCII",
            ),
            (Some("clé-0123456789abcdef"), None, "outside visible ASCII"),
            (Some(&long_key), None, "over 512 bytes"),
            (None, Some("Bearer"), "bearer credential is empty"),
            (
                None,
                Some("Basic dXNlcjpwYXNz"),
                "must use the Bearer scheme",
            ),
            (None, Some(&long_bearer), "over 8192 bytes"),
            (Some(KEY), Some("Bearer another-key-0123456789"), "send one"),
        ];
        for (key, auth, why) in cases {
            match creds(key, auth) {
                Err(AuthError::MalformedCredentials(message)) => {
                    assert!(message.contains(why), "{key:?} {auth:?}: {message}")
                }
                other => panic!("{key:?} {auth:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn jwt_shape_is_three_base64url_parts() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl-_";
        assert!(is_jwt_shaped(jwt));
        assert!(is_jwt_shaped("a.b."));
        for not in [
            KEY, "a.b", "a.b.c.d", ".b.c", "a..c", "a.b+c.d", "a.b.c=", "",
        ] {
            assert!(!is_jwt_shaped(not), "{not}");
        }
    }

    fn table(names: &[(&str, &str)]) -> KeyTable {
        KeyTable::new(
            names
                .iter()
                .map(|(key, name)| (KeyDigest::of(key), Caller::new(*name, Role::User, Via::Key)))
                .collect(),
        )
    }

    #[test]
    fn a_presented_key_finds_its_caller_among_all_keys() {
        let keys = [
            ("key-one-0123456789", "one"),
            ("key-two-0123456789", "two"),
            ("key-three-01234567", "three"),
        ];
        let table = table(&keys);
        for (key, name) in keys {
            assert_eq!(table.find(key).map(|c| &*c.name), Some(name));
        }
        assert!(table.find("key-four-01234567").is_none());
        assert!(
            table.find("key-one-012345678").is_none(),
            "a prefix is not the key"
        );
        assert!(table.find("").is_none());
        assert!(KeyTable::new(Vec::new()).find(KEY).is_none());
        assert_eq!(table.by_name("two").map(|c| c.role), Some(Role::User));
    }

    #[test]
    fn keys_differing_in_any_word_of_the_digest_do_not_match() {
        // Forge digests that equal the wanted one except in one word, to check that
        // every word takes part in the comparison.
        let wanted = KeyDigest::of(KEY);
        for word in 0..4 {
            let mut bytes = wanted.0;
            bytes[word * 8 + 3] ^= 0x10;
            let table = KeyTable::new(vec![(
                KeyDigest(bytes),
                Caller::new("forged", Role::Admin, Via::Key),
            )]);
            assert!(table.find(KEY).is_none(), "word {word}");
        }
    }
}
