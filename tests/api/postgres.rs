//! `--persist postgres://` (issue 14 item 1) over HTTP, against a real PostgreSQL:
//! `RENTABOT_TEST_POSTGRES` names a role that may create databases (.ci/run starts the
//! machine's cluster and sets it). Each test makes a database of its own and drops it,
//! so they run in parallel and leave nothing behind; without the variable each prints
//! a loud SKIPPED line and passes.
//!
//! The blocking `postgres` client cannot run on the tests' runtime: every call to it
//! goes through `spawn_blocking`.

use std::sync::mpsc;
use std::time::Duration;

use postgres::{Client, NoTls};
use rentabot::app::Persist;
use rentabot::domain::ResourceSpec;
use rentabot::store::PersistUrl;
use serde_json::{Value, json};
use tokio::time::{Instant, timeout};

use crate::helpers::*;
use crate::pg::{PgDb, on_a_thread};

/// The safety net around every wait. Longer than the writer's longest backoff (5 s).
const PATIENCE: Duration = Duration::from_secs(30);

/// A database of the test's own ([`PgDb`]), its blocking calls moved off the runtime.
struct TestDb(PgDb);

impl std::ops::Deref for TestDb {
    type Target = PgDb;
    fn deref(&self) -> &PgDb {
        &self.0
    }
}

impl TestDb {
    /// `None`, after a loud SKIPPED line, without `RENTABOT_TEST_POSTGRES`.
    async fn create(test: &str) -> Option<TestDb> {
        let test = test.to_owned();
        tokio::task::spawn_blocking(move || PgDb::create(&test).map(TestDb))
            .await
            .unwrap()
    }

    fn persist(&self) -> Persist {
        Persist::Url(PersistUrl::parse(&self.url).unwrap())
    }

    /// Runs `f` on a connection to the server's first database (not the test's), while
    /// the runtime goes on serving the app.
    async fn admin<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> R + Send + 'static,
    ) -> R {
        let base = self.base.clone();
        tokio::task::spawn_blocking(move || on_a_thread(&base, f))
            .await
            .unwrap()
    }

    /// Runs `f` on a connection to the test's database, as an operator's psql.
    async fn psql<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> R + Send + 'static,
    ) -> R {
        let url = self.url.clone();
        tokio::task::spawn_blocking(move || on_a_thread(&url, f))
            .await
            .unwrap()
    }

    async fn query_i64(&self, sql: &'static str) -> i64 {
        self.psql(move |c| c.query_one(sql, &[]).unwrap().get(0))
            .await
    }
}

async fn start_on(db: &TestDb, resources: Vec<ResourceSpec>) -> TestApp {
    start(
        resources,
        Options {
            persist: db.persist(),
            ..Options::default()
        },
    )
    .await
}

