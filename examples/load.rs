//! `load`: drives rentabot over HTTP and reports cycle rate, latency and expiry lag.
//!
//! ```text
//! cargo run --release --example load -- --help
//! cargo run --release --example load -- all --clients 16 --duration 10
//! cargo run --release --example load -- by-tag --url http://127.0.0.1:8000 --tag ci
//! ```
//!
//! By default it starts the real service in-process (`app::build` with the system clock,
//! on 127.0.0.1 and a free port, on a thread and current-thread runtime of its own as
//! `rentabot serve` does), with a lab of `--resources` resources all tagged `--tag`.
//! `--url` drives a running server instead; only loopback addresses are accepted.
//!
//! Scenarios. A *cycle* is two requests, so that every scenario is comparable:
//! - `baseline`: `GET /health` twice: a do-nothing actix-web endpoint, the ceiling.
//! - `by-id`: lock resource `i` by id, unlock it with the token. Client `i` owns id `i`.
//! - `by-tag`: lock the lowest free resource carrying `--tag`, unlock it.
//! - `expiry`: lock `--expiry-locks` resources with a 1 s TTL, paced over
//!   `--expiry-spread-ms`, and report how long after each lock's `expires-at` it was
//!   released. In-process the release is the broker's `Expired` event, timed with the
//!   broker's clock (1 ms resolution). Against `--url` it is the first `GET` that shows
//!   the resource free, so the figure includes the polling interval; and since reads
//!   apply due expiries themselves, it checks "never early" rather than the timer.
//! - `fulfil`: fulfilment latency. A holder locks the one resource tagged
//!   `--fulfil-tag`; a waiter reserves it (pending) and long-polls
//!   `GET /reservations/{id}?wait=30&status=pending` on its own connection; the holder
//!   unlocks. Reported: from the unlock response reaching the holder to the poll's
//!   answer reaching the waiter, over `--fulfil-rounds` rounds.
//! - `all`: baseline, by-id, by-tag, expiry and fulfil in one process, with the ratios
//!   of the by-id and by-tag cycle rates to the baseline's.
//! - `--durable` (in-process only) adds `durable`: the by-id cycle against a second
//!   in-process server started with `--persist` on a SQLite file in a temporary
//!   directory, interleaved with the others, with its ratio to in-memory by-id and the
//!   store's commits (count, changes per commit, latency). `--durable-url URL` puts that
//!   server's state in another store: `postgres://user:password@127.0.0.1/db`.
//! - `--auth` (in-process only) adds `keyed`: the by-id cycle against a third in-process
//!   server started with an `--auth-config` of 8 API keys (rate limits on, set far above
//!   the load), every request carrying `X-API-Key`, with its ratio to by-id.
//! - `--unmetered` (in-process only) adds `unmetered`: the by-id cycle against a server
//!   with metrics off (nothing counted, no `/metrics`), with by-id's ratio to it: what
//!   metrics cost the hot path.
//! - `--audit-log FILE` (in-process only): the servers also append their audit log to
//!   FILE, so the runs include what the file's thread costs.
//!
//! `--clients` tasks each hold one keep-alive HTTP/1.1 connection (hyper's lean
//! connection-level client) and run cycles back to back, for `--warmup` seconds
//! unmeasured, then until `--duration` seconds have passed or `--cycles` cycles were
//! measured, whichever comes first. Every loop is bounded. `--rounds R` repeats the
//! throughput scenarios R times, interleaved, and reports the median of the per-round
//! ratios: on a shared machine a burst of other work then skews one round, not a ratio.
//!
//! Each row also shows the CPU time per cycle of the server's threads and the client's
//! (`srv µs`, `cli µs`; in-process, or with `--server-pid` for an external server on
//! Linux). Unlike cycles/s, these barely move when other work shares the machine, so the
//! tool also prints the baseline-to-scenario ratio of their sum: the cycle-rate ratio the
//! two cores would give if the tool had them to itself.
//!
//! Exit status: 1 if any lock was released before its deadline (reported loudly), or
//! if any request failed or any release was not seen; 0 otherwise.

use std::collections::HashMap;
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use rentabot::app::{self, AuditSettings, Persist, Settings};
use rentabot::domain::{Event, Policy, ResourceSpec};
use rentabot::runtime::BATCH_BUCKETS;
use rentabot::runtime::{BrokerHandle, SystemClock};
use rentabot::store::PersistUrl;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::broadcast::error::RecvError;

/// Drive rentabot with concurrent keep-alive clients; report cycles/s, latency and expiry lag.
#[derive(Clone, Debug, Parser)]
#[command(name = "load")]
struct Args {
    /// What to run. `all` runs baseline, by-id, by-tag and expiry, and reports ratios.
    #[arg(value_enum, default_value_t = Scenario::All)]
    scenario: Scenario,

    /// Drive this running server (e.g. http://127.0.0.1:8000) instead of an in-process
    /// one. Loopback only. It needs resources with ids 1..=clients (by-id) and resources
    /// tagged --tag (by-tag); expiry locks the next --expiry-locks ids.
    #[arg(long)]
    url: Option<String>,

    /// Concurrent clients, each with its own keep-alive connection.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    clients: u32,

    /// Measured seconds per throughput scenario (at most 600).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,

    /// Stop a throughput scenario after this many measured cycles (all clients together).
    #[arg(long)]
    cycles: Option<u64>,

    /// Run the throughput scenarios this many times, interleaved; ratios to the
    /// baseline are the median of the rounds' ratios.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,

    /// Unmeasured seconds before each throughput scenario (connections, caches).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,

    /// In-process lab size: resources `board-1`..`board-N`, all tagged --tag.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    resources: u32,

    /// The tag every in-process resource carries, and that by-tag locks with.
    #[arg(long, default_value = "load")]
    tag: String,

