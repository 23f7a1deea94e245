//! Replay evaluation: each test session is fed to the engine one click at a time, through the
//! same `decide` call the edge makes (state blob in, state blob out), and after each click
//! the next clicked item is looked up in the list (next-item protocol). POP and session-POP
//! baselines are scored on the same predictions in the same pass.

use crate::clicklog::{read_sessions, ClickLogError, LogStats};
use crate::model::{Model, ModelConfig};
use edgerec::engine::{DecideRequest, Engine};
use edgerec::event::{Event, EventKind};
use edgerec::features::Context;
use rustc_hash::FxHashMap;
use std::io::BufRead;
use std::time::{Duration, Instant};

/// HitRate@K and MRR@K accumulated over predictions.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    /// The cut-offs.
    pub ks: Vec<usize>,
    /// Predictions made.
    pub predictions: u64,
    hits: Vec<u64>,
    rr: Vec<f64>,
}

impl Metrics {
    /// Empty metrics for these cut-offs.
    pub fn new(ks: &[usize]) -> Metrics {
        Metrics {
            ks: ks.to_vec(),
            predictions: 0,
            hits: vec![0; ks.len()],
            rr: vec![0.0; ks.len()],
        }
    }

    /// Scores one prediction: `list` ranked best first, `next` what was clicked.
    pub fn score<S: AsRef<str>>(&mut self, list: &[S], next: &str) {
        self.predictions += 1;
        if let Some(pos) = list.iter().position(|i| i.as_ref() == next) {
            let rank = pos + 1;
            for (j, &k) in self.ks.iter().enumerate() {
                if rank <= k {
                    self.hits[j] += 1;
                    self.rr[j] += 1.0 / rank as f64;
                }
            }
        }
    }

    /// HitRate@K (= Recall@K for one target).
    pub fn hit_rate(&self, k: usize) -> f64 {
        self.at(k, &self.hits.iter().map(|&h| h as f64).collect::<Vec<_>>())
    }

    /// MRR@K (ranks beyond K count 0).
    pub fn mrr(&self, k: usize) -> f64 {
        self.at(k, &self.rr)
    }

    fn at(&self, k: usize, v: &[f64]) -> f64 {
        match self.ks.iter().position(|&x| x == k) {
            Some(j) if self.predictions > 0 => v[j] / self.predictions as f64,
            _ => 0.0,
        }
    }
}

/// One evaluated method.
#[derive(Debug, Clone)]
pub struct Row {
    /// Method name.
    pub name: String,
    /// Its metrics.
    pub metrics: Metrics,
    /// Wall time of its decisions (engine rows only).
    pub decide_time: Option<Duration>,
}

/// The result of one replay.
#[derive(Debug, Clone)]
pub struct Report {
    /// One row per engine bundle, then POP and session-POP.
    pub rows: Vec<Row>,
    /// What the test log held.
    pub log: LogStats,
}

/// One replayed request: the session's blob, its new events, at the events' time.
fn replay_request<'a>(
    state: &'a Option<Vec<u8>>,
    events: &'a [Event],
    session: &str,
    now_ms: u64,
    limit: usize,
) -> DecideRequest<'a> {
    DecideRequest {
        state: state.as_deref(),
        events,
        context: Context {
            session_id: Some(session.to_string()),
            ..Context::default()
        },
        now_ms,
        limit,
        tier: None,
        trace: None,
    }
}

