//! The trainer's durable state: its model counts and how far it has read each source
//! (Kafka `topic/partition` → next offset, a records file → byte offset). Saved before a
//! snapshot is published and before offsets are committed, so a restart resumes exactly
//! where the last published snapshot left off: records below a saved position are skipped,
//! never counted twice.
//!
//! Several instances of one consumer group share a state directory, one file each
//! (`<instance>.state`). The published snapshot is the sum of all files, and a partition
//! that moved between instances is skipped up to the highest position any file holds.

use crate::model::{Model, ModelConfig};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};

/// State file format version.
const VERSION: u8 = 1;

/// Why state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// File system.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Unreadable file.
    #[error("{path}: not a trainer state file ({detail})")]
    Corrupt {
        /// File.
        path: String,
        /// Decoder message.
        detail: String,
    },
    /// Trained with other parameters; mixing would skew the counts.
    #[error("{path}: trained with different parameters; use a new state directory")]
    ConfigChanged {
        /// File.
        path: String,
    },
}

/// One instance's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Format version.
    pub v: u8,
    /// Parameters the counts were taken with.
    pub config: Option<ModelConfig>,
    /// Counts.
    pub model: Model,
    /// Source position → next unread offset.
    pub positions: BTreeMap<String, u64>,
    /// Records already counted, by identity: copies of one record (the same batch written by
    /// two collector instances, or by one after its dedup window forgot the id) count once.
    #[serde(default)]
    pub seen: SeenWindow,
}

/// Most record identities a [`SeenWindow`] keeps by default (8 bytes each on disk; a copy
/// further back than this many records is not recognised).
pub const SEEN_MAX: usize = 1_000_000;

/// The identities of the most recently counted records, oldest first; bounded by count and
/// saved with the positions, so a restart remembers what it counted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SeenWindow {
    order: VecDeque<u64>,
    #[serde(skip)]
    set: HashSet<u64>,
}

impl PartialEq for SeenWindow {
    fn eq(&self, other: &Self) -> bool {
        self.order == other.order
    }
}

impl SeenWindow {
    /// Rebuilds the lookup set after loading.
    fn reindex(&mut self) {
        self.set = self.order.iter().copied().collect();
    }

    /// Whether an identity was counted.
    pub fn contains(&self, id: u64) -> bool {
        self.set.contains(&id)
    }

    /// Remembers an identity; false if it was already there. Forgets the oldest past `max`.
    pub fn insert(&mut self, id: u64, max: usize) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        while self.order.len() > max.max(1) {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }

    /// Identities kept.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether none are kept.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// A state directory seen by one instance.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
    instance: String,
}

impl StateDir {
    /// The directory and this instance's name.
    pub fn new(dir: &Path, instance: &str) -> StateDir {
        StateDir {
            dir: dir.to_path_buf(),
            instance: instance.to_string(),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn own_path(&self) -> PathBuf {
        self.dir.join(format!("{}.state", self.instance))
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
        move |source| StateError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    fn read(path: &Path, cfg: &ModelConfig) -> Result<TrainerState, StateError> {
        let bytes = std::fs::read(path).map_err(Self::io(path))?;
        let mut st: TrainerState =
            rmp_serde::from_slice(&bytes).map_err(|e| StateError::Corrupt {
                path: path.display().to_string(),
                detail: e.to_string(),
            })?;
        if st.v != VERSION {
            return Err(StateError::Corrupt {
                path: path.display().to_string(),
                detail: format!("version {}", st.v),
            });
        }
        if st.config.as_ref().is_some_and(|c| c != cfg) {
            return Err(StateError::ConfigChanged {
                path: path.display().to_string(),
            });
        }
        st.model.reindex();
        st.seen.reindex();
        Ok(st)
    }

    /// This instance's state (empty on first start).
    pub fn load(&self, cfg: &ModelConfig) -> Result<TrainerState, StateError> {
        let path = self.own_path();
        if !path.exists() {
            return Ok(TrainerState {
                v: VERSION,
                config: Some(cfg.clone()),
                ..TrainerState::default()
            });
        }
        Self::read(&path, cfg)
    }

    /// Every other instance's state in the directory.
    pub fn others(&self, cfg: &ModelConfig) -> Result<Vec<TrainerState>, StateError> {
        let own = self.own_path();
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Self::io(&self.dir)(e)),
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "state") && *p != own)
            .collect();
        paths.sort();
        for p in paths {
            out.push(Self::read(&p, cfg)?);
        }
        Ok(out)
    }

