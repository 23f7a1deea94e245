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

use crate::event::EventKind;
use crate::features::Features;
use crate::model::{find, Card, Found, Head, Record, ShardSource};
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
    /// Display title, as published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<std::sync::Arc<str>>,
    /// Category name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<std::sync::Arc<str>>,
    /// Price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
}

impl Recommendation {
    fn new(card: &Card, head: &Head, score: f64, why: Vec<String>) -> Recommendation {
        Recommendation {
            id: card.id.clone(),
            score,
            why,
            title: card.title().cloned(),
            category: card
                .category()
                .and_then(|c| head.category_names.get(c as usize))
                .cloned(),
            price: card.price(),
        }
    }
}

/// Most rule reasons listed per item (rules come first: they are what authors debug).
const MAX_WHY_RULES: usize = 4;
/// Most source reasons listed per item.
const MAX_WHY_SOURCES: usize = 2;

/// A reason, kept compact while scoring (no strings until the final top-k).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// Index into the rule hits.
    Rule(u16),
    /// Related to the anchor at this index of the decision's anchors.
    Related(u32),
    /// From this category's top list.
    Category(u32),
    /// Globally popular.
    Popular,
    /// The shopper's own recent item, expected back (model self-relation or `weights.recent`).
    Recent,
}

#[derive(Clone, Copy)]
struct Cand<'a> {
    item: &'a Card,
    score: f64,
    rules: [u16; MAX_WHY_RULES],
    n_rules: u8,
    sources: [Why; MAX_WHY_SOURCES],
    n_sources: u8,
}

impl<'a> Cand<'a> {
    fn new(item: &'a Card) -> Cand<'a> {
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

    fn why(&self, head: &Head, anchors: &[Fold<Anchor>], hits: &[RuleHit]) -> Vec<String> {
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
                Why::Related(i) => join(
                    "related:",
                    anchors.get(i as usize).map_or("", |a| &a.key.rec.card.id),
                ),
                Why::Category(c) => join("category:", head.category_name(c).unwrap_or_default()),
                Why::Recent => "recent".to_string(),
                Why::Popular | Why::Rule(_) => "popular".to_string(),
            });
        rules.chain(sources).collect()
    }
}

struct Scorer<'a> {
    head: &'a Head,
    shards: &'a dyn ShardSource,
    /// Item hash ([`Card::key`]) → position in `cands`.
    slot: FxHashMap<u64, u32>,
    /// Positions of candidates whose hash another candidate already took (rare).
    collided: Vec<u32>,
    /// Candidates in insertion order, so nothing depends on hash iteration order.
    cands: Vec<Cand<'a>>,
    /// Lookups that found their shard missing.
    missing: u32,
}

impl<'a> Scorer<'a> {
    fn add(&mut self, item: &'a Card, score: f64, why: Why) -> &mut Cand<'a> {
        let next = self.cands.len() as u32;
        let mut at = *self.slot.entry(item.key).or_insert(next);
        if at != next && !same(self.cands[at as usize].item, item) {
            at = self.collided(&item.id).unwrap_or_else(|| {
                self.collided.push(next);
                next
            });
        }
        if at == next {
            self.cands.push(Cand::new(item));
        }
        let c = &mut self.cands[at as usize];
        c.score += score;
        c.note(why);
        c
    }

    fn collided(&self, id: &str) -> Option<u32> {
        let cands = &self.cands;
        self.collided
            .iter()
            .copied()
            .find(|&i| cands[i as usize].item.id == id)
    }

    fn get_mut(&mut self, item: &str) -> Option<&mut Cand<'a>> {
        let at = *self.slot.get(&crate::model::item_hash(item))?;
        let at = if self.cands[at as usize].item.id == item {
            at
        } else {
            self.collided(item)?
        };
        self.cands.get_mut(at as usize)
    }

