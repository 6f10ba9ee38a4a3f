//! `rentabot run ... -- CMD`: wait for the resources, run CMD while holding them, keep
//! the locks alive, stop CMD if they are lost, always release them (README § rentabot run).
//!
//! One thread (this one) decides; the others only report to it over one channel:
//!
//! ```text
//! signals   a self-pipe written by the SIGINT/SIGTERM/SIGHUP handler   → Signal
//! events    the service's event stream (`/events`)                     → Event
//! acquire   the reservation (or direct lock) until granted             → Acquired
//! extender  extends every lock at half its TTL, bounded retries         → Lost
//! waiter    `wait()`s for CMD                                           → Exited
//! ```
//!
//! The event stream is opened before anything is asked, so no event about our locks can
//! pass unseen: a `force_unlocked`, `expired` or `unlocked` carrying one of our fencing
//! tokens means the lock is gone, and CMD gets SIGTERM (SIGKILL after `--kill-after`).
//! Without the stream (refused, dropped), each extension still checks the locks.

use std::ffi::OsString;
use std::io::{BufRead, Read};
use std::os::fd::FromRawFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::args::RunArgs;
use super::http::{Api, Failure};
use super::wait::{self, Progress};
use super::{exit, lock_request, report};

/// The service's default lock TTL, used when `--ttl` is not given.
const DEFAULT_TTL: u64 = 3600;
/// Attempts to extend a lock when the service cannot be reached, spaced 1, 2, 4, ... s
/// apart but never past the lock's end.
const EXTEND_ATTEMPTS: u32 = 6;
/// Without an event, a direct lock (`--id`, `--name`) is tried again this often: an
/// event may be missed when the stream reconnects.
const RETRY_LOCK: Duration = Duration::from_secs(30);
/// What a reservation may wait beyond `--timeout` (we withdraw it at `--timeout`; this
/// bounds how long it outlives a `run` that was killed outright).
const QUEUE_MARGIN: Duration = Duration::from_secs(30);
/// Attempts to reopen a dropped event stream (about 4 minutes in all).
const STREAM_RECONNECTS: u32 = 10;
/// The event types that concern a held lock, or may free a resource we wait for;
/// `locked` too: the grant's own event gives the stream a position to resume from.
const EVENT_TYPES: &str = "locked,unlocked,expired,force_unlocked,maintenance_ended,\
reservation_ended,reservation_claimed,resource_added,resource_updated";

/// What the deciding thread hears.
enum Happening {
    /// A signal: its number, and whether a process sent it to us alone (`kill`) rather
    /// than the terminal to the whole foreground group (CMD has it too, then).
    Signal { number: i32, sent_to_us: bool },
    /// An event from the service's stream.
    Event(Value),
    /// The resources, or why not.
    Acquired(Result<Vec<Lock>, Failure>),
    /// A lock was lost (an extension refused or impossible).
    Lost(String),
    /// CMD exited.
    Exited(std::io::Result<ExitStatus>),
}

/// One lock we hold.
#[derive(Clone, Debug)]
struct Lock {
    id: u32,
    name: String,
    endpoint: String,
    token: String,
    fencing: u64,
}

