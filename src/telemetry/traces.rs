//! Traces (cargo feature `otel`): every request's `request` span exported over OTLP/HTTP
//! (protobuf), with its id, method, route template and status (README § Traces).
//!
//! - **Configured** by `--otlp-endpoint` / `RENTABOT_OTLP_ENDPOINT`, or the standard
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT` (see
//!   `Settings::resolve`). With none of them nothing is exported and the subscriber is
//!   exactly the one a build without the feature installs: the only cost left is two
//!   relaxed atomic loads per request ([`is_exporting`]).
//! - **Never in a request's way.** A span is handed to the SDK's batch processor when
//!   the request ends: a `try_send` into a bounded queue (`OTEL_BSP_MAX_QUEUE_SIZE`,
//!   2048), dropped when it is full. A thread of the processor's own posts batches
//!   (every `OTEL_BSP_SCHEDULE_DELAY`, 5 s, or at 512 spans), retrying for at most
//!   `OTEL_EXPORTER_OTLP_TIMEOUT` (10 s). The SDK logs the first dropped span and the
//!   total at shutdown, and a failed export once per batch.
//! - **Flushed on shutdown**: [`super::Traces::shutdown`] (after the server stopped)
//!   exports what is queued, waiting at most [`SHUTDOWN_WAIT`].
//! - **The caller's trace is continued**: a W3C `traceparent` (and `tracestate`) header
//!   makes the request's span its child.
//! - The span's name and kind travel in the `otel.name` and `otel.kind` fields, which
//!   the log formats leave out; the other attributes are set on the exported span only
//!   ([`start_request`], [`end_request`]), so logs read the same with traces on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::Status;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The service name when `OTEL_SERVICE_NAME` (or `service.name` in
/// `OTEL_RESOURCE_ATTRIBUTES`) does not give one.
pub const DEFAULT_SERVICE_NAME: &str = "rentabot";
/// The path OTLP/HTTP collectors take traces on, appended to a base endpoint.
const TRACES_PATH: &str = "/v1/traces";
/// The longest shutdown waits for the last spans to be exported.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// Set once the trace layer is installed; read by the request span's builder.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether request spans are exported: the `otel` feature is built in and an endpoint
/// was configured. One relaxed load: the flag is set once, before the server starts.
pub fn is_exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

pub(super) fn set_exporting() {
    EXPORTING.store(true, Ordering::Relaxed);
}

/// Where and as whom spans are exported.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Settings {
    /// The full URL spans are posted to (`…/v1/traces`).
    pub endpoint: String,
    /// `None`: the environment names the service.
    pub service_name: Option<&'static str>,
    /// What the environment asked for that is not done, said once the log is up.
    pub warnings: Vec<String>,
}

impl Settings {
    /// The trace settings from the flag (`--otlp-endpoint`, a base URL) and the
    /// environment (`env`). The first given of: the flag plus `/v1/traces`,
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it is, `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// plus `/v1/traces`. `None` when none is given, or `OTEL_SDK_DISABLED=true`.
    ///
    /// # Errors
    /// An endpoint that is not an `http://` URL with a host, naming where it came from.
    /// `https://` is refused too: the exporter is built without TLS.
    pub fn resolve(
        flag: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Settings>, String> {
        let given = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if given("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let (source, endpoint) = if let Some(base) = flag.filter(|v| !v.trim().is_empty()) {
            ("--otlp-endpoint", with_traces_path(base))
        } else if let Some(full) = given("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", full.trim().to_owned())
        } else if let Some(base) = given("OTEL_EXPORTER_OTLP_ENDPOINT") {
            ("OTEL_EXPORTER_OTLP_ENDPOINT", with_traces_path(&base))
        } else {
            return Ok(None);
        };
        check_endpoint(&endpoint).map_err(|why| format!("invalid {source} {endpoint:?}: {why}"))?;
        let named = given("OTEL_SERVICE_NAME").is_some()
            || given("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|attributes| {
                attributes
                    .split(',')
                    .any(|kv| kv.trim_start().starts_with("service.name="))
            });
        let mut warnings = Vec::new();
        for name in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(protocol) = given(name).filter(|p| p.trim() != "http/protobuf") {
                warnings.push(format!(
                    "{name}={protocol:?} is ignored: rentabot exports traces over http/protobuf only"
                ));
            }
        }
        Ok(Some(Settings {
            endpoint,
            service_name: (!named).then_some(DEFAULT_SERVICE_NAME),
            warnings,
        }))
    }
}

