//! Query tests: every filter, each sort in both orders, pagination edges, and a check of
//! every strategy (index walk, partial sort, name search) against a naive model.

use super::*;
use crate::domain::broker::admin::ResourcePatch;
use crate::domain::broker::maintenance::Unavailability;
use crate::domain::broker::test_support::*;
use crate::domain::expr::Expr;
use crate::domain::reservation::{Group, ReservationRequest};

fn expr(text: &str) -> Criteria {
    Criteria::Expr(Expr::parse(text).unwrap())
}

/// 1 board-1 [board, arm], 2 board-2 [board, x86], 3 Board-3 [board, arm, flaky],
/// 4 printer [printer], 5 board-10 [board, arm], 6 Ärger-Box (no tags).
///
/// Locked at T0: 2 for 300 s, 4 for 300 s (the same expiry as 2), 5 for 100 s.
fn lab() -> Broker {
    let mut b = Broker::new([
        ResourceSpec::named("board-1").with_tags(&["board", "arm"]),
        ResourceSpec::named("board-2").with_tags(&["board", "x86"]),
        ResourceSpec::named("Board-3").with_tags(&["board", "arm", "flaky"]),
        ResourceSpec::named("printer").with_tags(&["printer"]),
        ResourceSpec::named("board-10").with_tags(&["board", "arm"]),
        ResourceSpec::named("Ärger-Box"),
    ]);
    b.lock(id(2), secs(300), T0).unwrap();
    b.lock(id(4), secs(300), T0).unwrap();
    b.lock(id(5), secs(100), T0).unwrap();
    b.check_invariants();
    b
}

/// Opens a maintenance window on `n` now, until an operator ends it.
fn take_out_of_service(b: &mut Broker, n: u32) {
    let window = Unavailability {
        reason: "repair".to_owned(),
        from: None,
        until: None,
    };
    b.mark_unavailable(id(n), window, T0).unwrap();
    b.check_invariants();
}

fn ids(page: &ResourcePage) -> Vec<u32> {
    page.items.iter().map(|r| r.id.get()).collect()
}

fn query(b: &Broker, q: ResourceQuery) -> (usize, Vec<u32>) {
    let page = b.query_resources(&q);
    (page.total, ids(&page))
}

#[test]
fn the_default_query_lists_every_resource_in_id_order() {
    let b = lab();

    let page = b.query_resources(&ResourceQuery::default());

    assert_eq!(page.total, 6);
    assert_eq!(ids(&page), [1, 2, 3, 4, 5, 6]);
    assert_eq!(*page.items[1], *b.resource(id(2)).unwrap());
}

#[test]
fn locked_keeps_only_locked_or_only_free_resources() {
    let b = lab();
    let locked = |l| ResourceQuery {
        locked: Some(l),
        ..ResourceQuery::default()
    };

    assert_eq!(query(&b, locked(true)), (3, vec![2, 4, 5]));
    assert_eq!(query(&b, locked(false)), (3, vec![1, 3, 6]));
}

#[test]
fn in_service_separates_resources_in_maintenance_from_the_others() {
    let mut b = lab();
    let in_service = |s| ResourceQuery {
        in_service: Some(s),
        ..ResourceQuery::default()
    };
    assert_eq!(query(&b, in_service(false)), (0, vec![]));
    assert_eq!(query(&b, in_service(true)).0, 6);

    take_out_of_service(&mut b, 1);
    take_out_of_service(&mut b, 4); // locked: its lock runs on, but it is out of service

    assert_eq!(query(&b, in_service(false)), (2, vec![1, 4]));
    assert_eq!(query(&b, in_service(true)), (4, vec![2, 3, 5, 6]));
    let free_in_service = ResourceQuery {
        locked: Some(false),
        in_service: Some(true),
        ..ResourceQuery::default()
    };
    assert_eq!(query(&b, free_in_service.clone()), (2, vec![3, 6]));

    b.mark_available(id(1), at(10)).unwrap();

    assert_eq!(query(&b, in_service(false)), (1, vec![4]));
    assert_eq!(query(&b, free_in_service), (3, vec![1, 3, 6]));
}

