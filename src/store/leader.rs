//! Who is active: the HA pair's leader election on PostgreSQL, fenced by an epoch.
//!
//! ```text
//!   leader thread:  connect ─▶ wait for the schema's advisory lock ─▶ migrate ─▶
//!                   epoch += 1 (same session) ─▶ Active{epoch} ─▶ ping every timeout/3
//!                   ─▶ (session gone, epoch moved, or the writer fenced) ─▶ Standby ─▶ …
//! ```
//!
//! Any number of services may run against one schema. The one whose dedicated leader
//! connection holds the session advisory lock `(LOCK_CLASS, hashtext(schema))` is
//! active; it moved `state.epoch` by one, in that session, when it took the lock, and
//! every commit of its writer names that epoch (`postgres.rs`: a commit under an older
//! epoch matches no row and is refused whole). Election alone would not be enough: a
//! deposed active (paused, cut off) may still believe it leads, but its writes are
//! refused by the database, and since answers wait for commits, it acknowledges nothing.
//!
//! The lock frees when the leader's session ends: at once when its process dies (the
//! server sees the connection close); after [`Settings::timeout`] of silence when it is
//! paused or cut off, because the session is opened with `idle_session_timeout` at that
//! value (the server ends it) and the leader pings at a third of it. TCP keepalives and
//! `tcp_user_timeout` on the connection bound how long the leader itself takes to notice
//! a dead server. Standbys wait for the lock in the server (`pg_advisory_lock`, in turns
//! of at most a second so they notice a stop), so a takeover starts the moment the lock
//! frees.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use anyhow::{Context, bail};
use postgres::error::SqlState;
use postgres::{Client, NoTls};

use super::url::PostgresUrl;
use crate::runtime::ha::{HaStatus, Lease};

/// The first key of rentabot's advisory locks ("RBOT"); the second is the schema's
/// name hashed, so that pairs on different schemas of one database do not meet.
pub const LOCK_CLASS: i32 = 0x5242_4f54;

/// The longest turn of waiting for the lock in the server: a standby told to stop
/// notices within it.
const LOCK_TURN: Duration = Duration::from_secs(1);

/// Backoff between campaigns that fail (the server unreachable, the login refused).
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The election's settings (`--ha-leader-timeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// How long the leader's session may stay silent before the server ends it (and a
    /// standby takes over); also the leader connection's `tcp_user_timeout`.
    pub timeout: Duration,
}

/// The default `--ha-leader-timeout`: a paused or cut-off active is replaced after
/// about this long; shorter risks needless takeovers when a busy machine delays the
/// leader's pings.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

