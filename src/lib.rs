//! # edgerec — the decision core
//!
//! Pure Rust, no I/O, no platform types: the same code decides at the edge (Cloudflare
//! Workers), in the browser (wasm fallback) and in origin tools. Modules follow the data's
//! path:
//!
//! | step | module |
//! | --- | --- |
//! | validated input | [`event`] |
//! | per-session windows, stored as a compact blob | [`session`] |
//! | derived numbers and labels | [`features`] |
//! | declarative rules: bundle → compiled → evaluated | [`rules`] |
//! | items, related lists, popularity, as authored | [`catalog`] |
//! | the same, published as a head + item shards read piecewise | [`model`] |
//! | candidates → effects → filters → top-k | [`recommend`] |
//! | variant bucketing | [`experiment`] |
//! | mergeable counters shipped to the origin | [`aggregate`] |
//! | sampled session traces, for replaying rule changes | [`trace`] |
//! | the one entry point | [`engine`] |
//! | a release as stored: pointer, keys, history, engine from its bytes | [`release`] |
//! | what the origin keeps of a batch: topics and record values | [`records`] |
//! | HTTP contracts: OpenAPI documents, answer and error bodies | [`api`] |
//!
//! ```
//! use edgerec::{DecideRequest, Engine, EngineConfig, Event, EventKind};
//! let engine = Engine::from_json(
//!     EngineConfig::default(),
//!     r#"{"version":"1","rules":[]}"#,
//!     br#"{"version":"c1","items":[{"id":"a","popularity":1,"related":[["b",1.0]]},{"id":"b","popularity":2}]}"#,
//! ).unwrap();
//! let events = [Event::new(EventKind::View, "a", 1_764_201_600_000)];
//! let d = engine.decide(&DecideRequest {
//!     events: &events,
//!     now_ms: 1_764_201_601_000,
//!     limit: 5,
//!     ..Default::default()
//! });
//! assert_eq!(d.items[0].id, "b");
//! ```

pub mod aggregate;
pub mod api;
pub mod catalog;
pub mod engine;
pub mod error;
pub mod event;
pub mod experiment;
pub mod features;
pub mod model;
pub mod recommend;
pub mod records;
pub mod release;
pub mod rules;
#[cfg(feature = "kits")]
pub mod scenario;
pub mod session;
pub mod trace;
#[cfg(feature = "kits")]
pub mod workload;

pub use aggregate::{AggregateBatch, AggregateDelta};
pub use catalog::Catalog;
pub use engine::{DecideRequest, Decision, Engine, EngineConfig, EngineError};
pub use error::FieldError;
pub use event::{Event, EventKind};
pub use features::{Context, Features};
pub use recommend::{Recommendation, Tier};
pub use session::{SessionConfig, SessionState};
