//! Building and running the service. `main` and the integration tests share this.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::http::KeepAlive;
use actix_web::middleware::from_fn;
use actix_web::{App as ActixApp, HttpServer, web};
use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing_actix_web::TracingLogger;

use crate::api::middleware::{RequestSpan, envelope};
use crate::audit::{self, AuditLog, FileSink};
use crate::auth::Auth;
use crate::cli::{ServeArgs, limits};
use crate::config;
use crate::domain::{Broker, Clock, Policy, ResourceSpec};
use crate::metrics::{self, Exporter, Metrics};
use crate::runtime::ha::{HaStatus, Lease};
use crate::runtime::{
    BrokerHandle, Cause, Committer, DescriptorSource, IdempotencyRecord, InMemory, Ledger,
    Observer, Observers, OsEntropy, Publisher, RequestScope, Shutdown, SystemClock,
    run_expiry_timer,
};
use crate::store::leader::{self, Leader, Leadership};
use crate::store::url::PostgresUrl;
use crate::store::writer::WriterContext;
use crate::store::{self, Failpoint, Loaded, MemoryStore, PersistUrl};
use crate::{api, web as pages};

/// Seconds the requests in flight get to finish once a stop began, before their
/// connections are dropped. Long-polls, event streams and sockets do not count against
/// it: they are told to finish at once (see [`Shutdown`]).
pub const SHUTDOWN_GRACE_SECS: u64 = 5;

/// How long the server waits for a client to close a connection it is closing (after
/// an error, or at shutdown) before dropping it: 1 s, actix's default, set explicitly.
pub const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Descriptors (files, sockets, epoll) the process needs besides its connections: kept
/// free when `--max-connections` is checked against the open file limit.
const RESERVED_FDS: u64 = 64;

/// Where and how to serve.
#[derive(Clone, Debug)]
pub struct Settings {
    pub host: String,
    /// 0 picks a free port; [`App::port`] tells which.
    pub port: u16,
    pub workers: Option<usize>,
    /// Stop on SIGINT/SIGTERM. Off in tests, where many servers share one process.
    pub handle_signals: bool,
    /// Queue aging and claim window.
    pub policy: Policy,
    /// The descriptor the resources were loaded from: what `POST /api/v1/admin/reload`
    /// (and, with `handle_signals`, SIGHUP) reads again. `None` refuses reloads.
    pub descriptor: Option<PathBuf>,
    /// How requests are bounded and whose web pages may send them.
    pub requests: api::RequestPolicy,
    /// What one client may hold: connections, and how long a head or an idle
    /// connection may take.
    pub connections: Connections,
    /// Where the state is kept (`--persist`).
    pub persist: Persist,
    /// The auth config (`--auth-config`): `None` leaves the service open, as 1.0 was.
    /// Read at start (an unusable file stops the start) and again on SIGHUP and
    /// `POST /api/v1/admin/reload`.
    pub auth: Option<PathBuf>,
    /// The audit log's file and retention (`--audit-log`, `--audit-retention`).
    pub audit: AuditSettings,
    /// Count for `GET /metrics` (the default). Off: no `/metrics` route and nothing
    /// counted, which only the load tool uses, to measure what metrics cost.
    pub metrics: bool,
    /// The HA pair's settings, used with a `postgres://` store.
    pub ha: HaSettings,
}

/// The HA pair's settings (`--ha-leader-timeout`, `--ha-grace`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HaSettings {
    pub leader: leader::Settings,
    /// After a takeover, deadlines due within this are postponed to its end.
    pub grace: Duration,
}

/// The default `--ha-grace`: more than the clock skew of nodes kept by NTP (milliseconds),
/// short enough that nobody waits for a lock that truly ran out.
pub const DEFAULT_HA_GRACE: Duration = Duration::from_secs(2);

/// How long `build` waits to become the active service of a PostgreSQL store: long
/// enough for the session of a predecessor that was killed to end (milliseconds: the
/// server sees the connection close), short enough that a second service started by
/// mistake is told so promptly. `rentabot serve` waits as a standby instead.
const ELECTION_WAIT: Duration = Duration::from_secs(10);

impl Default for HaSettings {
    fn default() -> Self {
        HaSettings {
            leader: leader::Settings::default(),
            grace: DEFAULT_HA_GRACE,
        }
    }
}

/// A service's term as the active one of an HA pair.
#[derive(Clone)]
pub struct Term {
    pub lease: Lease,
    pub status: Arc<HaStatus>,
}