/// Runs `rentabot run` and returns its exit code.
pub fn run(args: RunArgs) -> u8 {
    let api = Api::new(&args.conn);
    let (tx, rx) = mpsc::channel();
    if let Err(e) = signals::install(tx.clone()) {
        report(&Failure::Usage(format!("cannot handle signals: {e}")));
        return exit::USAGE;
    }
    let streaming = watch_events(&api, tx.clone());

    // 1. Wait for the resources; a signal meanwhile withdraws the request.
    let (wake_tx, wake_rx) = mpsc::channel();
    let pending = Arc::new(Mutex::new(Pending::default()));
    {
        let (api, tx, pending, args) = (api.clone(), tx.clone(), pending.clone(), args_copy(&args));
        std::thread::spawn(move || {
            let got = acquire(&api, &args, &pending, &wake_rx, streaming);
            let _ = tx.send(Happening::Acquired(got));
        });
    }
    let mut abandoned = None;
    let locks = loop {
        match rx.recv().expect("the acquiring thread answers") {
            Happening::Signal { number, .. } => {
                abandoned.get_or_insert(number);
                let _ = wake_tx.send(Wake::Abandon);
                let id = {
                    let mut pending = pending.lock().expect("not poisoned");
                    pending.abandoned = true;
                    pending.reservation.take()
                };
                if let Some(id) = id {
                    withdraw(&api, &id);
                }
            }
            Happening::Event(_) => {
                let _ = wake_tx.send(Wake::Event);
            }
            Happening::Acquired(got) => break got,
            Happening::Lost(_) | Happening::Exited(_) => {}
        }
    };
    let locks = match (locks, abandoned) {
        (Ok(locks), Some(number)) => {
            release(&api, &locks);
            return signal_code(number);
        }
        (Err(_), Some(number)) => return signal_code(number),
        (Err(failure), None) => {
            report(&failure);
            return exit::NOT_OBTAINED;
        }
        (Ok(locks), None) => locks,
    };

    // 2. Run CMD while holding them.
    let ttl = args.terms.ttl.unwrap_or(DEFAULT_TTL);
    let (stop_extending, stopped) = mpsc::channel::<()>();
    {
        let (api, tx, locks) = (api.clone(), tx.clone(), locks.clone());
        std::thread::spawn(move || extend_until_stopped(&api, &locks, ttl, &stopped, &tx));
    }
    let child = match spawn(&args.command, &locks, &api) {
        Ok(child) => child,
        Err(e) => {
            drop(stop_extending);
            release(&api, &locks);
            report(&Failure::Usage(format!(
                "cannot run {:?}: {e}",
                args.command[0]
            )));
            return match e.kind() {
                std::io::ErrorKind::NotFound => exit::COMMAND_NOT_FOUND,
                _ => exit::CANNOT_EXECUTE,
            };
        }
    };
    let pid = child.id() as i32;
    {
        let tx = tx.clone();
        let mut child = child;
        std::thread::spawn(move || {
            let _ = tx.send(Happening::Exited(child.wait()));
        });
    }
    let mut lost = None::<String>;
    let mut kill_at = None::<Instant>;
    let status = loop {
        let happening = match kill_at {
            Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(h) => h,
                Err(RecvTimeoutError::Timeout) => {
                    eprintln!("rentabot: CMD did not stop: SIGKILL");
                    signals::send(pid, libc::SIGKILL);
                    kill_at = None;
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => unreachable!("we hold a sender"),
            },
            None => rx.recv().expect("we hold a sender"),
        };
        let why = match happening {
            Happening::Signal { number, sent_to_us } => {
                // From the terminal, CMD (in the same process group) has it already.
                if sent_to_us {
                    signals::send(pid, number);
                }
                continue;
            }
            Happening::Event(event) => match lock_ended_by(&event, &locks) {
                Some(why) => why,
                None => continue,
            },
            Happening::Lost(why) => why,
            Happening::Exited(status) => break status,
            Happening::Acquired(_) => continue,
        };
        if lost.is_none() {
            eprintln!("rentabot: {why}: stopping CMD (SIGTERM)");
            signals::send(pid, libc::SIGTERM);
            kill_at = Some(Instant::now() + Duration::from_secs(args.kill_after));
            lost = Some(why);
        }
    };

    // 3. Always release.
    drop(stop_extending);
    release(&api, &locks);
    match (lost, status) {
        (Some(_), _) => exit::LOCK_LOST,
        (None, Ok(status)) => match (status.code(), status.signal()) {
            (Some(code), _) => code.clamp(0, 255) as u8,
            (None, Some(signal)) => signal_code(signal),
            (None, None) => exit::USAGE,
        },
        (None, Err(e)) => {
            report(&Failure::Usage(format!("lost track of CMD: {e}")));
            exit::USAGE
        }
    }
}

