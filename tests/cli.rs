//! The real binary, as an operator runs it: signals (SIGHUP reloads, SIGTERM stops
//! cleanly), logging flags and format, connection limits, and `check` in a pipe.
//!
//! A real process has a real clock and its own timing, so waits here are bounded polls
//! with a deadline (never a fixed sleep standing in for a TTL).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// How long the service gets to start, or to act on a signal.
const PATIENCE: Duration = Duration::from_secs(20);

/// The running service; killed when dropped, so a failed assertion leaves no process.
struct Service {
    child: Child,
    /// Its log, line by line.
    log: Receiver<String>,
    base: String,
    /// The log lines before it listened.
    startup: Vec<String>,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    /// Starts `rentabot --config descriptor --port 0` and waits for it to listen.
    fn start(descriptor: &Path) -> Service {
        Service::start_with(descriptor, &["--log-level", "info"], &[("NO_COLOR", "1")])
    }

    /// Starts `rentabot --config descriptor --host 127.0.0.1 --port 0 ARGS` with the
    /// extra environment `env`, and waits for it to log the address it listens on (so
    /// `args` must keep `rentabot::app` at info).
    fn start_with(descriptor: &Path, args: &[&str], env: &[(&str, &str)]) -> Service {
        let mut command = support::rentabot();
        command
            .arg("--config")
            .arg(descriptor)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .current_dir(descriptor.parent().unwrap())
            .env_remove("NO_COLOR")
            .stderr(Stdio::inherit());
        for (key, value) in env {
            command.env(key, value);
        }
        let (child, log) = support::spawn_logged(&mut command);
        let (address, startup) = support::wait_until_listening(&log, PATIENCE);
        Service {
            child,
            log,
            base: format!("http://{address}/api/v1"),
            startup,
        }
    }

    /// `host:port` of the service.
    fn address(&self) -> &str {
        self.base
            .trim_start_matches("http://")
            .trim_end_matches("/api/v1")
    }

    /// Every log line from now until the process exits (its stdout closes).
    fn rest_of_log(&self) -> Vec<String> {
        let deadline = Instant::now() + PATIENCE;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => return lines,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("the log did not end: {lines:?}"),
            }
        }
    }

    /// Sends `signal` (a `kill` name: HUP, TERM) to the process.
    fn signal(&self, signal: &str) {
        // The shell's builtin `kill`: present wherever `sh` is, unlike /usr/bin/kill
        // (procps), which minimal images leave out.
        let status = Command::new("sh")
            .args(["-c", &format!("kill -{signal} {}", self.child.id())])
            .status()
            .expect("sh runs");
        assert!(status.success());
    }

    /// The exit status, once the process has exited.
    fn wait_for_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {PATIENCE:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The first log line from now on containing `needle`.
    fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("no log line with {needle:?} ({e})"),
            }
        }
    }

    fn hang_up(&self) {
        self.signal("HUP");
    }

    async fn names(&self, client: &reqwest::Client) -> Vec<String> {
        let body: Value = client
            .get(format!("{}/resources", self.base))
            .send()
            .await
            .expect("the service answers")
            .json()
            .await
            .unwrap();
        body["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Polls the resource list until it is `expected`, or fails at the deadline.
    async fn wait_for_names(&self, client: &reqwest::Client, expected: &[&str]) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let names = self.names(client).await;
            if names == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "still {names:?}, expected {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn sighup_reloads_the_descriptor_and_a_bad_one_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let descriptor = dir.path().join("lab.yaml");
    std::fs::write(&descriptor, "board-1:\n    tags: \"arm\"\n").unwrap();
    let service = Service::start(&descriptor);
    let client = reqwest::Client::new();
    assert_eq!(service.names(&client).await, ["board-1"]);

    std::fs::write(
        &descriptor,
        "board-1:\n    tags: \"arm\"\nboard-2:\n    tags: \"x86\"\n",
    )
    .unwrap();
    service.hang_up();

    service
        .wait_for_names(&client, &["board-1", "board-2"])
        .await;
    let report = service.wait_for_log("descriptor reloaded");
    assert!(report.contains("board-2"), "{report}");

    std::fs::write(&descriptor, "board-1:\n    tags: [x\n").unwrap();
    service.hang_up();

    let refusal = service.wait_for_log("descriptor not reloaded");
    assert!(refusal.contains("lab.yaml"), "{refusal}");
    assert_eq!(service.names(&client).await, ["board-1", "board-2"]);
}

/// SIGHUP re-reads the auth config too: a rotated key works at once, the old one is
/// refused, and a held lock survives. Without a config, the start log says the API is
/// open.
#[tokio::test]
async fn sighup_rotates_api_keys_and_the_open_service_says_it_is_open() {
    let (dir, descriptor) = one_board_lab();
    let auth = dir.path().join("auth.yaml");
    let config =
        |key: &str| format!("api_keys:\n  - {{name: jenkins, key: \"{key}\", role: user}}\n");
    let (old, new) = ("old-key-0123456789abcdef", "new-key-0123456789abcdef");
    std::fs::write(&auth, config(old)).unwrap();
    let service = Service::start_with(
        &descriptor,
        &[
            "--log-level",
            "info",
            "--auth-config",
            auth.to_str().unwrap(),
        ],
        &[("NO_COLOR", "1")],
    );
    let client = reqwest::Client::new();
    let lock = |key: &'static str| {
        client
            .post(format!("{}/resources/1/lock", service.base))
            .header("X-API-Key", key)
            .send()
    };
    assert_eq!(lock(old).await.unwrap().status(), 200);

    std::fs::write(&auth, config(new)).unwrap();
    service.hang_up();
    let report = service.wait_for_log("auth config reloaded");
    assert!(report.contains("changed: jenkins"), "{report}");
    assert!(!report.contains(new), "keys are never logged: {report}");
    assert_eq!(lock(old).await.unwrap().status(), 401);
    // The lock taken with the old key is still held.
    assert_eq!(lock(new).await.unwrap().status(), 403, "already locked");

    std::fs::write(&auth, "api_keys: []\nbogus: 1\n").unwrap();
    service.hang_up();
    let refusal = service.wait_for_log("auth config was not reloaded");
    assert!(refusal.contains("auth.yaml"), "{refusal}");
    assert_eq!(
        lock(new).await.unwrap().status(),
        403,
        "the config in force stays"
    );
    let log = |s: &Service| s.startup.join("\n");
    assert!(
        log(&service).contains("auth is on: 1 API keys"),
        "{}",
        log(&service)
    );
    drop(service);

    let open = Service::start_with(&descriptor, &["--log-level", "info"], &[("NO_COLOR", "1")]);
    let warning = log(&open);
    assert!(
        warning.contains("WARN") && warning.contains("auth is off: every caller may do everything"),
        "{warning}"
    );
}

