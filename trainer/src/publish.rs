//! Publishing a model to the edge's config KV, as a release (layout: [`edgerec::release`]): item
//! shards first (only the ones this release adds: see `edgerec::model::build`), then the head,
//! then a history entry, then one write of the pointer switches the edge to it — or back, by
//! writing an older pointer. The rule bundle already live is kept unless a
//! new one is given.
//!
//! KV is written with wrangler (`wrangler kv bulk put` for shards, `kv key put` for the head and
//! pointer): `--local` (optionally `--persist-to DIR`) is wrangler dev's local KV, `--remote` is
//! production. Everything written is also kept in the output folder: `shards-NNN.json` (bulk
//! files), `head-<hash>.msgpack`, `pointer.json`, `keys.json` (what to write, in order), and the
//! base's index plus `current.json` naming the release the next publish builds on.

use edgerec::catalog::{Catalog, CatalogDoc};
use edgerec::model::build::{build, BaseIndex, Previous, ReleaseStats, Source};
use edgerec::model::{head_key, to_stored, Head};
use edgerec::release::{History, HistoryEntry, Pointer, HISTORY_KEY, POINTER_KEY};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Shards per bulk file (wrangler sends them in batches itself).
const BULK_FILE_KEYS: usize = 10_000;

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The catalog would not load at the edge.
    #[error("model does not validate as a catalog: {0}")]
    Invalid(String),
    /// File system.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// wrangler failed.
    #[error("wrangler {args}: {detail}")]
    Wrangler {
        /// The subcommand.
        args: String,
        /// What it said.
        detail: String,
    },
    /// Nothing to keep: no pointer in KV yet.
    #[error("no config:current in KV: publish a rule bundle first (scripts/seed-kv.sh)")]
    NoPointer,
}

/// Where KV lives.
#[derive(Debug, Clone)]
pub enum KvTarget {
    /// wrangler dev's local KV, optionally in a `--persist-to` directory.
    Local(Option<PathBuf>),
    /// The account's KV (`--remote`).
    Remote,
}

/// wrangler invocation details.
#[derive(Debug, Clone)]
pub struct Kv {
    /// Local or remote.
    pub target: KvTarget,
    /// Binding name in wrangler.toml.
    pub binding: String,
    /// Directory holding wrangler.toml (wrangler runs there).
    pub project: PathBuf,
    /// The wrangler command (`npx wrangler` by default).
    pub wrangler: Vec<String>,
}

/// Where a release goes: command-line options shared by the trainer, `edgerec publish` and
/// `edgerec release` (global: they may follow a subcommand).
#[derive(Debug, Clone, clap::Args)]
pub struct KvArgs {
    /// Write the edge's config KV: `local` (wrangler dev) or `remote` (production).
    #[arg(long, global = true, value_parser = ["none", "local", "remote"], default_value = "none")]
    pub kv: String,
    /// wrangler's local state folder (`--persist-to`), with `--kv local`.
    #[arg(long, global = true)]
    pub persist_to: Option<PathBuf>,
    /// KV binding name.
    #[arg(long, global = true, default_value = "CONFIG")]
    pub binding: String,
    /// Folder with wrangler.toml.
    #[arg(long, global = true, default_value = ".")]
    pub project: PathBuf,
    /// wrangler command.
    #[arg(long, global = true, default_value = "npx wrangler")]
    pub wrangler: String,
}

impl KvArgs {
    /// The KV to write, if any.
    pub fn kv(&self) -> Option<Kv> {
        let target = match self.kv.as_str() {
            "local" => KvTarget::Local(self.persist_to.clone()),
            "remote" => KvTarget::Remote,
            _ => return None,
        };
        Some(Kv {
            target,
            binding: self.binding.clone(),
            project: self.project.clone(),
            wrangler: self.wrangler.split_whitespace().map(String::from).collect(),
        })
    }
}

/// One KV write of a release, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    /// The KV key (absent for a bulk file, whose entries carry their keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// File in the output folder.
    pub file: String,
    /// `bulk` (a `kv bulk put` JSON file) or `value` (the file's bytes are the value).
    pub kind: String,
}

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Catalog version label.
    pub version: String,
    /// Head content hash (the pointer's `catalog`).
    pub head: String,
    /// Items in it.
    pub items: usize,
    /// The build's counts (shards written, bytes, full or patch).
    pub stats: ReleaseStats,
    /// KV keys written (shards + head + pointer); 0 when the edge already served it.
    pub keys_written: u64,
    /// Whether the pointer moved (false: the edge already serves this model).
    pub switched: bool,
}

/// The release the next publish builds on (`current.json` in the output folder).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Current {
    head: String,
    index: String,
}

impl Kv {
    fn run(&self, args: &[&str]) -> Result<String, PublishError> {
        Ok(String::from_utf8_lossy(&self.run_raw(args)?).into_owned())
    }