/// The audit log's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditSettings {
    /// Where JSON lines are appended (`--audit-log`); `None`: no file.
    pub file: Option<PathBuf>,
    /// Entries kept for `GET /api/v1/audit`: in memory, and in the store's table with
    /// `--persist` (`--audit-retention`). The file is never trimmed.
    pub retention: usize,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            file: None,
            retention: audit::DEFAULT_RETENTION,
        }
    }
}

/// Where a service keeps its state.
#[derive(Clone, Debug, Default)]
pub enum Persist {
    /// In memory only: a restart forgets it (the default).
    #[default]
    Nowhere,
    /// In the store this URL names (`--persist`).
    Url(PersistUrl),
    /// In a [`MemoryStore`], which tests watch and disturb: committed as with a real
    /// store (answers wait for commits), lost with the process.
    Memory(MemoryStore),
}

impl Default for Settings {
    /// Loopback on a free port, no descriptor, no signal handling: what tests and tools
    /// start from.
    fn default() -> Self {
        Settings {
            host: "127.0.0.1".to_owned(),
            port: 0,
            workers: None,
            handle_signals: false,
            policy: Policy::default(),
            descriptor: None,
            connections: Connections::default(),
            requests: api::RequestPolicy::default(),
            persist: Persist::Nowhere,
            auth: None,
            audit: AuditSettings::default(),
            metrics: true,
            ha: HaSettings::default(),
        }
    }
}

/// The connection limits (`--max-connections`, `--head-timeout`, `--keep-alive`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connections {
    /// Connections served at once, all workers together; the next ones wait in the
    /// listen backlog until one closes.
    pub max: usize,
    /// Time to receive a request's head; then 408 and close.
    pub head_timeout: Duration,
    /// Time an idle kept-alive connection stays open; zero closes after each response.
    pub keep_alive: Duration,
}

impl Default for Connections {
    fn default() -> Self {
        Connections {
            max: limits::DEFAULT_MAX_CONNECTIONS as usize,
            head_timeout: Duration::from_secs(limits::DEFAULT_HEAD_TIMEOUT_SECS),
            keep_alive: Duration::from_secs(limits::DEFAULT_KEEP_ALIVE_SECS),
        }
    }
}

/// A bound, not yet running service.
pub struct App {
    port: u16,
    server: Server,
    handle: BrokerHandle,
    /// The writer thread, with `--persist`.
    store: Option<StoreThread>,
    /// Closed last, so that the final commits' records reach the file.
    audit: Arc<AuditLog>,
    /// The last change made while starting (restart expiries, the descriptor merge):
    /// the service is ready once it is committed.
    started_at_seq: u64,
    stopper: Stopper,
    cancel: CancellationToken,
    timer: JoinHandle<()>,
    /// Reloads the descriptor on SIGHUP; only when the app handles signals.
    reloader: Option<JoinHandle<()>>,
    /// Stops the service on SIGINT/SIGTERM; only when the app handles signals.
    terminator: Option<JoinHandle<()>>,
    /// The term it serves, on a PostgreSQL store: it stops when deposed.
    term: Option<Term>,
    /// The leader thread, when the app elected itself ([`build`] on PostgreSQL); stopped
    /// after the last commit.
    leader: Option<Leader>,
}

/// Stops the service cleanly: what SIGTERM does, and what tests call.
#[derive(Clone)]
pub struct Stopper {
    shutdown: Shutdown,
    server: ServerHandle,
}

impl Stopper {
    /// Tells long-polls, event streams and sockets to finish ([`Shutdown::begin`]),
    /// then stops accepting and waits up to [`SHUTDOWN_GRACE_SECS`] for the requests in
    /// flight. Returns when the server has stopped.
    pub async fn stop(&self) {
        tracing::info!(
            waiting = self.shutdown.watchers(),
            "stopping: answering long-polls, closing event streams and sockets"
        );
        self.shutdown.begin();
        self.server.stop(true).await;
    }

    /// The shutdown signal the app's responses listen to.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }
}

/// The store's writer thread, and how the app learns that it ended.
struct StoreThread {
    thread: std::thread::JoinHandle<()>,
    /// Resolves when the thread ends, however it ends.
    ended: tokio::sync::oneshot::Receiver<()>,
    stopping: Arc<AtomicBool>,
}

/// What [`start_broker`] built.
struct Started {
    handle: BrokerHandle,
    /// Remembered `Idempotency-Key` answers the store kept.
    records: Vec<IdempotencyRecord>,
    store: Option<StoreThread>,
    /// The last change made while starting.
    started_at_seq: u64,
    audit: Arc<AuditLog>,
    metrics: Arc<Metrics>,
}

