//! Probes, the HTML page at `/`, and paths no route serves.

use serde_json::json;

use crate::helpers::{ARM_1, spawn_app};

#[tokio::test]
async fn health_returns_ok_when_the_service_serves() {
    let app = spawn_app().await;

    let reply = app.get("/health").await;

    assert_eq!(reply.header("content-type"), "application/json");
    assert_eq!(reply.expect_json(200), json!({"status": "ok"}));
}

#[tokio::test]
async fn readiness_returns_ready_when_the_broker_is_loaded() {
    let app = spawn_app().await;

    let reply = app.get("/readiness").await;

    assert_eq!(reply.header("content-type"), "application/json");
    assert_eq!(reply.expect_json(200), json!({"status": "ready"}));
}

#[tokio::test]
async fn index_page_lists_name_status_description_endpoint_and_tags_when_resources_exist() {
    // Arrange
    let app = spawn_app().await;
    app.locked(ARM_1, 600).await;

    // Act
    let page = app.get("/").await;

    // Assert
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
    let html = &page.text;
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(
        html.contains("5 resources, 1 locked, 0 unavailable."),
        "{html}"
    );
    let rows = [
        "<tr><td>1</td><td>coffee-machine</td><td><span class=\"free\">Available</span></td>\
         <td>Kitchen coffee machine</td><td>tcp://192.168.1.50</td>\
         <td><span class=\"tag\">coffee</span><span class=\"tag\">kitchen</span><span class=\"tag\">food</span></td></tr>",
        "<tr><td>2</td><td>board-arm-1</td><td><span class=\"locked\">Locked</span><br>\
         <span class=\"muted\">until 2026-01-15T10:10:00.000Z (fencing 1)</span></td>\
         <td>Raspberry Pi 4</td><td>ssh://pi@10.0.10.11</td>\
         <td><span class=\"tag\">ci</span><span class=\"tag\">linux</span><span class=\"tag\">arm</span></td></tr>",
        "<tr><td>3</td><td>board-x86-1</td><td><span class=\"free\">Available</span></td>\
         <td>Intel NUC</td><td>ssh://ci@10.0.10.21</td>\
         <td><span class=\"tag\">ci</span><span class=\"tag\">linux</span><span class=\"tag\">x86</span></td></tr>",
        "<tr><td>4</td><td>board-arm-2</td><td><span class=\"free\">Available</span></td>\
         <td>Raspberry Pi 5</td><td>ssh://pi@10.0.10.12</td>\
         <td><span class=\"tag\">ci</span><span class=\"tag\">linux</span><span class=\"tag\">arm</span></td></tr>",
        "<tr><td>5</td><td>printer</td><td><span class=\"free\">Available</span></td>\
         <td>Label printer &lt;lab&gt; &amp; co</td><td></td><td></td></tr>",
    ];
    for row in rows {
        assert!(html.contains(row), "missing row {row}\nin {html}");
    }
}

#[tokio::test]
async fn index_page_shows_the_holder_and_maintenance_when_operators_set_them() {
    let app = spawn_app().await;
    let url = app.url(&format!("/api/v1/resources/{ARM_1}/lock"));
    let body = serde_json::json!({"ttl": 600, "holder": "ci/job/42"});
    app.send(app.client.post(url).json(&body))
        .await
        .expect_json(200);
    let url = app.url(&format!("/api/v1/resources/{ARM_1}/unavailable"));
    let body = serde_json::json!({"reason": "reflash <bios>", "until": "2026-01-15T12:00:00Z"});
    app.send(app.client.post(url).json(&body))
        .await
        .expect_json(200);

    let html = app.get("/").await.text;

    assert!(
        html.contains("5 resources, 1 locked, 1 unavailable."),
        "{html}"
    );
    assert!(
        html.contains(
            "<span class=\"muted\">by ci/job/42</span><br><span class=\"out\">Unavailable</span><br>\
             <span class=\"muted\">reflash &lt;bios&gt; (until 2026-01-15T12:00:00.000Z)</span>"
        ),
        "{html}"
    );
}

#[tokio::test]
async fn index_page_fetches_nothing_from_elsewhere_when_rendered() {
    let app = spawn_app().await;

    let page = app.get("/").await;

    assert_eq!(page.status, 200);
    assert!(!page.text.contains("<script"), "{}", page.text);
    assert!(!page.text.contains("http://"), "{}", page.text);
    assert!(!page.text.contains("https://"), "{}", page.text);
}

#[tokio::test]
async fn unknown_route_returns_a_json_404_when_no_route_serves_the_method_and_path() {
    let cases = [
        ("GET", "/nope", "unknown path"),
        ("GET", "/api/v1/nope", "unknown path under the API prefix"),
        ("GET", "/api/v1/resources/", "trailing slash"),
        (
            "POST",
            "/api/v1/reservations/res_0/claim/now",
            "no such path under reservations",
        ),
    ];
    let app = spawn_app().await;
    for (method, path, why) in cases {
        // Act
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let reply = app
            .send(app.client.request(method.clone(), app.url(path)))
            .await;

        // Assert
        assert_eq!(reply.status, 404, "{why}: {}", reply.text);
        assert_eq!(reply.header("content-type"), "application/json", "{why}");
        assert_eq!(
            reply.expect_json(404),
            json!({
                "path": path,
                "message": format!("Not Found: no route for {method} {path}; the API is described at /docs"),
                "code": "no_route",
            }),
            "{why}"
        );
    }
}

#[tokio::test]
async fn known_path_returns_a_json_405_when_the_method_is_not_served() {
    let cases = [
        ("GET", "/api/v1/resources/1/lock", "lock is POST only"),
        (
            "GET",
            "/api/v1/resources/lock",
            "lock by criteria is POST only",
        ),
        ("PUT", "/api/v1/resources", "the list is GET and POST only"),
        ("POST", "/health", "probes are GET only"),
        (
            "PUT",
            "/api/v1/resources/1",
            "a resource is GET, PATCH and DELETE only",
        ),
        (
            "PUT",
            "/rentabot/api/v1.0/resources/1/unlock",
            "the legacy prefix too",
        ),
    ];
    let app = spawn_app().await;
    for (method, path, why) in cases {
        // Act
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let reply = app
            .send(app.client.request(method.clone(), app.url(path)))
            .await;

        // Assert
        assert_eq!(
            reply.expect_json(405),
            json!({
                "path": path,
                "method": method.as_str(),
                "message": format!("Method Not Allowed: {method} is not served on {path}; the API is described at /docs"),
                "code": "method_not_allowed",
            }),
            "{why}"
        );
    }
}
