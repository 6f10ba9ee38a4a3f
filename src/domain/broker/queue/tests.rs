//! Queue tests: reservations, holds, N-of-M, expiry of each kind, with explicit time.

use std::time::Duration;

use super::*;
use crate::domain::broker::maintenance::Unavailability;
use crate::domain::broker::test_support::*;
use crate::domain::expr::Expr;
use crate::domain::reservation::Priority;

/// 1-4 boards [board, dut] (1, 2 arm; 3, 4 x86), 5 psu [psu], 6 printer [printer, flaky].
fn lab() -> Broker {
    Broker::new(lab_specs())
}

fn lab_specs() -> [ResourceSpec; 6] {
    [
        ResourceSpec::named("arm-1").with_tags(&["board", "dut", "arm"]),
        ResourceSpec::named("arm-2").with_tags(&["board", "dut", "arm"]),
        ResourceSpec::named("x86-1").with_tags(&["board", "dut", "x86"]),
        ResourceSpec::named("x86-2").with_tags(&["board", "dut", "x86"]),
        ResourceSpec::named("psu").with_tags(&["psu"]),
        ResourceSpec::named("printer").with_tags(&["printer", "flaky"]),
    ]
}

fn status(b: &Broker, r: ReservationId) -> ReservationStatus {
    b.reservation(r).expect("live").status
}

fn resources_of(b: &Broker, r: ReservationId) -> Vec<u32> {
    b.reservation(r)
        .unwrap()
        .allocations
        .iter()
        .map(|a| a.resource.get())
        .collect()
}

fn lock_all(b: &mut Broker, ids: &[u32], ttl: u64, now: Timestamp) -> Vec<LockToken> {
    ids.iter()
        .map(|&n| b.lock(id(n), secs(ttl), now).unwrap().token)
        .collect()
}

fn settled(b: &Broker, now: Timestamp) {
    b.check_invariants();
    assert!(b.is_settled(now), "serving again would change something");
}

#[test]
fn a_reservation_whose_resources_are_free_is_fulfilled_at_once() {
    let mut b = lab();
    let r = b.reserve(request(&["arm"], 2), T0).unwrap();

    let res = b.reservation(r).unwrap();
    assert_eq!(res.status, ReservationStatus::Fulfilled);
    assert_eq!(resources_of(&b, r), [1, 2]);
    assert_eq!(res.fulfilled_at, Some(T0));
    assert_eq!(res.claim_expires_at, Some(at(60)));
    for a in &res.allocations {
        let lease = b.resource(a.resource).unwrap().lease().unwrap();
        assert_eq!(lease.token, a.token);
        assert_eq!(lease.reservation, Some(r));
        assert_eq!(lease.expires_at, at(600));
    }
    let events = b.drain_events();
    assert!(matches!(events[0], Event::ReservationCreated { reservation, .. } if reservation == r));
    assert!(
        matches!(events[1], Event::Locked { resource, reservation: Some(_), .. } if resource == id(1))
    );
    assert!(
        matches!(&events[3], Event::ReservationFulfilled { reservation, resources, .. }
        if *reservation == r && resources == &[id(1), id(2)])
    );
    settled(&b, T0);
}

#[test]
fn a_waiting_reservation_is_served_by_the_unlock_that_frees_its_resource() {
    let mut b = lab();
    let tokens = lock_all(&mut b, &[1, 2], 600, T0);
    let r = b.reserve(request(&["arm"], 1), T0).unwrap();
    assert_eq!(status(&b, r), ReservationStatus::Pending);
    assert_eq!(b.queue_order(T0).collect::<Vec<_>>(), [r]);

    b.unlock(id(2), Some(&tokens[1].reveal()), at(100)).unwrap();

    assert_eq!(status(&b, r), ReservationStatus::Fulfilled);
    assert_eq!(resources_of(&b, r), [2]);
    let lease = b.resource(id(2)).unwrap().lease().unwrap().clone();
    assert_eq!(lease.acquired_at, at(100), "the TTL starts at fulfilment");
    assert_eq!(lease.expires_at, at(700));
    assert_eq!(b.queue_len(), 0);
    settled(&b, at(100));
}

#[test]
fn an_expiring_lock_serves_the_queue_at_its_deadline_even_when_swept_late() {
    let mut b = lab();
    lock_all(&mut b, &[1, 2], 30, T0);
    let r = b.reserve(request(&["arm"], 1), T0).unwrap();

    b.expire_due(at(80)); // the timer was late; the state is as if it had not been

    let res = b.reservation(r).unwrap();
    assert_eq!(res.fulfilled_at, Some(at(30)));
    assert_eq!(resources_of(&b, r), [1]);
    assert_eq!(
        b.resource(id(1)).unwrap().lease().unwrap().expires_at,
        at(630)
    );
    assert_eq!(res.claim_expires_at, Some(at(90)));
    settled(&b, at(80));
    // Swept later still, the unclaimed reservation ran out at its window's end.
    b.expire_due(at(500));
    assert_eq!(b.ended(r), Some((EndReason::ClaimExpired, at(90))));
}

#[test]
fn reservations_are_served_by_priority_then_in_order_of_creation() {
    let mut b = lab();
    let tokens = lock_all(&mut b, &[5], 600, T0);
    let low = b
        .reserve(with_priority(request(&["psu"], 1), 9), T0)
        .unwrap();
    let first = b.reserve(request(&["psu"], 1), at(1)).unwrap();
    let second = b.reserve(request(&["psu"], 1), at(2)).unwrap();
    let urgent = b
        .reserve(with_priority(request(&["psu"], 1), 1), at(3))
        .unwrap();
    assert_eq!(
        b.queue_order(at(4)).collect::<Vec<_>>(),
        [urgent, first, second, low]
    );

    b.unlock(id(5), Some(&tokens[0].reveal()), at(10)).unwrap();
    assert_eq!(status(&b, urgent), ReservationStatus::Fulfilled);
    assert_eq!(
        b.queue_order(at(10)).collect::<Vec<_>>(),
        [first, second, low]
    );
    settled(&b, at(10));
}

