//! The dashboard's HTML (maud). The DOM it writes is a contract with the browser tests
//! and the script: ids, classes and `data-*` attributes are listed in README § The
//! dashboard; change them only together.
//!
//! Times are written as UTC in `<time datetime>` (RFC 3339) with a readable UTC text;
//! the script rewrites the text in the browser's local time and ticks the countdowns.

use std::time::Duration;

use maud::{DOCTYPE, Markup, html};

use super::assets;
use super::query::DashboardQuery;
use super::view::{FulfilledRow, QueueRow, Row, TagCount, View, format_duration};
use crate::domain::{Criteria, LockState, Released, Resource, ResourceState, Timestamp};

/// The whole page: header, filters, operator controls, and the live part; or, for an
/// anonymous caller when auth is on (`view` is `None`), the same page without any lab
/// data, asking for a key (`data-auth="key"`: the script then fetches the live part and
/// the event stream with the key typed in).
pub fn page(q: &DashboardQuery, warning: Duration, view: Option<&View<'_>>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "rentabot: lab dashboard" }
                // No icon: spares the browser a request for /favicon.ico (a 404).
                link rel="icon" href="data:,";
                // Without the script, reload every 30 s, as Rent-A-Bot 1.0's page did.
                noscript { meta http-equiv="refresh" content="30"; }
                link rel="stylesheet" href=(assets::CSS.url());
                script src=(assets::JS.url()) defer {}
            }
            body data-live="off" data-warning=(warning.as_secs())
                data-fragment="/dashboard/fragment" data-auth=[view.is_none().then_some("key")] {
                header {
                    h1 { "rentabot" }
                    p.muted {
                        "Lock and reserve through the "
                        a href="/docs/" { "API explorer" }
                        " · "
                        a href="/metrics" { "metrics" }
                    }
                    noscript {
                        p.notice { "Without JavaScript this page reloads every 30 seconds rather than on each change, and the operator buttons do nothing." }
                    }
                }
                (filters(q))
                (controls())
                main #live aria-live="off" {
                    @match view {
                        Some(view) => (live(view)),
                        None => (key_needed()),
                    }
                }
            }
        }
    }
}

fn key_needed() -> Markup {
    html! {
        section #auth-needed aria-labelledby="auth-heading" {
            h2 #auth-heading { "An API key is needed" }
            p {
                "This service requires a key to read the lab. Enter one (any role: readonly "
                "is enough to watch) under Operator controls above; the page then loads the lab "
                "with it and keeps it live. The key stays in this tab."
            }
            noscript {
                p.notice {
                    "Without JavaScript the key cannot be sent from this page: open it through "
                    "a proxy that adds an X-API-Key header, or enable JavaScript."
                }
            }
        }
    }
}

/// The parts of the page the script swaps in on every change (`/dashboard/fragment`).
pub fn live(view: &View<'_>) -> Markup {
    html! {
        (overview(view))
        (resources(view))
        (queue(view))
        (fulfilled(view))
    }
}

fn filters(q: &DashboardQuery) -> Markup {
    html! {
        form #filters method="get" action="/" role="search" aria-label="Filter resources" {
            div.field {
                label for="filter-tag" { "Tags (all of, comma-separated)" }
                input #filter-tag type="text" name="tag" value=(q.tags.join(","))
                    placeholder="e.g. arm,linux" maxlength="512";
            }
            div.field {
                label for="filter-name" { "Name contains" }
                input #filter-name type="search" name="name" value=(q.name.as_deref().unwrap_or(""))
                    maxlength=(super::query::MAX_NAME_CHARS);
            }
            div.field {
                label for="filter-state" { "State" }
                select #filter-state name="state" {
                    option value="" selected[q.state.is_none()] { "any" }
                    @for s in ResourceState::ALL {
                        option value=(s.as_str()) selected[q.state == Some(s)] { (label(s)) }
                    }
                }
            }
            div.field {
                label for="filter-per-page" { "Per page" }
                select #filter-per-page name="per_page" {
                    @for n in [50, 100, 200, 500] {
                        option value=(n) selected[q.per_page == n] { (n) }
                    }
                    @if ![50, 100, 200, 500].contains(&q.per_page) {
                        option value=(q.per_page) selected { (q.per_page) }
                    }
                }
            }
            div.field.buttons {
                button type="submit" { "Filter" }
                " "
                a href="/" { "Clear" }
            }
        }
    }
}

fn controls() -> Markup {
    html! {
        section #controls aria-labelledby="controls-heading" {
            h2 #controls-heading { "Operator controls" }
            p.muted {
                "The buttons in the table call the API with this key (kept in this tab only): "
                "operator for unavailable, available and force unlock; the lock's owner (user) for unlock."
            }
            div.field {
                label for="api-key" { "API key" }
                input #api-key type="password" autocomplete="off" spellcheck="false";
            }
            div.field {
                label for="action-reason" { "Reason (unavailable, force unlock)" }
                input #action-reason type="text" placeholder="maintenance from the dashboard" maxlength="256";
            }
            p #action-status role="status" {}
        }
    }
}

