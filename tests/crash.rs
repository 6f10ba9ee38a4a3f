//! Crash tests: the real binary with `--persist`, killed with SIGKILL at random moments
//! under concurrent load, restarted, and checked against every answer it gave.
//!
//! What must hold, however the kills fall:
//! - every acknowledged lock, extension and unlock is still true after the restart;
//! - no fencing token goes back: every grant after a restart is above every token
//!   acknowledged before it;
//! - no resource ever has two holders: a grant is acknowledged only for a resource whose
//!   previous holder unlocked it (or may have: an unlock whose answer was lost);
//! - a lock request whose answer was lost, retried with its `Idempotency-Key` after the
//!   restart, gets the original answer if it was committed: no lock is left that no
//!   client knows the token of.
//!
//! The failpoint tests crash at chosen points: before a commit (the change is lost, and
//! nobody was told it happened) and after a commit but before the answer (the change is
//! there, and the retry replays it).
//!
//! Each runs twice: on SQLite, and on PostgreSQL (`_on_postgres`: a database of its
//! own on the server `RENTABOT_TEST_POSTGRES` names; SKIPPED, loudly, without it).
//!
//! The HA pair (PostgreSQL) runs the same load and checks against two services on one
//! database: the active one is killed (SIGKILL) or paused (SIGSTOP, then SIGCONT once
//! the standby took over) at random moments, and the standby must take over with every
//! acknowledged answer still true, no resource granted twice, fencing tokens and epochs
//! only growing; the paused one must step down to standby. The takeover times (from the
//! fault to the line the new active logs once it serves) are printed, p50 and p99. A
//! third variant cuts the active's connections to PostgreSQL (iptables on loopback; it
//! needs root, and says SKIPPED without), restores them once the standby took over, and
//! expects the same, the cut-off one stepping down.
//!
//! The kill moments and the clients' choices come from a seed printed at the start
//! (`CRASH_SEED=<n>` replays a run's choices; the server's timing is its own).

#[path = "support/pg.rs"]
mod pg;
mod support;

use pg::PgDb;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

/// How long a start, or a request, may take.
const PATIENCE: Duration = Duration::from_secs(20);
/// Resources in the lab; clients lock them by tag.
const BOARDS: u32 = 6;
/// Concurrent clients.
const CLIENTS: usize = 6;
/// Kills per run (the issue asks for at least 20).
const KILLS: usize = 20;
/// Kills of the HA pair's active service (the issue asks for at least 10); `HA_KILLS`
/// asks for more (BENCHMARKS.md's takeover times).
const HA_KILLS: usize = 12;
/// Pauses of the HA pair's active service: each waits for the leader timeout.
const HA_PAUSES: usize = 3;
/// `--ha-leader-timeout` of the pair: a paused active is replaced after about this.
const HA_LEADER_TIMEOUT: &str = "2";
/// What a service of the pair logs once it serves as the active one, and as a standby.
const ACTIVE_LINE: &str = "serving as the active rentabot";
const STANDBY_LINE: &str = "serving as a standby";

/// Where the service keeps its state.
#[derive(Clone)]
enum Store {
    /// `state.db` in the test's directory.
    Sqlite,
    /// A PostgreSQL database of the test's own (this URL names it).
    Postgres(String),
}

/// The service as a child process. Killed (SIGKILL) when dropped.
struct Service {
    child: Child,
    /// The child's stdout, line by line (the reader thread drains the pipe, so a full
    /// pipe never blocks it).
    log: Receiver<String>,
    base: String,
    /// `http://host:port`, for `/health`.
    root: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    /// Starts the service on the lab in `dir` with its state in `store`, and waits
    /// until it answers (on PostgreSQL: until it is the active one).
    fn start(dir: &Path, store: &Store, failpoint: Option<&str>) -> Service {
        let service = Service::spawn(dir, store, failpoint);
        if matches!(store, Store::Postgres(_)) {
            service.wait_for(ACTIVE_LINE);
        }
        service
    }