#[test]
fn the_pending_summary_counts_by_asked_priority_and_dates_the_oldest_waiter() {
    let mut b = lab();
    assert_eq!(b.pending_summary(), PendingSummary::default());
    let tokens = lock_all(&mut b, &[5], 600, T0);
    b.reserve(request(&["psu"], 1), at(1)).unwrap();
    b.reserve(with_priority(request(&["psu"], 1), 1), at(2))
        .unwrap();
    b.reserve(request(&["psu"], 1), at(3)).unwrap();
    // Served at once: never pending.
    b.reserve(request(&["arm"], 1), at(4)).unwrap();

    let summary = b.pending_summary();
    assert_eq!(summary.by_priority, [1, 0, 0, 0, 2, 0, 0, 0, 0, 0]);
    // The first to come, though the urgent one is served first.
    assert_eq!(summary.oldest_created_at, Some(at(1)));

    // The unlock serves the urgent one; the first still waits.
    b.unlock(id(5), Some(&tokens[0].reveal()), at(10)).unwrap();
    let summary = b.pending_summary();
    assert_eq!(summary.by_priority, [0, 0, 0, 0, 2, 0, 0, 0, 0, 0]);
    assert_eq!(summary.oldest_created_at, Some(at(1)));
}

#[test]
fn aging_lets_an_old_low_priority_reservation_overtake_newcomers() {
    let mut b = lab();
    let tokens = lock_all(&mut b, &[5], 86_000, T0);
    let mut long_wait = with_priority(request(&["psu"], 1), 10);
    long_wait.max_wait = secs(86_400);
    let old = b.reserve(long_wait, T0).unwrap();
    // Nine aging periods later it has reached level 1; a newcomer at level 1 comes after.
    let newcomer = b
        .reserve(with_priority(request(&["psu"], 1), 1), at(2_700))
        .unwrap();
    assert_eq!(
        b.queue_order(at(2_700)).collect::<Vec<_>>(),
        [old, newcomer]
    );

    b.unlock(id(5), Some(&tokens[0].reveal()), at(2_701))
        .unwrap();
    assert_eq!(status(&b, old), ReservationStatus::Fulfilled);
    assert_eq!(status(&b, newcomer), ReservationStatus::Pending);
    settled(&b, at(2_701));
}

#[test]
fn a_waiting_reservation_holds_the_free_resources_it_matches() {
    let mut b = lab();
    lock_all(&mut b, &[1], 600, T0);
    let big = b.reserve(request(&["arm"], 2), T0).unwrap();
    assert_eq!(status(&b, big), ReservationStatus::Pending);
    assert_eq!(b.held_for(id(2)), Some(big));

    // Neither a direct lock nor a later reservation may take the held board.
    assert_eq!(
        b.lock(id(2), secs(60), at(1)).unwrap_err(),
        DomainError::HeldForReservation {
            id: id(2),
            reservation: big
        }
    );
    assert_eq!(
        b.lock_matching(
            &Selector::Matching(Criteria::Tags(vec!["arm".into()])),
            secs(60),
            at(1)
        )
        .unwrap_err(),
        DomainError::AllMatchesLocked {
            criteria: tags(&["arm"]),
            held_for: vec![big],
            unavailable: 0,
        }
    );
    let small = b.reserve(request(&["arm"], 1), at(2)).unwrap();
    assert_eq!(status(&b, small), ReservationStatus::Pending);
    // Boards it does not match stay free for everyone (backfill).
    assert!(
        b.lock_matching(
            &Selector::Matching(Criteria::Tags(vec!["board".into()])),
            secs(60),
            at(3)
        )
        .is_ok()
    );
    settled(&b, at(3));
}

#[test]
fn a_waiter_asking_a_shorter_ttl_is_served_behind_ones_the_free_resources_cannot_take() {
    // Three psus, allowing 1 day, 60 s and 40 s locks.
    let mut b = Broker::new([
        ResourceSpec::named("psu-day").with_tags(&["psu"]),
        ResourceSpec::named("psu-60")
            .with_tags(&["psu"])
            .with_max_lock_duration(secs(60)),
        ResourceSpec::named("psu-40")
            .with_tags(&["psu"])
            .with_max_lock_duration(secs(40)),
    ]);
    let tokens = lock_all(&mut b, &[1, 2, 3], 40, T0);
    let asking = |ttl| ReservationRequest {
        ttl: secs(ttl),
        ..request(&["psu"], 1)
    };
    let waiters: Vec<ReservationId> = [600, 55, 50, 30, 20]
        .iter()
        .zip(1..)
        .map(|(&ttl, t)| b.reserve(asking(ttl), at(t)).unwrap())
        .collect();

    // Both short ones free up at once. The 600 s waiter can take neither; the 55 s one
    // takes psu-60; the 50 s one finds only psu-40, too short; the 30 s one takes it.
    let batch = [tokens[1].reveal(), tokens[2].reveal()];
    b.unlock_batch(&batch, at(10)).unwrap();

    let statuses: Vec<ReservationStatus> = waiters.iter().map(|&r| status(&b, r)).collect();
    use ReservationStatus::{Fulfilled, Pending};
    assert_eq!(statuses, [Pending, Fulfilled, Pending, Fulfilled, Pending]);
    assert_eq!(resources_of(&b, waiters[1]), [2]);
    assert_eq!(resources_of(&b, waiters[3]), [3]);
    settled(&b, at(10));
}

