//! The real binary, as an operator runs it: SIGHUP re-reads the descriptor.
//!
//! A real process has a real clock and its own timing, so waits here are bounded polls
//! with a deadline (never a fixed sleep standing in for a TTL).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long the service gets to start, or to act on a signal.
const PATIENCE: Duration = Duration::from_secs(20);

/// The running service; killed when dropped, so a failed assertion leaves no process.
struct Service {
    child: Child,
    /// Its log, line by line.
    log: Receiver<String>,
    base: String,
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
        let mut child = Command::new(env!("CARGO_BIN_EXE_rentabot"))
            .arg("--config")
            .arg(descriptor)
            .args(["--host", "127.0.0.1", "--port", "0", "--log-level", "info"])
            .current_dir(descriptor.parent().unwrap())
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the binary starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut service = Service {
            child,
            log,
            base: String::new(),
        };
        let line = service.wait_for_log("listening on http://");
        let port: String = line
            .rsplit_once("127.0.0.1:")
            .expect("the address is logged")
            .1
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        service.base = format!("http://127.0.0.1:{port}/api/v1");
        service
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
        // The shell's builtin `kill`: present wherever `sh` is, unlike /usr/bin/kill
        // (procps), which minimal images leave out.
        let status = Command::new("sh")
            .args(["-c", &format!("kill -HUP {}", self.child.id())])
            .status()
            .expect("sh runs");
        assert!(status.success());
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
