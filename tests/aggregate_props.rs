//! Properties of aggregates (merge is a commutative monoid; batches round-trip) and of the
//! engine as a whole (same input, same decision; arbitrary input never panics).

use edgerec::aggregate::{AggregateBatch, AggregateDelta, VariantEvent};
use edgerec::event::{parse_events_json, EventKind, TimeLimits};
use edgerec::experiment::metrics::{record, Step};
use edgerec::{DecideRequest, Engine, EngineConfig, Event};
use proptest::prelude::*;

fn delta() -> impl Strategy<Value = AggregateDelta> {
    let key = prop::sample::select(vec!["a", "b", "c", "d"]);
    prop::collection::vec(
        (key.clone(), key, 0usize..5, 0u64..u64::MAX / 2, 0usize..6),
        0..12,
    )
    .prop_map(|ops| {
        let mut d = AggregateDelta::default();
        for (x, y, k, n, which) in ops {
            match which {
                0 => (0..(n % 3 + 1)).for_each(|_| d.count_event(x, EventKind::ALL[k])),
                1 => {
                    d.count_transition(x, y);
                    // Exposure feedback: positions past the last bucket share it.
                    let kind = [EventKind::Impression, EventKind::Click][k % 2];
                    d.count_shown(x, y, (n % 20) as u32, kind);
                }
                2 => d.count_rule(x),
                // Traced sessions, enough of them and long enough to hit the batch bounds.
                3 => {
                    for j in 0..(n % 30) {
                        let events = (0..n % 40 + 1)
                            .map(|i| {
                                (
                                    EventKind::ALL[k],
                                    x.to_string(),
                                    None,
                                    1_000_000 + (n % 1000) * 1000 + i * 7,
                                )
                            })
                            .collect();
                        let variant = (j % 2 == 0).then_some(y);
                        d.add_trace(&format!("s{}", (n + j) % 90), events, variant, "full");
                    }
                }
                4 => {
                    let rules = [std::sync::Arc::<str>::from(x)];
                    d.count_shadow(
                        y,
                        &[x, y],
                        &[y],
                        &rules[..(n % 2) as usize],
                        n % 500,
                        n % 900,
                    );
                    if n % 3 == 0 {
                        d.count_shadow_skipped(x);
                    }
                }
                _ => {
                    d.count_variant(
                        y,
                        [
                            VariantEvent::Exposure,
                            VariantEvent::Impression,
                            VariantEvent::Click,
                            VariantEvent::Conversion,
                        ][(n % 4) as usize],
                    );
                    d.count_tier(x);
                    // Per-session experiment sums: a session's steps, a decision, its time.
                    let arm = d.arm(y);
                    let mut t = None;
                    for i in 0..(n % 7) {
                        let step = [
                            Step::Enter,
                            Step::Impression,
                            Step::Click,
                            Step::AddToCart,
                            Step::Purchase(n % 5000),
                        ][((n + i) % 5) as usize];
                        t = Some(record(arm, t, 1, step));
                    }
                    arm.count_decision(n % 2 == 0);
                    arm.count_latency(n % 3000);
                    arm.count_response([200, 202, 400, 429, 503][(n % 5) as usize]);
                }
            }
            d.decisions = d.decisions.saturating_add(n);
        }
        d
    })
}

fn merged(a: &AggregateDelta, b: &AggregateDelta) -> AggregateDelta {
    let mut m = a.clone();
    m.merge(b);
    m
}