#[test]
fn tags_must_all_match_and_combine_with_an_expression_by_and() {
    let b = lab();
    let with = |criteria| ResourceQuery {
        criteria,
        ..ResourceQuery::default()
    };

    assert_eq!(query(&b, with(vec![tags(&["board"])])).1, [1, 2, 3, 5]);
    assert_eq!(query(&b, with(vec![tags(&["board", "arm"])])).1, [1, 3, 5]);
    assert_eq!(query(&b, with(vec![tags(&["board", "nope"])])), (0, vec![]));
    assert_eq!(query(&b, with(vec![expr("arm && !flaky")])).1, [1, 5]);
    // No required tag: every resource is a candidate.
    assert_eq!(query(&b, with(vec![expr("!board")])).1, [4, 6]);
    assert_eq!(query(&b, with(vec![expr("printer || x86")])).1, [2, 4]);
    assert_eq!(
        query(&b, with(vec![tags(&["board"]), expr("!arm")])),
        (1, vec![2])
    );
}

#[test]
fn tags_combine_with_the_lock_state_filter() {
    let b = lab();

    let free_arm = ResourceQuery {
        locked: Some(false),
        in_service: Some(true),
        criteria: vec![tags(&["arm"])],
        ..ResourceQuery::default()
    };
    let locked_arm = ResourceQuery {
        locked: Some(true),
        criteria: vec![tags(&["arm"])],
        ..ResourceQuery::default()
    };

    assert_eq!(query(&b, free_arm), (2, vec![1, 3]));
    assert_eq!(query(&b, locked_arm), (1, vec![5]));
}

#[test]
fn name_matches_a_substring_ignoring_case() {
    let b = lab();
    let named = |n: &str| ResourceQuery {
        name: Some(n.to_owned()),
        ..ResourceQuery::default()
    };

    assert_eq!(query(&b, named("BOARD-1")).1, [1, 5]);
    assert_eq!(query(&b, named("oard")).1, [1, 2, 3, 5]);
    assert_eq!(query(&b, named("board-3")).1, [3]);
    assert_eq!(query(&b, named("ärger")).1, [6]);
    assert_eq!(query(&b, named("r-b")).1, [6]);
    assert_eq!(query(&b, named("")).1, [1, 2, 3, 4, 5, 6]);
    // A match must lie inside one name, not across two.
    assert_eq!(query(&b, named("1board")).1, Vec::<u32>::new());
    assert_eq!(query(&b, named("board-1\0board")).1, Vec::<u32>::new());
}

#[test]
fn name_is_checked_per_candidate_when_a_tag_narrows_the_lab() {
    // 40 nodes, `rare` on three: the tag's candidates are under an eighth of the lab, so
    // each candidate's name is searched instead of every name at once.
    let mut b = Broker::new((1..=40).map(|i| {
        let spec = ResourceSpec::named(format!("Node-{i}"));
        if i <= 3 {
            spec.with_tags(&["rare"])
        } else {
            spec
        }
    }));
    b.lock(id(2), secs(60), T0).unwrap();
    let node_1 = |criteria| ResourceQuery {
        name: Some("node-1".to_owned()),
        criteria,
        ..ResourceQuery::default()
    };

    assert_eq!(query(&b, node_1(vec![tags(&["rare"])])), (1, vec![1]));
    assert_eq!(query(&b, node_1(vec![])).0, 11); // 1, 10-19
    let rare_node = ResourceQuery {
        name: Some("NODE".to_owned()),
        locked: Some(false),
        ..node_1(vec![tags(&["rare"])])
    };
    assert_eq!(query(&b, rare_node), (2, vec![1, 3]));
}

#[test]
fn sort_by_name_is_byte_order_in_both_directions() {
    let b = lab();
    let by_name = |order| ResourceQuery {
        sort: ResourceSort::Name,
        order,
        ..ResourceQuery::default()
    };

    // "Board-3" < "board-1" < "board-10" < "board-2" < "printer" < "Ärger-Box".
    assert_eq!(query(&b, by_name(SortOrder::Asc)).1, [3, 1, 5, 2, 4, 6]);
    assert_eq!(query(&b, by_name(SortOrder::Desc)).1, [6, 4, 2, 5, 1, 3]);
}

#[test]
fn sort_by_lock_expiry_puts_free_resources_last_in_both_directions() {
    let b = lab();
    let by_expiry = |order| ResourceQuery {
        sort: ResourceSort::LockExpiresAt,
        order,
        ..ResourceQuery::default()
    };

    // 5 ends first (100 s); 2 and 4 end together (300 s): ties by id in the order.
    assert_eq!(query(&b, by_expiry(SortOrder::Asc)).1, [5, 2, 4, 1, 3, 6]);
    assert_eq!(query(&b, by_expiry(SortOrder::Desc)).1, [4, 2, 5, 6, 3, 1]);
}

