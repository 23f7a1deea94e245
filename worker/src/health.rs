//! Operations: `GET /v1/health`, `GET /v1/health/kv` (one uncached KV read), `GET /v1/stats`
//! (isolate counters, the outbox, breakers) and, in the test build only, the conformance route.

use crate::budget::now_ms;
use crate::config;
use crate::respond::json_response;
#[cfg(feature = "conformance")]
use crate::respond::{error, read_body};
use crate::settings::Settings;
use crate::{breaker, flush, shards, stats};
use serde_json::json;
#[cfg(feature = "conformance")]
use worker::Request;
use worker::{Env, Response};

/// `GET /v1/stats`.
pub(crate) fn stats() -> worker::Result<Response> {
    json_response(
        200,
        &json!({"counters": stats::snapshot(), "aggregates": flush::snapshot(),
                "breakers": breaker::snapshot()}),
    )
}

/// `GET /v1/health`: what is loaded, shard cache use, wasm memory, breakers.
pub(crate) async fn health(env: &Env, s: &Settings) -> worker::Result<Response> {
    let now = now_ms();
    let engine = config::engine(&env.kv("CONFIG")?, s, now).await;
    json_response(
        200,
        &json!({
            "ok": true,
            "config": config::loaded(),
            "rules": engine.as_ref().map(|e| e.bundle().rules.len()),
            "items": engine.as_ref().map(|e| e.head().items),
            "shards": shards::usage(),
            "wasm_memory_bytes": wasm_memory_bytes(),
            "breakers": breaker::snapshot(),
        }),
    )
}

/// Size of this isolate's wasm linear memory (it grows, never shrinks: its high-water mark).
fn wasm_memory_bytes() -> usize {
    #[cfg(target_arch = "wasm32")]
    {
        core::arch::wasm32::memory_size(0) * 65_536
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        0
    }
}

/// One uncached KV read (the config pointer): is KV reachable, and how fast. Also the
/// baseline the latency benchmark compares `/v1/recommendations` against.
pub(crate) async fn kv_probe(env: &Env) -> worker::Result<Response> {
    let found = env
        .kv("CONFIG")?
        .get(edgerec::release::POINTER_KEY)
        .text()
        .await?
        .is_some();
    json_response(200, &json!({"ok": true, "pointer": found}))
}

#[cfg(feature = "conformance")]
/// Runs one conformance case inside workerd (enabled only with `ENABLE_CONFORMANCE`, for the
/// test suite): `{"case": "<json>", "bundle": "<json>", "catalog": "<json>"}` → the report.
pub(crate) async fn conformance(req: &mut Request, s: &Settings) -> worker::Result<Response> {
    let body = match read_body(
        req,
        &Settings {
            max_body_bytes: 4 << 20,
            ..s.clone()
        },
    )
    .await
    {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    #[derive(serde::Deserialize)]
    struct Input {
        case: String,
        bundle: String,
        catalog: String,
    }
    let input: Input = match serde_json::from_slice(&body) {
        Ok(i) => i,
        Err(e) => return error(400, "body", e),
    };
    let report = edgerec::scenario::run_json(&input.case, &input.bundle, input.catalog.as_bytes());
    json_response(200, &serde_json::to_value(report).unwrap_or_default())
}
