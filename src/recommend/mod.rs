//! Recommend: candidates → rule effects → filters → diversity → top-k, each item with its "why".
//!
//! Scoring runs in fixed steps ([`recommend`] reads as that list) so the outcome does not depend
//! on rule order beyond priority:
//! 1. additive: related items of recent interactions (decayed by recency, weighted by kind),
//!    top items of the session's favourite categories, global popularity, rule boosts;
//! 2. multiplicative: category boosts and burials, the seen-items demotion;
//! 3. filters: unavailable, excluded items and categories, purchased, recently seen;
//! 4. order by score (desc) then id (asc) — a total order, so every host agrees — then the
//!    per-category cap, then pins, then the limit.
//!
//! Only `+ - * /` touch scores (no `powi`, `exp`, `ln`), so native and wasm give identical
//! floating-point results.

mod score;

use crate::event::EventKind;
use crate::features::Features;
use crate::model::{Card, Head, ShardSource};
use crate::rules::bundle::SeenPolicy;
use crate::rules::eval::{Effect, Hits};
use crate::rules::ir::Policy;
use crate::session::SessionState;
use score::{Anchor, Cand, Fold, Scorer, Why};
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
    pub why: Vec<std::sync::Arc<str>>,
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
    /// The anchor whose related list put it here (its first `related:` reason), if any.
    pub fn anchor(&self) -> Option<&str> {
        self.why.iter().find_map(|w| w.strip_prefix("related:"))
    }

    fn new(card: &Card, head: &Head, score: f64, why: Vec<std::sync::Arc<str>>) -> Recommendation {
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
    pub hits: &'a Hits<'a>,
    /// Tier being served.
    pub tier: Tier,
    /// How many items.
    pub limit: usize,
    /// Decision time.
    pub now_ms: u64,
    /// Session bucket width.
    pub bucket_ms: u64,
    /// Related scores use the model's exposure feedback (the policy's, or the variant's).
    pub feedback: bool,
}

/// How much two top-k lists agree: |a ∩ b| / max(|a|, |b|), 1 when both are empty (what
/// `simulate` and shadow evaluation report as overlap@k).
pub fn overlap(a: &[&str], b: &[&str]) -> f64 {
    let size = a.len().max(b.len());
    if size == 0 {
        return 1.0;
    }
    b.iter().filter(|x| a.contains(x)).count() as f64 / size as f64
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

/// Ranks items for one request: a pipeline of named steps over one scorer.
pub fn recommend<'a>(inp: &RecommendInput<'a>) -> Ranked {
    if inp.limit == 0 || inp.head.items == 0 {
        return Ranked::default();
    }
    let mut sc = Scorer::new(inp.head, inp.shards);
    let personal = matches!(inp.tier, Tier::Full | Tier::Browser);
    // 1. Additive sources. Anchors and categories are folded first (many rules often boost
    // the same item), so each related list and top list is walked once.
    let mut anchors = if personal {
        session_anchors(inp, &mut sc)
    } else {
        Vec::new()
    };
    let fx = rule_effects(inp, &mut sc, &mut anchors);
    add_sources(inp, &mut sc, &anchors, &fx, personal);
    // 2. Multiplicative.
    let seen = if personal && inp.policy.seen_policy != SeenPolicy::Allow {
        recently_seen(inp)
    } else {
        Vec::new()
    };
    multiply(inp, &mut sc, &fx, &seen);
    // 3. Filters.
    let purchased = if fx.exclude_purchased {
        purchased(inp)
    } else {
        Vec::new()
    };
    let ranked = filter(inp, &mut sc, &fx, &seen, &purchased);
    // 4. Order, diversity, pins, limit.
    let pinned = pinned(inp, &fx.pins, &purchased);
    let mut list = top_k(inp, ranked, &pinned, fx.cap, &anchors);
    insert_pins(inp, &mut list, pinned);
    Ranked {
        items: list,
        missing: sc.missing,
    }
}

