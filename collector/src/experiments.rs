//! The experiment controller's verdicts as Prometheus gauges, read from its report file
//! (`EXPERIMENTS_REPORT`, written by the trainer next to its state) at each scrape of
//! `/metrics`, so the origin has one scrape target and the alerting rules in
//! `collector/prometheus/alerts.yml` can raise a stop, a sample-ratio mismatch or a stale model.
//! Bounded: the [`MAX_EXPERIMENTS`] most recently looked-at experiments.

use crate::summary::label_value;
use edgerec::experiment::report::ReportDoc;
use std::fmt::Write;
use std::path::Path;

/// Experiments exported (the report keeps every experiment it has seen).
pub const MAX_EXPERIMENTS: usize = 10;

/// Appends the report's gauges to an OpenMetrics exposition; nothing when there is no report.
pub fn openmetrics(path: &Path, out: &mut String) {
    let Ok(bytes) = std::fs::read(path) else {
        return;
    };
    let Ok(doc) = serde_json::from_slice::<ReportDoc>(&bytes) else {
        let _ = writeln!(
            out,
            "# TYPE edgerec_experiment_report_valid gauge\nedgerec_experiment_report_valid 0"
        );
        return;
    };
    let gauge = |out: &mut String, name: &str, help: &str| {
        let _ = writeln!(out, "# TYPE {name} gauge\n# HELP {name} {help}");
    };
    gauge(
        out,
        "edgerec_experiment_report_valid",
        "Whether the controller's report file parsed",
    );
    let _ = writeln!(out, "edgerec_experiment_report_valid 1");
    gauge(
        out,
        "edgerec_experiment_report_timestamp_seconds",
        "When the controller last wrote its report",
    );
    let _ = writeln!(
        out,
        "edgerec_experiment_report_timestamp_seconds {}",
        doc.updated_ms as f64 / 1000.0
    );
    if let Some(ms) = doc.model_published_ms {
        gauge(
            out,
            "edgerec_model_published_timestamp_seconds",
            "When the trainer last published a model",
        );
        let _ = writeln!(
            out,
            "edgerec_model_published_timestamp_seconds {}",
            ms as f64 / 1000.0
        );
    }
    let mut recent: Vec<_> = doc.experiments.iter().collect();
    recent.sort_by_key(|(_, e)| std::cmp::Reverse(e.looks.last().map_or(0, |l| l.at_ms)));
    recent.truncate(MAX_EXPERIMENTS);
    let l = |s: &str| label_value(s);
    // OpenMetrics wants each family's samples together: collect, then write family by family.
    let mut stopped = Vec::new();
    let mut srm = Vec::new();
    let mut sessions = Vec::new();
    let mut winner = Vec::new();
    let mut breached = Vec::new();
    let mut lift = Vec::new();
    for (id, e) in &recent {
        let exp = format!("experiment=\"{}\"", l(id));
        stopped.push(format!("{{{exp}}} {}", u8::from(!e.stops.is_empty())));
        let r = &e.report;
        if let Some(p) = r["srm"]["p_value"].as_f64() {
            srm.push(format!("{{{exp}}} {p}"));
        }
        let control = l(r["control"].as_str().unwrap_or("control"));
        sessions.push(format!(
            "{{{exp},variant=\"{control}\"}} {}",
            r["control_sessions"].as_u64().unwrap_or(0)
        ));
        for v in r["variants"].as_array().into_iter().flatten() {
            let who = format!("{exp},variant=\"{}\"", l(v["name"].as_str().unwrap_or("")));
            sessions.push(format!("{{{who}}} {}", v["sessions"].as_u64().unwrap_or(0)));
            winner.push(format!(
                "{{{who}}} {}",
                u8::from(v["wins"].as_bool() == Some(true))
            ));
            for g in v["guardrails"].as_array().into_iter().flatten() {
                breached.push(format!(
                    "{{{who},metric=\"{}\"}} {}",
                    l(g["guardrail"]["metric"].as_str().unwrap_or("")),
                    u8::from(g["breached"].as_bool() == Some(true))
                ));
            }
            for m in v["metrics"].as_array().into_iter().flatten() {
                let (Some(est), Some(ci)) = (m["lift"].as_f64(), m["lift_ci"].as_array()) else {
                    continue;
                };
                let metric = l(m["metric"].as_str().unwrap_or(""));
                let bounds = [
                    ("estimate", Some(est)),
                    ("low", ci[0].as_f64()),
                    ("high", ci[1].as_f64()),
                ];
                for (bound, x) in bounds {
                    if let Some(x) = x.filter(|x| x.is_finite()) {
                        lift.push(format!(
                            "{{{who},metric=\"{metric}\",bound=\"{bound}\"}} {x}"
                        ));
                    }
                }
            }
        }
    }
    for (name, help, rows) in [
        ("edgerec_experiment_stopped", "1 once the controller stopped the experiment", stopped),
        ("edgerec_experiment_srm_p_value", "Always-valid sample-ratio-mismatch p-value (absent once the split was changed)", srm),
        ("edgerec_experiment_sessions", "Sessions per variant in the controller's sums", sessions),
        ("edgerec_experiment_winner", "1 when a variant beats the control on the primary metric with confidence", winner),
        ("edgerec_experiment_guardrail_breached", "1 when a variant breaches a guardrail with confidence", breached),
        ("edgerec_experiment_lift", "Relative lift of a variant over the control (bound: estimate, low, high of the always-valid 95% interval)", lift),
    ] {
        gauge(out, name, help);
        for r in rows {
            let _ = writeln!(out, "{name}{r}");
        }
    }
}
