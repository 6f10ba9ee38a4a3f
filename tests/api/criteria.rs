//! `POST /api/v1/resources/lock?id=|name=|tag=`: lock the first free match.

use serde_json::json;

use crate::helpers::{ARM_1, ARM_2, COFFEE, PRINTER, X86_1, held, spawn_app};

/// The id of the resource a successful lock-by-criteria granted.
fn locked_id(reply: crate::helpers::Reply) -> u64 {
    let held = held(reply);
    let id = held.body["resource"]["id"].as_u64().expect("resource id");
    assert_eq!(held.body["resource"]["lock-token"], held.token.as_str());
    id
}

#[tokio::test]
async fn lock_by_criteria_returns_the_lock_by_id_body_when_it_grants() {
    let app = spawn_app().await;

    let body = app
        .lock_where(&format!("id={COFFEE}"))
        .await
        .expect_json(200);

    assert_eq!(body["message"], "Resource locked");
    assert_eq!(body["locked-at"], "2026-01-15T10:00:00.000Z");
    assert_eq!(body["expires-at"], "2026-01-15T11:00:00.000Z");
    assert_eq!(body["fencing-token"], 1);
    assert_eq!(body["resource"], app.resource(COFFEE).await);
    assert_eq!(body["resource"]["lock-token"], body["lock-token"]);
}

#[tokio::test]
async fn lock_by_criteria_locks_the_named_resource_when_a_criterion_selects_it() {
    let cases = [
        ("id=3", X86_1, "by id"),
        ("name=board-arm-2", ARM_2, "by name"),
        ("tag=x86", X86_1, "by one tag"),
        ("tag=ci&tag=x86", X86_1, "by every repeated tag"),
        ("tag=linux,x86", X86_1, "by comma-separated tags"),
        (
            "tag=linux&tag=ci,x86",
            X86_1,
            "repeated and comma-separated",
        ),
        ("tag=%20x86%20", X86_1, "a tag with blanks around it"),
        ("tag=coffee&tag=coffee", COFFEE, "a repeated tag"),
    ];
    for (query, expected, why) in cases {
        let app = spawn_app().await;

        let reply = app.lock_where(query).await;

        assert_eq!(locked_id(reply), u64::from(expected), "{why}");
    }
}

#[tokio::test]
async fn lock_by_criteria_prefers_id_then_name_then_tags_when_several_are_given() {
    let cases = [
        (
            "id=3&name=board-arm-2&tag=arm",
            X86_1,
            "id wins over name and tag",
        ),
        (
            "tag=arm&name=board-arm-2&id=3",
            X86_1,
            "whatever the order in the query",
        ),
        ("name=board-arm-2&tag=x86", ARM_2, "name wins over tag"),
        (
            "id=&name=board-arm-2",
            ARM_2,
            "an empty id counts as absent",
        ),
        (
            "id=&name=&tag=x86",
            X86_1,
            "empty id and name count as absent",
        ),
    ];
    for (query, expected, why) in cases {
        let app = spawn_app().await;

        let reply = app.lock_where(query).await;

        assert_eq!(locked_id(reply), u64::from(expected), "{why}");
    }
}

#[tokio::test]
async fn lock_by_criteria_refuses_rather_than_falls_back_when_the_id_it_names_is_locked() {
    let app = spawn_app().await;
    app.locked(X86_1, 60).await;

    let reply = app.lock_where("id=3&tag=arm").await;

    assert_eq!(
        reply.expect_json(403),
        json!({
            "resource_id": 3,
            "message": "Cannot lock the requested resource, resource is already locked",
            "code": "already_locked",
        })
    );
}

#[tokio::test]
async fn lock_by_tags_locks_the_lowest_free_id_when_several_resources_match() {
    // Arrange: board-arm-1 (2) and board-arm-2 (4) carry `arm`.
    let app = spawn_app().await;

    // Act
    let first = locked_id(app.lock_where("tag=arm").await);
    let second = locked_id(app.lock_where("tag=arm").await);

    // Assert
    assert_eq!((first, second), (u64::from(ARM_1), u64::from(ARM_2)));
}

#[tokio::test]
async fn lock_by_tags_skips_locked_resources_when_a_lower_id_is_taken() {
    let app = spawn_app().await;
    app.locked(ARM_1, 60).await;

    let id = locked_id(app.lock_where("tag=ci&tag=linux").await);

    assert_eq!(id, u64::from(X86_1));
}

#[tokio::test]
async fn lock_by_tags_locks_a_resource_again_when_its_holder_unlocked_it() {
    let app = spawn_app().await;
    let first = held(app.lock_where("tag=arm").await);
    locked_id(app.lock_where("tag=arm").await);
    app.unlock(ARM_1, &first.token).await.expect_json(200);

    let id = locked_id(app.lock_where("tag=arm").await);

    assert_eq!(id, u64::from(ARM_1));
}

#[tokio::test]
async fn lock_by_tags_returns_403_naming_the_tags_when_every_match_is_locked() {
    let app = spawn_app().await;
    app.locked(ARM_1, 60).await;
    app.locked(ARM_2, 60).await;

    let reply = app.lock_where("tag=arm&tag=linux").await;

    assert_eq!(
        reply.expect_json(403),
        json!({
            "tags": ["arm", "linux"],
            "message": "No available resource found matching the tag(s)",
            "code": "all_matches_locked",
        })
    );
}

