//! Aggregate flush: the isolate's [`Outbox`] of counters from decisions, shipped to the
//! collector with `ctx.wait_until` when due (see [`crate::outbox`] for when batches are sealed
//! and how an outage is absorbed). Requests are signed: `x-edgerec-timestamp: <unix ms>` and
//! `x-edgerec-signature: v1=<hex HMAC-SHA256(COLLECTOR_SECRET, "<timestamp>." ++ body)>`.
//!
//! Loss window, in one sentence: counters live in isolate memory until acknowledged, so what
//! an isolate holds when the platform evicts it (at most its open buffer and sealed batches)
//! is lost; nothing else is — an outage of any length only merges counters.

use crate::breaker::{self, Dep};
use crate::budget::{now_ms, within};
use crate::outbox::{Limits, Outbox, Recorded};
use crate::settings::Settings;
use crate::stats::{self, Counter};
use edgerec::{AggregateBatch, AggregateDelta};
use std::cell::RefCell;
use worker::{Fetch, Headers, Method, Request, RequestInit};

/// Time budget of one POST to the collector, ms.
const POST_BUDGET_MS: u64 = 5_000;

thread_local! {
    static OUTBOX: RefCell<Outbox> = RefCell::new(Outbox::default());
}

fn limits(s: &Settings) -> Limits {
    Limits {
        seal_keys: s.flush_max_keys,
        max_age_ms: s.flush_max_age_ms,
        max_sealed: s.max_unacked_batches,
    }
}

/// The `source` batches are sealed under.
pub const SOURCE: &str = "edge";

/// A fresh batch id (none when the platform's random source fails: sealing waits).
fn new_id() -> Option<String> {
    let id = crate::random::hex_id(16);
    if id.is_err() {
        stats::inc(Counter::BatchIdsUnavailable);
    }
    id.ok()
}

/// Adds a decision's counters to the outbox.
pub fn record(s: &Settings, delta: &AggregateDelta, now: u64) {
    let r = OUTBOX.with(|o| {
        o.borrow_mut()
            .record(delta, now, &limits(s), SOURCE, new_id)
    });
    if let Recorded::Dropped { events } = r {
        stats::inc(Counter::DeltasDroppedOutboxFull);
        stats::add(Counter::EventsDropped, events);
    }
}

/// Whether a flush should be started now.
pub fn due(s: &Settings, now: u64) -> bool {
    OUTBOX.with(|o| o.borrow().due(now, &limits(s))) && breaker::allow(Dep::Collector, now)
}

/// Seals what may be sealed and posts every waiting batch, oldest first, until one fails.
pub async fn flush(s: Settings) {
    let Some(url) = s.collector_url.clone() else {
        // No collector configured: counters were visible in /v1/stats until now; say how
        // many events' counters are discarded rather than let them vanish silently.
        let old = OUTBOX.with(|o| o.borrow_mut().take_open());
        stats::add(Counter::EventsDiscardedNoCollector, old.events);
        return;
    };
    let now = now_ms();
    let batches = OUTBOX.with(|o| o.borrow_mut().begin(now, &limits(&s), SOURCE, new_id));
    for (id, body) in batches {
        if !breaker::allow(Dep::Collector, now_ms()) {
            stats::inc(Counter::BatchesDeferredBreaker);
            OUTBOX.with(|o| o.borrow_mut().failed(now_ms()));
            break;
        }
        match post(&url, &s.collector_secret, &body).await {
            Ok(200..=299) => {
                stats::inc(Counter::BatchesAcked);
                breaker::success(Dep::Collector);
                OUTBOX.with(|o| o.borrow_mut().done(&id));
            }
            Ok(status) if refused_for_good(status) => {
                stats::inc(Counter::BatchesRejected);
                worker::console_warn!("edgerec: collector refused batch {id}: HTTP {status}");
                if let Some(b) = OUTBOX.with(|o| o.borrow_mut().done(&id)) {
                    stats::add(Counter::EventsRejectedByCollector, b.events);
                }
            }
            other => {
                stats::inc(Counter::BatchSendFailures);
                worker::console_warn!("edgerec: collector send failed: {other:?}");
                breaker::failure(
                    Dep::Collector,
                    now_ms(),
                    s.breaker_threshold,
                    s.breaker_cooldown_ms,
                );
                OUTBOX.with(|o| o.borrow_mut().failed(now_ms()));
                break;
            }
        }
    }
    OUTBOX.with(|o| o.borrow_mut().finish());
}

/// Whether a collector status refuses a batch for good: a 4xx other than 408/429 (it
/// dead-letters what it can authenticate), so retrying would only repeat the refusal.
pub fn refused_for_good(status: u16) -> bool {
    (400..500).contains(&status) && status != 429 && status != 408
}

/// Sends one batch now (not buffered): the browser's decision reports, whose sender keeps the
/// batch and its id until this answers 2xx. The collector's status, or why there is none.
pub async fn relay(s: &Settings, batch: &AggregateBatch) -> Result<u16, String> {
    let url = s.collector_url.clone().ok_or("no collector configured")?;
    if !breaker::allow(Dep::Collector, now_ms()) {
        return Err("collector breaker open".into());
    }
    post(&url, &s.collector_secret, &batch.encode()).await
}

async fn post(url: &str, secret: &str, body: &[u8]) -> Result<u16, String> {
    let ts = now_ms();
    let headers = Headers::new();
    let set = |k: &str, v: &str| headers.set(k, v).map_err(|e| e.to_string());
    set("content-type", "application/msgpack")?;
    set("x-edgerec-timestamp", &ts.to_string())?;
    set(
        "x-edgerec-signature",
        &edgerec::aggregate::batch_signature(secret, ts, body),
    )?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(js_sys::Uint8Array::from(body).into()));
    let req = Request::new_with_init(url, &init).map_err(|e| e.to_string())?;
    match within(POST_BUDGET_MS, Fetch::Request(req).send()).await {
        Some(Ok(resp)) => Ok(resp.status_code()),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("timed out".into()),
    }
}

/// Outbox state for /v1/stats.
pub fn snapshot() -> serde_json::Value {
    OUTBOX.with(|o| {
        let o = o.borrow();
        serde_json::json!({
            "buffered_keys": o.open().key_count(),
            "buffered_events": o.open().events,
            "unacked_batches": o.sealed(),
            "unacked_keys": o.sealed_keys(),
            "unacked_events": o.sealed_events(),
            "delta": o.open(),
        })
    })
}
