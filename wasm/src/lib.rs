//! wasm-bindgen bindings of the decision core, for the browser fallback (`--target web`) and
//! for Node (`--target nodejs`: conformance and benchmarks). A thin translation layer: JSON
//! strings and byte arrays in, JSON strings and byte arrays out (measured faster than building
//! JS objects field by field). Nothing here panics on bad input; errors become JS exceptions
//! carrying a JSON body `{"errors":[{"field":...,"message":...}]}`.

use edgerec::catalog::Catalog;
use edgerec::event::events_from_value;
use edgerec::rules::compile_json;
use edgerec::{Context, DecideRequest, EngineConfig, FieldError, Tier};
use wasm_bindgen::prelude::*;

fn error_json(errors: &[FieldError]) -> JsError {
    let body = serde_json::json!({ "errors": errors }).to_string();
    JsError::new(&body)
}

fn one_error(field: &str, message: impl ToString) -> JsError {
    error_json(&[FieldError::new(field, message.to_string())])
}

/// A decision engine built from a rule bundle and a catalog.
#[wasm_bindgen]
pub struct Engine {
    inner: edgerec::Engine,
}

/// One decision: its JSON view and the new session blob.
#[wasm_bindgen]
pub struct Decision {
    json: String,
    state: Option<Vec<u8>>,
}

#[wasm_bindgen]
impl Decision {
    /// The decision as JSON (items, tier, variant, rule_hits, features, delta, ...).
    #[wasm_bindgen(getter)]
    pub fn json(&self) -> String {
        self.json.clone()
    }

    /// The session blob to store (undefined for tiers that do not touch state).
    #[wasm_bindgen(getter)]
    pub fn state(&self) -> Option<Vec<u8>> {
        self.state.clone()
    }
}

#[wasm_bindgen]
impl Engine {
    /// Builds an engine. `catalog` is JSON or a MessagePack snapshot (first byte 1).
    #[wasm_bindgen(constructor)]
    pub fn new(bundle_json: &str, catalog: &[u8]) -> Result<Engine, JsError> {
        let cfg = EngineConfig::default();
        let bundle =
            compile_json(bundle_json, cfg.session.horizon_ms).map_err(|e| error_json(&e.issues))?;
        let catalog = if catalog.first() == Some(&edgerec::catalog::SNAPSHOT_VERSION) {
            Catalog::from_snapshot(catalog)
        } else {
            Catalog::from_json(catalog)
        }
        .map_err(|e| one_error("catalog", e))?;
        let inner =
            edgerec::Engine::new(cfg, bundle, catalog).map_err(|e| one_error("config", e))?;
        Ok(Engine { inner })
    }

    /// Bundle content hash.
    #[wasm_bindgen(getter, js_name = bundleHash)]
    pub fn bundle_hash(&self) -> String {
        self.inner.bundle().hash.clone()
    }

    /// Catalog version.
    #[wasm_bindgen(getter, js_name = catalogVersion)]
    pub fn catalog_version(&self) -> String {
        self.inner.catalog().version.clone()
    }

    /// What a page needs to render an item: `{"title","category","price"}` as JSON, or
    /// undefined for an unknown id.
    pub fn describe(&self, id: &str) -> Option<String> {
        let cat = self.inner.catalog();
        let idx = cat.index_of(id)?;
        let it = cat.item(idx)?;
        let category = cat.item_category(idx);
        Some(
            serde_json::json!({"title": it.title, "category": category, "price": it.price})
                .to_string(),
        )
    }

    /// Makes a decision. `events_json` is `{"events":[...]}` or `[]`/empty for none;
    /// `context_json` is a context object or empty; `tier` is `full`, `cached`, `static` or
    /// `browser`.
    pub fn decide(
        &self,
        state: Option<Vec<u8>>,
        events_json: &str,
        context_json: &str,
        now_ms: f64,
        limit: u32,
        tier: &str,
    ) -> Result<Decision, JsError> {
        if !(now_ms.is_finite() && now_ms >= 0.0) {
            return Err(one_error("now", "must be a non-negative number of ms"));
        }
        let now = now_ms as u64;
        let events = if events_json.trim().is_empty() || events_json.trim() == "[]" {
            Vec::new()
        } else {
            let v: serde_json::Value =
                serde_json::from_str(events_json).map_err(|e| one_error("body", e))?;
            events_from_value(&v, now, self.inner.config().time)
                .map_err(|e| error_json(&e.errors))?
        };
        let context: Context = if context_json.trim().is_empty() {
            Context::default()
        } else {
            serde_json::from_str(context_json).map_err(|e| one_error("context", e))?
        };
        let tier = Tier::parse(tier).ok_or_else(|| one_error("tier", "unknown tier"))?;
        let d = self.inner.decide(&DecideRequest {
            state: state.as_deref(),
            events: &events,
            context,
            now_ms: now,
            limit: limit as usize,
            tier: Some(tier),
        });
        if !d.rejected.is_empty() {
            return Err(error_json(&d.rejected));
        }
        Ok(Decision {
            json: serde_json::to_string(&d).unwrap_or_default(),
            state: d.state,
        })
    }
}

/// The device class the edge derives from a user agent (`mobile`, `tablet`, `desktop`, ...),
/// so a browser decision sees the same context as the edge's.
#[wasm_bindgen(js_name = deviceClass)]
pub fn device_class(user_agent: &str) -> String {
    edgerec::features::device_class(user_agent).to_string()
}

/// Runs one conformance case (see `edgerec::scenario`); returns the report as JSON.
#[wasm_bindgen(js_name = runScenario)]
pub fn run_scenario(case_json: &str, bundle_json: &str, catalog: &[u8]) -> String {
    let report = edgerec::scenario::run_json(case_json, bundle_json, catalog);
    serde_json::to_string(&report).unwrap_or_default()
}

/// A readable view of a session blob (for debugging and tests): JSON of the state.
#[wasm_bindgen(js_name = inspectSession)]
pub fn inspect_session(blob: &[u8]) -> Result<String, JsError> {
    let cfg = EngineConfig::default();
    let state =
        edgerec::SessionState::decode(blob, &cfg.session).map_err(|e| one_error("state", e))?;
    Ok(state.to_debug_json().to_string())
}

/// The standard benchmark workload (see `edgerec::workload`), so hosts time the same thing.
#[cfg(feature = "bench")]
#[wasm_bindgen]
pub struct Bench {
    workload: edgerec::workload::Workload,
}

#[cfg(feature = "bench")]
#[wasm_bindgen]
impl Bench {
    /// Builds the workload (20,000 items, 100 rules, a 50-event session).
    #[wasm_bindgen(constructor)]
    pub fn new() -> Bench {
        Bench {
            workload: edgerec::workload::Workload::new(),
        }
    }

    /// One full decision; returns the number of items (so the work is not optimised away).
    #[wasm_bindgen(js_name = decideOne)]
    pub fn decide_one(&self) -> u32 {
        self.workload.decide_one().items.len() as u32
    }

    /// Size of the stored session blob.
    #[wasm_bindgen(getter, js_name = blobBytes)]
    pub fn blob_bytes(&self) -> u32 {
        self.workload.blob.len() as u32
    }
}

#[cfg(feature = "bench")]
impl Default for Bench {
    fn default() -> Self {
        Bench::new()
    }
}