/// A one-board lab in a temporary directory.
fn one_board_lab() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let descriptor = dir.path().join("lab.yaml");
    std::fs::write(&descriptor, "board-1:\n    tags: \"arm\"\n").unwrap();
    (dir, descriptor)
}

/// Runs the binary with `args`, expecting it to exit by itself within [`PATIENCE`]
/// (killed and failed otherwise, rather than hanging the test).
fn run(args: &[&str]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rentabot"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let deadline = Instant::now() + PATIENCE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "rentabot {args:?} did not exit: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn unknown_log_level_stops_the_start_with_a_message_naming_it() {
    for level in ["verbose", "info,", "rentabot=loud"] {
        let out = run(&["--log-level", level, "--port", "0"]);

        assert!(!out.status.success(), "{level:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("invalid --log-level"), "{stderr}");
        assert!(
            stderr.contains("warning"),
            "lists the accepted names: {stderr}"
        );
        assert!(out.stdout.is_empty(), "nothing was served or logged");
    }
}

/// A build without the `otel` feature refuses the option that asks for traces rather
/// than serve without them (tests/otel.rs covers the build with it).
#[cfg(not(feature = "otel"))]
#[test]
fn otlp_endpoint_stops_a_build_without_traces_saying_how_to_build_one() {
    let (_dir, descriptor) = one_board_lab();
    let descriptor = descriptor.to_str().unwrap();
    let out = run(&[
        "--config",
        descriptor,
        "--port",
        "0",
        "--otlp-endpoint",
        "http://127.0.0.1:4318",
    ]);

    assert!(!out.status.success(), "the option was ignored");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--otlp-endpoint"), "{stderr}");
    assert!(stderr.contains("--features otel"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing was served or logged");
}

#[tokio::test]
async fn log_levels_of_1_0_start_the_service_and_lines_have_no_colours_off_a_terminal() {
    let (_dir, descriptor) = one_board_lab();
    for level in ["warning,rentabot::app=info", "critical,rentabot::app=INFO"] {
        // NO_COLOR unset: stdout being a pipe is what turns colours off.
        let mut service = Service::start_with(&descriptor, &["--log-level", level], &[]);
        assert_eq!(
            service.names(&reqwest::Client::new()).await,
            ["board-1"],
            "{level}"
        );

        service.signal("TERM");
        assert!(service.wait_for_exit().success());
        for line in service.rest_of_log() {
            assert!(!line.contains('\u{1b}'), "an escape sequence in {line:?}");
        }
    }
}

#[tokio::test]
async fn every_log_line_of_a_request_names_its_id_in_text_and_in_json() {
    let (_dir, descriptor) = one_board_lab();
    let client = reqwest::Client::new();
    for format in ["text", "json"] {
        let mut service = Service::start_with(
            &descriptor,
            &["--log-format", format, "--log-level", "debug"],
            &[],
        );
        let id = format!("readme-{format}-1");

        // A maintenance window with an end: "maintenance scheduled" is logged at info
        // inside the request, with its `until`.
        let response = client
            .post(format!("{}/resources/1/unavailable", service.base))
            .header("X-Request-Id", &id)
            .body(r#"{"reason": "new SD card", "until": "2099-01-01T00:00:00Z"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-request-id"], id.as_str());

        service.signal("TERM");
        assert!(service.wait_for_exit().success());
        let log = service.rest_of_log();
        let of_request: Vec<&String> = log.iter().filter(|l| l.contains(&id)).collect();
        let scheduled = log
            .iter()
            .find(|l| l.contains("maintenance scheduled"))
            .unwrap_or_else(|| panic!("{format}: no maintenance line in {log:?}"));
        assert!(of_request.contains(&scheduled), "{format}: {scheduled}");
        assert!(
            of_request
                .iter()
                .any(|l| l.contains("\"request\"") || l.contains(" request ")),
            "{format}: the request's own debug line: {log:?}"
        );
        assert!(
            scheduled.contains("2099-01-01T00:00:00.000Z"),
            "{scheduled}"
        );
        for line in &log {
            assert!(!line.contains("Some("), "{format}: {line}");
        }
        if format == "json" {
            for line in &log {
                let object: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"));
                assert!(object["level"].is_string(), "{line}");
            }
            let scheduled: Value = serde_json::from_str(scheduled).unwrap();
            assert_eq!(scheduled["message"], "maintenance scheduled");
            assert_eq!(scheduled["spans"][0]["id"], id.as_str());
        } else {
            assert!(
                scheduled.contains(&format!("request{{id={id}}}")),
                "{scheduled}"
            );
        }
    }
}

#[test]
fn check_into_a_closed_pipe_exits_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let descriptor = dir.path().join("big.yaml");
    // About 1 MB of output: far more than a pipe holds, so writes fail once the
    // reader has gone, wherever the pipe's capacity is set.
    let lab: String = (0..20_000)
        .map(|i| format!("board-{i}:\n    tags: \"arm,linux\"\n"))
        .collect();
    std::fs::write(&descriptor, lab).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rentabot"))
        .arg("check")
        .arg(&descriptor)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // What `| head -1` does: read a line, close the pipe.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();

    assert!(first.contains("20000 resources"), "{first}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
}

#[tokio::test]
async fn sigterm_answers_long_polls_closes_sockets_ends_streams_and_exits() {
    let (_dir, descriptor) = one_board_lab();
    let mut service = Service::start(&descriptor);
    let client = reqwest::Client::new();
    let lock = client
        .post(format!("{}/resources/1/lock", service.base))
        .send()
        .await
        .unwrap();
    assert_eq!(lock.status(), 200);
    let reservation: Value = client
        .post(format!("{}/reservations", service.base))
        .body(r#"{"tags": ["arm"]}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rid = reservation["reservation_id"].as_str().unwrap().to_owned();
    let poll = tokio::spawn(
        client
            .get(format!("{}/reservations/{rid}?wait=300", service.base))
            .send(),
    );
    let mut events = client
        .get(format!("{}/events", service.base))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let (mut socket, _) = tokio_tungstenite::connect_async(format!(
        "ws://{}/ws/reservations/{rid}",
        service.address()
    ))
    .await
    .expect("the upgrade succeeds");
    assert!(matches!(socket.next().await, Some(Ok(Message::Text(_)))));

    service.signal("TERM");

    let answered = tokio::time::timeout(PATIENCE, poll)
        .await
        .expect("the long-poll was answered")
        .unwrap()
        .expect("an answer, not a dropped connection");
    assert_eq!(answered.status(), 200);
    let state: Value = answered.json().await.unwrap();
    assert_eq!(state["status"], "pending");
    match tokio::time::timeout(PATIENCE, socket.next()).await.unwrap() {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected a close frame, got {other:?}"),
    }
    let end = tokio::time::timeout(PATIENCE, events.chunk())
        .await
        .unwrap();
    assert!(
        matches!(end, Ok(None)),
        "the event stream ended cleanly: {end:?}"
    );
    assert!(service.wait_for_exit().success());
    let log = service.rest_of_log();
    assert!(
        log.iter().any(|l| l.contains("SIGTERM received")),
        "{log:?}"
    );
    assert!(log.iter().any(|l| l.ends_with("stopped")), "{log:?}");
}

/// Open descriptors of process `pid`.
#[cfg(target_os = "linux")]
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the process is alive")
        .count()
}

/// 300 clients that open a connection and never finish their request head, against a
/// service allowed 100 connections: it holds at most 100 of them (its descriptors stay
/// bounded), answers each 408 when `--head-timeout` runs out, and then serves a normal
/// client that queued behind them.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn slow_heads_hold_at_most_max_connections_and_are_cut_at_the_head_timeout() {
    const SLOW: usize = 300;
    const MAX: usize = 100;
    let (_dir, descriptor) = one_board_lab();
    let service = Service::start_with(
        &descriptor,
        &[
            "--max-connections",
            "100",
            "--head-timeout",
            "1",
            "--workers",
            "2",
        ],
        &[("NO_COLOR", "1")],
    );
    let pid = service.child.id();

    let mut slow: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let mut stream = TcpStream::connect(service.address()).expect("the kernel accepts");
            stream
                .write_all(b"GET /api/v1/resources HTTP/1.1\r\nHost: rentabot\r\n")
                .unwrap();
            stream
        })
        .collect();
    let mut peak = 0;
    let mut answered = 0;
    let deadline = Instant::now() + PATIENCE;
    for stream in &mut slow {
        peak = peak.max(open_fds(pid));
        stream
            .set_read_timeout(Some(deadline.saturating_duration_since(Instant::now())))
            .unwrap();
        let mut reply = Vec::new();
        // The server answers (408) and closes: read to the end.
        stream
            .read_to_end(&mut reply)
            .expect("closed by the server within the patience");
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
        answered += 1;
    }
    let status = reqwest::get(format!("{}/resources", service.base))
        .await
        .expect("a normal client is served once the slow ones are gone")
        .status();

    assert_eq!(answered, SLOW);
    assert_eq!(status, 200);
    // The service keeps 64 descriptors besides its connections (files, runtimes):
    // without the limit, the peak would be over 300.
    assert!(
        peak <= MAX + 64,
        "{peak} descriptors open at the peak, for at most {MAX} connections"
    );
}

/// Runs the binary with `args` and `env`, none of the caller's `RENTABOT_*` variables
/// reaching it, expecting it to exit by itself within [`PATIENCE`].
fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rentabot"));
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("RENTABOT_")) {
        command.env_remove(key);
    }
    command.envs(env.iter().copied());
    let mut child = command.spawn().expect("the binary runs");
    let deadline = Instant::now() + PATIENCE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("rentabot {args:?} did not exit within {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// A one-connection HTTP server on 127.0.0.1: it reads the request head, answers
/// `answer`, and hands back the head it read.
fn answer_once(answer: &'static str) -> (u16, std::thread::JoinHandle<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        stream.write_all(answer.as_bytes()).unwrap();
        String::from_utf8(head).unwrap()
    });
    (port, server)
}