    /// An item's record; a missing shard is counted (the decision goes on without it).
    fn find(&mut self, id: &str) -> Option<&'a Record> {
        match find(self.head, self.shards, id) {
            Found::Item(r) => Some(r),
            Found::Absent => None,
            Found::Missing => {
                self.missing += 1;
                None
            }
        }
    }

    fn pop_norm(&self, popularity: f32) -> f64 {
        let max = f64::from(self.head.max_popularity);
        if max > 0.0 {
            f64::from(popularity) / max
        } else {
            0.0
        }
    }

    /// Adds `weight × relatedness` for every item related to `anchor`, noting the anchor and
    /// the rules that asked for it.
    fn add_related(&mut self, at: u32, rec: &'a Record, weight: f64, rules: &[u16]) {
        for rel in &rec.related {
            // A self-relation is the model saying shoppers come back to this item.
            let why = if rel.card.key == rec.card.key && rel.card.id == rec.card.id {
                Why::Recent
            } else {
                Why::Related(at)
            };
            let c = self.add(&rel.card, weight * f64::from(rel.score), why);
            rules.iter().for_each(|&h| c.note(Why::Rule(h)));
        }
    }

    /// Adds a category's top items, scored by popularity.
    fn add_category(&mut self, cat: u32, weight: f64, why: Why, rules: &[u16]) {
        let head = self.head;
        let Some(list) = head.category_top.get(cat as usize) else {
            return;
        };
        for &i in list {
            let Some(l) = head.listed.get(i as usize) else {
                continue;
            };
            let s = weight * self.pop_norm(l.popularity);
            let c = self.add(&l.card, s, why);
            rules.iter().for_each(|&h| c.note(Why::Rule(h)));
        }
    }

    fn add_popular(&mut self, weight: f64) {
        // A zero weight would add nothing but a misleading "popular" reason.
        if weight <= 0.0 {
            return;
        }
        let head = self.head;
        for l in head
            .popular
            .iter()
            .filter_map(|&i| head.listed.get(i as usize))
        {
            let s = weight * self.pop_norm(l.popularity);
            self.add(&l.card, s, Why::Popular);
        }
    }
}

/// An anchor's identity: its hash first, so telling anchors apart rarely compares strings.
#[derive(Clone, Copy)]
struct Anchor<'a> {
    key: u64,
    rec: &'a Record,
}

impl<'a> Anchor<'a> {
    fn of(rec: &'a Record) -> Anchor<'a> {
        Anchor {
            key: rec.card.key,
            rec,
        }
    }
}

impl PartialEq for Anchor<'_> {
    fn eq(&self, o: &Self) -> bool {
        self.key == o.key && same(&self.rec.card, &o.rec.card)
    }
}

/// A per-key weight folded from several sources, remembering the first few rules.
struct Fold<K> {
    key: K,
    value: f64,
    rules: [u16; MAX_WHY_RULES],
    n: u8,
}

impl<K: Copy + PartialEq> Fold<K> {
    fn find(list: &mut Vec<Fold<K>>, key: K, init: f64) -> &mut Fold<K> {
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

    fn add(list: &mut Vec<Fold<K>>, key: K, weight: f64, rule: Option<u16>) {
        let f = Fold::find(list, key, 0.0);
        f.value += weight;
        f.note(rule);
    }

    fn multiply(list: &mut Vec<Fold<K>>, key: K, factor: f64, rule: u16) {
        let f = Fold::find(list, key, 1.0);
        f.value *= factor;
        f.note(Some(rule));
    }

    fn rules(&self) -> &[u16] {
        &self.rules[..self.n as usize]
    }
}

/// Whether two cards name the same item (the same card, mostly: no string compare then).
fn same(a: &Card, b: &Card) -> bool {
    std::ptr::eq(a, b) || a.id == b.id
}

/// Inputs to [`recommend`].
pub struct RecommendInput<'a> {
    /// The model's head (candidate lists, categories).
    pub head: &'a Head,
    /// The shards loaded for this decision.
    pub shards: &'a dyn ShardSource,
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

/// A ranked list, and how many item lookups found their shard missing (the list was made
/// without those items' related lists or pins).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ranked {
    /// The list.
    pub items: Vec<Recommendation>,
    /// Lookups that found their shard missing.
    pub missing: u32,
}

