//! Switching what the edge serves, shared by `edgerec release` and the experiment controller:
//! every switch records a [`HistoryEntry`] in the bounded history key, then writes the pointer
//! (one pointer write moves the edge, so a rollback is one write too).

use crate::publish::{Kv, PublishError};
use edgerec::release::{bundle_key, History, HistoryEntry, Pointer, HISTORY_KEY, POINTER_KEY};
use edgerec::EngineConfig;

/// Why a release command refused.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// KV or wrangler.
    #[error(transparent)]
    Kv(#[from] PublishError),
    /// No pointer yet.
    #[error("no {POINTER_KEY} in KV: publish a release first (`edgerec publish --kv …`)")]
    NoPointer,
    /// The hash names neither a bundle nor a model in KV.
    #[error("{0}: neither bundle:{0} nor model:{0} is in KV (stage it first)")]
    Unknown(String),
    /// What the hash names would not load at the edge.
    #[error("{key} would not load with the live release: {detail}")]
    Invalid {
        /// The key.
        key: String,
        /// Why.
        detail: String,
    },
    /// Nothing recorded to go back to.
    #[error("no recorded switch to {0}: nothing to roll back to")]
    NoRollback(String),
    /// The switch would change nothing.
    #[error("already live: {0}")]
    Unchanged(String),
    /// A file.
    #[error("{0}")]
    Input(String),
}

/// Where releases live: the config KV (wrangler) or, in tests, a map.
pub trait Store {
    /// A value, None when absent.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ReleaseError>;
    /// Writes a value.
    fn put(&self, key: &str, value: &[u8]) -> Result<(), ReleaseError>;

    /// A value as text (lossy), None when absent.
    fn text(&self, key: &str) -> Result<Option<String>, ReleaseError> {
        Ok(self
            .get(key)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }
}

impl Store for Kv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ReleaseError> {
        Ok(Kv::get(self, key)?)
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), ReleaseError> {
        // wrangler takes a value on the command line or from a file; a file keeps any size and
        // any character intact.
        let dir = std::env::temp_dir().join(format!("edgerec-release-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| ReleaseError::Input(e.to_string()))?;
        let file = dir.join("value");
        std::fs::write(&file, value).map_err(|e| ReleaseError::Input(e.to_string()))?;
        let r = self.put_file(key, &file);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(r?)
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn live(store: &dyn Store) -> Result<Pointer, ReleaseError> {
    let text = store.text(POINTER_KEY)?.ok_or(ReleaseError::NoPointer)?;
    Pointer::parse(text.trim()).map_err(|e| ReleaseError::Invalid {
        key: POINTER_KEY.into(),
        detail: e.to_string(),
    })
}

pub fn history(store: &dyn Store) -> Result<History, ReleaseError> {
    match store.text(HISTORY_KEY)? {
        None => Ok(History::default()),
        Some(t) => History::parse(t.trim()).map_err(|e| ReleaseError::Invalid {
            key: HISTORY_KEY.into(),
            detail: e.to_string(),
        }),
    }
}

/// Records the switch, then writes the pointer (last: the one write that moves the edge).
pub fn switch(
    store: &dyn Store,
    from: Pointer,
    to: Pointer,
    by: &str,
    reason: Option<&str>,
) -> Result<HistoryEntry, ReleaseError> {
    if from == to {
        return Err(ReleaseError::Unchanged(to.to_json()));
    }
    let mut h = history(store)?;
    let entry = HistoryEntry {
        at_ms: now_ms(),
        pointer: to.clone(),
        previous: Some(from),
        by: by.into(),
        reason: reason.map(str::to_string),
    };
    h.record(entry.clone());
    store.put(HISTORY_KEY, h.to_json().as_bytes())?;
    store.put(POINTER_KEY, to.to_json().as_bytes())?;
    Ok(entry)
}

/// The bundle stored under `bundle:<hash>`, checked: it compiles, its hash is its key, and it
/// runs with the live model.
pub fn checked_bundle(store: &dyn Store, hash: &str, live: &Pointer) -> Result<bool, ReleaseError> {
    let key = bundle_key(hash);
    let Some(text) = store.text(&key)? else {
        return Ok(false);
    };
    let invalid = |detail: String| ReleaseError::Invalid {
        key: key.clone(),
        detail,
    };
    let head = store
        .get(&live.head_key())?
        .ok_or_else(|| invalid(format!("{} is missing", live.head_key())))?;
    let engine = edgerec::release::engine(EngineConfig::default(), &text, &head)
        .map_err(|e| invalid(e.to_string()))?;
    if engine.bundle().hash != hash {
        return Err(invalid(format!(
            "its content hashes to {}",
            engine.bundle().hash
        )));
    }
    Ok(true)
}

/// [`switch`], then — KV has no compare-and-swap, and the trainer rewrites the pointer when it
/// publishes a model — waits `settle`, reads the pointer back and, when a concurrent write
/// lost this change, applies it again on top of what is there now (at most three times).
pub fn settled(
    store: &dyn Store,
    from: Pointer,
    change: &dyn Fn(&Pointer) -> Pointer,
    by: &str,
    settle: std::time::Duration,
) -> Result<HistoryEntry, ReleaseError> {
    settled_because(store, from, change, by, None, settle)
}

/// [`settled`], recording why in the history entry.
pub fn settled_because(
    store: &dyn Store,
    from: Pointer,
    change: &dyn Fn(&Pointer) -> Pointer,
    by: &str,
    reason: Option<&str>,
    settle: std::time::Duration,
) -> Result<HistoryEntry, ReleaseError> {
    let to = change(&from);
    let mut entry = switch(store, from, to, by, reason)?;
    for _ in 0..3 {
        if settle.is_zero() {
            break;
        }
        std::thread::sleep(settle);
        let now = live(store)?;
        let want = change(&now);
        if want == now {
            break;
        }
        eprintln!("edgerec: a concurrent write replaced this switch; applying it again");
        entry = switch(store, now, want, by, reason)?;
    }
    Ok(entry)
}

/// A store in memory: the test double for KV in unit tests (the end-to-end tests use wrangler's
/// local KV).
#[derive(Debug, Default)]
pub struct MemoryStore(std::cell::RefCell<std::collections::BTreeMap<String, Vec<u8>>>);

impl MemoryStore {
    /// Every key and value, for comparing before and after.
    pub fn snapshot(&self) -> std::collections::BTreeMap<String, Vec<u8>> {
        self.0.borrow().clone()
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ReleaseError> {
        Ok(self.0.borrow().get(key).cloned())
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), ReleaseError> {
        self.0.borrow_mut().insert(key.into(), value.into());
        Ok(())
    }
}
