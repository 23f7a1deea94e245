//! `simulate`: what a candidate rule bundle would change, before it ships. Recorded sessions
//! (sampled traces from the edge, or click logs) are replayed event by event through the real
//! [`Engine::decide`] twice — with the live (or a given baseline) bundle and with the candidate,
//! on the same model — exactly as the edge decides: state blob in, state blob out, one decision
//! after each event, scored against the event that followed (the `eval` protocol).
//!
//! The [`Report`] compares the two: how many top-k lists changed and how much they overlap; per
//! rule, how often it fires and what it does to the items it touches; which items gain and lose
//! exposure; coverage and diversity; HR@K and MRR@K with a bootstrap interval over sessions;
//! cost per decision; and warnings about rules that are likely mistakes.

use crate::eval::Metrics;
use edgerec::engine::{DecideRequest, Engine};
use edgerec::features::Context;
use edgerec::rules::ir::Act;
use edgerec::trace::Session;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// Share of decisions above which a rule "fires on nearly every decision".
pub const ALWAYS_FIRES: f64 = 0.95;

/// How to compare.
#[derive(Debug, Clone)]
pub struct Options {
    /// The list length compared (changed share, overlap, exposure, coverage, diversity).
    pub k: usize,
    /// Cut-offs of HR and MRR.
    pub ks: Vec<usize>,
    /// Bootstrap resamples of sessions for the intervals (0 = none).
    pub bootstrap: usize,
    /// Seed of the resampling.
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            k: 10,
            ks: vec![10, 20],
            bootstrap: 1000,
            seed: 1,
        }
    }
}

/// What the model says of an item: whether it is known, and available.
pub trait Items {
    /// None: unknown; Some(available).
    fn available(&self, id: &str) -> Option<bool>;
    /// Items in the catalog.
    fn len(&self) -> usize;
    /// Whether the catalog is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Items for edgerec::catalog::CatalogDoc {
    fn available(&self, id: &str) -> Option<bool> {
        self.items.iter().find(|i| i.id == id).map(|i| i.available)
    }
    fn len(&self) -> usize {
        self.items.len()
    }
}

/// Per side: 0 = live (baseline), 1 = candidate.
#[derive(Default)]
struct SideAcc {
    fires: FxHashMap<Arc<str>, u64>,
    empty: u64,
    categories: u64,
    micros: Vec<f32>,
    blob_sum: u64,
    blob_max: u64,
    metrics: Option<Metrics>,
}

#[derive(Default, Clone)]
struct Effect {
    touched: u64,
    rank_change: f64,
    gained: u64,
    lost: u64,
    emptied: u64,
}

/// Replays sessions and accumulates the comparison.
pub struct Simulator<'a> {
    engines: [&'a Engine; 2],
    opts: Options,
    side: [SideAcc; 2],
    sessions: u64,
    skipped: u64,
    decisions: u64,
    changed: u64,
    overlap: f64,
    histogram: [u64; 11],
    exposure: FxHashMap<String, [u64; 2]>,
    effects: FxHashMap<Arc<str>, Effect>,
    /// Per session: predictions, then per cut-off hits live, hits candidate, rr live, rr
    /// candidate (what the bootstrap resamples).
    per_session: Vec<f64>,
}

/// Items of a list a rule touched: its `rule:<id>` or `pin:<id>` reasons.
fn touched_by(why: &[Arc<str>]) -> impl Iterator<Item = &str> {
    why.iter()
        .filter_map(|w| w.strip_prefix("rule:").or_else(|| w.strip_prefix("pin:")))
}

