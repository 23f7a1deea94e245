//! Scenarios: the conformance corpus format (tests/conformance/*.json), runnable by any host.
//!
//! A case names a rule bundle and a catalog (fixtures the host loads and passes in), a
//! context, and steps; each step sends raw JSON events at a given time and asks for a decision.
//! The session blob is carried from step to step exactly as a host would store it. [`run`]
//! returns what happened and every mismatch with the case's expectations, so native tests, the
//! worker in workerd and the browser build all check the same cases with the same verdicts.

use crate::engine::{DecideRequest, Engine, EngineConfig};
use crate::event::events_from_value;
use crate::features::Context;
use crate::recommend::Tier;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One conformance case.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// What the case shows.
    pub name: String,
    /// How the expectations were derived by hand (for readers; not checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derivation: Option<String>,
    /// Rule bundle fixture file name (under tests/conformance/fixtures/).
    pub bundle: String,
    /// Catalog fixture file name.
    pub catalog: String,
    /// Request context for every step (a step may replace it).
    #[serde(default)]
    pub context: Context,
    /// Steps, in order.
    pub steps: Vec<Step>,
}

/// One request in a case.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Now, Unix ms.
    pub now: u64,
    /// Raw events (validated like a host would).
    #[serde(default)]
    pub events: Vec<Value>,
    /// Items wanted.
    #[serde(default)]
    pub limit: usize,
    /// Tier asked for.
    #[serde(default)]
    pub tier: Option<Tier>,
    /// This step's request context instead of the case's (a rule in effect in one step and
    /// not in the next).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Context>,
    /// Replace the stored blob with these bytes before the step (to test bad blobs).
    #[serde(default)]
    pub corrupt_state: Option<Vec<u8>>,
    /// What must hold afterwards.
    #[serde(default)]
    pub expect: Expect,
}

/// Expectations for one step; absent fields are not checked.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Expect {
    /// Exactly these ids, in order.
    pub items: Option<Vec<String>>,
    /// The list starts with these ids.
    pub items_prefix: Option<Vec<String>>,
    /// The first scores of the list, as derived by hand to 4 decimals (each must be within
    /// 0.00005), so the corpus checks the arithmetic, not only the order.
    pub scores: Option<Vec<f64>>,
    /// None of these ids appear.
    pub excludes: Option<Vec<String>>,
    /// Tier served.
    pub tier: Option<Tier>,
    /// Exactly these rules fired, in order.
    pub rule_hits: Option<Vec<String>>,
    /// Per item id: reasons its "why" must contain.
    pub why: Option<std::collections::BTreeMap<String, Vec<String>>>,
    /// Variant.
    pub variant: Option<String>,
    /// Events stored.
    pub accepted: Option<u32>,
    /// Events ignored as duplicates.
    pub duplicates: Option<u32>,
    /// The events are rejected, naming exactly these fields.
    pub error_fields: Option<Vec<String>>,
    /// The stored blob was discarded as unreadable.
    pub state_reset: Option<bool>,
}

/// What one step produced.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepOutcome {
    /// Item ids in order.
    pub items: Vec<String>,
    /// Scores, same order.
    pub scores: Vec<f64>,
    /// Reasons, same order.
    pub why: Vec<Vec<String>>,
    /// Tier.
    pub tier: Option<Tier>,
    /// Rules fired.
    pub rule_hits: Vec<String>,
    /// Variant.
    pub variant: Option<String>,
    /// Events stored.
    pub accepted: u32,
    /// Duplicates.
    pub duplicates: u32,
    /// Rejected fields, when the events were invalid.
    pub error_fields: Vec<String>,
    /// Whether the blob was discarded.
    pub state_reset: bool,
    /// Blob size after the step.
    pub state_bytes: usize,
}

/// A case's outcome.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// Case name.
    pub name: String,
    /// Per step.
    pub steps: Vec<StepOutcome>,
    /// Every expectation that failed (empty = pass).
    pub mismatches: Vec<String>,
}

/// Runs a case given the JSON text of its bundle and catalog fixtures.
pub fn run(case: &Case, bundle_json: &str, catalog_json: &[u8]) -> Report {
    let mut report = Report {
        name: case.name.clone(),
        steps: Vec::new(),
        mismatches: Vec::new(),
    };
    let engine = match Engine::from_json(EngineConfig::default(), bundle_json, catalog_json) {
        Ok(e) => e,
        Err(e) => {
            report.mismatches.push(format!("engine: {e}"));
            return report;
        }
    };
    let mut blob: Option<Vec<u8>> = None;
    for (i, step) in case.steps.iter().enumerate() {
        if let Some(bad) = &step.corrupt_state {
            blob = Some(bad.clone());
        }
        let out = run_step(&engine, case, step, &mut blob);
        check(&mut report.mismatches, i, &step.expect, &out);
        report.steps.push(out);
    }
    report
}