#[tokio::test]
async fn lock_by_tags_returns_404_naming_the_tags_when_no_resource_has_them_all() {
    let cases = [
        ("tag=nope", json!(["nope"]), "an unknown tag"),
        (
            "tag=arm&tag=x86",
            json!(["arm", "x86"]),
            "known tags no resource has together",
        ),
        (
            "tag=arm,coffee",
            json!(["arm", "coffee"]),
            "comma-separated, never together",
        ),
        ("tag=ARM", json!(["ARM"]), "tags are case-sensitive"),
    ];
    for (query, tags, why) in cases {
        let app = spawn_app().await;

        let reply = app.lock_where(query).await;

        assert_eq!(
            reply.expect_json(404),
            json!({
                "tags": tags,
                "message": "No resource found matching the tag(s)",
                "code": "no_match",
            }),
            "{why}"
        );
    }
}

#[tokio::test]
async fn lock_by_id_criterion_returns_404_naming_the_id_when_it_does_not_exist() {
    let app = spawn_app().await;

    let reply = app.lock_where("id=99").await;

    assert_eq!(
        reply.expect_json(404),
        json!({"resource_id": 99, "message": "Resource not found", "code": "resource_not_found"})
    );
}

#[tokio::test]
async fn lock_by_name_returns_404_naming_the_name_when_no_resource_has_it() {
    let app = spawn_app().await;

    let reply = app.lock_where("name=teapot").await;

    assert_eq!(
        reply.expect_json(404),
        json!({"resource_name": "teapot", "message": "Resource not found", "code": "resource_not_found"})
    );
}

#[tokio::test]
async fn lock_by_name_returns_403_when_the_named_resource_is_locked() {
    let app = spawn_app().await;
    app.locked(ARM_2, 60).await;

    let reply = app.lock_where("name=board-arm-2").await;

    assert_eq!(
        reply.expect_json(403),
        json!({
            "resource_id": 4,
            "message": "Cannot lock the requested resource, resource is already locked",
            "code": "already_locked",
        })
    );
}

#[tokio::test]
async fn lock_by_criteria_returns_400_listing_what_was_given_when_no_criterion_is_supported() {
    let cases = [
        // An unknown or misspelt parameter is refused before (tests/api/strict.rs).
        ("", "none", "no query at all"),
        ("ttl=60", "ttl", "a lifetime, but nothing to lock"),
        ("id=&name=&tag=", "id, name, tag", "every criterion empty"),
        ("tag=,", "tag", "a tag list with no tag in it"),
    ];
    for (query, given, why) in cases {
        let app = spawn_app().await;

        let reply = app.lock_where(query).await;

        assert_eq!(
            reply.expect_json(400),
            json!({
                "hint": format!("give one of the query parameters id, name, tag (repeatable) or expr; got {given}"),
                "message": "Bad Request",
                "code": "no_criterion",
            }),
            "{why}"
        );
    }
}

#[tokio::test]
async fn lock_by_criteria_returns_400_when_the_id_criterion_is_not_an_integer() {
    let app = spawn_app().await;

    let reply = app.lock_where("id=two").await;

    assert_eq!(
        reply.expect_json(400),
        json!({
            "resource_id": "two",
            "message": "resource id must be a whole number from 0 to 4294967295, got \"two\"",
            "code": "invalid_resource_id",
        })
    );
}

#[tokio::test]
async fn lock_by_criteria_uses_the_ttl_from_the_body_when_one_is_sent() {
    let app = spawn_app().await;

    let reply = app
        .post_body("/api/v1/resources/lock?tag=x86", br#"{"ttl": 90}"#, None)
        .await;

    let body = reply.expect_json(200);
    assert_eq!(body["resource"]["id"], X86_1);
    assert_eq!(body["expires-at"], "2026-01-15T10:01:30.000Z");
}

#[tokio::test]
async fn lock_by_criteria_returns_400_when_the_ttl_exceeds_the_max_lock_duration() {
    let app = spawn_app().await;

    let reply = app
        .post_body(
            "/api/v1/resources/lock?name=printer",
            br#"{"ttl": 120}"#,
            None,
        )
        .await;

    assert_eq!(
        reply.expect_json(400),
        json!({
            "resource_id": 5,
            "ttl": 120,
            "max_lock_duration": 60,
            "message": "Requested TTL (120s) exceeds maximum allowed duration (60s)",
            "code": "ttl_above_max",
        })
    );
    assert_eq!(app.resource(PRINTER).await["lock-token"], "");
}

#[tokio::test]
async fn lock_by_criteria_returns_400_when_the_ttl_is_invalid() {
    let app = spawn_app().await;

    let reply = app
        .post_body("/api/v1/resources/lock?tag=x86", br#"{"ttl": 0}"#, None)
        .await;

    assert_eq!(
        reply.expect_json(400),
        json!({
            "ttl": 0,
            "message": "ttl must be a whole number of seconds between 1 and 3153600000, got 0",
            "code": "invalid_ttl",
        })
    );
    assert_eq!(app.resource(X86_1).await["lock-token"], "");
}
