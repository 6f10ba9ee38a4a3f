//! No cross-site writes (issue 9): a web page of another origin may not change anything
//! (every change the document lists, and the WebSocket); bodies must be JSON; HTML pages
//! carry security headers.

use std::time::Duration;

use rentabot::api::RequestPolicy;
use rentabot::api::guard::{AllowedOrigins, CONTENT_SECURITY_POLICY};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::time::timeout;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::helpers::*;

const EVIL: &str = "http://evil.example";

/// Every change (POST, PATCH, DELETE) the OpenAPI document lists, with its path filled in
/// (`{id}` with [`COFFEE`], `{rid}` with `rid`).
async fn changes(app: &TestApp, rid: &str) -> Vec<(Method, String)> {
    let doc = app.get("/api/v1/openapi.json").await.expect_json(200);
    let mut changes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["post", "patch", "delete", "put"] {
            if item.get(method).is_some() {
                let path = path
                    .replace("{id}", &COFFEE.to_string())
                    .replace("{rid}", rid);
                changes.push((
                    Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                    path,
                ));
            }
        }
    }
    assert!(changes.len() >= 15, "{changes:?}");
    changes
}

async fn pending_reservation(app: &TestApp) -> String {
    app.locked(COFFEE, 600).await;
    let reply = app
        .send(
            app.client
                .post(app.url("/api/v1/reservations"))
                .json(&json!({"tags": ["coffee"]})),
        )
        .await
        .expect_json(201);
    reply["reservation_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_foreign_origin_is_refused_on_every_change_the_document_lists() {
    let app = spawn_app().await;
    let rid = pending_reservation(&app).await;
    let before = app.resource(COFFEE).await;

    for (method, path) in changes(&app, &rid).await {
        for path in [
            path.clone(),
            path.replace("/api/v1/", "/rentabot/api/v1.0/"),
        ] {
            let reply = app
                .send(
                    app.client
                        .request(method.clone(), app.url(&path))
                        .header("Origin", EVIL)
                        .json(&json!({})),
                )
                .await;

            let error = reply.expect_json(403);
            assert_eq!(error["code"], "origin_not_allowed", "{method} {path}");
            assert_eq!(error["origin"], EVIL, "{method} {path}");
        }
    }
    assert_eq!(app.resource(COFFEE).await, before, "nothing changed");
    let reservation = app
        .get(&format!("/api/v1/reservations/{rid}"))
        .await
        .expect_json(200);
    assert_eq!(reservation["status"], "pending");
}

#[tokio::test]
async fn a_null_origin_is_refused() {
    let app = spawn_app().await;

    let reply = app
        .send(
            app.client
                .post(app.url(&format!("/api/v1/resources/{COFFEE}/lock")))
                .header("Origin", "null"),
        )
        .await;

    assert_eq!(reply.expect_json(403)["code"], "origin_not_allowed");
    assert_eq!(app.resource(COFFEE).await["lock-token"], "");
}

#[tokio::test]
async fn the_service_s_own_pages_and_clients_without_an_origin_may_change_things() {
    let app = spawn_app().await;
    let own = app.address.clone();

    let from_page = app
        .send(
            app.client
                .post(app.url(&format!("/api/v1/resources/{COFFEE}/lock")))
                .header("Origin", own.as_str()),
        )
        .await;
    let from_curl = app.lock(ARM_1).await;

    assert_eq!(from_page.status, 200, "{}", from_page.text);
    assert_eq!(from_curl.status, 200, "{}", from_curl.text);
}

#[tokio::test]
async fn an_allowed_origin_may_change_things() {
    let app = spawn_app_with_requests(RequestPolicy {
        allowed_origins: AllowedOrigins::new(["https://dash.example.com"]).unwrap(),
        ..RequestPolicy::default()
    })
    .await;

    let allowed = app
        .send(
            app.client
                .post(app.url(&format!("/api/v1/resources/{COFFEE}/lock")))
                .header("Origin", "https://dash.example.com"),
        )
        .await;
    let other = app
        .send(
            app.client
                .post(app.url(&format!("/api/v1/resources/{ARM_1}/lock")))
                .header("Origin", "https://other.example.com"),
        )
        .await;

    assert_eq!(allowed.status, 200, "{}", allowed.text);
    assert_eq!(other.expect_json(403)["code"], "origin_not_allowed");
}

#[tokio::test]
async fn reads_are_served_whatever_the_origin() {
    let app = spawn_app().await;

    for path in ["/api/v1/resources", "/api/v1/resources/1", "/health", "/"] {
        let reply = app
            .send(app.client.get(app.url(path)).header("Origin", EVIL))
            .await;

        assert_eq!(reply.status, 200, "{path}");
    }
}

#[tokio::test]
async fn the_reservation_socket_refuses_a_foreign_origin_and_accepts_its_own() {
    let app = spawn_app().await;
    let rid = pending_reservation(&app).await;
    let url = format!(
        "{}/ws/reservations/{rid}",
        app.address.replace("http://", "ws://")
    );
    let with_origin = |origin: &str| {
        let mut request = url.as_str().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("Origin", HeaderValue::from_str(origin).unwrap());
        request
    };

    let refused = timeout(Duration::from_secs(5), connect_async(with_origin(EVIL)))
        .await
        .expect("answered within the safety timeout");
    let accepted = timeout(
        Duration::from_secs(5),
        connect_async(with_origin(&app.address)),
    )
    .await
    .expect("answered within the safety timeout");

    let Err(tokio_tungstenite::tungstenite::Error::Http(response)) = refused else {
        panic!("expected a refusal, got {refused:?}");
    };
    assert_eq!(response.status(), 403);
    let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
    assert_eq!(body["code"], "origin_not_allowed");
    assert_eq!(accepted.expect("upgraded").1.status(), 101);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_refused_with_415_and_changes_nothing() {
    let app = spawn_app().await;
    let cases = [
        ("text/plain", r#"{"ttl": 60}"#),
        ("text/plain;charset=UTF-8", r#"{"ttl": 60}"#),
        ("application/x-www-form-urlencoded", r#"{"ttl": 60}"#),
        ("application/x-www-form-urlencoded", "ttl=60"),
        ("multipart/form-data; boundary=x", "--x--"),
        ("application/xml", "<ttl>60</ttl>"),
    ];
    for (content_type, body) in cases {
        for path in [
            format!("/api/v1/resources/{COFFEE}/lock"),
            "/api/v1/resources/lock?tag=coffee".to_owned(),
            "/api/v1/reservations".to_owned(),
            "/api/v1/resources".to_owned(),
        ] {
            let reply = app
                .post_body(&path, body.as_bytes(), Some(content_type))
                .await;

            let error = reply.expect_json(415);
            assert_eq!(error["code"], "unsupported_media_type", "{path}");
            assert_eq!(error["content_type"], content_type, "{path}");
        }
    }
    assert_eq!(app.resource(COFFEE).await["lock-token"], "");
}

#[tokio::test]
async fn json_bodies_are_read_with_any_json_content_type_or_none() {
    let app = spawn_app().await;
    let cases = [
        (Some("application/json"), COFFEE),
        (Some("Application/JSON; charset=utf-8"), ARM_1),
        (Some("application/merge-patch+json"), X86_1),
        (None, ARM_2),
    ];
    for (content_type, id) in cases {
        let reply = app
            .post_body(
                &format!("/api/v1/resources/{id}/lock"),
                br#"{"ttl": 60}"#,
                content_type,
            )
            .await;

        assert_eq!(
            reply.expect_json(200)["expires-at"],
            "2026-01-15T10:01:00.000Z",
            "{content_type:?}"
        );
    }
}

#[tokio::test]
async fn html_pages_carry_the_security_headers() {
    let app = spawn_app().await;

    for path in ["/", "/docs/"] {
        let page = app.get(path).await;

        assert_eq!(page.status, 200, "{path}");
        assert!(
            page.header("content-type").starts_with("text/html"),
            "{path}"
        );
        assert_eq!(
            page.header("content-security-policy"),
            CONTENT_SECURITY_POLICY,
            "{path}"
        );
        assert_eq!(page.header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(page.header("x-frame-options"), "DENY", "{path}");
        assert!(
            CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"),
            "{CONTENT_SECURITY_POLICY}"
        );
    }
}