    /// Starts the service and waits until it listens (on PostgreSQL, perhaps as a
    /// standby).
    fn spawn(dir: &Path, store: &Store, failpoint: Option<&str>) -> Service {
        let persist = match store {
            Store::Sqlite => format!("sqlite:///{}", dir.join("state.db").display()),
            Store::Postgres(url) => url.clone(),
        };
        let mut command = support::rentabot();
        command
            .arg("--config")
            .arg(dir.join("lab.yaml"))
            .arg("--persist")
            .arg(persist)
            .args(["--host", "127.0.0.1", "--port", "0", "--log-level", "info"])
            .args(["--ha-leader-timeout", HA_LEADER_TIMEOUT])
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .env_remove("RENTABOT_FAILPOINT")
            .stderr(Stdio::null());
        if let Some(failpoint) = failpoint {
            command.env("RENTABOT_FAILPOINT", failpoint);
        }
        let (child, log) = support::spawn_logged(&mut command);
        let (address, _) = support::wait_until_listening(&log, PATIENCE);
        Service {
            child,
            log,
            base: format!("http://{address}/api/v1"),
            root: format!("http://{address}"),
        }
    }

    /// Reads the log up to a line that holds `needle`, for at most [`PATIENCE`].
    fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => seen.push(line),
                Err(e) => panic!(
                    "no {needle:?} in the log within {PATIENCE:?} ({e}); it said:\n{}",
                    seen.join("\n")
                ),
            }
        }
    }

    /// Sends `signal` (SIGSTOP, SIGCONT) to the process.
    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill(2) on a child this test spawned and has not reaped.
        assert_eq!(
            unsafe { libc::kill(pid, signal) },
            0,
            "kill({pid}, {signal})"
        );
    }

    /// The epoch `/health` reports (0 off the HA pair).
    async fn epoch(&self, http: &Client) -> u64 {
        let health: Value = http
            .get(format!("{}/health", self.root))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        health["epoch"].as_u64().unwrap_or(0)
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// Waits for the process to end by itself (a failpoint), at most [`PATIENCE`].
    fn wait_for_exit(mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("waitable") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the failpoint did not end the process"
            );
            // A bounded poll of a process we do not control; it is no stand-in for time.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A small deterministic generator for the test's own choices (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn lab(dir: &Path) {
    let mut yaml = String::new();
    for i in 1..=BOARDS {
        yaml.push_str(&format!("board-{i}:\n    tags: \"board\"\n"));
    }
    std::fs::write(dir.join("lab.yaml"), yaml).unwrap();
}

fn client() -> Client {
    Client::builder()
        .timeout(PATIENCE)
        .build()
        .expect("a client")
}

/// A lock as a client learned of it.
#[derive(Clone, Debug)]
struct Held {
    resource: u64,
    token: String,
    fencing: u64,
}

/// Everything the clients were told, and what they asked without hearing back.
#[derive(Default)]
struct Ledger {
    /// Poked at every acknowledged grant: the test kills the service after a random
    /// number of them, not after a time.
    granted: Arc<tokio::sync::Notify>,
    /// Locks acknowledged and not (known to be) unlocked, by token.
    held: HashMap<String, Held>,
    /// Tokens whose unlock was sent but never answered: maybe released.
    maybe_unlocked: HashSet<String>,
    /// The latest `expires-at` acknowledged for a token (lock or extend).
    expires: HashMap<String, String>,
    /// Tokens with an extend sent but never (fully) answered: the old expiry or the new
    /// one may stand, including an expiry acknowledged before an earlier crash.
    expiry_unknown: HashSet<String>,
    /// Lock requests never answered, with their Idempotency-Key and body.
    unanswered: Vec<(String, Value)>,
    /// Every fencing token acknowledged in this run of the service.
    fencing: Vec<u64>,
    /// The code and reason of every 503 the clients got.
    refused: Vec<String>,
}