    /// Writes this instance's state durably (temp file, fsync, rename).
    pub fn save(&self, st: &TrainerState) -> Result<(), StateError> {
        std::fs::create_dir_all(&self.dir).map_err(Self::io(&self.dir))?;
        let path = self.own_path();
        let tmp = path.with_extension("state.tmp");
        let bytes = rmp_serde::to_vec_named(st).map_err(|e| StateError::Corrupt {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(Self::io(&tmp))?;
        f.write_all(&bytes).map_err(Self::io(&tmp))?;
        f.sync_all().map_err(Self::io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(Self::io(&path))?;
        Ok(())
    }
}

/// The model to publish: this instance's counts plus every other instance's.
pub fn merged(cfg: &ModelConfig, own: &TrainerState, others: &[TrainerState]) -> Model {
    let mut m = own.model.clone();
    for o in others {
        m.merge(cfg, &o.model);
    }
    m
}

/// The highest saved position of a source over all instances.
pub fn high_water(key: &str, own: &TrainerState, others: &[TrainerState]) -> u64 {
    std::iter::once(own)
        .chain(others)
        .filter_map(|s| s.positions.get(key).copied())
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_merge_and_high_water() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ModelConfig::default();
        let a = StateDir::new(dir.path(), "a");
        let b = StateDir::new(dir.path(), "b");
        let mut sa = a.load(&cfg).unwrap();
        sa.model.observe_transition(&cfg, "x", "y", 2, 10);
        sa.positions.insert("kafka:t/0".into(), 40);
        a.save(&sa).unwrap();
        let mut sb = b.load(&cfg).unwrap();
        sb.model.observe_transition(&cfg, "x", "z", 1, 10);
        sb.positions.insert("kafka:t/0".into(), 55);
        b.save(&sb).unwrap();
        let again = a.load(&cfg).unwrap();
        assert_eq!(again.positions, sa.positions);
        let others = a.others(&cfg).unwrap();
        assert_eq!(others.len(), 1);
        assert_eq!(high_water("kafka:t/0", &again, &others), 55);
        let m = merged(&cfg, &again, &others);
        let r = m.related(&cfg, "x");
        assert_eq!(r[0].0, "y");
        assert_eq!(r[1], ("z".to_string(), 0.5));
        let other_cfg = ModelConfig {
            top_k: 5,
            ..cfg.clone()
        };
        assert!(matches!(
            a.load(&other_cfg),
            Err(StateError::ConfigChanged { .. })
        ));
        std::fs::write(dir.path().join("a.state"), b"junk").unwrap();
        assert!(matches!(a.load(&cfg), Err(StateError::Corrupt { .. })));
    }

    #[test]
    fn the_seen_window_is_bounded_and_survives_a_restart() {
        let mut w = SeenWindow::default();
        assert!(w.insert(1, 3) && w.insert(2, 3) && w.insert(3, 3));
        assert!(!w.insert(2, 3), "a copy");
        assert!(w.insert(4, 3));
        assert_eq!(w.len(), 3);
        assert!(!w.contains(1), "the oldest is forgotten past the bound");
        let st = TrainerState {
            v: VERSION,
            seen: w,
            ..TrainerState::default()
        };
        let mut back: TrainerState =
            rmp_serde::from_slice(&rmp_serde::to_vec_named(&st).unwrap()).unwrap();
        back.seen.reindex();
        assert!(back.seen.contains(4) && back.seen.contains(2) && !back.seen.contains(1));
        assert!(!back.seen.insert(3, 3));
    }
}