    /// In-process HTTP worker threads (default: actix's, one per core).
    #[arg(long)]
    workers: Option<usize>,

    /// Threads of the client runtime.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    client_threads: u32,

    /// Locks taken in the expiry scenario, each with a 1 s TTL, on resources
    /// clients+1 ..= clients+expiry-locks (by-id uses 1 ..= clients).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    expiry_locks: u32,

    /// The expiry scenario's locks are paced evenly over this many milliseconds, so
    /// their deadlines do not all fall in the same millisecond.
    #[arg(long, default_value_t = 1000)]
    expiry_spread_ms: u64,

    /// Run the by-id load during the expiry scenario, to see the timer's lag on a busy
    /// server.
    #[arg(long)]
    expiry_with_load: bool,

    /// Rounds of the fulfil scenario (lock, reserve, long-poll, unlock).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    fulfil_rounds: u32,

    /// The tag of the one resource the fulfil scenario passes from holder to waiter. The
    /// in-process lab adds it; a --url server must have exactly one resource with it.
    #[arg(long, default_value = "fulfil")]
    fulfil_tag: String,

    /// Against --url, the server's process id (Linux), to report its CPU time per cycle.
    #[arg(long)]
    server_pid: Option<u32>,

    /// Against --url, how often the expiry scenario polls a resource near its deadline.
    #[arg(long, default_value_t = 1)]
    poll_ms: u64,

    /// Also run `durable`: by-id against a second in-process server persisting to SQLite
    /// (a file in a temporary directory, fsync on every commit as in production).
    #[arg(long, conflicts_with = "url")]
    durable: bool,
    /// `durable` with its state in this store instead of a temporary SQLite file, e.g.
    /// postgres://user:password@127.0.0.1/db (implies --durable). Give it an empty
    /// database: whatever state it holds is restored, and left there.
    #[arg(long, conflicts_with = "url", value_name = "URL")]
    durable_url: Option<String>,

    /// Also run `keyed`: by-id against a server with an auth config, sending a key.
    #[arg(long, conflicts_with = "url")]
    auth: bool,
    /// Also run `unmetered`: by-id against a server with metrics off, to show their cost.
    #[arg(long, conflicts_with = "url")]
    unmetered: bool,
    /// In-process servers also append their audit log to this file (`--audit-log`), to
    /// measure what the file costs; without it they keep the audit log in memory only.
    #[arg(long, conflicts_with = "url")]
    audit_log: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Baseline,
    ById,
    ByTag,
    Expiry,
    Fulfil,
    All,
}

/// How long the expiry scenario waits past the last deadline before calling a release
/// missing. Rent-A-Bot 1.0 may be 10 s late; leave it room.
const RELEASE_GRACE: Duration = Duration::from_secs(15);
const EXPIRY_TTL_BODY: &str = r#"{"ttl":1}"#;
const CYCLE_TTL_BODY: &str = r#"{"ttl":60}"#;
/// The client runtime's thread name. CPU time of threads whose name starts with `load`
/// (these and the main thread) counts as the client's, the rest as the server's.
const CLIENT_THREAD: &str = "load-client";
/// How long a client pauses after a failed cycle.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the chosen scenarios; `Ok(false)` when a failure was observed.
fn run(args: &Args) -> anyhow::Result<bool> {
    ensure!(
        args.duration > 0.0 && args.duration <= 600.0,
        "--duration must be in (0, 600]"
    );
    ensure!(
        (0.0..=60.0).contains(&args.warmup),
        "--warmup must be in [0, 60]"
    );
    ensure!(args.poll_ms >= 1, "--poll-ms must be at least 1");
    // `base` is the server's `host:port`.
    let (base, handle) = match &args.url {
        Some(url) => (loopback_authority(url)?, None),
        None => {
            ensure!(
                args.clients + args.expiry_locks <= args.resources,
                "--resources must be at least --clients + --expiry-locks"
            );
            let (base, handle) = start_in_process(args)?;
            (base, Some(handle))
        }
    };
    // The durable server and the directory of its state file, which lives as long as it.
    let durable = if args.durable || args.durable_url.is_some() {
        let dir = tempfile::tempdir().context("creating the durable server's directory")?;
        let url = match &args.durable_url {
            Some(url) => url.clone(),
            None => format!("sqlite:///{}", dir.path().join("state.db").display()),
        };
        let persist = PersistUrl::parse(&url)?;
        // Shown with its password redacted.
        let url = persist.to_string();
        let (base, handle) = start_server(
            args,
            Variant {
                persist: Persist::Url(persist),
                ..Variant::default()
            },
        )?;
        println!("durable server at http://{base}, state in {url}");
        Some((base, handle, dir))
    } else {
        None
    };
    // The server with an auth config, and the directory of that file.
    let keyed = if args.auth {
        let dir = tempfile::tempdir().context("creating the auth config's directory")?;
        let path = dir.path().join("auth.yaml");
        std::fs::write(&path, auth_config()).context("writing the auth config")?;
        let (base, handle) = start_server(
            args,
            Variant {
                auth: Some(path),
                ..Variant::default()
            },
        )?;
        println!("keyed server at http://{base}, 8 API keys");
        Some((base, handle, dir))
    } else {
        None
    };
    // The server that counts nothing.
    let unmetered = if args.unmetered {
        let (base, _) = start_server(
            args,
            Variant {
                metrics: false,
                ..Variant::default()
            },
        )?;
        println!("unmetered server at http://{base}, metrics off");
        Some(base)
    } else {
        None
    };
    describe_setup(args, &base);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads as usize)
        .thread_name(CLIENT_THREAD)
        .enable_all()
        .build()
        .context("starting the client runtime")?;
    runtime.block_on(async {
        let mut loads = match args.scenario {
            Scenario::All => vec![Load::Baseline, Load::ById, Load::ByTag],
            Scenario::Baseline => vec![Load::Baseline],
            Scenario::ById => vec![Load::ById],
            Scenario::ByTag => vec![Load::ByTag],
            Scenario::Expiry | Scenario::Fulfil => vec![],
        };
        let servers = Servers {
            memory: base.clone(),
            durable: durable
                .as_ref()
                .map(|(base, handle, _)| (base.clone(), handle.clone())),
            keyed: keyed.as_ref().map(|(base, _, _)| base.clone()),
            unmetered,
        };
        if servers.durable.is_some() {
            loads.push(Load::Durable);
        }
        if servers.keyed.is_some() {
            loads.push(Load::Keyed);
        }
        if servers.unmetered.is_some() {
            loads.push(Load::Unmetered);
        }
        let mut ok = run_throughput(args, &servers, &loads).await?;
        if matches!(args.scenario, Scenario::Expiry | Scenario::All) {
            let lags = run_expiry(args, &base, handle.as_ref()).await?;
            ok &= lags.print();
        }
        if matches!(args.scenario, Scenario::Fulfil | Scenario::All) {
            ok &= run_fulfil(args, &base).await?;
        }
        Ok(ok)
    })
}

