//! `--auth-config`: the gate in front of every route (401, 403, 429), the route x role
//! matrix generated from the rule table, JWTs, and keys rotated by a reload.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header, encode};
use rentabot::auth::Role;
use rentabot::auth::rules::{self, Access};
use rentabot::domain::Clock;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{Options, TestApp, lab, start};

const ADMIN: &str = "admin-key-0123456789";
const OPERATOR: &str = "operator-key-0123456789";
const USER: &str = "user-key-0123456789";
const READONLY: &str = "readonly-key-0123456789";
const JWT_SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

/// One key per role; anonymous callers (the open routes, failed attempts) limited far
/// above what a test sends.
fn config() -> String {
    format!(
        r#"
api_keys:
  - {{name: "Lab admin", key: "{ADMIN}", role: admin}}
  - {{name: "Operators", key: "{OPERATOR}", role: operator}}
  - {{name: "Jenkins", key: "{USER}", role: user}}
  - {{name: "Dashboard", key: "{READONLY}", role: readonly}}
rate_limit: {{requests_per_second: 1000, burst: 1000}}
anonymous_rate_limit: {{requests_per_second: 1000, burst: 1000}}
jwt:
  hs256_secret: "{JWT_SECRET}"
  issuer: "https://sso.example.org"
  audience: "rentabot"
"#
    )
}

/// The service over the standard lab with `config` in force, and the file it was read
/// from (kept for the app's lifetime: reloads read it again).
async fn app_with(config: &str) -> (TestApp, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.yaml");
    std::fs::write(&path, config).unwrap();
    let app = start(
        lab(),
        Options {
            auth: Some(path.clone()),
            ..Options::default()
        },
    )
    .await;
    (app, dir, path)
}

/// A request to `path` carrying `key` as `X-API-Key`.
fn with_key(app: &TestApp, method: Method, path: &str, key: &str) -> reqwest::RequestBuilder {
    app.client
        .request(method, app.url(path))
        .header("X-API-Key", key)
}

fn key_of(role: Role) -> &'static str {
    match role {
        Role::Admin => ADMIN,
        Role::Operator => OPERATOR,
        Role::User => USER,
        Role::Readonly => READONLY,
    }
}

