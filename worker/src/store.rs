//! Session store: where a session blob is read from and how writes reach KV.
//!
//! Reads, freshest first: the hot-copy cookie or this isolate's latest copy (whichever was
//! written later), and only when neither exists, KV under a time budget and a circuit breaker.
//!
//! Writes are coalesced: KV accepts one write per second per key, so a burst of events on one
//! session updates the isolate's copy at once and reaches KV in at most one put per
//! `KV_WRITE_INTERVAL_MS` — the first write goes out immediately, later ones within the interval
//! are folded into one delayed put of the newest blob (scheduled with `ctx.wait_until`).
//! Loss window: a delayed put not yet made when the isolate is evicted is lost from KV; the
//! shopper's hot-copy cookie still holds it, so only cookie-less (server-to-server) clients can
//! lose up to one interval of state.

use crate::breaker::{self, Dep};
use crate::budget::{now_ms, within};
use crate::settings::Settings;
use crate::stats;
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;
use worker::{Context, KvStore};

/// Where a session blob came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The signed hot-copy cookie.
    Cookie,
    /// This isolate's memory.
    Isolate,
    /// Workers KV.
    Kv,
    /// Nothing stored: a new session.
    New,
    /// KV failed, timed out or its breaker is open: state unknown.
    Unavailable,
}

/// A loaded session.
pub struct Loaded {
    /// The blob, if any.
    pub blob: Option<Vec<u8>>,
    /// Where it came from.
    pub source: Source,
}

struct Latest {
    blob: Vec<u8>,
    written_ms: u64,
}

#[derive(Default)]
struct WriteState {
    last_put_ms: u64,
    scheduled: bool,
}

thread_local! {
    static LATEST: RefCell<HashMap<String, Latest>> = RefCell::new(HashMap::new());
    static WRITES: RefCell<HashMap<String, WriteState>> = RefCell::new(HashMap::new());
}

/// Isolate copies kept at most this long (they only bridge KV's write interval and lag).
const LATEST_KEEP_MS: u64 = 60_000;
/// Most isolate copies kept.
const LATEST_MAX: usize = 10_000;

fn key(sid: &str) -> String {
    format!("s:{sid}")
}

/// Loads a session's blob. `kv` is the SESSIONS binding (an unusable binding counts as a KV
/// failure, like an error or a blown budget).
pub async fn load(
    kv: Option<&KvStore>,
    sid: &str,
    hot: Option<(Vec<u8>, u64)>,
    s: &Settings,
) -> Loaded {
    // Copy the isolate's blob only when it beats the cookie's.
    let hot_ms = hot.as_ref().map(|h| h.1);
    let isolate = LATEST.with(|l| {
        l.borrow()
            .get(sid)
            .filter(|x| hot_ms.is_none_or(|h| x.written_ms > h))
            .map(|x| x.blob.clone())
    });
    let newest = match (isolate, hot) {
        (Some(i), _) => Some((i, Source::Isolate)),
        (None, Some(h)) => Some((h.0, Source::Cookie)),
        (None, None) => None,
    };
    if let Some((blob, source)) = newest {
        return Loaded {
            blob: Some(blob),
            source,
        };
    }
    let now = now_ms();
    // Every way KV can fail counts against its breaker and leaves the state unknown.
    let unavailable = |counter: &'static str| {
        stats::inc(counter);
        breaker::failure(
            Dep::SessionKv,
            now,
            s.breaker_threshold,
            s.breaker_cooldown_ms,
        );
        Loaded {
            blob: None,
            source: Source::Unavailable,
        }
    };
    if !breaker::allow(Dep::SessionKv, now) {
        stats::inc("kv_reads_skipped_breaker");
        return Loaded {
            blob: None,
            source: Source::Unavailable,
        };
    }
    let Some(kv) = kv else {
        return unavailable("kv_binding_errors");
    };
    stats::inc("kv_reads");
    match within(s.kv_budget_ms, kv.get(&key(sid)).bytes()).await {
        Some(Ok(blob)) => {
            breaker::success(Dep::SessionKv);
            let source = if blob.is_some() {
                Source::Kv
            } else {
                Source::New
            };
            Loaded { blob, source }
        }
        Some(Err(e)) => {
            worker::console_warn!("edgerec: session KV read failed: {e}");
            unavailable("kv_read_errors")
        }
        None => unavailable("kv_read_timeouts"),
    }
}

/// Stores a session's new blob: in isolate memory at once, in KV coalesced.
pub fn save(ctx: &Context, kv: &KvStore, sid: &str, blob: Vec<u8>, s: &Settings) {
    let now = now_ms();
    LATEST.with(|l| {
        let mut l = l.borrow_mut();
        if l.len() >= LATEST_MAX {
            l.retain(|_, x| now.saturating_sub(x.written_ms) < LATEST_KEEP_MS);
        }
        l.insert(
            sid.to_string(),
            Latest {
                blob,
                written_ms: now,
            },
        );
    });
    let interval = s.kv_write_interval_ms;
    let delay_ms = WRITES.with(|w| {
        let mut w = w.borrow_mut();
        let st = w.entry(sid.to_string()).or_default();
        if st.scheduled {
            stats::inc("kv_writes_coalesced");
            return None;
        }
        st.scheduled = true;
        Some((st.last_put_ms + interval).saturating_sub(now))
    });
    let Some(delay_ms) = delay_ms else {
        return;
    };
    let (kv, sid, ttl) = (kv.clone(), sid.to_string(), s.session_ttl_s);
    let (threshold, cooldown) = (s.breaker_threshold, s.breaker_cooldown_ms);
    ctx.wait_until(async move {
        if delay_ms > 0 {
            worker::Delay::from(Duration::from_millis(delay_ms)).await;
        }
        // Take the newest blob at the moment of writing: everything since is folded in.
        let blob = LATEST.with(|l| l.borrow().get(&sid).map(|x| x.blob.clone()));
        let put_at = now_ms();
        WRITES.with(|w| {
            if let Some(st) = w.borrow_mut().get_mut(&sid) {
                st.scheduled = false;
                st.last_put_ms = put_at;
            }
        });
        let Some(blob) = blob else { return };
        if !breaker::allow(Dep::SessionKv, put_at) {
            stats::inc("kv_puts_skipped_breaker");
            return;
        }
        let put = match kv.put_bytes(&key(&sid), &blob) {
            Ok(p) => p.expiration_ttl(ttl).execute().await,
            Err(e) => Err(e),
        };
        match put {
            Ok(()) => {
                stats::inc("kv_puts");
                breaker::success(Dep::SessionKv);
            }
            Err(e) => {
                stats::inc("kv_put_errors");
                worker::console_warn!("edgerec: session KV put failed: {e}");
                breaker::failure(Dep::SessionKv, now_ms(), threshold, cooldown);
            }
        }
        prune(put_at);
    });
}

/// Forgets write bookkeeping and copies that no longer matter.
fn prune(now: u64) {
    WRITES.with(|w| {
        w.borrow_mut()
            .retain(|_, st| st.scheduled || now.saturating_sub(st.last_put_ms) < 5_000)
    });
    LATEST.with(|l| {
        l.borrow_mut()
            .retain(|_, x| now.saturating_sub(x.written_ms) < LATEST_KEEP_MS)
    });
}
