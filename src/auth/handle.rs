//! [`Auth`]: the one handle the HTTP layer holds: authenticate, authorize, rate-limit,
//! reload.
//!
//! The config in force is an immutable `State` behind an [`ArcSwap`]: a request loads it
//! once (a few atomic operations, no lock) and keeps that snapshot to the end of its
//! checks; a reload builds a new `State` off to the side (file IO and PEM parsing outside
//! any lock a request takes), then swaps it in. Requests in flight finish under the old
//! one. Rate-limit buckets move to the new state for every key that keeps its name and
//! rate, so a reload neither refills nor empties them.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::config::{ApiKeyConfig, AuthConfig, ConfigError};
use super::error::AuthError;
use super::jwt::JwtVerifier;
use super::keys::{Credentials, KeyTable, is_jwt_shaped};
use super::limits::{
    Buckets, Class, ClientAddr, ClientTable, MAX_TRACKED_CLIENTS, RateClock, RateLimit,
};
use super::roles::{Bucket, Caller, Caps, Via};
use super::rules::{Access, Rule};
use crate::domain::{Clock, Timestamp};

/// Authentication, authorization and rate limits, shared by every worker (clone it: it
/// is one `Arc`).
#[derive(Clone)]
pub struct Auth {
    mode: Arc<Mode>,
}

enum Mode {
    /// No auth config: the 1.0 service, open to all.
    Open,
    Enabled(Enabled),
}

struct Enabled {
    current: ArcSwap<State>,
    clock: RateClock,
    /// The file the config came from, if it came from one: what a bare reload reads.
    source: Option<PathBuf>,
    /// Serialises reloads, so each carries buckets over from the state it replaces.
    reloading: Mutex<()>,
}

/// One config, ready to answer requests.
struct State {
    keys: KeyTable,
    configs: Vec<ApiKeyConfig>,
    key_names: HashSet<Arc<str>>,
    jwt: Option<JwtVerifier>,
    subjects: Arc<ClientTable<Arc<str>>>,
    anonymous: Arc<ClientTable<ClientAddr>>,
    metrics_require_key: bool,
}

/// What a reload changed, for the log and the reload endpoint's answer. Names only,
/// never keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Keys configured now.
    pub keys: usize,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Keys whose secret, role, rate or caps changed.
    pub changed: Vec<String>,
    /// Whether JWTs are accepted now.
    pub jwt: bool,
}

impl fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} API keys", self.keys)?;
        for (what, names) in [
            ("added", &self.added),
            ("removed", &self.removed),
            ("changed", &self.changed),
        ] {
            if !names.is_empty() {
                write!(f, "; {what}: {}", names.join(", "))?;
            }
        }
        f.write_str(if self.jwt {
            "; JWTs accepted"
        } else {
            "; no JWTs"
        })
    }
}

impl Auth {
    /// The service without auth config: every caller is [`Caller::open`], nothing is
    /// refused or limited (the 1.0 behaviour).
    pub fn open() -> Auth {
        Auth {
            mode: Arc::new(Mode::Open),
        }
    }

    /// Reads the config at `path` (and its JWT key file). Blocking: file IO.
    ///
    /// `clock` is the app's clock, which the rate limiters read.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, line and what to fix.
    pub fn load(path: &Path, clock: Arc<dyn Clock>) -> Result<Auth, ConfigError> {
        let config = AuthConfig::load(path)?;
        Auth::build(config, base_dir(path), clock, Some(path.to_owned()))
    }

