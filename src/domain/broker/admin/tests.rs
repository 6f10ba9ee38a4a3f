//! Administration tests: add, patch, delete and reload, with explicit time. Every test
//! checks the broker's invariants (and that serving again changes nothing) after each
//! step.

use super::*;
use crate::domain::broker::test_support::*;
use crate::domain::reservation::ReservationStatus;

fn spec(name: &str, tags: &[&str]) -> ResourceSpec {
    ResourceSpec::named(name).with_tags(tags)
}

fn by_tags(t: &[&str]) -> Selector {
    Selector::Matching(Criteria::Tags(t.iter().map(|s| s.to_string()).collect()))
}

/// 1 board-1 [board, arm], 2 board-2 [board, x86], 3 board-3 [board, arm], 4 printer
/// [printer]: the descriptor the broker was started with.
fn lab_specs() -> Vec<ResourceSpec> {
    vec![
        spec("board-1", &["board", "arm"]),
        spec("board-2", &["board", "x86"]),
        spec("board-3", &["board", "arm"]),
        spec("printer", &["printer"]),
    ]
}

fn lab() -> Broker {
    Broker::new(lab_specs())
}

/// The lab's descriptor without `name`.
fn lab_without(name: &str) -> Vec<ResourceSpec> {
    lab_specs().into_iter().filter(|s| s.name != name).collect()
}

fn settled(b: &Broker, now: Timestamp) {
    b.check_invariants();
    assert!(b.is_settled(now), "serving again would change something");
}

fn names(b: &Broker) -> Vec<(u32, String)> {
    b.resources()
        .map(|r| (r.id.get(), r.spec.name.clone()))
        .collect()
}

