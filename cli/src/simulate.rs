//! `edgerec simulate`: the command around [`edgerec_trainer::simulate`] — where the bundles,
//! the model and the sessions come from, and the report as a terminal summary, JSON, or one
//! self-contained HTML page with plots (inline SVG, no scripts, nothing fetched).

use edgerec_trainer::simulate::{FailIf, Report, TraceStats};
use std::fmt::Write as _;
use std::path::PathBuf;

/// `edgerec simulate` options.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// The candidate rule bundle (JSON).
    #[arg(long)]
    pub candidate: PathBuf,
    /// The bundle to compare with; without it, the live bundle is read from KV (`--kv`).
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// The model: a catalog (JSON) …
    #[arg(long, required_unless_present = "train", conflicts_with = "train")]
    pub catalog: Option<PathBuf>,
    /// … or a click log to train it from (as `edgerec-trainer eval --train` does).
    #[arg(long)]
    pub train: Option<PathBuf>,
    /// Sessions: click logs (`SessionId<TAB>ItemId<TAB>Time`) …
    #[arg(long = "clicks")]
    pub clicks: Vec<PathBuf>,
    /// … and/or the collector's records files (JSON lines; the `<prefix>.sessions` traces).
    #[arg(long = "traces")]
    pub traces: Vec<PathBuf>,
    /// Topic prefix of the traces.
    #[arg(long, default_value = "edgerec")]
    pub prefix: String,
    /// List length compared.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// HR/MRR cut-offs.
    #[arg(long, value_delimiter = ',', default_value = "10,20")]
    pub ks: Vec<usize>,
    /// Bootstrap resamples for the intervals.
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Replay at most this many sessions (all by default).
    #[arg(long)]
    pub max_sessions: Option<u64>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write the report as one HTML page.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Exit 3 when a condition holds, e.g. `hr20_delta < -0.01` (repeatable: any one fails).
    #[arg(long = "fail-if")]
    pub fail_if: Vec<String>,
}

/// Where the sessions came from, for the report.
#[derive(Debug, Default, serde::Serialize)]
pub struct Inputs {
    /// Click-log rows read, sessions, bad rows.
    pub click_rows: u64,
    /// Click-log sessions.
    pub click_sessions: u64,
    /// Click-log rows skipped.
    pub click_bad_rows: u64,
    /// Trace files.
    pub traces: TraceStats,
}

/// Parses every `--fail-if` before any work.
pub fn conditions(exprs: &[String]) -> Result<Vec<FailIf>, String> {
    exprs
        .iter()
        .map(|e| FailIf::parse(e).map_err(|e| e.to_string()))
        .collect()
}