#[test]
fn health_exits_0_while_the_service_answers_and_1_once_it_has_stopped() {
    let (_dir, descriptor) = one_board_lab();
    let service = Service::start(&descriptor);
    let url = format!("http://{}", service.address());

    let up = run_with_env(&["health", "--url", &url], &[]);
    assert!(up.status.success(), "{up:?}");
    assert_eq!(
        String::from_utf8_lossy(&up.stdout),
        format!("{url}/health answered 200\n")
    );

    drop(service);
    let down = run_with_env(&["health", "--url", &url], &[]);
    assert_eq!(down.status.code(), Some(1), "{down:?}");
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(stderr.contains("connecting to"), "{stderr}");
    assert!(down.stdout.is_empty());
}

#[test]
fn health_asks_get_health_on_the_port_of_rentabot_port_without_a_url() {
    let (port, server) = answer_once("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");

    let out = run_with_env(&["health"], &[("RENTABOT_PORT", &port.to_string())]);

    assert!(out.status.success(), "{out:?}");
    let head = server.join().unwrap();
    assert!(head.starts_with("GET /health HTTP/1.1\r\n"), "{head}");
    assert!(
        head.contains(&format!("\r\nHost: 127.0.0.1:{port}\r\n")),
        "{head}"
    );
    assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
}