fn overview(view: &View<'_>) -> Markup {
    let o = &view.overview;
    let percent = (o.locked_in_service * 100)
        .checked_div(o.in_service)
        .unwrap_or(0);
    html! {
        section #overview aria-labelledby="overview-heading" data-now=(view.now.as_millis()) {
            h2 #overview-heading { "Overview" }
            p.muted { "The lab as of " (time(view.now, "rendered")) "." }
            div.cards {
                div.card {
                    h3 { "Utilisation" }
                    p #utilisation {
                        (o.locked_in_service) " of " (o.in_service) " locked (" (percent) "%)"
                    }
                    p.muted { "resources in service; " (o.total) " in the lab" }
                    ul #state-counts.plain {
                        @for (s, n) in ResourceState::ALL.iter().zip(o.counts) {
                            li {
                                a href={ "/?" (view.query.with_state(*s).to_query_string(1)) } {
                                    span class={ "badge state-" (s.as_str()) } { (label(*s)) }
                                }
                                " " span data-count=(s.as_str()) { (n) }
                            }
                        }
                    }
                }
                div.card {
                    h3 { "Queue" }
                    p #longest-wait {
                        @match o.longest_wait {
                            Some((id, since)) => {
                                "Longest wait: " (elapsed(since, view.now))
                                " (" code { (id) } ")"
                            }
                            None => "Longest wait: nothing waits",
                        }
                    }
                    p { (view.pending_total) " waiting, " (view.granted_total) " fulfilled" }
                }
                div.card #contended {
                    h3 { "Most contended tags" }
                    @if o.contended.is_empty() {
                        p.empty { "No tag is locked or waited for." }
                    } @else {
                        ol {
                            @for t in &o.contended {
                                li data-tag=(t.tag) {
                                    a href={ "/?" (view.query.only_tag(&t.tag).to_query_string(1)) } { span.tag { (t.tag) } }
                                    " "
                                    @if t.wanted > 0 { (t.wanted) " wanted by waiting reservations; " }
                                    (t.locked) " of " (t.total) " locked, " (t.free) " free"
                                }
                            }
                        }
                    }
                }
            }
            table #free-by-tag {
                caption {
                    "Free resources per tag"
                    @if o.tag_total > o.tags.len() {
                        " (the " (o.tags.len()) " tags on most resources, of " (o.tag_total) ")"
                    }
                }
                thead { tr { th scope="col" { "Tag" } th scope="col" { "Free" } th scope="col" { "Total" } } }
                tbody {
                    @for t in &o.tags { (tag_row(view, t)) }
                }
            }
        }
    }
}

fn tag_row(view: &View<'_>, t: &TagCount) -> Markup {
    html! {
        tr data-tag=(t.tag) {
            th scope="row" {
                a href={ "/?" (view.query.only_tag(&t.tag).to_query_string(1)) } { (t.tag) }
            }
            td.free { (t.free) }
            td.total { (t.total) }
        }
    }
}

fn resources(view: &View<'_>) -> Markup {
    let q = view.query;
    let first = (q.page - 1).saturating_mul(q.per_page as u64) + 1;
    let shown_to = first + view.rows.len() as u64 - 1;
    html! {
        section #resources-section aria-labelledby="resources-heading" {
            h2 #resources-heading { "Resources" }
            table #resources {
                caption {
                    @if view.rows.is_empty() {
                        "No resource on this page; " (view.matched) " match"
                    } @else {
                        "Resources " (first) " to " (shown_to) " of " (view.matched)
                    }
                    @if q.is_filtered() { " matching the filters" }
                    " (" (view.overview.total) " in the lab)"
                }
                thead {
                    tr {
                        th scope="col" { "Id" }
                        th scope="col" { "Name" }
                        th scope="col" { "State" }
                        th scope="col" { "Details" }
                        th scope="col" { "Tags" }
                        th scope="col" { "Actions" }
                    }
                }
                tbody {
                    @for row in &view.rows { (resource_row(view, row)) }
                }
            }
            (pager(view))
        }
    }
}

fn pager(view: &View<'_>) -> Markup {
    let q = view.query;
    let last = view.last_page();
    html! {
        nav #pages aria-label="Pages" {
            @if q.page > 1 {
                a rel="prev" href={ "/?" (q.to_query_string((q.page - 1).min(last))) } { "← Previous" }
                " "
            }
            span { "Page " (q.page) " of " (last) }
            @if q.page < last {
                " "
                a rel="next" href={ "/?" (q.to_query_string(q.page + 1)) } { "Next →" }
            }
        }
    }
}

