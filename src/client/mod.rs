//! The command-line client (`rentabot lock`, `run`, ...): README § Command-line client.
//!
//! It speaks the v1 HTTP API only, through a small blocking client (`http.rs`, ureq);
//! it names nothing else of the crate (tests/layering.rs), so it works against any
//! rentabot version that serves the API. Answers are read as JSON values, not the
//! server's types: those are built for writing, and the client should not break on a
//! field it does not know.
//!
//! Output: one line (or a small table) for people on stdout, or the API's JSON with
//! `--json`; errors on stderr with the API's message and code; the exit code says what
//! kind of failure it was (`exit.rs`).

mod args;
pub mod exit;
mod http;
mod run;
mod wait;

use std::io::Write;
use std::time::Duration;

use serde_json::{Map, Value, json};

pub use args::ClientCommand;
use args::{
    Connection, ExtendArgs, LockArgs, LockTerms, LsArgs, MaintenanceAction, ReserveArgs, Select,
    StatusArgs, UnlockArgs, Wanted,
};
use http::{Api, Failure};

/// Runs a client command and returns its exit code (`exit.rs`).
pub fn main(command: ClientCommand) -> u8 {
    if let ClientCommand::Run(args) = command {
        return run::run(args);
    }
    let json = connection(&command).json;
    match execute(command) {
        Ok(answer) => {
            let mut out = std::io::stdout().lock();
            let written = if json {
                writeln!(out, "{}", answer.json)
            } else if answer.human.is_empty() {
                Ok(())
            } else {
                writeln!(out, "{}", answer.human.trim_end())
            };
            // A reader that went away (`| head`) has what it wanted.
            let _ = written.and_then(|()| out.flush());
            exit::OK
        }
        Err(failure) => {
            report(&failure);
            failure.exit_code()
        }
    }
}

/// Prints a failure on stderr: the API's message and code, or what went wrong.
fn report(failure: &Failure) {
    let _ = writeln!(std::io::stderr(), "rentabot: {failure}");
}

/// What a command prints: for people, and the API's JSON.
struct Answer {
    human: String,
    json: Value,
}

fn connection(command: &ClientCommand) -> &Connection {
    match command {
        ClientCommand::Lock(a) => &a.conn,
        ClientCommand::Unlock(a) => &a.conn,
        ClientCommand::Extend(a) => &a.conn,
        ClientCommand::Reserve(a) => &a.conn,
        ClientCommand::Wait(a) => &a.conn,
        ClientCommand::Claim(a) | ClientCommand::Cancel(a) => &a.conn,
        ClientCommand::Status(a) => &a.conn,
        ClientCommand::Ls(a) => &a.conn,
        ClientCommand::Maintenance(a) => match &a.action {
            MaintenanceAction::Start { conn, .. }
            | MaintenanceAction::End { conn, .. }
            | MaintenanceAction::ForceUnlock { conn, .. } => conn,
        },
        ClientCommand::Run(a) => &a.conn,
    }
}

fn execute(command: ClientCommand) -> Result<Answer, Failure> {
    let api = Api::new(connection(&command));
    match command {
        ClientCommand::Lock(a) => lock(&api, &a),
        ClientCommand::Unlock(a) => unlock(&api, &a),
        ClientCommand::Extend(a) => extend(&api, &a),
        ClientCommand::Reserve(a) => reserve(&api, &a),
        ClientCommand::Wait(a) => {
            let progress = wait::Progress::start();
            let r = wait::reservation(
                &api,
                &a.reservation,
                None,
                Duration::from_secs(a.timeout),
                &progress,
            )?;
            Ok(reservation_answer(r))
        }
        ClientCommand::Claim(a) => {
            let r = api.post(&format!("/reservations/{}/claim", a.reservation), &[], None)?;
            Ok(reservation_answer(r))
        }
        ClientCommand::Cancel(a) => {
            api.delete(&format!("/reservations/{}", a.reservation))?;
            Ok(Answer {
                human: format!("cancelled {}", a.reservation),
                json: json!({"reservation_id": a.reservation, "cancelled": true}),
            })
        }
        ClientCommand::Status(a) => status(&api, &a),
        ClientCommand::Ls(a) => ls(&api, &a),
        ClientCommand::Maintenance(a) => maintenance(&api, a.action),
        ClientCommand::Run(_) => unreachable!("run is handled by run::run"),
    }
}

