//! Building and running the service. `main` and the integration tests share this.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::{Server, Service};
use actix_web::{App as ActixApp, HttpServer, web};
use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cli::ServeArgs;
use crate::config;
use crate::domain::{Broker, Clock, Policy, ResourceSpec};
use crate::runtime::{BrokerHandle, DescriptorSource, SystemClock, run_expiry_timer};
use crate::{api, web as pages};

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
}

/// A bound, not yet running service.
pub struct App {
    port: u16,
    server: Server,
    handle: BrokerHandle,
    cancel: CancellationToken,
    timer: JoinHandle<()>,
    /// Reloads the descriptor on SIGHUP; only when the app handles signals.
    reloader: Option<JoinHandle<()>>,
}

/// Binds the listener, starts the expiry timer (and, when handling signals, the SIGHUP
/// reloader), and prepares the HTTP server. Must be called inside a Tokio runtime.
///
/// # Errors
/// When the address cannot be bound, or the SIGHUP handler cannot be installed.
pub fn build(
    settings: &Settings,
    resources: Vec<ResourceSpec>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<App> {
    // One broker, built once, outside the per-worker factory: every worker shares it.
    let handle = BrokerHandle::new(Broker::with_policy(resources, settings.policy), clock);
    let listener = TcpListener::bind((settings.host.as_str(), settings.port))
        .with_context(|| format!("cannot listen on {}:{}", settings.host, settings.port))?;
    let port = listener.local_addr()?.port();

    let data = web::Data::new(handle.clone());
    let source = DescriptorSource::new(settings.descriptor.clone());
    let descriptor = web::Data::new(source.clone());
    // Remembered `Idempotency-Key` responses: one table, shared by every worker.
    let idempotency = api::idempotency::IdempotencyStore::new(handle.clone());
    let mut server = HttpServer::new(move || {
        ActixApp::new()
            // Logs each request at debug level: method, path (never the query string,
            // which may carry a lock token), status and latency.
            .wrap_fn(|req, srv| {
                let start = Instant::now();
                let method = req.method().clone();
                let path = req.path().to_owned();
                let response = srv.call(req);
                async move {
                    let response = response.await?;
                    tracing::debug!(
                        %method,
                        %path,
                        status = response.status().as_u16(),
                        micros = start.elapsed().as_micros() as u64,
                        "request"
                    );
                    Ok(response)
                }
            })
            .app_data(data.clone())
            .app_data(descriptor.clone())
            .app_data(idempotency.clone())
            .configure(api::configure)
            .configure(pages::configure)
            .default_service(web::to(api::no_route))
    })
    .listen(listener)?;
    if let Some(workers) = settings.workers {
        server = server.workers(workers);
    }
    if !settings.handle_signals {
        server = server.disable_signals();
    }
    let server = server.shutdown_timeout(10).run();

    let cancel = CancellationToken::new();
    let timer = tokio::spawn(run_expiry_timer(handle.clone(), cancel.clone()));
    let reloader = if settings.handle_signals {
        reload_on_hangup(&handle, source, &cancel)?
    } else {
        None
    };
    Ok(App {
        port,
        server,
        handle,
        cancel,
        timer,
        reloader,
    })
}

/// Installs the SIGHUP handler now, before the service announces itself, and spawns
/// the task that reloads on it.
#[cfg(unix)]
fn reload_on_hangup(
    handle: &BrokerHandle,
    source: DescriptorSource,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    use tokio::signal::unix::{SignalKind, signal};
    let hangups = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
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

    /// Serves until the server stops (a signal, or its handle), then stops the timer.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let served = self.server.await;
        self.cancel.cancel();
        if let Err(e) = self.timer.await {
            tracing::error!(error.cause_chain = ?e, "expiry timer failed");
        }
        if let Some(reloader) = self.reloader
            && let Err(e) = reloader.await
        {
            tracing::error!(error.cause_chain = ?e, "SIGHUP reloader failed");
        }
        tracing::info!("stopped");
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
    };
    // The main runtime only runs the accept loop and the timer; actix runs its HTTP
    // workers on threads of its own.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let app = build(&settings, resources, Arc::new(SystemClock::new()))?;
        tracing::info!(
            "listening on http://{}:{} (API explorer at /docs)",
            settings.host,
            app.port()
        );
        app.run_until_stopped().await
    })
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
