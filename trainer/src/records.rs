//! The collector's records (see `collector/src/records.rs` for the schema) read back as
//! model observations — the same values whether they come from Kafka (MessagePack) or from
//! the collector's embedded JSON-lines file.

use crate::model::{Model, ModelConfig};
use edgerec::event::EventKind;
use serde::Deserialize;

/// Topic suffixes the trainer reads, with the interaction kind of each (`None` =
/// transitions).
pub const TOPICS: [(&str, Option<EventKind>); 5] = [
    ("views", Some(EventKind::View)),
    ("clicks", Some(EventKind::Click)),
    ("add_to_carts", Some(EventKind::AddToCart)),
    ("purchases", Some(EventKind::Purchase)),
    ("transitions", None),
];

/// Why a record was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The value does not match the topic's schema.
    #[error("{topic}: value does not match the schema ({detail})")]
    Schema {
        /// Topic.
        topic: String,
        /// Decoder message.
        detail: String,
    },
    /// Unsupported schema version.
    #[error("{topic}: schema version {v} (this trainer reads 1)")]
    Version {
        /// Topic.
        topic: String,
        /// Version found.
        v: u8,
    },
}

#[derive(Deserialize)]
struct Interaction {
    v: u8,
    ts: u64,
    item: String,
    count: u64,
}

#[derive(Deserialize)]
struct Transition {
    v: u8,
    ts: u64,
    from: String,
    to: String,
    count: u64,
}

/// The kind a topic carries, if the trainer reads it (`Some(None)` = transitions).
pub fn topic_kind(prefix: &str, topic: &str) -> Option<Option<EventKind>> {
    let suffix = topic.strip_prefix(prefix)?.strip_prefix('.')?;
    TOPICS.iter().find(|t| t.0 == suffix).map(|t| t.1)
}

/// A value decoder: MessagePack (Kafka) or JSON (the collector's file).
pub enum Encoded<'a> {
    /// A Kafka record value.
    MsgPack(&'a [u8]),
    /// The `value` object of a file line.
    Json(&'a serde_json::Value),
}

impl Encoded<'_> {
    fn decode<T: serde::de::DeserializeOwned>(&self, topic: &str) -> Result<T, RecordError> {
        let r = match self {
            Encoded::MsgPack(b) => rmp_serde::from_slice(b).map_err(|e| e.to_string()),
            Encoded::Json(v) => T::deserialize(*v).map_err(|e| e.to_string()),
        };
        r.map_err(|detail| RecordError::Schema {
            topic: topic.to_string(),
            detail,
        })
    }
}

/// Applies one record to the model. Records of topics the trainer does not read are
/// ignored (`Ok(false)`).
pub fn apply(
    model: &mut Model,
    cfg: &ModelConfig,
    prefix: &str,
    topic: &str,
    value: Encoded,
) -> Result<bool, RecordError> {
    let Some(kind) = topic_kind(prefix, topic) else {
        return Ok(false);
    };
    let version = |v: u8| {
        if v == 1 {
            Ok(())
        } else {
            Err(RecordError::Version {
                topic: topic.to_string(),
                v,
            })
        }
    };
    match kind {
        Some(kind) => {
            let r: Interaction = value.decode(topic)?;
            version(r.v)?;
            model.observe_interaction(cfg, &r.item, kind, r.count, r.ts);
        }
        None => {
            let r: Transition = value.decode(topic)?;
            version(r.v)?;
            model.observe_transition(cfg, &r.from, &r.to, r.count, r.ts);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_encodings_and_rejects_wrong_shapes() {
        let cfg = ModelConfig {
            half_life_ms: 0,
            ..ModelConfig::default()
        };
        let mut m = Model::new();
        let t = serde_json::json!({"v":1,"batch":"b","source":"edge","ts":5,"from":"a","to":"b","count":3});
        assert!(apply(&mut m, &cfg, "e", "e.transitions", Encoded::Json(&t)).unwrap());
        let bytes = rmp_serde::to_vec_named(
            &serde_json::json!({"v":1,"batch":"b","source":"edge","ts":5,"item":"a","count":2}),
        )
        .unwrap();
        assert!(apply(&mut m, &cfg, "e", "e.purchases", Encoded::MsgPack(&bytes)).unwrap());
        assert_eq!(m.popularity(&cfg, "a"), 8.0);
        assert_eq!(m.related(&cfg, "a"), vec![("b".to_string(), 1.0)]);
        assert!(!apply(&mut m, &cfg, "e", "e.decisions", Encoded::Json(&t)).unwrap());
        let bad = serde_json::json!({"v":1,"item":"a"});
        assert!(matches!(
            apply(&mut m, &cfg, "e", "e.views", Encoded::Json(&bad)),
            Err(RecordError::Schema { .. })
        ));
        let v2 = serde_json::json!({"v":2,"ts":1,"item":"a","count":1});
        assert!(matches!(
            apply(&mut m, &cfg, "e", "e.views", Encoded::Json(&v2)),
            Err(RecordError::Version { v: 2, .. })
        ));
    }
}
