//! `edgerec-collector tally`: reads an interaction topic back from Kafka to its end and prints
//! per-item totals — the check an operator (or the end-to-end test) runs to reconcile what the
//! edge saw with what landed. Records are counted once per (batch id, item), as consumers
//! should; copies of a record (written by two collector instances, say) are counted as
//! `doubles`, so a reconciliation shows them instead of hiding them.

use edgerec::records::Interaction;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::ClientConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// What a topic holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    /// The topic read.
    pub topic: String,
    /// Per-item totals, each (batch id, item) counted once.
    pub items: BTreeMap<String, u64>,
    /// Records read.
    pub records: u64,
    /// Records that repeated an earlier (batch id, item).
    pub doubles: u64,
    /// Distinct batch ids.
    pub batches: usize,
    /// Partitions each item's records were on.
    pub partitions: BTreeMap<String, BTreeSet<i32>>,
    /// Batches whose records were on more than one partition (the collector puts a batch on
    /// one: `edgerec::records::Record::partition`).
    pub split_batches: usize,
}

/// Quiet time, once every partition reported its end, that ends the read.
const SETTLE: Duration = Duration::from_millis(1500);

/// Consumes `topic` from the earliest offset to the end of every partition (or until
/// `timeout`; then `Err` says how far it got).
pub fn tally(brokers: &str, topic: &str, timeout: Duration) -> Result<Tally, String> {
    let mut t = Tally {
        topic: topic.to_string(),
        ..Tally::default()
    };
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    let mut batches: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    read_to_end(brokers, topic, timeout, |m| {
        t.records += 1;
        // The value as the core's schema defines it; anything else is not counted.
        let Some(v) = m
            .payload()
            .and_then(|p| rmp_serde::from_slice::<Interaction>(p).ok())
        else {
            return;
        };
        let (item, count) = (v.item.as_ref(), v.count);
        let batch = header(m, "edgerec-batch-id").unwrap_or_default();
        t.partitions
            .entry(item.to_string())
            .or_default()
            .insert(m.partition());
        batches
            .entry(batch.clone())
            .or_default()
            .insert(m.partition());
        if seen.insert((batch, item.to_string())) {
            *t.items.entry(item.to_string()).or_insert(0) += count;
        } else {
            t.doubles += 1;
        }
    })?;
    t.batches = batches.len();
    t.split_batches = batches.values().filter(|p| p.len() > 1).count();
    Ok(t)
}

/// A record header's value as text.
pub fn header(m: &BorrowedMessage<'_>, key: &str) -> Option<String> {
    m.headers()
        .and_then(|h| h.iter().find(|h| h.key == key))
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Hands every record of `topic`, from the earliest offset, to `each`, and returns once every
/// partition reported its end and nothing new came for a moment (or `Err` at `timeout`).
pub fn read_to_end(
    brokers: &str,
    topic: &str,
    timeout: Duration,
    mut each: impl FnMut(&BorrowedMessage<'_>),
) -> Result<u64, String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("edgerec-tally-{}-{}", std::process::id(), unique()),
        )
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "2000")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .map_err(|e| e.to_string())?;
    consumer.subscribe(&[topic]).map_err(|e| e.to_string())?;
    let mut records = 0u64;
    let mut at_end: BTreeSet<i32> = BTreeSet::new();
    let mut last_news = Instant::now();
    let deadline = Instant::now() + timeout;
    loop {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(m)) => {
                last_news = Instant::now();
                at_end.remove(&m.partition());
                records += 1;
                each(&m);
            }
            None => {}
        }
        let assigned = consumer.assignment().map_or(0, |a| a.count());
        if assigned > 0 && at_end.len() >= assigned && last_news.elapsed() >= SETTLE {
            return Ok(records);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "not at the end of {topic} after {timeout:?} ({records} records read, {} of {assigned} partitions at their end)",
                at_end.len()
            ));
        }
    }
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
