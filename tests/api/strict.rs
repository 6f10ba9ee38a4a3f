//! Strict write requests (issue 9): a name the endpoint does not document is refused,
//! not ignored; a single-valued parameter given twice is refused; `?ttl=` is honoured;
//! a missing or misspelled lock token is told how to pass it; names and reasons must be
//! visible text. And 1.0 clients still work.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

/// Sends `method path` with `body` as JSON (or no body).
async fn send(app: &TestApp, method: &str, path: &str, body: Option<&Value>) -> Reply {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = app.client.request(method, app.url(path));
    if let Some(body) = body {
        request = request.json(body);
    }
    app.send(request).await
}

async fn reserve(app: &TestApp, body: Value) -> String {
    let reply = send(app, "POST", "/api/v1/reservations", Some(&body)).await;
    reply.expect_json(201)["reservation_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn lock_refuses_a_misspelled_ttl_naming_it_and_the_known_fields() {
    let app = spawn_app().await;

    let reply = app.lock_with_body(COFFEE, r#"{"tll": 60}"#).await;

    let body = reply.expect_json(400);
    assert_eq!(body["code"], "unknown_field");
    assert_eq!(body["field"], "tll");
    assert_eq!(body["known"], json!(["holder", "note", "ttl"]));
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("\"tll\"") && message.contains("did you mean \"ttl\""),
        "{message}"
    );
    assert_eq!(
        app.resource(COFFEE).await["lock-token"],
        "",
        "nothing locked"
    );
}

#[tokio::test]
async fn every_body_refuses_a_field_it_does_not_document() {
    let app = spawn_app().await;
    let cases = [
        (
            "POST",
            "/api/v1/resources/1/lock",
            json!({"ttl": 60, "colour": 1}),
        ),
        ("POST", "/api/v1/resources/lock?tag=ci", json!({"tll": 60})),
        (
            "POST",
            "/api/v1/resources/unlock-batch",
            json!({"lock_tokens": ["x"], "colour": 1}),
        ),
        (
            "POST",
            "/api/v1/reservations",
            json!({"tags": ["ci"], "max_wait": 60}),
        ),
        (
            "POST",
            "/api/v1/resources/1/unavailable",
            json!({"reason": "disk", "untill": "2030-01-01T00:00:00Z"}),
        ),
        (
            "POST",
            "/api/v1/resources/1/force-unlock",
            json!({"reason": "hung", "colour": 1}),
        ),
        (
            "POST",
            "/api/v1/resources",
            json!({"name": "x", "tag": "lab"}),
        ),
        ("PATCH", "/api/v1/resources/1", json!({"colour": "red"})),
    ];
    for (method, path, body) in cases {
        let reply = send(&app, method, path, Some(&body)).await;

        let error = reply.expect_json(400);
        assert_eq!(error["code"], "unknown_field", "{method} {path}: {error}");
        assert!(error["known"].is_array(), "{method} {path}: {error}");
    }
    assert_eq!(
        app.resource(COFFEE).await["lock-token"],
        "",
        "nothing locked"
    );
    assert_eq!(app.resource(COFFEE).await["unavailable"], false);
}

#[tokio::test]
async fn a_group_refuses_a_field_it_does_not_document_naming_where_it_is() {
    let app = spawn_app().await;
    let body = json!({"groups": [{"tags": ["ci"]}, {"tags": ["arm"], "quantiy": 2}]});

    let reply = send(&app, "POST", "/api/v1/reservations", Some(&body)).await;

    let error = reply.expect_json(400);
    assert_eq!(error["code"], "unknown_field");
    assert_eq!(error["field"], "groups[1].quantiy");
    assert_eq!(error["known"], json!(["expr", "quantity", "tags"]));
}

#[tokio::test]
async fn every_change_and_the_long_poll_refuse_a_query_parameter_they_do_not_document() {
    let app = spawn_app().await;
    let rid = reserve(&app, json!({"tags": ["arm"], "ttl": 60})).await;
    let cases = [
        ("POST", "/api/v1/resources/1/lock?tll=60".to_owned()),
        (
            "POST",
            "/api/v1/resources/lock?tag=ci&colour=red".to_owned(),
        ),
        ("POST", "/api/v1/resources/1/unlock?lock_token=x".to_owned()),
        (
            "POST",
            "/api/v1/resources/1/extend?additional-ttl=60&tll=1".to_owned(),
        ),
        ("POST", "/api/v1/resources/unlock-batch?x=1".to_owned()),
        ("POST", "/api/v1/resources/1/unavailable?x=1".to_owned()),
        ("POST", "/api/v1/resources/1/available?x=1".to_owned()),
        ("POST", "/api/v1/resources/1/force-unlock?x=1".to_owned()),
        ("POST", "/api/v1/reservations?x=1".to_owned()),
        ("GET", format!("/api/v1/reservations/{rid}?wiat=5")),
        ("POST", format!("/api/v1/reservations/{rid}/claim?x=1")),
        ("DELETE", format!("/api/v1/reservations/{rid}?x=1")),
        ("POST", "/api/v1/resources?x=1".to_owned()),
        ("PATCH", "/api/v1/resources/1?x=1".to_owned()),
        ("DELETE", "/api/v1/resources/1?forse=true".to_owned()),
        ("POST", "/api/v1/admin/reload?x=1".to_owned()),
    ];
    for (method, path) in cases {
        let reply = send(&app, method, &path, None).await;

        let error = reply.expect_json(400);
        assert_eq!(error["code"], "unknown_parameter", "{method} {path}");
        assert!(error["known"].is_array(), "{method} {path}: {error}");
    }
    assert_eq!(
        app.resource(COFFEE).await["lock-token"],
        "",
        "nothing locked"
    );
    assert_eq!(
        app.get("/api/v1/resources/1").await.status,
        200,
        "not deleted"
    );
}

#[tokio::test]
async fn a_misspelled_wait_is_refused_with_the_right_name_instead_of_answering_at_once() {
    let app = spawn_app().await;
    let rid = reserve(&app, json!({"tags": ["coffee"], "ttl": 60})).await;

    let reply = app.get(&format!("/api/v1/reservations/{rid}?wiat=5")).await;

    let error = reply.expect_json(400);
    assert_eq!(error["parameter"], "wiat");
    assert_eq!(error["known"], json!(["wait", "status"]));
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("did you mean \"wait\""),
        "{error}"
    );
}

