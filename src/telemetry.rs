//! Logging: `tracing` to stdout, filtered by `--log-level`, as text or JSON lines.
//!
//! - **Levels** take the Rust names (`error` … `trace`), Rent-A-Bot 1.0's (`warning`,
//!   `critical`), and `off`, in any case; or a filter of `target=level` directives such as
//!   `rentabot=debug,actix_server=warn`. Anything else stops the start with a message
//!   (an unknown word used to be read as a target name, which silently logged nothing).
//! - **Text** (the default) is one line per event. Every field value and message goes
//!   through [`Escaped`]: control characters (newlines included) and bidirectional
//!   overrides are written as escapes, so text from a request (a reason, a name) can
//!   never start a line of its own or rewrite the terminal. Colours only when stdout is
//!   a terminal and `NO_COLOR` is unset.
//! - **JSON** is one object per line (serde_json escapes what needs escaping), with the
//!   event's fields at the top level and the spans it ran in under `spans`.
//!
//! Every request runs in a `request` span carrying its id (`api::middleware`), so each
//! line a request causes names it: `request{id=…}: …` in text, `"spans":[{"name":
//! "request","id":"…"}]` in JSON.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;

use anyhow::Context;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::{Writer, debug_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines are written: `--log-format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber.
///
/// # Errors
/// A `level` that is neither a level name nor a filter of `target=level` directives
/// (see [`parse_level`]), or a subscriber already installed.
pub fn init(level: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = parse_level(level).map_err(|e| anyhow::anyhow!(e))?;
    // `Targets`, not `EnvFilter`: the directives are static, and EnvFilter would take a
    // lock on every span enter and exit (several per request) to track span filters we
    // do not offer.
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_ansi(colours_wanted())
                    .fmt_fields(escaped_fields()),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(true),
            )
            .try_init(),
    };
    installed
        .map_err(|e| anyhow::anyhow!(e))
        .context("installing the log subscriber")
}

/// Colours only for a person at a terminal who has not asked for none (no-color.org).
fn colours_wanted() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The text formatter's field writer: `message` bare, the others `name=value`,
/// separated by spaces, every value through [`Escaped`].
fn escaped_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    debug_fn(
        |writer: &mut Writer<'_>, field: &tracing::field::Field, value: &dyn fmt::Debug| {
            if field.name() != "message" {
                write!(writer, "{}=", field.name())?;
            }
            write!(Escaped(writer), "{value:?}")
        },
    )
    .delimited(" ")
}

/// Writes through to `W`, replacing every control character (C0, DEL, C1: newlines,
/// carriage returns, escape sequences) and every bidirectional formatting character with
/// a visible escape (`\n`, `\u{1b}`, `\u{202e}`). Runs of plain text are written whole.
pub struct Escaped<W>(pub W);

impl<W: fmt::Write> fmt::Write for Escaped<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain = 0;
        for (i, c) in s.char_indices() {
            if !needs_escape(c) {
                continue;
            }
            self.0.write_str(&s[plain..i])?;
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c => write!(self.0, "\\u{{{:x}}}", u32::from(c))?,
            }
            plain = i + c.len_utf8();
        }
        self.0.write_str(&s[plain..])
    }
}

/// Control characters, and the bidirectional embeddings, overrides and isolates that
/// can make a line display in another order than it is stored.
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The log filter for `--log-level`: a level name, or comma-separated directives that
/// are each a level name or `target=level`. Level names are case-insensitive and
/// include 1.0's `warning` (= warn) and `critical` (= error); `off` silences.
///
/// # Errors
/// A message naming the part that is not understood and what is accepted.
pub fn parse_level(spec: &str) -> Result<Targets, String> {
    const ACCEPTED: &str = "use error, warn (warning), info, debug, trace, critical or off, \
        or directives such as rentabot=debug,actix_server=warn";
    let mut directives = Vec::new();
    for part in spec.split(',').map(str::trim) {
        let (target, level) = match part.split_once('=') {
            Some((target, level)) => (Some(target.trim()), level.trim()),
            None => (None, part),
        };
        let level = level_name(level).ok_or_else(|| {
            format!("invalid --log-level {spec:?}: {part:?} is not a level; {ACCEPTED}")
        })?;
        match target {
            None => directives.push(level.to_owned()),
            Some(t) if is_target(t) => directives.push(format!("{t}={level}")),
            Some(t) => {
                return Err(format!(
                    "invalid --log-level {spec:?}: {t:?} is not a target (a module path such as rentabot::api); {ACCEPTED}"
                ));
            }
        }
    }
    directives
        .join(",")
        .parse()
        .map_err(|e| format!("invalid --log-level {spec:?}: {e}"))
}

/// The `tracing` name of a level name, 1.0's included.
fn level_name(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "off" => "off",
        "error" | "critical" => "error",
        "warn" | "warning" => "warn",
        "info" => "info",
        "debug" => "debug",
        "trace" => "trace",
        _ => return None,
    })
}

/// A target: a Rust module path (`rentabot`, `actix_web`, `rentabot::api`).
fn is_target(t: &str) -> bool {
    !t.is_empty()
        && t.split("::").all(|seg| {
            !seg.is_empty() && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[test]
    fn level_names_of_rust_and_of_1_0_are_accepted_in_any_case() {
        use tracing::Level;
        // (given, the most verbose level `rentabot::api` logs, the same for `other`)
        for (given, ours, other) in [
            ("info", Some(Level::INFO), Some(Level::INFO)),
            ("WARNING", Some(Level::WARN), Some(Level::WARN)),
            ("warn", Some(Level::WARN), Some(Level::WARN)),
            ("Critical", Some(Level::ERROR), Some(Level::ERROR)),
            ("error", Some(Level::ERROR), Some(Level::ERROR)),
            ("debug", Some(Level::DEBUG), Some(Level::DEBUG)),
            ("trace", Some(Level::TRACE), Some(Level::TRACE)),
            ("off", None, None),
            (" info ", Some(Level::INFO), Some(Level::INFO)),
            (
                "warning,rentabot=DEBUG",
                Some(Level::DEBUG),
                Some(Level::WARN),
            ),
            (
                "rentabot::api=trace,other=critical",
                Some(Level::TRACE),
                Some(Level::ERROR),
            ),
        ] {
            let filter = parse_level(given).unwrap_or_else(|e| panic!("{given:?}: {e}"));
            for (target, expected) in [("rentabot::api", ours), ("other", other)] {
                let most = [
                    Level::TRACE,
                    Level::DEBUG,
                    Level::INFO,
                    Level::WARN,
                    Level::ERROR,
                ]
                .into_iter()
                .find(|level| filter.would_enable(target, level));
                assert_eq!(most, expected, "{given:?} for {target}");
            }
        }
    }

    #[test]
    fn unknown_levels_and_malformed_filters_are_refused_naming_the_part() {
        for (given, why) in [
            (
                "verbose",
                "not a level: it used to be read as a target and log nothing",
            ),
            ("", "empty"),
            ("info,", "an empty directive"),
            ("rentabot=loud", "an unknown level after ="),
            ("=info", "no target"),
            ("rent-a-bot=info", "not a module path"),
            ("rentabot[span]=info", "span filters are not supported"),
        ] {
            let error = parse_level(given).expect_err(why);
            assert!(error.contains("--log-level"), "{given:?}: {error}");
            assert!(error.contains("warning"), "lists what is accepted: {error}");
        }
    }

    /// A writer into a shared buffer, for one test's subscriber.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// What the text format writes for events logged inside `f`.
    fn text_log(f: impl FnOnce()) -> String {
        let out = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(out.clone())
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .fmt_fields(escaped_fields())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        out.text()
    }

    #[test]
    fn text_from_a_request_cannot_start_a_log_line_of_its_own() {
        let reason = "board hung\n2026-11-30T00:00:00Z  INFO forged: all good\r\u{1b}[2K";
        let name = "rack\u{202e}1";
        let log = text_log(|| {
            let span = tracing::error_span!("request", id = %"abc\ndef");
            let _entered = span.enter();
            tracing::warn!(reason = %reason, name, "lock force-unlocked: {reason}");
        });

        assert_eq!(log.lines().count(), 1, "{log}");
        assert!(!log.contains('\r') && !log.contains('\u{1b}'), "{log:?}");
        assert!(
            log.contains(r"board hung\n2026-11-30T00:00:00Z  INFO forged: all good\r\u{1b}[2K"),
            "{log}"
        );
        assert!(log.contains(r#"name="rack\u{202e}1""#), "{log}");
        assert!(log.contains(r"request{id=abc\ndef}"), "{log}");
    }

    #[test]
    fn text_fields_are_name_equals_value_after_the_bare_message() {
        let log =
            text_log(|| tracing::info!(resource = 3, until = "none", "maintenance scheduled"));

        assert!(
            log.ends_with("INFO maintenance scheduled resource=3 until=\"none\"\n"),
            "{log:?}"
        );
    }

    #[test]
    fn escaping_leaves_plain_text_alone_and_escapes_each_control_character() {
        let mut out = String::new();
        write!(Escaped(&mut out), "é ok\t\u{0}\u{7f}\u{85}\u{2066}x").unwrap();
        assert_eq!(out, r"é ok\t\u{0}\u{7f}\u{85}\u{2066}x");
    }
}
