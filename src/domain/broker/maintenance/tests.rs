//! Maintenance, force unlock and the expiry history, with explicit time.

use super::*;
use crate::domain::broker::test_support::*;
use crate::domain::reservation::{ReservationRequest, ReservationStatus};

fn ms(t: Timestamp, millis: i64) -> Timestamp {
    Timestamp::from_millis(t.as_millis().checked_add_signed(millis).unwrap())
}

fn board() -> Selector {
    Selector::Matching(Criteria::Tags(vec!["board".into()]))
}

/// 1 board-1, 2 board-2 [board]; 3 printer [printer].
fn lab() -> Broker {
    Broker::new([
        ResourceSpec::named("board-1").with_tags(&["board"]),
        ResourceSpec::named("board-2").with_tags(&["board"]),
        ResourceSpec::named("printer").with_tags(&["printer"]),
    ])
}

fn out(reason: &str, until: Option<Timestamp>) -> Unavailability {
    Unavailability {
        reason: reason.into(),
        from: None,
        until,
    }
}

fn window(reason: &str, from: Timestamp, until: Option<Timestamp>) -> Unavailability {
    Unavailability {
        reason: reason.into(),
        from: Some(from),
        until,
    }
}

fn one_board(ttl: u64) -> ReservationRequest {
    ReservationRequest {
        ttl: secs(ttl),
        max_wait: secs(86_400),
        ..request(&["board"], 1)
    }
}

fn unavailable(reason: &str, until: Option<Timestamp>) -> DomainError {
    DomainError::Unavailable {
        id: id(1),
        reason: reason.into(),
        until,
    }
}

#[test]
fn an_unavailable_resource_refuses_locks_with_its_reason_and_is_skipped_by_tag() {
    let mut b = lab();
    let until = at(3_600);

    let r = b
        .mark_unavailable(id(1), out("disk swap", Some(until)), T0)
        .unwrap();

    assert!(!r.in_service());
    assert_eq!(
        b.lock(id(1), secs(60), at(1)).unwrap_err(),
        unavailable("disk swap", Some(until))
    );
    assert_eq!(
        b.lock_matching(&board(), secs(60), at(1)).unwrap().resource,
        id(2)
    );
    assert_eq!(
        b.lock_matching(&board(), secs(60), at(1)).unwrap_err(),
        DomainError::AllMatchesLocked {
            criteria: Criteria::Tags(vec!["board".into()]),
            held_for: vec![],
            unavailable: 1,
        }
    );
    b.mark_unavailable(id(3), out("paper jam", None), at(2))
        .unwrap();
    assert_eq!(
        b.lock_matching(
            &Selector::Matching(Criteria::Tags(vec!["printer".into()])),
            secs(60),
            at(2)
        )
        .unwrap_err(),
        DomainError::AllMatchesUnavailable {
            criteria: Criteria::Tags(vec!["printer".into()]),
            count: 1,
        }
    );
    b.check_invariants();
}

#[test]
fn unavailability_outranks_a_held_lock_in_the_refusal() {
    let mut b = lab();
    b.lock(id(1), secs(600), T0).unwrap();
    b.mark_unavailable(id(1), out("disk swap", None), at(1))
        .unwrap();

    assert_eq!(
        b.lock(id(1), secs(60), at(2)).unwrap_err(),
        unavailable("disk swap", None)
    );
}

#[test]
fn a_held_lock_runs_to_its_end_and_the_resource_then_stays_out() {
    let mut b = lab();
    let held = b.lock(id(1), secs(600), T0).unwrap();

    b.mark_unavailable(id(1), out("disk swap", None), at(10))
        .unwrap();

    // Not broken: still the holder's, and it expires on time, not earlier.
    let lease = b.resource(id(1)).unwrap().lease().unwrap();
    assert_eq!(lease.token, held.token);
    assert_eq!(lease.expires_at, at(600));
    // Extending would keep it from maintenance: refused.
    assert!(matches!(
        b.extend(id(1), Some(&held.token.reveal()), secs(60), at(20)),
        Err(DomainError::Unavailable { .. })
    ));
    b.expire_due(at(600));
    let r = b.resource(id(1)).unwrap();
    assert!(!r.is_locked() && !r.in_service());
    assert_eq!(
        b.lock(id(1), secs(60), at(601)).unwrap_err(),
        unavailable("disk swap", None)
    );
    b.check_invariants();
}

