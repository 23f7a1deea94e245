//! The training loop shared by the sources: read new records, publish a snapshot, remember
//! how far we read. Order per round: save state (counts + positions) → publish → commit
//! Kafka offsets. Whatever crashes in between, a restart re-reads only what the saved state
//! does not hold.

use crate::control::Controller;
use crate::model::ModelConfig;
use crate::publish::{publish, Kv, PublishError, Published};
use crate::records::{apply, Applied, Encoded, RecordError};
use crate::state::{high_water, merged, StateDir, StateError, TrainerState, SEEN_MAX};
use edgerec::catalog::CatalogDoc;
use std::collections::BTreeMap;
use std::io::{BufRead, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The controller's report file, in the state directory.
pub const REPORT_FILE: &str = "experiments.json";

/// Why a training round failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// State.
    #[error(transparent)]
    State(#[from] StateError),
    /// Publishing.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// Reading a source.
    #[error("{path}: {source}")]
    Io {
        /// Source.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Kafka client.
    #[error("kafka: {0}")]
    Kafka(String),
}

/// Counters of a run, printed as progress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Records applied.
    pub applied: u64,
    /// Records below a saved position (already counted before a restart).
    pub skipped_seen: u64,
    /// Copies of records already counted (same batch, topic and item), skipped.
    pub copies: u64,
    /// Records that did not decode (logged, skipped).
    pub bad: u64,
    /// Snapshots published.
    pub published: u64,
    /// Sum of the counts applied, per topic suffix (`views`, `transitions`, ...).
    pub totals: BTreeMap<String, u64>,
}

impl RunStats {
    /// The counters as one JSON line (what `kafka` and `records` print when they stop).
    pub fn json(&self) -> String {
        serde_json::json!({
            "applied": self.applied,
            "skipped_seen": self.skipped_seen,
            "copies": self.copies,
            "bad": self.bad,
            "published": self.published,
            "totals": self.totals,
        })
        .to_string()
    }
}

/// A trainer instance: parameters, its state directory, and where it publishes.
pub struct Trainer {
    /// Parameters.
    pub cfg: ModelConfig,
    /// Topic prefix of the collector's records.
    pub prefix: String,
    dir: StateDir,
    /// This instance's state.
    pub state: TrainerState,
    others: Vec<TrainerState>,
    base: Option<CatalogDoc>,
    out: PathBuf,
    kv: Option<Kv>,
    /// Counters.
    pub stats: RunStats,
    /// The experiment controller (when publishing to KV, where releases live).
    pub controller: Option<Controller>,
    dirty: bool,
    last_progress: Instant,
}

impl Trainer {
    /// Loads this instance's state (and its peers', for skipping and merging).
    pub fn open(
        cfg: ModelConfig,
        prefix: &str,
        dir: StateDir,
        base: Option<CatalogDoc>,
        out: &Path,
        kv: Option<Kv>,
    ) -> Result<Trainer, RunError> {
        let state = dir.load(&cfg)?;
        let others = dir.others(&cfg)?;
        let controller = kv
            .as_ref()
            .map(|_| Controller::open(&dir.path().join(REPORT_FILE)));
        Ok(Trainer {
            controller,
            cfg,
            prefix: prefix.to_string(),
            dir,
            state,
            others,
            base,
            out: out.to_path_buf(),
            kv,
            stats: RunStats::default(),
            dirty: false,
            last_progress: Instant::now(),
        })
    }

    /// Whether records were applied since the last publish.
    pub fn dirty(&self) -> bool {
        self.dirty
    }

    /// The next unread offset of a source position, over all instances.
    pub fn position(&self, key: &str) -> u64 {
        high_water(key, &self.state, &self.others)
    }

    /// Applies one record at `offset` of position `key`, unless already counted.
    pub fn take(&mut self, key: &str, offset: u64, topic: &str, value: Encoded) {
        if offset < self.position(key) {
            self.stats.skipped_seen += 1;
            return;
        }
        let (seen, others) = (&mut self.state.seen, &self.others);
        // A partition that moved here from another instance brings that instance's memory.
        let first_time =
            |id| !others.iter().any(|o| o.seen.contains(id)) && seen.insert(id, SEEN_MAX);
        match apply(
            &mut self.state.model,
            &self.cfg,
            &self.prefix,
            topic,
            value,
            first_time,
        ) {
            Ok(Applied::Counted(suffix, count)) => {
                self.stats.applied += 1;
                *self.stats.totals.entry(suffix.to_string()).or_insert(0) += count;
                self.dirty = true;
            }
            Ok(Applied::Copy) => self.stats.copies += 1,
            Ok(Applied::Ignored) => {}
            Err(e) => self.bad(&e),
        }
        self.state.positions.insert(key.to_string(), offset + 1);
        self.progress();
    }

    fn bad(&mut self, e: &RecordError) {
        self.stats.bad += 1;
        if self.stats.bad <= 10 {
            eprintln!(
                "{{\"level\":\"warn\",\"skipped_record\":{:?}}}",
                e.to_string()
            );
        }
    }

    fn progress(&mut self) {
        if self.last_progress.elapsed() >= Duration::from_secs(5) {
            self.last_progress = Instant::now();
            eprintln!(
                "{{\"level\":\"info\",\"applied\":{},\"skipped_seen\":{},\"copies\":{},\"bad\":{},\"items\":{},\"pairs\":{}}}",
                self.stats.applied,
                self.stats.skipped_seen,
                self.stats.copies,
                self.stats.bad,
                self.state.model.items(),
                self.state.model.pairs()
            );
        }
    }

    /// Saves state, then builds and publishes the merged snapshot.
    pub fn publish(&mut self) -> Result<Published, RunError> {
        self.dir.save(&self.state)?;
        self.others = self.dir.others(&self.cfg)?;
        let model = merged(&self.cfg, &self.state, &self.others);
        let doc = model.build(&self.cfg, self.base.as_ref());
        let done = publish(&doc, &self.out, self.kv.as_ref())?;
        self.control(&model.experiments);
        self.stats.published += 1;
        self.dirty = false;
        eprintln!(
            "{}",
            serde_json::json!({
                "level": "info",
                "published": done.version,
                "head": done.head,
                "items": done.items,
                "release": done.stats,
                "keys_written": done.keys_written,
                "switched": done.switched,
                "applied": self.stats.applied,
            })
        );
        Ok(done)
    }

    /// A controller round on the merged experiment sums (after the model is published). Its
    /// failures are logged, never fatal: the model keeps flowing while KV is unreachable.
    fn control(&mut self, arms: &BTreeMap<String, edgerec::experiment::metrics::ArmTally>) {
        let (Some(c), Some(kv)) = (self.controller.as_mut(), self.kv.as_ref()) else {
            return;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let noted = c.published(now, arms.is_empty());
        if arms.is_empty() {
            if let Err(e) = noted {
                eprintln!(
                    "{}",
                    serde_json::json!({"level": "warn", "controller": e.to_string()})
                );
            }
            return;
        }
        match c.round(kv, arms, now) {
            Ok(r) => {
                if let Some(s) = r.stopped {
                    eprintln!(
                        "{}",
                        serde_json::json!({"level": "warn", "experiment_stopped": s.reason, "from": s.from_bundle, "to": s.to_bundle})
                    );
                }
                for v in r
                    .report
                    .iter()
                    .flat_map(|r| r.variants.iter().filter(|v| v.wins))
                {
                    eprintln!(
                        "{}",
                        serde_json::json!({"level": "info", "experiment_winner": v.name})
                    );
                }
            }
            Err(e) => eprintln!(
                "{}",
                serde_json::json!({"level": "warn", "controller": e.to_string()})
            ),
        }
    }

    /// Reads the collector's records file from the saved byte offset to its last complete
    /// line. Returns the lines read.
    pub fn read_records_file(&mut self, path: &Path) -> Result<u64, RunError> {
        let io = |source| RunError::Io {
            path: path.display().to_string(),
            source,
        };
        let key = format!("file:{}", path.display());
        let mut f = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io(e)),
        };
        let mut at = self.position(&key);
        if f.metadata().map_err(io)?.len() < at {
            // Truncated or replaced: a new file starts from its beginning.
            at = 0;
            self.state.positions.insert(key.clone(), 0);
            self.others.iter_mut().for_each(|o| {
                o.positions.remove(&key);
            });
        }
        f.seek(SeekFrom::Start(at)).map_err(io)?;
        let mut r = std::io::BufReader::new(f);
        let mut line = Vec::new();
        let mut n = 0;
        loop {
            line.clear();
            let len = r.read_until(b'\n', &mut line).map_err(io)? as u64;
            // A line still being written has no newline yet: leave it for the next round.
            if len == 0 || line.last() != Some(&b'\n') {
                break;
            }
            match serde_json::from_slice::<serde_json::Value>(&line) {
                Ok(v) => {
                    let topic = v["topic"].as_str().unwrap_or_default().to_string();
                    self.take(&key, at, &topic, Encoded::Json(&v["value"]));
                }
                Err(e) => self.bad(&RecordError::Schema {
                    topic: "(file line)".into(),
                    detail: e.to_string(),
                }),
            }
            // Positions here are byte offsets: the next line starts after this one.
            self.state.positions.insert(key.clone(), at + len);
            at += len;
            n += 1;
        }
        Ok(n)
    }
}