fn resource_row(view: &View<'_>, row: &Row<'_>) -> Markup {
    let r = row.resource;
    let warn = r.expiring_soon(view.now, view.warning);
    html! {
        tr data-id=(r.id) data-name=(r.spec.name) data-state=(row.state.as_str())
            class=[warn.then_some("warn")] {
            td.id { (r.id) }
            td.name {
                span.resource-name { (r.spec.name) }
                @if !r.spec.description.is_empty() { br; span.muted.description { (r.spec.description) } }
            }
            td.state {
                span class={ "badge state-" (row.state.as_str()) } { (label(row.state)) }
            }
            td.details { (details(view, row)) }
            td.tags { @for tag in &r.spec.tags { span.tag { (tag) } " " } }
            td.actions { (actions(r, row.state)) }
        }
    }
}

fn details(view: &View<'_>, row: &Row<'_>) -> Markup {
    let r = row.resource;
    html! {
        @if let Some(lease) = r.lease() {
            div.lock {
                "Locked by "
                span.holder { (lease.meta.holder.as_deref().unwrap_or("anonymous")) }
                @if let Some(note) = &lease.meta.note { " · " span.note { (note) } }
                br;
                (countdown(lease.expires_at, view.now))
                " (until " (time(lease.expires_at, "local")) ")"
                @if let Some(rid) = lease.reservation { br; span.muted { "for " code { (rid) } } }
            }
        }
        @match &r.state {
            LockState::Free(Released::Expired(at)) => {
                div.released.muted { "Lock auto-expired at " (time(*at, "local")) }
            }
            LockState::Free(Released::ForceUnlocked { at, reason }) => {
                div.released.muted { "Force-unlocked at " (time(*at, "local")) ": " (reason) }
            }
            _ => {}
        }
        @if let Some(rid) = row.held_for {
            div.held-for { "Held for " code { (rid) } ", waiting in the queue" }
        }
        @if r.retiring {
            div.retiring { "Removed from the descriptor: goes when its lock ends" }
        }
        @if let Some(m) = &r.maintenance {
            @if m.active {
                div {
                    "Unavailable: " span.reason { (m.reason) }
                    @if let Some(until) = m.until {
                        " " span.until { "until " (time(until, "local")) }
                    } @else {
                        " " span.muted { "until an operator returns it" }
                    }
                }
            } @else {
                div.window {
                    "Maintenance from " (time(m.from, "local"))
                    @if let Some(until) = m.until { " to " (time(until, "local")) }
                    ": " span.reason { (m.reason) }
                    br;
                    span.muted { "lent only for locks that end before it" }
                }
            }
        }
    }
}

fn actions(r: &Resource, state: ResourceState) -> Markup {
    let id = r.id;
    let name = &r.spec.name;
    html! {
        @if !matches!(state, ResourceState::Unavailable | ResourceState::Retiring) {
            button type="button" data-action="unavailable" data-id=(id)
                aria-label={ "Mark " (name) " unavailable" } { "Unavailable" }
        }
        @if matches!(state, ResourceState::Unavailable | ResourceState::Draining)
            || (state == ResourceState::Locked && r.maintenance.is_some()) {
            button type="button" data-action="available" data-id=(id)
                aria-label={ "Mark " (name) " available" } { "Available" }
        }
        @if r.is_locked() {
            button type="button" data-action="force-unlock" data-id=(id)
                aria-label={ "Force unlock " (name) } { "Force unlock" }
            button type="button" data-action="unlock" data-id=(id)
                aria-label={ "Unlock " (name) " (your own lock)" } { "Unlock" }
        }
    }
}

fn queue(view: &View<'_>) -> Markup {
    html! {
        section #queue aria-labelledby="queue-heading" {
            h2 #queue-heading { "Queue" }
            @if view.queue.is_empty() {
                p.empty { "Nothing waits in the queue." }
            } @else if view.pending_total > view.queue.len() {
                p.muted { "The first " (view.queue.len()) " of " (view.pending_total) " waiting reservations (all of them: "
                    a href="/api/v1/reservations?status=pending" { "the API" } ")." }
            }
            table #queue-table {
                caption { "Waiting reservations in serving order" }
                thead {
                    tr {
                        th scope="col" { "Position" }
                        th scope="col" { "Reservation" }
                        th scope="col" { "Priority" }
                        th scope="col" { "Waiting" }
                        th scope="col" { "Wants" }
                        th scope="col" { "Estimated start" }
                    }
                }
                tbody {
                    @for row in &view.queue { (queue_row(view, row)) }
                }
            }
            p.muted {
                "Estimated start: when enough of the current locks will have expired to serve it, "
                "if locks alone stand in the way (early unlocks and reservations ahead can change it); "
                "unknown when out-of-service resources or too few matches stand in the way."
            }
        }
    }
}

