//! wasm-bindgen bindings of the decision core, for the browser fallback (`--target web`) and
//! for Node (`--target nodejs`: conformance and benchmarks). A thin translation layer: JSON
//! strings and byte arrays in, JSON strings and byte arrays out (measured faster than building
//! JS objects field by field). Nothing here panics on bad input; errors become JS exceptions
//! carrying a JSON body `{"errors":[{"field":...,"message":...}]}`.

use edgerec::api::ErrorBody;
use edgerec::event::{events_from_value, Event};
use edgerec::model::{Shard, ShardMap, ShardRef};
use edgerec::{Context, DecideRequest, EngineConfig, EngineError, FieldError, Tier};
use wasm_bindgen::prelude::*;

/// Most memory the page's loaded shards may hold (estimated), bytes: the oldest go first.
const SHARD_CACHE_BYTES: usize = 8 << 20;

fn error_json(errors: &[FieldError]) -> JsError {
    JsError::new(&ErrorBody::new(errors.to_vec()).to_json())
}

/// JSON text written into a buffer sized for a typical decision (~2 KB), so it is not
/// regrown while writing.
fn json_text(v: &edgerec::engine::Decision) -> String {
    let mut buf = Vec::with_capacity(4096);
    match serde_json::to_writer(&mut buf, v) {
        Ok(()) => String::from_utf8(buf).unwrap_or_default(),
        Err(_) => String::new(),
    }
}

fn one_error(field: &str, message: impl ToString) -> JsError {
    error_json(&[FieldError::new(field, message.to_string())])
}

/// A decision engine built from a rule bundle and a model: a published head (whose item shards
/// the page fetches as decisions need them: [`Engine::plan`], [`Engine::add_shard`]) or a whole
/// JSON catalog.
#[wasm_bindgen]
pub struct Engine {
    inner: edgerec::Engine,
    /// Shards loaded so far, oldest first, with their keys.
    shards: ShardMap,
    loaded: Vec<(String, ShardRef)>,
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
    /// Builds an engine. `model` is a published head (MessagePack, as `/v1/model/catalog`
    /// serves it) or a JSON catalog.
    #[wasm_bindgen(constructor)]
    pub fn new(bundle_json: &str, model: &[u8]) -> Result<Engine, JsError> {
        let cfg = EngineConfig::default();
        let built = if model.first() == Some(&edgerec::model::FORMAT) {
            edgerec::release::engine(cfg, bundle_json, model)
        } else {
            edgerec::Engine::from_json(cfg, bundle_json, model)
        };
        let inner = built.map_err(|e| match e {
            EngineError::Bundle(b) => error_json(&b.issues),
            EngineError::Model(e) => one_error("model", e),
            EngineError::Catalog(e) => one_error("catalog", e),
            e => one_error("config", e),
        })?;
        Ok(Engine {
            inner,
            shards: ShardMap::default(),
            loaded: Vec::new(),
        })
    }

    /// Bundle content hash.
    #[wasm_bindgen(getter, js_name = bundleHash)]
    pub fn bundle_hash(&self) -> String {
        self.inner.bundle().hash.clone()
    }

    /// Catalog version label.
    #[wasm_bindgen(getter, js_name = catalogVersion)]
    pub fn catalog_version(&self) -> String {
        self.inner.head().version.clone()
    }

    /// The shard keys a decision on this input needs and the engine has not loaded (fetch each
    /// from `/v1/model/shard?key=…`, hand it to [`Engine::add_shard`], then decide). Same
    /// arguments as [`Engine::decide`] minus the limit; a JSON array of keys.
    pub fn plan(
        &self,
        state: Option<Vec<u8>>,
        events_json: &str,
        context_json: &str,
        now_ms: f64,
        tier: &str,
    ) -> Result<String, JsError> {
        let (events, context, now, tier) = self.request(events_json, context_json, now_ms, tier)?;
        let plan = self.inner.plan(&DecideRequest {
            state: state.as_deref(),
            events: &events,
            context,
            now_ms: now,
            limit: 1,
            tier: Some(tier),
            trace: None,
        });
        let head = self.inner.head();
        let keys: Vec<String> = plan
            .into_iter()
            .filter(|r| !self.shards.0.contains_key(r))
            .filter_map(|r| head.key(r))
            .collect();
        Ok(serde_json::to_string(&keys).unwrap_or_default())
    }