/// Runs one client until the service goes away: lock by tag (with an Idempotency-Key),
/// extend or unlock its own locks (`mine` to begin with: locks from before a crash).
async fn run_client(base: String, seed: u64, mut mine: Vec<Held>, ledger: Arc<Mutex<Ledger>>) {
    let http = client();
    let mut rng = Rng(seed);
    for step in 0u64.. {
        let choice = rng.below(10);
        if mine.is_empty() || choice < 4 {
            let key = format!("c{seed}-{step}");
            let body = json!({"ttl": 3600, "holder": format!("client-{seed}")});
            let sent = http
                .post(format!("{base}/resources/lock?tag=board"))
                .header("Idempotency-Key", &key)
                .json(&body)
                .send()
                .await;
            match answered(sent, &ledger).await {
                Some(r) if r.status() == StatusCode::OK => {
                    let answer: Value = r.json().await.unwrap_or(Value::Null);
                    if answer.is_null() {
                        ledger.lock().unwrap().unanswered.push((key, body));
                        return;
                    }
                    let held = held_from(&answer);
                    let mut l = ledger.lock().unwrap();
                    l.fencing.push(held.fencing);
                    l.granted.notify_one();
                    l.expires.insert(
                        held.token.clone(),
                        answer["expires-at"].as_str().unwrap().to_owned(),
                    );
                    l.held.insert(held.token.clone(), held.clone());
                    mine.push(held);
                }
                Some(r) if r.status() == StatusCode::FORBIDDEN => {} // all boards taken
                Some(r) => panic!("lock answered {}", r.status()),
                None => {
                    ledger.lock().unwrap().unanswered.push((key, body));
                    return;
                }
            }
        } else {
            let pick = rng.below(mine.len() as u64) as usize;
            let held = mine[pick].clone();
            if choice < 6 {
                let sent = http
                    .post(format!(
                        "{base}/resources/{}/extend?lock-token={}&additional-ttl=7200",
                        held.resource, held.token
                    ))
                    .send()
                    .await;
                match answered(sent, &ledger).await {
                    Some(r) if r.status() == StatusCode::OK => {
                        let Ok(answer) = r.json::<Value>().await else {
                            // Cut off mid-body: the extension may or may not stand.
                            let mut l = ledger.lock().unwrap();
                            l.expires.remove(&held.token);
                            l.expiry_unknown.insert(held.token.clone());
                            return;
                        };
                        ledger.lock().unwrap().expires.insert(
                            held.token.clone(),
                            answer["new-expires-at"].as_str().unwrap().to_owned(),
                        );
                    }
                    Some(r) => panic!("extend of a held lock answered {}", r.status()),
                    None => {
                        // Unknown: the old expiry or the new one. Forget the expectation.
                        let mut l = ledger.lock().unwrap();
                        l.expires.remove(&held.token);
                        l.expiry_unknown.insert(held.token.clone());
                        return;
                    }
                }
            } else {
                mine.swap_remove(pick);
                let sent = http
                    .post(format!(
                        "{base}/resources/{}/unlock?lock-token={}",
                        held.resource, held.token
                    ))
                    .send()
                    .await;
                let answer = answered(sent, &ledger).await;
                let mut l = ledger.lock().unwrap();
                match answer {
                    Some(r) if r.status() == StatusCode::OK => {
                        l.held.remove(&held.token);
                    }
                    Some(r) => panic!("unlock of a held lock answered {}", r.status()),
                    None => {
                        l.maybe_unlocked.insert(held.token);
                        return;
                    }
                }
            }
        }
    }
}

/// The response, unless the request went unanswered: no response, or 503 (nothing was
/// acknowledged: a store that fails, or a deposed active of the HA pair), whose code and
/// reason go to the ledger.
async fn answered(
    sent: reqwest::Result<reqwest::Response>,
    ledger: &Mutex<Ledger>,
) -> Option<reqwest::Response> {
    let response = sent.ok()?;
    if response.status() != StatusCode::SERVICE_UNAVAILABLE {
        return Some(response);
    }
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let refusal = format!("{} {}", body["code"], body["reason"]);
    ledger.lock().unwrap().refused.push(refusal);
    None
}

fn held_from(answer: &Value) -> Held {
    Held {
        resource: answer["resource"]["id"].as_u64().expect("a resource id"),
        token: answer["lock-token"].as_str().expect("a token").to_owned(),
        fencing: answer["fencing-token"].as_u64().expect("a fencing token"),
    }
}

/// Every resource's lock token and expiry, as the service shows them.
async fn state(http: &Client, base: &str) -> BTreeMap<u64, (String, String)> {
    let list: Value = http
        .get(format!("{base}/resources"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_u64().unwrap(),
                (
                    r["lock-token"].as_str().unwrap().to_owned(),
                    r["lock-expires-at"].as_str().unwrap_or("").to_owned(),
                ),
            )
        })
        .collect()
}

