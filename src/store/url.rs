//! `--persist URL`: where the state is kept.
//!
//! The syntax is the roadmap's, read the way SQLAlchemy reads it, since Rent-A-Bot's
//! users come from Python: after `sqlite://` comes `/` and the path, so
//! `sqlite:///state.db` is `state.db` relative to the working directory and
//! `sqlite:////var/lib/rentabot/state.db` is absolute.
//!
//! `postgres://user:password@host[:port]/database[?param=value&..]` (or `postgresql://`)
//! is libpq's URL, as tokio-postgres reads it. The password is a secret: what is shown
//! of the URL (errors, logs, `Debug`) has it replaced by `***`. rentabot speaks to
//! PostgreSQL without TLS, so `sslmode=require` (or `verify-*`) is refused rather than
//! silently ignored.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A parsed `--persist` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PersistUrl {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL database (the schema first in its `search_path`).
    Postgres(PostgresUrl),
}

/// What a valid value looks like, for error messages.
const FORMS: &str = "sqlite:///relative/path.db, sqlite:////absolute/path.db or \
                     postgres://user:password@host[:port]/database";

/// How long connecting may take when the URL does not say (`connect_timeout`).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long sent data may stay unacknowledged before the connection counts as lost,
/// when the URL does not say (`tcp_user_timeout`): a commit on a cut network fails
/// after this (503 until the database is back) instead of hanging for the kernel's
/// default of about 15 minutes.
pub const DEFAULT_TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle time before TCP keepalive probes start, when the URL does not say
/// (`keepalives_idle`; tokio-postgres' default is 2 hours).
pub const DEFAULT_KEEPALIVES_IDLE: Duration = Duration::from_secs(30);

/// A `--persist` value that is not a store rentabot can use. It shows the value with
/// its password, if any, replaced by `***`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("--persist {given:?}: {problem}; use {FORMS}")]
pub struct InvalidPersistUrl {
    given: String,
    problem: String,
}

/// A PostgreSQL connection: the client's configuration and the URL as it may be shown.
#[derive(Clone)]
pub struct PostgresUrl {
    /// Boxed: it is large, and `--persist` values are moved around as enums.
    config: Box<postgres::Config>,
    /// The URL with the password replaced by `***`: the only form ever shown.
    shown: String,
}

impl PostgresUrl {
    /// The client's configuration (it holds the password).
    pub fn config(&self) -> &postgres::Config {
        &self.config
    }

    /// The same URL, its connections watched for a silent peer: a connection counts as
    /// lost once sent data stays unacknowledged for `timeout` (`tcp_user_timeout`), or
    /// the server stops answering keepalive probes (the first after a third of
    /// `timeout`, then one a second, two unanswered). The HA pair's leader and writer
    /// connections are: a cut-off active gives up its commits as its leader session is
    /// lost, instead of after the URL's (or the default) 30 s.
    pub fn watched(&self, timeout: Duration) -> PostgresUrl {
        let mut watched = self.clone();
        // Keepalive probes count whole seconds (the kernel refuses zero).
        let idle = Duration::from_secs(timeout.as_secs().div_ceil(3).max(1));
        watched
            .config
            .keepalives(true)
            .keepalives_idle(idle)
            .keepalives_interval(Duration::from_secs(1))
            .keepalives_retries(2)
            .tcp_user_timeout(timeout);
        watched
    }

    /// The URL, password replaced by `***`.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PostgresUrl").field(&self.shown).finish()
    }
}

/// The URL, password replaced by `***`.
impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl PartialEq for PostgresUrl {
    fn eq(&self, other: &Self) -> bool {
        self.shown == other.shown && self.config.get_password() == other.config.get_password()
    }
}

impl Eq for PostgresUrl {}

impl PersistUrl {
    /// # Errors
    /// [`InvalidPersistUrl`] naming what is wrong: an unknown scheme, no path, an
    /// in-memory database (that is the default without `--persist`), query parameters
    /// on a SQLite URL; a PostgreSQL URL that does not parse, names no host, or asks
    /// for TLS.
    pub fn parse(given: &str) -> Result<PersistUrl, InvalidPersistUrl> {
        if given.starts_with("postgres://") || given.starts_with("postgresql://") {
            return parse_postgres(given).map(PersistUrl::Postgres);
        }
        let invalid = |problem: &str| InvalidPersistUrl {
            given: redact(given),
            problem: problem.to_owned(),
        };
        let Some(rest) = given.strip_prefix("sqlite://") else {
            return Err(invalid("not a sqlite:// or postgres:// URL"));
        };
        let Some(path) = rest.strip_prefix('/') else {
            return Err(invalid(
                "sqlite:// must be followed by / and the path (three slashes for a relative path, four for an absolute one)",
            ));
        };
        if path.contains(['?', '#']) {
            return Err(invalid("query parameters and fragments are not supported"));
        }
        if path.is_empty() || path == ":memory:" {
            return Err(invalid(
                "that is an in-memory database: leave --persist out to keep the state in memory",
            ));
        }
        if path.ends_with('/') {
            return Err(invalid("the path names a directory, not a file"));
        }
        Ok(PersistUrl::Sqlite(PathBuf::from(path)))
    }
}