/// Opens the store (with `--persist`) or starts empty, and builds the one broker of the
/// service from what the store holds: restored, then brought to now (locks that ran out
/// while the service was down expire, in deadline order, serving the queue), then the
/// descriptor merged by the reload rules (`resources`; empty: no descriptor, nothing to
/// merge, since a descriptor is never empty).
fn start_broker(
    settings: &Settings,
    resources: Vec<ResourceSpec>,
    clock: Arc<dyn Clock>,
    term: Option<&Term>,
) -> anyhow::Result<Started> {
    let epoch = term.map(|t| t.lease.epoch());
    let (backend, mut loaded): (Option<Box<dyn store::Backend>>, _) = match &settings.persist {
        Persist::Url(url) => {
            // The writer's connections are watched as the leader's is: cut off, it gives
            // up its commit as the term ends, not 30 s later.
            let watched = match url {
                PersistUrl::Postgres(pg) => {
                    PersistUrl::Postgres(pg.watched(settings.ha.leader.timeout))
                }
                PersistUrl::Sqlite(_) => url.clone(),
            };
            let (backend, mut loaded) = store::open(&watched, settings.audit.retention, epoch)
                .with_context(|| format!("opening the state store {url}"))?;
            if let Some(epoch) = epoch {
                // A takeover: no lock ends early because this node's clock runs ahead.
                let until = clock
                    .now()
                    .checked_add(settings.ha.grace)
                    .unwrap_or_else(|| clock.now());
                let moved = loaded.image.postpone_deadlines(until);
                tracing::info!(
                    epoch,
                    postponed = moved,
                    grace_secs = settings.ha.grace.as_secs_f64(),
                    "took over: deadlines due within the grace are postponed to its end"
                );
            }
            tracing::info!(
                store = %url,
                resources = loaded.image.resources.len(),
                reservations = loaded.image.reservations.len(),
                last_change = loaded.seq,
                "state loaded"
            );
            (Some(backend), loaded)
        }
        Persist::Memory(store) => (Some(Box::new(store.clone())), store.loaded()),
        Persist::Nowhere => (None, Loaded::default()),
    };
    let file = settings
        .audit
        .file
        .as_deref()
        .map(FileSink::open)
        .transpose()?;
    // Every committed change reaches the audit log through the publisher, in order.
    let audit = Arc::new(AuditLog::new(
        settings.audit.retention,
        std::mem::take(&mut loaded.audit),
        file,
    ));
    // And `/metrics`' counters of what happened, after the audit log.
    let ledger = Arc::new(Ledger::new(loaded.seq));
    let metrics = Arc::new(Metrics::with_ledger(ledger.clone()));
    let mut observers: Vec<Arc<dyn Observer>> = vec![audit.clone()];
    if settings.metrics {
        observers.push(metrics.clone());
    }
    let publisher = Arc::new(Publisher::with_observer(
        loaded.next_event,
        Some(Arc::new(Observers(observers))),
    ));
    let (committer, store): (Arc<dyn Committer>, _) = match backend {
        None => (
            Arc::new(InMemory::new(ledger.clone(), publisher.clone())),
            None,
        ),
        Some(backend) => {
            let stopping = Arc::new(AtomicBool::new(false));
            let failpoint = std::env::var(Failpoint::ENV)
                .ok()
                .map(|f| Failpoint::parse(&f))
                .transpose()?;
            let (ended_tx, ended) = tokio::sync::oneshot::channel();
            let (writer, thread) = store::writer::spawn(
                backend,
                WriterContext {
                    ledger: ledger.clone(),
                    publisher: publisher.clone(),
                    clock: clock.clone(),
                    failpoint,
                    stopping: stopping.clone(),
                    ended: ended_tx,
                    lease: term.map(|t| t.lease.clone()),
                },
            )?;
            let store = StoreThread {
                thread,
                ended,
                stopping,
            };
            // Weak: the writer thread reaches the audit log through the publisher, and a
            // strong sender there would keep its own channel open after every Writer
            // is dropped.
            let writer = Arc::new(writer);
            let weak = Arc::downgrade(&writer);
            audit.store_answers_with(move |entry| {
                if let Some(writer) = weak.upgrade() {
                    writer.store_answer(entry);
                }
            });
            (writer, Some(store))
        }
    };
    let broker = Broker::restore(
        loaded.image,
        settings.policy,
        Box::new(OsEntropy),
        committer.wants_rows(),
    );
    let handle =
        BrokerHandle::with_committer(broker, clock, committer, ledger, publisher, loaded.seq);
    handle.sweep();
    if !resources.is_empty() {
        // The descriptor merge is the service's own doing: `system` in the audit log.
        let report = handle
            .scoped(Arc::new(RequestScope::new(Cause::system())))
            .reload(resources);
        if !matches!(settings.persist, Persist::Nowhere)
            && (!report.added.is_empty()
                || !report.updated.is_empty()
                || !report.removed.is_empty()
                || !report.retiring.is_empty())
        {
            tracing::info!(
                added = report.added.len(),
                updated = report.updated.len(),
                removed = report.removed.len(),
                retiring = report.retiring.len(),
                "descriptor merged into the stored state"
            );
        }
    }
    let started_at_seq = handle.last_seq();
    Ok(Started {
        handle,
        records: loaded.records,
        store,
        started_at_seq,
        audit,
        metrics,
    })
}