#[test]
fn a_waiter_whose_lock_ends_before_a_window_is_served_behind_one_whose_would_not() {
    let mut b = Broker::new([ResourceSpec::named("psu").with_tags(&["psu"])]);
    let token = lock_all(&mut b, &[1], 60, T0).remove(0);
    let window = Unavailability {
        reason: "rewiring".into(),
        from: Some(at(1_000)),
        until: None,
    };
    b.mark_unavailable(id(1), window, at(1)).unwrap();
    let ttl = |ttl| ReservationRequest {
        ttl: secs(ttl),
        ..request(&["psu"], 1)
    };
    let crossing = b.reserve(ttl(5_000), at(2)).unwrap();
    let fitting = b.reserve(ttl(900), at(3)).unwrap();

    b.unlock(id(1), Some(&token.reveal()), at(10)).unwrap();

    assert_eq!(status(&b, crossing), ReservationStatus::Pending);
    assert_eq!(status(&b, fitting), ReservationStatus::Fulfilled);
    settled(&b, at(10));
}

#[test]
fn a_full_queue_refuses_only_reservations_that_would_wait() {
    let mut b = Broker::with_policy(
        lab_specs(),
        Policy {
            max_pending: 1,
            ..Policy::default()
        },
    );
    lock_all(&mut b, &[1], 600, T0);
    // Waits for both arm boards and holds the free one.
    let both = b.reserve(request(&["arm"], 2), T0).unwrap();
    assert_eq!(b.held_for(id(2)), Some(both));

    // Behind it, a request for one arm board would wait: refused, nothing changes.
    assert_eq!(
        b.reserve(request(&["arm"], 1), at(1)),
        Err(DomainError::QueueFull {
            max: 1,
            retry_after_secs: 10
        })
    );
    assert_eq!(b.queue_len(), 1);
    // Ahead of it (priority 1), the same request takes the held board at once.
    let urgent = b
        .reserve(with_priority(request(&["arm"], 1), 1), at(2))
        .unwrap();
    assert_eq!(resources_of(&b, urgent), [2]);
    // So does one for a board nobody waits for.
    let x86 = b.reserve(request(&["x86"], 1), at(3)).unwrap();
    assert_eq!(status(&b, x86), ReservationStatus::Fulfilled);
    settled(&b, at(3));
}

#[test]
fn a_request_over_the_limits_is_refused_before_it_is_looked_at() {
    let mut b = lab();
    let many: Vec<String> = (0..65).map(|i| format!("t{i}")).collect();
    let tags_over = ReservationRequest {
        groups: vec![Group {
            criteria: Criteria::Tags(many),
            quantity: 1,
        }],
        ..request(&["arm"], 1)
    };
    assert!(matches!(
        b.reserve(tags_over, T0),
        Err(DomainError::InvalidTags(_))
    ));
    let too_many = ReservationRequest {
        groups: vec![group(&["board"], 6_000), group(&["psu"], 5_000)],
        ..request(&["arm"], 1)
    };
    assert_eq!(
        b.reserve(too_many.clone(), T0),
        Err(DomainError::TooManyResources {
            total: 11_000,
            max: 10_000
        })
    );
    assert_eq!(
        b.lock_groups(&too_many.groups, secs(60), T0),
        Err(DomainError::TooManyResources {
            total: 11_000,
            max: 10_000
        })
    );
}

#[test]
fn positions_follow_priority_and_aging_as_the_queue_changes() {
    let mut b = lab();
    lock_all(&mut b, &[1, 2, 3, 4], 86_000, T0);
    let low = b
        .reserve(with_priority(request(&["board"], 1), 9), T0)
        .unwrap();
    let place = |b: &Broker, r, t| b.queue_position(r, t);
    assert_eq!(place(&b, low, T0), Some(1));
    // Four aging periods (300 s each) later the old level 9 is level 5: ahead of a new
    // level 5, behind a new level 1.
    let later = at(4 * 300);
    let mid = b.reserve(request(&["board"], 1), later).unwrap();
    let high = b
        .reserve(with_priority(request(&["board"], 1), 1), later)
        .unwrap();
    assert_eq!(
        [
            place(&b, high, later),
            place(&b, low, later),
            place(&b, mid, later)
        ],
        [Some(1), Some(2), Some(3)]
    );
    assert_eq!(
        place(&b, mid, at(4 * 300 - 1)),
        Some(2),
        "one second earlier, low was 6"
    );
    b.cancel(high, later).unwrap();
    assert_eq!(place(&b, low, later), Some(1));
    assert_eq!(place(&b, high, later), None, "gone");
}

#[test]
fn free_resources_no_earlier_waiter_can_use_are_served_to_later_ones() {
    let mut b = lab();
    lock_all(&mut b, &[1, 2], 600, T0);
    let arm = b.reserve(request(&["arm"], 2), T0).unwrap();
    let x86 = b.reserve(request(&["x86"], 2), at(1)).unwrap();
    assert_eq!(status(&b, arm), ReservationStatus::Pending);
    assert_eq!(status(&b, x86), ReservationStatus::Fulfilled);
    assert_eq!(resources_of(&b, x86), [3, 4]);
    settled(&b, at(1));
}