/// What the rules that fired ask for, folded: anchors to boost (added to the session's),
/// categories to boost and their multipliers, exclusions, the category cap, pins.
struct Effects<'a> {
    boosted_cats: Vec<Fold<u32>>,
    factors: Vec<Fold<u32>>,
    excluded_items: Vec<&'a str>,
    excluded_cats: Vec<u32>,
    exclude_purchased: bool,
    cap: u32,
    pins: Vec<(&'a Card, u32, u16)>,
}

/// The session's recent items as anchors, decayed by recency and weighted by kind (and each
/// as a `recent` candidate where seen items may be shown).
fn session_anchors<'a>(inp: &RecommendInput<'a>, sc: &mut Scorer<'a>) -> Vec<Fold<Anchor<'a>>> {
    let (p, w) = (inp.policy, &inp.policy.weights);
    let mut anchors = Vec::with_capacity(p.recent_anchors);
    // Returning to a recent item only makes sense where seen items may be shown.
    let recent_weight = if p.seen_policy == SeenPolicy::ExcludeRecent {
        0.0
    } else {
        w.recent
    };
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
    anchors
}

/// Reads the fired rules' effects in priority order; for the exclusive settings (purchased,
/// cap) the highest-priority rule that speaks decides.
fn rule_effects<'a>(
    inp: &RecommendInput<'a>,
    sc: &mut Scorer<'a>,
    anchors: &mut Vec<Fold<Anchor<'a>>>,
) -> Effects<'a> {
    let (head, p) = (inp.head, inp.policy);
    let mut fx = Effects {
        boosted_cats: Vec::new(),
        factors: Vec::new(),
        excluded_items: Vec::new(),
        excluded_cats: Vec::new(),
        exclude_purchased: p.exclude_purchased,
        cap: p.max_per_category,
        pins: Vec::new(),
    };
    let (mut purchased_decided, mut cap_decided) = (false, false);
    for (h, hit) in inp.hits.hits.iter().enumerate() {
        let h = h as u16;
        for e in inp.hits.effects(hit) {
            match e {
                Effect::BoostRelated(item, weight) => {
                    if let Some(rec) = sc.find(item) {
                        Fold::add(anchors, Anchor::of(rec), *weight, Some(h));
                    }
                }
                Effect::BoostCategory(name, f) | Effect::BuryCategory(name, f) => {
                    if let Some(c) = head.category_of_name(name) {
                        if matches!(e, Effect::BoostCategory(..)) {
                            // Candidates only; the multiplier is applied once, in `multiply`.
                            let weight = p.weights.category.max(0.1);
                            Fold::add(&mut fx.boosted_cats, c, weight, Some(h));
                        }
                        Fold::multiply(&mut fx.factors, c, *f, h);
                    }
                }
                Effect::ExcludeItems(ids) => {
                    fx.excluded_items.extend(ids.iter().map(String::as_str))
                }
                Effect::ExcludeCategories(names) => fx
                    .excluded_cats
                    .extend(names.iter().filter_map(|n| head.category_of_name(n))),
                Effect::ExcludePurchased(b) if !purchased_decided => {
                    fx.exclude_purchased = *b;
                    purchased_decided = true;
                }
                Effect::CapPerCategory(n) if !cap_decided => {
                    fx.cap = *n;
                    cap_decided = true;
                }
                Effect::Pin(item, slot) => {
                    if let Some(rec) = sc.find(item) {
                        fx.pins.push((&rec.card, *slot, h));
                    }
                }
                _ => {}
            }
        }
    }
    fx
}

/// Adds the candidates: related items of every anchor, the session's favourite categories,
/// the boosted categories, then popularity.
fn add_sources<'a>(
    inp: &RecommendInput<'a>,
    sc: &mut Scorer<'a>,
    anchors: &[Fold<Anchor<'a>>],
    fx: &Effects<'a>,
    personal: bool,
) {
    let w = &inp.policy.weights;
    for (i, a) in anchors.iter().enumerate() {
        sc.add_related(i as u32, a.key.rec, a.value, a.rules(), inp.feedback);
    }
    if personal {
        let total: u32 = inp.features.top_categories.iter().map(|c| c.1).sum();
        for (name, n) in &inp.features.top_categories {
            if let Some(c) = inp.head.category_of_name(name) {
                let share = f64::from(*n) / f64::from(total.max(1));
                sc.add_category(c, w.category * share, Why::Category(c), &[]);
            }
        }
    }
    for b in &fx.boosted_cats {
        sc.add_category(b.key, b.value, Why::Category(b.key), b.rules());
    }
    sc.add_popular(if inp.tier == Tier::Static {
        1.0
    } else {
        w.popular
    });
}

