//! Broker unit tests: fixed timestamps, exact assertions, no runtime.

use std::time::Duration;

use super::*;
use crate::domain::broker::test_support::{T0, id, secs};

/// `ms` milliseconds after [`T0`]. (`at` is seconds in every unit test: see
/// `test_support::at`.)
fn at_ms(ms: u64) -> Timestamp {
    T0.checked_add(Duration::from_millis(ms)).unwrap()
}

fn tags(t: &[&str]) -> Selector {
    Selector::Matching(Criteria::Tags(t.iter().map(|s| s.to_string()).collect()))
}

/// 1 board-1 [board, arm], 2 board-2 [board, x86], 3 board-3 [board, arm], 4 printer
/// [printer] with a 600 s maximum.
fn lab() -> Broker {
    Broker::new([
        ResourceSpec::named("board-1").with_tags(&["board", "arm"]),
        ResourceSpec::named("board-2").with_tags(&["board", "x86"]),
        ResourceSpec::named("board-3").with_tags(&["board", "arm"]),
        ResourceSpec::named("printer")
            .with_tags(&["printer"])
            .with_max_lock_duration(secs(600)),
    ])
}

fn state(b: &Broker, n: u32) -> &LockState {
    &b.resource(id(n)).unwrap().state
}

#[test]
fn resources_are_numbered_from_one_in_descriptor_order() {
    let b = lab();
    let names: Vec<(u32, &str)> = b
        .resources()
        .map(|r| (r.id.get(), r.spec.name.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            (1, "board-1"),
            (2, "board-2"),
            (3, "board-3"),
            (4, "printer")
        ]
    );
    assert_eq!(state(&b, 1), &LockState::Free(Released::Never));
    b.check_invariants();
}

#[test]
fn lock_grants_a_lease_from_now_for_the_ttl() {
    let mut b = lab();
    let Granted { token, lease, .. } = b.lock(id(2), secs(30), T0).unwrap();
    assert_eq!(lease.token, token);
    assert_eq!(lease.acquired_at, T0);
    assert_eq!(lease.expires_at, at_ms(30_000));
    assert_eq!(state(&b, 2), &LockState::Locked(lease.clone()));
    assert_eq!(b.next_deadline(), Some(at_ms(30_000)));
    assert_eq!(
        b.drain_events(),
        [Event::Locked {
            resource: id(2),
            fencing: lease.fencing,
            at: T0,
            expires_at: at_ms(30_000),
            reservation: None,
        }]
    );
    b.check_invariants();
}

#[test]
fn lock_is_refused_when_the_resource_is_unknown_locked_or_the_ttl_too_long() {
    let mut b = lab();
    assert_eq!(
        b.lock(id(99), secs(30), T0).unwrap_err(),
        DomainError::ResourceNotFound(id(99))
    );
    b.lock(id(1), secs(30), T0).unwrap();
    assert_eq!(
        b.lock(id(1), secs(30), T0).unwrap_err(),
        DomainError::AlreadyLocked(id(1))
    );
    assert_eq!(
        b.lock(id(4), secs(601), T0).unwrap_err(),
        DomainError::TtlAboveMax {
            id: id(4),
            ttl: secs(601),
            max: secs(600)
        }
    );
    // A refusal changes nothing.
    assert_eq!(state(&b, 4), &LockState::Free(Released::Never));
    assert!(b.lock(id(4), secs(600), T0).is_ok());
    b.check_invariants();
}

#[test]
fn already_locked_is_reported_before_ttl_above_max_as_in_1_0() {
    let mut b = lab();
    b.lock(id(4), secs(60), T0).unwrap();
    assert_eq!(
        b.lock(id(4), secs(9_999), T0).unwrap_err(),
        DomainError::AlreadyLocked(id(4))
    );
}

