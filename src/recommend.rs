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
    /// `recent` (a return to an item of this session), `pin:<rule>`.
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

/// A reason, kept compact while scoring (no strings until the final top-k).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// Index into the rule hits.
    Rule(u16),
    /// Related to this catalog item.
    Related(u32),
    /// From this catalog category's top list.
    Category(u32),
    /// Globally popular.
    Popular,
    /// The shopper's own recent item, expected back (model self-relation or `weights.recent`).
    Recent,
}

#[derive(Clone, Copy)]
struct Cand {
    item: u32,
    score: f64,
    rules: [u16; MAX_WHY_RULES],
    n_rules: u8,
    sources: [Why; MAX_WHY_SOURCES],
    n_sources: u8,
}

impl Cand {
    fn new(item: u32) -> Cand {
        Cand {
            item,
            score: 0.0,
            rules: [0; MAX_WHY_RULES],
            n_rules: 0,
            sources: [Why::Popular; MAX_WHY_SOURCES],
            n_sources: 0,
        }
    }

    fn note(&mut self, why: Why) {
        match why {
            Why::Rule(r) => {
                let n = self.n_rules as usize;
                if n < MAX_WHY_RULES && !self.rules[..n].contains(&r) {
                    self.rules[n] = r;
                    self.n_rules += 1;
                }
            }
            w => {
                let n = self.n_sources as usize;
                if n < MAX_WHY_SOURCES && !self.sources[..n].contains(&w) {
                    self.sources[n] = w;
                    self.n_sources += 1;
                }
            }
        }
    }

    fn why(&self, catalog: &Catalog, hits: &[RuleHit]) -> Vec<String> {
        // Plain concatenation: `format!` costs several times more and this runs per item.
        let join = |prefix: &str, name: &str| {
            let mut s = String::with_capacity(prefix.len() + name.len());
            s.push_str(prefix);
            s.push_str(name);
            s
        };
        let rules = self.rules[..self.n_rules as usize]
            .iter()
            .filter_map(|&r| hits.get(r as usize).map(|h| join("rule:", h.id)));
        let sources = self.sources[..self.n_sources as usize]
            .iter()
            .map(|w| match *w {
                Why::Related(i) => join("related:", &catalog.items[i as usize].id),
                Why::Category(c) => join("category:", &catalog.categories[c as usize]),
                Why::Recent => "recent".to_string(),
                Why::Popular | Why::Rule(_) => "popular".to_string(),
            });
        rules.chain(sources).collect()
    }
}

struct Scorer<'a> {
    catalog: &'a Catalog,
    /// Catalog index → position in `cands`.
    slot: FxHashMap<u32, u32>,
    /// Candidates in insertion order, so nothing depends on hash iteration order.
    cands: Vec<Cand>,
}

impl<'a> Scorer<'a> {
    fn add(&mut self, item: u32, score: f64, why: Why) -> &mut Cand {
        let next = self.cands.len() as u32;
        let at = *self.slot.entry(item).or_insert(next);
        if at == next {
            self.cands.push(Cand::new(item));
        }
        let c = &mut self.cands[at as usize];
        c.score += score;
        c.note(why);
        c
    }

    fn get_mut(&mut self, item: u32) -> Option<&mut Cand> {
        let at = *self.slot.get(&item)?;
        self.cands.get_mut(at as usize)
    }

    fn pop_norm(&self, item: u32) -> f64 {
        let max = f64::from(self.catalog.max_popularity);
        if max > 0.0 {
            f64::from(self.catalog.items[item as usize].popularity) / max
        } else {
            0.0
        }
    }

    /// Adds `weight × relatedness` for every item related to `anchor`, noting the anchor and
    /// the rules that asked for it.
    fn add_related(&mut self, anchor: u32, weight: f64, rules: &[u16]) {
        let catalog = self.catalog;
        let Some(list) = catalog.related.get(anchor as usize) else {
            return;
        };
        for &(r, s) in list {
            // A self-relation is the model saying shoppers come back to this item.
            let why = if r == anchor {
                Why::Recent
            } else {
                Why::Related(anchor)
            };
            let c = self.add(r, weight * f64::from(s), why);
            rules.iter().for_each(|&h| c.note(Why::Rule(h)));
        }
    }

    /// Adds a category's top items, scored by popularity.
    fn add_category(&mut self, cat: u32, weight: f64, why: Why, rules: &[u16]) {
        let catalog = self.catalog;
        let Some(list) = catalog.category_top.get(cat as usize) else {
            return;
        };
        for &i in list.iter().take(CATEGORY_TAKE) {
            let s = weight * self.pop_norm(i);
            let c = self.add(i, s, why);
            rules.iter().for_each(|&h| c.note(Why::Rule(h)));
        }
    }

