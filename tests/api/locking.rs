//! `POST /api/v1/resources/{id}/lock`: grants, the TTL body, and every refusal.

use serde_json::{Value, json};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::helpers::{ARM_1, COFFEE, PRINTER, RESOURCE_KEYS, UNKNOWN, held, keys, read, spawn_app};

/// Asserts `token` is what 1.0 handed out: a random (v4) UUID, hyphenated, lowercase.
fn assert_is_uuid_v4(token: &str) {
    let uuid = Uuid::parse_str(token).unwrap_or_else(|e| panic!("{token:?}: {e}"));
    assert_eq!(uuid.get_version_num(), 4, "{token}");
    assert_eq!(uuid.hyphenated().to_string(), token);
}

#[tokio::test]
async fn lock_returns_token_resource_and_times_when_the_resource_is_free() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let body = app.lock(COFFEE).await.expect_json(200);

    // Assert
    assert_eq!(
        keys(&body),
        [
            "message",
            "lock-token",
            "resource",
            "locked-at",
            "expires-at",
            "fencing-token"
        ]
    );
    let token = body["lock-token"].as_str().unwrap();
    assert_is_uuid_v4(token);
    assert_eq!(body["message"], "Resource locked");
    assert_eq!(body["locked-at"], "2026-01-15T10:00:00.000Z");
    assert_eq!(body["expires-at"], "2026-01-15T11:00:00.000Z");
    assert_eq!(body["fencing-token"], 1);
    assert_eq!(keys(&body["resource"]), RESOURCE_KEYS);
    assert_eq!(
        body["resource"],
        json!({
            "id": 1,
            "name": "coffee-machine",
            "description": "Kitchen coffee machine",
            "lock-token": token,
            "lock-details": "Resource locked",
            "endpoint": "tcp://192.168.1.50",
            "tags": "coffee,kitchen,food",
            "lock-acquired-at": "2026-01-15T10:00:00.000Z",
            "lock-expires-at": "2026-01-15T11:00:00.000Z",
            "max-lock-duration": 86400,
            "fencing-token": 1,
            "lock-holder": null,
            "lock-note": null,
            "expiring-soon": false,
            "unavailable": false,
            "unavailable-reason": null,
            "unavailable-since": null,
            "unavailable-until": null,
        })
    );
    assert_eq!(app.resource(COFFEE).await, body["resource"]);
}

#[tokio::test]
async fn lock_hands_out_a_different_token_when_a_resource_is_locked_again() {
    let app = spawn_app().await;
    let first = app.locked(COFFEE, 60).await;
    app.unlock(COFFEE, &first.token).await.expect_json(200);

    let second = app.locked(COFFEE, 60).await;

    assert_is_uuid_v4(&second.token);
    assert_ne!(second.token, first.token);
}