/// Category boosts and burials (one lookup per candidate), then the seen-items demotion.
fn multiply(inp: &RecommendInput<'_>, sc: &mut Scorer<'_>, fx: &Effects<'_>, seen: &[&str]) {
    if !fx.factors.is_empty() {
        // Category index → its folded factor: one array read per candidate instead of a scan
        // of the factors (a bundle may bury or boost dozens of categories).
        let mut factor_at = vec![u32::MAX; inp.head.category_names.len()];
        for (i, f) in fx.factors.iter().enumerate() {
            if let Some(slot) = factor_at.get_mut(f.key as usize) {
                *slot = i as u32;
            }
        }
        for c in &mut sc.cands {
            let at = c.item.category().and_then(|k| factor_at.get(k as usize));
            if let Some(f) = at.and_then(|&i| fx.factors.get(i as usize)) {
                c.score *= f.value;
                f.rules().iter().for_each(|&r| c.note(Why::Rule(r)));
            }
        }
    }
    if inp.policy.seen_policy == SeenPolicy::Demote {
        for &i in seen {
            if let Some(c) = sc.get_mut(i) {
                c.score *= inp.policy.seen_demote_factor;
            }
        }
    }
}

/// Ids of the items the session purchased.
fn purchased<'a>(inp: &RecommendInput<'a>) -> Vec<&'a str> {
    let s = inp.state;
    s.purchased.iter().map(|&i| s.item_id(i)).collect()
}

/// The candidates left: a positive score, available, not excluded (item-level exclusions
/// mark candidates through the slot map: one lookup per excluded item, not one scan per
/// candidate), not in an excluded category.
fn filter<'s, 'a>(
    inp: &RecommendInput<'a>,
    sc: &'s mut Scorer<'a>,
    fx: &Effects<'a>,
    seen: &[&str],
    purchased: &[&str],
) -> Vec<&'s Cand<'a>> {
    let seen_blocks = inp.policy.seen_policy == SeenPolicy::ExcludeRecent;
    let blocked = fx
        .excluded_items
        .iter()
        .chain(purchased)
        .chain(seen.iter().filter(|_| seen_blocks));
    for &i in blocked {
        if let Some(c) = sc.get_mut(i) {
            c.score = f64::NEG_INFINITY;
        }
    }
    sc.cands
        .iter()
        .filter(|c| {
            c.score > 0.0
                && c.item.available
                && !c
                    .item
                    .category()
                    .is_some_and(|k| fx.excluded_cats.contains(&k))
        })
        .collect()
}

