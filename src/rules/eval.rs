//! Rule evaluation: compiled conditions against one session's features and windows.
//!
//! A count condition over `item: "*"` holds when some item passes, and binds those items to
//! `$item` (likewise `category: "*"` and `$category`). `all` keeps the items bound by every
//! child that binds, `any` the union of its true children's; `not` binds nothing. Actions then
//! resolve their references into concrete [`Effect`]s.

use super::features::{NumFeature, StrFeature};
use super::flat::{Facts, Labels, NUMS};
use super::ir::{
    Act, CategoryRef, CompiledBundle, CompiledRule, Cond, CountTarget, ItemRef, StrOp,
};
use crate::event::EventKind;
use crate::features::Features;
use crate::session::{SessionState, Window};
use std::cell::RefCell;
use std::rc::Rc;

/// Most bound items or categories an action fans out to.
pub const MAX_BOUND: usize = 3;

/// A resolved action, borrowing from the compiled bundle and the session (no copies on the
/// hot path).
#[derive(Debug, Clone, PartialEq)]
pub enum Effect<'a> {
    /// Add related items of this anchor.
    BoostRelated(&'a str, f64),
    /// Multiply a category's scores and add its top items.
    BoostCategory(&'a str, f64),
    /// Multiply a category's scores by a factor < 1.
    BuryCategory(&'a str, f64),
    /// Pin an item to a position.
    Pin(&'a str, u32),
    /// Exclude items.
    ExcludeItems(&'a [String]),
    /// Exclude categories.
    ExcludeCategories(&'a [String]),
    /// Exclude purchased items (true) or allow them (false).
    ExcludePurchased(bool),
    /// Category cap.
    CapPerCategory(u32),
}

/// A rule that fired; its actions are [`Hits::effects`] of it.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleHit<'a> {
    /// Rule id.
    pub id: &'a std::sync::Arc<str>,
    /// `rule:<id>`.
    pub why: &'a std::sync::Arc<str>,
    /// The rule's [`CompiledRule::id_rank`].
    rank: u32,
    /// Its resolved actions: `Hits::effects[start..end]`.
    effects: (u32, u32),
}

/// The rules that fired, in priority order, with every resolved action in one buffer (one
/// allocation per decision, not one per rule).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hits<'a> {
    /// The rules that fired.
    pub hits: Vec<RuleHit<'a>>,
    effects: Vec<Effect<'a>>,
    /// Rules in the bundle (ranks are below it).
    rules: u32,
}

impl<'a> Hits<'a> {
    /// What a rule that fired asks for.
    pub fn effects(&self, hit: &RuleHit<'a>) -> &[Effect<'a>] {
        self.effects
            .get(hit.effects.0 as usize..hit.effects.1 as usize)
            .unwrap_or_default()
    }

    /// The rule ids, in priority order.
    pub fn ids(&self) -> impl Iterator<Item = &'a std::sync::Arc<str>> + '_ {
        self.hits.iter().map(|h| h.id)
    }

    /// The rule ids in ascending (byte) order.
    pub fn ids_sorted(&self) -> Vec<&'a std::sync::Arc<str>> {
        // Many hits of a few rules: place each at its rank (no sort); few of many: sort them.
        if self.hits.len() * 8 >= self.rules as usize {
            let mut slots: Vec<Option<&'a std::sync::Arc<str>>> = vec![None; self.rules as usize];
            for h in &self.hits {
                if let Some(s) = slots.get_mut(h.rank as usize) {
                    *s = Some(h.id);
                }
            }
            return slots.into_iter().flatten().collect();
        }
        let mut by: Vec<(u32, &'a std::sync::Arc<str>)> =
            self.hits.iter().map(|h| (h.rank, h.id)).collect();
        by.sort_unstable_by_key(|x| x.0);
        by.into_iter().map(|x| x.1).collect()
    }

    /// How many rules fired.
    pub fn len(&self) -> usize {
        self.hits.len()
    }

    /// Whether none fired.
    pub fn is_empty(&self) -> bool {
        self.hits.is_empty()
    }
}

/// Per-item (or per-category) counts for one (kind, window), shared by all rules asking.
type CountMemo = Vec<(EventKind, Window, bool, Vec<u32>)>;

/// What rules read.
pub struct Env<'a> {
    state: &'a SessionState,
    features: &'a Features,
    now_ms: u64,
    bucket_ms: u64,
    /// A bundle asks about a handful of (kind, window) pairs many times: count each once.
    memo: RefCell<CountMemo>,
    /// Per window, every kind's counts per session item (one pass over the session each).
    windows: RefCell<Vec<(Window, Vec<[u32; 5]>)>>,
    /// Wildcard counts' match lists, one per question, shared by the rules asking it.
    matched: RefCell<Vec<(MatchKey, Matches)>>,
    /// Session item id → index, built on first use.
    item_ids: std::cell::OnceCell<rustc_hash::FxHashMap<&'a str, u32>>,
}

/// Items (session indices) or categories with their counts, in binding order: a wildcard
/// count's list is shared by every rule asking the same question (one list per decision).
type Matches = Rc<Vec<(u32, u32)>>;

/// Items (session indices) and categories bound by a condition, with counts for ordering.
#[derive(Default, Debug)]
struct Bound {
    items: Option<Matches>,
    categories: Option<Matches>,
}

/// What a rule without wildcard counts binds: nothing.
const UNBOUND: Bound = Bound {
    items: None,
    categories: None,
};

fn intersect(a: Option<Matches>, b: Option<Matches>) -> Option<Matches> {
    match (a, b) {
        (Some(a), Some(b)) => Some(Rc::new(
            a.iter()
                .filter(|(i, _)| b.iter().any(|(j, _)| i == j))
                .copied()
                .collect(),
        )),
        (a, None) => a,
        (None, b) => b,
    }
}

fn union(a: Option<Matches>, b: Option<Matches>) -> Option<Matches> {
    match (a, b) {
        (Some(a), Some(b)) => {
            let mut a = Rc::unwrap_or_clone(a);
            for &x in b.iter() {
                if !a.iter().any(|(i, _)| *i == x.0) {
                    a.push(x);
                }
            }
            Some(Rc::new(a))
        }
        (a, None) => a,
        (None, b) => b,
    }
}

/// A wildcard count's question: (kind, window, per category, comparison, threshold bits).
type MatchKey = (EventKind, Window, bool, super::ir::NumOp, u64);

impl<'a> Env<'a> {
    /// An environment for one decision.
    pub fn new(
        state: &'a SessionState,
        features: &'a Features,
        now_ms: u64,
        bucket_ms: u64,
    ) -> Self {
        Env {
            state,
            features,
            now_ms,
            bucket_ms,
            memo: RefCell::new(Vec::new()),
            windows: RefCell::new(Vec::new()),
            matched: RefCell::new(Vec::new()),
            item_ids: std::cell::OnceCell::new(),
        }
    }

    /// The match list of a wildcard count, made by `make` the first time it is asked.
    fn matched(&self, key: MatchKey, make: impl FnOnce() -> Vec<(u32, u32)>) -> Matches {
        if let Some((_, m)) = self.matched.borrow().iter().find(|(k, _)| *k == key) {
            return m.clone();
        }
        let m: Matches = Rc::new(make());
        self.matched.borrow_mut().push((key, m.clone()));
        m
    }

    fn item_index(&self, id: &str) -> Option<u32> {
        let state: &'a SessionState = self.state;
        self.item_ids
            .get_or_init(|| {
                state
                    .items
                    .iter()
                    .enumerate()
                    .map(|(i, e)| (e.id.as_str(), i as u32))
                    .collect()
            })
            .get(id)
            .copied()
    }

    /// Counts of `kind` in `window` per session item (or per category), memoised, handed to
    /// `f` (which must not ask for counts itself: the memo is borrowed meanwhile).
    fn with_counts<R>(
        &self,
        kind: EventKind,
        window: Window,
        by_category: bool,
        f: impl FnOnce(&[u32]) -> R,
    ) -> R {
        let key = |m: &(EventKind, Window, bool, Vec<u32>)| {
            m.0 == kind && m.1 == window && m.2 == by_category
        };
        let known = self.memo.borrow().iter().position(key);
        let at = match known {
            Some(at) => at,
            None => {
                let counts = self.kind_counts(kind, window, by_category);
                let mut memo = self.memo.borrow_mut();
                memo.push((kind, window, by_category, counts));
                memo.len() - 1
            }
        };
        f(&self.memo.borrow()[at].3)
    }

    /// Counts of `kind` in `window` per session item or category, read from one pass over the
    /// session per window that counts every kind at once (kept for the other kinds).
    fn kind_counts(&self, kind: EventKind, window: Window, by_category: bool) -> Vec<u32> {
        let s = self.state;
        let known = self.windows.borrow().iter().position(|w| w.0 == window);
        let at = known.unwrap_or_else(|| {
            let all = s.counts_per_item_of(EventKind::ALL, window, self.now_ms, self.bucket_ms);
            let mut windows = self.windows.borrow_mut();
            windows.push((window, all));
            windows.len() - 1
        });
        let windows = self.windows.borrow();
        let per_item = windows[at].1.iter().map(|c| c[kind as usize]);
        if !by_category {
            return per_item.collect();
        }
        // A category's count is the sum of its items' counts.
        let mut cats = vec![0u32; s.categories.len()];
        for (item, n) in per_item.enumerate() {
            let cat = s.items.get(item).and_then(|e| e.category);
            if let Some(c) = cat.and_then(|c| cats.get_mut(c as usize)) {
                *c = c.saturating_add(n);
            }
        }
        cats
    }

    fn num(&self, f: NumFeature) -> f64 {
        let x = self.features;
        match f {
            NumFeature::DurationS => x.session_duration_s,
            NumFeature::SinceLastEventS => x.since_last_event_s,
            NumFeature::Events => f64::from(x.events),
            NumFeature::KindTotal(k) => f64::from(self.state.totals[k as usize]),
            NumFeature::DistinctItems => f64::from(x.distinct_items),
            NumFeature::DistinctCategories => f64::from(x.distinct_categories),
            NumFeature::MaxItemViews => f64::from(x.most_viewed_item.as_ref().map_or(0, |m| m.1)),
            NumFeature::CartLines => f64::from(x.cart_lines),
            NumFeature::CartQuantity => f64::from(x.cart_quantity),
            NumFeature::CartValue => x.cart_value,
            NumFeature::PurchasedCount => x.purchased.len() as f64,
        }
    }

    fn label(&self, f: StrFeature) -> Option<&str> {
        let x = self.features;
        let c = &x.context;
        match f {
            StrFeature::TopCategory => x.top_category(),
            StrFeature::LastItem => x.last_item.as_deref(),
            StrFeature::MostViewedItem => x.most_viewed_item.as_ref().map(|m| m.0.as_str()),
            StrFeature::Country => c.country.as_deref(),
            StrFeature::Device => c.device.as_deref(),
            StrFeature::Path => c.path.as_deref(),
            StrFeature::Slot => c.slot.as_deref(),
            StrFeature::Variant => c.variant.as_deref(),
        }
    }

    /// What this decision's flattened conditions read (see [`super::flat`]).
    pub fn facts(&self, labels: &Labels) -> Facts {
        Facts {
            nums: NUMS.map(|f| self.num(f)),
            labels: labels.facts(|f| self.label(f)),
        }
    }

    fn label_test(&self, f: StrFeature, op: &StrOp) -> bool {
        let val = self.label(f);
        match op {
            StrOp::In(set) => val.is_some_and(|v| set.iter().any(|s| s == v)),
            StrOp::NotIn(set) => !val.is_some_and(|v| set.iter().any(|s| s == v)),
            StrOp::StartsWith(p) => val.is_some_and(|v| v.starts_with(p.as_str())),
        }
    }

    fn eval(&self, c: &Cond) -> (bool, Bound) {
        match c {
            Cond::All(cs) => {
                let mut bound = Bound::default();
                for c in cs {
                    let (ok, b) = self.eval(c);
                    if !ok {
                        return (false, Bound::default());
                    }
                    bound.items = intersect(bound.items, b.items);
                    bound.categories = intersect(bound.categories, b.categories);
                }
                let empty = |v: &Option<Matches>| v.as_ref().is_some_and(|m| m.is_empty());
                if empty(&bound.items) || empty(&bound.categories) {
                    // Two wildcard conditions that hold for disjoint items: no item satisfies
                    // the rule as a whole.
                    return (false, Bound::default());
                }
                (true, bound)
            }
            Cond::Any(cs) => {
                let mut hit = false;
                let mut bound = Bound::default();
                for c in cs {
                    let (ok, b) = self.eval(c);
                    if ok {
                        hit = true;
                        bound.items = union(bound.items, b.items);
                        bound.categories = union(bound.categories, b.categories);
                    }
                }
                (hit, bound)
            }
            Cond::Not(c) => (!self.eval(c).0, Bound::default()),
            Cond::Num(f, op, v) => (op.test(self.num(*f), *v), Bound::default()),
            Cond::Str(f, op) => (self.label_test(*f, op), Bound::default()),
            Cond::Count {
                kind,
                target,
                window,
                op,
                value,
            } => self.eval_count(*kind, target, *window, *op, *value),
        }
    }

    fn eval_count(
        &self,
        kind: EventKind,
        target: &CountTarget,
        window: Window,
        op: super::ir::NumOp,
        value: f64,
    ) -> (bool, Bound) {
        let s = self.state;
        let test = |n: u32| op.test(f64::from(n), value);
        let single = |n: u32| (test(n), Bound::default());
        let item_count = |id: Option<&str>| {
            id.and_then(|id| self.item_index(id)).map_or(0, |i| {
                self.with_counts(kind, window, false, |c| {
                    c.get(i as usize).copied().unwrap_or(0)
                })
            })
        };
        let cat_count = |name: Option<&str>| {
            name.and_then(|c| s.category_index(c)).map_or(0, |c| {
                self.with_counts(kind, window, true, |n| {
                    n.get(c as usize).copied().unwrap_or(0)
                })
            })
        };
        let matches = |counts: &[u32]| -> Vec<(u32, u32)> {
            let mut m: Vec<(u32, u32)> = counts
                .iter()
                .enumerate()
                .filter(|&(_, &n)| test(n))
                .map(|(i, &n)| (i as u32, n))
                .collect();
            m.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            m
        };
        match target {
            CountTarget::Everything => single(self.with_counts(kind, window, false, |c| {
                c.iter().fold(0u32, |a, &b| a.saturating_add(b))
            })),
            CountTarget::Item(id) => single(item_count(Some(id))),
            CountTarget::LastItem => single(item_count(self.features.last_item.as_deref())),
            CountTarget::MostViewed => single(item_count(
                self.features
                    .most_viewed_item
                    .as_ref()
                    .map(|m| m.0.as_str()),
            )),
            CountTarget::Category(c) => single(cat_count(Some(c))),
            CountTarget::TopCategory => single(cat_count(self.features.top_category())),
            CountTarget::AnyItem => {
                let m = self.matched((kind, window, false, op, value.to_bits()), || {
                    self.with_counts(kind, window, false, matches)
                });
                (
                    !m.is_empty(),
                    Bound {
                        items: Some(m),
                        categories: None,
                    },
                )
            }
            CountTarget::AnyCategory => {
                let m = self.matched((kind, window, true, op, value.to_bits()), || {
                    self.with_counts(kind, window, true, matches)
                });
                (
                    !m.is_empty(),
                    Bound {
                        items: None,
                        categories: Some(m),
                    },
                )
            }
        }
    }

    fn items_of(&self, r: &'a ItemRef, bound: &Bound, mut f: impl FnMut(&'a str)) {
        let state: &'a SessionState = self.state;
        let features: &'a Features = self.features;
        match r {
            ItemRef::Bound => bound
                .items
                .iter()
                .flat_map(|m| m.iter())
                .take(MAX_BOUND)
                .for_each(|&(i, _)| f(state.item_id(i))),
            ItemRef::Last => features.last_item.iter().for_each(|s| f(s)),
            ItemRef::MostViewed => features.most_viewed_item.iter().for_each(|m| f(&m.0)),
            ItemRef::Id(id) => f(id),
        }
    }

    fn categories_of(&self, r: &'a CategoryRef, bound: &Bound, mut f: impl FnMut(&'a str)) {
        let state: &'a SessionState = self.state;
        let features: &'a Features = self.features;
        match r {
            CategoryRef::Bound => bound
                .categories
                .iter()
                .flat_map(|m| m.iter())
                .take(MAX_BOUND)
                .filter_map(|&(c, _)| state.categories.get(c as usize))
                .for_each(|c| f(c)),
            CategoryRef::Top => features.top_category().into_iter().for_each(f),
            CategoryRef::Name(n) => f(n),
        }
    }

    fn resolve(&self, acts: &'a [Act], bound: &Bound, out: &mut Vec<Effect<'a>>) {
        for a in acts {
            match a {
                Act::BoostRelated(r, w) => {
                    self.items_of(r, bound, |i| out.push(Effect::BoostRelated(i, *w)))
                }
                Act::BoostCategory(r, w) => {
                    self.categories_of(r, bound, |c| out.push(Effect::BoostCategory(c, *w)))
                }
                Act::BuryCategory(r, f) => {
                    self.categories_of(r, bound, |c| out.push(Effect::BuryCategory(c, *f)))
                }
                Act::Pin(i, s) => out.push(Effect::Pin(i, *s)),
                Act::ExcludeItems(v) => out.push(Effect::ExcludeItems(v)),
                Act::ExcludeCategories(v) => out.push(Effect::ExcludeCategories(v)),
                Act::ExcludePurchased(b) => out.push(Effect::ExcludePurchased(*b)),
                Act::CapPerCategory(n) => out.push(Effect::CapPerCategory(*n)),
            }
        }
    }

    /// Evaluates one rule; if it fires, adds it and its resolved actions to `hits`.
    // Called once per rule per decision from `run`: inlined, the call cost ~5% of the rules.
    #[inline(always)]
    pub fn run_rule(&self, rule: &'a CompiledRule, facts: &Facts, hits: &mut Hits<'a>) -> bool {
        if rule.binds {
            let (ok, bound) = self.eval(&rule.when);
            if ok {
                self.fire(rule, &bound, hits);
            }
            return ok;
        }
        let label = |f| self.label(f);
        let count = |c: &Cond| self.eval(c).0;
        let ok = rule.flat.holds(facts, &label, &count);
        if ok {
            self.fire(rule, &UNBOUND, hits);
        }
        ok
    }

    /// Records a rule that fired and its actions, resolved against what it bound.
    fn fire(&self, rule: &'a CompiledRule, bound: &Bound, hits: &mut Hits<'a>) {
        let start = hits.effects.len() as u32;
        self.resolve(&rule.then, bound, &mut hits.effects);
        hits.hits.push(RuleHit {
            id: &rule.id,
            why: &rule.why,
            rank: rule.id_rank,
            effects: (start, hits.effects.len() as u32),
        });
    }

    /// Evaluates every rule (or, with `context_only`, only those that read just the request),
    /// in priority order.
    pub fn run(&self, bundle: &'a CompiledBundle, context_only: bool) -> Hits<'a> {
        let mut hits = Hits {
            hits: Vec::with_capacity(bundle.rules.len()),
            effects: Vec::with_capacity(bundle.rules.len() * 2),
            rules: bundle.rules.len() as u32,
        };
        if bundle.rules.is_empty() {
            return hits;
        }
        let facts = self.facts(&bundle.labels);
        for r in bundle
            .rules
            .iter()
            .filter(|r| !context_only || r.context_only)
        {
            self.run_rule(r, &facts, &mut hits);
        }
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::features::{Context, Features};
    use crate::rules::compile::compile_json;
    use crate::session::SessionConfig;

    const T0: u64 = 1_764_201_600_000;

    fn hits(
        bundle: &str,
        events: &[(EventKind, &str, &str, u64)],
        now: u64,
    ) -> Vec<(String, String)> {
        let cfg = SessionConfig::default();
        let b = compile_json(bundle, cfg.horizon_ms).unwrap();
        let mut s = SessionState::new();
        for (k, item, cat, ts) in events {
            s.ingest(&Event::new(*k, *item, *ts), Some(cat), None, &cfg);
        }
        let ctx = Context {
            country: Some("DE".into()),
            ..Default::default()
        };
        let f = Features::compute(&s, ctx, now, &cfg);
        let env = Env::new(&s, &f, now, cfg.bucket_ms);
        let hits = env.run(&b, false);
        hits.hits
            .iter()
            .map(|h| (h.id.to_string(), format!("{:?}", hits.effects(h))))
            .collect()
    }

    /// Condition trees without wildcard counts: features, labels, single-item and category
    /// counts under all/any/not.
    fn plain_cond() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::json;
        let leaf = prop_oneof![
            (0..4usize, 0..6usize, 0..8u32).prop_map(|(f, op, v)| {
                let f = ["session.events", "session.views", "cart.value", "session.distinct_items"][f];
                let op = ["==", "!=", "<", "<=", ">", ">="][op];
                json!({"feature": {"name": f, "op": op, "value": v}})
            }),
            (0..3usize, 0..3usize, 0..5usize).prop_map(|(f, v, op)| {
                let (f, vals) = [("context.country", ["DE", "AT", "US"]), ("session.top_category", ["c", "d", "e"]), ("context.device", ["mobile", "m", ""])][f];
                match op {
                    0 => json!({"feature": {"name": f, "op": "==", "value": vals[v]}}),
                    1 => json!({"feature": {"name": f, "op": "!=", "value": vals[v]}}),
                    2 => json!({"feature": {"name": f, "op": "in", "value": [vals[v], vals[(v + 1) % 3]]}}),
                    3 => json!({"feature": {"name": f, "op": "not_in", "value": [vals[v], "Z"]}}),
                    _ => json!({"feature": {"name": f, "op": "starts_with", "value": vals[v]}}),
                }
            }),
            (0..3usize, 1..4u32).prop_map(|(t, v)| match t {
                0 => json!({"count": {"kind": "view", "item": "x", "window": "10m", "op": ">=", "value": v}}),
                1 => json!({"count": {"kind": "view", "category": "c", "window": "1h", "op": ">=", "value": v}}),
                _ => json!({"count": {"kind": "view", "item": "$last", "window": "1h", "op": ">=", "value": v}}),
            }),
        ];
        leaf.prop_recursive(3, 16, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 1..4).prop_map(|v| json!({"all": v})),
                proptest::collection::vec(inner.clone(), 1..4).prop_map(|v| json!({"any": v})),
                inner.prop_map(|c| json!({"not": c})),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn a_condition_without_wildcards_holds_exactly_when_eval_says_so(
            when in plain_cond(),
            views in 0..5u64,
        ) {
            let cfg = SessionConfig::default();
            let bundle = serde_json::json!({"version": "p", "rules": [
                {"id": "r", "when": when, "then": [{"cap_per_category": 1}]}]});
            let b = compile_json(&bundle.to_string(), cfg.horizon_ms).unwrap();
            let rule = &b.rules[0];
            proptest::prop_assert!(!rule.binds);
            let mut s = SessionState::new();
            for i in 0..views {
                s.ingest(&Event::new(EventKind::View, if i % 2 == 0 { "x" } else { "y" }, T0 + i * 1000), Some("c"), None, &cfg);
            }
            let ctx = Context { country: Some("DE".into()), device: (views % 3 != 0).then(|| "mobile".into()), ..Default::default() };
            let now = T0 + 10_000;
            let f = Features::compute(&s, ctx, now, &cfg);
            let env = Env::new(&s, &f, now, cfg.bucket_ms);
            let facts = env.facts(&b.labels);
            let flat = rule.flat.holds(&facts, &|f| env.label(f), &|c| env.eval(c).0);
            proptest::prop_assert_eq!(flat, env.eval(&rule.when).0);
        }
    }

    #[test]
    fn ids_sorted_is_the_fired_ids_in_byte_order_whether_few_or_many_fire() {
        let cfg = SessionConfig::default();
        // 40 rules, priorities against id order; `fire` of them hold (country is DE).
        for fire in [0, 2, 5, 40] {
            let rules: Vec<serde_json::Value> = (0..40)
                .map(|i| {
                    let country = if i % 40 < fire { "DE" } else { "US" };
                    serde_json::json!({"id": format!("r{:02}", (i * 7) % 40), "priority": i % 5,
                        "when": {"feature": {"name": "context.country", "op": "==", "value": country}},
                        "then": [{"cap_per_category": 2}]})
                })
                .collect();
            let bundle = serde_json::json!({"version": "s", "rules": rules}).to_string();
            let b = compile_json(&bundle, cfg.horizon_ms).unwrap();
            let s = SessionState::new();
            let ctx = Context {
                country: Some("DE".into()),
                ..Default::default()
            };
            let f = Features::compute(&s, ctx, T0, &cfg);
            let hits = Env::new(&s, &f, T0, cfg.bucket_ms).run(&b, false);
            let mut want: Vec<&str> = hits.ids().map(|i| &**i).collect();
            want.sort_unstable();
            let got: Vec<&str> = hits.ids_sorted().into_iter().map(|i| &**i).collect();
            assert_eq!((got.len(), &got), (fire, &want), "{fire} fired");
        }
    }

    #[test]
    fn only_wildcard_counts_bind() {
        let cfg = SessionConfig::default();
        let b = compile_json(SEED, cfg.horizon_ms).unwrap();
        assert!(b.rules[0].binds, "item: \"*\" binds");
        let b = compile_json(
            r#"{"version":"1","rules":[{"id":"r","when":{"not":{"count":{"kind":"view","category":"*","window":"1h","op":">=","value":1}}},"then":[{"cap_per_category":1}]}]}"#,
            cfg.horizon_ms,
        )
        .unwrap();
        assert!(b.rules[0].binds, "a wildcard under not still counts as one");
    }

    const SEED: &str = r#"{"version":"1","rules":[{"id":"repeat-view",
        "when":{"count":{"kind":"view","item":"*","window":"10m","op":">=","value":3}},
        "then":[{"boost_related":{"item":"$item","weight":3}}]}]}"#;

    #[test]
    fn wildcard_binds_the_item_viewed_three_times() {
        let v = EventKind::View;
        let evs = [
            (v, "x", "c", T0),
            (v, "y", "c", T0 + 1000),
            (v, "x", "c", T0 + 2000),
            (v, "x", "c", T0 + 3000),
        ];
        let h = hits(SEED, &evs, T0 + 4000);
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].1, format!("{:?}", [Effect::BoostRelated("x", 3.0)]));
        // Eleven minutes later the first view has left the window.
        assert!(hits(SEED, &evs, T0 + 660_500).is_empty());
    }

    #[test]
    fn all_intersects_bindings_and_not_negates() {
        let b = r#"{"version":"1","rules":[{"id":"r",
            "when":{"all":[
              {"count":{"kind":"view","item":"*","window":"1h","op":">=","value":2}},
              {"count":{"kind":"add_to_cart","item":"*","window":"1h","op":">=","value":1}},
              {"not":{"feature":{"name":"context.country","op":"==","value":"FR"}}}]},
            "then":[{"boost_related":{"item":"$item","weight":1}},{"boost_category":{"category":"$top","weight":2}}]}]}"#;
        let (v, a) = (EventKind::View, EventKind::AddToCart);
        let evs = [
            (v, "x", "c1", T0),
            (v, "x", "c1", T0 + 1),
            (v, "y", "c2", T0 + 2),
            (v, "y", "c2", T0 + 3),
            (a, "y", "c2", T0 + 4),
        ];
        let h = hits(b, &evs, T0 + 10);
        let want = [
            Effect::BoostRelated("y", 1.0),
            Effect::BoostCategory("c2", 2.0),
        ];
        assert_eq!(h[0].1, format!("{want:?}"));
        // Views of x but a cart add of nothing viewed twice: no item satisfies both.
        let evs = [
            (v, "x", "c1", T0),
            (v, "x", "c1", T0 + 1),
            (a, "z", "c1", T0 + 2),
        ];
        assert!(hits(b, &evs, T0 + 10).is_empty());
    }

    #[test]
    fn rules_asking_the_same_wildcard_question_share_its_list_without_changing_it() {
        // `a` widens the views list with a union, `b` intersects it, `c` reads it as is: each
        // must see the list of its own condition, whatever the others did to theirs.
        let views = r#"{"count":{"kind":"view","item":"*","window":"1h","op":">=","value":1}}"#;
        let clicks = r#"{"count":{"kind":"click","item":"*","window":"1h","op":">=","value":1}}"#;
        let rule = |id: &str, p: u32, when: String| {
            format!(
                r#"{{"id":"{id}","priority":{p},"when":{when},"then":[{{"boost_related":{{"item":"$item","weight":1}}}}]}}"#
            )
        };
        let b = format!(
            r#"{{"version":"1","rules":[{},{},{}]}}"#,
            rule("a", 3, format!(r#"{{"any":[{views},{clicks}]}}"#)),
            rule("b", 2, format!(r#"{{"all":[{views},{clicks}]}}"#)),
            rule("c", 1, views.to_string()),
        );
        let (v, c) = (EventKind::View, EventKind::Click);
        let evs = [
            (v, "x", "c1", T0),
            (v, "x", "c1", T0 + 1),
            (v, "y", "c1", T0 + 2),
            (c, "y", "c1", T0 + 3),
            (c, "z", "c1", T0 + 4),
        ];
        let h = hits(&b, &evs, T0 + 10);
        let effects = |items: &[&'static str]| {
            let e: Vec<Effect> = items.iter().map(|i| Effect::BoostRelated(i, 1.0)).collect();
            format!("{e:?}")
        };
        let ids: Vec<&str> = h.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(
            h[0].1,
            effects(&["x", "y", "z"]),
            "union: views, then clicks not viewed"
        );
        assert_eq!(h[1].1, effects(&["y"]), "intersection");
        assert_eq!(h[2].1, effects(&["x", "y"]), "the views list, untouched");
    }

    /// Counts are memoised per (kind, window, per item or per category): two conditions that
    /// differ in one of them must not share counts, and a literal item the session never saw
    /// counts 0.
    #[test]
    fn counts_are_kept_apart_by_window_and_grouping_and_unknown_items_count_zero() {
        let rule = |id: &str, prio: i32, count: &str| {
            format!(
                r#"{{"id":"{id}","priority":{prio},"when":{{"count":{count}}},"then":[{{"cap_per_category":1}}]}}"#
            )
        };
        let bundle = format!(
            r#"{{"version":"1","rules":[{},{},{},{},{}]}}"#,
            rule(
                "views-1h",
                9,
                r#"{"kind":"view","item":"*","window":"1h","op":">=","value":2}"#
            ),
            rule(
                "views-1m",
                8,
                r#"{"kind":"view","item":"*","window":"1m","op":">=","value":2}"#
            ),
            rule(
                "cat-views-1h",
                7,
                r#"{"kind":"view","category":"*","window":"1h","op":">=","value":3}"#
            ),
            rule(
                "unseen-b",
                6,
                r#"{"kind":"view","item":"b","window":"1h","op":">=","value":1}"#
            ),
            rule(
                "seen-z",
                5,
                r#"{"kind":"view","item":"z","window":"1h","op":">=","value":1}"#
            ),
        );
        // a twice and z once (all "shoes"), ten minutes before now: 2 views of a within the
        // hour, none within the minute; 3 views of the category; b never seen, z seen.
        let t = T0 - 600_000;
        let got: Vec<String> = hits(
            &bundle,
            &[
                (EventKind::View, "a", "shoes", t),
                (EventKind::View, "a", "shoes", t + 1),
                (EventKind::View, "z", "shoes", t + 2),
            ],
            T0,
        )
        .into_iter()
        .map(|h| h.0)
        .collect();
        assert_eq!(got, ["views-1h", "cat-views-1h", "seen-z"]);
    }
}
