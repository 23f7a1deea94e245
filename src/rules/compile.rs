//! Validation and lowering of a bundle into its compiled form ([`super::ir`]): done once per
//! bundle version, so evaluation never parses a string, a duration or a feature name. Every
//! error names its JSON path.

use super::bundle::{Action, Bundle, Condition, CountTest, FeatureTest, Op};
use super::features::{self, Feature};
use super::ir::{
    parse_duration, Act, CategoryRef, CompiledBundle, CompiledRule, Cond, CountTarget, ItemRef,
    NumOp, Policy, StrOp,
};
use crate::error::FieldError;
use crate::event::{check_id, EventKind};
use crate::session::Window;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A bundle that cannot be used, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rule bundle: {}", crate::error::join(.issues))]
pub struct BundleError {
    /// The problems.
    pub issues: Vec<FieldError>,
}

struct Ctx {
    issues: Vec<FieldError>,
    horizon_ms: u64,
}

impl Ctx {
    fn err(&mut self, path: &str, message: impl Into<String>) {
        if self.issues.len() < 100 {
            self.issues.push(FieldError::new(path, message));
        }
    }
}

/// Parses and compiles a bundle from JSON text. `horizon_ms` is the longest window sessions
/// keep; a rule asking for more is rejected.
pub fn compile_json(json: &str, horizon_ms: u64) -> Result<CompiledBundle, BundleError> {
    compile(parse_bundle(json)?, horizon_ms)
}

#[cfg(feature = "json-paths")]
fn parse_bundle(json: &str) -> Result<Bundle, BundleError> {
    let de = &mut serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        BundleError {
            issues: vec![FieldError::new(
                if path == "." { "$".into() } else { path },
                e.into_inner().to_string(),
            )],
        }
    })
}

#[cfg(not(feature = "json-paths"))]
fn parse_bundle(json: &str) -> Result<Bundle, BundleError> {
    serde_json::from_str(json).map_err(|e| BundleError {
        issues: vec![FieldError::new("$", e.to_string())],
    })
}

