//! The command-line client and `rentabot run`, as people and scripts use them: the real
//! binary against a real service (the same executable, started on port 0).
//!
//! Waits are bounded and wait for something observable (an event on the service's
//! stream, a file CMD writes, a process exiting), never for time to pass; the only
//! timeouts run out on purpose, in the tests of `--timeout`.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long a process gets to start, answer or exit.
const PATIENCE: Duration = Duration::from_secs(20);

/// The running service; killed when dropped.
struct Service {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
    args: Vec<String>,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const LAB: &str = "\
board-1:
    endpoint: \"ssh://pi@board-1\"
    tags: \"board,arm\"
board-2:
    endpoint: \"ssh://pi@board-2\"
    tags: \"board,arm\"
board-3:
    endpoint: \"ssh://ci@board-3\"
    tags: \"board,x86\"
";

impl Service {
    fn start() -> Service {
        Service::start_with(&[])
    }

    /// `rentabot --config lab.yaml --port 0 ARGS`, once it listens.
    fn start_with(args: &[&str]) -> Service {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("lab.yaml"), LAB).unwrap();
        let args = args.iter().map(|a| (*a).to_owned()).collect();
        Service::spawn_in(dir, 0, args)
    }

    /// Stops the service (SIGTERM, as an operator does) and starts it again in the same
    /// directory, on the same port, with the same arguments.
    fn restart(mut self) -> Service {
        signal(self.child.id(), "TERM");
        self.child.wait().unwrap();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let port = self.url.rsplit(':').next().unwrap().parse().unwrap();
        Service::spawn_in(dir, port, std::mem::take(&mut self.args))
    }

    fn spawn_in(dir: tempfile::TempDir, port: u16, args: Vec<String>) -> Service {
        let (child, log) = support::spawn_logged(
            support::rentabot()
                .args(["--config", "lab.yaml", "--host", "127.0.0.1", "--port"])
                .arg(port.to_string())
                .args(["--log-level", "info"])
                .args(&args)
                .current_dir(dir.path())
                .env("NO_COLOR", "1")
                .stderr(Stdio::null()),
        );
        let (address, _) = support::wait_until_listening(&log, PATIENCE);
        // Keep draining the log so that the service never blocks on it.
        std::thread::spawn(move || while log.recv().is_ok() {});
        Service {
            child,
            url: format!("http://{address}"),
            dir,
            args,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `rentabot ARGS` against this service, to its end.
    fn cli(&self, args: &[&str]) -> Done {
        let mut command = self.command(args);
        finish(command.spawn().expect("the client runs"), args)
    }

    /// `rentabot ARGS` against this service, running.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rentabot"));
        command
            .args(args)
            .env("RENTABOT_URL", &self.url)
            .env_remove("RENTABOT_API_KEY")
            .env_remove("RENTABOT_LOCK_TOKEN")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    fn get(&self, path: &str) -> Value {
        ureq::get(format!("{}/api/v1{path}", self.url))
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap()
    }

    fn post(&self, path: &str, body: Value) -> u16 {
        ureq::post(format!("{}/api/v1{path}", self.url))
            .config()
            .http_status_as_error(false)
            .build()
            .send_json(body)
            .unwrap()
            .status()
            .as_u16()
    }

    fn resource(&self, id: u32) -> Value {
        self.get(&format!("/resources/{id}"))["resource"].take()
    }

    fn is_free(&self, id: u32) -> bool {
        self.resource(id)["lock-token"] == ""
    }

    /// The event stream of `types`, one JSON event at a time.
    fn events(&self, types: &str) -> Receiver<Value> {
        let response = ureq::get(format!("{}/api/v1/events?types={types}", self.url))
            .call()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let reader = BufReader::new(response.into_body().into_reader());
            for line in reader.lines().map_while(Result::ok) {
                if let Some(data) = line.strip_prefix("data:")
                    && tx.send(serde_json::from_str(data.trim()).unwrap()).is_err()
                {
                    break;
                }
            }
        });
        rx
    }
}

