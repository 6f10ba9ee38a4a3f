//! Ownership and caps in the broker: fixed timestamps, explicit principals.

use super::test_support::{T0, at, id, request, secs};
use super::*;
use crate::domain::{OwnerCaps, Seeded};

fn lab() -> Broker {
    Broker::new([
        ResourceSpec::named("board-1").with_tags(&["board"]),
        ResourceSpec::named("board-2").with_tags(&["board"]),
        ResourceSpec::named("board-3").with_tags(&["board"]),
    ])
}

fn capped(name: &str, max_locks: Option<u32>, max_pending: Option<u32>) -> Principal {
    Principal {
        caps: OwnerCaps {
            max_locks,
            max_pending,
        },
        ..Principal::named(name)
    }
}

fn admin() -> Principal {
    Principal {
        overrides: true,
        ..Principal::named("root")
    }
}

#[test]
fn a_lock_belongs_to_its_maker_and_is_counted_until_it_ends() {
    let mut b = lab();
    let alice = Principal::named("alice");
    let granted = b.lock_as(id(1), secs(60), &alice, T0).unwrap();
    assert_eq!(granted.lease.meta.owner.as_deref(), Some("alice"));
    b.lock_as(id(2), secs(30), &alice, T0).unwrap();
    assert_eq!(b.owned("alice").locks, 2);
    b.unlock_as(id(1), Some(&granted.token.reveal()), &alice, at(1))
        .unwrap();
    assert_eq!(b.owned("alice").locks, 1);
    b.expire_due(at(30));
    assert_eq!(b.owned("alice"), Owned::default());
    b.check_invariants();
}

#[test]
fn without_auth_nothing_is_owned_and_anyone_with_the_token_acts() {
    let mut b = lab();
    let granted = b
        .lock_as(id(1), secs(60), &Principal::anyone(), T0)
        .unwrap();
    assert_eq!(granted.lease.meta.owner, None);
    let token = granted.token.reveal();
    b.extend_as(id(1), Some(&token), secs(90), &Principal::named("bob"), T0)
        .expect("an unowned lock: whoever has the token");
    b.unlock(id(1), Some(&token), T0).unwrap();
    b.check_invariants();
}

#[test]
fn another_users_unlock_or_extend_with_the_right_token_is_not_owner_and_an_admins_is_fine() {
    let mut b = lab();
    let alice = Principal::named("alice");
    let bob = Principal::named("bob");
    let token = b
        .lock_as(id(1), secs(60), &alice, T0)
        .unwrap()
        .token
        .reveal();
    let not_owner = Err(DomainError::NotOwner {
        what: Owning::Lock(id(1)),
    });
    assert_eq!(b.unlock_as(id(1), Some(&token), &bob, T0), not_owner);
    assert_eq!(
        b.extend_as(id(1), Some(&token), secs(90), &bob, T0)
            .map(|_| ()),
        not_owner
    );
    assert_eq!(
        b.unlock_batch_as(std::slice::from_ref(&token), &bob, T0),
        Err(DomainError::NotOwner {
            what: Owning::Lock(id(1))
        })
    );
    // A wrong token is still a wrong token: ownership is only checked for the right one.
    assert!(matches!(
        b.unlock_as(id(1), Some("nope"), &bob, T0),
        Err(DomainError::InvalidToken { .. })
    ));
    assert!(
        b.resource(id(1)).unwrap().is_locked(),
        "nothing was released"
    );
    b.extend_as(id(1), Some(&token), secs(90), &admin(), T0)
        .unwrap();
    b.unlock_as(id(1), Some(&token), &admin(), T0).unwrap();
    b.check_invariants();
}

