//! What a rule bundle costs per decision: timed on the standard workload
//! ([`edgerec::workload`]) against the standard bundle in the same run, interleaved, so a noisy
//! machine moves both. `check-bundle` reports it and refuses a bundle over budget.

use edgerec::rules::CompiledBundle;
use edgerec::workload::Workload;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Timing budget per bundle: a pathological bundle ends the measurement, not the user's patience.
const MAX_TIME: Duration = Duration::from_secs(2);

/// Cost of a bundle's decisions on the standard workload.
#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    /// Decisions timed.
    pub decisions: usize,
    /// Median µs per decision (decode + one event + rules + top-10 + encode).
    pub median_us: f64,
    /// 99th percentile µs.
    pub p99_us: f64,
    /// The standard 100-rule bundle's median, same run.
    pub baseline_median_us: f64,
    /// median / baseline median.
    pub ratio: f64,
    /// Stored session blob bytes after the decision.
    pub blob_bytes: usize,
    /// Rules that fired on the workload's decision.
    pub rules_fired: usize,
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Times `decisions` decisions with `bundle` and as many with the standard bundle.
pub fn measure(bundle: CompiledBundle, decisions: usize) -> Cost {
    let (cand, base) = (Workload::with_bundle(bundle), Workload::new());
    let d = cand.decide_one();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let start = Instant::now();
    for _ in 0..decisions.max(1) {
        for (w, out) in [(&cand, &mut a), (&base, &mut b)] {
            let t = Instant::now();
            std::hint::black_box(w.decide_one());
            out.push(t.elapsed().as_secs_f64() * 1e6);
        }
        if start.elapsed() > MAX_TIME {
            break;
        }
    }
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (median, base_median) = (quantile(&a, 0.5), quantile(&b, 0.5));
    // Two decimals: the measurement is no finer than that.
    let r = |x: f64| (x * 100.0).round() / 100.0;
    Cost {
        decisions: a.len(),
        median_us: r(median),
        p99_us: r(quantile(&a, 0.99)),
        baseline_median_us: r(base_median),
        ratio: r(if base_median > 0.0 {
            median / base_median
        } else {
            0.0
        }),
        blob_bytes: d.state.map_or(0, |s| s.len()),
        rules_fired: d.rule_hits.len(),
    }
}
