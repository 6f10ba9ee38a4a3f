//! Reading resources: `GET /api/v1/resources` and `GET /api/v1/resources/{id}`.

use rentabot::domain::ResourceSpec;
use serde_json::json;

use crate::helpers::{ARM_1, COFFEE, PRINTER, RESOURCE_KEYS, UNKNOWN, keys, spawn_app};

#[tokio::test]
async fn list_returns_every_resource_in_id_order_when_the_lab_is_loaded() {
    let app = spawn_app().await;

    let body = app.get("/api/v1/resources").await.expect_json(200);

    assert_eq!(keys(&body), ["resources"]);
    let resources = body["resources"].as_array().expect("resources is a list");
    let ids_and_names: Vec<(u64, &str)> = resources
        .iter()
        .map(|r| (r["id"].as_u64().unwrap(), r["name"].as_str().unwrap()))
        .collect();
    assert_eq!(
        ids_and_names,
        [
            (1, "coffee-machine"),
            (2, "board-arm-1"),
            (3, "board-x86-1"),
            (4, "board-arm-2"),
            (5, "printer"),
        ]
    );
    assert_eq!(
        resources[0],
        json!({
            "id": 1,
            "name": "coffee-machine",
            "description": "Kitchen coffee machine",
            "lock-token": "",
            "lock-details": "Resource is available",
            "endpoint": "tcp://192.168.1.50",
            "tags": "coffee,kitchen,food",
            "lock-acquired-at": null,
            "lock-expires-at": null,
            "max-lock-duration": 86400,
            "fencing-token": null,
            "lock-holder": null,
            "lock-note": null,
            "expiring-soon": false,
            "unavailable": false,
            "unavailable-reason": null,
            "unavailable-since": null,
            "unavailable-until": null,
        })
    );
}

#[tokio::test]
async fn list_keeps_the_1_0_keys_in_1_0_order_when_serialized() {
    let app = spawn_app().await;
    app.locked(ARM_1, 60).await;

    let body = app.get("/api/v1/resources").await.expect_json(200);

    for resource in body["resources"].as_array().unwrap() {
        assert_eq!(keys(resource), RESOURCE_KEYS, "{resource}");
    }
}

#[tokio::test]
async fn a_list_too_long_for_one_piece_is_streamed_whole_and_in_order() {
    let lab: Vec<ResourceSpec> = (1..=300)
        .map(|i| ResourceSpec::named(format!("board-{i}")).with_tags(&["ci"]))
        .collect();
    let app = crate::helpers::spawn_app_with(lab).await;
    app.locked(7, 60).await;

    let reply = app.get("/api/v1/resources").await;

    assert_eq!(reply.header("content-type"), "application/json");
    let body = reply.expect_json(200);
    let resources = body["resources"].as_array().unwrap();
    let ids: Vec<u64> = resources
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, (1..=300).collect::<Vec<u64>>());
    assert_eq!(resources[6]["lock-details"], "Resource locked");
    for resource in resources {
        assert_eq!(keys(resource), RESOURCE_KEYS, "{resource}");
    }
}

#[tokio::test]
async fn list_returns_an_empty_list_when_the_broker_has_no_resources() {
    let app = crate::helpers::spawn_app_with(Vec::new()).await;

    let body = app.get("/api/v1/resources").await.expect_json(200);

    assert_eq!(body, json!({"resources": []}));
}

#[tokio::test]
async fn get_returns_the_resource_when_it_exists() {
    let app = spawn_app().await;

    let body = app
        .get(&format!("/api/v1/resources/{PRINTER}"))
        .await
        .expect_json(200);

    assert_eq!(
        body,
        json!({"resource": {
            "id": 5,
            "name": "printer",
            "description": "Label printer <lab> & co",
            "lock-token": "",
            "lock-details": "Resource is available",
            "endpoint": "",
            "tags": "",
            "lock-acquired-at": null,
            "lock-expires-at": null,
            "max-lock-duration": 60,
            "fencing-token": null,
            "lock-holder": null,
            "lock-note": null,
            "expiring-soon": false,
            "unavailable": false,
            "unavailable-reason": null,
            "unavailable-since": null,
            "unavailable-until": null,
        }})
    );
}

#[tokio::test]
async fn get_shows_the_lock_when_the_resource_is_locked() {
    let app = spawn_app().await;
    let held = app.locked(COFFEE, 600).await;

    let resource = app.resource(COFFEE).await;

    assert_eq!(
        resource,
        json!({
            "id": 1,
            "name": "coffee-machine",
            "description": "Kitchen coffee machine",
            "lock-token": held.token,
            "lock-details": "Resource locked",
            "endpoint": "tcp://192.168.1.50",
            "tags": "coffee,kitchen,food",
            "lock-acquired-at": "2026-01-15T10:00:00.000Z",
            "lock-expires-at": "2026-01-15T10:10:00.000Z",
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
}

#[tokio::test]
async fn get_returns_404_naming_the_id_when_the_resource_does_not_exist() {
    let app = spawn_app().await;
    for id in [UNKNOWN, 0, u32::MAX] {
        let reply = app.get(&format!("/api/v1/resources/{id}")).await;

        assert_eq!(
            reply.expect_json(404),
            json!({"resource_id": id, "message": "Resource not found", "code": "resource_not_found"}),
            "id {id}"
        );
    }
}

#[tokio::test]
async fn get_returns_400_when_the_id_is_not_an_integer() {
    let cases = [
        ("abc", "abc", "letters"),
        ("1.5", "1.5", "fractional"),
        ("-1", "-1", "negative"),
        ("%2B1", "+1", "a sign"),
        ("%201", " 1", "padded"),
        ("1e3", "1e3", "exponent notation"),
        ("4294967296", "4294967296", "beyond any id"),
        ("%20", " ", "blank"),
        ("1%2F2", "1/2", "an escaped slash"),
    ];
    let app = spawn_app().await;
    for (raw, decoded, why) in cases {
        let reply = app.get(&format!("/api/v1/resources/{raw}")).await;

        assert_eq!(
            reply.expect_json(400),
            json!({
                "resource_id": decoded,
                "message": format!("resource id must be a whole number from 0 to 4294967295, got {decoded:?}"),
                "code": "invalid_resource_id",
            }),
            "{why}"
        );
    }
}