impl<'a> Simulator<'a> {
    /// Compares `live` (or a baseline) with `candidate`; both must hold the same model.
    pub fn new(live: &'a Engine, candidate: &'a Engine, opts: Options) -> Simulator<'a> {
        let mut side: [SideAcc; 2] = Default::default();
        for s in &mut side {
            s.metrics = Some(Metrics::new(&opts.ks));
        }
        Simulator {
            engines: [live, candidate],
            opts,
            side,
            sessions: 0,
            skipped: 0,
            decisions: 0,
            changed: 0,
            overlap: 0.0,
            histogram: [0; 11],
            exposure: FxHashMap::default(),
            effects: FxHashMap::default(),
            per_session: Vec::new(),
        }
    }

    /// Replays one session (sessions with fewer than two events predict nothing: skipped).
    pub fn session(&mut self, s: &Session) {
        let n = s.events.len();
        if n < 2 {
            self.skipped += 1;
            return;
        }
        self.sessions += 1;
        let limit = self
            .opts
            .ks
            .iter()
            .copied()
            .chain([self.opts.k])
            .max()
            .unwrap_or(20);
        let nk = self.opts.ks.len();
        let mut row = vec![0.0; 1 + 4 * nk];
        row[0] = (n - 1) as f64;
        let mut states: [Option<Vec<u8>>; 2] = [None, None];
        for t in 0..n - 1 {
            let events = std::slice::from_ref(&s.events[t]);
            let next = s.events[t + 1].item.as_str();
            let mut lists: [Vec<edgerec::Recommendation>; 2] = Default::default();
            for (i, engine) in self.engines.iter().enumerate() {
                let started = Instant::now();
                let d = engine.decide(&DecideRequest {
                    state: states[i].as_deref(),
                    events,
                    context: Context {
                        session_id: Some(s.id.clone()),
                        ..Context::default()
                    },
                    now_ms: s.events[t].ts,
                    limit,
                    tier: None,
                    trace: None,
                });
                let side = &mut self.side[i];
                side.micros.push(started.elapsed().as_secs_f32() * 1e6);
                if d.state_changed {
                    states[i] = d.state;
                }
                let blob = states[i].as_ref().map_or(0, |b| b.len() as u64);
                side.blob_sum += blob;
                side.blob_max = side.blob_max.max(blob);
                for r in &d.rule_hits {
                    *side.fires.entry(r.clone()).or_default() += 1;
                }
                let ids: Vec<&str> = d.items.iter().map(|r| r.id.as_str()).collect();
                if let Some(m) = side.metrics.as_mut() {
                    m.score(&ids, next);
                }
                if let Some(pos) = ids.iter().position(|i| *i == next) {
                    for (j, &k) in self.opts.ks.iter().enumerate() {
                        if pos < k {
                            row[1 + 4 * j + i] += 1.0;
                            row[1 + 4 * j + 2 + i] += 1.0 / (pos + 1) as f64;
                        }
                    }
                }
                if d.items.is_empty() {
                    side.empty += 1;
                    if i == 1 {
                        for r in &d.rule_hits {
                            self.effects.entry(r.clone()).or_default().emptied += 1;
                        }
                    }
                }
                lists[i] = d.items;
            }
            self.compare(&lists);
        }
        self.per_session.extend(row);
    }

    fn compare(&mut self, lists: &[Vec<edgerec::Recommendation>; 2]) {
        self.decisions += 1;
        let k = self.opts.k;
        let top: [&[edgerec::Recommendation]; 2] =
            [0, 1].map(|i| &lists[i][..lists[i].len().min(k)]);
        let rank = |side: usize, id: &str| top[side].iter().position(|r| r.id == id);
        if top[0]
            .iter()
            .map(|r| &r.id)
            .ne(top[1].iter().map(|r| &r.id))
        {
            self.changed += 1;
        }
        let ids = |i: usize| top[i].iter().map(|r| r.id.as_str()).collect::<Vec<_>>();
        let overlap = edgerec::recommend::overlap(&ids(0), &ids(1));
        self.overlap += overlap;
        self.histogram[(overlap * 10.0).round() as usize] += 1;
        for (i, list) in top.iter().enumerate() {
            let mut cats: Vec<&str> = list.iter().filter_map(|r| r.category.as_deref()).collect();
            cats.sort_unstable();
            cats.dedup();
            self.side[i].categories += cats.len() as u64;
            for r in *list {
                self.exposure.entry(r.id.clone()).or_default()[i] += 1;
            }
        }
        // What the candidate's rules did to the items they touched, against the live list.
        for (pos, r) in top[1].iter().enumerate() {
            let before = rank(0, &r.id).unwrap_or(k);
            for rule in touched_by(&r.why) {
                let e = self.effects.entry(Arc::from(rule)).or_default();
                e.touched += 1;
                e.rank_change += before as f64 - pos as f64;
                if rank(0, &r.id).is_none() {
                    e.gained += 1;
                }
            }
        }
        for r in top[0] {
            if rank(1, &r.id).is_none() {
                for rule in touched_by(&r.why) {
                    self.effects.entry(Arc::from(rule)).or_default().lost += 1;
                }
            }
        }
    }

    /// The comparison, with warnings about the candidate's rules checked against `items`.
    pub fn report(self, items: &dyn Items) -> Report {
        let n = self.decisions.max(1) as f64;
        let bundles = self.engines.map(|e| e.bundle());
        let nk = self.opts.ks.len();
        let mut metrics = Vec::new();
        for (j, &k) in self.opts.ks.iter().enumerate() {
            for (what, off) in [("hr", 0), ("mrr", 2)] {
                let value = |side: usize| {
                    let m = self.side[side].metrics.as_ref();
                    m.map_or(0.0, |m| if off == 0 { m.hit_rate(k) } else { m.mrr(k) })
                };
                let (live, candidate) = (value(0), value(1));
                let (lo, hi) = bootstrap(
                    &self.per_session,
                    1 + 4 * nk,
                    1 + 4 * j + off,
                    self.opts.bootstrap,
                    self.opts.seed,
                );
                metrics.push(MetricRow {
                    name: format!("{what}{k}"),
                    live,
                    candidate,
                    delta: candidate - live,
                    lo,
                    hi,
                });
            }
        }
        // Rules: every rule of either bundle, candidate's priority order first.
        let mut ids: Vec<(Arc<str>, Option<i32>, Option<i32>)> = Vec::new();
        for (side, b) in bundles.iter().enumerate().rev() {
            for r in &b.rules {
                match ids.iter_mut().find(|x| x.0 == r.id) {
                    Some(x) => x.1 = Some(r.priority),
                    None => ids.push(if side == 1 {
                        (r.id.clone(), None, Some(r.priority))
                    } else {
                        (r.id.clone(), Some(r.priority), None)
                    }),
                }
            }
        }
        let fires =
            |side: usize, id: &Arc<str>| self.side[side].fires.get(id).copied().unwrap_or(0);
        let rules: Vec<RuleRow> = ids
            .iter()
            .map(|(id, in_live, in_cand)| {
                let e = self.effects.get(id).cloned().unwrap_or_default();
                RuleRow {
                    id: id.to_string(),
                    in_live: in_live.is_some(),
                    in_candidate: in_cand.is_some(),
                    fires_live: fires(0, id),
                    fires_candidate: fires(1, id),
                    fire_rate_live: fires(0, id) as f64 / n,
                    fire_rate_candidate: fires(1, id) as f64 / n,
                    touched: e.touched,
                    mean_rank_change: if e.touched > 0 {
                        e.rank_change / e.touched as f64
                    } else {
                        0.0
                    },
                    gained: e.gained,
                    lost: e.lost,
                    emptied: e.emptied,
                }
            })
            .collect();
        let mut moves: Vec<ItemMove> = self
            .exposure
            .iter()
            .filter(|(_, c)| c[0] != c[1])
            .map(|(id, c)| ItemMove {
                item: id.clone(),
                live: c[0],
                candidate: c[1],
                delta: c[1] as i64 - c[0] as i64,
            })
            .collect();
        moves.sort_by(|a, b| b.delta.cmp(&a.delta).then_with(|| a.item.cmp(&b.item)));
        let gainers: Vec<ItemMove> = moves
            .iter()
            .filter(|m| m.delta > 0)
            .take(10)
            .cloned()
            .collect();
        let mut losers: Vec<ItemMove> = moves
            .iter()
            .rev()
            .filter(|m| m.delta < 0)
            .take(10)
            .cloned()
            .collect();
        losers.sort_by(|a, b| a.delta.cmp(&b.delta).then_with(|| a.item.cmp(&b.item)));
        let shown = |side: usize| self.exposure.values().filter(|c| c[side] > 0).count() as u64;
        let catalog = items.len().max(1) as f64;
        let side = |f: &dyn Fn(usize) -> f64| Side {
            live: f(0),
            candidate: f(1),
        };
        let cost = [0, 1].map(|i| {
            let mut m = self.side[i].micros.clone();
            m.sort_by(f32::total_cmp);
            let q = |p: f64| {
                m.get(((m.len().max(1) - 1) as f64 * p).round() as usize)
                    .copied()
                    .unwrap_or(0.0) as f64
            };
            Cost {
                median_us: q(0.5),
                p99_us: q(0.99),
                blob_bytes_mean: self.side[i].blob_sum as f64 / n,
                blob_bytes_max: self.side[i].blob_max,
            }
        });
        let [cost_live, cost_candidate] = cost;
        let warnings = warnings(bundles[1], &rules, self.decisions, items);
        Report {
            live: BundleInfo::of(bundles[0]),
            candidate: BundleInfo::of(bundles[1]),
            sessions: self.sessions,
            skipped_sessions: self.skipped,
            decisions: self.decisions,
            k: self.opts.k,
            changed_share: self.changed as f64 / n,
            overlap_mean: if self.decisions > 0 {
                self.overlap / n
            } else {
                1.0
            },
            overlap_histogram: self.histogram.to_vec(),
            metrics,
            rules,
            gainers,
            losers,
            items_shown: side(&|i| shown(i) as f64),
            coverage: side(&|i| shown(i) as f64 / catalog),
            diversity: side(&|i| self.side[i].categories as f64 / n),
            empty_lists: side(&|i| self.side[i].empty as f64),
            cost: Side {
                live: cost_live,
                candidate: cost_candidate,
            },
            bootstrap: self.opts.bootstrap,
            warnings,
        }
    }
}