    fn run_raw(&self, args: &[&str]) -> Result<Vec<u8>, PublishError> {
        let (cmd, pre) = self.wrangler.split_first().ok_or(PublishError::Wrangler {
            args: args.join(" "),
            detail: "no wrangler command".into(),
        })?;
        let mut c = Command::new(cmd);
        c.args(pre)
            .arg("kv")
            .args(args)
            .args(["--binding", &self.binding]);
        match &self.target {
            KvTarget::Local(dir) => {
                c.arg("--local");
                if let Some(d) = dir {
                    c.arg("--persist-to").arg(d);
                }
            }
            KvTarget::Remote => {
                c.arg("--remote");
            }
        }
        let out = c
            .current_dir(&self.project)
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
            .env("DO_NOT_TRACK", "1")
            .output()
            .map_err(|e| PublishError::Wrangler {
                args: args.join(" "),
                detail: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(PublishError::Wrangler {
                args: args.join(" "),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(out.stdout)
    }

    /// A key's value, None when absent.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, PublishError> {
        let bytes = self.run_raw(&["key", "get", key])?;
        // wrangler prints "Value not found" (exit 0) for a missing key.
        Ok((bytes.trim_ascii() != b"Value not found").then_some(bytes))
    }

    fn get_text(&self, key: &str) -> Result<Option<String>, PublishError> {
        Ok(self
            .get(key)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// Writes one key from a file.
    pub fn put_file(&self, key: &str, file: &Path) -> Result<(), PublishError> {
        let file = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
        self.run(&["key", "put", key, "--path", &file.display().to_string()])
            .map(drop)
    }

    /// The live pointer, if any.
    pub fn pointer(&self) -> Result<Option<Pointer>, PublishError> {
        Ok(self
            .get_text(POINTER_KEY)?
            .and_then(|t| Pointer::parse(t.trim()).ok()))
    }

    /// The release history (empty when none was written yet).
    pub fn history(&self) -> Result<History, PublishError> {
        match self.get_text(HISTORY_KEY)? {
            None => Ok(History::default()),
            Some(t) => History::parse(t.trim())
                .map_err(|e| PublishError::Invalid(format!("{HISTORY_KEY}: {e}"))),
        }
    }

    /// Performs a release's writes in order; returns the number of keys written.
    pub fn apply(&self, out: &Path, writes: &[KeyFile]) -> Result<u64, PublishError> {
        let mut keys = 0u64;
        for w in writes {
            // Absolute path: wrangler runs in the project directory.
            let file = out.join(&w.file);
            let file = std::fs::canonicalize(&file).unwrap_or(file);
            let path = file.display().to_string();
            match &w.key {
                Some(key) => {
                    self.run(&["key", "put", key, "--path", &path])?;
                    keys += 1;
                }
                None => {
                    self.run(&["bulk", "put", &path])?;
                    let text = std::fs::read(&file).unwrap_or_default();
                    keys += serde_json::from_slice::<Vec<serde_json::Value>>(&text)
                        .map_or(0, |v| v.len() as u64);
                }
            }
        }
        Ok(keys)
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), PublishError> {
    std::fs::write(path, bytes).map_err(|source| PublishError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn read(path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path).ok()
}

/// The release in `out` to build on, when it is intact and still the one KV serves (`live`;
/// without a KV to build on, nothing is).
fn previous(out: &Path, live: Option<&str>) -> Option<Previous> {
    let cur: Current = serde_json::from_slice(&read(&out.join("current.json"))?).ok()?;
    if live != Some(cur.head.as_str()) {
        return None;
    }
    let head = Head::decode(&read(&out.join(format!("head-{}.msgpack", cur.head)))?).ok()?;
    let index = BaseIndex::from_bytes(&read(&out.join(&cur.index))?).ok()?;
    Some(Previous { head, index })
}

/// A release prepared in a folder: what to write to KV, in order (pointer last).
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Head content hash.
    pub head: String,
    /// Catalog version label.
    pub version: String,
    /// Items.
    pub items: usize,
    /// The build's counts.
    pub stats: ReleaseStats,
    /// Writes before the pointer: shard bulk files, then the head.
    pub writes: Vec<KeyFile>,
}

/// Builds the model release for a catalog in `out`: on the previous release kept there when
/// `live` (the head KV serves) is that release, else a full one (every shard).
pub fn prepare(src: &dyn Source, out: &Path, live: Option<&str>) -> Result<Prepared, PublishError> {
    std::fs::create_dir_all(out).map_err(|source| PublishError::Io {
        path: out.display().to_string(),
        source,
    })?;
    let prev = previous(out, live);
    let mut shards: Vec<serde_json::Value> = Vec::new();
    let release = build(src, prev.as_ref(), &mut |w, bytes| {
        shards.push(serde_json::json!({"key": w.key, "value": to_stored(&bytes)}));
    })
    .map_err(|e| PublishError::Invalid(e.to_string()))?;
    let mut writes = Vec::new();
    for (i, chunk) in shards.chunks(BULK_FILE_KEYS).enumerate() {
        let file = format!("shards-{}-{i:03}.json", release.head_hash);
        write(
            &out.join(&file),
            serde_json::to_string(chunk).unwrap_or_default().as_bytes(),
        )?;
        writes.push(KeyFile {
            key: None,
            file,
            kind: "bulk".into(),
        });
    }
    let head_file = format!("head-{}.msgpack", release.head_hash);
    write(&out.join(&head_file), &release.head)?;
    writes.push(KeyFile {
        key: Some(head_key(&release.head_hash)),
        file: head_file,
        kind: "value".into(),
    });
    let head = Head::decode(&release.head).map_err(|e| PublishError::Invalid(e.to_string()))?;
    let index = format!("base-{}.index", head.base);
    if release.stats.full {
        write(&out.join(&index), &release.index.to_bytes())?;
    }
    let cur = Current {
        head: release.head_hash.clone(),
        index,
    };
    write(
        &out.join("current.json"),
        serde_json::to_string(&cur).unwrap_or_default().as_bytes(),
    )?;
    write(
        &out.join(format!("release-{}.json", release.head_hash)),
        serde_json::to_string_pretty(&release.stats)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    Ok(Prepared {
        head: release.head_hash,
        version: src.version().to_string(),
        items: src.len(),
        stats: release.stats,
        writes,
    })
}

/// Reads back the release `out` names as current, with every shard it reads (from this and
/// earlier releases' bulk files in `out`).
pub fn load_current(out: &Path) -> Option<(Head, edgerec::model::ShardMap)> {
    let cur: Current = serde_json::from_slice(&read(&out.join("current.json"))?).ok()?;
    let head = Head::decode(&read(&out.join(format!("head-{}.msgpack", cur.head)))?).ok()?;
    let mut stored = std::collections::HashMap::new();
    for e in std::fs::read_dir(out).ok()?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("shards-") && name.ends_with(".json") {
            let v: Vec<serde_json::Value> = serde_json::from_slice(&read(&e.path())?).ok()?;
            for kv in v {
                if let (Some(k), Some(t)) = (kv["key"].as_str(), kv["value"].as_str()) {
                    stored.insert(k.to_string(), t.to_string());
                }
            }
        }
    }
    let shards = edgerec::model::ShardMap::load(&head, |k| stored.get(k).cloned())?;
    Some((head, shards))
}

/// Writes `keys.json`: the release's writes and then the pointer, in order.
pub fn write_keys(out: &Path, writes: &[KeyFile]) -> Result<(), PublishError> {
    let text = serde_json::to_string_pretty(writes).unwrap_or_default() + "\n";
    write(&out.join("keys.json"), text.as_bytes())
}

/// The last two writes of a release: the history with this switch recorded (`history.json`,
/// see [`History`]) and the pointer (`pointer.json`), written last.
pub fn pointer_files(
    out: &Path,
    pointer: &Pointer,
    previous: Option<&Pointer>,
    by: &str,
    mut history: History,
) -> Result<[KeyFile; 2], PublishError> {
    history.record(HistoryEntry {
        at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        pointer: pointer.clone(),
        previous: previous.cloned(),
        by: by.into(),
        reason: None,
    });
    write(&out.join("history.json"), history.to_json().as_bytes())?;
    write(&out.join("pointer.json"), pointer.to_json().as_bytes())?;
    Ok([
        KeyFile {
            key: Some(HISTORY_KEY.into()),
            file: "history.json".into(),
            kind: "value".into(),
        },
        KeyFile {
            key: Some(POINTER_KEY.into()),
            file: "pointer.json".into(),
            kind: "value".into(),
        },
    ])
}

/// Builds the release for `doc` in `out` and, with `kv`, writes it and switches the edge to it
/// (keeping the live rule bundle).
pub fn publish(doc: &CatalogDoc, out: &Path, kv: Option<&Kv>) -> Result<Published, PublishError> {
    let pointer = match kv {
        Some(kv) => Some(kv.pointer()?.ok_or(PublishError::NoPointer)?),
        None => None,
    };
    let live = pointer.as_ref().map(|p| p.catalog.as_str());
    let catalog = Catalog::from_doc(doc).map_err(|e| PublishError::Invalid(e.to_string()))?;
    let prepared = prepare(&catalog, out, live)?;
    let mut done = Published {
        version: prepared.version.clone(),
        head: prepared.head.clone(),
        items: prepared.items,
        stats: prepared.stats.clone(),
        keys_written: 0,
        switched: false,
    };
    let (Some(kv), Some(live)) = (kv, pointer) else {
        write_keys(out, &prepared.writes)?;
        return Ok(done);
    };
    if live.catalog == prepared.head {
        return Ok(done);
    }
    // The model's keys first; then the pointer as it is now (someone may have promoted or
    // shadowed a bundle meanwhile: their switch is kept, only the model changes).
    write_keys(out, &prepared.writes)?;
    done.keys_written = kv.apply(out, &prepared.writes)?;
    let live = kv.pointer()?.unwrap_or(live);
    let next = Pointer {
        catalog: prepared.head.clone(),
        ..live.clone()
    };
    let last = pointer_files(out, &next, Some(&live), "trainer", kv.history()?)?;
    let mut writes = prepared.writes;
    writes.extend(last.iter().cloned());
    write_keys(out, &writes)?;
    done.keys_written += kv.apply(out, &last)?;
    done.switched = true;
    Ok(done)
}
