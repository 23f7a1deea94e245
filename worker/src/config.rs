//! Config cache: the rule bundle and the model head, read from the CONFIG KV namespace and
//! kept in isolate memory (item shards are read per decision: see `shards`).
//!
//! The layout in KV is the core's ([`edgerec::release`]): an immutable, content-addressed bundle
//! and head named by the pointer, so an unchanged pointer means an unchanged engine.
//!
//! The pointer is re-read at most every `CONFIG_TTL_MS`; a changed pointer loads the new pair
//! and builds a new engine. A failed or slow refresh keeps serving the engine already loaded.
//! A `shadow` bundle in the pointer is loaded beside it on the same model head; one that fails
//! to load is logged and counted, and leaves the live engine untouched.

use crate::breaker::{self, Dep};
use crate::budget::within;
use crate::settings::Settings;
use crate::stats::{self, Counter};
use edgerec::release::{self, Pointer, POINTER_KEY};
use edgerec::{Engine, EngineConfig};
use std::cell::RefCell;
use std::rc::Rc;
use worker::KvStore;

struct Cached {
    engine: Rc<Engine>,
    /// The shadow bundle the pointer names, on the same model: (its hash, its engine).
    shadow: Option<(String, Rc<Engine>)>,
    pointer: Pointer,
    checked_ms: u64,
    /// The published bytes, served as-is to the browser fallback (`/v1/model/*`).
    raw: Rc<RawModel>,
}

/// The loaded bundle and model head as published.
pub struct RawModel {
    /// Which pair.
    pub pointer: Pointer,
    /// Rule bundle JSON.
    pub bundle: String,
    /// Model head (MessagePack).
    pub head: Vec<u8>,
}

thread_local! {
    static CACHE: RefCell<Option<Cached>> = const { RefCell::new(None) };
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// KV failed or was too slow.
    #[error("config KV unavailable: {0}")]
    Unavailable(String),
    /// Nothing published yet.
    #[error("no config published ({POINTER_KEY} missing)")]
    Missing,
    /// Published data does not load.
    #[error("published config is invalid: {0}")]
    Invalid(String),
}

/// The current engine, refreshing it when due. `None` only when nothing could ever be loaded.
pub async fn engine(kv: &KvStore, s: &Settings, now: u64) -> Option<Rc<Engine>> {
    let (cached, fresh) = CACHE.with(|c| {
        c.borrow().as_ref().map_or((None, false), |c| {
            (
                Some(c.engine.clone()),
                now.saturating_sub(c.checked_ms) < s.config_ttl_ms,
            )
        })
    });
    if fresh {
        return cached;
    }
    if !breaker::allow(Dep::ConfigKv, now) {
        return cached;
    }
    match refresh(kv, s, now).await {
        Ok(engine) => {
            breaker::success(Dep::ConfigKv);
            Some(engine)
        }
        Err(e) => {
            stats::inc(Counter::ConfigRefreshFailures);
            if !matches!(e, ConfigError::Missing | ConfigError::Invalid(_)) {
                breaker::failure(
                    Dep::ConfigKv,
                    now,
                    s.breaker_threshold,
                    s.breaker_cooldown_ms,
                );
            }
            worker::console_warn!("edgerec: {e}; serving the previous config");
            // Try again after a short pause rather than on every request.
            CACHE.with(|c| {
                if let Some(c) = c.borrow_mut().as_mut() {
                    c.checked_ms = now.saturating_sub(s.config_ttl_ms.saturating_sub(1000));
                }
            });
            cached
        }
    }
}

