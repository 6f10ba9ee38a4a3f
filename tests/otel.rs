//! Traces (feature `otel`, README § Traces): the real binary exports its request spans
//! to a collector over OTLP/HTTP. The collector here is a few lines of HTTP/1.1 on a
//! port of its own that decodes each POST /v1/traces (protobuf) and hands the spans to
//! the test through a channel; every wait is on that channel or on the service's log,
//! bounded by [`PATIENCE`] (running out is a failure, never a pass).
//!
//! Run with `cargo test --features otel --test otel`.
#![cfg(feature = "otel")]

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use prost::Message as _;

/// How long the service gets to start, to export, or to stop.
const PATIENCE: Duration = Duration::from_secs(20);

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";

/// One exported span, as the collector decoded it.
#[derive(Debug)]
struct Received {
    name: String,
    kind: i32,
    trace_id: String,
    parent_span_id: String,
    status: i32,
    attributes: HashMap<String, String>,
    resource: HashMap<String, String>,
}

impl Received {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// A fake OTLP/HTTP collector: every span of every export, in the order received.
struct Collector {
    port: u16,
    spans: Receiver<Received>,
    /// While held, exports are read but not answered (a collector that hangs); dropping
    /// it answers them all.
    hold: Option<Sender<()>>,
}

impl Collector {
    fn start() -> Collector {
        Collector::start_holding(false)
    }

    /// A collector that answers nothing until [`Collector::release`].
    fn start_holding(holding: bool) -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, spans) = mpsc::channel();
        let (hold, released) = mpsc::channel::<()>();
        let released = std::sync::Arc::new(std::sync::Mutex::new(released));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let tx = tx.clone();
                let released = released.clone();
                std::thread::spawn(move || serve_exports(stream, &tx, holding, &released));
            }
        });
        Collector {
            port,
            spans,
            hold: Some(hold),
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn release(&mut self) {
        self.hold.take();
    }

    /// The first span exported from now on whose `request.id` is `id`.
    fn span_of(&self, id: &str) -> Received {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.spans.recv_timeout(left) {
                Ok(span) if span.attribute("request.id") == Some(id) => return span,
                Ok(_) => {}
                Err(e) => panic!("no span with request.id {id:?} was exported ({e})"),
            }
        }
    }
}

/// Answers one connection's exports (HTTP/1.1, kept alive) until it closes.
fn serve_exports(
    stream: TcpStream,
    spans: &Sender<Received>,
    holding: bool,
    released: &std::sync::Mutex<Receiver<()>>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        assert!(
            request_line.starts_with("POST /v1/traces "),
            "the exporter posts to /v1/traces: {request_line:?}"
        );
        let mut length = 0;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap(),
                "content-type" => assert_eq!(value.trim(), "application/x-protobuf"),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        if holding {
            // Blocks until the test drops its sender.
            let _ = released.lock().unwrap().recv();
        }
        let export = ExportTraceServiceRequest::decode(body.as_slice()).expect("OTLP protobuf");
        for resource_spans in export.resource_spans {
            let resource = resource_spans
                .resource
                .map(|r| attributes(&r.attributes))
                .unwrap_or_default();
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                let _ = spans.send(Received {
                    name: span.name,
                    kind: span.kind,
                    trace_id: hex(&span.trace_id),
                    parent_span_id: hex(&span.parent_span_id),
                    status: span.status.map_or(0, |s| s.code),
                    attributes: attributes(&span.attributes),
                    resource: resource.clone(),
                });
            }
        }
        // An empty ExportTraceServiceResponse: all accepted.
        let answer =
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

fn attributes(list: &[KeyValue]) -> HashMap<String, String> {
    list.iter()
        .map(|kv| (kv.key.clone(), value(kv.value.as_ref())))
        .collect()
}

