//! The stats engine: intervals that stay valid however often people look, a sample-ratio
//! check, guardrail verdicts. Pure arithmetic on the edge's [`ArmTally`] sums, so the
//! collector (dashboard), the CLI (`edgerec experiments report`) and the trainer's controller
//! compute the same numbers.
//!
//! **Always-valid intervals.** For an estimate θ̂ with variance V, the normal-mixture
//! sequential probability ratio test (Robbins 1970; the mSPRT of Johari, Koomen, Pekelis and
//! Walsh, "Always valid inference", Operations Research 2022; the confidence sequences of
//! Howard, Ramdas, McAuliffe and Sekhon, Annals of Statistics 2021) gives the interval
//!
//! `θ̂ ± sqrt( V·(V+τ²)/τ² · ln((V+τ²)/(V·α²)) )`
//!
//! which covers θ at every look simultaneously with probability ≥ 1-α, so peeking every few
//! minutes does not inflate false positives. τ² is the mixing variance; it is set from the
//! data as τ² = k·V·n/N* with k = -2 ln α + ln(1 - 2 ln α), which makes the interval tightest
//! near N* = [`TARGET_UNITS`] units (Howard et al., eq. 3.7, as GrowthBook does). V comes from
//! the per-session sums: a mean's sample variance over n, and for a ratio of sums (CTR) the
//! delta method. Relative lift uses the delta method for a ratio of two means.
//!
//! **Sample-ratio mismatch.** Sessions per variant against the configured weights, by the
//! Dirichlet-multinomial Bayes factor of Lindon and Malek ("Anytime-valid inference for
//! multinomial count data", NeurIPS 2022), concentration 100: a non-negative martingale under
//! the configured split, so `p = min(1, 1/BF)` is an always-valid p-value. Mismatch is
//! declared at p < [`SRM_ALPHA`].

use super::metrics::ArmTally;
use crate::rules::bundle::{Experiment, Guardrail, Metric};
use serde::Serialize;
use std::collections::BTreeMap;

/// Error rate of every interval and guardrail (two-sided 95%).
pub const ALPHA: f64 = 0.05;
/// Threshold of the sample-ratio-mismatch p-value.
pub const SRM_ALPHA: f64 = 0.001;
/// Units (sessions, or decisions for per-decision metrics) at which intervals are tightest.
pub const TARGET_UNITS: f64 = 10_000.0;
/// Below this many sessions in a variant, its results carry a warning and no stop is taken.
pub const MIN_SESSIONS: u64 = 100;
/// Dirichlet concentration of the sample-ratio test's prior.
const SRM_CONCENTRATION: f64 = 100.0;

/// Every metric, in report order.
pub const METRICS: [Metric; 7] = [
    Metric::Ctr,
    Metric::AddToCart,
    Metric::Conversion,
    Metric::Revenue,
    Metric::FallbackShare,
    Metric::LatencyUs,
    Metric::ErrorShare,
];

/// The metric's name as bundles and reports spell it.
pub fn metric_name(m: Metric) -> &'static str {
    match m {
        Metric::Ctr => "ctr",
        Metric::AddToCart => "add_to_cart",
        Metric::Conversion => "conversion",
        Metric::Revenue => "revenue",
        Metric::FallbackShare => "fallback_share",
        Metric::LatencyUs => "latency_us",
        Metric::ErrorShare => "error_share",
    }
}

/// Whether more is better for the metric.
pub fn higher_is_better(m: Metric) -> bool {
    !matches!(
        m,
        Metric::FallbackShare | Metric::LatencyUs | Metric::ErrorShare
    )
}

/// A metric's value in one variant and the variance of that value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    /// Units it is computed over (sessions, or decisions).
    pub n: u64,
    /// The value.
    pub mean: f64,
    /// Variance of the value (not of one unit).
    pub var: f64,
}

fn mean_of(n: u64, sum: f64, sum_sq: f64) -> Option<Estimate> {
    if n < 2 {
        return None;
    }
    let nf = n as f64;
    let mean = sum / nf;
    let s2 = ((sum_sq - nf * mean * mean) / (nf - 1.0)).max(0.0);
    Some(Estimate {
        n,
        mean,
        var: s2 / nf,
    })
}

/// A per-unit proportion `k / n` (units: decisions, responses) with its binomial variance.
fn share(k: u64, n: u64) -> Option<Estimate> {
    if n < 2 {
        return None;
    }
    let p = k as f64 / n as f64;
    Some(Estimate {
        n,
        mean: p,
        var: p * (1.0 - p) / n as f64,
    })
}