async fn refresh(kv: &KvStore, s: &Settings, now: u64) -> Result<Rc<Engine>, ConfigError> {
    let budget = s.config_budget_ms;
    let pointer = within(budget, kv.get(POINTER_KEY).text())
        .await
        .ok_or_else(|| ConfigError::Unavailable("pointer read timed out".into()))?
        .map_err(|e| ConfigError::Unavailable(e.to_string()))?
        .ok_or(ConfigError::Missing)?;
    let pointer = Pointer::parse(&pointer).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    let same = CACHE.with(|c| {
        let mut c = c.borrow_mut();
        match c.as_mut() {
            // (A shadow that failed to load is tried again.)
            Some(c) if c.pointer == pointer && (pointer.shadow.is_none() || c.shadow.is_some()) => {
                c.checked_ms = now;
                Some(c.engine.clone())
            }
            _ => None,
        }
    });
    if let Some(engine) = same {
        return Ok(engine);
    }
    // Only the shadow changed: keep the live engine, load the shadow.
    let kept = CACHE.with(|c| {
        c.borrow().as_ref().and_then(|c| {
            (c.pointer.bundle == pointer.bundle && c.pointer.catalog == pointer.catalog)
                .then(|| (c.engine.clone(), c.raw.clone()))
        })
    });
    let (engine, raw) = match kept {
        Some(pair) => pair,
        None => load_live(kv, budget, &pointer).await?,
    };
    let shadow = match &pointer.shadow {
        Some(hash) => load_shadow(kv, budget, hash, &engine).await,
        None => None,
    };
    stats::inc(Counter::ConfigLoads);
    CACHE.with(|c| {
        *c.borrow_mut() = Some(Cached {
            engine: engine.clone(),
            shadow,
            pointer,
            checked_ms: now,
            raw,
        })
    });
    Ok(engine)
}

async fn load_live(
    kv: &KvStore,
    budget: u64,
    pointer: &Pointer,
) -> Result<(Rc<Engine>, Rc<RawModel>), ConfigError> {
    let (bundle_key, head_key) = (pointer.bundle_key(), pointer.head_key());
    let (bundle, head) = within(
        budget,
        futures_util::future::join(kv.get(&bundle_key).text(), kv.get(&head_key).bytes()),
    )
    .await
    .ok_or_else(|| ConfigError::Unavailable("config read timed out".into()))?;
    let bundle = bundle
        .map_err(|e| ConfigError::Unavailable(e.to_string()))?
        .ok_or_else(|| ConfigError::Invalid(format!("{bundle_key} missing")))?;
    let head = head
        .map_err(|e| ConfigError::Unavailable(e.to_string()))?
        .ok_or_else(|| ConfigError::Invalid(format!("{head_key} missing")))?;
    let engine = release::engine(EngineConfig::default(), &bundle, &head)
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
    let raw = Rc::new(RawModel {
        pointer: pointer.clone(),
        bundle,
        head,
    });
    Ok((Rc::new(engine), raw))
}

/// The shadow bundle on the live engine's model, or None (logged and counted) when it cannot
/// be read or does not compile: a broken shadow never touches what is served.
async fn load_shadow(
    kv: &KvStore,
    budget: u64,
    hash: &str,
    live: &Engine,
) -> Option<(String, Rc<Engine>)> {
    let key = release::bundle_key(hash);
    let built = match within(budget, kv.get(&key).text()).await {
        Some(Ok(Some(text))) => {
            let config = *live.config();
            edgerec::rules::compile_json(&text, config.session.horizon_ms)
                .map_err(edgerec::EngineError::from)
                .and_then(|b| Engine::new(config, b, live.head().clone()))
                .map_err(|e| e.to_string())
                // Content-addressed: a bundle that does not hash to its key is not that bundle.
                .and_then(|e| match e.bundle().hash == hash {
                    true => Ok(e),
                    false => Err(format!("its content hashes to {}", e.bundle().hash)),
                })
        }
        Some(Ok(None)) => Err(format!("{key} missing")),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("read timed out".into()),
    };
    match built {
        Ok(engine) => Some((hash.to_string(), Rc::new(engine))),
        Err(e) => {
            worker::console_warn!("edgerec: shadow bundle {key} not loaded: {e}");
            stats::inc(Counter::ShadowLoadFailures);
            None
        }
    }
}

/// The shadow bundle's hash and engine, when the loaded pointer names one that loaded.
pub fn shadow() -> Option<(String, Rc<Engine>)> {
    CACHE.with(|c| c.borrow().as_ref().and_then(|c| c.shadow.clone()))
}

/// The loaded bundle and model head bytes, if any.
pub fn raw() -> Option<Rc<RawModel>> {
    CACHE.with(|c| c.borrow().as_ref().map(|c| c.raw.clone()))
}

/// What is loaded, for /v1/health.
pub fn loaded() -> Option<Pointer> {
    CACHE.with(|c| c.borrow().as_ref().map(|c| c.pointer.clone()))
}
