//! Session store: where a session blob is read from and how writes reach KV.
//!
//! Every copy carries the time it was written: the hot-copy cookie (signed with it), this
//! isolate's copy, and KV (as the value's metadata `{"w": ms}`). Reads take the newest copy,
//! so an older one never replaces newer state: a replayed old hot cookie loses to the
//! isolate's copy or, in a fresh isolate, to KV — read once per session and isolate, then
//! kept in memory. Only when KV is down or has not yet seen the newer write (a put is
//! coalesced for up to `KV_WRITE_INTERVAL_MS`; KV may take 60 s to reach other locations)
//! does a cookie stand unchecked.
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
use crate::copies::{kv_or_cookie, Coalescer, Copies, Newest};
use crate::settings::Settings;
use crate::stats::{self, Counter};
use std::cell::RefCell;
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

thread_local! {
    static COPIES: RefCell<Copies> = RefCell::new(Copies::default());
    static WRITES: RefCell<Coalescer> = RefCell::new(Coalescer::default());
}

/// What KV keeps next to a blob: when it was written.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Written {
    w: u64,
}

fn remember(key: &str, blob: &[u8], written_ms: u64) {
    COPIES.with(|c| c.borrow_mut().remember(key, blob, written_ms));
}

/// Loads a session's blob (`key` is the session's KV key, `s:<id>` or `h:<id>`). `kv` is the
/// SESSIONS binding (an unusable binding counts as a KV failure, like an error or a blown
/// budget).
pub async fn load(
    kv: Option<&KvStore>,
    key: &str,
    hot: Option<(Vec<u8>, u64)>,
    s: &Settings,
) -> Loaded {
    // The isolate's copy wins unless the cookie's is newer (another isolate wrote it).
    let (newest, stale) = COPIES.with(|c| c.borrow().newest(key, hot.as_ref().map(|h| h.1)));
    if stale {
        stats::inc(Counter::HotCopiesStale);
    }
    match (newest, hot) {
        (Newest::Isolate(blob), _) => Loaded {
            blob: Some(blob),
            source: Source::Isolate,
        },
        (Newest::Cookie, Some((blob, at))) => {
            remember(key, &blob, at);
            Loaded {
                blob: Some(blob),
                source: Source::Cookie,
            }
        }
        (_, hot) => load_kv(kv, key, hot, s).await,
    }
}

/// No isolate copy: KV decides, compared with the cookie's copy when there is one.
async fn load_kv(
    kv: Option<&KvStore>,
    key: &str,
    hot: Option<(Vec<u8>, u64)>,
    s: &Settings,
) -> Loaded {
    let now = now_ms();
    // Every way KV can fail counts against its breaker and leaves the state unknown.
    // Without KV a cookie's copy is served unchecked; without either the state is unknown.
    let unknown = |hot: Option<(Vec<u8>, u64)>| match hot {
        Some((blob, _)) => Loaded {
            blob: Some(blob),
            source: Source::Cookie,
        },
        None => Loaded {
            blob: None,
            source: Source::Unavailable,
        },
    };
    let unavailable = |counter: Counter, hot| {
        stats::inc(counter);
        breaker::failure(
            Dep::SessionKv,
            now,
            s.breaker_threshold,
            s.breaker_cooldown_ms,
        );
        unknown(hot)
    };
    if !breaker::allow(Dep::SessionKv, now) {
        stats::inc(Counter::KvReadsSkippedBreaker);
        return unknown(hot);
    }
    let Some(kv) = kv else {
        return unavailable(Counter::KvBindingErrors, hot);
    };
    stats::inc(Counter::KvReads);
    match within(s.kv_budget_ms, kv.get(key).bytes_with_metadata::<Written>()).await {
        Some(Ok((stored, meta))) => {
            breaker::success(Dep::SessionKv);
            let Some((blob, at, from_kv, stale)) =
                kv_or_cookie(stored, meta.map_or(0, |m| m.w), hot)
            else {
                return Loaded {
                    blob: None,
                    source: Source::New,
                };
            };
            if stale {
                stats::inc(Counter::HotCopiesStale);
            }
            remember(key, &blob, at);
            Loaded {
                blob: Some(blob),
                source: if from_kv { Source::Kv } else { Source::Cookie },
            }
        }
        Some(Err(e)) => {
            worker::console_warn!("edgerec: session KV read failed: {e}");
            unavailable(Counter::KvReadErrors, hot)
        }
        None => unavailable(Counter::KvReadTimeouts, hot),
    }
}

/// The time a session's hot-copy cookie carries for `blob`: the isolate copy's own write time
/// when it holds this blob, so the cookie never looks newer than the copy it mirrors (a clock
/// tick between the two would make the next request take the cookie for another isolate's).
pub fn cookie_time(key: &str, blob: &[u8]) -> u64 {
    COPIES
        .with(|c| c.borrow().written_ms(key, blob))
        .unwrap_or_else(now_ms)
}

/// Stores a session's new blob (written now) under its KV key: in isolate memory at once, in
/// KV coalesced.
pub fn save(ctx: &Context, kv: &KvStore, key: &str, blob: Vec<u8>, s: &Settings) {
    let now = now_ms();
    COPIES.with(|c| c.borrow_mut().store(key, blob, now));
    let delay = WRITES.with(|w| w.borrow_mut().schedule(key, now, s.kv_write_interval_ms));
    let Some(delay_ms) = delay else {
        stats::inc(Counter::KvWritesCoalesced);
        return;
    };
    let (kv, key, ttl) = (kv.clone(), key.to_string(), s.session_ttl_s);
    let (threshold, cooldown) = (s.breaker_threshold, s.breaker_cooldown_ms);
    ctx.wait_until(async move {
        if delay_ms > 0 {
            worker::Delay::from(Duration::from_millis(delay_ms)).await;
        }
        // Take the newest blob at the moment of writing: everything since is folded in.
        let newest = COPIES.with(|c| c.borrow().get(&key));
        let put_at = now_ms();
        WRITES.with(|w| w.borrow_mut().putting(&key, put_at));
        let Some((blob, written_ms)) = newest else {
            return;
        };
        if !breaker::allow(Dep::SessionKv, put_at) {
            stats::inc(Counter::KvPutsSkippedBreaker);
            return;
        }
        let put = match kv
            .put_bytes(&key, &blob)
            .and_then(|p| p.metadata(Written { w: written_ms }))
        {
            Ok(p) => p.expiration_ttl(ttl).execute().await,
            Err(e) => Err(e),
        };
        match put {
            Ok(()) => {
                stats::inc(Counter::KvPuts);
                breaker::success(Dep::SessionKv);
            }
            Err(e) => {
                stats::inc(Counter::KvPutErrors);
                worker::console_warn!("edgerec: session KV put failed: {e}");
                breaker::failure(Dep::SessionKv, now_ms(), threshold, cooldown);
            }
        }
        prune(put_at);
    });
}

/// Forgets write bookkeeping and copies that no longer matter.
fn prune(now: u64) {
    WRITES.with(|w| w.borrow_mut().prune(now));
    COPIES.with(|c| c.borrow_mut().prune(now));
}
