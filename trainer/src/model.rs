//! The model the edge holds, learned from interactions: per-item popularity and
//! item→related lists, both with exponential time decay.
//!
//! Relatedness is sequential co-visitation: in a session `… a … b …`, `b` following `a` at
//! distance `d ≤ steps` adds `1/d` to `a→b` and `backward/d` to `b→a`; a repeat (`a … a`)
//! is kept as a self-relation, which the edge reads as "shoppers come back to this item".
//! The edge's transition aggregates are adjacent pairs (`d = 1`).
//!
//! Decay is forward decay: an observation at time `t` weighs `2^((t - t0)/half_life)`, so
//! adding is order-independent and old mass shrinks relative to new without touching stored
//! numbers. When the factor grows large, every weight is rescaled once and `t0` moves.
//!
//! Memory is bounded per item: each item tracks at most `max_tracked` candidates; when that
//! fills, the weaker half is dropped (a candidate that keeps coming back re-enters). A
//! dropped candidate's earlier mass is lost, so a list can under-count an item that became
//! related late; with `max_tracked ≥ 4 × top_k` the published top-k is rarely affected.

use edgerec::catalog::{CatalogDoc, ItemDoc};
use edgerec::event::EventKind;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// Training parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Related items published per item (the edge allows at most 50).
    pub top_k: usize,
    /// How far ahead in a session a following item still counts as related.
    pub steps: usize,
    /// Weight of the reverse direction (`b→a` when `b` followed `a`).
    pub backward: f64,
    /// Half-life of an observation's weight in ms (0 = no decay).
    pub half_life_ms: u64,
    /// Candidates tracked per item before pruning.
    pub max_tracked: usize,
}

impl ModelConfig {
    /// A configuration for `top_k` related items per item, tracking 4× as many candidates (at
    /// least 64) while counting: what the trainer's command line builds.
    pub fn new(top_k: usize, steps: usize, backward: f64, half_life_ms: u64) -> ModelConfig {
        ModelConfig {
            top_k,
            steps: steps.max(1),
            backward,
            half_life_ms,
            max_tracked: (top_k * 4).max(64),
        }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            top_k: 30,
            steps: 10,
            backward: 0.5,
            half_life_ms: 7 * 24 * 3600 * 1000,
            max_tracked: 160,
        }
    }
}

/// Popularity weight of one interaction of a kind (impressions are exposure, not interest).
pub fn kind_weight(kind: EventKind) -> f64 {
    match kind {
        EventKind::View | EventKind::Click => 1.0,
        EventKind::AddToCart => 2.0,
        EventKind::Purchase => 4.0,
        EventKind::Impression => 0.0,
    }
}

/// Prior strength of the exposure feedback factor, in clicks: a pair needs several clicks'
/// worth of evidence (shown or clicked) before its factor moves far from 1.
pub const FEEDBACK_PRIOR_CLICKS: f64 = 3.0;
/// Bounds of a feedback factor before normalising (well inside the catalog's 1/64..64).
pub const FEEDBACK_BOUNDS: (f64, f64) = (1.0 / 8.0, 8.0);
/// Impressions the position curve's prior weighs, per position.
const CURVE_PRIOR_IMPRESSIONS: f64 = 20.0;

/// Decayed impressions and clicks of one recommended item at one position of an anchor's list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Exposure {
    /// Recommended item's index.
    pub item: u32,
    /// Position bucket.
    pub pos: u8,
    /// Decayed impressions.
    pub impressions: f64,
    /// Decayed clicks.
    pub clicks: f64,
}

/// Exponent (in half-lives) past which stored weights are rescaled.
const RESCALE_AT: f64 = 256.0;

