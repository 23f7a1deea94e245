//! A batch becomes records: one topic per interaction kind, one for decision counters, one for
//! item→item transitions, named `<prefix>.<kind>`; plus `<prefix>.deadletter`.
//!
//! Value schema (MessagePack map, named fields; header `edgerec-schema: 1`,
//! `content-type: application/msgpack`, `edgerec-batch-id: <id>`):
//! - `<p>.views|clicks|add_to_carts|purchases|impressions`:
//!   `{v, batch, source, ts, item, count}`
//! - `<p>.transitions`: `{v, batch, source, ts, from, to, count}`
//! - `<p>.decisions`: `{v, batch, source, ts, decisions, events, duplicates, rule_hits, tiers,
//!   variants}`
//! - `<p>.deadletter`: `{v, reason, fields, received_ms, body}`
//!
//! Keys: interactions and transitions are keyed `<item>#<n>` with `n = FNV-1a(batch id) mod 8`,
//! so one hot item's counts spread over up to 8 partitions instead of piling onto one; the
//! values are counters, so a consumer sums them per item whatever the partition. Decision
//! counters are keyed by batch id.

use edgerec::aggregate::{AggregateBatch, VariantCounts};
use edgerec::event::EventKind;
use edgerec::FieldError;
use serde::Serialize;
use std::collections::BTreeMap;

/// Schema version of record values.
pub const SCHEMA_VERSION: u8 = 1;
/// Partitions a hot item's key spreads over.
pub const KEY_SPREAD: u64 = 8;

/// One record for the sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Topic.
    pub topic: String,
    /// Partitioning key.
    pub key: String,
    /// MessagePack value.
    pub value: Vec<u8>,
    /// Headers.
    pub headers: Vec<(&'static str, String)>,
}

/// The topic suffixes, in a fixed order (created at start-up).
pub const KINDS: [&str; 8] = [
    "views",
    "clicks",
    "add_to_carts",
    "purchases",
    "impressions",
    "decisions",
    "transitions",
    "deadletter",
];

fn kind_topic(kind: EventKind) -> &'static str {
    match kind {
        EventKind::View => "views",
        EventKind::Click => "clicks",
        EventKind::AddToCart => "add_to_carts",
        EventKind::Purchase => "purchases",
        EventKind::Impression => "impressions",
    }
}

#[derive(Serialize)]
struct Interaction<'a> {
    v: u8,
    batch: &'a str,
    source: &'a str,
    ts: u64,
    item: &'a str,
    count: u64,
}

#[derive(Serialize)]
struct Transition<'a> {
    v: u8,
    batch: &'a str,
    source: &'a str,
    ts: u64,
    from: &'a str,
    to: &'a str,
    count: u64,
}

#[derive(Serialize)]
struct Decisions<'a> {
    v: u8,
    batch: &'a str,
    source: &'a str,
    ts: u64,
    decisions: u64,
    events: u64,
    duplicates: u64,
    rule_hits: &'a BTreeMap<String, u64>,
    tiers: &'a BTreeMap<String, u64>,
    variants: &'a BTreeMap<String, VariantCounts>,
}

#[derive(Serialize)]
struct DeadLetter<'a> {
    v: u8,
    reason: &'a str,
    fields: &'a [FieldError],
    received_ms: u64,
    #[serde(with = "serde_bytes_compat")]
    body: &'a [u8],
}