/// The pins that stand: available, not purchased, within the limit, one per slot and item.
fn pinned<'a>(
    inp: &RecommendInput<'a>,
    pins: &[(&'a Card, u32, u16)],
    purchased: &[&str],
) -> Vec<(&'a Card, u32, u16)> {
    let mut pinned: Vec<(&Card, u32, u16)> = Vec::new();
    for &(i, slot, rule) in pins {
        if i.available
            && !purchased.contains(&i.id.as_str())
            && (slot as usize) < inp.limit
            && !pinned.iter().any(|p| p.1 == slot || p.0.id == i.id)
        {
            pinned.push((i, slot, rule));
        }
    }
    pinned
}

/// Orders by score (desc) then id, applies the category cap, and takes what the pins leave.
/// Only the head of the ranking is needed: it is selected and sorted, and the whole list only
/// when the cap skipped so many that the head ran out.
fn top_k<'a>(
    inp: &RecommendInput<'a>,
    mut ranked: Vec<&Cand<'a>>,
    pinned: &[(&'a Card, u32, u16)],
    cap: u32,
    anchors: &[Fold<Anchor<'a>>],
) -> Vec<Recommendation> {
    let order = |a: &&Cand, b: &&Cand| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.item.id.cmp(&b.item.id))
    };
    let free_slots = inp.limit - pinned.len();
    let top_len = (inp.limit * 4).max(32);
    let mut picked = Vec::new();
    // The order is total, so the full sort's result does not depend on what the partial
    // selection did to `ranked` first: no copy is needed.
    for attempt in 0..2 {
        let partial = attempt == 0 && ranked.len() > top_len;
        if partial {
            ranked.select_nth_unstable_by(top_len, order);
            let top = &mut ranked[..top_len];
            top.sort_unstable_by(order);
            picked = pick(top, pinned, cap, free_slots);
            if picked.len() >= free_slots {
                break;
            }
        } else {
            ranked.sort_unstable_by(order);
            picked = pick(&ranked, pinned, cap, free_slots);
            break;
        }
    }
    let head = inp.head;
    let mut related = Vec::new();
    picked
        .into_iter()
        .map(|c| {
            let why = c.why(head, anchors, &inp.hits.hits, &mut related);
            Recommendation::new(c.item, head, c.score, why)
        })
        .collect()
}

/// Puts pinned items at their slots, each with the score of the item it displaces.
fn insert_pins(
    inp: &RecommendInput<'_>,
    list: &mut Vec<Recommendation>,
    mut pinned: Vec<(&Card, u32, u16)>,
) {
    pinned.sort_by_key(|p| p.1);
    for (i, slot, rule) in pinned {
        let at = (slot as usize).min(list.len());
        let score = list.get(at).map_or(0.0, |r| r.score);
        let rule_id = inp.hits.hits.get(rule as usize).map_or("", |h| h.id);
        list.insert(
            at,
            Recommendation::new(i, inp.head, score, vec![format!("pin:{rule_id}").into()]),
        );
    }
}

/// Takes candidates in order, skipping pinned items and applying the per-category cap.
fn pick<'c, 'a>(
    ranked: &[&'c Cand<'a>],
    pinned: &[(&Card, u32, u16)],
    cap: u32,
    want: usize,
) -> Vec<&'c Cand<'a>> {
    // Pins always stand, and each uses up one place of its category under the cap: "at most
    // two per category" holds for the list as shown.
    let mut per_cat: Vec<(u32, u32)> = Vec::with_capacity(if cap > 0 { want } else { 0 });
    if cap > 0 {
        for category in pinned.iter().filter_map(|p| p.0.category()) {
            *shown(&mut per_cat, category) += 1;
        }
    }
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
                let n = shown(&mut per_cat, category);
                if *n >= cap {
                    continue;
                }
                *n += 1;
            }
        }
        out.push(c);
    }
    out
}

/// How many items of `category` the list shows so far (a new entry at 0).
fn shown(per_cat: &mut Vec<(u32, u32)>, category: u32) -> &mut u32 {
    let at = match per_cat.iter().position(|e| e.0 == category) {
        Some(at) => at,
        None => {
            per_cat.push((category, 0));
            per_cat.len() - 1
        }
    };
    &mut per_cat[at].1
}

/// Ids of items the shopper viewed, clicked or carted within the seen window.
fn recently_seen<'a>(inp: &RecommendInput<'a>) -> Vec<&'a str> {
    let s = inp.state;
    let win = inp.policy.seen_window;
    // Session item indices name distinct ids: dedupe on them, not on strings.
    let mut out: Vec<u32> = Vec::with_capacity(s.items.len());
    let kinds = [EventKind::View, EventKind::Click, EventKind::AddToCart];
    let counts = s.counts_per_item_of(kinds, win, inp.now_ms, inp.bucket_ms);
    // Kind by kind, as the list has always been ordered: viewed first, then clicked, carted.
    for k in 0..kinds.len() {
        for (i, c) in counts.iter().enumerate() {
            if c[k] > 0 && !out.contains(&(i as u32)) {
                out.push(i as u32);
            }
        }
    }
    out.into_iter().map(|i| s.item_id(i)).collect()
}

#[cfg(test)]
mod tests;
