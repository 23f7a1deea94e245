//! A running total of every acknowledged batch, for the live dashboard (`GET /v1/summary`):
//! decisions by tier, rule hits, experiment variants (exposures, impressions, clicks,
//! conversions), shadow bundles' counters side by side with the live rule hits, and the most
//! interacted-with items. In memory, per collector instance, since
//! start; bounded: past `MAX_ITEMS` items the least active half is dropped (a top list stays
//! right for items that keep being active), and rule ids, tiers and variants are kept to
//! `MAX_NAMES` each, the smallest folded into `(other)`, so signed batches full of invented
//! names cannot grow the dashboard's answer. Transitions are left to Kafka consumers.

use edgerec::aggregate::AggregateDelta;
use serde_json::{json, Value};

/// Items kept before pruning.
const MAX_ITEMS: usize = 20_000;
/// Rule ids, tiers and variants kept each (the rest is summed under [`OTHER`]).
pub const MAX_NAMES: usize = 64;
/// Where names past [`MAX_NAMES`] are counted.
pub const OTHER: &str = "(other)";

/// Keeps the `MAX_NAMES - 1` largest entries by `size` and merges the rest into `(other)`.
fn bound<K: Ord + Clone + std::borrow::Borrow<str> + for<'k> From<&'k str>, V: Default>(
    map: &mut std::collections::BTreeMap<K, V>,
    size: impl Fn(&V) -> u64,
    fold: impl Fn(&mut V, &V),
) {
    if map.len() <= MAX_NAMES {
        return;
    }
    let mut by: Vec<(u64, K)> = map
        .iter()
        .filter(|(k, _)| (**k).borrow() != OTHER)
        .map(|(k, v)| (size(v), k.clone()))
        .collect();
    by.sort_unstable_by(|a, b| b.cmp(a));
    let mut other = map.remove(OTHER).unwrap_or_default();
    for (_, k) in by.into_iter().skip(MAX_NAMES - 1) {
        if let Some(v) = map.remove::<K>(&k) {
            fold(&mut other, &v);
        }
    }
    map.insert(K::from(OTHER), other);
}

/// The `top` rules by hits, most first: `[{"id", "hits"}]`.
fn top_rules(
    hits: &std::collections::BTreeMap<std::sync::Arc<str>, u64>,
    top: usize,
) -> Vec<Value> {
    let mut rules: Vec<(&std::sync::Arc<str>, &u64)> = hits.iter().collect();
    rules.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    rules
        .into_iter()
        .take(top)
        .map(|(id, n)| json!({"id": id, "hits": n}))
        .collect()
}

/// A label value escaped for the text format (backslash, quote, newline).
pub fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The running total.
#[derive(Debug, Default)]
pub struct Summary {
    total: AggregateDelta,
    batches: u64,
}

fn activity(c: &edgerec::aggregate::ItemCounts) -> u64 {
    c.views + c.clicks + c.add_to_carts + c.purchases
}

impl Summary {
    /// Adds an acknowledged batch.
    pub fn add(&mut self, delta: &AggregateDelta) {
        // Merge, then drop transitions and traces (Kafka consumers' business) rather than clone
        // the batch.
        self.total.merge(delta);
        self.total.transitions.clear();
        self.total.traces.clear();
        self.batches += 1;
        let add = |a: &mut u64, b: &u64| *a = a.saturating_add(*b);
        bound(&mut self.total.rule_hits, |v| *v, add);
        bound(&mut self.total.tiers, |v| *v, add);
        bound(
            &mut self.total.variants,
            |v| v.exposures,
            |a, b| {
                a.exposures = a.exposures.saturating_add(b.exposures);
                a.conversions = a.conversions.saturating_add(b.conversions);
                a.impressions = a.impressions.saturating_add(b.impressions);
                a.clicks = a.clicks.saturating_add(b.clicks);
            },
        );
        bound(&mut self.total.shadow, |v| v.evaluations, |a, b| a.add(b));
        bound(&mut self.total.experiments, |v| v.sessions, |a, b| a.add(b));
        for s in self.total.shadow.values_mut() {
            bound(&mut s.rule_hits, |v| *v, add);
        }
        if self.total.items.len() > MAX_ITEMS {
            let mut by: Vec<(u64, String)> = self
                .total
                .items
                .iter()
                .map(|(k, c)| (activity(c), k.clone()))
                .collect();
            by.sort_unstable_by(|a, b| b.cmp(a));
            for (_, k) in by.into_iter().skip(MAX_ITEMS / 2) {
                self.total.items.remove(&k);
            }
        }
    }