/// The lock body: ttl, holder, note (those given).
fn lock_body(terms: &LockTerms) -> Value {
    let mut body = Map::new();
    if let Some(ttl) = terms.ttl {
        body.insert("ttl".into(), ttl.into());
    }
    if let Some(holder) = &terms.holder {
        body.insert("holder".into(), holder.clone().into());
    }
    if let Some(note) = &terms.note {
        body.insert("note".into(), note.clone().into());
    }
    Value::Object(body)
}

/// `POST /resources/{id}/lock`, or `POST /resources/lock?name=|tag=|expr=&quantity=`.
fn lock_request(
    api: &Api,
    select: &Select,
    quantity: Option<u32>,
    terms: &LockTerms,
) -> Result<Value, Failure> {
    let body = lock_body(terms);
    if let Some(id) = select.id {
        if quantity.is_some_and(|q| q > 1) {
            return Err(Failure::Usage(
                "--quantity needs --tag or --expr: --id names one resource".into(),
            ));
        }
        return api.post(&format!("/resources/{id}/lock"), &[], Some(&body));
    }
    let mut query = criteria(select);
    if let Some(q) = quantity {
        if select.name.is_some() && q > 1 {
            return Err(Failure::Usage(
                "--quantity needs --tag or --expr: --name names one resource".into(),
            ));
        }
        query.push(("quantity", q.to_string()));
    }
    api.post("/resources/lock", &query, Some(&body))
}

/// The query of a lock by criteria.
fn criteria(select: &Select) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    if let Some(name) = &select.name {
        query.push(("name", name.clone()));
    }
    for tag in &select.tags {
        query.push(("tag", tag.clone()));
    }
    if let Some(expr) = &select.expr {
        query.push(("expr", expr.clone()));
    }
    query
}

fn lock(api: &Api, a: &LockArgs) -> Result<Answer, Failure> {
    let answer = lock_request(api, &a.select, a.quantity, &a.terms)?;
    Ok(Answer {
        human: locks_of(&answer)
            .iter()
            .map(|l| {
                format!(
                    "locked {} (id {}) until {}, fencing token {}, lock token {}\n",
                    l["resource"]["name"].as_str().unwrap_or("?"),
                    l["resource"]["id"],
                    l["expires-at"].as_str().unwrap_or("?"),
                    l["fencing-token"],
                    l["lock-token"].as_str().unwrap_or("?"),
                )
            })
            .collect(),
        json: answer,
    })
}

/// The locks of a lock answer: itself (one lock), or its `locks` (several).
fn locks_of(answer: &Value) -> Vec<&Value> {
    match answer["locks"].as_array() {
        Some(locks) => locks.iter().collect(),
        None => vec![answer],
    }
}

fn unlock(api: &Api, a: &UnlockArgs) -> Result<Answer, Failure> {
    match a.id {
        Some(id) => {
            let [token] = a.tokens.as_slice() else {
                return Err(Failure::Usage(
                    "one --token with a resource id; without the id, several are released at once"
                        .into(),
                ));
            };
            let answer = api.post(
                &format!("/resources/{id}/unlock"),
                &[("lock-token", token.clone())],
                None,
            )?;
            Ok(Answer {
                human: format!("unlocked resource {id}"),
                json: answer,
            })
        }
        None => {
            let answer = api.post(
                "/resources/unlock-batch",
                &[],
                Some(&json!({"lock_tokens": a.tokens})),
            )?;
            let ids: Vec<String> = answer["resource_ids"]
                .as_array()
                .map(|ids| ids.iter().map(Value::to_string).collect())
                .unwrap_or_default();
            Ok(Answer {
                human: format!("unlocked resources {}", ids.join(", ")),
                json: answer,
            })
        }
    }
}

fn extend(api: &Api, a: &ExtendArgs) -> Result<Answer, Failure> {
    let answer = api.post(
        &format!("/resources/{}/extend", a.id),
        &[
            ("lock-token", a.token.clone()),
            ("additional-ttl", a.ttl.to_string()),
        ],
        None,
    )?;
    Ok(Answer {
        human: format!(
            "extended resource {} until {}",
            a.id,
            answer["new-expires-at"].as_str().unwrap_or("?")
        ),
        json: answer,
    })
}

/// The body of `POST /reservations`.
fn reservation_body(w: &Wanted, max_wait: Option<u64>, auto_claim: bool) -> Value {
    let mut body = match lock_body(&w.terms) {
        Value::Object(body) => body,
        _ => Map::new(),
    };
    match &w.expr {
        Some(expr) => body.insert("expr".into(), expr.clone().into()),
        None => body.insert("tags".into(), json!(w.tags)),
    };
    if let Some(q) = w.quantity {
        body.insert("quantity".into(), q.into());
    }
    if let Some(p) = w.priority {
        body.insert("priority".into(), p.into());
    }
    if let Some(m) = max_wait {
        body.insert("max_wait_time".into(), m.into());
    }
    if auto_claim {
        body.insert("auto_claim".into(), true.into());
    }
    Value::Object(body)
}

