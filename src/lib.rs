//! rentabot: a resource-locking and reservation broker, the Rust successor of Rent-A-Bot.
//!
//! # Layout
//!
//! ```text
//! domain/    the pure core: Broker (resources, locks, deadlines, tag index), descriptor
//!            parsing, errors, events. No IO, no async, never reads the clock.
//! runtime/   BrokerHandle (the only owner of the broker mutex), clocks, the expiry timer,
//!            descriptor reloads (API and SIGHUP).
//! api/       thin actix-web handlers for the Rent-A-Bot 1.0 API, wire types, errors,
//!            the OpenAPI document.
//! web/       the server-rendered HTML page.
//! auth/      who may do what: the auth config, API keys, JWTs, roles, the rule of every
//!            route, rate limits; not yet wired into the app.
//! app.rs     builds the service (shared by main and the tests) and runs it.
//! cli.rs     command line; config.rs finds and reads the descriptor; telemetry.rs logs.
//! ```
//!
//! Imports point one way: `domain` <- `runtime` <- `api`/`web`/`auth` <- `app`.

pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod domain;
pub mod runtime;
pub mod telemetry;
pub mod web;