fn seed() -> u64 {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("crash test seed: CRASH_SEED={seed}");
    seed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_no_acknowledged_answer() {
    faults_at_random_moments(&Store::Sqlite, Fault::Restart).await;
}

/// What happens to the service at a random moment of each round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// One service, killed and started again.
    Restart,
    /// The HA pair: the active one is killed; the standby takes over and a new standby
    /// is started.
    KillActive,
    /// The HA pair: the active one is paused until the standby took over, then resumed:
    /// it must step down and be the next round's standby.
    PauseActive,
    /// The HA pair: the active one's connections to PostgreSQL are cut (iptables drops
    /// their packets) until the standby took over, then restored: it must step down.
    CutActive,
}

/// A network cut between one process and PostgreSQL: every TCP connection it has to
/// the server's port, at the moment of the cut, drops its packets both ways (iptables
/// on loopback). Connections it opens later are not cut. Restored when dropped.
struct Cut {
    rules: Vec<Vec<String>>,
}

impl Cut {
    /// Whether this machine can cut connections (root, iptables); SKIPPED loudly if not.
    fn possible(test: &str) -> bool {
        let works = std::process::Command::new("iptables")
            .args(["-L", "OUTPUT", "-n"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !works {
            eprintln!(
                "\n\n!!!! SKIPPED {test}: iptables does not work here (it needs root and \
                 Debian's iptables); .ci/run installs it !!!!\n\n"
            );
        }
        works
    }

    fn between(pid: u32, server_port: u16) -> Cut {
        let ss = std::process::Command::new("ss")
            .args(["-tnpH", "state", "established"])
            .output()
            .expect("ss runs");
        let ss = String::from_utf8_lossy(&ss.stdout);
        let mut rules = Vec::new();
        for line in ss.lines().filter(|l| l.contains(&format!("pid={pid},"))) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port = |field: &str| field.rsplit_once(':').map(|(_, p)| p.to_owned());
            let (Some(local), Some(peer)) = (port(fields[2]), port(fields[3])) else {
                continue;
            };
            if peer != server_port.to_string() {
                continue;
            }
            for (sport, dport) in [(&local, &peer), (&peer, &local)] {
                let rule: Vec<String> = [
                    "OUTPUT", "-o", "lo", "-p", "tcp", "--sport", sport, "--dport", dport, "-j",
                    "DROP",
                ]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
                let mut insert = vec!["-I".to_owned()];
                insert.extend(rule.iter().cloned());
                let ok = std::process::Command::new("iptables")
                    .args(&insert)
                    .status()
                    .unwrap();
                assert!(ok.success(), "iptables {insert:?}");
                rules.push(rule);
            }
        }
        assert!(
            rules.len() >= 4,
            "the leader's and the writer's connections: {ss}"
        );
        Cut { rules }
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        for rule in &self.rules {
            let mut delete = vec!["-D".to_owned()];
            delete.extend(rule.iter().cloned());
            let _ = std::process::Command::new("iptables")
                .args(&delete)
                .status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ha_pair_survives_kill_9_of_the_active_with_every_acknowledged_answer_true() {
    on_postgres(
        "an_ha_pair_survives_kill_9_of_the_active",
        Fault::KillActive,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ha_pair_survives_a_network_cut_of_the_active_which_steps_down() {
    let test = "an_ha_pair_survives_a_network_cut_of_the_active";
    if Cut::possible(test) {
        on_postgres(test, Fault::CutActive).await;
    }
}

/// [`faults_at_random_moments`] on a database of `test`'s own (SKIPPED without one).
async fn on_postgres(test: &str, fault: Fault) {
    if let Some(db) = PgDb::create(test) {
        faults_at_random_moments(&Store::Postgres(db.url.clone()), fault).await;
    }
}

/// The port of the PostgreSQL server `store` names.
fn postgres_port(store: &Store) -> u16 {
    let Store::Postgres(url) = store else {
        panic!("not on PostgreSQL")
    };
    let config: postgres::Config = url.parse().unwrap();
    config.get_ports().first().copied().unwrap_or(5432)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ha_pair_survives_a_paused_active_which_steps_down_and_acknowledges_nothing() {
    on_postgres("an_ha_pair_survives_a_paused_active", Fault::PauseActive).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_no_acknowledged_answer_on_postgres() {
    on_postgres(
        "kill_9_at_random_moments_loses_no_acknowledged_answer_on_postgres",
        Fault::Restart,
    )
    .await;
}

async fn faults_at_random_moments(store: &Store, fault: Fault) {
    let rounds = match fault {
        Fault::Restart => KILLS,
        Fault::KillActive => std::env::var("HA_KILLS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(HA_KILLS),
        Fault::PauseActive | Fault::CutActive => HA_PAUSES,
    };
    // The HA pair: the active service of the coming round, and its standby.
    let (mut active, mut standby): (Option<Service>, Option<Service>) = (None, None);
    let mut epoch = 0u64;
    let mut takeovers: Vec<Duration> = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    lab(dir.path());
    let mut rng = Rng(seed());
    let http = client();
    // Every lock a client still holds, across runs, by token.
    let mut held: HashMap<String, Held> = HashMap::new();
    let mut expires: HashMap<String, String> = HashMap::new();
    let mut highest_fencing = 0u64;
    let mut grants = 0usize;
    // Lock requests whose answer a kill swallowed, retried after the restart.
    let mut unanswered: Vec<(String, Value)> = Vec::new();
    // Held locks whose unlock went unanswered: released or not, the restart tells.
    let mut maybe_unlocked: HashSet<String> = HashSet::new();

    for round in 0..=rounds {
        let service = match (fault, active.take()) {
            (Fault::Restart, _) => Service::start(dir.path(), store, None),
            (_, Some(service)) => service,
            (_, None) => {
                let first = Service::start(dir.path(), store, None);
                standby = Some(Service::spawn(dir.path(), store, None));
                first
            }
        };
        if fault != Fault::Restart {
            // Epochs only grow: each takeover moves the store's by one at least.
            let now = service.epoch(&http).await;
            assert!(now > epoch, "round {round}: epoch {now} after {epoch}");
            epoch = now;
            let standby = standby.as_ref().expect("a standby");
            let refused = http
                .get(format!("{}/resources", standby.base))
                .send()
                .await
                .unwrap();
            assert_eq!(
                refused.status(),
                StatusCode::SERVICE_UNAVAILABLE,
                "a standby serves nothing"
            );
        }
        let base = service.base.clone();
        let now = state(&http, &base).await;

        // 1. Everything acknowledged before the crash is still true.
        let mut known: HashSet<String> = HashSet::new();
        for (token, lock) in &held {
            let (shown, shown_expiry) = &now[&lock.resource];
            if maybe_unlocked.contains(token) && shown != token {
                continue; // the unlock went through before the crash
            }
            assert_eq!(
                shown, token,
                "round {round}: acknowledged lock on {} lost",
                lock.resource
            );
            if let Some(expiry) = expires.get(token) {
                assert_eq!(
                    shown_expiry, expiry,
                    "round {round}: acknowledged expiry lost"
                );
            }
            known.insert(token.clone());
        }

        // 2. Retried requests whose answer was lost get their original answer: after
        //    the retries, no lock is left that no client knows.
        for (key, body) in unanswered.drain(..) {
            let r = http
                .post(format!("{base}/resources/lock?tag=board"))
                .header("Idempotency-Key", &key)
                .json(&body)
                .send()
                .await
                .unwrap();
            if r.status() != StatusCode::OK {
                continue; // not committed, and now every board is taken: nothing to learn
            }
            let replayed = r.headers().contains_key("idempotent-replayed");
            let lock = held_from(&r.json().await.unwrap());
            if !replayed {
                assert!(
                    lock.fencing > highest_fencing,
                    "round {round}: a fresh grant below an earlier token"
                );
            }
            highest_fencing = highest_fencing.max(lock.fencing);
            known.insert(lock.token.clone());
            held.insert(lock.token.clone(), lock);
        }
        let now = state(&http, &base).await;
        for (resource, (token, _)) in &now {
            assert!(
                token.is_empty() || known.contains(token),
                "round {round}: resource {resource} is locked with a token no client was given"
            );
        }
        // Locks whose unlock went unanswered are settled now: held or not, as shown.
        held.retain(|token, lock| now[&lock.resource].0 == *token);
        maybe_unlocked.clear();

        if round == rounds {
            break;
        }
        // 3. Load, then a kill at a random moment. The clients start with the locks
        //    still held, so unlocks and extensions of locks from before a crash run too.
        let mut carried: Vec<Vec<Held>> = vec![Vec::new(); CLIENTS];
        for (i, lock) in held.values().enumerate() {
            carried[i % CLIENTS].push(lock.clone());
        }
        let ledger = Arc::new(Mutex::new(Ledger {
            held: std::mem::take(&mut held),
            ..Ledger::default()
        }));
        let clients: Vec<_> = carried
            .into_iter()
            .enumerate()
            .map(|(c, mine)| {
                tokio::spawn(run_client(
                    base.clone(),
                    rng.next() ^ c as u64,
                    mine,
                    ledger.clone(),
                ))
            })
            .collect();
        // Kill after a random number of acknowledged grants (this round's clients make
        // about a hundred): wherever the requests in flight then are.
        let kill_after = 5 + rng.below(60) as usize;
        let granted = ledger.lock().unwrap().granted.clone();
        let enough = async {
            while ledger.lock().unwrap().fencing.len() < kill_after {
                // A poke before this wait is kept as a permit: none is lost.
                granted.notified().await;
            }
        };
        tokio::time::timeout(PATIENCE, enough)
            .await
            .unwrap_or_else(|_| {
                panic!("round {round}: fewer than {kill_after} grants in {PATIENCE:?}")
            });
        let faulted = Instant::now();
        match fault {
            Fault::Restart => service.kill(),
            Fault::KillActive => {
                service.kill();
                let next = standby.take().expect("a standby");
                next.wait_for(ACTIVE_LINE);
                takeovers.push(faulted.elapsed());
                standby = Some(Service::spawn(dir.path(), store, None));
                active = Some(next);
            }
            Fault::PauseActive => {
                service.signal(libc::SIGSTOP);
                let next = standby.take().expect("a standby");
                next.wait_for(ACTIVE_LINE);
                takeovers.push(faulted.elapsed());
                // Resumed, it finds its session gone and its commits refused: the
                // answers it still gives are 503s, and it becomes the standby.
                service.signal(libc::SIGCONT);
                service.wait_for(STANDBY_LINE);
                standby = Some(service);
                active = Some(next);
            }
            Fault::CutActive => {
                let cut = Cut::between(service.child.id(), postgres_port(store));
                let next = standby.take().expect("a standby");
                next.wait_for(ACTIVE_LINE);
                takeovers.push(faulted.elapsed());
                // Still cut off, it finds its leader session gone: it answers 503 to
                // the requests waiting for a commit, gives up the commit in flight (its
                // connections are watched as the leader's is) and steps down.
                service.wait_for(STANDBY_LINE);
                drop(cut);
                standby = Some(service);
                active = Some(next);
            }
        }
        for client in clients {
            let _ = client.await;
        }
        let mut ledger = Arc::try_unwrap(ledger)
            .unwrap_or_else(|_| panic!("clients are done"))
            .into_inner()
            .unwrap();
        if fault == Fault::CutActive {
            // The clients waited seconds for the cut-off one's commits: it answered them
            // 503 as its commit timed out or its term ended, whichever came first (not a
            // connection closed as it stopped, with no answer).
            assert!(
                ledger
                    .refused
                    .iter()
                    .any(|r| r.starts_with("\"store_unavailable\"")),
                "round {round}: no client was answered 503 by the cut-off active: {:?}",
                ledger.refused
            );
        }
        // Tokens only grow: every grant of this run is above every earlier one.
        if let Some(&lowest) = ledger.fencing.iter().min() {
            assert!(
                lowest > highest_fencing,
                "round {round}: fencing token {lowest} after {highest_fencing}"
            );
        }
        grants += ledger.fencing.len();
        highest_fencing = highest_fencing.max(ledger.fencing.iter().copied().max().unwrap_or(0));
        // No two holders: of the locks acknowledged and not (maybe) unlocked, none
        // share a resource.
        let mut holders: HashMap<u64, &Held> = HashMap::new();
        for (token, lock) in &ledger.held {
            if ledger.maybe_unlocked.contains(token) {
                continue;
            }
            if let Some(other) = holders.insert(lock.resource, lock) {
                panic!(
                    "round {round}: resource {} has two holders (fencing {} and {})",
                    lock.resource, other.fencing, lock.fencing
                );
            }
        }
        held = std::mem::take(&mut ledger.held);
        maybe_unlocked = std::mem::take(&mut ledger.maybe_unlocked);
        // An extend in flight at the crash leaves the token's expiry unknown, whatever
        // an earlier round acknowledged for it.
        for token in ledger.expiry_unknown.drain() {
            expires.remove(&token);
        }
        expires.extend(ledger.expires.drain());
        unanswered.append(&mut ledger.unanswered);
    }
    assert!(grants > rounds, "the load granted locks ({grants})");
    eprintln!(
        "{fault:?}: {rounds} rounds, {grants} acknowledged grants, highest fencing \
         {highest_fencing}, last epoch {epoch}"
    );
    if !takeovers.is_empty() {
        takeovers.sort();
        let at = |q: f64| takeovers[((takeovers.len() - 1) as f64 * q).round() as usize];
        eprintln!(
            "{fault:?}: takeover p50 {:?}, p99 {:?}, max {:?} over {} takeovers",
            at(0.5),
            at(0.99),
            takeovers[takeovers.len() - 1],
            takeovers.len()
        );
    }
}

/// Sends one lock request with an Idempotency-Key to a service that will crash on its
/// `n`th commit (before or after it, per `failpoint`), and returns the key, the body,
/// and whether an answer came back.
async fn lock_into_failpoint(dir: &Path, store: &Store, failpoint: &str) -> (String, Value, bool) {
    let service = Service::start(dir, store, Some(failpoint));
    let http = client();
    let key = "fp-1".to_owned();
    let body = json!({"ttl": 600});
    let answered = http
        .post(format!("{}/resources/lock?tag=board", service.base))
        .header("Idempotency-Key", &key)
        .json(&body)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    let status = service.wait_for_exit();
    assert!(!status.success(), "the failpoint aborts the process");
    (key, body, answered)
}

fn fresh_lab() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    lab(dir.path());
    let path = dir.path().to_owned();
    (dir, path)
}

#[tokio::test]
async fn a_crash_before_the_commit_loses_the_change_and_its_answer() {
    crash_before_the_commit(&Store::Sqlite).await;
}

#[tokio::test]
async fn a_crash_before_the_commit_loses_the_change_and_its_answer_on_postgres() {
    let Some(db) =
        PgDb::create("a_crash_before_the_commit_loses_the_change_and_its_answer_on_postgres")
    else {
        return;
    };
    crash_before_the_commit(&Store::Postgres(db.url.clone())).await;
}

async fn crash_before_the_commit(store: &Store) {
    let (_dir, path) = fresh_lab();
    // Commit 1 is the descriptor merged at start; commit 2 is the lock.
    let (key, body, answered) = lock_into_failpoint(&path, store, "before-commit:2").await;
    assert!(!answered, "no answer for a change that was never committed");

    let service = Service::start(&path, store, None);
    let http = client();
    assert!(
        state(&http, &service.base)
            .await
            .values()
            .all(|(token, _)| token.is_empty()),
        "the lock was not committed, so it is not there"
    );
    let retry = http
        .post(format!("{}/resources/lock?tag=board", service.base))
        .header("Idempotency-Key", &key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), StatusCode::OK);
    assert!(
        !retry.headers().contains_key("idempotent-replayed"),
        "nothing was remembered: the retry runs"
    );
}

#[tokio::test]
async fn a_crash_after_the_commit_keeps_the_change_and_the_retry_replays_it() {
    crash_after_the_commit(&Store::Sqlite).await;
}

#[tokio::test]
async fn a_crash_after_the_commit_keeps_the_change_and_the_retry_replays_it_on_postgres() {
    let Some(db) = PgDb::create("a_crash_after_the_commit_keeps_the_change_on_postgres") else {
        return;
    };
    crash_after_the_commit(&Store::Postgres(db.url.clone())).await;
}

async fn crash_after_the_commit(store: &Store) {
    let (_dir, path) = fresh_lab();
    let (key, body, answered) = lock_into_failpoint(&path, store, "after-commit:2").await;
    assert!(!answered, "the process died before answering");

    let service = Service::start(&path, store, None);
    let http = client();
    let locked: Vec<String> = state(&http, &service.base)
        .await
        .into_values()
        .map(|(token, _)| token)
        .filter(|t| !t.is_empty())
        .collect();
    assert_eq!(locked.len(), 1, "the committed lock is there");
    let retry = http
        .post(format!("{}/resources/lock?tag=board", service.base))
        .header("Idempotency-Key", &key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), StatusCode::OK);
    assert_eq!(
        retry
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..]),
        "the original answer is replayed"
    );
    let answer: Value = retry.json().await.unwrap();
    assert_eq!(
        answer["lock-token"], locked[0],
        "the very lock that was committed"
    );
    assert_eq!(
        state(&http, &service.base)
            .await
            .values()
            .filter(|(t, _)| !t.is_empty())
            .count(),
        1,
        "no second grant"
    );
    drop(service);
}

/// The pair's contract, step by step: the standby refuses (503 `standby`, Retry-After,
/// not ready, alive with its role, the HA metrics only); the active one reports its role
/// and epoch; after a kill the standby serves every acknowledged lock, replays a lock's
/// answer to a retry with its Idempotency-Key, and postpones a lock that was about to
/// expire to the end of the grace.
#[tokio::test]
async fn a_standby_refuses_until_the_active_dies_then_serves_what_it_acknowledged() {
    let Some(db) = PgDb::create("a_standby_refuses_until_the_active_dies") else {
        return;
    };
    let store = Store::Postgres(db.url.clone());
    let (_dir, path) = fresh_lab();
    let http = client();
    let active = Service::start(&path, &store, None);
    let standby = Service::spawn(&path, &store, None);
    standby.wait_for(STANDBY_LINE);

    let refused = http
        .post(format!("{}/resources/lock?tag=board", standby.base))
        .json(&json!({"ttl": 600}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "standby", "{body}");
    let get = |url: String| {
        let http = http.clone();
        async move {
            let r = http.get(url).send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    let (status, ready) = get(format!("{}/readiness", standby.root)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    let (status, health) = get(format!("{}/health", standby.root)).await;
    assert_eq!(status, StatusCode::OK);
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["role"], "standby");
    let (_, metrics) = get(format!("{}/metrics", standby.root)).await;
    assert!(metrics.contains("rentabot_ha_is_active 0"), "{metrics}");
    assert!(
        !metrics.contains("rentabot_ready"),
        "a standby is not 'not ready': {metrics}"
    );

    let (_, health) = get(format!("{}/health", active.root)).await;
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["role"], "active");
    let epoch = health["epoch"].as_u64().unwrap();
    assert!(epoch >= 1);
    let (_, metrics) = get(format!("{}/metrics", active.root)).await;
    assert!(metrics.contains("rentabot_ha_is_active 1"), "{metrics}");
    assert!(
        metrics.contains(&format!("rentabot_ha_epoch {epoch}")),
        "{metrics}"
    );
    assert!(
        metrics.contains("rentabot_ha_takeovers_total 1"),
        "{metrics}"
    );

    // Two locks on the active one: a long one with an Idempotency-Key, and one that is
    // about to run out.
    let lock = |ttl: u64, key: &'static str| {
        let (http, base) = (http.clone(), active.base.clone());
        async move {
            let r = http
                .post(format!("{base}/resources/lock?tag=board"))
                .header("Idempotency-Key", key)
                .json(&json!({"ttl": ttl}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<Value>().await.unwrap()
        }
    };
    let long = lock(3600, "ha-long").await;
    let short = lock(1, "ha-short").await;
    let short_expiry = short["expires-at"].as_str().unwrap().to_owned();

    active.kill();
    let took = standby.wait_for(ACTIVE_LINE);
    assert!(took.contains(&format!("epoch={}", epoch + 1)), "{took}");
    let now = state(&http, &standby.base).await;
    let long_resource = long["resource"]["id"].as_u64().unwrap();
    assert_eq!(now[&long_resource].0, long["lock-token"].as_str().unwrap());
    // Whenever the takeover came (before or after the second ran out by the old
    // clock), the short lock is still held, its expiry moved to the grace's end.
    let short_resource = short["resource"]["id"].as_u64().unwrap();
    let (token, expiry) = &now[&short_resource];
    assert_eq!(
        token,
        short["lock-token"].as_str().unwrap(),
        "not expired at takeover"
    );
    assert!(
        expiry.as_str() > short_expiry.as_str(),
        "postponed: {expiry} after {short_expiry}"
    );

    let retry = http
        .post(format!("{}/resources/lock?tag=board", standby.base))
        .header("Idempotency-Key", "ha-long")
        .json(&json!({"ttl": 3600}))
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), StatusCode::OK);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let replayed: Value = retry.json().await.unwrap();
    assert_eq!(
        replayed["lock-token"], long["lock-token"],
        "the original answer"
    );
    let (_, metrics) = get(format!("{}/metrics", standby.root)).await;
    assert!(metrics.contains("rentabot_ha_is_active 1"), "{metrics}");
}