/// Runs `loads` one after the other, `--rounds` times, and prints a row per run, a
/// summary row per load (all rounds merged) and the ratios to the baseline. Returns
/// false if any cycle failed.
///
/// Rounds interleave the loads, so that a burst of other work on the machine lands on
/// one round of each rather than on one load; each ratio pairs a load with the baseline
/// of its own round, and the summary takes the median of those.
async fn run_throughput(args: &Args, servers: &Servers, loads: &[Load]) -> anyhow::Result<bool> {
    if loads.is_empty() {
        return Ok(true);
    }
    println!(
        "\n{:<12} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9} {:>8} {:>8}",
        "scenario",
        "cycles",
        "errors",
        "cycles/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "srv µs",
        "cli µs"
    );
    let mut merged: HashMap<Load, Stats> = HashMap::new();
    let mut rates: HashMap<Load, Vec<f64>> = HashMap::new();
    let commits_before = servers.durable.as_ref().map(|(_, h)| h.commit_stats());
    for round in 1..=args.rounds {
        for &load in loads {
            let mut stats = run_load(args, servers.base(load), load, Window::of(args)).await?;
            stats.print(&format!("{} #{round}", load.name()));
            rates.entry(load).or_default().push(stats.rate());
            merged.entry(load).or_default().merge(stats);
        }
    }
    let mut ok = true;
    if args.rounds > 1 {
        println!("all rounds:");
        for &load in loads {
            let stats = merged.get_mut(&load).expect("every load ran");
            stats.print(load.name());
        }
    }
    for stats in merged.values() {
        ok &= stats.errors == 0;
    }
    // Issue 10's target for SQLite; issue 14's for PostgreSQL (a server, a round trip).
    let on_postgres = args
        .durable_url
        .as_deref()
        .is_some_and(|u| u.starts_with("postgres"));
    let durable_target = if on_postgres { 0.30 } else { 0.50 };
    print_ratio(&rates, &merged, Load::Durable, Load::ById, durable_target);
    print_ratio(&rates, &merged, Load::Keyed, Load::ById, 0.90);
    print_ratio(&rates, &merged, Load::ById, Load::Unmetered, 0.95);
    if let (Some(before), Some((_, handle))) = (&commits_before, &servers.durable) {
        let c = handle.commit_stats().since(before);
        let per = |n: u64| n as f64 / c.commits.max(1) as f64;
        let bound = |q| {
            c.latency_quantile_micros(q)
                .map_or("> 1 s".to_owned(), |us| {
                    format!("<= {:.2} ms", us as f64 / 1000.0)
                })
        };
        println!(
            "durable commits: {} transactions, {} changes, {:.1} changes per commit, mean {:.3} ms, p50 {}, p99 {}",
            c.commits,
            c.changes,
            per(c.changes),
            per(c.micros) / 1000.0,
            bound(0.5),
            bound(0.99),
        );
        let sizes: Vec<String> = c
            .size
            .iter()
            .zip(
                BATCH_BUCKETS
                    .iter()
                    .map(|b| format!("<={b}"))
                    .chain(["more".to_owned()]),
            )
            .filter(|(n, _)| **n > 0)
            .map(|(n, b)| format!("{b}: {n}"))
            .collect();
        println!(
            "durable batch sizes (changes per commit): {}",
            sizes.join(", ")
        );
    }
    for load in [Load::ById, Load::ByTag] {
        print_ratio(&rates, &merged, load, Load::Baseline, 0.70);
    }
    Ok(ok)
}

/// Starts the real service on its own thread, as `rentabot serve` would run it, and
/// returns its base URL and broker handle. The thread lives until the process exits.
fn start_in_process(args: &Args) -> anyhow::Result<(String, BrokerHandle)> {
    start_server(args, Variant::default())
}

/// The key `keyed` sends: one of 8 in the config, so the gate compares against all.
const LOAD_KEY: &str = "load-tool-key-0123456789abcdef";

/// The `keyed` server's auth config: 8 user keys, the load tool's last, and a rate
/// limit far above what two cores can send (the limiter still runs).
fn auth_config() -> String {
    let mut config = String::from("api_keys:\n");
    for i in 0..7 {
        config.push_str(&format!(
            "  - {{name: \"job {i}\", key: \"other-key-{i}-0123456789abcdef\", role: user}}\n"
        ));
    }
    config.push_str(&format!(
        "  - {{name: \"load\", key: \"{LOAD_KEY}\", role: user}}\n"
    ));
    config.push_str("rate_limit: {requests_per_second: 1000000, burst: 1000000}\n");
    config
}

