// Shared body of the latency benches: per-call latency of the standard decision (median,
// p99), timed one call at a time, the same way `wasm/bench.mjs` times the wasm build.
// The including file defines `HOST`.

use edgerec::workload::Workload;
use std::hint::black_box;
use std::time::Instant;

fn main() {
    let w = Workload::new();
    let iters: usize = std::env::var("ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50_000);
    for _ in 0..2_000 {
        black_box(w.decide_one());
    }
    let mut ns: Vec<u64> = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        black_box(w.decide_one());
        ns.push(t.elapsed().as_nanos() as u64);
    }
    ns.sort_unstable();
    let q = |p: f64| ns[((ns.len() as f64 - 1.0) * p) as usize] as f64 / 1000.0;
    println!(
        "{{\"host\":\"{}\",\"iters\":{iters},\"median_us\":{:.2},\"p90_us\":{:.2},\"p99_us\":{:.2},\"blob_bytes\":{}}}",
        HOST,
        q(0.5),
        q(0.9),
        q(0.99),
        w.blob.len()
    );
}

