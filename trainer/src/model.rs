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
            self.pop.iter_mut().for_each(|p| *p *= k);
            for list in &mut self.rel {
                list.iter_mut().for_each(|e| e.1 *= k);
            }
            self.t0 = Some(t0 + (shift as u64) * cfg.half_life_ms);
            e -= shift;
        }
        e.exp2()
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
            self.pop.iter_mut().for_each(|p| *p *= mine);
            for list in &mut self.rel {
                list.iter_mut().for_each(|e| e.1 *= mine);
            }
        }
        self.t0 = origin;
        let theirs = scale(other, origin);
        let map: Vec<u32> = other.ids.iter().map(|id| self.intern(id)).collect();
        for (j, &i) in map.iter().enumerate() {
            self.pop[i as usize] += other.pop[j] * theirs;
            for &(c, w) in &other.rel[j] {
                self.bump_rel(cfg, i, map[c as usize], w * theirs);
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
        let Some(&i) = self.index.get(id) else {
            return Vec::new();
        };
        let mut list: Vec<(u32, f64)> = self.rel[i as usize].clone();
        list.sort_unstable_by(|a, b| {
            b.1.total_cmp(&a.1)
                .then_with(|| self.ids[a.0 as usize].cmp(&self.ids[b.0 as usize]))
        });
        let top = list.first().map_or(0.0, |e| e.1);
        list.into_iter()
            .take(cfg.top_k.min(edgerec::catalog::MAX_RELATED))
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
        let learned = |id: &str, base_pop: f32, base_rel: &[(String, f32)]| {
            let pop = self
                .index
                .get(id)
                .map_or(0.0, |&i| self.pop[i as usize] * scale);
            let mut related = self.related(cfg, id);
            if let Some(ok) = &servable {
                // Only items the edge can serve.
                related.retain(|(r, _)| ok.contains(r.as_str()));
            }
            (base_pop + pop as f32, blend(related, base_rel, cfg.top_k))
        };
        let items: Vec<ItemDoc> = match base {
            Some(doc) => doc
                .items
                .iter()
                .map(|it| {
                    let (popularity, related) = learned(&it.id, it.popularity, &it.related);
                    ItemDoc {
                        popularity,
                        related,
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
                        let (popularity, related) = learned(id, 0.0, &[]);
                        ItemDoc {
                            id: id.clone(),
                            category: None,
                            price: None,
                            available: true,
                            tags: Vec::new(),
                            title: None,
                            popularity,
                            related,
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
    out.truncate(k.min(edgerec::catalog::MAX_RELATED));
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