fn queue_row(view: &View<'_>, row: &QueueRow<'_>) -> Markup {
    let r = row.reservation;
    let asked = r.request.priority.get();
    html! {
        tr data-reservation=(r.id) {
            td.position { (row.position) }
            td.reservation {
                code { (r.id) }
                @if let Some(holder) = &r.request.meta.holder { br; span.holder { (holder) } }
            }
            td.priority {
                (row.effective_priority)
                @if row.effective_priority != asked { " " span.muted { "(asked " (asked) ", aged)" } }
            }
            td.age { (elapsed(r.created_at, view.now)) }
            td.wants { (wants(r.request.groups.iter().map(|g| (&g.criteria, g.quantity)))) }
            td.eta {
                @match row.eta {
                    Some(t) if t <= view.now => "now",
                    Some(t) => (time(t, "local")),
                    None => "unknown",
                }
            }
        }
    }
}

fn wants<'a>(groups: impl Iterator<Item = (&'a Criteria, u32)>) -> Markup {
    html! {
        @for (i, (criteria, quantity)) in groups.enumerate() {
            @if i > 0 { "; " }
            (quantity) " × " (criteria_text(criteria))
        }
    }
}

fn criteria_text(criteria: &Criteria) -> Markup {
    html! {
        @match criteria {
            Criteria::Tags(tags) => { @for t in tags { span.tag { (t) } " " } }
            Criteria::Expr(expr) => code { (expr.to_string()) },
        }
    }
}

fn fulfilled(view: &View<'_>) -> Markup {
    html! {
        section #fulfilled aria-labelledby="fulfilled-heading" {
            h2 #fulfilled-heading { "Fulfilled reservations" }
            @if view.fulfilled.is_empty() {
                p.empty { "No reservation holds resources now." }
            } @else if view.granted_total > view.fulfilled.len() {
                p.muted { "The latest " (view.fulfilled.len()) " of " (view.granted_total) "." }
            }
            table #fulfilled-table {
                caption { "Fulfilled and claimed reservations, latest first, with their resources by group" }
                thead {
                    tr {
                        th scope="col" { "Reservation" }
                        th scope="col" { "Status" }
                        th scope="col" { "Fulfilled" }
                        th scope="col" { "Resources" }
                    }
                }
                tbody {
                    @for row in &view.fulfilled { (fulfilled_row(view, row)) }
                }
            }
        }
    }
}

fn fulfilled_row(view: &View<'_>, row: &FulfilledRow<'_>) -> Markup {
    let r = row.reservation;
    html! {
        tr data-reservation=(r.id) data-status=(r.status.as_str()) {
            td.reservation {
                code { (r.id) }
                @if let Some(holder) = &r.request.meta.holder { br; span.holder { (holder) } }
            }
            td.status { (r.status.as_str()) }
            td.fulfilled-at {
                @if let Some(at) = r.fulfilled_at { (elapsed(at, view.now)) " ago" }
            }
            td.resources {
                @for group in &row.groups {
                    div.group {
                        span.criteria { (group.quantity) " × " (criteria_text(group.criteria)) } ": "
                        @for (i, (id, name)) in group.resources.iter().enumerate() {
                            @if i > 0 { ", " }
                            span.resource data-id=(id) { (name) }
                        }
                    }
                }
            }
        }
    }
}

/// The state's label on its badge.
fn label(state: ResourceState) -> &'static str {
    match state {
        ResourceState::Free => "Free",
        ResourceState::Locked => "Locked",
        ResourceState::Held => "Held",
        ResourceState::Draining => "Draining",
        ResourceState::Unavailable => "Unavailable",
        ResourceState::Retiring => "Retiring",
    }
}

/// A moment: `datetime` in UTC, the text in UTC until the script rewrites it in local
/// time (`class`: `local`, or `rendered`).
fn time(t: Timestamp, class: &str) -> Markup {
    let iso = t.to_rfc3339();
    // `2026-01-15T10:10:00.000Z` -> `2026-01-15 10:10:00 UTC`
    let text = format!("{} {} UTC", &iso[..10], iso.get(11..19).unwrap_or(""));
    html! { time class=(class) datetime=(iso) { (text) } }
}

/// The time left until `end`, ticking (the script recomputes it every second).
fn countdown(end: Timestamp, now: Timestamp) -> Markup {
    html! {
        time.countdown datetime=(end.to_rfc3339()) {
            (format_duration(end.saturating_duration_since(now))) " left"
        }
    }
}

/// How long since `start`, ticking like a countdown.
fn elapsed(start: Timestamp, now: Timestamp) -> Markup {
    html! {
        time.elapsed datetime=(start.to_rfc3339()) {
            (format_duration(now.saturating_duration_since(start)))
        }
    }
}