/// Replays `test` through each engine (name, engine) and the baselines. `popular` is the
/// global popularity ranking from training, best first.
pub fn replay(
    engines: &[(String, &Engine)],
    popular: &[String],
    test: impl BufRead,
    ks: &[usize],
) -> Result<Report, ClickLogError> {
    let limit = ks.iter().copied().max().unwrap_or(20);
    let mut rows: Vec<Row> = engines
        .iter()
        .map(|(name, _)| Row {
            name: name.clone(),
            metrics: Metrics::new(ks),
            decide_time: Some(Duration::ZERO),
        })
        .collect();
    let mut pop = Metrics::new(ks);
    let mut spop = Metrics::new(ks);
    let pop_rank: FxHashMap<&str, usize> = popular
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let pop_top: Vec<&str> = popular.iter().take(limit).map(String::as_str).collect();
    let log = read_sessions(test, |session| {
        let clicks = &session.clicks;
        if clicks.len() < 2 {
            return;
        }
        for (e, (_, engine)) in engines.iter().enumerate() {
            let mut state: Option<Vec<u8>> = None;
            let mut spent = Duration::ZERO;
            for t in 0..clicks.len() - 1 {
                let (item, ts) = &clicks[t];
                let events = [Event::new(EventKind::View, item.clone(), *ts)];
                let started = Instant::now();
                let d = engine.decide(&replay_request(&state, &events, &session.id, *ts, limit));
                spent += started.elapsed();
                if d.state_changed {
                    state = d.state;
                }
                let ids: Vec<&str> = d.items.iter().map(|r| r.id.as_str()).collect();
                rows[e].metrics.score(&ids, &clicks[t + 1].0);
            }
            if let Some(total) = rows[e].decide_time.as_mut() {
                *total += spent;
            }
        }
        // Baselines on the same predictions.
        let mut counts: Vec<(&str, u32)> = Vec::new();
        for t in 0..clicks.len() - 1 {
            let item = clicks[t].0.as_str();
            match counts.iter_mut().find(|c| c.0 == item) {
                Some(c) => c.1 += 1,
                None => counts.push((item, 1)),
            }
            let next = &clicks[t + 1].0;
            pop.score(&pop_top, next);
            let mut ranked = counts.clone();
            let rank_of = |id: &str| pop_rank.get(id).copied().unwrap_or(usize::MAX);
            ranked.sort_by(|a, b| {
                b.1.cmp(&a.1)
                    .then_with(|| rank_of(a.0).cmp(&rank_of(b.0)))
                    .then_with(|| a.0.cmp(b.0))
            });
            let mut list: Vec<&str> = ranked.iter().map(|c| c.0).take(limit).collect();
            for &p in &pop_top {
                if list.len() >= limit {
                    break;
                }
                if !list.contains(&p) {
                    list.push(p);
                }
            }
            spop.score(&list, next);
        }
    })?;
    rows.push(Row {
        name: "POP (global popularity)".into(),
        metrics: pop,
        decide_time: None,
    });
    rows.push(Row {
        name: "session-POP".into(),
        metrics: spop,
        decide_time: None,
    });
    Ok(Report { rows, log })
}

/// What [`learn_feedback`] replayed and learned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedbackStats {
    /// Sessions that taught the model the replay served.
    pub fit_sessions: usize,
    /// Sessions replayed.
    pub replayed_sessions: usize,
    /// Impressions of related items the engine counted.
    pub impressions: u64,
    /// Clicks on them it counted.
    pub clicks: u64,
}

