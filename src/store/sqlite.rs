//! The SQLite store: one file, in WAL mode with `synchronous=FULL`, so that a committed
//! transaction survives a power cut, not only a crash.
//!
//! - The file is created with mode 0600 (it holds lock tokens), and a sidecar
//!   `<file>.lock` (flock) keeps a second rentabot from serving the same file.
//! - `PRAGMA quick_check` runs at open: a corrupt file is refused, never served.
//! - The schema is versioned (`PRAGMA user_version`) with migrations embedded in the
//!   binary; a file from a newer version is refused, and `PRAGMA application_id` tells a
//!   rentabot file from any other SQLite file.
//! - Rows are columns, not blobs, so that an operator can read the state with `sqlite3`.
//!   Times are Unix milliseconds; lists are JSON.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use rusqlite::{Connection, OpenFlags, Row, TransactionBehavior, params};
use serde_json::{Value, json};

use super::{Backend, Batch, Loaded, StoreError, coalesce};
use crate::audit;
use crate::domain::{
    Allocation, Counters, Criteria, EndReason, EndedReservation, ExpiredLock, Expr, FencingToken,
    Group, Lease, LockMeta, LockState, LockToken, Maintenance, Origin, Priority, Released,
    Reservation, ReservationId, ReservationRequest, ReservationStatus, Resource, ResourceId,
    ResourceSpec, StoredReservation, Timestamp, Ttl,
};
use crate::runtime::IdempotencyRecord;

/// `PRAGMA application_id` of a rentabot database: "RBOT".
const APPLICATION_ID: i64 = 0x5242_4f54;

/// The schema, one migration per version: `MIGRATIONS[n]` takes version `n` to `n + 1`.
/// Never edit a released migration; add the next one.
const MIGRATIONS: &[&str] = &[
    include_str!("schema/v1.sql"),
    include_str!("schema/v2.sql"),
    include_str!("schema/v3.sql"),
];

