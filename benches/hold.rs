//! How long each kind of request holds the broker mutex, at lab scale: 100 000 resources
//! and 10 000 waiting reservations (issue 9, item 3).
//!
//! Every request goes through [`BrokerHandle`], as the HTTP handler of that request does,
//! so what is measured includes whatever the handle's closure does under the lock
//! (expiring what is due, serving the queue, copying the answer out). The figure is the
//! longest single hold of the mutex during the request
//! ([`rentabot::runtime::handle::take_longest_hold`]): how long every other request
//! waits behind it. Rendering the answer happens after the lock is released and is not
//! counted. Whatever a scenario changes is put back after it, unmeasured.
//!
//! The lab: `board-1`..`board-100000`, each tagged `bench`, `group-{i % 10}`,
//! `pct-{i % 100}` and `parity-{i % 2}`. Every even resource is locked for a day. 10 000
//! reservations wait for `pct-8` (even, so all locked), one resource each, every one with
//! a different TTL (600 + k s): 10 000 different requests, which no release of an odd
//! resource can serve, so a release must pass them all ("waiters that want nothing").
//! Behind them one more waits for 10 000 `parity-0` (50 000 match, all locked).
//! The clock is manual and only the mass-expiry case moves it (1 s per iteration).
//!
//! Run: `cargo bench --bench hold` (about 3 minutes, most of it building the lab).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rentabot::domain::{
    Broker, Criteria, Group, LockMeta, Page, Policy, Priority, ReservationId, ReservationQuery,
    ReservationRequest, ReservationStatus, ResourceId, ResourcePatch, ResourceQuery, ResourceSort,
    ResourceSpec, Selector, Timestamp, Ttl, Unavailability,
};
use rentabot::metrics::Metrics;
use rentabot::runtime::handle::take_longest_hold;
use rentabot::runtime::{BrokerHandle, ManualClock};

const N: u32 = 100_000;
const WAITERS: u64 = 10_000;
const T0: Timestamp = Timestamp::from_millis(1_764_000_000_000);
const DAY: u64 = 86_400;

fn ttl(secs: u64) -> Ttl {
    Ttl::from_secs(secs).expect("a valid ttl")
}

fn tags(tag: &str) -> Criteria {
    Criteria::Tags(vec![tag.to_owned()])
}

fn spec(i: u32, extra: Option<&str>) -> ResourceSpec {
    let (group, pct, parity) = (
        format!("group-{}", i % 10),
        format!("pct-{}", i % 100),
        format!("parity-{}", i % 2),
    );
    let mut t = vec!["bench", group.as_str(), pct.as_str(), parity.as_str()];
    t.extend(extra);
    ResourceSpec::named(format!("board-{i}"))
        .with_tags(&t)
        .with_max_lock_duration(ttl(DAY))
}

fn specs(extra_every: Option<u32>) -> Vec<ResourceSpec> {
    (1..=N)
        .map(|i| spec(i, extra_every.filter(|e| i % e == 0).map(|_| "extra")))
        .collect()
}

fn request(
    criteria: Criteria,
    quantity: u32,
    ttl_secs: u64,
    auto_claim: bool,
) -> ReservationRequest {
    ReservationRequest {
        groups: vec![Group { criteria, quantity }],
        priority: Priority::DEFAULT,
        ttl: ttl(ttl_secs),
        max_wait: ttl(DAY),
        auto_claim,
        meta: LockMeta::default(),
    }
}

struct Lab {
    handle: BrokerHandle,
    clock: Arc<ManualClock>,
    /// The last of the 10 000 `pct-8` waiters.
    deepest: ReservationId,
    /// Behind them, one waiting for 10 000 of the 50 000 (locked) `parity-0`.
    broad: ReservationId,
}

fn lab() -> Lab {
    let policy = Policy {
        // No aging step during the run: the clock moves only for the mass expiry.
        aging: Duration::from_secs(30 * DAY),
        // Room for the 10 001 waiters and the ones the scenarios add.
        max_pending: 20_000,
        ..Policy::default()
    };
    let mut broker = Broker::with_policy(specs(None), policy);
    for i in (2..=N).step_by(2) {
        broker.lock(ResourceId::new(i), ttl(DAY), T0).expect("free");
    }
    let mut deepest = None;
    for k in 0..WAITERS {
        let id = broker
            .reserve(request(tags("pct-8"), 1, 600 + k, false), T0)
            .expect("satisfiable");
        deepest = Some(id);
    }
    let broad = broker
        .reserve(request(tags("parity-0"), 10_000, 600, false), T0)
        .expect("satisfiable");
    broker.drain_events();
    let clock = Arc::new(ManualClock::new(T0));
    Lab {
        handle: BrokerHandle::new(broker, clock.clone()),
        clock,
        deepest: deepest.expect("waiters"),
        broad,
    }
}

