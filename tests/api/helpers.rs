//! `spawn_app()`: the real service on 127.0.0.1, a port of its own, a manual clock and a
//! small lab of resources; and [`TestApp`], typed helpers to talk to it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::{Value, json};

use rentabot::api::RequestPolicy;
use rentabot::app::{self, AuditSettings, Persist, Settings, Stopper};
use rentabot::domain::{Policy, ResourceSpec, Timestamp, descriptor};
use rentabot::runtime::{BrokerHandle, ManualClock};
use rentabot::store::MemoryStore;

/// Where every test app's clock starts: 2026-01-15T10:00:00Z.
pub const T0: Timestamp = Timestamp::from_millis(1_768_471_200_000);

/// The test lab (also written to files by reload tests). Ids follow file order.
pub const LAB: &str = r#"
coffee-machine:
    description: "Kitchen coffee machine"
    endpoint: "tcp://192.168.1.50"
    tags: "coffee,kitchen,food"
board-arm-1:
    description: "Raspberry Pi 4"
    endpoint: "ssh://pi@10.0.10.11"
    tags: "ci,linux,arm"
    max-lock-duration: 7200
board-x86-1:
    description: "Intel NUC"
    endpoint: "ssh://ci@10.0.10.21"
    tags: "ci,linux,x86"
    max-lock-duration: 7200
board-arm-2:
    description: "Raspberry Pi 5"
    endpoint: "ssh://pi@10.0.10.12"
    tags: "ci,linux,arm"
    max-lock-duration: 7200
printer:
    description: "Label printer <lab> & co"
    max-lock-duration: 60
"#;

/// Resource ids in [`LAB`].
pub const COFFEE: u32 = 1;
pub const ARM_1: u32 = 2;
pub const X86_1: u32 = 3;
pub const ARM_2: u32 = 4;
pub const PRINTER: u32 = 5;
/// An id no resource has.
pub const UNKNOWN: u32 = 99;

/// The lab as the service loads it.
pub fn lab() -> Vec<ResourceSpec> {
    descriptor::parse(LAB)
        .expect("the test lab is a valid descriptor")
        .resources
}

/// A running service and what a test needs to drive it.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// One client for the whole test. It never follows redirects, so tests see them.
    /// Not shared between tests: its pooled connections belong to the runtime of the
    /// test that opened them, and every `#[tokio::test]` has a runtime of its own.
    pub client: Client,
    /// The service's clock. Advance it instead of sleeping.
    pub clock: Arc<ManualClock>,
    /// The service's broker, to sweep or subscribe to events directly.
    pub broker: BrokerHandle,
    /// Stops the service as SIGTERM does; its `shutdown()` counts the waiting
    /// long-polls, event streams and sockets.
    pub stopper: Stopper,
}

/// Starts the service over [`lab`].
pub async fn spawn_app() -> TestApp {
    spawn_app_with(lab()).await
}

/// Starts the service over `resources`, with its clock at [`T0`].
pub async fn spawn_app_with(resources: Vec<ResourceSpec>) -> TestApp {
    start(resources, Options::default()).await
}

/// Starts the service over [`lab`], bounding requests by `requests`.
pub async fn spawn_app_with_requests(requests: RequestPolicy) -> TestApp {
    start(
        lab(),
        Options {
            requests,
            ..Options::default()
        },
    )
    .await
}

/// Starts the service over `resources` with a queue policy of the test's own.
pub async fn spawn_app_with_policy(resources: Vec<ResourceSpec>, policy: Policy) -> TestApp {
    start(
        resources,
        Options {
            policy,
            ..Options::default()
        },
    )
    .await
}

/// Starts the service over the descriptor at `path`, as `--config path` would: a reload
/// reads it again.
pub async fn spawn_app_with_descriptor(path: &Path) -> TestApp {
    let resources = rentabot::config::load_descriptor(path)
        .expect("the test descriptor is valid")
        .resources;
    start(
        resources,
        Options {
            descriptor: Some(path.to_owned()),
            ..Options::default()
        },
    )
    .await
}

/// Starts the service over `resources` with its state in `store`: answers wait for its
/// commits, and a second app started on the same store restores what the first left.
pub async fn spawn_app_on(store: &MemoryStore, resources: Vec<ResourceSpec>) -> TestApp {
    start(
        resources,
        Options {
            persist: Persist::Memory(store.clone()),
            ..Options::default()
        },
    )
    .await
}

