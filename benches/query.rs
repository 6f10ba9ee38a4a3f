//! Criterion benches of list queries (`Broker::query_resources`) at lab scale: one page of
//! 50 out of 100 000 resources, over the pure domain (no runtime, no mutex, no HTTP, no
//! JSON). What is timed is the broker's share of `GET /api/v1/resources?...`: the time
//! the broker's mutex would be held.
//!
//! The lab: `board-1`..`board-100000`, every one tagged `bench`, plus `group-{i % 10}`
//! (10% each) and `pct-{i % 100}` (1% each). Every other resource (the even ids) is
//! locked, with TTLs spread over an hour so expiries differ. One measured iteration is
//! one query, answering one page:
//!
//! - `tag_1pct_free`: `tag=pct-7&locked=false` (1 000 match: odd ids, all free).
//! - `tag_1pct_free_available`: the same with `available=true`, which the free index
//!   answers exactly (the total without counting).
//! - `name_substring`: `name=BOARD-42` (case-insensitive; 1 111 match).
//! - `expr_10pct`: `expr=group-3 && !pct-13` (9 000 match).
//! - `all_by_id_page_1000`: no filter, page 1000 (49 951-50 000 of 100 000).
//! - `locked_by_id`: `locked=true` (50 000 match), page 1.
//! - `sort_name_broad`: `tag=bench&sort=name` (all 100 000 match), page 1 and page 1000.
//! - `sort_name_free`: `locked=false&sort=name` (50 000), page 1.
//! - `sort_expiry_broad`: `locked=true&sort=lock-expires-at` (50 000), page 1, asc and
//!   desc; `sort_expiry_all`: no filter at all (100 000, the free half last).
//!
//! Every case asks for 50 per page, and the time includes cloning the page's 50
//! resources (about 20 us of it).
//!
//! Run: `cargo bench --bench query` (about a minute; see BENCHMARKS.md).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rentabot::domain::{
    Broker, Criteria, Expr, Page, ResourceId, ResourceQuery, ResourceSort, ResourceSpec, SortOrder,
    Timestamp, Ttl,
};

const N: u32 = 100_000;
const LIMIT: usize = 50;
const T0: Timestamp = Timestamp::from_millis(1_764_000_000_000);

/// The lab described in the module docs, half of it locked.
fn lab() -> Broker {
    let mut broker = Broker::new((1..=N).map(|i| {
        let group = format!("group-{}", i % 10);
        let pct = format!("pct-{}", i % 100);
        ResourceSpec::named(format!("board-{i}")).with_tags(&["bench", &group, &pct])
    }));
    for i in (2..=N).step_by(2) {
        // Spread over an hour, not in id order, so the expiry sort has work to do.
        let secs = 60 + u64::from(i.wrapping_mul(7919) % 3600);
        let ttl = Ttl::from_secs(secs).expect("a valid ttl");
        broker.lock(ResourceId::new(i), ttl, T0).expect("free");
    }
    black_box(broker.drain_events());
    broker.check_invariants();
    broker
}

fn tags(t: &[&str]) -> Criteria {
    Criteria::Tags(t.iter().map(|s| s.to_string()).collect())
}

fn page(number: u64) -> Page {
    Page {
        number,
        limit: LIMIT,
    }
}

/// The cases, by name: each is one query.
fn cases() -> Vec<(&'static str, ResourceQuery)> {
    let base = ResourceQuery {
        page: page(1),
        ..ResourceQuery::default()
    };
    let broad_name = ResourceQuery {
        criteria: vec![tags(&["bench"])],
        sort: ResourceSort::Name,
        ..base.clone()
    };
    let locked_by_expiry = ResourceQuery {
        locked: Some(true),
        sort: ResourceSort::LockExpiresAt,
        ..base.clone()
    };
    vec![
        (
            "tag_1pct_free",
            ResourceQuery {
                locked: Some(false),
                criteria: vec![tags(&["pct-7"])],
                ..base.clone()
            },
        ),
        (
            "tag_1pct_free_available",
            ResourceQuery {
                locked: Some(false),
                in_service: Some(true),
                criteria: vec![tags(&["pct-7"])],
                ..base.clone()
            },
        ),
        (
            "name_substring",
            ResourceQuery {
                name: Some("BOARD-42".to_owned()),
                ..base.clone()
            },
        ),
        (
            "expr_10pct",
            ResourceQuery {
                criteria: vec![Criteria::Expr(
                    Expr::parse("group-3 && !pct-13").expect("valid"),
                )],
                ..base.clone()
            },
        ),
        (
            "all_by_id_page_1000",
            ResourceQuery {
                page: page(1000),
                ..base.clone()
            },
        ),
        (
            "locked_by_id",
            ResourceQuery {
                locked: Some(true),
                ..base.clone()
            },
        ),
        ("sort_name_broad", broad_name.clone()),
        (
            "sort_name_free",
            ResourceQuery {
                locked: Some(false),
                sort: ResourceSort::Name,
                ..base.clone()
            },
        ),
        (
            "sort_name_broad_page_1000",
            ResourceQuery {
                page: page(1000),
                ..broad_name
            },
        ),
        ("sort_expiry_broad", locked_by_expiry.clone()),
        (
            "sort_expiry_broad_desc",
            ResourceQuery {
                order: SortOrder::Desc,
                ..locked_by_expiry
            },
        ),
        (
            "sort_expiry_all",
            ResourceQuery {
                sort: ResourceSort::LockExpiresAt,
                ..base
            },
        ),
    ]
}

fn query_resources(c: &mut Criterion) {
    let broker = lab();
    let mut group = c.benchmark_group("query_resources_100k");
    for (name, query) in cases() {
        let page = broker.query_resources(&query);
        assert!(
            page.items.len() <= LIMIT && page.total > 0,
            "{name}: {page:?}"
        );
        group.bench_function(name, |b| {
            b.iter(|| black_box(broker.query_resources(black_box(&query))));
        });
    }
    group.finish();
}

/// Short warm-up and measurement, so the whole file runs in about a minute on two
/// cores; the command line (`-- --measurement-time 10`) overrides them.
fn quick() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = quick();
    targets = query_resources
}
criterion_main!(benches);