#[test]
fn unlock_with_the_token_frees_the_resource() {
    let mut b = lab();
    let Granted { token, lease, .. } = b.lock(id(1), secs(30), T0).unwrap();
    b.drain_events();
    b.unlock(id(1), Some(&token.reveal()), at_ms(5_000))
        .unwrap();
    assert_eq!(state(&b, 1), &LockState::Free(Released::Unlocked));
    assert_eq!(b.next_deadline(), None, "the lock's deadline is gone");
    assert_eq!(
        b.drain_events(),
        [Event::Unlocked {
            resource: id(1),
            fencing: lease.fencing,
            at: at_ms(5_000)
        }]
    );
    b.check_invariants();
}

#[test]
fn unlock_is_refused_for_unknown_free_wrong_or_missing_token() {
    let mut b = lab();
    assert_eq!(
        b.unlock(id(99), Some("x"), T0).unwrap_err(),
        DomainError::ResourceNotFound(id(99))
    );
    assert_eq!(
        b.unlock(id(1), Some("x"), T0).unwrap_err(),
        DomainError::NotLocked(id(1), TokenUse::Unlock)
    );
    let Granted { token, .. } = b.lock(id(1), secs(30), T0).unwrap();
    let other = LockToken::from_random(42).reveal();
    for (given, why) in [
        (Some(other.as_str()), "wrong"),
        (None, "missing"),
        (Some(""), "empty"),
    ] {
        let err = b.unlock(id(1), given, T0).unwrap_err();
        assert!(
            matches!(&err, DomainError::InvalidToken { provided, used_for: TokenUse::Unlock, .. }
                if provided.as_deref() == given),
            "{why}: {err:?}"
        );
    }
    assert!(b.resource(id(1)).unwrap().is_locked(), "still held");
    b.unlock(id(1), Some(&token.reveal()), T0).unwrap();
    b.check_invariants();
}

#[test]
fn a_token_unlocks_only_its_own_lock() {
    let mut b = lab();
    let Granted { token: first, .. } = b.lock(id(1), secs(30), T0).unwrap();
    b.lock(id(2), secs(30), T0).unwrap();
    assert!(matches!(
        b.unlock(id(2), Some(&first.reveal()), T0),
        Err(DomainError::InvalidToken { .. })
    ));
    // Nor does an old token unlock a later lock of the same resource.
    b.unlock(id(1), Some(&first.reveal()), T0).unwrap();
    b.lock(id(1), secs(30), T0).unwrap();
    assert!(matches!(
        b.unlock(id(1), Some(&first.reveal()), T0),
        Err(DomainError::InvalidToken { .. })
    ));
}

#[test]
fn extend_sets_the_expiry_to_now_plus_additional_not_old_expiry_plus_additional() {
    let mut b = lab();
    let Granted { token, lease, .. } = b.lock(id(1), secs(100), T0).unwrap();
    b.drain_events();
    let extended = b
        .extend(id(1), Some(&token.reveal()), secs(50), at_ms(10_000))
        .unwrap();
    assert_eq!(
        extended.expires_at,
        at_ms(60_000),
        "10 s + 50 s, not 100 s + 50 s"
    );
    assert_eq!(extended.acquired_at, T0);
    assert_eq!(extended.token, token);
    assert_eq!(
        extended.fencing, lease.fencing,
        "extending is not a new grant"
    );
    assert_eq!(
        b.next_deadline(),
        Some(at_ms(60_000)),
        "the old deadline is replaced"
    );
    assert_eq!(
        b.drain_events(),
        [Event::Extended {
            resource: id(1),
            fencing: lease.fencing,
            expires_at: at_ms(60_000)
        }]
    );
    b.check_invariants();
}

#[test]
fn extend_is_refused_when_the_whole_lock_would_outlast_the_maximum() {
    let mut b = lab();
    let Granted { token, lease, .. } = b.lock(id(4), secs(500), T0).unwrap();
    // 400 s in, 200 more would make 600 s in all: exactly the maximum, allowed.
    let ok = b
        .extend(id(4), Some(&token.reveal()), secs(200), at_ms(400_000))
        .unwrap();
    assert_eq!(ok.expires_at, at_ms(600_000));
    // One more second from the same moment would make 601 s.
    assert_eq!(
        b.extend(id(4), Some(&token.reveal()), secs(201), at_ms(400_000))
            .unwrap_err(),
        DomainError::TotalAboveMax {
            id: id(4),
            total_secs: 601,
            max: secs(600)
        }
    );
    assert_eq!(
        b.resource(id(4)).unwrap().lease().unwrap().expires_at,
        at_ms(600_000)
    );
    assert_eq!(
        b.resource(id(4)).unwrap().lease().unwrap().fencing,
        lease.fencing
    );
    b.check_invariants();
}