/// Percentile 95% interval of candidate − live for one metric, over sessions resampled with
/// replacement. `row` values per session, `col` the live column (candidate is `col + 1`).
fn bootstrap(per: &[f64], row: usize, col: usize, times: usize, seed: u64) -> (f64, f64) {
    let sessions = per.len() / row;
    if times == 0 || sessions == 0 {
        return (0.0, 0.0);
    }
    let mut rng = edgerec::workload::Rng(seed ^ col as u64);
    let mut deltas: Vec<f64> = (0..times)
        .map(|_| {
            let (mut n, mut a, mut b) = (0.0, 0.0, 0.0);
            for _ in 0..sessions {
                let s = rng.below(sessions) * row;
                n += per[s];
                a += per[s + col];
                b += per[s + col + 1];
            }
            if n > 0.0 {
                (b - a) / n
            } else {
                0.0
            }
        })
        .collect();
    deltas.sort_by(f64::total_cmp);
    let q = |p: f64| deltas[((times - 1) as f64 * p).round() as usize];
    (q(0.025), q(0.975))
}

fn warnings(
    cand: &edgerec::rules::CompiledBundle,
    rules: &[RuleRow],
    decisions: u64,
    items: &dyn Items,
) -> Vec<Warning> {
    let mut out = Vec::new();
    let row = |id: &str| rules.iter().find(|r| r.id == id);
    for r in &cand.rules {
        let id = r.id.to_string();
        for a in &r.then {
            if let Act::Pin(item, _) = a {
                match items.available(item) {
                    None => out.push(Warning::new(
                        "pin_unknown",
                        &id,
                        format!("pins {item}, which is not in the catalog"),
                    )),
                    Some(false) => out.push(Warning::new(
                        "pin_unavailable",
                        &id,
                        format!("pins {item}, which is unavailable"),
                    )),
                    Some(true) => {}
                }
            }
        }
        let Some(row) = row(&id) else { continue };
        if decisions == 0 {
            continue;
        }
        if row.fires_candidate == 0 {
            out.push(Warning::new(
                "never_fires",
                &id,
                format!("fired in none of {decisions} decisions"),
            ));
        } else if row.fire_rate_candidate > ALWAYS_FIRES {
            out.push(Warning::new(
                "always_fires",
                &id,
                format!(
                    "fired in {:.1}% of decisions",
                    row.fire_rate_candidate * 100.0
                ),
            ));
        }
        if row.emptied > 0 {
            out.push(Warning::new(
                "empties_list",
                &id,
                format!("fired in {} decisions that returned no items", row.emptied),
            ));
        }
        // A rule that only adds or pins items, fires, and never places one in the top-k: higher
        // priority rules or filters take its place.
        let adds = r.then.iter().all(|a| {
            matches!(
                a,
                Act::BoostRelated(..) | Act::BoostCategory(..) | Act::Pin(..)
            )
        });
        if adds && row.fires_candidate > 0 && row.touched == 0 {
            out.push(Warning::new(
                "shadowed",
                &id,
                format!("fired in {} decisions but placed no item in the top-k (higher-priority rules or filters win)", row.fires_candidate),
            ));
        }
    }
    out
}