#[tokio::test]
async fn a_misspelled_lock_token_is_told_how_to_pass_it() {
    let app = spawn_app().await;
    let held = app.locked(COFFEE, 600).await;

    let reply = app
        .post(&format!(
            "/api/v1/resources/{COFFEE}/unlock?lock_token={}",
            held.token
        ))
        .await;

    let error = reply.expect_json(400);
    assert_eq!(error["code"], "unknown_parameter");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("?lock-token=TOKEN") && message.contains("X-Lock-Token"),
        "{message}"
    );
    assert_eq!(
        app.resource(COFFEE).await["lock-token"],
        held.token.as_str()
    );
}

#[tokio::test]
async fn a_missing_lock_token_is_told_how_to_pass_it_on_unlock_and_extend() {
    let app = spawn_app().await;
    app.locked(COFFEE, 600).await;

    for path in ["unlock", "extend?additional-ttl=60"] {
        let reply = app
            .post(&format!("/api/v1/resources/{COFFEE}/{path}"))
            .await;

        let error = reply.expect_json(403);
        assert_eq!(error["code"], "missing_lock_token", "{path}");
        let hint = error["hint"].as_str().unwrap();
        assert!(
            hint.contains("?lock-token=TOKEN") && hint.contains("X-Lock-Token"),
            "{path}: {hint}"
        );
    }
}

#[tokio::test]
async fn a_repeated_lock_token_is_refused_and_unlocks_nothing() {
    let app = spawn_app().await;
    let held = app.locked(COFFEE, 600).await;
    let wrong = "6f1c2b8e-5a43-4b7e-9d2a-0c1e2f3a4b5c";
    let url = app.url(&format!("/api/v1/resources/{COFFEE}/unlock"));

    for query in [
        [("lock-token", held.token.as_str()), ("lock-token", wrong)],
        [("lock-token", wrong), ("lock-token", held.token.as_str())],
    ] {
        let reply = app.send(app.client.post(&url).query(&query)).await;

        let error = reply.expect_json(400);
        assert_eq!(error["code"], "repeated_parameter");
        assert_eq!(error["parameter"], "lock-token");
    }
    let twice = app
        .send(
            app.client
                .post(&url)
                .header("X-Lock-Token", held.token.as_str())
                .header("X-Lock-Token", wrong),
        )
        .await;
    assert_eq!(twice.expect_json(400)["parameter"], "X-Lock-Token");
    assert_eq!(
        app.resource(COFFEE).await["lock-token"],
        held.token.as_str()
    );
}

