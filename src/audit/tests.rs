//! The audit core with explicit times: records, the ring's bound, queries.

use super::*;
use std::path::Path;

use crate::domain::FencingToken;

const T0: Timestamp = Timestamp::from_millis(1_768_471_200_000);

fn at(secs: u64) -> Timestamp {
    Timestamp::from_millis(T0.as_millis() + secs * 1000)
}

fn named(name: &str, role: &str) -> Arc<Cause> {
    Arc::new(Cause {
        actor: Actor::Named {
            name: name.into(),
            role: role.into(),
        },
        request_id: Some("req-1".into()),
        client_ip: Some("10.0.0.7".parse().unwrap()),
        user_agent: Some("ci/1.0".into()),
    })
}

fn locked(resource: u32, secs: u64) -> Event {
    Event::Locked {
        resource: ResourceId::new(resource),
        fencing: FencingToken::new(u64::from(resource)),
        at: at(secs),
        expires_at: at(secs + 60),
        reservation: None,
    }
}

/// An entry of resource `resource` locked at `secs` by `cause`.
fn lock_entry(resource: u32, secs: u64, cause: &Arc<Cause>) -> Entry {
    Entry::of_change(at(secs), cause, &[locked(resource, secs)])
        .pop()
        .unwrap()
}

#[test]
fn a_committed_event_is_a_record_with_its_cause_and_fields() {
    let record = lock_entry(3, 1, &named("ci-bot", "user")).record();
    assert_eq!(
        record,
        json!({
            "timestamp": "2026-01-15T10:00:01.000Z",
            "event_type": "locked",
            "resource_id": 3,
            "reservation_id": null,
            "actor": "ci-bot",
            "role": "user",
            "client_ip": "10.0.0.7",
            "user_agent": "ci/1.0",
            "request_id": "req-1",
            "success": true,
            "details": {
                "fencing_token": 3,
                "at": "2026-01-15T10:00:01.000Z",
                "expires_at": "2026-01-15T10:01:01.000Z",
            },
        })
    );
    let keys: Vec<&String> = record.as_object().unwrap().keys().collect();
    assert_eq!(keys[0], "timestamp", "keys keep their documented order");
}

#[test]
fn the_system_and_anonymous_callers_have_no_role() {
    let expiry = Event::Expired {
        resource: ResourceId::new(1),
        fencing: FencingToken::new(1),
        deadline: at(60),
    };
    let system = Entry::of_change(at(60), &Cause::system(), &[expiry]).remove(0);
    assert_eq!(
        (system.actor(), system.role(), system.event_type.as_ref()),
        ("system", None, "expired")
    );
    assert_eq!(system.record()["client_ip"], Value::Null);
    let anonymous = lock_entry(1, 0, &Cause::anonymous());
    assert_eq!((anonymous.actor(), anonymous.role()), ("anonymous", None));
}

#[test]
fn a_fulfilment_names_its_reservation_and_resources() {
    let id: ReservationId = "res_0123456789abcdef0123456789abcdef".parse().unwrap();
    let event = Event::ReservationFulfilled {
        reservation: id,
        resources: vec![ResourceId::new(2), ResourceId::new(4)],
        at: at(5),
    };
    let record = Entry::of_change(at(5), &Cause::system(), &[event])
        .remove(0)
        .record();
    assert_eq!(record["event_type"], "reservation_fulfilled");
    assert_eq!(record["reservation_id"], id.to_string());
    assert_eq!(record["resource_id"], Value::Null);
    assert_eq!(record["details"]["resource_ids"], json!([2, 4]));
}

#[test]
fn a_refusal_records_status_code_and_route() {
    let refusal = Answer {
        method: "POST".into(),
        route: "/api/v1/resources/{id}/unlock".into(),
        status: 403,
        code: Some("invalid_token"),
    };
    let entry = Entry::refused(
        at(2),
        named("ci-bot", "user"),
        "unlock",
        Some(ResourceId::new(2)),
        None,
        refusal,
    );
    let record = entry.record();
    assert_eq!(record["success"], false);
    assert_eq!(record["event_type"], "unlock");
    assert_eq!(record["resource_id"], 2);
    assert_eq!(
        record["details"],
        json!({"status": 403, "code": "invalid_token", "method": "POST", "route": "/api/v1/resources/{id}/unlock"})
    );
}