/// One bundle's identity.
#[derive(Debug, Clone, Serialize)]
pub struct BundleInfo {
    /// Author's version label.
    pub version: String,
    /// Content hash.
    pub hash: String,
    /// Enabled rules.
    pub rules: usize,
}

impl BundleInfo {
    fn of(b: &edgerec::rules::CompiledBundle) -> BundleInfo {
        BundleInfo {
            version: b.version.clone(),
            hash: b.hash.clone(),
            rules: b.rules.len(),
        }
    }
}

/// A value for live and candidate.
#[derive(Debug, Clone, Serialize)]
pub struct Side<T> {
    /// Live (or baseline).
    pub live: T,
    /// Candidate.
    pub candidate: T,
}

/// HR or MRR at a cut-off, both sides, difference and its bootstrap 95% interval.
#[derive(Debug, Clone, Serialize)]
pub struct MetricRow {
    /// `hr10`, `mrr20`, …
    pub name: String,
    /// Live.
    pub live: f64,
    /// Candidate.
    pub candidate: f64,
    /// candidate − live.
    pub delta: f64,
    /// Lower end of the 95% interval of the difference.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
}

/// One rule of either bundle.
#[derive(Debug, Clone, Serialize)]
pub struct RuleRow {
    /// Rule id.
    pub id: String,
    /// In the live bundle.
    pub in_live: bool,
    /// In the candidate.
    pub in_candidate: bool,
    /// Decisions it fired in, live.
    pub fires_live: u64,
    /// Decisions it fired in, candidate.
    pub fires_candidate: u64,
    /// Share of decisions, live.
    pub fire_rate_live: f64,
    /// Share of decisions, candidate.
    pub fire_rate_candidate: f64,
    /// Items of the candidate's top-k carrying this rule's reason.
    pub touched: u64,
    /// Mean of (live rank − candidate rank) over those items (positive: moved up; an item not
    /// in the live top-k counts from rank k + 1).
    pub mean_rank_change: f64,
    /// Of those, items not in the live top-k.
    pub gained: u64,
    /// Items of the live top-k carrying this rule's reason that left the candidate's top-k.
    pub lost: u64,
    /// Candidate decisions it fired in that returned no items.
    pub emptied: u64,
}

