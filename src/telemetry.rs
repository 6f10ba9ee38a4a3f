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
//!
//! **Traces** (cargo feature `otel`, off by default): [`start`] also exports the request
//! spans over OTLP when an endpoint is configured (module `traces`); [`Traces::shutdown`]
//! flushes them. A build without the feature refuses `--otlp-endpoint` rather than
//! ignore it.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;

use anyhow::Context;
#[cfg(feature = "otel")]
use tracing_subscriber::Layer as _;
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

#[cfg(feature = "otel")]
pub mod traces;

/// What [`start`] installed besides the log: the trace exporter, if any. Shut it down
/// once the server has stopped, so that the last spans are sent.
#[must_use = "shut the traces down after the server stops, or the last spans are lost"]
#[derive(Default)]
pub struct Traces {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Traces {
    /// Exports the spans still queued and stops the exporter, waiting at most
    /// `traces::SHUTDOWN_WAIT` (5 s) for the collector. Nothing to do without an
    /// exporter. Call it outside any async runtime (the exporter's HTTP client blocks).
    pub fn shutdown(self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown_with_timeout(traces::SHUTDOWN_WAIT)
        {
            tracing::warn!("exporting the last spans failed: {e}");
        }
    }
}

/// Installs the global subscriber for `rentabot serve`: the log, and with the `otel`
/// feature and an OTLP endpoint (`otlp_endpoint`, from `--otlp-endpoint`, or the
/// standard `OTEL_EXPORTER_OTLP_*` variables) the export of request spans.
///
/// # Errors
/// What [`init`] refuses; an `otlp_endpoint` given to a build without the `otel`
/// feature; with it, an endpoint that is not an `http://` URL, or an exporter that
/// cannot be built.
pub fn start(
    level: &str,
    format: LogFormat,
    otlp_endpoint: Option<&str>,
) -> anyhow::Result<Traces> {
    let otlp_endpoint = otlp_endpoint.filter(|e| !e.trim().is_empty());
    #[cfg(not(feature = "otel"))]
    if otlp_endpoint.is_some() {
        anyhow::bail!(
            "--otlp-endpoint (RENTABOT_OTLP_ENDPOINT) asks for traces, but this rentabot was \
             built without them: build it with `cargo build --release --features otel`"
        );
    }
    #[cfg(feature = "otel")]
    {
        let settings = traces::Settings::resolve(otlp_endpoint, |name| std::env::var(name).ok())
            .map_err(anyhow::Error::msg)?;
        if let Some(settings) = settings {
            return start_with_traces(level, format, &settings);
        }
    }
    init(level, format)?;
    #[cfg(not(feature = "otel"))]
    if let Some(name) = [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .into_iter()
    .find(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
    {
        tracing::warn!(
            "{name} is set, but this rentabot was built without traces (cargo feature `otel`): \
             no spans are exported"
        );
    }
    Ok(Traces::default())
}

/// The log, as [`init`] makes it, beside the trace layer. Each gets its own filter:
/// `--log-level` applies to the log only (the request span is traced even at `off`),
/// and the trace layer takes the request span and nothing else.
#[cfg(feature = "otel")]
fn start_with_traces(
    level: &str,
    format: LogFormat,
    settings: &traces::Settings,
) -> anyhow::Result<Traces> {
    use opentelemetry::trace::TracerProvider as _;

    let filter = parse_level(level).map_err(|e| anyhow::anyhow!(e))?;
    let provider = traces::provider(settings)?;
    let spans = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("rentabot"))
        // The span's parent is set after it is made (`traces::start_request`), and
        // nothing inside a request needs the OpenTelemetry context: keep the span a
        // builder until it closes, and skip the per-enter bookkeeping.
        .with_context_activation(false)
        .with_tracked_inactivity(false)
        .with_location(false)
        .with_threads(false)
        .with_level(false)
        .with_target(false)
        .with_filter(
            tracing_subscriber::filter::filter_fn(traces::is_request_span)
                .with_max_level_hint(tracing::Level::ERROR),
        );
    let registry = tracing_subscriber::registry().with(spans);
    let installed = match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_ansi(colours_wanted())
                    .fmt_fields(WithoutOtelFields(
                        debug_fn(write_escaped_field).delimited(" "),
                    ))
                    .with_filter(filter),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(true)
                    .fmt_fields(JsonWithoutOtelFields)
                    .with_filter(filter),
            )
            .try_init(),
    };
    installed
        .map_err(|e| anyhow::anyhow!(e))
        .context("installing the log subscriber")?;
    traces::set_exporting();
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    tracing::info!("exporting request spans to {}", settings.endpoint);
    Ok(Traces {
        provider: Some(provider),
    })
}

