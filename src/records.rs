//! What the origin keeps of a batch: records, one topic per interaction kind, one for decision
//! counters, one for item→item transitions, named `<prefix>.<topic>`; plus `<prefix>.deadletter`.
//! The collector writes them ([`from_batch`], [`dead_letter`]) and the trainer reads them back
//! ([`Interaction`], [`Transition`]): one schema, defined here.
//!
//! Value schema (MessagePack map, named fields; in the collector's embedded file the same map
//! as JSON; header `edgerec-schema: 1`, `content-type: application/msgpack`,
//! `edgerec-batch-id: <id>`):
//! - `<p>.views|clicks|add_to_carts|purchases|impressions`: [`Interaction`]
//!   `{v, batch, source, ts, item, count}`
//! - `<p>.transitions`: [`Transition`] `{v, batch, source, ts, from, to, count}`
//! - `<p>.decisions`: [`Decisions`] `{v, batch, source, ts, decisions, events, duplicates,
//!   rule_hits, tiers, variants, traces_dropped, shadow}`
//! - `<p>.sessions`: [`SessionTrace`] `{v, batch, source, ts, session, start_ms, variant,
//!   events: [{kind, item, category, offset_ms, tier}]}`: one sampled session's events in one
//!   batch, keyed by its pseudonym ([`crate::trace`])
//! - `<p>.experiments`: [`ExperimentArm`] `{v, batch, source, ts, key, tally}`: one
//!   `experiment/variant`'s per-session metric sums in one batch, keyed by that key
//! - `<p>.deadletter`: [`DeadLetter`] `{v, reason, fields, received_ms, body}`
//!
//! Keys: interactions and transitions are keyed `<item>#<n>` with `n = FNV-1a(batch id) mod 8`,
//! so one hot item's counts spread over up to 8 keys instead of piling onto one; the values
//! are counters, so a consumer sums them per item whatever the partition. Decision counters are
//! keyed by batch id.
//!
//! Partitions: every record of a batch goes to partition `FNV-1a(batch id) mod P` of its topic
//! ([`Record::partition`]), not to its key's partition. A request then waits for one produce
//! request per topic instead of one per (topic, partition) its keys hash to (the producer
//! sends one request per partition, at most 5 in flight per broker when idempotent), and a
//! hot item still spreads over every partition, batch by batch. A resent batch lands on the
//! same partitions as its first copy.

use crate::aggregate::{AggregateBatch, VariantCounts};
use crate::error::FieldError;
use crate::event::EventKind;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Schema version of record values.
pub const SCHEMA_VERSION: u8 = 1;
/// Partitions a hot item's key spreads over.
pub const KEY_SPREAD: u64 = 8;
/// Most records [`from_batch`] makes of one valid batch: every key an item with all five
/// interaction kinds, one per traced session, plus the decisions record. A producer queue must hold at least this many.
pub const MAX_RECORDS_PER_BATCH: usize =
    crate::aggregate::MAX_KEYS * EventKind::ALL.len() + crate::trace::MAX_SESSIONS_PER_BATCH + 1;

/// The topics, named `<prefix>.<suffix>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Item views.
    Views,
    /// Clicks on items.
    Clicks,
    /// Add-to-cart actions.
    AddToCarts,
    /// Purchases.
    Purchases,
    /// Impressions of recommended items.
    Impressions,
    /// Decision counters (rule hits, tiers, variants).
    Decisions,
    /// Item → item transitions within sessions.
    Transitions,
    /// Sampled session traces ([`crate::trace`]).
    Sessions,
    /// Per-variant experiment metric sums ([`crate::experiment::metrics`]).
    Experiments,
    /// Recommended items shown and clicked, per anchor and position (exposure feedback).
    Shown,
    /// Authenticated batches that were refused, with why.
    DeadLetter,
}

impl Topic {
    /// Every topic, in a fixed order (the collector creates them at start-up).
    pub const ALL: [Topic; 11] = [
        Topic::Views,
        Topic::Clicks,
        Topic::AddToCarts,
        Topic::Purchases,
        Topic::Impressions,
        Topic::Decisions,
        Topic::Transitions,
        Topic::Sessions,
        Topic::Experiments,
        Topic::Shown,
        Topic::DeadLetter,
    ];

