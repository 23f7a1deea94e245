//! Recommend: candidates → rule effects → filters → diversity → top-k, each item with its "why".
//!
//! Scoring runs in fixed phases so the outcome does not depend on rule order beyond priority:
//! 1. additive: related items of recent interactions (decayed by recency, weighted by kind),
//!    top items of the session's favourite categories, global popularity, rule boosts;
//! 2. multiplicative: category boosts and burials, the seen-items demotion;
//! 3. filters: unavailable, excluded items and categories, purchased, recently seen;
//! 4. order by score (desc) then id (asc) — a total order, so every host agrees — then the
//!    per-category cap, then pins, then the limit.
//!
//! Only `+ - * /` touch scores (no `powi`, `exp`, `ln`), so native and wasm give identical
//! floating-point results.

use crate::catalog::Catalog;
use crate::event::EventKind;
use crate::features::Features;
use crate::rules::bundle::SeenPolicy;
use crate::rules::compile::Policy;
use crate::rules::eval::{Effect, RuleHit};
use crate::session::SessionState;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// Which path produced a list, from most to least personal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Session state + all rules.
    Full,
    /// Per segment (request context only): popularity + context-only rules. Cacheable by
    /// [`crate::engine::Engine::segment_key`].
    Cached,
    /// Popularity only; needs nothing but the catalog.
    Static,
    /// Decided in the browser by the wasm fallback (the browser host reports this tier).
    Browser,
}

impl Tier {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Full => "full",
            Tier::Cached => "cached",
            Tier::Static => "static",
            Tier::Browser => "browser",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Tier> {
        Some(match s {
            "full" => Tier::Full,
            "cached" => Tier::Cached,
            "static" => Tier::Static,
            "browser" => Tier::Browser,
            _ => return None,
        })
    }
}

/// One recommended item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// Item id.
    pub id: String,
    /// Final score (comparable within one list only).
    pub score: f64,
    /// Why it is here: `rule:<id>`, `related:<item>`, `category:<name>`, `popular`,
    /// `pin:<rule>`.
    pub why: Vec<String>,
}

/// Most rule reasons listed per item (rules come first: they are what authors debug).
const MAX_WHY_RULES: usize = 4;
/// Most source reasons listed per item.
const MAX_WHY_SOURCES: usize = 2;
/// Items taken from a category top list per favourite category.
const CATEGORY_TAKE: usize = 20;
/// Items taken from the global popularity list.
const POPULAR_TAKE: usize = 50;

#[derive(Default, Clone)]
struct Cand {
    score: f64,
    rules: Vec<String>,
    sources: Vec<String>,
}

impl Cand {
    fn note(&mut self, why: String) {
        let (list, max) = if why.starts_with("rule:") {
            (&mut self.rules, MAX_WHY_RULES)
        } else {
            (&mut self.sources, MAX_WHY_SOURCES)
        };
        if list.len() < max && !list.contains(&why) {
            list.push(why);
        }
    }

    fn why(self) -> Vec<String> {
        let mut w = self.rules;
        w.extend(self.sources);
        w
    }
}

struct Scorer<'a> {
    catalog: &'a Catalog,
    cands: FxHashMap<u32, Cand>,
    /// Insertion order, so "why" building never depends on hash iteration.
    order: Vec<u32>,
}

impl<'a> Scorer<'a> {
    fn add(&mut self, item: u32, score: f64, why: impl FnOnce() -> String) {
        let c = self.cands.entry(item).or_insert_with(|| {
            self.order.push(item);
            Cand::default()
        });
        c.score += score;
        c.note(why());
    }

    fn pop_norm(&self, item: u32) -> f64 {
        let max = f64::from(self.catalog.max_popularity);
        if max > 0.0 {
            f64::from(self.catalog.items[item as usize].popularity) / max
        } else {
            0.0
        }
    }

    fn add_related(&mut self, anchor: u32, weight: f64, why: &str) {
        let Some(list) = self.catalog.related.get(anchor as usize) else {
            return;
        };
        for &(r, s) in list {
            if r != anchor {
                self.add(r, weight * f64::from(s), || why.to_string());
            }
        }
    }

    fn add_category(&mut self, cat: u32, weight: f64, why: &str) {
        let Some(list) = self.catalog.category_top.get(cat as usize) else {
            return;
        };
        for &i in list.iter().take(CATEGORY_TAKE) {
            let s = weight * self.pop_norm(i);
            self.add(i, s, || why.to_string());
        }
    }

