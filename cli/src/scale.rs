//! `edgerec scale`: the sharded model at a given catalog size, measured natively (the figures
//! in BENCHMARKS.md). For each size: a full release of a generated catalog (head bytes, shard
//! count and sizes, build time), sessions of the standard bundle planned and decided over the
//! shards they name (shards and stored bytes per cold decision, decision CPU time when warm),
//! then an incremental release after a share of items changed (shards written).

use edgerec::event::{Event, EventKind};
use edgerec::model::build::{build, Previous};
use edgerec::model::synthetic::{item_id, Synthetic};
use edgerec::model::{item_hash, stored_len, Head, Shard, ShardMap, ShardRef};
use edgerec::rules::ir::{Act, ItemRef};
use edgerec::workload::{bundle_json, Rng, T0};
use edgerec::{Context, DecideRequest, Engine, EngineConfig};
use rustc_hash::FxHashSet;
use std::time::Instant;

/// Sessions per size, and decisions per session (one new event each).
const STEPS: usize = 8;

/// One size's figures.
pub fn measure(
    items: usize,
    categories: usize,
    seed: u64,
    changed: f64,
    sessions: usize,
) -> serde_json::Value {
    let src = Synthetic::new(items, seed).with_categories(categories);
    // The sessions first, so the build keeps exactly the shards they can read.
    let mut rng = Rng(seed ^ 0x5eed);
    let plays: Vec<Vec<usize>> = (0..sessions)
        .map(|_| (0..STEPS).map(|_| rng.below(items)).collect())
        .collect();
    let cfg = EngineConfig::default();
    let bundle = edgerec::rules::compile_json(&bundle_json(), cfg.session.horizon_ms)
        .expect("the workload bundle compiles");
    let mut wanted: Vec<u64> = plays
        .iter()
        .flatten()
        .map(|&i| item_hash(&item_id(i)))
        .collect();
    // Items the bundle names (pins, anchors) are planned by every decision.
    for act in bundle.rules.iter().flat_map(|r| &r.then) {
        if let Act::Pin(id, _) | Act::BoostRelated(ItemRef::Id(id), _) = act {
            wanted.push(item_hash(id));
        }
    }
    let mut kept = ShardMap::default();
    let mut stored: rustc_hash::FxHashMap<ShardRef, usize> = Default::default();
    let mut indices: Option<FxHashSet<u32>> = None;
    let t = Instant::now();
    let release = build(&src, None, &mut |w, bytes| {
        let layer = u64::from(w.layer.max(1));
        let ShardRef::Base(i) = w.at else { return };
        let idx =
            indices.get_or_insert_with(|| wanted.iter().map(|h| (h % layer) as u32).collect());
        if idx.contains(&i) {
            stored.insert(w.at, stored_len(bytes.len()));
            if let Ok(s) = Shard::decode(&bytes) {
                kept.0.insert(w.at, s);
            }
        }
    })
    .expect("a generated catalog builds");
    let build_s = t.elapsed().as_secs_f64();
    // Copied in one go, as a cache fills: the build left them scattered over a heap as large
    // as the catalog, which a worker's cache never is.
    let kept = ShardMap(kept.0.iter().map(|(k, s)| (*k, s.clone())).collect());
    let head = Head::decode(&release.head).expect("head decodes");
    let engine = Engine::new(cfg, bundle, head).expect("engine");
    // Play the sessions: plan each decision, count what a cold isolate would read.
    let ctx = Context {
        country: Some("DE".into()),
        device: Some("desktop".into()),
        ..Default::default()
    };
    let mut planned = Vec::new();
    let mut read_bytes = Vec::new();
    let mut requests: Vec<(Option<Vec<u8>>, Event, u64)> = Vec::new();
    for (s, play) in plays.iter().enumerate() {
        let mut blob: Option<Vec<u8>> = None;
        for (k, &i) in play.iter().enumerate() {
            let now = T0 + (s * 100 + k) as u64 * 20_000;
            let kind = [
                EventKind::View,
                EventKind::View,
                EventKind::Click,
                EventKind::AddToCart,
            ][k % 4];
            let ev = Event::new(kind, item_id(i), now);
            let req = DecideRequest {
                state: blob.as_deref(),
                events: std::slice::from_ref(&ev),
                context: ctx.clone(),
                now_ms: now + 10,
                limit: 10,
                tier: None,
                trace: None,
            };
            let plan = engine.plan(&req);
            planned.push(plan.len() as f64);
            read_bytes.push(
                plan.iter()
                    .map(|r| stored.get(r).copied().unwrap_or(0))
                    .sum::<usize>() as f64,
            );
            let d = engine.decide_with(&req, &kept);
            assert_eq!(d.missing, 0, "every planned shard was kept");
            requests.push((blob.clone(), ev, now + 10));
            blob = d.state;
        }
    }
    // Warm decision CPU time: every decision again, shards in memory, 5 rounds; the median.
    let mut times = Vec::new();
    for _ in 0..5 {
        for (blob, ev, now) in &requests {
            let req = DecideRequest {
                state: blob.as_deref(),
                events: std::slice::from_ref(ev),
                context: ctx.clone(),
                now_ms: *now,
                limit: 10,
                tier: None,
                trace: None,
            };
            let t = Instant::now();
            std::hint::black_box(engine.decide_with(&req, &kept));
            times.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    // An incremental release after `changed` of the items moved.
    let prev = Previous {
        head: engine.head().clone(),
        index: release.index.clone(),
    };
    let t = Instant::now();
    let next = build(
        &src.clone().with_changed(changed),
        Some(&prev),
        &mut |_, _| {},
    )
    .expect("the changed catalog builds");
    let patch_s = t.elapsed().as_secs_f64();
    let st = &release.stats;
    serde_json::json!({
        "items": items,
        "categories": categories,
        "head_bytes": st.head_bytes,
        "base_shards": st.base_shards,
        "patch_shards": st.patch_shards,
        "shard_bytes_mean": st.bytes_written / u64::from(st.base_shards.max(1)),
        "shard_bytes_max": st.max_shard_bytes,
        "model_bytes": st.bytes_written,
        "build_s": round(build_s),
        "decisions": requests.len(),
        "shards_per_decision_mean": round(mean(&planned)),
        "shards_per_decision_max": planned.iter().copied().fold(0.0, f64::max),
        "cold_read_bytes_mean": mean(&read_bytes).round(),
        "decide_us_median": round(median(&mut times)),
        "decide_us_p99": round(quantile(&mut times, 0.99)),
        "changed_share": changed,
        "changed_release": {
            "full": next.stats.full,
            "patched_records": next.stats.patched,
            "shards_written": next.stats.shards_written,
            "share_of_base_shards": round(next.stats.shards_written as f64 / f64::from(st.base_shards.max(1))),
            "bytes_written": next.stats.bytes_written,
            "build_s": round(patch_s),
        },
    })
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn median(v: &mut [f64]) -> f64 {
    quantile(v, 0.5)
}