#[test]
fn a_three_board_reservation_is_served_while_single_requests_keep_arriving() {
    let mut b = lab();
    let mut now = T0;
    // Every board is busy; each frees in turn while one-board requests and direct locks
    // keep arriving. Without holds, each freed board would go to a newcomer.
    let mut tokens = lock_all(&mut b, &[1, 2, 3, 4], 600, now);
    let big = b.reserve(request(&["board"], 3), now).unwrap();
    let mut newcomers = Vec::new();
    for board in 0..3 {
        now = at(10 * (board + 1));
        newcomers.push(b.reserve(request(&["board"], 1), now).unwrap());
        let lock = b.lock_matching(
            &Selector::Matching(Criteria::Tags(vec!["board".into()])),
            secs(60),
            now,
        );
        assert!(lock.is_err(), "a direct lock cannot take a held board");
        let token = tokens.remove(0);
        b.unlock(id(board as u32 + 1), Some(&token.reveal()), now)
            .unwrap();
        b.check_invariants();
    }
    assert_eq!(status(&b, big), ReservationStatus::Fulfilled);
    assert_eq!(resources_of(&b, big), [1, 2, 3]);
    assert!(
        newcomers
            .iter()
            .all(|&n| status(&b, n) == ReservationStatus::Pending)
    );
    settled(&b, now);
}

#[test]
fn groups_are_granted_together_without_overlap() {
    let mut b = lab();
    let mut req = request(&["dut"], 2);
    req.groups.push(Group {
        criteria: Criteria::Expr(Expr::parse("arm && board").unwrap()),
        quantity: 1,
    });
    req.groups.push(group(&["psu"], 1));
    let r = b.reserve(req, T0).unwrap();

    let allocations = &b.reservation(r).unwrap().allocations;
    let by_group: Vec<(usize, u32)> = allocations
        .iter()
        .map(|a| (a.group, a.resource.get()))
        .collect();
    // Greedy would give both arm boards to group 0 and leave group 1 without one.
    assert_eq!(by_group, [(0, 2), (0, 3), (1, 1), (2, 5)]);
    settled(&b, T0);
}

#[test]
fn label_expressions_select_what_they_describe() {
    let mut b = lab();
    let expr = Criteria::Expr(Expr::parse("board && !arm").unwrap());
    let r = b
        .reserve(
            ReservationRequest {
                groups: vec![Group {
                    criteria: expr,
                    quantity: 2,
                }],
                ..request(&["board"], 1)
            },
            T0,
        )
        .unwrap();
    assert_eq!(resources_of(&b, r), [3, 4]);
    let granted = b
        .lock_matching(
            &Selector::Matching(Criteria::Expr(
                Expr::parse("!flaky && (psu || printer)").unwrap(),
            )),
            secs(5),
            T0,
        )
        .unwrap();
    assert_eq!(granted.resource, id(5));
}

#[test]
fn reservations_that_could_never_be_served_are_refused() {
    let mut b = lab();
    assert_eq!(
        b.reserve(request(&["gpu"], 1), T0).unwrap_err(),
        DomainError::NoMatch(tags(&["gpu"]))
    );
    assert!(matches!(
        b.reserve(request(&["arm"], 3), T0).unwrap_err(),
        DomainError::Unsatisfiable {
            wanted: 3,
            matching: 2,
            eligible: 2,
            ..
        }
    ));
    let mut b = Broker::new([
        ResourceSpec::named("short")
            .with_tags(&["t"])
            .with_max_lock_duration(secs(60)),
        ResourceSpec::named("long").with_tags(&["t"]),
    ]);
    assert!(
        matches!(
            b.reserve(request(&["t"], 2), T0).unwrap_err(),
            DomainError::Unsatisfiable {
                wanted: 2,
                matching: 2,
                eligible: 1,
                ..
            }
        ),
        "a 600 s ttl is too long for one of them"
    );
    // Two groups that each fit, but not together.
    let mut req = request(&["t"], 1);
    req.groups.push(group(&["t"], 2));
    req.ttl = secs(30);
    assert!(matches!(
        b.reserve(req, T0).unwrap_err(),
        DomainError::Unsatisfiable { .. }
    ));
    assert_eq!(b.queue_len(), 0);
    b.check_invariants();
}

#[test]
fn a_pending_reservation_expires_after_its_wait_and_its_holds_go_to_the_next() {
    let mut b = lab();
    lock_all(&mut b, &[1], 600, T0);
    let mut impatient = request(&["arm"], 2);
    impatient.max_wait = secs(100);
    let big = b.reserve(impatient, T0).unwrap();
    let small = b.reserve(request(&["arm"], 1), at(1)).unwrap();
    assert_eq!(
        status(&b, small),
        ReservationStatus::Pending,
        "board 2 is held"
    );

    b.expire_due(at(99));
    assert_eq!(status(&b, big), ReservationStatus::Pending);
    b.expire_due(at(100));

    assert!(b.reservation(big).is_none());
    assert_eq!(b.ended(big), Some((EndReason::Expired, at(100))));
    assert_eq!(status(&b, small), ReservationStatus::Fulfilled);
    assert_eq!(resources_of(&b, small), [2]);
    settled(&b, at(100));
}

#[test]
fn an_unclaimed_reservation_releases_its_resources_when_the_claim_window_ends() {
    let mut b = lab();
    let r = b.reserve(request(&["x86"], 2), T0).unwrap();
    lock_all(&mut b, &[1, 2], 600, T0);
    let next = b.reserve(request(&["board"], 1), at(1)).unwrap();

    b.expire_due(at(59));
    assert_eq!(status(&b, r), ReservationStatus::Fulfilled);
    b.expire_due(at(60));

    assert!(b.reservation(r).is_none());
    assert_eq!(b.ended(r), Some((EndReason::ClaimExpired, at(60))));
    assert_eq!(b.resource(id(4)).unwrap().lease(), None);
    assert_eq!(resources_of(&b, next), [3], "served by the release");
    assert_eq!(
        b.claim(r, at(61)).unwrap_err(),
        DomainError::ClaimWindowOver(r)
    );
    settled(&b, at(61));
}