/// An item's top-k appearances, live and candidate.
#[derive(Debug, Clone, Serialize)]
pub struct ItemMove {
    /// Item id.
    pub item: String,
    /// Live appearances.
    pub live: u64,
    /// Candidate appearances.
    pub candidate: u64,
    /// candidate − live.
    pub delta: i64,
}

/// Cost per decision.
#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    /// Median µs (this machine, native).
    pub median_us: f64,
    /// 99th percentile µs.
    pub p99_us: f64,
    /// Mean stored blob bytes after a decision.
    pub blob_bytes_mean: f64,
    /// Largest blob.
    pub blob_bytes_max: u64,
}

/// Something about the candidate that is probably a mistake.
#[derive(Debug, Clone, Serialize)]
pub struct Warning {
    /// `never_fires`, `always_fires`, `pin_unknown`, `pin_unavailable`, `empties_list`,
    /// `shadowed`.
    pub kind: String,
    /// The rule.
    pub rule: String,
    /// In words.
    pub detail: String,
}

impl Warning {
    fn new(kind: &str, rule: &str, detail: String) -> Warning {
        Warning {
            kind: kind.into(),
            rule: rule.into(),
            detail,
        }
    }
}

/// The comparison of a candidate bundle with the live one over replayed sessions.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Live (or baseline) bundle.
    pub live: BundleInfo,
    /// Candidate bundle.
    pub candidate: BundleInfo,
    /// Sessions replayed.
    pub sessions: u64,
    /// Sessions with fewer than two events (nothing to predict).
    pub skipped_sessions: u64,
    /// Decisions compared (one per event but each session's last).
    pub decisions: u64,
    /// List length compared.
    pub k: usize,
    /// Share of decisions whose top-k (ids, in order) differs.
    pub changed_share: f64,
    /// Mean |live ∩ candidate| / k over decisions.
    pub overlap_mean: f64,
    /// Decisions by overlap, in tenths (0.0, 0.1, …, 1.0).
    pub overlap_histogram: Vec<u64>,
    /// HR@K and MRR@K.
    pub metrics: Vec<MetricRow>,
    /// Every rule of either bundle.
    pub rules: Vec<RuleRow>,
    /// Items gaining the most top-k appearances.
    pub gainers: Vec<ItemMove>,
    /// Items losing the most.
    pub losers: Vec<ItemMove>,
    /// Distinct items in any top-k.
    pub items_shown: Side<f64>,
    /// items_shown / catalog items.
    pub coverage: Side<f64>,
    /// Mean distinct categories per top-k.
    pub diversity: Side<f64>,
    /// Decisions that returned no items.
    pub empty_lists: Side<f64>,
    /// Cost per decision.
    pub cost: Side<Cost>,
    /// Bootstrap resamples behind the intervals.
    pub bootstrap: usize,
    /// Likely mistakes in the candidate.
    pub warnings: Vec<Warning>,
}