/// `load`'s cycle rate over `to`'s: the median of the rounds' ratios (each pair from
/// one round), against `target`; then the same comparison in CPU time per cycle (server
/// and client), which other work on the machine barely moves: what the rate ratio would
/// be if the tool had the cores to itself (only when the server's CPU time is known:
/// in-process, or `--server-pid`). Nothing when either load did not run.
fn print_ratio(
    rates: &HashMap<Load, Vec<f64>>,
    merged: &HashMap<Load, Stats>,
    load: Load,
    to: Load,
    target: f64,
) {
    let (Some(load_rates), Some(to_rates)) = (rates.get(&load), rates.get(&to)) else {
        return;
    };
    let mut ratios: Vec<f64> = load_rates
        .iter()
        .zip(to_rates)
        .map(|(a, b)| a / b)
        .collect();
    ratios.sort_by(f64::total_cmp);
    let median = percentile(&ratios, 0.5);
    let rounds = if ratios.len() > 1 {
        let each: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
        format!(", median of rounds {}", each.join(" "))
    } else {
        String::new()
    };
    println!(
        "{} / {} cycles/s: {median:.3}{rounds}  (target >= {target:.2}: {})",
        load.name(),
        to.name(),
        verdict(median >= target)
    );
    let cpu_per_cycle = |load| {
        merged
            .get(&load)
            .filter(|s| !s.cpu.server.is_zero())
            .map(|s: &Stats| {
                (s.cpu.server + s.cpu.client).as_secs_f64() / s.latencies_us.len().max(1) as f64
            })
            .filter(|c| *c > 0.0)
    };
    if let (Some(load_cpu), Some(to_cpu)) = (cpu_per_cycle(load), cpu_per_cycle(to)) {
        println!(
            "{} / {} by CPU time per cycle (server + client): {:.3}",
            load.name(),
            to.name(),
            to_cpu / load_cpu
        );
    }
}

/// How an extra in-process server differs from the main one.
struct Variant {
    persist: Persist,
    /// The auth config's path.
    auth: Option<std::path::PathBuf>,
    metrics: bool,
}

impl Default for Variant {
    fn default() -> Self {
        Variant {
            persist: Persist::Nowhere,
            auth: None,
            metrics: true,
        }
    }
}

/// [`start_in_process`], as `variant` says.
fn start_server(args: &Args, variant: Variant) -> anyhow::Result<(String, BrokerHandle)> {
    let Variant {
        persist,
        auth,
        metrics,
    } = variant;
    let settings = Settings {
        host: "127.0.0.1".to_owned(),
        port: 0,
        workers: args.workers,
        handle_signals: false,
        policy: Policy::default(),
        persist,
        auth,
        audit: AuditSettings {
            file: args.audit_log.clone(),
            ..AuditSettings::default()
        },
        metrics,
        ..Settings::default()
    };
    let mut specs: Vec<ResourceSpec> = (1..=args.resources)
        .map(|i| ResourceSpec::named(format!("board-{i}")).with_tags(&[args.tag.as_str()]))
        .collect();
    specs.push(ResourceSpec::named("fulfil-board").with_tags(&[args.fulfil_tag.as_str()]));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("rentabot-server".to_owned())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => return drop(tx.send(Err(anyhow::Error::from(e)))),
            };
            runtime.block_on(async move {
                match app::build(&settings, specs, Arc::new(SystemClock::new())) {
                    Ok(app) => {
                        let _ = tx.send(Ok((app.port(), app.handle())));
                        if let Err(e) = app.run_until_stopped().await {
                            eprintln!("load: in-process server failed: {e:#}");
                        }
                    }
                    Err(e) => drop(tx.send(Err(e))),
                }
            });
        })
        .context("starting the server thread")?;
    let (port, handle) = rx.recv().context("the server thread died")??;
    Ok((format!("127.0.0.1:{port}"), handle))
}

/// The `host:port` of an `http://` URL whose host is a loopback address.
fn loopback_authority(url: &str) -> anyhow::Result<String> {
    let uri: Uri = url
        .parse()
        .with_context(|| format!("invalid --url {url:?}"))?;
    ensure!(
        uri.scheme_str() == Some("http"),
        "--url must be http://host:port, got {url}"
    );
    let host = uri.host().unwrap_or_default();
    let is_loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !is_loopback {
        bail!("--url must point at this machine (127.0.0.0/8, ::1 or localhost), got {url}");
    }
    Ok(format!("{host}:{}", uri.port_u16().unwrap_or(80)))
}

fn describe_setup(args: &Args, base: &str) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let server = match &args.url {
        Some(_) => format!("external server at http://{base}"),
        None => format!(
            "in-process server at http://{base}, {} resources tagged {:?}, {} HTTP workers",
            args.resources,
            args.tag,
            args.workers.map_or("default".to_owned(), |w| w.to_string())
        ),
    };
    println!("{server}");
    println!(
        "{} clients on {} client thread(s); {} round(s) of {} s warm-up, {} s{} per scenario; {} cores; load average {}",
        args.clients,
        args.client_threads,
        args.rounds,
        args.warmup,
        args.duration,
        args.cycles
            .map_or(String::new(), |c| format!(" or {c} cycles")),
        cores,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}

fn verdict(pass: bool) -> &'static str {
    if pass { "PASS" } else { "FAIL" }
}

// ---------------------------------------------------------------------------------------
// Throughput scenarios

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Load {
    Baseline,
    ById,
    ByTag,
    /// By-id against the durable server (`--durable`).
    Durable,
    /// By-id against the server with auth, with a key (`--auth`).
    Keyed,
    /// By-id against the server with metrics off (`--unmetered`).
    Unmetered,
}

