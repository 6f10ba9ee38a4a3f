//! The PostgreSQL store: the SQLite store's rows on a database server, the ground the
//! HA pair stands on.
//!
//! - The tables are SQLite's (`schema/pg/v*.sql`, the same versions), in the schema
//!   first in the connection's `search_path` (`public` unless the URL's `options` say
//!   otherwise). `rentabot_meta` tells a rentabot schema from any other and holds its
//!   version; an empty schema gets the tables at first start, a newer version or a
//!   schema of another program is refused.
//! - Any number of services may share a schema; one is active (`leader.rs`: it holds
//!   the schema's advisory lock on a connection of its own and moved `state.epoch` when
//!   it took it). Only the active one opens this store, with its epoch.
//! - A batch is one statement, so one transaction and one round trip: rows are
//!   coalesced (`coalesce`) and passed as one array per column, written by a
//!   data-modifying `WITH` clause per table (`INSERT .. SELECT FROM unnest($1, $2, ..)
//!   ON CONFLICT DO UPDATE`, deletes, history appends), so 4096 changes cost the same
//!   round trip as one (`commit_sql`). Round trips, not the server's work, were what a
//!   commit cost: a transaction of a statement per table measured 1.2 ms a commit. The
//!   statement holds only the parts the batch writes (one prepared per batch shape),
//!   and the writer numbers the history tables' rows itself, trimming them in bulk.
//! - The fence: every commit updates the `state` row `WHERE epoch = <this store's
//!   epoch> AND commits = <the count it last saw>`, or is refused whole (the statement
//!   divides by zero). A newer epoch means another service took over: the commit is
//!   refused as [`StoreError::Deposed`], and since answers wait for commits, nothing of
//!   it was acknowledged. `state.commits` counts transactions: when a commit's outcome
//!   is lost with its connection, the next attempt (the writer retries the same batch)
//!   reconnects and reads the counter: moved by one, the batch landed and is not
//!   written twice.
//! - A lost connection fails the commit (503 `store_unavailable` until one succeeds);
//!   the next attempt, after the writer's backoff, reconnects.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement};
use serde_json::Value;

use super::sqlite::{
    allocations_from_json, allocations_json, end_reason, groups_from_json, groups_json, millis,
    origin_from, origin_text, released_columns, released_from, reservation_id, timestamp,
};
use super::url::PostgresUrl;
use super::{Backend, Batch, Loaded, StoreError, coalesce};
use crate::audit;
use crate::domain::{
    Counters, EndedReservation, ExpiredLock, FencingToken, Lease, LockMeta, LockState, LockToken,
    Maintenance, Priority, Reservation, ReservationRequest, ReservationStatus, Resource,
    ResourceId, ResourceSpec, StoredReservation, Timestamp, Ttl,
};
use crate::runtime::IdempotencyRecord;

/// The schema, one migration per version: `MIGRATIONS[n]` takes version `n` to `n + 1`.
/// Versions 1-3 are SQLite's; 4 adds the HA epoch. Never edit a released migration; add
/// the next one.
const MIGRATIONS: &[&str] = &[
    include_str!("schema/pg/v1.sql"),
    include_str!("schema/pg/v2.sql"),
    include_str!("schema/pg/v3.sql"),
    include_str!("schema/pg/v4.sql"),
];

/// The newest schema version this build reads and writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// A PostgreSQL schema, open for the writer thread.
pub struct PostgresStore {
    url: PostgresUrl,
    /// `None` after the connection was lost: the next commit connects again.
    conn: Option<Conn>,
    /// Audit rows kept: older ones are deleted as new ones come.
    audit_retention: i64,
    /// `state.commits` after this store's latest commit.
    commits: i64,
    /// The epoch this store writes under: its service's term as the active one.
    epoch: i64,
    /// The latest commit failed, perhaps after the server committed it: look before
    /// writing the batch again.
    in_doubt: bool,
    /// When expired `Idempotency-Key` answers are next deleted.
    forget_at: Timestamp,
    /// Where the history tables (`ended`, `expired_locks`, `audit`) stand: their rows
    /// are numbered here, not read from the table at each commit. `None` until read
    /// (at open, and again after a failed commit, whose rows may or may not be there).
    histories: Option<[History; 3]>,
}

/// A history table's rows, as this writer (the only one) left them: `ord` runs from
/// `from` to `top` without gaps (empty: `from = top + 1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct History {
    from: i64,
    top: i64,
}

/// The history tables, in the order of [`PostgresStore::histories`], and the rows each
/// keeps (the audit table's is the store's retention, given apart).
const HISTORIES: [&Table; 3] = [ENDED, EXPIRED_LOCKS, AUDIT];

/// How many rows past its bound a history table may hold before a commit trims it: the
/// trim is a statement part of its own, so batching it saves the executor that part on
/// most commits. Reads take only the newest `keep` rows (`read`), so the retention is
/// what a restart sees whatever the table holds; small bounds (tests) are kept exactly.
fn trim_slack(keep: i64) -> i64 {
    (keep / 16).min(256)
}

impl History {
    /// Appends `rows` (already cut to the newest `keep`), and says which `ord`s to
    /// delete, if the table is now past its bound and slack: `(first ord of the new
    /// rows, the range to trim)`.
    fn append(&mut self, rows: i64, keep: i64) -> (i64, Option<(i64, i64)>) {
        let first = self.top + 1;
        self.top += rows;
        let held = self.top - self.from + 1;
        if held > keep + trim_slack(keep) {
            let trim = (self.from, self.top - keep);
            self.from = self.top - keep + 1;
            (first, Some(trim))
        } else {
            (first, None)
        }
    }
}