    /// What follows the prefix and the dot.
    pub fn suffix(self) -> &'static str {
        match self {
            Topic::Views => "views",
            Topic::Clicks => "clicks",
            Topic::AddToCarts => "add_to_carts",
            Topic::Purchases => "purchases",
            Topic::Impressions => "impressions",
            Topic::Decisions => "decisions",
            Topic::Transitions => "transitions",
            Topic::Sessions => "sessions",
            Topic::Experiments => "experiments",
            Topic::Shown => "shown",
            Topic::DeadLetter => "deadletter",
        }
    }

    /// The full topic name under a prefix.
    pub fn name(self, prefix: &str) -> String {
        format!("{prefix}.{}", self.suffix())
    }

    /// The topic a name denotes under `prefix`, if any.
    pub fn parse(prefix: &str, name: &str) -> Option<Topic> {
        let suffix = name.strip_prefix(prefix)?.strip_prefix('.')?;
        Topic::ALL.into_iter().find(|t| t.suffix() == suffix)
    }

    /// The topic of an interaction kind.
    pub fn of_kind(kind: EventKind) -> Topic {
        match kind {
            EventKind::View => Topic::Views,
            EventKind::Click => Topic::Clicks,
            EventKind::AddToCart => Topic::AddToCarts,
            EventKind::Purchase => Topic::Purchases,
            EventKind::Impression => Topic::Impressions,
        }
    }

    /// The interaction kind a topic carries, if it carries one.
    pub fn kind(self) -> Option<EventKind> {
        EventKind::ALL
            .into_iter()
            .find(|k| Topic::of_kind(*k) == self)
    }
}

/// One record for a sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Topic name.
    pub topic: String,
    /// Partitioning key.
    pub key: String,
    /// MessagePack value.
    pub value: Vec<u8>,
    /// Headers.
    pub headers: Vec<(&'static str, String)>,
    /// FNV-1a of the batch id (of the reason, for a dead letter): see [`Record::partition`].
    pub partition_hash: u64,
}

impl Record {
    /// The partition of its topic this record goes to, when the topic has `partitions`.
    pub fn partition(&self, partitions: i32) -> i32 {
        (self.partition_hash % partitions.max(1) as u64) as i32
    }
}

/// A value of an interaction topic: `count` interactions of one kind with `item`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interaction<'a> {
    /// Schema version.
    pub v: u8,
    /// Batch id.
    #[serde(default)]
    pub batch: Cow<'a, str>,
    /// Who made the batch (`edge`, `browser`).
    #[serde(default)]
    pub source: Cow<'a, str>,
    /// When the batch was made, Unix ms.
    pub ts: u64,
    /// Item id.
    pub item: Cow<'a, str>,
    /// How many.
    pub count: u64,
}

/// A value of the transitions topic: `count` sessions went from `from` to `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition<'a> {
    /// Schema version.
    pub v: u8,
    /// Batch id.
    #[serde(default)]
    pub batch: Cow<'a, str>,
    /// Who made the batch.
    #[serde(default)]
    pub source: Cow<'a, str>,
    /// When the batch was made, Unix ms.
    pub ts: u64,
    /// Item left.
    pub from: Cow<'a, str>,
    /// Item reached.
    pub to: Cow<'a, str>,
    /// How many.
    pub count: u64,
}

/// A value of the decisions topic: a batch's decision counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decisions<'a> {
    /// Schema version.
    pub v: u8,
    /// Batch id.
    pub batch: Cow<'a, str>,
    /// Who made the batch.
    pub source: Cow<'a, str>,
    /// When the batch was made, Unix ms.
    pub ts: u64,
    /// Decisions made.
    pub decisions: u64,
    /// Events accepted.
    pub events: u64,
    /// Redelivered events ignored.
    pub duplicates: u64,
    /// Rule id → decisions it fired in.
    pub rule_hits: Cow<'a, BTreeMap<std::sync::Arc<str>, u64>>,
    /// Tier → decisions served by it.
    pub tiers: Cow<'a, BTreeMap<String, u64>>,
    /// Variant → its counters.
    pub variants: Cow<'a, BTreeMap<String, VariantCounts>>,
    /// Traced events left out ([`crate::aggregate::AggregateDelta::traces_dropped`]).
    #[serde(default)]
    pub traces_dropped: u64,
    /// Shadow bundle hash → shadow evaluation counters.
    #[serde(default)]
    pub shadow: Cow<'a, BTreeMap<String, crate::aggregate::ShadowCounts>>,
}

