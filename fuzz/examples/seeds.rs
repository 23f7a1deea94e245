//! Writes the seed corpus (`fuzz/seeds/<target>/`) from the project's own fixtures: the
//! conformance corpus's events, the demo bundle and catalog, session blobs and batches made by
//! the engine. Run from `fuzz/`: `cargo run --example seeds`.

use edgerec::{DecideRequest, EventKind};
use std::path::Path;

fn put(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("seeds").join(target);
    std::fs::create_dir_all(&dir).expect("seed dir");
    std::fs::write(dir.join(name), bytes).expect("seed file");
}

fn main() {
    let root = Path::new("..");
    let bundle = std::fs::read_to_string(root.join("data/demo/rules.json")).unwrap();
    let catalog = std::fs::read(root.join("data/demo/catalog.json")).unwrap();
    let engine =
        edgerec::Engine::from_json(edgerec::EngineConfig::default(), &bundle, &catalog).unwrap();
    let now = 1_764_201_600_000u64;
    // Events: every step of the conformance corpus, re-timed to the fuzzers' "now".
    let mut n = 0;
    let mut blobs = Vec::new();
    for entry in std::fs::read_dir(root.join("tests/conformance")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let case: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let mut blob: Option<Vec<u8>> = None;
        for step in case["steps"].as_array().into_iter().flatten() {
            let mut events = step["events"].clone();
            let shift = now as i64 - step["now"].as_i64().unwrap_or(now as i64);
            for e in events.as_array_mut().into_iter().flatten() {
                if let Some(ts) = e["ts"].as_i64() {
                    e["ts"] = (ts + shift).into();
                }
            }
            let body = serde_json::json!({ "events": events });
            n += 1;
            put(
                "events_json",
                &format!("case-{n}.json"),
                body.to_string().as_bytes(),
            );
            put(
                "events_msgpack",
                &format!("case-{n}.msgpack"),
                &rmp_serde::to_vec_named(&body).unwrap(),
            );
            if let Ok(evs) = edgerec::event::parse_events_json(
                body.to_string().as_bytes(),
                now,
                engine.config().time,
            ) {
                let d = engine.decide(&DecideRequest {
                    state: blob.as_deref(),
                    events: &evs,
                    now_ms: now,
                    limit: 4,
                    ..Default::default()
                });
                if let Some(b) = d.state {
                    blob = Some(b.clone());
                    blobs.push(b);
                }
                let mut decide_seed = body.to_string().into_bytes();
                if let Some(b) = &blob {
                    decide_seed.push(0);
                    decide_seed.extend_from_slice(b);
                }
                put("decide", &format!("case-{n}.bin"), &decide_seed);
            }
        }
    }
    for (i, b) in blobs.iter().enumerate().step_by(3) {
        put("session_blob", &format!("blob-{i}.bin"), b);
    }
    put("rule_bundle", "demo.json", bundle.as_bytes());
    for name in ["default.json", "return-aware.json"] {
        put(
            "rule_bundle",
            name,
            &std::fs::read(root.join("data/eval").join(name)).unwrap(),
        );
    }
    // Catalogs: a small JSON catalog and its snapshot (the demo's first 12 items).
    let mut doc: serde_json::Value = serde_json::from_slice(&catalog).unwrap();
    if let Some(items) = doc["items"].as_array_mut() {
        items.truncate(12);
        for it in items.iter_mut() {
            if let Some(rel) = it["related"].as_array_mut() {
                rel.retain(|r| r[0].as_str().is_some_and(|id| id <= "sku-0012"));
            }
        }
    }
    let small = doc.to_string();
    put("catalog", "small.json", small.as_bytes());
    let cat = edgerec::catalog::Catalog::from_json(small.as_bytes()).unwrap();
    let mut shards = Vec::new();
    let release = edgerec::model::build::build(&cat, None, &mut |_, b| shards.push(b)).unwrap();
    put("catalog", "small-head.msgpack", &release.head);
    put("catalog", "small-shard.msgpack", &shards[0]);
    // Batches: what an edge ships after a few decisions.
    let mut delta = edgerec::AggregateDelta::default();
    for (i, item) in ["sku-0005", "sku-0163", "sku-0008"].iter().enumerate() {
        delta.count_event(item, EventKind::View);
        if i > 0 {
            delta.count_transition("sku-0005", item);
        }
    }
    delta.count_rule("repeat-view-related");
    delta.count_tier("full");
    delta.count_variant(
        "related-boost/control",
        edgerec::aggregate::VariantEvent::Exposure,
    );
    delta.decisions = 3;
    delta.events = 3;
    let batch = edgerec::AggregateBatch::new("0123456789abcdef", "edge", now, delta).encode();
    put("aggregate_batch", "edge.msgpack", &batch);
    let sig = edgerec::aggregate::batch_signature("fuzz-collector-secret", now, &batch);
    let mut req = format!("{now}\n{sig}\n").into_bytes();
    req.extend_from_slice(&batch);
    put("collector_request", "signed.bin", &req);
    put(
        "browser_report",
        "report.json",
        br#"{"id":"0123456789abcdef","delta":{"decisions":2,"tiers":{"browser":2},"rule_hits":{"no-gift-cards":2},"variants":{"related-boost/control":{"exposures":2}}}}"#,
    );
    put(
        "cookies",
        "header.txt",
        b"a=1; edgerec_sid=abcdefghijklmnop.c2lnbmF0dXJl; edgerec_hot=AAEC.42.c2ln",
    );
    put(
        "cookies",
        "url.txt",
        b"https://shop.example.com/p/sku-0005?limit=4&slot=a+b%21#x",
    );
    println!("seeds written to fuzz/seeds/");
}