/// Learns exposure feedback as the edge would have: the log's sessions in time order, the
/// oldest `1 - share` teach a model, the newest `share` are replayed through an engine holding
/// it (bundle `bundle`) one click at a time. Each decision shows `shown` items; the next
/// request carries an impression, placed (`from`, `pos`), of every item a related list put
/// there, and the next click, placed too when that item was shown. What the engine counted
/// (its `shown` aggregates, the edge's code path) is added to `model`, which the caller has
/// trained on the whole log.
pub fn learn_feedback(
    model: &mut Model,
    cfg: &ModelConfig,
    bundle: &edgerec::rules::CompiledBundle,
    log: impl BufRead,
    share: f64,
    shown: usize,
) -> Result<FeedbackStats, FeedbackError> {
    let mut sessions = Vec::new();
    read_sessions(log, |s| sessions.push(s))?;
    sessions.retain(|s| !s.clicks.is_empty());
    sessions.sort_by_key(|s| s.clicks[0].1);
    let split = ((sessions.len() as f64) * (1.0 - share.clamp(0.0, 1.0))).round() as usize;
    let (fit, replayed) = sessions.split_at(split.min(sessions.len()));
    let mut early = Model::new();
    for s in fit {
        early.observe_session(cfg, &s.clicks);
    }
    let catalog = edgerec::catalog::Catalog::from_doc(&early.build(cfg, None))
        .map_err(|e| FeedbackError::Engine(e.to_string()))?;
    let engine = Engine::with_catalog(
        edgerec::engine::EngineConfig::default(),
        bundle.clone(),
        &catalog,
    )
    .map_err(|e| FeedbackError::Engine(e.to_string()))?;
    let mut stats = FeedbackStats {
        fit_sessions: fit.len(),
        replayed_sessions: replayed.len(),
        ..FeedbackStats::default()
    };
    for s in replayed {
        let mut state: Option<Vec<u8>> = None;
        // Items the previous decision placed: (item, from, pos).
        let mut placed: Vec<(String, String, u32)> = Vec::new();
        for (t, (item, ts)) in s.clicks.iter().enumerate() {
            let mut events: Vec<Event> = placed
                .iter()
                .map(|(id, from, pos)| Event {
                    from: Some(from.clone()),
                    pos: Some(*pos),
                    ..Event::new(EventKind::Impression, id.clone(), *ts)
                })
                .collect();
            let click = match placed.iter().find(|p| p.0 == *item) {
                Some((_, from, pos)) => Event {
                    from: Some(from.clone()),
                    pos: Some(*pos),
                    ..Event::new(EventKind::Click, item.clone(), *ts)
                },
                None => Event::new(EventKind::View, item.clone(), *ts),
            };
            events.push(click);
            let last = t + 1 == s.clicks.len();
            let limit = if last { 0 } else { shown };
            let d = engine.decide(&replay_request(&state, &events, &s.id, *ts, limit));
            if d.state_changed {
                state = d.state;
            }
            for (from, items) in &d.delta.shown {
                for (id, at) in items {
                    for (&pos, n) in at {
                        model.observe_shown(cfg, from, id, pos, n.impressions, n.clicks, *ts);
                        stats.impressions += n.impressions;
                        stats.clicks += n.clicks;
                    }
                }
            }
            placed = d
                .items
                .iter()
                .enumerate()
                .filter_map(|(pos, r)| {
                    let from = r.anchor()?;
                    Some((r.id.clone(), from.to_string(), pos as u32))
                })
                .collect();
        }
    }
    Ok(stats)
}

/// Why [`learn_feedback`] failed.
#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    /// The log could not be read.
    #[error(transparent)]
    Log(#[from] ClickLogError),
    /// The early model or its engine could not be built.
    #[error("feedback replay engine: {0}")]
    Engine(String),
}

impl Report {
    /// The table as Markdown.
    pub fn markdown(&self) -> String {
        let ks = self
            .rows
            .first()
            .map(|r| r.metrics.ks.clone())
            .unwrap_or_default();
        let mut s = String::from("| method |");
        for k in &ks {
            s.push_str(&format!(" HR@{k} | MRR@{k} |"));
        }
        s.push_str(" decisions/s | µs/decision |\n|---|");
        for _ in &ks {
            s.push_str("---:|---:|");
        }
        s.push_str("---:|---:|\n");
        for r in &self.rows {
            s.push_str(&format!("| {} |", r.name));
            for &k in &ks {
                s.push_str(&format!(
                    " {:.4} | {:.4} |",
                    r.metrics.hit_rate(k),
                    r.metrics.mrr(k)
                ));
            }
            match r.decide_time {
                Some(t) if r.metrics.predictions > 0 => {
                    let per = t.as_secs_f64() / r.metrics.predictions as f64;
                    s.push_str(&format!(" {:.0} | {:.1} |\n", 1.0 / per, per * 1e6));
                }
                _ => s.push_str(" – | – |\n"),
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_by_hand() {
        let mut m = Metrics::new(&[1, 3]);
        m.score(&["a", "b", "c"], "a"); // rank 1
        m.score(&["a", "b", "c"], "c"); // rank 3
        m.score(&["a", "b", "c"], "z"); // miss
        m.score(&["a", "b", "c"], "b"); // rank 2
        assert_eq!(m.hit_rate(1), 0.25);
        assert_eq!(m.hit_rate(3), 0.75);
        assert_eq!(m.mrr(1), 0.25);
        assert!((m.mrr(3) - (1.0 + 1.0 / 3.0 + 0.5) / 4.0).abs() < 1e-12);
    }
}
