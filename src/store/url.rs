//! `--persist URL`: where the state is kept.
//!
//! The syntax is the roadmap's, read the way SQLAlchemy reads it, since Rent-A-Bot's
//! users come from Python: after `sqlite://` comes `/` and the path, so
//! `sqlite:///state.db` is `state.db` relative to the working directory and
//! `sqlite:////var/lib/rentabot/state.db` is absolute.

use std::fmt;
use std::path::PathBuf;

/// A parsed `--persist` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PersistUrl {
    /// A SQLite database file.
    Sqlite(PathBuf),
}

/// What a valid value looks like, for error messages.
const FORMS: &str = "sqlite:///relative/path.db or sqlite:////absolute/path.db";

/// A `--persist` value that is not a store rentabot can use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("--persist {given:?}: {problem}; use {FORMS}")]
pub struct InvalidPersistUrl {
    given: String,
    problem: &'static str,
}

impl PersistUrl {
    /// # Errors
    /// [`InvalidPersistUrl`] naming what is wrong: an unknown scheme, no path, an
    /// in-memory database (that is the default without `--persist`), query parameters.
    pub fn parse(given: &str) -> Result<PersistUrl, InvalidPersistUrl> {
        let invalid = |problem| InvalidPersistUrl {
            given: given.to_owned(),
            problem,
        };
        let Some(rest) = given.strip_prefix("sqlite://") else {
            return Err(invalid("not a sqlite:// URL"));
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
        }
    }
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
            ("state.db", "not a sqlite:// URL"),
            ("mysql://db/x", "not a sqlite:// URL"),
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
}