/// How a test app differs from the default one.
#[derive(Default)]
pub struct Options {
    pub persist: Persist,
    /// Where the clock starts: [`T0`] when `None`.
    pub clock_at: Option<Timestamp>,
    /// The file a reload reads (not read at start: it may be a FIFO the test writes
    /// later).
    pub descriptor: Option<PathBuf>,
    pub requests: RequestPolicy,
    pub policy: Policy,
    /// `--auth-config`.
    pub auth: Option<PathBuf>,
    pub audit: AuditSettings,
    /// Metrics off (`Settings::metrics`), as the load tool's `unmetered` server.
    pub unmetered: bool,
}

/// Starts the service over `resources`, as `options` say.
pub async fn start(resources: Vec<ResourceSpec>, options: Options) -> TestApp {
    start_running(resources, options).await.0
}

/// [`start`], and the task serving it: it ends once the service has stopped (after
/// [`Stopper::stop`]) and closed its store and audit log.
pub async fn start_running(
    resources: Vec<ResourceSpec>,
    options: Options,
) -> (TestApp, tokio::task::JoinHandle<anyhow::Result<()>>) {
    init_test_log();
    let clock = Arc::new(ManualClock::new(options.clock_at.unwrap_or(T0)));
    let settings = Settings {
        host: "127.0.0.1".to_owned(),
        port: 0,
        // One worker is plenty for sequential requests and keeps the thread count down:
        // the tests of this binary run in parallel, each with its own server.
        workers: Some(1),
        handle_signals: false,
        policy: options.policy,
        descriptor: options.descriptor,
        requests: options.requests,
        persist: options.persist,
        auth: options.auth,
        audit: options.audit,
        metrics: !options.unmetered,
        ..Settings::default()
    };
    let app = app::build(&settings, resources, clock.clone()).expect("the test app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    // As `rentabot serve` does: what the start changed is committed before the test
    // begins.
    app.ready().await.expect("the start is committed");
    let broker = app.handle();
    let stopper = app.stopper();
    // The server lives as long as this test's runtime.
    let running = tokio::spawn(app.run_until_stopped());
    let client = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("the test client builds");
    let app = TestApp {
        address,
        client,
        clock,
        broker,
        stopper,
    };
    (app, running)
}

/// Logs go nowhere unless `TEST_LOG` is set, then to stdout at debug level.
fn init_test_log() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            rentabot::telemetry::init("debug", rentabot::telemetry::LogFormat::Text)
                .expect("the test log subscriber installs");
        }
    });
}

/// A response, read to the end.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    /// The body as JSON, after checking the status. Panics with the body otherwise.
    pub fn expect_json(&self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {}", self.text))
    }

    /// A header's value; panics if it is missing or not text.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
            .to_str()
            .expect("header is text")
    }
}

/// Reads a response to the end.
pub async fn read(response: reqwest::Response) -> Reply {
    Reply {
        status: response.status(),
        headers: response.headers().clone(),
        text: response.text().await.expect("the body can be read"),
    }
}