#[tokio::test]
async fn a_single_valued_parameter_given_twice_is_refused_everywhere() {
    let app = spawn_app().await;
    let held = app.locked(COFFEE, 600).await;
    let rid = reserve(&app, json!({"tags": ["arm"], "ttl": 60})).await;
    let cases = [
        (
            "POST",
            format!(
                "/api/v1/resources/1/extend?lock-token={}&additional-ttl=60&additional-ttl=7200",
                held.token
            ),
            "additional-ttl",
        ),
        (
            "POST",
            "/api/v1/resources/2/lock?ttl=60&ttl=120".to_owned(),
            "ttl",
        ),
        ("POST", "/api/v1/resources/lock?id=2&id=3".to_owned(), "id"),
        (
            "DELETE",
            "/api/v1/resources/2?force=true&force=false".to_owned(),
            "force",
        ),
        (
            "GET",
            format!("/api/v1/reservations/{rid}?wait=0&wait=1"),
            "wait",
        ),
        (
            "GET",
            "/api/v1/resources/expired?limit=1&limit=2".to_owned(),
            "limit",
        ),
        ("GET", "/api/v1/resources?page=1&page=2".to_owned(), "page"),
    ];
    for (method, path, parameter) in cases {
        let reply = send(&app, method, &path, None).await;

        let error = reply.expect_json(400);
        assert_eq!(error["code"], "repeated_parameter", "{method} {path}");
        assert_eq!(error["parameter"], parameter, "{method} {path}");
    }
    assert_eq!(
        app.resource(COFFEE).await["lock-expires-at"],
        "2026-01-15T10:10:00.000Z",
        "not extended"
    );
}