#[test]
fn a_claimed_reservation_keeps_its_locks_and_ends_with_the_last_unlock() {
    let mut b = lab();
    let r = b.reserve(request(&["arm"], 2), T0).unwrap();
    let claimed = b.claim(r, at(10)).unwrap();
    assert_eq!(claimed.status, ReservationStatus::Claimed);
    assert_eq!(claimed.claimed_at, Some(at(10)));
    let tokens: Vec<LockToken> = claimed.allocations.iter().map(|a| a.token).collect();

    b.expire_due(at(61));
    assert_eq!(
        status(&b, r),
        ReservationStatus::Claimed,
        "no claim window once claimed"
    );
    b.unlock(id(1), Some(&tokens[0].reveal()), at(100)).unwrap();
    assert_eq!(status(&b, r), ReservationStatus::Claimed);
    b.unlock(id(2), Some(&tokens[1].reveal()), at(101)).unwrap();
    assert!(b.reservation(r).is_none());
    assert_eq!(b.ended(r), Some((EndReason::Released, at(101))));
    settled(&b, at(101));
}

#[test]
fn the_locks_of_a_claimed_reservation_expire_with_their_ttl() {
    let mut b = lab();
    let r = b.reserve(request(&["psu"], 1), T0).unwrap();
    b.claim(r, at(1)).unwrap();
    b.expire_due(at(600));
    assert_eq!(b.ended(r), Some((EndReason::Released, at(600))));
    settled(&b, at(600));
}

#[test]
fn auto_claim_makes_fulfilment_the_claim() {
    let mut b = lab();
    lock_all(&mut b, &[5], 30, T0);
    let mut req = request(&["psu"], 1);
    req.auto_claim = true;
    let r = b.reserve(req, T0).unwrap();
    b.expire_due(at(30));
    let res = b.reservation(r).unwrap();
    assert_eq!(res.status, ReservationStatus::Claimed);
    assert_eq!((res.claimed_at, res.claim_expires_at), (Some(at(30)), None));
    b.expire_due(at(200));
    assert_eq!(
        status(&b, r),
        ReservationStatus::Claimed,
        "no claim window to miss"
    );
    settled(&b, at(200));
}

#[test]
fn claim_and_cancel_are_refused_in_the_wrong_state() {
    let mut b = lab();
    lock_all(&mut b, &[5], 600, T0);
    let pending = b.reserve(request(&["psu"], 1), T0).unwrap();
    let fulfilled = b.reserve(request(&["arm"], 1), T0).unwrap();
    let unknown = ReservationId::from_u128(0xdead_beef);

    assert_eq!(
        b.claim(pending, T0).unwrap_err(),
        DomainError::ReservationWrongState {
            id: pending,
            status: ReservationStatus::Pending
        }
    );
    assert_eq!(
        b.cancel(fulfilled, T0).unwrap_err(),
        DomainError::ReservationWrongState {
            id: fulfilled,
            status: ReservationStatus::Fulfilled
        }
    );
    b.claim(fulfilled, T0).unwrap();
    assert_eq!(
        b.claim(fulfilled, T0).unwrap_err(),
        DomainError::ReservationWrongState {
            id: fulfilled,
            status: ReservationStatus::Claimed
        }
    );
    assert_eq!(
        b.claim(unknown, T0).unwrap_err(),
        DomainError::ReservationNotFound(unknown)
    );
    assert_eq!(
        b.cancel(unknown, T0).unwrap_err(),
        DomainError::ReservationNotFound(unknown)
    );

    b.cancel(pending, at(5)).unwrap();
    assert_eq!(b.ended(pending), Some((EndReason::Cancelled, at(5))));
    assert_eq!(
        b.cancel(pending, at(6)).unwrap_err(),
        DomainError::ReservationNotFound(pending)
    );
    settled(&b, at(6));
}

#[test]
fn waiting_for_explains_the_wait() {
    let mut b = lab();
    lock_all(&mut b, &[1], 100, T0);
    lock_all(&mut b, &[3], 300, T0);
    let first = b.reserve(request(&["arm"], 2), T0).unwrap(); // holds board 2
    let second = b.reserve(request(&["board"], 3), at(1)).unwrap();

    let wait = b.waiting_for(second, at(1)).unwrap();
    assert_eq!(
        wait.groups,
        [GroupWait {
            quantity: 3,
            matching: 4,
            locked: 2,
            next_release_at: Some(at(100)),
            held_for_earlier: 1,
            unavailable: 0,
            free: 1,
        }]
    );
    // One free now, two more once both locks have run out.
    assert_eq!(wait.estimated_available_at, Some(at(300)));
    assert!(b.waiting_for(first, at(1)).is_some());
    let fulfilled = b.reserve(request(&["psu"], 1), at(1)).unwrap();
    assert_eq!(b.waiting_for(fulfilled, at(1)), None);
}