impl Load {
    fn name(self) -> &'static str {
        match self {
            Load::Baseline => "baseline",
            Load::ById => "by-id",
            Load::ByTag => "by-tag",
            Load::Durable => "durable",
            Load::Keyed => "keyed",
            Load::Unmetered => "unmetered",
        }
    }
}

/// Where each load runs: the in-memory server, or the durable one.
struct Servers {
    memory: String,
    durable: Option<(String, BrokerHandle)>,
    keyed: Option<String>,
    unmetered: Option<String>,
}

impl Servers {
    fn base(&self, load: Load) -> &str {
        let extra = match load {
            Load::Durable => self.durable.as_ref().map(|(base, _)| base),
            Load::Keyed => self.keyed.as_ref(),
            Load::Unmetered => self.unmetered.as_ref(),
            Load::Baseline | Load::ById | Load::ByTag => None,
        };
        extra.unwrap_or(&self.memory)
    }
}

/// The parts of a lock response the tool reads.
#[derive(Deserialize)]
struct LockReply {
    #[serde(rename = "lock-token")]
    lock_token: String,
    resource: ResourceReply,
    #[serde(rename = "expires-at")]
    expires_at: String,
    /// Absent from Rent-A-Bot 1.0 replies.
    #[serde(rename = "fencing-token")]
    fencing_token: Option<u64>,
}

#[derive(Deserialize)]
struct ResourceReply {
    id: u32,
    #[serde(rename = "lock-token")]
    lock_token: String,
}

#[derive(Deserialize)]
struct HealthReply {
    #[allow(dead_code)] // parsed so the baseline does the client-side work a lock does
    status: String,
}

#[derive(Deserialize)]
struct ResourceEnvelope {
    resource: ResourceReply,
}

/// One client: one keep-alive HTTP/1.1 connection, one request at a time.
///
/// hyper's connection-level client rather than reqwest: no pool, no URL parsing per
/// request, so the client spends little of the two cores it shares with the server.
struct Client {
    sender: SendRequest<Full<Bytes>>,
    /// `host:port`, for connecting and for the `Host` header.
    authority: String,
    /// Sends [`LOAD_KEY`] as `X-API-Key` with every request.
    keyed: bool,
}

