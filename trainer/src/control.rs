//! The experiment controller: part of the trainer, because the trainer already reads the
//! records stream exactly once (positions, copies recognised by identity, state saved before
//! offsets are committed) and already owns writing the edge's config KV. The experiment sums
//! arrive on `<prefix>.experiments` next to the interactions; each round the controller reads
//! the live bundle, runs the stats engine ([`edgerec::experiment::stats`]) on the cumulative
//! sums, and:
//!
//! - when a guardrail is breached with confidence, or the split's sample ratio is off, it
//!   publishes a release that sends every session to the control (the other variants' weights
//!   set to 0, nothing else changed) and records why in the release history (`by:
//!   controller`, `reason: …`);
//! - when a variant wins on the primary metric it says so in the report (promotion stays a
//!   human decision);
//! - it writes the report, a bounded history of looks and the stops to a JSON file
//!   (`experiments.json` in the state directory) that `edgerec experiments report`, the
//!   dashboard and the Prometheus exporter read.

use crate::release::{live, settled_because, ReleaseError, Store};
use edgerec::experiment::metrics::ArmTally;
pub use edgerec::experiment::report::{ExperimentDoc, Look, ReportDoc, Stop};
use edgerec::experiment::stats::{self, control_name, Report};
use edgerec::release::bundle_key;
use edgerec::rules::bundle::Experiment;
use edgerec::EngineConfig;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Looks kept per experiment (a look per round: 240 rounds of 20 s are 80 minutes).
pub const MAX_LOOKS: usize = 240;
/// Who the release history names for the controller's switches.
pub const BY: &str = "controller";

/// Why a controller round failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Reading or switching the release.
    #[error(transparent)]
    Release(#[from] ReleaseError),
    /// The live bundle does not compile, or the stop bundle would not.
    #[error("bundle {hash}: {detail}")]
    Bundle {
        /// Its hash.
        hash: String,
        /// Why.
        detail: String,
    },
    /// The report file.
    #[error("{path}: {detail}")]
    File {
        /// The file.
        path: String,
        /// Why.
        detail: String,
    },
}

/// Reads a report file (an empty document when there is none yet).
pub fn read_report(path: &Path) -> Result<ReportDoc, ControlError> {
    let err = |detail: String| ControlError::File {
        path: path.display().to_string(),
        detail,
    };
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| err(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ReportDoc::default()),
        Err(e) => Err(err(e.to_string())),
    }
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Round {
    /// The report, if the live bundle has an experiment.
    pub report: Option<Report>,
    /// The stop made this round.
    pub stopped: Option<Stop>,
}

/// The controller: where its report lives and how long a switch settles.
pub struct Controller {
    path: PathBuf,
    /// Read-back delay after a switch (see [`crate::release::settled`]).
    pub settle: std::time::Duration,
    doc: ReportDoc,
}

/// The bundle with every variant but the control at weight 0 (the only change), and its hash.
pub fn stop_bundle(text: &str, exp: &Experiment) -> Result<(String, String), String> {
    let mut v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let control = control_name(exp).to_string();
    let variants = v
        .pointer_mut("/experiment/variants")
        .and_then(|x| x.as_array_mut())
        .ok_or("no experiment.variants")?;
    for var in variants {
        if var["name"].as_str() != Some(control.as_str()) {
            var["weight"] = serde_json::json!(0);
        }
    }
    let out = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?;
    let compiled = edgerec::rules::compile_json(&out, EngineConfig::default().session.horizon_ms)
        .map_err(|e| e.to_string())?;
    Ok((out, compiled.hash))
}

impl Controller {
    /// A controller keeping its report at `path` (read back if it exists). A report that does
    /// not read is started afresh with a warning: it is derived data (the stops are also in the
    /// release history), and training must not stop over it.
    pub fn open(path: &Path) -> Controller {
        let doc = read_report(path).unwrap_or_else(|e| {
            eprintln!(
                "{}",
                serde_json::json!({"level": "warn", "controller": format!("{e}; starting a new report")})
            );
            ReportDoc::default()
        });
        Controller {
            path: path.to_path_buf(),
            settle: std::time::Duration::ZERO,
            doc,
        }
    }

    /// The report document as it stands.
    pub fn doc(&self) -> &ReportDoc {
        &self.doc
    }

