//! What every request goes through: its id (`X-Request-Id`) and the head limits, whose
//! refusals are JSON like every other error.

use crate::helpers::*;

const ID: &str = "x-request-id";

#[tokio::test]
async fn every_response_carries_a_fresh_request_id_when_the_caller_sends_none() {
    let app = spawn_app().await;

    let a = app.get("/health").await;
    let b = app.get("/api/v1/resources/99").await;

    for reply in [&a, &b] {
        let id = reply.header(ID);
        assert_eq!(id.len(), 36, "a hyphenated UUID: {id}");
        assert!(
            id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'),
            "{id}"
        );
    }
    assert_eq!(b.status, 404, "errors carry one too");
    assert_ne!(a.header(ID), b.header(ID));
}

#[tokio::test]
async fn callers_request_id_is_echoed_when_it_is_short_and_plain() {
    let app = spawn_app().await;
    let given = "ci-job/4711:step.2";

    let reply = app
        .send(
            app.client
                .get(app.url("/api/v1/resources"))
                .header(ID, given),
        )
        .await;

    assert_eq!(reply.header(ID), given);
}

#[tokio::test]
async fn callers_request_id_is_replaced_when_it_is_too_long_or_has_odd_characters() {
    let app = spawn_app().await;
    let long = "a".repeat(129);
    for given in [long.as_str(), "two words", "semi;colon", ""] {
        let reply = app
            .send(app.client.get(app.url("/health")).header(ID, given))
            .await;

        let id = reply.header(ID);
        assert_ne!(id, given);
        assert_eq!(id.len(), 36, "a fresh UUID instead of {given:?}: {id}");
    }
}

#[tokio::test]
async fn uri_over_16_kib_is_refused_with_a_json_414() {
    let app = spawn_app().await;
    let path = format!("/{}", "x".repeat(16 * 1024));

    let reply = app.get(&path).await;

    let body = reply.expect_json(414);
    assert_eq!(body["code"], "uri_too_long");
    assert_eq!(body["limit"], 16 * 1024);
    assert!(
        reply.headers.contains_key(ID),
        "refusals carry the request id"
    );
}

#[tokio::test]
async fn uri_of_16_kib_reaches_the_routes() {
    let app = spawn_app().await;
    let path = format!("/{}", "x".repeat(16 * 1024 - 1));

    let body = app.get(&path).await.expect_json(404);

    assert_eq!(body["code"], "no_route");
}

/// Extra request headers, as name and value.
type Headers = Vec<(String, String)>;

#[tokio::test]
async fn headers_over_the_limits_are_refused_with_a_json_431_naming_the_limit() {
    let app = spawn_app().await;
    let big = "v".repeat(16 * 1024);
    let half = "v".repeat(6 * 1024);
    let cases: [(Headers, usize, Option<&str>, &str); 3] = [
        (
            (0..70)
                .map(|i| (format!("x-h{i}"), "1".to_owned()))
                .collect(),
            64,
            None,
            "more than 64 header lines",
        ),
        (
            vec![("x-big".to_owned(), big)],
            16 * 1024,
            Some("x-big"),
            "one header over 16 KiB",
        ),
        (
            (0..6)
                .map(|i| (format!("x-half{i}"), half.clone()))
                .collect(),
            32 * 1024,
            None,
            "over 32 KiB together",
        ),
    ];
    for (headers, limit, header, why) in cases {
        let mut request = app.client.get(app.url("/health"));
        for (name, value) in headers {
            request = request.header(name, value);
        }

        let body = app.send(request).await.expect_json(431);

        assert_eq!(body["code"], "headers_too_large", "{why}");
        assert_eq!(body["limit"], limit, "{why}");
        assert_eq!(body["header"].as_str(), header, "{why}");
    }
}
