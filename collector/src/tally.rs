//! `edgerec-collector tally`: reads interaction records back from Kafka and prints per-item
//! totals — the check an operator (or the end-to-end test) runs to reconcile what the edge saw
//! with what landed, deduplicating by batch id as consumers should.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::ClientConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Consumes `topic` from the earliest offset until `expect` counts are seen or `timeout`
/// passes; returns per-item totals (each batch id counted once per item) as JSON.
pub fn tally(
    brokers: &str,
    topic: &str,
    expect: u64,
    timeout: Duration,
) -> Result<serde_json::Value, String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("edgerec-tally-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "2000")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| e.to_string())?;
    consumer.subscribe(&[topic]).map_err(|e| e.to_string())?;
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    let deadline = Instant::now() + timeout;
    while totals.values().sum::<u64>() < expect && Instant::now() < deadline {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let Some(payload) = m.payload() else { continue };
        let Ok(v) = rmp_serde::from_slice::<serde_json::Value>(payload) else {
            continue;
        };
        let (Some(item), Some(count)) = (v["item"].as_str(), v["count"].as_u64()) else {
            continue;
        };
        let batch = m
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "edgerec-batch-id"))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        if seen.insert((batch, item.to_string())) {
            *totals.entry(item.to_string()).or_insert(0) += count;
        }
    }
    Ok(serde_json::json!({ "topic": topic, "items": totals }))
}