/// The conditions that hold (the reasons to fail).
pub fn failed(report: &Report, conds: &[FailIf]) -> Result<Vec<String>, String> {
    let n = report.numbers();
    let mut out = Vec::new();
    for c in conds {
        if c.holds(&n).map_err(|e| e.to_string())? {
            out.push(format!(
                "{} {} {} (is {:.6})",
                c.name, c.op, c.value, n[&c.name]
            ));
        }
    }
    Ok(out)
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// The terminal summary.
pub fn text(r: &Report, inputs: &Inputs) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "live {} ({}, {} rules) vs candidate {} ({}, {} rules)",
        r.live.version,
        r.live.hash,
        r.live.rules,
        r.candidate.version,
        r.candidate.hash,
        r.candidate.rules
    );
    let _ = writeln!(
        s,
        "{} sessions replayed ({} with one event skipped), {} decisions; inputs: {} click rows ({} bad), {} trace fragments ({} bad, {} copies)",
        r.sessions,
        r.skipped_sessions,
        r.decisions,
        inputs.click_rows,
        inputs.click_bad_rows,
        inputs.traces.fragments,
        inputs.traces.bad,
        inputs.traces.copies
    );
    let _ = writeln!(
        s,
        "top-{}: changed in {} of decisions, mean overlap {:.3}",
        r.k,
        pct(r.changed_share),
        r.overlap_mean
    );
    let _ = writeln!(
        s,
        "\n{:<8} {:>9} {:>10} {:>10}  95% interval ({} resamples)",
        "metric", "live", "candidate", "delta", r.bootstrap
    );
    for m in &r.metrics {
        let _ = writeln!(
            s,
            "{:<8} {:>9.4} {:>10.4} {:>+10.4}  [{:+.4}, {:+.4}]",
            m.name, m.live, m.candidate, m.delta, m.lo, m.hi
        );
    }
    let _ = writeln!(
        s,
        "\ncoverage {:.4} → {:.4} ({} → {} items); categories per list {:.2} → {:.2}; empty lists {} → {}",
        r.coverage.live,
        r.coverage.candidate,
        r.items_shown.live,
        r.items_shown.candidate,
        r.diversity.live,
        r.diversity.candidate,
        r.empty_lists.live,
        r.empty_lists.candidate
    );
    let _ = writeln!(
        s,
        "cost per decision: median {:.1} → {:.1} µs, p99 {:.1} → {:.1} µs, blob {:.0} → {:.0} B",
        r.cost.live.median_us,
        r.cost.candidate.median_us,
        r.cost.live.p99_us,
        r.cost.candidate.p99_us,
        r.cost.live.blob_bytes_mean,
        r.cost.candidate.blob_bytes_mean
    );
    let _ = writeln!(
        s,
        "\n{:<28} {:>9} {:>9} {:>8} {:>8} {:>7} {:>7}",
        "rule", "live", "candidate", "touched", "Δrank", "gained", "lost"
    );
    for x in &r.rules {
        let rate = |present: bool, v: f64| if present { pct(v) } else { "–".into() };
        let _ = writeln!(
            s,
            "{:<28} {:>9} {:>9} {:>8} {:>+8.2} {:>7} {:>7}",
            x.id,
            rate(x.in_live, x.fire_rate_live),
            rate(x.in_candidate, x.fire_rate_candidate),
            x.touched,
            x.mean_rank_change,
            x.gained,
            x.lost
        );
    }
    for (title, list) in [("gaining", &r.gainers), ("losing", &r.losers)] {
        if !list.is_empty() {
            let items: Vec<String> = list
                .iter()
                .map(|m| format!("{} {:+}", m.item, m.delta))
                .collect();
            let _ = writeln!(s, "items {title} exposure: {}", items.join(", "));
        }
    }
    if r.warnings.is_empty() {
        let _ = writeln!(s, "\nno warnings");
    } else {
        let _ = writeln!(s, "\nwarnings:");
        for w in &r.warnings {
            let _ = writeln!(s, "  {} {}: {}", w.kind, w.rule, w.detail);
        }
    }
    s
}

/// HTML-escapes text from the bundles, the catalog and the sessions (hostile until checked).
fn esc(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Horizontal bars, two per row (live grey, candidate blue), values in 0..=max.
fn bars(rows: &[(String, f64, f64)], max: f64, fmt: &dyn Fn(f64) -> String) -> String {
    let (w, label, h) = (560.0, 200.0, 26.0);
    let height = rows.len() as f64 * h + 10.0;
    let mut s = format!(
        r#"<svg class="plot" viewBox="0 0 {} {height}" width="{}" height="{height}" role="img">"#,
        w + label + 70.0,
        w + label + 70.0
    );
    let scale = |v: f64| if max > 0.0 { v / max * w } else { 0.0 };
    for (i, (name, a, b)) in rows.iter().enumerate() {
        let y = i as f64 * h + 4.0;
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" text-anchor="end">{}</text><rect x="{label}" y="{y}" width="{:.1}" height="9" fill="#9aa3ad"><title>live {}</title></rect><rect x="{label}" y="{}" width="{:.1}" height="9" fill="#2f6fde"><title>candidate {}</title></rect><text x="{:.1}" y="{}" class="v">{} → {}</text>"##,
            label - 6.0,
            y + 14.0,
            esc(name),
            scale(*a),
            fmt(*a),
            y + 10.0,
            scale(*b),
            fmt(*b),
            label + scale(a.max(*b)) + 4.0,
            y + 14.0,
            fmt(*a),
            fmt(*b)
        );
    }
    s + "</svg>"
}