/// A finished client: exit code, stdout, stderr.
struct Done {
    code: i32,
    out: String,
    err: String,
}

impl Done {
    fn json(&self) -> Value {
        serde_json::from_str(&self.out).unwrap_or_else(|e| panic!("{e}: {}", self.out))
    }
}

impl std::fmt::Debug for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\nstdout: {}\nstderr: {}",
            self.code, self.out, self.err
        )
    }
}

/// Waits (at most [`PATIENCE`]) for `child` to exit, and collects what it printed.
fn finish(child: Child, args: &[&str]) -> Done {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output: Output = match rx.recv_timeout(PATIENCE) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            signal(pid, "KILL");
            panic!("rentabot {args:?} did not exit within {PATIENCE:?}");
        }
    };
    Done {
        code: output.status.code().expect("exited, not killed"),
        out: String::from_utf8_lossy(&output.stdout).into_owned(),
        err: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("sh")
        .args(["-c", &format!("kill -{name} {pid}")])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The next event for which `wanted` holds, within [`PATIENCE`]; the others seen before.
fn next_event(events: &Receiver<Value>, wanted: impl Fn(&Value) -> bool) -> (Value, Vec<Value>) {
    let deadline = Instant::now() + PATIENCE;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = events
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no such event within {PATIENCE:?}; saw {before:?}"));
        if wanted(&event) {
            return (event, before);
        }
        before.push(event);
    }
}

/// Waits until `path` exists (CMD writes it), within [`PATIENCE`].
fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + PATIENCE;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn lock_extend_status_ls_unlock_print_lines_for_people_and_json_for_scripts() {
    let service = Service::start();

    let locked = service.cli(&["lock", "--id", "1", "--ttl", "600", "--holder", "me"]);
    assert_eq!(locked.code, 0, "{locked:?}");
    assert!(
        locked.out.starts_with("locked board-1 (id 1) until "),
        "{locked:?}"
    );
    let token = service.resource(1)["lock-token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        locked.out.contains(&format!("lock token {token}")),
        "{locked:?}"
    );

    let by_tag = service.cli(&["lock", "--tag", "x86", "--json"]);
    assert_eq!(by_tag.code, 0, "{by_tag:?}");
    assert_eq!(by_tag.json()["resource"]["id"], 3);
    let x86 = by_tag.json()["lock-token"].as_str().unwrap().to_owned();

    let extended = service.cli(&["extend", "1", "--token", &token, "--ttl", "1200"]);
    assert_eq!(extended.code, 0, "{extended:?}");
    assert!(
        extended.out.starts_with("extended resource 1 until "),
        "{extended:?}"
    );
    let extended = service.cli(&["extend", "1", "--token", &token, "--ttl", "1200", "--json"]);
    assert_eq!(
        extended.json()["total-lock-duration"]
            .as_u64()
            .map(|d| d >= 1200),
        Some(true)
    );

    let status = service.cli(&["status", "board-1"]);
    assert_eq!(status.code, 0, "{status:?}");
    assert!(
        status.out.starts_with("board-1 (id 1): locked\n"),
        "{status:?}"
    );
    assert!(status.out.contains(", by me"), "{status:?}");
    let status = service.cli(&["status", "1", "--json"]);
    assert_eq!(status.json()["resource"]["lock-holder"], "me");
    let overview = service.cli(&["status"]);
    assert!(
        overview
            .out
            .contains(": ready; 3 resources, 2 locked, 0 unavailable; 0 reservations waiting"),
        "{overview:?}"
    );

    let ls = service.cli(&["ls", "--tag", "arm"]);
    assert_eq!(ls.code, 0, "{ls:?}");
    let rows: Vec<&str> = ls.out.lines().collect();
    assert_eq!(rows.len(), 3, "a header and two boards: {ls:?}");
    assert!(
        rows[1].contains("board-1") && rows[1].contains("locked"),
        "{ls:?}"
    );
    assert!(
        rows[2].contains("board-2") && rows[2].contains("free"),
        "{ls:?}"
    );
    let free = service.cli(&["ls", "--free", "--json"]);
    assert_eq!(free.json()["total"], 1, "{free:?}");

    let unlocked = service.cli(&["unlock", "1", "--token", &token]);
    assert_eq!(
        (unlocked.code, unlocked.out.trim()),
        (0, "unlocked resource 1")
    );
    let batch = service.cli(&["unlock", "--token", &x86, "--json"]);
    assert_eq!(batch.code, 0, "{batch:?}");
    assert_eq!(batch.json()["resource_ids"], json!([3]));
    assert!(service.is_free(1) && service.is_free(3));
}