impl Default for Settings {
    fn default() -> Self {
        Settings {
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl Settings {
    /// How often the leader pings: three pings per timeout, so that one late ping does
    /// not cost the lock.
    fn ping_every(self) -> Duration {
        (self.timeout / 3).max(Duration::from_millis(50))
    }
}

/// A session that holds the schema's advisory lock, and the epoch it moved to.
pub struct Leadership {
    client: Client,
    epoch: u64,
    url: PostgresUrl,
}

impl Leadership {
    /// Connects and waits for the schema's lock while `keep_waiting()` says so (asked
    /// every second at most); then brings the schema to this build's version and
    /// moves the epoch. `Ok(None)`: told to stop before the lock came.
    ///
    /// # Errors
    /// The server cannot be reached or refuses the login; the schema belongs to another
    /// program or a newer rentabot; the connection is lost while waiting.
    pub fn campaign(
        url: &PostgresUrl,
        settings: Settings,
        keep_waiting: &mut dyn FnMut() -> bool,
    ) -> anyhow::Result<Option<Leadership>> {
        // A connection of its own, watched so that a dead server is noticed within the
        // timeout, and named so that pg_stat_activity tells it from the writer's.
        let mut config = url.watched(settings.timeout).config().clone();
        config.application_name(&format!(
            "{} leader",
            url.config().get_application_name().unwrap_or("rentabot")
        ));
        let mut client = config
            .connect(NoTls)
            .with_context(|| format!("connecting to {}", url.shown()))?;
        // The server ends this session after `timeout` of silence: a leader that is
        // paused or cut off loses the lock by then. Not while waiting for the lock (a
        // statement runs); between turns the session is idle for microseconds.
        client.batch_execute(&format!(
            "SET idle_session_timeout = {}; SET lock_timeout = {}",
            settings.timeout.as_millis().max(1),
            LOCK_TURN.as_millis()
        ))?;
        let schema = super::postgres::current_schema(&mut client, url)?;
        loop {
            if !keep_waiting() {
                return Ok(None);
            }
            match client.execute(
                "SELECT pg_advisory_lock($1, hashtext(current_schema()))",
                &[&LOCK_CLASS],
            ) {
                Ok(_) => break,
                Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {}
                Err(e) => return Err(e.into()),
            }
        }
        client.batch_execute("RESET lock_timeout")?;
        super::postgres::migrate(&mut client, url, &schema)?;
        let epoch: i64 = client
            .query_one(
                "UPDATE state SET epoch = epoch + 1 WHERE id = 1 RETURNING epoch",
                &[],
            )
            .context("moving the epoch")?
            .get(0);
        Ok(Some(Leadership {
            client,
            epoch: epoch as u64,
            url: url.clone(),
        }))
    }

    /// Connects once and checks the schema exists: what a starting service does before
    /// it waits as a standby, so that a wrong URL, password or database stops the start
    /// with the server's answer instead of retrying it forever.
    ///
    /// # Errors
    /// The server cannot be reached or refuses the login, or no schema of the
    /// `search_path` exists.
    pub fn probe(url: &PostgresUrl) -> anyhow::Result<()> {
        let mut client = url
            .config()
            .connect(NoTls)
            .with_context(|| format!("connecting to {}", url.shown()))?;
        super::postgres::current_schema(&mut client, url)?;
        Ok(())
    }

    /// The epoch this leadership moved the schema to.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Checks that the session is alive (so it still holds the lock) and that nobody
    /// moved the epoch since.
    ///
    /// # Errors
    /// The session is gone (the server ended it, or the connection broke), or the
    /// epoch moved: this service is no longer the active one.
    pub fn check(&mut self) -> anyhow::Result<()> {
        let epoch: i64 = self
            .client
            .query_one("SELECT epoch FROM state WHERE id = 1", &[])
            .with_context(|| format!("the leader session on {} ended", self.url.shown()))?
            .get(0);
        if epoch as u64 != self.epoch {
            bail!(
                "the epoch of {} moved from {} to {epoch}: another rentabot is active",
                self.url.shown(),
                self.epoch
            );
        }
        Ok(())
    }
}

/// The leader thread, running until [`Leader::stop`].
pub struct Leader {
    stop: mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Leader {
    /// Starts campaigning for `url`'s schema on a thread of its own; `status` tells the
    /// service (and `/metrics`) the role, and hands out a [`Lease`] at each takeover.
    ///
    /// # Errors
    /// The thread cannot be spawned.
    pub fn spawn(
        url: PostgresUrl,
        settings: Settings,
        status: Arc<HaStatus>,
    ) -> anyhow::Result<Leader> {
        Leader::spawn_from(url, settings, status, None)
    }

    /// [`Leader::spawn`], leading already with `leadership` (taken by the caller) and
    /// its `lease`.
    ///
    /// # Errors
    /// The thread cannot be spawned.
    pub fn spawn_leading(
        url: PostgresUrl,
        settings: Settings,
        status: Arc<HaStatus>,
        leadership: Leadership,
        lease: Lease,
    ) -> anyhow::Result<Leader> {
        Leader::spawn_from(url, settings, status, Some((leadership, lease)))
    }

    fn spawn_from(
        url: PostgresUrl,
        settings: Settings,
        status: Arc<HaStatus>,
        first: Option<(Leadership, Lease)>,
    ) -> anyhow::Result<Leader> {
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("rentabot-leader".to_owned())
            .spawn(move || run(&url, settings, &status, &stopped, first))?;
        Ok(Leader {
            stop,
            thread: Some(thread),
        })
    }

    /// Ends the thread and its session: the lock, if held, frees at once, and a
    /// standby takes over without waiting for a timeout. Call it after the service's
    /// last commit.
    pub fn stop(mut self) {
        let _ = self.stop.send(());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the leader thread panicked");
        }
    }
}

fn run(
    url: &PostgresUrl,
    settings: Settings,
    status: &HaStatus,
    stop: &mpsc::Receiver<()>,
    mut first: Option<(Leadership, Lease)>,
) {
    let stopping = || !matches!(stop.try_recv(), Err(mpsc::TryRecvError::Empty));
    let mut backoff = RETRY_FIRST;
    loop {
        let mut keep_waiting = || !stopping();
        let campaign = match first.take() {
            Some(taken) => Ok(Some(taken)),
            None => Leadership::campaign(url, settings, &mut keep_waiting).map(|won| {
                won.map(|leadership| {
                    let lease = status.take_over(leadership.epoch());
                    tracing::info!(
                        epoch = leadership.epoch(),
                        store = %url,
                        "took over: this rentabot is the active one"
                    );
                    (leadership, lease)
                })
            }),
        };
        let (mut leadership, lease) = match campaign {
            Ok(Some(won)) => won,
            Ok(None) => return,
            Err(e) => {
                status.not_ready(&format!("{e:#}"));
                tracing::warn!(error = %format!("{e:#}"), "cannot campaign for the active role; retrying");
                match stop.recv_timeout(backoff) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                backoff = (backoff * 2).min(RETRY_MAX);
                continue;
            }
        };
        backoff = RETRY_FIRST;
        // Lead until the session is lost, the epoch moves, the writer finds itself
        // fenced, or the service stops.
        let reason = loop {
            match stop.recv_timeout(settings.ping_every()) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => {
                    // The service stopped: its last commits are done. Ending the session
                    // frees the lock now.
                    drop(leadership);
                    status.step_down(&lease, "stopped");
                    return;
                }
            }
            if lease.is_deposed() {
                break "the store refused a commit of this epoch".to_owned();
            }
            if let Err(e) = leadership.check() {
                break format!("{e:#}");
            }
        };
        drop(leadership);
        tracing::warn!(
            epoch = lease.epoch(),
            reason = %reason,
            "deposed: stepping down to standby"
        );
        status.step_down(&lease, &reason);
    }
}