#[test]
fn a_stored_row_reads_back_as_the_same_record() {
    for cause in [
        named("ci-bot", "admin"),
        Cause::system(),
        Cause::anonymous(),
    ] {
        let entry = lock_entry(4, 9, &cause);
        let r = entry.record();
        let details = r["details"].to_string();
        let back = Entry::stored(
            entry.at,
            r["event_type"].as_str().unwrap().to_owned(),
            Some(4),
            None,
            r["actor"].as_str().unwrap(),
            r["role"].as_str(),
            r["client_ip"].as_str(),
            r["user_agent"].as_str(),
            r["request_id"].as_str(),
            true,
            &details,
        )
        .unwrap();
        assert_eq!(back.record(), r);
    }
}

#[test]
fn the_ring_keeps_exactly_the_latest_entries_and_drops_whole_chunks() {
    let cause = Cause::anonymous();
    let mut ring = Ring::new(1500);
    for i in 0..5000u64 {
        ring.push(lock_entry(1, i, &cause));
    }
    assert_eq!(ring.len(), 1500);
    let query = Query {
        limit: 1000,
        ..Query::default()
    };
    let page = ring.view().page(&query);
    assert_eq!(page.total, 1500);
    assert_eq!(page.entries[0].at, at(4999), "newest first");
    let last = ring.view().page(&Query { page: 2, ..query });
    assert_eq!(last.entries.len(), 500);
    assert_eq!(last.entries.last().unwrap().at, at(3500), "the oldest kept");
    // Memory stays bounded: no more than one chunk beyond the retention.
    assert!(ring.held() <= 1500 + ring::CHUNK, "{}", ring.held());
}

#[test]
fn queries_filter_by_time_actor_resource_and_type_newest_first() {
    let log = AuditLog::new(100, Vec::new(), None);
    let bot = named("ci-bot", "user");
    let anonymous = Cause::anonymous();
    log.committed(&Committed {
        seq: 1,
        at: at(0),
        cause: bot.clone(),
        first_event: 1,
        events: vec![locked(1, 0), locked(2, 0)],
    });
    log.committed(&Committed {
        seq: 2,
        at: at(10),
        cause: anonymous.clone(),
        first_event: 3,
        events: vec![locked(3, 10)],
    });
    log.committed(&Committed {
        seq: 3,
        at: at(20),
        cause: Cause::system(),
        first_event: 4,
        events: vec![Event::Expired {
            resource: ResourceId::new(1),
            fencing: FencingToken::new(1),
            deadline: at(20),
        }],
    });
    let resources = |filter: Filter| -> Vec<(u32, &'static str)> {
        let page = log.query(&Query {
            filter,
            ..Query::default()
        });
        page.entries
            .iter()
            .map(|e| {
                (
                    e.resource.unwrap().get(),
                    if e.event_type == "expired" {
                        "expired"
                    } else {
                        "locked"
                    },
                )
            })
            .collect()
    };
    assert_eq!(
        resources(Filter::default()),
        [(1, "expired"), (3, "locked"), (2, "locked"), (1, "locked")]
    );
    for (filter, expected, why) in [
        (
            Filter {
                from: Some(at(10)),
                ..Filter::default()
            },
            vec![(1, "expired"), (3, "locked")],
            "from is inclusive",
        ),
        (
            Filter {
                to: Some(at(10)),
                ..Filter::default()
            },
            vec![(2, "locked"), (1, "locked")],
            "to is exclusive",
        ),
        (
            Filter {
                actor: Some("ci-bot".into()),
                ..Filter::default()
            },
            vec![(2, "locked"), (1, "locked")],
            "by actor name",
        ),
        (
            Filter {
                actor: Some("system".into()),
                ..Filter::default()
            },
            vec![(1, "expired")],
            "the system",
        ),
        (
            Filter {
                resource: Some(ResourceId::new(1)),
                ..Filter::default()
            },
            vec![(1, "expired"), (1, "locked")],
            "by resource",
        ),
        (
            Filter {
                event_type: Some("locked".into()),
                resource: Some(ResourceId::new(1)),
                ..Filter::default()
            },
            vec![(1, "locked")],
            "filters combine",
        ),
        (
            Filter {
                event_type: Some("unlocked".into()),
                ..Filter::default()
            },
            vec![],
            "nothing matches",
        ),
    ] {
        assert_eq!(resources(filter), expected, "{why}");
    }
    let second = log.query(&Query {
        page: 2,
        limit: 3,
        ..Query::default()
    });
    assert_eq!(second.total, 4);
    assert_eq!(second.entries.len(), 1);
    assert_eq!(second.entries[0].at, at(0));
    let beyond = log.query(&Query {
        page: 9,
        limit: 3,
        ..Query::default()
    });
    assert_eq!((beyond.total, beyond.entries.len()), (4, 0));
}

