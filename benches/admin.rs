//! Criterion benches of resource administration at lab scale (100 000 resources), over
//! the pure domain: what a reload or a change costs in broker time, which is time every
//! other request waits on the broker mutex.
//!
//! What one measured iteration is:
//!
//! - `reload_unchanged`: `reload(specs)` with the very descriptor the broker holds:
//!   the merge compares every resource and changes nothing. Cloning the specs (what
//!   parsing the file would produce) is setup, outside the stopwatch.
//! - `reload_retag_1pct`: `reload(specs)` where 1% of the resources (1 000) changed
//!   tags; alternate iterations flip them back, so every iteration re-indexes 1 000.
//! - `update_tags_with_1000_waiters`: `update_resource` changing one resource's tags
//!   (and back, alternately) while 1 000 reservations wait for a fully locked tag: the
//!   change re-examines every waiter (could it still ever be served?) and serves the
//!   queue.
//! - `add_remove`: `add_resource` then `remove_resource` of a new resource.
//! - `new_broker`, for scale: `Broker::new(specs)`, what a start does with the same
//!   descriptor (dropping the broker is inside the stopwatch too).
//!
//! Run: `cargo bench --bench admin` (about 30 s; see BENCHMARKS.md).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use rentabot::domain::{
    Broker, Criteria, Group, LockMeta, Priority, ReservationRequest, ResourceId, ResourcePatch,
    ResourceSpec, Timestamp, Ttl,
};

const N: u32 = 100_000;
const WAITERS: u32 = 1_000;
const T0: Timestamp = Timestamp::from_millis(1_764_000_000_000);

fn ttl(secs: u64) -> Ttl {
    Ttl::from_secs(secs).expect("a valid ttl")
}

/// `board-1`..`board-N`, each tagged `bench` and one of ten `group-k` tags.
fn specs(retag_every: Option<u32>) -> Vec<ResourceSpec> {
    (1..=N)
        .map(|i| {
            let group = format!("group-{}", i % 10);
            let mut tags = vec!["bench", group.as_str()];
            if retag_every.is_some_and(|every| i % every == 0) {
                tags.push("retagged");
            }
            ResourceSpec::named(format!("board-{i}")).with_tags(&tags)
        })
        .collect()
}

/// For scale: building the broker from the same descriptor, as a start does.
fn new_broker(c: &mut Criterion) {
    let same = specs(None);
    c.bench_function("new_broker/100000", |b| {
        b.iter_batched(|| same.clone(), Broker::new, BatchSize::LargeInput);
    });
}

fn reload_unchanged(c: &mut Criterion) {
    let mut broker = Broker::new(specs(None));
    let same = specs(None);
    c.bench_function("reload_unchanged/100000", |b| {
        b.iter_batched(
            || same.clone(),
            |specs| black_box(broker.reload(specs, T0)),
            BatchSize::LargeInput,
        );
    });
    broker.check_invariants();
}

fn reload_retag_1pct(c: &mut Criterion) {
    let mut broker = Broker::new(specs(None));
    let versions = [specs(Some(100)), specs(None)];
    let mut turn = 0;
    c.bench_function("reload_retag_1pct/100000", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let input = versions[turn % 2].clone();
                turn += 1;
                let start = Instant::now();
                let report = broker.reload(input, T0);
                total += start.elapsed();
                assert_eq!(report.updated.len(), 1_000);
                black_box(broker.drain_events());
            }
            total
        });
    });
    broker.check_invariants();
}

fn update_tags_with_1000_waiters(c: &mut Criterion) {
    let mut broker = Broker::new(specs(None));
    // Every `group-0` resource locked, and 1 000 reservations waiting for them (five
    // different quantities, so five different requests to judge).
    for i in (10..=N).step_by(10) {
        broker
            .lock(ResourceId::new(i), ttl(86_400), T0)
            .expect("free");
    }
    for k in 0..WAITERS {
        let request = ReservationRequest {
            groups: vec![Group {
                criteria: Criteria::Tags(vec!["group-0".to_owned()]),
                quantity: 1 + k % 5,
            }],
            priority: Priority::DEFAULT,
            ttl: ttl(60),
            max_wait: ttl(86_400),
            auto_claim: false,
            meta: LockMeta::default(),
        };
        broker.reserve(request, T0).expect("satisfiable");
    }
    black_box(broker.drain_events());
    let target = ResourceId::new(N / 2 + 1); // a group-1 resource
    let tag_sets = [
        vec!["bench".to_owned(), "group-1".to_owned(), "extra".to_owned()],
        vec!["bench".to_owned(), "group-1".to_owned()],
    ];
    let mut turn = 0;
    c.bench_function("update_tags_with_1000_waiters/100000", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let patch = ResourcePatch {
                    tags: Some(tag_sets[turn % 2].clone()),
                    ..ResourcePatch::default()
                };
                turn += 1;
                let start = Instant::now();
                let changed = broker.update_resource(target, patch, T0).expect("exists");
                total += start.elapsed();
                assert_eq!(changed, ["tags"]);
                black_box(broker.drain_events());
            }
            total
        });
    });
    assert_eq!(
        broker.queue_len(),
        WAITERS as usize,
        "nobody ended or was served"
    );
    broker.check_invariants();
}

fn add_remove(c: &mut Criterion) {
    let mut broker = Broker::new(specs(None));
    c.bench_function("add_remove/100000", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let spec = ResourceSpec::named("new-board").with_tags(&["bench", "group-3"]);
                let start = Instant::now();
                let id = broker.add_resource(spec, T0).expect("name free");
                broker.remove_resource(id, None, T0).expect("free");
                total += start.elapsed();
                black_box(broker.drain_events());
            }
            total
        });
    });
    broker.check_invariants();
}

/// Short warm-up and measurement, few samples: a reload at 100 000 resources takes
/// milliseconds. The command line (`-- --measurement-time 10`) overrides them.
fn quick() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = quick();
    targets = new_broker, reload_unchanged, reload_retag_1pct, update_tags_with_1000_waiters, add_remove
}
criterion_main!(benches);
