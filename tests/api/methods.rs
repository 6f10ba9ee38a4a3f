//! Methods (issue 9): `HEAD` works wherever `GET` does, every 405 says in `Allow` which
//! methods the path serves (the ones the OpenAPI document lists), and what the app
//! refuses without a body of its own is JSON too.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use tokio::time::timeout;

use crate::helpers::*;

/// Every path of the OpenAPI document with the methods it lists (upper case), its
/// parameters filled in.
async fn documented(app: &TestApp, rid: &str) -> Vec<(String, BTreeSet<String>)> {
    let doc = app.get("/api/v1/openapi.json").await.expect_json(200);
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| ["get", "post", "put", "patch", "delete"].contains(&k.as_str()))
                .map(|k| k.to_uppercase())
                .collect();
            let path = path
                .replace("{id}", &COFFEE.to_string())
                .replace("{rid}", rid);
            (path, methods)
        })
        .collect()
}

async fn a_reservation(app: &TestApp) -> String {
    let reply = app
        .send(
            app.client
                .post(app.url("/api/v1/reservations"))
                .json(&json!({"tags": ["arm"], "ttl": 60})),
        )
        .await
        .expect_json(201);
    reply["reservation_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_405_lists_the_methods_the_document_gives_the_path() {
    let app = spawn_app().await;
    let rid = a_reservation(&app).await;

    for (path, methods) in documented(&app, &rid).await {
        let mut paths = vec![path.clone()];
        // The legacy prefix serves the 1.0 routes and their successors, not the stream.
        if path.starts_with("/api/v1/") && path != "/api/v1/events" {
            paths.push(path.replace("/api/v1/", "/rentabot/api/v1.0/"));
        }
        for path in paths {
            for method in ["PUT", "TRACE", "OPTIONS", "PATCH", "DELETE", "POST"] {
                if methods.contains(method) {
                    continue;
                }
                let reply = app
                    .send(app.client.request(
                        Method::from_bytes(method.as_bytes()).unwrap(),
                        app.url(&path),
                    ))
                    .await;

                let body = reply.expect_json(405);
                assert_eq!(body["code"], "method_not_allowed", "{method} {path}");
                let allow: BTreeSet<String> = reply
                    .header("allow")
                    .split(',')
                    .map(|m| m.trim().to_owned())
                    .collect();
                let mut expected = methods.clone();
                if expected.contains("GET") {
                    expected.insert("HEAD".to_owned());
                }
                assert_eq!(allow, expected, "{method} {path}");
            }
        }
    }
}

#[tokio::test]
async fn head_answers_as_get_does_without_a_body_wherever_get_is_served() {
    let app = spawn_app().await;
    let rid = a_reservation(&app).await;
    let mut paths: Vec<String> = documented(&app, &rid)
        .await
        .into_iter()
        .filter(|(_, methods)| methods.contains("GET"))
        .map(|(path, _)| path)
        .collect();
    paths.extend([
        "/".to_owned(),
        "/dashboard/fragment".to_owned(),
        "/static/dashboard.js".to_owned(),
        "/docs/".to_owned(),
        "/api/v1/openapi.json".to_owned(),
    ]);
    paths.push("/rentabot/api/v1.0/resources/1".to_owned());

    for path in paths {
        // Within the safety net: the event stream must not be streamed to a HEAD (it
        // would never end, and the connection would serve nothing else).
        let (get_status, get_type, head) = timeout(Duration::from_secs(5), async {
            let get = app.client.get(app.url(&path)).send().await.unwrap();
            let (status, content_type) = (get.status(), get.headers().get("content-type").cloned());
            drop(get);
            let head = app.send(app.client.head(app.url(&path))).await;
            (status, content_type, head)
        })
        .await
        .unwrap_or_else(|_| panic!("GET and HEAD {path} answered"));

        assert_eq!(head.status, get_status, "{path}");
        assert_eq!(
            head.headers.get("content-type"),
            get_type.as_ref(),
            "{path}"
        );
        assert_eq!(head.text, "", "{path}");
    }
}

#[tokio::test]
async fn head_on_a_path_without_get_is_a_405_naming_head() {
    let app = spawn_app().await;

    let reply = app
        .send(app.client.head(app.url("/api/v1/resources/1/lock")))
        .await;

    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), "POST");
    let get = app.get("/api/v1/resources/1/lock").await;
    assert_eq!(get.expect_json(405)["method"], "GET");
}

#[tokio::test]
async fn a_missing_asset_of_the_explorer_is_a_json_404() {
    let app = spawn_app().await;

    let reply = app.get("/docs/no-such-asset.js").await;

    assert_eq!(reply.header("content-type"), "application/json");
    let body = reply.expect_json(404);
    assert_eq!(body["code"], "no_route");
    assert_eq!(body["path"], "/docs/no-such-asset.js");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("no route for GET /docs/no-such-asset.js"),
        "{body}"
    );
}