fn value(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        other => format!("{other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The running service; killed when dropped, so a failed assertion leaves no process.
struct Service {
    child: Child,
    log: Receiver<String>,
    /// `http://127.0.0.1:PORT`
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
    /// `rentabot --config descriptor --port 0 ARGS` with the environment `env` and no
    /// other OTEL_* variable, once it listens.
    fn start(descriptor: &Path, args: &[&str], env: &[(&str, &str)]) -> Service {
        let mut command = support::rentabot();
        command
            .arg("--config")
            .arg(descriptor)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("RENTABOT_OTLP_ENDPOINT")
            .stderr(Stdio::inherit());
        for (name, _) in std::env::vars() {
            if name.starts_with("OTEL_") {
                command.env_remove(name);
            }
        }
        command.envs(env.iter().copied());
        let (child, log) = support::spawn_logged(&mut command);
        let (address, startup) = support::wait_until_listening(&log, PATIENCE);
        Service {
            child,
            log,
            base: format!("http://{address}"),
            startup,
        }
    }

    /// The next log line; `None` once the process closed its stdout.
    fn next_line(&self) -> Option<String> {
        match self.log.recv_timeout(PATIENCE) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => panic!("no log line within {PATIENCE:?}"),
        }
    }

    /// SIGTERM, then every log line until the process exits, and how it exited.
    fn stop(&mut self) -> (Vec<String>, ExitStatus) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let mut lines = Vec::new();
        while let Some(line) = self.next_line() {
            lines.push(line);
        }
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "still running after stdout closed"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        (lines, status)
    }
}

fn one_board_lab() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let descriptor = dir.path().join("lab.yaml");
    std::fs::write(&descriptor, "board-1:\n    tags: \"arm\"\n").unwrap();
    (dir, descriptor)
}