impl Report {
    /// Every number by name, as `--fail-if` reads them: `changed_share`, `overlap_mean`,
    /// `hr20_live`, `hr20_candidate`, `hr20_delta`, `hr20_delta_lo`, `hr20_delta_hi` (and mrr),
    /// `coverage_live`, …, `warnings`, `sessions`, `decisions`.
    pub fn numbers(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        m.insert("sessions".into(), self.sessions as f64);
        m.insert("decisions".into(), self.decisions as f64);
        m.insert("changed_share".into(), self.changed_share);
        m.insert("overlap_mean".into(), self.overlap_mean);
        m.insert("warnings".into(), self.warnings.len() as f64);
        for r in &self.metrics {
            m.insert(format!("{}_live", r.name), r.live);
            m.insert(format!("{}_candidate", r.name), r.candidate);
            m.insert(format!("{}_delta", r.name), r.delta);
            m.insert(format!("{}_delta_lo", r.name), r.lo);
            m.insert(format!("{}_delta_hi", r.name), r.hi);
        }
        for (name, s) in [
            ("coverage", &self.coverage),
            ("diversity", &self.diversity),
            ("empty_lists", &self.empty_lists),
            ("items_shown", &self.items_shown),
        ] {
            m.insert(format!("{name}_live"), s.live);
            m.insert(format!("{name}_candidate"), s.candidate);
        }
        for (name, c) in [
            ("live", &self.cost.live),
            ("candidate", &self.cost.candidate),
        ] {
            m.insert(format!("us_median_{name}"), c.median_us);
            m.insert(format!("us_p99_{name}"), c.p99_us);
            m.insert(format!("blob_bytes_mean_{name}"), c.blob_bytes_mean);
        }
        m
    }
}

/// A `--fail-if` condition: `<number> <op> <value>`, e.g. `hr20_delta < -0.01`.
#[derive(Debug, Clone, PartialEq)]
pub struct FailIf {
    /// A name from [`Report::numbers`].
    pub name: String,
    /// `<`, `<=`, `>`, `>=`, `==`, `!=`.
    pub op: String,
    /// Threshold.
    pub value: f64,
}

/// Why a `--fail-if` expression was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("--fail-if {expr:?}: {why}")]
pub struct FailIfError {
    /// The expression.
    pub expr: String,
    /// What is wrong.
    pub why: String,
}

impl FailIf {
    /// Parses `name op value`.
    pub fn parse(expr: &str) -> Result<FailIf, FailIfError> {
        let err = |why: &str| FailIfError {
            expr: expr.into(),
            why: why.into(),
        };
        let at = expr
            .find(['<', '>', '=', '!'])
            .ok_or_else(|| err("expected `name op value` with op one of < <= > >= == !="))?;
        let (name, rest) = expr.split_at(at);
        let oplen = if rest[1..].starts_with('=') { 2 } else { 1 };
        let (op, value) = rest.split_at(oplen);
        if !["<", "<=", ">", ">=", "==", "!="].contains(&op) {
            return Err(err("op must be one of < <= > >= == !="));
        }
        let value: f64 = value
            .trim()
            .parse()
            .map_err(|_| err("the value must be a number"))?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(err("the name must be a report number such as hr20_delta"));
        }
        Ok(FailIf {
            name: name.into(),
            op: op.into(),
            value,
        })
    }

    /// Whether it holds for a report; an unknown name is an error listing the known ones.
    pub fn holds(&self, numbers: &BTreeMap<String, f64>) -> Result<bool, FailIfError> {
        let x = *numbers.get(&self.name).ok_or_else(|| FailIfError {
            expr: self.name.clone(),
            why: format!(
                "unknown number; known: {}",
                numbers.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        })?;
        Ok(match self.op.as_str() {
            "<" => x < self.value,
            "<=" => x <= self.value,
            ">" => x > self.value,
            ">=" => x >= self.value,
            "==" => x == self.value,
            _ => x != self.value,
        })
    }
}

/// What reading traces saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TraceStats {
    /// Lines (records) read.
    pub records: u64,
    /// Trace fragments taken.
    pub fragments: u64,
    /// Records of the sessions topic that did not match its schema (skipped).
    pub bad: u64,
    /// Events dropped as copies (a batch delivered twice).
    pub copies: u64,
    /// Sessions joined.
    pub sessions: u64,
}