/// The learned counts; mergeable (sum) and serialisable (the trainer's state file).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// Item ids by index.
    ids: Vec<String>,
    #[serde(skip)]
    index: FxHashMap<String, u32>,
    /// Decayed popularity by index.
    pop: Vec<f64>,
    /// Decayed relatedness by index: candidate index → weight.
    rel: Vec<Vec<(u32, f64)>>,
    /// Decay origin (ms); `None` until the first observation.
    t0: Option<u64>,
    /// Newest observation time (ms).
    newest: u64,
    /// Observations taken in.
    pub observations: u64,
    /// `experiment/variant` → per-session metric sums, read by the experiment controller
    /// ([`crate::control`]); summed over instances like the counts.
    #[serde(default)]
    pub experiments: std::collections::BTreeMap<String, edgerec::experiment::metrics::ArmTally>,
    /// Exposure feedback by anchor index (may be shorter than `ids`: state saved before it).
    #[serde(default)]
    shown: Vec<Vec<Exposure>>,
    /// Decayed (impressions, clicks) per position bucket over every anchor: the position curve.
    #[serde(default)]
    by_pos: Vec<(f64, f64)>,
}

impl Model {
    /// An empty model.
    pub fn new() -> Model {
        Model::default()
    }

    /// Rebuilds the id index after deserialising.
    pub fn reindex(&mut self) {
        self.index = self
            .ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i as u32))
            .collect();
    }

    /// Number of distinct items seen.
    pub fn items(&self) -> usize {
        self.ids.len()
    }

    /// Tracked item→candidate pairs (the memory that grows with the input).
    pub fn pairs(&self) -> usize {
        self.rel.iter().map(Vec::len).sum()
    }

    fn intern(&mut self, id: &str) -> u32 {
        if let Some(&i) = self.index.get(id) {
            return i;
        }
        let i = self.ids.len() as u32;
        self.ids.push(id.to_string());
        self.index.insert(id.to_string(), i);
        self.pop.push(0.0);
        self.rel.push(Vec::new());
        i
    }

    /// The forward-decay factor of an observation at `ts`.
    fn factor(&mut self, cfg: &ModelConfig, ts: u64) -> f64 {
        self.newest = self.newest.max(ts);
        if cfg.half_life_ms == 0 {
            return 1.0;
        }
        let t0 = *self.t0.get_or_insert(ts);
        let mut e = (ts as f64 - t0 as f64) / cfg.half_life_ms as f64;
        if e > RESCALE_AT {
            // Move the origin forward: every stored weight shrinks by the same factor, so
            // ratios (all the edge sees) are unchanged.
            let shift = e.floor();
            let k = (-shift).exp2();
            self.scale_all(k);
            self.t0 = Some(t0 + (shift as u64) * cfg.half_life_ms);
            e -= shift;
        }
        e.exp2()
    }

    /// Multiplies every stored weight (a move of the decay origin).
    fn scale_all(&mut self, k: f64) {
        self.pop.iter_mut().for_each(|p| *p *= k);
        for list in &mut self.rel {
            list.iter_mut().for_each(|e| e.1 *= k);
        }
        for list in &mut self.shown {
            for e in list.iter_mut() {
                e.impressions *= k;
                e.clicks *= k;
            }
        }
        for p in &mut self.by_pos {
            p.0 *= k;
            p.1 *= k;
        }
    }

    fn bump_shown(&mut self, cfg: &ModelConfig, from: u32, e: Exposure) {
        if self.shown.len() <= from as usize {
            self.shown.resize(from as usize + 1, Vec::new());
        }
        let room = cfg.max_tracked.max(2) * 4;
        let list = &mut self.shown[from as usize];
        match list.iter_mut().find(|x| x.item == e.item && x.pos == e.pos) {
            Some(x) => {
                x.impressions += e.impressions;
                x.clicks += e.clicks;
            }
            None => {
                if list.len() >= room {
                    // Keep the better-evidenced half.
                    list.sort_unstable_by(|a, b| {
                        b.impressions
                            .total_cmp(&a.impressions)
                            .then(a.item.cmp(&b.item))
                            .then(a.pos.cmp(&b.pos))
                    });
                    list.truncate(room / 2);
                }
                list.push(e);
            }
        }
        let p = usize::from(e.pos);
        if self.by_pos.len() <= p {
            self.by_pos.resize(p + 1, (0.0, 0.0));
        }
        self.by_pos[p].0 += e.impressions;
        self.by_pos[p].1 += e.clicks;
    }

    /// `impressions` showings of `item` at position bucket `pos` of `from`'s related list,
    /// `clicks` of them clicked (edge aggregates, [`edgerec::records::ShownAt`]).
    #[allow(clippy::too_many_arguments)]
    pub fn observe_shown(
        &mut self,
        cfg: &ModelConfig,
        from: &str,
        item: &str,
        pos: u8,
        impressions: u64,
        clicks: u64,
        ts: u64,
    ) {
        if impressions == 0 && clicks == 0 {
            return;
        }
        let (a, b) = (self.intern(from), self.intern(item));
        let f = self.factor(cfg, ts);
        self.bump_shown(
            cfg,
            a,
            Exposure {
                item: b,
                pos: pos.min(edgerec::aggregate::LAST_POS_BUCKET),
                impressions: impressions as f64 * f,
                clicks: clicks as f64 * f,
            },
        );
        self.observations += 1;
    }

    /// The click-through rate each position bucket earns on average (smoothed towards the
    /// overall rate), from every anchor's exposures.
    fn position_curve(&self) -> Vec<f64> {
        let (i, c) = self
            .by_pos
            .iter()
            .fold((0.0, 0.0), |(i, c), p| (i + p.0, c + p.1.min(p.0)));
        let overall = if i > 0.0 { c / i } else { 0.0 };
        self.by_pos
            .iter()
            .map(|&(i, c)| {
                (c.min(i) + overall * CURVE_PRIOR_IMPRESSIONS) / (i + CURVE_PRIOR_IMPRESSIONS)
            })
            .collect()
    }

    /// The exposure feedback factor of each item `from`'s list showed: smoothed clicks over
    /// the clicks its positions predict, `(C + α) / (E + α)` with `E = Σ impressions(pos) ×
    /// ctr(pos)` and `α` = [`FEEDBACK_PRIOR_CLICKS`]: shown often and never clicked sinks
    /// below 1, clicked more than its positions predict rises above it. Clicks count at most
    /// as often as the item was shown there (a forged click cannot outweigh its impressions).
    pub fn feedback(&self, cfg: &ModelConfig, from: &str) -> FxHashMap<String, f64> {
        self.feedback_on(cfg, from, &self.position_curve())
    }

    /// [`Model::feedback`] against a position curve computed once (a publish asks per item).
    fn feedback_on(&self, cfg: &ModelConfig, from: &str, curve: &[f64]) -> FxHashMap<String, f64> {
        let Some(list) = self
            .index
            .get(from)
            .and_then(|&i| self.shown.get(i as usize))
            .filter(|l| !l.is_empty())
        else {
            return FxHashMap::default();
        };
        let scale = self.now_scale(cfg);
        let mut sums: FxHashMap<u32, (f64, f64)> = FxHashMap::default();
        for e in list {
            let ctr = curve.get(usize::from(e.pos)).copied().unwrap_or(0.0);
            let s = sums.entry(e.item).or_default();
            s.0 += e.clicks.min(e.impressions) * scale;
            s.1 += e.impressions * ctr * scale;
        }
        sums.into_iter()
            .map(|(item, (c, e))| {
                let f = (c + FEEDBACK_PRIOR_CLICKS) / (e + FEEDBACK_PRIOR_CLICKS);
                (
                    self.ids[item as usize].clone(),
                    f.clamp(FEEDBACK_BOUNDS.0, FEEDBACK_BOUNDS.1),
                )
            })
            .collect()
    }

    fn bump_rel(&mut self, cfg: &ModelConfig, from: u32, to: u32, w: f64) {
        let list = &mut self.rel[from as usize];
        match list.iter_mut().find(|e| e.0 == to) {
            Some(e) => e.1 += w,
            None => {
                if list.len() >= cfg.max_tracked.max(2) {
                    list.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                    list.truncate(cfg.max_tracked.max(2) / 2);
                }
                list.push((to, w));
            }
        }
    }

    /// One session's items in time order (click logs).
    pub fn observe_session(&mut self, cfg: &ModelConfig, items: &[(String, u64)]) {
        let idx: Vec<u32> = items.iter().map(|(id, _)| self.intern(id)).collect();
        for (p, &a) in idx.iter().enumerate() {
            let f = self.factor(cfg, items[p].1);
            self.pop[a as usize] += f;
            for (d, q) in (p + 1..idx.len().min(p + 1 + cfg.steps)).enumerate() {
                let b = idx[q];
                let w = self.factor(cfg, items[q].1) / (d + 1) as f64;
                self.bump_rel(cfg, a, b, w);
                self.bump_rel(cfg, b, a, cfg.backward * w);
            }
            self.observations += 1;
        }
    }

    /// `count` interactions of `kind` with `item` (edge aggregates).
    pub fn observe_interaction(
        &mut self,
        cfg: &ModelConfig,
        item: &str,
        kind: EventKind,
        count: u64,
        ts: u64,
    ) {
        let w = kind_weight(kind);
        if w == 0.0 || count == 0 {
            return;
        }
        let i = self.intern(item);
        let f = self.factor(cfg, ts);
        self.pop[i as usize] += w * count as f64 * f;
        self.observations += 1;
    }

    /// `count` moves from `from` to `to` (edge aggregates: adjacent interactions).
    pub fn observe_transition(
        &mut self,
        cfg: &ModelConfig,
        from: &str,
        to: &str,
        count: u64,
        ts: u64,
    ) {
        if count == 0 {
            return;
        }
        let (a, b) = (self.intern(from), self.intern(to));
        let w = count as f64 * self.factor(cfg, ts);
        self.bump_rel(cfg, a, b, w);
        self.bump_rel(cfg, b, a, cfg.backward * w);
        self.observations += 1;
    }

    /// Adds another model's counts (partial models of several trainer instances).
    pub fn merge(&mut self, cfg: &ModelConfig, other: &Model) {
        for (k, a) in &other.experiments {
            self.experiments.entry(k.clone()).or_default().add(a);
        }
        // Bring both onto one decay origin before adding.
        let scale = |m: &Model, origin: Option<u64>| match (m.t0, origin) {
            (Some(a), Some(b)) if cfg.half_life_ms > 0 => {
                ((a as f64 - b as f64) / cfg.half_life_ms as f64).exp2()
            }
            _ => 1.0,
        };
        let origin = match (self.t0, other.t0) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let mine = scale(self, origin);
        if mine != 1.0 {
            self.scale_all(mine);
        }
        self.t0 = origin;
        let theirs = scale(other, origin);
        let map: Vec<u32> = other.ids.iter().map(|id| self.intern(id)).collect();
        for (j, &i) in map.iter().enumerate() {
            self.pop[i as usize] += other.pop[j] * theirs;
            for &(c, w) in &other.rel[j] {
                self.bump_rel(cfg, i, map[c as usize], w * theirs);
            }
            for e in other.shown.get(j).into_iter().flatten() {
                let e = Exposure {
                    item: map[e.item as usize],
                    impressions: e.impressions * theirs,
                    clicks: e.clicks * theirs,
                    ..*e
                };
                self.bump_shown(cfg, i, e);
            }
        }
        self.newest = self.newest.max(other.newest);
        self.observations += other.observations;
    }

    /// Popularity of an item as of the newest observation (≈ decayed interaction count).
    pub fn popularity(&self, cfg: &ModelConfig, id: &str) -> f64 {
        self.index
            .get(id)
            .map_or(0.0, |&i| self.pop[i as usize] * self.now_scale(cfg))
    }

    fn now_scale(&self, cfg: &ModelConfig) -> f64 {
        match self.t0 {
            Some(t0) if cfg.half_life_ms > 0 => {
                (-((self.newest as f64 - t0 as f64) / cfg.half_life_ms as f64)).exp2()
            }
            _ => 1.0,
        }
    }

    /// The top-k related list of an item, scores normalised to (0, 1], best first, ties by id.
    pub fn related(&self, cfg: &ModelConfig, id: &str) -> Vec<(String, f32)> {
        self.related_with(cfg, id, &FxHashMap::default())
    }

    /// The top-k related list by co-visitation, plus the items the feedback factors lift into
    /// the top-k (so a decision with feedback and one without both find their top-k), scores
    /// normalised to (0, 1] without feedback, best first, ties by id; at most
    /// [`edgerec::catalog::MAX_RELATED`].
    fn related_with(
        &self,
        cfg: &ModelConfig,
        id: &str,
        feedback: &FxHashMap<String, f64>,
    ) -> Vec<(String, f32)> {
        let Some(&i) = self.index.get(id) else {
            return Vec::new();
        };
        let k = cfg.top_k.min(edgerec::catalog::MAX_RELATED);
        let by_id =
            |a: &(u32, f64), b: &(u32, f64)| self.ids[a.0 as usize].cmp(&self.ids[b.0 as usize]);
        let mut list: Vec<(u32, f64)> = self.rel[i as usize].clone();
        list.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then_with(|| by_id(a, b)));
        let top = list.first().map_or(0.0, |e| e.1);
        let mut keep: Vec<(u32, f64)> = list.iter().take(k).copied().collect();
        if !feedback.is_empty() {
            let lifted = |e: &(u32, f64)| {
                e.1 * feedback
                    .get(&self.ids[e.0 as usize])
                    .copied()
                    .unwrap_or(1.0)
            };
            let mut adjusted = list.clone();
            adjusted
                .sort_unstable_by(|a, b| lifted(b).total_cmp(&lifted(a)).then_with(|| by_id(a, b)));
            for e in adjusted.into_iter().take(k) {
                if keep.len() < edgerec::catalog::MAX_RELATED && !keep.iter().any(|x| x.0 == e.0) {
                    keep.push(e);
                }
            }
            keep.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then_with(|| by_id(a, b)));
        }
        keep.into_iter()
            .map(|(c, w)| (self.ids[c as usize].clone(), (w / top) as f32))
            .filter(|(_, s)| *s > 0.0 && s.is_finite())
            .collect()
    }

    /// The catalog the edge loads: the base catalog's items (titles, categories, prices
    /// kept) with learned popularity added and learned related items ahead of authored ones
    /// (see [`blend`]); without a base, every item seen. The version is a content
    /// hash, so an unchanged model publishes under the same name.
    pub fn build(&self, cfg: &ModelConfig, base: Option<&CatalogDoc>) -> CatalogDoc {
        let scale = self.now_scale(cfg);
        let servable: Option<rustc_hash::FxHashSet<&str>> =
            base.map(|doc| doc.items.iter().map(|it| it.id.as_str()).collect());
        let curve = self.position_curve();
        let learned = |id: &str, base_pop: f32, base_rel: &[(String, f32)]| {
            let pop = self
                .index
                .get(id)
                .map_or(0.0, |&i| self.pop[i as usize] * scale);
            let factors = self.feedback_on(cfg, id, &curve);
            let mut related = self.related_with(cfg, id, &factors);
            if let Some(ok) = &servable {
                // Only items the edge can serve.
                related.retain(|(r, _)| ok.contains(r.as_str()));
            }
            let related = blend(related, base_rel, cfg.top_k);
            let feedback = normalised_feedback(&related, &factors);
            (base_pop + pop as f32, related, feedback)
        };
        let items: Vec<ItemDoc> = match base {
            Some(doc) => doc
                .items
                .iter()
                .map(|it| {
                    let (popularity, related, feedback) =
                        learned(&it.id, it.popularity, &it.related);
                    ItemDoc {
                        popularity,
                        related,
                        feedback,
                        ..it.clone()
                    }
                })
                .collect(),
            None => {
                let mut ids: Vec<&String> = self.ids.iter().collect();
                ids.sort();
                ids.into_iter()
                    .filter(|id| edgerec::event::check_id(id).is_ok())
                    .map(|id| {
                        let (popularity, related, feedback) = learned(id, 0.0, &[]);
                        ItemDoc {
                            id: id.clone(),
                            category: None,
                            price: None,
                            available: true,
                            tags: Vec::new(),
                            title: None,
                            popularity,
                            related,
                            feedback,
                        }
                    })
                    .collect()
            }
        };
        let mut doc = CatalogDoc {
            version: String::new(),
            items,
        };
        doc.version = content_version(&doc);
        doc
    }
}