#[test]
fn a_refusal_is_kept_and_handed_to_the_store_queue() {
    let log = AuditLog::new(10, Vec::new(), None);
    let stored = Arc::new(Mutex::new(Vec::new()));
    log.store_answers_with({
        let stored = stored.clone();
        move |e| stored.lock().unwrap().push(e)
    });
    let refusal = Answer {
        method: "DELETE".into(),
        route: "x".repeat(1000),
        status: 404,
        code: Some("reservation_not_found"),
    };
    log.answered(Entry::refused(
        at(1),
        Cause::anonymous(),
        "cancel",
        None,
        None,
        refusal,
    ));
    let page = log.query(&Query::default());
    assert_eq!(page.total, 1);
    assert_eq!(stored.lock().unwrap().as_slice(), page.entries.as_slice());
    assert_eq!(
        page.entries[0].record()["details"]["route"]
            .as_str()
            .unwrap()
            .len(),
        MAX_ROUTE_BYTES
    );
}

#[test]
fn the_file_gets_one_json_line_per_entry_and_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    std::fs::write(&path, "{\"earlier\": true}\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let log = AuditLog::new(10, Vec::new(), Some(FileSink::open(&path).unwrap()));
    let cause = named("ci-bot", "user");
    log.committed(&Committed {
        seq: 1,
        at: at(0),
        cause,
        first_event: 1,
        events: vec![locked(1, 0), locked(2, 0)],
    });
    log.close();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "appended: {text}");
    assert_eq!(lines[1]["resource_id"], 1);
    assert_eq!(lines[2]["resource_id"], 2);
    assert_eq!(log.file_status().unwrap().written, 2);
    assert!(log.unready_reasons().is_empty());

    let fresh = dir.path().join("new.jsonl");
    FileSink::open(&fresh).unwrap().close();
    let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}

#[test]
fn a_file_that_cannot_be_written_makes_the_log_unready_and_loses_nothing_else() {
    // Every write to /dev/full fails with "No space left on device".
    let log = AuditLog::new(
        10,
        Vec::new(),
        Some(FileSink::open(Path::new("/dev/full")).unwrap()),
    );
    log.committed(&Committed {
        seq: 1,
        at: at(0),
        cause: Cause::anonymous(),
        first_event: 1,
        events: vec![locked(1, 0)],
    });
    log.close(); // the thread has tried, and ended
    let status = log.file_status().unwrap();
    assert_eq!(status.written, 0);
    assert!(status.failure.is_some(), "{status:?}");
    let reasons = log.unready_reasons();
    assert_eq!(reasons.len(), 1);
    assert!(
        reasons[0].contains("/dev/full cannot be written"),
        "{reasons:?}"
    );
    assert_eq!(
        log.query(&Query::default()).total,
        1,
        "the ring still has it"
    );
}
