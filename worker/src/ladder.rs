//! The fallback ladder: a decision is never an error, it is served by the best rung that works.
//!
//! | rung | when | how |
//! | --- | --- | --- |
//! | `full` | the session could be read | the session's state, the request's context |
//! | `cached` | session KV failed, timed out or its breaker is open | context-only decisions per segment, kept `SEGMENT_TTL_MS` |
//! | `static` | the decision itself failed (an internal error), or no session can be named | popularity, no state |
//! | empty `static` | nothing was ever loaded (cold isolate, config KV down) | `{"items": []}`, still a 200 |
//!
//! An internal error cannot be provoked from outside, so the test build (`ENABLE_CONFORMANCE`)
//! honours `x-edgerec-fault: decide`, which makes the decision fail, to prove the `static` rung
//! works (a test double for an internal error; the production build has no such header).

use crate::config;
use crate::identity::Identity;
use crate::settings::Settings;
use crate::shards;
use crate::stats::{self, Counter};
use crate::store::{self, Loaded, Source};
use crate::{budget::now_ms, flush};
use edgerec::{Context as Ctx, DecideRequest, Decision, Engine, Tier};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use worker::{Context, Env, KvStore};

thread_local! {
    /// Per-segment results of the `cached` tier: (expires, decision).
    static SEGMENTS: RefCell<HashMap<String, (u64, Rc<Decision>)>> = RefCell::new(HashMap::new());
}

/// Most segments remembered before expired ones are swept.
const SEGMENTS_MAX: usize = 1000;

/// Reads the engine and the session at once (independent reads: a cold isolate waits for the
/// slower, not for their sum).
pub(crate) async fn engine_and_session(
    env: &Env,
    s: &Settings,
    id: Option<&Identity>,
    now: u64,
) -> worker::Result<(Option<Rc<Engine>>, Loaded)> {
    let config = env.kv("CONFIG")?;
    let sessions = env.kv("SESSIONS").ok();
    let session = async {
        match id {
            Some(id) => store::load(sessions.as_ref(), &id.key, id.hot.clone(), s).await,
            None => Loaded {
                blob: None,
                source: Source::New,
            },
        }
    };
    Ok(futures_util::future::join(config::engine(&config, s, now), session).await)
}

/// What the ladder is asked for.
pub(crate) struct Ask<'a> {
    /// Who, and the session as read.
    pub id: &'a Identity,
    /// The session as read.
    pub loaded: Loaded,
    /// The request's context.
    pub context: Ctx,
    /// Items wanted.
    pub limit: usize,
    /// Make the decision fail (test build only: see the module docs).
    pub fault: bool,
}

/// Decides down the ladder: `full`, else `cached`, else `static`. Returns the decision and the
/// session blob to hand back (none for the static rung). Counters are recorded for shipping.
pub(crate) async fn decide(
    engine: &Engine,
    env: &Env,
    ctx: &Context,
    s: &Settings,
    ask: Ask<'_>,
) -> (Rc<Decision>, Option<Vec<u8>>) {
    let now = now_ms();
    let started = crate::shadow::now_us();
    // The one fallible step (the config binding) comes first, so the context moves into the
    // rung that runs instead of being copied in case a rung fails.
    let config = if ask.fault {
        Err(worker::Error::RustError(
            "fault injected: x-edgerec-fault".into(),
        ))
    } else {
        env.kv("CONFIG")
    };
    let limit = ask.limit;
    let d = match config {
        Err(e) => {
            worker::console_warn!("edgerec: decision failed: {e}; serving static");
            stats::inc(Counter::FallbackStatic);
            Rc::new(static_decision(engine, ask.context, limit, now))
        }
        Ok(kv) if ask.loaded.source == Source::Unavailable => {
            stats::inc(Counter::FallbackCached);
            cached(engine, &kv, s, ask.context, limit, now).await
        }
        Ok(kv) => full(engine, &kv, env, ctx, s, ask, now).await,
    };
    stats::inc(match d.tier {
        Tier::Full => Counter::DecisionsFull,
        Tier::Cached => Counter::DecisionsCached,
        Tier::Static => Counter::DecisionsStatic,
        Tier::Browser => Counter::DecisionsBrowser,
    });
    flush::record(s, &d.delta, now);
    if let Some(v) = d.variant.as_ref().filter(|_| d.delta.decisions > 0) {
        // The experiment's latency guardrail: the rung's time as the edge saw it (in Workers
        // the clock moves with I/O, so this is the shard and KV waits, not CPU time).
        let mut timing = edgerec::AggregateDelta::default();
        let us = (crate::shadow::now_us() - started).max(0.0) as u64;
        timing.arm(&engine.variant_key(v)).count_latency(us);
        flush::record(s, &timing, now);
    }
    let blob = d.state.clone();
    (d, blob)
}