    /// Notes a model publish in the report (written with the next round, or now when there is
    /// no experiment to look at).
    pub fn published(&mut self, at_ms: u64, save: bool) -> Result<(), ControlError> {
        self.doc.model_published_ms = Some(at_ms);
        if save {
            self.save()?;
        }
        Ok(())
    }

    /// One round: the live bundle's experiment against the sums; stops when it must; writes
    /// the report file.
    pub fn round(
        &mut self,
        store: &dyn Store,
        arms: &BTreeMap<String, ArmTally>,
        now_ms: u64,
    ) -> Result<Round, ControlError> {
        let pointer = live(store)?;
        let bundle_err = |detail: String| ControlError::Bundle {
            hash: pointer.bundle.clone(),
            detail,
        };
        let text = store
            .text(&bundle_key(&pointer.bundle))?
            .ok_or_else(|| bundle_err("not in KV".into()))?;
        let compiled =
            edgerec::rules::compile_json(&text, EngineConfig::default().session.horizon_ms)
                .map_err(|e| bundle_err(e.to_string()))?;
        self.doc.updated_ms = now_ms;
        self.doc.bundle = Some(pointer.bundle.clone());
        let mut round = Round::default();
        if let Some(exp) = &compiled.experiment {
            let report = stats::report(exp, arms);
            let entry = self.doc.experiments.entry(exp.id.clone()).or_default();
            for v in &report.variants {
                entry.looks.push(Look {
                    at_ms: now_ms,
                    variant: v.name.clone(),
                    sessions: v.sessions,
                    control_sessions: report.control_sessions,
                    lift: v
                        .metrics
                        .iter()
                        .filter_map(|m| {
                            let l = m.lift?;
                            let [lo, hi] = m.lift_ci?;
                            Some((m.metric.to_string(), [l, lo, hi]))
                        })
                        .collect(),
                    srm_p: report.srm.as_ref().map(|s| s.p_value),
                });
            }
            let over = entry.looks.len().saturating_sub(MAX_LOOKS);
            entry.looks.drain(..over);
            entry.winners = report
                .variants
                .iter()
                .filter(|v| v.wins)
                .map(|v| v.name.clone())
                .collect();
            entry.report = serde_json::to_value(&report).unwrap_or_default();
            let running = exp
                .variants
                .iter()
                .any(|v| v.weight > 0 && v.name != control_name(exp));
            if let Some(reason) = report.stop_reason().filter(|_| running) {
                let (stopped_text, hash) =
                    stop_bundle(&text, exp).map_err(|e| bundle_err(format!("stop bundle: {e}")))?;
                store.put(&bundle_key(&hash), stopped_text.as_bytes())?;
                let change = |p: &edgerec::release::Pointer| edgerec::release::Pointer {
                    bundle: hash.clone(),
                    ..p.clone()
                };
                settled_because(
                    store,
                    pointer.clone(),
                    &change,
                    BY,
                    Some(&reason),
                    self.settle,
                )?;
                let stop = Stop {
                    at_ms: now_ms,
                    reason,
                    from_bundle: pointer.bundle.clone(),
                    to_bundle: hash.clone(),
                };
                entry.stops.push(stop.clone());
                self.doc.bundle = Some(hash);
                round.stopped = Some(stop);
            }
            round.report = Some(report);
        }
        self.save()?;
        Ok(round)
    }

    fn save(&self) -> Result<(), ControlError> {
        let err = |e: std::io::Error| ControlError::File {
            path: self.path.display().to_string(),
            detail: e.to_string(),
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        // One temporary file per process: instances of a group share the state directory.
        let tmp = self
            .path
            .with_extension(format!("json.{}.tmp", std::process::id()));
        let body = serde_json::to_vec_pretty(&self.doc).unwrap_or_default();
        std::fs::write(&tmp, body).map_err(err)?;
        std::fs::rename(&tmp, &self.path).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    //! A map stands in for KV here (a test double); tests/browser/experiments.test.mjs runs the
    //! controller against wrangler's local KV fed by the real edge, collector and Kafka.
    use super::*;
    use edgerec::release::{History, Pointer, HISTORY_KEY, POINTER_KEY};

    use crate::release::MemoryStore as Map;

    const BUNDLE: &str = r#"{"version":"x1","experiment":{"id":"recs","salt":"s",
      "variants":[{"name":"control","weight":1},{"name":"harmful","weight":1}],
      "primary":"ctr",
      "guardrails":[{"metric":"conversion","max_drop":0.02}]},"rules":[]}"#;