    /// The edge's counters as OpenMetrics families (`edgerec_edge_*`), appended to `/metrics`:
    /// decisions by tier, events, rule hits, per-variant exposures, impressions, clicks,
    /// conversions and sessions. Label sets are bounded by the summary's own bounds
    /// ([`MAX_NAMES`] names each, the rest under `(other)`).
    pub fn openmetrics(&self, out: &mut String) {
        let t = &self.total;
        let family =
            |out: &mut String, name: &str, help: &str, label: &str, rows: Vec<(String, u64)>| {
                out.push_str(&format!("# TYPE {name} counter\n# HELP {name} {help}\n"));
                for (v, n) in rows {
                    if label.is_empty() {
                        out.push_str(&format!("{name}_total {n}\n"));
                    } else {
                        out.push_str(&format!(
                            "{name}_total{{{label}=\"{}\"}} {n}\n",
                            label_value(&v)
                        ));
                    }
                }
            };
        family(
            out,
            "edgerec_edge_decisions",
            "Decisions made at the edge, by tier",
            "tier",
            t.tiers.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        );
        family(
            out,
            "edgerec_edge_events",
            "Events accepted at the edge",
            "",
            vec![(String::new(), t.events)],
        );
        family(
            out,
            "edgerec_edge_duplicate_events",
            "Redelivered events ignored at the edge",
            "",
            vec![(String::new(), t.duplicates)],
        );
        family(
            out,
            "edgerec_edge_rule_hits",
            "Decisions each rule fired in",
            "rule",
            t.rule_hits
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
        );
        let per = |f: &dyn Fn(&edgerec::aggregate::VariantCounts) -> u64| {
            t.variants
                .iter()
                .map(|(k, v)| (k.clone(), f(v)))
                .collect::<Vec<_>>()
        };
        family(
            out,
            "edgerec_edge_variant_exposures",
            "Decisions served per experiment variant",
            "variant",
            per(&|v| v.exposures),
        );
        family(
            out,
            "edgerec_edge_variant_impressions",
            "Impressions per experiment variant",
            "variant",
            per(&|v| v.impressions),
        );
        family(
            out,
            "edgerec_edge_variant_clicks",
            "Clicks per experiment variant",
            "variant",
            per(&|v| v.clicks),
        );
        family(
            out,
            "edgerec_edge_variant_conversions",
            "Purchases per experiment variant",
            "variant",
            per(&|v| v.conversions),
        );
        family(
            out,
            "edgerec_edge_variant_sessions",
            "Sessions counted per experiment variant",
            "variant",
            t.experiments
                .iter()
                .map(|(k, a)| (k.clone(), a.sessions))
                .collect(),
        );
    }

    /// The dashboard's view: totals, tiers, top rules, variants, top items.
    pub fn view(&self, top: usize) -> Value {
        let t = &self.total;
        let mut items: Vec<(&String, &edgerec::aggregate::ItemCounts)> = t.items.iter().collect();
        items.sort_by(|a, b| activity(b.1).cmp(&activity(a.1)).then(a.0.cmp(b.0)));
        let items: Vec<Value> = items
            .into_iter()
            .take(top)
            .map(|(id, c)| json!({"id": id, "views": c.views, "clicks": c.clicks, "add_to_carts": c.add_to_carts, "purchases": c.purchases, "impressions": c.impressions}))
            .collect();
        let rules = top_rules(&t.rule_hits, top);
        let shadow: serde_json::Map<String, Value> = t
            .shadow
            .iter()
            .map(|(hash, c)| {
                let per = |x: u64| x as f64 / c.evaluations.max(1) as f64;
                let rules = top_rules(&c.rule_hits, top);
                let v = json!({
                    "evaluations": c.evaluations,
                    "skipped": c.skipped,
                    "changed_share": per(c.changed),
                    "overlap_mean": per(c.overlap_milli) / 1000.0,
                    "live_us_mean": per(c.live_us),
                    "shadow_us_mean": per(c.shadow_us),
                    "rule_hits": rules,
                });
                (hash.clone(), v)
            })
            .collect();
        json!({
            "batches": self.batches,
            "shadow": shadow,
            "traces_dropped": t.traces_dropped,
            "decisions": t.decisions,
            "events": t.events,
            "duplicates": t.duplicates,
            "tiers": t.tiers,
            "rule_hits": rules,
            "variants": t.variants,
            "top_items": items,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgerec::EventKind;

    #[test]
    fn totals_and_top_lists() {
        let mut s = Summary::default();
        let mut d = AggregateDelta {
            decisions: 2,
            ..Default::default()
        };
        d.count_tier("full");
        d.count_rule("r1");
        for _ in 0..3 {
            d.count_event("hot", EventKind::View);
        }
        d.count_event("cold", EventKind::Click);
        d.count_transition("hot", "cold");
        s.add(&d);
        s.add(&d);
        let v = s.view(1);
        assert_eq!(v["decisions"], 4);
        assert_eq!(v["batches"], 2);
        assert_eq!(v["tiers"]["full"], 2);
        assert_eq!(v["rule_hits"][0]["hits"], 2);
        assert_eq!(v["top_items"].as_array().unwrap().len(), 1);
        assert_eq!(v["top_items"][0]["id"], "hot");
        assert_eq!(v["top_items"][0]["views"], 6);
    }

    #[test]
    fn invented_names_are_bounded_and_still_summed() {
        let mut s = Summary::default();
        for b in 0..50 {
            let mut d = AggregateDelta::default();
            for k in 0..1000 {
                d.count_rule(&format!("r{b}-{k}"));
                d.count_tier(&format!("t{b}-{k}"));
                d.count_variant(
                    &format!("e/v{b}-{k}"),
                    edgerec::aggregate::VariantEvent::Exposure,
                );
            }
            s.add(&d);
        }
        let t = &s.total;
        assert_eq!(
            (t.rule_hits.len(), t.tiers.len(), t.variants.len()),
            (MAX_NAMES, MAX_NAMES, MAX_NAMES)
        );
        assert_eq!(
            t.rule_hits.values().sum::<u64>(),
            50_000,
            "nothing lost, only folded"
        );
        assert_eq!(
            t.variants.values().map(|v| v.exposures).sum::<u64>(),
            50_000
        );
        assert!(
            s.view(10).to_string().len() < 20_000,
            "the dashboard's answer stays small"
        );
    }
}