#[tokio::test]
async fn a_body_field_given_twice_is_refused_naming_it() {
    let app = spawn_app().await;

    let reply = app
        .lock_with_body(COFFEE, r#"{"ttl": 60, "ttl": 86400}"#)
        .await;

    let error = reply.expect_json(400);
    assert_eq!(error["code"], "repeated_field");
    assert_eq!(error["field"], "ttl");
    let reply = app
        .post_body(
            "/api/v1/reservations",
            br#"{"groups": [{"tags": ["ci"], "quantity": 1, "quantity": 9}]}"#,
            None,
        )
        .await;
    assert_eq!(reply.expect_json(400)["field"], "groups[0].quantity");
}

#[tokio::test]
async fn lock_honours_ttl_in_the_query_on_both_lock_routes() {
    let app = spawn_app().await;

    let by_id = app
        .post(&format!("/api/v1/resources/{COFFEE}/lock?ttl=60"))
        .await
        .expect_json(200);
    let by_tag = app.lock_where("tag=arm&ttl=90").await.expect_json(200);

    assert_eq!(by_id["expires-at"], "2026-01-15T10:01:00.000Z");
    assert_eq!(by_tag["expires-at"], "2026-01-15T10:01:30.000Z");
}

#[tokio::test]
async fn lock_refuses_a_ttl_in_both_the_query_and_the_body() {
    let app = spawn_app().await;

    let reply = app
        .post_body(
            &format!("/api/v1/resources/{COFFEE}/lock?ttl=60"),
            br#"{"ttl": 60}"#,
            Some("application/json"),
        )
        .await;

    let error = reply.expect_json(400);
    assert_eq!(error["code"], "conflicting_parameters");
    assert_eq!(error["parameter"], "ttl");
}

#[tokio::test]
async fn lock_refuses_a_bad_query_ttl() {
    let app = spawn_app().await;

    for ttl in ["0", "soon", "-5", "99999999999"] {
        let reply = app
            .post(&format!("/api/v1/resources/{COFFEE}/lock?ttl={ttl}"))
            .await;

        assert_eq!(reply.expect_json(400)["code"], "invalid_ttl", "{ttl}");
    }
}

#[tokio::test]
async fn names_and_reasons_must_be_visible_text_without_controls() {
    let app = spawn_app().await;
    let held = app.locked(ARM_1, 600).await;
    let bad = [
        ("a\nb", "a newline (forges a log line)"),
        ("a\u{1b}[31mb", "a terminal escape"),
        ("evil\u{202e}gnp.exe", "a right-to-left override"),
        ("a\u{2066}b", "an isolate"),
        ("\u{200b}\u{200b}", "only zero-width spaces"),
        ("\u{3000}\u{00a0}", "only wide and no-break spaces"),
    ];
    for (text, why) in bad {
        let cases = [
            (
                "POST",
                "/api/v1/resources".to_owned(),
                json!({"name": text}),
            ),
            (
                "POST",
                format!("/api/v1/resources/{COFFEE}/unavailable"),
                json!({"reason": text}),
            ),
            (
                "POST",
                format!("/api/v1/resources/{ARM_1}/force-unlock"),
                json!({"reason": text}),
            ),
            (
                "POST",
                format!("/api/v1/resources/{X86_1}/lock"),
                json!({"holder": text}),
            ),
            (
                "POST",
                format!("/api/v1/resources/{X86_1}/lock"),
                json!({"note": text}),
            ),
        ];
        for (method, path, body) in cases {
            if text.trim().is_empty() && path.ends_with("/lock") {
                continue; // a blank holder or note is no holder or note, as before
            }
            let reply = send(&app, method, &path, Some(&body)).await;

            let error = reply.expect_json(400);
            let code = error["code"].as_str().unwrap();
            assert!(
                ["invalid_name", "invalid_text", "missing_reason"].contains(&code),
                "{why}: {path} {body}: {error}"
            );
        }
    }
    let delete = app
        .send(
            app.client
                .delete(app.url(&format!("/api/v1/resources/{ARM_1}")))
                .query(&[("force", "true"), ("reason", "a\u{202e}b")]),
        )
        .await;
    assert_eq!(delete.expect_json(400)["code"], "invalid_text");
    assert_eq!(app.resource(ARM_1).await["lock-token"], held.token.as_str());
    assert_eq!(app.resource(COFFEE).await["unavailable"], false);
    assert_eq!(app.resource(X86_1).await["lock-token"], "");
}

#[tokio::test]
async fn names_and_reasons_in_any_script_are_accepted() {
    let app = spawn_app().await;

    let created = send(
        &app,
        "POST",
        "/api/v1/resources",
        Some(&json!({"name": "Prüfstand-東京-۳"})),
    )
    .await;
    let locked = send(
        &app,
        "POST",
        &format!("/api/v1/resources/{COFFEE}/lock"),
        Some(&json!({"holder": "José", "note": "שלום, 👩‍🔬 soak"})),
    )
    .await;

    assert_eq!(
        created.expect_json(201)["resource"]["name"],
        "Prüfstand-東京-۳"
    );
    assert_eq!(
        locked.expect_json(200)["resource"]["lock-note"],
        "שלום, 👩‍🔬 soak"
    );
}

/// What 1.0 clients send keeps working: no content type, an empty or `null` body,
/// `{"ttl": ...}`, `?lock-token=`, `X-Lock-Token`, and the legacy prefix.
#[tokio::test]
async fn one_point_oh_requests_keep_working() {
    let app = spawn_app().await;
    let legacy = "/rentabot/api/v1.0/resources";

    let bare = app.post(&format!("{legacy}/{COFFEE}/lock")).await;
    let typed = app
        .post_body(&format!("{legacy}/{ARM_1}/lock"), br#"{"ttl": 60}"#, None)
        .await;
    let null = app
        .post_body(
            &format!("{legacy}/{X86_1}/lock"),
            b"null",
            Some("application/json"),
        )
        .await;
    let empty_form = app
        .post_body(
            &format!("{legacy}/{ARM_2}/lock"),
            b"",
            Some("application/x-www-form-urlencoded"),
        )
        .await;

    let bare = held(bare);
    let typed = held(typed);
    assert_eq!(typed.body["expires-at"], "2026-01-15T10:01:00.000Z");
    assert_eq!(
        null.expect_json(200)["expires-at"],
        "2026-01-15T11:00:00.000Z"
    );
    assert_eq!(empty_form.status, 200, "{}", empty_form.text);
    app.send(
        app.client
            .post(app.url(&format!("{legacy}/{COFFEE}/unlock")))
            .query(&[("lock-token", bare.token.as_str())]),
    )
    .await
    .expect_json(200);
    app.send(
        app.client
            .post(app.url(&format!("{legacy}/{ARM_1}/unlock")))
            .header("X-Lock-Token", typed.token.as_str()),
    )
    .await
    .expect_json(200);
}
