//! Criterion benches of the auth gate: what every request pays before its handler when
//! auth is on, against auth off. No HTTP: the gate's own cost, to set beside the server
//! CPU time of a lock+unlock cycle that `examples/load.rs` reports (BENCHMARKS.md).
//!
//! - `rules_find/*`: [`rules::find`] for a few request paths.
//! - `gate/open`: auth off (`Auth::open`): route lookup, header parse, `admit`.
//! - `gate/keys/N`: auth on with N API keys: route lookup, `X-API-Key` parse, `admit`
//!   (SHA-256 of the key, constant-time scan of all N digests, role check, one token
//!   from the key's write bucket, reading the real clock). Requests rotate over 8 keys so
//!   that no bucket (a million per second each) runs dry: every iteration is admitted.
//! - `gate/jwt_hs256`, `gate/jwt_rs256`: the same with a bearer JWT.
//! - `cycle/*`: one lock + unlock through the real routes and handlers (`api::configure`,
//!   in process, no TCP), `off` without a gate, `open` and `keys` behind a middleware
//!   that does what the wiring will (resolve the rule, read the credentials, `admit`,
//!   put the caller in the request's extensions). Without the socket, the kernel and the
//!   client, which are most of a real cycle's cost, the gate's share here is an upper
//!   bound of its share over HTTP.
//!
//! Run: `cargo bench --bench auth` (about 40 s; see BENCHMARKS.md).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Service;
use actix_web::{App, HttpMessage, test, web};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use rentabot::api;
use rentabot::auth::{Auth, AuthConfig, Credentials, actix_glue, rules};
use rentabot::domain::{Broker, Clock, ResourceSpec};
use rentabot::runtime::{BrokerHandle, DescriptorSource, SystemClock};
use serde_json::json;

const LOCK_PATH: &str = "/api/v1/resources/42/lock";
const ROTATE: usize = 8;
const SECRET: &str = "a-bench-secret-of-at-least-32-bytes!";

fn key(i: usize) -> String {
    format!("bench-key-{i:04}-0123456789abcdef")
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/auth")
}

/// A config of `n` user keys (at least [`ROTATE`]) and `jwt`, every rate a million per
/// second.
fn auth(n: usize, jwt: &str, clock: Arc<dyn Clock>) -> Auth {
    let mut text = String::from("api_keys:\n");
    for i in 0..n.max(ROTATE) {
        text.push_str(&format!(
            "  - {{key: {}, name: key-{i}, role: user}}\n",
            key(i)
        ));
    }
    text.push_str("rate_limit: {requests_per_second: 1000000, burst: 1000000}\n");
    text.push_str(jwt);
    let config = AuthConfig::parse(&text).expect("a valid config");
    Auth::from_config(config, &fixtures(), clock).expect("a usable config")
}

fn rules_find(c: &mut Criterion) {
    let mut group = c.benchmark_group("rules_find");
    let cases = [
        ("health", "GET", "/health"),
        ("lock", "POST", LOCK_PATH),
        (
            "legacy_claim",
            "POST",
            "/rentabot/api/v1.0/reservations/res_0123456789abcdef0123456789abcdef/claim",
        ),
        ("unmatched", "GET", "/api/v1/resources/42/lock/extra"),
    ];
    for (name, method, path) in cases {
        group.bench_function(name, |b| {
            b.iter(|| rules::find(black_box(method), black_box(path)))
        });
    }
    group.finish();
}