#[test]
fn extend_is_refused_for_unknown_free_or_wrong_token() {
    let mut b = lab();
    assert_eq!(
        b.extend(id(9), Some("x"), secs(5), T0).unwrap_err(),
        DomainError::ResourceNotFound(id(9))
    );
    assert_eq!(
        b.extend(id(1), Some("x"), secs(5), T0).unwrap_err(),
        DomainError::NotLocked(id(1), TokenUse::Extend)
    );
    b.lock(id(1), secs(30), T0).unwrap();
    assert!(matches!(
        b.extend(id(1), None, secs(5), T0),
        Err(DomainError::InvalidToken {
            used_for: TokenUse::Extend,
            ..
        })
    ));
}

#[test]
fn a_lock_expires_at_its_deadline_and_not_a_millisecond_before() {
    let mut b = lab();
    let Granted { lease, .. } = b.lock(id(1), secs(30), T0).unwrap();
    b.drain_events();
    b.expire_due(at_ms(29_999));
    assert!(b.resource(id(1)).unwrap().is_locked(), "1 ms early");
    assert!(b.drain_events().is_empty());
    b.expire_due(at_ms(30_000));
    assert_eq!(
        state(&b, 1),
        &LockState::Free(Released::Expired(at_ms(30_000)))
    );
    assert_eq!(
        b.drain_events(),
        [Event::Expired {
            resource: id(1),
            fencing: lease.fencing,
            deadline: at_ms(30_000)
        }]
    );
    assert_eq!(b.next_deadline(), None);
    b.check_invariants();
}

#[test]
fn a_late_sweep_records_the_deadline_not_the_sweep_time() {
    let mut b = lab();
    b.lock(id(1), secs(30), T0).unwrap();
    b.expire_due(at_ms(95_000));
    assert_eq!(
        state(&b, 1),
        &LockState::Free(Released::Expired(at_ms(30_000)))
    );
}

#[test]
fn every_operation_first_expires_what_is_due() {
    let mut b = lab();
    let Granted { token, .. } = b.lock(id(1), secs(30), T0).unwrap();
    // No sweep in between: the lock at 30 s finds the old lock gone.
    let Granted { lease: relock, .. } = b.lock(id(1), secs(30), at_ms(30_000)).unwrap();
    assert_eq!(relock.acquired_at, at_ms(30_000));
    // And the expired holder's token no longer unlocks or extends.
    assert!(matches!(
        b.unlock(id(1), Some(&token.reveal()), at_ms(30_001)),
        Err(DomainError::InvalidToken { .. })
    ));
    assert!(matches!(
        b.extend(id(1), Some(&token.reveal()), secs(5), at_ms(30_001)),
        Err(DomainError::InvalidToken { .. })
    ));
    b.check_invariants();
}

#[test]
fn an_extended_lock_expires_at_its_new_deadline_only() {
    let mut b = lab();
    let Granted { token, .. } = b.lock(id(1), secs(10), T0).unwrap();
    b.extend(id(1), Some(&token.reveal()), secs(20), at_ms(5_000))
        .unwrap();
    b.expire_due(at_ms(10_000));
    assert!(
        b.resource(id(1)).unwrap().is_locked(),
        "the old deadline is void"
    );
    b.expire_due(at_ms(24_999));
    assert!(b.resource(id(1)).unwrap().is_locked());
    b.expire_due(at_ms(25_000));
    assert!(!b.resource(id(1)).unwrap().is_locked());
    b.check_invariants();
}