/// The shell's code for death by `signal`.
fn signal_code(signal: i32) -> u8 {
    (128 + signal).clamp(0, 255) as u8
}

/// What `acquire` needs of the arguments (they stay with the deciding thread).
#[derive(Clone)]
struct Wanted {
    select: super::args::Select,
    quantity: Option<u32>,
    priority: Option<u8>,
    terms: super::args::LockTerms,
    timeout: Duration,
}

fn args_copy(args: &RunArgs) -> Wanted {
    Wanted {
        select: args.select.clone(),
        quantity: args.quantity,
        priority: args.priority,
        terms: args.terms.clone(),
        timeout: Duration::from_secs(args.timeout),
    }
}

/// The reservation being waited for, shared with the deciding thread: whichever of the
/// two learns last that it exists and is abandoned withdraws it.
#[derive(Default)]
struct Pending {
    reservation: Option<String>,
    abandoned: bool,
}

/// What wakes the acquiring thread while it waits for a direct lock.
enum Wake {
    /// An event that may have freed the resource.
    Event,
    /// A signal: give up.
    Abandon,
}

/// The resources: by reservation (tags, expression: the queue, with its position shown),
/// or by locking the one resource (`--id`, `--name`) as soon as an event says it may be
/// free. `pending` holds the reservation id while it waits, for a signal to cancel it.
fn acquire(
    api: &Api,
    w: &Wanted,
    pending: &Mutex<Pending>,
    wake: &Receiver<Wake>,
    streaming: bool,
) -> Result<Vec<Lock>, Failure> {
    let progress = Progress::start();
    let deadline = Instant::now() + w.timeout;
    if w.select.id.is_some() || w.select.name.is_some() {
        loop {
            match lock_request(api, &w.select, w.quantity, &w.terms) {
                Ok(answer) => return Ok(vec![lock_of(&answer)]),
                Err(Failure::Api {
                    status: 403 | 409 | 423,
                    message,
                    ..
                }) => progress.say(format!("waiting: {message}")),
                Err(other) => return Err(other),
            }
            // Woken by any event that may free it; without the stream, retry sooner.
            let retry = if streaming {
                RETRY_LOCK
            } else {
                RETRY_LOCK / 6
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Failure::Timeout(format!(
                    "the resource is still not free after {}s",
                    w.timeout.as_secs()
                )));
            }
            match wake.recv_timeout(left.min(retry)) {
                Ok(Wake::Abandon) | Err(RecvTimeoutError::Disconnected) => {
                    return Err(Failure::Usage("abandoned".into()));
                }
                Ok(Wake::Event) | Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }
    // The service keeps it a little longer than we wait, so that our --timeout, not
    // its expiry, ends the wait (and we withdraw it then).
    let max_wait = w.timeout.as_secs() + QUEUE_MARGIN.as_secs();
    let mut body = json!({ "auto_claim": true, "max_wait_time": max_wait });
    match &w.select.expr {
        Some(expr) => body["expr"] = expr.clone().into(),
        None => body["tags"] = json!(w.select.tags),
    }
    if let Some(q) = w.quantity {
        body["quantity"] = q.into();
    }
    if let Some(p) = w.priority {
        body["priority"] = p.into();
    }
    if let Some(ttl) = w.terms.ttl {
        body["ttl"] = ttl.into();
    }
    if let Some(holder) = &w.terms.holder {
        body["holder"] = holder.clone().into();
    }
    if let Some(note) = &w.terms.note {
        body["note"] = note.clone().into();
    }
    let created = api.post("/reservations", &[], Some(&body))?;
    let id = created["reservation_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    {
        let mut pending = pending.lock().expect("not poisoned");
        if pending.abandoned {
            drop(pending);
            withdraw(api, &id);
            return Err(Failure::Usage("abandoned".into()));
        }
        pending.reservation = Some(id.clone());
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let granted = match wait::reservation(api, &id, Some(created), left, &progress) {
        Ok(granted) => granted,
        Err(failure @ Failure::Timeout(_)) => {
            progress.finish();
            withdraw(api, &id);
            return Err(failure);
        }
        Err(other) => return Err(other),
    };
    progress.finish();
    let tokens = granted["lock_tokens"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ids = granted["resource_ids"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ids.iter()
        .zip(tokens)
        .map(|(id, token)| {
            let resource = api.get(&format!("/resources/{id}"), &[])?["resource"].take();
            Ok(Lock {
                id: id.as_u64().unwrap_or_default() as u32,
                name: resource["name"].as_str().unwrap_or_default().to_owned(),
                endpoint: resource["endpoint"].as_str().unwrap_or_default().to_owned(),
                token: token.as_str().unwrap_or_default().to_owned(),
                fencing: resource["fencing-token"].as_u64().unwrap_or_default(),
            })
        })
        .collect()
}

/// A lock from a lock answer.
fn lock_of(answer: &Value) -> Lock {
    let r = &answer["resource"];
    Lock {
        id: r["id"].as_u64().unwrap_or_default() as u32,
        name: r["name"].as_str().unwrap_or_default().to_owned(),
        endpoint: r["endpoint"].as_str().unwrap_or_default().to_owned(),
        token: answer["lock-token"].as_str().unwrap_or_default().to_owned(),
        fencing: answer["fencing-token"].as_u64().unwrap_or_default(),
    }
}

/// Withdraws reservation `id`; if it was granted meanwhile (409), releases its locks.
pub(super) fn withdraw(api: &Api, id: &str) {
    let path = format!("/reservations/{id}");
    if let Err(Failure::Api { status: 409, .. }) = api.delete(&path)
        && let Ok(r) = api.get(&path, &[])
    {
        let tokens = r["lock_tokens"].clone();
        let _ = api.post(
            "/resources/unlock-batch",
            &[],
            Some(&json!({ "lock_tokens": tokens })),
        );
    }
}

/// Why an event ends one of our locks, if it does.
fn lock_ended_by(event: &Value, locks: &[Lock]) -> Option<String> {
    let kind = event["type"].as_str()?;
    if !matches!(kind, "force_unlocked" | "expired" | "unlocked") {
        return None;
    }
    let lock = locks.iter().find(|l| {
        event["resource_id"].as_u64() == Some(u64::from(l.id))
            && event["fencing_token"].as_u64() == Some(l.fencing)
    })?;
    Some(match kind {
        "force_unlocked" => format!(
            "the lock on {} was force-unlocked ({})",
            lock.name,
            event["reason"].as_str().unwrap_or_default()
        ),
        "expired" => format!("the lock on {} expired", lock.name),
        _ => format!("the lock on {} was released by someone else", lock.name),
    })
}

/// Opens the event stream and reads it on a thread of its own, reporting each event;
/// when it drops, reconnects after the last event seen (`Last-Event-ID`), up to
/// [`STREAM_RECONNECTS`] times in a row. False when it cannot be opened at all (then
/// extensions alone check the locks).
fn watch_events(api: &Api, tx: Sender<Happening>) -> bool {
    let stream = match api.events(EVENT_TYPES, None) {
        Ok(stream) => stream,
        Err(e) => {
            eprintln!("rentabot: no event stream ({e}): a lost lock shows at the next extension");
            return false;
        }
    };
    let api = api.clone();
    std::thread::spawn(move || {
        let mut stream = stream;
        let mut last = None;
        // Drops in a row without an event between: a service that accepts and closes
        // at once (stopping) is not retried forever.
        let mut drops = 0;
        loop {
            for line in stream.lines() {
                let Ok(line) = line else { break };
                if let Some(id) = line.strip_prefix("id:") {
                    last = id.trim().parse::<u64>().ok().or(last);
                    drops = 0;
                } else if let Some(data) = line.strip_prefix("data:")
                    && let Ok(event) = serde_json::from_str::<Value>(data.trim())
                    && tx.send(Happening::Event(event)).is_err()
                {
                    return;
                }
            }
            drops += 1;
            let again = if drops <= STREAM_RECONNECTS {
                reconnect(&api, last)
            } else {
                None
            };
            stream = match again {
                Some(stream) => stream,
                None => {
                    eprintln!(
                        "rentabot: the event stream dropped: a lost lock shows at the next extension"
                    );
                    return;
                }
            };
        }
    });
    true
}

/// The event stream again, after event `last`; `None` after [`STREAM_RECONNECTS`]
/// failed attempts, 1, 2, 4, ... s apart.
fn reconnect(api: &Api, last: Option<u64>) -> Option<Box<dyn BufRead + Send>> {
    let mut pause = Duration::from_secs(1);
    for _ in 0..STREAM_RECONNECTS {
        std::thread::sleep(pause);
        if let Ok(stream) = api.events(EVENT_TYPES, last) {
            return Some(stream);
        }
        pause = (pause * 2).min(Duration::from_secs(30));
    }
    None
}

/// Extends every lock at half its TTL until `stopped` fires (or its sender is dropped).
fn extend_until_stopped(
    api: &Api,
    locks: &[Lock],
    ttl: u64,
    stopped: &Receiver<()>,
    tx: &Sender<Happening>,
) {
    let period = Duration::from_millis(ttl * 500);
    let mut ends = Instant::now() + Duration::from_secs(ttl);
    loop {
        match stopped.recv_timeout(period) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        for lock in locks {
            if let Err(why) = extend_one(api, lock, ttl, ends, stopped) {
                let _ = tx.send(Happening::Lost(why));
                return;
            }
        }
        ends = Instant::now() + Duration::from_secs(ttl);
    }
}

/// One extension, retried while the service cannot be reached and the lock still runs.
fn extend_one(
    api: &Api,
    lock: &Lock,
    ttl: u64,
    ends: Instant,
    stopped: &Receiver<()>,
) -> Result<(), String> {
    let path = format!("/resources/{}/extend", lock.id);
    let query = [
        ("lock-token", lock.token.clone()),
        ("additional-ttl", ttl.to_string()),
    ];
    let mut pause = Duration::from_secs(1);
    for _ in 0..EXTEND_ATTEMPTS {
        match api.post(&path, &query, None) {
            Ok(_) => return Ok(()),
            // Refused: the lock is gone or may not be extended. A rate limit (429) or
            // a failing service (5xx) may pass: retried like a network error.
            Err(e @ Failure::Api { status, .. }) if status < 500 && status != 429 => {
                return Err(format!(
                    "extending the lock on {} was refused: {e}",
                    lock.name
                ));
            }
            Err(e) => {
                let left = ends.saturating_duration_since(Instant::now());
                if left <= pause {
                    return Err(format!("could not extend the lock on {}: {e}", lock.name));
                }
                eprintln!(
                    "rentabot: extending the lock on {} failed ({e}); retrying",
                    lock.name
                );
                if !matches!(stopped.recv_timeout(pause), Err(RecvTimeoutError::Timeout)) {
                    return Ok(());
                }
                pause *= 2;
            }
        }
    }
    Err(format!(
        "could not extend the lock on {} after {EXTEND_ATTEMPTS} attempts",
        lock.name
    ))
}

/// Starts CMD with the locks in its environment.
fn spawn(command: &[OsString], locks: &[Lock], api: &Api) -> std::io::Result<std::process::Child> {
    let list = |f: fn(&Lock) -> String| locks.iter().map(f).collect::<Vec<_>>().join(",");
    Command::new(&command[0])
        .args(&command[1..])
        .env("RENTABOT_URL", api.base())
        .env("RENTABOT_RESOURCE_ID", list(|l| l.id.to_string()))
        .env("RENTABOT_RESOURCE_NAME", list(|l| l.name.clone()))
        .env("RENTABOT_RESOURCE_ENDPOINT", list(|l| l.endpoint.clone()))
        .env("RENTABOT_LOCK_TOKEN", list(|l| l.token.clone()))
        .env("RENTABOT_FENCING_TOKEN", list(|l| l.fencing.to_string()))
        .spawn()
}

/// Releases every lock; one already lost (403, 404) is no longer ours to release.
fn release(api: &Api, locks: &[Lock]) {
    for lock in locks {
        let path = format!("/resources/{}/unlock", lock.id);
        match api.post(&path, &[("lock-token", lock.token.clone())], None) {
            Ok(_)
            | Err(Failure::Api {
                status: 403 | 404, ..
            }) => {}
            Err(e) => eprintln!("rentabot: could not release {}: {e}", lock.name),
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP, turned into messages by a self-pipe.
mod signals {
    use super::*;

    /// The pipe's write end, for the handler.
    static PIPE: AtomicI32 = AtomicI32::new(-1);

    /// Installs the handler and a thread that reports each signal on `tx`.
    pub fn install(tx: Sender<Happening>) -> std::io::Result<()> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        PIPE.store(fds[1], Ordering::SeqCst);
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: a zeroed sigaction is valid; the handler only calls write(2),
            // which is async-signal-safe.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
                libc::sigemptyset(&raw mut action.sa_mask);
                if libc::sigaction(signal, &raw const action, std::ptr::null_mut()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
        }
        // SAFETY: the read end is ours alone from here on.
        let mut reader = unsafe { std::fs::File::from_raw_fd(fds[0]) };
        std::thread::spawn(move || {
            let mut message = [0u8; 2];
            while reader.read_exact(&mut message).is_ok() {
                let happening = Happening::Signal {
                    number: i32::from(message[0]),
                    sent_to_us: message[1] == 1,
                };
                if tx.send(happening).is_err() {
                    break;
                }
            }
        });
        Ok(())
    }

    extern "C" fn on_signal(signal: i32, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo with SA_SIGINFO.
        let code = unsafe { (*info).si_code };
        // kill(2) and sigqueue(3) say SI_USER / SI_QUEUE; the terminal says SI_KERNEL.
        let sent_to_us = u8::from(code == libc::SI_USER || code == libc::SI_QUEUE);
        let message = [signal as u8, sent_to_us];
        // SAFETY: write(2) is async-signal-safe; a full pipe drops the signal.
        unsafe {
            libc::write(PIPE.load(Ordering::SeqCst), message.as_ptr().cast(), 2);
        }
    }

    /// Sends `signal` to process `pid`.
    pub fn send(pid: i32, signal: i32) {
        // SAFETY: kill(2) with a pid we spawned.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(id: u32, fencing: u64) -> Lock {
        Lock {
            id,
            name: format!("board-{id}"),
            endpoint: String::new(),
            token: "t".into(),
            fencing,
        }
    }

    #[test]
    fn only_an_end_of_our_own_lock_counts_as_losing_it() {
        let ours = [lock(1, 7), lock(2, 8)];
        let event = |kind: &str, resource: u32, fencing: u64| json!({"type": kind, "resource_id": resource, "fencing_token": fencing, "reason": "hung"});
        for (e, lost, why) in [
            (event("force_unlocked", 2, 8), true, "force-unlocked"),
            (event("expired", 1, 7), true, "expired"),
            (
                event("unlocked", 1, 7),
                true,
                "released with our token by someone",
            ),
            (
                event("force_unlocked", 1, 6),
                false,
                "an earlier lock of the resource",
            ),
            (event("expired", 3, 7), false, "another resource"),
            (event("extended", 1, 7), false, "an extension"),
            (event("locked", 1, 7), false, "the grant itself"),
        ] {
            assert_eq!(lock_ended_by(&e, &ours).is_some(), lost, "{why}");
        }
        assert_eq!(
            lock_ended_by(&event("force_unlocked", 2, 8), &ours).unwrap(),
            "the lock on board-2 was force-unlocked (hung)"
        );
    }

    #[test]
    fn death_by_a_signal_is_128_plus_its_number() {
        assert_eq!(signal_code(libc::SIGTERM), 143);
        assert_eq!(signal_code(libc::SIGKILL), 137);
        assert_eq!(signal_code(libc::SIGINT), 130);
    }
}