#[test]
fn health_exits_1_naming_the_status_when_it_is_not_200() {
    let (port, server) = answer_once("HTTP/1.1 503 Service Unavailable\r\n\r\n");
    let url = format!("http://127.0.0.1:{port}/prefix/");

    let out = run_with_env(&["health", "--url", &url], &[]);

    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "http://127.0.0.1:{port}/prefix/health answered 503"
        )),
        "{stderr}"
    );
    assert!(
        server
            .join()
            .unwrap()
            .starts_with("GET /prefix/health HTTP/1.1\r\n")
    );
}

/// The kernel accepts the connection into the listener's backlog; nothing ever answers.
#[test]
fn health_gives_up_at_its_timeout_when_nothing_answers() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());

    let started = Instant::now();
    let out = run_with_env(&["health", "--url", &url, "--timeout", "1"], &[]);

    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no answer within the timeout"), "{stderr}");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    drop(listener);
}

#[test]
fn health_refuses_what_it_cannot_probe_saying_what_to_give() {
    let cases = [
        (
            vec!["health", "--url", "https://127.0.0.1:8000"],
            "give an http:// URL",
        ),
        (vec!["health", "--url", "http://"], "has no host"),
    ];
    for (args, says) in cases {
        let out = run_with_env(&args, &[]);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let out = run_with_env(&["health", "--timeout", "0"], &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a zero timeout is a usage error (exit 1, as every wrong command line): {out:?}"
    );
}

/// `--version` names the commit: the one git reports for this checkout (build.rs), or
/// the one the build was given in RENTABOT_BUILD_COMMIT, or `unknown` only when git
/// cannot say. (Cargo also sets RENTABOT_BUILD_COMMIT for the tests it runs, so the
/// build script's own account of where the name came from decides what is expected.)
#[test]
fn version_prints_the_package_version_and_the_git_commit() {
    let git = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8(out.stdout).unwrap().trim().to_owned());
    let expected = match (env!("RENTABOT_BUILD_COMMIT_SOURCE"), git) {
        ("env", _) => env!("RENTABOT_BUILD_COMMIT").to_owned(),
        (_, Some(git)) => git,
        (_, None) => "unknown".to_owned(),
    };
    for flag in ["--version", "-V"] {
        let out = run_with_env(&[flag], &[]);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            format!(
                "rentabot {} (commit {expected})\n",
                env!("CARGO_PKG_VERSION")
            ),
            "{flag}"
        );
    }
}