impl fmt::Display for PersistUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PersistUrl::Sqlite(path) => write!(f, "sqlite:///{}", path.display()),
            PersistUrl::Postgres(url) => f.write_str(&url.shown),
        }
    }
}

fn parse_postgres(given: &str) -> Result<PostgresUrl, InvalidPersistUrl> {
    let shown = redact(given);
    let invalid = |problem: String| InvalidPersistUrl {
        given: shown.clone(),
        problem,
    };
    let query = given.split_once('?').map_or("", |(_, q)| q);
    for (key, value) in query.split('&').filter_map(|p| p.split_once('=')) {
        if key == "sslmode" && !matches!(value, "disable" | "prefer") {
            return Err(invalid(format!(
                "sslmode={value} asks for TLS, and rentabot speaks to PostgreSQL without it: \
                 reach the database over a network you trust (or a local tunnel) and use \
                 sslmode=disable"
            )));
        }
    }
    // tokio-postgres' parse errors name the option, never its value.
    let mut config: postgres::Config = given
        .parse()
        .map_err(|e: postgres::Error| invalid(format!("not a PostgreSQL URL ({e})")))?;
    if config.get_hosts().is_empty() {
        return Err(invalid(
            "no host: name the server, as in postgres://user:password@host/database".into(),
        ));
    }
    if config.get_ssl_mode() == postgres::config::SslMode::Prefer {
        // What libpq does with `prefer` when the server offers no TLS; say it plainly.
        config.ssl_mode(postgres::config::SslMode::Disable);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(DEFAULT_TCP_USER_TIMEOUT);
    }
    if !query.split('&').any(|p| p.starts_with("keepalives_idle=")) {
        config.keepalives_idle(DEFAULT_KEEPALIVES_IDLE);
    }
    if config.get_application_name().is_none() {
        config.application_name("rentabot");
    }
    Ok(PostgresUrl {
        config: Box::new(config),
        shown,
    })
}

