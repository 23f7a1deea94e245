//! Settings: every knob the worker reads from its environment (wrangler.toml `[vars]` and
//! secrets), with defaults, parsed once per request (cheap: a handful of env lookups).

use worker::Env;

/// The worker's configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// HMAC key for session cookies (secret `SESSION_SECRET`).
    pub session_secret: String,
    /// HMAC key for aggregate batches (secret `COLLECTOR_SECRET`).
    pub collector_secret: String,
    /// Where interception proxies to (`ORIGIN_URL`).
    pub origin_url: Option<String>,
    /// Where aggregate batches go (`COLLECTOR_URL`; unset = aggregates are only counted).
    pub collector_url: Option<String>,
    /// Time budget for a session KV read before falling back, ms (`KV_BUDGET_MS`).
    pub kv_budget_ms: u64,
    /// Time budget for loading rules and catalog from KV, ms (`CONFIG_BUDGET_MS`).
    pub config_budget_ms: u64,
    /// How long a loaded config is trusted before the pointer is re-read, ms (`CONFIG_TTL_MS`).
    pub config_ttl_ms: u64,
    /// Session blobs expire after this idle time, s (`SESSION_TTL_S`, KV minimum 60).
    pub session_ttl_s: u64,
    /// Minimum spacing of KV writes to one session key, ms (`KV_WRITE_INTERVAL_MS`; the
    /// platform allows one write per second per key).
    pub kv_write_interval_ms: u64,
    /// Flush aggregates when the buffer holds this many keys (`FLUSH_MAX_KEYS`).
    pub flush_max_keys: usize,
    /// ... or when its oldest counter is this old, ms (`FLUSH_MAX_AGE_MS`).
    pub flush_max_age_ms: u64,
    /// Unacknowledged batches kept for retry (`MAX_UNACKED_BATCHES`); older ones are dropped
    /// and counted.
    pub max_unacked_batches: usize,
    /// Largest accepted request body, bytes (`MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// Consecutive failures that open a circuit breaker (`BREAKER_THRESHOLD`).
    pub breaker_threshold: u32,
    /// How long an open breaker skips its dependency, ms (`BREAKER_COOLDOWN_MS`).
    pub breaker_cooldown_ms: u64,
    /// Per-segment cache lifetime for the `cached` tier, ms (`SEGMENT_TTL_MS`).
    pub segment_ttl_ms: u64,
}

fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .map(|v| v.to_string())
        .or_else(|_| env.secret(name).map(|v| v.to_string()))
        .ok()
        .filter(|s| !s.is_empty())
}

fn num<T: std::str::FromStr>(env: &Env, name: &str, default: T) -> T {
    var(env, name)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

impl Settings {
    /// Reads the environment.
    pub fn from_env(env: &Env) -> Settings {
        Settings {
            session_secret: var(env, "SESSION_SECRET")
                .unwrap_or_else(|| "dev-session-secret".into()),
            collector_secret: var(env, "COLLECTOR_SECRET")
                .unwrap_or_else(|| "dev-collector-secret".into()),
            origin_url: var(env, "ORIGIN_URL"),
            collector_url: var(env, "COLLECTOR_URL"),
            kv_budget_ms: num(env, "KV_BUDGET_MS", 50),
            config_budget_ms: num(env, "CONFIG_BUDGET_MS", 200),
            config_ttl_ms: num(env, "CONFIG_TTL_MS", 30_000),
            session_ttl_s: num(env, "SESSION_TTL_S", 1800u64).max(60),
            kv_write_interval_ms: num(env, "KV_WRITE_INTERVAL_MS", 1000),
            flush_max_keys: num(env, "FLUSH_MAX_KEYS", 2000),
            flush_max_age_ms: num(env, "FLUSH_MAX_AGE_MS", 10_000),
            max_unacked_batches: num(env, "MAX_UNACKED_BATCHES", 16),
            max_body_bytes: num(env, "MAX_BODY_BYTES", 64 * 1024),
            breaker_threshold: num(env, "BREAKER_THRESHOLD", 3),
            breaker_cooldown_ms: num(env, "BREAKER_COOLDOWN_MS", 10_000),
            segment_ttl_ms: num(env, "SEGMENT_TTL_MS", 10_000),
        }
    }
}