/// Runs a case from its JSON text.
pub fn run_json(case_json: &str, bundle_json: &str, catalog_json: &[u8]) -> Report {
    match serde_json::from_str::<Case>(case_json) {
        Ok(case) => run(&case, bundle_json, catalog_json),
        Err(e) => Report {
            name: String::new(),
            steps: Vec::new(),
            mismatches: vec![format!("case does not parse: {e}")],
        },
    }
}

fn run_step(engine: &Engine, case: &Case, step: &Step, blob: &mut Option<Vec<u8>>) -> StepOutcome {
    let mut out = StepOutcome {
        items: Vec::new(),
        scores: Vec::new(),
        why: Vec::new(),
        tier: None,
        rule_hits: Vec::new(),
        variant: None,
        accepted: 0,
        duplicates: 0,
        error_fields: Vec::new(),
        state_reset: false,
        state_bytes: blob.as_ref().map_or(0, Vec::len),
    };
    let events = if step.events.is_empty() {
        Vec::new()
    } else {
        match events_from_value(
            &Value::Array(step.events.clone()),
            step.now,
            engine.config().time,
        ) {
            Ok(ev) => ev,
            Err(e) => {
                out.error_fields = e.errors.into_iter().map(|f| f.field).collect();
                return out;
            }
        }
    };
    let d = engine.decide(&DecideRequest {
        state: blob.as_deref(),
        events: &events,
        context: step.context.as_ref().unwrap_or(&case.context).clone(),
        now_ms: step.now,
        limit: step.limit,
        tier: step.tier,
        trace: None,
    });
    if !d.rejected.is_empty() {
        out.error_fields = d.rejected.into_iter().map(|f| f.field).collect();
        return out;
    }
    if let Some(s) = d.state {
        out.state_bytes = s.len();
        *blob = Some(s);
    }
    out.items = d.items.iter().map(|r| r.id.clone()).collect();
    out.scores = d.items.iter().map(|r| r.score).collect();
    out.why = d
        .items
        .into_iter()
        .map(|r| r.why.iter().map(|w| w.to_string()).collect())
        .collect();
    out.tier = Some(d.tier);
    out.rule_hits = d.rule_hits.iter().map(|r| r.to_string()).collect();
    out.variant = d.variant;
    out.accepted = d.accepted;
    out.duplicates = d.duplicates;
    out.state_reset = d.state_error.is_some();
    out
}

fn check(m: &mut Vec<String>, i: usize, e: &Expect, o: &StepOutcome) {
    let mut eq = |what: &str, want: String, got: String| {
        if want != got {
            m.push(format!("step {i}: {what}: expected {want}, got {got}"));
        }
    };
    if let Some(items) = &e.items {
        eq("items", format!("{items:?}"), format!("{:?}", o.items));
    }
    if let Some(prefix) = &e.items_prefix {
        let got: Vec<_> = o.items.iter().take(prefix.len()).collect();
        eq("items_prefix", format!("{prefix:?}"), format!("{got:?}"));
    }
    if let Some(want) = &e.scores {
        let close = want.len() <= o.scores.len()
            && want
                .iter()
                .zip(&o.scores)
                .all(|(w, g)| (w - g).abs() <= 0.00005);
        if !close {
            let got: Vec<String> = o.scores.iter().map(|g| format!("{g:.4}")).collect();
            eq(
                "scores",
                format!("{want:?}"),
                format!("[{}]", got.join(", ")),
            );
        }
    }
    if let Some(t) = e.tier {
        eq("tier", format!("{:?}", Some(t)), format!("{:?}", o.tier));
    }
    if let Some(r) = &e.rule_hits {
        eq("rule_hits", format!("{r:?}"), format!("{:?}", o.rule_hits));
    }
    if let Some(v) = &e.variant {
        eq(
            "variant",
            format!("{v:?}"),
            format!("{:?}", o.variant.clone().unwrap_or_default()),
        );
    }
    if let Some(a) = e.accepted {
        eq("accepted", a.to_string(), o.accepted.to_string());
    }
    if let Some(d) = e.duplicates {
        eq("duplicates", d.to_string(), o.duplicates.to_string());
    }
    if let Some(f) = &e.error_fields {
        eq(
            "error_fields",
            format!("{f:?}"),
            format!("{:?}", o.error_fields),
        );
    }
    if let Some(r) = e.state_reset {
        eq("state_reset", r.to_string(), o.state_reset.to_string());
    }
    if let Some(ex) = &e.excludes {
        for id in ex {
            if o.items.contains(id) {
                m.push(format!("step {i}: excludes: {id} is in the list"));
            }
        }
    }
    if let Some(why) = &e.why {
        for (id, reasons) in why {
            match o.items.iter().position(|x| x == id) {
                None => m.push(format!("step {i}: why: {id} is not in the list")),
                Some(p) => {
                    for r in reasons {
                        if !o.why[p].contains(r) {
                            m.push(format!(
                                "step {i}: why of {id}: expected {r}, got {:?}",
                                o.why[p]
                            ));
                        }
                    }
                }
            }
        }
    }
}
