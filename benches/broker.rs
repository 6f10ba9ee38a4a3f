//! Criterion benches of the broker core, over the pure domain only: no runtime, no mutex,
//! no HTTP. Every operation gets an explicit `now`, so nothing here reads a clock except
//! criterion's own stopwatch.
//!
//! Each bench runs at 100, 10 000 and 100 000 resources. What one measured iteration is:
//!
//! - `lock_unlock_by_id`: `lock(id)` then `unlock(id, token)`, one pair, all resources free.
//! - `lock_unlock_by_tag_few_free`: every resource carries the tag and all but
//!   [`FEW_FREE`] are locked; `lock_matching(tag)` then `unlock` of what it got, which
//!   restores the state for the next iteration.
//! - `expire_due`: `expire_due(now)` releasing min(N, 10 000) locks that are all due;
//!   re-locking them for the next iteration is setup, outside the measured time.
//!
//! Events are drained between batches, outside the measured time, as the runtime would
//! drain them after each call.
//!
//! Run: `cargo bench --bench broker` (about a minute; see BENCHMARKS.md).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rentabot::domain::{
    Broker, Criteria, Granted, ResourceId, ResourceSpec, Selector, Timestamp, Ttl,
};

const SIZES: [u32; 3] = [100, 10_000, 100_000];
/// How many resources stay free in the lock-by-tag bench.
const FEW_FREE: u32 = 5;
/// How many due locks the expiry bench releases (capped at the lab size).
const DUE_LOCKS: u32 = 10_000;
/// Measured operations between two (unmeasured) event drains.
const BATCH: u64 = 1_000;

const T0: Timestamp = Timestamp::from_millis(1_764_000_000_000);
const TAG: &str = "bench";

fn ttl(secs: u64) -> Ttl {
    Ttl::from_secs(secs).expect("a valid ttl")
}

fn id(n: u32) -> ResourceId {
    ResourceId::new(n)
}

/// `n` resources named `board-1`..`board-n`, each tagged `bench` plus a tag shared by
/// one resource in ten, so the index has more than one set.
fn lab(n: u32) -> Broker {
    Broker::new((1..=n).map(|i| {
        let group = format!("group-{}", i % 10);
        ResourceSpec::named(format!("board-{i}")).with_tags(&[TAG, &group])
    }))
}

/// Times `op` run `iters` times, draining the broker's events every [`BATCH`] operations
/// with the stopwatch stopped.
fn timed_in_batches(broker: &mut Broker, iters: u64, mut op: impl FnMut(&mut Broker)) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let batch = left.min(BATCH);
        let start = Instant::now();
        for _ in 0..batch {
            op(broker);
        }
        total += start.elapsed();
        black_box(broker.drain_events());
        left -= batch;
    }
    total
}

fn lock_unlock_by_id(c: &mut Criterion) {
    let mut group = c.benchmark_group("lock_unlock_by_id");
    for n in SIZES {
        let mut broker = lab(n);
        // A resource in the middle of the lab, so lookups are not at the tree's edge.
        let target = id(n / 2);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_custom(|iters| {
                timed_in_batches(&mut broker, iters, |broker| {
                    let token = broker.lock(target, ttl(60), T0).expect("free").token;
                    broker
                        .unlock(target, Some(&token.reveal()), T0)
                        .expect("held");
                })
            });
        });
        broker.check_invariants();
    }
    group.finish();
}

fn lock_unlock_by_tag_few_free(c: &mut Criterion) {
    let mut group = c.benchmark_group("lock_unlock_by_tag_few_free");
    let selector = Selector::Matching(Criteria::Tags(vec![TAG.to_owned()]));
    for n in SIZES {
        let mut broker = lab(n);
        // Lock all but FEW_FREE resources, spread over the id range, so the free ones
        // are scattered and the lowest free one is a tenth of the way into the lab.
        let stride = n / FEW_FREE;
        for i in 1..=n {
            let is_free = i % stride == stride / 2;
            if !is_free {
                broker.lock(id(i), ttl(3600), T0).expect("free");
            }
        }
        black_box(broker.drain_events());
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_custom(|iters| {
                timed_in_batches(&mut broker, iters, |broker| {
                    let Granted {
                        resource: got,
                        token,
                        ..
                    } = broker
                        .lock_matching(&selector, ttl(60), T0)
                        .expect("a few are free");
                    broker.unlock(got, Some(&token.reveal()), T0).expect("held");
                })
            });
        });
        broker.check_invariants();
    }
    group.finish();
}

fn expire_due(c: &mut Criterion) {
    let mut group = c.benchmark_group("expire_due");
    group.sample_size(20);
    for n in SIZES {
        let due = n.min(DUE_LOCKS);
        let stride = n / due;
        let mut broker = lab(n);
        let mut now = T0;
        group.throughput(Throughput::Elements(u64::from(due)));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // Setup, not measured: lock `due` resources spread over the lab, all
                    // with the same 1 s TTL, then step the clock to their deadline.
                    for k in 0..due {
                        broker.lock(id(1 + k * stride), ttl(1), now).expect("free");
                    }
                    black_box(broker.drain_events());
                    now = now
                        .checked_add(Duration::from_secs(1))
                        .expect("far from overflow");
                    let start = Instant::now();
                    broker.expire_due(now);
                    total += start.elapsed();
                    assert_eq!(broker.next_deadline(), None, "all expired");
                    black_box(broker.drain_events());
                }
                total
            });
        });
        broker.check_invariants();
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
    targets = lock_unlock_by_id, lock_unlock_by_tag_few_free, expire_due
}
criterion_main!(benches);
