//! The OpenAPI document and the embedded API explorer.

use crate::helpers::spawn_app;

#[tokio::test]
async fn openapi_document_lists_every_resource_path_when_fetched() {
    let app = spawn_app().await;

    let reply = app.get("/api/v1/openapi.json").await;

    assert_eq!(reply.header("content-type"), "application/json");
    let doc = reply.expect_json(200);
    let version = doc["openapi"].as_str().expect("an openapi version");
    assert!(version.starts_with("3."), "{version}");
    assert_eq!(doc["info"]["title"], "rentabot");
    let mut paths: Vec<&str> = doc["paths"]
        .as_object()
        .expect("paths is an object")
        .keys()
        .map(String::as_str)
        .collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "/api/v1/admin/reload",
            "/api/v1/audit",
            "/api/v1/events",
            "/api/v1/reservations",
            "/api/v1/reservations/{rid}",
            "/api/v1/reservations/{rid}/claim",
            "/api/v1/resources",
            "/api/v1/resources/expired",
            "/api/v1/resources/lock",
            "/api/v1/resources/unlock-batch",
            "/api/v1/resources/{id}",
            "/api/v1/resources/{id}/available",
            "/api/v1/resources/{id}/extend",
            "/api/v1/resources/{id}/force-unlock",
            "/api/v1/resources/{id}/lock",
            "/api/v1/resources/{id}/unavailable",
            "/api/v1/resources/{id}/unlock",
            "/health",
            "/readiness",
        ]
    );
    let methods = |path: &str| -> Vec<String> {
        let mut m: Vec<String> = doc["paths"][path]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        m.sort_unstable();
        m
    };
    assert_eq!(methods("/api/v1/resources"), ["get", "post"]);
    assert_eq!(
        methods("/api/v1/resources/{id}"),
        ["delete", "get", "patch"]
    );
    assert_eq!(methods("/api/v1/admin/reload"), ["post"]);
    assert_eq!(methods("/api/v1/resources/{id}/lock"), ["post"]);
    assert_eq!(methods("/api/v1/resources/lock"), ["post"]);
    assert_eq!(methods("/api/v1/resources/{id}/unlock"), ["post"]);
    assert_eq!(methods("/api/v1/resources/{id}/extend"), ["post"]);
    assert_eq!(methods("/api/v1/events"), ["get"]);
    assert_eq!(methods("/api/v1/resources/unlock-batch"), ["post"]);
    assert_eq!(methods("/api/v1/reservations"), ["get", "post"]);
    assert_eq!(methods("/api/v1/reservations/{rid}"), ["delete", "get"]);
    assert_eq!(methods("/api/v1/reservations/{rid}/claim"), ["post"]);
}

#[tokio::test]
async fn openapi_document_describes_the_1_0_resource_keys_when_fetched() {
    let app = spawn_app().await;

    let doc = app.get("/api/v1/openapi.json").await.expect_json(200);

    let properties = doc["components"]["schemas"]["ResourceView"]["properties"]
        .as_object()
        .expect("a ResourceView schema");
    let mut keys: Vec<&str> = properties.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut expected = crate::helpers::RESOURCE_KEYS;
    expected.sort_unstable();
    assert_eq!(keys, expected);
}

#[tokio::test]
async fn docs_redirects_to_docs_with_a_slash_when_the_slash_is_missing() {
    let app = spawn_app().await;

    let reply = app.get("/docs").await;

    assert_eq!(reply.status, 308);
    assert_eq!(reply.header("location"), "/docs/");
}

#[tokio::test]
async fn docs_serves_the_explorer_from_embedded_assets_when_fetched() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let page = app.get("/docs/").await;

    // Assert
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.header("content-type").starts_with("text/html"));
    assert!(
        page.text.contains("<div id=\"swagger-ui\"></div>"),
        "{}",
        page.text
    );
    assert!(
        !page.text.contains("//"),
        "nothing from elsewhere: {}",
        page.text.replace("<!--", "")
    );
    for asset in [
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "swagger-initializer.js",
    ] {
        assert!(
            page.text.contains(&format!("./{asset}")),
            "{asset} referenced"
        );
        let reply = app.get(&format!("/docs/{asset}")).await;
        assert_eq!(reply.status, 200, "{asset}");
        assert!(reply.text.len() > 100, "{asset} has content");
    }
}

#[tokio::test]
async fn docs_explorer_loads_the_local_openapi_document_when_initialised() {
    let app = spawn_app().await;

    let script = app.get("/docs/swagger-initializer.js").await;

    assert_eq!(script.status, 200);
    assert!(
        script.text.contains("\"url\": \"/api/v1/openapi.json\""),
        "{}",
        script.text
    );
    assert!(!script.text.contains("https://"), "{}", script.text);
}

/// The document says what the layers below the handlers do to every request (issue 9):
/// a body can be late (408), too large (413) or not JSON (415), and names no field the
/// document does not list; a change can come from a foreign origin (403).
#[tokio::test]
async fn openapi_document_gives_every_operation_the_refusals_it_can_get() {
    let app = spawn_app().await;

    let doc = app.get("/api/v1/openapi.json").await.expect_json(200);

    let schemas = &doc["components"]["schemas"];
    let mut bodies = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = &operation["responses"];
            if ["post", "patch", "delete"].contains(&method.as_str()) {
                assert!(responses["403"].is_object(), "{method} {path}");
                assert!(responses["400"].is_object(), "{method} {path}");
            }
            let Some(body) = operation.get("requestBody") else {
                continue;
            };
            bodies += 1;
            for status in ["408", "413", "415"] {
                assert!(responses[status].is_object(), "{method} {path}: {status}");
            }
            let schema = &body["content"]["application/json"]["schema"];
            let reference = schema["$ref"]
                .as_str()
                .or_else(|| schema["oneOf"][1]["$ref"].as_str())
                .unwrap_or_else(|| panic!("{method} {path}: {schema}"));
            let name = reference.rsplit('/').next().unwrap();
            assert_eq!(
                schemas[name]["additionalProperties"], false,
                "{method} {path}: {name} is closed"
            );
        }
    }
    assert_eq!(bodies, 8, "every body is checked");
    assert_eq!(schemas["GroupRequest"]["additionalProperties"], false);
}

/// The lists answer the 1.0 body without list parameters, and a page with them: the
/// document says so, and the 1.0 body is closed, so that one matches exactly one.
#[tokio::test]
async fn openapi_document_describes_a_list_as_the_1_0_list_or_a_page() {
    let app = spawn_app().await;

    let doc = app.get("/api/v1/openapi.json").await.expect_json(200);

    for (path, list, page) in [
        ("/api/v1/resources", "ResourceList", "ResourcePageList"),
        (
            "/api/v1/reservations",
            "ReservationList",
            "ReservationPageList",
        ),
    ] {
        let schema =
            &doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
        let name = schema["$ref"].as_str().unwrap().rsplit('/').next().unwrap();
        let one_of: Vec<&str> = doc["components"]["schemas"][name]["oneOf"]
            .as_array()
            .unwrap_or_else(|| panic!("{path}: {name}"))
            .iter()
            .map(|s| s["$ref"].as_str().unwrap().rsplit('/').next().unwrap())
            .collect();
        assert_eq!(one_of, [list, page], "{path}");
        assert_eq!(
            doc["components"]["schemas"][list]["additionalProperties"], false,
            "{path}"
        );
    }
}