#[test]
fn several_resources_lock_all_or_nothing() {
    let mut b = lab();
    let granted = b
        .lock_groups(&[group(&["board"], 2), group(&["psu"], 1)], secs(60), T0)
        .unwrap();
    let got: Vec<(usize, u32)> = granted
        .iter()
        .map(|(g, x)| (*g, x.resource.get()))
        .collect();
    assert_eq!(got, [(0, 1), (0, 2), (1, 5)]);

    let before = b.drain_events();
    assert_eq!(
        b.lock_groups(&[group(&["board"], 3)], secs(60), T0)
            .unwrap_err(),
        DomainError::NotEnoughAvailable {
            group: 0,
            criteria: tags(&["board"]),
            wanted: 3,
            available: 2
        }
    );
    assert!(b.drain_events().is_empty(), "nothing was locked");
    assert!(!before.is_empty());
    assert!(b.resource(id(3)).unwrap().lease().is_none());
    assert!(matches!(
        b.lock_groups(&[group(&["board"], 5)], secs(60), T0)
            .unwrap_err(),
        DomainError::Unsatisfiable { .. }
    ));
    assert_eq!(
        b.lock_groups(&[group(&["gpu"], 1)], secs(60), T0)
            .unwrap_err(),
        DomainError::NoMatch(tags(&["gpu"]))
    );
    b.check_invariants();
}