/// A lock granted through [`TestApp::locked`].
#[derive(Debug)]
pub struct Held {
    pub token: String,
    pub fencing: u64,
    /// The whole lock response.
    pub body: Value,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn send(&self, request: RequestBuilder) -> Reply {
        read(request.send().await.expect("the request reaches the app")).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.client.get(self.url(path))).await
    }

    /// POST without a body.
    pub async fn post(&self, path: &str) -> Reply {
        self.send(self.client.post(self.url(path))).await
    }

    /// POST `body` as JSON.
    pub async fn post_json(&self, path: &str, body: Value) -> Reply {
        self.send(self.client.post(self.url(path)).json(&body))
            .await
    }

    /// POST `body` with the given content type, or none.
    pub async fn post_body(&self, path: &str, body: &[u8], content_type: Option<&str>) -> Reply {
        let mut request = self.client.post(self.url(path)).body(body.to_vec());
        if let Some(content_type) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        self.send(request).await
    }

    /// `GET /api/v1/resources/{id}`, expected to succeed: the `resource` object.
    pub async fn resource(&self, id: u32) -> Value {
        let body = self
            .get(&format!("/api/v1/resources/{id}"))
            .await
            .expect_json(200);
        body["resource"].clone()
    }

    /// `POST /api/v1/resources/{id}/lock` without a body (the default TTL).
    pub async fn lock(&self, id: u32) -> Reply {
        self.post(&format!("/api/v1/resources/{id}/lock")).await
    }

    /// `POST /api/v1/resources/{id}/lock` with `{"ttl": ttl}` as JSON.
    pub async fn lock_for(&self, id: u32, ttl: u64) -> Reply {
        let url = self.url(&format!("/api/v1/resources/{id}/lock"));
        let body = serde_json::json!({ "ttl": ttl });
        self.send(self.client.post(url).json(&body)).await
    }

    /// `POST /api/v1/resources/{id}/lock` with this raw body and no content type.
    pub async fn lock_with_body(&self, id: u32, body: &str) -> Reply {
        self.post_body(
            &format!("/api/v1/resources/{id}/lock"),
            body.as_bytes(),
            None,
        )
        .await
    }

    /// What a restart must bring back, one of each: a lock on ARM_1 (returned), a lock
    /// with a holder and a note on board 3, a reservation queued for two arm boards
    /// (returned), a maintenance window on board 1, and a resource added by the API
    /// (board-arm-3, which the queued reservation then waits for).
    pub async fn make_every_kind_of_state(&self) -> (Held, Value) {
        let held = self.locked(ARM_1, 600).await;
        let meta = json!({"ttl": 600, "holder": "ci/job/7", "note": "soak"});
        self.post_json("/api/v1/resources/3/lock", meta)
            .await
            .expect_json(200);
        let queued = self
            .post_json(
                "/api/v1/reservations",
                json!({"tags": ["arm"], "quantity": 2, "priority": 2}),
            )
            .await
            .expect_json(201);
        let window = json!({"reason": "rewiring", "until": "2026-01-15T12:00:00Z"});
        self.post_json("/api/v1/resources/1/unavailable", window)
            .await
            .expect_json(200);
        self.post_json(
            "/api/v1/resources",
            json!({"name": "board-arm-3", "tags": ["ci", "arm"]}),
        )
        .await
        .expect_json(201);
        (held, queued)
    }

    /// Locks `id` for `ttl` seconds, expecting success.
    pub async fn locked(&self, id: u32, ttl: u64) -> Held {
        held(self.lock_for(id, ttl).await)
    }

    /// `POST /api/v1/resources/lock?{query}` without a body.
    pub async fn lock_where(&self, query: &str) -> Reply {
        self.post(&format!("/api/v1/resources/lock?{query}")).await
    }

    /// `POST /api/v1/resources/{id}/unlock?lock-token={token}`.
    pub async fn unlock(&self, id: u32, token: &str) -> Reply {
        let url = self.url(&format!("/api/v1/resources/{id}/unlock"));
        self.send(self.client.post(url).query(&[("lock-token", token)]))
            .await
    }

    /// `POST /api/v1/resources/{id}/unlock` with the token in `X-Lock-Token`.
    pub async fn unlock_with_header(&self, id: u32, token: &str) -> Reply {
        let url = self.url(&format!("/api/v1/resources/{id}/unlock"));
        self.send(self.client.post(url).header("X-Lock-Token", token))
            .await
    }

    /// `POST /api/v1/resources/{id}/extend?lock-token={token}&additional-ttl={additional}`.
    pub async fn extend(&self, id: u32, token: &str, additional: &str) -> Reply {
        let url = self.url(&format!("/api/v1/resources/{id}/extend"));
        let query = [("lock-token", token), ("additional-ttl", additional)];
        self.send(self.client.post(url).query(&query)).await
    }

    /// Returns once `n` responses wait (long-polls, event streams, sockets): each counts
    /// itself only after subscribing to the changes it waits for, so whatever the test
    /// does next, they see. Polls the count every millisecond; fails after 30 s.
    pub async fn until_waiting(&self, n: usize) {
        let waiting = async {
            while self.stopper.shutdown().watchers() != n {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), waiting)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} responses waiting, expected {n}",
                    self.stopper.shutdown().watchers()
                )
            });
    }

    /// Moves the service's clock forward.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }
}

/// The token and fencing token of a successful lock response.
pub fn held(reply: Reply) -> Held {
    let body = reply.expect_json(200);
    Held {
        token: body["lock-token"]
            .as_str()
            .expect("lock-token is a string")
            .to_owned(),
        fencing: body["fencing-token"]
            .as_u64()
            .expect("fencing-token is a number"),
        body,
    }
}

/// The object's keys, in order.
pub fn keys(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect()
}

/// The 1.0 resource keys, in 1.0 order, then rentabot's.
pub const RESOURCE_KEYS: [&str; 18] = [
    "id",
    "name",
    "description",
    "lock-token",
    "lock-details",
    "endpoint",
    "tags",
    "lock-acquired-at",
    "lock-expires-at",
    "max-lock-duration",
    "fencing-token",
    "lock-holder",
    "lock-note",
    "expiring-soon",
    "unavailable",
    "unavailable-reason",
    "unavailable-since",
    "unavailable-until",
];