/// The metric's estimate for one variant, or None without enough data.
pub fn estimate(arm: &ArmTally, metric: Metric) -> Option<Estimate> {
    let n = arm.sessions;
    let f = |v: u64| v as f64;
    match metric {
        Metric::Ctr => {
            if n < 2 || arm.impressions.sum == 0 {
                return None;
            }
            // Delta method for R = Σx/Σy: Var(R) ≈ Σ(x - R·y)² / ((n-1)·n·ȳ²), and
            // Σ(x - R·y)² = Σx² - 2R·Σxy + R²·Σy² (the mean terms cancel: Σ(x - R·y) = 0).
            let nf = f(n);
            let (sx, sy) = (f(arm.clicks.sum), f(arm.impressions.sum));
            let (r, my) = (sx / sy, sy / nf);
            let ss = f(arm.clicks.sum_sq) - 2.0 * r * f(arm.clicks_x_impressions)
                + r * r * f(arm.impressions.sum_sq);
            let var = (ss / ((nf - 1.0) * nf * my * my)).max(0.0);
            Some(Estimate { n, mean: r, var })
        }
        Metric::AddToCart => mean_of(n, f(arm.added.sum), f(arm.added.sum_sq)),
        Metric::Conversion => mean_of(n, f(arm.converted.sum), f(arm.converted.sum_sq)),
        Metric::Revenue => mean_of(
            n,
            f(arm.revenue_cents.sum) / 100.0,
            f(arm.revenue_cents.sum_sq) / 10_000.0,
        ),
        Metric::FallbackShare => share(arm.fallbacks, arm.decisions),
        Metric::ErrorShare => share(arm.errors, arm.responses),
        Metric::LatencyUs => mean_of(arm.timed, f(arm.latency_us.sum), f(arm.latency_us.sum_sq)),
    }
}

/// Half-width of the always-valid (1-α) interval for an estimate with variance `var` after `n`
/// units (see the module docs).
pub fn half_width(var: f64, n: f64, alpha: f64) -> f64 {
    if var == 0.0 {
        return 0.0;
    }
    // Negative, NaN or no units: nothing can be said.
    if var.is_nan() || var < 0.0 || n.is_nan() || n <= 0.0 {
        return f64::INFINITY;
    }
    let k = -2.0 * alpha.ln() + (1.0 - 2.0 * alpha.ln()).ln();
    let tau2 = k * var * n / TARGET_UNITS;
    (var * (var + tau2) / tau2 * ((var + tau2) / (var * alpha * alpha)).ln()).sqrt()
}

/// A variant against the control on one metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Metric name.
    pub metric: &'static str,
    /// The control's estimate.
    pub control: Estimate,
    /// The variant's estimate.
    pub variant: Estimate,
    /// Variant minus control.
    pub diff: f64,
    /// Always-valid 95% interval of the difference.
    pub diff_ci: [f64; 2],
    /// Variant / control - 1 (None when the control's value is 0).
    pub lift: Option<f64>,
    /// Always-valid 95% interval of the relative lift.
    pub lift_ci: Option<[f64; 2]>,
    /// Whether the difference's interval excludes 0.
    pub significant: bool,
    /// Whether the variant is better with confidence (significant, in the metric's good
    /// direction).
    pub better: bool,
}