/// Installs the global subscriber: the log only.
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
    debug_fn(write_escaped_field).delimited(" ")
}

/// One field of a text line: `name=value`, or the bare message; escaped.
fn write_escaped_field(
    writer: &mut Writer<'_>,
    field: &tracing::field::Field,
    value: &dyn fmt::Debug,
) -> fmt::Result {
    if field.name() != "message" {
        write!(writer, "{}=", field.name())?;
    }
    write!(Escaped(writer), "{value:?}")
}

/// Whether a field is for the exported span only (`otel.name`, `otel.kind`): the log
/// formats leave these out, so that a line reads the same with traces on.
#[cfg(feature = "otel")]
fn is_otel_field(field: &tracing::field::Field) -> bool {
    field.name().starts_with("otel.")
}

/// A field formatter (`M`, the text one) that never sees the `otel.*` fields.
#[cfg(feature = "otel")]
struct WithoutOtelFields<M>(M);

#[cfg(feature = "otel")]
impl<T, M: tracing_subscriber::field::MakeVisitor<T>> tracing_subscriber::field::MakeVisitor<T>
    for WithoutOtelFields<M>
{
    type Visitor = WithoutOtel<M::Visitor>;

    fn make_visitor(&self, target: T) -> Self::Visitor {
        WithoutOtel(self.0.make_visitor(target))
    }
}

/// The JSON field formatter, without the `otel.*` fields.
#[cfg(feature = "otel")]
struct JsonWithoutOtelFields;

#[cfg(feature = "otel")]
impl<'w> tracing_subscriber::fmt::FormatFields<'w> for JsonWithoutOtelFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: Writer<'w>,
        fields: R,
    ) -> fmt::Result {
        use tracing_subscriber::field::VisitOutput as _;
        let mut visitor = WithoutOtel(tracing_subscriber::fmt::format::JsonVisitor::new(
            &mut writer,
        ));
        fields.record(&mut visitor);
        visitor.0.finish()
    }

    /// Fields recorded after a span was made: merged into its JSON object as
    /// `JsonFields` does (the `otel.*` fields are only ever given when it is made).
    fn add_fields(
        &self,
        current: &'w mut tracing_subscriber::fmt::FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        use tracing_subscriber::fmt::format::JsonFields;
        let mut json = tracing_subscriber::fmt::FormattedFields::<JsonFields>::new(std::mem::take(
            &mut current.fields,
        ));
        let merged = tracing_subscriber::fmt::FormatFields::add_fields(
            &JsonFields::new(),
            &mut json,
            fields,
        );
        current.fields = json.fields;
        merged
    }
}

/// A visitor that passes every field to `V` but the `otel.*` ones.
#[cfg(feature = "otel")]
struct WithoutOtel<V>(V);

#[cfg(feature = "otel")]
impl<V: tracing::field::Visit> tracing::field::Visit for WithoutOtel<V> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        if !is_otel_field(field) {
            self.0.record_debug(field, value);
        }
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if !is_otel_field(field) {
            self.0.record_str(field, value);
        }
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        if !is_otel_field(field) {
            self.0.record_i64(field, value);
        }
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        if !is_otel_field(field) {
            self.0.record_u64(field, value);
        }
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        if !is_otel_field(field) {
            self.0.record_f64(field, value);
        }
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        if !is_otel_field(field) {
            self.0.record_bool(field, value);
        }
    }
    fn record_error(
        &mut self,
        field: &tracing::field::Field,
        value: &(dyn std::error::Error + 'static),
    ) {
        if !is_otel_field(field) {
            self.0.record_error(field, value);
        }
    }
}

#[cfg(feature = "otel")]
impl<V: tracing_subscriber::field::VisitOutput<fmt::Result>>
    tracing_subscriber::field::VisitOutput<fmt::Result> for WithoutOtel<V>
{
    fn finish(self) -> fmt::Result {
        self.0.finish()
    }
}

#[cfg(feature = "otel")]
impl<V: tracing_subscriber::field::VisitFmt> tracing_subscriber::field::VisitFmt
    for WithoutOtel<V>
{
    fn writer(&mut self) -> &mut dyn fmt::Write {
        self.0.writer()
    }
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