/// A base endpoint with the traces path appended (one slash between them).
fn with_traces_path(base: &str) -> String {
    format!("{}{TRACES_PATH}", base.trim().trim_end_matches('/'))
}

/// `http://host[:port][/path]`: what the exporter, built without TLS, can post to.
fn check_endpoint(endpoint: &str) -> Result<(), &'static str> {
    let lower = endpoint.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Err(
            "rentabot's trace exporter has no TLS; send to a collector over \
                    http:// (an OpenTelemetry Collector on the host or in the pod)",
        );
    }
    let Some(rest) = lower.strip_prefix("http://") else {
        return Err("expected an http:// URL such as http://127.0.0.1:4318");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains(char::is_whitespace) {
        return Err("expected an http:// URL with a host, such as http://127.0.0.1:4318");
    }
    Ok(())
}

/// The tracer provider: an OTLP/HTTP exporter behind the SDK's batch processor, and
/// the service's resource. The sampler is the SDK's default, or `OTEL_TRACES_SAMPLER`
/// (and `_ARG`); the batch sizes and delays come from `OTEL_BSP_*`.
///
/// Call it outside any async runtime: the blocking HTTP client refuses to be dropped
/// inside one. `main` does.
pub(super) fn provider(settings: &Settings) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(settings.endpoint.clone())
        .build()
        .context("building the OTLP span exporter")?;
    let mut resource = Resource::builder().with_attribute(opentelemetry::KeyValue::new(
        "service.version",
        env!("CARGO_PKG_VERSION"),
    ));
    if let Some(name) = settings.service_name {
        resource = resource.with_service_name(name);
    }
    Ok(SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(exporter).build())
        .with_resource(resource.build())
        .build())
}

/// Whether the trace layer takes this callsite: the request span only (its handlers'
/// spans and the log events stay in the log).
pub(super) fn is_request_span(metadata: &tracing::Metadata<'_>) -> bool {
    metadata.is_span() && metadata.name() == "request" && metadata.target() == REQUEST_TARGET
}

/// Where the request span is created.
const REQUEST_TARGET: &str = "rentabot::api::middleware";

/// Adds to a freshly created request span what only the trace carries: the caller's
/// trace as its parent (`traceparent`, `tracestate`, read through `header`), the
/// request id, the method and the route template (never the path, which holds ids).
pub fn start_request<'h>(
    span: &Span,
    header: impl Fn(&str) -> Option<&'h str>,
    request_id: &str,
    method: &'static str,
    route: &'static str,
) {
    if let Some(traceparent) = header("traceparent") {
        let carrier = Headers {
            traceparent,
            tracestate: header("tracestate"),
        };
        // A malformed traceparent gives an empty context: the span starts a trace.
        let parent = TraceContextPropagator::new().extract(&carrier);
        // Fails only without the trace layer or once the span started; neither happens
        // here (the span was just made, and context activation is off).
        let _ = span.set_parent(parent);
    }
    span.set_attribute("request.id", request_id.to_owned());
    span.set_attribute("http.request.method", method);
    span.set_attribute("http.route", route);
}

/// Adds the response's status to the request span; a 5xx marks it failed.
pub fn end_request(span: &Span, status: u16) {
    span.set_attribute("http.response.status_code", i64::from(status));
    if let Some(status) = span_status(status) {
        span.set_status(status);
    }
}

/// The span status of an HTTP status, as the semantic conventions have it for a server:
/// an error for 5xx; 4xx is the client's problem and leaves it unset.
fn span_status(status: u16) -> Option<Status> {
    (status >= 500).then(|| Status::error(format!("HTTP {status}")))
}