#[test]
fn a_batch_unlock_releases_all_or_nothing() {
    let mut b = lab();
    let tokens: Vec<String> = lock_all(&mut b, &[1, 2], 60, T0)
        .iter()
        .map(LockToken::reveal)
        .collect();
    let r = b.reserve(request(&["arm"], 1), T0).unwrap();

    let bad = vec![
        tokens[0].clone(),
        "nope".into(),
        LockToken::from_random(0xdead_beef).reveal(),
        tokens[0].clone(),
    ];
    let DomainError::BatchRefused(refusals) = b.unlock_batch(&bad, at(1)).unwrap_err() else {
        panic!("refused as a batch")
    };
    assert_eq!(
        refusals.iter().map(|r| r.index).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(
        b.resource(id(1)).unwrap().is_locked(),
        "nothing was unlocked"
    );

    assert_eq!(b.unlock_batch(&tokens, at(2)).unwrap(), [id(1), id(2)]);
    assert_eq!(resources_of(&b, r), [1], "the release served the queue");
    settled(&b, at(2));
}

#[test]
fn recent_ends_are_remembered_within_a_bound() {
    let mut b = lab();
    lock_all(&mut b, &[5], 86_000, T0);
    let first = b.reserve(request(&["psu"], 1), T0).unwrap();
    b.cancel(first, T0).unwrap();
    for _ in 0..ENDED_MEMORY {
        let r = b.reserve(request(&["psu"], 1), T0).unwrap();
        b.cancel(r, T0).unwrap();
    }
    assert_eq!(b.ended(first), None, "the oldest is forgotten");
    assert_eq!(b.ended.len(), ENDED_MEMORY);
}

mod properties {
    //! Random interleavings of every operation and of time never grant one resource
    //! twice, keep every index consistent, and leave nothing servable waiting.

    use std::collections::HashMap;

    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    use super::*;
    use crate::domain::{Image, OwnerCaps, Owning, Principal, Seeded};

    const TAGS: [&str; 3] = ["board", "arm", "psu"];

    #[derive(Clone, Debug)]
    enum Op {
        Lock {
            resource: u32,
            ttl: u64,
        },
        LockTag {
            tag: usize,
            ttl: u64,
        },
        LockGroups {
            tag: usize,
            quantity: u32,
            ttl: u64,
        },
        Unlock {
            pick: usize,
        },
        Extend {
            pick: usize,
            ttl: u64,
        },
        UnlockBatch {
            picks: Vec<usize>,
        },
        Reserve {
            tag: usize,
            quantity: u32,
            second: Option<usize>,
            priority: u64,
            ttl: u64,
            wait: u64,
            auto_claim: bool,
        },
        Claim {
            pick: usize,
        },
        Cancel {
            pick: usize,
        },
        Advance {
            secs: u64,
        },
        Unavailable {
            resource: u32,
            from_in: Option<u64>,
            lasts: Option<u64>,
        },
        Available {
            resource: u32,
        },
        ForceUnlock {
            pick: usize,
        },
        Add {
            tag: usize,
        },
        Remove {
            resource: u32,
            force: bool,
        },
        Retag {
            resource: u32,
            tag: usize,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1..=7u32, 1..200u64).prop_map(|(resource, ttl)| Op::Lock { resource, ttl }),
            (0..3usize, 1..200u64).prop_map(|(tag, ttl)| Op::LockTag { tag, ttl }),
            (0..3usize, 1..4u32, 1..200u64).prop_map(|(tag, quantity, ttl)| Op::LockGroups {
                tag,
                quantity,
                ttl
            }),
            any::<usize>().prop_map(|pick| Op::Unlock { pick }),
            (any::<usize>(), 1..200u64).prop_map(|(pick, ttl)| Op::Extend { pick, ttl }),
            prop::collection::vec(any::<usize>(), 1..4).prop_map(|picks| Op::UnlockBatch { picks }),
            (
                0..3usize,
                1..4u32,
                prop::option::of(0..3usize),
                1..=10u64,
                1..200u64,
                1..400u64,
                any::<bool>()
            )
                .prop_map(
                    |(tag, quantity, second, priority, ttl, wait, auto_claim)| Op::Reserve {
                        tag,
                        quantity,
                        second,
                        priority,
                        ttl,
                        wait,
                        auto_claim
                    }
                ),
            any::<usize>().prop_map(|pick| Op::Claim { pick }),
            any::<usize>().prop_map(|pick| Op::Cancel { pick }),
            (0..120u64).prop_map(|secs| Op::Advance { secs }),
            (
                1..=7u32,
                prop::option::of(0..200u64),
                prop::option::of(1..200u64)
            )
                .prop_map(|(resource, from_in, lasts)| Op::Unavailable {
                    resource,
                    from_in,
                    lasts
                }),
            (1..=7u32).prop_map(|resource| Op::Available { resource }),
            any::<usize>().prop_map(|pick| Op::ForceUnlock { pick }),
            (0..3usize).prop_map(|tag| Op::Add { tag }),
            (1..=9u32, any::<bool>()).prop_map(|(resource, force)| Op::Remove { resource, force }),
            (1..=9u32, 0..3usize).prop_map(|(resource, tag)| Op::Retag { resource, tag }),
        ]
    }

    /// The property test's queue policy: short, so that aging and claim windows happen.
    fn policy() -> Policy {
        Policy {
            aging: Duration::from_secs(50),
            claim_window: Duration::from_secs(30),
            ..Policy::default()
        }
    }

    /// Five boards (two arm), two psus; one psu allows only 60 s locks. Built as a
    /// service builds its broker (restored from an empty image, recording its rows, then
    /// the descriptor merged in), so that the test can check what a store would hold.
    fn small_lab() -> (Broker, Image) {
        let mut b = Broker::restore(Image::default(), policy(), Box::new(Seeded::new(1)), true);
        b.reload(
            vec![
                ResourceSpec::named("b1").with_tags(&["board", "arm"]),
                ResourceSpec::named("b2").with_tags(&["board", "arm"]),
                ResourceSpec::named("b3").with_tags(&["board"]),
                ResourceSpec::named("b4").with_tags(&["board"]),
                ResourceSpec::named("b5").with_tags(&["board"]),
                ResourceSpec::named("p1").with_tags(&["psu"]),
                ResourceSpec::named("p2")
                    .with_tags(&["psu"])
                    .with_max_lock_duration(secs(60)),
            ],
            T0,
        );
        b.drain_events();
        let mut image = Image::default();
        image.apply(&b.take_delta().expect("recording"));
        (b, image)
    }

    /// Checks that a broker restored from `image` (the live broker's deltas applied one
    /// after the other, as a store applies them) is the live broker: the same rows, the
    /// same deadlines and, once served at `now`, the same holds, with nothing to do.
    fn check_restores(live: &Broker, image: &Image, now: Timestamp) -> Result<(), TestCaseError> {
        let mut restored =
            Broker::restore(image.clone(), policy(), Box::new(Seeded::new(2)), false);
        restored.expire_due(now);
        prop_assert_eq!(
            restored.drain_events(),
            Vec::new(),
            "restoring changed something"
        );
        prop_assert_eq!(
            &restored.image(),
            &live.image(),
            "the stored rows differ from the live broker"
        );
        prop_assert_eq!(&restored.deadlines, &live.deadlines);
        prop_assert_eq!(&restored.held, &live.held);
        restored.check_invariants();
        Ok(())
    }

    /// Who acts in the property test: everyone (auth off), two users (one capped) and
    /// an admin. Each step is made by one of them.
    fn principals() -> [Principal; 4] {
        let capped = Principal {
            caps: OwnerCaps {
                max_locks: Some(3),
                max_pending: Some(2),
            },
            ..Principal::named("bob")
        };
        let admin = Principal {
            overrides: true,
            ..Principal::named("root")
        };
        [
            Principal::anyone(),
            Principal::named("alice"),
            capped,
            admin,
        ]
    }

    /// Checks a refusal over a cap against the counts, and that an ownership refusal
    /// came to a principal that may not act.
    fn check_refusal<T>(
        b: &Broker,
        who: &Principal,
        result: &Result<T, DomainError>,
    ) -> Result<(), TestCaseError> {
        match result {
            Err(DomainError::TooManyLocks {
                held, wanted, max, ..
            }) => {
                let name = who.name.as_deref().unwrap();
                prop_assert_eq!(Some(*max), who.caps.max_locks);
                prop_assert_eq!(*held, b.owned(name).locks);
                prop_assert!(held + wanted > *max);
            }
            Err(DomainError::TooManyReservations { pending, max, .. }) => {
                let name = who.name.as_deref().unwrap();
                prop_assert_eq!(Some(*max), who.caps.max_pending);
                prop_assert_eq!(*pending, b.owned(name).pending);
                prop_assert!(pending >= max);
            }
            Err(DomainError::NotOwner { .. }) => prop_assert!(!who.overrides && who.name.is_some()),
            _ => {}
        }
        Ok(())
    }

    fn pick<T: Clone>(items: &[T], pick: usize) -> Option<T> {
        (!items.is_empty()).then(|| items[pick % items.len()].clone())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn no_interleaving_grants_a_resource_twice_or_leaves_a_servable_waiter(
            ops in prop::collection::vec((0..4usize, op()), 1..60)
        ) {
            let (mut b, mut image) = small_lab();
            let principals = principals();
            let mut now = T0;
            let mut reservations: Vec<ReservationId> = Vec::new();
            // Who holds each resource, according to the events alone.
            let mut holder: HashMap<ResourceId, FencingToken> = HashMap::new();
            let mut added = 0;
            for (who, op) in ops {
                let who = &principals[who];
                match op {
                    Op::Lock { resource, ttl } => {
                        let result = b.lock_as(id(resource), secs(ttl), who, now);
                        check_refusal(&b, who, &result)?;
                        if let Ok(granted) = result {
                            prop_assert_eq!(&granted.lease.meta.owner, &who.name);
                        }
                    }
                    Op::LockTag { tag, ttl } => {
                        let selector = Selector::Matching(Criteria::Tags(vec![TAGS[tag].into()]));
                        let result = b.lock_matching_as(&selector, secs(ttl), who, now);
                        check_refusal(&b, who, &result)?;
                    }
                    Op::LockGroups { tag, quantity, ttl } => {
                        let result = b.lock_groups_as(&[group(&[TAGS[tag]], quantity)], secs(ttl), who, now);
                        check_refusal(&b, who, &result)?;
                    }
                    Op::Unlock { pick: p } => {
                        let tokens: Vec<(ResourceId, LockToken, Option<Arc<str>>)> = b.resources()
                            .filter_map(|r| r.lease().map(|l| (r.id, l.token, l.meta.owner.clone())))
                            .collect();
                        if let Some((r, token, owner)) = pick(&tokens, p) {
                            let result = b.unlock_as(r, Some(&token.reveal()), who, now);
                            if who.may_act_on(owner.as_ref()) {
                                result.unwrap();
                            } else {
                                prop_assert_eq!(result, Err(DomainError::NotOwner { what: Owning::Lock(r) }));
                            }
                        }
                    }
                    Op::Extend { pick: p, ttl } => {
                        let tokens: Vec<(ResourceId, LockToken)> = b.resources()
                            .filter_map(|r| r.lease().map(|l| (r.id, l.token))).collect();
                        if let Some((r, token)) = pick(&tokens, p) {
                            let result = b.extend_as(r, Some(&token.reveal()), secs(ttl), who, now);
                            check_refusal(&b, who, &result)?;
                        }
                    }
                    Op::UnlockBatch { picks } => {
                        let tokens: Vec<String> = b.resources()
                            .filter_map(|r| r.lease().map(|l| l.token.reveal())).collect();
                        let batch: Vec<String> = picks.iter().filter_map(|&p| pick(&tokens, p)).collect();
                        let result = b.unlock_batch_as(&batch, who, now);
                        check_refusal(&b, who, &result)?;
                    }
                    Op::Reserve { tag, quantity, second, priority, ttl, wait, auto_claim } => {
                        let mut groups = vec![group(&[TAGS[tag]], quantity)];
                        if let Some(t) = second {
                            groups.push(group(&[TAGS[t]], 1));
                        }
                        let request = ReservationRequest {
                            groups,
                            priority: Priority::new(priority).unwrap(),
                            ttl: secs(ttl),
                            max_wait: secs(wait),
                            auto_claim,
                            meta: LockMeta::default(),
                        };
                        let result = b.reserve_as(request, who, now);
                        check_refusal(&b, who, &result)?;
                        if let Ok(r) = result {
                            prop_assert_eq!(&b.reservation(r).unwrap().request.meta.owner, &who.name);
                            reservations.push(r);
                        }
                    }
                    Op::Claim { pick: p } => {
                        if let Some(r) = pick(&reservations, p) {
                            let result = b.claim_as(r, who, now).map(|_| ());
                            check_refusal(&b, who, &result)?;
                        }
                    }
                    Op::Cancel { pick: p } => {
                        if let Some(r) = pick(&reservations, p) {
                            let result = b.cancel_as(r, who, now);
                            check_refusal(&b, who, &result)?;
                        }
                    }
                    Op::Advance { secs } => {
                        now = now.checked_add(Duration::from_secs(secs)).unwrap();
                        b.expire_due(now);
                    }
                    Op::Unavailable { resource, from_in, lasts } => {
                        let from = from_in.map(|s| now.checked_add(Duration::from_secs(s)).unwrap());
                        let until = lasts.map(|s| {
                            from.unwrap_or(now).checked_add(Duration::from_secs(s)).unwrap()
                        });
                        let window = Unavailability { reason: "maintenance".into(), from, until };
                        let _ = b.mark_unavailable(id(resource), window, now);
                    }
                    Op::Available { resource } => { let _ = b.mark_available(id(resource), now); }
                    Op::ForceUnlock { pick: p } => {
                        let locked: Vec<ResourceId> = b.resources()
                            .filter(|r| r.is_locked()).map(|r| r.id).collect();
                        if let Some(r) = pick(&locked, p) {
                            b.force_unlock(r, "stuck".into(), now).unwrap();
                        }
                    }
                    Op::Add { tag } => {
                        added += 1;
                        let spec = ResourceSpec::named(format!("new-{added}")).with_tags(&[TAGS[tag]]);
                        b.add_resource(spec, now).unwrap();
                    }
                    Op::Remove { resource, force } => {
                        let _ = b.remove_resource(id(resource), force.then_some("retired"), now);
                    }
                    Op::Retag { resource, tag } => {
                        let patch = ResourcePatch { tags: Some(vec![TAGS[tag].into()]), ..ResourcePatch::default() };
                        let _ = b.update_resource(id(resource), patch, now);
                    }
                }
                for event in b.drain_events() {
                    match event {
                        Event::Locked { resource, fencing, expires_at, .. } => {
                            prop_assert!(
                                holder.insert(resource, fencing).is_none(),
                                "{resource} granted while held"
                            );
                            // A lock still held was granted in service, and ends before
                            // the window (if any) opens.
                            let r = b.resource(resource).unwrap();
                            if r.lease().is_some_and(|l| l.fencing == fencing) {
                                prop_assert!(
                                    r.ends_before_maintenance(expires_at),
                                    "{resource} lent across its maintenance window"
                                );
                            }
                        }
                        Event::Unlocked { resource, fencing, .. }
                        | Event::Expired { resource, fencing, .. }
                        | Event::ForceUnlocked { resource, fencing, .. } => {
                            prop_assert_eq!(holder.remove(&resource), Some(fencing));
                        }
                        _ => {}
                    }
                }
                b.check_invariants();
                prop_assert!(b.is_settled(now), "something servable is left waiting");
                image.apply(&b.take_delta().expect("recording"));
                check_restores(&b, &image, now)?;
                // Places are computed without walking the queue: they must be the walk's.
                for (place, r) in b.queue_order(now).enumerate() {
                    prop_assert_eq!(b.queue_position(r, now), Some(place + 1));
                }
            }
        }
    }
}