/// The history tables' [`History`] as stored.
fn read_histories(client: &mut Client) -> anyhow::Result<[History; 3]> {
    let sql = HISTORIES
        .iter()
        .map(|t| {
            format!(
                "(SELECT COALESCE(MIN(ord), 1) FROM {0}), (SELECT COALESCE(MAX(ord), 0) FROM {0})",
                t.name
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let row = client.query_one(&format!("SELECT {sql}"), &[])?;
    let at = |i: usize| History {
        from: row.get(2 * i),
        top: row.get(2 * i + 1),
    };
    Ok([at(0), at(1), at(2)])
}

/// How often expired `Idempotency-Key` answers are deleted: each delete is a round trip,
/// and they are kept for hours (a second's more makes no difference).
const FORGET_EVERY: Duration = Duration::from_secs(1);

/// The writer's connection, with its prepared statements.
struct Conn {
    client: Client,
    statements: Statements,
}

impl PostgresStore {
    /// Connects and reads the schema, for the active service of `epoch` (which took the
    /// schema's lock and migrated it: [`super::leader::Leadership`]); it keeps the latest
    /// `audit_retention` audit rows (at least one).
    ///
    /// # Errors
    /// The server cannot be reached or refuses the login; the schema is not at this
    /// build's version; the epoch moved on (another service took over meanwhile).
    pub fn open(
        url: &PostgresUrl,
        audit_retention: usize,
        epoch: u64,
    ) -> anyhow::Result<(Self, Loaded)> {
        let audit_retention = i64::try_from(audit_retention.max(1)).unwrap_or(i64::MAX);
        let mut client = connect(url)?;
        let (loaded, commits, stored_epoch) = read(&mut client, audit_retention)
            .with_context(|| format!("reading {url}", url = url.shown()))?;
        if stored_epoch != epoch as i64 {
            bail!(deposed(url, epoch, stored_epoch));
        }
        // The commits trim the history tables from where they were; bring them to
        // this build's bounds and this retention once (they may have been larger).
        for (table, keep) in [
            ("audit", audit_retention),
            ("ended", crate::domain::ENDED_MEMORY as i64),
            ("expired_locks", crate::domain::EXPIRY_HISTORY as i64),
        ] {
            client.execute(
                &format!("DELETE FROM {table} WHERE ord <= (SELECT MAX(ord) FROM {table}) - $1"),
                &[&keep],
            )?;
        }
        let statements = Statements::prepare(&mut client)?;
        Ok((
            PostgresStore {
                url: url.clone(),
                conn: Some(Conn { client, statements }),
                audit_retention,
                commits,
                epoch: epoch as i64,
                in_doubt: false,
                forget_at: Timestamp::from_millis(0),
                histories: None,
            },
            loaded,
        ))
    }
}

impl Backend for PostgresStore {
    fn commit(&mut self, batch: &Batch<'_>) -> Result<(), StoreError> {
        match self.try_commit(batch) {
            Ok(()) => Ok(()),
            Err(Fail::Deposed(stored)) => Err(StoreError::Deposed(deposed(
                &self.url,
                self.epoch as u64,
                stored,
            ))),
            Err(Fail::Other(e)) => {
                // Whatever failed, the server may have committed (a lost answer to
                // COMMIT): the next attempt looks first.
                self.in_doubt = true;
                self.histories = None;
                if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
                    self.conn = None;
                }
                tracing::debug!(error = %format!("{e:#}"), "postgres commit failed");
                Err(StoreError::Failed(format!("{e:#}")))
            }
        }
    }
}

/// Why [`PostgresStore::try_commit`] failed.
enum Fail {
    /// The epoch moved on to this one: another service is active.
    Deposed(i64),
    Other(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Fail {
    fn from(e: E) -> Fail {
        Fail::Other(e.into())
    }
}

impl PostgresStore {
    fn try_commit(&mut self, batch: &Batch<'_>) -> Result<(), Fail> {
        let rows = coalesce(batch.changes);
        if rows.seq.is_none() && batch.answers.is_empty() {
            return Ok(());
        }
        if self.conn.is_none() {
            let mut client = connect(&self.url)?;
            let statements = Statements::prepare(&mut client)?;
            self.conn = Some(Conn { client, statements });
            tracing::info!(store = %self.url, "reconnected to the state store");
        }
        let conn = self.conn.as_mut().expect("connected above");
        if self.in_doubt {
            // Whatever became of the failed attempt, number the history rows afresh.
            self.histories = None;
            let row = conn
                .client
                .query_one("SELECT commits, epoch FROM state WHERE id = 1", &[])?;
            let (commits, epoch): (i64, i64) = (row.get(0), row.get(1));
            if epoch != self.epoch {
                // Landed or not, another service took over since: refuse (the client
                // retries there, with its Idempotency-Key).
                return Err(Fail::Deposed(epoch));
            }
            if commits == self.commits + 1 {
                // The failed attempt committed this very batch: do not write it twice.
                self.commits = commits;
                self.in_doubt = false;
                return Ok(());
            }
            if commits != self.commits {
                return Err(anyhow::anyhow!(another_writer(&self.url)).into());
            }
            self.in_doubt = false;
        }
        let histories = match self.histories {
            Some(h) => h,
            None => *self.histories.insert(read_histories(&mut conn.client)?),
        };
        let (mut resources, mut gone_resources) = (Columns::new(RESOURCES), Vec::new());
        for (id, row) in &rows.resources {
            match row {
                Some(resource) => resources.push(resource_values(resource)?),
                None => gone_resources.push(i64::from(id.get())),
            }
        }
        let (mut reservations, mut gone_reservations) = (Columns::new(RESERVATIONS), Vec::new());
        for (id, row) in &rows.reservations {
            match row {
                Some(stored) => reservations.push(reservation_values(stored)),
                None => gone_reservations.push(id.to_string()),
            }
        }
        let mut ended = Columns::new(ENDED);
        for e in &rows.ended {
            ended.push(vec![
                Val::Text(Some(e.id.to_string())),
                Val::Text(Some(e.reason.as_str().to_owned())),
                Val::Int(Some(millis(e.at))),
            ]);
        }
        let mut expired = Columns::new(EXPIRED_LOCKS);
        for x in &rows.expired {
            expired.push(expired_values(x));
        }
        // One row per key (an upsert may not touch a row twice), the latest answer.
        let mut latest = std::collections::BTreeMap::new();
        for r in batch.records {
            latest.insert((&r.owner, &r.method, &r.path, &r.key), r);
        }
        let mut records = Columns::new(IDEMPOTENCY);
        for r in latest.into_values() {
            records.push(record_values(r)?);
        }
        // At most once a second (answers are kept for hours); `None`: not in this batch.
        let forget = (batch.now >= self.forget_at).then(|| millis(batch.now));
        // The audit log: one row per event, in this transaction, so that a change and
        // its record are stored together or not at all; then the requests' answers.
        let mut audit = Columns::new(AUDIT);
        for change in batch.changes {
            for entry in audit::Entry::of_change(change.at, &change.cause, &change.events) {
                audit.push(audit_values(&entry));
            }
        }
        for entry in batch.answers {
            audit.push(audit_values(entry));
        }
        // The history rows are numbered after the table's newest, and the oldest are
        // deleted once the table is past its bound by the slack (`trim_slack`).
        let mut after = histories;
        let mut appended = [(0, None); 3];
        let keeps = [
            crate::domain::ENDED_MEMORY as i64,
            crate::domain::EXPIRY_HISTORY as i64,
            self.audit_retention,
        ];
        for (i, columns) in [&mut ended, &mut expired, &mut audit]
            .into_iter()
            .enumerate()
        {
            // Rows this batch would trim at once are not written at all.
            columns.keep_last(keeps[i]);
            let rows = columns.rows() as i64;
            if rows > 0 {
                appended[i] = after[i].append(rows, keeps[i]);
            }
        }
        let trims = appended.map(|(_, trim)| trim.map(|(lo, hi)| [lo, hi]));
        let next = self.commits + 1;
        let c = rows.counters;
        let state: [&(dyn ToSql + Sync); 8] = [
            &next,
            &self.commits,
            &self.epoch,
            &rows.seq.map(|seq| seq as i64),
            &rows.seq.map(|_| batch.next_event as i64),
            &c.map(|c| i64::from(c.next_resource_id)),
            &c.map(|c| c.next_fencing as i64),
            &c.map(|c| c.next_reservation_seq as i64),
        ];
        // Only the parts the batch has: most batches write resources, the audit log and
        // the state row, and a part left empty still costs the server executor time (a
        // generic plan's `DELETE .. WHERE id = ANY($n)` scans the whole table).
        let shape = Shape::default()
            .with(Part::Resources, resources.rows() > 0)
            .with(Part::GoneResources, !gone_resources.is_empty())
            .with(Part::Reservations, reservations.rows() > 0)
            .with(Part::GoneReservations, !gone_reservations.is_empty())
            .with(Part::Ended, ended.rows() > 0)
            .with(Part::EndedTrim, trims[0].is_some())
            .with(Part::Expired, expired.rows() > 0)
            .with(Part::ExpiredTrim, trims[1].is_some())
            .with(Part::Records, records.rows() > 0)
            .with(Part::Forget, forget.is_some())
            .with(Part::Audit, audit.rows() > 0)
            .with(Part::AuditTrim, trims[2].is_some());
        // In the order of `commit_sql`.
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
        if shape.has(Part::Resources) {
            params.extend(resources.params());
        }
        if shape.has(Part::GoneResources) {
            params.push(&gone_resources);
        }
        if shape.has(Part::Reservations) {
            params.extend(reservations.params());
        }
        if shape.has(Part::GoneReservations) {
            params.push(&gone_reservations);
        }
        // The two history tables `commit_sql` writes in one loop, in its order.
        for (i, (part, columns)) in [(Part::Ended, &ended), (Part::Expired, &expired)]
            .into_iter()
            .enumerate()
        {
            if shape.has(part) {
                params.extend(columns.params_and(&appended[i].0));
            }
            if let Some([lo, hi]) = &trims[i] {
                params.extend([lo as &(dyn ToSql + Sync), hi]);
            }
        }
        if shape.has(Part::Records) {
            params.extend(records.params());
        }
        if shape.has(Part::Forget) {
            params.push(&forget);
        }
        if shape.has(Part::Audit) {
            params.extend(audit.params_and(&appended[2].0));
        }
        if let Some([lo, hi]) = &trims[2] {
            params.extend([lo as &(dyn ToSql + Sync), hi]);
        }
        params.extend(state);
        // One statement, so one round trip and its own transaction: all of it or none.
        let statement = conn.statements.commit(&mut conn.client, shape)?;
        match conn.client.execute(&statement, &params) {
            Ok(_) => {}
            Err(e) if e.code() == Some(&postgres::error::SqlState::DIVISION_BY_ZERO) => {
                // The fence: the epoch moved on, or (never, with one active service)
                // `state.commits` is not what this writer last saw.
                let epoch: i64 = conn
                    .client
                    .query_one("SELECT epoch FROM state WHERE id = 1", &[])?
                    .get(0);
                if epoch != self.epoch {
                    return Err(Fail::Deposed(epoch));
                }
                return Err(anyhow::anyhow!(another_writer(&self.url)).into());
            }
            Err(e) => return Err(e.into()),
        }
        if forget.is_some() {
            self.forget_at = batch.now.checked_add(FORGET_EVERY).unwrap_or(batch.now);
        }
        self.commits = next;
        self.histories = Some(after);
        Ok(())
    }
}

fn deposed(url: &PostgresUrl, mine: u64, stored: i64) -> String {
    format!(
        "deposed: {} is at epoch {stored}, and this rentabot was active at epoch {mine}: \
         another one took over, and this one acknowledges nothing more",
        url.shown()
    )
}

fn another_writer(url: &PostgresUrl) -> String {
    format!(
        "another rentabot wrote to {} since this one took it: refusing to overwrite its \
         state (restart this service to load the database again)",
        url.shown()
    )
}

fn connect(url: &PostgresUrl) -> anyhow::Result<Client> {
    url.config()
        .connect(NoTls)
        .with_context(|| format!("connecting to {}", url.shown()))
}

/// The schema the connection writes to (the first of its `search_path` that exists).
pub(super) fn current_schema(client: &mut Client, url: &PostgresUrl) -> anyhow::Result<String> {
    let schema: Option<String> = client
        .query_one("SELECT current_schema()::text", &[])?
        .get(0);
    schema.ok_or_else(|| {
        anyhow::anyhow!(
            "no schema of the search_path of {} exists: create it, or name one that does \
             (options=-csearch_path%3Dname in the URL)",
            url.shown()
        )
    })
}

/// Brings the schema to [`SCHEMA_VERSION`] in one transaction, after checking that it
/// is rentabot's (or empty) and not newer.
pub(super) fn migrate(client: &mut Client, url: &PostgresUrl, schema: &str) -> anyhow::Result<()> {
    let mut tx = client.transaction()?;
    let tables: Vec<String> = tx
        .query(
            "SELECT c.relname::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
            &[],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let version = if tables.iter().any(|t| t == "rentabot_meta") {
        let row = tx.query_one(
            "SELECT application, schema_version FROM rentabot_meta WHERE id = 1",
            &[],
        )?;
        let application: String = row.get(0);
        if application != "rentabot" {
            bail!(not_ours(url, schema));
        }
        usize::try_from(row.get::<_, i32>(1)).unwrap_or(usize::MAX)
    } else if tables.is_empty() {
        0
    } else {
        bail!(not_ours(url, schema));
    };
    if version > SCHEMA_VERSION {
        bail!(
            "schema {schema} of {} was written by a newer rentabot (schema version {version}; \
             this one knows up to {SCHEMA_VERSION}): run that version, or restore a dump made \
             by this one",
            url.shown()
        );
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    for (from, migration) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.batch_execute(migration).with_context(|| {
            format!(
                "migrating schema {schema} of {} to version {}",
                url.shown(),
                from + 1
            )
        })?;
    }
    tx.execute(
        "UPDATE rentabot_meta SET schema_version = $1 WHERE id = 1",
        &[&(SCHEMA_VERSION as i32)],
    )?;
    tx.commit()?;
    tracing::info!(
        store = %url,
        schema,
        from = version,
        to = SCHEMA_VERSION,
        "state schema {}",
        if version == 0 { "created" } else { "migrated" }
    );
    Ok(())
}

fn not_ours(url: &PostgresUrl, schema: &str) -> String {
    format!(
        "schema {schema} of {} holds tables, but not rentabot's (no rentabot_meta): give \
         --persist a database (or a schema, options=-csearch_path%3Dname) of its own",
        url.shown()
    )
}

/// Reads everything in one snapshot: the state, `state.commits` and `state.epoch`.
fn read(client: &mut Client, audit_retention: i64) -> anyhow::Result<(Loaded, i64, i64)> {
    let mut tx = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?;
    let row = tx.query_one(
        "SELECT stream_seq, next_event, next_resource_id, next_fencing, next_reservation_seq, \
         commits, epoch FROM state WHERE id = 1",
        &[],
    )?;
    let mut loaded = Loaded {
        seq: row.get::<_, i64>(0) as u64,
        next_event: row.get::<_, i64>(1) as u64,
        ..Loaded::default()
    };
    loaded.image.counters = Counters {
        next_resource_id: u32::try_from(row.get::<_, i64>(2))
            .context("next_resource_id out of range")?,
        next_fencing: row.get::<_, i64>(3) as u64,
        next_reservation_seq: row.get::<_, i64>(4) as u64,
    };
    let (commits, epoch): (i64, i64) = (row.get(5), row.get(6));
    for row in tx.query(
        &format!(
            "SELECT {} FROM resources ORDER BY id",
            select_list(RESOURCES)
        ),
        &[],
    )? {
        let resource = resource_from_row(&row)?;
        loaded
            .image
            .resources
            .insert(resource.id, Arc::new(resource));
    }
    for row in tx.query(
        &format!(
            "SELECT {} FROM reservations ORDER BY seq",
            select_list(RESERVATIONS)
        ),
        &[],
    )? {
        let stored = reservation_from_row(&row)?;
        loaded
            .image
            .reservations
            .insert(stored.reservation.id, stored);
    }
    for row in tx.query("SELECT id, reason, at FROM ended ORDER BY ord", &[])? {
        loaded.image.ended.push_back(EndedReservation {
            id: reservation_id(row.get(0))?,
            reason: end_reason(row.get(1))?,
            at: timestamp(row.get(2)),
        });
    }
    for row in tx.query(
        &format!(
            "SELECT {} FROM expired_locks ORDER BY ord",
            select_list(EXPIRED_LOCKS)
        ),
        &[],
    )? {
        loaded.image.expired.push_back(ExpiredLock {
            resource: resource_id(row.get(0))?,
            name: row.get(1),
            fencing: FencingToken::new(row.get::<_, i64>(2) as u64),
            acquired_at: timestamp(row.get(3)),
            expired_at: timestamp(row.get(4)),
            reservation: row
                .get::<_, Option<&str>>(5)
                .map(reservation_id)
                .transpose()?,
            meta: LockMeta {
                holder: row.get(6),
                note: row.get(7),
                owner: row.get::<_, Option<&str>>(8).map(Arc::from),
            },
        });
    }
    for row in tx.query(
        &format!("SELECT {} FROM idempotency", select_list(IDEMPOTENCY)),
        &[],
    )? {
        let fingerprint: Vec<u8> = row.get(4);
        loaded.records.push(IdempotencyRecord {
            owner: row.get(0),
            method: row.get(1),
            path: row.get(2),
            key: row.get(3),
            fingerprint: fingerprint
                .try_into()
                .map_err(|_| anyhow::anyhow!("an idempotency fingerprint is not 32 bytes"))?,
            status: u16::try_from(row.get::<_, i32>(5)).context("an idempotency status")?,
            headers: serde_json::from_str(row.get(6))?,
            body: row.get(7),
            expires_at: timestamp(row.get(8)),
        });
    }
    let mut audit = Vec::new();
    for row in tx.query(
        &format!(
            "SELECT {} FROM audit ORDER BY ord DESC LIMIT $1",
            select_list(AUDIT)
        ),
        &[&audit_retention],
    )? {
        let reservation: Option<&str> = row.get(3);
        let resource = row
            .get::<_, Option<i64>>(2)
            .map(u32::try_from)
            .transpose()
            .context("an audit row's resource id")?;
        let entry = audit::Entry::stored(
            timestamp(row.get(0)),
            row.get(1),
            resource,
            reservation,
            row.get(4),
            row.get(5),
            row.get(6),
            row.get(7),
            row.get(8),
            row.get(9),
            row.get(10),
        )
        .with_context(|| format!("an audit row names reservation {reservation:?}"))?;
        audit.push(entry);
    }
    audit.reverse();
    loaded.audit = audit;
    tx.commit()?;
    Ok((loaded, commits, epoch))
}

// ---------------------------------------------------------------------------------------
// Tables, as the statements see them.

/// A table the writer fills from arrays: its columns (name, PostgreSQL type) in the
/// order the `*_values` functions give them, and the key an upsert replaces on (none:
/// rows are appended, numbered by `ord`).
struct Table {
    name: &'static str,
    columns: &'static [(&'static str, &'static str)],
    key: &'static [&'static str],
}

const RESOURCES: &Table = &Table {
    name: "resources",
    columns: &[
        ("id", "int8"),
        ("name", "text"),
        ("description", "text"),
        ("endpoint", "text"),
        ("tags", "jsonb"),
        ("max_lock_secs", "int8"),
        ("origin", "text"),
        ("retiring", "bool"),
        ("lock_token", "text"),
        ("lock_fencing", "int8"),
        ("lock_acquired_at", "int8"),
        ("lock_expires_at", "int8"),
        ("lock_reservation", "text"),
        ("lock_holder", "text"),
        ("lock_note", "text"),
        ("released", "text"),
        ("released_at", "int8"),
        ("released_reason", "text"),
        ("maint_reason", "text"),
        ("maint_from", "int8"),
        ("maint_until", "int8"),
        ("maint_active", "bool"),
        ("lock_owner", "text"),
    ],
    key: &["id"],
};

const RESERVATIONS: &Table = &Table {
    name: "reservations",
    columns: &[
        ("id", "text"),
        ("seq", "int8"),
        ("groups", "jsonb"),
        ("priority", "int8"),
        ("ttl_secs", "int8"),
        ("max_wait_secs", "int8"),
        ("auto_claim", "bool"),
        ("holder", "text"),
        ("note", "text"),
        ("created_at", "int8"),
        ("expires_at", "int8"),
        ("status", "text"),
        ("fulfilled_at", "int8"),
        ("claim_expires_at", "int8"),
        ("claimed_at", "int8"),
        ("allocations", "jsonb"),
        ("next_aging", "int8"),
        ("owner", "text"),
    ],
    key: &["id"],
};

const ENDED: &Table = &Table {
    name: "ended",
    columns: &[("id", "text"), ("reason", "text"), ("at", "int8")],
    key: &[],
};

const EXPIRED_LOCKS: &Table = &Table {
    name: "expired_locks",
    columns: &[
        ("resource", "int8"),
        ("name", "text"),
        ("fencing", "int8"),
        ("acquired_at", "int8"),
        ("expired_at", "int8"),
        ("reservation", "text"),
        ("holder", "text"),
        ("note", "text"),
        ("owner", "text"),
    ],
    key: &[],
};

const IDEMPOTENCY: &Table = &Table {
    name: "idempotency",
    columns: &[
        ("owner", "text"),
        ("method", "text"),
        ("path", "text"),
        ("key", "text"),
        ("fingerprint", "bytea"),
        ("status", "int8"),
        ("headers", "jsonb"),
        ("body", "bytea"),
        ("expires_at", "int8"),
    ],
    key: &["owner", "method", "path", "key"],
};

const AUDIT: &Table = &Table {
    name: "audit",
    columns: &[
        ("at", "int8"),
        ("event_type", "text"),
        ("resource_id", "int8"),
        ("reservation_id", "text"),
        ("actor", "text"),
        ("role", "text"),
        ("client_ip", "text"),
        ("user_agent", "text"),
        ("request_id", "text"),
        ("success", "bool"),
        ("details", "text"),
    ],
    key: &[],
};

/// The columns to read, JSONB as text (the JSON parser reads it).
fn select_list(table: &Table) -> String {
    table
        .columns
        .iter()
        .map(|(name, ty)| match *ty {
            "jsonb" => format!("{name}::text"),
            _ => (*name).to_owned(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `unnest($first::int8[], ..) AS u(a, b, ..)` and the select list over `u`.
fn unnest(table: &Table, first: usize) -> (String, String) {
    let arrays: Vec<String> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| {
            let ty = if *ty == "jsonb" { "text" } else { ty };
            format!("${}::{ty}[]", first + i)
        })
        .collect();
    let names: Vec<&str> = table.columns.iter().map(|(n, _)| *n).collect();
    let select: Vec<String> = table
        .columns
        .iter()
        .map(|(name, ty)| match *ty {
            "jsonb" => format!("u.{name}::jsonb"),
            _ => format!("u.{name}"),
        })
        .collect();
    (
        format!("unnest({}) AS u({})", arrays.join(", "), names.join(", ")),
        select.join(", "),
    )
}

/// The statement that commits a batch of `shape`, and its parameters in order: for each
/// part the batch has, the table's columns as arrays, the ids deleted, the number of
/// history rows kept, the time before which remembered answers are forgotten; then the
/// state row. Parts a batch lacks are left out of the statement (an empty part still
/// costs executor time: a generic plan deletes `WHERE id = ANY($n)` by a scan of the
/// whole table). Data-modifying `WITH` clauses run once and to
/// completion in one snapshot, and one statement is one transaction: a batch costs one
/// round trip whatever it holds. The last line is the fence: when `state.epoch` is not
/// this store's (another service took over) or `state.commits` not the value this
/// writer last saw, the update matches no row and the division by zero aborts the whole
/// statement. Under READ COMMITTED an update that meets the takeover's update of the
/// same row waits for it and re-checks its condition on the new row: it cannot land
/// under the old epoch once the takeover committed.
fn commit_sql(shape: Shape) -> String {
    let mut next = 1;
    let mut take = |n: usize| {
        let first = next;
        next += n;
        first
    };
    let mut ctes = Vec::new();
    let upsert = |table: &Table, first: usize, ctes: &mut Vec<String>| {
        let (from, select) = unnest(table, first);
        let names: Vec<&str> = table.columns.iter().map(|(n, _)| *n).collect();
        let updates: Vec<String> = names
            .iter()
            .filter(|n| !table.key.contains(n))
            .map(|n| format!("{n} = EXCLUDED.{n}"))
            .collect();
        ctes.push(format!(
            "{name}_upserted AS (INSERT INTO {name} ({}) SELECT {select} FROM {from} \
             ON CONFLICT ({}) DO UPDATE SET {})",
            names.join(", "),
            table.key.join(", "),
            updates.join(", "),
            name = table.name,
        ));
    };
    // Appends in array order, numbered from the parameter after the arrays (the
    // writer numbers the rows: one writer per epoch: the fence refuses any other).
    let append = |table: &Table, first: usize, ctes: &mut Vec<String>| {
        let (from, select) = unnest(table, first);
        let names: Vec<&str> = table.columns.iter().map(|(n, _)| *n).collect();
        let from = from.replacen(") AS u(", ") WITH ORDINALITY AS u(", 1);
        let from = format!("{}, n)", from.trim_end_matches(')'));
        let base = first + table.columns.len();
        ctes.push(format!(
            "{name}_added AS (INSERT INTO {name} (ord, {}) SELECT ${base}::int8 + u.n - 1, \
             {select} FROM {from})",
            names.join(", "),
            name = table.name,
        ));
    };
    // Deletes the oldest rows, from the first to the last `ord` given (the plan is
    // generic: naming both ends keeps it to the range of the primary key).
    let trim = |table: &Table, lo: usize, ctes: &mut Vec<String>| {
        ctes.push(format!(
            "{name}_trimmed AS (DELETE FROM {name} WHERE ord >= ${lo}::int8 AND ord <= ${}::int8)",
            lo + 1,
            name = table.name,
        ));
    };
    if shape.has(Part::Resources) {
        let first = take(RESOURCES.columns.len());
        upsert(RESOURCES, first, &mut ctes);
    }
    if shape.has(Part::GoneResources) {
        let gone = take(1);
        ctes.push(format!(
            "resources_deleted AS (DELETE FROM resources WHERE id = ANY(${gone}::int8[]))"
        ));
    }
    if shape.has(Part::Reservations) {
        let first = take(RESERVATIONS.columns.len());
        upsert(RESERVATIONS, first, &mut ctes);
    }
    if shape.has(Part::GoneReservations) {
        let gone = take(1);
        ctes.push(format!(
            "reservations_deleted AS (DELETE FROM reservations WHERE id = ANY(${gone}::text[]))"
        ));
    }
    for (part, trimmed, table) in [
        (Part::Ended, Part::EndedTrim, ENDED),
        (Part::Expired, Part::ExpiredTrim, EXPIRED_LOCKS),
    ] {
        if shape.has(part) {
            let first = take(table.columns.len() + 1);
            append(table, first, &mut ctes);
        }
        if shape.has(trimmed) {
            let lo = take(2);
            trim(table, lo, &mut ctes);
        }
    }
    if shape.has(Part::Records) {
        let first = take(IDEMPOTENCY.columns.len());
        upsert(IDEMPOTENCY, first, &mut ctes);
    }
    if shape.has(Part::Forget) {
        let forget = take(1);
        ctes.push(format!(
            "forgotten AS (DELETE FROM idempotency WHERE expires_at <= ${forget}::int8)"
        ));
    }
    if shape.has(Part::Audit) {
        let first = take(AUDIT.columns.len() + 1);
        append(AUDIT, first, &mut ctes);
    }
    if shape.has(Part::AuditTrim) {
        let lo = take(2);
        trim(AUDIT, lo, &mut ctes);
    }
    let s = take(8);
    ctes.push(format!(
        "fenced AS (UPDATE state SET commits = ${}::int8, \
         stream_seq = COALESCE(${}::int8, stream_seq), \
         next_event = COALESCE(${}::int8, next_event), \
         next_resource_id = COALESCE(${}::int8, next_resource_id), \
         next_fencing = COALESCE(${}::int8, next_fencing), \
         next_reservation_seq = COALESCE(${}::int8, next_reservation_seq) \
         WHERE id = 1 AND commits = ${}::int8 AND epoch = ${}::int8 RETURNING 1)",
        s,
        s + 3,
        s + 4,
        s + 5,
        s + 6,
        s + 7,
        s + 1,
        s + 2,
    ));
    format!(
        "WITH {} SELECT 1 / (SELECT count(*)::int FROM fenced)",
        ctes.join(",\n")
    )
}

/// What a batch writes besides the state row: one bit per optional part of
/// [`commit_sql`].
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Debug)]
struct Shape(u16);

#[derive(Clone, Copy)]
enum Part {
    Resources,
    GoneResources,
    Reservations,
    GoneReservations,
    Ended,
    EndedTrim,
    Expired,
    ExpiredTrim,
    Records,
    Forget,
    Audit,
    AuditTrim,
}

impl Shape {
    fn with(self, part: Part, present: bool) -> Shape {
        if present {
            Shape(self.0 | 1 << part as u16)
        } else {
            self
        }
    }

    fn has(self, part: Part) -> bool {
        self.0 & (1 << part as u16) != 0
    }
}

/// The writer's statements, one per batch shape met, each prepared on this connection
/// at its first use (at most 2^12 shapes; a handful in practice: a lock+unlock load
/// meets resources + audit, with or without the once-a-second forget).
struct Statements {
    commit: std::collections::HashMap<Shape, Statement>,
}

impl Statements {
    fn prepare(client: &mut Client) -> anyhow::Result<Statements> {
        // A statement's plan does not depend on its arrays' contents: plan it once.
        client.batch_execute("SET plan_cache_mode = force_generic_plan")?;
        Ok(Statements {
            commit: std::collections::HashMap::new(),
        })
    }

    /// The statement for batches of `shape` (a cheap handle: `Statement` is an `Arc`).
    fn commit(&mut self, client: &mut Client, shape: Shape) -> anyhow::Result<Statement> {
        if let Some(statement) = self.commit.get(&shape) {
            return Ok(statement.clone());
        }
        let sql = commit_sql(shape);
        let statement = client
            .prepare(&sql)
            .with_context(|| format!("preparing {sql}"))?;
        self.commit.insert(shape, statement.clone());
        Ok(statement)
    }
}

/// One value of a row, typed as its column's array.
enum Val {
    Int(Option<i64>),
    Text(Option<String>),
    Bool(Option<bool>),
    Bytes(Vec<u8>),
}

/// A table's rows, column by column: one array parameter per column.
enum Column {
    Int(Vec<Option<i64>>),
    Text(Vec<Option<String>>),
    Bool(Vec<Option<bool>>),
    Bytes(Vec<Vec<u8>>),
}

struct Columns(Vec<Column>);

impl Columns {
    fn new(table: &Table) -> Columns {
        Columns(
            table
                .columns
                .iter()
                .map(|(_, ty)| match *ty {
                    "int8" => Column::Int(Vec::new()),
                    "bool" => Column::Bool(Vec::new()),
                    "bytea" => Column::Bytes(Vec::new()),
                    _ => Column::Text(Vec::new()),
                })
                .collect(),
        )
    }

    /// Adds a row; its values come in the table's column order and types.
    fn push(&mut self, row: Vec<Val>) {
        debug_assert_eq!(row.len(), self.0.len(), "one value per column");
        for (column, value) in self.0.iter_mut().zip(row) {
            match (column, value) {
                (Column::Int(c), Val::Int(v)) => c.push(v),
                (Column::Text(c), Val::Text(v)) => c.push(v),
                (Column::Bool(c), Val::Bool(v)) => c.push(v),
                (Column::Bytes(c), Val::Bytes(v)) => c.push(v),
                _ => unreachable!("a value of another type than its column's"),
            }
        }
    }

    /// How many rows it holds.
    fn rows(&self) -> usize {
        match self.0.first() {
            Some(Column::Int(c)) => c.len(),
            Some(Column::Text(c)) => c.len(),
            Some(Column::Bool(c)) => c.len(),
            Some(Column::Bytes(c)) => c.len(),
            None => 0,
        }
    }

    /// Drops all but the last `keep` rows.
    fn keep_last(&mut self, keep: i64) {
        let drop = self
            .rows()
            .saturating_sub(usize::try_from(keep).unwrap_or(usize::MAX));
        if drop == 0 {
            return;
        }
        for column in &mut self.0 {
            match column {
                Column::Int(c) => drop_first(c, drop),
                Column::Text(c) => drop_first(c, drop),
                Column::Bool(c) => drop_first(c, drop),
                Column::Bytes(c) => drop_first(c, drop),
            }
        }
    }

    /// [`Columns::params`] and one more, after them.
    fn params_and<'a>(&'a self, last: &'a (dyn ToSql + Sync)) -> Vec<&'a (dyn ToSql + Sync)> {
        let mut params = self.params();
        params.push(last);
        params
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0
            .iter()
            .map(|c| -> &(dyn ToSql + Sync) {
                match c {
                    Column::Int(v) => v,
                    Column::Text(v) => v,
                    Column::Bool(v) => v,
                    Column::Bytes(v) => v,
                }
            })
            .collect()
    }
}

fn drop_first<T>(v: &mut Vec<T>, n: usize) {
    v.drain(..n);
}

fn text(s: impl Into<String>) -> Val {
    Val::Text(Some(s.into()))
}

fn opt_text(s: Option<impl Into<String>>) -> Val {
    Val::Text(s.map(Into::into))
}

fn int(n: i64) -> Val {
    Val::Int(Some(n))
}

fn resource_values(r: &Resource) -> anyhow::Result<Vec<Val>> {
    let lease = r.lease();
    let (released, released_at, released_reason) = released_columns(&r.state);
    let m = r.maintenance.as_ref();
    Ok(vec![
        int(i64::from(r.id.get())),
        text(&r.spec.name),
        text(&r.spec.description),
        text(&r.spec.endpoint),
        text(serde_json::to_string(&r.spec.tags)?),
        int(r.spec.max_lock_duration.as_secs() as i64),
        text(origin_text(r.origin)),
        Val::Bool(Some(r.retiring)),
        opt_text(lease.map(|l| l.token.reveal())),
        Val::Int(lease.map(|l| l.fencing.get() as i64)),
        Val::Int(lease.map(|l| millis(l.acquired_at))),
        Val::Int(lease.map(|l| millis(l.expires_at))),
        opt_text(lease.and_then(|l| l.reservation).map(|id| id.to_string())),
        opt_text(lease.and_then(|l| l.meta.holder.as_deref())),
        opt_text(lease.and_then(|l| l.meta.note.as_deref())),
        opt_text(released),
        Val::Int(released_at),
        opt_text(released_reason),
        opt_text(m.map(|m| m.reason.as_str())),
        Val::Int(m.map(|m| millis(m.from))),
        Val::Int(m.and_then(|m| m.until).map(millis)),
        Val::Bool(m.map(|m| m.active)),
        opt_text(lease.and_then(|l| l.meta.owner.as_deref())),
    ])
}

fn resource_id(n: i64) -> anyhow::Result<ResourceId> {
    Ok(ResourceId::new(u32::try_from(n).with_context(|| {
        format!("resource id {n} out of range")
    })?))
}

fn resource_from_row(row: &Row) -> anyhow::Result<Resource> {
    let id = resource_id(row.get(0))?;
    let tags: Vec<String> =
        serde_json::from_str(row.get(4)).with_context(|| format!("the tags of resource {id}"))?;
    let max = Ttl::from_secs(row.get::<_, i64>(5) as u64)?;
    let origin = origin_from(row.get(6)).map_err(|e| anyhow::anyhow!("resource {id}: {e}"))?;
    let state = match row.get::<_, Option<&str>>(8) {
        Some(token) => LockState::Locked(Lease {
            token: LockToken::parse(token)
                .with_context(|| format!("resource {id}: not a lock token"))?,
            fencing: FencingToken::new(row.get::<_, i64>(9) as u64),
            acquired_at: timestamp(row.get(10)),
            expires_at: timestamp(row.get(11)),
            reservation: row
                .get::<_, Option<&str>>(12)
                .map(reservation_id)
                .transpose()?,
            meta: LockMeta {
                holder: row.get(13),
                note: row.get(14),
                owner: row.get::<_, Option<&str>>(22).map(Arc::from),
            },
        }),
        None => LockState::Free(
            released_from(row.get(15), row.get(16), row.get(17))
                .map_err(|e| anyhow::anyhow!("resource {id}: {e}"))?,
        ),
    };
    let maintenance = row.get::<_, Option<String>>(18).map(|reason| Maintenance {
        reason,
        from: timestamp(row.get(19)),
        until: row.get::<_, Option<i64>>(20).map(timestamp),
        active: row.get::<_, Option<bool>>(21).unwrap_or_default(),
    });
    Ok(Resource {
        id,
        spec: ResourceSpec {
            name: row.get(1),
            description: row.get(2),
            endpoint: row.get(3),
            tags,
            max_lock_duration: max,
        },
        state,
        maintenance,
        retiring: row.get(7),
        origin,
    })
}

fn reservation_values(stored: &StoredReservation) -> Vec<Val> {
    let r = &stored.reservation;
    vec![
        text(r.id.to_string()),
        int(r.seq as i64),
        text(groups_json(r).to_string()),
        int(r.request.priority.get() as i64),
        int(r.request.ttl.as_secs() as i64),
        int(r.request.max_wait.as_secs() as i64),
        Val::Bool(Some(r.request.auto_claim)),
        opt_text(r.request.meta.holder.as_deref()),
        opt_text(r.request.meta.note.as_deref()),
        int(millis(r.created_at)),
        int(millis(r.expires_at)),
        text(r.status.as_str()),
        Val::Int(r.fulfilled_at.map(millis)),
        Val::Int(r.claim_expires_at.map(millis)),
        Val::Int(r.claimed_at.map(millis)),
        text(allocations_json(r).to_string()),
        Val::Int(stored.next_aging.map(millis)),
        opt_text(r.request.meta.owner.as_deref()),
    ]
}

fn reservation_from_row(row: &Row) -> anyhow::Result<StoredReservation> {
    let id = reservation_id(row.get(0))?;
    let groups = groups_from_json(&serde_json::from_str::<Value>(row.get(2))?)
        .with_context(|| format!("the groups of reservation {id}"))?;
    let allocations = allocations_from_json(&serde_json::from_str::<Value>(row.get(15))?)
        .with_context(|| format!("the allocations of reservation {id}"))?;
    let secs = |column: usize| -> anyhow::Result<Ttl> {
        Ttl::from_secs(row.get::<_, i64>(column) as u64).map_err(anyhow::Error::from)
    };
    let status = match row.get::<_, &str>(11) {
        "pending" => ReservationStatus::Pending,
        "fulfilled" => ReservationStatus::Fulfilled,
        "claimed" => ReservationStatus::Claimed,
        other => bail!("reservation {id}: unknown status {other:?}"),
    };
    Ok(StoredReservation {
        reservation: Arc::new(Reservation {
            id,
            request: ReservationRequest {
                groups,
                priority: Priority::new(row.get::<_, i64>(3) as u64)?,
                ttl: secs(4)?,
                max_wait: secs(5)?,
                auto_claim: row.get(6),
                meta: LockMeta {
                    holder: row.get(7),
                    note: row.get(8),
                    owner: row.get::<_, Option<&str>>(17).map(Arc::from),
                },
            },
            seq: row.get::<_, i64>(1) as u64,
            created_at: timestamp(row.get(9)),
            expires_at: timestamp(row.get(10)),
            status,
            fulfilled_at: row.get::<_, Option<i64>>(12).map(timestamp),
            claim_expires_at: row.get::<_, Option<i64>>(13).map(timestamp),
            claimed_at: row.get::<_, Option<i64>>(14).map(timestamp),
            allocations,
        }),
        next_aging: row.get::<_, Option<i64>>(16).map(timestamp),
    })
}

fn expired_values(x: &ExpiredLock) -> Vec<Val> {
    vec![
        int(i64::from(x.resource.get())),
        text(&x.name),
        int(x.fencing.get() as i64),
        int(millis(x.acquired_at)),
        int(millis(x.expired_at)),
        opt_text(x.reservation.map(|r| r.to_string())),
        opt_text(x.meta.holder.as_deref()),
        opt_text(x.meta.note.as_deref()),
        opt_text(x.meta.owner.as_deref()),
    ]
}

fn record_values(r: &IdempotencyRecord) -> anyhow::Result<Vec<Val>> {
    Ok(vec![
        text(&r.owner),
        text(&r.method),
        text(&r.path),
        text(&r.key),
        Val::Bytes(r.fingerprint.to_vec()),
        int(i64::from(r.status)),
        text(serde_json::to_string(&r.headers)?),
        Val::Bytes(r.body.clone()),
        int(millis(r.expires_at)),
    ])
}

fn audit_values(entry: &audit::Entry) -> Vec<Val> {
    let cause = &entry.cause;
    vec![
        int(millis(entry.at)),
        text(entry.event_type.as_ref()),
        Val::Int(entry.resource.map(|r| i64::from(r.get()))),
        opt_text(entry.reservation.map(|r| r.to_string())),
        text(entry.actor()),
        opt_text(entry.role()),
        opt_text(cause.client_ip.map(|ip| ip.to_string())),
        opt_text(cause.user_agent.as_deref()),
        opt_text(cause.request_id.as_deref()),
        Val::Bool(Some(entry.success)),
        text(Value::Object(entry.details()).to_string()),
    ]
}

#[cfg(test)]
pub(super) mod tests {
    //! The store against a real PostgreSQL (`RENTABOT_TEST_POSTGRES`, a URL of a role
    //! that may create databases; .ci/run sets it): each test makes a database of its
    //! own and drops it. Without the variable they say SKIPPED loudly and pass.

    use super::*;
    use crate::domain::{Broker, ResourceId};
    use crate::runtime::{Cause, Change};
    use crate::store::leader::{self, Leadership};
    use crate::store::sqlite::SqliteStore;
    use crate::store::sqlite::tests::{T0, at, change, every_kind_of_row, recording_broker, ttl};
    use crate::store::{PersistUrl, url::PostgresUrl};

    /// A database of the test's own, dropped (connections and all) at the end.
    pub(in crate::store) struct TestDb {
        base: String,
        name: String,
        pub url: PostgresUrl,
    }

    impl TestDb {
        /// `None` (and a loud SKIPPED line) without `RENTABOT_TEST_POSTGRES`.
        pub fn create(test: &str) -> Option<TestDb> {
            let Ok(base) = std::env::var("RENTABOT_TEST_POSTGRES") else {
                eprintln!(
                    "\n\n!!!! SKIPPED {test}: RENTABOT_TEST_POSTGRES is not set (a \
                     postgres:// URL of a role that may create databases); .ci/run sets \
                     it !!!!\n\n"
                );
                return None;
            };
            let name = format!("rb_{}", uuid::Uuid::new_v4().simple());
            let mut admin = Client::connect(&base, NoTls).expect("RENTABOT_TEST_POSTGRES");
            admin
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .unwrap();
            let PersistUrl::Postgres(url) =
                PersistUrl::parse(&with_database(&base, &name)).unwrap()
            else {
                panic!("RENTABOT_TEST_POSTGRES is not a postgres:// URL");
            };
            Some(TestDb { base, name, url })
        }

        /// A client of the test's database, as an operator's psql.
        pub fn psql(&self) -> Client {
            self.url.config().connect(NoTls).unwrap()
        }
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            if let Ok(mut admin) = Client::connect(&self.base, NoTls) {
                let _ = admin.batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ));
            }
        }
    }

    /// `url` naming database `name` instead.
    fn with_database(url: &str, name: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap();
        let host_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let query = rest[host_end..].find('?').map(|q| &rest[host_end + q..]);
        format!(
            "{scheme}://{}/{name}{}",
            &rest[..host_end],
            query.unwrap_or("")
        )
    }

    /// Takes the schema as its active service does: the leadership (the caller keeps it:
    /// dropping it ends the session) and the store at its epoch.
    pub(in crate::store) fn open_active(
        db: &TestDb,
        audit_retention: usize,
    ) -> anyhow::Result<(Leadership, PostgresStore, Loaded)> {
        let leadership = Leadership::campaign(&db.url, leader::Settings::default(), &mut || true)?
            .expect("it waits until it leads");
        let (store, loaded) = PostgresStore::open(&db.url, audit_retention, leadership.epoch())?;
        Ok((leadership, store, loaded))
    }

    fn commit(
        store: &mut dyn Backend,
        changes: &[Change],
        records: &[IdempotencyRecord],
        answers: &[audit::Entry],
    ) {
        store
            .commit(&Batch {
                changes,
                records,
                next_event: 42,
                now: T0,
                answers,
            })
            .unwrap();
    }

    fn refusal() -> audit::Entry {
        audit::Entry::refused(
            at(20),
            Cause::anonymous(),
            "unlock",
            Some(ResourceId::new(2)),
            None,
            audit::Answer {
                method: "POST".into(),
                route: "/api/v1/resources/{id}/unlock".into(),
                status: 403,
                code: Some("invalid_lock_token"),
            },
        )
    }

    fn records(loaded: &Loaded) -> Vec<Value> {
        loaded.audit.iter().map(audit::Entry::record).collect()
    }

    #[test]
    fn what_is_committed_reads_back_as_sqlite_reads_it_back() {
        let Some(db) = TestDb::create("what_is_committed_reads_back_as_sqlite_reads_it_back")
        else {
            return;
        };
        let (lead, mut pg, loaded) = open_active(&db, 100).unwrap();
        assert_eq!(loaded.seq, 0);
        assert!(loaded.image.resources.is_empty());
        let dir = tempfile::tempdir().unwrap();
        let (mut lite, _) = SqliteStore::open(&dir.path().join("state.db")).unwrap();

        let (b, changes, record) = every_kind_of_row();
        for store in [&mut pg as &mut dyn Backend, &mut lite] {
            // Two transactions, the second with the record, then a refusal alone.
            commit(store, &changes[..2], &[], &[]);
            commit(store, &changes[2..], std::slice::from_ref(&record), &[]);
            commit(store, &[], &[], &[refusal()]);
        }
        drop((pg, lite, lead));

        let (_, _, from_pg) = open_active(&db, 100).unwrap();
        let (_, from_lite) = SqliteStore::open(&dir.path().join("state.db")).unwrap();
        assert_eq!(from_pg.seq, 4);
        assert_eq!(from_pg.next_event, 42);
        assert_eq!(from_pg.image, b.image());
        assert_eq!(from_pg.records, vec![record]);
        assert_eq!(from_pg.image, from_lite.image);
        assert_eq!(
            (from_pg.seq, from_pg.next_event),
            (from_lite.seq, from_lite.next_event)
        );
        assert_eq!(from_pg.records, from_lite.records);
        assert!(!from_pg.audit.is_empty());
        assert_eq!(records(&from_pg), records(&from_lite), "the same audit log");
        assert_eq!(
            from_pg.audit.last().unwrap().record(),
            refusal().record(),
            "the refusal, stored on its own"
        );
        // And the rebuilt broker behaves as the live one: the same next deadline.
        let restored = Broker::restore(
            from_pg.image,
            crate::domain::Policy::default(),
            Box::new(crate::domain::Seeded::new(9)),
            false,
        );
        restored.check_invariants();
        assert_eq!(restored.next_deadline(), b.next_deadline());
    }

    #[test]
    fn an_empty_database_gets_the_schema_and_a_newer_one_is_refused() {
        let Some(db) =
            TestDb::create("an_empty_database_gets_the_schema_and_a_newer_one_is_refused")
        else {
            return;
        };
        drop(open_active(&db, 100).unwrap());
        let mut psql = db.psql();
        let version: i32 = psql
            .query_one("SELECT schema_version FROM rentabot_meta", &[])
            .unwrap()
            .get(0);
        assert_eq!(version as usize, SCHEMA_VERSION);
        drop(open_active(&db, 100).unwrap()); // and opens again as it is

        psql.execute(
            "UPDATE rentabot_meta SET schema_version = $1",
            &[&(SCHEMA_VERSION as i32 + 1)],
        )
        .unwrap();
        let err = format!("{:#}", open_active(&db, 100).err().unwrap());
        assert!(err.contains("written by a newer rentabot"), "{err}");
        assert!(!err.contains(":rentabot@"), "no password in {err}");
    }

    #[test]
    fn another_programs_schema_is_refused_and_a_second_service_waits_its_turn() {
        let Some(db) = TestDb::create("another_programs_schema_is_refused_and_a_second_service")
        else {
            return;
        };
        let mut psql = db.psql();
        psql.batch_execute("CREATE TABLE notes (text TEXT)")
            .unwrap();
        let err = format!("{:#}", open_active(&db, 100).err().unwrap());
        assert!(err.contains("not rentabot's"), "{err}");

        psql.batch_execute("DROP TABLE notes").unwrap();
        let (first, _, _) = open_active(&db, 100).unwrap();
        // A second one waits (here: two turns of the lock's wait, then gives up).
        let mut turns = 0;
        let second = Leadership::campaign(&db.url, leader::Settings::default(), &mut || {
            turns += 1;
            turns <= 2
        })
        .unwrap();
        assert!(second.is_none(), "the lock is held");
        // A standby that waits gets the schema as soon as the active one's session ends,
        // at the next epoch.
        let waiting = std::thread::spawn({
            let url = db.url.clone();
            move || {
                Leadership::campaign(&url, leader::Settings::default(), &mut || true)
                    .map(|l| l.expect("waits").epoch())
            }
        });
        let epoch = first.epoch();
        drop(first);
        assert_eq!(waiting.join().unwrap().unwrap(), epoch + 1);
    }

    #[test]
    fn a_commit_whose_answer_was_lost_is_not_written_twice_and_a_deposed_writer_is_fenced() {
        let Some(db) = TestDb::create("a_commit_whose_answer_was_lost_is_not_written_twice") else {
            return;
        };
        let (lead, mut store, _) = open_active(&db, 100).unwrap();
        let mut b = recording_broker();
        let first = change(&mut b, 1);
        commit(&mut store, &[first], &[], &[]);
        let grant = b.lock(ResourceId::new(1), ttl(60), at(1)).unwrap();
        b.unlock(ResourceId::new(1), Some(&grant.token.reveal()), at(2))
            .unwrap();
        let second = change(&mut b, 2);
        commit(&mut store, std::slice::from_ref(&second), &[], &[]);
        let mut psql = db.psql();
        let audit_rows = |psql: &mut Client| -> i64 {
            psql.query_one("SELECT count(*) FROM audit", &[])
                .unwrap()
                .get(0)
        };
        let rows = audit_rows(&mut psql);

        // As if COMMIT went through but its answer was lost: the writer retries the
        // same batch, and the store finds it there.
        store.commits -= 1;
        store.in_doubt = true;
        commit(&mut store, std::slice::from_ref(&second), &[], &[]);
        assert_eq!(audit_rows(&mut psql), rows, "not written twice");
        assert!(!store.in_doubt);

        // The session ends (the process paused too long, the network cut) and another
        // service takes over: this store's writes are refused, for good.
        drop(lead);
        let (_next, _, _) = open_active(&db, 100).unwrap();
        b.lock(ResourceId::new(2), ttl(60), at(3)).unwrap();
        let third = change(&mut b, 3);
        let batch = Batch {
            changes: std::slice::from_ref(&third),
            records: &[],
            next_event: 42,
            now: T0,
            answers: &[],
        };
        let err = store.commit(&batch).unwrap_err();
        assert!(matches!(err, StoreError::Deposed(_)), "{err}");
        assert!(err.to_string().contains("deposed"), "{err}");
        // Also when the outcome of the last commit was in doubt.
        store.in_doubt = true;
        let err = store.commit(&batch).unwrap_err();
        assert!(matches!(err, StoreError::Deposed(_)), "{err}");
        let seq: i64 = psql
            .query_one("SELECT stream_seq FROM state", &[])
            .unwrap()
            .get(0);
        assert_eq!(seq, 2, "nothing of the refused batch");
    }

    #[test]
    fn a_batch_of_the_most_changes_commits_in_one_transaction() {
        let Some(db) = TestDb::create("a_batch_of_the_most_changes_commits_in_one_transaction")
        else {
            return;
        };
        let (_lead, mut store, _) = open_active(&db, 100_000).unwrap();
        let mut b = recording_broker();
        let mut changes = vec![change(&mut b, 1)];
        // Lock and unlock board 1 over and over: each change touches the same row,
        // which the batch writes once; the audit gets every event.
        while changes.len() < crate::store::writer::MAX_BATCH {
            let seq = changes.len() as u64 + 1;
            let grant = b.lock(ResourceId::new(1), ttl(60), at(seq)).unwrap();
            b.unlock(ResourceId::new(1), Some(&grant.token.reveal()), at(seq))
                .unwrap();
            changes.push(change(&mut b, seq));
        }
        let started = std::time::Instant::now();
        commit(&mut store, &changes, &[], &[]);
        eprintln!(
            "{} changes committed in {:?}",
            changes.len(),
            started.elapsed()
        );
        drop((store, _lead));
        let (_, _, loaded) = open_active(&db, 100_000).unwrap();
        assert_eq!(loaded.image, b.image());
        assert_eq!(loaded.seq, changes.len() as u64);
        let events: usize = changes.iter().map(|c| c.events.len()).sum();
        assert_eq!(loaded.audit.len(), events);
        assert_eq!(
            db.psql()
                .query_one("SELECT commits FROM state", &[])
                .unwrap()
                .get::<_, i64>(0),
            1
        );
    }

    fn kinds_in(db: &TestDb) -> Vec<String> {
        db.psql()
            .query("SELECT event_type FROM audit ORDER BY ord", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    #[test]
    fn the_audit_table_keeps_the_retention_and_reads_back_the_newest() {
        let Some(db) = TestDb::create("the_audit_table_keeps_the_retention") else {
            return;
        };
        let kinds = kinds_in;
        let (lead, mut store, _) = open_active(&db, 3).unwrap();
        let mut b = recording_broker();
        let first = change(&mut b, 1); // five rows, two too many
        commit(&mut store, &[first], &[], &[]);
        assert_eq!(kinds(&db), ["resource_added"; 3]);
        let grant = b.lock(ResourceId::new(1), ttl(60), at(1)).unwrap();
        b.unlock(ResourceId::new(1), Some(&grant.token.reveal()), at(2))
            .unwrap();
        let second = change(&mut b, 2);
        commit(&mut store, &[second], &[], &[]);
        assert_eq!(kinds(&db), ["resource_added", "locked", "unlocked"]);
        drop((store, lead));
        let (_, _, loaded) = open_active(&db, 2).unwrap();
        let kinds: Vec<&str> = loaded.audit.iter().map(|e| e.event_type.as_ref()).collect();
        assert_eq!(kinds, ["locked", "unlocked"], "the newest, oldest first");
        assert_eq!(
            kinds_in(&db),
            ["locked", "unlocked"],
            "the table trimmed to the new retention at open"
        );
    }

    #[test]
    fn a_history_table_is_trimmed_past_its_slack_and_read_back_to_its_retention() {
        let Some(db) = TestDb::create("a_history_table_is_trimmed_past_its_slack") else {
            return;
        };
        let keep = 64;
        let slack = trim_slack(keep as i64);
        assert!(slack > 0, "a bound this large gets some slack");
        let (lead, mut store, _) = open_active(&db, keep).unwrap();
        let mut b = recording_broker();
        let first = change(&mut b, 1);
        commit(&mut store, &[first], &[], &[]);
        let audit = |db: &TestDb| -> (i64, i64, i64) {
            let row = db
                .psql()
                .query_one("SELECT count(*), MIN(ord), MAX(ord) FROM audit", &[])
                .unwrap();
            (row.get(0), row.get(1), row.get(2))
        };
        let mut most = 0;
        let mut trimmed = false;
        for seq in 2..=80 {
            let grant = b.lock(ResourceId::new(1), ttl(60), at(seq)).unwrap();
            b.unlock(ResourceId::new(1), Some(&grant.token.reveal()), at(seq))
                .unwrap();
            let next = change(&mut b, seq);
            commit(&mut store, &[next], &[], &[]);
            let (rows, low, high) = audit(&db);
            assert_eq!(high - low + 1, rows, "no gaps in ord");
            assert!(
                rows <= keep as i64 + slack,
                "{rows} rows: past the bound and slack"
            );
            trimmed |= rows < most;
            most = most.max(rows);
        }
        assert!(trimmed, "trimmed at least once");
        // A commit that fails in doubt numbers its rows from the table again.
        store.in_doubt = true;
        let grant = b.lock(ResourceId::new(1), ttl(60), at(81)).unwrap();
        b.unlock(ResourceId::new(1), Some(&grant.token.reveal()), at(81))
            .unwrap();
        let last = change(&mut b, 81);
        commit(&mut store, std::slice::from_ref(&last), &[], &[]);
        let (rows, low, high) = audit(&db);
        assert_eq!(high - low + 1, rows, "no gaps in ord");
        drop((store, lead));
        let (_, _, loaded) = open_active(&db, keep).unwrap();
        assert_eq!(loaded.audit.len(), keep, "the retention, read back");
        let kinds: Vec<&str> = loaded.audit.iter().map(|e| e.event_type.as_ref()).collect();
        assert_eq!(
            kinds[kinds.len() - 2..],
            ["locked", "unlocked"],
            "the newest last"
        );
        assert_eq!(audit(&db).0, keep as i64, "and trimmed to it at open");
    }

    #[test]
    fn the_url_names_a_database_of_its_own() {
        assert_eq!(
            with_database("postgres://u:p@h:5/base?x=1", "rb_1"),
            "postgres://u:p@h:5/rb_1?x=1"
        );
        assert_eq!(with_database("postgres://h", "rb_1"), "postgres://h/rb_1");
    }
}