/// The two W3C trace-context headers of a request.
struct Headers<'h> {
    traceparent: &'h str,
    tracestate: Option<&'h str>,
}

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => Some(self.traceparent),
            "tracestate" => self.tracestate,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn resolve(flag: Option<&str>, env: &[(&str, &str)]) -> Result<Option<Settings>, String> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::resolve(flag, |name| env.get(name).cloned())
    }

    fn endpoint(flag: Option<&str>, env: &[(&str, &str)]) -> Option<String> {
        resolve(flag, env).unwrap().map(|s| s.endpoint)
    }

    #[test]
    fn the_flag_then_the_traces_variable_then_the_base_variable_name_the_endpoint() {
        let both = [
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:4318/custom",
            ),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://base:4318"),
        ];
        assert_eq!(endpoint(None, &[]), None, "nothing given: no exporter");
        assert_eq!(
            endpoint(Some("http://flag:4318/"), &both).as_deref(),
            Some("http://flag:4318/v1/traces")
        );
        assert_eq!(
            endpoint(None, &both).as_deref(),
            Some("http://traces:4318/custom"),
            "the signal's variable is taken as it is"
        );
        assert_eq!(
            endpoint(None, &both[1..]).as_deref(),
            Some("http://base:4318/v1/traces")
        );
        assert_eq!(
            endpoint(Some(""), &[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]),
            None,
            "empty values are unset"
        );
        assert_eq!(
            endpoint(Some("http://flag:4318"), &[("OTEL_SDK_DISABLED", "TRUE")]),
            None
        );
    }

    #[test]
    fn endpoints_other_than_plain_http_urls_are_refused_naming_their_source() {
        for (flag, env, why) in [
            (
                Some("https://collector:4318"),
                vec![],
                "no TLS in this build",
            ),
            (Some("collector:4318"), vec![], "no scheme"),
            (Some("http://"), vec![], "no host"),
            (
                None,
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "grpc://collector:4317")],
                "another scheme",
            ),
        ] {
            let error = resolve(flag, &env).expect_err(why);
            let source = flag.map_or("OTEL_EXPORTER_OTLP_ENDPOINT", |_| "--otlp-endpoint");
            assert!(error.contains(source), "{why}: {error}");
            assert!(error.contains("http://"), "says what works: {error}");
        }
    }

    #[test]
    fn the_service_is_rentabot_unless_the_environment_names_it() {
        let flag = Some("http://127.0.0.1:4318");
        let name = |env: &[(&str, &str)]| resolve(flag, env).unwrap().unwrap().service_name;
        assert_eq!(name(&[]), Some("rentabot"));
        assert_eq!(name(&[("OTEL_SERVICE_NAME", "lab-broker")]), None);
        assert_eq!(
            name(&[("OTEL_RESOURCE_ATTRIBUTES", "team=lab, service.name=broker")]),
            None
        );
        assert_eq!(
            name(&[("OTEL_RESOURCE_ATTRIBUTES", "team=lab")]),
            Some("rentabot")
        );
    }

    #[test]
    fn a_protocol_other_than_http_protobuf_is_warned_about() {
        let flag = Some("http://127.0.0.1:4318");
        let settings = resolve(flag, &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])
            .unwrap()
            .unwrap();
        assert_eq!(settings.warnings.len(), 1, "{:?}", settings.warnings);
        assert!(settings.warnings[0].contains("http/protobuf"));
        let settings = resolve(flag, &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")])
            .unwrap()
            .unwrap();
        assert!(settings.warnings.is_empty());
    }

    #[test]
    fn only_server_errors_mark_the_span_failed() {
        for (status, failed) in [
            (200, false),
            (404, false),
            (429, false),
            (500, true),
            (503, true),
        ] {
            assert_eq!(
                matches!(span_status(status), Some(Status::Error { .. })),
                failed,
                "{status}"
            );
        }
    }

    #[test]
    fn a_traceparent_is_read_with_its_tracestate() {
        let carrier = Headers {
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            tracestate: Some("lab=1"),
        };
        let cx = TraceContextPropagator::new().extract(&carrier);
        use opentelemetry::trace::TraceContextExt;
        let parent = cx.span().span_context().clone();
        assert!(parent.is_remote() && parent.is_sampled());
        assert_eq!(
            parent.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parent.trace_state().get("lab"), Some("1"));
    }
}
