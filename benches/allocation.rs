//! Criterion benches of allocation at lab scale (issue 9, item 1): requests for
//! thousands of resources at once, over the pure broker (its time is the time the mutex
//! is held for them).
//!
//! The lab: `board-1`..`board-100000`, tagged `bench`, `group-{i % 10}`, `pct-{i % 100}`
//! and `parity-{i % 2}` (50 000 odd, 50 000 even). What one measured iteration is:
//!
//! - `lock_10000`: `lock_groups` of 10 000 `parity-1` resources, all free; unlocking them
//!   again (one `unlock_batch`) is outside the stopwatch.
//! - `lock_10000_overlapping`: `lock_groups` of 5 000 `bench` and 5 000 `parity-1`: the
//!   greedy pick gives the first group 2 500 odd resources the second needs first, so
//!   2 500 augmenting searches move them.
//! - `reserve_10000_waits`: a reservation for 10 000 `parity-1` with 9 999 free: it waits
//!   and holds them. `release_serves_10000`: the unlock of the 10 000th, which serves it
//!   (10 000 locks granted). Both measured in the same iteration, separately.
//! - `check_satisfiable_10000`: could 10 000 `parity-1` ever be served?
//!
//! Run: `cargo bench --bench allocation`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use rentabot::domain::{
    Broker, Criteria, Group, LockMeta, Priority, ReservationRequest, ResourceId, ResourceSpec,
    Timestamp, Ttl,
};

const N: u32 = 100_000;
const T0: Timestamp = Timestamp::from_millis(1_764_000_000_000);

fn ttl(secs: u64) -> Ttl {
    Ttl::from_secs(secs).expect("a valid ttl")
}

fn lab() -> Broker {
    Broker::new((1..=N).map(|i| {
        let (group, pct, parity) = (
            format!("group-{}", i % 10),
            format!("pct-{}", i % 100),
            format!("parity-{}", i % 2),
        );
        ResourceSpec::named(format!("board-{i}")).with_tags(&["bench", &group, &pct, &parity])
    }))
}

fn group(tag: &str, quantity: u32) -> Group {
    Group {
        criteria: Criteria::Tags(vec![tag.to_owned()]),
        quantity,
    }
}

fn bench(c: &mut Criterion) {
    let mut broker = lab();
    let mut g = c.benchmark_group("allocation");
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(5));

    for (name, groups) in [
        ("lock_10000", vec![group("parity-1", 10_000)]),
        (
            "lock_10000_overlapping",
            vec![group("bench", 5_000), group("parity-1", 5_000)],
        ),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let grants = broker.lock_groups(&groups, ttl(60), T0).expect("free");
                    total += start.elapsed();
                    let tokens: Vec<String> =
                        grants.iter().map(|(_, g)| g.token.reveal()).collect();
                    broker.unlock_batch(&tokens, T0).expect("held");
                    black_box(broker.drain_events());
                }
                total
            });
        });
    }

    g.bench_function("check_satisfiable_10000", |b| {
        let groups = [group("parity-1", 10_000)];
        b.iter(|| {
            broker
                .check_satisfiable(&groups, ttl(60), T0)
                .expect("enough")
        });
    });

    // The 10 000 lowest odd ids serve the reservation; every other odd one stays locked.
    for i in (20_001..=N).step_by(2) {
        broker
            .lock(ResourceId::new(i), ttl(86_400), T0)
            .expect("free");
    }
    let trigger = ResourceId::new(1);
    let request = ReservationRequest {
        groups: vec![group("parity-1", 10_000)],
        priority: Priority::DEFAULT,
        ttl: ttl(60),
        max_wait: ttl(3_600),
        auto_claim: true,
        meta: LockMeta::default(),
    };
    let mut served = Duration::ZERO;
    let mut served_iters = 0;
    g.bench_function("reserve_10000_waits", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let token = broker.lock(trigger, ttl(60), T0).expect("free").token;
                let start = Instant::now();
                let id = broker.reserve(request.clone(), T0).expect("satisfiable");
                total += start.elapsed();
                let start = Instant::now();
                broker
                    .unlock(trigger, Some(&token.reveal()), T0)
                    .expect("held");
                served += start.elapsed();
                served_iters += 1;
                let tokens: Vec<String> = broker
                    .reservation(id)
                    .expect("fulfilled")
                    .allocations
                    .iter()
                    .map(|a| a.token.reveal())
                    .collect();
                assert_eq!(tokens.len(), 10_000);
                broker.unlock_batch(&tokens, T0).expect("held");
                black_box(broker.drain_events());
            }
            total
        });
    });
    g.finish();
    println!(
        "allocation/release_serves_10000: mean {:.3} ms over {served_iters} releases",
        served.as_secs_f64() * 1e3 / f64::from(served_iters)
    );
    broker.check_invariants();
}

criterion_group!(benches, bench);
criterion_main!(benches);
