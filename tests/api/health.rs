//! Probes, the HTML page at `/`, and paths no route serves.

use serde_json::json;

use crate::helpers::spawn_app;

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