    fn add_popular(&mut self, weight: f64) {
        // A zero weight would add nothing but a misleading "popular" reason.
        if weight <= 0.0 {
            return;
        }
        let catalog = self.catalog;
        for &i in catalog.popular.iter().take(POPULAR_TAKE) {
            let s = weight * self.pop_norm(i);
            self.add(i, s, Why::Popular);
        }
    }
}

/// A per-key weight folded from several sources, remembering the first few rules.
struct Fold {
    key: u32,
    value: f64,
    rules: [u16; MAX_WHY_RULES],
    n: u8,
}

impl Fold {
    fn find(list: &mut Vec<Fold>, key: u32, init: f64) -> &mut Fold {
        let at = match list.iter().position(|f| f.key == key) {
            Some(at) => at,
            None => {
                list.push(Fold {
                    key,
                    value: init,
                    rules: [0; MAX_WHY_RULES],
                    n: 0,
                });
                list.len() - 1
            }
        };
        &mut list[at]
    }

    fn note(&mut self, rule: Option<u16>) {
        if let Some(r) = rule {
            if (self.n as usize) < MAX_WHY_RULES && !self.rules().contains(&r) {
                self.rules[self.n as usize] = r;
                self.n += 1;
            }
        }
    }

    fn add(list: &mut Vec<Fold>, key: u32, weight: f64, rule: Option<u16>) {
        let f = Fold::find(list, key, 0.0);
        f.value += weight;
        f.note(rule);
    }

    fn multiply(list: &mut Vec<Fold>, key: u32, factor: f64, rule: u16) {
        let f = Fold::find(list, key, 1.0);
        f.value *= factor;
        f.note(Some(rule));
    }

