//! The HTML page at `/`: every resource and its lock state, server-rendered.
//!
//! Self-contained (inline CSS, no scripts, nothing fetched from elsewhere) so it works on
//! an air-gapped lab network. The live dashboard is a later addition.

use actix_web::web::{self};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::api::broker::Broker;
use crate::domain::{LockState, Released, Resource};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index));
}

const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
h1{font-size:1.4rem}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.4rem .6rem;border-bottom:1px solid #ddd;vertical-align:top}
th{background:#f4f4f4}
.free{color:#176f2c;font-weight:600}
.locked{color:#a11;font-weight:600}
.out{color:#8a5a00;font-weight:600}
.tag{display:inline-block;background:#eef;border-radius:3px;padding:0 .3rem;margin:0 .2rem .2rem 0;font-size:.85em}
.muted{color:#777;font-size:.85em}
";

async fn index(broker: Broker) -> Markup {
    let resources = broker.resources();
    let locked = resources.iter().filter(|r| r.is_locked()).count();
    let out = resources.iter().filter(|r| !r.in_service()).count();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "rentabot: resources" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { "Resources" }
                p.muted {
                    (resources.len()) " resources, " (locked) " locked, " (out) " unavailable. "
                    a href="/docs/" { "API explorer" }
                }
                table {
                    thead { tr { th { "Id" } th { "Name" } th { "Lock status" } th { "Description" } th { "Endpoint" } th { "Tags" } } }
                    tbody {
                        @for r in &resources { (row(r)) }
                    }
                }
            }
        }
    }
}

fn row(r: &Resource) -> Markup {
    html! {
        tr {
            td { (r.id) }
            td { (r.spec.name) }
            td {
                @match &r.state {
                    LockState::Locked(lease) => {
                        span.locked { "Locked" }
                        br;
                        span.muted { "until " (lease.expires_at) " (fencing " (lease.fencing.get()) ")" }
                        @if let Some(holder) = &lease.meta.holder {
                            br;
                            span.muted { "by " (holder) }
                        }
                    }
                    LockState::Free(Released::Expired(at)) => {
                        span.free { "Available" }
                        br;
                        span.muted { "auto-expired at " (at) }
                    }
                    LockState::Free(_) => span.free { "Available" },
                }
                @if let Some((reason, until)) = r.out_of_service() {
                    br;
                    span.out { "Unavailable" }
                    br;
                    span.muted {
                        (reason)
                        @if let Some(until) = until { " (until " (until) ")" }
                    }
                } @else if let Some(m) = &r.maintenance {
                    br;
                    span.muted { "maintenance from " (m.from) ": " (m.reason) }
                }
            }
            td { (r.spec.description) }
            td { (r.spec.endpoint) }
            td { @for tag in &r.spec.tags { span.tag { (tag) } } }
        }
    }
}
