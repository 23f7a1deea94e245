//! The collector's records (schema: [`edgerec::records`]) read back as model observations —
//! the same values whether they come from Kafka (MessagePack) or from the collector's embedded
//! JSON-lines file.

use crate::model::{Model, ModelConfig};
use edgerec::records::{ExperimentArm, Interaction, ShownAt, Topic, Transition, SCHEMA_VERSION};

/// The topics the trainer reads: interactions that teach the model, transitions, exposure
/// feedback, and the experiment sums its controller watches.
pub const TOPICS: [Topic; 7] = [
    Topic::Views,
    Topic::Clicks,
    Topic::AddToCarts,
    Topic::Purchases,
    Topic::Transitions,
    Topic::Shown,
    Topic::Experiments,
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

/// The topic a name denotes, if the trainer reads it.
pub fn topic_of(prefix: &str, name: &str) -> Option<Topic> {
    Topic::parse(prefix, name).filter(|t| TOPICS.contains(t))
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

/// What [`apply`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Counted: the topic suffix and the record's count.
    Counted(&'static str, u64),
    /// A copy of a record already counted (same batch, topic and item): skipped.
    Copy,
    /// A topic the trainer does not read.
    Ignored,
}

/// A record's identity: its batch, topic and item (or item pair). One batch has one record per
/// topic and item, so two records with one identity are copies of one record.
fn identity(suffix: &str, batch: &str, a: &str, b: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [suffix, batch, a, b] {
        h.update((part.len() as u32).to_be_bytes());
        h.update(part.as_bytes());
    }
    let d = h.finalize();
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// Applies one record to the model, unless `first_time` says its identity was counted
/// already. Records of topics the trainer does not read are ignored.
pub fn apply(
    model: &mut Model,
    cfg: &ModelConfig,
    prefix: &str,
    topic: &str,
    value: Encoded,
    mut first_time: impl FnMut(u64) -> bool,
) -> Result<Applied, RecordError> {
    let Some(t) = topic_of(prefix, topic) else {
        return Ok(Applied::Ignored);
    };
    let version = |v: u8| {
        if v == SCHEMA_VERSION {
            Ok(())
        } else {
            Err(RecordError::Version {
                topic: topic.to_string(),
                v,
            })
        }
    };
    let suffix = t.suffix();
    if t == Topic::Experiments {
        let r: ExperimentArm = value.decode(topic)?;
        version(r.v)?;
        if r.tally.implausible().is_some() || r.key.is_empty() || r.key.len() > 257 {
            return Err(RecordError::Schema {
                topic: topic.to_string(),
                detail: format!("implausible sums for {:?}", r.key),
            });
        }
        if !first_time(identity(suffix, &r.batch, &r.key, "")) {
            return Ok(Applied::Copy);
        }
        model
            .experiments
            .entry(r.key.into_owned())
            .or_default()
            .add(&r.tally);
        return Ok(Applied::Counted(suffix, r.tally.sessions));
    }
    if t == Topic::Shown {
        let r: ShownAt = value.decode(topic)?;
        version(r.v)?;
        let ids_ok =
            edgerec::event::check_id(&r.from).is_ok() && edgerec::event::check_id(&r.item).is_ok();
        if !ids_ok || r.pos > edgerec::aggregate::LAST_POS_BUCKET {
            return Err(RecordError::Schema {
                topic: topic.to_string(),
                detail: format!("invalid ids or position {} for {:?}", r.pos, r.from),
            });
        }
        // One record per (batch, anchor, item, position).
        let at = format!("{}#{}", r.item, r.pos);
        if !first_time(identity(suffix, &r.batch, &r.from, &at)) {
            return Ok(Applied::Copy);
        }
        model.observe_shown(cfg, &r.from, &r.item, r.pos, r.impressions, r.clicks, r.ts);
        return Ok(Applied::Counted(suffix, r.impressions));
    }
    match t.kind() {
        Some(kind) => {
            let r: Interaction = value.decode(topic)?;
            version(r.v)?;
            if !first_time(identity(suffix, &r.batch, &r.item, "")) {
                return Ok(Applied::Copy);
            }
            model.observe_interaction(cfg, &r.item, kind, r.count, r.ts);
            Ok(Applied::Counted(suffix, r.count))
        }
        None => {
            let r: Transition = value.decode(topic)?;
            version(r.v)?;
            if !first_time(identity(suffix, &r.batch, &r.from, &r.to)) {
                return Ok(Applied::Copy);
            }
            model.observe_transition(cfg, &r.from, &r.to, r.count, r.ts);
            Ok(Applied::Counted(suffix, r.count))
        }
    }
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
        let fresh = |_| true;
        assert_eq!(
            apply(&mut m, &cfg, "e", "e.transitions", Encoded::Json(&t), fresh).unwrap(),
            Applied::Counted("transitions", 3)
        );
        let bytes = rmp_serde::to_vec_named(
            &serde_json::json!({"v":1,"batch":"b","source":"edge","ts":5,"item":"a","count":2}),
        )
        .unwrap();
        let mut seen = std::collections::HashSet::new();
        let mut purchase = |m: &mut Model| {
            let once = |id| seen.insert(id);
            apply(m, &cfg, "e", "e.purchases", Encoded::MsgPack(&bytes), once).unwrap()
        };
        assert_eq!(purchase(&mut m), Applied::Counted("purchases", 2));
        assert_eq!(
            purchase(&mut m),
            Applied::Copy,
            "a copy of the same record (batch, topic, item) counts once"
        );
        assert_eq!(m.popularity(&cfg, "a"), 8.0);
        assert_eq!(m.related(&cfg, "a"), vec![("b".to_string(), 1.0)]);
        assert_eq!(
            apply(&mut m, &cfg, "e", "e.decisions", Encoded::Json(&t), fresh).unwrap(),
            Applied::Ignored
        );
        let bad = serde_json::json!({"v":1,"item":"a"});
        assert!(matches!(
            apply(&mut m, &cfg, "e", "e.views", Encoded::Json(&bad), fresh),
            Err(RecordError::Schema { .. })
        ));
        // Experiment sums: counted once per (batch, key); implausible sums are refused.
        let arm = serde_json::json!({"v":1,"batch":"b","source":"edge","ts":5,"key":"e/a",
            "tally":{"sessions":2,"converted":{"sum":1,"sum_sq":1}}});
        let mut seen_arms = std::collections::HashSet::new();
        let mut take = |m: &mut Model, v: &serde_json::Value| {
            apply(m, &cfg, "e", "e.experiments", Encoded::Json(v), |id| {
                seen_arms.insert(id)
            })
        };
        assert_eq!(
            take(&mut m, &arm).unwrap(),
            Applied::Counted("experiments", 2)
        );
        assert_eq!(take(&mut m, &arm).unwrap(), Applied::Copy);
        assert_eq!(m.experiments["e/a"].sessions, 2);
        let forged = serde_json::json!({"v":1,"batch":"c","source":"edge","ts":5,"key":"e/a",
            "tally":{"sessions":1,"converted":{"sum":3,"sum_sq":9}}});
        assert!(matches!(
            take(&mut m, &forged),
            Err(RecordError::Schema { .. })
        ));
        assert_eq!(m.experiments["e/a"].sessions, 2);
        // Exposure feedback: once per (batch, anchor, item, position); positions past the
        // last bucket and invalid ids are refused.
        let shown = |pos: u8, from: &str| {
            serde_json::json!({"v":1,"batch":"b","source":"edge","ts":5,"from":from,"item":"b",
                "pos":pos,"impressions":40,"clicks":0})
        };
        let mut seen_shown = std::collections::HashSet::new();
        let mut show = |m: &mut Model, v: &serde_json::Value| {
            apply(m, &cfg, "e", "e.shown", Encoded::Json(v), |id| {
                seen_shown.insert(id)
            })
        };
        assert_eq!(
            show(&mut m, &shown(0, "a")).unwrap(),
            Applied::Counted("shown", 40)
        );
        assert_eq!(show(&mut m, &shown(0, "a")).unwrap(), Applied::Copy);
        assert_eq!(
            show(&mut m, &shown(1, "a")).unwrap(),
            Applied::Counted("shown", 40),
            "another position is another record"
        );
        for bad in [shown(16, "a"), shown(0, "")] {
            assert!(matches!(
                show(&mut m, &bad),
                Err(RecordError::Schema { .. })
            ));
        }
        let v2 = serde_json::json!({"v":2,"ts":1,"item":"a","count":1});
        assert!(matches!(
            apply(&mut m, &cfg, "e", "e.views", Encoded::Json(&v2), fresh),
            Err(RecordError::Version { v: 2, .. })
        ));
    }
}