/// The feedback factors of a published related list, scaled so the best score with feedback
/// is the best score without it (1): feedback reorders the list without weighing the related
/// source more or less against the others. Every entry is listed once any has a factor.
fn normalised_feedback(
    related: &[(String, f32)],
    factors: &FxHashMap<String, f64>,
) -> Vec<(String, f32)> {
    if factors.is_empty() || related.is_empty() {
        return Vec::new();
    }
    let f = |id: &String| factors.get(id).copied().unwrap_or(1.0);
    let best = related
        .iter()
        .map(|(id, s)| f64::from(*s) * f(id))
        .fold(0.0, f64::max);
    let top = related.iter().map(|e| f64::from(e.1)).fold(0.0, f64::max);
    if !(best > 0.0 && top > 0.0) {
        return Vec::new();
    }
    let range = edgerec::catalog::FEEDBACK_RANGE;
    related
        .iter()
        .map(|(id, _)| {
            let v = (f(id) * top / best) as f32;
            (id.clone(), v.clamp(*range.start(), *range.end()))
        })
        .collect()
}

/// Learned relations ranked above authored ones: learned scores map to (0.5, 1], authored to
/// (0, 0.5]; an item in both adds up. A thin learned list (little traffic yet) thus leads
/// the authored list instead of replacing it.
fn blend(learned: Vec<(String, f32)>, authored: &[(String, f32)], k: usize) -> Vec<(String, f32)> {
    if learned.is_empty() {
        return authored.to_vec();
    }
    if authored.is_empty() {
        return learned;
    }
    let learned_len = learned.len();
    let mut out: Vec<(String, f32)> = learned
        .into_iter()
        .map(|(id, s)| (id, 0.5 + 0.5 * s))
        .collect();
    for (id, s) in authored {
        match out.iter_mut().find(|e| &e.0 == id) {
            Some(e) => e.1 = (e.1 + 0.5 * s).min(1.0),
            None => out.push((id.clone(), 0.5 * s)),
        }
    }
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    // Past the top-k only when feedback lifted learned items in.
    out.truncate(k.max(learned_len).min(edgerec::catalog::MAX_RELATED));
    out
}