/// A value of the sessions topic: one sampled session's events that arrived in one batch (a
/// session spans batches; readers join fragments by `session`, see [`crate::trace::Joiner`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionTrace<'a> {
    /// Schema version.
    pub v: u8,
    /// Batch id.
    #[serde(default)]
    pub batch: Cow<'a, str>,
    /// Who made the batch.
    #[serde(default)]
    pub source: Cow<'a, str>,
    /// When the batch was made, Unix ms.
    pub ts: u64,
    /// The session's pseudonym (a keyed hash of its id, never the id).
    pub session: Cow<'a, str>,
    /// Time origin of the events' offsets, Unix ms.
    pub start_ms: u64,
    /// Experiment variant served, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<Cow<'a, str>>,
    /// Events, time order.
    pub events: Cow<'a, [crate::trace::TraceEvent]>,
}

/// A value of the experiments topic: what one batch adds to one variant's sums.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentArm<'a> {
    /// Schema version.
    pub v: u8,
    /// Batch id.
    pub batch: Cow<'a, str>,
    /// Who made the batch.
    pub source: Cow<'a, str>,
    /// When the batch was made, Unix ms.
    pub ts: u64,
    /// `experiment/variant`.
    pub key: Cow<'a, str>,
    /// The sums.
    pub tally: crate::experiment::metrics::ArmTally,
}

/// A value of the shown topic: how often one batch saw `item` shown at position `pos` of
/// `from`'s related list, and clicked there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShownAt<'a> {
    /// Schema version.
    pub v: u8,
    /// Batch id.
    pub batch: Cow<'a, str>,
    /// Who made the batch.
    pub source: Cow<'a, str>,
    /// When the batch was made, Unix ms.
    pub ts: u64,
    /// The anchor whose related list showed it.
    pub from: Cow<'a, str>,
    /// The recommended item.
    pub item: Cow<'a, str>,
    /// Position bucket (0-based; the last bucket, [`crate::aggregate::LAST_POS_BUCKET`], holds
    /// every later position).
    pub pos: u8,
    /// Times shown there.
    pub impressions: u64,
    /// Times clicked there.
    pub clicks: u64,
}

/// A value of the dead-letter topic: a refused, authenticated batch and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter<'a> {
    /// Schema version.
    pub v: u8,
    /// Why it was refused.
    pub reason: Cow<'a, str>,
    /// The fields at fault.
    pub fields: Cow<'a, [FieldError]>,
    /// When it arrived, Unix ms.
    pub received_ms: u64,
    /// The request body as received.
    #[serde(borrow, with = "serde_bytes")]
    pub body: Cow<'a, [u8]>,
}