fn status(b: &Broker, r: ReservationId) -> Option<ReservationStatus> {
    b.reservation(r).map(|r| r.status)
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

// ── add ───────────────────────────────────────────────────────────────────────────────

#[test]
fn add_resource_files_it_under_the_next_id_lockable_by_its_tags() {
    let mut b = lab();
    b.drain_events();

    let new = b.add_resource(spec("gpu-1", &["gpu"]), T0).unwrap();

    assert_eq!(new, id(5));
    let r = b.resource(new).unwrap();
    assert_eq!(r.origin, Origin::Api);
    assert_eq!(r.state, LockState::Free(Released::Never));
    assert_eq!(
        b.drain_events(),
        [Event::ResourceAdded {
            resource: new,
            name: "gpu-1".into(),
            at: T0
        }]
    );
    settled(&b, T0);
    let granted = b.lock_matching(&by_tags(&["gpu"]), secs(60), T0).unwrap();
    assert_eq!(granted.resource, new);
    settled(&b, T0);
}

#[test]
fn add_resource_is_refused_when_the_name_is_taken() {
    let mut b = lab();

    let refused = b.add_resource(spec("board-2", &["other"]), T0);

    assert_eq!(
        refused,
        Err(DomainError::NameTaken {
            name: "board-2".into(),
            id: id(2)
        })
    );
    assert_eq!(b.resource_count(), 4);
    assert_eq!(b.resource(id(2)).unwrap().spec.tags, ["board", "x86"]);
    settled(&b, T0);
}

#[test]
fn ids_are_never_reused_when_a_resource_was_removed() {
    let mut b = lab();
    b.remove_resource(id(4), None, T0).unwrap();

    let new = b.add_resource(spec("printer", &["printer"]), T0).unwrap();

    assert_eq!(new, id(5), "4 stays unused");
    assert!(b.resource(id(4)).is_none());
    settled(&b, T0);
}

#[test]
fn add_resource_serves_a_waiting_reservation_at_once() {
    let mut b = lab();
    b.lock(id(1), secs(600), T0).unwrap();
    b.lock(id(3), secs(600), T0).unwrap();
    let r = b.reserve(request(&["arm"], 1), T0).unwrap();
    assert_eq!(status(&b, r), Some(ReservationStatus::Pending));

    let new = b
        .add_resource(spec("board-9", &["board", "arm"]), at(1))
        .unwrap();

    let reservation = b.reservation(r).unwrap();
    assert_eq!(reservation.status, ReservationStatus::Fulfilled);
    assert_eq!(reservation.allocations[0].resource, new);
    settled(&b, at(1));
}

// ── patch ─────────────────────────────────────────────────────────────────────────────

#[test]
fn update_resource_changes_the_given_properties_and_reports_them() {
    let mut b = lab();
    b.drain_events();

    let fields = b
        .update_resource(
            id(4),
            ResourcePatch {
                description: Some("Label printer".into()),
                endpoint: Some("ipp://printer".into()),
                tags: None,
                max_lock_duration: Some(secs(600)),
            },
            T0,
        )
        .unwrap();

    assert_eq!(fields, ["description", "endpoint", "max-lock-duration"]);
    let r = b.resource(id(4)).unwrap();
    assert_eq!(r.spec.name, "printer");
    assert_eq!(r.spec.description, "Label printer");
    assert_eq!(r.spec.endpoint, "ipp://printer");
    assert_eq!(r.spec.tags, ["printer"], "untouched");
    assert_eq!(r.spec.max_lock_duration, secs(600));
    assert_eq!(
        b.drain_events(),
        [Event::ResourceUpdated {
            resource: id(4),
            fields: vec!["description", "endpoint", "max-lock-duration"],
            at: T0
        }]
    );
    settled(&b, T0);
}

#[test]
fn update_resource_records_nothing_when_nothing_changes() {
    let mut b = lab();
    b.drain_events();

    let patch = ResourcePatch {
        tags: Some(strings(&["printer"])),
        ..ResourcePatch::default()
    };
    let fields = b.update_resource(id(4), patch, T0).unwrap();

    assert!(fields.is_empty());
    assert_eq!(b.drain_events(), []);
    settled(&b, T0);
}

#[test]
fn update_resource_is_refused_when_the_resource_does_not_exist() {
    let mut b = lab();

    let refused = b.update_resource(id(99), ResourcePatch::default(), T0);

    assert_eq!(refused, Err(DomainError::ResourceNotFound(id(99))));
}

#[test]
fn a_tag_change_reindexes_so_the_new_tag_locks_and_the_old_does_not() {
    let mut b = lab();

    let patch = ResourcePatch {
        tags: Some(strings(&["scanner", "office"])),
        ..ResourcePatch::default()
    };
    b.update_resource(id(4), patch, T0).unwrap();
    settled(&b, T0);

    assert_eq!(
        b.lock_matching(&by_tags(&["printer"]), secs(60), T0)
            .unwrap_err(),
        DomainError::NoMatch(Criteria::Tags(strings(&["printer"])))
    );
    let granted = b
        .lock_matching(&by_tags(&["scanner", "office"]), secs(60), T0)
        .unwrap();
    assert_eq!(granted.resource, id(4));
    settled(&b, T0);
}

#[test]
fn a_tag_change_serves_a_waiting_reservation() {
    let mut b = lab();
    b.lock(id(1), secs(600), T0).unwrap();
    b.lock(id(3), secs(600), T0).unwrap();
    let r = b.reserve(request(&["arm"], 1), T0).unwrap();
    assert_eq!(status(&b, r), Some(ReservationStatus::Pending));

    let patch = ResourcePatch {
        tags: Some(strings(&["board", "x86", "arm"])),
        ..ResourcePatch::default()
    };
    b.update_resource(id(2), patch, at(1)).unwrap();

    let reservation = b.reservation(r).unwrap();
    assert_eq!(reservation.status, ReservationStatus::Fulfilled);
    assert_eq!(reservation.allocations[0].resource, id(2));
    settled(&b, at(1));
}

#[test]
fn a_tag_change_drops_a_hold_that_no_longer_matches_and_holds_what_now_does() {
    // Arm boards 1, 3 and a new 5; 1 and 5 locked: a reservation for two holds 3.
    let mut b = lab();
    let five = b
        .add_resource(spec("board-5", &["board", "arm"]), T0)
        .unwrap();
    b.lock(id(1), secs(600), T0).unwrap();
    b.lock(five, secs(600), T0).unwrap();
    let r = b.reserve(request(&["arm"], 2), T0).unwrap();
    assert_eq!(b.held_for(id(3)), Some(r));
    let retag = |tags: &[&str]| ResourcePatch {
        tags: Some(strings(tags)),
        ..ResourcePatch::default()
    };

    b.update_resource(id(3), retag(&["board", "x86"]), at(1))
        .unwrap();
    assert_eq!(b.held_for(id(3)), None, "3 no longer matches");
    settled(&b, at(1));
    b.update_resource(id(2), retag(&["board", "arm"]), at(2))
        .unwrap();

    assert_eq!(b.held_for(id(2)), Some(r), "2 now matches");
    assert_eq!(status(&b, r), Some(ReservationStatus::Pending));
    settled(&b, at(2));
}

#[test]
fn reload_moves_a_hold_when_tags_swap_in_one_step() {
    // 1 locked: a reservation for both arm boards holds 3. The file swaps 2 and 3.
    let mut b = lab();
    b.lock(id(1), secs(600), T0).unwrap();
    let r = b.reserve(request(&["arm"], 2), T0).unwrap();
    assert_eq!(b.held_for(id(3)), Some(r));
    let mut specs = lab_specs();
    specs[1].tags = strings(&["board", "arm"]);
    specs[2].tags = strings(&["board", "x86"]);

    b.reload(specs, at(1));

    assert_eq!(b.held_for(id(3)), None);
    assert_eq!(b.held_for(id(2)), Some(r));
    assert_eq!(status(&b, r), Some(ReservationStatus::Pending));
    settled(&b, at(1));
}

#[test]
fn a_tag_change_never_breaks_the_lock_it_applies_to() {
    let mut b = lab();
    let granted = b.reserve(request(&["arm"], 2), T0).unwrap();
    assert_eq!(status(&b, granted), Some(ReservationStatus::Fulfilled));

    // Resource 1 no longer matches the reservation it is locked for.
    let patch = ResourcePatch {
        tags: Some(strings(&["board", "x86"])),
        ..ResourcePatch::default()
    };
    b.update_resource(id(1), patch, at(1)).unwrap();

    let lease = b.resource(id(1)).unwrap().lease().unwrap();
    assert_eq!(lease.reservation, Some(granted));
    settled(&b, at(1));
    b.claim(granted, at(2)).unwrap();
    settled(&b, at(2));
}

#[test]
fn a_lower_max_lock_duration_keeps_the_held_lock_and_binds_later_grants_and_extensions() {
    let mut b = lab();
    let held = b.lock(id(1), secs(3_600), T0).unwrap();

    let patch = ResourcePatch {
        max_lock_duration: Some(secs(600)),
        ..ResourcePatch::default()
    };
    b.update_resource(id(1), patch, T0).unwrap();

    let lease = b.resource(id(1)).unwrap().lease().unwrap();
    assert_eq!(lease.expires_at, at(3_600), "the held lock runs to its end");
    assert!(matches!(
        b.extend(id(1), Some(&held.token.reveal()), secs(3_600), at(1)),
        Err(DomainError::TotalAboveMax { .. })
    ));
    b.unlock(id(1), Some(&held.token.reveal()), at(2)).unwrap();
    assert!(matches!(
        b.lock(id(1), secs(601), at(2)),
        Err(DomainError::TtlAboveMax { .. })
    ));
    b.lock(id(1), secs(600), at(2)).unwrap();
    settled(&b, at(2));
}

#[test]
fn a_waiter_ends_unsatisfiable_when_a_lower_max_lock_duration_shuts_it_out() {
    let mut b = lab();
    b.lock(id(4), secs(60), T0).unwrap();
    let r = b.reserve(request(&["printer"], 1), T0).unwrap();
    assert_eq!(status(&b, r), Some(ReservationStatus::Pending));
    b.drain_events();

    let patch = ResourcePatch {
        max_lock_duration: Some(secs(300)), // the reservation asks for 600 s locks
        ..ResourcePatch::default()
    };
    b.update_resource(id(4), patch, at(1)).unwrap();

    assert_eq!(status(&b, r), None);
    assert_eq!(b.ended(r), Some((EndReason::Unsatisfiable, at(1))));
    assert!(b.drain_events().contains(&Event::ReservationEnded {
        reservation: r,
        reason: EndReason::Unsatisfiable,
        at: at(1),
    }));
    settled(&b, at(1));
}

// ── delete ────────────────────────────────────────────────────────────────────────────

#[test]
fn remove_resource_takes_a_free_resource_out_of_every_index() {
    let mut b = lab();
    b.drain_events();

    let removed = b.remove_resource(id(4), None, T0).unwrap();

    assert_eq!(removed.spec.name, "printer");
    assert!(b.resource(id(4)).is_none());
    assert_eq!(
        b.drain_events(),
        [Event::ResourceRemoved {
            resource: id(4),
            name: "printer".into(),
            at: T0
        }]
    );
    assert!(matches!(
        b.lock_matching(&by_tags(&["printer"]), secs(60), T0),
        Err(DomainError::NoMatch(_))
    ));
    assert!(matches!(
        b.lock_matching(&Selector::Name("printer".into()), secs(60), T0),
        Err(DomainError::NameNotFound(_))
    ));
    assert_eq!(
        b.lock(id(4), secs(60), T0).unwrap_err(),
        DomainError::ResourceNotFound(id(4))
    );
    settled(&b, T0);
}

#[test]
fn remove_resource_is_refused_while_locked_and_changes_nothing() {
    let mut b = lab();
    let held = b.lock(id(2), secs(600), T0).unwrap();
    b.drain_events();

    let refused = b.remove_resource(id(2), None, at(1));

    assert_eq!(refused.unwrap_err(), DomainError::ResourceLocked(id(2)));
    assert_eq!(b.drain_events(), []);
    b.unlock(id(2), Some(&held.token.reveal()), at(2)).unwrap();
    settled(&b, at(2));
}

#[test]
fn a_forced_remove_breaks_the_lock_and_the_holders_token_unlocks_nothing() {
    let mut b = lab();
    let held = b.lock(id(2), secs(600), T0).unwrap();
    b.drain_events();

    let removed = b
        .remove_resource(id(2), Some("board on fire"), at(1))
        .unwrap();

    assert_eq!(
        removed.state,
        LockState::Free(Released::ForceUnlocked {
            at: at(1),
            reason: "board on fire".into()
        })
    );
    assert_eq!(
        b.drain_events(),
        [
            Event::ForceUnlocked {
                resource: id(2),
                fencing: held.lease.fencing,
                at: at(1),
                reason: "board on fire".into()
            },
            Event::ResourceRemoved {
                resource: id(2),
                name: "board-2".into(),
                at: at(1)
            },
        ]
    );
    assert_eq!(
        b.unlock(id(2), Some(&held.token.reveal()), at(2)),
        Err(DomainError::ResourceNotFound(id(2)))
    );
    let batch = b.unlock_batch(&[held.token.reveal()], at(2));
    assert!(matches!(batch, Err(DomainError::BatchRefused(_))));
    assert_eq!(b.next_deadline(), None, "its expiry is gone too");
    settled(&b, at(2));
}

#[test]
fn removing_a_held_resource_releases_the_hold_and_the_waiter_keeps_waiting() {
    // 1 and 3 are the arm boards; add a third. With 1 and 3 locked, a reservation for two
    // holds the new one. Removing it leaves the reservation waiting for 1 and 3.
    let mut b = lab();
    let new = b
        .add_resource(spec("board-5", &["board", "arm"]), T0)
        .unwrap();
    b.lock(id(1), secs(600), T0).unwrap();
    b.lock(id(3), secs(600), T0).unwrap();
    let r = b.reserve(request(&["arm"], 2), T0).unwrap();
    assert_eq!(b.held_for(new), Some(r));

    b.remove_resource(new, None, at(1)).unwrap();

    assert_eq!(status(&b, r), Some(ReservationStatus::Pending));
    settled(&b, at(1));
    b.expire_due(at(600));
    assert_eq!(status(&b, r), Some(ReservationStatus::Fulfilled));
    settled(&b, at(600));
}

#[test]
fn removing_a_resource_drops_its_maintenance_window_deadlines() {
    let mut b = lab();
    let window = Unavailability {
        reason: "firmware".into(),
        from: Some(at(100)),
        until: Some(at(200)),
    };
    b.mark_unavailable(id(4), window, T0).unwrap();
    assert_eq!(b.next_deadline(), Some(at(100)));

    b.remove_resource(id(4), None, at(1)).unwrap();

    assert_eq!(b.next_deadline(), None);
    settled(&b, at(1));
    b.expire_due(at(300));
    settled(&b, at(300));
}

#[test]
fn a_retiring_resource_in_maintenance_goes_with_its_window_when_its_lock_ends() {
    let mut b = lab();
    let held = b.lock(id(3), secs(60), T0).unwrap();
    let window = Unavailability {
        reason: "rack move".into(),
        from: None,
        until: Some(at(1_000)),
    };
    b.mark_unavailable(id(3), window, T0).unwrap();
    b.reload(lab_without("board-3"), at(1));

    b.unlock(id(3), Some(&held.token.reveal()), at(2)).unwrap();

    assert!(b.resource(id(3)).is_none());
    assert_eq!(b.next_deadline(), None);
    settled(&b, at(2));
}

#[test]
fn a_waiter_ends_unsatisfiable_when_the_resources_it_needs_are_removed() {
    let mut b = lab();
    b.lock(id(1), secs(600), T0).unwrap();
    b.lock(id(3), secs(600), T0).unwrap();
    let r = b.reserve(request(&["arm"], 2), T0).unwrap();
    let unaffected = b.reserve(request(&["arm"], 1), T0).unwrap();

    b.remove_resource(id(3), Some("retired"), at(1)).unwrap();

    assert_eq!(b.ended(r), Some((EndReason::Unsatisfiable, at(1))));
    assert_eq!(status(&b, unaffected), Some(ReservationStatus::Pending));
    settled(&b, at(1));
}

#[test]
fn a_forced_remove_of_one_of_a_reservations_locks_leaves_the_rest_to_end_normally() {
    let mut b = lab();
    let r = b.reserve(request(&["arm"], 2), T0).unwrap();
    assert_eq!(status(&b, r), Some(ReservationStatus::Fulfilled));

    b.remove_resource(id(1), Some("swap"), at(1)).unwrap();
    settled(&b, at(1));
    assert_eq!(status(&b, r), Some(ReservationStatus::Fulfilled));

    // The claim window runs out: the reservation ends and releases what is left.
    b.expire_due(at(61));
    assert_eq!(b.ended(r), Some((EndReason::ClaimExpired, at(60))));
    assert!(!b.resource(id(3)).unwrap().is_locked());
    settled(&b, at(61));
}

#[test]
fn a_forced_remove_of_a_reservations_last_lock_ends_it_released() {
    let mut b = lab();
    let r = b.reserve(request(&["printer"], 1), T0).unwrap();
    b.claim(r, T0).unwrap();

    b.remove_resource(id(4), Some("gone"), at(1)).unwrap();

    assert_eq!(b.ended(r), Some((EndReason::Released, at(1))));
    settled(&b, at(1));
}

// ── reload ────────────────────────────────────────────────────────────────────────────

#[test]
fn reload_adds_updates_and_removes_by_name_keeping_ids() {
    let mut b = lab();
    b.drain_events();
    let mut specs = lab_without("board-2");
    specs[0].description = "Pi 4".into(); // board-1
    specs.push(spec("board-6", &["board", "riscv"]));
    specs.push(spec("board-7", &["board", "riscv"]));

    let report = b.reload(specs, T0);

    assert_eq!(
        report,
        ReloadReport {
            added: strings(&["board-6", "board-7"]),
            updated: strings(&["board-1"]),
            removed: strings(&["board-2"]),
            retiring: vec![],
            unchanged: 2,
        }
    );
    assert_eq!(
        names(&b),
        [
            (1, "board-1".into()),
            (3, "board-3".into()),
            (4, "printer".into()),
            (5, "board-6".into()),
            (6, "board-7".into()),
        ]
    );
    assert_eq!(b.resource(id(1)).unwrap().spec.description, "Pi 4");
    assert_eq!(b.resource(id(5)).unwrap().origin, Origin::Descriptor);
    let events = b.drain_events();
    assert!(events.contains(&Event::ResourceRemoved {
        resource: id(2),
        name: "board-2".into(),
        at: T0
    }));
    assert!(events.contains(&Event::ResourceUpdated {
        resource: id(1),
        fields: vec!["description"],
        at: T0
    }));
    settled(&b, T0);
}

#[test]
fn reload_of_the_same_descriptor_changes_nothing() {
    let mut b = lab();
    b.lock(id(2), secs(600), T0).unwrap();
    b.drain_events();

    let report = b.reload(lab_specs(), at(1));

    assert_eq!(
        report,
        ReloadReport {
            unchanged: 4,
            ..ReloadReport::default()
        }
    );
    assert_eq!(b.drain_events(), []);
    settled(&b, at(1));
}

#[test]
fn reload_retires_a_locked_resource_without_breaking_its_lock() {
    let mut b = lab();
    let held = b.lock(id(3), secs(600), T0).unwrap();
    b.drain_events();

    let report = b.reload(lab_without("board-3"), at(1));

    assert_eq!(report.retiring, strings(&["board-3"]));
    assert!(report.removed.is_empty());
    let r = b.resource(id(3)).unwrap();
    assert!(r.retiring);
    assert_eq!(r.lease().unwrap().token, held.token, "the lock runs on");
    assert!(!r.in_service());
    assert_eq!(
        b.drain_events(),
        [Event::ResourceRetiring {
            resource: id(3),
            name: "board-3".into(),
            at: at(1)
        }]
    );
    b.extend(id(3), Some(&held.token.reveal()), secs(600), at(2))
        .expect("its holder may still extend");
    settled(&b, at(2));
}

#[test]
fn a_retiring_resource_is_lent_to_no_one_and_goes_when_it_is_unlocked() {
    let mut b = lab();
    let held = b.lock(id(3), secs(600), T0).unwrap();
    b.reload(lab_without("board-3"), at(1));
    b.lock(id(1), secs(600), at(1)).unwrap();
    b.drain_events();

    // The other arm board is locked and the retiring one will never be lent again.
    assert!(matches!(
        b.lock_matching(&by_tags(&["arm"]), secs(60), at(2)),
        Err(DomainError::AllMatchesLocked { .. })
    ));
    b.unlock(id(3), Some(&held.token.reveal()), at(3)).unwrap();

    assert!(b.resource(id(3)).is_none());
    assert_eq!(
        b.drain_events(),
        [
            Event::Unlocked {
                resource: id(3),
                fencing: held.lease.fencing,
                at: at(3)
            },
            Event::ResourceRemoved {
                resource: id(3),
                name: "board-3".into(),
                at: at(3)
            },
        ]
    );
    assert!(matches!(
        b.lock_matching(&by_tags(&["arm"]), secs(60), at(3)),
        Err(DomainError::AllMatchesLocked { .. })
    ));
    settled(&b, at(3));
}

#[test]
fn a_retiring_resource_goes_when_its_lock_expires() {
    let mut b = lab();
    b.lock(id(3), secs(600), T0).unwrap();
    b.reload(lab_without("board-3"), at(1));

    b.expire_due(at(600));

    assert!(b.resource(id(3)).is_none());
    assert_eq!(b.next_deadline(), None);
    settled(&b, at(600));
}

#[test]
fn a_retiring_resource_goes_when_a_batch_unlock_releases_it() {
    let mut b = lab();
    let one = b.lock(id(1), secs(600), T0).unwrap();
    let three = b.lock(id(3), secs(600), T0).unwrap();
    b.reload(lab_without("board-3"), at(1));

    b.unlock_batch(&[three.token.reveal(), one.token.reveal()], at(2))
        .unwrap();

    assert!(b.resource(id(3)).is_none());
    assert!(!b.resource(id(1)).unwrap().is_locked());
    settled(&b, at(2));
}

#[test]
fn a_retiring_resource_goes_when_an_operator_breaks_its_lock() {
    let mut b = lab();
    let held = b.lock(id(3), secs(600), T0).unwrap();
    b.reload(lab_without("board-3"), at(1));
    b.drain_events();

    b.force_unlock(id(3), "job hung".into(), at(2)).unwrap();

    assert!(b.resource(id(3)).is_none());
    assert_eq!(
        b.drain_events(),
        [
            Event::ForceUnlocked {
                resource: id(3),
                fencing: held.lease.fencing,
                reason: "job hung".into(),
                at: at(2)
            },
            Event::ResourceRemoved {
                resource: id(3),
                name: "board-3".into(),
                at: at(2)
            },
        ]
    );
    settled(&b, at(2));
}

#[test]
fn a_retiring_resource_goes_when_its_reservation_ends() {
    let mut b = lab();
    let r = b.reserve(request(&["printer"], 1), T0).unwrap();
    assert_eq!(status(&b, r), Some(ReservationStatus::Fulfilled));
    b.reload(lab_without("printer"), at(1));
    assert!(b.resource(id(4)).unwrap().retiring);

    // Never claimed: the claim window ends the reservation and releases its lock.
    b.expire_due(at(60));

    assert_eq!(b.ended(r), Some((EndReason::ClaimExpired, at(60))));
    assert!(b.resource(id(4)).is_none());
    settled(&b, at(60));
}

#[test]
fn a_waiter_ends_unsatisfiable_when_a_resource_it_needs_starts_retiring() {
    let mut b = lab();
    b.lock(id(1), secs(600), T0).unwrap();
    b.lock(id(3), secs(600), T0).unwrap();
    let r = b.reserve(request(&["arm"], 2), T0).unwrap();

    b.reload(lab_without("board-3"), at(1));

    assert_eq!(b.ended(r), Some((EndReason::Unsatisfiable, at(1))));
    settled(&b, at(1));
    assert!(
        matches!(
            b.reserve(request(&["arm"], 2), at(2)),
            Err(DomainError::Unsatisfiable { .. })
        ),
        "a retiring resource does not count for new requests either"
    );
}

#[test]
fn a_waiter_counts_a_retiring_resource_as_unavailable() {
    let mut b = lab();
    b.lock(id(1), secs(600), T0).unwrap();
    b.lock(id(3), secs(60), T0).unwrap();
    let r = b.reserve(request(&["arm"], 1), T0).unwrap();
    assert_eq!(
        b.waiting_for(r, T0).unwrap().estimated_available_at,
        Some(at(60))
    );

    b.reload(lab_without("board-3"), at(1));

    let wait = b.waiting_for(r, at(1)).unwrap();
    assert_eq!(wait.groups[0].matching, 2);
    assert_eq!(wait.groups[0].unavailable, 1, "the retiring one");
    assert_eq!(wait.groups[0].locked, 1);
    assert_eq!(
        wait.estimated_available_at,
        Some(at(600)),
        "not at its expiry"
    );
    settled(&b, at(1));
}

#[test]
fn a_retiring_resource_that_reappears_in_the_file_stays() {
    let mut b = lab();
    let held = b.lock(id(3), secs(600), T0).unwrap();
    b.reload(lab_without("board-3"), at(1));
    b.drain_events();

    let report = b.reload(lab_specs(), at(2));

    assert_eq!(report.updated, strings(&["board-3"]));
    assert_eq!(report.unchanged, 3);
    assert_eq!(
        b.drain_events(),
        [Event::ResourceUpdated {
            resource: id(3),
            fields: vec!["retiring"],
            at: at(2)
        }]
    );
    b.unlock(id(3), Some(&held.token.reveal()), at(3)).unwrap();
    let r = b.resource(id(3)).expect("stays once unlocked");
    assert!(r.is_lendable());
    settled(&b, at(3));
}

#[test]
fn a_retiring_resource_still_absent_is_reported_retiring_again() {
    let mut b = lab();
    b.lock(id(3), secs(600), T0).unwrap();
    b.reload(lab_without("board-3"), at(1));
    b.drain_events();

    let report = b.reload(lab_without("board-3"), at(2));

    assert_eq!(report.retiring, strings(&["board-3"]));
    assert_eq!(report.unchanged, 3);
    assert_eq!(b.drain_events(), [], "no second retiring event");
    settled(&b, at(2));
}

#[test]
fn reload_updates_a_locked_resource_without_breaking_its_lock() {
    let mut b = lab();
    let held = b.lock(id(1), secs(600), T0).unwrap();
    let mut specs = lab_specs();
    specs[0].tags = strings(&["board", "riscv"]);

    let report = b.reload(specs, at(1));

    assert_eq!(report.updated, strings(&["board-1"]));
    let r = b.resource(id(1)).unwrap();
    assert_eq!(r.lease().unwrap().token, held.token);
    assert!(r.has_tag("riscv"));
    settled(&b, at(1));
    b.unlock(id(1), Some(&held.token.reveal()), at(2)).unwrap();
    let granted = b
        .lock_matching(&by_tags(&["riscv"]), secs(60), at(2))
        .unwrap();
    assert_eq!(granted.resource, id(1));
    settled(&b, at(2));
}

#[test]
fn reload_leaves_api_created_resources_alone_unless_the_file_names_them() {
    let mut b = lab();
    let kept = b.add_resource(spec("gpu-1", &["gpu"]), T0).unwrap();
    let adopted = b.add_resource(spec("gpu-2", &["gpu"]), T0).unwrap();
    let mut specs = lab_specs();
    specs.push(spec("gpu-2", &["gpu", "big"]));

    let report = b.reload(specs, at(1));

    assert_eq!(report.updated, strings(&["gpu-2"]));
    assert!(report.removed.is_empty());
    assert_eq!(b.resource(kept).unwrap().origin, Origin::Api);
    let r = b.resource(adopted).unwrap();
    assert_eq!(r.origin, Origin::Descriptor);
    assert_eq!(r.spec.tags, ["gpu", "big"]);
    settled(&b, at(1));

    // Now the descriptor's: the next reload without it removes it, and still not gpu-1.
    let report = b.reload(lab_specs(), at(2));
    assert_eq!(report.removed, strings(&["gpu-2"]));
    assert!(b.resource(kept).is_some());
    settled(&b, at(2));
}

#[test]
fn reload_adopting_an_identical_api_resource_reports_it_updated() {
    let mut b = lab();
    b.add_resource(spec("gpu-1", &["gpu"]), T0).unwrap();
    b.drain_events();
    let mut specs = lab_specs();
    specs.push(spec("gpu-1", &["gpu"]));

    let report = b.reload(specs, at(1));

    assert_eq!(report.updated, strings(&["gpu-1"]));
    assert_eq!(
        b.drain_events(),
        [Event::ResourceUpdated {
            resource: id(5),
            fields: vec!["origin"],
            at: at(1)
        }]
    );
    settled(&b, at(1));
}

#[test]
fn reload_resets_a_patched_descriptor_resource_to_the_file() {
    let mut b = lab();
    let patch = ResourcePatch {
        description: Some("patched".into()),
        ..ResourcePatch::default()
    };
    b.update_resource(id(2), patch, T0).unwrap();

    let report = b.reload(lab_specs(), at(1));

    assert_eq!(report.updated, strings(&["board-2"]));
    assert_eq!(b.resource(id(2)).unwrap().spec.description, "");
    settled(&b, at(1));
}

#[test]
fn reload_serves_a_waiter_with_a_new_resource() {
    let mut b = lab();
    b.lock(id(4), secs(600), T0).unwrap();
    let r = b.reserve(request(&["printer"], 1), T0).unwrap();
    let mut specs = lab_specs();
    specs.push(spec("printer-2", &["printer"]));

    b.reload(specs, at(1));

    let reservation = b.reservation(r).unwrap();
    assert_eq!(reservation.status, ReservationStatus::Fulfilled);
    assert_eq!(reservation.allocations[0].resource, id(5));
    settled(&b, at(1));
}

#[test]
fn a_reload_compared_outside_applies_only_the_differences() {
    let mut b = lab();
    let mut specs = lab_without("board-2");
    specs[0].description = "relabelled".into();
    specs.push(spec("board-4", &["board"]));

    let mut diff = ReloadDiff::new(&b.snapshot(), b.spec_version(), specs);
    let report = b.apply_reload(&mut diff, at(1));

    assert_eq!(report.added, strings(&["board-4"]));
    assert_eq!(report.updated, strings(&["board-1"]));
    assert_eq!(report.removed, strings(&["board-2"]));
    assert_eq!(report.unchanged, 2);
    assert_eq!(b.resource(id(1)).unwrap().spec.description, "relabelled");
    settled(&b, at(1));
}

#[test]
fn a_reload_compared_before_the_lab_changed_is_compared_again_when_applied() {
    let mut b = lab();
    let mut specs = lab_without("board-2");
    specs.push(spec("board-4", &["board"]));
    let mut diff = ReloadDiff::new(&b.snapshot(), b.spec_version(), specs);

    // Meanwhile, through the API: board-4 is created, board-3 changed.
    b.add_resource(spec("board-4", &["board", "new"]), at(1))
        .unwrap();
    let patch = ResourcePatch {
        description: Some("by hand".into()),
        ..ResourcePatch::default()
    };
    b.update_resource(id(3), patch, at(1)).unwrap();

    let report = b.apply_reload(&mut diff, at(2));

    // As a reload compared now: board-4 is the API's, and becomes the descriptor's.
    assert_eq!(report.added, Vec::<String>::new());
    assert_eq!(report.updated, strings(&["board-3", "board-4"]));
    assert_eq!(report.removed, strings(&["board-2"]));
    assert_eq!(b.resource(id(5)).unwrap().spec.tags, ["board"]);
    assert_eq!(b.resource(id(3)).unwrap().spec.description, "");
    settled(&b, at(2));
}

#[test]
fn a_resource_over_the_tag_limits_is_refused_on_add_and_on_change() {
    let mut b = lab();
    let many: Vec<String> = (0..65).map(|i| format!("t{i}")).collect();
    let over = ResourceSpec {
        tags: many.clone(),
        ..spec("board-9", &[])
    };
    assert!(matches!(
        b.add_resource(over, T0),
        Err(DomainError::InvalidTags(_))
    ));
    let patch = ResourcePatch {
        tags: Some(many),
        ..ResourcePatch::default()
    };
    assert!(matches!(
        b.update_resource(id(1), patch, T0),
        Err(DomainError::InvalidTags(_))
    ));
    assert_eq!(b.resource_count(), 4);
    assert_eq!(b.resource(id(1)).unwrap().spec.tags, ["board", "arm"]);
    settled(&b, T0);
}