impl Client {
    async fn connect(authority: &str) -> anyhow::Result<Client> {
        let stream = TcpStream::connect(authority)
            .await
            .with_context(|| format!("connecting to {authority}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        // Drives the connection; ends when the client is dropped or the server hangs up.
        tokio::spawn(connection);
        Ok(Client {
            sender,
            authority: authority.to_owned(),
            keyed: false,
        })
    }

    /// One cycle of `load`; `own_id` is the resource this client locks by id.
    async fn cycle(&mut self, load: Load, own_id: u32, tag: &str) -> anyhow::Result<()> {
        match load {
            Load::Baseline => {
                for _ in 0..2 {
                    self.get_json::<HealthReply>("/health").await?;
                }
            }
            Load::ById | Load::Durable | Load::Keyed | Load::Unmetered => {
                let path = format!("/api/v1/resources/{own_id}/lock");
                let lock = self.lock(&path, CYCLE_TTL_BODY).await?;
                self.unlock(own_id, &lock.lock_token).await?;
            }
            Load::ByTag => {
                let path = format!("/api/v1/resources/lock?tag={tag}");
                let lock = self.lock(&path, CYCLE_TTL_BODY).await?;
                self.unlock(lock.resource.id, &lock.lock_token).await?;
            }
        }
        Ok(())
    }

    /// Sends one request and reads the whole response; a non-2xx status is an error.
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: &'static str,
    ) -> anyhow::Result<Bytes> {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(HOST, &self.authority);
        if !body.is_empty() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        if self.keyed {
            request = request.header("x-api-key", LOAD_KEY);
        }
        let request = request.body(Full::new(Bytes::from_static(body.as_bytes())))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        ensure!(
            status.is_success(),
            "{method} {path}: {status} {}",
            String::from_utf8_lossy(&bytes)
        );
        Ok(bytes)
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(&mut self, path: &str) -> anyhow::Result<T> {
        let bytes = self.send(Method::GET, path, "").await?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    async fn lock(&mut self, path: &str, body: &'static str) -> anyhow::Result<LockReply> {
        let bytes = self.send(Method::POST, path, body).await?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    async fn unlock(&mut self, id: u32, token: &str) -> anyhow::Result<()> {
        let path = format!("/api/v1/resources/{id}/unlock?lock-token={token}");
        self.send(Method::POST, &path, "").await?;
        Ok(())
    }
}

/// What the clients of one scenario measured.
#[derive(Default)]
struct Stats {
    /// Per measured cycle, in microseconds.
    latencies_us: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
    measured: Duration,
    /// CPU time used over the measured window.
    cpu: CpuTime,
}

impl Stats {
    fn merge(&mut self, other: Stats) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
        self.measured += other.measured;
        self.cpu.server += other.cpu.server;
        self.cpu.client += other.cpu.client;
    }

    fn rate(&self) -> f64 {
        self.latencies_us.len() as f64 / self.measured.as_secs_f64()
    }

    fn print(&mut self, name: &str) {
        self.latencies_us.sort_unstable();
        let ms = |p: f64| percentile(&self.latencies_us, p) as f64 / 1000.0;
        let cycles = self.latencies_us.len().max(1) as f64;
        let per_cycle = |d: Duration| match d.is_zero() {
            true => "-".to_owned(),
            false => format!("{:.1}", d.as_secs_f64() * 1e6 / cycles),
        };
        println!(
            "{:<12} {:>9} {:>7} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>8} {:>8}",
            name,
            self.latencies_us.len(),
            self.errors,
            self.rate(),
            ms(0.50),
            ms(0.99),
            ms(1.0),
            per_cycle(self.cpu.server),
            per_cycle(self.cpu.client),
        );
        if let Some(e) = &self.first_error {
            println!("          first error: {e}");
        }
    }
}

/// The nearest-rank percentile of sorted `values` (0 when empty).
fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// How long a throughput scenario runs.
#[derive(Clone, Copy)]
struct Window {
    warmup: Duration,
    duration: Duration,
    cycles: Option<u64>,
}

impl Window {
    fn of(args: &Args) -> Window {
        Window {
            warmup: Duration::from_secs_f64(args.warmup),
            duration: Duration::from_secs_f64(args.duration),
            cycles: args.cycles,
        }
    }
}

async fn run_load(args: &Args, base: &str, load: Load, window: Window) -> anyhow::Result<Stats> {
    let start = Instant::now();
    let measure_from = start + window.warmup;
    let stop_at = measure_from + window.duration;
    let budget = Arc::new(AtomicU64::new(window.cycles.unwrap_or(u64::MAX)));
    let mut tasks = Vec::new();
    for i in 0..args.clients {
        let mut client = Client::connect(base).await?;
        client.keyed = load == Load::Keyed;
        let base = base.to_owned();
        let tag = args.tag.clone();
        let budget = budget.clone();
        tasks.push(tokio::spawn(async move {
            let mut stats = Stats::default();
            loop {
                let began = Instant::now();
                if began >= stop_at {
                    break;
                }
                let measured = began >= measure_from;
                if measured && !take_one(&budget) {
                    break;
                }
                match client.cycle(load, i + 1, &tag).await {
                    Ok(()) if measured => {
                        stats.latencies_us.push(began.elapsed().as_micros() as u64);
                    }
                    Ok(()) => {}
                    Err(e) => {
                        stats.errors += u64::from(measured);
                        stats.first_error.get_or_insert_with(|| format!("{e:#}"));
                        // The server may have closed the connection: reconnect, after
                        // a pause so that a dead server is not hammered.
                        tokio::time::sleep(ERROR_PAUSE).await;
                        if let Ok(mut fresh) = Client::connect(&base).await {
                            fresh.keyed = load == Load::Keyed;
                            client = fresh;
                        }
                    }
                }
            }
            (stats, Instant::now())
        }));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let cpu_before = cpu_time(args.server_pid);
    let mut total = Stats::default();
    let mut ended = measure_from;
    for task in tasks {
        let (stats, finished) = task.await.context("a client task panicked")?;
        total.merge(stats);
        ended = ended.max(finished);
    }
    total.measured = ended.saturating_duration_since(measure_from);
    total.cpu = cpu_time(args.server_pid).since(cpu_before);
    Ok(total)
}

/// CPU time (user + system) used by this process's threads, split into the in-process
/// server's and the client's, plus the threads of `server_pid` (an external server) as
/// the server's. Read from `/proc/<pid>/task/*/stat`, in 10 ms ticks; zero where that is
/// not available. Kernel work done in interrupts (loopback packet delivery)
/// is charged to whichever thread was running, so the split is approximate.
#[derive(Clone, Copy, Debug, Default)]
struct CpuTime {
    server: Duration,
    client: Duration,
}

impl CpuTime {
    fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            server: self.server.saturating_sub(earlier.server),
            client: self.client.saturating_sub(earlier.client),
        }
    }
}

fn cpu_time(server_pid: Option<u32>) -> CpuTime {
    let mut total = CpuTime::default();
    for (name, used) in thread_cpu_times("self") {
        if name.starts_with("load") {
            total.client += used;
        } else {
            total.server += used;
        }
    }
    if let Some(pid) = server_pid {
        for (_, used) in thread_cpu_times(&pid.to_string()) {
            total.server += used;
        }
    }
    total
}

/// The name and CPU time of each thread of process `pid` (`self` for this one).
fn thread_cpu_times(pid: &str) -> Vec<(String, Duration)> {
    /// Linux reports these times in USER_HZ, 100 per second on every architecture.
    const TICK: Duration = Duration::from_millis(10);
    let mut threads = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return threads;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // `tid (name) state ppid ...`; the name may hold spaces, so split at the last ')'.
        let Some((head, tail)) = stat.rsplit_once(')') else {
            continue;
        };
        let name = head.split_once('(').map_or("", |(_, name)| name);
        let fields: Vec<&str> = tail.split_whitespace().collect();
        // Fields 14 and 15 of the line (utime, stime) are the 12th and 13th after the name.
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
            .sum();
        threads.push((
            name.to_owned(),
            TICK * u32::try_from(ticks).unwrap_or(u32::MAX),
        ));
    }
    threads
}

/// Takes one cycle from the shared budget; false when it is spent.
fn take_one(budget: &AtomicU64) -> bool {
    budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
            left.checked_sub(1)
        })
        .is_ok()
}

// ---------------------------------------------------------------------------------------
// Expiry lag

/// One lock taken by the expiry scenario.
struct Expiring {
    resource: u32,
    fencing: Option<u64>,
    /// The deadline the server answered with, in Unix ms.
    expires_at_ms: i64,
}

/// When a lock was seen released.
#[derive(Clone, Copy)]
struct Release {
    /// Unix ms; fractional against --url.
    seen_at_ms: f64,
    /// The deadline the broker expired it at (the `Expired` event; in-process only).
    deadline_ms: Option<i64>,
}

struct Lags {
    /// Every lock taken, and its release if it was seen.
    locks: Vec<(Expiring, Option<Release>)>,
    lock_errors: u64,
    lagged_events: u64,
    in_process: bool,
}

