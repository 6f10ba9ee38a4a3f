//! A small blocking HTTP client of the v1 API (ureq): JSON in, JSON out, and every
//! failure sorted into what the exit code says.

use std::fmt;
use std::io::{BufRead, BufReader};
use std::time::Duration;

use serde_json::Value;
use ureq::Agent;

use super::args::Connection;
use super::exit;

/// The v1 prefix every path is under.
const PREFIX: &str = "/api/v1";
/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an ordinary request may take, answer included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read (a list of 100 000 resources is about 60 MB).
const MAX_BODY: u64 = 256 * 1024 * 1024;

/// Why a command failed, and so its exit code.
#[derive(Debug)]
pub enum Failure {
    /// The service answered with an error: its status, stable `code` and message.
    Api {
        status: u16,
        code: String,
        message: String,
        body: Value,
    },
    /// The service could not be reached, or did not answer as the API does.
    Unreachable { url: String, error: String },
    /// A wait ran out.
    Timeout(String),
    /// The request cannot be made as given.
    Usage(String),
}

impl Failure {
    /// The exit code (README § Command-line client).
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Api { status: 404, .. } => exit::NOT_FOUND,
            Failure::Api { status, .. } if *status >= 500 => exit::UNREACHABLE,
            Failure::Api { .. } => exit::REFUSED,
            Failure::Unreachable { .. } => exit::UNREACHABLE,
            Failure::Timeout(_) => exit::TIMEOUT,
            Failure::Usage(_) => exit::USAGE,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Api {
                status,
                code,
                message,
                body,
            } => {
                write!(f, "{message} (HTTP {status}, code {code}")?;
                // An ended reservation says how it ended.
                if let Some(ended) = body["ended"].as_str() {
                    write!(f, ", ended {ended}")?;
                }
                f.write_str(")")
            }
            Failure::Unreachable { url, error } => write!(f, "cannot reach {url}: {error}"),
            Failure::Timeout(what) | Failure::Usage(what) => f.write_str(what),
        }
    }
}

/// The service, as one caller sees it.
#[derive(Clone)]
pub struct Api {
    agent: Agent,
    base: String,
    key: Option<String>,
}

impl Api {
    /// A client of the service at `conn.url`.
    pub fn new(conn: &Connection) -> Api {
        let config = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .user_agent(concat!("rentabot/", env!("CARGO_PKG_VERSION")))
            .build();
        Api {
            agent: config.into(),
            base: conn.url.trim_end_matches('/').to_owned(),
            key: conn.api_key.clone().filter(|k| !k.is_empty()),
        }
    }

    /// The full URL of a v1 path (`/resources/1`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{PREFIX}{path}", self.base)
    }

    /// The service's base URL, as given.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path?query`.
    pub fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, Failure> {
        self.get_within(path, query, REQUEST_TIMEOUT)
    }

    /// `GET path?query`, allowed `timeout` (a long-poll's wait plus a margin).
    pub fn get_within(
        &self,
        path: &str,
        query: &[(&str, String)],
        timeout: Duration,
    ) -> Result<Value, Failure> {
        let url = self.url(path);
        let request = self
            .agent
            .get(&url)
            .query_pairs(query.iter().map(|(k, v)| (*k, v.as_str())))
            .config()
            .timeout_global(Some(timeout))
            .build();
        answer(&url, self.authorize(request).call())
    }

    /// `GET` of a path outside the v1 prefix (`/readiness`).
    pub fn get_root(&self, path: &str) -> Result<Value, Failure> {
        let url = format!("{}{path}", self.base);
        answer(&url, self.authorize(self.agent.get(&url)).call())
    }

    /// `POST path?query` with a JSON body (or none).
    pub fn post(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let url = self.url(path);
        let request = self
            .agent
            .post(&url)
            .query_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        let request = self.authorize(request);
        let sent = match body {
            Some(body) => request.send_json(body),
            None => request.send_empty(),
        };
        answer(&url, sent)
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> Result<Value, Failure> {
        let url = self.url(path);
        answer(&url, self.authorize(self.agent.delete(&url)).call())
    }

    /// The event stream (`GET /events?types=...`), as lines; no time limit. With
    /// `after`, it resumes after that event (`Last-Event-ID`).
    pub fn events(
        &self,
        types: &str,
        after: Option<u64>,
    ) -> Result<Box<dyn BufRead + Send>, Failure> {
        let url = self.url("/events");
        let mut request = self
            .agent
            .get(&url)
            .query("types", types)
            .header("Accept", "text/event-stream");
        if let Some(id) = after {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let request = request.config().timeout_global(None).build();
        match self.authorize(request).call() {
            Ok(response) if response.status().is_success() => {
                Ok(Box::new(BufReader::new(response.into_body().into_reader())))
            }
            Ok(response) => Err(api_failure(&url, response)),
            Err(e) => Err(unreachable(&url, &e)),
        }
    }

    fn authorize<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.key {
            Some(key) => request.header("X-API-Key", key),
            None => request,
        }
    }
}

/// The JSON of a successful answer (`null` for an empty one, e.g. 204), or the failure.
fn answer(
    url: &str,
    sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Value, Failure> {
    let response = sent.map_err(|e| unreachable(url, &e))?;
    if !response.status().is_success() {
        return Err(api_failure(url, response));
    }
    let text = response
        .into_body()
        .with_config()
        .limit(MAX_BODY)
        .read_to_string()
        .map_err(|e| unreachable(url, &e))?;
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).map_err(|e| Failure::Unreachable {
        url: url.to_owned(),
        error: format!("the answer is not JSON ({e}): is this a rentabot service?"),
    })
}

/// An error answer: the API's JSON error body (`message`, `code`), or what came instead.
fn api_failure(url: &str, response: ureq::http::Response<ureq::Body>) -> Failure {
    let status = response.status().as_u16();
    let text = response
        .into_body()
        .with_config()
        .limit(1024 * 1024)
        .read_to_string()
        .unwrap_or_default();
    match serde_json::from_str::<Value>(&text) {
        Ok(body) if body.get("message").is_some() => Failure::Api {
            status,
            code: body["code"].as_str().unwrap_or("unknown").to_owned(),
            message: body["message"].as_str().unwrap_or_default().to_owned(),
            body,
        },
        _ if status >= 500 || status == 200 => Failure::Unreachable {
            url: url.to_owned(),
            error: format!("HTTP {status}: {}", text.trim()),
        },
        _ => Failure::Api {
            status,
            code: "unknown".to_owned(),
            message: format!("{url} answered {status}: {}", text.trim()),
            body: Value::Null,
        },
    }
}

fn unreachable(url: &str, error: &ureq::Error) -> Failure {
    let error = match error {
        ureq::Error::Io(io) => io.to_string(),
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        ureq::Error::HostNotFound => "host not found".to_owned(),
        other => other.to_string(),
    };
    Failure::Unreachable {
        url: url.to_owned(),
        error,
    }
}