#[test]
fn the_resource_returns_to_service_exactly_at_until_and_serves_the_queue() {
    let mut b = lab();
    let until = at(100);
    b.mark_unavailable(id(1), out("disk swap", Some(until)), T0)
        .unwrap();
    b.lock(id(2), secs(3_600), T0).unwrap();
    let waiting = b.reserve(one_board(60), at(1)).unwrap();
    b.drain_events();

    b.expire_due(ms(until, -1));
    assert_eq!(
        b.reservation(waiting).unwrap().status,
        ReservationStatus::Pending
    );
    assert_eq!(b.next_deadline(), Some(until), "the timer wakes for it");

    b.expire_due(until);
    let r = b.reservation(waiting).unwrap();
    assert_eq!(r.status, ReservationStatus::Fulfilled);
    assert_eq!(r.allocations[0].resource, id(1));
    assert_eq!(r.fulfilled_at, Some(until));
    assert_eq!(b.resource(id(1)).unwrap().maintenance, None);
    let events = b.drain_events();
    assert_eq!(
        events[0],
        Event::MaintenanceEnded {
            resource: id(1),
            at: until
        }
    );
    assert!(
        matches!(events[1], Event::Locked { resource, at, .. } if resource == id(1) && at == until)
    );
    b.check_invariants();
}

#[test]
fn a_waiting_reservation_skips_an_unavailable_resource_and_says_so() {
    let mut b = lab();
    b.mark_unavailable(id(1), out("disk swap", None), T0)
        .unwrap();
    b.lock(id(2), secs(300), T0).unwrap();

    let waiting = b.reserve(one_board(60), at(1)).unwrap();

    assert_eq!(
        b.reservation(waiting).unwrap().status,
        ReservationStatus::Pending
    );
    let why = b.waiting_for(waiting, at(1)).unwrap();
    let group = &why.groups[0];
    assert_eq!(
        (group.matching, group.unavailable, group.locked, group.free),
        (2, 1, 1, 0)
    );
    // Only the lock's expiry counts towards the estimate.
    assert_eq!(why.estimated_available_at, Some(at(300)));
    assert_eq!(
        b.held_for(id(1)),
        None,
        "an unavailable resource is not held"
    );

    b.mark_available(id(1), at(5)).unwrap();
    assert_eq!(
        b.reservation(waiting).unwrap().allocations[0].resource,
        id(1)
    );
    b.check_invariants();
}

#[test]
fn a_scheduled_window_drains_grants_locks_that_end_by_its_start_and_refuses_longer() {
    let mut b = lab();
    let from = at(600);
    b.mark_unavailable(id(1), window("firmware", from, Some(at(1_200))), T0)
        .unwrap();
    assert!(
        b.resource(id(1)).unwrap().in_service(),
        "draining, not out yet"
    );

    // 600 s from T0 ends exactly as the window opens: granted.
    let fits = b.lock(id(1), secs(600), T0).unwrap();
    assert_eq!(fits.lease.expires_at, from);
    b.unlock(id(1), Some(&fits.token.reveal()), T0).unwrap();
    // One second more would cross it.
    assert_eq!(
        b.lock(id(1), secs(601), T0).unwrap_err(),
        DomainError::CrossesMaintenance {
            id: id(1),
            reason: "firmware".into(),
            from,
            until: Some(at(1_200)),
            longest_ttl_secs: 600,
        }
    );
    // 100 s later, the longest lock that fits is 100 s shorter.
    assert!(matches!(
        b.lock(id(1), secs(501), at(100)),
        Err(DomainError::CrossesMaintenance {
            longest_ttl_secs: 500,
            ..
        })
    ));
    b.check_invariants();
}

#[test]
fn lock_by_tag_passes_over_a_draining_resource_the_lock_would_cross() {
    let mut b = lab();
    b.mark_unavailable(id(1), window("firmware", at(60), None), T0)
        .unwrap();

    assert_eq!(
        b.lock_matching(&board(), secs(600), T0).unwrap().resource,
        id(2)
    );
    // Only the draining one is left: its window is named.
    assert!(matches!(
        b.lock_matching(&board(), secs(600), T0),
        Err(DomainError::CrossesMaintenance { id: r, .. }) if r == id(1)
    ));
    assert_eq!(
        b.lock_matching(&board(), secs(60), T0).unwrap().resource,
        id(1)
    );
}

#[test]
fn an_extension_may_run_up_to_the_window_and_not_past_it() {
    let mut b = lab();
    let held = b.lock(id(1), secs(60), T0).unwrap();
    let token = held.token.reveal();
    b.mark_unavailable(id(1), window("firmware", at(600), None), at(10))
        .unwrap();

    assert_eq!(
        b.extend(id(1), Some(&token), secs(590), at(10))
            .unwrap()
            .expires_at,
        at(600)
    );
    assert!(matches!(
        b.extend(id(1), Some(&token), secs(591), at(10)),
        Err(DomainError::CrossesMaintenance {
            longest_ttl_secs: 590,
            ..
        })
    ));
}