/// Ranks items for one request.
pub fn recommend<'a>(inp: &RecommendInput<'a>) -> Ranked {
    let head = inp.head;
    let p = inp.policy;
    let w = &p.weights;
    if inp.limit == 0 || head.items == 0 {
        return Ranked::default();
    }
    let mut sc = Scorer {
        head,
        shards: inp.shards,
        slot: FxHashMap::with_capacity_and_hasher(512, Default::default()),
        collided: Vec::new(),
        cands: Vec::with_capacity(512),
        missing: 0,
    };
    let personal = matches!(inp.tier, Tier::Full | Tier::Browser);
    // Phase 1: additive sources. Anchors and categories are folded first (many rules often
    // boost the same item), so each related list and top list is walked once.
    let mut anchors: Vec<Fold<Anchor<'a>>> = Vec::new();
    let mut boosted_cats: Vec<Fold<u32>> = Vec::new();
    // Returning to a recent item only makes sense where seen items may be shown.
    let recent_weight = if p.seen_policy == SeenPolicy::ExcludeRecent {
        0.0
    } else {
        w.recent
    };
    if personal {
        let mut decay = 1.0f64;
        for (item, kind, _) in inp.state.recent_items(p.recent_anchors) {
            if let Some(rec) = sc.find(inp.state.item_id(item)) {
                let kw = match kind {
                    EventKind::View => w.kinds.view,
                    EventKind::Click => w.kinds.click,
                    EventKind::AddToCart => w.kinds.add_to_cart,
                    EventKind::Purchase => w.kinds.purchase,
                    EventKind::Impression => 0.0,
                };
                Fold::add(&mut anchors, Anchor::of(rec), w.related * decay * kw, None);
                if recent_weight > 0.0 {
                    sc.add(&rec.card, recent_weight * decay * kw, Why::Recent);
                }
            }
            decay *= p.recency_decay;
        }
    }
    let mut exclude_purchased = p.exclude_purchased;
    let mut excluded_items: Vec<&str> = Vec::new();
    let mut excluded_cats: Vec<u32> = Vec::new();
    let mut cap = p.max_per_category;
    let mut pins: Vec<(&'a Card, u32, u16)> = Vec::new();
    let mut purchased_decided = false;
    let mut cap_decided = false;
    // Category multipliers, folded per category so phase 2 is one lookup per candidate.
    let mut factors: Vec<Fold<u32>> = Vec::new();
    for (h, hit) in inp.hits.iter().enumerate() {
        let h = h as u16;
        for e in &hit.effects {
            match e {
                Effect::BoostRelated(item, weight) => {
                    if let Some(rec) = sc.find(item) {
                        Fold::add(&mut anchors, Anchor::of(rec), *weight, Some(h));
                    }
                }
                Effect::BoostCategory(name, f) | Effect::BuryCategory(name, f) => {
                    if let Some(c) = head.category_of_name(name) {
                        if matches!(e, Effect::BoostCategory(..)) {
                            // Candidates only; the multiplier is applied once, in phase 2.
                            Fold::add(&mut boosted_cats, c, w.category.max(0.1), Some(h));
                        }
                        Fold::multiply(&mut factors, c, *f, h);
                    }
                }
                Effect::ExcludeItems(ids) => excluded_items.extend(ids.iter().map(String::as_str)),
                Effect::ExcludeCategories(names) => {
                    excluded_cats.extend(names.iter().filter_map(|n| head.category_of_name(n)))
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
                    if let Some(rec) = sc.find(item) {
                        pins.push((&rec.card, *slot, h));
                    }
                }
                _ => {}
            }
        }
    }
    for (i, a) in anchors.iter().enumerate() {
        sc.add_related(i as u32, a.key.rec, a.value, a.rules());
    }
    if personal {
        let total: u32 = inp.features.top_categories.iter().map(|c| c.1).sum();
        for (name, n) in &inp.features.top_categories {
            if let Some(c) = head.category_of_name(name) {
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
    let seen: Vec<&str> = if personal && p.seen_policy != SeenPolicy::Allow {
        recently_seen(inp)
    } else {
        Vec::new()
    };
    for c in &mut sc.cands {
        if let Some(category) = c.item.category() {
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
    let purchased: Vec<&str> = if exclude_purchased {
        inp.state
            .purchased
            .iter()
            .map(|&i| inp.state.item_id(i))
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
            c.score > 0.0
                && c.item.available
                && !c
                    .item
                    .category()
                    .is_some_and(|k| excluded_cats.contains(&k))
        })
        .collect();
    // Phase 4: order, diversity, pins, limit.
    let order = |a: &&Cand, b: &&Cand| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.item.id.cmp(&b.item.id))
    };
    let mut pinned: Vec<(&Card, u32, u16)> = Vec::new();
    for (i, slot, rule) in pins {
        if i.available
            && !purchased.contains(&i.id.as_str())
            && (slot as usize) < inp.limit
            && !pinned.iter().any(|p| p.1 == slot || p.0.id == i.id)
        {
            pinned.push((i, slot, rule));
        }
    }
    let free_slots = inp.limit - pinned.len();
    // Only the head of the ranking is needed: select it, sort it, and fall back to the whole
    // list only when the category cap skipped so many that the head ran out.
    let top_len = (inp.limit * 4).max(32);
    let mut picked = Vec::new();
    for attempt in 0..2 {
        let partial = attempt == 0 && ranked.len() > top_len;
        if partial {
            let mut top = ranked.clone();
            top.select_nth_unstable_by(top_len, order);
            top.truncate(top_len);
            top.sort_unstable_by(order);
            picked = pick(&top, &pinned, cap, free_slots);
            if picked.len() >= free_slots {
                break;
            }
        } else {
            ranked.sort_unstable_by(order);
            picked = pick(&ranked, &pinned, cap, free_slots);
            break;
        }
    }
    let mut list: Vec<Recommendation> = picked
        .into_iter()
        .map(|c| Recommendation::new(c.item, head, c.score, c.why(head, &anchors, inp.hits)))
        .collect();
    pinned.sort_by_key(|p| p.1);
    for (i, slot, rule) in pinned {
        let at = (slot as usize).min(list.len());
        let score = list.get(at).map_or(0.0, |r| r.score);
        let rule_id = inp.hits.get(rule as usize).map_or("", |h| h.id);
        list.insert(
            at,
            Recommendation::new(i, head, score, vec![format!("pin:{rule_id}")]),
        );
    }
    Ranked {
        items: list,
        missing: sc.missing,
    }
}

/// Takes candidates in order, skipping pinned items and applying the per-category cap.
fn pick<'c, 'a>(
    ranked: &[&'c Cand<'a>],
    pinned: &[(&Card, u32, u16)],
    cap: u32,
    want: usize,
) -> Vec<&'c Cand<'a>> {
    let mut per_cat: Vec<(u32, u32)> = Vec::new();
    let mut out = Vec::with_capacity(want);
    for &c in ranked {
        if out.len() >= want {
            break;
        }
        if pinned.iter().any(|p| p.0.id == c.item.id) {
            continue;
        }
        if cap > 0 {
            if let Some(category) = c.item.category() {
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

/// Ids of items the shopper viewed, clicked or carted within the seen window.
fn recently_seen<'a>(inp: &RecommendInput<'a>) -> Vec<&'a str> {
    let s = inp.state;
    let win = inp.policy.seen_window;
    // Session item indices name distinct ids: dedupe on them, not on strings.
    let mut out: Vec<u32> = Vec::new();
    for kind in [EventKind::View, EventKind::Click, EventKind::AddToCart] {
        let counts = s.counts_per_item(kind, win, inp.now_ms, inp.bucket_ms);
        for (i, &n) in counts.iter().enumerate() {
            if n > 0 && !out.contains(&(i as u32)) {
                out.push(i as u32);
            }
        }
    }
    out.into_iter().map(|i| s.item_id(i)).collect()
}