/// Polls `/readiness` until it answers `status` (the writer retries on its own time).
async fn readiness_becomes(app: &TestApp, status: u16) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let reply = app.get("/readiness").await;
        if reply.status.as_u16() == status {
            return serde_json::from_str(&reply.text).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "readiness stayed {}: {}",
            reply.status,
            reply.text
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_service_on_an_empty_database_creates_the_schema_and_answers_after_the_commit() {
    let Some(db) = TestDb::create("a_service_on_an_empty_database_creates_the_schema").await else {
        return;
    };
    let app = start_on(&db, lab()).await;
    let version = db
        .query_i64("SELECT schema_version::int8 FROM rentabot_meta")
        .await;
    assert_eq!(version, rentabot::store::postgres::SCHEMA_VERSION as i64);
    assert_eq!(db.query_i64("SELECT count(*) FROM resources").await, 5);

    let held = app.locked(ARM_1, 600).await;
    // The answer waited for the commit: the lock is in the table already.
    let (token, fencing): (Option<String>, Option<i64>) = db
        .psql(|c| {
            let row = c
                .query_one(
                    "SELECT lock_token, lock_fencing FROM resources WHERE id = $1",
                    &[&i64::from(ARM_1)],
                )
                .unwrap();
            (row.get(0), row.get(1))
        })
        .await;
    assert_eq!(token.as_deref(), Some(held.token.as_str()));
    assert_eq!(fencing, Some(held.fencing as i64));
}

#[tokio::test]
async fn a_service_started_on_the_same_database_restores_everything_acknowledged() {
    let Some(db) = TestDb::create("a_service_started_on_the_same_database_restores").await else {
        return;
    };
    let (first, running) = start_running(
        lab(),
        Options {
            persist: db.persist(),
            ..Options::default()
        },
    )
    .await;
    let (held, queued) = first.make_every_kind_of_state().await;
    // A lock that runs out (the expired history), and a keyed one (a remembered answer).
    first.locked(PRINTER, 2).await;
    first.advance(Duration::from_secs(5));
    first.broker.sweep();
    let keyed = |app: &TestApp| {
        app.client
            .post(app.url("/api/v1/resources/5/lock"))
            .header("Idempotency-Key", "job-42-attempt-1")
            .json(&json!({"ttl": 30}))
    };
    let original = first.send(keyed(&first)).await.expect_json(200);
    // A refusal: recorded in the audit log only.
    first.unlock(ARM_1, &"0".repeat(32)).await.expect_json(403);

    let resources = first.get("/api/v1/resources").await.text;
    let reservations = first.get("/api/v1/reservations").await.text;
    let expired = first.get("/api/v1/resources/expired").await.text;
    let audit = first.get("/api/v1/audit").await.text;
    let next_event = first.broker.publisher().next_event();
    // Stopped for good: the refusal's record stored by the last transaction, the
    // connection (and its advisory lock) closed.
    first.stopper.stop().await;
    running.await.unwrap().unwrap();

    let second = start(
        lab(),
        Options {
            persist: db.persist(),
            clock_at: Some(first.broker.now()),
            ..Options::default()
        },
    )
    .await;
    assert_eq!(second.get("/api/v1/resources").await.text, resources);
    assert_eq!(second.get("/api/v1/reservations").await.text, reservations);
    assert_eq!(second.get("/api/v1/resources/expired").await.text, expired);
    assert_eq!(
        second.broker.publisher().next_event(),
        next_event,
        "event numbers go on (SSE ids)"
    );
    assert_eq!(
        second.get("/api/v1/audit").await.text,
        audit,
        "the same audit log"
    );
    // The remembered answer: a retry replays it instead of locking again.
    let retry = second.send(keyed(&second)).await;
    assert_eq!(retry.header("idempotent-replayed"), "true");
    assert_eq!(retry.expect_json(200), original);
    // The restored lock is its holder's, and the fencing counter went on.
    assert_eq!(second.unlock(ARM_1, &held.token).await.status, 200);
    let rid = queued["reservation_id"].as_str().unwrap();
    let fulfilled = second
        .get(&format!("/api/v1/reservations/{rid}"))
        .await
        .expect_json(200);
    assert_eq!(
        fulfilled["status"], "fulfilled",
        "served when board-arm-3 came"
    );
    let after = second.locked(ARM_1, 30).await;
    assert_eq!(
        after.fencing,
        held.fencing + 6,
        "fencing tokens go on, never back (x86, two grants, the printer twice)"
    );
}

#[tokio::test]
async fn concurrent_requests_are_committed_in_groups() {
    let Some(db) = TestDb::create("concurrent_requests_are_committed_in_groups").await else {
        return;
    };
    const BOARDS: usize = 32;
    let boards = (0..BOARDS)
        .map(|i| ResourceSpec::named(format!("board-{i}")).with_tags(&["board"]))
        .collect();
    let app = start_on(&db, boards).await;
    let commits_before = db.query_i64("SELECT commits FROM state").await;
    let seq_before = app.broker.last_seq();

    // An operator's transaction holds the state row: the writer's first transaction
    // waits for it, and every change made meanwhile queues behind it.
    let (release, released) = mpsc::channel::<()>();
    let (held_tx, held) = tokio::sync::oneshot::channel();
    let url = db.url.clone();
    let blocker = std::thread::spawn(move || {
        let mut c = Client::connect(&url, NoTls).unwrap();
        let mut tx = c.transaction().unwrap();
        tx.query_one("SELECT commits FROM state WHERE id = 1 FOR UPDATE", &[])
            .unwrap();
        held_tx.send(()).unwrap();
        released.recv().unwrap();
        tx.commit().unwrap();
    });
    held.await.unwrap();
    let locks: Vec<_> = (1..=BOARDS)
        .map(|id| {
            let (client, url) = (
                app.client.clone(),
                app.url(&format!("/api/v1/resources/{id}/lock")),
            );
            tokio::spawn(async move { read(client.post(url).send().await.unwrap()).await })
        })
        .collect();
    // Every lock is made and queued for the writer (numbered under the broker's
    // mutex), none can be committed yet.
    let deadline = Instant::now() + PATIENCE;
    while app.broker.last_seq() < seq_before + BOARDS as u64 {
        assert!(Instant::now() < deadline, "the locks were made");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    release.send(()).unwrap();
    let mut fencing = Vec::new();
    for lock in locks {
        let body = timeout(PATIENCE, lock)
            .await
            .unwrap()
            .unwrap()
            .expect_json(200);
        fencing.push(body["fencing-token"].as_u64().unwrap());
    }
    blocker.join().unwrap();
    fencing.sort_unstable();
    fencing.dedup();
    assert_eq!(fencing.len(), BOARDS, "every lock its own fencing token");
    // The one the writer was committing when the row was held, then all the others in
    // one transaction: at most two, where one transaction per change would be 32.
    let commits = db.query_i64("SELECT commits FROM state").await - commits_before;
    assert!((1..=2).contains(&commits), "{commits} transactions");
    assert_eq!(
        db.query_i64("SELECT count(*) FROM resources WHERE lock_token IS NOT NULL")
            .await,
        BOARDS as i64
    );
    assert_eq!(
        db.query_i64("SELECT count(*) FROM audit WHERE event_type = 'locked'")
            .await,
        BOARDS as i64
    );
}

#[tokio::test]
async fn a_lost_database_fails_closed_then_recovers_with_nothing_lost() {
    let Some(db) = TestDb::create("a_lost_database_fails_closed_then_recovers").await else {
        return;
    };
    let app = start_on(&db, lab()).await;
    app.locked(PRINTER, 60).await;

    // The database goes away: no new connections, and the service's is ended.
    let name = db.name.clone();
    db.admin(move |c| {
        c.batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
            .unwrap();
        c.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[&name],
        )
        .unwrap();
        // pg_terminate_backend only signals: wait until the backend is gone.
        while c
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                &[&name],
            )
            .unwrap()
            .get::<_, i64>(0)
            > 0
        {
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .await;

    // The lock runs, but its change cannot be committed: no success answer.
    let first = app.lock(ARM_1).await;
    let body = first.expect_json(503);
    assert_eq!(body["code"], "store_unavailable");
    let ready = readiness_becomes(&app, 503).await;
    assert!(
        ready["reasons"][0]
            .as_str()
            .unwrap()
            .contains("the store fails to commit"),
        "{ready}"
    );
    assert!(
        !ready.to_string().contains(":rentabot@"),
        "no password: {ready}"
    );
    assert_eq!(app.get("/health").await.status, 200, "alive all the same");
    // While it fails, requests are refused before they change anything.
    assert_eq!(
        app.lock(X86_1).await.expect_json(503)["code"],
        "store_unavailable"
    );

    // The database is back: the writer reconnects on its next retry.
    let name = db.name.clone();
    db.admin(move |c| {
        c.batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
            .unwrap()
    })
    .await;
    readiness_becomes(&app, 200).await;
    // The first lock was retried until committed; the refused one never ran.
    assert_ne!(app.resource(ARM_1).await["lock-token"], "");
    assert_eq!(app.resource(X86_1).await["lock-token"], "");
    let locked = db
        .psql(|c| {
            c.query(
                "SELECT id FROM resources WHERE lock_token IS NOT NULL ORDER BY id",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get::<_, i64>(0))
            .collect::<Vec<_>>()
        })
        .await;
    assert_eq!(locked, [i64::from(ARM_1), i64::from(PRINTER)]);
    // And it serves again.
    app.locked(X86_1, 60).await;
}

#[tokio::test]
async fn a_deposed_active_answers_the_requests_waiting_for_a_commit_at_once() {
    let Some(db) = TestDb::create("a_deposed_active_answers_the_waiting_requests").await else {
        return;
    };
    let app = start_on(&db, lab()).await;
    app.locked(PRINTER, 60).await;

    // An operator's transaction holds the `state` row: the writer's next commit (its
    // fence updates that row) waits for it, however long.
    let (release, released) = mpsc::channel::<()>();
    let (held, holding) = tokio::sync::oneshot::channel();
    let url = db.url.clone();
    let holder = tokio::task::spawn_blocking(move || {
        on_a_thread(&url, move |c| {
            let mut t = c.transaction().unwrap();
            t.query_one("SELECT 1 FROM state WHERE id = 1 FOR UPDATE", &[])
                .unwrap();
            held.send(()).unwrap();
            let _ = released.recv();
            t.rollback().unwrap();
        })
    });
    holding.await.unwrap();
    // The lock runs, and its commit waits on the row; then the leader's session ends
    // (as when the server times a paused leader out): the service is deposed. The
    // request waiting for its commit is told so while the commit still waits: nothing
    // was acknowledged, and nothing hangs until the stop gives up on it.
    let depose = async {
        let deadline = Instant::now() + PATIENCE;
        while db
            .query_i64(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND application_name = 'rentabot' AND wait_event_type = 'Lock'",
            )
            .await
            == 0
        {
            assert!(
                Instant::now() < deadline,
                "the writer never waited on the row"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        db.psql(|c| {
            c.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND application_name = 'rentabot leader'",
                &[],
            )
            .unwrap()
        })
        .await;
    };
    let (answer, ()) = timeout(PATIENCE, async { tokio::join!(app.lock(ARM_1), depose) })
        .await
        .expect("answered while the commit still waits");
    let body = answer.expect_json(503);
    assert_eq!(body["code"], "store_unavailable", "{body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("no longer the active one"),
        "{body}"
    );
    release.send(()).unwrap();
    holder.await.unwrap();
}
