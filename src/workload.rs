//! The standard benchmark workload, shared by every host so their numbers compare: a
//! 20,000-item catalog with 20 related items each, a 100-rule bundle, a 50-event session, and
//! one decision = decode the stored blob + ingest one event + evaluate + recommend top-10 +
//! encode. Unused by hosts at run time (the linker drops it); benches and the wasm bench
//! export use it.

use crate::catalog::{Catalog, CatalogDoc, ItemDoc};
use crate::engine::{DecideRequest, Decision, Engine, EngineConfig};
use crate::event::{Event, EventKind};
use crate::features::Context;
use serde_json::{json, Value};

/// Catalog size.
pub const ITEMS: usize = 20_000;
/// Related items per item.
pub const RELATED: usize = 20;
/// Categories.
pub const CATEGORIES: usize = 50;
/// Rules in the bundle.
pub const RULES: usize = 100;
/// Events in the stored session.
pub const SESSION_EVENTS: usize = 50;
/// Start of the session.
pub const T0: u64 = 1_764_201_600_000;

/// SplitMix64: a tiny deterministic generator for fixtures (benchmark workload, demo data);
/// statistical quality is irrelevant there, reproducibility is everything.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when n is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

fn item_id(i: usize) -> String {
    format!("sku-{i:05}")
}

/// The 20,000-item catalog.
pub fn catalog_doc() -> CatalogDoc {
    let mut rng = Rng(42);
    let items = (0..ITEMS)
        .map(|i| {
            let cat = i % CATEGORIES;
            let related = (0..RELATED)
                .map(|r| {
                    // Mostly same-category neighbours, some cross-category.
                    let j = if r < 14 {
                        (i + CATEGORIES * (1 + rng.below(40))) % ITEMS
                    } else {
                        rng.below(ITEMS)
                    };
                    let j = if j == i { (j + 1) % ITEMS } else { j };
                    (item_id(j), 1.0 - r as f32 * 0.04)
                })
                .collect::<Vec<_>>();
            let mut seen = Vec::new();
            let related = related
                .into_iter()
                .filter(|(id, _)| {
                    let new = !seen.contains(id);
                    seen.push(id.clone());
                    new
                })
                .collect();
            ItemDoc {
                id: item_id(i),
                category: Some(format!("cat-{cat:02}")),
                price: Some(5.0 + (rng.below(20_000) as f64) / 100.0),
                available: i % 97 != 0,
                tags: Vec::new(),
                title: None,
                popularity: 10_000.0 / (1.0 + (i / CATEGORIES) as f32) + rng.below(10) as f32,
                related,
                feedback: Vec::new(),
            }
        })
        .collect();
    CatalogDoc {
        version: "bench-20k".into(),
        items,
    }
}

/// The 100-rule bundle: windowed counts over any item, given items and categories, feature and
/// context tests, combinators, and every kind of action.
pub fn bundle_json() -> String {
    let windows = ["5m", "10m", "30m", "1h", "1d"];
    let kinds = ["view", "click", "add_to_cart", "purchase"];
    let mut rules: Vec<Value> = Vec::with_capacity(RULES);
    for i in 0..RULES {
        let w = windows[i % windows.len()];
        let k = kinds[i % kinds.len()];
        let (when, then) = match i % 5 {
            0 => (
                json!({"count": {"kind": k, "item": "*", "window": w, "op": ">=", "value": 2 + i % 3}}),
                json!([{"boost_related": {"item": "$item", "weight": 1.0 + (i % 4) as f64}}]),
            ),
            1 => (
                json!({"count": {"kind": k, "item": item_id(i * 37 % ITEMS), "window": w, "op": ">=", "value": 1}}),
                json!([{"pin": {"item": item_id(i * 101 % ITEMS), "slot": i % 10}}]),
            ),
            2 => (
                json!({"all": [
                    {"count": {"kind": k, "category": "*", "window": w, "op": ">=", "value": 3}},
                    {"feature": {"name": "session.events", "op": ">", "value": 5}}]}),
                json!([{"boost_category": {"category": "$category", "weight": 1.2}}]),
            ),
            3 => (
                json!({"any": [
                    {"feature": {"name": "cart.value", "op": ">=", "value": 50 + i}},
                    {"feature": {"name": "session.max_item_views", "op": ">=", "value": 4}}]}),
                json!([{"bury_category": {"category": format!("cat-{:02}", i % CATEGORIES), "factor": 0.5}},
                       {"exclude_items": [item_id(i * 13 % ITEMS)]}]),
            ),
            _ => (
                json!({"all": [
                    {"feature": {"name": "context.country", "op": "in", "value": ["DE", "AT", "CH"]}},
                    {"not": {"feature": {"name": "context.device", "op": "==", "value": "bot"}}}]}),
                json!([{"cap_per_category": 3 + i % 3}]),
            ),
        };
        rules.push(json!({"id": format!("rule-{i:03}"), "priority": (i % 7) as i64, "when": when, "then": then}));
    }
    json!({"version": "bench-100", "rules": rules}).to_string()
}

