//! Criterion benchmarks of the standard workload (see `edgerec::workload`).

use criterion::{criterion_group, criterion_main, Criterion};
use edgerec::event::{parse_events_json, TimeLimits};
use edgerec::rules::compile_json;
use edgerec::session::{SessionConfig, SessionState};
use edgerec::workload::{self, Workload};
use std::hint::black_box;

fn benches(c: &mut Criterion) {
    let w = Workload::new();
    let cfg = SessionConfig::default();
    c.bench_function(
        "decide/full: decode + 1 event + 100 rules + top-10 + encode",
        |b| b.iter(|| black_box(w.decide_one())),
    );
    let bundle = workload::bundle_json();
    c.bench_function("compile/100 rules", |b| {
        b.iter(|| black_box(compile_json(black_box(&bundle), cfg.horizon_ms)))
    });
    c.bench_function("blob/decode 50-event session", |b| {
        b.iter(|| black_box(SessionState::decode(black_box(&w.blob), &cfg)))
    });
    let state = SessionState::decode(&w.blob, &cfg).unwrap();
    c.bench_function("blob/encode 50-event session", |b| {
        b.iter(|| black_box(black_box(&state).encode(&cfg)))
    });
    let body = format!(
        r#"{{"events":[{{"type":"view","item":"sku-00151","ts":{}}}]}}"#,
        w.now_ms
    );
    c.bench_function("events/parse 1-event JSON", |b| {
        b.iter(|| {
            black_box(parse_events_json(
                black_box(body.as_bytes()),
                w.now_ms,
                TimeLimits::default(),
            ))
        })
    });
}

criterion_group! {
    name = decide;
    config = Criterion::default().sample_size(60).measurement_time(std::time::Duration::from_secs(4));
    targets = benches
}
criterion_main!(decide);