/// A concrete path for a route pattern: ids that exist in the lab, names that do not
/// matter. The answer past the gate may be anything but 401 and 403.
fn instantiate(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|segment| match segment {
            "{id}" => "1".to_owned(),
            s if s.starts_with('{') => "res_00000000000000000000000000000000".to_owned(),
            s => s.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Status and `code` of a request, without reading a streamed body to its end.
async fn status_and_code(
    app: &TestApp,
    method: &str,
    path: &str,
    key: Option<&str>,
) -> (u16, String) {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = app.client.request(method, app.url(path));
    if let Some(key) = key {
        request = request.header("X-API-Key", key);
    }
    let response = request
        .header("content-type", "application/json")
        .body("{}")
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("the request reaches the app");
    let status = response.status().as_u16();
    let code = if matches!(status, 401 | 403 | 429) {
        let body: serde_json::Value = response.json().await.expect("a JSON refusal");
        body["code"].as_str().unwrap_or_default().to_owned()
    } else {
        String::new()
    };
    (status, code)
}

/// Every route of the rule table, with no key and with each role's key: no key is 401
/// unless the route is public; a role below the route's is 403 `forbidden`; a role at or
/// above it gets past the gate (the route may still refuse with a 403 of its own, such as
/// `already_locked`, but never the gate's `forbidden`). A route added without a rule fails the rule table's own
/// test (every documented route needs a rule); this one checks the rules do what they
/// say through the real middleware.
#[tokio::test]
async fn every_route_refuses_without_a_key_and_below_its_role() {
    let (app, _dir, _) = app_with(&config()).await;
    let mut checked = 0;
    for (pattern, rule) in rules::patterns() {
        let path = instantiate(&pattern);
        let method = rule.method.as_str();
        let (status, code) = status_and_code(&app, method, &path, None).await;
        match rule.access {
            Access::Public | Access::Metrics | Access::Page => {
                assert!(
                    status != 401 && code != "forbidden",
                    "{method} {path} without a key: {status} {code}"
                );
            }
            Access::Role(_) => {
                assert_eq!(
                    (status, code.as_str()),
                    (401, "missing_credentials"),
                    "{method} {path} without a key"
                );
            }
        }
        for role in Role::ALL {
            let (status, code) = status_and_code(&app, method, &path, Some(key_of(role))).await;
            let allowed = match rule.access {
                Access::Role(required) => role.allows(required),
                Access::Public | Access::Metrics | Access::Page => true,
            };
            if allowed {
                assert!(
                    status != 401 && code != "forbidden",
                    "{method} {path} as {role:?}: {status} {code}"
                );
            } else {
                assert_eq!(
                    (status, code.as_str()),
                    (403, "forbidden"),
                    "{method} {path} as {role:?}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 4 * 30, "only {checked} route x role checks");
}

#[tokio::test]
async fn a_missing_or_unknown_key_is_401_with_a_challenge_and_the_probes_stay_open() {
    let (app, _dir, _) = app_with(&config()).await;
    let reply = app.post("/api/v1/resources/1/lock").await;
    let body = reply.expect_json(401);
    assert_eq!(body["code"], "missing_credentials");
    assert_eq!(
        reply.header("www-authenticate"),
        "Bearer realm=\"rentabot\""
    );

    let reply = app
        .send(
            app.client
                .get(app.url("/api/v1/resources"))
                .header("X-API-Key", "not-a-key-of-this-lab"),
        )
        .await;
    assert_eq!(reply.expect_json(401)["code"], "invalid_api_key");
    assert!(
        reply
            .header("www-authenticate")
            .contains("error=\"invalid_token\"")
    );
    // The key is never echoed.
    assert!(
        !reply.text.contains("not-a-key-of-this-lab"),
        "{}",
        reply.text
    );

    for probe in ["/health", "/readiness"] {
        app.get(probe).await.expect_json(200);
    }
    // Both header forms carry a key.
    let reply = app
        .send(
            app.client
                .get(app.url("/api/v1/resources"))
                .bearer_auth(READONLY),
        )
        .await;
    reply.expect_json(200);
}

#[tokio::test]
async fn a_role_below_the_route_is_403_naming_both_roles() {
    let (app, _dir, _) = app_with(&config()).await;
    let reply = app
        .send(with_key(
            &app,
            Method::POST,
            "/api/v1/resources/1/lock",
            READONLY,
        ))
        .await;
    let body = reply.expect_json(403);
    assert_eq!(body["code"], "forbidden");
    assert_eq!(body["role"], "readonly");
    assert_eq!(body["required_role"], "user");
    // Nothing happened.
    let resource = app
        .send(with_key(&app, Method::GET, "/api/v1/resources/1", READONLY))
        .await;
    assert_eq!(resource.expect_json(200)["resource"]["lock-token"], "");
}

#[tokio::test]
async fn over_the_rate_limit_is_429_with_retry_after_until_the_bucket_refills() {
    let config = format!(
        r#"
api_keys:
  - {{name: "Jenkins", key: "{USER}", role: user, rate_limit: {{requests_per_second: 1, burst: 2}}}}
"#
    );
    let (app, _dir, _) = app_with(&config).await;
    let lock = |id: u32| {
        app.client
            .post(app.url(&format!("/api/v1/resources/{id}/lock")))
            .header("X-API-Key", USER)
    };
    app.send(lock(1)).await.expect_json(200);
    app.send(lock(2)).await.expect_json(200);
    let reply = app.send(lock(3)).await;
    let body = reply.expect_json(429);
    assert_eq!(body["code"], "rate_limited");
    assert_eq!(body["class"], "write");
    assert_eq!(reply.header("retry-after"), "1");
    // Reads have a bucket of their own.
    app.send(with_key(&app, Method::GET, "/api/v1/resources", USER))
        .await
        .expect_json(200);
    // The service's clock, not the wall clock, refills the bucket.
    app.advance(Duration::from_secs(1));
    app.send(lock(3)).await.expect_json(200);
}

/// Rotating and revoking keys by reload: the old key stops working at once, the new one
/// works, and a lock taken with the old key is still held.
#[tokio::test]
async fn a_reload_rotates_and_revokes_keys_and_held_locks_survive() {
    let (app, _dir, path) = app_with(&config()).await;
    let held = app
        .send(with_key(
            &app,
            Method::POST,
            "/api/v1/resources/2/lock",
            USER,
        ))
        .await
        .expect_json(200);
    let rotated = "user-key-rotated-0123456789";
    let new_config = config().replace(USER, rotated).replace(
        "  - {name: \"Dashboard\", key: \"readonly-key-0123456789\", role: readonly}\n",
        "",
    );
    assert_ne!(
        new_config,
        config().replace(USER, rotated),
        "the dashboard key is revoked"
    );
    std::fs::write(&path, new_config).unwrap();

    // Only an admin may reload.
    let reply = app
        .send(with_key(&app, Method::POST, "/api/v1/admin/reload", USER))
        .await;
    assert_eq!(reply.expect_json(403)["code"], "forbidden");
    let reply = app
        .send(with_key(&app, Method::POST, "/api/v1/admin/reload", ADMIN))
        .await;
    let body = reply.expect_json(200);
    assert_eq!(body["auth"]["removed"], json!(["Dashboard"]), "{body}");
    assert_eq!(body["auth"]["changed"], json!(["Jenkins"]), "{body}");
    assert!(
        !reply.text.contains(rotated),
        "keys are never shown: {}",
        reply.text
    );

    for (key, status) in [(USER, 401), (READONLY, 401), (rotated, 200)] {
        let reply = app
            .send(with_key(&app, Method::GET, "/api/v1/resources/2", key))
            .await;
        assert_eq!(reply.status.as_u16(), status, "{key}: {}", reply.text);
    }
    // The lock taken with the old key is intact, and its token still unlocks.
    let token = held["lock-token"].as_str().unwrap();
    app.send(
        with_key(&app, Method::POST, "/api/v1/resources/2/unlock", rotated)
            .header("X-Lock-Token", token),
    )
    .await
    .expect_json(200);

    // An unusable file changes nothing.
    std::fs::write(&path, "api_keys: [{name: x, key: short, role: user}]\n").unwrap();
    let reply = app
        .send(with_key(&app, Method::POST, "/api/v1/admin/reload", ADMIN))
        .await;
    assert_eq!(reply.expect_json(400)["code"], "invalid_auth_config");
    app.send(with_key(&app, Method::GET, "/api/v1/resources", rotated))
        .await
        .expect_json(200);
}

fn jwt(app: &TestApp, claims: serde_json::Value, secret: &str) -> String {
    let _ = app;
    encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn jwts_are_checked_for_signature_time_issuer_and_audience() {
    let (app, _dir, _) = app_with(&config()).await;
    let now = app.clock.now().as_millis() / 1000;
    let claims = |patch: serde_json::Value| {
        let mut claims = json!({
            "sub": "ci-bot",
            "rentabot_role": "user",
            "iss": "https://sso.example.org",
            "aud": "rentabot",
            "exp": now + 600,
            "nbf": now - 10,
        });
        claims
            .as_object_mut()
            .unwrap()
            .extend(patch.as_object().unwrap().clone());
        claims
    };
    let call = |token: String| {
        app.client
            .post(app.url("/api/v1/resources/3/lock"))
            .bearer_auth(token)
    };
    for (patch, secret, reason) in [
        (json!({"exp": now - 120}), JWT_SECRET, "expired"),
        (json!({"nbf": now + 120}), JWT_SECRET, "not_yet_valid"),
        (
            json!({}),
            "another-secret-of-at-least-32-bytes!",
            "bad_signature",
        ),
        (
            json!({"aud": "another-service"}),
            JWT_SECRET,
            "wrong_audience",
        ),
        (
            json!({"iss": "https://evil.example.org"}),
            JWT_SECRET,
            "wrong_issuer",
        ),
    ] {
        let reply = app
            .send(call(jwt(&app, claims(patch.clone()), secret)))
            .await;
        let body = reply.expect_json(401);
        assert_eq!(
            (body["code"].as_str(), body["reason"].as_str()),
            (Some("invalid_token"), Some(reason)),
            "{patch}"
        );
    }
    // A valid token: its role applies (user may lock, not force-unlock).
    app.send(call(jwt(&app, claims(json!({})), JWT_SECRET)))
        .await
        .expect_json(200);
    let reply = app
        .send(
            app.client
                .post(app.url("/api/v1/resources/3/force-unlock"))
                .bearer_auth(jwt(&app, claims(json!({})), JWT_SECRET)),
        )
        .await;
    assert_eq!(reply.expect_json(403)["code"], "forbidden");
}

#[tokio::test]
async fn an_unusable_auth_config_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path: &Path = &dir.path().join("auth.yaml");
    std::fs::write(
        path,
        "api_keys:\n  - {name: a, key: \"0123456789abcdef\", role: superuser}\n",
    )
    .unwrap();
    let settings = rentabot::app::Settings {
        auth: Some(path.to_owned()),
        ..rentabot::app::Settings::default()
    };
    let clock = std::sync::Arc::new(rentabot::runtime::ManualClock::new(crate::helpers::T0));
    let err = rentabot::app::build(&settings, lab(), clock)
        .err()
        .expect("refused");
    let message = format!("{err:#}");
    assert!(
        message.contains("auth.yaml") && message.contains("superuser"),
        "{message}"
    );
}

/// The document says what the gate may answer, and how to send a key; the probes need
/// none.
#[tokio::test]
async fn the_openapi_document_describes_the_gate() {
    let (app, _dir, _) = app_with(&config()).await;
    let doc = app.get("/api/v1/openapi.json").await.expect_json(200);
    let lock = &doc["paths"]["/api/v1/resources/{id}/lock"]["post"];
    for status in ["401", "403", "429"] {
        assert!(lock["responses"][status].is_object(), "lock: no {status}");
    }
    assert!(
        lock["responses"]["403"]["description"]
            .as_str()
            .unwrap()
            .contains("`user`"),
        "{}",
        lock["responses"]["403"]
    );
    assert_eq!(lock["security"], json!([{"api_key": []}, {"bearer": []}]));
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["name"],
        "X-API-Key"
    );
    let health = &doc["paths"]["/health"]["get"];
    assert!(health["responses"]["401"].is_null() && health["security"].is_null());
}

/// The audit log names who did what with auth on: the key's name and role on an
/// accepted change, and on a refusal by role; only an admin may read it.
#[tokio::test]
async fn the_audit_log_names_the_caller_and_is_for_admins() {
    let (app, _dir, _) = app_with(&config()).await;
    app.send(with_key(
        &app,
        Method::POST,
        "/api/v1/resources/1/lock",
        USER,
    ))
    .await
    .expect_json(200);
    let refused = app
        .send(with_key(
            &app,
            Method::POST,
            "/api/v1/resources/2/force-unlock",
            USER,
        ))
        .await;
    assert_eq!(refused.expect_json(403)["code"], "forbidden");

    let read = |key: &'static str| with_key(&app, Method::GET, "/api/v1/audit?actor=Jenkins", key);
    assert_eq!(
        app.send(read(OPERATOR)).await.expect_json(403)["code"],
        "forbidden"
    );
    let entries = app.send(read(ADMIN)).await.expect_json(200)["entries"].clone();
    let entries = entries.as_array().unwrap();
    let locked = entries
        .iter()
        .find(|e| e["event_type"] == "locked")
        .unwrap_or_else(|| panic!("{entries:?}"));
    assert_eq!(
        (&locked["actor"], &locked["role"]),
        (&json!("Jenkins"), &json!("user"))
    );
    assert_eq!(locked["success"], true);
    let refusal = entries
        .iter()
        .find(|e| e["event_type"] == "force_unlock")
        .unwrap_or_else(|| panic!("{entries:?}"));
    assert_eq!(
        (&refusal["actor"], &refusal["success"]),
        (&json!("Jenkins"), &json!(false))
    );
    assert_eq!(refusal["details"]["code"], "forbidden", "{refusal}");
}