/// Opens the store (or starts in memory), builds the broker, binds the listener, starts
/// the expiry timer (and, when handling signals, the SIGHUP reloader), and prepares the
/// HTTP server. Must be called inside a Tokio runtime.
///
/// `resources` is the descriptor's content, merged into the stored state by the reload
/// rules; empty when there is no descriptor (the stored state is served as it is).
///
/// # Errors
/// When the store cannot be opened or is refused, the address cannot be bound, or the
/// SIGHUP handler cannot be installed.
pub fn build(
    settings: &Settings,
    resources: Vec<ResourceSpec>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<App> {
    let listener = bind(settings)?;
    let Persist::Url(PersistUrl::Postgres(url)) = &settings.persist else {
        return build_on(settings, resources, clock, listener, None);
    };
    // On PostgreSQL the service must be the active one: elect it now, waiting a while
    // for a predecessor's session to end.
    let status = HaStatus::new();
    let leadership = elect(url, settings.ha.leader, ELECTION_WAIT)?;
    let lease = status.take_over(leadership.epoch());
    let leader = Leader::spawn_leading(
        url.clone(),
        settings.ha.leader,
        status.clone(),
        leadership,
        lease.clone(),
    )?;
    let term = Term { lease, status };
    let mut app = build_on(settings, resources, clock, listener, Some(term))?;
    app.leader = Some(leader);
    Ok(app)
}

/// Binds the address `settings` name.
fn bind(settings: &Settings) -> anyhow::Result<TcpListener> {
    TcpListener::bind((settings.host.as_str(), settings.port))
        .with_context(|| format!("cannot listen on {}:{}", settings.host, settings.port))
}

/// Becomes the active service of `url`'s schema, waiting at most `wait`.
fn elect(
    url: &PostgresUrl,
    settings: leader::Settings,
    wait: Duration,
) -> anyhow::Result<Leadership> {
    let deadline = std::time::Instant::now() + wait;
    // The blocking client drives a runtime of its own: not on the caller's.
    let won = std::thread::scope(|s| {
        s.spawn(|| {
            Leadership::campaign(url, settings, &mut || std::time::Instant::now() < deadline)
        })
        .join()
    })
    .map_err(|_| anyhow::anyhow!("electing on {url} panicked"))??;
    won.ok_or_else(|| {
        anyhow::anyhow!(
            "another rentabot is active on {url} (it holds the schema's advisory lock): \
             `rentabot serve` would wait as its standby"
        )
    })
}

/// [`build`] on a bound listener, as the active service of `term` on a PostgreSQL
/// store (`None` otherwise).
///
/// # Errors
/// As [`build`].
pub fn build_on(
    settings: &Settings,
    resources: Vec<ResourceSpec>,
    clock: Arc<dyn Clock>,
    listener: TcpListener,
    term: Option<Term>,
) -> anyhow::Result<App> {
    let auth = match &settings.auth {
        Some(path) => Auth::load(path, clock.clone()).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => Auth::open(),
    };
    if auth.is_enabled() {
        tracing::info!("{}", auth.describe());
    } else {
        tracing::warn!("{}", auth.describe());
    }
    // One broker, built once, outside the per-worker factory: every worker shares it.
    let Started {
        handle,
        records,
        store,
        started_at_seq,
        audit,
        metrics,
    } = start_broker(settings, resources, clock, term.as_ref())?;
    let port = listener.local_addr()?.port();
    let ha = term.as_ref().map(|t| web::Data::from(t.status.clone()));

    let data = api::broker::Registered::data(handle.clone());
    let source = DescriptorSource::new(settings.descriptor.clone());
    let descriptor = web::Data::new(source.clone());
    let gate = web::Data::new(auth.clone());
    // Remembered `Idempotency-Key` responses: one table, shared by every worker, with
    // what the store kept.
    let idempotency = api::idempotency::IdempotencyStore::new(handle.clone(), records);
    let audit_data = web::Data::from(audit.clone());
    let shutdown = Shutdown::new();
    let stopping = web::Data::new(shutdown.clone());
    // The counters `envelope` records into and what `/metrics` renders from.
    let metered = settings.metrics.then(|| {
        (
            web::Data::from(metrics.clone()),
            web::Data::new(Exporter {
                metrics,
                broker: handle.clone(),
                waiting: Some(shutdown.clone()),
                audit: Some(audit.clone()),
                ha: term.as_ref().map(|t| t.status.clone()),
            }),
        )
    });
    let workers = settings
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get));
    let connections = settings.connections;
    let requests = settings.requests.clone();
    let server = HttpServer::new(move || {
        ActixApp::new()
            // The innermost wrap runs last: TracingLogger opens the request's span
            // (picking its id), then `envelope` checks the head and runs the route in it.
            // Origin checks, HEAD, JSON for bodiless answers, HTML security headers:
            // on every route (see api/guard.rs).
            .wrap(api::guard::Guard::new(requests.allowed_origins.clone()))
            .wrap(from_fn(envelope))
            .wrap(TracingLogger::<RequestSpan>::new())
            .app_data(data.clone())
            .app_data(descriptor.clone())
            .app_data(gate.clone())
            .app_data(idempotency.clone())
            .app_data(audit_data.clone())
            .app_data(stopping.clone())
            .configure(|cfg| {
                if let Some(ha) = &ha {
                    cfg.app_data(ha.clone());
                }
            })
            .app_data(api::params::BodyTimeout(requests.body_timeout))
            .configure(api::configure)
            .configure(pages::configure)
            .configure(|cfg| {
                if let Some((metrics, exporter)) = &metered {
                    cfg.app_data(metrics.clone()).app_data(exporter.clone());
                    metrics::configure(cfg);
                }
            })
            .default_service(web::to(api::no_route))
    })
    .workers(workers)
    // actix counts connections per worker.
    .max_connections(connections.max.div_ceil(workers).max(1))
    .client_request_timeout(connections.head_timeout)
    .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
    .keep_alive(if connections.keep_alive.is_zero() {
        KeepAlive::Disabled
    } else {
        KeepAlive::Timeout(connections.keep_alive)
    })
    // Signals are ours (see `stop_on_signals`): actix's own handling would stop without
    // telling long-polls and sockets, which then hold the stop for the whole grace time.
    .disable_signals()
    .shutdown_timeout(SHUTDOWN_GRACE_SECS)
    .listen(listener)?
    .run();
    let stopper = Stopper {
        shutdown,
        server: server.handle(),
    };

    let cancel = CancellationToken::new();
    let timer = tokio::spawn(run_expiry_timer(handle.clone(), cancel.clone()));
    let (reloader, terminator) = if settings.handle_signals {
        (
            reload_on_hangup(&handle, source, &auth, &cancel)?,
            Some(stop_on_signals(stopper.clone())?),
        )
    } else {
        (None, None)
    };
    Ok(App {
        port,
        server,
        handle,
        store,
        audit,
        started_at_seq,
        stopper,
        cancel,
        timer,
        reloader,
        terminator,
        term,
        leader: None,
    })
}