/// Validates and compiles a parsed bundle.
pub fn compile(bundle: Bundle, horizon_ms: u64) -> Result<CompiledBundle, BundleError> {
    let mut cx = Ctx {
        issues: Vec::new(),
        horizon_ms,
    };
    if bundle.version.trim().is_empty() {
        cx.err("version", "must not be empty");
    }
    let s = &bundle.settings;
    let seen_window = match parse_duration(&s.seen_window) {
        Some(ms) => Window::sliding(ms),
        None => {
            cx.err(
                "settings.seen_window",
                format!("invalid duration {:?}", s.seen_window),
            );
            Window::sliding(1)
        }
    };
    let unit = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
    if !unit(s.seen_demote_factor) {
        cx.err("settings.seen_demote_factor", "must be between 0 and 1");
    }
    if !unit(s.recency_decay) {
        cx.err("settings.recency_decay", "must be between 0 and 1");
    }
    if s.recent_anchors > 50 {
        cx.err("settings.recent_anchors", "at most 50");
    }
    let w = &s.weights;
    for (name, v) in [
        ("related", w.related),
        ("category", w.category),
        ("popular", w.popular),
        ("recent", w.recent),
        ("kinds.view", w.kinds.view),
        ("kinds.click", w.kinds.click),
        ("kinds.add_to_cart", w.kinds.add_to_cart),
        ("kinds.purchase", w.kinds.purchase),
    ] {
        if !(v.is_finite() && (0.0..=1000.0).contains(&v)) {
            cx.err(
                &format!("settings.weights.{name}"),
                "must be between 0 and 1000",
            );
        }
    }
    if let Some(exp) = &bundle.experiment {
        check_text(&mut cx, "experiment.id", &exp.id);
        if exp.variants.is_empty() {
            cx.err("experiment.variants", "must not be empty");
        }
        if exp
            .variants
            .iter()
            .map(|v| u64::from(v.weight))
            .sum::<u64>()
            == 0
        {
            cx.err("experiment.variants", "weights must not all be 0");
        }
        for (i, g) in exp.guardrails.iter().enumerate() {
            let path = format!("experiment.guardrails[{i}]");
            let bounds = [g.max_drop, g.max_rise, g.max];
            if bounds.iter().flatten().count() != 1 {
                cx.err(&path, "give exactly one of max_drop, max_rise, max");
            }
            if bounds
                .iter()
                .flatten()
                .any(|v| !(v.is_finite() && *v >= 0.0 && *v <= 1e9))
            {
                cx.err(&path, "bounds must be finite, from 0 to 1e9");
            }
        }
        if exp.guardrails.len() > 16 {
            cx.err("experiment.guardrails", "at most 16 guardrails");
        }
        for (i, v) in exp.variants.iter().enumerate() {
            check_text(&mut cx, &format!("experiment.variants[{i}].name"), &v.name);
            if exp.variants[..i].iter().any(|o| o.name == v.name) {
                cx.err(
                    &format!("experiment.variants[{i}].name"),
                    "duplicate variant name",
                );
            }
        }
    }
    let mut rules = Vec::with_capacity(bundle.rules.len());
    let mut labels = super::flat::Labels::default();
    for (i, r) in bundle.rules.iter().enumerate() {
        let path = format!("rules[{i}]");
        check_text(&mut cx, &format!("{path}.id"), &r.id);
        if bundle.rules[..i].iter().any(|o| o.id == r.id) {
            cx.err(
                &format!("{path}.id"),
                format!("duplicate rule id {:?}", r.id),
            );
        }
        let mut binds = Binds::default();
        let when = compile_cond(&mut cx, &format!("{path}.when"), &r.when, &mut binds);
        if r.then.is_empty() {
            cx.err(&format!("{path}.then"), "must name at least one action");
        }
        let then: Vec<Act> = r
            .then
            .iter()
            .enumerate()
            .map(|(j, a)| compile_action(&mut cx, &format!("{path}.then[{j}]"), a, &binds))
            .collect();
        if r.enabled {
            let context_only = when.context_only();
            rules.push(CompiledRule {
                id: r.id.as_str().into(),
                why: format!("rule:{}", r.id).into(),
                priority: r.priority,
                binds: when.binds(),
                id_rank: 0,
                flat: super::flat::Flat::build(&when, &mut labels),
                when,
                then,
                context_only,
            });
        }
    }
    if !cx.issues.is_empty() {
        return Err(BundleError { issues: cx.issues });
    }
    let mut by_id: Vec<usize> = (0..rules.len()).collect();
    by_id.sort_by(|&a, &b| rules[a].id.cmp(&rules[b].id));
    for (rank, i) in by_id.into_iter().enumerate() {
        rules[i].id_rank = rank as u32;
    }
    rules.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id)));
    let canonical = serde_json::to_vec(&bundle).unwrap_or_default();
    let digest = Sha256::digest(&canonical);
    let hash = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    Ok(CompiledBundle {
        version: bundle.version.clone(),
        hash,
        policy: Policy {
            seen_policy: s.seen_policy,
            seen_window,
            seen_demote_factor: s.seen_demote_factor,
            exclude_purchased: s.exclude_purchased,
            max_per_category: s.max_per_category,
            recent_anchors: s.recent_anchors as usize,
            recency_decay: s.recency_decay,
            weights: s.weights.clone(),
            feedback: s.feedback,
        },
        experiment: bundle.experiment.clone(),
        rules,
        labels,
        source: bundle,
    })
}

fn check_text(cx: &mut Ctx, path: &str, s: &str) {
    if let Err(m) = check_id(s) {
        cx.err(path, m);
    }
}

/// Which variables a condition can bind (for checking actions that use them).
#[derive(Default)]
struct Binds {
    item: bool,
    category: bool,
}

fn compile_cond(cx: &mut Ctx, path: &str, c: &Condition, binds: &mut Binds) -> Cond {
    match c {
        Condition::All(cs) => Cond::All(
            cs.iter()
                .enumerate()
                .map(|(i, c)| compile_cond(cx, &format!("{path}.all[{i}]"), c, binds))
                .collect(),
        ),
        Condition::Any(cs) => Cond::Any(
            cs.iter()
                .enumerate()
                .map(|(i, c)| compile_cond(cx, &format!("{path}.any[{i}]"), c, binds))
                .collect(),
        ),
        Condition::Not(c) => {
            // Bindings under a negation would be the items that do *not* match: meaningless.
            let mut ignored = Binds::default();
            Cond::Not(Box::new(compile_cond(
                cx,
                &format!("{path}.not"),
                c,
                &mut ignored,
            )))
        }
        Condition::Feature(f) => compile_feature(cx, &format!("{path}.feature"), f),
        Condition::Count(t) => compile_count(cx, &format!("{path}.count"), t, binds),
    }
}