    /// Adds a fetched shard (`key` as [`Engine::plan`] named it, `stored` the response text).
    #[wasm_bindgen(js_name = addShard)]
    pub fn add_shard(&mut self, key: &str, stored: &str) -> Result<(), JsError> {
        let at = self
            .inner
            .head()
            .shard_of_key(key)
            .ok_or_else(|| one_error("key", "not a shard of this model"))?;
        let shard = Shard::decode_stored(stored).map_err(|e| one_error("shard", e))?;
        self.shards.0.insert(at, shard);
        self.loaded.retain(|(_, r)| *r != at);
        self.loaded.push((key.to_string(), at));
        let mut bytes: usize = self.shards.0.values().map(Shard::heap_bytes).sum();
        while bytes > SHARD_CACHE_BYTES && self.loaded.len() > 1 {
            let (_, old) = self.loaded.remove(0);
            if let Some(s) = self.shards.0.remove(&old) {
                bytes -= s.heap_bytes();
            }
        }
        Ok(())
    }

    fn request(
        &self,
        events_json: &str,
        context_json: &str,
        now_ms: f64,
        tier: &str,
    ) -> Result<(Vec<Event>, Context, u64, Tier), JsError> {
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
        Ok((events, context, now, tier))
    }

    /// Makes a decision with the shards loaded so far. `events_json` is `{"events":[...]}` or
    /// `[]`/empty for none; `context_json` is a context object or empty; `tier` is `full`,
    /// `cached`, `static` or `browser`. Items carry their title, category and price.
    pub fn decide(
        &self,
        state: Option<Vec<u8>>,
        events_json: &str,
        context_json: &str,
        now_ms: f64,
        limit: u32,
        tier: &str,
    ) -> Result<Decision, JsError> {
        let (events, context, now, tier) = self.request(events_json, context_json, now_ms, tier)?;
        let req = DecideRequest {
            state: state.as_deref(),
            events: &events,
            context,
            now_ms: now,
            limit: limit as usize,
            tier: Some(tier),
            trace: None,
        };
        let d = match self.inner.local_shards() {
            Some(all) => self.inner.decide_with(&req, all),
            None => self.inner.decide_with(&req, &self.shards),
        };
        if !d.rejected.is_empty() {
            return Err(error_json(&d.rejected));
        }
        Ok(Decision {
            json: json_text(&d),
            state: d.state,
        })
    }
}

/// A slot's markup for a decision's items (`items_json`: the decision's `items`), exactly as
/// the edge fills slots (`edgerec::api::slot_html`; `{id}` in `item_url` is the item id).
#[wasm_bindgen(js_name = slotHtml)]
pub fn slot_html(items_json: &str, item_url: &str) -> Result<String, JsError> {
    let items: Vec<edgerec::Recommendation> =
        serde_json::from_str(items_json).map_err(|e| one_error("items", e))?;
    Ok(edgerec::api::slot_list_html(&items, item_url))
}

/// The device class the edge derives from a user agent (`mobile`, `tablet`, `desktop`, ...),
/// so a browser decision sees the same context as the edge's.
#[wasm_bindgen(js_name = deviceClass)]
pub fn device_class(user_agent: &str) -> String {
    edgerec::features::device_class(user_agent).to_string()
}

/// Runs one conformance case (see `edgerec::scenario`); returns the report as JSON.
#[cfg(feature = "conformance")]
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

// Talc instead of the default dlmalloc: a decision allocates a few hundred small blocks.
#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();