impl Lags {
    /// Prints the report; false when something failed (early, missing, errors).
    fn print(&self) -> bool {
        let mut lags: Vec<f64> = Vec::new();
        let mut early = Vec::new();
        let mut missing = 0;
        for (lock, release) in &self.locks {
            let Some(release) = release else {
                missing += 1;
                continue;
            };
            let lag = release.seen_at_ms - lock.expires_at_ms as f64;
            let broker_deadline_earlier =
                release.deadline_ms.is_some_and(|d| d < lock.expires_at_ms);
            if lag < 0.0 || broker_deadline_earlier {
                early.push((lock.resource, lag));
            }
            lags.push(lag);
        }
        lags.sort_by(f64::total_cmp);
        let how = if self.in_process {
            "Expired event, broker clock, 1 ms resolution"
        } else {
            "first GET showing it free, client clock, includes the polling interval"
        };
        println!(
            "\nexpiry: {} locks with a 1 s TTL: {} released, {} missing, {} early, {} lock errors\n        ({how})",
            self.locks.len() as u64 + self.lock_errors,
            lags.len(),
            missing,
            early.len(),
            self.lock_errors
        );
        if self.lagged_events > 0 {
            println!(
                "        the event subscriber fell behind and missed {} events",
                self.lagged_events
            );
        }
        let p99 = percentile(&lags, 0.99);
        println!(
            "expiry lag ms: p50 {:.3}  p99 {:.3}  max {:.3}  (target p99 < 10 ms and never early: {})",
            percentile(&lags, 0.50),
            p99,
            percentile(&lags, 1.0),
            verdict(p99 < 10.0 && early.is_empty() && !lags.is_empty())
        );
        for (resource, lag) in &early {
            eprintln!(
                "!!! EARLY RELEASE: resource {resource} was released {:.3} ms BEFORE its deadline !!!",
                -lag
            );
        }
        early.is_empty() && missing == 0 && self.lock_errors == 0 && self.lagged_events == 0
    }
}

async fn run_expiry(
    args: &Args,
    base: &str,
    handle: Option<&BrokerHandle>,
) -> anyhow::Result<Lags> {
    let spread = Duration::from_millis(args.expiry_spread_ms);
    let give_up = tokio::time::Instant::now() + spread + RELEASE_GRACE;
    // In-process: subscribe before the first lock, so that no release can be missed.
    let watcher = handle.map(|h| {
        let events = h.subscribe();
        tokio::spawn(watch_expired_events(
            h.clone(),
            events,
            args.expiry_locks as usize,
            give_up,
        ))
    });

    // Optionally keep the server busy meanwhile, on ids below the expiry scenario's.
    let background = args.expiry_with_load.then(|| {
        let window = Window {
            warmup: Duration::ZERO,
            duration: spread + Duration::from_millis(1500),
            cycles: None,
        };
        let (args, base) = (args.clone(), base.to_owned());
        tokio::spawn(async move { run_load(&args, &base, Load::ById, window).await })
    });

    let start = tokio::time::Instant::now();
    let total = args.expiry_locks;
    let first_id = args.clients + 1;
    let clients = args.clients.min(total);
    let poll = Duration::from_millis(args.poll_ms);
    let is_external = handle.is_none();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut client = Client::connect(base).await?;
        let base = base.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut taken = Vec::new();
            let mut errors = 0;
            // Client c takes the c-th, (c+clients)-th, ... lock, each at its slot in
            // the spread.
            for k in (c..total).step_by(clients as usize) {
                tokio::time::sleep_until(start + spread * k / total).await;
                let id = first_id + k;
                match client.lock_expiring(id).await {
                    Ok(lock) => {
                        // Against a server elsewhere, watch each lock on a task of its
                        // own, so this client keeps to its pace.
                        let poller = is_external.then(|| {
                            let (base, token) = (base.clone(), lock.1.clone());
                            let expires_at_ms = lock.0.expires_at_ms;
                            tokio::spawn(async move {
                                let mut poller = Client::connect(&base).await.ok()?;
                                poller
                                    .poll_until_free(id, &token, expires_at_ms, poll)
                                    .await
                            })
                        });
                        taken.push((lock.0, poller));
                    }
                    Err(e) => {
                        errors += 1;
                        eprintln!("expiry: lock {id}: {e:#}");
                    }
                }
            }
            (taken, errors)
        }));
    }
    let mut locks = Vec::new();
    let mut lock_errors = 0;
    for task in tasks {
        let (taken, errors) = task.await.context("a client task panicked")?;
        for (lock, poller) in taken {
            let release = match poller {
                Some(p) => p.await.context("a poller panicked")?,
                None => None,
            };
            locks.push((lock, release));
        }
        lock_errors += errors;
    }
    if let Some(background) = background {
        let mut stats = background.await.context("the background load panicked")??;
        println!("\nbackground load during expiry:");
        stats.print(Load::ById.name());
    }
    let mut lagged_events = 0;
    if let Some(watcher) = watcher {
        let (seen, lagged) = watcher.await.context("the event watcher panicked")?;
        lagged_events = lagged;
        for (lock, release) in &mut locks {
            *release = lock.fencing.and_then(|f| seen.get(&f).copied());
        }
    }
    Ok(Lags {
        locks,
        lock_errors,
        lagged_events,
        in_process: !is_external,
    })
}