fn gate(c: &mut Criterion) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let mut group = c.benchmark_group("gate");

    let open = Auth::open();
    let presented = key(0);
    group.bench_function("open", |b| {
        b.iter(|| {
            let rule = rules::resolve("POST", black_box(LOCK_PATH));
            let creds = Credentials::from_headers(Some(presented.as_bytes()), None).unwrap();
            open.admit(rule, &creds, ip, clock.now()).unwrap()
        })
    });

    for n in [8, 100, 1000] {
        let auth = auth(n, "", clock.clone());
        let keys: Vec<String> = (0..ROTATE).map(key).collect();
        let mut i = 0;
        group.bench_with_input(BenchmarkId::new("keys", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) % ROTATE;
                let rule = rules::resolve("POST", black_box(LOCK_PATH));
                let creds = Credentials::from_headers(Some(keys[i].as_bytes()), None).unwrap();
                auth.admit(rule, &creds, ip, clock.now()).expect("admitted")
            })
        });
    }

    let now_secs = clock.now().as_millis() / 1000;
    let claims = json!({"sub": "alice", "exp": now_secs + 86_400, "rentabot_role": "user"});
    let hs = auth(
        ROTATE,
        &format!("jwt: {{hs256_secret: \"{SECRET}\"}}\n"),
        clock.clone(),
    );
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap();
    let header = format!("Bearer {token}");
    group.bench_function("jwt_hs256", |b| {
        b.iter(|| {
            let rule = rules::resolve("POST", black_box(LOCK_PATH));
            let creds = Credentials::from_headers(None, Some(header.as_bytes())).unwrap();
            hs.admit(rule, &creds, ip, clock.now()).expect("admitted")
        })
    });

    let rs = auth(
        ROTATE,
        "jwt: {public_key_file: rs256-public.pem, algorithm: RS256}\n",
        clock.clone(),
    );
    let private = std::fs::read(fixtures().join("rs256-private.pem")).unwrap();
    let token = encode(
        &Header::new(Algorithm::RS256),
        &claims,
        &EncodingKey::from_rsa_pem(&private).unwrap(),
    )
    .unwrap();
    let header = format!("Bearer {token}");
    group.bench_function("jwt_rs256", |b| {
        b.iter(|| {
            let rule = rules::resolve("POST", black_box(LOCK_PATH));
            let creds = Credentials::from_headers(None, Some(header.as_bytes())).unwrap();
            rs.admit(rule, &creds, ip, clock.now()).expect("admitted")
        })
    });
    group.finish();
}

/// The app `app::build` makes (routes, handlers, app data), in process, behind the gate
/// when `auth` is given; `iters` lock+unlock cycles of resource 1, timed.
fn cycles(auth: Option<Auth>, iters: u64) -> Duration {
    actix_web::rt::System::new().block_on(async move {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
        let specs = (1..=100).map(|i| ResourceSpec::named(format!("board-{i}")));
        let handle = BrokerHandle::new(Broker::new(specs), clock.clone());
        let gate_clock = clock.clone();
        let app = test::init_service(
            App::new()
                .wrap_fn(move |req, srv| {
                    if let Some(auth) = &auth {
                        let rule =
                            rules::resolve(req.method().as_str(), actix_glue::router_path(&req));
                        let ip = actix_glue::client_ip(&req)
                            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
                        let caller = actix_glue::credentials(req.headers())
                            .and_then(|c| auth.admit(rule, &c, ip, gate_clock.now()))
                            .expect("admitted");
                        req.extensions_mut().insert(caller);
                    }
                    srv.call(req)
                })
                .app_data(api::broker::Registered::data(handle.clone()))
                .app_data(web::Data::new(DescriptorSource::new(None)))
                .app_data(api::idempotency::IdempotencyStore::new(handle, Vec::new()))
                .configure(api::configure)
                .default_service(web::to(api::no_route)),
        )
        .await;
        let start = std::time::Instant::now();
        for _ in 0..iters {
            let lock = test::TestRequest::post()
                .uri("/api/v1/resources/1/lock")
                .insert_header(("x-api-key", key(0)))
                .insert_header(("content-type", "application/json"))
                .set_payload(r#"{"ttl":60}"#)
                .to_request();
            let reply: serde_json::Value = test::call_and_read_body_json(&app, lock).await;
            let token = reply["lock-token"].as_str().expect("locked");
            let unlock = test::TestRequest::post()
                .uri(&format!("/api/v1/resources/1/unlock?lock-token={token}"))
                .insert_header(("x-api-key", key(0)))
                .to_request();
            let response = test::call_service(&app, unlock).await;
            assert!(response.status().is_success(), "{}", response.status());
        }
        start.elapsed()
    })
}

fn cycle(c: &mut Criterion) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let mut group = c.benchmark_group("cycle");
    group.bench_function("off", |b| b.iter_custom(|iters| cycles(None, iters)));
    group.bench_function("open", |b| {
        b.iter_custom(|iters| cycles(Some(Auth::open()), iters))
    });
    let keyed = auth(ROTATE, "", clock);
    group.bench_function("keys", |b| {
        b.iter_custom(|iters| cycles(Some(keyed.clone()), iters))
    });
    group.finish();
}

/// Short warm-up and measurement, so the file runs in well under a minute; the command
/// line (`-- --measurement-time 10`) overrides them.
fn quick() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = quick();
    targets = rules_find, gate, cycle
}
criterion_main!(benches);
