//! The origin trainer: turns interactions back into the model the edge holds — popularity
//! and item→related lists with time decay — and publishes it to the edge's config KV.
//!
//! Sources: the collector's Kafka topics ([`kafka`], a consumer group), the collector's
//! records file, or click logs for back-fills ([`clicklog`]). [`model`] counts; [`state`]
//! remembers counts and read positions across restarts; [`run`] is the loop; [`publish`]
//! writes KV; [`eval`] replays held-out sessions through the real `decide` path.

pub mod clicklog;
pub mod control;
pub mod eval;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod model;
pub mod publish;
pub mod records;
pub mod release;
pub mod run;
pub mod simulate;
pub mod state;