#[tokio::test]
async fn lock_uses_the_default_ttl_of_3600_seconds_when_the_body_names_none() {
    let cases = [
        ("", "no body"),
        ("  \n", "blank body"),
        ("{}", "empty object"),
        (r#"{"ttl": null}"#, "null ttl"),
    ];
    for (body, why) in cases {
        let app = spawn_app().await;

        let reply = app.lock_with_body(COFFEE, body).await;

        let body = reply.expect_json(200);
        assert_eq!(body["expires-at"], "2026-01-15T11:00:00.000Z", "{why}");
    }
}

/// Forms and text are refused since issue 9 (tests/api/origin.rs): 1.0 (FastAPI) read
/// only JSON and untyped bodies.
#[tokio::test]
async fn lock_uses_the_ttl_from_the_body_when_sent_with_or_without_a_content_type() {
    let cases = [
        (Some("application/json"), "JSON content type"),
        (
            Some("application/json; charset=utf-8"),
            "JSON with a charset",
        ),
        (None, "no content type, as 1.0 clients send it"),
    ];
    for (content_type, why) in cases {
        let app = spawn_app().await;

        let reply = app
            .post_body(
                &format!("/api/v1/resources/{COFFEE}/lock"),
                br#"{"ttl": 30}"#,
                content_type,
            )
            .await;

        let body = reply.expect_json(200);
        assert_eq!(body["expires-at"], "2026-01-15T10:00:30.000Z", "{why}");
        assert_eq!(
            body["resource"]["lock-expires-at"], "2026-01-15T10:00:30.000Z",
            "{why}"
        );
    }
}

#[tokio::test]
async fn lock_accepts_the_ttl_forms_1_0_accepted_when_they_are_whole_seconds() {
    let cases = [
        (r#"{"ttl": 30}"#, "integer"),
        (r#"{"ttl": 30.0}"#, "float with no fraction"),
        (r#"{"ttl": "30"}"#, "numeric string"),
    ];
    for (body, why) in cases {
        let app = spawn_app().await;

        let reply = app.lock_with_body(COFFEE, body).await;

        assert_eq!(
            reply.expect_json(200)["expires-at"],
            "2026-01-15T10:00:30.000Z",
            "{why}"
        );
    }
}

#[tokio::test]
async fn lock_returns_404_naming_the_id_when_the_resource_does_not_exist() {
    let app = spawn_app().await;

    let reply = app.lock(UNKNOWN).await;

    assert_eq!(
        reply.expect_json(404),
        json!({"resource_id": 99, "message": "Resource not found", "code": "resource_not_found"})
    );
}

#[tokio::test]
async fn lock_returns_400_when_the_id_is_not_an_integer() {
    let app = spawn_app().await;

    let reply = app.post("/api/v1/resources/board/lock").await;

    assert_eq!(
        reply.expect_json(400),
        json!({
            "resource_id": "board",
            "message": "resource id must be a whole number from 0 to 4294967295, got \"board\"",
            "code": "invalid_resource_id",
        })
    );
}

#[tokio::test]
async fn lock_returns_403_and_keeps_the_holder_when_the_resource_is_already_locked() {
    // Arrange
    let app = spawn_app().await;
    let holder = app.locked(COFFEE, 600).await;

    // Act
    let reply = app.lock(COFFEE).await;

    // Assert
    assert_eq!(
        reply.expect_json(403),
        json!({
            "resource_id": 1,
            "message": "Cannot lock the requested resource, resource is already locked",
            "code": "already_locked",
        })
    );
    let resource = app.resource(COFFEE).await;
    assert_eq!(resource["lock-token"], holder.token.as_str());
    assert_eq!(resource["lock-expires-at"], "2026-01-15T10:10:00.000Z");
    assert_eq!(resource["fencing-token"], 1);
}

#[tokio::test]
async fn lock_returns_400_when_the_ttl_exceeds_the_max_lock_duration() {
    let app = spawn_app().await;

    let reply = app.lock_for(PRINTER, 61).await;

    assert_eq!(
        reply.expect_json(400),
        json!({
            "resource_id": 5,
            "ttl": 61,
            "max_lock_duration": 60,
            "message": "Requested TTL (61s) exceeds maximum allowed duration (60s)",
            "code": "ttl_above_max",
        })
    );
    assert_eq!(app.resource(PRINTER).await["lock-token"], "");
}

#[tokio::test]
async fn lock_succeeds_when_the_ttl_equals_the_max_lock_duration() {
    let app = spawn_app().await;

    let body = app.lock_for(PRINTER, 60).await.expect_json(200);

    assert_eq!(body["expires-at"], "2026-01-15T10:01:00.000Z");
}

#[tokio::test]
async fn lock_returns_400_when_the_default_ttl_exceeds_the_max_lock_duration() {
    // The printer allows 60 s; a lock without a body asks for 3600 s.
    let app = spawn_app().await;

    let reply = app.lock(PRINTER).await;

    assert_eq!(
        reply.expect_json(400)["message"],
        "Requested TTL (3600s) exceeds maximum allowed duration (60s)"
    );
}

#[tokio::test]
async fn lock_returns_400_saying_what_a_ttl_must_be_when_the_ttl_is_invalid() {
    let cases = [
        (r#"{"ttl": 0}"#, json!(0), "zero"),
        (r#"{"ttl": -5}"#, json!(-5), "negative"),
        (r#"{"ttl": 1.5}"#, json!(1.5), "fractional"),
        (
            r#"{"ttl": "soon"}"#,
            json!("soon"),
            "a string that is not a number",
        ),
        (
            r#"{"ttl": "-30"}"#,
            json!("-30"),
            "a negative numeric string",
        ),
        (r#"{"ttl": true}"#, json!(true), "a boolean"),
        (r#"{"ttl": [30]}"#, json!([30]), "a list"),
        (
            r#"{"ttl": 3153600001}"#,
            json!(3_153_600_001_u64),
            "over a century",
        ),
        (
            r#"{"ttl": 18446744073709551615}"#,
            json!(u64::MAX),
            "overflows any deadline",
        ),
        (r#"{"ttl": 1e30}"#, json!(1e30), "huge float"),
        (
            r#"{"ttl": "99999999999999999999999"}"#,
            json!("99999999999999999999999"),
            "a numeric string beyond u64",
        ),
    ];
    for (body, given, why) in cases {
        let app = spawn_app().await;

        let reply = app.lock_with_body(COFFEE, body).await;

        assert_eq!(
            reply.expect_json(400),
            json!({
                "ttl": given,
                "message": format!("ttl must be a whole number of seconds between 1 and 3153600000, got {given}"),
                "code": "invalid_ttl",
            }),
            "{why}"
        );
        assert_eq!(app.resource(COFFEE).await["lock-token"], "", "{why}");
    }
}

#[tokio::test]
async fn lock_returns_400_saying_what_the_body_must_be_when_it_is_not_a_json_object() {
    let cases: [(&[u8], &str); 7] = [
        (b"{", "truncated JSON"),
        (b"ttl=30", "form encoded"),
        (b"{'ttl': 30}", "single quotes"),
        (b"{\"ttl\": 1e400}", "a number beyond f64"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[30]", "a list"),
        (b"30", "a bare number"),
    ];
    for (body, why) in cases {
        let app = spawn_app().await;

        let reply = app
            .post_body(&format!("/api/v1/resources/{COFFEE}/lock"), body, None)
            .await;

        let error = reply.expect_json(400);
        assert_eq!(keys(&error), ["message", "code"], "{why}");
        assert_eq!(error["code"], "invalid_body", "{why}");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.starts_with("the request body must be")
                && message.contains(r#"{"ttl": 600, "holder""#),
            "{why}: {message}"
        );
        assert_eq!(app.resource(COFFEE).await["lock-token"], "", "{why}");
    }
}

#[tokio::test]
async fn lock_never_answers_500_when_the_request_is_hostile() {
    // A `null` body is no body since issue 9 (the document allows it): see strict.rs.
    let bodies: [&[u8]; 5] = [
        b"{\"ttl\": 1e308}",
        b"{\"ttl\": -1e308}",
        b"{\"ttl\": -0.0}",
        b"{\"ttl\": {\"ttl\": 30}}",
        b"\"30\"",
    ];
    let app = spawn_app().await;
    for body in bodies {
        let reply = app
            .post_body(&format!("/api/v1/resources/{COFFEE}/lock"), body, None)
            .await;

        let error: Value = reply.expect_json(400);
        assert!(error["message"].is_string(), "{error}");
    }
}

#[tokio::test]
async fn lock_leaves_other_resources_alone_when_one_is_locked() {
    let app = spawn_app().await;

    app.locked(ARM_1, 60).await;

    let body = app.get("/api/v1/resources").await.expect_json(200);
    let locked: Vec<u64> = body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["lock-token"] != "")
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(locked, [u64::from(ARM_1)]);
}

#[tokio::test]
async fn lock_grants_exactly_one_request_when_many_race_for_one_resource() {
    // Arrange
    let app = spawn_app().await;
    let mut requests = JoinSet::new();
    for _ in 0..8 {
        let request = app
            .client
            .post(app.url(&format!("/api/v1/resources/{COFFEE}/lock")));
        requests.spawn(async move { read(request.send().await.expect("reaches the app")).await });
    }

    // Act
    let mut replies = Vec::new();
    while let Some(reply) = requests.join_next().await {
        replies.push(reply.expect("the request task finishes"));
    }

    // Assert
    let statuses: Vec<u16> = replies.iter().map(|r| r.status.as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 403).count(),
        7,
        "{statuses:?}"
    );
    let winner = replies.into_iter().find(|r| r.status == 200).unwrap();
    let winner = held(winner);
    assert_eq!(
        app.resource(COFFEE).await["lock-token"],
        winner.token.as_str()
    );
    assert_eq!(winner.fencing, 1);
}

#[tokio::test]
async fn lock_returns_a_json_413_when_the_body_is_too_large() {
    let cases = [
        ("/api/v1/resources/1/lock", "lock by id"),
        ("/api/v1/resources/lock?tag=coffee", "lock by criteria"),
    ];
    // 1 MiB of blanks: valid JSON whitespace, far over any sensible lock body.
    let body = vec![b' '; 1024 * 1024];
    for (path, why) in cases {
        let app = spawn_app().await;

        let reply = app.post_body(path, &body, None).await;

        assert_eq!(reply.header("content-type"), "application/json", "{why}");
        assert_eq!(
            reply.expect_json(413),
            json!({
                "limit": 262_144,
                "message": "the request body must be at most 262144 bytes",
                "code": "body_too_large",
            }),
            "{why}"
        );
        assert_eq!(app.resource(COFFEE).await["lock-token"], "", "{why}");
    }
}
