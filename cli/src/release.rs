//! `edgerec release`: what the edge serves, and switching it — list the history, stage a bundle,
//! shadow it, promote it, roll back. Every switch records a history entry in the bounded
//! history key, then writes the pointer: one pointer write moves the edge, so a rollback is one
//! write too. The store is the edge's CONFIG KV through wrangler (`--kv local` under `make dev`,
//! `--kv remote` for a deployed worker).

use edgerec::release::{bundle_key, head_key, History, Pointer, POINTER_KEY};
use edgerec::EngineConfig;
use edgerec_trainer::release::{checked_bundle, history, live, settled};
pub use edgerec_trainer::release::{ReleaseError, Store};
use std::path::PathBuf;

/// `edgerec release …`
#[derive(Debug, clap::Subcommand)]
pub enum ReleaseCmd {
    /// The live pointer and the recorded switches, newest first.
    List {
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write a rule bundle to KV under its content hash (`bundle:<hash>`) without serving it;
    /// prints the hash to `shadow` or `promote`.
    Stage {
        /// Bundle file (JSON).
        file: PathBuf,
    },
    /// Serve a staged bundle (or a published model head), by hash.
    Promote {
        /// A bundle hash (`bundle:<hash>` in KV) or a model head hash (`model:<hash>`).
        hash: String,
    },
    /// Evaluate a staged bundle in the shadow of the live one (counted, never served).
    Shadow {
        /// The bundle hash; omit with `--clear`.
        #[arg(required_unless_present = "clear")]
        hash: Option<String>,
        /// Stop shadowing.
        #[arg(long, conflicts_with = "hash")]
        clear: bool,
    },
    /// Put back the pointer the last switch replaced (again: the one before that).
    Rollback,
}

/// A content hash as the CLI prints them (16 hex digits), before it goes into a KV key.
fn valid_hash(h: &str) -> Result<(), ReleaseError> {
    if h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(ReleaseError::Input(format!(
            "{h:?} is not a content hash (16 hex digits, as check-bundle and release list print)"
        )))
    }
}

/// Who is switching: `$EDGEREC_USER`, else `$USER`.
fn who(action: &str) -> String {
    match std::env::var("EDGEREC_USER").or_else(|_| std::env::var("USER")) {
        Ok(u) if !u.is_empty() => format!("{action}:{u}"),
        _ => action.into(),
    }
}

/// Runs one release command; returns what to print. A switch is read back after `settle`
/// (zero: not at all; see [`settled`]).
pub fn run(
    store: &dyn Store,
    cmd: ReleaseCmd,
    settle: std::time::Duration,
) -> Result<String, ReleaseError> {
    match cmd {
        ReleaseCmd::List { json } => {
            let live = store
                .text(POINTER_KEY)?
                .and_then(|t| Pointer::parse(t.trim()).ok());
            let h = history(store)?;
            if json {
                return Ok(serde_json::json!({"live": live, "history": h.entries}).to_string());
            }
            Ok(table(live.as_ref(), &h))
        }
        ReleaseCmd::Stage { file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| ReleaseError::Input(format!("{}: {e}", file.display())))?;
            let b = edgerec::rules::compile_json(&text, EngineConfig::default().session.horizon_ms)
                .map_err(|e| ReleaseError::Invalid {
                    key: file.display().to_string(),
                    detail: e.to_string(),
                })?;
            store.put(&bundle_key(&b.hash), text.as_bytes())?;
            Ok(serde_json::json!({"staged": b.hash, "key": bundle_key(&b.hash), "version": b.version, "rules": b.rules.len()}).to_string())
        }
        ReleaseCmd::Promote { hash } => {
            valid_hash(&hash)?;
            let from = live(store)?;
            let e = if checked_bundle(store, &hash, &from)? {
                let change = |p: &Pointer| Pointer {
                    bundle: hash.clone(),
                    // A shadow that goes live is no longer a shadow.
                    shadow: p.shadow.clone().filter(|s| *s != hash),
                    ..p.clone()
                };
                settled(store, from, &change, &who("promote"), settle)?
            } else if let Some(bytes) = store.get(&head_key(&hash))? {
                edgerec::model::Head::decode(&bytes).map_err(|e| ReleaseError::Invalid {
                    key: head_key(&hash),
                    detail: e.to_string(),
                })?;
                let change = |p: &Pointer| Pointer {
                    catalog: hash.clone(),
                    ..p.clone()
                };
                settled(store, from, &change, &who("promote"), settle)?
            } else {
                return Err(ReleaseError::Unknown(hash));
            };
            Ok(serde_json::to_string(&e).unwrap_or_default())
        }
        ReleaseCmd::Shadow { hash, clear } => {
            let from = live(store)?;
            let shadow = match hash.filter(|_| !clear) {
                None => None,
                Some(h) if h == from.bundle => {
                    return Err(ReleaseError::Unchanged(format!("{h} is the live bundle")))
                }
                Some(h) => {
                    valid_hash(&h)?;
                    if !checked_bundle(store, &h, &from)? {
                        return Err(ReleaseError::Unknown(h));
                    }
                    Some(h)
                }
            };
            let change = |p: &Pointer| Pointer {
                shadow: shadow.clone(),
                ..p.clone()
            };
            let e = settled(store, from, &change, &who("shadow"), settle)?;
            Ok(serde_json::to_string(&e).unwrap_or_default())
        }
        ReleaseCmd::Rollback => {
            let from = live(store)?;
            let to = history(store)?
                .rollback_target(&from)
                .cloned()
                .ok_or_else(|| ReleaseError::NoRollback(from.to_json()))?;
            let e = settled(store, from, &|_| to.clone(), &who("rollback"), settle)?;
            Ok(serde_json::to_string(&e).unwrap_or_default())
        }
    }
}