/// Compares a variant with the control on a metric, if both have data.
pub fn compare(control: &ArmTally, variant: &ArmTally, metric: Metric) -> Option<Comparison> {
    let (a, b) = (estimate(control, metric)?, estimate(variant, metric)?);
    let n = (a.n + b.n) as f64;
    let diff = b.mean - a.mean;
    let hw = half_width(a.var + b.var, n, ALPHA);
    let diff_ci = [diff - hw, diff + hw];
    let (lift, lift_ci) = if a.mean > 0.0 {
        let lift = b.mean / a.mean - 1.0;
        // The delta method's interval, widened to contain the difference's interval scaled by
        // the control's value: so a lift that excludes 0 always goes with a difference that
        // does, and an arm without spread (no conversions at all), whose delta-method variance
        // vanishes, still gets an honest width.
        let v = b.var / (a.mean * a.mean) + b.mean * b.mean * a.var / a.mean.powi(4);
        let hw = half_width(v, n, ALPHA);
        let ci = [
            (lift - hw).min(diff_ci[0] / a.mean),
            (lift + hw).max(diff_ci[1] / a.mean),
        ];
        // Every metric here is non-negative: a lift cannot be below -100%.
        (Some(lift), Some([ci[0].max(-1.0), ci[1]]))
    } else {
        (None, None)
    };
    let significant = diff_ci[0] > 0.0 || diff_ci[1] < 0.0;
    let better = significant && ((diff > 0.0) == higher_is_better(metric));
    Some(Comparison {
        metric: metric_name(metric),
        control: a,
        variant: b,
        diff,
        diff_ci,
        lift,
        lift_ci,
        significant,
        better,
    })
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, nine terms; relative error about 1e-15).
pub fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let a = C[1..]
        .iter()
        .enumerate()
        .fold(C[0], |a, (i, c)| a + c / (x + i as f64 + 1.0));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The always-valid sample-ratio-mismatch p-value of `counts` against `weights` (variants of
/// weight 0 left out). 1 when there is nothing to test.
pub fn srm_p_value(counts: &[u64], weights: &[f64]) -> f64 {
    let total_w: f64 = weights.iter().filter(|w| **w > 0.0).sum();
    let pairs: Vec<(f64, f64)> = counts
        .iter()
        .zip(weights)
        .filter(|(_, w)| **w > 0.0)
        .map(|(c, w)| (*c as f64, w / total_w))
        .collect();
    if pairs.len() < 2 {
        return 1.0;
    }
    let n: f64 = pairs.iter().map(|p| p.0).sum();
    let alphas: Vec<f64> = pairs.iter().map(|p| SRM_CONCENTRATION * p.1).collect();
    let a: f64 = alphas.iter().sum();
    let mut ln_bf = ln_gamma(a) - ln_gamma(a + n);
    for ((c, p), al) in pairs.iter().zip(&alphas) {
        ln_bf += ln_gamma(al + c) - ln_gamma(*al) - c * p.ln();
    }
    (-ln_bf).exp().min(1.0)
}

/// The sample-ratio check of one experiment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Srm {
    /// Sessions per variant, in bundle order.
    pub sessions: Vec<u64>,
    /// Expected shares from the weights.
    pub expected: Vec<f64>,
    /// Always-valid p-value.
    pub p_value: f64,
    /// Whether p < [`SRM_ALPHA`].
    pub mismatch: bool,
}

/// One guardrail's verdict for one variant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardrailVerdict {
    /// The guardrail as declared.
    pub guardrail: Guardrail,
    /// Broken with confidence.
    pub breached: bool,
    /// The bound the decision compared (a lift interval end, or the value's lower end).
    pub observed: Option<f64>,
    /// What it means, in words.
    pub detail: String,
}

/// Checks a guardrail for a variant against the control.
pub fn guardrail(g: &Guardrail, control: &ArmTally, variant: &ArmTally) -> GuardrailVerdict {
    let name = metric_name(g.metric);
    let verdict = |breached: bool, observed: Option<f64>, detail: String| GuardrailVerdict {
        guardrail: g.clone(),
        breached,
        observed,
        detail,
    };
    if let Some(max) = g.max {
        let Some(e) = estimate(variant, g.metric) else {
            return verdict(false, None, format!("{name}: not enough data"));
        };
        let low = e.mean - half_width(e.var, e.n as f64, ALPHA);
        return verdict(
            low > max,
            Some(low),
            format!("{name} is at least {low:.4} (95% always-valid lower bound) against a limit of {max}"),
        );
    }
    let Some(c) = compare(control, variant, g.metric) else {
        return verdict(false, None, format!("{name}: not enough data"));
    };
    let Some([lo, hi]) = c.lift_ci else {
        return verdict(false, None, format!("{name}: the control's value is 0"));
    };
    if let Some(d) = g.max_drop {
        return verdict(
            hi < -d,
            Some(hi),
            format!(
                "{name} lift is at most {:+.2}% (95% always-valid upper bound) against a limit of -{:.2}%",
                hi * 100.0,
                d * 100.0
            ),
        );
    }
    let r = g.max_rise.unwrap_or(f64::INFINITY);
    verdict(
        lo > r,
        Some(lo),
        format!(
            "{name} rise is at least {:+.2}% (95% always-valid lower bound) against a limit of +{:.2}%",
            lo * 100.0,
            r * 100.0
        ),
    )
}

/// One non-control variant's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantReport {
    /// Variant name.
    pub name: String,
    /// Configured weight.
    pub weight: u32,
    /// Sessions counted.
    pub sessions: u64,
    /// Every metric with data, against the control.
    pub metrics: Vec<Comparison>,
    /// Guardrail verdicts.
    pub guardrails: Vec<GuardrailVerdict>,
    /// Better than the control on the primary metric, with confidence.
    pub wins: bool,
}

/// What the stats engine says about one experiment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Experiment id.
    pub experiment: String,
    /// The control variant's name.
    pub control: String,
    /// Sessions in the control.
    pub control_sessions: u64,
    /// Primary metric, if declared.
    pub primary: Option<&'static str>,
    /// The other variants.
    pub variants: Vec<VariantReport>,
    /// Sample-ratio check (None once a variant's weight is 0: the split was changed on purpose).
    pub srm: Option<Srm>,
    /// Reasons to read the numbers with care.
    pub warnings: Vec<String>,
}