async fn get(client: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> reqwest::StatusCode {
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("the service answers").status()
}

#[tokio::test]
async fn request_spans_carry_the_request_id_route_status_and_the_callers_trace() {
    let collector = Collector::start();
    let (_dir, descriptor) = one_board_lab();
    let service = Service::start(
        &descriptor,
        &[
            "--otlp-endpoint",
            &collector.base(),
            "--log-level",
            "info,rentabot::api=debug",
        ],
        // Export every 50 ms: the spans come while the service runs.
        &[("OTEL_BSP_SCHEDULE_DELAY", "50")],
    );
    let endpoint = format!("{}/v1/traces", collector.base());
    assert!(
        service
            .startup
            .iter()
            .any(|l| l.contains("exporting request spans to") && l.contains(&endpoint)),
        "{:?}",
        service.startup
    );
    let client = reqwest::Client::new();

    // Arrange, act: a request inside the caller's trace, one outside any.
    let traceparent = format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01");
    let status = get(
        &client,
        &format!("{}/api/v1/resources/1", service.base),
        &[
            ("x-request-id", "job-17.step-2"),
            ("traceparent", &traceparent),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let missing = get(
        &client,
        &format!("{}/api/v1/resources/999", service.base),
        &[("x-request-id", "job-17.step-3")],
    )
    .await;
    assert_eq!(missing, 404);

    // Assert: the first is a server span in the caller's trace, child of its span.
    let span = collector.span_of("job-17.step-2");
    assert_eq!(span.name, "GET /api/v1/resources/{id}");
    assert_eq!(span.kind, SpanKind::Server as i32);
    assert_eq!(span.trace_id, TRACE_ID);
    assert_eq!(span.parent_span_id, PARENT_SPAN_ID);
    assert_eq!(span.attribute("http.request.method"), Some("GET"));
    assert_eq!(span.attribute("http.route"), Some("/api/v1/resources/{id}"));
    assert_eq!(span.attribute("http.response.status_code"), Some("200"));
    assert_eq!(span.status, StatusCode::Unset as i32);
    assert!(
        !span.attributes.values().any(|v| v.contains("resources/1")),
        "the path, with its ids, is not exported: {:?}",
        span.attributes
    );
    assert_eq!(
        span.resource.get("service.name").map(String::as_str),
        Some("rentabot")
    );
    // The second starts a trace of its own; a 404 is the client's error, not the span's.
    let span = collector.span_of("job-17.step-3");
    assert_eq!(span.attribute("http.route"), Some("/api/v1/resources/{id}"));
    assert_eq!(span.attribute("http.response.status_code"), Some("404"));
    assert_eq!(span.status, StatusCode::Unset as i32);
    assert_ne!(span.trace_id, TRACE_ID);
    assert_eq!(span.parent_span_id, "", "a root span");

    // The log reads as without traces: the span's name and kind are not in it.
    let line = loop {
        let line = service.next_line().expect("the service runs");
        if line.contains("job-17.step-2") {
            break line;
        }
    };
    assert!(line.contains("request{id=job-17.step-2}"), "{line}");
    assert!(!line.contains("otel."), "{line}");
}

#[tokio::test]
async fn spans_still_queued_at_sigterm_are_exported_before_the_process_exits() {
    let collector = Collector::start();
    let (_dir, descriptor) = one_board_lab();
    let mut service = Service::start(
        &descriptor,
        &[
            "--otlp-endpoint",
            &collector.base(),
            "--log-format",
            "json",
            "--log-level",
            "info,rentabot::api=debug",
        ],
        // No export by the clock within the test: only the shutdown can send it.
        &[
            ("OTEL_BSP_SCHEDULE_DELAY", "3600000"),
            ("OTEL_SERVICE_NAME", "lab-broker"),
        ],
    );
    let client = reqwest::Client::new();
    let status = get(
        &client,
        &format!("{}/api/v1/resources", service.base),
        &[("x-request-id", "before-sigterm")],
    )
    .await;
    assert_eq!(status, 200);

    let (log, exit) = service.stop();

    assert!(exit.success(), "{exit:?}: {log:?}");
    let span = collector.span_of("before-sigterm");
    assert_eq!(span.name, "GET /api/v1/resources");
    assert_eq!(
        span.resource.get("service.name").map(String::as_str),
        Some("lab-broker"),
        "OTEL_SERVICE_NAME names the service"
    );
    let line = log
        .iter()
        .find(|l| l.contains("before-sigterm"))
        .expect("the request is logged");
    let line: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(
        line["spans"],
        serde_json::json!([{ "name": "request", "id": "before-sigterm" }]),
        "the JSON log's span is as without traces"
    );
}

#[tokio::test]
async fn a_hung_collector_delays_no_request_and_dropped_spans_are_reported_once() {
    let mut collector = Collector::start_holding(true);
    let (_dir, descriptor) = one_board_lab();
    let mut service = Service::start(
        &descriptor,
        &["--otlp-endpoint", &collector.base()],
        // A queue of 4 and batches of 2: with the first export hanging, at most 6 of
        // the 20 spans below fit, and the rest are dropped.
        &[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "4"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2"),
            ("OTEL_BSP_SCHEDULE_DELAY", "3600000"),
        ],
    );
    let client = reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .unwrap();

    for n in 0..20 {
        let id = format!("while-hung-{n}");
        let status = get(
            &client,
            &format!("{}/api/v1/resources", service.base),
            &[("x-request-id", &id)],
        )
        .await;
        assert_eq!(status, 200, "answered while the collector hangs");
    }
    collector.release();
    let (log, exit) = service.stop();

    assert!(exit.success(), "{exit:?}: {log:?}");
    let first_drop = log
        .iter()
        .filter(|l| l.contains("dropped a Span due to queue full"))
        .count();
    assert_eq!(first_drop, 1, "the first drop is logged once: {log:#?}");
    assert!(
        log.iter()
            .any(|l| l.contains("Spans were dropped") && l.contains("dropped_span_count=")),
        "the total is logged at shutdown: {log:#?}"
    );
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_exported_and_https_is_refused() {
    let (_dir, descriptor) = one_board_lab();
    let service = Service::start(&descriptor, &[], &[]);
    assert!(
        !service
            .startup
            .iter()
            .any(|l| l.contains("exporting request spans")),
        "{:?}",
        service.startup
    );
    drop(service);

    let mut child = Command::new(env!("CARGO_BIN_EXE_rentabot"))
        .arg("--config")
        .arg(&descriptor)
        .args(["--port", "0", "--otlp-endpoint", "https://collector:4318"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let deadline = Instant::now() + PATIENCE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("rentabot served with an https endpoint instead of refusing it");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("--otlp-endpoint") && stderr.contains("no TLS"),
        "{stderr}"
    );
}