/// Differences with their intervals around a zero line.
fn forest(r: &Report) -> String {
    let (w, label, h) = (560.0, 90.0, 28.0);
    let span = r
        .metrics
        .iter()
        .flat_map(|m| [m.lo.abs(), m.hi.abs(), m.delta.abs()])
        .fold(1e-4, f64::max)
        * 1.15;
    let x = |v: f64| label + (v + span) / (2.0 * span) * w;
    let height = r.metrics.len() as f64 * h + 30.0;
    let mut s = format!(
        r#"<svg class="plot" viewBox="0 0 {} {height}" width="{}" height="{height}" role="img">"#,
        w + label + 20.0,
        w + label + 20.0
    );
    let _ = write!(
        s,
        r##"<line x1="{0:.1}" x2="{0:.1}" y1="0" y2="{1}" stroke="#555" stroke-dasharray="3 3"/><text x="{0:.1}" y="{2}" text-anchor="middle" class="v">0</text><text x="{3:.1}" y="{2}" class="v">{4:+.4}</text><text x="{5:.1}" y="{2}" text-anchor="end" class="v">{6:+.4}</text>"##,
        x(0.0),
        height - 18.0,
        height - 4.0,
        label,
        -span,
        label + w,
        span
    );
    for (i, m) in r.metrics.iter().enumerate() {
        let y = i as f64 * h + 14.0;
        let color = if m.hi < 0.0 {
            "#c62828"
        } else if m.lo > 0.0 {
            "#2e7d32"
        } else {
            "#2f6fde"
        };
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" text-anchor="end">{}</text><line x1="{:.1}" x2="{:.1}" y1="{y}" y2="{y}" stroke="{color}" stroke-width="3"/><circle cx="{:.1}" cy="{y}" r="5" fill="{color}"><title>{} {:+.4} [{:+.4}, {:+.4}]</title></circle>"##,
            label - 8.0,
            y + 4.0,
            esc(&m.name),
            x(m.lo),
            x(m.hi),
            x(m.delta),
            esc(&m.name),
            m.delta,
            m.lo,
            m.hi
        );
    }
    s + "</svg>"
}

/// Decisions by overlap of the top-k.
fn histogram(r: &Report) -> String {
    let max = r
        .overlap_histogram
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let (bw, hh) = (48.0, 140.0);
    let mut s = format!(
        r#"<svg class="plot" viewBox="0 0 {} {}" width="{}" height="{}" role="img">"#,
        bw * 11.0 + 10.0,
        hh + 40.0,
        bw * 11.0 + 10.0,
        hh + 40.0
    );
    for (i, &n) in r.overlap_histogram.iter().enumerate() {
        let bh = n as f64 / max * hh;
        let x = i as f64 * bw + 5.0;
        let _ = write!(
            s,
            r##"<rect x="{x}" y="{:.1}" width="{}" height="{bh:.1}" fill="#2f6fde"><title>overlap {:.1}: {n} decisions</title></rect><text x="{:.1}" y="{}" text-anchor="middle" class="v">{:.1}</text><text x="{:.1}" y="{:.1}" text-anchor="middle" class="v">{n}</text>"##,
            hh - bh + 14.0,
            bw - 6.0,
            i as f64 / 10.0,
            x + (bw - 6.0) / 2.0,
            hh + 30.0,
            i as f64 / 10.0,
            x + (bw - 6.0) / 2.0,
            hh - bh + 10.0
        );
    }
    s + "</svg>"
}