/// Collects `Expired` events until `wanted` arrived or `give_up`, keyed by fencing token
/// (the one number that names a grant), each timed on arrival with the broker's clock.
/// Returns them and how many events were missed for falling behind.
async fn watch_expired_events(
    handle: BrokerHandle,
    mut events: tokio::sync::broadcast::Receiver<std::sync::Arc<rentabot::runtime::Committed>>,
    wanted: usize,
    give_up: tokio::time::Instant,
) -> (HashMap<u64, Release>, u64) {
    let mut seen = HashMap::new();
    let mut lagged = 0;
    while seen.len() < wanted {
        match tokio::time::timeout_at(give_up, events.recv()).await {
            Ok(Ok(change)) => {
                for event in &change.events {
                    if let Event::Expired {
                        fencing, deadline, ..
                    } = event
                    {
                        let release = Release {
                            seen_at_ms: handle.now().as_millis() as f64,
                            deadline_ms: Some(deadline.as_millis() as i64),
                        };
                        seen.insert(fencing.get(), release);
                    }
                }
            }
            Ok(Err(RecvError::Lagged(n))) => lagged += n,
            Ok(Err(RecvError::Closed)) | Err(_) => break,
        }
    }
    (seen, lagged)
}

impl Client {
    /// Locks `id` for 1 s; returns the lock and its token.
    async fn lock_expiring(&mut self, id: u32) -> anyhow::Result<(Expiring, String)> {
        let reply = self
            .lock(&format!("/api/v1/resources/{id}/lock"), EXPIRY_TTL_BODY)
            .await?;
        let expires_at_ms = chrono::DateTime::parse_from_rfc3339(&reply.expires_at)
            .with_context(|| format!("expires-at {:?}", reply.expires_at))?
            .timestamp_millis();
        let lock = Expiring {
            resource: id,
            fencing: reply.fencing_token,
            expires_at_ms,
        };
        Ok((lock, reply.lock_token))
    }

    /// Polls `GET /resources/{id}` from shortly before the deadline until the lock held
    /// with `token` is gone; returns when a reply showed that, or `None` after
    /// [`RELEASE_GRACE`].
    async fn poll_until_free(
        &mut self,
        id: u32,
        token: &str,
        expires_at_ms: i64,
        poll: Duration,
    ) -> Option<Release> {
        let path = format!("/api/v1/resources/{id}");
        let lead = expires_at_ms as f64 - unix_ms() - 20.0;
        tokio::time::sleep(Duration::from_secs_f64(lead.max(0.0) / 1000.0)).await;
        let give_up = Instant::now() + RELEASE_GRACE;
        while Instant::now() < give_up {
            if let Ok(envelope) = self.get_json::<ResourceEnvelope>(&path).await
                && envelope.resource.lock_token != token
            {
                return Some(Release {
                    seen_at_ms: unix_ms(),
                    deadline_ms: None,
                });
            }
            tokio::time::sleep(poll).await;
        }
        None
    }
}

/// The client's wall clock, in fractional Unix milliseconds.
fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// The fulfil scenario: how long after the unlock that frees a resource the client
/// waiting for it learns, through a long-poll, that its reservation was fulfilled.
/// Returns false if a round failed.
async fn run_fulfil(args: &Args, base: &str) -> anyhow::Result<bool> {
    let tag = &args.fulfil_tag;
    let mut holder = Client::connect(base).await?;
    let mut waiter = Client::connect(base).await?;
    let lock_path = format!("/api/v1/resources/lock?tag={tag}");
    let reserve_body: &'static str = Box::leak(
        format!(r#"{{"tags":["{tag}"],"ttl":60,"max_wait_time":60,"auto_claim":true}}"#)
            .into_boxed_str(),
    );
    let mut latencies_us = Vec::with_capacity(args.fulfil_rounds as usize);
    let mut answered_first = 0;
    for _ in 0..args.fulfil_rounds {
        let lock = holder.lock(&lock_path, CYCLE_TTL_BODY).await?;
        let created: ReservationReply = serde_json::from_slice(
            &waiter
                .send(Method::POST, "/api/v1/reservations", reserve_body)
                .await?,
        )?;
        ensure!(
            created.status == "pending",
            "the reservation was {}, not pending",
            created.status
        );
        let poll_path = format!(
            "/api/v1/reservations/{}?wait=30&status=pending",
            created.reservation_id
        );
        let poll = tokio::spawn(async move {
            let reply = waiter.send(Method::GET, &poll_path, "").await;
            (Instant::now(), reply, waiter)
        });
        // Let the poll reach the server and park: this measures a waiter that is
        // already waiting, as a CI job would be.
        tokio::time::sleep(Duration::from_millis(2)).await;
        holder.unlock(lock.resource.id, &lock.lock_token).await?;
        let unlocked_at = Instant::now();
        let (answered_at, reply, client) = poll.await?;
        waiter = client;
        let served: ReservationReply = serde_json::from_slice(&reply?)?;
        ensure!(
            served.status == "claimed",
            "the poll answered {}",
            served.status
        );
        match answered_at.checked_duration_since(unlocked_at) {
            Some(lag) => latencies_us.push(lag.as_micros() as u64),
            // The poll's answer overtook the unlock's: the waiter knew first.
            None => {
                answered_first += 1;
                latencies_us.push(0);
            }
        }
        let id = served
            .resource_ids
            .first()
            .context("a fulfilled reservation has a resource")?;
        let token = served.lock_tokens.first().context("and its token")?;
        waiter.unlock(*id, token).await?;
    }
    latencies_us.sort_unstable();
    let ms = |p: f64| percentile(&latencies_us, p) as f64 / 1000.0;
    let p99 = ms(0.99);
    println!();
    println!(
        "fulfil: {} rounds, unlock response -> long-poll answer: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({} answered before the unlock's response)",
        latencies_us.len(),
        ms(0.50),
        p99,
        ms(1.0),
        answered_first
    );
    println!("fulfil target p99 < 5 ms: {}", verdict(p99 < 5.0));
    Ok(true)
}

/// The parts of a reservation the fulfil scenario reads.
#[derive(Deserialize)]
struct ReservationReply {
    reservation_id: String,
    status: String,
    resource_ids: Vec<u32>,
    lock_tokens: Vec<String>,
}