/// The 50-event session: views, clicks and cart adds over 20 items in 5 categories, 25 minutes.
pub fn session_events() -> Vec<Event> {
    let mut rng = Rng(7);
    (0..SESSION_EVENTS)
        .map(|n| {
            let item = item_id((rng.below(20) * CATEGORIES + rng.below(5)) % ITEMS);
            let kind = match rng.below(10) {
                0..=6 => EventKind::View,
                7 | 8 => EventKind::Click,
                _ => EventKind::AddToCart,
            };
            Event::new(kind, item, T0 + n as u64 * 30_000)
        })
        .collect()
}

/// Engine, stored blob and next event, ready for repeated decisions.
pub struct Workload {
    /// The engine.
    pub engine: Engine,
    /// The stored 50-event session blob.
    pub blob: Vec<u8>,
    /// The event each decision ingests.
    pub next: Vec<Event>,
    /// Request context.
    pub context: Context,
    /// Decision time.
    pub now_ms: u64,
}

impl Workload {
    /// Builds the workload (compiles the bundle, loads the catalog, plays the session).
    pub fn new() -> Workload {
        let bundle =
            crate::rules::compile_json(&bundle_json(), EngineConfig::default().session.horizon_ms)
                .expect("the workload bundle is valid");
        Workload::with_bundle(bundle)
    }

    /// The same workload with another rule bundle (what `check-bundle` measures a bundle on).
    pub fn with_bundle(bundle: crate::rules::CompiledBundle) -> Workload {
        let cfg = EngineConfig::default();
        let catalog = Catalog::from_doc(&catalog_doc()).expect("the workload catalog is valid");
        let engine = Engine::with_catalog(cfg, bundle, &catalog).expect("default config is valid");
        let events = session_events();
        let now_ms = T0 + SESSION_EVENTS as u64 * 30_000;
        let context = Context {
            country: Some("DE".into()),
            device: Some("desktop".into()),
            ..Default::default()
        };
        let d = engine.decide(&DecideRequest {
            events: &events,
            context: context.clone(),
            now_ms,
            ..Default::default()
        });
        let next = vec![Event::new(
            EventKind::View,
            item_id(3 * CATEGORIES + 1),
            now_ms,
        )];
        Workload {
            engine,
            blob: d.state.unwrap_or_default(),
            next,
            context,
            now_ms,
        }
    }

    /// One full decision: decode + ingest one event + rules + top-10 + encode.
    pub fn decide_one(&self) -> Decision {
        self.engine.decide(&DecideRequest {
            state: Some(&self.blob),
            events: &self.next,
            context: self.context.clone(),
            now_ms: self.now_ms + 1000,
            limit: 10,
            tier: None,
            trace: None,
        })
    }
}

impl Default for Workload {
    fn default() -> Self {
        Workload::new()
    }
}