fn num_op(op: Op) -> Option<NumOp> {
    Some(match op {
        Op::Eq => NumOp::Eq,
        Op::Ne => NumOp::Ne,
        Op::Lt => NumOp::Lt,
        Op::Le => NumOp::Le,
        Op::Gt => NumOp::Gt,
        Op::Ge => NumOp::Ge,
        _ => return None,
    })
}

fn compile_feature(cx: &mut Ctx, path: &str, f: &FeatureTest) -> Cond {
    let fallback = Cond::All(Vec::new());
    let Some(feature) = features::by_name(&f.name) else {
        cx.err(
            &format!("{path}.name"),
            format!("unknown feature {:?}; known: {}", f.name, features::names()),
        );
        return fallback;
    };
    match feature {
        Feature::Num(num) => {
            let Some(op) = num_op(f.op) else {
                cx.err(
                    &format!("{path}.op"),
                    "numeric features take ==, !=, <, <=, >, >=",
                );
                return fallback;
            };
            match f.value.as_f64() {
                Some(v) if v.is_finite() => Cond::Num(num, op, v),
                _ => {
                    cx.err(&format!("{path}.value"), "must be a number");
                    fallback
                }
            }
        }
        Feature::Str(label) => {
            let one = |cx: &mut Ctx| match &f.value {
                Value::String(s) => Some(s.clone()),
                _ => {
                    cx.err(&format!("{path}.value"), "must be a string");
                    None
                }
            };
            let many = |cx: &mut Ctx| match &f.value {
                Value::Array(a) if a.iter().all(Value::is_string) && !a.is_empty() => Some(
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect::<Vec<_>>(),
                ),
                _ => {
                    cx.err(
                        &format!("{path}.value"),
                        "must be a non-empty list of strings",
                    );
                    None
                }
            };
            let op = match f.op {
                Op::Eq => one(cx).map(|s| StrOp::In(vec![s])),
                Op::Ne => one(cx).map(|s| StrOp::NotIn(vec![s])),
                Op::In => many(cx).map(StrOp::In),
                Op::NotIn => many(cx).map(StrOp::NotIn),
                Op::StartsWith => one(cx).map(StrOp::StartsWith),
                _ => {
                    cx.err(
                        &format!("{path}.op"),
                        "label features take ==, !=, in, not_in, starts_with",
                    );
                    None
                }
            };
            op.map_or(fallback, |op| Cond::Str(label, op))
        }
    }
}

fn compile_count(cx: &mut Ctx, path: &str, t: &CountTest, binds: &mut Binds) -> Cond {
    let kind = match EventKind::parse(&t.kind) {
        Some(EventKind::Impression) => {
            cx.err(
                &format!("{path}.kind"),
                "impressions are not kept per item in the session; use session.impressions",
            );
            EventKind::View
        }
        Some(k) => k,
        None => {
            cx.err(
                &format!("{path}.kind"),
                format!(
                    "unknown kind {:?} (view, click, add_to_cart, purchase)",
                    t.kind
                ),
            );
            EventKind::View
        }
    };
    let target = match (&t.item, &t.category) {
        (Some(_), Some(_)) => {
            cx.err(path, "give item or category, not both");
            CountTarget::Everything
        }
        (Some(i), None) => match i.as_str() {
            "*" => {
                binds.item = true;
                CountTarget::AnyItem
            }
            "$last" => CountTarget::LastItem,
            "$most_viewed" => CountTarget::MostViewed,
            id => {
                check_text(cx, &format!("{path}.item"), id);
                CountTarget::Item(id.to_string())
            }
        },
        (None, Some(c)) => match c.as_str() {
            "*" => {
                binds.category = true;
                CountTarget::AnyCategory
            }
            "$top" => CountTarget::TopCategory,
            name => {
                check_text(cx, &format!("{path}.category"), name);
                CountTarget::Category(name.to_string())
            }
        },
        (None, None) => CountTarget::Everything,
    };
    let length_ms = match parse_duration(&t.window) {
        Some(ms) if ms <= cx.horizon_ms => ms,
        Some(_) => {
            let h = cx.horizon_ms;
            cx.err(
                &format!("{path}.window"),
                format!("longer than the session horizon ({h} ms)"),
            );
            1
        }
        None => {
            cx.err(
                &format!("{path}.window"),
                format!("invalid duration {:?} (e.g. 90s, 10m, 1h, 1d)", t.window),
            );
            1
        }
    };
    let op = num_op(t.op).unwrap_or_else(|| {
        cx.err(&format!("{path}.op"), "counts take ==, !=, <, <=, >, >=");
        NumOp::Ge
    });
    if !t.value.is_finite() {
        cx.err(&format!("{path}.value"), "must be a finite number");
    }
    Cond::Count {
        kind,
        target,
        window: Window {
            length_ms,
            tumbling: t.tumbling,
        },
        op,
        value: t.value,
    }
}