/// The newest schema version this build reads and writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// A SQLite database, open for the writer thread.
pub struct SqliteStore {
    conn: Connection,
    /// Held (flock) for as long as the store is open.
    _lock: File,
    /// Audit rows kept: older ones are deleted as new ones come.
    audit_retention: usize,
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`, checks and migrates it, and reads it;
    /// it keeps [`audit::DEFAULT_RETENTION`] audit rows.
    ///
    /// # Errors
    /// The file cannot be created or opened, another rentabot serves it, it is not a
    /// rentabot database, it is corrupt, or a newer version wrote it.
    pub fn open(path: &Path) -> anyhow::Result<(SqliteStore, Loaded)> {
        Self::open_keeping(path, audit::DEFAULT_RETENTION)
    }

    /// [`SqliteStore::open`], keeping the latest `audit_retention` audit rows (at least
    /// one).
    ///
    /// # Errors
    /// As [`SqliteStore::open`].
    pub fn open_keeping(
        path: &Path,
        audit_retention: usize,
    ) -> anyhow::Result<(SqliteStore, Loaded)> {
        let audit_retention = audit_retention.max(1);
        let lock = lock(path)?;
        create_private(path)?;
        let mut conn = connect(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        check(&conn, path)?;
        migrate(&mut conn, path)?;
        // WAL: readers (a backup) never block the writer; FULL: the WAL is synced at
        // every commit, so an acknowledged change survives a power cut.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .with_context(|| format!("switching {} to WAL mode", path.display()))?;
        if !mode.eq_ignore_ascii_case("wal") {
            bail!(
                "{} cannot use WAL mode (journal mode is {mode}): is it on a network file system?",
                path.display()
            );
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        let mut loaded = read(&conn).with_context(|| format!("reading {}", path.display()))?;
        loaded.audit = read_audit(&conn, audit_retention)
            .with_context(|| format!("reading the audit log of {}", path.display()))?;
        Ok((
            SqliteStore {
                conn,
                _lock: lock,
                audit_retention,
            },
            loaded,
        ))
    }
}

/// Opens `path` read-only and reads it, for tools (`export`); safe while a service
/// writes it (WAL readers see the last commit).
///
/// # Errors
/// As [`SqliteStore::open`], without creating or migrating anything.
pub fn read_only(path: &Path) -> anyhow::Result<Loaded> {
    if !path.exists() {
        bail!("{} does not exist", path.display());
    }
    let conn = connect(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    check(&conn, path)?;
    let version = user_version(&conn)?;
    if version != SCHEMA_VERSION {
        bail!(
            "{} has schema version {version}; this rentabot reads version {SCHEMA_VERSION} \
             (start the service on it once to migrate it)",
            path.display()
        );
    }
    read(&conn).with_context(|| format!("reading {}", path.display()))
}

/// Copies the database at `from` to a new file `to` with SQLite's online backup, page by
/// page, while a service may be writing it. The copy is a normal state file.
///
/// # Errors
/// `to` exists, or either file cannot be opened or written.
pub fn backup(from: &Path, to: &Path) -> anyhow::Result<()> {
    if !from.exists() {
        bail!("{} does not exist", from.display());
    }
    let source = connect(from, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    check(&source, from)?;
    create_private(to).and_then(|created| {
        if created {
            Ok(())
        } else {
            bail!("{} exists: a backup never overwrites a file", to.display())
        }
    })?;
    let mut target = connect(to, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    {
        let backup = rusqlite::backup::Backup::new(&source, &mut target)?;
        backup
            .run_to_completion(256, std::time::Duration::from_millis(5), None)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    // The copy is in the source's journal mode (WAL); fold it into one file.
    target.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    check(&target, to)
}

impl Backend for SqliteStore {
    fn commit(&mut self, batch: &Batch<'_>) -> Result<(), StoreError> {
        self.try_commit(batch)
            .map_err(|e| StoreError::Failed(format!("{e:#}")))
    }
}

impl SqliteStore {
    fn try_commit(&mut self, batch: &Batch<'_>) -> anyhow::Result<()> {
        let rows = coalesce(batch.changes);
        if rows.seq.is_none() && batch.answers.is_empty() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (id, row) in &rows.resources {
            match row {
                Some(resource) => upsert_resource(&tx, resource)?,
                None => {
                    tx.prepare_cached("DELETE FROM resources WHERE id = ?1")?
                        .execute([id.get()])?;
                }
            }
        }
        for (id, row) in &rows.reservations {
            match row {
                Some(reservation) => upsert_reservation(&tx, reservation)?,
                None => {
                    tx.prepare_cached("DELETE FROM reservations WHERE id = ?1")?
                        .execute([id.to_string()])?;
                }
            }
        }
        if !rows.ended.is_empty() {
            for e in &rows.ended {
                insert_ended(&tx, e)?;
            }
            tx.prepare_cached("DELETE FROM ended WHERE ord <= (SELECT MAX(ord) FROM ended) - ?1")?
                .execute([crate::domain::ENDED_MEMORY as i64])?;
        }
        if !rows.expired.is_empty() {
            for x in &rows.expired {
                insert_expired(&tx, x)?;
            }
            tx.prepare_cached(
                "DELETE FROM expired_locks WHERE ord <= (SELECT MAX(ord) FROM expired_locks) - ?1",
            )?
            .execute([crate::domain::EXPIRY_HISTORY as i64])?;
        }
        for record in batch.records {
            upsert_record(&tx, record)?;
        }
        tx.prepare_cached("DELETE FROM idempotency WHERE expires_at <= ?1")?
            .execute([millis(batch.now)])?;
        // The audit log: one row per event, in this transaction, so that a change and
        // its record are stored together or not at all; then the refused requests.
        let mut audited = false;
        for change in batch.changes {
            for entry in audit::Entry::of_change(change.at, &change.cause, &change.events) {
                insert_audit(&tx, &entry)?;
                audited = true;
            }
        }
        for entry in batch.answers {
            insert_audit(&tx, entry)?;
            audited = true;
        }
        if audited {
            tx.prepare_cached("DELETE FROM audit WHERE ord <= (SELECT MAX(ord) FROM audit) - ?1")?
                .execute([i64::try_from(self.audit_retention).unwrap_or(i64::MAX)])?;
        }
        if let Some(seq) = rows.seq {
            let counters = match rows.counters {
                Some(c) => c,
                None => read_counters(&tx)?,
            };
            update_state(&tx, seq, batch.next_event, counters)?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// Takes `<path>.lock`, so that two services never write one file: their states in
/// memory would differ, and each would overwrite the other's rows.
fn lock(path: &Path) -> anyhow::Result<File> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let file = private_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .with_context(|| format!("opening the lock file {}", lock_path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another rentabot serves {} (it holds {}): one file, one service",
            path.display(),
            lock_path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", lock_path.display()))
        }
    }
}

fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Creates `path` empty with mode 0600 if it does not exist; `true` if it created it.
fn create_private(path: &Path) -> anyhow::Result<bool> {
    match private_options().write(true).create_new(true).open(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if !path.is_file() {
                bail!("{} exists and is not a file", path.display());
            }
            Ok(false)
        }
        Err(e) => Err(e).with_context(|| {
            format!(
                "cannot create {} (does its directory exist and can rentabot write it?)",
                path.display()
            )
        }),
    }
}

fn connect(path: &Path, flags: OpenFlags) -> anyhow::Result<Connection> {
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_context(|| format!("opening {}", path.display()))?;
    // A backup from another process holds a read lock for a moment: wait rather than fail.
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// Refuses a file that is not a healthy rentabot database.
fn check(conn: &Connection, path: &Path) -> anyhow::Result<()> {
    let corrupt = |detail: String| {
        anyhow::anyhow!(
            "{} is not a healthy SQLite database ({detail}): restore it from a backup \
             (`rentabot backup` makes them), or move it away to start with an empty state",
            path.display()
        )
    };
    let verdict: Vec<String> = conn
        .prepare("PRAGMA quick_check")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| corrupt(e.to_string()))?;
    if verdict != ["ok"] {
        return Err(corrupt(verdict.join("; ")));
    }
    let application_id: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
    if application_id != APPLICATION_ID && tables > 0 {
        bail!(
            "{} is a SQLite database, but not rentabot's (application_id {application_id:#x}): \
             give --persist a file of its own",
            path.display()
        );
    }
    Ok(())
}

fn user_version(conn: &Connection) -> anyhow::Result<usize> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    Ok(usize::try_from(version).unwrap_or(usize::MAX))
}

/// Brings the schema to [`SCHEMA_VERSION`], in one transaction.
fn migrate(conn: &mut Connection, path: &Path) -> anyhow::Result<()> {
    let version = user_version(conn)?;
    if version > SCHEMA_VERSION {
        bail!(
            "{} was written by a newer rentabot (schema version {version}; this one knows up \
             to {SCHEMA_VERSION}): run that version, or restore a backup made by this one",
            path.display()
        );
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    for (from, migration) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.execute_batch(migration)
            .with_context(|| format!("migrating {} to version {}", path.display(), from + 1))?;
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION as i64)?;
    tx.commit()?;
    if version > 0 {
        tracing::info!(
            path = %path.display(),
            from = version,
            to = SCHEMA_VERSION,
            "state schema migrated"
        );
    }
    Ok(())
}

fn read(conn: &Connection) -> anyhow::Result<Loaded> {
    let (seq, next_event): (i64, i64) = conn.query_row(
        "SELECT stream_seq, next_event FROM state WHERE id = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut loaded = Loaded {
        seq: seq as u64,
        next_event: next_event as u64,
        ..Loaded::default()
    };
    loaded.image.counters = read_counters(conn)?;
    let mut stmt = conn.prepare(&format!(
        "SELECT {RESOURCE_COLUMNS} FROM resources ORDER BY id"
    ))?;
    for resource in stmt.query_map([], resource_from_row)? {
        let resource = resource?;
        loaded
            .image
            .resources
            .insert(resource.id, Arc::new(resource));
    }
    let mut stmt = conn.prepare(&format!(
        "SELECT {RESERVATION_COLUMNS} FROM reservations ORDER BY seq"
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let stored = reservation_from_row(row)?;
        loaded
            .image
            .reservations
            .insert(stored.reservation.id, stored);
    }
    let mut stmt = conn.prepare("SELECT id, reason, at FROM ended ORDER BY ord")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        loaded.image.ended.push_back(EndedReservation {
            id: reservation_id(&row.get::<_, String>(0)?)?,
            reason: end_reason(&row.get::<_, String>(1)?)?,
            at: timestamp(row.get(2)?),
        });
    }
    let mut stmt = conn.prepare(
        "SELECT resource, name, fencing, acquired_at, expired_at, reservation, holder, note, \
         owner FROM expired_locks ORDER BY ord",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        loaded.image.expired.push_back(ExpiredLock {
            resource: ResourceId::new(row.get(0)?),
            name: row.get(1)?,
            fencing: FencingToken::new(row.get::<_, i64>(2)? as u64),
            acquired_at: timestamp(row.get(3)?),
            expired_at: timestamp(row.get(4)?),
            reservation: row
                .get::<_, Option<String>>(5)?
                .map(|r| reservation_id(&r))
                .transpose()?,
            meta: LockMeta {
                holder: row.get(6)?,
                note: row.get(7)?,
                owner: row.get::<_, Option<String>>(8)?.map(Arc::from),
            },
        });
    }
    let mut stmt = conn.prepare(
        "SELECT owner, method, path, key, fingerprint, status, headers, body, expires_at \
         FROM idempotency",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let fingerprint: Vec<u8> = row.get(4)?;
        let headers: String = row.get(6)?;
        loaded.records.push(IdempotencyRecord {
            owner: row.get(0)?,
            method: row.get(1)?,
            path: row.get(2)?,
            key: row.get(3)?,
            fingerprint: fingerprint
                .try_into()
                .map_err(|_| anyhow::anyhow!("an idempotency fingerprint is not 32 bytes"))?,
            status: row.get(5)?,
            headers: serde_json::from_str(&headers)?,
            body: row.get(7)?,
            expires_at: timestamp(row.get(8)?),
        });
    }
    Ok(loaded)
}

fn read_counters(conn: &Connection) -> anyhow::Result<Counters> {
    Ok(conn.query_row(
        "SELECT next_resource_id, next_fencing, next_reservation_seq FROM state WHERE id = 1",
        [],
        |r| {
            Ok(Counters {
                next_resource_id: r.get(0)?,
                next_fencing: r.get::<_, i64>(1)? as u64,
                next_reservation_seq: r.get::<_, i64>(2)? as u64,
            })
        },
    )?)
}

fn update_state(
    conn: &Connection,
    seq: u64,
    next_event: u64,
    counters: Counters,
) -> anyhow::Result<()> {
    conn.prepare_cached(
        "UPDATE state SET stream_seq = ?1, next_event = ?2, next_resource_id = ?3, \
         next_fencing = ?4, next_reservation_seq = ?5 WHERE id = 1",
    )?
    .execute(params![
        seq as i64,
        next_event as i64,
        counters.next_resource_id,
        counters.next_fencing as i64,
        counters.next_reservation_seq as i64,
    ])?;
    Ok(())
}

const RESOURCE_COLUMNS: &str = "id, name, description, endpoint, tags, max_lock_secs, origin, \
    retiring, lock_token, lock_fencing, lock_acquired_at, lock_expires_at, lock_reservation, \
    lock_holder, lock_note, released, released_at, released_reason, maint_reason, maint_from, \
    maint_until, maint_active, lock_owner";

fn upsert_resource(conn: &Connection, r: &Resource) -> anyhow::Result<()> {
    let lease = r.lease();
    let (released, released_at, released_reason) = released_columns(&r.state);
    let m = r.maintenance.as_ref();
    conn.prepare_cached(&format!(
        "INSERT OR REPLACE INTO resources ({RESOURCE_COLUMNS}) VALUES \
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
          ?19, ?20, ?21, ?22, ?23)"
    ))?
    .execute(params![
        r.id.get(),
        r.spec.name,
        r.spec.description,
        r.spec.endpoint,
        serde_json::to_string(&r.spec.tags)?,
        r.spec.max_lock_duration.as_secs() as i64,
        origin_text(r.origin),
        r.retiring,
        lease.map(|l| l.token.reveal()),
        lease.map(|l| l.fencing.get() as i64),
        lease.map(|l| millis(l.acquired_at)),
        lease.map(|l| millis(l.expires_at)),
        lease.and_then(|l| l.reservation).map(|id| id.to_string()),
        lease.and_then(|l| l.meta.holder.as_deref()),
        lease.and_then(|l| l.meta.note.as_deref()),
        released,
        released_at,
        released_reason,
        m.map(|m| m.reason.as_str()),
        m.map(|m| millis(m.from)),
        m.and_then(|m| m.until).map(millis),
        m.map(|m| m.active),
        lease.and_then(|l| l.meta.owner.as_deref()),
    ])?;
    Ok(())
}

fn resource_from_row(row: &Row<'_>) -> rusqlite::Result<Resource> {
    fn bad(column: usize, detail: impl std::fmt::Display) -> rusqlite::Error {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Text,
            detail.to_string().into(),
        )
    }
    let id = ResourceId::new(row.get(0)?);
    let tags: Vec<String> =
        serde_json::from_str(&row.get::<_, String>(4)?).map_err(|e| bad(4, e))?;
    let max = Ttl::from_secs(row.get::<_, i64>(5)? as u64).map_err(|e| bad(5, e))?;
    let origin = origin_from(&row.get::<_, String>(6)?).map_err(|e| bad(6, e))?;
    let state = match row.get::<_, Option<String>>(8)? {
        Some(token) => LockState::Locked(Lease {
            token: LockToken::parse(&token).ok_or_else(|| bad(8, "not a lock token"))?,
            fencing: FencingToken::new(row.get::<_, i64>(9)? as u64),
            acquired_at: timestamp(row.get(10)?),
            expires_at: timestamp(row.get(11)?),
            reservation: row
                .get::<_, Option<String>>(12)?
                .map(|r| r.parse().map_err(|e| bad(12, e)))
                .transpose()?,
            meta: LockMeta {
                holder: row.get(13)?,
                note: row.get(14)?,
                owner: row.get::<_, Option<String>>(22)?.map(Arc::from),
            },
        }),
        None => LockState::Free(
            released_from(
                row.get::<_, Option<String>>(15)?.as_deref(),
                row.get(16)?,
                row.get(17)?,
            )
            .map_err(|e| bad(15, e))?,
        ),
    };
    let maintenance = match row.get::<_, Option<String>>(18)? {
        Some(reason) => Some(Maintenance {
            reason,
            from: timestamp(row.get(19)?),
            until: row.get::<_, Option<i64>>(20)?.map(timestamp),
            active: row.get(21)?,
        }),
        None => None,
    };
    Ok(Resource {
        id,
        spec: ResourceSpec {
            name: row.get(1)?,
            description: row.get(2)?,
            endpoint: row.get(3)?,
            tags,
            max_lock_duration: max,
        },
        state,
        maintenance,
        retiring: row.get(7)?,
        origin,
    })
}

const RESERVATION_COLUMNS: &str = "id, seq, groups, priority, ttl_secs, max_wait_secs, \
    auto_claim, holder, note, created_at, expires_at, status, fulfilled_at, claim_expires_at, \
    claimed_at, allocations, next_aging, owner";

fn upsert_reservation(conn: &Connection, stored: &StoredReservation) -> anyhow::Result<()> {
    let r = &stored.reservation;
    let (groups, allocations) = (groups_json(r), allocations_json(r));
    conn.prepare_cached(&format!(
        "INSERT OR REPLACE INTO reservations ({RESERVATION_COLUMNS}) VALUES \
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"
    ))?
    .execute(params![
        r.id.to_string(),
        r.seq as i64,
        groups.to_string(),
        r.request.priority.get(),
        r.request.ttl.as_secs() as i64,
        r.request.max_wait.as_secs() as i64,
        r.request.auto_claim,
        r.request.meta.holder,
        r.request.meta.note,
        millis(r.created_at),
        millis(r.expires_at),
        r.status.as_str(),
        r.fulfilled_at.map(millis),
        r.claim_expires_at.map(millis),
        r.claimed_at.map(millis),
        allocations.to_string(),
        stored.next_aging.map(millis),
        r.request.meta.owner.as_deref(),
    ])?;
    Ok(())
}

fn reservation_from_row(row: &Row<'_>) -> anyhow::Result<StoredReservation> {
    let id = reservation_id(&row.get::<_, String>(0)?)?;
    let groups = groups_from_json(&serde_json::from_str(&row.get::<_, String>(2)?)?)?;
    let allocations = allocations_from_json(&serde_json::from_str(&row.get::<_, String>(15)?)?)?;
    let secs = |column: usize| -> anyhow::Result<Ttl> {
        Ttl::from_secs(row.get::<_, i64>(column)? as u64).map_err(anyhow::Error::from)
    };
    let status = match row.get::<_, String>(11)?.as_str() {
        "pending" => ReservationStatus::Pending,
        "fulfilled" => ReservationStatus::Fulfilled,
        "claimed" => ReservationStatus::Claimed,
        other => bail!("unknown reservation status {other:?}"),
    };
    Ok(StoredReservation {
        reservation: Arc::new(Reservation {
            id,
            request: ReservationRequest {
                groups,
                priority: Priority::new(row.get::<_, i64>(3)? as u64)?,
                ttl: secs(4)?,
                max_wait: secs(5)?,
                auto_claim: row.get(6)?,
                meta: LockMeta {
                    holder: row.get(7)?,
                    note: row.get(8)?,
                    owner: row.get::<_, Option<String>>(17)?.map(Arc::from),
                },
            },
            seq: row.get::<_, i64>(1)? as u64,
            created_at: timestamp(row.get(9)?),
            expires_at: timestamp(row.get(10)?),
            status,
            fulfilled_at: row.get::<_, Option<i64>>(12)?.map(timestamp),
            claim_expires_at: row.get::<_, Option<i64>>(13)?.map(timestamp),
            claimed_at: row.get::<_, Option<i64>>(14)?.map(timestamp),
            allocations,
        }),
        next_aging: row.get::<_, Option<i64>>(16)?.map(timestamp),
    })
}

/// A reservation's groups as stored (a JSON list); [`groups_from_json`] reads it back.
pub(super) fn groups_json(r: &Reservation) -> Value {
    r.request
        .groups
        .iter()
        .map(|g| match &g.criteria {
            Criteria::Tags(tags) => json!({"tags": tags, "quantity": g.quantity}),
            Criteria::Expr(expr) => json!({"expr": expr.to_string(), "quantity": g.quantity}),
        })
        .collect()
}

/// A reservation's allocations as stored (a JSON list).
pub(super) fn allocations_json(r: &Reservation) -> Value {
    r.allocations
        .iter()
        .map(|a| json!({"group": a.group, "resource": a.resource.get(), "token": a.token.reveal()}))
        .collect()
}

pub(super) fn groups_from_json(groups: &Value) -> anyhow::Result<Vec<Group>> {
    let groups = groups
        .as_array()
        .context("a reservation's groups are not a list")?;
    groups
        .iter()
        .map(|g| {
            let quantity = g["quantity"]
                .as_u64()
                .and_then(|q| u32::try_from(q).ok())
                .context("a group's quantity")?;
            let criteria = match (&g["tags"], &g["expr"]) {
                (Value::Array(tags), _) => Criteria::Tags(
                    tags.iter()
                        .map(|t| t.as_str().map(str::to_owned).context("a tag"))
                        .collect::<anyhow::Result<_>>()?,
                ),
                (_, Value::String(expr)) => Criteria::Expr(Expr::parse(expr)?),
                _ => bail!("a group has neither tags nor expr"),
            };
            Ok(Group { criteria, quantity })
        })
        .collect::<anyhow::Result<Vec<_>>>()
}

pub(super) fn allocations_from_json(allocations: &Value) -> anyhow::Result<Vec<Allocation>> {
    let allocations = allocations
        .as_array()
        .context("a reservation's allocations are not a list")?;
    allocations
        .iter()
        .map(|a| {
            Ok(Allocation {
                group: a["group"].as_u64().context("an allocation's group")? as usize,
                resource: ResourceId::new(
                    a["resource"]
                        .as_u64()
                        .and_then(|r| u32::try_from(r).ok())
                        .context("an allocation's resource")?,
                ),
                token: a["token"]
                    .as_str()
                    .and_then(LockToken::parse)
                    .context("an allocation's token")?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()
}

fn insert_ended(conn: &Connection, e: &EndedReservation) -> anyhow::Result<()> {
    conn.prepare_cached("INSERT INTO ended (id, reason, at) VALUES (?1, ?2, ?3)")?
        .execute(params![e.id.to_string(), e.reason.as_str(), millis(e.at)])?;
    Ok(())
}

fn insert_expired(conn: &Connection, x: &ExpiredLock) -> anyhow::Result<()> {
    conn.prepare_cached(
        "INSERT INTO expired_locks \
         (resource, name, fencing, acquired_at, expired_at, reservation, holder, note, owner) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        x.resource.get(),
        x.name,
        x.fencing.get() as i64,
        millis(x.acquired_at),
        millis(x.expired_at),
        x.reservation.map(|r| r.to_string()),
        x.meta.holder,
        x.meta.note,
        x.meta.owner.as_deref(),
    ])?;
    Ok(())
}

fn upsert_record(conn: &Connection, r: &IdempotencyRecord) -> anyhow::Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO idempotency \
         (owner, method, path, key, fingerprint, status, headers, body, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        r.owner,
        r.method,
        r.path,
        r.key,
        &r.fingerprint[..],
        r.status,
        serde_json::to_string(&r.headers)?,
        r.body,
        millis(r.expires_at),
    ])?;
    Ok(())
}

fn insert_audit(conn: &Connection, entry: &audit::Entry) -> anyhow::Result<()> {
    let cause = &entry.cause;
    conn.prepare_cached(
        "INSERT INTO audit (at, event_type, resource_id, reservation_id, actor, role, \
         client_ip, user_agent, request_id, success, details) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        millis(entry.at),
        entry.event_type.as_ref(),
        entry.resource.map(ResourceId::get),
        entry.reservation.map(|r| r.to_string()),
        entry.actor(),
        entry.role(),
        cause.client_ip.map(|ip| ip.to_string()),
        cause.user_agent.as_deref(),
        cause.request_id.as_deref(),
        entry.success,
        Value::Object(entry.details()).to_string(),
    ])?;
    Ok(())
}

/// The latest `retention` audit rows, oldest first.
fn read_audit(conn: &Connection, retention: usize) -> anyhow::Result<Vec<audit::Entry>> {
    let mut stmt = conn.prepare(
        "SELECT at, event_type, resource_id, reservation_id, actor, role, client_ip, \
         user_agent, request_id, success, details FROM audit ORDER BY ord DESC LIMIT ?1",
    )?;
    let mut rows = stmt.query([i64::try_from(retention).unwrap_or(i64::MAX)])?;
    let mut entries = Vec::new();
    while let Some(row) = rows.next()? {
        let reservation: Option<String> = row.get(3)?;
        let entry = audit::Entry::stored(
            timestamp(row.get(0)?),
            row.get(1)?,
            row.get(2)?,
            reservation.as_deref(),
            &row.get::<_, String>(4)?,
            row.get::<_, Option<String>>(5)?.as_deref(),
            row.get::<_, Option<String>>(6)?.as_deref(),
            row.get::<_, Option<String>>(7)?.as_deref(),
            row.get::<_, Option<String>>(8)?.as_deref(),
            row.get(9)?,
            &row.get::<_, String>(10)?,
        )
        .with_context(|| format!("an audit row names reservation {reservation:?}"))?;
        entries.push(entry);
    }
    entries.reverse();
    Ok(entries)
}

pub(super) fn millis(t: Timestamp) -> i64 {
    // Timestamps come from a clock reading plus a capped TTL: far below i64::MAX ms.
    i64::try_from(t.as_millis()).unwrap_or(i64::MAX)
}

pub(super) fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from_millis(u64::try_from(ms).unwrap_or(0))
}

pub(super) fn reservation_id(text: &str) -> anyhow::Result<ReservationId> {
    text.parse()
        .with_context(|| format!("{text:?} is not a reservation id"))
}

/// A resource's `origin` column (both stores).
pub(super) fn origin_text(origin: Origin) -> &'static str {
    match origin {
        Origin::Descriptor => "descriptor",
        Origin::Api => "api",
    }
}

/// The inverse of [`origin_text`].
pub(super) fn origin_from(text: &str) -> Result<Origin, String> {
    match text {
        "descriptor" => Ok(Origin::Descriptor),
        "api" => Ok(Origin::Api),
        other => Err(format!("unknown origin {other:?}")),
    }
}

/// How a free resource was last released, as its `released`, `released_at` and
/// `released_reason` columns (both stores); all `None` while it is locked.
pub(super) fn released_columns(
    state: &LockState,
) -> (Option<&'static str>, Option<i64>, Option<&str>) {
    match state {
        LockState::Locked(_) => (None, None, None),
        LockState::Free(Released::Never) => (Some("never"), None, None),
        LockState::Free(Released::Unlocked) => (Some("unlocked"), None, None),
        LockState::Free(Released::Expired(at)) => (Some("expired"), Some(millis(*at)), None),
        LockState::Free(Released::ForceUnlocked { at, reason }) => (
            Some("force_unlocked"),
            Some(millis(*at)),
            Some(reason.as_str()),
        ),
    }
}

/// The inverse of [`released_columns`] for a free resource.
pub(super) fn released_from(
    kind: Option<&str>,
    at: Option<i64>,
    reason: Option<String>,
) -> Result<Released, String> {
    let at = || timestamp(at.unwrap_or(0));
    match kind {
        Some("never") | None => Ok(Released::Never),
        Some("unlocked") => Ok(Released::Unlocked),
        Some("expired") => Ok(Released::Expired(at())),
        Some("force_unlocked") => Ok(Released::ForceUnlocked {
            at: at(),
            reason: reason.unwrap_or_default(),
        }),
        Some(other) => Err(format!("unknown release {other:?}")),
    }
}

pub(super) fn end_reason(text: &str) -> anyhow::Result<EndReason> {
    Ok(match text {
        "cancelled" => EndReason::Cancelled,
        "expired" => EndReason::Expired,
        "claim_expired" => EndReason::ClaimExpired,
        "released" => EndReason::Released,
        "unsatisfiable" => EndReason::Unsatisfiable,
        other => bail!("unknown end reason {other:?}"),
    })
}

/// The tables `export` writes and `import` reads, in an order that satisfies no
/// constraint in particular (there are no foreign keys): every table of the schema.
const TABLES: &[&str] = &[
    "state",
    "resources",
    "reservations",
    "ended",
    "expired_locks",
    "idempotency",
    "audit",
];

/// The schema version that added each table after the first.
const TABLE_SINCE: &[(&str, usize)] = &[("audit", 2)];

/// The whole state as JSON: every row of every table, by column name, with the schema
/// version, so that `import` can check it reads what it writes. Blobs are hex strings.
///
/// # Errors
/// The file cannot be read (see [`read_only`]).
pub fn export_json(path: &Path) -> anyhow::Result<Value> {
    read_only(path)?; // the checks, and proof that the rows parse
    let conn = connect(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let tx = conn.unchecked_transaction()?; // one snapshot of every table
    let mut tables = serde_json::Map::new();
    for table in TABLES {
        let mut stmt = tx.prepare(&format!("SELECT * FROM {table}"))?;
        let columns: Vec<String> = stmt.column_names().map(str::to_owned).collect();
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut object = serde_json::Map::new();
            for (i, column) in columns.iter().enumerate() {
                use rusqlite::types::ValueRef;
                let value = match row.get_ref(i)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(n) => json!(n),
                    ValueRef::Real(f) => json!(f),
                    ValueRef::Text(t) => json!(String::from_utf8_lossy(t)),
                    ValueRef::Blob(b) => json!({"hex": hex(b)}),
                };
                object.insert(column.clone(), value);
            }
            out.push(Value::Object(object));
        }
        tables.insert((*table).to_owned(), Value::Array(out));
    }
    Ok(json!({
        "format": "rentabot-state",
        "schema_version": SCHEMA_VERSION,
        "tables": tables,
    }))
}

/// Writes a new state file at `path` from what [`export_json`] wrote, and reads it back
/// to prove every row parses; a file that does not is removed again.
///
/// # Errors
/// `path` exists; the JSON is not an export of this schema version; a row does not parse.
pub fn import_json(path: &Path, export: &Value) -> anyhow::Result<Loaded> {
    if export["format"] != "rentabot-state" {
        bail!("not a rentabot state export (no \"format\": \"rentabot-state\")");
    }
    // An export of an older schema imports too: the tables it lacks start empty.
    let version = export["schema_version"]
        .as_u64()
        .and_then(|v| usize::try_from(v).ok())
        .filter(|v| (1..=SCHEMA_VERSION).contains(v))
        .with_context(|| {
            format!(
                "the export has schema version {}, this rentabot reads 1 to {SCHEMA_VERSION}",
                export["schema_version"]
            )
        })?;
    if path.exists() {
        bail!(
            "{} exists: import writes a new state file only",
            path.display()
        );
    }
    let result = (|| {
        let (mut store, _) = SqliteStore::open(path)?;
        let tx = store.conn.transaction()?;
        tx.execute("DELETE FROM state", [])?;
        for table in TABLES {
            let since = TABLE_SINCE
                .iter()
                .find(|(t, _)| t == table)
                .map_or(1, |(_, v)| *v);
            let Some(rows) = export["tables"][table].as_array() else {
                if version < since {
                    continue;
                }
                bail!("the export has no table {table}");
            };
            for row in rows {
                let Some(object) = row.as_object() else {
                    bail!("a row of {table} is not an object");
                };
                let columns: Vec<&String> = object.keys().collect();
                let names: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
                let marks: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
                let values = object
                    .values()
                    .map(|v| sql_value(table, v))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                tx.execute(
                    &format!(
                        "INSERT INTO {table} ({}) VALUES ({})",
                        names.join(", "),
                        marks.join(", ")
                    ),
                    rusqlite::params_from_iter(values),
                )
                .with_context(|| format!("importing a row of {table}"))?;
            }
        }
        tx.commit()?;
        read(&store.conn).context("the imported state does not read back")
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result
}

fn sql_value(table: &str, value: &Value) -> anyhow::Result<rusqlite::types::Value> {
    use rusqlite::types::Value as Sql;
    Ok(match value {
        Value::Null => Sql::Null,
        Value::Bool(b) => Sql::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Sql::Integer(i),
            None => Sql::Real(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => Sql::Text(s.clone()),
        Value::Object(o) => match o.get("hex").and_then(Value::as_str) {
            Some(h) => Sql::Blob(unhex(h).with_context(|| format!("a blob in {table}"))?),
            None => bail!("a value in {table} is an object that is not a {{\"hex\": ..}} blob"),
        },
        Value::Array(_) => bail!("a value in {table} is a list"),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> anyhow::Result<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        bail!("odd number of hex digits");
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).context("not hex"))
        .collect()
}

#[cfg(test)]
pub(super) mod tests {
    //! The store against real files in a temporary directory: what is committed reads
    //! back as the same image, and files that must not be served are refused.

    use super::*;
    use crate::domain::{Broker, LockTerms, Policy, ReservationRequest, Seeded, Unavailability};
    use crate::runtime::{Cause, Change};

    pub(in crate::store) const T0: Timestamp = Timestamp::from_millis(1_768_471_200_000);

    pub(in crate::store) fn at(secs: u64) -> Timestamp {
        Timestamp::from_millis(T0.as_millis() + secs * 1000)
    }

    /// A broker recording its rows, with a lab of four boards and a psu.
    pub(in crate::store) fn recording_broker() -> Broker {
        let mut b = Broker::restore(
            crate::domain::Image::default(),
            Policy::default(),
            Box::new(Seeded::new(3)),
            true,
        );
        let specs = ["b1", "b2", "b3", "b4"]
            .iter()
            .map(|n| ResourceSpec::named(*n).with_tags(&["board"]))
            .chain([ResourceSpec::named("psu").with_tags(&["psu"])])
            .collect();
        b.reload(specs, T0);
        b
    }

    /// The broker's latest change, numbered `seq`.
    pub(in crate::store) fn change(b: &mut Broker, seq: u64) -> Change {
        Change {
            seq,
            at: T0,
            cause: Cause::system(),
            events: b.drain_events(),
            delta: b.take_delta(),
            awaits_record: false,
        }
    }

    fn commit(store: &mut SqliteStore, changes: &[Change], records: &[IdempotencyRecord]) {
        store
            .commit(&Batch {
                changes,
                records,
                next_event: 42,
                now: T0,
                answers: &[],
            })
            .unwrap();
    }

    pub(in crate::store) fn ttl(secs: u64) -> LockTerms {
        Ttl::from_secs(secs).unwrap().into()
    }

    /// Changes that write every kind of row (resources locked, free, expired, broken,
    /// in maintenance; a pending reservation with an expression; ended and expired
    /// history; counters) and an idempotency record, for the stores' read-back tests.
    pub(in crate::store) fn every_kind_of_row() -> (Broker, Vec<Change>, IdempotencyRecord) {
        let mut b = recording_broker();
        let mut changes = vec![change(&mut b, 1)];
        b.lock(ResourceId::new(1), ttl(600), at(1)).unwrap();
        changes.push(change(&mut b, 2));
        let meta = LockMeta {
            holder: Some("ci/job/7".into()),
            note: Some("flash".into()),
            owner: Some("alice".into()),
        };
        b.lock(
            ResourceId::new(2),
            LockTerms {
                ttl: Ttl::from_secs(5).unwrap(),
                meta,
            },
            at(2),
        )
        .unwrap();
        let window = Unavailability {
            reason: "rewiring".into(),
            from: Some(at(100)),
            until: Some(at(200)),
        };
        b.mark_unavailable(ResourceId::new(3), window, at(2))
            .unwrap();
        let request = ReservationRequest {
            groups: vec![Group {
                criteria: Criteria::Expr(Expr::parse("board && !flaky").unwrap()),
                quantity: 4,
            }],
            priority: Priority::new(3).unwrap(),
            ttl: Ttl::from_secs(60).unwrap(),
            max_wait: Ttl::from_secs(900).unwrap(),
            auto_claim: false,
            meta: LockMeta {
                owner: Some("bob".into()),
                ..LockMeta::default()
            },
        };
        b.reserve(request, at(3)).unwrap();
        changes.push(change(&mut b, 3));
        b.expire_due(at(10)); // the 5 s lock expires: history, and the waiter holds
        b.force_unlock(ResourceId::new(1), "stuck".into(), at(11))
            .unwrap();
        changes.push(change(&mut b, 4));
        let record = IdempotencyRecord {
            owner: "anonymous".into(),
            method: "POST".into(),
            path: "/api/v1/resources/1/lock".into(),
            key: "k-1".into(),
            fingerprint: [7; 32],
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: br#"{"message":"Resource locked"}"#.to_vec(),
            expires_at: at(86_400),
        };
        (b, changes, record)
    }

    #[test]
    fn what_is_committed_reads_back_as_the_same_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let (mut store, loaded) = SqliteStore::open(&path).unwrap();
        assert_eq!(loaded.seq, 0);
        assert!(loaded.image.resources.is_empty());

        let (b, changes, record) = every_kind_of_row();
        // Two transactions, the second with the record.
        commit(&mut store, &changes[..2], &[]);
        commit(&mut store, &changes[2..], std::slice::from_ref(&record));
        drop(store);

        let (_, loaded) = SqliteStore::open(&path).unwrap();
        assert_eq!(loaded.seq, 4);
        assert_eq!(loaded.next_event, 42);
        assert_eq!(loaded.image, b.image());
        assert_eq!(loaded.records, vec![record]);
        // And the rebuilt broker behaves as the live one: the same next deadline.
        let restored = Broker::restore(
            loaded.image,
            Policy::default(),
            Box::new(Seeded::new(9)),
            false,
        );
        restored.check_invariants();
        assert_eq!(restored.next_deadline(), b.next_deadline());
    }

    #[test]
    fn the_file_is_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        SqliteStore::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }

    #[test]
    fn a_second_service_on_the_same_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let _first = SqliteStore::open(&path).unwrap();
        let err = SqliteStore::open(&path).err().unwrap().to_string();
        assert!(err.contains("another rentabot serves"), "{err}");
    }

    #[test]
    fn a_corrupt_file_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let err = format!("{:#}", SqliteStore::open(&path).err().unwrap());
        assert!(err.contains("not a healthy SQLite database"), "{err}");
        assert!(err.contains("rentabot backup"), "{err}");
    }

    #[test]
    fn a_damaged_page_is_found_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let (mut store, _) = SqliteStore::open(&path).unwrap();
            let mut b = recording_broker();
            let first = change(&mut b, 1);
            commit(&mut store, &[first], &[]);
        }
        // Fold the WAL into the file, then overwrite the middle of the resources'
        // table page with garbage.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
        let page: i64 = conn
            .query_row(
                "SELECT rootpage FROM sqlite_schema WHERE name = 'resources'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        drop(conn);
        let mut bytes = std::fs::read(&path).unwrap();
        let start = (page as usize - 1) * 4096;
        bytes[start..start + 16].copy_from_slice(&[0xff; 16]);
        std::fs::write(&path, bytes).unwrap();
        let err = format!("{:#}", SqliteStore::open(&path).err().unwrap());
        assert!(err.contains("not a healthy SQLite database"), "{err}");
    }

    #[test]
    fn a_file_from_a_newer_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        drop(SqliteStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION as i64 + 1)
            .unwrap();
        drop(conn);
        let err = format!("{:#}", SqliteStore::open(&path).err().unwrap());
        assert!(err.contains("written by a newer rentabot"), "{err}");
    }

    /// A file as the first release left it, with that schema's columns only: change 1
    /// committed, resource 1 locked by `ci`.
    fn write_version_1_file(path: &Path) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO resources (id, name, description, endpoint, tags, max_lock_secs, \
             origin, retiring, lock_token, lock_fencing, lock_acquired_at, lock_expires_at, \
             lock_holder) VALUES (1, 'b1', '', '', '[]', 600, 'descriptor', 0, \
             '6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f', 1, 0, 600000, 'ci')",
            [],
        )
        .unwrap();
        update_state(&conn, 1, 7, recording_broker().image().counters).unwrap();
    }

    #[test]
    fn a_version_1_file_is_migrated_and_its_locks_belong_to_nobody() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        write_version_1_file(&path);
        let (_, loaded) = SqliteStore::open(&path).unwrap();
        let lease = loaded.image.resources[&ResourceId::new(1)]
            .lease()
            .unwrap()
            .clone();
        assert_eq!(lease.meta.holder.as_deref(), Some("ci"));
        assert_eq!(lease.meta.owner, None, "made before ownership existed");
        let conn = Connection::open(&path).unwrap();
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn another_programs_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE notes (text TEXT);")
            .unwrap();
        drop(conn);
        let err = format!("{:#}", SqliteStore::open(&path).err().unwrap());
        assert!(err.contains("not rentabot's"), "{err}");
    }

    #[test]
    fn a_backup_is_a_state_file_and_an_export_imports_to_the_same_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let (mut store, _) = SqliteStore::open(&path).unwrap();
        let mut b = recording_broker();
        let first = change(&mut b, 1);
        b.lock(ResourceId::new(4), ttl(60), at(1)).unwrap();
        let alice = crate::domain::Principal::named("alice");
        b.lock_as(ResourceId::new(5), ttl(60), &alice, at(1))
            .unwrap();
        let second = change(&mut b, 2);
        commit(&mut store, &[first, second], &[]);

        // While the store is open, as a running service holds it.
        let copy = dir.path().join("copy.db");
        backup(&path, &copy).unwrap();
        assert!(backup(&path, &copy).is_err(), "a backup never overwrites");
        let exported = export_json(&path).unwrap();
        drop(store);
        let (_, from_backup) = SqliteStore::open(&copy).unwrap();
        assert_eq!(from_backup.image, b.image());

        let imported = dir.path().join("imported.db");
        let loaded = import_json(&imported, &exported).unwrap();
        assert_eq!(loaded.image, b.image());
        assert_eq!(loaded.seq, 2);
        let (_, reopened) = SqliteStore::open(&imported).unwrap();
        assert_eq!(reopened.image, b.image());
        let owner = &reopened.image.resources[&ResourceId::new(5)]
            .lease()
            .unwrap()
            .meta
            .owner;
        assert_eq!(owner.as_deref(), Some("alice"), "the export carries owners");
        assert_eq!(
            exported["tables"]["resources"][4]["lock_owner"],
            json!("alice")
        );

        let mut bad = exported.clone();
        bad["schema_version"] = json!(99);
        assert!(import_json(&dir.path().join("bad.db"), &bad).is_err());
        assert!(!dir.path().join("bad.db").exists());
    }

    fn audit_rows(path: &Path) -> Vec<(String, Option<u32>, String, bool)> {
        let conn = Connection::open(path).unwrap();
        let mut stmt = conn
            .prepare("SELECT event_type, resource_id, actor, success FROM audit ORDER BY ord")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn a_changes_audit_rows_are_committed_with_it_and_refusals_on_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let (mut store, _) = SqliteStore::open(&path).unwrap();
        let mut b = recording_broker();
        let first = change(&mut b, 1); // five resources added
        b.lock(ResourceId::new(2), ttl(60), at(1)).unwrap();
        let second = change(&mut b, 2);
        commit(&mut store, &[first, second], &[]);
        let rows = audit_rows(&path);
        assert_eq!(rows.len(), 6, "{rows:?}");
        assert_eq!(rows[5], ("locked".into(), Some(2), "system".into(), true));

        let refusal = audit::Entry::refused(
            at(2),
            crate::runtime::Cause::anonymous(),
            "unlock",
            Some(ResourceId::new(2)),
            None,
            audit::Answer {
                method: "POST".into(),
                route: "/api/v1/resources/{id}/unlock".into(),
                status: 403,
                code: Some("invalid_lock_token"),
            },
        );
        store
            .commit(&Batch {
                changes: &[],
                records: &[],
                next_event: 42,
                now: T0,
                answers: std::slice::from_ref(&refusal),
            })
            .unwrap();
        assert_eq!(
            audit_rows(&path)[6],
            ("unlock".into(), Some(2), "anonymous".into(), false)
        );
        drop(store);
        let (_, loaded) = SqliteStore::open(&path).unwrap();
        assert_eq!(loaded.seq, 2, "a refusal is not a change");
        assert_eq!(loaded.audit.len(), 7);
        assert_eq!(loaded.audit[6].record(), refusal.record());
    }

    #[test]
    fn the_audit_table_keeps_the_retention_and_reads_back_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let (mut store, _) = SqliteStore::open_keeping(&path, 3).unwrap();
        let mut b = recording_broker();
        let first = change(&mut b, 1); // five rows, two too many
        commit(&mut store, &[first], &[]);
        let grant = b.lock(ResourceId::new(1), ttl(60), at(1)).unwrap();
        b.unlock(ResourceId::new(1), Some(&grant.token.reveal()), at(2))
            .unwrap();
        let second = change(&mut b, 2);
        commit(&mut store, &[second], &[]);
        let kinds: Vec<String> = audit_rows(&path).into_iter().map(|r| r.0).collect();
        assert_eq!(kinds, ["resource_added", "locked", "unlocked"]);
        drop(store);
        let (_, loaded) = SqliteStore::open_keeping(&path, 2).unwrap();
        let kinds: Vec<&str> = loaded.audit.iter().map(|e| e.event_type.as_ref()).collect();
        assert_eq!(kinds, ["locked", "unlocked"], "the newest, oldest first");
    }

    #[test]
    fn a_version_1_file_migrates_to_the_current_schema_keeping_its_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        write_version_1_file(&path);
        let (mut store, loaded) = SqliteStore::open(&path).unwrap();
        assert_eq!(loaded.seq, 1);
        assert_eq!(loaded.image.resources.len(), 1);
        assert!(
            loaded.image.resources[&ResourceId::new(1)]
                .lease()
                .is_some()
        );
        assert!(loaded.audit.is_empty());
        let conn = Connection::open(&path).unwrap();
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        drop(conn);
        // And the new table takes rows.
        let mut b = recording_broker();
        b.drain_events();
        b.take_delta();
        b.lock(ResourceId::new(4), ttl(60), at(2)).unwrap();
        let next = change(&mut b, 2);
        commit(&mut store, &[next], &[]);
        assert_eq!(audit_rows(&path).len(), 1);
    }

    #[test]
    fn an_export_of_schema_1_imports_with_an_empty_audit_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let (mut store, _) = SqliteStore::open(&path).unwrap();
        let mut b = recording_broker();
        let first = change(&mut b, 1);
        commit(&mut store, &[first], &[]);
        drop(store);
        let mut exported = export_json(&path).unwrap();
        exported["schema_version"] = json!(1);
        exported["tables"].as_object_mut().unwrap().remove("audit");
        let loaded = import_json(&dir.path().join("imported.db"), &exported).unwrap();
        assert_eq!(loaded.image, b.image());
        assert!(audit_rows(&dir.path().join("imported.db")).is_empty());
    }

    #[test]
    fn counters_survive_even_when_only_they_moved() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let (mut store, _) = SqliteStore::open(&path).unwrap();
        let mut b = recording_broker();
        let first = change(&mut b, 1);
        commit(&mut store, &[first], &[]);
        let grant = b.lock(ResourceId::new(1), ttl(60), at(1)).unwrap();
        b.unlock(ResourceId::new(1), Some(&grant.token.reveal()), at(2))
            .unwrap();
        let second = change(&mut b, 2);
        commit(&mut store, &[second], &[]);
        drop(store);
        let (_, loaded) = SqliteStore::open(&path).unwrap();
        assert_eq!(loaded.image.counters.next_fencing, 2, "never reused");
    }
}
