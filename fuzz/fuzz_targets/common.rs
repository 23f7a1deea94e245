//! Shared by the targets: a fixed "now" and the demo engine (built once per process).

use edgerec::{Engine, EngineConfig};
use std::sync::OnceLock;

/// The time every target decodes at (inside the events' accepted range of the seeds).
pub const NOW: u64 = 1_764_201_600_000;

/// The demo rules and catalog, as the edge runs them.
pub fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let bundle = include_str!("../../data/demo/rules.json");
        let catalog = include_bytes!("../../data/demo/catalog.json");
        Engine::from_json(EngineConfig::default(), bundle, catalog).expect("demo engine")
    })
}