/// Installs the SIGINT and SIGTERM handlers now, before the service announces itself,
/// and spawns the task that stops cleanly on the first signal ([`Stopper::stop`]) and
/// at once on a second one.
fn stop_on_signals(stopper: Stopper) -> anyhow::Result<JoinHandle<()>> {
    let mut signals = StopSignals::install()?;
    Ok(tokio::spawn(async move {
        let first = signals.next().await;
        tracing::info!("{first} received");
        tokio::select! {
            () = stopper.stop() => {}
            second = signals.next() => {
                tracing::warn!("{second} received again: stopping now, dropping the requests in flight");
                stopper.server.stop(false).await;
            }
        }
    }))
}

/// SIGINT and SIGTERM (Ctrl-C off Unix).
struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    #[cfg(unix)]
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
        })
    }

    #[cfg(not(unix))]
    fn install() -> anyhow::Result<Self> {
        Ok(StopSignals {})
    }

    /// The name of the next signal. Cancel-safe.
    #[cfg(unix)]
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }

    #[cfg(not(unix))]
    async fn next(&mut self) -> &'static str {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

/// Installs the SIGHUP handler now, before the service announces itself, and spawns
/// the task that reloads on it.
#[cfg(unix)]
fn reload_on_hangup(
    handle: &BrokerHandle,
    source: DescriptorSource,
    auth: &Auth,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    use tokio::signal::unix::{SignalKind, signal};
    let hangups = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    // The auth config first, on a listener of its own: rotating a key must not wait
    // for (or fail with) the descriptor.
    if let Some(path) = auth.source().map(Path::to_owned) {
        let mut auth_hangups =
            signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        let (auth, cancel) = (auth.clone(), cancel.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    got = auth_hangups.recv() => if got.is_none() { break },
                }
                let (auth, path) = (auth.clone(), path.clone());
                match tokio::task::spawn_blocking(move || auth.reload(&path)).await {
                    Ok(Ok(report)) => tracing::info!("SIGHUP: auth config reloaded: {report}"),
                    Ok(Err(e)) => {
                        tracing::warn!(
                            "SIGHUP: the auth config was not reloaded, the one in force stays: {e}"
                        );
                    }
                    Err(e) => tracing::error!(error.cause_chain = ?e, "auth reload failed"),
                }
            }
        });
    }
    Ok(Some(tokio::spawn(crate::runtime::run_reload_on_hangup(
        handle.clone(),
        source,
        hangups,
        cancel.clone(),
    ))))
}