    fn add_popular(&mut self, weight: f64) {
        for &i in self.catalog.popular.iter().take(POPULAR_TAKE) {
            let s = weight * self.pop_norm(i);
            self.add(i, s, || "popular".to_string());
        }
    }

    fn scale_category(&mut self, cat: u32, factor: f64, why: &str) {
        for &i in &self.order {
            if self.catalog.items[i as usize].category == Some(cat) {
                if let Some(c) = self.cands.get_mut(&i) {
                    c.score *= factor;
                    c.note(why.to_string());
                }
            }
        }
    }
}

/// Inputs to [`recommend`].
pub struct RecommendInput<'a> {
    /// Catalog and model.
    pub catalog: &'a Catalog,
    /// Policy from the bundle.
    pub policy: &'a Policy,
    /// Session state (empty for the cached and static tiers).
    pub state: &'a SessionState,
    /// Features of that state.
    pub features: &'a Features,
    /// Rules that fired, in priority order.
    pub hits: &'a [RuleHit],
    /// Tier being served.
    pub tier: Tier,
    /// How many items.
    pub limit: usize,
    /// Decision time.
    pub now_ms: u64,
    /// Session bucket width.
    pub bucket_ms: u64,
}

/// Ranks items for one request.
pub fn recommend(inp: &RecommendInput) -> Vec<Recommendation> {
    let cat = inp.catalog;
    let p = inp.policy;
    let w = &p.weights;
    let mut sc = Scorer {
        catalog: cat,
        cands: FxHashMap::default(),
        order: Vec::new(),
    };
    if inp.limit == 0 || cat.items.is_empty() {
        return Vec::new();
    }
    let personal = matches!(inp.tier, Tier::Full | Tier::Browser);
    // Phase 1: additive sources.
    if personal {
        let mut decay = 1.0f64;
        for (item, kind, _) in inp.state.recent_items(p.recent_anchors) {
            let id = inp.state.item_id(item);
            if let Some(anchor) = cat.index_of(id) {
                let kw = match kind {
                    EventKind::View => w.kinds.view,
                    EventKind::Click => w.kinds.click,
                    EventKind::AddToCart => w.kinds.add_to_cart,
                    EventKind::Purchase => w.kinds.purchase,
                    EventKind::Impression => 0.0,
                };
                let why = format!("related:{id}");
                sc.add_related(anchor, w.related * decay * kw, &why);
            }
            decay *= p.recency_decay;
        }
        let total: u32 = inp.features.top_categories.iter().map(|c| c.1).sum();
        for (name, n) in &inp.features.top_categories {
            if let Some(c) = cat.category_of_name(name) {
                let share = f64::from(*n) / f64::from(total.max(1));
                sc.add_category(c, w.category * share, &format!("category:{name}"));
            }
        }
    }
    if inp.tier != Tier::Static {
        sc.add_popular(w.popular);
    } else {
        sc.add_popular(1.0);
    }
    let mut exclude_purchased = p.exclude_purchased;
    let mut excluded_items: Vec<u32> = Vec::new();
    let mut excluded_cats: Vec<u32> = Vec::new();
    let mut cap = p.max_per_category;
    let mut pins: Vec<(u32, u32, String)> = Vec::new();
    let mut purchased_decided = false;
    let mut cap_decided = false;
    for hit in inp.hits {
        let why = format!("rule:{}", hit.id);
        for e in &hit.effects {
            match e {
                Effect::BoostRelated(item, weight) => {
                    if let Some(a) = cat.index_of(item) {
                        sc.add_related(a, *weight, &why);
                    }
                }
                // Candidates only; the multiplier itself is applied once, in phase 2.
                Effect::BoostCategory(name, _) => {
                    if let Some(c) = cat.category_of_name(name) {
                        sc.add_category(c, w.category.max(0.1), &why);
                    }
                }
                Effect::ExcludeItems(ids) => {
                    excluded_items.extend(ids.iter().filter_map(|i| cat.index_of(i)))
                }
                Effect::ExcludeCategories(names) => {
                    excluded_cats.extend(names.iter().filter_map(|n| cat.category_of_name(n)))
                }
                // The highest-priority rule that speaks decides.
                Effect::ExcludePurchased(b) if !purchased_decided => {
                    exclude_purchased = *b;
                    purchased_decided = true;
                }
                Effect::CapPerCategory(n) if !cap_decided => {
                    cap = *n;
                    cap_decided = true;
                }
                Effect::Pin(item, slot) => {
                    if let Some(i) = cat.index_of(item) {
                        pins.push((i, *slot, format!("pin:{}", hit.id)));
                    }
                }
                _ => {}
            }
        }
    }
    // Phase 2: multiplicative.
    for hit in inp.hits {
        let why = format!("rule:{}", hit.id);
        for e in &hit.effects {
            match e {
                Effect::BoostCategory(name, f) | Effect::BuryCategory(name, f) => {
                    if let Some(c) = cat.category_of_name(name) {
                        sc.scale_category(c, *f, &why);
                    }
                }
                _ => {}
            }
        }
    }
    let seen: Vec<u32> = if personal && p.seen_policy != SeenPolicy::Allow {
        recently_seen(inp, cat)
    } else {
        Vec::new()
    };
    if p.seen_policy == SeenPolicy::Demote {
        for i in &seen {
            if let Some(c) = sc.cands.get_mut(i) {
                c.score *= p.seen_demote_factor;
            }
        }
    }
    let purchased: Vec<u32> = if exclude_purchased {
        inp.state
            .purchased
            .iter()
            .filter_map(|&i| cat.index_of(inp.state.item_id(i)))
            .collect()
    } else {
        Vec::new()
    };
    // Phase 3: filters.
    let allowed = |i: u32| -> bool {
        let item = &cat.items[i as usize];
        item.available
            && !excluded_items.contains(&i)
            && !item.category.is_some_and(|c| excluded_cats.contains(&c))
            && !purchased.contains(&i)
            && !(p.seen_policy == SeenPolicy::ExcludeRecent && seen.contains(&i))
    };
    let mut ranked: Vec<(u32, Cand)> = sc
        .order
        .iter()
        .filter(|&&i| allowed(i))
        .filter_map(|i| sc.cands.get(i).map(|c| (*i, c.clone())))
        .filter(|(_, c)| c.score > 0.0)
        .collect();
    // Phase 4: order, diversity, pins, limit.
    ranked.sort_by(|a, b| {
        b.1.score
            .total_cmp(&a.1.score)
            .then_with(|| cat.items[a.0 as usize].id.cmp(&cat.items[b.0 as usize].id))
    });
    let pinned: Vec<(u32, u32, String)> = {
        let mut taken_slots: Vec<u32> = Vec::new();
        let mut taken_items: Vec<u32> = Vec::new();
        let mut out = Vec::new();
        for (i, slot, why) in pins {
            let item = &cat.items[i as usize];
            if item.available
                && !purchased.contains(&i)
                && !taken_slots.contains(&slot)
                && !taken_items.contains(&i)
                && (slot as usize) < inp.limit
            {
                taken_slots.push(slot);
                taken_items.push(i);
                out.push((i, slot, why));
            }
        }
        out
    };
    let mut per_cat: FxHashMap<u32, u32> = FxHashMap::default();
    let free_slots = inp.limit - pinned.len();
    let mut list: Vec<Recommendation> = Vec::with_capacity(inp.limit);
    for (i, c) in ranked {
        if list.len() >= free_slots {
            break;
        }
        if pinned.iter().any(|p| p.0 == i) {
            continue;
        }
        if cap > 0 {
            if let Some(category) = cat.items[i as usize].category {
                let n = per_cat.entry(category).or_insert(0);
                if *n >= cap {
                    continue;
                }
                *n += 1;
            }
        }
        list.push(Recommendation {
            id: cat.items[i as usize].id.clone(),
            score: c.score,
            why: c.why(),
        });
    }
    let mut sorted_pins = pinned;
    sorted_pins.sort_by_key(|p| p.1);
    for (i, slot, why) in sorted_pins {
        let at = (slot as usize).min(list.len());
        let score = list.get(at).map_or(0.0, |r| r.score);
        list.insert(
            at,
            Recommendation {
                id: cat.items[i as usize].id.clone(),
                score,
                why: vec![why],
            },
        );
    }
    list
}

/// Catalog indices of items the shopper viewed, clicked or carted within the seen window.
fn recently_seen(inp: &RecommendInput, cat: &Catalog) -> Vec<u32> {
    let s = inp.state;
    let win = inp.policy.seen_window;
    let mut out = Vec::new();
    for kind in [EventKind::View, EventKind::Click, EventKind::AddToCart] {
        let counts = s.counts_per_item(kind, win, inp.now_ms, inp.bucket_ms);
        for (i, &n) in counts.iter().enumerate() {
            if n > 0 {
                if let Some(ci) = cat.index_of(s.item_id(i as u32)) {
                    if !out.contains(&ci) {
                        out.push(ci);
                    }
                }
            }
        }
    }
    out
}
