//! Waiting for a reservation: long-polls bounded by `--timeout`, and on a terminal a
//! spinner saying where in the queue it is and what it waits for.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use super::http::{Api, Failure};

/// The longest single long-poll on a terminal: the queue position it shows is this
/// fresh (the service answers a long-poll early only when the status changes).
const TERMINAL_POLL: Duration = Duration::from_secs(5);
/// The longest single long-poll otherwise (the service allows 300 s).
const QUIET_POLL: Duration = Duration::from_secs(60);
/// What a long-poll gets beyond its `wait` for the answer to come back.
const POLL_MARGIN: Duration = Duration::from_secs(15);

/// The spinner on stderr; drawn only when stderr is a terminal.
pub struct Progress {
    bar: ProgressBar,
    shown: bool,
}

impl Progress {
    /// A spinner when stderr is a terminal, nothing otherwise.
    pub fn start() -> Progress {
        let shown = std::io::stderr().is_terminal();
        let bar = if shown {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed} {wide_msg}")
                    .expect("a valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        } else {
            ProgressBar::hidden()
        };
        Progress { bar, shown }
    }

    /// Says what it waits for now.
    pub fn say(&self, message: String) {
        self.bar.set_message(message);
    }

    /// Removes the spinner.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn poll(&self) -> Duration {
        if self.shown {
            TERMINAL_POLL
        } else {
            QUIET_POLL
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// Waits until reservation `id` is fulfilled or claimed, and returns it as then.
///
/// # Errors
/// `Timeout` once `timeout` has passed; a 404 when it ended (expired, cancelled, ...);
/// whatever a request met.
pub fn reservation(
    api: &Api,
    id: &str,
    first: Option<Value>,
    timeout: Duration,
    progress: &Progress,
) -> Result<Value, Failure> {
    let deadline = Instant::now() + timeout;
    let path = format!("/reservations/{id}");
    let mut current = match first {
        Some(r) => r,
        None => api.get(&path, &[])?,
    };
    loop {
        let status = current["status"].as_str().unwrap_or_default().to_owned();
        if status != "pending" {
            return Ok(current);
        }
        progress.say(describe_wait(&current));
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::Timeout(format!(
                "{id} is still waiting after {}s: {}",
                timeout.as_secs(),
                describe_wait(&current)
            )));
        }
        let wait = left.min(progress.poll());
        current = api.get_within(
            &path,
            &[
                ("wait", format!("{:.3}", wait.as_secs_f64())),
                ("status", status),
            ],
            wait + POLL_MARGIN,
        )?;
    }
}

/// Why a pending reservation waits, in a line: its place and what its resources do.
pub fn describe_wait(reservation: &Value) -> String {
    let mut line = match reservation["position_in_queue"].as_u64() {
        Some(p) => format!("position {p} in the queue"),
        None => "waiting".to_owned(),
    };
    let w = &reservation["waiting_for"];
    if w.is_object() {
        let n = |k: &str| w[k].as_u64().unwrap_or(0);
        line.push_str(&format!(
            "; of {} matching: {} locked",
            n("matching"),
            n("locked")
        ));
        if let Some(next) = w["next_release_at"].as_str() {
            line.push_str(&format!(" (next release {next})"));
        }
        for (key, what) in [
            ("held_for_earlier", "held for earlier reservations"),
            ("unavailable", "unavailable"),
            ("free", "free"),
        ] {
            if n(key) > 0 {
                line.push_str(&format!(", {} {what}", n(key)));
            }
        }
        if let Some(at) = w["estimated_available_at"].as_str() {
            line.push_str(&format!("; expected by {at}"));
        }
    }
    line
}