#[test]
fn a_lock_ending_as_the_window_opens_expires_first_and_the_resource_is_not_lent_again() {
    let mut b = lab();
    let from = at(600);
    b.mark_unavailable(id(1), window("firmware", from, None), T0)
        .unwrap();
    b.lock(id(1), secs(600), T0).unwrap();
    b.lock(id(2), secs(3_600), T0).unwrap();
    // Waiting for a board, with a TTL that fits only after the window... never, as it
    // has no end: it must not get board-1 in the instant between expiry and opening.
    let waiting = b.reserve(one_board(10), at(1)).unwrap();
    b.drain_events();

    b.expire_due(from);

    assert_eq!(
        b.reservation(waiting).unwrap().status,
        ReservationStatus::Pending
    );
    let r = b.resource(id(1)).unwrap();
    assert!(!r.is_locked() && !r.in_service());
    let events = b.drain_events();
    assert!(matches!(events[0], Event::Expired { resource, .. } if resource == id(1)));
    assert_eq!(
        events[1],
        Event::MaintenanceStarted {
            resource: id(1),
            at: from
        }
    );
    assert_eq!(events.len(), 2, "{events:?}");
    b.check_invariants();
}

#[test]
fn a_reservation_is_not_served_a_draining_resource_its_lock_would_cross() {
    let mut b = lab();
    b.lock(id(2), secs(3_600), T0).unwrap();
    b.mark_unavailable(id(1), window("firmware", at(300), Some(at(400))), T0)
        .unwrap();

    let long = b.reserve(one_board(600), at(1)).unwrap();
    let short = b.reserve(one_board(60), at(2)).unwrap();

    // The short one fits before the window and takes board-1; the long one waits...
    assert_eq!(b.reservation(short).unwrap().allocations[0].resource, id(1));
    assert_eq!(
        b.reservation(long).unwrap().status,
        ReservationStatus::Pending
    );
    assert_eq!(b.waiting_for(long, at(2)).unwrap().groups[0].unavailable, 1);
    // ...through the window, and is served the moment it closes.
    let short_token = b.reservation(short).unwrap().allocations[0].token.reveal();
    b.claim(short, at(3)).unwrap();
    b.unlock(id(1), Some(&short_token), at(4)).unwrap();
    b.expire_due(ms(at(400), -1));
    assert_eq!(
        b.reservation(long).unwrap().status,
        ReservationStatus::Pending
    );
    b.expire_due(at(400));
    assert_eq!(b.reservation(long).unwrap().allocations[0].resource, id(1));
    b.check_invariants();
}

#[test]
fn marking_available_cancels_a_scheduled_window_and_ends_an_open_one() {
    let mut b = lab();
    b.mark_unavailable(id(1), window("firmware", at(600), Some(at(900))), T0)
        .unwrap();
    b.mark_available(id(1), at(1)).unwrap();
    assert_eq!(b.resource(id(1)).unwrap().maintenance, None);
    assert_eq!(b.next_deadline(), None, "both edges unscheduled");
    b.lock(id(1), secs(3_600), at(1)).unwrap();

    b.mark_unavailable(id(2), out("disk swap", None), at(2))
        .unwrap();
    b.mark_available(id(2), at(3)).unwrap();
    assert!(b.resource(id(2)).unwrap().is_lendable());
    // Already available: nothing to do, and no event.
    b.drain_events();
    b.mark_available(id(2), at(4)).unwrap();
    assert_eq!(b.drain_events(), []);
    b.check_invariants();
}

#[test]
fn declaring_again_replaces_the_window_and_keeps_when_it_went_out() {
    let mut b = lab();
    b.mark_unavailable(id(1), out("disk swap", Some(at(100))), T0)
        .unwrap();

    let r = b
        .mark_unavailable(
            id(1),
            out("disk swap, then a BIOS update", Some(at(200))),
            at(50),
        )
        .unwrap();

    let m = r.maintenance.clone().unwrap();
    assert_eq!(
        (m.reason.as_str(), m.from, m.until),
        ("disk swap, then a BIOS update", T0, Some(at(200)))
    );
    b.expire_due(at(100));
    assert!(
        !b.resource(id(1)).unwrap().in_service(),
        "the old end is gone"
    );
    // Rescheduled to later: back in service until then.
    b.mark_unavailable(id(1), window("later", at(1_000), None), at(150))
        .unwrap();
    assert!(b.resource(id(1)).unwrap().is_lendable());
    b.check_invariants();
}