    fn conv(sessions: u64, converted: u64) -> ArmTally {
        ArmTally::with_conversions(sessions, converted)
    }

    fn seeded() -> (Map, String) {
        let m = Map::default();
        let hash = edgerec::rules::compile_json(BUNDLE, u64::MAX / 4)
            .unwrap()
            .hash;
        m.put(&bundle_key(&hash), BUNDLE.as_bytes()).unwrap();
        let p = Pointer {
            bundle: hash.clone(),
            catalog: "m".into(),
            shadow: None,
        };
        m.put(POINTER_KEY, p.to_json().as_bytes()).unwrap();
        (m, hash)
    }

    fn arms(c: ArmTally, h: ArmTally) -> BTreeMap<String, ArmTally> {
        BTreeMap::from([("recs/control".into(), c), ("recs/harmful".into(), h)])
    }

    #[test]
    fn a_breached_guardrail_sends_everyone_to_control_once_and_says_why() {
        let (store, live_hash) = seeded();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("experiments.json");
        let mut c = Controller::open(&path);
        // Healthy so far: no stop.
        let r = c
            .round(&store, &arms(conv(400, 40), conv(400, 41)), 1)
            .unwrap();
        assert!(r.stopped.is_none());
        // Conversion halves: stopped, with the guardrail named in the history.
        let r = c
            .round(&store, &arms(conv(5000, 500), conv(5000, 240)), 2)
            .unwrap();
        let stop = r.stopped.unwrap();
        assert!(stop
            .reason
            .starts_with("guardrail conversion breached by variant harmful"));
        assert_eq!(stop.from_bundle, live_hash);
        let p = Pointer::parse(&store.text(POINTER_KEY).unwrap().unwrap()).unwrap();
        assert_eq!(p.bundle, stop.to_bundle);
        let h = History::parse(&store.text(HISTORY_KEY).unwrap().unwrap()).unwrap();
        let last = h.entries.last().unwrap();
        assert_eq!(last.by, BY);
        assert_eq!(last.reason.as_deref(), Some(stop.reason.as_str()));
        // The new bundle: the same rules, the harmful variant at weight 0.
        let text = store.text(&bundle_key(&p.bundle)).unwrap().unwrap();
        let b = edgerec::rules::compile_json(&text, u64::MAX / 4).unwrap();
        let weights: Vec<u32> = b
            .experiment
            .unwrap()
            .variants
            .iter()
            .map(|v| v.weight)
            .collect();
        assert_eq!(weights, [1, 0]);
        // The next round sees a stopped experiment and does not stop again.
        let r = c
            .round(&store, &arms(conv(6000, 600), conv(5000, 240)), 3)
            .unwrap();
        assert!(r.stopped.is_none());
        let doc = read_report(&path).unwrap();
        assert_eq!(doc.experiments["recs"].stops.len(), 1);
        assert_eq!(doc.experiments["recs"].looks.len(), 3);
        assert_eq!(doc.bundle.as_deref(), Some(p.bundle.as_str()));
    }

    #[test]
    fn a_corrupt_report_is_started_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.json");
        std::fs::write(&path, b"{not json").unwrap();
        let (store, _) = seeded();
        let mut c = Controller::open(&path);
        assert!(c.doc().experiments.is_empty());
        c.round(&store, &arms(conv(10, 1), conv(10, 1)), 5).unwrap();
        assert_eq!(
            read_report(&path).unwrap().experiments["recs"].looks.len(),
            1
        );
    }

    #[test]
    fn an_a_a_split_and_a_young_experiment_are_left_alone() {
        let (store, live_hash) = seeded();
        let dir = tempfile::tempdir().unwrap();
        let mut c = Controller::open(&dir.path().join("e.json"));
        for (i, a) in [50, 5000, 9000].into_iter().enumerate() {
            let r = c
                .round(&store, &arms(conv(a, a / 10), conv(a, a / 10)), i as u64)
                .unwrap();
            assert!(r.stopped.is_none());
        }
        // Too few sessions for a verdict, however bad it looks.
        let r = c
            .round(&store, &arms(conv(60, 30), conv(60, 0)), 9)
            .unwrap();
        assert!(r.stopped.is_none());
        let p = Pointer::parse(&store.text(POINTER_KEY).unwrap().unwrap()).unwrap();
        assert_eq!(p.bundle, live_hash);
        assert_eq!(store.text(HISTORY_KEY).unwrap(), None);
    }
}