#[test]
fn sort_by_id_descending_reverses_the_list() {
    let b = lab();

    let desc = ResourceQuery {
        order: SortOrder::Desc,
        ..ResourceQuery::default()
    };
    let desc_arm = ResourceQuery {
        criteria: vec![tags(&["arm"])],
        ..desc.clone()
    };

    assert_eq!(query(&b, desc), (6, vec![6, 5, 4, 3, 2, 1]));
    assert_eq!(query(&b, desc_arm), (3, vec![5, 3, 1]));
}

#[test]
fn pages_split_the_list_and_the_last_one_may_be_partial() {
    let b = lab();
    let page = |number, limit| ResourceQuery {
        page: Page { number, limit },
        ..ResourceQuery::default()
    };

    assert_eq!(query(&b, page(1, 4)), (6, vec![1, 2, 3, 4]));
    assert_eq!(query(&b, page(2, 4)), (6, vec![5, 6]));
    assert_eq!(query(&b, page(3, 4)), (6, vec![]));
    assert_eq!(query(&b, page(u64::MAX, 1000)), (6, vec![]));
    let past_the_end_by_name = ResourceQuery {
        sort: ResourceSort::Name,
        ..page(7, 1)
    };
    assert_eq!(query(&b, past_the_end_by_name), (6, vec![]));
}

#[test]
fn a_query_sees_the_lock_state_as_of_the_last_expiry() {
    let mut b = lab();
    b.expire_due(at(100));

    let locked = ResourceQuery {
        locked: Some(true),
        sort: ResourceSort::LockExpiresAt,
        ..ResourceQuery::default()
    };

    assert_eq!(query(&b, locked), (2, vec![2, 4]));
}

#[test]
fn sort_by_lock_expiry_follows_an_extended_lock() {
    let mut b = lab();
    let token = b.lock(id(1), secs(50), T0).unwrap().token;
    let by_expiry = ResourceQuery {
        locked: Some(true),
        sort: ResourceSort::LockExpiresAt,
        ..ResourceQuery::default()
    };
    assert_eq!(query(&b, by_expiry.clone()).1, [1, 5, 2, 4]);

    b.extend(id(1), Some(&token.reveal()), secs(400), at(10))
        .unwrap();

    assert_eq!(query(&b, by_expiry).1, [5, 2, 4, 1]);
    b.check_invariants();
}

#[test]
fn queries_follow_resources_added_retagged_and_removed() {
    let mut b = lab();
    let by_name = ResourceQuery {
        sort: ResourceSort::Name,
        ..ResourceQuery::default()
    };
    // Build the name order before the changes, so that they must keep it in step.
    assert_eq!(query(&b, by_name.clone()).1, [3, 1, 5, 2, 4, 6]);

    let added = b
        .add_resource(
            ResourceSpec::named("board-0").with_tags(&["board", "x86"]),
            T0,
        )
        .unwrap();
    let retag = ResourcePatch {
        tags: Some(vec!["board".to_owned(), "x86".to_owned()]),
        ..ResourcePatch::default()
    };
    b.update_resource(id(1), retag, T0).unwrap();
    b.remove_resource(id(6), None, T0).unwrap();

    assert_eq!(added, id(7));
    assert_eq!(query(&b, by_name).1, [3, 7, 1, 5, 2, 4]);
    let x86 = ResourceQuery {
        criteria: vec![tags(&["x86"])],
        ..ResourceQuery::default()
    };
    assert_eq!(query(&b, x86), (3, vec![1, 2, 7]));
    let named = ResourceQuery {
        name: Some("r-b".to_owned()),
        ..ResourceQuery::default()
    };
    assert_eq!(query(&b, named).0, 0);
    b.check_invariants();
}