fn reserve(api: &Api, a: &ReserveArgs) -> Result<Answer, Failure> {
    let created = api.post(
        "/reservations",
        &[],
        Some(&reservation_body(&a.wanted, a.max_wait, a.auto_claim)),
    )?;
    if !a.wait {
        return Ok(reservation_answer(created));
    }
    let id = created["reservation_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let progress = wait::Progress::start();
    match wait::reservation(
        api,
        &id,
        Some(created),
        Duration::from_secs(a.timeout),
        &progress,
    ) {
        Ok(r) => Ok(reservation_answer(r)),
        Err(failure @ Failure::Timeout(_)) => {
            progress.finish();
            run::withdraw(api, &id);
            Err(failure)
        }
        Err(other) => Err(other),
    }
}

/// A reservation, for people: its id, status, and where it is or what it got.
fn reservation_answer(r: Value) -> Answer {
    let id = r["reservation_id"].as_str().unwrap_or("?");
    let status = r["status"].as_str().unwrap_or("?");
    let human = match status {
        "pending" => format!("{id} pending: {}", wait::describe_wait(&r)),
        _ => {
            let list = |k: &str| {
                r[k].as_array()
                    .map(|a| {
                        a.iter()
                            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default()
            };
            let mut line = format!("{id} {status}: resources {}", list("resource_ids"));
            if status == "fulfilled" {
                line.push_str(&format!(
                    "; claim by {}",
                    r["claim_expires_at"].as_str().unwrap_or("?")
                ));
            }
            let tokens = list("lock_tokens");
            if !tokens.is_empty() {
                line.push_str(&format!("; lock tokens {tokens}"));
            }
            line
        }
    };
    Answer { human, json: r }
}

fn status(api: &Api, a: &StatusArgs) -> Result<Answer, Failure> {
    match a.what.as_deref() {
        None => {
            let ready = match api.get_root("/readiness") {
                Ok(r) => r,
                Err(Failure::Api {
                    body, status: 503, ..
                }) => body,
                Err(other) => return Err(other),
            };
            // Counts from list queries (`total`), not the whole list: cheap at any size.
            let total = |path: &str, filter: &[(&'static str, &str)]| -> Result<u64, Failure> {
                let mut query: Vec<(&str, String)> =
                    filter.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
                query.push(("limit", "1".to_owned()));
                Ok(api.get(path, &query)?["total"].as_u64().unwrap_or(0))
            };
            let resources = total("/resources", &[])?;
            let locked = total("/resources", &[("locked", "true")])?;
            let out = total("/resources", &[("unavailable", "true")])?;
            let waiting = total("/reservations", &[("status", "pending")])?;
            let mut human = format!(
                "{}: {}; {resources} resources, {locked} locked, {out} unavailable; {waiting} reservations waiting",
                api.base(),
                ready["status"].as_str().unwrap_or("?"),
            );
            if let Some(reasons) = ready["reasons"].as_array() {
                for reason in reasons {
                    human.push_str(&format!("\n  {}", reason.as_str().unwrap_or_default()));
                }
            }
            Ok(Answer {
                human,
                json: json!({"readiness": ready, "resources": resources, "locked": locked,
                             "unavailable": out, "waiting": waiting}),
            })
        }
        Some(rid) if rid.starts_with("res_") => Ok(reservation_answer(
            api.get(&format!("/reservations/{rid}"), &[])?,
        )),
        Some(what) => {
            let resource = resource_by_id_or_name(api, what)?;
            Ok(Answer {
                human: describe_resource(&resource),
                json: json!({ "resource": resource }),
            })
        }
    }
}

/// A resource by its id (digits) or its exact name.
fn resource_by_id_or_name(api: &Api, what: &str) -> Result<Value, Failure> {
    if let Ok(id) = what.parse::<u32>() {
        return Ok(api.get(&format!("/resources/{id}"), &[])?["resource"].take());
    }
    let page = api.get(
        "/resources",
        &[("name", what.to_owned()), ("limit", "1000".into())],
    )?;
    page["resources"]
        .as_array()
        .and_then(|list| list.iter().find(|r| r["name"] == what))
        .cloned()
        .ok_or_else(|| Failure::Api {
            status: 404,
            code: "resource_not_found".into(),
            message: format!("no resource is named {what:?}"),
            body: Value::Null,
        })
}

fn is_locked(r: &Value) -> bool {
    r["lock-token"].as_str().is_some_and(|t| !t.is_empty())
}

/// A resource, for people: a few lines.
fn describe_resource(r: &Value) -> String {
    let s = |k: &str| r[k].as_str().unwrap_or_default();
    let mut out = format!("{} (id {}): {}\n", s("name"), r["id"], state_of(r));
    if is_locked(r) {
        out.push_str(&format!(
            "  locked until {}, fencing token {}",
            s("lock-expires-at"),
            r["fencing-token"]
        ));
        if !s("lock-holder").is_empty() {
            out.push_str(&format!(", by {}", s("lock-holder")));
        }
        if !s("lock-note").is_empty() {
            out.push_str(&format!(" ({})", s("lock-note")));
        }
        out.push('\n');
    }
    if r["unavailable"] == true || !s("unavailable-reason").is_empty() {
        out.push_str(&format!(
            "  maintenance: {} from {} until {}\n",
            s("unavailable-reason"),
            s("unavailable-since"),
            r["unavailable-until"].as_str().unwrap_or("further notice")
        ));
    }
    for (key, label) in [
        ("endpoint", "endpoint"),
        ("tags", "tags"),
        ("description", "about"),
    ] {
        if !s(key).is_empty() {
            out.push_str(&format!("  {label}: {}\n", s(key)));
        }
    }
    out
}

/// free, locked, unavailable, or locked+unavailable.
fn state_of(r: &Value) -> &'static str {
    match (is_locked(r), r["unavailable"] == true) {
        (true, true) => "locked, unavailable",
        (true, false) => "locked",
        (false, true) => "unavailable",
        (false, false) => "free",
    }
}

fn ls(api: &Api, a: &LsArgs) -> Result<Answer, Failure> {
    let mut query = vec![("limit", a.limit.to_string())];
    for tag in &a.tags {
        query.push(("tag", tag.clone()));
    }
    if a.queue {
        let page = api.get("/reservations", &query)?;
        let mut human = format!(
            "{:<40} {:<9} {:>8} {:>8}  wants\n",
            "reservation", "status", "position", "priority"
        );
        for r in page["reservations"].as_array().into_iter().flatten() {
            let wants: Vec<String> = r["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|g| {
                    let what = match g["expr"].as_str() {
                        Some(expr) => expr.to_owned(),
                        None => g["tags"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(","),
                    };
                    format!("{}x {what}", g["quantity"])
                })
                .collect();
            human.push_str(&format!(
                "{:<40} {:<9} {:>8} {:>8}  {}\n",
                r["reservation_id"].as_str().unwrap_or("?"),
                r["status"].as_str().unwrap_or("?"),
                r["position_in_queue"]
                    .as_u64()
                    .map_or_else(|| "-".to_owned(), |p| p.to_string()),
                r["priority"].as_u64().unwrap_or_default(),
                wants.join(" + ")
            ));
        }
        human.push_str(&more(&page, "reservations"));
        return Ok(Answer { human, json: page });
    }
    if let Some(expr) = &a.expr {
        query.push(("expr", expr.clone()));
    }
    if let Some(name) = &a.name {
        query.push(("name", name.clone()));
    }
    if a.locked {
        query.push(("locked", "true".into()));
    }
    if a.free {
        query.push(("locked", "false".into()));
    }
    let page = api.get("/resources", &query)?;
    let mut human = format!(
        "{:>5}  {:<24} {:<20} {:<24} tags\n",
        "id", "name", "state", "until"
    );
    for r in page["resources"].as_array().into_iter().flatten() {
        human.push_str(&format!(
            "{:>5}  {:<24} {:<20} {:<24} {}\n",
            r["id"].as_u64().unwrap_or_default(),
            r["name"].as_str().unwrap_or("?"),
            state_of(r),
            r["lock-expires-at"].as_str().unwrap_or("-"),
            r["tags"].as_str().unwrap_or_default()
        ));
    }
    human.push_str(&more(&page, "resources"));
    Ok(Answer { human, json: page })
}

/// A last line when the page does not hold every match.
fn more(page: &Value, list: &str) -> String {
    let shown = page[list].as_array().map_or(0, Vec::len);
    match page["total"].as_u64() {
        Some(total) if total > shown as u64 => format!("({shown} of {total} shown)\n"),
        _ => String::new(),
    }
}

fn maintenance(api: &Api, action: MaintenanceAction) -> Result<Answer, Failure> {
    let answer = match action {
        MaintenanceAction::Start {
            id,
            reason,
            from,
            until,
            ..
        } => {
            let mut body = json!({ "reason": reason });
            if let Some(from) = from {
                body["from"] = from.into();
            }
            if let Some(until) = until {
                body["until"] = until.into();
            }
            let path = format!("/resources/{id}/unavailable");
            api.post(&path, &[], Some(&body))?
        }
        MaintenanceAction::End { id, .. } => {
            let path = format!("/resources/{id}/available");
            api.post(&path, &[], None)?
        }
        MaintenanceAction::ForceUnlock { id, reason, .. } => {
            let path = format!("/resources/{id}/force-unlock");
            let body = json!({ "reason": reason });
            api.post(&path, &[], Some(&body))?
        }
    };
    let r = &answer["resource"];
    let human = format!(
        "{} (id {}): {}",
        r["name"].as_str().unwrap_or("?"),
        r["id"],
        answer["message"].as_str().unwrap_or_default()
    );
    Ok(Answer {
        human,
        json: answer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16) -> Failure {
        Failure::Api {
            status,
            code: "x".into(),
            message: "m".into(),
            body: Value::Null,
        }
    }

    #[test]
    fn each_failure_exits_with_the_code_of_the_readme_table() {
        for (failure, code, why) in [
            (api(400), 2, "a bad value is refused"),
            (api(401), 2, "no key"),
            (api(403), 2, "locked (the 1.0 status)"),
            (api(409), 2, "unavailable"),
            (api(429), 2, "rate-limited"),
            (api(404), 3, "not found"),
            (api(500), 4, "the service failed"),
            (api(503), 4, "the store is unavailable"),
            (
                Failure::Unreachable {
                    url: "u".into(),
                    error: "e".into(),
                },
                4,
                "unreachable",
            ),
            (Failure::Timeout("t".into()), 5, "a wait ran out"),
            (Failure::Usage("u".into()), 1, "a wrong request"),
        ] {
            assert_eq!(failure.exit_code(), code, "{why}");
        }
    }

    #[test]
    fn a_pending_reservation_says_its_place_and_what_it_waits_for() {
        let pending = json!({
            "status": "pending", "position_in_queue": 2,
            "waiting_for": {"matching": 4, "locked": 3, "next_release_at": "T1",
                            "unavailable": 0, "held_for_earlier": 1, "free": 0,
                            "estimated_available_at": "T2", "groups": []},
        });
        assert_eq!(
            wait::describe_wait(&pending),
            "position 2 in the queue; of 4 matching: 3 locked (next release T1), \
             1 held for earlier reservations; expected by T2"
        );
        assert_eq!(
            wait::describe_wait(&json!({"status": "pending"})),
            "waiting"
        );
    }

    #[test]
    fn the_client_commands_parse_and_choose_resources_one_way() {
        use clap::Parser;

        #[derive(Parser)]
        struct Cli {
            #[command(subcommand)]
            command: ClientCommand,
        }
        let parse = |args: &[&str]| Cli::try_parse_from([&["rentabot"], args].concat());

        let run = parse(&[
            "run",
            "--tag",
            "board,arm",
            "--tag",
            "linux",
            "--",
            "make",
            "-j",
        ]);
        let Ok(Cli {
            command: ClientCommand::Run(run),
        }) = run
        else {
            panic!("run parses");
        };
        assert_eq!(run.select.tags, ["board", "arm", "linux"]);
        assert_eq!(run.command, ["make", "-j"]);
        assert_eq!((run.timeout, run.kill_after), (3600, 10));
        assert_eq!(run.conn.url, "http://127.0.0.1:8000");

        for (args, why) in [
            (&["lock"][..], "no way of choosing"),
            (&["lock", "--id", "1", "--name", "b"], "two ways"),
            (
                &["lock", "--tag", "a", "--expr", "b"],
                "tags and an expression",
            ),
            (&["run", "--tag", "a"], "no CMD"),
            (&["lock", "--id", "1", "--ttl", "0"], "a ttl of 0"),
            (
                &["reserve", "--priority", "11", "--tag", "a"],
                "priority above 10",
            ),
            (
                &["reserve", "--tag", "a", "--timeout", "5"],
                "--timeout without --wait",
            ),
            (&["unlock", "1"], "no token"),
            (&["ls", "--url", "https://rb.lab"], "https"),
            (&["ls", "--url", "rb.lab:8000"], "no scheme"),
            (&["ls", "--url", "http://"], "no host"),
        ] {
            assert!(parse(args).is_err(), "{why}: {args:?}");
        }
    }
}
