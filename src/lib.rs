//! rentabot: a resource-locking and reservation broker, the Rust successor of Rent-A-Bot.
//!
//! # Layout
//!
//! ```text
//! domain/    the pure core: Broker (resources, locks, deadlines, tag index, the queue),
//!            descriptor parsing, errors, events, the state as rows (Image, Delta).
//!            No IO, no async, never reads the clock, no randomness of its own.
//! runtime/   BrokerHandle (the only owner of the broker mutex), the change stream
//!            (numbered changes, Committer, Ledger, Publisher), clocks, entropy, the
//!            expiry timer, descriptor reloads (API and SIGHUP).
//! audit/     the audit log: records from committed changes and refused requests, the
//!            bounded ring queries read, the JSON-lines file.
//! store/     persistence: consumes the change stream (SQLite or PostgreSQL, group commit), restores.
//! api/       thin actix-web handlers for the Rent-A-Bot 1.0 API and its extensions,
//!            wire types, errors, the OpenAPI document, middleware.
//! web/       the live dashboard at `/`: server-rendered HTML, its script and stylesheet.
//! metrics/   GET /metrics: gauges counted from a snapshot at scrape time, counters and
//!            histograms from the change stream and the HTTP middleware.
//! auth/      who may do what: the auth config, API keys, JWTs, roles, the rule of every
//!            route, rate limits.
//! app.rs     builds the service (shared by main and the tests) and runs it.
//! cli.rs     command line; config.rs finds and reads the descriptor; telemetry.rs logs;
//! tools.rs   backup, export, import of a state file; health_probe.rs `rentabot health`.
//! client/    the command-line client (`rentabot lock`, `run`, ...): the HTTP API only,
//!            through a blocking client; names nothing else of the crate.
//! ```
//!
//! Imports point one way: `domain` <- `runtime` <- `audit` <- `store`, `api`/`web`/`auth`
//! <- `app`.

pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod domain;
pub mod health_probe;
pub mod metrics;
pub mod runtime;
pub mod standby;
pub mod store;
pub mod telemetry;
pub mod tools;
pub mod web;

/// mimalloc instead of glibc's malloc: the lock+unlock path allocates a few dozen small,
/// short-lived objects a request (headers, JSON, events), and glibc's bins and
/// consolidation cost about 3 us of a 28 us cycle (BENCHMARKS.md, HTTP overhead).
/// Declared here so the service, its tests, benches and the load tool all run it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
