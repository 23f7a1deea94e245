//! Publishing a model to the edge's config KV, versioned like rule bundles: the snapshot
//! goes under its content-hashed key `catalog:<version>`, then one write of the pointer
//! `config:current` (`{"bundle", "catalog"}`) switches the edge to it — or back, by writing
//! an older pointer. The rule bundle already live is kept.
//!
//! KV is written with wrangler (`wrangler kv key put/get --binding CONFIG`): `--local`
//! (optionally `--persist-to DIR`) is wrangler dev's local KV, `--remote` is production.
//! Every file written to KV is also kept in the output folder, with `pointer.json`.

use edgerec::catalog::{Catalog, CatalogDoc};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The snapshot would not load at the edge.
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

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Catalog version (content hash).
    pub version: String,
    /// Snapshot size in bytes.
    pub bytes: usize,
    /// Items in it.
    pub items: usize,
    /// Whether the pointer moved (false: the edge already serves this version).
    pub switched: bool,
}

impl Kv {
    fn run(&self, args: &[&str]) -> Result<String, PublishError> {
        let (cmd, pre) = self.wrangler.split_first().ok_or(PublishError::Wrangler {
            args: args.join(" "),
            detail: "no wrangler command".into(),
        })?;
        let mut c = Command::new(cmd);
        c.args(pre)
            .args(["kv", "key"])
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
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The live pointer, if any.
    pub fn pointer(&self) -> Result<Option<serde_json::Value>, PublishError> {
        let text = self.run(&["get", "config:current"])?;
        // wrangler prints "Value not found" (exit 0) for a missing key.
        Ok(serde_json::from_str(text.trim()).ok())
    }

    fn put_file(&self, key: &str, file: &Path) -> Result<(), PublishError> {
        let path = file.display().to_string();
        self.run(&["put", key, "--path", &path]).map(|_| ())
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), PublishError> {
    std::fs::write(path, bytes).map_err(|source| PublishError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Writes the snapshot to `out` and, with `kv`, switches the edge to it.
pub fn publish(doc: &CatalogDoc, out: &Path, kv: Option<&Kv>) -> Result<Published, PublishError> {
    let catalog = Catalog::from_doc(doc).map_err(|e| PublishError::Invalid(e.to_string()))?;
    let snapshot = catalog.to_snapshot();
    std::fs::create_dir_all(out).map_err(|source| PublishError::Io {
        path: out.display().to_string(),
        source,
    })?;
    let file = out.join(format!("catalog-{}.msgpack", doc.version));
    write(&file, &snapshot)?;
    let mut done = Published {
        version: doc.version.clone(),
        bytes: snapshot.len(),
        items: doc.items.len(),
        switched: false,
    };
    let Some(kv) = kv else {
        return Ok(done);
    };
    let mut pointer = kv.pointer()?.ok_or(PublishError::NoPointer)?;
    if pointer["catalog"] == doc.version.as_str() {
        return Ok(done);
    }
    // Absolute path: wrangler runs in the project directory.
    let file = std::fs::canonicalize(&file).unwrap_or(file);
    kv.put_file(&format!("catalog:{}", doc.version), &file)?;
    pointer["catalog"] = doc.version.clone().into();
    let pointer_file = out.join("pointer.json");
    write(&pointer_file, pointer.to_string().as_bytes())?;
    let pointer_file = std::fs::canonicalize(&pointer_file).unwrap_or(pointer_file);
    kv.put_file("config:current", &pointer_file)?;
    done.switched = true;
    Ok(done)
}
