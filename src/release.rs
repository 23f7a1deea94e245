//! A release: what the edge serves, as named in its config KV. Every key but the pointer is
//! content-addressed and immutable, so a host may cache what it read for as long as it likes
//! and one write of the pointer switches (or rolls back) bundle and model together:
//!
//! | key | value |
//! | --- | --- |
//! | `bundle:<hash>` | a rule bundle, JSON as authored ([`bundle_key`]; hash = its compiled hash) |
//! | `model:<hash>` | a model head, MessagePack ([`crate::model::head_key`]) |
//! | `shard:<base>:<i>`, `patch:<hash>` | the head's item shards ([`crate::model`]) |
//! | `release:<ms>` | one [`HistoryEntry`] per switch, written just before the pointer |
//! | `config:current` | the [`Pointer`] ([`POINTER_KEY`]) |
//!
//! Hosts build the engine a pointer names with [`engine`], and nothing else.

use crate::engine::{Engine, EngineConfig, EngineError};
use crate::model::Head;
use crate::rules::compile_json;
use serde::{Deserialize, Serialize};

pub use crate::model::head_key;

/// KV key of the pointer.
pub const POINTER_KEY: &str = "config:current";
/// Prefix of release history keys.
pub const HISTORY_PREFIX: &str = "release:";

/// What the edge serves: a bundle and a model head, both by content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pointer {
    /// Bundle content hash (`bundle:<hash>`).
    pub bundle: String,
    /// Model head hash (`model:<hash>`); named `catalog` on the wire since the first release.
    pub catalog: String,
}

impl Pointer {
    /// Parses a stored pointer.
    pub fn parse(text: &str) -> Result<Pointer, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The stored form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// KV key of the bundle it names.
    pub fn bundle_key(&self) -> String {
        bundle_key(&self.bundle)
    }

    /// KV key of the model head it names.
    pub fn head_key(&self) -> String {
        head_key(&self.catalog)
    }
}

/// KV key of a rule bundle by its content hash.
pub fn bundle_key(hash: &str) -> String {
    format!("bundle:{hash}")
}

/// One switch of the pointer, kept under `release:<ms>` (zero-padded, so keys list in time
/// order): what was served before, what is served now, who switched and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When, Unix ms.
    pub at_ms: u64,
    /// The pointer written.
    pub pointer: Pointer,
    /// The pointer it replaced, if any.
    pub previous: Option<Pointer>,
    /// Who switched: `publish` (a person, with the CLI), `trainer` (a new model).
    pub by: String,
}

impl HistoryEntry {
    /// Its KV key.
    pub fn key(&self) -> String {
        format!("{HISTORY_PREFIX}{:013}", self.at_ms)
    }
}

/// The engine for a release, from its bytes as published: the bundle's JSON and the head's
/// MessagePack (the edge reads them from KV, the browser from `/v1/model/*`).
pub fn engine(config: EngineConfig, bundle_json: &str, head: &[u8]) -> Result<Engine, EngineError> {
    let bundle = compile_json(bundle_json, config.session.horizon_ms)?;
    Engine::new(config, bundle, Head::decode(head)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_spelled_once_and_round_trip() {
        let p = Pointer {
            bundle: "b1".into(),
            catalog: "h1".into(),
        };
        assert_eq!(p.bundle_key(), "bundle:b1");
        assert_eq!(p.head_key(), "model:h1");
        assert_eq!(Pointer::parse(&p.to_json()).unwrap(), p);
        assert!(Pointer::parse(r#"{"bundle":"b"}"#).is_err());
        let h = HistoryEntry {
            at_ms: 1_764_201_600_000,
            pointer: p.clone(),
            previous: None,
            by: "publish".into(),
        };
        assert_eq!(h.key(), "release:1764201600000");
        let earlier = HistoryEntry {
            at_ms: 999,
            ..h.clone()
        };
        assert!(earlier.key() < h.key(), "history keys sort in time order");
    }

    #[test]
    fn an_engine_comes_from_published_bytes_or_a_typed_error() {
        let cat = crate::Catalog::from_json(br#"{"version":"c","items":[{"id":"a"}]}"#).unwrap();
        let bytes = crate::model::build::build(&cat, None, &mut |_, _| {})
            .unwrap()
            .head;
        let bundle = r#"{"version":"1","rules":[]}"#;
        let e = engine(EngineConfig::default(), bundle, &bytes).unwrap();
        assert_eq!(e.head().items, 1);
        assert!(matches!(
            engine(EngineConfig::default(), "{", &bytes),
            Err(EngineError::Bundle(_))
        ));
        assert!(matches!(
            engine(EngineConfig::default(), bundle, &bytes[..3]),
            Err(EngineError::Model(_))
        ));
    }
}
