//! A release: what the edge serves, as named in its config KV. Every key but the pointer is
//! content-addressed and immutable, so a host may cache what it read for as long as it likes
//! and one write of the pointer switches (or rolls back) bundle and model together:
//!
//! | key | value |
//! | --- | --- |
//! | `bundle:<hash>` | a rule bundle, JSON as authored ([`bundle_key`]; hash = its compiled hash) |
//! | `model:<hash>` | a model head, MessagePack ([`crate::model::head_key`]) |
//! | `shard:<base>:<i>`, `patch:<hash>` | the head's item shards ([`crate::model`]) |
//! | `config:releases` | the [`History`]: the last [`HISTORY_LIMIT`] switches, written just before the pointer |
//! | `config:current` | the [`Pointer`] ([`POINTER_KEY`]) |
//!
//! Hosts build the engine a pointer names with [`engine`], and nothing else. A rollback is one
//! write of the pointer: [`History::rollback_target`] says which.

use crate::engine::{Engine, EngineConfig, EngineError};
use crate::model::Head;
use crate::rules::compile_json;
use serde::{Deserialize, Serialize};

pub use crate::model::head_key;

/// KV key of the pointer.
pub const POINTER_KEY: &str = "config:current";
/// KV key of the release history.
pub const HISTORY_KEY: &str = "config:releases";
/// Switches the history keeps (oldest dropped first): one KV value of a few tens of KiB.
pub const HISTORY_LIMIT: usize = 200;

/// What the edge serves: a bundle and a model head, both by content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pointer {
    /// Bundle content hash (`bundle:<hash>`).
    pub bundle: String,
    /// Model head hash (`model:<hash>`); named `catalog` on the wire since the first release.
    pub catalog: String,
    /// A candidate bundle the edge also evaluates, on a sample of requests and after answering,
    /// to count what it would do (`bundle:<hash>`); never served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<String>,
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

    /// KV key of the shadow bundle, if it names one.
    pub fn shadow_key(&self) -> Option<String> {
        self.shadow.as_deref().map(bundle_key)
    }
}

/// KV key of a rule bundle by its content hash.
pub fn bundle_key(hash: &str) -> String {
    format!("bundle:{hash}")
}

/// One switch of the pointer: what was served before, what is served now, who switched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When, Unix ms.
    pub at_ms: u64,
    /// The pointer written.
    pub pointer: Pointer,
    /// The pointer it replaced, if any.
    pub previous: Option<Pointer>,
    /// Who switched: `publish` (a person, with the CLI), `trainer` (a new model), `promote`,
    /// `shadow` or `rollback` (`edgerec release`), optionally followed by `:<user>`.
    pub by: String,
    /// Why, when a tool switched by itself (the experiment controller names the guardrail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl HistoryEntry {
    /// Whether this switch undid an earlier one.
    pub fn is_rollback(&self) -> bool {
        self.by == "rollback" || self.by.starts_with("rollback:")
    }
}

/// The release history kept under [`HISTORY_KEY`], oldest first, at most [`HISTORY_LIMIT`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Switches, oldest first.
    pub entries: Vec<HistoryEntry>,
}

impl History {
    /// Parses a stored history; an absent key is an empty history.
    pub fn parse(text: &str) -> Result<History, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The stored form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Appends a switch, dropping the oldest beyond [`HISTORY_LIMIT`].
    pub fn record(&mut self, entry: HistoryEntry) {
        self.entries.push(entry);
        let over = self.entries.len().saturating_sub(HISTORY_LIMIT);
        self.entries.drain(..over);
    }

    /// What a rollback from `current` writes: the pointer the newest switch to `current` replaced,
    /// skipping switches that were themselves rollbacks, so rolling back again walks further
    /// back (A→B→C, rollback → B, rollback → A). None when no such switch is kept.
    pub fn rollback_target(&self, current: &Pointer) -> Option<&Pointer> {
        self.entries
            .iter()
            .rev()
            .find(|e| !e.is_rollback() && &e.pointer == current)?
            .previous
            .as_ref()
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
            shadow: None,
        };
        assert_eq!(p.bundle_key(), "bundle:b1");
        assert_eq!(p.head_key(), "model:h1");
        assert_eq!(Pointer::parse(&p.to_json()).unwrap(), p);
        assert!(Pointer::parse(r#"{"bundle":"b"}"#).is_err());
    }

    fn p(bundle: &str) -> Pointer {
        Pointer {
            bundle: bundle.into(),
            catalog: "m".into(),
            shadow: None,
        }
    }

    fn switch(h: &mut History, at_ms: u64, from: Option<&str>, to: &str, by: &str) {
        h.record(HistoryEntry {
            at_ms,
            pointer: p(to),
            previous: from.map(p),
            by: by.into(),
            reason: None,
        });
    }

    #[test]
    fn a_pointer_without_a_shadow_reads_and_writes_as_before() {
        let old = r#"{"bundle":"b","catalog":"m"}"#;
        assert_eq!(Pointer::parse(old).unwrap().to_json(), old);
        let with = Pointer {
            shadow: Some("s".into()),
            ..p("b")
        };
        assert_eq!(with.shadow_key().as_deref(), Some("bundle:s"));
        assert_eq!(Pointer::parse(&with.to_json()).unwrap(), with);
        assert_eq!(p("b").shadow_key(), None);
    }

    #[test]
    fn rollback_walks_back_past_its_own_switches() {
        let mut h = History::default();
        switch(&mut h, 1, None, "A", "publish");
        switch(&mut h, 2, Some("A"), "B", "promote");
        switch(&mut h, 3, Some("B"), "C", "promote");
        assert_eq!(h.rollback_target(&p("C")), Some(&p("B")));
        switch(&mut h, 4, Some("C"), "B", "rollback");
        assert_eq!(h.rollback_target(&p("B")), Some(&p("A")));
        switch(&mut h, 5, Some("B"), "A", "rollback:ana");
        assert_eq!(h.rollback_target(&p("A")), None, "A was the first release");
        // A pointer the history never switched to (written by hand): nothing to roll back to.
        assert_eq!(h.rollback_target(&p("Z")), None);
        assert_eq!(History::parse(&h.to_json()).unwrap(), h);
    }

    #[test]
    fn the_history_keeps_the_newest_switches_only() {
        let mut h = History::default();
        for i in 0..HISTORY_LIMIT as u64 + 7 {
            switch(&mut h, i, Some("x"), &format!("b{i}"), "trainer");
        }
        assert_eq!(h.entries.len(), HISTORY_LIMIT);
        assert_eq!(h.entries[0].at_ms, 7);
        assert_eq!(h.entries.last().unwrap().at_ms, HISTORY_LIMIT as u64 + 6);
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