proptest! {
    #[test]
    fn merge_is_commutative_associative_with_identity(a in delta(), b in delta(), c in delta()) {
        prop_assert_eq!(merged(&a, &b), merged(&b, &a));
        prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
        prop_assert_eq!(merged(&a, &AggregateDelta::default()), a.clone());
    }

    #[test]
    fn traced_events_are_kept_or_counted_dropped(a in delta(), b in delta()) {
        let held = |d: &AggregateDelta| d.traces.values().map(|f| f.events.len() as u64).sum::<u64>() + d.traces_dropped;
        let m = merged(&a, &b);
        prop_assert_eq!(held(&m), held(&a) + held(&b));
        prop_assert!(m.traces.len() <= edgerec::trace::MAX_SESSIONS_PER_BATCH);
        prop_assert!(m.traces.values().all(|f| f.events.len() <= edgerec::trace::MAX_EVENTS_PER_SESSION));
        let mut counters = a.clone();
        counters.merge_counters(&b);
        prop_assert_eq!(held(&counters), held(&a) + held(&b));
        prop_assert_eq!(counters.decisions, m.decisions);
    }

    #[test]
    fn batches_round_trip(d in delta(), id in "[a-z0-9-]{1,64}") {
        let mut d = d;
        d.decisions %= 1_000_000;
        let b = AggregateBatch::new(id, "edge", 1, d);
        prop_assert_eq!(AggregateBatch::decode(&b.encode()).unwrap(), b);
    }

    #[test]
    fn arbitrary_batch_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = AggregateBatch::decode(&bytes);
    }

    #[test]
    fn arbitrary_event_documents_never_panic(s in ".{0,200}") {
        let _ = parse_events_json(s.as_bytes(), 1_764_201_600_000, TimeLimits::default());
    }
}

fn demo_engine() -> Engine {
    let root = env!("CARGO_MANIFEST_DIR");
    let rules = std::fs::read_to_string(format!("{root}/data/demo/rules.json")).unwrap();
    let catalog = std::fs::read(format!("{root}/data/demo/catalog.json")).unwrap();
    Engine::from_json(EngineConfig::default(), &rules, &catalog).unwrap()
}

/// The demo release as the edge loads it: `release::engine` over the head's bytes, and every
/// shard decoded from the text KV stores.
fn published() -> (Engine, edgerec::model::ShardMap) {
    let root = env!("CARGO_MANIFEST_DIR");
    let rules = std::fs::read_to_string(format!("{root}/data/demo/rules.json")).unwrap();
    let catalog = std::fs::read(format!("{root}/data/demo/catalog.json")).unwrap();
    let catalog = edgerec::Catalog::from_json(&catalog).unwrap();
    let mut stored = std::collections::HashMap::new();
    let release = edgerec::model::build::build(&catalog, None, &mut |w, bytes| {
        stored.insert(w.key, edgerec::model::to_stored(&bytes));
    })
    .unwrap();
    let engine = edgerec::release::engine(EngineConfig::default(), &rules, &release.head).unwrap();
    let shards = edgerec::model::ShardMap::load(engine.head(), |k| stored.get(k).cloned()).unwrap();
    (engine, shards)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The edge's path (the engine from the published head, shards read back from their stored
    /// text) decides exactly as the tools' in-memory path, on any input; and never panics.
    #[test]
    fn the_published_model_decides_as_the_in_memory_one_and_never_panics(
        evs in prop::collection::vec((0usize..5, 1u32..330, 0u64..100_000), 0..30),
        blob in prop::option::of(prop::collection::vec(any::<u8>(), 0..64)),
        limit in 0usize..200,
    ) {
        let engine = demo_engine();
        let t0 = 1_764_201_600_000u64;
        let events: Vec<Event> = evs
            .iter()
            .map(|&(k, i, dt)| Event::new(EventKind::ALL[k], format!("sku-{i:04}"), t0 + dt))
            .collect();
        let req = DecideRequest {
            state: blob.as_deref(),
            events: &events,
            now_ms: t0 + 100_000,
            limit,
            ..Default::default()
        };
        let a = engine.decide(&req);
        let (edge, shards) = published();
        let b = edge.decide_with(&req, &shards);
        prop_assert_eq!(&a, &b);
        prop_assert!(a.items.len() <= limit.min(100));
        let ids: std::collections::BTreeSet<_> = a.items.iter().map(|r| &r.id).collect();
        prop_assert_eq!(ids.len(), a.items.len(), "no item twice");
        prop_assert_eq!(a.delta.events, u64::from(a.accepted));
    }
}
