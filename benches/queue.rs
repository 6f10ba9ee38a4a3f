//! Criterion benches of the reservation queue (domain only, explicit time).
//!
//! - `release_with_waiters/head_matches`: 10 000 reservations wait for one of 100 locked
//!   boards; one unlock serves the head of the queue. The common case: the walk stops at
//!   the first waiter, whatever the length of the queue.
//! - `release_with_waiters/none_ahead_matches`: 10 000 reservations wait for `x86` boards
//!   and one for `arm`, queued last; an `arm` board is released. The walk must pass every
//!   `x86` waiter to find the one it can serve: the worst case of the early stop.
//! - `reserve_into_queue/behind/N`: creating one more pending reservation behind N (1 000,
//!   10 000, 100 000) and reading its place in the queue; cancelling it again is outside
//!   the stopwatch.
//!
//! `cargo bench --bench queue`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rentabot::domain::{
    Broker, Criteria, Group, LockMeta, LockToken, Policy, Priority, ReservationRequest, ResourceId,
    ResourceSpec, Timestamp, Ttl,
};

const T0: Timestamp = Timestamp::from_millis(1_764_000_000_000);
const WAITERS: usize = 10_000;
const BOARDS: u32 = 100;

fn ttl(secs: u64) -> Ttl {
    Ttl::from_secs(secs).expect("a valid ttl")
}

fn request(tag: &str) -> ReservationRequest {
    ReservationRequest {
        groups: vec![Group {
            criteria: Criteria::Tags(vec![tag.to_owned()]),
            quantity: 1,
        }],
        priority: Priority::DEFAULT,
        ttl: ttl(600),
        max_wait: ttl(86_400),
        auto_claim: true,
        meta: LockMeta::default(),
    }
}

/// `BOARDS` boards tagged `tag` (plus one `arm` board last), all locked; `waiters`
/// reservations for `tag` queued, then one for `arm`. Returns the broker and the tokens
/// of the boards' locks.
fn queue_of(tag: &str, waiters: usize) -> (Broker, Vec<(ResourceId, LockToken)>) {
    let mut specs: Vec<ResourceSpec> = (1..=BOARDS)
        .map(|i| ResourceSpec::named(format!("board-{i}")).with_tags(&["board", tag]))
        .collect();
    specs.push(ResourceSpec::named("arm-board").with_tags(&["board", "arm"]));
    // Above the default cap of waiting reservations: these benches measure the queue
    // at and beyond it.
    let policy = Policy {
        max_pending: usize::MAX,
        ..Policy::default()
    };
    let mut broker = Broker::with_policy(specs, policy);
    let tokens = (1..=BOARDS + 1)
        .map(|i| {
            let id = ResourceId::new(i);
            (id, broker.lock(id, ttl(3_600), T0).expect("free").token)
        })
        .collect();
    for _ in 0..waiters {
        broker.reserve(request(tag), T0).expect("satisfiable");
    }
    broker.reserve(request("arm"), T0).expect("satisfiable");
    broker.drain_events();
    (broker, tokens)
}

fn release_with_waiters(c: &mut Criterion) {
    let mut group = c.benchmark_group("release_with_waiters");
    group.measurement_time(Duration::from_secs(5));
    // Each iteration releases a board, which serves the head waiter; the next iteration
    // releases the lock that waiter got, and so on: the queue stays over 10 000 long.
    group.bench_function(BenchmarkId::new("head_matches", WAITERS), |b| {
        b.iter_custom(|iters| {
            let (mut broker, mut tokens) = queue_of("x86", WAITERS + iters as usize);
            tokens.truncate(BOARDS as usize);
            let start = Instant::now();
            for i in 0..iters {
                let (id, token) = tokens[(i % u64::from(BOARDS)) as usize];
                broker.unlock(id, Some(&token.reveal()), T0).expect("held");
                let lease = broker
                    .resource(id)
                    .and_then(|r| r.lease())
                    .expect("served at once");
                tokens[(i % u64::from(BOARDS)) as usize] = (id, lease.token);
                black_box(broker.drain_events());
            }
            start.elapsed()
        });
    });
    // One release per fresh broker: the arm board frees, and the walk passes 10 000
    // x86 waiters (nothing free matches them) to serve the arm waiter at the end.
    group.bench_function(BenchmarkId::new("none_ahead_matches", WAITERS), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (mut broker, tokens) = queue_of("x86", WAITERS);
                let (arm, token) = tokens[BOARDS as usize];
                let start = Instant::now();
                broker.unlock(arm, Some(&token.reveal()), T0).expect("held");
                total += start.elapsed();
                assert!(
                    broker.resource(arm).and_then(|r| r.lease()).is_some(),
                    "served"
                );
                black_box(broker);
            }
            total
        });
    });
    group.finish();
}

fn reserve_into_queue(c: &mut Criterion) {
    let mut group = c.benchmark_group("reserve_into_queue");
    for waiters in [1_000, WAITERS, 100_000] {
        let (mut broker, _) = queue_of("x86", waiters);
        group.bench_function(BenchmarkId::new("behind", waiters), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let id = broker.reserve(request("x86"), T0).expect("queued");
                    // What the create answer shows: its place in the queue.
                    black_box(broker.queue_position(id, T0));
                    total += start.elapsed();
                    broker.cancel(id, T0).expect("pending");
                }
                total
            });
        });
    }
    group.finish();
}

criterion_group!(benches, release_with_waiters, reserve_into_queue);
criterion_main!(benches);