#[test]
fn refusals_exit_with_the_documented_code_and_print_the_apis_message_and_code() {
    let service = Service::start();
    assert_eq!(service.cli(&["lock", "--id", "1"]).code, 0);

    let taken = service.cli(&["lock", "--id", "1"]);
    assert_eq!(taken.code, 2, "refused: {taken:?}");
    assert!(taken.err.contains("code already_locked"), "{taken:?}");
    assert!(
        taken.err.contains("already locked"),
        "the API's message: {taken:?}"
    );
    assert!(taken.out.is_empty(), "{taken:?}");

    let missing = service.cli(&["lock", "--id", "99"]);
    assert_eq!(missing.code, 3, "not found: {missing:?}");
    assert!(
        missing.err.contains("code resource_not_found"),
        "{missing:?}"
    );
    let missing = service.cli(&["status", "res_00000000000000000000000000000000"]);
    assert_eq!(missing.code, 3, "{missing:?}");

    let wrong_token = service.cli(&["unlock", "1", "--token", "nope"]);
    assert_eq!(wrong_token.code, 2, "{wrong_token:?}");

    let usage = service.cli(&["lock", "--id", "1", "--tag", "arm"]);
    assert_eq!(usage.code, 1, "two ways of choosing: {usage:?}");
    let usage = service.cli(&["lock"]);
    assert_eq!(usage.code, 1, "none: {usage:?}");

    // A port nothing listens on: bind one, and close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let down = service.cli(&["lock", "--id", "1", "--url", &url]);
    assert_eq!(down.code, 4, "unreachable: {down:?}");
    assert!(
        down.err
            .contains(&format!("cannot reach {url}/api/v1/resources/1/lock")),
        "names the URL it tried: {down:?}"
    );
}

#[test]
fn with_an_auth_config_a_missing_key_is_refused_with_401_and_a_given_key_works() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth.yaml");
    let key = "cli-key-0123456789abcdef";
    std::fs::write(
        &auth,
        format!("api_keys:\n  - {{name: ci, key: \"{key}\", role: user}}\n"),
    )
    .unwrap();
    let service = Service::start_with(&["--auth-config", auth.to_str().unwrap()]);

    let anonymous = service.cli(&["lock", "--id", "1"]);
    assert_eq!(anonymous.code, 2, "{anonymous:?}");
    assert!(
        anonymous.err.contains("HTTP 401, code missing_credentials"),
        "{anonymous:?}"
    );

    let flag = service.cli(&["lock", "--id", "1", "--api-key", key]);
    assert_eq!(flag.code, 0, "{flag:?}");
    let env = service
        .command(&["lock", "--id", "2"])
        .env("RENTABOT_API_KEY", key)
        .spawn()
        .unwrap();
    let env = finish(env, &["lock"]);
    assert_eq!(env.code, 0, "RENTABOT_API_KEY: {env:?}");
}

