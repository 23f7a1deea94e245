//! `edgerec experiments`: read the controller's report (`report`), and the stats engine's
//! error-rate and power simulations (`simulate`, the figures in BENCHMARKS.md).

use edgerec::experiment::report::ReportDoc;
use edgerec::experiment::stats::{metric_name, simulate, Simulation};
use edgerec::rules::bundle::Metric;
use edgerec_trainer::control::read_report;
use std::fmt::Write;
use std::path::PathBuf;

/// `edgerec experiments …`
#[derive(Debug, clap::Subcommand)]
pub enum ExperimentsCmd {
    /// Every experiment the controller has looked at: per variant and metric the lift with its
    /// always-valid 95% interval, the sample-ratio check, guardrails, winners and stops.
    Report {
        /// The controller's report file (in the trainer's state directory).
        #[arg(long, default_value = "data/trainer/experiments.json")]
        file: PathBuf,
        /// The report document as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Simulate monitored experiments: the share that ever declares a difference (A/A: the
    /// false-positive rate under peeking; with `--lift`: power by sample size).
    Simulate {
        /// Experiments.
        #[arg(long, default_value_t = 1000)]
        experiments: u32,
        /// Looks per experiment.
        #[arg(long, default_value_t = 50)]
        looks: u32,
        /// Sessions per arm at the last look.
        #[arg(long, default_value_t = 10_000)]
        sessions: u32,
        /// The control's conversion rate.
        #[arg(long, default_value_t = 0.1)]
        rate: f64,
        /// The variant's relative lift (0: A/A).
        #[arg(long, default_value_t = 0.0)]
        lift: f64,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// `conversion`, `ctr` (a ratio metric) or `revenue` (heavy-tailed).
        #[arg(long, default_value = "conversion", value_parser = metric)]
        metric: Metric,
    },
}

fn metric(s: &str) -> Result<Metric, String> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| format!("{s:?}: not a metric (conversion, ctr, revenue)"))
}

/// Runs one command; returns what to print.
pub fn run(cmd: ExperimentsCmd) -> Result<String, String> {
    match cmd {
        ExperimentsCmd::Report { file, json } => {
            let doc = read_report(&file).map_err(|e| e.to_string())?;
            if json {
                return serde_json::to_string_pretty(&doc).map_err(|e| e.to_string());
            }
            Ok(table(&doc))
        }
        ExperimentsCmd::Simulate {
            experiments,
            looks,
            sessions,
            rate,
            lift,
            seed,
            metric,
        } => {
            let r = simulate(&Simulation {
                experiments,
                looks,
                sessions_per_arm: sessions,
                base_rate: rate,
                lift,
                seed,
                metric,
            });
            Ok(serde_json::json!({
                "experiments": experiments, "looks": looks, "sessions_per_arm": sessions,
                "rate": rate, "lift": lift, "seed": seed, "metric": metric_name(metric),
                "ever_significant": r.ever_significant,
                "naive_ever_significant": r.naive_ever_significant,
                "by_look": r.by_look,
            })
            .to_string())
        }
    }
}

fn pct(v: f64) -> String {
    format!("{:+.2}%", v * 100.0)
}

/// The report as text: one block per experiment, one row per variant and metric.
pub fn table(doc: &ReportDoc) -> String {
    let mut out = String::new();
    if doc.experiments.is_empty() {
        return "no experiment reports yet (the trainer writes them once experiment sums arrive)\n"
            .into();
    }
    let _ = writeln!(out, "live bundle {}", doc.bundle.as_deref().unwrap_or("-"));
    for (id, e) in &doc.experiments {
        let r = &e.report;
        let _ = writeln!(
            out,
            "\nexperiment {id}  control {} ({} sessions)  primary {}",
            r["control"].as_str().unwrap_or("-"),
            r["control_sessions"],
            r["primary"].as_str().unwrap_or("-")
        );
        match r["srm"].as_object() {
            Some(s) => {
                let _ = writeln!(
                    out,
                    "  sample ratio: sessions {} expected {} p = {:.3e} {}",
                    s["sessions"],
                    s["expected"],
                    s["p_value"].as_f64().unwrap_or(1.0),
                    if s["mismatch"].as_bool() == Some(true) {
                        "MISMATCH"
                    } else {
                        "ok"
                    }
                );
            }
            None => out.push_str("  sample ratio: not checked (a variant is at weight 0)\n"),
        }
        let _ = writeln!(
            out,
            "  {:<12} {:<15} {:>12} {:>12} {:>9} {:>22}  verdict",
            "variant", "metric", "control", "variant", "lift", "lift 95% (always-valid)"
        );
        for v in r["variants"].as_array().into_iter().flatten() {
            let name = v["name"].as_str().unwrap_or("-");
            for m in v["metrics"].as_array().into_iter().flatten() {
                let lift = m["lift"].as_f64();
                let ci = m["lift_ci"].as_array().map(|c| {
                    format!(
                        "[{}, {}]",
                        pct(c[0].as_f64().unwrap_or(0.0)),
                        pct(c[1].as_f64().unwrap_or(0.0))
                    )
                });
                let verdict = if m["better"].as_bool() == Some(true) {
                    "better"
                } else if m["significant"].as_bool() == Some(true) {
                    "worse"
                } else {
                    "-"
                };
                let _ = writeln!(
                    out,
                    "  {:<12} {:<15} {:>12.4} {:>12.4} {:>9} {:>22}  {verdict}",
                    name,
                    m["metric"].as_str().unwrap_or("-"),
                    m["control"]["mean"].as_f64().unwrap_or(0.0),
                    m["variant"]["mean"].as_f64().unwrap_or(0.0),
                    lift.map_or("-".into(), pct),
                    ci.unwrap_or_else(|| "-".into()),
                );
            }
            for g in v["guardrails"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    out,
                    "  {:<12} guardrail {}: {}",
                    name,
                    if g["breached"].as_bool() == Some(true) {
                        "BREACHED"
                    } else {
                        "ok"
                    },
                    g["detail"].as_str().unwrap_or("")
                );
            }
        }
        for w in &e.winners {
            let _ = writeln!(
                out,
                "  winner on the primary metric: {w} (promote it yourself)"
            );
        }
        for s in &e.stops {
            let _ = writeln!(
                out,
                "  STOPPED at {} ms: {} (bundle {} → {})",
                s.at_ms, s.reason, s.from_bundle, s.to_bundle
            );
        }
        for w in r["warnings"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "  warning: {}", w.as_str().unwrap_or(""));
        }
    }
    out
}
