//! HTTP tests of the Rent-A-Bot 1.0 contract (reference/API-COMPAT.md), against the real
//! service on 127.0.0.1 with a manual clock. One binary, so the crate links once.

mod helpers;
#[path = "../support/pg.rs"]
mod pg;

mod admin;
mod audit;
mod auth;
mod caps;
mod chart;
mod criteria;
mod docs;
mod durability;
mod events;
mod expiry;
mod extend;
mod fencing;
mod health;
mod idempotency;
mod legacy;
mod limits;
mod locking;
mod maintenance;
mod methods;
mod metrics;
mod middleware;
mod observability;
mod origin;
mod ownership;
mod postgres;
mod queries;
mod reservations;
mod resources;
mod shutdown;
mod strict;
mod unlock;
mod web;