#[test]
fn a_reservation_and_the_locks_it_is_granted_belong_to_its_maker() {
    let mut b = lab();
    let alice = Principal::named("alice");
    let bob = Principal::named("bob");
    b.lock_as(id(1), secs(60), &bob, T0).unwrap();
    b.lock_as(id(2), secs(60), &bob, T0).unwrap();
    b.lock_as(id(3), secs(60), &bob, T0).unwrap();
    let r = b.reserve_as(request(&["board"], 2), &alice, T0).unwrap();
    assert_eq!(b.owned("alice").pending, 1);
    let not_owner = DomainError::NotOwner {
        what: Owning::Reservation(r),
    };
    assert_eq!(b.cancel_as(r, &bob, at(1)), Err(not_owner.clone()));
    b.expire_due(at(60)); // bob's locks run out: alice's reservation is served
    assert_eq!(
        b.owned("alice"),
        Owned {
            locks: 2,
            pending: 0
        }
    );
    let reservation = b.reservation(r).unwrap();
    for allocation in &reservation.allocations {
        let lease = b.resource(allocation.resource).unwrap().lease().unwrap();
        assert_eq!(lease.meta.owner.as_deref(), Some("alice"));
    }
    assert_eq!(b.claim_as(r, &bob, at(61)).map(|_| ()), Err(not_owner));
    b.claim_as(r, &alice, at(61)).unwrap();
    b.check_invariants();
}

#[test]
fn a_lock_over_the_cap_is_refused_and_counted_again_once_one_ends() {
    let mut b = lab();
    let carol = capped("carol", Some(2), None);
    let first = b.lock_as(id(1), secs(60), &carol, T0).unwrap();
    b.lock_as(id(2), secs(600), &carol, T0).unwrap();
    let over = b.lock_as(id(3), secs(60), &carol, T0);
    assert_eq!(
        over.map(|_| ()),
        Err(DomainError::TooManyLocks {
            held: 2,
            wanted: 1,
            max: 2,
            retry_after_secs: CAP_RETRY_SECS
        })
    );
    assert!(!b.resource(id(3)).unwrap().is_locked());
    let selector = Selector::Matching(Criteria::Tags(vec!["board".into()]));
    assert!(matches!(
        b.lock_matching_as(&selector, secs(60), &carol, T0),
        Err(DomainError::TooManyLocks { .. })
    ));
    // Another caller is not charged for carol's locks.
    b.lock_as(id(3), secs(60), &capped("dave", Some(1), None), T0)
        .unwrap();
    b.unlock_as(id(1), Some(&first.token.reveal()), &carol, T0)
        .unwrap();
    b.expire_due(at(60)); // dave's lock on 3 ends
    let groups = [test_support::group(&["board"], 2)];
    assert!(
        matches!(
            b.lock_groups_as(&groups, secs(60), &carol, at(60)),
            Err(DomainError::TooManyLocks {
                held: 1,
                wanted: 2,
                ..
            })
        ),
        "every lock of a group counts"
    );
    b.lock_as(id(1), secs(60), &carol, at(60)).unwrap();
    b.check_invariants();
}

#[test]
fn a_reservation_over_the_pending_cap_is_refused() {
    let mut b = lab();
    let hog = Principal::named("hog");
    for n in 1..=3 {
        b.lock_as(id(n), secs(60), &hog, T0).unwrap();
    }
    let erin = capped("erin", None, Some(1));
    b.reserve_as(request(&["board"], 1), &erin, T0).unwrap();
    assert_eq!(
        b.reserve_as(request(&["board"], 1), &erin, T0),
        Err(DomainError::TooManyReservations {
            pending: 1,
            max: 1,
            retry_after_secs: CAP_RETRY_SECS
        })
    );
    b.expire_due(at(60)); // served: no longer waiting
    assert_eq!(b.owned("erin").pending, 0);
    b.reserve_as(request(&["board"], 1), &erin, at(60)).unwrap();
    b.check_invariants();
}

#[test]
fn ownership_and_counts_survive_an_image_round_trip() {
    let mut b = lab();
    let alice = Principal::named("alice");
    b.lock_as(id(1), secs(60), &alice, T0).unwrap();
    b.lock_as(id(2), secs(60), &Principal::named("bob"), T0)
        .unwrap();
    b.lock_as(id(3), secs(60), &alice, T0).unwrap();
    b.reserve_as(request(&["board"], 1), &alice, T0).unwrap();
    let restored = Broker::restore(
        b.image(),
        Policy::default(),
        Box::new(Seeded::new(3)),
        false,
    );
    assert_eq!(restored.image(), b.image());
    assert_eq!(
        restored.owned("alice"),
        Owned {
            locks: 2,
            pending: 1
        }
    );
    assert_eq!(restored.owned("bob").locks, 1);
    restored.check_invariants();
}