/// Joins the trace fragments of the collector's records file (JSON lines; other topics skipped).
pub fn read_traces(
    input: impl std::io::BufRead,
    prefix: &str,
) -> std::io::Result<(Vec<Session>, TraceStats)> {
    let topic = edgerec::records::Topic::Sessions.name(prefix);
    let mut joiner = edgerec::trace::Joiner::default();
    let mut st = TraceStats::default();
    for line in input.lines() {
        let line = line?;
        st.records += 1;
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v["topic"] != topic.as_str() {
            continue;
        }
        match edgerec::records::SessionTrace::deserialize(&v["value"]) {
            Ok(t) => {
                st.fragments += 1;
                joiner.add(&t.session, t.start_ms, t.variant.as_deref(), &t.events);
            }
            Err(_) => st.bad += 1,
        }
    }
    st.copies = joiner.copies;
    let sessions = joiner.finish();
    st.sessions = sessions.len() as u64;
    Ok((sessions, st))
}

#[cfg(test)]
mod tests {
    //! Hand-built cases: a four-item catalog, one three-view session (two decisions) and one
    //! single-view session (skipped), and candidates whose report values follow by hand.
    use super::*;
    use edgerec::catalog::CatalogDoc;
    use edgerec::event::{Event, EventKind};
    use edgerec::{Catalog, EngineConfig};

    const T0: u64 = 1_764_201_600_000;