fn item_ref(cx: &mut Ctx, path: &str, s: &str, binds: &Binds) -> ItemRef {
    match s {
        "$item" => {
            if !binds.item {
                cx.err(path, "$item needs a count condition with item \"*\"");
            }
            ItemRef::Bound
        }
        "$last" => ItemRef::Last,
        "$most_viewed" => ItemRef::MostViewed,
        id => {
            check_text(cx, path, id);
            ItemRef::Id(id.to_string())
        }
    }
}

fn category_ref(cx: &mut Ctx, path: &str, s: &str, binds: &Binds) -> CategoryRef {
    match s {
        "$category" => {
            if !binds.category {
                cx.err(
                    path,
                    "$category needs a count condition with category \"*\"",
                );
            }
            CategoryRef::Bound
        }
        "$top" => CategoryRef::Top,
        name => {
            check_text(cx, path, name);
            CategoryRef::Name(name.to_string())
        }
    }
}

fn compile_action(cx: &mut Ctx, path: &str, a: &Action, binds: &Binds) -> Act {
    let weight_ok = |v: f64| v.is_finite() && v > 0.0 && v <= 1000.0;
    match a {
        Action::BoostRelated(b) => {
            if !weight_ok(b.weight) {
                cx.err(
                    &format!("{path}.boost_related.weight"),
                    "must be in (0, 1000]",
                );
            }
            let item = item_ref(cx, &format!("{path}.boost_related.item"), &b.item, binds);
            Act::BoostRelated(item, b.weight)
        }
        Action::BoostCategory(b) => {
            if !weight_ok(b.weight) {
                cx.err(
                    &format!("{path}.boost_category.weight"),
                    "must be in (0, 1000]",
                );
            }
            let p = format!("{path}.boost_category.category");
            Act::BoostCategory(category_ref(cx, &p, &b.category, binds), b.weight)
        }
        Action::BuryCategory(b) => {
            if !(b.factor.is_finite() && (0.0..1.0).contains(&b.factor)) {
                cx.err(&format!("{path}.bury_category.factor"), "must be in [0, 1)");
            }
            let p = format!("{path}.bury_category.category");
            Act::BuryCategory(category_ref(cx, &p, &b.category, binds), b.factor)
        }
        Action::Pin(p) => {
            check_text(cx, &format!("{path}.pin.item"), &p.item);
            if p.slot > 100 {
                cx.err(&format!("{path}.pin.slot"), "at most 100");
            }
            Act::Pin(p.item.clone(), p.slot)
        }
        Action::ExcludeItems(items) => {
            for (i, id) in items.iter().enumerate() {
                check_text(cx, &format!("{path}.exclude_items[{i}]"), id);
            }
            Act::ExcludeItems(items.clone())
        }
        Action::ExcludeCategories(cats) => {
            for (i, c) in cats.iter().enumerate() {
                check_text(cx, &format!("{path}.exclude_categories[{i}]"), c);
            }
            Act::ExcludeCategories(cats.clone())
        }
        Action::ExcludePurchased(b) => Act::ExcludePurchased(*b),
        Action::CapPerCategory(n) => {
            if *n == 0 {
                cx.err(&format!("{path}.cap_per_category"), "must be at least 1");
            }
            Act::CapPerCategory(*n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 86_400_000;

    fn paths(json: &str) -> Vec<String> {
        compile_json(json, H)
            .unwrap_err()
            .issues
            .into_iter()
            .map(|i| i.field)
            .collect()
    }

    #[test]
    fn guardrails_need_exactly_one_finite_bound() {
        let with = |g: &str| {
            format!(
                r#"{{"version":"1","experiment":{{"id":"e","salt":"s",
                "variants":[{{"name":"control","weight":1}},{{"name":"b","weight":1}}],
                "primary":"ctr","guardrails":[{g}]}},"rules":[]}}"#
            )
        };
        assert!(compile_json(&with(r#"{"metric":"conversion","max_drop":0.02}"#), H).is_ok());
        for bad in [
            r#"{"metric":"ctr"}"#,
            r#"{"metric":"ctr","max_drop":0.1,"max":0.5}"#,
            r#"{"metric":"ctr","max_drop":-0.1}"#,
            r#"{"metric":"ctr","max":1e12}"#,
        ] {
            assert_eq!(paths(&with(bad)), ["experiment.guardrails[0]"], "{bad}");
        }
        // Unknown metrics and fields are refused by the bundle's shape.
        assert!(compile_json(&with(r#"{"metric":"bounce","max":0.5}"#), H).is_err());
        assert!(compile_json(&with(r#"{"metric":"ctr","min":0.5}"#), H).is_err());
        let many = vec![r#"{"metric":"ctr","max_drop":0.1}"#; 17].join(",");
        assert_eq!(paths(&with(&many)), ["experiment.guardrails"]);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m"), Some(600_000));
        assert_eq!(parse_duration("1h"), Some(3_600_000));
        assert_eq!(parse_duration("250ms"), Some(250));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration("10x"), None);
        assert_eq!(parse_duration("99999999999999999999d"), None);
    }

    #[test]
    fn compiles_the_seed_rule() {
        let b = compile_json(
            r#"{"version":"1","rules":[{"id":"repeat-view","priority":10,
            "when":{"count":{"kind":"view","item":"*","window":"10m","op":">=","value":3}},
            "then":[{"boost_related":{"item":"$item","weight":3}}]}]}"#,
            H,
        )
        .unwrap();
        assert_eq!(b.rules.len(), 1);
        assert_eq!(b.hash.len(), 16);
        assert!(!b.rules[0].context_only);
    }

    #[test]
    fn serde_errors_carry_their_path() {
        let p = paths(
            r#"{"version":"1","rules":[{"id":"a","when":{"count":{"kind":"view","window":5,"op":">=","value":1}},"then":[]}]}"#,
        );
        assert_eq!(p, ["rules[0].when.count.window"]);
        let p = paths(r#"{"version":"1","rules":[{"id":"a","when":{"sometimes":[]},"then":[]}]}"#);
        assert_eq!(p, ["rules[0].when"]);
        assert_eq!(paths("3"), ["$"]);
    }

    #[test]
    fn semantic_errors_carry_their_path() {
        let p = paths(
            r#"{"version":"1","settings":{"seen_window":"soon"},"rules":[
            {"id":"a","when":{"all":[{"feature":{"name":"cart.value","op":"in","value":1}},
                                     {"count":{"kind":"impression","window":"10x","op":">=","value":1}}]},
             "then":[{"boost_related":{"item":"$item","weight":-1}}]},
            {"id":"a","when":{"feature":{"name":"context.country","op":"==","value":3}},
             "then":[{"cap_per_category":0}]}]}"#,
        );
        assert_eq!(
            p,
            [
                "settings.seen_window",
                "rules[0].when.all[0].feature.op",
                "rules[0].when.all[1].count.kind",
                "rules[0].when.all[1].count.window",
                "rules[0].then[0].boost_related.weight",
                "rules[0].then[0].boost_related.item",
                "rules[1].id",
                "rules[1].when.feature.value",
                "rules[1].then[0].cap_per_category",
            ]
        );
    }

    #[test]
    fn hash_follows_content_and_rules_sort_by_priority() {
        let a = r#"{"version":"1","rules":[
            {"id":"low","when":{"all":[]},"then":[{"cap_per_category":2}]},
            {"id":"high","priority":5,"when":{"feature":{"name":"context.device","op":"==","value":"mobile"}},"then":[{"cap_per_category":1}]}]}"#;
        let b1 = compile_json(a, H).unwrap();
        let b2 = compile_json(&a.replace("\"version\":\"1\"", "\"version\":\"2\""), H).unwrap();
        assert_ne!(b1.hash, b2.hash);
        assert_eq!(b1.hash, compile_json(a, H).unwrap().hash);
        let ids: Vec<_> = b1.rules.iter().map(|r| &*r.id).collect();
        assert_eq!(ids, ["high", "low"]);
        assert!(b1.rules[0].context_only && b1.rules[1].context_only);
    }

    /// Each limit at its edge: the last accepted value compiles, the first refused one is
    /// refused naming exactly its field.
    #[test]
    fn every_limit_is_checked_at_its_edge() {
        let with_settings =
            |settings: &str| format!(r#"{{"version":"1","settings":{{{settings}}},"rules":[]}}"#);
        let with_rule = |when: &str, then: &str| {
            format!(r#"{{"version":"1","rules":[{{"id":"r","when":{when},"then":[{then}]}}]}}"#)
        };
        let all = r#"{"all":[]}"#;
        let ok = [
            with_settings(r#""recent_anchors":50,"seen_demote_factor":1,"recency_decay":0"#),
            with_settings(r#""weights":{"related":1000,"popular":0}"#),
            with_rule(all, r#"{"bury_category":{"category":"x","factor":0}}"#),
            with_rule(all, r#"{"boost_related":{"item":"a","weight":1000}}"#),
            with_rule(all, r#"{"pin":{"item":"a","slot":100}}"#),
            with_rule(
                r#"{"count":{"kind":"view","window":"1d","op":">=","value":1}}"#,
                r#"{"cap_per_category":1}"#,
            ),
            with_rule(
                r#"{"all":[{"feature":{"name":"cart.value","op":"==","value":1}},
                           {"feature":{"name":"cart.lines","op":"!=","value":1}},
                           {"feature":{"name":"cart.quantity","op":"<=","value":1}},
                           {"feature":{"name":"session.events","op":">","value":1}},
                           {"feature":{"name":"context.device","op":"!=","value":"mobile"}}]}"#,
                r#"{"cap_per_category":1}"#,
            ),
        ];
        for json in &ok {
            assert!(
                compile_json(json, H).is_ok(),
                "{json}: {:?}",
                compile_json(json, H).err()
            );
        }
        let refused = [
            (
                with_settings(r#""recent_anchors":51"#),
                "settings.recent_anchors",
            ),
            (
                with_settings(r#""seen_demote_factor":1.5"#),
                "settings.seen_demote_factor",
            ),
            (
                with_settings(r#""recency_decay":2"#),
                "settings.recency_decay",
            ),
            (
                with_settings(r#""weights":{"related":1001}"#),
                "settings.weights.related",
            ),
            (
                with_rule(all, r#"{"bury_category":{"category":"x","factor":1}}"#),
                "rules[0].then[0].bury_category.factor",
            ),
            (
                with_rule(all, r#"{"bury_category":{"category":"x","factor":1.5}}"#),
                "rules[0].then[0].bury_category.factor",
            ),
            (
                with_rule(all, r#"{"boost_related":{"item":"a","weight":0}}"#),
                "rules[0].then[0].boost_related.weight",
            ),
            (
                with_rule(all, r#"{"boost_related":{"item":"a","weight":1001}}"#),
                "rules[0].then[0].boost_related.weight",
            ),
            (
                with_rule(all, r#"{"pin":{"item":"a","slot":101}}"#),
                "rules[0].then[0].pin.slot",
            ),
            (
                with_rule(all, r#"{"pin":{"item":"","slot":1}}"#),
                "rules[0].then[0].pin.item",
            ),
            (
                with_rule(
                    r#"{"count":{"kind":"view","window":"25h","op":">=","value":1}}"#,
                    r#"{"cap_per_category":1}"#,
                ),
                "rules[0].when.count.window",
            ),
            (
                with_rule(
                    r#"{"feature":{"name":"context.country","op":"in","value":[]}}"#,
                    r#"{"cap_per_category":1}"#,
                ),
                "rules[0].when.feature.value",
            ),
            (
                with_rule(
                    r#"{"feature":{"name":"context.country","op":"in","value":["SE",1]}}"#,
                    r#"{"cap_per_category":1}"#,
                ),
                "rules[0].when.feature.value",
            ),
        ];
        for (json, field) in &refused {
            assert_eq!(paths(json), [*field], "{json}");
        }
        // At most 100 problems are listed, however many there are.
        let many: Vec<String> = (0..150)
            .map(|i| format!(r#"{{"id":"r{i}","when":{{"all":[]}},"then":[{{"pin":{{"item":"a","slot":500}}}}]}}"#))
            .collect();
        let json = format!(r#"{{"version":"1","rules":[{}]}}"#, many.join(","));
        assert_eq!(paths(&json).len(), 100);
    }
}
