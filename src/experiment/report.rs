//! The experiment controller's report document: what the trainer's controller writes
//! (`experiments.json` in its state directory) and what `edgerec experiments report`, the
//! collector's `/metrics` and the dashboard read. One format, defined here.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One look at one variant: its lift per metric with the always-valid interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Look {
    /// When, Unix ms.
    pub at_ms: u64,
    /// Variant.
    pub variant: String,
    /// Its sessions.
    pub sessions: u64,
    /// The control's sessions.
    pub control_sessions: u64,
    /// Metric → `[lift, low, high]` (relative; absent without data).
    pub lift: BTreeMap<String, [f64; 3]>,
    /// Sample-ratio p-value at this look.
    pub srm_p: Option<f64>,
}

/// A stop the controller made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stop {
    /// When, Unix ms.
    pub at_ms: u64,
    /// Why (the guardrail or the sample-ratio mismatch).
    pub reason: String,
    /// The bundle that was live.
    pub from_bundle: String,
    /// The bundle published with all traffic on the control.
    pub to_bundle: String,
}

/// What the controller knows about one experiment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExperimentDoc {
    /// The latest report (see [`super::stats::Report`]).
    pub report: serde_json::Value,
    /// Recent looks, oldest first.
    pub looks: Vec<Look>,
    /// Stops made.
    pub stops: Vec<Stop>,
    /// Variants that won on the primary metric at the latest look.
    pub winners: Vec<String>,
}

/// The controller's file: every experiment seen, by id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportDoc {
    /// Last round, Unix ms.
    pub updated_ms: u64,
    /// The live bundle's hash at the last round.
    pub bundle: Option<String>,
    /// When the trainer last published a model, Unix ms (the "model is stale" alarm).
    #[serde(default)]
    pub model_published_ms: Option<u64>,
    /// Experiment id → what is known.
    pub experiments: BTreeMap<String, ExperimentDoc>,
}