#[test]
fn reserve_wait_claim_and_cancel_follow_the_queue() {
    let service = Service::start();
    let held = service.cli(&["lock", "--tag", "arm", "--quantity", "2", "--json"]);
    assert_eq!(held.code, 0, "{held:?}");
    let tokens: Vec<String> = held.json()["lock-tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();

    let reserved = service.cli(&["reserve", "--tag", "arm", "--quantity", "2"]);
    assert_eq!(reserved.code, 0, "{reserved:?}");
    let rid = reserved.out.split_whitespace().next().unwrap().to_owned();
    assert!(rid.starts_with("res_"), "{reserved:?}");
    assert!(
        reserved
            .out
            .contains("pending: position 1 in the queue; of 2 matching: 2 locked"),
        "says where it is and why: {reserved:?}"
    );

    // The one timeout that runs out on purpose: 1 s.
    let late = service.cli(&["wait", &rid, "--timeout", "1"]);
    assert_eq!(late.code, 5, "{late:?}");
    assert!(
        late.err.contains("still waiting after 1s: position 1"),
        "{late:?}"
    );

    let waiting = service.command(&["wait", &rid, "--json"]).spawn().unwrap();
    let batch = service.cli(&["unlock", "--token", &tokens.join(",")]);
    assert_eq!(batch.code, 0, "{batch:?}");
    let done = finish(waiting, &["wait"]);
    assert_eq!(done.code, 0, "{done:?}");
    assert_eq!(done.json()["status"], "fulfilled");
    assert!(done.err.is_empty(), "no spinner off a terminal: {done:?}");

    let claimed = service.cli(&["claim", &rid]);
    assert_eq!(claimed.code, 0, "{claimed:?}");
    assert!(
        claimed
            .out
            .starts_with(&format!("{rid} claimed: resources 1,2; lock tokens ")),
        "{claimed:?}"
    );
    let again = service.cli(&["claim", &rid]);
    assert_eq!(again.code, 2, "{again:?}");

    let other = service.cli(&["reserve", "--tag", "arm", "--json"]);
    let other = other.json()["reservation_id"].as_str().unwrap().to_owned();
    let queue = service.cli(&["ls", "--queue"]);
    assert!(
        queue.out.contains(&other) && queue.out.contains("pending"),
        "{queue:?}"
    );
    let cancelled = service.cli(&["cancel", &other]);
    assert_eq!(
        (cancelled.code, cancelled.out.trim()),
        (0, format!("cancelled {other}").as_str())
    );
    assert_eq!(service.cli(&["cancel", &other]).code, 3, "gone");
    let gone = service.cli(&["status", &other]);
    assert_eq!(gone.code, 3, "{gone:?}");
    assert!(
        gone.err
            .contains("code reservation_not_found, ended cancelled)"),
        "{gone:?}"
    );
}

#[test]
fn run_exports_the_locks_exits_with_cmds_status_and_releases_them() {
    let service = Service::start();
    let env_file = service.path("env");
    let run = service.cli(&[
        "run",
        "--tag",
        "arm",
        "--quantity",
        "2",
        "--ttl",
        "600",
        "--",
        "sh",
        "-c",
        "env > env; exit 7",
    ]);
    assert_eq!(run.code, 7, "CMD's status: {run:?}");
    let env = std::fs::read_to_string(&env_file).unwrap();
    let var = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in {env}"))
            .to_owned()
    };
    assert_eq!(var("RENTABOT_RESOURCE_ID"), "1,2");
    assert_eq!(var("RENTABOT_RESOURCE_NAME"), "board-1,board-2");
    assert_eq!(
        var("RENTABOT_RESOURCE_ENDPOINT"),
        "ssh://pi@board-1,ssh://pi@board-2"
    );
    assert_eq!(var("RENTABOT_LOCK_TOKEN").split(',').count(), 2);
    assert_eq!(var("RENTABOT_FENCING_TOKEN"), "1,2");
    assert!(
        service.is_free(1) && service.is_free(2),
        "released after a failure"
    );

    let ok = service.cli(&["run", "--name", "board-3", "--", "sh", "-c", "env > env"]);
    assert_eq!(ok.code, 0, "{ok:?}");
    let env = std::fs::read_to_string(&env_file).unwrap();
    assert!(env.contains("RENTABOT_RESOURCE_ID=3\n"), "{env}");
    assert!(service.is_free(3), "released after success");

    let missing = service.cli(&["run", "--id", "1", "--", "/nonexistent/cmd"]);
    assert_eq!(missing.code, 127, "{missing:?}");
    assert!(service.is_free(1), "released when CMD cannot start");

    let none = service.cli(&["run", "--id", "99", "--", "true"]);
    assert_eq!(none.code, 125, "never obtained: {none:?}");
    assert!(none.err.contains("resource_not_found"), "{none:?}");
}