impl Report {
    /// Whether the controller should stop the experiment, and why (the first reason).
    pub fn stop_reason(&self) -> Option<String> {
        if let Some(s) = self.srm.as_ref().filter(|s| s.mismatch) {
            return Some(format!(
                "sample ratio mismatch: sessions {:?} against expected shares {:?} (always-valid p = {:.2e})",
                s.sessions, s.expected, s.p_value
            ));
        }
        let young = self.control_sessions < MIN_SESSIONS;
        self.variants
            .iter()
            .filter(|v| v.weight > 0 && !young && v.sessions >= MIN_SESSIONS)
            .flat_map(|v| v.guardrails.iter().map(move |g| (v, g)))
            .find(|(_, g)| g.breached)
            .map(|(v, g)| {
                format!(
                    "guardrail {} breached by variant {}: {}",
                    metric_name(g.guardrail.metric),
                    v.name,
                    g.detail
                )
            })
    }
}

/// The control variant of an experiment: the one named `control`, else the first.
pub fn control_name(exp: &Experiment) -> &str {
    exp.variants
        .iter()
        .find(|v| v.name == "control")
        .or(exp.variants.first())
        .map_or("", |v| v.name.as_str())
}

/// The report of an experiment from the tallies keyed `experiment/variant`.
pub fn report(exp: &Experiment, arms: &BTreeMap<String, ArmTally>) -> Report {
    let key = |v: &str| format!("{}/{v}", exp.id);
    let empty = ArmTally::default();
    let arm = |v: &str| arms.get(&key(v)).unwrap_or(&empty);
    let control = control_name(exp);
    let c = arm(control);
    let mut warnings = Vec::new();
    let mut variants = Vec::new();
    for v in exp.variants.iter().filter(|v| v.name != control) {
        let a = arm(&v.name);
        if a.sessions < MIN_SESSIONS || c.sessions < MIN_SESSIONS {
            warnings.push(format!(
                "{} vs {control}: fewer than {MIN_SESSIONS} sessions in an arm ({} and {}); results are early",
                v.name, a.sessions, c.sessions
            ));
        }
        let metrics: Vec<Comparison> = METRICS.iter().filter_map(|m| compare(c, a, *m)).collect();
        let wins = exp
            .primary
            .and_then(|p| metrics.iter().find(|m| m.metric == metric_name(p)))
            .is_some_and(|m| m.better);
        variants.push(VariantReport {
            name: v.name.clone(),
            weight: v.weight,
            sessions: a.sessions,
            guardrails: exp.guardrails.iter().map(|g| guardrail(g, c, a)).collect(),
            metrics,
            wins,
        });
    }
    let stopped = exp.variants.iter().any(|v| v.weight == 0);
    let srm = (!stopped).then(|| {
        let sessions: Vec<u64> = exp.variants.iter().map(|v| arm(&v.name).sessions).collect();
        let weights: Vec<f64> = exp.variants.iter().map(|v| f64::from(v.weight)).collect();
        let total: f64 = weights.iter().sum();
        let p_value = srm_p_value(&sessions, &weights);
        Srm {
            sessions,
            expected: weights.iter().map(|w| w / total).collect(),
            p_value,
            mismatch: p_value < SRM_ALPHA,
        }
    });
    Report {
        experiment: exp.id.clone(),
        control: control.to_string(),
        control_sessions: c.sessions,
        primary: exp.primary.map(metric_name),
        variants,
        srm,
        warnings,
    }
}

/// A seeded simulation of many experiments monitored at regular looks (for the A/A error rate
/// and power figures; see BENCHMARKS.md).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Simulation {
    /// Experiments simulated.
    pub experiments: u32,
    /// Looks per experiment (evenly spaced).
    pub looks: u32,
    /// Sessions per arm at the last look.
    pub sessions_per_arm: u32,
    /// Conversion rate of the control (for `ctr`: the click chance per impression).
    pub base_rate: f64,
    /// Relative lift of the variant (0 for A/A): of the rate, or for `revenue` of the amounts.
    pub lift: f64,
    /// Seed.
    pub seed: u64,
    /// What each session yields: `conversion` (0/1), `ctr` (1 + Poisson(3) impressions, each
    /// clicked with the rate) or `revenue` (a purchase with the rate, of a log-normal amount:
    /// median 29.81, heavy-tailed); other metrics simulate as `conversion`.
    pub metric: Metric,
}

/// What a [`Simulation`] found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimulationResult {
    /// Share of experiments whose interval ever excluded 0 at a look.
    pub ever_significant: f64,
    /// Share significant by each look's sessions per arm: `(sessions, share)`.
    pub by_look: Vec<(u32, f64)>,
    /// Share of experiments a fixed-horizon 95% z-test flagged at some look (what naive
    /// peeking would report), for comparison.
    pub naive_ever_significant: f64,
}

