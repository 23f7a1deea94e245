//! Rule evaluation: compiled conditions against one session's features and windows.
//!
//! A count condition over `item: "*"` holds when some item passes, and binds those items to
//! `$item` (likewise `category: "*"` and `$category`). `all` keeps the items bound by every
//! child that binds, `any` the union of its true children's; `not` binds nothing. Actions then
//! resolve their references into concrete [`Effect`]s.

use super::compile::{
    Act, CategoryRef, CompiledBundle, CompiledRule, Cond, CountTarget, ItemRef, NumFeature,
    StrFeature, StrOp,
};
use crate::event::EventKind;
use crate::features::Features;
use crate::session::SessionState;

/// Most bound items or categories an action fans out to.
pub const MAX_BOUND: usize = 3;

/// A resolved action.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Add related items of this anchor.
    BoostRelated(String, f64),
    /// Multiply a category's scores and add its top items.
    BoostCategory(String, f64),
    /// Multiply a category's scores by a factor < 1.
    BuryCategory(String, f64),
    /// Pin an item to a position.
    Pin(String, u32),
    /// Exclude items.
    ExcludeItems(Vec<String>),
    /// Exclude categories.
    ExcludeCategories(Vec<String>),
    /// Exclude purchased items (true) or allow them (false).
    ExcludePurchased(bool),
    /// Category cap.
    CapPerCategory(u32),
}

/// A rule that fired, with what it asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleHit {
    /// Rule id.
    pub id: String,
    /// Priority.
    pub priority: i32,
    /// Resolved actions.
    pub effects: Vec<Effect>,
}

/// What rules read.
pub struct Env<'a> {
    /// Session state.
    pub state: &'a SessionState,
    /// Features of that state.
    pub features: &'a Features,
    /// Decision time.
    pub now_ms: u64,
    /// Bucket width of the state.
    pub bucket_ms: u64,
}

/// Items (session indices) and categories bound by a condition, with counts for ordering.
#[derive(Default, Debug)]
struct Bound {
    items: Option<Vec<(u32, u32)>>,
    categories: Option<Vec<(u32, u32)>>,
}

fn intersect(a: Option<Vec<(u32, u32)>>, b: Option<Vec<(u32, u32)>>) -> Option<Vec<(u32, u32)>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(
            a.into_iter()
                .filter(|(i, _)| b.iter().any(|(j, _)| i == j))
                .collect(),
        ),
        (a, None) => a,
        (None, b) => b,
    }
}

fn union(a: Option<Vec<(u32, u32)>>, b: Option<Vec<(u32, u32)>>) -> Option<Vec<(u32, u32)>> {
    match (a, b) {
        (Some(mut a), Some(b)) => {
            for x in b {
                if !a.iter().any(|(i, _)| *i == x.0) {
                    a.push(x);
                }
            }
            Some(a)
        }
        (a, None) => a,
        (None, b) => b,
    }
}

