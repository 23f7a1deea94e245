//! Rough per-phase cost of the standard decision (development aid).
use edgerec::features::Features;
use edgerec::rules::eval::Env;
use edgerec::session::SessionState;
use std::hint::black_box;
use std::time::Instant;

fn time<T>(name: &str, n: u32, mut f: impl FnMut() -> T) {
    let t = Instant::now();
    for _ in 0..n {
        black_box(f());
    }
    println!(
        "{name:<12} {:>8.2} us",
        t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
    );
}

fn main() {
    let w = edgerec::workload::Workload::new();
    let cfg = *w.engine.config();
    let n: u32 = std::env::var("N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let state = SessionState::decode(&w.blob, &cfg.session).unwrap();
    let f = Features::compute(&state, w.context.clone(), w.now_ms, &cfg.session);
    time("decide", n, || w.decide_one());
    let mut us = edgerec::workload::Workload::new();
    us.context.country = Some("US".into());
    println!("US visitor: {} rules fire", us.decide_one().rule_hits.len());
    time("decide-US", n, || us.decide_one());
    time("ingest-only", n, || {
        w.engine.decide(&edgerec::DecideRequest {
            state: Some(&w.blob),
            events: &w.next,
            context: w.context.clone(),
            now_ms: w.now_ms + 1000,
            limit: 0,
            tier: None,
            trace: None,
        })
    });
    time("decode", n, || {
        SessionState::decode(&w.blob, &cfg.session).unwrap()
    });
    time("encode", n, || state.encode(&cfg.session));
    time("features", n, || {
        Features::compute(&state, w.context.clone(), w.now_ms, &cfg.session)
    });
    time("rules", n, || {
        let env = Env::new(&state, &f, w.now_ms, cfg.session.bucket_ms);
        env.run(w.engine.bundle(), false).len()
    });
    let env = Env::new(&state, &f, w.now_ms, cfg.session.bucket_ms);
    let hits = env.run(w.engine.bundle(), false);
    time("recommend", n, || {
        edgerec::recommend::recommend(&edgerec::recommend::RecommendInput {
            head: w.engine.head(),
            shards: w.engine.local_shards().unwrap(),
            policy: &w.engine.bundle().policy,
            state: &state,
            features: &f,
            hits: &hits,
            tier: edgerec::Tier::Full,
            limit: 10,
            now_ms: w.now_ms,
            bucket_ms: cfg.session.bucket_ms,
            feedback: true,
        })
    });
}
