//! List queries: filters, sorting and pages on `GET /api/v1/resources` and
//! `GET /api/v1/reservations`, their `Link` headers, and the 400s of bad parameters.
//! Without any parameter both lists are exactly what they were.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

const RESERVATIONS: &str = "/api/v1/reservations";

/// The ids of a list of resources.
fn ids(body: &Value) -> Vec<u64> {
    body["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("no resources list: {body}"))
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect()
}

impl TestApp {
    /// `GET /api/v1/resources?{query}`, expected to succeed: (total, ids).
    async fn listed(&self, query: &str) -> (u64, Vec<u64>) {
        let body = self
            .get(&format!("/api/v1/resources?{query}"))
            .await
            .expect_json(200);
        (body["total"].as_u64().expect("a total"), ids(&body))
    }

    /// Creates a reservation, expecting 201; returns its id.
    async fn reserved_id(&self, body: Value) -> String {
        let reply = self
            .send(self.client.post(self.url(RESERVATIONS)).json(&body))
            .await;
        reply.expect_json(201)["reservation_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// (id, position_in_queue) of a list of reservations.
fn reservations(body: &Value) -> Vec<(String, Value)> {
    body["reservations"]
        .as_array()
        .unwrap_or_else(|| panic!("no reservations list: {body}"))
        .iter()
        .map(|r| {
            (
                r["reservation_id"].as_str().unwrap().to_owned(),
                r["position_in_queue"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn list_is_the_1_0_body_without_a_link_when_no_list_parameter_is_given() {
    let app = spawn_app().await;

    for path in [
        "/api/v1/resources",
        "/api/v1/resources?",
        "/api/v1/resources?format=json&verbose",
    ] {
        let reply = app.get(path).await;

        assert!(reply.headers.get("link").is_none(), "{path}: {reply:?}");
        let body = reply.expect_json(200);
        assert_eq!(keys(&body), ["resources"], "{path}");
        assert_eq!(ids(&body), [1, 2, 3, 4, 5], "{path}");
    }
}

#[tokio::test]
async fn list_returns_a_page_with_total_page_and_limit_when_a_parameter_is_given() {
    let app = spawn_app().await;
    let held = app.locked(ARM_1, 60).await;

    let body = app
        .get("/api/v1/resources?locked=true")
        .await
        .expect_json(200);

    assert_eq!(keys(&body), ["resources", "total", "page", "limit"]);
    assert_eq!(
        (body["total"].clone(), body["page"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(body["limit"], 100);
    let resource = &body["resources"][0];
    assert_eq!(keys(resource), RESOURCE_KEYS);
    assert_eq!(resource["id"], ARM_1);
    assert_eq!(resource["lock-token"], held.token.as_str());
}

#[tokio::test]
async fn locked_keeps_locked_or_free_resources_as_of_now() {
    let app = spawn_app().await;
    app.locked(ARM_1, 60).await;
    app.locked(PRINTER, 30).await;

    assert_eq!(app.listed("locked=true").await, (2, vec![2, 5]));
    assert_eq!(app.listed("locked=false").await, (3, vec![1, 3, 4]));
    app.advance(Duration::from_secs(30));
    assert_eq!(app.listed("locked=true").await, (1, vec![2]));
}

#[tokio::test]
async fn available_and_unavailable_select_by_service_state_when_nothing_is_in_maintenance() {
    let app = spawn_app().await;
    app.locked(ARM_1, 60).await;

    // A locked resource is still in service: available is not "free".
    assert_eq!(app.listed("available=true").await.0, 5);
    assert_eq!(app.listed("unavailable=false").await.0, 5);
    assert_eq!(app.listed("unavailable=true").await, (0, vec![]));
    assert_eq!(app.listed("available=false").await, (0, vec![]));
    assert_eq!(
        app.listed("available=true&unavailable=false&locked=false")
            .await,
        (4, vec![1, 3, 4, 5])
    );
}

#[tokio::test]
async fn available_and_unavailable_follow_maintenance_windows_whatever_the_lock_state() {
    let app = spawn_app().await;
    app.locked(ARM_1, 60).await;
    for id in [ARM_1, PRINTER] {
        let path = format!("/api/v1/resources/{id}/unavailable");
        let body = json!({"reason": "repair"});
        app.send(app.client.post(app.url(&path)).json(&body))
            .await
            .expect_json(200);
    }

    assert_eq!(app.listed("unavailable=true").await, (2, vec![2, 5]));
    assert_eq!(app.listed("available=false").await, (2, vec![2, 5]));
    assert_eq!(app.listed("available=true").await, (3, vec![1, 3, 4]));
    // The lock on ARM_1 runs on while it is out of service.
    assert_eq!(
        app.listed("unavailable=true&locked=true").await,
        (1, vec![2])
    );
    assert_eq!(
        app.listed("available=true&locked=false&tag=ci").await,
        (2, vec![3, 4])
    );
    let unavailable = app
        .get("/api/v1/resources?unavailable=true&limit=1")
        .await
        .expect_json(200);
    assert_eq!(unavailable["resources"][0]["unavailable-reason"], "repair");

    app.post(&format!("/api/v1/resources/{PRINTER}/available"))
        .await
        .expect_json(200);

    assert_eq!(app.listed("unavailable=true").await, (1, vec![2]));
    assert_eq!(app.listed("available=true").await, (4, vec![1, 3, 4, 5]));
}

#[tokio::test]
async fn tag_requires_every_tag_whether_repeated_comma_separated_or_spelled_tags() {
    let app = spawn_app().await;

    assert_eq!(app.listed("tag=ci&tag=arm").await, (2, vec![2, 4]));
    assert_eq!(app.listed("tag=ci,arm").await, (2, vec![2, 4]));
    assert_eq!(app.listed("tags=ci,x86").await, (1, vec![3]));
    assert_eq!(app.listed("tag=linux&tags=x86").await, (1, vec![3]));
    assert_eq!(app.listed("tag=nothing-has-this").await, (0, vec![]));
}

#[tokio::test]
async fn expr_selects_by_label_expression_and_combines_with_tag_by_and() {
    let app = spawn_app().await;

    assert_eq!(
        app.listed("expr=coffee%20%7C%7C%20x86").await,
        (2, vec![1, 3])
    );
    assert_eq!(app.listed("expr=!ci").await, (2, vec![1, 5]));
    assert_eq!(app.listed("tag=ci&expr=!arm").await, (1, vec![3]));
}

#[tokio::test]
async fn name_matches_a_substring_ignoring_case() {
    let app = spawn_app().await;

    assert_eq!(app.listed("name=BOARD").await, (3, vec![2, 3, 4]));
    assert_eq!(app.listed("name=arm-2").await, (1, vec![4]));
    assert_eq!(app.listed("name=nope").await, (0, vec![]));
    assert_eq!(app.listed("name=board&tag=x86").await, (1, vec![3]));
}

#[tokio::test]
async fn sort_orders_by_id_name_or_lock_expiry_in_either_direction() {
    let app = spawn_app().await;
    app.locked(X86_1, 60).await;
    app.locked(COFFEE, 30).await;

    assert_eq!(app.listed("sort=id&order=desc").await.1, [5, 4, 3, 2, 1]);
    // board-arm-1, board-arm-2, board-x86-1, coffee-machine, printer.
    assert_eq!(app.listed("sort=name").await.1, [2, 4, 3, 1, 5]);
    assert_eq!(app.listed("sort=name&order=desc").await.1, [5, 1, 3, 4, 2]);
    // Locks by expiry, then the free resources, in both directions.
    assert_eq!(app.listed("sort=lock-expires-at").await.1, [1, 3, 2, 4, 5]);
    assert_eq!(
        app.listed("sort=lock-expires-at&order=desc").await.1,
        [3, 1, 5, 4, 2]
    );
    assert_eq!(app.listed("order=desc").await.1, [5, 4, 3, 2, 1]);
}

#[tokio::test]
async fn pages_hold_limit_resources_and_a_page_past_the_end_is_empty() {
    let app = spawn_app().await;

    let first = app.get("/api/v1/resources?limit=2").await.expect_json(200);
    let third = app
        .get("/api/v1/resources?limit=2&page=3")
        .await
        .expect_json(200);
    let past = app
        .get("/api/v1/resources?limit=2&page=9")
        .await
        .expect_json(200);

    assert_eq!(ids(&first), [1, 2]);
    assert_eq!(
        (first["total"].clone(), first["page"].clone()),
        (json!(5), json!(1))
    );
    assert_eq!(first["limit"], 2);
    assert_eq!(ids(&third), [5]);
    assert_eq!(third["page"], 3);
    assert_eq!(ids(&past), Vec::<u64>::new());
    assert_eq!(
        (past["total"].clone(), past["page"].clone()),
        (json!(5), json!(9))
    );
    assert_eq!(app.listed("sort=name&limit=2&page=2").await.1, [3, 1]);
}

#[tokio::test]
async fn link_header_names_first_prev_next_and_last_with_the_same_query() {
    let app = spawn_app().await;
    let link = |query: &str| {
        let app = &app;
        let path = format!("/api/v1/resources?{query}");
        async move { app.get(&path).await.header("link").to_owned() }
    };

    assert_eq!(
        link("limit=2").await,
        "</api/v1/resources?limit=2&page=1>; rel=\"first\", \
         </api/v1/resources?limit=2&page=2>; rel=\"next\", \
         </api/v1/resources?limit=2&page=3>; rel=\"last\""
    );
    assert_eq!(
        link("page=2&limit=2").await,
        "</api/v1/resources?page=1&limit=2>; rel=\"first\", \
         </api/v1/resources?page=1&limit=2>; rel=\"prev\", \
         </api/v1/resources?page=3&limit=2>; rel=\"next\", \
         </api/v1/resources?page=3&limit=2>; rel=\"last\""
    );
    assert_eq!(
        link("limit=2&page=3").await,
        "</api/v1/resources?limit=2&page=1>; rel=\"first\", \
         </api/v1/resources?limit=2&page=2>; rel=\"prev\", \
         </api/v1/resources?limit=2&page=3>; rel=\"last\""
    );
    // Past the end, prev leads back to the last page.
    assert_eq!(
        link("limit=2&page=9").await,
        "</api/v1/resources?limit=2&page=1>; rel=\"first\", \
         </api/v1/resources?limit=2&page=3>; rel=\"prev\", \
         </api/v1/resources?limit=2&page=3>; rel=\"last\""
    );
    // The filters ride along, encoded; no match still has one (empty) page.
    assert_eq!(
        link("tag=nothing&expr=!arm").await,
        "</api/v1/resources?tag=nothing&expr=%21arm&page=1>; rel=\"first\", \
         </api/v1/resources?tag=nothing&expr=%21arm&page=1>; rel=\"last\""
    );
}

#[tokio::test]
async fn link_header_keeps_the_legacy_prefix_beside_its_successor_link() {
    let app = spawn_app().await;

    let reply = app.get("/rentabot/api/v1.0/resources?limit=4").await;

    assert_eq!(
        reply.header("link"),
        "</rentabot/api/v1.0/resources?limit=4&page=1>; rel=\"first\", \
         </rentabot/api/v1.0/resources?limit=4&page=2>; rel=\"next\", \
         </rentabot/api/v1.0/resources?limit=4&page=2>; rel=\"last\", \
         </api/v1/resources>; rel=alternate"
    );
    assert_eq!(reply.header("deprecation"), "true");
    assert_eq!(ids(&reply.expect_json(200)), [1, 2, 3, 4]);
}

#[tokio::test]
async fn invalid_list_parameters_are_refused_with_400_naming_the_parameter() {
    let app = spawn_app().await;
    let cases = [
        (
            "locked=maybe",
            "locked",
            "invalid_parameter",
            "true or false",
        ),
        (
            "available=yes",
            "available",
            "invalid_parameter",
            "true or false",
        ),
        (
            "sort=size",
            "sort",
            "invalid_parameter",
            "id, name or lock-expires-at",
        ),
        ("order=up", "order", "invalid_parameter", "asc or desc"),
        ("page=0", "page", "invalid_parameter", "from 1"),
        ("page=x", "page", "invalid_parameter", "from 1"),
        ("page=-1", "page", "invalid_parameter", "from 1"),
        ("limit=0", "limit", "invalid_parameter", "from 1 to 1000"),
        ("limit=1001", "limit", "invalid_parameter", "from 1 to 1000"),
        ("limit=ten", "limit", "invalid_parameter", "from 1 to 1000"),
        ("tag=", "tag", "invalid_parameter", "a tag"),
        ("tags=,", "tags", "invalid_parameter", "a tag"),
        ("expr=arm%20%26%26", "expr", "invalid_expr", "position"),
        (
            "available=true&unavailable=true",
            "unavailable",
            "conflicting_parameters",
            "contradict",
        ),
        (
            "sort=id&sort=name",
            "sort",
            "repeated_parameter",
            "only once",
        ),
        (
            "locked=true&sortt=name",
            "sortt",
            "unknown_parameter",
            "locked, available",
        ),
    ];
    for (query, parameter, code, hint) in cases {
        let reply = app.get(&format!("/api/v1/resources?{query}")).await;
        assert_refused(reply, query, parameter, code, hint);
    }
}

#[tokio::test]
async fn an_unknown_parameter_beside_a_known_one_lists_the_known_ones() {
    let app = spawn_app().await;

    let body = app
        .get("/api/v1/resources?limit=10&tga=arm")
        .await
        .expect_json(400);

    assert_eq!(body["parameter"], "tga");
    assert_eq!(
        body["known"],
        json!([
            "locked",
            "available",
            "unavailable",
            "tag",
            "tags",
            "expr",
            "name",
            "sort",
            "order",
            "page",
            "limit"
        ])
    );
}

/// Four reservations on the test lab, in creation order:
/// `both_arm` (2 arm boards) fulfilled; `arm` (1 arm board) pending;
/// `x86` (expression `x86`, priority 2) fulfilled then claimed;
/// `urgent` (tags [x86], priority 1) pending, ahead of `arm` in the queue.
struct Queue {
    app: TestApp,
    both_arm: String,
    arm: String,
    x86: String,
    urgent: String,
}

async fn queue() -> Queue {
    let app = spawn_app().await;
    let both_arm = app
        .reserved_id(json!({"tags": ["arm"], "quantity": 2}))
        .await;
    let arm = app.reserved_id(json!({"tags": ["arm"]})).await;
    let x86 = app.reserved_id(json!({"expr": "x86", "priority": 2})).await;
    app.post(&format!("{RESERVATIONS}/{x86}/claim"))
        .await
        .expect_json(200);
    let urgent = app
        .reserved_id(json!({"tags": ["x86"], "priority": 1}))
        .await;
    Queue {
        app,
        both_arm,
        arm,
        x86,
        urgent,
    }
}

impl Queue {
    async fn listed(&self, query: &str) -> (u64, Vec<(String, Value)>) {
        let body = self
            .app
            .get(&format!("{RESERVATIONS}?{query}"))
            .await
            .expect_json(200);
        assert_eq!(keys(&body), ["reservations", "total", "page", "limit"]);
        (body["total"].as_u64().unwrap(), reservations(&body))
    }

    fn pending(&self, id: &str, place: u64) -> (String, Value) {
        (id.to_owned(), json!(place))
    }

    fn other(&self, id: &str) -> (String, Value) {
        (id.to_owned(), Value::Null)
    }
}

#[tokio::test]
async fn reservation_list_is_unchanged_when_no_list_parameter_is_given() {
    let q = queue().await;

    for path in [RESERVATIONS, "/api/v1/reservations?wait=5"] {
        let reply = q.app.get(path).await;

        assert!(reply.headers.get("link").is_none(), "{path}");
        let body = reply.expect_json(200);
        assert_eq!(keys(&body), ["reservations"]);
        assert_eq!(
            reservations(&body),
            [
                q.pending(&q.urgent, 1),
                q.pending(&q.arm, 2),
                q.other(&q.both_arm),
                q.other(&q.x86),
            ]
        );
    }
}

#[tokio::test]
async fn reservations_filter_by_status_keeping_their_place_in_the_queue() {
    let q = queue().await;

    assert_eq!(
        q.listed("status=pending").await,
        (2, vec![q.pending(&q.urgent, 1), q.pending(&q.arm, 2)])
    );
    assert_eq!(
        q.listed("status=fulfilled,claimed").await,
        (2, vec![q.other(&q.both_arm), q.other(&q.x86)])
    );
    assert_eq!(
        q.listed("status=claimed&status=pending").await.1,
        [
            q.pending(&q.urgent, 1),
            q.pending(&q.arm, 2),
            q.other(&q.x86)
        ]
    );
}

#[tokio::test]
async fn reservations_filter_by_tag_asked_for_and_by_priority() {
    let q = queue().await;

    assert_eq!(
        q.listed("tag=arm").await,
        (2, vec![q.pending(&q.arm, 2), q.other(&q.both_arm)])
    );
    // The expression group asks for x86 too.
    assert_eq!(
        q.listed("tags=x86").await,
        (2, vec![q.pending(&q.urgent, 1), q.other(&q.x86)])
    );
    assert_eq!(
        q.listed("priority=1").await,
        (1, vec![q.pending(&q.urgent, 1)])
    );
    assert_eq!(
        q.listed("priority=5&status=pending").await,
        (1, vec![q.pending(&q.arm, 2)])
    );
}

#[tokio::test]
async fn reservations_come_in_pages_with_a_link_header() {
    let q = queue().await;

    let reply = q.app.get(&format!("{RESERVATIONS}?limit=1&page=2")).await;

    assert_eq!(
        reply.header("link"),
        "</api/v1/reservations?limit=1&page=1>; rel=\"first\", \
         </api/v1/reservations?limit=1&page=1>; rel=\"prev\", \
         </api/v1/reservations?limit=1&page=3>; rel=\"next\", \
         </api/v1/reservations?limit=1&page=4>; rel=\"last\""
    );
    let body = reply.expect_json(200);
    assert_eq!(
        (body["total"].clone(), body["page"].clone()),
        (json!(4), json!(2))
    );
    assert_eq!(reservations(&body), [q.pending(&q.arm, 2)]);
    assert_eq!(q.listed("limit=3&page=5").await, (4, vec![]));
}

#[tokio::test]
async fn invalid_reservation_list_parameters_are_refused_with_400_naming_the_parameter() {
    let q = queue().await;
    let cases = [
        (
            "status=done",
            "status",
            "invalid_parameter",
            "pending, fulfilled or claimed",
        ),
        (
            "status=pending,",
            "status",
            "invalid_parameter",
            "pending, fulfilled or claimed",
        ),
        (
            "priority=11",
            "priority",
            "invalid_parameter",
            "from 1 to 10",
        ),
        (
            "priority=x",
            "priority",
            "invalid_parameter",
            "from 1 to 10",
        ),
        ("page=0", "page", "invalid_parameter", "from 1"),
        ("limit=1001", "limit", "invalid_parameter", "from 1 to 1000"),
        ("tag=", "tag", "invalid_parameter", "a tag"),
        (
            "priority=1&priority=2",
            "priority",
            "repeated_parameter",
            "only once",
        ),
        (
            "status=pending&wait=5",
            "wait",
            "unknown_parameter",
            "status, tag, tags",
        ),
    ];
    for (query, parameter, code, hint) in cases {
        let reply = q.app.get(&format!("{RESERVATIONS}?{query}")).await;
        assert_refused(reply, query, parameter, code, hint);
    }
}

/// A 400 for `query` naming `parameter`, with `code`, and a message that names the
/// parameter and says `hint`.
fn assert_refused(reply: Reply, query: &str, parameter: &str, code: &str, hint: &str) {
    let body = reply.expect_json(400);
    assert_eq!(body["parameter"], parameter, "{query}: {body}");
    assert_eq!(body["code"], code, "{query}: {body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(parameter) && message.contains(hint),
        "{query}: {message}"
    );
}

#[tokio::test]
async fn the_openapi_document_describes_the_list_parameters_and_pages() {
    let app = spawn_app().await;

    let doc = app.get("/api/v1/openapi.json").await.expect_json(200);

    let names = |path: &str| -> Vec<String> {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("no parameters for {path}"))
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names("/api/v1/resources"),
        [
            "locked",
            "available",
            "unavailable",
            "tag",
            "tags",
            "expr",
            "name",
            "sort",
            "order",
            "page",
            "limit"
        ]
    );
    // `tags`, the alias, was accepted but undocumented: the document now names every
    // parameter the parser takes (the parser reads the names from it).
    assert_eq!(
        names("/api/v1/reservations"),
        ["status", "tag", "tags", "priority", "page", "limit"]
    );
    let schemas = &doc["components"]["schemas"];
    for schema in ["ResourcePageList", "ReservationPageList"] {
        assert!(
            schemas[schema]["properties"]["total"].is_object(),
            "{schema}: {}",
            schemas[schema]
        );
    }
}