/// No SIGHUP off Unix: reloads go through the API only.
#[cfg(not(unix))]
fn reload_on_hangup(
    _handle: &BrokerHandle,
    _source: DescriptorSource,
    _auth: &Auth,
    _cancel: &CancellationToken,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    Ok(None)
}

impl App {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker, for tests that sweep or inspect it directly.
    pub fn handle(&self) -> BrokerHandle {
        self.handle.clone()
    }

    /// What stops the service cleanly, as SIGTERM does; tests call it directly.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Resolves once what the service did while starting (restart expiries, the
    /// descriptor merge) is committed: from then on it is ready.
    ///
    /// # Errors
    /// When the store fails to commit it.
    pub async fn ready(&self) -> anyhow::Result<()> {
        self.handle
            .durable(self.started_at_seq)
            .await
            .context("committing the state at start")
    }

    /// Serves until the server stops (a signal, or its handle), then stops the timer and
    /// commits what is queued. A task the service needs that ends on its own (the timer,
    /// the store's writer) stops the service with an error: it must not answer without
    /// them.
    ///
    /// # Errors
    /// When the server fails, or a task it needs ended.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let App {
            server,
            handle,
            store,
            audit,
            stopper,
            cancel,
            mut timer,
            reloader,
            terminator,
            term,
            leader,
            ..
        } = self;
        let deposed = async {
            match &term {
                Some(term) => term.lease.deposed().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deposed);
        let (mut writer_ended, store) = match store {
            Some(StoreThread {
                thread,
                ended,
                stopping,
            }) => (Some(ended), Some((thread, stopping))),
            None => (None, None),
        };
        tokio::pin!(server);
        let mut failed = None;
        let served = tokio::select! {
            served = &mut server => Some(served),
            ended = &mut timer => {
                let cause = match ended {
                    Ok(()) => "it stopped".to_owned(),
                    Err(e) => format!("{e}"),
                };
                failed = Some(anyhow::anyhow!("the expiry timer ended: {cause}"));
                None
            }
            () = &mut deposed => None,
            () = async {
                match writer_ended.as_mut() {
                    Some(ended) => { let _ = ended.await; }
                    None => std::future::pending().await,
                }
            } => {
                if !term.as_ref().is_some_and(|t| t.lease.is_deposed()) {
                    failed = Some(anyhow::anyhow!("the store's writer ended"));
                }
                None
            }
        };
        let served = match served {
            Some(served) => served,
            None if failed.is_none() => {
                // Deposed: another service is active, or will be. Nothing more is
                // acknowledged: the requests waiting for a commit are answered 503 now
                // (their changes may still land, before the new term: a retry with the
                // same Idempotency-Key learns the outcome there). Then stop as SIGTERM
                // would; the writer finds its commits refused, or its connection lost.
                tracing::warn!("deposed: stopping the active service");
                handle.refuse_commits(
                    "deposed: this rentabot is no longer the active one of the HA pair \
                     (its leader session ended, or another one took over)",
                );
                // The server future handles the stop: poll it while the stop waits.
                tokio::join!(stopper.stop(), &mut server).1
            }
            None => {
                let e = failed.as_ref().expect("set with None");
                tracing::error!(error.cause_chain = ?e, "a task the service needs ended: stopping");
                tokio::join!(stopper.server.stop(false), &mut server).1
            }
        };
        cancel.cancel();
        if !timer.is_finished()
            && let Err(e) = timer.await
        {
            tracing::error!(error.cause_chain = ?e, "expiry timer failed");
        }
        if let Some(reloader) = reloader
            && let Err(e) = reloader.await
        {
            tracing::error!(error.cause_chain = ?e, "SIGHUP reloader failed");
        }
        if let Some(terminator) = terminator {
            // Waiting for a signal that will not come, if the server stopped otherwise.
            terminator.abort();
        }
        if let Some((thread, stopping)) = store {
            // Commit what is queued, then let the thread end. A commit that keeps
            // failing is given up: none of its changes was acknowledged.
            stopping.store(true, Ordering::Release);
            handle.close();
            if tokio::task::spawn_blocking(move || thread.join())
                .await
                .map_or(true, |joined| joined.is_err())
            {
                tracing::error!("the store's writer panicked");
            }
        }
        // The last commits are published: write their records, then stop the file.
        tokio::task::spawn_blocking(move || audit.close())
            .await
            .unwrap_or_else(|_| tracing::error!("closing the audit log panicked"));
        if let Some(leader) = leader {
            // After the last commit: the lock frees, and a standby takes over at once.
            tokio::task::spawn_blocking(move || leader.stop())
                .await
                .unwrap_or_else(|_| tracing::error!("stopping the leader thread panicked"));
        }
        tracing::info!("stopped");
        if let Some(e) = failed {
            return Err(e);
        }
        served.context("HTTP server failed")
    }
}