    fn doc() -> CatalogDoc {
        serde_json::from_str(
            r#"{"version":"t","items":[
            {"id":"a","category":"X","popularity":4,"related":[["b",1.0],["c",0.5]]},
            {"id":"b","category":"X","popularity":3,"related":[["a",1.0]]},
            {"id":"c","category":"Y","popularity":2,"related":[["a",1.0]]},
            {"id":"d","category":"Y","popularity":1,"available":false}]}"#,
        )
        .unwrap()
    }

    fn engine(rules: &str) -> Engine {
        let cfg = EngineConfig::default();
        let b = edgerec::rules::compile_json(
            &format!(r#"{{"version":"v","rules":[{rules}]}}"#),
            cfg.session.horizon_ms,
        )
        .unwrap();
        Engine::with_catalog(cfg, b, &Catalog::from_doc(&doc()).unwrap()).unwrap()
    }

    fn sessions() -> Vec<Session> {
        let s = |id: &str, items: &[&str]| Session {
            id: id.into(),
            variant: None,
            events: items
                .iter()
                .enumerate()
                .map(|(i, it)| Event::new(EventKind::View, *it, T0 + i as u64 * 1000))
                .collect(),
        };
        vec![s("s1", &["a", "b", "c"]), s("s2", &["a"])]
    }

    fn simulate(live: &str, candidate: &str) -> Report {
        let (l, c) = (engine(live), engine(candidate));
        let mut sim = Simulator::new(&l, &c, Options::default());
        for s in sessions() {
            sim.session(&s);
        }
        sim.report(&doc())
    }

    fn kinds(r: &Report) -> Vec<(&str, &str)> {
        r.warnings
            .iter()
            .map(|w| (w.kind.as_str(), w.rule.as_str()))
            .collect()
    }

    #[test]
    fn an_identical_candidate_changes_nothing() {
        let r = simulate("", "");
        assert_eq!((r.sessions, r.skipped_sessions, r.decisions), (1, 1, 2));
        assert_eq!((r.changed_share, r.overlap_mean), (0.0, 1.0));
        assert_eq!(r.overlap_histogram[10], 2);
        for m in &r.metrics {
            assert_eq!((m.delta, m.lo, m.hi), (0.0, 0.0, 0.0), "{}", m.name);
        }
        // By hand: after a the next view b is a's first related item; after a, b the next view
        // c is the one available item not yet seen. Both are in the top 10: HR@10 = 1.
        assert_eq!(r.metrics[0].name, "hr10");
        assert_eq!(r.metrics[0].live, 1.0);
        assert!(r.gainers.is_empty() && r.losers.is_empty());
        assert!(r.warnings.is_empty());
        assert_eq!(r.coverage.live, r.coverage.candidate);
    }

    #[test]
    fn never_and_always_firing_rules_are_named() {
        let never = r#"{"id":"nobody","when":{"feature":{"name":"context.country","op":"==","value":"ZZ"}},
                        "then":[{"boost_category":{"category":"Y","weight":2.0}}]}"#;
        let always = r#"{"id":"everyone","when":{"all":[]},"then":[{"boost_category":{"category":"X","weight":1.2}}]}"#;
        let r = simulate("", &format!("{never},{always}"));
        let row = |id: &str| r.rules.iter().find(|x| x.id == id).unwrap().clone();
        assert_eq!(
            (
                row("nobody").fires_candidate,
                row("nobody").fire_rate_candidate
            ),
            (0, 0.0)
        );
        assert_eq!(
            (
                row("everyone").fires_candidate,
                row("everyone").fire_rate_candidate
            ),
            (2, 1.0)
        );
        assert_eq!(
            (row("everyone").fires_live, row("everyone").in_live),
            (0, false)
        );
        assert_eq!(
            kinds(&r),
            [("always_fires", "everyone"), ("never_fires", "nobody")],
            "priority order, ties by id"
        );
    }

    #[test]
    fn pins_of_unknown_and_unavailable_items_and_a_pin_that_never_shows() {
        let pins = r#"{"id":"ghost","priority":30,"when":{"all":[]},"then":[{"pin":{"item":"zzz","slot":0}}]},
                      {"id":"sold-out","priority":20,"when":{"all":[]},"then":[{"pin":{"item":"d","slot":1}}]}"#;
        let r = simulate("", pins);
        let k = kinds(&r);
        assert!(k.contains(&("pin_unknown", "ghost")), "{k:?}");
        assert!(k.contains(&("pin_unavailable", "sold-out")), "{k:?}");
        // Neither can be placed, so both fire and touch nothing.
        assert!(k.contains(&("shadowed", "sold-out")), "{k:?}");
        assert_eq!(
            r.changed_share, 0.0,
            "nothing placed: the lists are the live ones"
        );
    }

    #[test]
    fn a_filter_that_empties_every_list() {
        let all_out =
            r#"{"id":"nothing-left","when":{"all":[]},"then":[{"exclude_categories":["X","Y"]}]}"#;
        let r = simulate("", all_out);
        assert_eq!((r.changed_share, r.overlap_mean), (1.0, 0.0));
        assert_eq!(r.overlap_histogram[0], 2);
        assert_eq!((r.empty_lists.live, r.empty_lists.candidate), (0.0, 2.0));
        assert_eq!(
            (
                r.metrics[0].live,
                r.metrics[0].candidate,
                r.metrics[0].delta
            ),
            (1.0, 0.0, -1.0)
        );
        // One session: every resample is that session, so the interval is the difference.
        assert_eq!((r.metrics[0].lo, r.metrics[0].hi), (-1.0, -1.0));
        assert_eq!(r.coverage.candidate, 0.0);
        assert!(r.losers.iter().all(|m| m.candidate == 0 && m.delta < 0));
        assert!(kinds(&r).contains(&("empties_list", "nothing-left")));
        assert!(kinds(&r).contains(&("always_fires", "nothing-left")));
        let n = r.numbers();
        let fail = |e: &str| FailIf::parse(e).unwrap().holds(&n).unwrap();
        assert!(fail("hr10_delta < -0.01"));
        assert!(fail("changed_share>0.5"));
        assert!(!fail("warnings == 0"));
    }

    #[test]
    fn bootstrap_intervals_hold_the_difference_and_resample_sessions() {
        // Sessions 0..10: the candidate gains a hit in the even ones.
        let mut per = Vec::new();
        for s in 0..10 {
            per.extend([2.0, 1.0, 1.0 + f64::from(s % 2 == 0), 0.0, 0.0]);
        }
        let (lo, hi) = bootstrap(&per, 5, 1, 2000, 7);
        let delta = 5.0 / 20.0;
        assert!(lo < delta && delta < hi, "{lo} {delta} {hi}");
        assert!(lo >= 0.0 && hi <= 0.5);
        assert_eq!(
            bootstrap(&per, 5, 1, 2000, 7),
            (lo, hi),
            "seeded: reproducible"
        );
        assert_eq!(bootstrap(&per, 5, 1, 0, 7), (0.0, 0.0));
    }

    #[test]
    fn fail_if_expressions_parse_or_say_why() {
        let f = FailIf::parse(" hr20_delta <= -0.5 ").unwrap();
        assert_eq!(
            (f.name.as_str(), f.op.as_str(), f.value),
            ("hr20_delta", "<=", -0.5)
        );
        for bad in [
            "hr20_delta",
            "hr20_delta < x",
            "<3",
            "a b < 1",
            "x => 1",
            "x =< 1",
        ] {
            assert!(FailIf::parse(bad).is_err(), "{bad}");
        }
        let n: BTreeMap<String, f64> = [("x".to_string(), 1.0)].into();
        let unknown = FailIf::parse("y > 0").unwrap().holds(&n).unwrap_err();
        assert!(unknown.why.contains("known: x"), "{unknown}");
    }
}