impl Env<'_> {
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
                let empty = |v: &Option<Vec<(u32, u32)>>| v.as_ref().is_some_and(Vec::is_empty);
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
            Cond::Str(f, op) => {
                let val = self.label(*f);
                let ok = match op {
                    StrOp::In(set) => val.is_some_and(|v| set.iter().any(|s| s == v)),
                    StrOp::NotIn(set) => !val.is_some_and(|v| set.iter().any(|s| s == v)),
                    StrOp::StartsWith(p) => val.is_some_and(|v| v.starts_with(p.as_str())),
                };
                (ok, Bound::default())
            }
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
        window: crate::session::Window,
        op: super::compile::NumOp,
        value: f64,
    ) -> (bool, Bound) {
        let s = self.state;
        let (now, bms) = (self.now_ms, self.bucket_ms);
        let test = |n: u32| op.test(f64::from(n), value);
        let single = |n: u32| (test(n), Bound::default());
        let item_count = |id: Option<&str>| {
            id.and_then(|id| s.item_index(id))
                .map_or(0, |i| s.count_item(i, kind, window, now, bms))
        };
        let cat_count = |name: Option<&str>| {
            name.and_then(|c| s.category_index(c))
                .map_or(0, |c| s.count_category(c, kind, window, now, bms))
        };
        let matches = |counts: Vec<u32>| -> Vec<(u32, u32)> {
            let mut m: Vec<(u32, u32)> = counts
                .into_iter()
                .enumerate()
                .filter(|&(_, n)| test(n))
                .map(|(i, n)| (i as u32, n))
                .collect();
            m.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            m
        };
        match target {
            CountTarget::Everything => {
                single(s.counts_per_item(kind, window, now, bms).iter().sum())
            }
            CountTarget::Item(id) => single(item_count(Some(id))),
            CountTarget::LastItem => single(item_count(self.features.last_item.as_deref())),
            CountTarget::MostViewed => single(item_count(
                self.features.most_viewed_item.as_ref().map(|m| m.0.as_str()),
            )),
            CountTarget::Category(c) => single(cat_count(Some(c))),
            CountTarget::TopCategory => single(cat_count(self.features.top_category())),
            CountTarget::AnyItem => {
                let m = matches(s.counts_per_item(kind, window, now, bms));
                (
                    !m.is_empty(),
                    Bound {
                        items: Some(m),
                        categories: None,
                    },
                )
            }
            CountTarget::AnyCategory => {
                let m = matches(s.counts_per_category(kind, window, now, bms));
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

    fn items_of(&self, r: &ItemRef, bound: &Bound) -> Vec<String> {
        match r {
            ItemRef::Bound => bound
                .items
                .iter()
                .flatten()
                .take(MAX_BOUND)
                .map(|&(i, _)| self.state.item_id(i).to_string())
                .collect(),
            ItemRef::Last => self.features.last_item.iter().cloned().collect(),
            ItemRef::MostViewed => self
                .features
                .most_viewed_item
                .iter()
                .map(|m| m.0.clone())
                .collect(),
            ItemRef::Id(id) => vec![id.clone()],
        }
    }

    fn categories_of(&self, r: &CategoryRef, bound: &Bound) -> Vec<String> {
        match r {
            CategoryRef::Bound => bound
                .categories
                .iter()
                .flatten()
                .take(MAX_BOUND)
                .filter_map(|&(c, _)| self.state.categories.get(c as usize).cloned())
                .collect(),
            CategoryRef::Top => self.features.top_category().map(str::to_string).into_iter().collect(),
            CategoryRef::Name(n) => vec![n.clone()],
        }
    }

    fn resolve(&self, acts: &[Act], bound: &Bound) -> Vec<Effect> {
        let mut out = Vec::new();
        for a in acts {
            match a {
                Act::BoostRelated(r, w) => out.extend(
                    self.items_of(r, bound)
                        .into_iter()
                        .map(|i| Effect::BoostRelated(i, *w)),
                ),
                Act::BoostCategory(r, w) => out.extend(
                    self.categories_of(r, bound)
                        .into_iter()
                        .map(|c| Effect::BoostCategory(c, *w)),
                ),
                Act::BuryCategory(r, f) => out.extend(
                    self.categories_of(r, bound)
                        .into_iter()
                        .map(|c| Effect::BuryCategory(c, *f)),
                ),
                Act::Pin(i, s) => out.push(Effect::Pin(i.clone(), *s)),
                Act::ExcludeItems(v) => out.push(Effect::ExcludeItems(v.clone())),
                Act::ExcludeCategories(v) => out.push(Effect::ExcludeCategories(v.clone())),
                Act::ExcludePurchased(b) => out.push(Effect::ExcludePurchased(*b)),
                Act::CapPerCategory(n) => out.push(Effect::CapPerCategory(*n)),
            }
        }
        out
    }

    /// Evaluates one rule.
    pub fn run_rule(&self, rule: &CompiledRule) -> Option<RuleHit> {
        let (ok, bound) = self.eval(&rule.when);
        ok.then(|| RuleHit {
            id: rule.id.clone(),
            priority: rule.priority,
            effects: self.resolve(&rule.then, &bound),
        })
    }

    /// Evaluates every rule (or, with `context_only`, only those that read just the request),
    /// in priority order.
    pub fn run(&self, bundle: &CompiledBundle, context_only: bool) -> Vec<RuleHit> {
        bundle
            .rules
            .iter()
            .filter(|r| !context_only || r.context_only)
            .filter_map(|r| self.run_rule(r))
            .collect()
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

    fn hits(bundle: &str, events: &[(EventKind, &str, &str, u64)], now: u64) -> Vec<RuleHit> {
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
        let f = Features::compute(&s, &ctx, now, &cfg);
        let env = Env {
            state: &s,
            features: &f,
            now_ms: now,
            bucket_ms: cfg.bucket_ms,
        };
        env.run(&b, false)
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
        assert_eq!(h[0].effects, vec![Effect::BoostRelated("x".into(), 3.0)]);
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
        assert_eq!(
            h[0].effects,
            vec![
                Effect::BoostRelated("y".into(), 1.0),
                Effect::BoostCategory("c2".into(), 2.0)
            ]
        );
        // Views of x but a cart add of nothing viewed twice: no item satisfies both.
        let evs = [(v, "x", "c1", T0), (v, "x", "c1", T0 + 1), (a, "z", "c1", T0 + 2)];
        assert!(hits(b, &evs, T0 + 10).is_empty());
    }
}