/// The report as one HTML page.
pub fn html(r: &Report, inputs: &Inputs, failed: &[String]) -> String {
    let mut s = String::from(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>edgerec simulate</title><style>
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:980px;color:#1d2330}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #dde2e8}
table{border-collapse:collapse;margin:8px 0}td,th{padding:3px 10px;border-bottom:1px solid #eef0f3;text-align:right}
td:first-child,th:first-child{text-align:left}.warn{background:#fff4e5;border-left:4px solid #f0a020;padding:6px 10px;margin:4px 0}
.fail{background:#fdecea;border-left:4px solid #c62828;padding:6px 10px;margin:4px 0}.ok{color:#2e7d32}
svg.plot text{font-size:12px;fill:#1d2330}svg.plot text.v{fill:#555;font-size:11px}.key span{display:inline-block;width:12px;height:10px;margin:0 4px 0 12px}
</style></head><body>"#,
    );
    let _ = write!(
        s,
        "<h1>Rule simulation: <code>{}</code> → <code>{}</code></h1><p>live <b>{}</b> ({} rules) vs candidate <b>{}</b> ({} rules). {} sessions replayed, {} decisions (top-{} compared). Inputs: {} click-log rows ({} bad), {} trace fragments ({} bad, {} copies).</p>",
        esc(&r.live.hash), esc(&r.candidate.hash), esc(&r.live.version), r.live.rules, esc(&r.candidate.version), r.candidate.rules,
        r.sessions, r.decisions, r.k, inputs.click_rows, inputs.click_bad_rows, inputs.traces.fragments, inputs.traces.bad, inputs.traces.copies
    );
    for f in failed {
        let _ = write!(s, r#"<div class="fail">--fail-if holds: {}</div>"#, esc(f));
    }
    let _ = write!(
        s,
        "<h2>Summary</h2><table><tr><th></th><th>live</th><th>candidate</th></tr><tr><td>top-{k} changed</td><td colspan=2>{}</td></tr><tr><td>mean overlap@{k}</td><td colspan=2>{:.3}</td></tr><tr><td>catalog coverage</td><td>{:.4}</td><td>{:.4}</td></tr><tr><td>categories per list</td><td>{:.2}</td><td>{:.2}</td></tr><tr><td>empty lists</td><td>{}</td><td>{}</td></tr><tr><td>µs per decision, median / p99</td><td>{:.1} / {:.1}</td><td>{:.1} / {:.1}</td></tr><tr><td>session blob, mean bytes</td><td>{:.0}</td><td>{:.0}</td></tr></table>",
        pct(r.changed_share), r.overlap_mean, r.coverage.live, r.coverage.candidate, r.diversity.live, r.diversity.candidate,
        r.empty_lists.live, r.empty_lists.candidate, r.cost.live.median_us, r.cost.live.p99_us, r.cost.candidate.median_us,
        r.cost.candidate.p99_us, r.cost.live.blob_bytes_mean, r.cost.candidate.blob_bytes_mean, k = r.k
    );
    s.push_str("<h2>Warnings</h2>");
    if r.warnings.is_empty() {
        s.push_str(r#"<p class="ok">none</p>"#);
    }
    for w in &r.warnings {
        let _ = write!(
            s,
            r#"<div class="warn"><b>{}</b> <code>{}</code>: {}</div>"#,
            esc(&w.kind),
            esc(&w.rule),
            esc(&w.detail)
        );
    }
    let _ = write!(s, "<h2>Replay accuracy (next event in the list)</h2><table><tr><th>metric</th><th>live</th><th>candidate</th><th>difference</th><th>95% interval ({} bootstrap resamples of sessions)</th></tr>", r.bootstrap);
    for m in &r.metrics {
        let _ = write!(s, "<tr><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{:+.4}</td><td>[{:+.4}, {:+.4}]</td></tr>", esc(&m.name), m.live, m.candidate, m.delta, m.lo, m.hi);
    }
    s.push_str("</table>");
    s.push_str(&forest(r));
    let _ = write!(s, "<h2>Overlap of the top-{} lists</h2>", r.k);
    s.push_str(&histogram(r));
    s.push_str(r#"<h2>Rules: share of decisions they fire in</h2><p class="key"><span style="background:#9aa3ad"></span>live<span style="background:#2f6fde"></span>candidate</p>"#);
    let rows: Vec<(String, f64, f64)> = r
        .rules
        .iter()
        .map(|x| (x.id.clone(), x.fire_rate_live, x.fire_rate_candidate))
        .collect();
    s.push_str(&bars(&rows, 1.0, &pct));
    s.push_str("<table><tr><th>rule</th><th>fires live</th><th>fires candidate</th><th>items touched</th><th>mean rank change</th><th>gained</th><th>lost</th><th>emptied</th></tr>");
    for x in &r.rules {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:+.2}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&x.id),
            if x.in_live { x.fires_live.to_string() } else { "–".into() },
            if x.in_candidate { x.fires_candidate.to_string() } else { "–".into() },
            x.touched, x.mean_rank_change, x.gained, x.lost, x.emptied
        );
    }
    s.push_str("</table>");
    let _ = write!(
        s,
        "<h2>Items gaining and losing top-{} appearances</h2>",
        r.k
    );
    let movers: Vec<(String, f64, f64)> = r
        .gainers
        .iter()
        .chain(r.losers.iter())
        .map(|m| (m.item.clone(), m.live as f64, m.candidate as f64))
        .collect();
    let max = movers.iter().map(|m| m.1.max(m.2)).fold(0.0, f64::max);
    if movers.is_empty() {
        s.push_str("<p>no item's exposure changed</p>");
    } else {
        s.push_str(&bars(&movers, max, &|v| format!("{v:.0}")));
    }
    s.push_str("</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn text_from_outside_cannot_open_markup() {
        assert_eq!(
            esc(r#"<script>"a"&'b'"#),
            "&lt;script&gt;&quot;a&quot;&amp;&#39;b&#39;"
        );
    }
}