/// Bytes as a MessagePack bin (without pulling serde_bytes in for one field).
mod serde_bytes_compat {
    pub fn serialize<S: serde::Serializer>(b: &&[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }
}

fn spread(batch_id: &str) -> u64 {
    edgerec::experiment::fnv1a64(&[batch_id.as_bytes()]) % KEY_SPREAD
}

fn headers(batch_id: &str) -> Vec<(&'static str, String)> {
    vec![
        ("edgerec-batch-id", batch_id.to_string()),
        ("edgerec-schema", SCHEMA_VERSION.to_string()),
        ("content-type", "application/msgpack".to_string()),
    ]
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(v).unwrap_or_default()
}

/// The records of a validated batch.
pub fn from_batch(b: &AggregateBatch, prefix: &str) -> Vec<Record> {
    let n = spread(&b.id);
    let mut out = Vec::new();
    for (item, counts) in &b.delta.items {
        for kind in EventKind::ALL {
            let count = counts.get(kind);
            if count == 0 {
                continue;
            }
            out.push(Record {
                topic: format!("{prefix}.{}", kind_topic(kind)),
                key: format!("{item}#{n}"),
                value: encode(&Interaction {
                    v: SCHEMA_VERSION,
                    batch: &b.id,
                    source: &b.source,
                    ts: b.created_ms,
                    item,
                    count,
                }),
                headers: headers(&b.id),
            });
        }
    }
    for (from, tos) in &b.delta.transitions {
        for (to, &count) in tos {
            out.push(Record {
                topic: format!("{prefix}.transitions"),
                key: format!("{from}#{n}"),
                value: encode(&Transition {
                    v: SCHEMA_VERSION,
                    batch: &b.id,
                    source: &b.source,
                    ts: b.created_ms,
                    from,
                    to,
                    count,
                }),
                headers: headers(&b.id),
            });
        }
    }
    let d = &b.delta;
    if d.decisions + d.events + d.duplicates > 0
        || !d.rule_hits.is_empty()
        || !d.tiers.is_empty()
        || !d.variants.is_empty()
    {
        out.push(Record {
            topic: format!("{prefix}.decisions"),
            key: b.id.clone(),
            value: encode(&Decisions {
                v: SCHEMA_VERSION,
                batch: &b.id,
                source: &b.source,
                ts: b.created_ms,
                decisions: d.decisions,
                events: d.events,
                duplicates: d.duplicates,
                rule_hits: &d.rule_hits,
                tiers: &d.tiers,
                variants: &d.variants,
            }),
            headers: headers(&b.id),
        });
    }
    out
}

/// A dead-letter record for an authenticated batch that was refused.
pub fn dead_letter(
    prefix: &str,
    reason: &str,
    fields: &[FieldError],
    body: &[u8],
    now_ms: u64,
) -> Record {
    Record {
        topic: format!("{prefix}.deadletter"),
        key: reason.to_string(),
        value: encode(&DeadLetter {
            v: SCHEMA_VERSION,
            reason,
            fields,
            received_ms: now_ms,
            body,
        }),
        headers: vec![
            ("edgerec-schema", SCHEMA_VERSION.to_string()),
            ("content-type", "application/msgpack".to_string()),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgerec::AggregateDelta;

    #[test]
    fn one_record_per_counter_and_hot_keys_spread() {
        let mut d = AggregateDelta::default();
        d.count_event("a", EventKind::View);
        d.count_event("a", EventKind::View);
        d.count_event("a", EventKind::Purchase);
        d.count_transition("a", "b");
        d.count_rule("r");
        d.decisions = 1;
        let b = AggregateBatch::new("batch-1", "edge", 5, d);
        let recs = from_batch(&b, "edgerec");
        let topics: Vec<_> = recs.iter().map(|r| r.topic.as_str()).collect();
        assert_eq!(
            topics,
            [
                "edgerec.views",
                "edgerec.purchases",
                "edgerec.transitions",
                "edgerec.decisions"
            ]
        );
        assert!(recs.iter().all(|r| r
            .headers
            .iter()
            .any(|h| h == &("edgerec-batch-id", "batch-1".to_string()))));
        // Across many batches, one item's records use every key of its spread.
        let keys: std::collections::BTreeSet<String> = (0..200)
            .flat_map(|i| {
                from_batch(
                    &AggregateBatch::new(format!("b{i}"), "e", 1, b.delta.clone()),
                    "p",
                )
            })
            .filter(|r| r.topic == "p.views")
            .map(|r| r.key)
            .collect();
        assert_eq!(keys.len() as u64, KEY_SPREAD);
    }
}
