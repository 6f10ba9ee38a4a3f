//! What the tests that run the real binary share: starting it with its log piped to the
//! test, and learning its address from the line it logs once it listens (port 0: no
//! polling, no fixed port). `mod support;` in tests/cli.rs, client.rs, crash.rs, otel.rs
//! and readme.rs.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// The `rentabot` binary cargo built for these tests.
pub fn rentabot() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rentabot"))
}

/// Spawns `command` with its stdout piped, and a thread that sends each line of it to
/// the receiver returned (until the process closes it or the receiver is dropped).
pub fn spawn_logged(command: &mut Command) -> (Child, Receiver<String>) {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, log) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, log)
}

/// Reads `log` up to the line that says where the service listens, for at most
/// `patience`: its address (`host:port`) and the lines before that one. Panics when the
/// log ends first (the process exited) or the time runs out.
pub fn wait_until_listening(log: &Receiver<String>, patience: Duration) -> (String, Vec<String>) {
    let deadline = Instant::now() + patience;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = log
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no line saying where it listens ({e}): {before:#?}"));
        if let Some((_, rest)) = line.split_once("listening on http://") {
            let address = rest.split_whitespace().next().unwrap_or_default();
            return (address.to_owned(), before);
        }
        before.push(line);
    }
}
