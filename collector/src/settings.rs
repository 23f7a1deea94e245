//! Settings, read once at start-up from the environment.

use std::net::SocketAddr;
use std::path::PathBuf;

/// The collector's configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listen address (`COLLECTOR_ADDR`, default 127.0.0.1:8789).
    pub addr: SocketAddr,
    /// HMAC key shared with the edge (`COLLECTOR_SECRET`).
    pub secret: String,
    /// Largest accepted |now − x-edgerec-timestamp|, ms (`MAX_SKEW_MS`, default 5 min).
    pub max_skew_ms: u64,
    /// Largest accepted body, bytes (`MAX_BODY_BYTES`, default 1 MiB).
    pub max_body_bytes: usize,
    /// Dedup window: batch ids remembered (`DEDUP_MAX_IDS`, default 100,000) ...
    pub dedup_max_ids: usize,
    /// ... for at most this long, ms (`DEDUP_MAX_AGE_MS`, default 24 h).
    pub dedup_max_age_ms: u64,
    /// Topic prefix (`TOPIC_PREFIX`, default `edgerec`).
    pub topic_prefix: String,
    /// Kafka brokers (`KAFKA_BROKERS`); unset = embedded file mode.
    pub kafka: Option<crate::kafka::KafkaSettings>,
    /// Records file for the embedded mode (`OUTPUT_FILE`, default `data/collector/records.jsonl`).
    pub output_file: PathBuf,
    /// A batch id claimed longer ago than this is taken over by a retry, ms
    /// (`DEDUP_CLAIM_MAX_MS`, default 60 s; writes finish or fail well before).
    pub dedup_claim_max_ms: u64,
    /// A client must send its request headers within this time, ms (`HEADER_TIMEOUT_MS`,
    /// default 5 s); also the longest an idle keep-alive connection is held.
    pub header_timeout_ms: u64,
    /// ... and its body within this time, ms (`BODY_TIMEOUT_MS`, default 10 s).
    pub body_timeout_ms: u64,
    /// Most client connections open at once (`MAX_CONNECTIONS`, default 1024); more wait in
    /// the listen backlog.
    pub max_connections: usize,
}

/// Shortest accepted `COLLECTOR_SECRET`, bytes.
pub const MIN_SECRET_BYTES: usize = 16;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn num<T: std::str::FromStr>(name: &str, default: T) -> T {
    var(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

impl Settings {
    /// Reads the environment.
    pub fn from_env() -> Result<Settings, String> {
        let addr = var("COLLECTOR_ADDR").unwrap_or_else(|| "127.0.0.1:8789".into());
        // No default secret: a collector anyone can sign for would take anyone's counters.
        let secret = var("COLLECTOR_SECRET")
            .ok_or("COLLECTOR_SECRET is not set (the HMAC key shared with the edge)")?;
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "COLLECTOR_SECRET is shorter than {MIN_SECRET_BYTES} bytes"
            ));
        }
        Ok(Settings {
            addr: addr
                .parse()
                .map_err(|e| format!("COLLECTOR_ADDR {addr:?}: {e}"))?,
            secret,
            max_skew_ms: num("MAX_SKEW_MS", 300_000),
            max_body_bytes: num("MAX_BODY_BYTES", 1 << 20),
            dedup_max_ids: num("DEDUP_MAX_IDS", 100_000),
            dedup_max_age_ms: num("DEDUP_MAX_AGE_MS", 24 * 3600 * 1000),
            topic_prefix: var("TOPIC_PREFIX").unwrap_or_else(|| "edgerec".into()),
            kafka: var("KAFKA_BROKERS").map(|brokers| crate::kafka::KafkaSettings {
                brokers,
                prefix: var("TOPIC_PREFIX").unwrap_or_else(|| "edgerec".into()),
                partitions: num("KAFKA_PARTITIONS", 4),
                timeout_ms: num("KAFKA_TIMEOUT_MS", 5000),
                queue_max: num("KAFKA_QUEUE_MAX", 100_000),
            }),
            output_file: var("OUTPUT_FILE")
                .unwrap_or_else(|| "data/collector/records.jsonl".into())
                .into(),
            dedup_claim_max_ms: num("DEDUP_CLAIM_MAX_MS", 60_000),
            header_timeout_ms: num("HEADER_TIMEOUT_MS", 5_000),
            body_timeout_ms: num("BODY_TIMEOUT_MS", 10_000),
            max_connections: num("MAX_CONNECTIONS", 1024usize).max(1),
        })
    }
}
