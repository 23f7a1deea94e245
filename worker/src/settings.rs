//! Settings: every knob the worker reads from its environment (wrangler.toml `[vars]` and
//! secrets), with defaults, parsed once per request (cheap: a handful of env lookups).
//!
//! Secrets have no defaults outside development: without `SESSION_SECRET` (and, when a
//! collector is configured, `COLLECTOR_SECRET`) of at least 16 bytes, or with the dev values
//! committed in this repository, the worker refuses to serve its API ([`Settings::refusal`])
//! unless `EDGEREC_DEV=1` (set by `make dev` and the tests) says this is a development run.

use worker::Env;

/// The worker's configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// HMAC key for session cookies (secret `SESSION_SECRET`).
    pub session_secret: String,
    /// HMAC key for aggregate batches (secret `COLLECTOR_SECRET`).
    pub collector_secret: String,
    /// Key server-to-server clients present to name their own sessions (secret
    /// `SERVER_API_KEY`; unset = header sessions are refused).
    pub server_api_key: Option<String>,
    /// A development run (`EDGEREC_DEV=1`): the dev secrets are allowed.
    pub dev: bool,
    /// Why the worker must not serve (unsafe secrets outside development).
    pub refusal: Option<String>,
    /// Where interception proxies to (`ORIGIN_URL`).
    pub origin_url: Option<String>,
    /// Where aggregate batches go (`COLLECTOR_URL`; unset = aggregates are only counted).
    pub collector_url: Option<String>,
    /// Time budget for a session KV read before falling back, ms (`KV_BUDGET_MS`).
    pub kv_budget_ms: u64,
    /// Time budget for loading rules and the model head from KV, ms (`CONFIG_BUDGET_MS`).
    pub config_budget_ms: u64,
    /// Time budget for a decision's one bulk read of model shards, ms (`SHARD_BUDGET_MS`).
    pub shard_budget_ms: u64,
    /// Most memory the isolate's cache of decoded model shards holds, bytes
    /// (`SHARD_CACHE_BYTES`; 16 MiB by default: with the head and the worker itself, far
    /// below the 128 MB an isolate may use, whatever the catalog's size).
    pub shard_cache_bytes: usize,
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
    /// Share of sessions whose events are traced for `simulate`, parts per million
    /// (`TRACE_RATE_PPM`, default 10,000 = 1%; 0 = none). Traces ship under a keyed hash of the
    /// session ([`Settings::trace_key`]), never its id.
    pub trace_rate_ppm: u32,
    /// Share of `full` decisions also decided with the pointer's shadow bundle, parts per
    /// million (`SHADOW_RATE_PPM`, default 10,000 = 1%; see `shadow`).
    pub shadow_rate_ppm: u32,
    /// Shadow evaluations per isolate per second at most (`SHADOW_MAX_PER_SECOND`, default 20).
    pub shadow_max_per_second: u32,
    /// No shadow when the served decision's µs plus the isolate's mean shadow µs would pass
    /// this (`SHADOW_CPU_BUDGET_US`, default 5,000: half the free plan's 10 ms).
    pub shadow_cpu_budget_us: u64,
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

/// The development secrets (`make dev`); refused unless `EDGEREC_DEV=1`.
pub const DEV_SESSION_SECRET: &str = "dev-session-secret";
/// See [`DEV_SESSION_SECRET`].
pub const DEV_COLLECTOR_SECRET: &str = "dev-collector-secret";
/// Shortest secret accepted outside development, bytes.
pub const MIN_SECRET_BYTES: usize = 16;

/// Why a secret may not be used outside development, if it may not.
fn unsafe_secret(name: &str, value: Option<&str>, dev_value: &str) -> Option<String> {
    match value {
        None => Some(format!("{name} is not set (wrangler secret put {name})")),
        Some(v) if v == dev_value => Some(format!(
            "{name} is the development value committed in the repository"
        )),
        Some(v) if v.len() < MIN_SECRET_BYTES => {
            Some(format!("{name} is shorter than {MIN_SECRET_BYTES} bytes"))
        }
        Some(_) => None,
    }
}

impl Settings {
    /// Reads the environment.
    pub fn from_env(env: &Env) -> Settings {
        let dev = var(env, "EDGEREC_DEV").as_deref() == Some("1");
        let session_secret = var(env, "SESSION_SECRET");
        let collector_secret = var(env, "COLLECTOR_SECRET");
        let collector_url = var(env, "COLLECTOR_URL");
        let refusal = if dev {
            None
        } else {
            unsafe_secret(
                "SESSION_SECRET",
                session_secret.as_deref(),
                DEV_SESSION_SECRET,
            )
            .or_else(|| {
                collector_url.as_ref().and_then(|_| {
                    unsafe_secret(
                        "COLLECTOR_SECRET",
                        collector_secret.as_deref(),
                        DEV_COLLECTOR_SECRET,
                    )
                })
            })
        };
        Settings {
            session_secret: session_secret.unwrap_or_else(|| DEV_SESSION_SECRET.into()),
            collector_secret: collector_secret.unwrap_or_else(|| DEV_COLLECTOR_SECRET.into()),
            server_api_key: var(env, "SERVER_API_KEY").filter(|k| k.len() >= MIN_SECRET_BYTES),
            dev,
            refusal,
            origin_url: var(env, "ORIGIN_URL"),
            collector_url,
            kv_budget_ms: num(env, "KV_BUDGET_MS", 50),
            config_budget_ms: num(env, "CONFIG_BUDGET_MS", 200),
            shard_budget_ms: num(env, "SHARD_BUDGET_MS", 200),
            shard_cache_bytes: num(env, "SHARD_CACHE_BYTES", 16 << 20),
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
            trace_rate_ppm: num(env, "TRACE_RATE_PPM", edgerec::trace::DEFAULT_RATE_PPM)
                .min(1_000_000),
            shadow_rate_ppm: num(env, "SHADOW_RATE_PPM", 10_000u32).min(1_000_000),
            shadow_max_per_second: num(env, "SHADOW_MAX_PER_SECOND", 20),
            shadow_cpu_budget_us: num(env, "SHADOW_CPU_BUDGET_US", 5_000),
        }
    }

    /// The key of trace pseudonyms: derived from `SESSION_SECRET` (so it never leaves the edge
    /// and needs no secret of its own), apart from the cookie signatures it also keys.
    pub fn trace_key(&self) -> String {
        format!("edgerec-trace:{}", self.session_secret)
    }

    /// The pseudonym a session's events are traced under, when it is in the sample.
    pub fn trace_of(&self, session_key: &str) -> Option<String> {
        edgerec::trace::sampled(session_key, self.trace_rate_ppm)
            .then(|| edgerec::trace::pseudonym(&self.trace_key(), session_key))
    }
}