#[test]
fn expiry_releases_every_due_lock_in_deadline_order_and_keeps_the_rest() {
    let mut b = lab();
    b.lock(id(3), secs(20), T0).unwrap();
    b.lock(id(1), secs(10), T0).unwrap();
    b.lock(id(2), secs(40), T0).unwrap();
    b.drain_events();
    b.expire_due(at_ms(30_000));
    let expired: Vec<ResourceId> = b
        .drain_events()
        .into_iter()
        .map(|e| match e {
            Event::Expired { resource, .. } => resource,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(expired, [id(1), id(3)]);
    assert!(b.resource(id(2)).unwrap().is_locked());
    assert_eq!(b.next_deadline(), Some(at_ms(40_000)));
    b.check_invariants();
}

#[test]
fn fencing_tokens_grow_with_every_grant_across_resources_and_relocks() {
    let mut b = lab();
    let mut seen = Vec::new();
    let Granted {
        token: t1,
        lease: l1,
        ..
    } = b.lock(id(1), secs(10), T0).unwrap();
    seen.push(l1.fencing);
    seen.push(b.lock(id(2), secs(10), T0).unwrap().lease.fencing);
    b.unlock(id(1), Some(&t1.reveal()), T0).unwrap();
    seen.push(b.lock(id(1), secs(10), T0).unwrap().lease.fencing);
    b.expire_due(at_ms(10_000));
    seen.push(
        b.lock(id(2), secs(10), at_ms(10_000))
            .unwrap()
            .lease
            .fencing,
    );
    seen.push(
        b.lock_matching(&tags(&["printer"]), secs(10), at_ms(10_000))
            .unwrap()
            .lease
            .fencing,
    );
    let values: Vec<u64> = seen.iter().map(|f| f.get()).collect();
    assert_eq!(values, [1, 2, 3, 4, 5]);
    b.check_invariants();
}

#[test]
fn refused_requests_do_not_consume_fencing_tokens() {
    let mut b = lab();
    b.lock(id(1), secs(10), T0).unwrap();
    let _ = b.lock(id(1), secs(10), T0);
    let _ = b.lock(id(4), secs(9_999), T0);
    assert_eq!(b.lock(id(2), secs(10), T0).unwrap().lease.fencing.get(), 2);
}

#[test]
fn lock_by_tags_takes_the_lowest_free_id_carrying_every_tag() {
    let mut b = lab();
    let Granted {
        resource: first, ..
    } = b.lock_matching(&tags(&["board"]), secs(10), T0).unwrap();
    assert_eq!(first, id(1));
    let Granted {
        resource: second, ..
    } = b
        .lock_matching(&tags(&["arm", "board"]), secs(10), T0)
        .unwrap();
    assert_eq!(second, id(3), "board-2 is x86, board-1 is taken");
    let Granted {
        resource: third, ..
    } = b.lock_matching(&tags(&["board"]), secs(10), T0).unwrap();
    assert_eq!(third, id(2));
    b.check_invariants();
}

#[test]
fn lock_by_tags_refuses_when_nothing_matches_or_every_match_is_locked() {
    let mut b = lab();
    let arm_x86 = vec!["arm".to_string(), "x86".to_string()];
    assert_eq!(
        b.lock_matching(
            &Selector::Matching(Criteria::Tags(arm_x86.clone())),
            secs(10),
            T0
        )
        .unwrap_err(),
        DomainError::NoMatch(Criteria::Tags(arm_x86)),
        "both tags exist, but on no single resource"
    );
    let unknown = vec!["gpu".to_string()];
    assert_eq!(
        b.lock_matching(
            &Selector::Matching(Criteria::Tags(unknown.clone())),
            secs(10),
            T0
        )
        .unwrap_err(),
        DomainError::NoMatch(Criteria::Tags(unknown))
    );
    b.lock(id(1), secs(10), T0).unwrap();
    b.lock(id(3), secs(10), T0).unwrap();
    let arm = vec!["arm".to_string()];
    assert_eq!(
        b.lock_matching(
            &Selector::Matching(Criteria::Tags(arm.clone())),
            secs(10),
            T0
        )
        .unwrap_err(),
        DomainError::AllMatchesLocked {
            criteria: Criteria::Tags(arm),
            held_for: vec![],
            unavailable: 0,
        }
    );
    // Once one expires, it is found again.
    let Granted { resource: got, .. } = b
        .lock_matching(&tags(&["arm"]), secs(10), at_ms(10_000))
        .unwrap();
    assert_eq!(got, id(1));
    b.check_invariants();
}

#[test]
fn lock_by_name_and_by_id_pick_exactly_that_resource() {
    let mut b = lab();
    let Granted { resource: got, .. } = b
        .lock_matching(&Selector::Name("board-3".into()), secs(10), T0)
        .unwrap();
    assert_eq!(got, id(3));
    assert_eq!(
        b.lock_matching(&Selector::Name("board-3".into()), secs(10), T0)
            .unwrap_err(),
        DomainError::AlreadyLocked(id(3))
    );
    assert_eq!(
        b.lock_matching(&Selector::Name("nope".into()), secs(10), T0)
            .unwrap_err(),
        DomainError::NameNotFound("nope".into())
    );
    let Granted { resource: got, .. } =
        b.lock_matching(&Selector::Id(id(2)), secs(10), T0).unwrap();
    assert_eq!(got, id(2));
    assert_eq!(
        b.lock_matching(&Selector::Id(id(7)), secs(10), T0)
            .unwrap_err(),
        DomainError::ResourceNotFound(id(7))
    );
}

#[test]
fn lock_by_criteria_applies_the_ttl_limit_of_the_chosen_resource() {
    let mut b = lab();
    assert!(matches!(
        b.lock_matching(&tags(&["printer"]), secs(601), T0),
        Err(DomainError::TtlAboveMax { .. })
    ));
    assert!(!b.resource(id(4)).unwrap().is_locked());
}

#[test]
#[should_panic(expected = "duplicate resource name")]
fn duplicate_names_are_a_programming_error() {
    Broker::new([ResourceSpec::named("a"), ResourceSpec::named("a")]);
}

#[test]
fn a_takeover_postpones_the_deadlines_due_within_its_grace_and_no_other() {
    let mut b = lab();
    let soon = b.lock(id(1), secs(1), T0).unwrap();
    let late = b.lock(id(2), secs(100), T0).unwrap();
    let past = b.lock(id(4), secs(1), T0).unwrap();
    // A reservation that waits for board-1 (taken), at most 2 s.
    let mut wait = crate::domain::broker::test_support::request(&["arm"], 2);
    wait.max_wait = secs(2);
    let waiting = b.reserve(wait, T0).unwrap(); // board-1 and board-3: one is taken
    // A takeover at 1.5 s (board-1's and board-4's locks ran out at 1 s) with a grace
    // of 2 s.
    let until = at_ms(3_500);
    let mut image = b.image();
    assert_eq!(image.postpone_deadlines(until), 3, "two locks and the wait");
    assert_eq!(restored_wait(&image, waiting), until);
    let mut restored = Broker::restore(
        image,
        b.policy(),
        Box::new(crate::domain::Seeded::new(1)),
        false,
    );
    restored.check_invariants();
    let expiry = |b: &Broker, n: u32| b.resource(id(n)).unwrap().lease().unwrap().expires_at;
    assert_eq!(expiry(&restored, 1), until);
    assert_eq!(expiry(&restored, 4), until, "already past: moved too");
    assert_eq!(
        expiry(&restored, 2),
        T0.checked_add(Duration::from_secs(100)).unwrap(),
        "not due"
    );
    assert_eq!(restored.next_deadline(), Some(until));
    // Nothing ends before the grace is over; everything due ends at its end.
    restored.expire_due(at_ms(3_499));
    assert!(restored.resource(id(1)).unwrap().is_locked());
    assert!(restored.resource(id(4)).unwrap().is_locked());
    restored.expire_due(until);
    assert!(!restored.resource(id(1)).unwrap().is_locked());
    assert!(!restored.resource(id(4)).unwrap().is_locked());
    assert!(restored.resource(id(2)).unwrap().is_locked());
    let _ = (soon, late, past);
}

fn restored_wait(image: &crate::domain::Image, r: ReservationId) -> Timestamp {
    image.reservations[&r].reservation.expires_at
}