/// The `static` rung: popularity for the context, no state.
pub(crate) fn static_decision(engine: &Engine, context: Ctx, limit: usize, now: u64) -> Decision {
    engine.decide(&DecideRequest {
        context,
        now_ms: now,
        limit,
        tier: Some(Tier::Static),
        ..Default::default()
    })
}

/// The `full` rung: the session's state; a blob pruned by time is written back (coalesced).
async fn full(
    engine: &Engine,
    config: &KvStore,
    env: &Env,
    ctx: &Context,
    s: &Settings,
    ask: Ask<'_>,
    now: u64,
) -> Rc<Decision> {
    // Sampled for shadow evaluation: keep what it needs before the context moves.
    let shadow = crate::shadow::pick(s).map(|shadow| crate::shadow::Input {
        shadow,
        state: ask.loaded.blob.clone(),
        context: ask.context.clone(),
        limit: ask.limit,
    });
    let request = DecideRequest {
        state: ask.loaded.blob.as_deref(),
        events: &[],
        context: ask.context,
        now_ms: now,
        limit: ask.limit,
        tier: Some(Tier::Full),
        trace: None,
    };
    let (d, live_us) = shards::decide_timed(config, engine, &request, s, now).await;
    if let Some(input) = shadow {
        crate::shadow::after(ctx, config.clone(), s, input, &d, live_us, now);
    }
    if let (Some(b), true, Ok(kv)) = (
        &d.state,
        d.state_changed && ask.loaded.blob.is_some(),
        env.kv("SESSIONS"),
    ) {
        store::save(ctx, &kv, &ask.id.key, b.clone(), s);
    }
    Rc::new(d)
}

/// The `cached` rung: context-only decisions per segment, kept for `SEGMENT_TTL_MS` (unless
/// made without some model shard).
async fn cached(
    engine: &Engine,
    config: &KvStore,
    s: &Settings,
    context: Ctx,
    limit: usize,
    now: u64,
) -> Rc<Decision> {
    let key = format!("{}|{limit}", engine.segment_key(&context));
    let hit = SEGMENTS.with(|m| {
        m.borrow()
            .get(&key)
            .filter(|(exp, _)| *exp > now)
            .map(|(_, d)| d.clone())
    });
    if let Some(hit) = hit {
        stats::inc(Counter::SegmentCacheHits);
        return hit;
    }
    let request = DecideRequest {
        context,
        now_ms: now,
        limit,
        tier: Some(Tier::Cached),
        ..Default::default()
    };
    let d = Rc::new(shards::decide(config, engine, &request, s, now).await);
    if d.missing == 0 {
        SEGMENTS.with(|m| {
            let mut m = m.borrow_mut();
            if m.len() > SEGMENTS_MAX {
                m.retain(|_, (exp, _)| *exp > now);
            }
            m.insert(key, (now + s.segment_ttl_ms, d.clone()));
        });
    }
    d
}

/// Whether this request asks for an injected decision failure (test build only).
pub(crate) fn fault_injected(req: &worker::Request, env: &Env) -> bool {
    #[cfg(feature = "conformance")]
    {
        env.var("ENABLE_CONFORMANCE").is_ok()
            && req
                .headers()
                .get("x-edgerec-fault")
                .ok()
                .flatten()
                .as_deref()
                == Some("decide")
    }
    #[cfg(not(feature = "conformance"))]
    {
        let _ = (req, env);
        false
    }
}
