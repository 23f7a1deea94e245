//! Rules: a JSON bundle authors write ([`bundle`]), validated and lowered once ([`compile`])
//! into its compiled form ([`ir`]) over the feature table ([`features`]), with conditions
//! flattened over per-decision feature slots ([`flat`]), evaluated per decision ([`eval`]).

pub mod bundle;
pub mod compile;
pub mod eval;
pub mod features;
pub mod flat;
pub mod ir;

pub use bundle::{json_schema, Bundle};
pub use compile::{compile, compile_json, BundleError};
pub use eval::{Effect, Env, Hits, RuleHit};
pub use ir::CompiledBundle;
