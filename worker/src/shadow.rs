//! Shadow evaluation: when the release pointer names a `shadow` bundle, a sample of `full`
//! decisions (`SHADOW_RATE_PPM`) is decided again with it — on the same state, context and
//! model — after the answer has gone out (`waitUntil`, behind a zero-delay timer), and only
//! counted: its rule hits, overlap@k and changes against what was served, and both decisions'
//! times, into the aggregates under the shadow bundle's hash. Nothing it does reaches a
//! response, and it never reads or writes the session.
//!
//! CPU: at most `SHADOW_MAX_PER_SECOND` evaluations per isolate per second, and none when the
//! served decision's time plus the isolate's mean shadow time would pass `SHADOW_CPU_BUDGET_US`
//! (the free plan allows 10 ms per request). Deployed Workers' timers advance only on I/O, so
//! there the times read 0 and the per-second cap is the bound; `check-bundle` and `simulate`
//! measure a bundle's cost before it ships.

use crate::settings::Settings;
use crate::stats::{self, Counter};
use crate::{flush, shards};
use edgerec::{AggregateDelta, Context as Ctx, DecideRequest, Decision, Engine, Tier};
use std::cell::RefCell;
use std::rc::Rc;
use worker::{Context, KvStore};

#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = performance, js_name = now, catch)]
    fn performance_now() -> Result<f64, wasm_bindgen::JsValue>;
}

/// A monotonic clock in µs (`performance.now()`; 0 off wasm or where it is missing).
pub fn now_us() -> f64 {
    #[cfg(target_arch = "wasm32")]
    {
        performance_now().unwrap_or(0.0) * 1000.0
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        0.0
    }
}

/// This isolate's shadow spend: evaluations started in the current second, and the mean µs
/// of its shadow decisions so far.
#[derive(Debug, Default)]
struct Spend {
    second: u64,
    started: u32,
    mean_us: f64,
    done: u64,
}

thread_local! {
    static SPEND: RefCell<Spend> = RefCell::new(Spend::default());
}

/// Whether this request is in the shadow sample (a fresh random draw per request).
fn sampled(rate_ppm: u32) -> bool {
    let mut b = [0u8; 4];
    rate_ppm > 0
        && crate::random::fill(&mut b).is_ok()
        && u32::from_le_bytes(b) % 1_000_000 < rate_ppm
}

/// The shadow bundle (hash, engine) for this request, when one is loaded and the request is
/// sampled.
pub(crate) fn pick(s: &Settings) -> Option<(String, Rc<Engine>)> {
    if s.shadow_rate_ppm == 0 {
        return None;
    }
    let shadow = crate::config::shadow()?;
    sampled(s.shadow_rate_ppm).then_some(shadow)
}

/// What the shadow needs of the request, kept before the served decision consumes it.
pub(crate) struct Input {
    /// The shadow bundle.
    pub shadow: (String, Rc<Engine>),
    /// The session blob as read.
    pub state: Option<Vec<u8>>,
    /// The request's context.
    pub context: Ctx,
    /// Items wanted.
    pub limit: usize,
}

/// After the served decision `live` (made in `live_us`): evaluates the shadow later, or counts
/// it skipped when over budget.
pub(crate) fn after(
    ctx: &Context,
    kv: KvStore,
    s: &Settings,
    input: Input,
    live: &Decision,
    live_us: u64,
    now: u64,
) {
    let (hash, engine) = input.shadow;
    let over = SPEND.with(|sp| {
        let mut sp = sp.borrow_mut();
        let second = now / 1000;
        if sp.second != second {
            *sp = Spend {
                second,
                started: 0,
                ..std::mem::take(&mut *sp)
            };
        }
        let expected = live_us as f64
            + if sp.done > 0 {
                sp.mean_us
            } else {
                live_us as f64
            };
        let over =
            sp.started >= s.shadow_max_per_second || expected > s.shadow_cpu_budget_us as f64;
        if !over {
            sp.started += 1;
        }
        over
    });
    if over {
        stats::inc(Counter::ShadowSkippedBudget);
        let mut delta = AggregateDelta::default();
        delta.count_shadow_skipped(&hash);
        flush::record(s, &delta, now);
        return;
    }
    let served: Vec<String> = live.items.iter().map(|r| r.id.clone()).collect();
    let s = s.clone();
    ctx.wait_until(async move {
        // After the answer: a timer puts this behind the response the request is returning.
        worker::Delay::from(std::time::Duration::from_millis(0)).await;
        let req = DecideRequest {
            state: input.state.as_deref(),
            events: &[],
            context: input.context,
            now_ms: now,
            limit: input.limit,
            tier: Some(Tier::Full),
            trace: None,
        };
        let (d, shadow_us) = shards::decide_timed(&kv, &engine, &req, &s, now).await;
        let served: Vec<&str> = served.iter().map(String::as_str).collect();
        let ids: Vec<&str> = d.items.iter().map(|r| r.id.as_str()).collect();
        let mut delta = AggregateDelta::default();
        delta.count_shadow(&hash, &served, &ids, &d.rule_hits, live_us, shadow_us);
        flush::record(&s, &delta, now);
        stats::inc(Counter::ShadowEvaluations);
        SPEND.with(|sp| {
            let mut sp = sp.borrow_mut();
            sp.done += 1;
            sp.mean_us += (shadow_us as f64 - sp.mean_us) / sp.done as f64;
        });
    });
}