/// The answer a naive implementation gives: filter every resource, sort them all.
fn model(b: &Broker, q: &ResourceQuery) -> (usize, Vec<u32>) {
    let needle = q.name.as_deref().map(str::to_lowercase);
    let mut all: Vec<&Resource> = b
        .resources()
        .filter(|r| q.locked.is_none_or(|l| r.is_locked() == l))
        .filter(|r| q.in_service.is_none_or(|s| r.in_service() == s))
        .filter(|r| q.criteria.iter().all(|c| c.matches(r)))
        .filter(|r| {
            needle
                .as_deref()
                .is_none_or(|n| r.spec.name.to_lowercase().contains(n))
        })
        .collect();
    let directed = |o: Ordering| match q.order {
        SortOrder::Asc => o,
        SortOrder::Desc => o.reverse(),
    };
    all.sort_by(|a, b| match q.sort {
        ResourceSort::Id => directed(a.id.cmp(&b.id)),
        ResourceSort::Name => directed(a.spec.name.cmp(&b.spec.name)),
        ResourceSort::LockExpiresAt => match (a.lease(), b.lease()) {
            (Some(x), Some(y)) => directed((x.expires_at, a.id).cmp(&(y.expires_at, b.id))),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => directed(a.id.cmp(&b.id)),
        },
    });
    let total = all.len();
    let offset = (q.page.number as usize - 1) * q.page.limit;
    let page = all
        .iter()
        .skip(offset)
        .take(q.page.limit)
        .map(|r| r.id.get())
        .collect();
    (total, page)
}

#[test]
fn every_strategy_agrees_with_a_naive_model_on_every_page() {
    // 300 resources with names out of id order, three tags of different rarity, a third
    // locked with expiries that tie, some out of service. Page sizes from 1 to the whole
    // lab make each sort take both its walk and its partial sort.
    let mut b = Broker::new((1..=300u32).map(|i| {
        let name = format!("{}-{i}", ["Zeta", "alpha", "Mid", "beta"][(i % 4) as usize]);
        let mut tags = vec!["all"];
        if i % 3 == 0 {
            tags.push("third");
        }
        if i % 50 == 0 {
            tags.push("rare");
        }
        ResourceSpec::named(name).with_tags(&tags)
    }));
    for i in (1..=300u32).filter(|i| i % 3 != 1) {
        b.lock(id(i), secs(60 + u64::from(i * 7 % 5) * 60), T0)
            .unwrap();
    }
    for i in [5, 6, 50, 150] {
        take_out_of_service(&mut b, i);
    }
    let filters = [
        ResourceQuery::default(),
        ResourceQuery {
            locked: Some(true),
            ..ResourceQuery::default()
        },
        ResourceQuery {
            locked: Some(false),
            in_service: Some(true),
            criteria: vec![tags(&["third"])],
            ..ResourceQuery::default()
        },
        ResourceQuery {
            in_service: Some(false),
            ..ResourceQuery::default()
        },
        ResourceQuery {
            locked: Some(false),
            in_service: Some(true),
            ..ResourceQuery::default()
        },
        ResourceQuery {
            criteria: vec![tags(&["third"])],
            ..ResourceQuery::default()
        },
        ResourceQuery {
            criteria: vec![tags(&["rare"])],
            ..ResourceQuery::default()
        },
        ResourceQuery {
            criteria: vec![expr("all && !third")],
            name: Some("ALPHA-1".to_owned()),
            ..ResourceQuery::default()
        },
        ResourceQuery {
            criteria: vec![tags(&["rare"])],
            name: Some("a-".to_owned()),
            ..ResourceQuery::default()
        },
    ];
    for filter in filters {
        for sort in [
            ResourceSort::Id,
            ResourceSort::Name,
            ResourceSort::LockExpiresAt,
        ] {
            for order in [SortOrder::Asc, SortOrder::Desc] {
                for limit in [1, 7, 50, 300] {
                    // The first pages, one in the middle, the last, and one past it.
                    let last = 300u64.div_ceil(limit as u64);
                    for number in [1, 2, 3, last / 2, last, last + 1] {
                        let q = ResourceQuery {
                            sort,
                            order,
                            page: Page {
                                number: number.max(1),
                                limit,
                            },
                            ..filter.clone()
                        };
                        assert_eq!(b.query_resources(&q).total, model(&b, &q).0, "{q:?}");
                        assert_eq!(query(&b, q.clone()), model(&b, &q), "{q:?}");
                    }
                }
            }
        }
    }
}

// Reservations.

fn request(criteria: Criteria, priority: u64) -> ReservationRequest {
    ReservationRequest {
        groups: vec![Group {
            criteria,
            quantity: 1,
        }],
        priority: Priority::new(priority).unwrap(),
        ttl: secs(600),
        max_wait: secs(3_600),
        auto_claim: false,
        meta: LockMeta::default(),
    }
}