#[test]
fn a_window_must_end_after_it_opens_and_after_now() {
    let mut b = lab();
    for (from, until) in [
        (None, at(10)),
        (Some(at(100)), at(100)),
        (Some(at(100)), at(50)),
    ] {
        let err = b
            .mark_unavailable(
                id(1),
                Unavailability {
                    reason: "x".into(),
                    from,
                    until: Some(until),
                },
                at(10),
            )
            .unwrap_err();
        assert!(
            matches!(err, DomainError::InvalidWindow { .. }),
            "{from:?} {until:?}"
        );
    }
    assert_eq!(
        b.resource(id(1)).unwrap().maintenance,
        None,
        "nothing changed"
    );
    assert_eq!(
        b.mark_unavailable(id(9), out("x", None), T0).unwrap_err(),
        DomainError::ResourceNotFound(id(9))
    );
    // A `from` in the past means now.
    b.mark_unavailable(id(1), window("x", T0, None), at(10))
        .unwrap();
    let m = b.resource(id(1)).unwrap().maintenance.clone().unwrap();
    assert!(m.active);
    assert_eq!(m.from, at(10));
}

#[test]
fn force_unlock_breaks_any_lock_records_why_and_serves_the_queue() {
    let mut b = lab();
    let held = b.lock(id(1), secs(600), T0).unwrap();
    b.lock(id(2), secs(600), T0).unwrap();
    let waiting = b.reserve(one_board(60), at(1)).unwrap();
    b.drain_events();

    let lease = b
        .force_unlock(id(1), "job 4711 hung".into(), at(5))
        .unwrap();

    assert_eq!(lease.token, held.token);
    assert_eq!(
        b.reservation(waiting).unwrap().allocations[0].resource,
        id(1)
    );
    let events = b.drain_events();
    assert_eq!(
        events[0],
        Event::ForceUnlocked {
            resource: id(1),
            fencing: held.lease.fencing,
            reason: "job 4711 hung".into(),
            at: at(5),
        }
    );
    // The old holder's token no longer works on the resource.
    assert!(matches!(
        b.unlock(id(1), Some(&held.token.reveal()), at(6)),
        Err(DomainError::InvalidToken { .. })
    ));
    b.check_invariants();
}

#[test]
fn force_unlock_shows_its_reason_on_the_free_resource_and_refuses_a_free_one() {
    let mut b = lab();
    b.lock(id(3), secs(60), T0).unwrap();
    b.force_unlock(id(3), "paper jam".into(), at(1)).unwrap();
    assert_eq!(
        b.resource(id(3)).unwrap().state,
        LockState::Free(Released::ForceUnlocked {
            at: at(1),
            reason: "paper jam".into()
        })
    );
    assert_eq!(
        b.force_unlock(id(3), "again".into(), at(2)).unwrap_err(),
        DomainError::NothingToForce(id(3))
    );
    assert_eq!(
        b.force_unlock(id(9), "x".into(), at(2)).unwrap_err(),
        DomainError::ResourceNotFound(id(9))
    );
}

#[test]
fn force_unlocking_a_reservations_last_lock_ends_the_reservation() {
    let mut b = lab();
    let r = b.reserve(one_board(60), T0).unwrap();
    b.claim(r, at(1)).unwrap();
    let resource = b.reservation(r).unwrap().allocations[0].resource;

    b.force_unlock(resource, "stuck".into(), at(2)).unwrap();

    assert_eq!(b.reservation(r), None);
    assert_eq!(b.ended(r), Some((EndReason::Released, at(2))));
    b.check_invariants();
}

#[test]
fn the_expiry_history_keeps_holder_and_times_newest_first_and_forgets_the_oldest() {
    let mut b = lab();
    let meta = LockMeta {
        holder: Some("https://ci/job/7".into()),
        note: Some("soak".into()),
        owner: Some("alice".into()),
    };
    let first = b
        .lock(
            id(1),
            LockTerms {
                ttl: secs(10),
                meta: meta.clone(),
            },
            T0,
        )
        .unwrap();
    let unlocked = b.lock(id(2), secs(10), T0).unwrap();
    b.unlock(id(2), Some(&unlocked.token.reveal()), at(1))
        .unwrap();

    b.expire_due(at(10));

    let history: Vec<&ExpiredLock> = b.expired_locks().collect();
    assert_eq!(
        history,
        [&ExpiredLock {
            resource: id(1),
            name: "board-1".into(),
            fencing: first.lease.fencing,
            acquired_at: T0,
            expired_at: at(10),
            reservation: None,
            meta,
        }],
        "an unlock is not an expiry"
    );
    for n in 0..EXPIRY_HISTORY as u64 {
        b.lock(id(3), secs(1), at(20 + n)).unwrap();
        b.expire_due(at(21 + n));
    }
    assert_eq!(b.expired_locks().len(), EXPIRY_HISTORY);
    assert_eq!(
        b.expired_locks().next().unwrap().expired_at,
        at(20 + EXPIRY_HISTORY as u64)
    );
    assert!(
        b.expired_locks().all(|e| e.resource == id(3)),
        "the oldest went first"
    );
}
