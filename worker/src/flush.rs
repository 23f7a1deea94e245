//! Aggregate flush: the per-isolate buffer of counters from decisions, sealed into batches and
//! shipped to the collector with `ctx.wait_until` when large or old enough.
//!
//! A batch gets a random id when sealed and keeps it across retries, so the collector drops
//! duplicates. Up to `MAX_UNACKED_BATCHES` unacknowledged batches are retried on later
//! flushes; past that the oldest is dropped and counted (`batches_dropped`,
//! `events_dropped`). Requests are signed: `x-edgerec-timestamp: <unix ms>` and
//! `x-edgerec-signature: v1=<hex HMAC-SHA256(COLLECTOR_SECRET, "<timestamp>." ++ body)>`.
//!
//! Loss window, honestly: counters live in isolate memory until acknowledged. If the isolate
//! is evicted first (Cloudflare may do so at any time), what it held is lost: at most one
//! flush interval of counters plus the unacknowledged batches.

use crate::breaker::{self, Dep};
use crate::budget::{now_ms, within};
use crate::settings::Settings;
use crate::stats;
use edgerec::{AggregateBatch, AggregateDelta};
use std::cell::RefCell;
use std::collections::VecDeque;
use worker::{Fetch, Headers, Method, Request, RequestInit};

/// Time budget of one POST to the collector, ms.
const POST_BUDGET_MS: u64 = 5_000;

struct Sealed {
    id: String,
    body: Vec<u8>,
    events: u64,
}

#[derive(Default)]
struct Buffer {
    delta: AggregateDelta,
    since_ms: u64,
    unacked: VecDeque<Sealed>,
    sending: bool,
}

thread_local! {
    static BUF: RefCell<Buffer> = RefCell::new(Buffer::default());
}

/// Adds a decision's counters to the buffer.
pub fn record(delta: &AggregateDelta, now: u64) {
    if delta.is_empty() {
        return;
    }
    BUF.with(|b| {
        let mut b = b.borrow_mut();
        if b.delta.is_empty() {
            b.since_ms = now;
        }
        b.delta.merge(delta);
    });
}

/// Whether a flush should be started now.
pub fn due(s: &Settings, now: u64) -> bool {
    BUF.with(|b| {
        let b = b.borrow();
        if b.sending {
            return false;
        }
        let full = b.delta.key_count() >= s.flush_max_keys;
        let old = !b.delta.is_empty() && now.saturating_sub(b.since_ms) >= s.flush_max_age_ms;
        full || old || !b.unacked.is_empty()
    })
}

/// Seals the buffer into a batch (if non-empty) and posts every unacknowledged batch.
pub async fn flush(s: Settings, source: String) {
    let Some(url) = s.collector_url.clone() else {
        // No collector configured: counters were visible in /v1/stats until now; say how
        // many events' counters are discarded rather than let them vanish silently.
        BUF.with(|b| {
            let old = std::mem::take(&mut b.borrow_mut().delta);
            stats::add("events_discarded_no_collector", old.events);
        });
        return;
    };
    let now = now_ms();
    let batches: Vec<(String, Vec<u8>)> = BUF.with(|b| {
        let mut b = b.borrow_mut();
        if !b.delta.is_empty() {
            let delta = std::mem::take(&mut b.delta);
            let events = delta.events;
            let batch = AggregateBatch::new(crate::random::hex_id(16), source, now, delta);
            b.unacked.push_back(Sealed {
                id: batch.id.clone(),
                body: batch.encode(),
                events,
            });
            stats::inc("batches_sealed");
            while b.unacked.len() > s.max_unacked_batches.max(1) {
                if let Some(old) = b.unacked.pop_front() {
                    stats::inc("batches_dropped");
                    stats::add("events_dropped", old.events);
                }
            }
        }
        b.sending = true;
        b.unacked
            .iter()
            .map(|x| (x.id.clone(), x.body.clone()))
            .collect()
    });
    for (id, body) in batches {
        if !breaker::allow(Dep::Collector, now_ms()) {
            stats::inc("batches_deferred_breaker");
            break;
        }
        match post(&url, &s.collector_secret, &body).await {
            Ok(200..=299) => {
                stats::inc("batches_acked");
                breaker::success(Dep::Collector);
                BUF.with(|b| b.borrow_mut().unacked.retain(|x| x.id != id));
            }
            Ok(status) if refused_for_good(status) => {
                stats::inc("batches_rejected");
                worker::console_warn!("edgerec: collector refused batch {id}: HTTP {status}");
                BUF.with(|b| b.borrow_mut().unacked.retain(|x| x.id != id));
            }
            other => {
                stats::inc("batch_send_failures");
                worker::console_warn!("edgerec: collector send failed: {other:?}");
                breaker::failure(
                    Dep::Collector,
                    now_ms(),
                    s.breaker_threshold,
                    s.breaker_cooldown_ms,
                );
                break;
            }
        }
    }
    BUF.with(|b| b.borrow_mut().sending = false);
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

/// Buffer state for /v1/stats.
pub fn snapshot() -> serde_json::Value {
    BUF.with(|b| {
        let b = b.borrow();
        serde_json::json!({
            "buffered_keys": b.delta.key_count(),
            "buffered_events": b.delta.events,
            "unacked_batches": b.unacked.len(),
            "delta": b.delta,
        })
    })
}