/// `rentabot serve`: find and load the descriptor, then serve until SIGINT or SIGTERM.
///
/// # Errors
/// A descriptor that cannot be loaded, an address that cannot be bound.
pub fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let cwd = std::env::current_dir().context("reading the working directory")?;
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let descriptor = config::discover_descriptor(
        args.config.as_deref(),
        &cwd,
        home.as_deref(),
        std::env::var_os(config::DESCRIPTOR_ENV),
    );
    let resources = match &descriptor {
        Some(path) => load(path)?,
        None => {
            tracing::warn!("no resource descriptor found; starting with no resources");
            Vec::new()
        }
    };

    let settings = Settings {
        host: args.host.clone(),
        port: args.port,
        workers: args.workers.map(usize::from),
        handle_signals: true,
        policy: Policy {
            aging: Duration::from_secs(args.queue_aging),
            claim_window: Duration::from_secs(args.claim_window),
            expiry_warning: Duration::from_secs(args.expiry_warning),
            max_pending: args.max_pending_reservations,
        },
        descriptor,
        requests: api::RequestPolicy {
            body_timeout: Duration::from_secs(args.body_timeout),
            allowed_origins: api::guard::AllowedOrigins::new(&args.allowed_origins)
                .map_err(anyhow::Error::msg)?,
        },
        connections: Connections {
            max: fit_open_file_limit(u64::from(args.max_connections)),
            head_timeout: Duration::from_secs(args.head_timeout),
            keep_alive: Duration::from_secs(args.keep_alive),
        },
        persist: args.persist.clone().map_or(Persist::Nowhere, Persist::Url),
        auth: args.auth_config.clone(),
        audit: AuditSettings {
            file: args.audit_log.clone(),
            retention: args.audit_retention,
        },
        metrics: true,
        ha: HaSettings {
            leader: leader::Settings {
                timeout: Duration::from_secs(args.ha_leader_timeout),
            },
            grace: Duration::from_secs(args.ha_grace),
        },
    };
    // The main runtime only runs the accept loop and the timer; actix runs its HTTP
    // workers on threads of its own.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if let Persist::Url(PersistUrl::Postgres(url)) = &settings.persist {
        let url = url.clone();
        return runtime.block_on(serve_pair(&settings, &url, resources));
    }
    runtime.block_on(async {
        let app = build(&settings, resources, Arc::new(SystemClock::new()))?;
        app.ready().await?;
        tracing::info!(
            "listening on http://{}:{} (API explorer at /docs)",
            settings.host,
            app.port()
        );
        app.run_until_stopped().await
    })
}