    /// An `Auth` for a parsed config; a relative JWT key file is read from `base_dir`.
    ///
    /// # Errors
    /// When the JWT key file cannot be read or holds no usable key.
    pub fn from_config(
        config: AuthConfig,
        base_dir: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<Auth, ConfigError> {
        Auth::build(config, base_dir, clock, None)
    }

    fn build(
        config: AuthConfig,
        base_dir: &Path,
        clock: Arc<dyn Clock>,
        source: Option<PathBuf>,
    ) -> Result<Auth, ConfigError> {
        let clock = RateClock::new(clock);
        let state = State::build(config, base_dir, &clock, None)?;
        Ok(Auth {
            mode: Arc::new(Mode::Enabled(Enabled {
                current: ArcSwap::from_pointee(state),
                clock,
                source,
                reloading: Mutex::new(()),
            })),
        })
    }

    /// Whether requests need credentials (a config was loaded).
    pub fn is_enabled(&self) -> bool {
        matches!(*self.mode, Mode::Enabled(_))
    }

    /// The file the config was loaded from, which SIGHUP and the reload endpoint read
    /// again.
    pub fn source(&self) -> Option<&Path> {
        match &*self.mode {
            Mode::Enabled(e) => e.source.as_deref(),
            Mode::Open => None,
        }
    }

    /// One line for the start-up log.
    pub fn describe(&self) -> String {
        match &*self.mode {
            Mode::Open => "auth is off: every caller may do everything (start with --auth-config to require API keys)".to_owned(),
            Mode::Enabled(e) => {
                let state = e.current.load();
                format!(
                    "auth is on: {} API keys{}; /metrics {}",
                    state.keys.len(),
                    match &state.jwt {
                        Some(j) => format!(", JWTs signed with {}", j.algorithm().as_str()),
                        None => String::new(),
                    },
                    if state.metrics_require_key { "needs a key" } else { "is open" }
                )
            }
        }
    }

    /// The config's `max_locks` / `max_pending_reservations` for `caller` (from the
    /// config in force now, so a reload lowers them at once).
    pub fn caps(&self, caller: &Caller) -> Caps {
        match &*self.mode {
            Mode::Enabled(e) if caller.via == Via::Key => e
                .current
                .load()
                .keys
                .by_name(&caller.name)
                .map_or(caller.caps, |c| c.caps),
            _ => caller.caps,
        }
    }

    /// Reads the config at `path` again and puts it in force; on any error the config in
    /// force stays. Blocking: file IO (call it from a blocking thread).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file and what to fix; or, when the service was
    /// started without auth, one saying so (auth cannot be turned on by a reload).
    pub fn reload(&self, path: &Path) -> Result<ReloadReport, ConfigError> {
        let Mode::Enabled(enabled) = &*self.mode else {
            return Err(ConfigError::message(
                "the service was started without --auth-config: auth is off and cannot be turned on by a reload; restart with --auth-config",
            ));
        };
        let config = AuthConfig::load(path)?;
        enabled.replace(config, base_dir(path))
    }

    /// Puts a parsed config in force (what [`Auth::reload`] does after reading the file).
    ///
    /// # Errors
    /// As [`Auth::reload`].
    pub fn replace(
        &self,
        config: AuthConfig,
        base_dir: &Path,
    ) -> Result<ReloadReport, ConfigError> {
        let Mode::Enabled(enabled) = &*self.mode else {
            return Err(ConfigError::message(
                "the service was started without --auth-config: auth is off and cannot be turned on by a reload",
            ));
        };
        enabled.replace(config, base_dir)
    }

    /// Who is calling. No credential gives [`Caller::anonymous`], which
    /// [`Auth::authorize`] refuses on every route that names a role. With auth off,
    /// always [`Caller::open`].
    ///
    /// `now` checks a JWT's `exp` and `nbf`. A failed attempt is also counted against the
    /// client address's anonymous read bucket, so a client that keeps sending a wrong key
    /// is slowed down (429) rather than answered at full speed.
    ///
    /// # Errors
    /// 401s: [`AuthError::UnknownKey`], [`AuthError::InvalidToken`]; or 429
    /// [`AuthError::RateLimited`] for a client address over its budget of failures.
    pub fn authenticate(
        &self,
        credentials: &Credentials<'_>,
        client_ip: IpAddr,
        now: Timestamp,
    ) -> Result<Caller, AuthError> {
        match &*self.mode {
            Mode::Open => Ok(Caller::open()),
            Mode::Enabled(e) => e.current.load().authenticate(credentials, client_ip, now),
        }
    }

    /// Whether `caller` may call the route of `rule`.
    ///
    /// # Errors
    /// 401 [`AuthError::MissingCredentials`] for an anonymous caller on a route that
    /// needs one; 403 [`AuthError::Forbidden`] for a role below the rule's.
    pub fn authorize(&self, rule: &Rule, caller: &Caller) -> Result<(), AuthError> {
        match &*self.mode {
            Mode::Open => Ok(()),
            Mode::Enabled(e) => e.current.load().authorize(rule, caller),
        }
    }

    /// Takes one token from the caller's bucket for the rule's class (a key's own
    /// buckets, a JWT subject's, or the client address's when anonymous).
    ///
    /// # Errors
    /// 429 [`AuthError::RateLimited`] with the whole seconds to wait.
    pub fn check_rate(
        &self,
        rule: &Rule,
        caller: &Caller,
        client_ip: IpAddr,
    ) -> Result<(), AuthError> {
        match &*self.mode {
            Mode::Open => Ok(()),
            Mode::Enabled(e) => e.current.load().check_rate(rule, caller, client_ip),
        }
    }

    /// The whole gate, in order, under one snapshot of the config: authenticate (not on
    /// public routes, where credentials are not even read), authorize, rate-limit.
    /// What the middleware calls for every request.
    ///
    /// # Errors
    /// The first refusal: 401, 403 or 429 (see [`AuthError`]).
    pub fn admit(
        &self,
        rule: &Rule,
        credentials: &Credentials<'_>,
        client_ip: IpAddr,
        now: Timestamp,
    ) -> Result<Caller, AuthError> {
        let Mode::Enabled(e) = &*self.mode else {
            return Ok(Caller::open());
        };
        let state = e.current.load();
        let caller = match rule.access {
            Access::Public => Caller::anonymous(),
            Access::Metrics if !state.metrics_require_key => Caller::anonymous(),
            _ => state.authenticate(credentials, client_ip, now)?,
        };
        state.authorize(rule, &caller)?;
        state.check_rate(rule, &caller, client_ip)?;
        Ok(caller)
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

fn base_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

impl Enabled {
    fn replace(&self, config: AuthConfig, base_dir: &Path) -> Result<ReloadReport, ConfigError> {
        // A reload that could not take the lock because another panicked still reloads.
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.current.load_full();
        let new = State::build(config, base_dir, &self.clock, Some(&old))?;
        let report = ReloadReport::between(&old, &new);
        self.current.store(Arc::new(new));
        Ok(report)
    }
}

impl ReloadReport {
    fn between(old: &State, new: &State) -> ReloadReport {
        let find = |state: &State, name: &str| -> Option<ApiKeyConfig> {
            state.configs.iter().find(|c| c.name == name).cloned()
        };
        let mut report = ReloadReport {
            keys: new.configs.len(),
            jwt: new.jwt.is_some(),
            ..ReloadReport::default()
        };
        for config in &new.configs {
            match find(old, &config.name) {
                None => report.added.push(config.name.clone()),
                Some(before) if before != *config => report.changed.push(config.name.clone()),
                Some(_) => {}
            }
        }
        for config in &old.configs {
            if find(new, &config.name).is_none() {
                report.removed.push(config.name.clone());
            }
        }
        report
    }
}

impl State {
    fn build(
        config: AuthConfig,
        base_dir: &Path,
        clock: &RateClock,
        previous: Option<&State>,
    ) -> Result<State, ConfigError> {
        let jwt = config
            .jwt
            .as_ref()
            .map(|j| JwtVerifier::new(j, base_dir))
            .transpose()?;
        let keys = config
            .api_keys
            .iter()
            .map(|key| {
                let rate = key.rate_limit.unwrap_or(config.rate_limit);
                let kept = previous.and_then(|p| match p.keys.by_name(&key.name) {
                    Some(Caller {
                        name,
                        bucket: Bucket::Key(buckets),
                        ..
                    }) if buckets.rate() == rate => Some((name.clone(), buckets.clone())),
                    _ => None,
                });
                let (name, buckets) = kept.unwrap_or_else(|| {
                    (
                        Arc::from(key.name.as_str()),
                        Arc::new(Buckets::new(rate, clock)),
                    )
                });
                let caller = Caller {
                    name,
                    role: key.role,
                    via: Via::Key,
                    caps: key.caps,
                    bucket: Bucket::Key(buckets),
                };
                (key.digest, caller)
            })
            .collect();
        let keys = KeyTable::new(keys);
        let key_names = keys.callers().map(|c| c.name.clone()).collect();
        // JWT subjects get the default key rate; anonymous clients their own.
        let subjects = table(previous.map(|p| &p.subjects), config.rate_limit, clock);
        let anonymous = table(
            previous.map(|p| &p.anonymous),
            config.anonymous_rate_limit,
            clock,
        );
        Ok(State {
            keys,
            configs: config.api_keys,
            key_names,
            jwt,
            subjects,
            anonymous,
            metrics_require_key: config.metrics_require_key,
        })
    }

    fn authenticate(
        &self,
        credentials: &Credentials<'_>,
        client_ip: IpAddr,
        now: Timestamp,
    ) -> Result<Caller, AuthError> {
        let result = match *credentials {
            Credentials::None => return Ok(Caller::anonymous()),
            Credentials::ApiKey(key) => self.find_key(key, false),
            Credentials::Bearer(value) => match &self.jwt {
                Some(jwt) if is_jwt_shaped(value) => self.verify_jwt(jwt, value, now),
                _ => self.find_key(value, is_jwt_shaped(value)),
            },
        };
        result.map_err(|refusal| {
            match self
                .anonymous
                .check(&ClientAddr::from(client_ip), Class::Read)
            {
                Ok(()) => refusal,
                Err(wait) => AuthError::RateLimited {
                    class: Class::Read,
                    retry_after_secs: wait.retry_after_secs(),
                },
            }
        })
    }

    fn find_key(&self, key: &str, jwt_shaped: bool) -> Result<Caller, AuthError> {
        self.keys
            .find(key)
            .cloned()
            .ok_or(AuthError::UnknownKey { jwt_shaped })
    }

    fn verify_jwt(
        &self,
        jwt: &JwtVerifier,
        token: &str,
        now: Timestamp,
    ) -> Result<Caller, AuthError> {
        let identity = jwt
            .verify(token, now.as_millis() / 1000)
            .map_err(AuthError::InvalidToken)?;
        if self.key_names.contains(identity.subject.as_str()) {
            return Err(AuthError::InvalidToken(
                super::jwt::JwtError::SubjectIsKeyName,
            ));
        }
        Ok(Caller {
            name: Arc::from(identity.subject),
            role: identity.role,
            via: Via::Jwt,
            caps: Caps::default(),
            bucket: Bucket::Subject,
        })
    }

    fn authorize(&self, rule: &Rule, caller: &Caller) -> Result<(), AuthError> {
        let required = match rule.access {
            Access::Public => return Ok(()),
            // Anonymous or authenticated (every role reads): the page decides what to show.
            Access::Page => return Ok(()),
            Access::Metrics if !self.metrics_require_key => return Ok(()),
            Access::Metrics => None,
            Access::Role(role) => Some(role),
        };
        if !caller.is_authenticated() {
            return Err(AuthError::MissingCredentials);
        }
        match required {
            Some(required) if !caller.role.allows(required) => Err(AuthError::Forbidden {
                role: caller.role,
                required,
                operation: rule.operation,
            }),
            _ => Ok(()),
        }
    }

    fn check_rate(&self, rule: &Rule, caller: &Caller, client_ip: IpAddr) -> Result<(), AuthError> {
        let result = match &caller.bucket {
            Bucket::None => Ok(()),
            Bucket::Key(buckets) => buckets.check(rule.class),
            Bucket::Subject => self.subjects.check(&caller.name, rule.class),
            Bucket::Client => self
                .anonymous
                .check(&ClientAddr::from(client_ip), rule.class),
        };
        result.map_err(|wait| AuthError::RateLimited {
            class: rule.class,
            retry_after_secs: wait.retry_after_secs(),
        })
    }
}

/// The previous state's table when its rate is unchanged, else a new one.
fn table<K: std::hash::Hash + Eq + Clone>(
    previous: Option<&Arc<ClientTable<K>>>,
    rate: RateLimit,
    clock: &RateClock,
) -> Arc<ClientTable<K>> {
    match previous {
        Some(table) if table.rate() == rate => table.clone(),
        _ => Arc::new(ClientTable::new(rate, clock, MAX_TRACKED_CLIENTS)),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::auth::jwt::JwtError;
    use crate::auth::jwt::tests::{NOW, claims, hs256};
    use crate::auth::roles::Role;
    use crate::auth::rules::{self, RULES};
    use crate::runtime::ManualClock;

    const READONLY_KEY: &str = "readonly-0123456789abcdef";
    const USER_KEY: &str = "user-0123456789abcdef";
    const OPERATOR_KEY: &str = "operator-0123456789abcdef";
    const ADMIN_KEY: &str = "admin-0123456789abcdef";

    const CONFIG: &str = r#"
api_keys:
  - {key: "readonly-0123456789abcdef", name: dashboard, role: readonly}
  - {key: "user-0123456789abcdef", name: jenkins, role: user, max_locks: 5}
  - {key: "operator-0123456789abcdef", name: ops, role: operator}
  - {key: "admin-0123456789abcdef", name: root, role: admin}
jwt: {hs256_secret: "a-test-secret-of-at-least-32-bytes!!"}
rate_limit: {requests_per_second: 1000, burst: 1000}
"#;

    fn now() -> Timestamp {
        Timestamp::from_millis(NOW * 1000)
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    fn auth_with(text: &str) -> (Auth, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(now()));
        let auth = Auth::from_config(
            AuthConfig::parse(text).unwrap(),
            Path::new("."),
            clock.clone(),
        )
        .unwrap();
        (auth, clock)
    }

    fn rule(method: &str, path: &str) -> &'static Rule {
        rules::find(method, path).unwrap()
    }

    fn admit(auth: &Auth, rule: &Rule, key: Option<&str>) -> Result<Caller, AuthError> {
        let credentials = key.map_or(Credentials::None, Credentials::ApiKey);
        auth.admit(rule, &credentials, ip(1), now())
    }

    fn key_of(role: Role) -> &'static str {
        match role {
            Role::Readonly => READONLY_KEY,
            Role::User => USER_KEY,
            Role::Operator => OPERATOR_KEY,
            Role::Admin => ADMIN_KEY,
        }
    }

    #[test]
    fn without_config_every_caller_is_anonymous_with_every_right_and_unlimited() {
        let auth = Auth::open();
        assert!(!auth.is_enabled());
        for rule in RULES {
            for credentials in [
                Credentials::None,
                Credentials::ApiKey("whatever-0123456789"),
            ] {
                let caller = auth.admit(rule, &credentials, ip(1), now()).unwrap();
                assert_eq!(caller, Caller::open(), "{}", rule.pattern);
            }
        }
        let lock = rule("POST", "/api/v1/resources/1/lock");
        for _ in 0..10_000 {
            assert!(admit(&auth, lock, None).is_ok());
        }
        assert!(
            auth.reload(Path::new("auth.yaml"))
                .unwrap_err()
                .message
                .contains("without --auth-config")
        );
        assert!(auth.describe().starts_with("auth is off"));
    }

    /// The route x role matrix, generated from the table: a new rule is checked too.
    #[test]
    fn every_route_admits_exactly_the_roles_its_rule_names() {
        for require_metrics_key in [false, true] {
            let (auth, _) = auth_with(&format!(
                "{CONFIG}metrics_require_key: {require_metrics_key}\n"
            ));
            for (pattern, rule) in rules::patterns() {
                let anonymous = admit(&auth, rule, None);
                match rule.access {
                    Access::Public | Access::Page => assert!(anonymous.is_ok(), "{pattern}"),
                    Access::Metrics if !require_metrics_key => {
                        assert!(anonymous.is_ok(), "{pattern}")
                    }
                    _ => assert_eq!(
                        anonymous.unwrap_err(),
                        AuthError::MissingCredentials,
                        "{pattern}"
                    ),
                }
                for role in Role::ALL {
                    let got = admit(&auth, rule, Some(key_of(role)));
                    match rule.access {
                        Access::Role(required) if role < required => assert_eq!(
                            got.unwrap_err(),
                            AuthError::Forbidden {
                                role,
                                required,
                                operation: rule.operation
                            },
                            "{pattern} as {role}"
                        ),
                        _ => assert!(got.is_ok(), "{pattern} as {role}: {got:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn a_key_in_either_header_names_its_caller_and_an_unknown_key_is_refused() {
        let (auth, _) = auth_with(CONFIG);
        let lock = rule("POST", "/api/v1/resources/1/lock");
        for credentials in [Credentials::ApiKey(USER_KEY), Credentials::Bearer(USER_KEY)] {
            let caller = auth.admit(lock, &credentials, ip(1), now()).unwrap();
            assert_eq!(
                (&*caller.name, caller.role, caller.via),
                ("jenkins", Role::User, Via::Key)
            );
            assert_eq!(caller.caps.max_locks, Some(5));
        }
        assert_eq!(
            admit(&auth, lock, Some("user-0123456789abcdeX")).unwrap_err(),
            AuthError::UnknownKey { jwt_shaped: false }
        );
        // An unknown key on a public route is not even looked at.
        assert!(admit(&auth, rule("GET", "/health"), Some("nonsense-key-012345")).is_ok());
    }

    #[test]
    fn a_jwt_names_its_subject_and_is_checked_at_the_given_now() {
        let (auth, _) = auth_with(CONFIG);
        let lock = rule("POST", "/api/v1/resources/1/lock");
        let token = hs256(&claims());
        let caller = auth
            .admit(lock, &Credentials::Bearer(&token), ip(1), now())
            .unwrap();
        assert_eq!(
            (&*caller.name, caller.role, caller.via),
            ("alice", Role::User, Via::Jwt)
        );
        let later = Timestamp::from_millis((NOW + 3600 + 30) * 1000);
        assert_eq!(
            auth.admit(lock, &Credentials::Bearer(&token), ip(1), later)
                .unwrap_err(),
            AuthError::InvalidToken(JwtError::Expired)
        );
        // A readonly token may read, not lock.
        let reader = hs256(&{
            let mut c = claims();
            c["rentabot_role"] = json!("readonly");
            c
        });
        assert!(matches!(
            auth.admit(lock, &Credentials::Bearer(&reader), ip(1), now()),
            Err(AuthError::Forbidden {
                role: Role::Readonly,
                required: Role::User,
                ..
            })
        ));
        // A token may not pass for a key's owner.
        let impostor = hs256(&{
            let mut c = claims();
            c["sub"] = json!("jenkins");
            c
        });
        assert_eq!(
            auth.admit(lock, &Credentials::Bearer(&impostor), ip(1), now())
                .unwrap_err(),
            AuthError::InvalidToken(JwtError::SubjectIsKeyName)
        );
    }

    #[test]
    fn a_jwt_is_an_unknown_key_where_no_jwt_is_accepted() {
        let (auth, _) =
            auth_with("api_keys:\n  - {key: user-0123456789abcdef, name: ci, role: user}\n");
        let token = hs256(&claims());
        assert_eq!(
            auth.admit(
                rule("GET", "/api/v1/resources"),
                &Credentials::Bearer(&token),
                ip(1),
                now()
            )
            .unwrap_err(),
            AuthError::UnknownKey { jwt_shaped: true }
        );
    }

    #[test]
    fn a_key_over_its_rate_gets_429_with_retry_after_and_reads_are_apart() {
        let (auth, clock) = auth_with(
            "api_keys:\n  - {key: user-0123456789abcdef, name: ci, role: user, rate_limit: {requests_per_second: 0.5, burst: 2}}\n  - {key: other-0123456789abcdef, name: other, role: user}\nrate_limit: {requests_per_second: 100, burst: 100}\n",
        );
        let lock = rule("POST", "/api/v1/resources/1/lock");
        let list = rule("GET", "/api/v1/resources");
        assert!(admit(&auth, lock, Some(USER_KEY)).is_ok());
        assert!(admit(&auth, lock, Some(USER_KEY)).is_ok());
        let refused = admit(&auth, lock, Some(USER_KEY)).unwrap_err();
        assert_eq!(
            refused,
            AuthError::RateLimited {
                class: Class::Write,
                retry_after_secs: 2
            }
        );
        assert_eq!((refused.status(), refused.retry_after()), (429, Some(2)));
        // Reads have their own bucket; other keys theirs.
        assert!(admit(&auth, list, Some(USER_KEY)).is_ok());
        assert!(admit(&auth, lock, Some("other-0123456789abcdef")).is_ok());
        clock.advance(Duration::from_millis(1500));
        assert_eq!(
            admit(&auth, lock, Some(USER_KEY))
                .unwrap_err()
                .retry_after(),
            Some(1),
            "0.5 s left, rounded up"
        );
        clock.advance(Duration::from_millis(500));
        assert!(admit(&auth, lock, Some(USER_KEY)).is_ok());
        // Probes are never limited.
        for _ in 0..100 {
            assert!(admit(&auth, rule("GET", "/health"), None).is_ok());
            assert!(admit(&auth, rule("GET", "/metrics"), Some(USER_KEY)).is_ok());
        }
    }

    #[test]
    fn anonymous_requests_and_failed_attempts_draw_on_the_client_address() {
        let (auth, clock) = auth_with(
            "api_keys:\n  - {key: user-0123456789abcdef, name: ci, role: user}\nanonymous_rate_limit: {requests_per_second: 1, burst: 2}\n",
        );
        let docs = rule("GET", "/docs/index.html");
        let list = rule("GET", "/api/v1/resources");
        let at = |ip_last| auth.admit(docs, &Credentials::None, ip(ip_last), now());
        assert!(at(1).is_ok());
        assert!(at(1).is_ok());
        assert_eq!(at(1).unwrap_err().code(), "rate_limited");
        assert!(at(2).is_ok(), "another address has its own budget");
        // Wrong keys from address 3: two 401s, then 429.
        let wrong = Credentials::ApiKey("wrong-0123456789abcdef");
        for _ in 0..2 {
            assert_eq!(
                auth.admit(list, &wrong, ip(3), now()).unwrap_err().status(),
                401
            );
        }
        assert_eq!(
            auth.admit(list, &wrong, ip(3), now()).unwrap_err().status(),
            429
        );
        // A good key from that address is not held back by the address's failures.
        let good = Credentials::ApiKey(USER_KEY);
        assert!(auth.admit(list, &good, ip(3), now()).is_ok());
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            auth.admit(list, &wrong, ip(3), now()).unwrap_err().status(),
            401
        );
    }

    #[test]
    fn jwt_subjects_are_limited_each_on_their_own() {
        let (auth, _) = auth_with(
            "jwt: {hs256_secret: \"a-test-secret-of-at-least-32-bytes!!\"}\nrate_limit: {requests_per_second: 1, burst: 1}\n",
        );
        let lock = rule("POST", "/api/v1/resources/1/lock");
        let alice = hs256(&claims());
        let bob = hs256(&{
            let mut c = claims();
            c["sub"] = json!("bob");
            c
        });
        let try_as = |token: &str| auth.admit(lock, &Credentials::Bearer(token), ip(1), now());
        assert!(try_as(&alice).is_ok());
        assert_eq!(try_as(&alice).unwrap_err().code(), "rate_limited");
        assert!(try_as(&bob).is_ok());
    }

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("auth.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn reload_rotates_and_revokes_keys_and_keeps_their_buckets() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "api_keys:\n  - {key: user-0123456789abcdef, name: ci, role: user, rate_limit: {requests_per_second: 0.1, burst: 1}}\n  - {key: admin-0123456789abcdef, name: root, role: admin}\n",
        );
        let clock = Arc::new(ManualClock::new(now()));
        let auth = Auth::load(&path, clock).unwrap();
        assert_eq!(auth.source(), Some(path.as_path()));
        let lock = rule("POST", "/api/v1/resources/1/lock");
        assert!(admit(&auth, lock, Some(USER_KEY)).is_ok());
        assert_eq!(
            admit(&auth, lock, Some(USER_KEY)).unwrap_err().code(),
            "rate_limited"
        );

        // Rotate ci's key (same name, same rate), revoke root, add ops.
        write(
            dir.path(),
            "api_keys:\n  - {key: rotated-0123456789abcdef, name: ci, role: user, rate_limit: {requests_per_second: 0.1, burst: 1}}\n  - {key: operator-0123456789abcdef, name: ops, role: operator}\n",
        );
        let report = auth.reload(&path).unwrap();
        assert_eq!(
            report,
            ReloadReport {
                keys: 2,
                added: vec!["ops".to_owned()],
                removed: vec!["root".to_owned()],
                changed: vec!["ci".to_owned()],
                jwt: false,
            }
        );
        assert_eq!(
            report.to_string(),
            "2 API keys; added: ops; removed: root; changed: ci; no JWTs"
        );
        assert_eq!(
            admit(&auth, lock, Some(USER_KEY)).unwrap_err(),
            AuthError::UnknownKey { jwt_shaped: false }
        );
        assert_eq!(
            admit(&auth, lock, Some(ADMIN_KEY)).unwrap_err(),
            AuthError::UnknownKey { jwt_shaped: false }
        );
        // The new key is ci's: same bucket, still empty.
        assert_eq!(
            admit(&auth, lock, Some("rotated-0123456789abcdef"))
                .unwrap_err()
                .code(),
            "rate_limited"
        );
        assert!(
            admit(
                &auth,
                rule("POST", "/api/v1/resources/1/force-unlock"),
                Some(OPERATOR_KEY)
            )
            .is_ok()
        );

        // A changed rate is a new bucket.
        write(
            dir.path(),
            "api_keys:\n  - {key: rotated-0123456789abcdef, name: ci, role: readonly, rate_limit: {requests_per_second: 0.1, burst: 2}}\n",
        );
        auth.reload(&path).unwrap();
        let list = rule("GET", "/api/v1/resources");
        let caller = admit(&auth, list, Some("rotated-0123456789abcdef")).unwrap();
        assert_eq!(
            caller.role,
            Role::Readonly,
            "the role changed with the reload"
        );
        assert!(
            admit(&auth, lock, Some("rotated-0123456789abcdef"))
                .unwrap_err()
                .status()
                == 403
        );
    }

    #[test]
    fn a_bad_reload_changes_nothing_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "api_keys:\n  - {key: user-0123456789abcdef, name: ci, role: user}\n",
        );
        let auth = Auth::load(&path, Arc::new(ManualClock::new(now()))).unwrap();
        write(
            dir.path(),
            "api_keys:\n  - {key: user-0123456789abcdef, name: ci, role: superuser}\n",
        );
        let err = auth.reload(&path).unwrap_err();
        assert_eq!(err.file.as_deref(), Some(path.as_path()));
        assert_eq!(err.line, Some(2));
        let jwt_missing_key = "jwt: {public_key_file: nowhere.pem, algorithm: RS256}\n";
        write(dir.path(), jwt_missing_key);
        let err = auth.reload(&path).unwrap_err();
        assert_eq!(err.file, Some(dir.path().join("nowhere.pem")));
        let caller = admit(
            &auth,
            rule("POST", "/api/v1/resources/1/lock"),
            Some(USER_KEY),
        )
        .unwrap();
        assert_eq!((&*caller.name, caller.role), ("ci", Role::User));
    }

    #[test]
    fn a_public_key_file_is_read_relative_to_the_config() {
        let fixtures = crate::auth::jwt::tests::fixtures();
        let dir = tempfile::tempdir().unwrap();
        // The config beside a copy of the key, named relatively.
        std::fs::copy(
            fixtures.join("rs256-public.pem"),
            dir.path().join("sso.pem"),
        )
        .unwrap();
        let config = write(
            dir.path(),
            "jwt: {public_key_file: sso.pem, algorithm: RS256}\n",
        );
        let auth = Auth::load(&config, Arc::new(ManualClock::new(now()))).unwrap();
        assert!(
            auth.describe().contains("JWTs signed with RS256"),
            "{}",
            auth.describe()
        );
    }

    #[test]
    fn caps_come_from_the_config_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "api_keys:\n  - {key: user-0123456789abcdef, name: ci, role: user, max_locks: 5}\n",
        );
        let auth = Auth::load(&path, Arc::new(ManualClock::new(now()))).unwrap();
        let caller = admit(
            &auth,
            rule("POST", "/api/v1/resources/1/lock"),
            Some(USER_KEY),
        )
        .unwrap();
        assert_eq!(auth.caps(&caller).max_locks, Some(5));
        write(
            dir.path(),
            "api_keys:\n  - {key: user-0123456789abcdef, name: ci, role: user, max_locks: 2, max_pending_reservations: 1}\n",
        );
        auth.reload(&path).unwrap();
        assert_eq!(
            auth.caps(&caller),
            Caps {
                max_locks: Some(2),
                max_pending_reservations: Some(1)
            }
        );
        assert_eq!(Auth::open().caps(&Caller::open()), Caps::default());
    }

    #[test]
    fn the_handle_can_be_shared_by_every_worker() {
        fn shared<T: Send + Sync + Clone + 'static>() {}
        shared::<Auth>();
        shared::<Caller>();
    }

    #[test]
    fn the_separate_steps_agree_with_admit() {
        let (auth, _) = auth_with(CONFIG);
        let force = rule("POST", "/api/v1/resources/1/force-unlock");
        let user = auth
            .authenticate(&Credentials::ApiKey(USER_KEY), ip(1), now())
            .unwrap();
        assert_eq!(auth.authorize(force, &user).unwrap_err().status(), 403);
        let anonymous = auth.authenticate(&Credentials::None, ip(1), now()).unwrap();
        assert_eq!(anonymous, Caller::anonymous());
        assert_eq!(
            auth.authorize(force, &anonymous).unwrap_err(),
            AuthError::MissingCredentials
        );
        let ops = auth
            .authenticate(&Credentials::ApiKey(OPERATOR_KEY), ip(1), now())
            .unwrap();
        assert!(auth.authorize(force, &ops).is_ok());
        assert!(auth.check_rate(force, &ops, ip(1)).is_ok());
        // A caller made by hand is never limited.
        let system = Caller::new("system", Role::Admin, Via::Key);
        for _ in 0..2000 {
            assert!(auth.check_rate(force, &system, ip(1)).is_ok());
        }
        assert!(
            auth.describe()
                .starts_with("auth is on: 4 API keys, JWTs signed with HS256")
        );
    }
}