/// `given` with the password of a URL (`user:password@`, or a `password=` parameter)
/// replaced by `***`; anything else as it is.
fn redact(given: &str) -> String {
    let Some((scheme, rest)) = given.split_once("://") else {
        return given.to_owned();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((key, _)) if key == "password" => format!("{key}=***"),
                    _ => p.to_owned(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_slashes_are_relative_and_four_absolute_as_in_sqlalchemy() {
        assert_eq!(
            PersistUrl::parse("sqlite:///state.db"),
            Ok(PersistUrl::Sqlite(PathBuf::from("state.db")))
        );
        assert_eq!(
            PersistUrl::parse("sqlite:///data/state.db"),
            Ok(PersistUrl::Sqlite(PathBuf::from("data/state.db")))
        );
        assert_eq!(
            PersistUrl::parse("sqlite:////var/lib/rentabot/state.db"),
            Ok(PersistUrl::Sqlite(PathBuf::from(
                "/var/lib/rentabot/state.db"
            )))
        );
    }

    #[test]
    fn display_gives_back_what_parses() {
        for url in ["sqlite:///state.db", "sqlite:////var/lib/rentabot/state.db"] {
            assert_eq!(PersistUrl::parse(url).unwrap().to_string(), url);
        }
    }

    #[test]
    fn values_that_are_no_usable_store_are_refused_with_the_reason() {
        for (given, why) in [
            ("state.db", "not a sqlite:// or postgres:// URL"),
            ("mysql://db/x", "not a sqlite:// or postgres:// URL"),
            ("sqlite://state.db", "followed by /"),
            ("sqlite://", "followed by /"),
            ("sqlite:///", "in-memory"),
            ("sqlite:///:memory:", "in-memory"),
            ("sqlite:///state.db?mode=ro", "query parameters"),
            ("sqlite:////var/lib/", "directory"),
        ] {
            let err = PersistUrl::parse(given).expect_err(given).to_string();
            assert!(err.contains(why), "{given}: {err}");
            assert!(err.contains("sqlite:////absolute"), "{given}: {err}");
        }
    }

    fn postgres(given: &str) -> PostgresUrl {
        match PersistUrl::parse(given) {
            Ok(PersistUrl::Postgres(url)) => url,
            other => panic!("{given}: {other:?}"),
        }
    }

    #[test]
    fn a_watched_url_gives_up_on_a_silent_peer_within_its_timeout() {
        let url = postgres("postgres://rb:s3cret@db.lab/rentabot?tcp_user_timeout=60");
        let watched = url.watched(Duration::from_secs(3));
        let config = watched.config();
        assert_eq!(config.get_tcp_user_timeout(), Some(&Duration::from_secs(3)));
        assert!(config.get_keepalives());
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(1));
        assert_eq!(
            config.get_keepalives_interval(),
            Some(Duration::from_secs(1))
        );
        assert_eq!(config.get_keepalives_retries(), Some(2));
        // Everything else is the URL's.
        assert_eq!(config.get_user(), Some("rb"));
        assert_eq!(watched.shown(), url.shown());
        let slow = url
            .watched(Duration::from_secs(10))
            .config()
            .get_keepalives_idle();
        assert_eq!(slow, Duration::from_secs(4), "a third, rounded up");
    }

    #[test]
    fn a_postgres_url_gives_the_client_its_settings() {
        let url = postgres("postgres://rb:s3cret@db.lab:5433/rentabot?connect_timeout=3");
        let config = url.config();
        assert_eq!(config.get_user(), Some("rb"));
        assert_eq!(config.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(config.get_dbname(), Some("rentabot"));
        assert_eq!(config.get_ports(), [5433]);
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(3)));
        assert_eq!(
            config.get_tcp_user_timeout(),
            Some(&DEFAULT_TCP_USER_TIMEOUT)
        );
        assert_eq!(config.get_keepalives_idle(), DEFAULT_KEEPALIVES_IDLE);
        assert_eq!(
            config.get_ssl_mode(),
            postgres::config::SslMode::Disable,
            "no TLS is spoken"
        );
        assert!(matches!(
            PersistUrl::parse("postgresql://rb@localhost/rentabot"),
            Ok(PersistUrl::Postgres(_))
        ));
    }

    #[test]
    fn a_postgres_password_is_never_shown() {
        let given = "postgres://rb:s3cret@db.lab/rentabot?application_name=x&password=hunter2";
        let url = PersistUrl::parse(given).unwrap();
        for shown in [url.to_string(), format!("{url:?}"), format!("{url:#?}")] {
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("rb:***@db.lab/rentabot"), "{shown}");
        }
        // Nor in the errors about a URL that is refused.
        for bad in [
            "postgres://rb:s3cret@db.lab/rentabot?sslmode=require",
            "postgres://rb:s3cret@db.lab:notaport/rentabot",
            "postgres://rb:s3cret@db.lab/rentabot?nosuchoption=1",
        ] {
            let err = PersistUrl::parse(bad).expect_err(bad).to_string();
            assert!(!err.contains("s3cret"), "{err}");
            assert!(err.contains("rb:***@db.lab"), "{err}");
        }
        // Two URLs that differ only in the password are not the same store setting.
        assert_ne!(
            PersistUrl::parse("postgres://rb:a@h/d").unwrap(),
            PersistUrl::parse("postgres://rb:b@h/d").unwrap()
        );
    }

    #[test]
    fn a_postgres_url_that_asks_for_tls_or_names_no_server_is_refused() {
        for (given, why) in [
            (
                "postgres://rb:pw@h/d?sslmode=require",
                "sslmode=require asks for TLS",
            ),
            (
                "postgres://rb:pw@h/d?sslmode=verify-full",
                "sslmode=verify-full",
            ),
            ("postgres://rb:pw@h:99999/d", "not a PostgreSQL URL"),
            ("postgres:///d", "no host"),
        ] {
            let err = PersistUrl::parse(given).expect_err(given).to_string();
            assert!(err.contains(why), "{given}: {err}");
            assert!(
                err.contains("postgres://user:password@host"),
                "{given}: {err}"
            );
        }
        for fine in [
            "postgres://h/d?sslmode=disable",
            "postgres://h/d?sslmode=prefer",
        ] {
            assert!(PersistUrl::parse(fine).is_ok(), "{fine}");
        }
    }
}