/// splitmix64: a small seeded generator for the simulations.
struct SplitMix(u64);

impl SplitMix {
    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let a = self.uniform().max(f64::MIN_POSITIVE);
        let b = self.uniform();
        (-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()
    }
}

/// Runs a simulation: each session yields the metric's values (see [`Simulation::metric`]), the
/// engine looks after every `sessions_per_arm / looks` sessions per arm.
pub fn simulate(s: &Simulation) -> SimulationResult {
    let mut rng = SplitMix(s.seed);
    let metric = match s.metric {
        Metric::Ctr | Metric::Revenue => s.metric,
        _ => Metric::Conversion,
    };
    let step = (s.sessions_per_arm / s.looks.max(1)).max(1);
    let (rate_b, scale_b) = match metric {
        Metric::Revenue => (s.base_rate, 1.0 + s.lift),
        _ => (s.base_rate * (1.0 + s.lift), 1.0),
    };
    let mut first_hit: Vec<Option<u32>> = Vec::with_capacity(s.experiments as usize);
    let mut naive = 0u32;
    for _ in 0..s.experiments {
        let (mut a, mut b) = (ArmTally::default(), ArmTally::default());
        let mut hit = None;
        let mut naive_hit = false;
        for look in 1..=s.looks {
            for _ in 0..step {
                for (arm, rate, scale) in [(&mut a, s.base_rate, 1.0), (&mut b, rate_b, scale_b)] {
                    arm.sessions += 1;
                    match metric {
                        Metric::Ctr => {
                            // 1 + Poisson(3) impressions (Knuth), each clicked with the rate.
                            let (mut k, mut p) = (0u64, rng.uniform());
                            while p > (-3.0f64).exp() {
                                k += 1;
                                p *= rng.uniform();
                            }
                            let n = 1 + k;
                            let c = (0..n).filter(|_| rng.uniform() < rate).count() as u64;
                            arm.impressions.sum += n;
                            arm.impressions.sum_sq += n * n;
                            arm.clicks.sum += c;
                            arm.clicks.sum_sq += c * c;
                            arm.clicks_x_impressions += c * n;
                        }
                        Metric::Revenue => {
                            if rng.uniform() < rate {
                                let cents = ((8.0 + rng.normal()).exp() * scale).round() as u64;
                                let x = cents.min(super::metrics::REVENUE_CAP_CENTS);
                                arm.revenue_cents.sum += x;
                                arm.revenue_cents.sum_sq += x * x;
                            }
                        }
                        _ => {
                            if rng.uniform() < rate {
                                arm.converted.sum += 1;
                                arm.converted.sum_sq += 1;
                            }
                        }
                    }
                }
            }
            if let Some(c) = compare(&a, &b, metric) {
                if hit.is_none() && c.significant {
                    hit = Some(look * step);
                }
                let z = c.diff / (c.control.var + c.variant.var).sqrt();
                naive_hit |= z.abs() > 1.959_964;
            }
        }
        naive += u32::from(naive_hit);
        first_hit.push(hit);
    }
    let n = f64::from(s.experiments.max(1));
    let by_look = (1..=s.looks)
        .map(|l| {
            let at = l * step;
            let k = first_hit
                .iter()
                .filter(|h| h.is_some_and(|h| h <= at))
                .count();
            (at, k as f64 / n)
        })
        .collect();
    SimulationResult {
        ever_significant: first_hit.iter().filter(|h| h.is_some()).count() as f64 / n,
        by_look,
        naive_ever_significant: f64::from(naive) / n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::metrics::Moments;
    use crate::rules::bundle::Variant;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-12)
    }

    fn conv(sessions: u64, converted: u64) -> ArmTally {
        ArmTally::with_conversions(sessions, converted)
    }

    #[test]
    fn ln_gamma_matches_known_values() {
        assert!(ln_gamma(1.0).abs() < 1e-13);
        assert!(ln_gamma(2.0).abs() < 1e-13);
        assert!(close(ln_gamma(5.0), 24f64.ln(), 1e-13));
        assert!(close(
            ln_gamma(0.5),
            std::f64::consts::PI.sqrt().ln(),
            1e-12
        ));
        assert!(close(ln_gamma(101.0), 363.739_375_555_563_5, 1e-13));
    }

    #[test]
    fn two_sessions_are_the_fewest_with_a_variance() {
        assert_eq!(estimate(&conv(1, 1), Metric::Conversion), None);
        // Two sessions, one converted: mean 0.5, sample variance 0.5, of the mean 0.25.
        let e = estimate(&conv(2, 1), Metric::Conversion).unwrap();
        assert_eq!((e.n, e.mean, e.var), (2, 0.5, 0.25));
        assert!(estimate(&conv(3, 1), Metric::Conversion).is_some());
    }

    #[test]
    fn a_proportion_by_hand() {
        // 1,000 sessions, 100 converted: p = 0.1, sample variance = (100 - 1000·0.01)/999
        // = 90/999 = 0.0900901, variance of the mean 9.00901e-5.
        let e = estimate(&conv(1000, 100), Metric::Conversion).unwrap();
        assert!(close(e.mean, 0.1, 1e-12));
        assert!(close(e.var, 90.0 / 999.0 / 1000.0, 1e-12));
    }

    #[test]
    fn half_width_by_hand() {
        // V = 1e-4, n = 10,000 = N*, α = 0.05: k = 5.991465 + ln(6.991465) = 7.936155;
        // τ² = k·V; (V+τ²)/τ² = 8.936155/7.936155 = 1.126005;
        // ln((V+τ²)/(V α²)) = ln(8.936155 · 400) = 8.181822;
        // half-width = sqrt(1e-4 · 1.126005 · 8.181822) = sqrt(9.21277e-4) = 0.0303521.
        let hw = half_width(1e-4, 10_000.0, 0.05);
        assert!(close(hw, 0.030_352_1, 1e-5), "{hw}");
        // Wider than the fixed-horizon 1.96·0.01 (the price of peeking), wider still early on.
        assert!(hw > 0.0196);
        assert!(half_width(1e-4, 1_000.0, 0.05) > hw);
        assert_eq!(half_width(0.0, 10.0, 0.05), 0.0);
        // Nothing can be said from a negative or unknown variance, or from no units.
        for (v, n) in [
            (-1e-4, 100.0),
            (f64::NAN, 100.0),
            (1e-4, 0.0),
            (1e-4, f64::NAN),
        ] {
            assert_eq!(half_width(v, n, 0.05), f64::INFINITY, "{v} {n}");
        }
    }

    #[test]
    fn a_ratio_metric_by_hand() {
        // Two sessions: (clicks, impressions) = (1, 4) and (3, 6). R = 4/10 = 0.4.
        // x̄ = 2, ȳ = 5; s_xx = (10 - 8)/1 = 2, s_yy = (52 - 50)/1 = 2, s_xy = (22 - 20)/1 = 2;
        // var = (2 - 2·0.4·2 + 0.16·2) / (2 · 25) = 0.72 / 50 = 0.0144.
        let arm = ArmTally {
            sessions: 2,
            clicks: Moments { sum: 4, sum_sq: 10 },
            impressions: Moments {
                sum: 10,
                sum_sq: 52,
            },
            clicks_x_impressions: 22,
            ..ArmTally::default()
        };
        let e = estimate(&arm, Metric::Ctr).unwrap();
        assert!(close(e.mean, 0.4, 1e-12));
        assert!(close(e.var, 0.0144, 1e-12), "{}", e.var);
        // One session, or no impressions: no estimate.
        let one = ArmTally {
            sessions: 1,
            impressions: Moments { sum: 4, sum_sq: 16 },
            ..ArmTally::default()
        };
        assert_eq!(estimate(&one, Metric::Ctr), None);
        let unseen = ArmTally {
            sessions: 5,
            ..ArmTally::default()
        };
        assert_eq!(estimate(&unseen, Metric::Ctr), None);
    }

    #[test]
    fn a_comparison_by_hand() {
        // Control 1000 sessions, 100 conversions; variant 1000, 150.
        // V_A = 0.0900901/1000, V_B = (150 - 1000·0.0225)/999/1000 = 0.1276276/1000.
        // diff = 0.05; V = 2.177177e-4; n = 2000: τ² = k·V·0.2;
        // half-width = sqrt(V · (1 + 1/(0.2k)) · ln((1 + 0.2k)/α²))
        // = sqrt(2.177177e-4 · 1.630028 · 6.942053) = 0.0496350.
        let c = compare(&conv(1000, 100), &conv(1000, 150), Metric::Conversion).unwrap();
        assert!(close(c.diff, 0.05, 1e-12));
        let hw = c.diff_ci[1] - c.diff;
        let v: f64 = 90.0 / 999.0 / 1000.0 + 127.5 / 999.0 / 1000.0;
        let k = -2.0 * 0.05f64.ln() + (1.0 - 2.0 * 0.05f64.ln()).ln();
        let c2 = 0.2 * k;
        let want = (v * (1.0 + 1.0 / c2) * ((1.0 + c2) / 0.0025).ln()).sqrt();
        assert!(close(hw, want, 1e-12));
        assert!(close(hw, 0.049_635_0, 1e-5), "{hw}");
        // Just significant: the interval is [0.000365, 0.0996] (a fixed-horizon test would give
        // ±0.0289).
        assert!(c.significant && c.better);
        assert!(
            !compare(&conv(1000, 100), &conv(1000, 145), Metric::Conversion)
                .unwrap()
                .significant
        );
        let big = compare(
            &conv(20_000, 2_000),
            &conv(20_000, 2_300),
            Metric::Conversion,
        )
        .unwrap();
        assert!(big.significant && big.better);
        assert!(close(big.lift.unwrap(), 0.15, 1e-12));
    }

    #[test]
    fn for_fallbacks_and_latency_lower_is_better() {
        let fallbacks = |f: u64| ArmTally {
            decisions: 20_000,
            fallbacks: f,
            ..ArmTally::default()
        };
        let fewer = compare(&fallbacks(2_000), &fallbacks(1_000), Metric::FallbackShare).unwrap();
        assert!(fewer.significant && fewer.better, "{fewer:?}");
        let more = compare(&fallbacks(1_000), &fallbacks(2_000), Metric::FallbackShare).unwrap();
        assert!(more.significant && !more.better);
        // A share of decisions by hand: 20 of 100 → p = 0.2, variance p(1−p)/d = 0.0016.
        let share = ArmTally {
            decisions: 100,
            fallbacks: 20,
            ..ArmTally::default()
        };
        let e = estimate(&share, Metric::FallbackShare).unwrap();
        assert!(
            close(e.mean, 0.2, 1e-12) && close(e.var, 0.0016, 1e-12),
            "{e:?}"
        );
        // A share needs two decisions (1 of 2: variance 0.25 / 2).
        let two = ArmTally {
            decisions: 2,
            fallbacks: 1,
            ..ArmTally::default()
        };
        assert!(close(
            estimate(&two, Metric::FallbackShare).unwrap().var,
            0.125,
            1e-12
        ));
        assert_eq!(
            estimate(&fallbacks(0), Metric::FallbackShare).map(|e| e.n),
            Some(20_000)
        );
        for d in [0, 1] {
            let few = ArmTally {
                decisions: d,
                ..ArmTally::default()
            };
            assert_eq!(estimate(&few, Metric::FallbackShare), None, "{d}");
        }
        assert!(higher_is_better(Metric::Ctr) && !higher_is_better(Metric::LatencyUs));
        // The error share: 4xx/5xx per response, lower is better; 3 of 600 → 0.005,
        // variance 0.005 × 0.995 / 600.
        let errors = |e: u64| {
            let mut t = ArmTally::default();
            for i in 0..600 {
                t.count_response(if i < e { 503 } else { 200 });
            }
            t
        };
        let e = estimate(&errors(3), Metric::ErrorShare).unwrap();
        assert_eq!(e.n, 600);
        assert!(close(e.mean, 0.005, 1e-12) && close(e.var, 0.005 * 0.995 / 600.0, 1e-15));
        assert!(!higher_is_better(Metric::ErrorShare));
        let worse = compare(&errors(0), &errors(60), Metric::ErrorShare).unwrap();
        assert!(worse.significant && !worse.better, "{worse:?}");
        assert_eq!(estimate(&ArmTally::default(), Metric::ErrorShare), None);
        let mut forged = errors(3);
        forged.errors = 601;
        assert_eq!(forged.implausible(), Some("more errors than responses"));
    }

    #[test]
    fn a_lift_interval_is_never_narrower_than_the_difference_says() {
        // No conversions at all in the variant: the delta method alone would give a zero-width
        // interval at -100%.
        let c = compare(&conv(1000, 100), &conv(1000, 0), Metric::Conversion).unwrap();
        let [lo, hi] = c.lift_ci.unwrap();
        assert_eq!(c.lift, Some(-1.0));
        assert_eq!(lo, -1.0, "clamped at -100%");
        assert!(close(hi, c.diff_ci[1] / 0.1, 1e-12) && hi < 0.0);
        // Whenever the lift excludes 0, so does the difference.
        for (a, b) in [(100, 130), (100, 80), (100, 101), (50, 95), (300, 240)] {
            let c = compare(&conv(3000, a), &conv(3000, b), Metric::Conversion).unwrap();
            let [lo, hi] = c.lift_ci.unwrap();
            if lo > 0.0 || hi < 0.0 {
                assert!(c.significant, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn srm_by_hand_and_on_a_skewed_split() {
        // Two arms, weights 1:1, counts (1, 0), concentration 100 → α = (50, 50):
        // BF = Γ(100)/Γ(101) · Γ(51)/Γ(50) / 0.5 = (1/100) · 50 · 2 = 1 → p = 1.
        assert!(close(srm_p_value(&[1, 0], &[1.0, 1.0]), 1.0, 1e-12));
        // A fair split stays quiet; a 10% shortfall on 20,000 sessions is caught.
        assert!(srm_p_value(&[10_030, 9_970], &[1.0, 1.0]) > 0.5);
        assert!(srm_p_value(&[10_500, 9_500], &[1.0, 1.0]) < SRM_ALPHA);
        // Weights are respected: 1:3 is not a mismatch.
        assert!(srm_p_value(&[5_000, 15_000], &[1.0, 3.0]) > 0.5);
        // A variant at weight 0 is left out.
        assert_eq!(srm_p_value(&[5_000, 3], &[1.0, 0.0]), 1.0);
    }

    fn exp(guardrails: Vec<Guardrail>) -> Experiment {
        Experiment {
            id: "e".into(),
            salt: "s".into(),
            variants: vec![
                Variant {
                    name: "control".into(),
                    feedback: None,
                    weight: 1,
                },
                Variant {
                    name: "b".into(),
                    feedback: None,
                    weight: 1,
                },
            ],
            primary: Some(Metric::Conversion),
            guardrails,
        }
    }

    #[test]
    fn guardrails_stop_only_with_confidence() {
        let drop2 = Guardrail {
            metric: Metric::Conversion,
            max_drop: Some(0.02),
            max_rise: None,
            max: None,
        };
        let arms = |c: ArmTally, b: ArmTally| {
            BTreeMap::from([("e/control".to_string(), c), ("e/b".to_string(), b)])
        };
        // Conversion halves on 5,000 sessions each: breached.
        let r = report(
            &exp(vec![drop2.clone()]),
            &arms(conv(5000, 500), conv(5000, 250)),
        );
        assert!(r.variants[0].guardrails[0].breached);
        assert!(r
            .stop_reason()
            .unwrap()
            .contains("guardrail conversion breached by variant b"));
        assert!(!r.variants[0].wins);
        // The same halving on 60 sessions each: too early to stop.
        let early = report(&exp(vec![drop2.clone()]), &arms(conv(60, 6), conv(60, 3)));
        assert_eq!(early.stop_reason(), None);
        assert!(!early.warnings.is_empty());
        // Equal rates: no breach, no win.
        let same = report(&exp(vec![drop2]), &arms(conv(5000, 500), conv(5000, 500)));
        assert_eq!(same.stop_reason(), None);
        // A fallback share of 20% against a 5% ceiling.
        let fb = Guardrail {
            metric: Metric::FallbackShare,
            max_drop: None,
            max_rise: None,
            max: Some(0.05),
        };
        let mut b = conv(500, 50);
        b.decisions = 2000;
        b.fallbacks = 400;
        let r = report(&exp(vec![fb]), &arms(conv(500, 50), b));
        assert!(
            r.variants[0].guardrails[0].breached,
            "{:?}",
            r.variants[0].guardrails
        );
        // A winner is reported, never stopped for winning.
        let win = report(
            &exp(vec![]),
            &arms(conv(20_000, 2_000), conv(20_000, 2_400)),
        );
        assert!(win.variants[0].wins);
        assert_eq!(win.stop_reason(), None);
        // A skewed split stops the experiment.
        let skew = report(&exp(vec![]), &arms(conv(12_000, 0), conv(8_000, 0)));
        assert!(skew
            .stop_reason()
            .unwrap()
            .starts_with("sample ratio mismatch"));
    }

    #[test]
    fn a_a_experiments_monitored_50_times_rarely_declare_a_difference() {
        // The check: 1,000 A/A experiments, 50 looks each, for a proportion, the ratio
        // metric (delta method) and a skewed, capped one (figures in BENCHMARKS.md, from
        // `edgerec experiments simulate`). Naive peeking at a fixed-horizon test, what this
        // protects from, flags far more.
        for metric in [Metric::Conversion, Metric::Ctr, Metric::Revenue] {
            let r = simulate(&Simulation {
                experiments: 1000,
                looks: 50,
                sessions_per_arm: 10_000,
                base_rate: 0.1,
                lift: 0.0,
                seed: 1,
                metric,
            });
            assert!(r.ever_significant <= 0.05, "{metric:?}: {r:?}");
            assert!(r.naive_ever_significant > 0.15, "{metric:?}: {r:?}");
        }
    }

    #[test]
    fn a_real_lift_is_found() {
        let r = simulate(&Simulation {
            experiments: 200,
            looks: 20,
            sessions_per_arm: 20_000,
            base_rate: 0.1,
            lift: 0.15,
            seed: 2,
            metric: Metric::Conversion,
        });
        assert!(r.ever_significant > 0.8, "{r:?}");
        assert!(r.by_look.windows(2).all(|w| w[0].1 <= w[1].1));
    }
}
