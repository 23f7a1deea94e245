//! Rules: a JSON bundle authors write ([`bundle`]), validated and lowered once ([`compile`])
//! into its compiled form ([`ir`]) over the feature table ([`features`]), evaluated per
//! decision ([`eval`]).

pub mod bundle;
pub mod compile;
pub mod eval;
pub mod features;
pub mod ir;

pub use bundle::{json_schema, Bundle};
pub use compile::{compile, compile_json, BundleError};
pub use eval::{Effect, Env, Hits, RuleHit};
pub use ir::CompiledBundle;
