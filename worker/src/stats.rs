//! Isolate-local counters, served at `GET /v1/stats` (and read by tests and the dashboard).
//! They reset when the isolate is evicted; the durable numbers are the aggregates shipped to
//! the collector. One enum names them all, so a misspelt counter does not compile.

use std::cell::RefCell;

macro_rules! counters {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// Every counter the worker keeps.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Counter {
            $($(#[$doc])* $variant,)*
        }

        impl Counter {
            /// Every counter, in name order.
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)*];

            /// Its name in `/v1/stats`.
            pub fn name(self) -> &'static str {
                match self {
                    $(Counter::$variant => $name,)*
                }
            }
        }
    };
}

counters! {
    /// `bad_session_cookies`.
    BadSessionCookies => "bad_session_cookies",
    /// `batch_ids_unavailable`.
    BatchIdsUnavailable => "batch_ids_unavailable",
    /// `batch_send_failures`.
    BatchSendFailures => "batch_send_failures",
    /// `batches_acked`.
    BatchesAcked => "batches_acked",
    /// `batches_deferred_breaker`.
    BatchesDeferredBreaker => "batches_deferred_breaker",
    /// `batches_rejected`.
    BatchesRejected => "batches_rejected",
    /// `browser_decisions_discarded_no_collector`.
    BrowserDecisionsDiscardedNoCollector => "browser_decisions_discarded_no_collector",
    /// `browser_decisions_relayed`.
    BrowserDecisionsRelayed => "browser_decisions_relayed",
    /// `browser_report_relay_failures`.
    BrowserReportRelayFailures => "browser_report_relay_failures",
    /// `browser_reports_rejected`.
    BrowserReportsRejected => "browser_reports_rejected",
    /// `browser_reports_relayed`.
    BrowserReportsRelayed => "browser_reports_relayed",
    /// `config_loads`.
    ConfigLoads => "config_loads",
    /// `config_refresh_failures`.
    ConfigRefreshFailures => "config_refresh_failures",
    /// `decisions_browser`.
    DecisionsBrowser => "decisions_browser",
    /// `decisions_cached`.
    DecisionsCached => "decisions_cached",
    /// `decisions_full`.
    DecisionsFull => "decisions_full",
    /// `decisions_partial`.
    DecisionsPartial => "decisions_partial",
    /// `decisions_static`.
    DecisionsStatic => "decisions_static",
    /// `decisions_static_empty`.
    DecisionsStaticEmpty => "decisions_static_empty",
    /// `deltas_dropped_outbox_full`.
    DeltasDroppedOutboxFull => "deltas_dropped_outbox_full",
    /// `events_accepted`.
    EventsAccepted => "events_accepted",
    /// `events_capped`.
    EventsCapped => "events_capped",
    /// `events_deferred_no_config`.
    EventsDeferredNoConfig => "events_deferred_no_config",
    /// `events_discarded_no_collector`.
    EventsDiscardedNoCollector => "events_discarded_no_collector",
    /// `events_dropped`.
    EventsDropped => "events_dropped",
    /// `events_duplicate`.
    EventsDuplicate => "events_duplicate",
    /// `events_rejected_by_collector`.
    EventsRejectedByCollector => "events_rejected_by_collector",
    /// `events_rejected_invalid`.
    EventsRejectedInvalid => "events_rejected_invalid",
    /// `events_rejected_too_large`.
    EventsRejectedTooLarge => "events_rejected_too_large",
    /// `fallback_cached`.
    FallbackCached => "fallback_cached",
    /// `fallback_static`.
    FallbackStatic => "fallback_static",
    /// `hot_copies_stale`.
    HotCopiesStale => "hot_copies_stale",
    /// `internal_errors`.
    InternalErrors => "internal_errors",
    /// `kv_binding_errors`.
    KvBindingErrors => "kv_binding_errors",
    /// `kv_put_errors`.
    KvPutErrors => "kv_put_errors",
    /// `kv_puts`.
    KvPuts => "kv_puts",
    /// `kv_puts_skipped_breaker`.
    KvPutsSkippedBreaker => "kv_puts_skipped_breaker",
    /// `kv_read_errors`.
    KvReadErrors => "kv_read_errors",
    /// `kv_read_timeouts`.
    KvReadTimeouts => "kv_read_timeouts",
    /// `kv_reads`.
    KvReads => "kv_reads",
    /// `kv_reads_skipped_breaker`.
    KvReadsSkippedBreaker => "kv_reads_skipped_breaker",
    /// `kv_writes_coalesced`.
    KvWritesCoalesced => "kv_writes_coalesced",
    /// `origin_errors`.
    OriginErrors => "origin_errors",
    /// `pages_filled`.
    PagesFilled => "pages_filled",
    /// `rate_limit_errors`.
    RateLimitErrors => "rate_limit_errors",
    /// `rate_limit_unbound`.
    RateLimitUnbound => "rate_limit_unbound",
    /// `recommendations_rejected`.
    RecommendationsRejected => "recommendations_rejected",
    /// `refused_unsafe_config`.
    RefusedUnsafeConfig => "refused_unsafe_config",
    /// `segment_cache_hits`.
    SegmentCacheHits => "segment_cache_hits",
    /// `server_sessions_refused`.
    ServerSessionsRefused => "server_sessions_refused",
    /// `shadow_evaluations`.
    ShadowEvaluations => "shadow_evaluations",
    /// `shadow_load_failures`.
    ShadowLoadFailures => "shadow_load_failures",
    /// `shadow_skipped_budget`.
    ShadowSkippedBudget => "shadow_skipped_budget",
    /// `shard_cache_hits`.
    ShardCacheHits => "shard_cache_hits",
    /// `shard_evictions`.
    ShardEvictions => "shard_evictions",
    /// `shard_read_failures`.
    ShardReadFailures => "shard_read_failures",
    /// `shard_reads`.
    ShardReads => "shard_reads",
    /// `shards_invalid`.
    ShardsInvalid => "shards_invalid",
    /// `shards_missing`.
    ShardsMissing => "shards_missing",
    /// `throttled_client`.
    ThrottledClient => "throttled_client",
    /// `throttled_new_session`.
    ThrottledNewSession => "throttled_new_session",
    /// `throttled_session`.
    ThrottledSession => "throttled_session",
}

thread_local! {
    static COUNTERS: RefCell<Vec<u64>> = RefCell::new(vec![0; Counter::ALL.len()]);
}

/// Adds `n` to a counter.
pub fn add(c: Counter, n: u64) {
    COUNTERS.with(|v| {
        if let Some(x) = v.borrow_mut().get_mut(c as usize) {
            *x = x.saturating_add(n);
        }
    });
}

/// Adds one to a counter.
pub fn inc(c: Counter) {
    add(c, 1);
}

/// A counter's value.
pub fn get(c: Counter) -> u64 {
    COUNTERS.with(|v| v.borrow().get(c as usize).copied().unwrap_or(0))
}

/// Every counter by name (zeros included).
pub fn snapshot() -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = Counter::ALL
        .iter()
        .map(|c| (c.name().to_string(), get(*c).into()))
        .collect();
    serde_json::Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_sorted_and_counted_by_variant() {
        let names: Vec<&str> = Counter::ALL.iter().map(|c| c.name()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names, sorted);
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
        inc(Counter::PagesFilled);
        add(Counter::PagesFilled, 2);
        assert_eq!(get(Counter::PagesFilled), 3);
        assert_eq!(snapshot()["pages_filled"], 3);
        assert_eq!(snapshot()["origin_errors"], 0);
    }
}