fn short(h: &str) -> &str {
    h.get(..12).unwrap_or(h)
}

/// `release list` as a table, newest first.
fn table(live: Option<&Pointer>, h: &History) -> String {
    let mut out = String::new();
    match live {
        Some(p) => out.push_str(&format!(
            "live: bundle {}  model {}  shadow {}\n",
            p.bundle,
            p.catalog,
            p.shadow.as_deref().unwrap_or("-")
        )),
        None => out.push_str("live: none\n"),
    }
    out.push_str(&format!(
        "{:<24} {:<20} {:<27} {:<27} shadow\n",
        "when (UTC)", "by", "bundle", "model"
    ));
    for e in h.entries.iter().rev() {
        let prev = e.previous.as_ref();
        let change = |now: &str, before: Option<&str>| match before {
            Some(b) if b != now => format!("{} ← {}", short(now), short(b)),
            _ => short(now).to_string(),
        };
        out.push_str(&format!(
            "{:<24} {:<20} {:<27} {:<27} {}\n",
            iso(e.at_ms),
            e.by,
            change(&e.pointer.bundle, prev.map(|p| p.bundle.as_str())),
            change(&e.pointer.catalog, prev.map(|p| p.catalog.as_str())),
            e.pointer.shadow.as_deref().map_or("-", short),
        ));
    }
    out
}