/// `m-` + the first 16 hex digits of SHA-256 over the catalog's JSON (version left empty).
pub fn content_version(doc: &CatalogDoc) -> String {
    use sha2::{Digest, Sha256};
    let mut d = doc.clone();
    d.version = String::new();
    let json = serde_json::to_vec(&d).unwrap_or_default();
    format!("m-{}", &hex::encode(Sha256::digest(&json))[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ModelConfig {
        ModelConfig {
            half_life_ms: 0,
            ..ModelConfig::default()
        }
    }

    fn session(ids: &[&str]) -> Vec<(String, u64)> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| (id.to_string(), 1_000 + i as u64))
            .collect()
    }

    #[test]
    fn sequential_weights_and_self_relations() {
        let c = cfg();
        let mut m = Model::new();
        m.observe_session(&c, &session(&["a", "b", "c", "a"]));
        // a→b 1 + 0.25 (backward of b→a at distance 2), a→c 1/2 + 0.5 (backward of c→a),
        // a→a 1/3 + 1/6 (the repeat, both directions): 1.25, 1.0, 0.5 → 1, 0.8, 0.4.
        let a = m.related(&c, "a");
        assert_eq!(a[0], ("b".to_string(), 1.0));
        assert_eq!(a[1].0, "c");
        assert!((a[1].1 - 0.8).abs() < 1e-6);
        assert_eq!(a[2].0, "a");
        assert!((a[2].1 - 0.4).abs() < 1e-6, "{a:?}");
        assert_eq!(m.popularity(&c, "a"), 2.0);
    }

    #[test]
    fn decay_halves_per_half_life_and_merge_equals_single_pass() {
        let c = ModelConfig {
            half_life_ms: 1000,
            ..ModelConfig::default()
        };
        let mut m = Model::new();
        m.observe_interaction(&c, "old", EventKind::View, 4, 0);
        m.observe_interaction(&c, "new", EventKind::View, 1, 2000);
        assert!((m.popularity(&c, "old") - 1.0).abs() < 1e-9);
        assert!((m.popularity(&c, "new") - 1.0).abs() < 1e-9);
        let (mut x, mut y) = (Model::new(), Model::new());
        x.observe_interaction(&c, "old", EventKind::View, 4, 0);
        y.observe_interaction(&c, "new", EventKind::View, 1, 2000);
        x.merge(&c, &y);
        assert!((x.popularity(&c, "old") - 1.0).abs() < 1e-9);
        assert!((x.popularity(&c, "new") - 1.0).abs() < 1e-9);
    }

    #[test]
    fn rescaling_keeps_ratios() {
        let c = ModelConfig {
            half_life_ms: 1,
            ..ModelConfig::default()
        };
        let mut m = Model::new();
        m.observe_transition(&c, "a", "b", 2, 0);
        m.observe_transition(&c, "a", "c", 1, 0);
        m.observe_transition(&c, "a", "c", 1, 1000);
        let r = m.related(&c, "a");
        assert_eq!(r[0].0, "c");
        assert!(m
            .pop
            .iter()
            .chain(m.rel.iter().flatten().map(|e| &e.1))
            .all(|v| v.is_finite()));
    }

    #[test]
    fn learned_relations_lead_authored_ones() {
        let c = cfg();
        let mut m = Model::new();
        m.observe_transition(&c, "a", "z", 1, 0);
        let base = CatalogDoc {
            version: "base".into(),
            items: ["a", "b", "z"]
                .iter()
                .map(|id| ItemDoc {
                    id: id.to_string(),
                    category: None,
                    price: None,
                    available: true,
                    tags: Vec::new(),
                    title: Some(format!("Item {id}")),
                    popularity: 1.0,
                    related: if *id == "a" {
                        vec![("b".into(), 0.9)]
                    } else {
                        Vec::new()
                    },
                    feedback: Vec::new(),
                })
                .collect(),
        };
        let doc = m.build(&c, Some(&base));
        let a = &doc.items[0];
        assert_eq!(a.related, vec![("z".into(), 1.0), ("b".into(), 0.45)]);
        assert_eq!(a.title.as_deref(), Some("Item a"));
        assert_eq!(
            doc.items[2].popularity, 1.0,
            "transitions add no popularity"
        );
        assert!(doc.version.starts_with("m-"));
        assert_eq!(
            doc.version,
            m.build(&c, Some(&base)).version,
            "content-addressed"
        );
    }

    #[test]
    fn exposure_feedback_is_position_debiased_and_reorders_only_with_feedback() {
        let c = cfg();
        let mut m = Model::new();
        // Co-visitation: a→b strongest, then c, d, e.
        for (to, n) in [("b", 8), ("c", 6), ("d", 4), ("e", 2)] {
            m.observe_transition(&c, "a", to, n, 0);
        }
        // The position curve, from other anchors: 10% at 0, 2% at 5.
        m.observe_shown(&c, "x", "y", 0, 10_000, 1_000, 0);
        m.observe_shown(&c, "x", "y", 5, 10_000, 200, 0);
        // b: shown 300 times at the top, never clicked. c: 30 of 300 at the top (as expected).
        // e: 12 of 200 at position 5 — a lower raw rate than c, but 3× what position 5 earns.
        m.observe_shown(&c, "a", "b", 0, 300, 0, 0);
        m.observe_shown(&c, "a", "c", 0, 300, 30, 0);
        m.observe_shown(&c, "a", "e", 5, 200, 12, 0);
        // A forged stream of clicks without impressions counts no more than its impressions.
        m.observe_shown(&c, "a", "d", 1, 1, 1_000, 0);
        let f = m.feedback(&c, "a");
        let curve = m.position_curve();
        assert!(
            (curve[0] - 0.1).abs() < 0.01 && (curve[5] - 0.02).abs() < 0.005,
            "{curve:?}"
        );
        // b: (0 + 3) / (300 × ~0.1 + 3) ≈ 0.09 → the bound 1/8.
        assert_eq!(f["b"], FEEDBACK_BOUNDS.0);
        assert!(
            (f["c"] - 1.0).abs() < 0.05,
            "as its position predicts: {}",
            f["c"]
        );
        assert!(
            f["e"] > 2.0,
            "clicked 3× what position 5 predicts: {}",
            f["e"]
        );
        assert!(
            f["d"] <= (1.0 + 3.0) / (3.0 + 0.0),
            "forged clicks capped: {}",
            f["d"]
        );
        let doc = m.build(&c, None);
        let a = doc.items.iter().find(|i| i.id == "a").unwrap();
        let order: Vec<&str> = a.related.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(
            order,
            ["b", "c", "d", "e"],
            "scores without feedback unchanged"
        );
        let with = |id: &str| {
            let s = a.related.iter().find(|r| r.0 == id).unwrap().1;
            s * a.feedback.iter().find(|r| r.0 == id).unwrap().1
        };
        let mut lifted = order.clone();
        lifted.sort_by(|x, y| with(y).total_cmp(&with(x)));
        // b sinks from first to last; e, last without feedback, passes b.
        assert_eq!(lifted, ["c", "d", "e", "b"], "{:?}", a.feedback);
        assert!(
            (with(lifted[0]) - 1.0).abs() < 1e-5,
            "normalised to the best score"
        );
        // It loads: factors are within the catalog's range and name related items only.
        let cat = edgerec::catalog::Catalog::from_doc(&doc).unwrap();
        let ai = cat.index_of("a").unwrap() as usize;
        let bi = cat.index_of("b").unwrap();
        assert!(cat.feedback_of(ai, bi) < 0.2);
    }

    #[test]
    fn feedback_survives_merge_and_decay_rescaling() {
        let c = ModelConfig {
            half_life_ms: 1,
            ..ModelConfig::default()
        };
        let early = |m: &mut Model| {
            m.observe_transition(&c, "a", "b", 1, 0);
            m.observe_shown(&c, "a", "b", 0, 100, 0, 0);
            m.observe_shown(&c, "x", "y", 0, 1_000, 100, 0);
        };
        // 5 half-lives later (merge) and 300 (past the rescaling point, single pass).
        for later in [5, 300] {
            let (mut one, mut other, mut single) = (Model::new(), Model::new(), Model::new());
            early(&mut one);
            other.observe_shown(&c, "a", "b", 0, 100, 0, later);
            one.merge(&c, &other);
            early(&mut single);
            single.observe_shown(&c, "a", "b", 0, 100, 0, later);
            let (f, g) = (one.feedback(&c, "a")["b"], single.feedback(&c, "a")["b"]);
            assert!((f - g).abs() < 1e-9 && f.is_finite(), "{f} vs {g}");
        }
        // The early clicks still count, at 1/32 of their weight.
        let mut m = Model::new();
        early(&mut m);
        m.observe_shown(&c, "a", "b", 0, 100, 0, 5);
        assert!(m.feedback(&c, "a")["b"] < 0.7);
    }

    #[test]
    fn tracked_candidates_stay_bounded() {
        let c = ModelConfig {
            max_tracked: 8,
            ..cfg()
        };
        let mut m = Model::new();
        for i in 0..1000 {
            m.observe_transition(&c, "hub", &format!("x{i}"), 1, 0);
            m.observe_transition(&c, "hub", "steady", 1, 0);
        }
        assert!(m.rel[0].len() <= 8);
        assert_eq!(m.related(&c, "hub")[0].0, "steady");
    }
}
