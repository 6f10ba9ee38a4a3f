//! A PostgreSQL database made for one test and dropped after it, on the server
//! `RENTABOT_TEST_POSTGRES` names (a role that may create databases; .ci/run starts the
//! machine's cluster and sets it). Without the variable, `create` prints a loud SKIPPED
//! line and the test passes. Included by tests/crash.rs and tests/api (`#[path]`:
//! not in support/mod.rs, whose other users have no database).
//!
//! The blocking `postgres` client drives a runtime of its own: every call runs on a
//! thread of its own, never on the test's runtime.

use postgres::{Client, NoTls};

pub struct PgDb {
    /// The server's first database, for what a test does to its own from outside.
    pub base: String,
    /// The database's name.
    pub name: String,
    /// The URL of the test's database.
    pub url: String,
}

impl PgDb {
    /// `None`, after a loud SKIPPED line, without `RENTABOT_TEST_POSTGRES`.
    pub fn create(test: &str) -> Option<PgDb> {
        let Ok(base) = std::env::var("RENTABOT_TEST_POSTGRES") else {
            eprintln!(
                "\n\n!!!! SKIPPED {test}: RENTABOT_TEST_POSTGRES is not set (a postgres:// \
                 URL of a role that may create databases); .ci/run sets it !!!!\n\n"
            );
            return None;
        };
        let name = format!("rb_{}", uuid::Uuid::new_v4().simple());
        let (scheme, rest) = base.split_once("://").expect("a postgres:// URL");
        let host_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let query = rest[host_end..]
            .find('?')
            .map_or("", |q| &rest[host_end + q..]);
        let url = format!("{scheme}://{}/{name}{query}", &rest[..host_end]);
        let db = PgDb { base, name, url };
        let sql = format!("CREATE DATABASE {}", db.name);
        db.admin(move |c| c.batch_execute(&sql).unwrap());
        Some(db)
    }

    /// Runs `f` on a connection to the server's first database (not the test's).
    pub fn admin<R: Send + 'static>(&self, f: impl FnOnce(&mut Client) -> R + Send + 'static) -> R {
        on_a_thread(&self.base, f)
    }
}

/// Runs `f` on a new connection to `url`, on a thread of its own.
pub fn on_a_thread<R: Send + 'static>(
    url: &str,
    f: impl FnOnce(&mut Client) -> R + Send + 'static,
) -> R {
    let url = url.to_owned();
    std::thread::spawn(move || f(&mut Client::connect(&url, NoTls).unwrap()))
        .join()
        .unwrap()
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            if let Ok(mut c) = Client::connect(&base, NoTls) {
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        })
        .join();
    }
}