#[test]
fn run_waits_its_turn_and_gives_up_at_its_timeout_withdrawing_the_reservation() {
    let service = Service::start();
    let held = service.cli(&["lock", "--tag", "arm", "--quantity", "2", "--json"]);
    let tokens = held.json()["lock-tokens"].clone();

    // Gives up: 125, and leaves nothing in the queue.
    let late = service.cli(&["run", "--tag", "arm", "--timeout", "1", "--", "true"]);
    assert_eq!(late.code, 125, "{late:?}");
    assert!(late.err.contains("position 1 in the queue"), "{late:?}");
    assert_eq!(service.get("/reservations")["reservations"], json!([]));

    // Waits in the queue until a board comes back, then runs.
    let events = service.events("reservation_created");
    let waiting = service
        .command(&[
            "run",
            "--tag",
            "arm",
            "--",
            "sh",
            "-c",
            "echo $RENTABOT_RESOURCE_NAME",
        ])
        .spawn()
        .unwrap();
    next_event(&events, |_| true);
    assert_eq!(
        service.post("/resources/unlock-batch", json!({"lock_tokens": tokens})),
        200
    );
    let done = finish(waiting, &["run"]);
    assert_eq!((done.code, done.out.trim()), (0, "board-1"), "{done:?}");
    assert!(service.is_free(1));
}

