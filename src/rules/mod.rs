//! Rules: a JSON bundle authors write ([`bundle`]), validated and compiled once
//! ([`compile`]), evaluated per decision ([`eval`]).

pub mod bundle;
pub mod compile;
pub mod eval;

pub use bundle::{json_schema, Bundle};
pub use compile::{compile, compile_json, BundleError, CompiledBundle};
pub use eval::{Effect, Env, RuleHit};
