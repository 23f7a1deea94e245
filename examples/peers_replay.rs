//! Replays the peer benchmark's workload natively (`PEERS_DUMP=dir node wasm/peers/bench.mjs`
//! writes it): every fact set decided as the wasm `decide` does (context parsed, decision
//! written as JSON), for profiling. `peers_replay DIR BUNDLE ROUNDS`.

use base64::Engine as _;
use edgerec::{Context, DecideRequest, EngineConfig, Tier};

#[derive(serde::Deserialize)]
struct Set {
    state: String,
    context: String,
    now: u64,
}

/// The running hash with one more decision's output folded in (the core's FNV-1a; a separate
/// function, so a profile can leave it out).
#[inline(never)]
fn fold(h: u64, bytes: &[u8]) -> u64 {
    edgerec::experiment::fnv1a64(&[&h.to_le_bytes(), bytes])
}

#[inline(never)]
fn replay(engine: &edgerec::Engine, sets: &[(Vec<u8>, String, u64)]) -> u64 {
    let mut n = 0xcbf29ce484222325u64;
    for (state, ctx, now) in sets {
        let context: Context = serde_json::from_str(ctx).unwrap_or_default();
        let d = engine.decide(&DecideRequest {
            state: Some(state),
            events: &[],
            context,
            now_ms: *now,
            limit: 10,
            tier: Some(Tier::Full),
            trace: None,
        });
        let mut buf = Vec::with_capacity(4096);
        let _ = serde_json::to_writer(&mut buf, &d);
        buf.extend_from_slice(d.state.as_deref().unwrap_or_default());
        n = fold(n, &buf);
    }
    n
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::Path::new(&args[1]);
    let bundle = std::fs::read_to_string(dir.join(&args[2])).expect("bundle");
    let rounds: usize = args[3].parse().expect("rounds");
    let catalog = std::fs::read(dir.join("catalog.json")).expect("catalog");
    let sets: Vec<Set> =
        serde_json::from_slice(&std::fs::read(dir.join("sets.json")).expect("sets")).expect("json");
    let sets: Vec<(Vec<u8>, String, u64)> = sets
        .into_iter()
        .map(|s| {
            let b = base64::engine::general_purpose::STANDARD
                .decode(s.state)
                .expect("b64");
            (b, s.context, s.now)
        })
        .collect();
    let engine =
        edgerec::Engine::from_json(EngineConfig::default(), &bundle, &catalog).expect("engine");
    let mut hash = 0;
    for _ in 0..rounds {
        hash = replay(&engine, &sets);
    }
    println!("{} decisions, output hash {hash:016x}", rounds * sets.len());
}
