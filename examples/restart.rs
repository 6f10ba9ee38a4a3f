//! `restart`: how long the service takes to be ready on a large persisted state.
//!
//! ```text
//! cargo build --release && cargo run --release --example restart -- --resources 100000 --locks 10000
//! ```
//!
//! Writes a state file of `--resources` resources (all tagged `board`) with `--locks` of
//! them locked, through the store the service uses, then starts the release binary on it
//! with the matching descriptor, `--rounds` times, and reports the time from spawning the
//! process to the first `/readiness` 200 (load, index rebuild, descriptor merge, and the
//! commit of that merge).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use rentabot::domain::{Broker, Image, Policy, ResourceId, ResourceSpec, Seeded, Timestamp, Ttl};
use rentabot::runtime::{Cause, Change};
use rentabot::store::sqlite::SqliteStore;
use rentabot::store::{Backend, Batch};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 100_000)]
    resources: u32,
    #[arg(long, default_value_t = 10_000)]
    locks: u32,
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// The service binary.
    #[arg(long, default_value = "target/release/rentabot")]
    binary: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("state.db");
    let descriptor = dir.path().join("lab.yaml");
    let specs: Vec<ResourceSpec> = (1..=args.resources)
        .map(|i| ResourceSpec::named(format!("board-{i:06}")).with_tags(&["board"]))
        .collect();
    let yaml: String = specs
        .iter()
        .map(|s| format!("{}:\n    tags: \"board\"\n", s.name))
        .collect();
    std::fs::write(&descriptor, yaml)?;

    // The state, written as the service writes it. Locks last a day from now.
    let now = Timestamp::from_millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as u64,
    );
    let started = Instant::now();
    let mut broker = Broker::restore(
        Image::default(),
        Policy::default(),
        Box::new(Seeded::new(1)),
        true,
    );
    broker.reload(specs, now);
    for i in 1..=args.locks {
        broker
            .lock(ResourceId::new(i), Ttl::from_secs(86_400)?, now)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let change = Change {
        seq: 1,
        at: now,
        cause: Cause::system(),
        events: broker.drain_events(),
        delta: broker.take_delta(),
        awaits_record: false,
    };
    let (mut store, _) = SqliteStore::open(&db)?;
    store
        .commit(&Batch {
            changes: std::slice::from_ref(&change),
            records: &[],
            next_event: 1 + change.events.len() as u64,
            now,
            answers: &[],
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    drop(store);
    println!(
        "state: {} resources, {} locked, {:.1} MB, written in {:.2?}",
        args.resources,
        args.locks,
        std::fs::metadata(&db)?.len() as f64 / 1e6,
        started.elapsed()
    );

    for round in 1..=args.rounds {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let spawned = Instant::now();
        let mut child = Command::new(&args.binary)
            .arg("--config")
            .arg(&descriptor)
            .arg("--persist")
            .arg(format!("sqlite:///{}", db.display()))
            .args(["--port", &port.to_string(), "--log-level", "warn"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", args.binary.display()))?;
        let ready = loop {
            if spawned.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                bail!("not ready within 60 s");
            }
            if let Some(status) = child.try_wait()? {
                bail!("the service exited: {status}");
            }
            if readiness(port) {
                break spawned.elapsed();
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        child.kill()?;
        child.wait()?;
        println!("round {round}: ready after {ready:.2?}");
    }
    Ok(())
}

/// Whether `GET /readiness` answers 200, over a raw connection (no client library).
fn readiness(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream
        .write_all(b"GET /readiness HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && &head[9..12] == b"200"
}