/// Unix ms as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days, proleptic Gregorian).
fn iso(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    //! A map stands in for KV here (a test double); tests/e2e/release.test.mjs runs the same
    //! commands against wrangler's local KV.
    use super::*;

    use edgerec_trainer::release::MemoryStore as Map;
    use std::cell::RefCell;

    fn run_now(store: &dyn Store, cmd: ReleaseCmd) -> Result<String, ReleaseError> {
        run(store, cmd, std::time::Duration::ZERO)
    }

    fn seeded() -> (Map, String) {
        let cat = edgerec::Catalog::from_json(br#"{"version":"c","items":[{"id":"a"}]}"#).unwrap();
        let r = edgerec::model::build::build(&cat, None, &mut |_, _| {}).unwrap();
        let m = Map::default();
        m.put(&head_key(&r.head_hash), &r.head).unwrap();
        let p = Pointer {
            bundle: "b0".into(),
            catalog: r.head_hash.clone(),
            shadow: None,
        };
        m.put(POINTER_KEY, p.to_json().as_bytes()).unwrap();
        (m, r.head_hash)
    }

    fn stage(m: &Map, version: &str) -> String {
        // One folder per call: tests run in parallel threads of one process.
        static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "edgerec-stage-{}-{n}-{version}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("rules.json");
        std::fs::write(&f, format!(r#"{{"version":"{version}","rules":[]}}"#)).unwrap();
        let out = run_now(m, ReleaseCmd::Stage { file: f }).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["staged"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn pointer(m: &Map) -> Pointer {
        live(m).unwrap()
    }

    #[test]
    fn promote_shadow_and_rollback_move_one_pointer_and_record_each_switch() {
        let (m, head) = seeded();
        let b1 = stage(&m, "1");
        let b2 = stage(&m, "2");
        assert_eq!(pointer(&m).bundle, "b0", "staging serves nothing");
        run_now(
            &m,
            ReleaseCmd::Shadow {
                hash: Some(b1.clone()),
                clear: false,
            },
        )
        .unwrap();
        assert_eq!(pointer(&m).shadow.as_deref(), Some(b1.as_str()));
        run_now(&m, ReleaseCmd::Promote { hash: b1.clone() }).unwrap();
        let p = pointer(&m);
        assert_eq!(
            (p.bundle.as_str(), p.shadow.as_deref()),
            (b1.as_str(), None)
        );
        run_now(&m, ReleaseCmd::Promote { hash: b2.clone() }).unwrap();
        assert_eq!(pointer(&m).bundle, b2);
        run_now(&m, ReleaseCmd::Rollback).unwrap();
        assert_eq!(pointer(&m).bundle, b1);
        run_now(&m, ReleaseCmd::Rollback).unwrap();
        let p = pointer(&m);
        assert_eq!(
            (p.bundle.as_str(), p.shadow.as_deref()),
            ("b0", Some(b1.as_str())),
            "back to before the promote: b1 in the shadow of b0"
        );
        run_now(&m, ReleaseCmd::Rollback).unwrap();
        let p = pointer(&m);
        assert_eq!((p.bundle.as_str(), p.shadow.as_deref()), ("b0", None));
        assert!(matches!(
            run_now(&m, ReleaseCmd::Rollback),
            Err(ReleaseError::NoRollback(_))
        ));
        let h = history(&m).unwrap();
        assert_eq!(h.entries.len(), 6);
        assert!(h.entries.iter().all(|e| e.pointer.catalog == head));
        let list = run_now(&m, ReleaseCmd::List { json: false }).unwrap();
        assert_eq!(list.lines().count(), 2 + 6, "{list}");
    }

    #[test]
    fn refusals_write_nothing() {
        let (m, _) = seeded();
        let before = m.snapshot();
        let promote = |hash: &str| run_now(&m, ReleaseCmd::Promote { hash: hash.into() });
        let shadow = |hash: &str| {
            run_now(
                &m,
                ReleaseCmd::Shadow {
                    hash: Some(hash.into()),
                    clear: false,
                },
            )
        };
        assert!(matches!(
            promote("0123456789abcdef"),
            Err(ReleaseError::Unknown(_))
        ));
        for bad in ["nope", "../../etc/passwd", "0123456789abcdef0", ""] {
            assert!(matches!(promote(bad), Err(ReleaseError::Input(_))), "{bad}");
        }
        // A bundle stored under a hash that is not its own is refused, and one that does not
        // compile.
        let (forged, broken) = ("f0f0f0f0f0f0f0f0", "b0b0b0b0b0b0b0b0");
        m.put(&bundle_key(forged), br#"{"version":"x","rules":[]}"#)
            .unwrap();
        assert!(matches!(promote(forged), Err(ReleaseError::Invalid { .. })));
        m.put(&bundle_key(broken), b"{").unwrap();
        assert!(matches!(shadow(broken), Err(ReleaseError::Invalid { .. })));
        assert!(matches!(
            run_now(&m, ReleaseCmd::Rollback),
            Err(ReleaseError::NoRollback(_))
        ));
        assert!(matches!(
            run_now(
                &m,
                ReleaseCmd::Shadow {
                    hash: None,
                    clear: true
                }
            ),
            Err(ReleaseError::Unchanged(_))
        ));
        let mut after = m.snapshot();
        after.remove(&bundle_key(forged));
        after.remove(&bundle_key(broken));
        assert_eq!(after, before);
        assert!(matches!(
            run_now(&Map::default(), ReleaseCmd::Rollback),
            Err(ReleaseError::NoPointer)
        ));
    }

    /// A map where a "trainer" rewrites the pointer (a new model, the bundle and shadow it read
    /// before) right after the first switch: the switch is lost until read back.
    struct Racing {
        map: Map,
        clobber: RefCell<Option<Pointer>>,
    }

    impl Store for Racing {
        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ReleaseError> {
            if key == POINTER_KEY {
                if let Some(p) = self.clobber.borrow_mut().take() {
                    let p = Pointer {
                        catalog: "trainer-model".into(),
                        ..p
                    };
                    self.map.put(POINTER_KEY, p.to_json().as_bytes())?;
                }
            }
            self.map.get(key)
        }
        fn put(&self, key: &str, value: &[u8]) -> Result<(), ReleaseError> {
            self.map.put(key, value)
        }
    }

    #[test]
    fn a_switch_lost_to_a_concurrent_write_is_applied_again() {
        let (m, _) = seeded();
        let b1 = stage(&m, "1");
        let before = pointer(&m);
        let store = Racing {
            map: m,
            clobber: RefCell::new(None),
        };
        // The trainer read the pointer before the promote and writes after it.
        *store.clobber.borrow_mut() = Some(before.clone());
        let _ = live(&store).unwrap(); // the trainer's write lands...
        *store.clobber.borrow_mut() = Some(before.clone());
        let settle = std::time::Duration::from_millis(1);
        // ... and again between the promote's write and its read-back.
        let from = store.map.text(POINTER_KEY).unwrap().unwrap();
        let from = Pointer::parse(&from).unwrap();
        let change = |p: &Pointer| Pointer {
            bundle: b1.clone(),
            ..p.clone()
        };
        settled(&store, from, &change, "promote", settle).unwrap();
        let now = live(&store).unwrap();
        assert_eq!(now.bundle, b1, "the promote stands");
        assert_eq!(
            now.catalog, "trainer-model",
            "and so does the trainer's model"
        );
    }

    #[test]
    fn iso_dates() {
        assert_eq!(iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso(1_764_201_600_000), "2025-11-27T00:00:00Z");
        assert_eq!(iso(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