/// Runs `op` `iters` times with `setup` before and `teardown` after each, unmeasured,
/// and returns the sum of the longest mutex hold of each `op`.
fn held<S, T>(
    iters: u64,
    mut setup: impl FnMut() -> S,
    mut op: impl FnMut(S) -> T,
    mut teardown: impl FnMut(T),
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let state = setup();
        take_longest_hold();
        let out = op(state);
        total += take_longest_hold();
        teardown(black_box(out));
    }
    total
}

fn bench(c: &mut Criterion) {
    let lab = lab();
    let h = &lab.handle;
    let free_odd = ResourceId::new(50_001);
    let mut group = c.benchmark_group("hold");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));

    group.bench_function("list_all", |b| {
        b.iter_custom(|iters| held(iters, || (), |()| h.resources(), drop));
    });
    let tag_free = ResourceQuery {
        criteria: vec![tags("pct-3")],
        locked: Some(false),
        ..ResourceQuery::default()
    };
    group.bench_function("list_filtered_tag_free", |b| {
        b.iter_custom(|iters| held(iters, || (), |()| h.query_resources(&tag_free), drop));
    });
    let deep_by_name = ResourceQuery {
        sort: ResourceSort::Name,
        page: Page {
            number: 50,
            limit: 1_000,
        },
        ..ResourceQuery::default()
    };
    group.bench_function("list_filtered_by_name_page_50_of_1000", |b| {
        b.iter_custom(|iters| held(iters, || (), |()| h.query_resources(&deep_by_name), drop));
    });
    group.bench_function("get_resource", |b| {
        b.iter_custom(|iters| held(iters, || (), |()| h.resource(free_odd), drop));
    });
    // `GET /metrics`: what the scrape copies under the lock (the counting is after).
    let metrics = Metrics::new();
    group.bench_function("metrics_scrape", |b| {
        b.iter_custom(|iters| {
            held(
                iters,
                || (),
                |()| metrics.render(h, None, None, false),
                drop,
            )
        });
    });

    // `GET /`: what the dashboard copies under the lock (filtering and rendering are
    // after); each queue row shown then costs a `get reservation` hold of its own.
    group.bench_function("dashboard_inputs", |b| {
        b.iter_custom(|iters| held(iters, || (), |()| h.dashboard_inputs(20), drop));
    });

    let unlock = |token: rentabot::domain::LockToken, id| {
        h.unlock(id, Some(&token.reveal())).expect("held");
    };
    group.bench_function("lock_by_id", |b| {
        b.iter_custom(|iters| {
            held(
                iters,
                || (),
                |()| h.lock(free_odd, ttl(60)).expect("free"),
                |g| unlock(g.token, free_odd),
            )
        });
    });
    group.bench_function("unlock_10000_waiters_want_nothing", |b| {
        b.iter_custom(|iters| {
            held(
                iters,
                || h.lock(free_odd, ttl(60)).expect("free").token,
                |token| unlock(token, free_odd),
                drop,
            )
        });
    });
    let by_tag = Selector::Matching(tags("pct-3"));
    group.bench_function("lock_by_tag", |b| {
        b.iter_custom(|iters| {
            held(
                iters,
                || (),
                |()| h.lock_matching(&by_tag, ttl(60)).expect("free"),
                |g| unlock(g.token, g.resource.id),
            )
        });
    });
    let all_locked = Selector::Matching(tags("parity-0"));
    group.bench_function("lock_by_tag_refused_50000_locked", |b| {
        b.iter_custom(|iters| {
            held(
                iters,
                || (),
                |()| {
                    h.lock_matching(&all_locked, ttl(60))
                        .expect_err("all locked")
                },
                drop,
            )
        });
    });
    let expr_refused = Selector::Matching(Criteria::Expr("bench && !bench".parse().unwrap()));
    group.bench_function("lock_by_expr_matching_nothing", |b| {
        b.iter_custom(|iters| {
            held(
                iters,
                || (),
                |()| h.lock_matching(&expr_refused, ttl(60)).expect_err("none"),
                drop,
            )
        });
    });
    let groups = [
        Group {
            criteria: tags("pct-3"),
            quantity: 10,
        },
        Group {
            criteria: tags("pct-5"),
            quantity: 10,
        },
    ];
    let release_all = |grants: Vec<(usize, rentabot::runtime::Grant)>| {
        let tokens: Vec<String> = grants.iter().map(|(_, g)| g.token.reveal()).collect();
        h.unlock_batch(&tokens).expect("held");
    };
    group.bench_function("lock_groups_2x10", |b| {
        b.iter_custom(|iters| {
            held(
                iters,
                || (),
                |()| h.lock_groups(&groups, ttl(60)).expect("free"),
                release_all,
            )
        });
    });
    let hundred = [Group {
        criteria: tags("parity-1"),
        quantity: 100,
    }];
    group.bench_function("unlock_batch_100", |b| {
        b.iter_custom(|iters| {
            held(
                iters,
                || {
                    let grants = h.lock_groups(&hundred, ttl(60)).expect("free");
                    grants
                        .iter()
                        .map(|(_, g)| g.token.reveal())
                        .collect::<Vec<_>>()
                },
                |tokens| h.unlock_batch(&tokens).expect("held"),
                drop,
            )
        });
    });
    group.bench_function("extend", |b| {
        b.iter_custom(|iters| {
            held(
                iters,
                || h.lock(free_odd, ttl(60)).expect("free").token,
                |token| {
                    h.extend(free_odd, Some(&token.reveal()), ttl(120))
                        .expect("held");
                    token
                },
                |token| unlock(token, free_odd),
            )
        });
    });

    group.bench_function("reserve_waits_at_the_back", |b| {
        b.iter_custom(|iters| {
            held(
                iters,
                || (),
                |()| {
                    h.reserve(request(tags("pct-8"), 1, 599, false))
                        .expect("queued")
                },
                |s| h.cancel(s.reservation.id).expect("pending"),
            )
        });
    });
    group.bench_function("reserve_fulfilled_at_once", |b| {
        b.iter_custom(|iters| {
            held(
                iters,
                || (),
                |()| {
                    h.reserve(request(tags("pct-3"), 1, 60, true))
                        .expect("served")
                },
                |s| {
                    let a = &s.reservation.allocations[0];
                    unlock(a.token, a.resource);
                },
            )
        });
    });
    group.bench_function("cancel", |b| {
        b.iter_custom(|iters| {
            held(
                iters,
                || {
                    h.reserve(request(tags("pct-8"), 1, 599, false))
                        .expect("queued")
                        .reservation
                        .id
                },
                |id| h.cancel(id).expect("pending"),
                drop,
            )
        });
    });
    group.bench_function("claim", |b| {
        b.iter_custom(|iters| {
            held(
                iters,
                || {
                    h.reserve(request(tags("pct-3"), 1, 60, false))
                        .expect("served")
                        .reservation
                        .id
                },
                |id| h.claim(id).expect("fulfilled"),
                |s| {
                    let a = &s.reservation.allocations[0];
                    unlock(a.token, a.resource);
                },
            )
        });
    });
    group.bench_function("get_reservation_pending_10000th", |b| {
        b.iter_custom(|iters| held(iters, || (), |()| h.reservation(lab.deepest), drop));
    });
    group.bench_function("get_reservation_pending_50000_matching", |b| {
        b.iter_custom(|iters| held(iters, || (), |()| h.reservation(lab.broad), drop));
    });
    group.bench_function("list_reservations", |b| {
        b.iter_custom(|iters| held(iters, || (), |()| h.reservations(), drop));
    });
    let pending_pct8 = ReservationQuery {
        statuses: vec![ReservationStatus::Pending],
        tags: vec!["pct-8".to_owned()],
        page: Page {
            number: 90,
            limit: 100,
        },
        ..ReservationQuery::default()
    };
    group.bench_function("list_reservations_filtered_page_90", |b| {
        b.iter_custom(|iters| held(iters, || (), |()| h.query_reservations(&pending_pct8), drop));
    });

    let window = Unavailability {
        reason: "bench".to_owned(),
        from: None,
        until: None,
    };
    group.bench_function("mark_unavailable", |b| {
        b.iter_custom(|iters| {
            held(
                iters,
                || window.clone(),
                |w| h.mark_unavailable(free_odd, w).expect("exists"),
                |_| {
                    h.mark_available(free_odd).expect("exists");
                },
            )
        });
    });
    group.bench_function("mark_available", |b| {
        b.iter_custom(|iters| {
            held(
                iters,
                || {
                    h.mark_unavailable(free_odd, window.clone())
                        .expect("exists");
                },
                |()| h.mark_available(free_odd).expect("exists"),
                drop,
            )
        });
    });
    group.bench_function("force_unlock", |b| {
        b.iter_custom(|iters| {
            held(
                iters,
                || {
                    h.lock(free_odd, ttl(60)).expect("free");
                },
                |()| {
                    h.force_unlock(free_odd, "bench".to_owned())
                        .expect("locked")
                },
                drop,
            )
        });
    });

    group.bench_function("create_resource", |b| {
        b.iter_custom(|iters| {
            held(
                iters,
                || ResourceSpec::named("new-board").with_tags(&["bench", "new"]),
                |spec| h.add_resource(spec).expect("new name"),
                |r| {
                    h.remove_resource(r.id, None).expect("free");
                },
            )
        });
    });
    group.bench_function("delete_resource", |b| {
        b.iter_custom(|iters| {
            held(
                iters,
                || {
                    h.add_resource(ResourceSpec::named("new-board").with_tags(&["bench", "new"]))
                        .expect("new name")
                        .id
                },
                |id| h.remove_resource(id, None).expect("free"),
                drop,
            )
        });
    });
    let mut flip = false;
    group.bench_function("patch_resource_tags", |b| {
        b.iter_custom(|iters| {
            held(
                iters,
                || {
                    flip = !flip;
                    ResourcePatch {
                        tags: Some(spec(50_001, flip.then_some("patched")).tags),
                        ..ResourcePatch::default()
                    }
                },
                |patch| h.update_resource(free_odd, patch).expect("exists"),
                drop,
            )
        });
    });
    group.bench_function("expired_list", |b| {
        b.iter_custom(|iters| held(iters, || (), |()| h.expired_locks(100), drop));
    });
    group.bench_function("sweep_nothing_due", |b| {
        b.iter_custom(|iters| held(iters, || (), |()| h.sweep(), drop));
    });
    group.finish();

    // The heavy ones: fewer, longer iterations.
    let mut group = c.benchmark_group("hold");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(100));
    group.measurement_time(Duration::from_secs(5));
    let same = specs(None);
    group.bench_function("reload_unchanged", |b| {
        b.iter_custom(|iters| held(iters, || same.clone(), |s| h.reload(s), drop));
    });
    let versions = [specs(Some(100)), specs(None)];
    let mut turn = 0;
    group.bench_function("reload_1pct_retagged", |b| {
        b.iter_custom(|iters| {
            held(
                iters,
                || {
                    turn += 1;
                    versions[turn % 2].clone()
                },
                |s| h.reload(s),
                drop,
            )
        });
    });
    // 10 000 odd resources locked with a 1 s TTL, then the clock moves 1 s: one sweep
    // expires them all (and serves the queue once).
    group.bench_function("sweep_mass_expiry_10000", |b| {
        b.iter_custom(|iters| {
            held(
                iters,
                || {
                    for i in (1..=20_000).step_by(2) {
                        h.lock(ResourceId::new(i), ttl(1)).expect("free");
                    }
                    lab.clock.advance(Duration::from_secs(1));
                },
                |()| h.sweep(),
                drop,
            )
        });
    });
    group.finish();

    // The whole scrape, wall time: the copy under the lock, counting 100 000 resources
    // and their tags, encoding.
    let mut scrape = c.benchmark_group("scrape");
    scrape.sample_size(10);
    scrape.warm_up_time(Duration::from_millis(500));
    scrape.measurement_time(Duration::from_secs(3));
    scrape.bench_function("render_100000_resources", |b| {
        b.iter(|| metrics.render(h, None, None, false));
    });
    scrape.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