/// On [`lab`] (1 and 3 free arm boards, 6 free and untagged): `fulfilled` takes board 1,
/// `claimed` board 3 (then claimed); `urgent` (priority 1, arm) and `later` (priority 5,
/// expression `x86 && board`) wait.
struct Reservations {
    b: Broker,
    fulfilled: ReservationId,
    claimed: ReservationId,
    later: ReservationId,
    urgent: ReservationId,
}

fn reservations() -> Reservations {
    let mut b = lab();
    let fulfilled = b.reserve(request(tags(&["arm"]), 5), T0).unwrap();
    let claimed = b.reserve(request(tags(&["arm", "flaky"]), 5), T0).unwrap();
    b.claim(claimed, T0).unwrap();
    let later = b.reserve(request(expr("x86 && board"), 5), T0).unwrap();
    let urgent = b.reserve(request(tags(&["arm"]), 1), T0).unwrap();
    b.check_invariants();
    Reservations {
        b,
        fulfilled,
        claimed,
        later,
        urgent,
    }
}

fn listed(b: &Broker, q: ReservationQuery) -> (usize, Vec<(ReservationId, Option<usize>)>) {
    let page = b.query_reservations(&q, T0);
    let items = page.items.iter().map(|(r, place)| (r.id, *place)).collect();
    (page.total, items)
}

#[test]
fn reservations_list_pending_in_queue_order_then_the_others_by_creation() {
    let r = reservations();

    let all = listed(&r.b, ReservationQuery::default());

    assert_eq!(
        all,
        (
            4,
            vec![
                (r.urgent, Some(1)),
                (r.later, Some(2)),
                (r.fulfilled, None),
                (r.claimed, None),
            ]
        )
    );
}

#[test]
fn reservations_filter_by_status_keeping_their_place_in_the_queue() {
    let r = reservations();
    let with = |statuses: &[ReservationStatus]| ReservationQuery {
        statuses: statuses.to_vec(),
        ..ReservationQuery::default()
    };

    assert_eq!(
        listed(&r.b, with(&[ReservationStatus::Claimed])),
        (1, vec![(r.claimed, None)])
    );
    assert_eq!(
        listed(
            &r.b,
            with(&[ReservationStatus::Fulfilled, ReservationStatus::Claimed])
        )
        .1,
        [(r.fulfilled, None), (r.claimed, None)]
    );
    let later_only = ReservationQuery {
        priority: Some(Priority::DEFAULT),
        ..with(&[ReservationStatus::Pending])
    };
    assert_eq!(listed(&r.b, later_only), (1, vec![(r.later, Some(2))]));
}

#[test]
fn reservations_filter_by_the_tags_their_groups_ask_for() {
    let r = reservations();
    let tagged = |t: &[&str]| ReservationQuery {
        tags: t.iter().map(|s| s.to_string()).collect(),
        ..ReservationQuery::default()
    };

    let arm = listed(&r.b, tagged(&["arm"]));
    let x86 = listed(&r.b, tagged(&["x86"]));
    let board = listed(&r.b, tagged(&["board"]));
    let flaky_arm = listed(&r.b, tagged(&["flaky", "arm"]));

    assert_eq!(arm.0, 3);
    assert_eq!(
        arm.1.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [r.urgent, r.fulfilled, r.claimed]
    );
    // An expression group asks for the tags it requires.
    assert_eq!(x86, (1, vec![(r.later, Some(2))]));
    assert_eq!(board, x86);
    assert_eq!(flaky_arm, (1, vec![(r.claimed, None)]));
}

#[test]
fn reservations_filter_by_priority_and_paginate() {
    let r = reservations();

    let urgent = ReservationQuery {
        priority: Some(Priority::HIGHEST),
        ..ReservationQuery::default()
    };
    let second_page = ReservationQuery {
        page: Page {
            number: 2,
            limit: 3,
        },
        ..ReservationQuery::default()
    };
    let past_the_end = ReservationQuery {
        page: Page {
            number: 3,
            limit: 3,
        },
        ..ReservationQuery::default()
    };

    assert_eq!(listed(&r.b, urgent), (1, vec![(r.urgent, Some(1))]));
    assert_eq!(listed(&r.b, second_page), (4, vec![(r.claimed, None)]));
    assert_eq!(listed(&r.b, past_the_end), (4, vec![]));
}