#[test]
fn run_extends_the_lock_before_it_expires() {
    let service = Service::start();
    let fifo = service.path("go");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let events = service.events("locked,extended,expired,unlocked");
    // CMD blocks until the test writes to the FIFO; the lock lives 2 s per extension.
    let running = service
        .command(&[
            "run",
            "--id",
            "1",
            "--ttl",
            "2",
            "--",
            "sh",
            "-c",
            "read line < go",
        ])
        .spawn()
        .unwrap();
    let (locked, _) = next_event(&events, |e| e["type"] == "locked");
    let fencing = locked["fencing_token"].clone();
    // Two extensions: the lock has outlived its first 2 s, and never expired.
    for _ in 0..2 {
        let (extended, before) = next_event(&events, |e| e["type"] == "extended");
        assert_eq!(extended["fencing_token"], fencing);
        assert!(before.is_empty(), "nothing between: {before:?}");
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .unwrap()
        .write_all(b"go\n")
        .unwrap();
    let done = finish(running, &["run"]);
    assert_eq!(done.code, 0, "{done:?}");
    let (end, _) = next_event(&events, |e| e["type"] != "extended");
    assert_eq!(end["type"], "unlocked", "released, not expired: {end}");
}

/// A CMD that says it started, and on SIGTERM writes `term` and exits 42.
const TRAPPING: &str =
    "trap 'echo term > term; exit 42' TERM; echo > started; while :; do sleep 0.05; done";

#[test]
fn run_stops_cmd_when_the_lock_is_force_unlocked_and_exits_124() {
    let service = Service::start();
    let running = service
        .command(&[
            "run", "--id", "1", "--ttl", "600", "--", "sh", "-c", TRAPPING,
        ])
        .spawn()
        .unwrap();
    wait_for_file(&service.path("started"));
    let broken = service.cli(&["maintenance", "force-unlock", "1", "--reason", "board hung"]);
    assert_eq!(broken.code, 0, "{broken:?}");
    let done = finish(running, &["run"]);
    assert_eq!(done.code, 124, "the lost-lock code: {done:?}");
    assert!(done.err.contains("force-unlocked (board hung)"), "{done:?}");
    assert_eq!(
        std::fs::read_to_string(service.path("term")).unwrap(),
        "term\n"
    );
}

#[test]
fn sigterm_to_run_reaches_cmd_and_the_lock_is_released() {
    let service = Service::start();
    let running = service
        .command(&["run", "--id", "1", "--", "sh", "-c", TRAPPING])
        .spawn()
        .unwrap();
    wait_for_file(&service.path("started"));
    signal(running.id(), "TERM");
    let done = finish(running, &["run"]);
    assert_eq!(done.code, 42, "CMD's own status: {done:?}");
    assert_eq!(
        std::fs::read_to_string(service.path("term")).unwrap(),
        "term\n"
    );
    assert!(service.is_free(1), "released");

    // A CMD that does not catch it dies of it: 128 + 15.
    let running = service
        .command(&[
            "run",
            "--id",
            "1",
            "--",
            "sh",
            "-c",
            "echo > started2; exec sleep 600",
        ])
        .spawn()
        .unwrap();
    wait_for_file(&service.path("started2"));
    signal(running.id(), "TERM");
    let done = finish(running, &["run"]);
    assert_eq!(done.code, 143, "{done:?}");
    assert!(service.is_free(1), "released");
}

#[test]
fn wait_on_a_terminal_shows_a_spinner_with_the_position_and_why() {
    let service = Service::start();
    assert_eq!(
        service
            .cli(&["lock", "--tag", "arm", "--quantity", "2"])
            .code,
        0
    );
    let reserved = service.cli(&["reserve", "--tag", "arm", "--json"]);
    let rid = reserved.json()["reservation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // script(1) gives the client a terminal; the wait runs out after 1 s on purpose.
    let client = env!("CARGO_BIN_EXE_rentabot");
    let shown = Command::new("script")
        .args([
            "-qefc",
            &format!("{client} wait {rid} --timeout 1"),
            "/dev/null",
        ])
        .env("RENTABOT_URL", &service.url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux");
    let shown = finish(shown, &["script", "wait"]);
    assert!(
        shown
            .out
            .contains("0s position 1 in the queue; of 2 matching: 2 locked"),
        "the spinner's line: {shown:?}"
    );
}

#[test]
fn run_by_id_waits_for_the_lock_to_end_and_then_runs() {
    let service = Service::start();
    let held = service.cli(&["lock", "--id", "1", "--json"]);
    let token = held.json()["lock-token"].as_str().unwrap().to_owned();
    let waiting = service
        .command(&[
            "run",
            "--id",
            "1",
            "--",
            "sh",
            "-c",
            "echo $RENTABOT_RESOURCE_ID",
        ])
        .spawn()
        .unwrap();
    // Its first attempt was refused (the audit log records refusals) ...
    let deadline = Instant::now() + PATIENCE;
    while !service.get("/audit?resource=1")["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["success"] == false)
    {
        assert!(Instant::now() < deadline, "run never tried to lock");
        std::thread::sleep(Duration::from_millis(10));
    }
    // ... and the unlock's event wakes it.
    let unlocked = service.cli(&["unlock", "1", "--token", &token]);
    assert_eq!(unlocked.code, 0, "{unlocked:?}");
    let done = finish(waiting, &["run"]);
    assert_eq!((done.code, done.out.trim()), (0, "1"), "{done:?}");
    assert!(service.is_free(1));
}

#[test]
fn sigterm_while_run_waits_withdraws_the_reservation() {
    let service = Service::start();
    assert_eq!(
        service
            .cli(&["lock", "--tag", "arm", "--quantity", "2"])
            .code,
        0
    );
    let events = service.events("reservation_created,reservation_ended");
    let waiting = service
        .command(&["run", "--tag", "arm", "--", "true"])
        .spawn()
        .unwrap();
    next_event(&events, |e| e["type"] == "reservation_created");
    signal(waiting.id(), "TERM");
    let (ended, _) = next_event(&events, |e| e["type"] == "reservation_ended");
    assert_eq!(ended["reason"], "cancelled");
    let done = finish(waiting, &["run"]);
    assert_eq!(done.code, 143, "{done:?}");
    assert_eq!(service.get("/reservations")["reservations"], json!([]));
}

#[test]
fn run_follows_the_event_stream_across_a_service_restart() {
    let service = Service::start_with(&["--persist", "sqlite:///state.db"]);
    let running = service
        .command(&[
            "run", "--id", "1", "--ttl", "600", "--", "sh", "-c", TRAPPING,
        ])
        .spawn()
        .unwrap();
    wait_for_file(&service.path("started"));
    // The restart ends run's event stream; it reconnects after the last event it saw,
    // so the force unlock is seen whether it comes before or after that (the next
    // extension would be 300 s away).
    let service = service.restart();
    let broken = service.cli(&["maintenance", "force-unlock", "1", "--reason", "moved"]);
    assert_eq!(broken.code, 0, "{broken:?}");
    let done = finish(running, &["run"]);
    assert_eq!(done.code, 124, "{done:?}");
    assert!(done.err.contains("force-unlocked (moved)"), "{done:?}");
}

#[test]
fn run_stops_cmd_when_an_extension_is_refused_and_kills_it_after_kill_after() {
    let service = Service::start();
    // CMD ignores SIGTERM: SIGKILL follows after --kill-after (1 s, on purpose).
    let stubborn = "trap '' TERM; echo > started; while :; do sleep 0.05; done";
    let events = service.events("extended");
    let running = service
        .command(&[
            "run",
            "--id",
            "1",
            "--ttl",
            "2",
            "--kill-after",
            "1",
            "--",
            "sh",
            "-c",
            stubborn,
        ])
        .spawn()
        .unwrap();
    wait_for_file(&service.path("started"));
    next_event(&events, |_| true);
    // Out of service: the lock runs on, but may not be extended.
    let out = service.cli(&["maintenance", "start", "1", "--reason", "rack move"]);
    assert_eq!(out.code, 0, "{out:?}");
    let done = finish(running, &["run"]);
    assert_eq!(done.code, 124, "{done:?}");
    assert!(
        done.err
            .contains("extending the lock on board-1 was refused"),
        "{done:?}"
    );
    assert!(done.err.contains("SIGKILL"), "{done:?}");
}

#[test]
fn maintenance_takes_a_resource_out_brings_it_back_and_breaks_locks() {
    let service = Service::start();
    let out = service.cli(&["maintenance", "start", "2", "--reason", "new SD card"]);
    assert_eq!(
        (out.code, out.out.trim()),
        (0, "board-2 (id 2): Resource marked unavailable"),
        "{out:?}"
    );
    let refused = service.cli(&["lock", "--id", "2"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.err.contains("HTTP 409, code resource_unavailable"),
        "{refused:?}"
    );
    let status = service.cli(&["status", "2"]);
    assert!(
        status.out.contains("maintenance: new SD card from "),
        "{status:?}"
    );

    let back = service.cli(&["maintenance", "end", "2", "--json"]);
    assert_eq!(back.code, 0, "{back:?}");
    assert_eq!(back.json()["resource"]["unavailable"], false);

    assert_eq!(service.cli(&["lock", "--id", "2"]).code, 0);
    let broken = service.cli(&[
        "maintenance",
        "force-unlock",
        "2",
        "--reason",
        "hung",
        "--json",
    ]);
    assert_eq!(
        broken.json()["message"],
        "Resource force-unlocked",
        "{broken:?}"
    );
    assert!(service.is_free(2));
    let again = service.cli(&["maintenance", "force-unlock", "2", "--reason", "hung"]);
    assert_eq!(again.code, 2, "{again:?}");
    assert!(again.err.contains("code not_locked"), "{again:?}");
}
