//! What metrics add to one lock+unlock cycle (issue 12: at most 5% of the cycle): the
//! two requests' counters and latency histograms (`Metrics::record_request`, called by
//! `api::middleware::envelope`), and the change-stream observer's work on the cycle's
//! two changes (a `Locked`, then an `Unlocked`: the acquisition counter, the lock's start
//! remembered, then its duration observed). The audit log's observer runs beside it on
//! every change and is measured too, for comparison.
//!
//! Against a cycle that costs the server about 35 µs of CPU (BENCHMARKS.md, "The hot
//! path"), these figures are the metrics' share of it, free of the noise that
//! end-to-end runs on a shared machine carry; `load --unmetered` measures the same
//! thing end to end.
//!
//! Run: `cargo bench --bench metrics`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rentabot::audit::AuditLog;
use rentabot::domain::{Event, FencingToken, ResourceId, Timestamp};
use rentabot::metrics::{Metrics, Route};
use rentabot::runtime::{Actor, Cause, Committed, Observer};

const T0: Timestamp = Timestamp::from_millis(1_764_000_000_000);

const LOCK: Route = Route {
    method: "POST",
    route: "/api/v1/resources/{id}/lock",
};
const UNLOCK: Route = Route {
    method: "POST",
    route: "/api/v1/resources/{id}/unlock",
};

/// The cycle's two committed changes, for the `n`th grant, as an anonymous request
/// makes them.
fn cycle(n: u64, cause: &Arc<Cause>) -> [Committed; 2] {
    let resource = ResourceId::new(1);
    let fencing = FencingToken::new(n);
    let at = Timestamp::from_millis(T0.as_millis() + n);
    let committed = |seq, events| Committed {
        seq,
        at,
        cause: cause.clone(),
        first_event: seq,
        events,
    };
    [
        committed(
            2 * n,
            vec![Event::Locked {
                resource,
                fencing,
                at,
                expires_at: Timestamp::from_millis(at.as_millis() + 3_600_000),
                reservation: None,
            }],
        ),
        committed(
            2 * n + 1,
            vec![Event::Unlocked {
                resource,
                fencing,
                at,
            }],
        ),
    ]
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("metrics");
    let cause = Arc::new(Cause {
        actor: Actor::Anonymous,
        request_id: Some(Arc::from("bench-request")),
        client_ip: Some("127.0.0.1".parse().unwrap()),
        user_agent: None,
    });

    let metrics = Metrics::new();
    group.bench_function("record_request_lock_and_unlock", |b| {
        b.iter(|| {
            metrics.record_request(black_box(LOCK), 200, Duration::from_micros(40));
            metrics.record_request(black_box(UNLOCK), 200, Duration::from_micros(35));
        });
    });

    // The two observers of every committed change: the metrics, and (for scale) the
    // audit log.
    let metrics = Metrics::new();
    let audit = AuditLog::new(rentabot::audit::DEFAULT_RETENTION, Vec::new(), None);
    let observers: [(&str, &dyn Observer); 2] = [
        ("observe_lock_and_unlock", &metrics),
        ("audit_observe_lock_and_unlock", &audit),
    ];
    for (name, observer) in observers {
        let mut n = 0;
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || {
                    n += 1;
                    cycle(n, &cause)
                },
                |changes| {
                    for change in changes.iter() {
                        observer.committed(black_box(change));
                    }
                },
                criterion::BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