fn fnv(s: &str) -> u64 {
    crate::experiment::fnv1a64(&[s.as_bytes()])
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
    let hash = fnv(&b.id);
    let n = hash % KEY_SPREAD;
    let (batch, source) = (
        Cow::Borrowed(b.id.as_str()),
        Cow::Borrowed(b.source.as_str()),
    );
    let mut out = Vec::new();
    for (item, counts) in &b.delta.items {
        for kind in EventKind::ALL {
            let count = counts.get(kind);
            if count == 0 {
                continue;
            }
            out.push(Record {
                topic: Topic::of_kind(kind).name(prefix),
                key: format!("{item}#{n}"),
                value: encode(&Interaction {
                    v: SCHEMA_VERSION,
                    batch: batch.clone(),
                    source: source.clone(),
                    ts: b.created_ms,
                    item: Cow::Borrowed(item),
                    count,
                }),
                headers: headers(&b.id),
                partition_hash: hash,
            });
        }
    }
    for (from, tos) in &b.delta.transitions {
        for (to, &count) in tos {
            out.push(Record {
                topic: Topic::Transitions.name(prefix),
                key: format!("{from}#{n}"),
                value: encode(&Transition {
                    v: SCHEMA_VERSION,
                    batch: batch.clone(),
                    source: source.clone(),
                    ts: b.created_ms,
                    from: Cow::Borrowed(from),
                    to: Cow::Borrowed(to),
                    count,
                }),
                headers: headers(&b.id),
                partition_hash: hash,
            });
        }
    }
    for (session, f) in &b.delta.traces {
        out.push(Record {
            topic: Topic::Sessions.name(prefix),
            key: session.clone(),
            value: encode(&SessionTrace {
                v: SCHEMA_VERSION,
                batch: batch.clone(),
                source: source.clone(),
                ts: b.created_ms,
                session: Cow::Borrowed(session),
                start_ms: f.start_ms,
                variant: f.variant.as_deref().map(Cow::Borrowed),
                events: Cow::Borrowed(&f.events),
            }),
            headers: headers(&b.id),
            partition_hash: hash,
        });
    }
    for (key, tally) in &b.delta.experiments {
        out.push(Record {
            topic: Topic::Experiments.name(prefix),
            key: key.clone(),
            value: encode(&ExperimentArm {
                v: SCHEMA_VERSION,
                batch: batch.clone(),
                source: source.clone(),
                ts: b.created_ms,
                key: Cow::Borrowed(key),
                tally: *tally,
            }),
            headers: headers(&b.id),
            partition_hash: hash,
        });
    }
    for (from, items) in &b.delta.shown {
        for (item, at) in items {
            for (&pos, shown) in at {
                out.push(Record {
                    topic: Topic::Shown.name(prefix),
                    key: format!("{from}#{n}"),
                    value: encode(&ShownAt {
                        v: SCHEMA_VERSION,
                        batch: batch.clone(),
                        source: source.clone(),
                        ts: b.created_ms,
                        from: Cow::Borrowed(from),
                        item: Cow::Borrowed(item),
                        pos,
                        impressions: shown.impressions,
                        clicks: shown.clicks,
                    }),
                    headers: headers(&b.id),
                    partition_hash: hash,
                });
            }
        }
    }
    let d = &b.delta;
    if d.decisions + d.events + d.duplicates > 0
        || !d.rule_hits.is_empty()
        || !d.tiers.is_empty()
        || !d.variants.is_empty()
        || d.traces_dropped > 0
        || !d.shadow.is_empty()
    {
        out.push(Record {
            topic: Topic::Decisions.name(prefix),
            key: b.id.clone(),
            value: encode(&Decisions {
                v: SCHEMA_VERSION,
                batch,
                source,
                ts: b.created_ms,
                decisions: d.decisions,
                events: d.events,
                duplicates: d.duplicates,
                rule_hits: Cow::Borrowed(&d.rule_hits),
                tiers: Cow::Borrowed(&d.tiers),
                variants: Cow::Borrowed(&d.variants),
                traces_dropped: d.traces_dropped,
                shadow: Cow::Borrowed(&d.shadow),
            }),
            headers: headers(&b.id),
            partition_hash: hash,
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
        topic: Topic::DeadLetter.name(prefix),
        key: reason.to_string(),
        value: encode(&DeadLetter {
            v: SCHEMA_VERSION,
            reason: Cow::Borrowed(reason),
            fields: Cow::Borrowed(fields),
            received_ms: now_ms,
            body: Cow::Borrowed(body),
        }),
        headers: vec![
            ("edgerec-schema", SCHEMA_VERSION.to_string()),
            ("content-type", "application/msgpack".to_string()),
        ],
        partition_hash: fnv(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AggregateDelta;

    #[test]
    fn the_largest_valid_batch_makes_max_records_per_batch() {
        let mut d = AggregateDelta::default();
        for i in 0..crate::aggregate::MAX_KEYS {
            for kind in EventKind::ALL {
                d.count_event(&format!("i{i}"), kind);
            }
        }
        d.events = 1;
        for i in 0..crate::trace::MAX_SESSIONS_PER_BATCH {
            d.add_trace(
                &format!("p{i}"),
                vec![(EventKind::View, "i0".into(), None, 1)],
                None,
                "full",
            );
        }
        let b = AggregateBatch::new("largest", "e", 1, d);
        assert!(b.validate().is_ok());
        assert_eq!(from_batch(&b, "p").len(), MAX_RECORDS_PER_BATCH);
    }

    #[test]
    fn one_record_per_counter_and_hot_keys_spread() {
        let mut d = AggregateDelta::default();
        d.count_event("a", EventKind::View);
        d.count_event("a", EventKind::View);
        d.count_event("a", EventKind::Purchase);
        d.count_transition("a", "b");
        d.count_shown("a", "b", 2, EventKind::Impression);
        d.count_shown("a", "b", 2, EventKind::Click);
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
                "edgerec.shown",
                "edgerec.decisions"
            ]
        );
        let shown: ShownAt = rmp_serde::from_slice(&recs[3].value).unwrap();
        assert_eq!(
            (
                shown.from.as_ref(),
                shown.item.as_ref(),
                shown.pos,
                shown.impressions,
                shown.clicks
            ),
            ("a", "b", 2, 1, 1)
        );
        assert!(recs.iter().all(|r| r
            .headers
            .iter()
            .any(|h| h == &("edgerec-batch-id", "batch-1".to_string()))));
        // Read back with the same types: what was written is what a reader gets.
        let views: Interaction = rmp_serde::from_slice(&recs[0].value).unwrap();
        assert_eq!((views.item.as_ref(), views.count, views.v), ("a", 2, 1));
        assert_eq!(views.batch, "batch-1");
        let t: Transition = rmp_serde::from_slice(&recs[2].value).unwrap();
        assert_eq!((t.from.as_ref(), t.to.as_ref(), t.count), ("a", "b", 1));
        let dec: Decisions = rmp_serde::from_slice(&recs[4].value).unwrap();
        assert_eq!((dec.decisions, dec.rule_hits["r"]), (1, 1));
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
        // One partition per batch, whatever the keys; batches spread over all partitions.
        let parts = |id: &str| -> std::collections::BTreeSet<i32> {
            from_batch(&AggregateBatch::new(id, "e", 1, b.delta.clone()), "p")
                .iter()
                .map(|r| r.partition(4))
                .collect()
        };
        assert_eq!(parts("batch-1").len(), 1);
        let all: std::collections::BTreeSet<i32> =
            (0..40).flat_map(|i| parts(&format!("b{i}"))).collect();
        assert_eq!(all, (0..4).collect());
        let dl = dead_letter("p", "bad", &[], b"x", 1);
        assert_eq!(dl.partition(1), 0);
        assert!((0..3).contains(&dl.partition(3)));
        assert_eq!(dl.partition(0), 0, "a count below 1 is read as 1");
    }

    #[test]
    fn a_decisions_record_exactly_when_the_batch_has_decision_counters() {
        let has = |f: &dyn Fn(&mut AggregateDelta)| {
            let mut d = AggregateDelta::default();
            d.count_event("a", EventKind::View);
            f(&mut d);
            from_batch(&AggregateBatch::new("b", "edge", 1, d), "p")
                .iter()
                .any(|r| r.topic == "p.decisions")
        };
        assert!(!has(&|_| {}), "views alone: no decision counters");
        assert!(has(&|d| d.decisions = 1));
        assert!(has(&|d| d.events = 1));
        assert!(has(&|d| d.duplicates = 1));
        assert!(has(&|d| d.count_rule("r")));
        assert!(has(&|d| d.count_tier("full")));
        assert!(has(
            &|d| d.count_variant("e:v", crate::aggregate::VariantEvent::Exposure)
        ));
    }

    #[test]
    fn topic_names_parse_back_and_kinds_map_both_ways() {
        for t in Topic::ALL {
            assert_eq!(Topic::parse("shop.x", &t.name("shop.x")), Some(t));
        }
        for k in EventKind::ALL {
            assert_eq!(Topic::of_kind(k).kind(), Some(k));
        }
        let with_kind = Topic::ALL.iter().filter(|t| t.kind().is_some()).count();
        assert_eq!(with_kind, EventKind::ALL.len());
        assert_eq!(Topic::Views.kind(), Some(EventKind::View));
        assert_eq!(Topic::Decisions.kind(), None);
        assert_eq!(Topic::parse("p", "p.views"), Some(Topic::Views));
        assert_eq!(Topic::parse("p", "q.views"), None);
        assert_eq!(Topic::parse("p", "pviews"), None);
        assert_eq!(Topic::parse("p", "p.nope"), None);
        assert_eq!(Topic::Transitions.kind(), None);
        let dl = dead_letter("p", "bad", &[FieldError::new("x", "y")], b"\x01\x02", 7);
        let back: DeadLetter = rmp_serde::from_slice(&dl.value).unwrap();
        assert_eq!(
            (back.reason.as_ref(), back.body.as_ref()),
            ("bad", &[1u8, 2][..])
        );
        assert_eq!(back.fields[0].field, "x");
    }
}