/// `rentabot serve` on PostgreSQL: one of the HA pair. A standby (answering 503, not
/// ready) until the leader thread wins the election, then the active service (built as
/// at a restart, from the tables) until it is deposed or stopped; deposed, a standby
/// again. One listener throughout: connections that arrive while the roles change wait
/// in its backlog.
async fn serve_pair(
    settings: &Settings,
    url: &PostgresUrl,
    resources: Vec<ResourceSpec>,
) -> anyhow::Result<()> {
    let listener = bind(settings)?;
    // A wrong URL stops the start; once running, a lost database is waited out.
    std::thread::scope(|s| s.spawn(|| Leadership::probe(url)).join())
        .map_err(|_| anyhow::anyhow!("connecting to {url} panicked"))??;
    let status = HaStatus::new();
    let leader = Leader::spawn(url.clone(), settings.ha.leader, status.clone())?;
    let stop = CancellationToken::new();
    let mut signals = StopSignals::install()?;
    // A standby has nothing to reload, but SIGHUP must not end it (its default action):
    // listening replaces that, for the life of the process.
    #[cfg(unix)]
    let _hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let signalled = tokio::spawn({
        let stop = stop.clone();
        async move {
            let first = signals.next().await;
            tracing::info!("{first} received");
            stop.cancel();
        }
    });
    tracing::info!(
        "listening on http://{}:{} (API explorer at /docs), as a standby until elected",
        settings.host,
        listener.local_addr()?.port()
    );
    let mut last_epoch = 0;
    let outcome = loop {
        let standby = crate::standby::start(listener.try_clone()?, status.clone())?;
        tracing::info!(epoch = last_epoch, "serving as a standby");
        let lease = tokio::select! {
            lease = status.next_lease(last_epoch) => Some(lease),
            () = stop.cancelled() => None,
        };
        standby.stop().await;
        let Some(lease) = lease else {
            break Ok(());
        };
        last_epoch = lease.epoch();
        let term = Term {
            lease: lease.clone(),
            status: status.clone(),
        };
        let started = std::time::Instant::now();
        let app = match build_on(
            settings,
            resources.clone(),
            Arc::new(SystemClock::new()),
            listener.try_clone()?,
            Some(term),
        ) {
            Ok(app) => app,
            Err(e) => {
                // Let another service try: this one steps down and campaigns again.
                tracing::error!(error.cause_chain = ?e, "cannot serve as the active service");
                lease.depose();
                continue;
            }
        };
        if let Err(e) = app.ready().await {
            tracing::error!(error.cause_chain = ?e, "the takeover's changes were not committed");
        }
        tracing::info!(
            epoch = lease.epoch(),
            took_ms = started.elapsed().as_millis() as u64,
            "serving as the active rentabot"
        );
        let stopper = app.stopper();
        let stopping = tokio::spawn({
            let stop = stop.clone();
            async move {
                stop.cancelled().await;
                stopper.stop().await;
            }
        });
        let served = app.run_until_stopped().await;
        stopping.abort();
        if stop.is_cancelled() || served.is_err() {
            break served;
        }
        // Deposed, or the server stopped by itself: a standby again, and the lock goes
        // to whoever campaigns first.
        lease.depose();
    };
    signalled.abort();
    // After the last commit: the lock frees, and a standby takes over at once.
    tokio::task::spawn_blocking(move || leader.stop())
        .await
        .context("stopping the leader thread")?;
    tracing::info!("stopped");
    outcome
}

fn load(path: &Path) -> anyhow::Result<Vec<ResourceSpec>> {
    let descriptor = config::load_descriptor(path)?;
    for warning in &descriptor.warnings {
        tracing::warn!("{}: {warning}", path.display());
    }
    tracing::info!(
        "loaded {} resources from {}",
        descriptor.resources.len(),
        path.display()
    );
    Ok(descriptor.resources)
}

/// `wanted` connections, if the open file limit holds them with [`RESERVED_FDS`] to
/// spare: raising the soft limit towards the hard one if needed, else lowering the
/// connections to fit (with a warning), so that connections can never use up the
/// process's file descriptors.
fn fit_open_file_limit(wanted: u64) -> usize {
    let needed = wanted + RESERVED_FDS;
    let fitted = match raise_open_file_limit(needed) {
        Ok(limit) if limit >= needed => wanted,
        Ok(limit) => {
            let fitted = limit.saturating_sub(RESERVED_FDS).max(1);
            tracing::warn!(
                "--max-connections {wanted} does not fit the open file limit of {limit} \
                 (ulimit -n); serving at most {fitted} connections at once"
            );
            fitted
        }
        Err(e) => {
            tracing::warn!(
                "cannot read the open file limit ({e}); --max-connections {wanted} unchecked"
            );
            wanted
        }
    };
    usize::try_from(fitted).unwrap_or(usize::MAX)
}

/// The soft open file limit after trying to raise it to `needed` (never above the hard
/// limit, which only root may raise).
#[cfg(unix)]
fn raise_open_file_limit(needed: u64) -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a valid, exclusive pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let soft = rlim_u64(limit.rlim_cur);
    let hard = rlim_u64(limit.rlim_max);
    if soft >= needed || soft >= hard {
        return Ok(soft);
    }
    let raised = libc::rlimit {
        rlim_cur: needed.min(hard) as libc::rlim_t,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads one `rlimit` through a valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) } != 0 {
        return Ok(soft);
    }
    Ok(rlim_u64(raised.rlim_cur))
}

#[cfg(unix)]
#[allow(clippy::useless_conversion)] // rlim_t is u64 on Linux x86-64, but not on every Unix
fn rlim_u64(value: libc::rlim_t) -> u64 {
    u64::from(value)
}

/// No file limit to check off Unix.
#[cfg(not(unix))]
fn raise_open_file_limit(needed: u64) -> std::io::Result<u64> {
    Ok(needed)
}