/// A PostgreSQL password given to the binary never comes out of it: not in a refusal of
/// the URL (clap's own error would repeat the value), not when the server cannot be
/// reached, not in `--help` with RENTABOT_PERSIST set, not from the SQLite-only tools.
#[test]
fn a_postgres_password_is_never_printed() {
    let (_dir, descriptor) = one_board_lab();
    let descriptor = descriptor.to_str().unwrap();
    let secret = "s3cret-pw";
    let tls = format!("postgres://rb:{secret}@127.0.0.1:1/lab?sslmode=require");
    // Port 1: nothing listens, the connection is refused at once.
    let unreachable = format!("postgres://rb:{secret}@127.0.0.1:1/lab");
    for (args, env, says) in [
        (
            vec!["--config", descriptor, "--port", "0", "--persist", &tls],
            vec![],
            "sslmode=require asks for TLS",
        ),
        (
            vec!["--config", descriptor, "--port", "0"],
            vec![("RENTABOT_PERSIST", unreachable.as_str())],
            "connecting to postgres://rb:***@127.0.0.1:1/lab",
        ),
        (vec!["export", "--persist", &unreachable], vec![], "pg_dump"),
    ] {
        let out = run_with_env(&args, &env);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(stderr.contains("rb:***@"), "{args:?}: {stderr}");
        for output in [&stdout, &stderr] {
            assert!(
                !output.contains(secret),
                "{args:?} printed the password: {output}"
            );
        }
    }
    let help = run_with_env(&["--help"], &[("RENTABOT_PERSIST", unreachable.as_str())]);
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("[env: RENTABOT_PERSIST]"), "{help}");
    assert!(!help.contains(secret), "{help}");
}