    fn rules(&self) -> &[u16] {
        &self.rules[..self.n as usize]
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
    pub hits: &'a [RuleHit<'a>],
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
    if inp.limit == 0 || cat.items.is_empty() {
        return Vec::new();
    }
    let mut sc = Scorer {
        catalog: cat,
        slot: FxHashMap::with_capacity_and_hasher(512, Default::default()),
        cands: Vec::with_capacity(512),
    };
    let personal = matches!(inp.tier, Tier::Full | Tier::Browser);
    // Phase 1: additive sources. Anchors and categories are folded first (many rules often
    // boost the same item), so each related list and top list is walked once.
    let mut anchors: Vec<Fold> = Vec::new();
    let mut boosted_cats: Vec<Fold> = Vec::new();
    // Returning to a recent item only makes sense where seen items may be shown.
    let recent_weight = if p.seen_policy == SeenPolicy::ExcludeRecent {
        0.0
    } else {
        w.recent
    };
    if personal {
        let mut decay = 1.0f64;
        for (item, kind, _) in inp.state.recent_items(p.recent_anchors) {
            if let Some(anchor) = cat.index_of(inp.state.item_id(item)) {
                let kw = match kind {
                    EventKind::View => w.kinds.view,
                    EventKind::Click => w.kinds.click,
                    EventKind::AddToCart => w.kinds.add_to_cart,
                    EventKind::Purchase => w.kinds.purchase,
                    EventKind::Impression => 0.0,
                };
                Fold::add(&mut anchors, anchor, w.related * decay * kw, None);
                if recent_weight > 0.0 {
                    sc.add(anchor, recent_weight * decay * kw, Why::Recent);
                }
            }
            decay *= p.recency_decay;
        }
    }
    let mut exclude_purchased = p.exclude_purchased;
    let mut excluded_items: Vec<u32> = Vec::new();
    let mut excluded_cats: Vec<u32> = Vec::new();
    let mut cap = p.max_per_category;
    let mut pins: Vec<(u32, u32, u16)> = Vec::new();
    let mut purchased_decided = false;
    let mut cap_decided = false;
    // Category multipliers, folded per category so phase 2 is one lookup per candidate.
    let mut factors: Vec<Fold> = Vec::new();
    for (h, hit) in inp.hits.iter().enumerate() {
        let h = h as u16;
        for e in &hit.effects {
            match e {
                Effect::BoostRelated(item, weight) => {
                    if let Some(a) = cat.index_of(item) {
                        Fold::add(&mut anchors, a, *weight, Some(h));
                    }
                }
                Effect::BoostCategory(name, f) | Effect::BuryCategory(name, f) => {
                    if let Some(c) = cat.category_of_name(name) {
                        if matches!(e, Effect::BoostCategory(..)) {
                            // Candidates only; the multiplier is applied once, in phase 2.
                            Fold::add(&mut boosted_cats, c, w.category.max(0.1), Some(h));
                        }
                        Fold::multiply(&mut factors, c, *f, h);
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
                        pins.push((i, *slot, h));
                    }
                }
                _ => {}
            }
        }
    }
    for a in &anchors {
        sc.add_related(a.key, a.value, a.rules());
    }
    if personal {
        let total: u32 = inp.features.top_categories.iter().map(|c| c.1).sum();
        for (name, n) in &inp.features.top_categories {
            if let Some(c) = cat.category_of_name(name) {
                let share = f64::from(*n) / f64::from(total.max(1));
                sc.add_category(c, w.category * share, Why::Category(c), &[]);
            }
        }
    }
    for b in &boosted_cats {
        sc.add_category(b.key, b.value, Why::Category(b.key), b.rules());
    }
    sc.add_popular(if inp.tier == Tier::Static {
        1.0
    } else {
        w.popular
    });
    // Phase 2: multiplicative.
    let seen: Vec<u32> = if personal && p.seen_policy != SeenPolicy::Allow {
        recently_seen(inp, cat)
    } else {
        Vec::new()
    };
    for c in &mut sc.cands {
        if let Some(category) = cat.items[c.item as usize].category {
            if let Some(f) = factors.iter().find(|f| f.key == category) {
                c.score *= f.value;
                f.rules().iter().for_each(|&r| c.note(Why::Rule(r)));
            }
        }
    }
    if p.seen_policy == SeenPolicy::Demote {
        for &i in &seen {
            if let Some(c) = sc.get_mut(i) {
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
    // Phase 3: filters. Item-level exclusions mark candidates through the slot map (one
    // lookup per excluded item, not one scan per candidate).
    let seen_blocks = p.seen_policy == SeenPolicy::ExcludeRecent;
    let blocked = excluded_items
        .iter()
        .chain(&purchased)
        .chain(seen.iter().filter(|_| seen_blocks));
    for &i in blocked {
        if let Some(c) = sc.get_mut(i) {
            c.score = f64::NEG_INFINITY;
        }
    }
    let mut ranked: Vec<&Cand> = sc
        .cands
        .iter()
        .filter(|c| {
            let item = &cat.items[c.item as usize];
            c.score > 0.0
                && item.available
                && !item.category.is_some_and(|k| excluded_cats.contains(&k))
        })
        .collect();
    // Phase 4: order, diversity, pins, limit.
    let order = |a: &&Cand, b: &&Cand| {
        b.score.total_cmp(&a.score).then_with(|| {
            cat.items[a.item as usize]
                .id
                .cmp(&cat.items[b.item as usize].id)
        })
    };
    let mut pinned: Vec<(u32, u32, u16)> = Vec::new();
    for (i, slot, rule) in pins {
        if cat.items[i as usize].available
            && !purchased.contains(&i)
            && (slot as usize) < inp.limit
            && !pinned.iter().any(|p| p.1 == slot || p.0 == i)
        {
            pinned.push((i, slot, rule));
        }
    }
    let free_slots = inp.limit - pinned.len();
    // Only the head of the ranking is needed: select it, sort it, and fall back to the whole
    // list only when the category cap skipped so many that the head ran out.
    let head = (inp.limit * 4).max(32);
    let mut picked = Vec::new();
    for attempt in 0..2 {
        let partial = attempt == 0 && ranked.len() > head;
        if partial {
            let mut top = ranked.clone();
            top.select_nth_unstable_by(head, order);
            top.truncate(head);
            top.sort_unstable_by(order);
            picked = pick(&top, &pinned, cap, free_slots, cat);
            if picked.len() >= free_slots {
                break;
            }
        } else {
            ranked.sort_unstable_by(order);
            picked = pick(&ranked, &pinned, cap, free_slots, cat);
            break;
        }
    }
    let mut list: Vec<Recommendation> = picked
        .into_iter()
        .map(|c| Recommendation {
            id: cat.items[c.item as usize].id.clone(),
            score: c.score,
            why: c.why(cat, inp.hits),
        })
        .collect();
    pinned.sort_by_key(|p| p.1);
    for (i, slot, rule) in pinned {
        let at = (slot as usize).min(list.len());
        let score = list.get(at).map_or(0.0, |r| r.score);
        let rule_id = inp.hits.get(rule as usize).map_or("", |h| h.id);
        list.insert(
            at,
            Recommendation {
                id: cat.items[i as usize].id.clone(),
                score,
                why: vec![format!("pin:{rule_id}")],
            },
        );
    }
    list
}

/// Takes candidates in order, skipping pinned items and applying the per-category cap.
fn pick<'c>(
    ranked: &[&'c Cand],
    pinned: &[(u32, u32, u16)],
    cap: u32,
    want: usize,
    cat: &Catalog,
) -> Vec<&'c Cand> {
    let mut per_cat: Vec<(u32, u32)> = Vec::new();
    let mut out = Vec::with_capacity(want);
    for &c in ranked {
        if out.len() >= want {
            break;
        }
        if pinned.iter().any(|p| p.0 == c.item) {
            continue;
        }
        if cap > 0 {
            if let Some(category) = cat.items[c.item as usize].category {
                match per_cat.iter_mut().find(|e| e.0 == category) {
                    Some(e) if e.1 >= cap => continue,
                    Some(e) => e.1 += 1,
                    None => per_cat.push((category, 1)),
                }
            }
        }
        out.push(c);
    }
    out
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
