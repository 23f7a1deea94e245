//! `edgerec`: the command-line host of the decision core.
//!
//! - `edgerec demo` plays a scripted shopper through the engine and prints each decision with
//!   its "why" (`make demo-cli`: the core alone, no edge);
//! - `edgerec decide` makes one decision from files (events on stdin);
//! - `edgerec check-bundle`, `edgerec schema` and `edgerec demo-data` are the authoring tools
//!   for rule bundles and catalogs (`demo-data --items N` generates catalogs of any size);
//! - `edgerec publish` prepares a release (bundle, model head, item shards, pointer) and writes
//!   it to the edge's KV;
//! - `edgerec simulate` replays recorded sessions through the live and a candidate bundle and
//!   reports what the candidate would change;
//! - `edgerec release` lists, stages, shadows, promotes and rolls back releases;
//! - `edgerec scale` measures the sharded model at a given catalog size.

mod cost;
mod demo_data;
mod experiments;
mod release;
mod scale;
mod simulate;

use clap::{Parser, Subcommand};
use edgerec::catalog::Catalog;
use edgerec::event::{parse_events_json, TimeLimits};
use edgerec::model::build::Source;
use edgerec::model::synthetic::Synthetic;
use edgerec::rules::{compile_json, json_schema};
use edgerec::{Context, DecideRequest, Engine, EngineConfig, EngineError, Tier};
use edgerec_trainer::publish::{pointer_files, prepare, write_keys, KeyFile, KvArgs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "edgerec", about = "edgerec decision core tools", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Play a scripted shopping session through the engine and explain each decision.
    Demo {
        /// Folder with rules.json and catalog.json.
        #[arg(long, default_value = "data/demo")]
        data: PathBuf,
    },
    /// One decision: events JSON from a file or `-` (stdin), decision JSON to stdout.
    Decide {
        /// Rule bundle (JSON).
        #[arg(long)]
        bundle: PathBuf,
        /// Catalog (JSON).
        #[arg(long)]
        catalog: PathBuf,
        /// Events document (`{"events":[...]}`), `-` for stdin.
        #[arg(long)]
        events: Option<PathBuf>,
        /// Session blob to read and update in place.
        #[arg(long)]
        state: Option<PathBuf>,
        /// Items wanted.
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// Tier: full, cached, static.
        #[arg(long, default_value = "full")]
        tier: String,
        /// Request context as JSON, e.g. '{"device":"mobile"}'.
        #[arg(long)]
        context: Option<String>,
        /// Now, Unix ms (default: the newest event's time, else the system clock).
        #[arg(long)]
        now: Option<u64>,
    },
    /// Validate a rule bundle; print its version, content hash and rule count, or every error;
    /// and its cost: µs per decision on the standard workload (20,000 items, 50-event session,
    /// top-10) next to the standard 100-rule bundle's in the same run. Exits non-zero when the
    /// bundle is invalid or its median cost is over `--budget-us`.
    CheckBundle {
        /// Bundle file.
        file: PathBuf,
        /// Refuse a bundle whose median decision costs more than this, µs (native; the edge's
        /// wasm is about 1.4× slower, and the free plan allows 10,000 µs of CPU per request).
        #[arg(long, default_value_t = 500.0)]
        budget_us: f64,
        /// Decisions to time (each bundle; capped at 2 s of timing).
        #[arg(long, default_value_t = 2000)]
        decisions: usize,
        /// Skip the cost measurement.
        #[arg(long)]
        no_cost: bool,
    },
    /// Print the JSON Schema for rule bundles.
    Schema,
    /// Run the conformance corpus; print every case's report as a JSON array.
    Conformance {
        /// Folder of case files.
        #[arg(long, default_value = "tests/conformance")]
        dir: PathBuf,
        /// Repository root (case fixtures are named relative to it).
        #[arg(long, default_value = ".")]
        root: PathBuf,
    },
    /// Prepare a release for the edge's CONFIG KV in a folder — `bundle-<hash>.json`, the model
    /// (`shards-*.json` bulk files, `head-<hash>.msgpack`), `pointer.json`, and `keys.json`
    /// listing the writes in order (the pointer, `config:current`, last: one write switches or
    /// rolls back a release) — and with `--kv`, write it.
    Publish {
        /// Rule bundle (JSON).
        #[arg(long)]
        bundle: PathBuf,
        /// Catalog (JSON).
        #[arg(long, required_unless_present = "synthetic")]
        catalog: Option<PathBuf>,
        /// Instead of a catalog file: a generated catalog of this many items (see `demo-data`).
        #[arg(long, conflicts_with = "catalog")]
        synthetic: Option<usize>,
        /// Seed of the generated catalog.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        kv: KvArgs,
    },
    /// Replay recorded sessions (traces, click logs) through the live (or a baseline) bundle
    /// and a candidate, same model; report what changes. Exit 3 when a `--fail-if` holds.
    Simulate {
        #[command(flatten)]
        args: simulate::SimulateArgs,
        #[command(flatten)]
        kv: KvArgs,
    },
    /// What the edge serves and switching it: `list`, `stage FILE`, `shadow HASH`, `promote
    /// HASH`, `rollback` (against the edge's CONFIG KV; `--kv local` is `make dev`'s).
    Release {
        #[command(subcommand)]
        cmd: release::ReleaseCmd,
        #[command(flatten)]
        kv: KvArgs,
        /// Seconds to wait before reading a switch back and applying it again if a concurrent
        /// write (the trainer publishing a model) replaced it; 0: do not. Default 5 with `--kv
        /// local`, 0 with `--kv remote` (remote reads may be up to 60 s stale).
        #[arg(long, global = true)]
        settle_s: Option<u64>,
    },
    /// Experiments: `report` (the controller's verdicts), `simulate` (the stats engine's
    /// false-positive rate under peeking, and power).
    Experiments {
        #[command(subcommand)]
        cmd: experiments::ExperimentsCmd,
    },
    /// Regenerate the demo catalog and rule bundle.
    DemoData {
        /// Output folder.
        #[arg(long, default_value = "data/demo")]
        out: PathBuf,
        /// Instead: a generated catalog of this many items (`catalog.json` only), deterministic.
        #[arg(long)]
        items: Option<usize>,
        /// Seed of the generated catalog.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Measure the sharded model at catalog sizes (generated catalogs): head and shard sizes,
    /// shards and bytes a cold decision reads, warm decision time, an incremental release.
    /// One JSON line per size.
    Scale {
        /// Catalog sizes.
        #[arg(long, value_delimiter = ',', default_value = "20000,1000000")]
        items: Vec<usize>,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Share of items changed for the incremental release.
        #[arg(long, default_value_t = 0.01)]
        changed: f64,
        /// Sessions played per size (8 decisions each).
        #[arg(long, default_value_t = 300)]
        sessions: usize,
        /// Categories, the same at every size (so the decisions compare).
        #[arg(long, default_value_t = 100)]
        categories: usize,
    },
}

/// What can go wrong in the CLI.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Publish(#[from] edgerec_trainer::publish::PublishError),
    #[error(transparent)]
    Release(#[from] release::ReleaseError),
}

fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map_err(|source| {
            CliError::Io {
                path: "stdin".into(),
                source,
            }
        })?;
        return Ok(buf);
    }
    std::fs::read(path).map_err(|source| CliError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    std::fs::write(path, bytes).map_err(|source| CliError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn run_simulate(args: simulate::SimulateArgs, kv: KvArgs) -> Result<ExitCode, CliError> {
    use edgerec_trainer::simulate::{read_traces, Options, Simulator};
    let conds = simulate::conditions(&args.fail_if).map_err(CliError::Input)?;
    let text = |p: &Path| -> Result<String, CliError> {
        Ok(String::from_utf8_lossy(&read(p)?).into_owned())
    };
    let candidate = text(&args.candidate)?;
    let baseline = match (&args.baseline, kv.kv()) {
        (Some(p), _) => text(p)?,
        (None, Some(kv)) => {
            let p = kv.pointer()?.ok_or_else(|| {
                CliError::Input("no config:current in KV: give --baseline FILE".into())
            })?;
            let b = kv
                .get(&p.bundle_key())?
                .ok_or_else(|| CliError::Input(format!("{} is not in KV", p.bundle_key())))?;
            String::from_utf8_lossy(&b).into_owned()
        }
        (None, None) => {
            return Err(CliError::Input(
                "--baseline FILE, or --kv local|remote to compare with the live bundle".into(),
            ))
        }
    };
    let doc: edgerec::catalog::CatalogDoc = match (&args.catalog, &args.train) {
        (Some(c), _) => serde_json::from_slice(&read(c)?)
            .map_err(|e| CliError::Input(format!("{}: {e}", c.display())))?,
        (None, Some(log)) => {
            // The trainer's defaults, as `edgerec-trainer eval` trains.
            let cfg = edgerec_trainer::model::ModelConfig::new(30, 10, 0.5, 7 * 86_400_000);
            let (m, _) = edgerec_trainer::clicklog::train(&cfg, std::slice::from_ref(log))
                .map_err(|e| CliError::Input(format!("{}: {e}", log.display())))?;
            m.build(&cfg, None)
        }
        (None, None) => return Err(CliError::Input("--catalog or --train".into())),
    };
    let catalog = Catalog::from_doc(&doc).map_err(EngineError::from)?;
    let config = EngineConfig::default();
    let engine = |json: &str| -> Result<Engine, CliError> {
        let b = compile_json(json, config.session.horizon_ms).map_err(EngineError::from)?;
        Ok(Engine::with_catalog(config, b, &catalog)?)
    };
    let (live, cand) = (engine(&baseline)?, engine(&candidate)?);
    let opts = Options {
        k: args.k.max(1),
        ks: args.ks.iter().copied().filter(|&k| k > 0).collect(),
        bootstrap: args.bootstrap,
        ..Options::default()
    };
    let mut sim = Simulator::new(&live, &cand, opts);
    let mut inputs = simulate::Inputs::default();
    let max = args.max_sessions.unwrap_or(u64::MAX);
    let mut fed = 0u64;
    for log in &args.clicks {
        let file = std::fs::File::open(log).map_err(|source| CliError::Io {
            path: log.display().to_string(),
            source,
        })?;
        let st = edgerec_trainer::clicklog::read_sessions(
            std::io::BufReader::with_capacity(1 << 16, file),
            |s| {
                if fed >= max {
                    return;
                }
                fed += 1;
                sim.session(&edgerec::trace::Session {
                    events: s
                        .clicks
                        .iter()
                        .map(|(item, ts)| {
                            edgerec::Event::new(edgerec::EventKind::View, item.clone(), *ts)
                        })
                        .collect(),
                    id: s.id,
                    variant: None,
                });
            },
        )
        .map_err(|e| CliError::Input(format!("{}: {e}", log.display())))?;
        inputs.click_rows += st.rows;
        inputs.click_sessions += st.sessions;
        inputs.click_bad_rows += st.bad_rows;
    }
    for f in &args.traces {
        let file = std::fs::File::open(f).map_err(|source| CliError::Io {
            path: f.display().to_string(),
            source,
        })?;
        let (sessions, st) =
            read_traces(std::io::BufReader::new(file), &args.prefix).map_err(|source| {
                CliError::Io {
                    path: f.display().to_string(),
                    source,
                }
            })?;
        for s in &sessions {
            if fed >= max {
                break;
            }
            fed += 1;
            sim.session(s);
        }
        let t = &mut inputs.traces;
        t.records += st.records;
        t.fragments += st.fragments;
        t.bad += st.bad;
        t.copies += st.copies;
        t.sessions += st.sessions;
    }
    let report = sim.report(&doc);
    let failed = simulate::failed(&report, &conds).map_err(CliError::Input)?;
    if let Some(p) = &args.html {
        write(p, simulate::html(&report, &inputs, &failed).as_bytes())?;
    }
    if args.json {
        let mut v = serde_json::to_value(&report).unwrap_or_default();
        v["inputs"] = serde_json::to_value(&inputs).unwrap_or_default();
        v["failed"] = serde_json::to_value(&failed).unwrap_or_default();
        println!("{v}");
    } else {
        print!("{}", simulate::text(&report, &inputs));
        for f in &failed {
            println!("FAIL: {f}");
        }
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn load_engine(bundle: &Path, catalog: &Path) -> Result<Engine, CliError> {
    let bundle_text = String::from_utf8_lossy(&read(bundle)?).into_owned();
    Ok(Engine::from_json(
        EngineConfig::default(),
        &bundle_text,
        &read(catalog)?,
    )?)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("edgerec: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Cmd) -> Result<ExitCode, CliError> {
    match cmd {
        Cmd::Demo { data } => {
            let engine = load_engine(&data.join("rules.json"), &data.join("catalog.json"))?;
            demo(&engine);
        }
        Cmd::Decide {
            bundle,
            catalog,
            events,
            state,
            limit,
            tier,
            context,
            now,
        } => {
            let engine = load_engine(&bundle, &catalog)?;
            let tier = Tier::parse(&tier)
                .ok_or_else(|| CliError::Input(format!("unknown tier {tier:?}")))?;
            let context: Context = match context {
                Some(c) => serde_json::from_str(&c)
                    .map_err(|e| CliError::Input(format!("--context: {e}")))?,
                None => Context::default(),
            };
            let blob = match &state {
                Some(p) if p.exists() => Some(read(p)?),
                _ => None,
            };
            let mut now = now.unwrap_or_else(now_ms);
            let evs = match events {
                Some(p) => {
                    let body = read(&p)?;
                    // Accept recorded events: judge their timestamps against their own time.
                    let loose = TimeLimits {
                        max_future_ms: u64::MAX / 4,
                        max_past_ms: u64::MAX / 4,
                    };
                    let evs = parse_events_json(&body, now, loose).map_err(|e| {
                        CliError::Input(serde_json::to_string(&e.errors).unwrap_or_default())
                    })?;
                    if let Some(max) = evs.iter().map(|e| e.ts).max() {
                        now = now.min(max.saturating_add(1000)).max(max);
                    }
                    evs
                }
                None => Vec::new(),
            };
            let d = engine.decide(&DecideRequest {
                state: blob.as_deref(),
                events: &evs,
                context,
                now_ms: now,
                limit,
                tier: Some(tier),
                trace: None,
            });
            if let (Some(p), Some(s)) = (&state, &d.state) {
                write(p, s)?;
            }
            println!("{}", serde_json::to_string_pretty(&d).unwrap_or_default());
        }
        Cmd::CheckBundle {
            file,
            budget_us,
            decisions,
            no_cost,
        } => {
            let text = String::from_utf8_lossy(&read(&file)?).into_owned();
            match compile_json(&text, EngineConfig::default().session.horizon_ms) {
                Ok(b) => {
                    let mut report = serde_json::json!({"ok": true, "version": b.version, "hash": b.hash, "rules": b.rules.len()});
                    if !no_cost {
                        let c = cost::measure(b, decisions);
                        let over = c.median_us > budget_us;
                        report["cost"] = serde_json::to_value(&c).unwrap_or_default();
                        report["budget_us"] = budget_us.into();
                        if over {
                            report["ok"] = false.into();
                            report["errors"] = serde_json::json!([{
                                "path": "",
                                "message": format!(
                                    "median decision {:.1} µs is over the budget of {budget_us} µs ({:.1}× the standard bundle)",
                                    c.median_us, c.ratio
                                ),
                            }]);
                        }
                        println!("{report}");
                        return Ok(if over {
                            ExitCode::FAILURE
                        } else {
                            ExitCode::SUCCESS
                        });
                    }
                    println!("{report}");
                }
                Err(e) => {
                    println!("{}", serde_json::json!({"ok": false, "errors": e.issues}));
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        Cmd::Schema => print!("{}", json_schema()),
        Cmd::Conformance { dir, root } => {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(|source| CliError::Io {
                    path: dir.display().to_string(),
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect();
            files.sort();
            let mut reports = Vec::new();
            let mut failed = false;
            for f in files {
                let text = String::from_utf8_lossy(&read(&f)?).into_owned();
                let case: edgerec::scenario::Case = serde_json::from_str(&text)
                    .map_err(|e| CliError::Input(format!("{}: {e}", f.display())))?;
                let bundle = String::from_utf8_lossy(&read(&root.join(&case.bundle))?).into_owned();
                let catalog = read(&root.join(&case.catalog))?;
                let report = edgerec::scenario::run(&case, &bundle, &catalog);
                failed |= !report.mismatches.is_empty();
                let file = f.file_name().map(|n| n.to_string_lossy().into_owned());
                reports.push(serde_json::json!({"file": file, "report": report}));
            }
            println!("{}", serde_json::to_string(&reports).unwrap_or_default());
            if failed {
                return Ok(ExitCode::FAILURE);
            }
        }
        Cmd::Publish {
            bundle,
            catalog,
            synthetic,
            seed,
            out,
            kv,
        } => {
            let bundle_text = String::from_utf8_lossy(&read(&bundle)?).into_owned();
            let compiled = compile_json(&bundle_text, EngineConfig::default().session.horizon_ms)
                .map_err(EngineError::from)?;
            let src: Box<dyn Source> = match (synthetic, catalog) {
                (Some(n), _) => Box::new(Synthetic::new(n, seed)),
                (None, Some(c)) => Box::new(
                    Catalog::from_json(&read(&c)?)
                        .map_err(|e| CliError::Input(format!("{}: {e}", c.display())))?,
                ),
                (None, None) => return Err(CliError::Input("--catalog or --synthetic".into())),
            };
            std::fs::create_dir_all(&out).map_err(|source| CliError::Io {
                path: out.display().to_string(),
                source,
            })?;
            let kv = kv.kv();
            let live = match &kv {
                Some(kv) => kv.pointer()?,
                None => None,
            };
            let live_head = live.as_ref().map(|p| p.catalog.as_str());
            let release = prepare(src.as_ref(), &out, live_head)?;
            let bundle_file = format!("bundle-{}.json", compiled.hash);
            write(&out.join(&bundle_file), bundle_text.as_bytes())?;
            let mut writes = vec![KeyFile {
                key: Some(edgerec::release::bundle_key(&compiled.hash)),
                file: bundle_file,
                kind: "value".into(),
            }];
            writes.extend(release.writes);
            let pointer = edgerec::release::Pointer {
                bundle: compiled.hash.clone(),
                catalog: release.head.clone(),
                // A shadow keeps running until it is promoted or cleared.
                shadow: live
                    .as_ref()
                    .and_then(|p| p.shadow.clone())
                    .filter(|s| *s != compiled.hash),
            };
            let history = match &kv {
                Some(kv) => kv.history()?,
                None => Default::default(),
            };
            // Publishing what is already live writes no history entry and no pointer.
            if live.as_ref() != Some(&pointer) {
                writes.extend(pointer_files(
                    &out,
                    &pointer,
                    live.as_ref(),
                    "publish",
                    history,
                )?);
            }
            write_keys(&out, &writes)?;
            let keys = match &kv {
                Some(kv) => kv.apply(&out, &writes)?,
                None => 0,
            };
            println!(
                "{}",
                serde_json::json!({
                    "out": out.display().to_string(),
                    "bundle": compiled.hash,
                    "rules": compiled.rules.len(),
                    "head": release.head,
                    "items": release.items,
                    "release": release.stats,
                    "keys_written": keys,
                })
            );
        }
        Cmd::Simulate { args, kv } => return run_simulate(args, kv),
        Cmd::Release { cmd, kv, settle_s } => {
            let kv = kv.kv().ok_or_else(|| {
                CliError::Input("release needs --kv local (make dev) or --kv remote".into())
            })?;
            let local = matches!(kv.target, edgerec_trainer::publish::KvTarget::Local(_));
            let settle =
                std::time::Duration::from_secs(settle_s.unwrap_or(if local { 5 } else { 0 }));
            println!("{}", release::run(&kv, cmd, settle)?.trim_end());
        }
        Cmd::Experiments { cmd } => {
            println!(
                "{}",
                experiments::run(cmd).map_err(CliError::Input)?.trim_end()
            );
        }
        Cmd::Scale {
            items,
            seed,
            changed,
            sessions,
            categories,
        } => {
            for n in items {
                println!("{}", scale::measure(n, categories, seed, changed, sessions));
            }
        }
        Cmd::DemoData { out, items, seed } => {
            std::fs::create_dir_all(&out).map_err(|source| CliError::Io {
                path: out.display().to_string(),
                source,
            })?;
            if let Some(n) = items {
                let doc = Synthetic::new(n, seed).to_doc();
                let text = serde_json::to_string(&doc).unwrap_or_default();
                write(&out.join("catalog.json"), text.as_bytes())?;
                println!("wrote {}/catalog.json ({n} items)", out.display());
                return Ok(ExitCode::SUCCESS);
            }
            let cat = demo_data::catalog();
            write(&out.join("catalog.json"), pretty(&cat).as_bytes())?;
            write(
                &out.join("rules.json"),
                pretty(&demo_data::rules()).as_bytes(),
            )?;
            println!(
                "wrote {}/catalog.json ({} items) and rules.json",
                out.display(),
                cat.items.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Pretty JSON with a trailing newline, for committed files.
fn pretty<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

/// The scripted demo: one shopper, step by step.
fn demo(engine: &Engine) {
    use edgerec::{Event, EventKind};
    let t0 = now_ms();
    let ctx = Context {
        device: Some("desktop".into()),
        country: Some("DE".into()),
        session_id: Some("demo-session-1".into()),
        slot: Some("home-top".into()),
        ..Default::default()
    };
    let head = engine.head();
    let script: Vec<(&str, Vec<Event>)> = vec![
        ("A new visitor lands on the home page", vec![]),
        (
            "They look at a trail running shoe three times",
            (0..3)
                .map(|i| Event::new(EventKind::View, "sku-0005", t0 + 10_000 + i * 20_000))
                .collect(),
        ),
        (
            "They put it in the cart",
            vec![Event::new(EventKind::AddToCart, "sku-0005", t0 + 90_000)],
        ),
        (
            "...and buy it",
            vec![Event::new(EventKind::Purchase, "sku-0005", t0 + 120_000)],
        ),
    ];
    let mut blob: Option<Vec<u8>> = None;
    let mut now = t0;
    println!(
        "edgerec demo: bundle {} ({}), catalog {} ({} items)\n",
        engine.bundle().version,
        engine.bundle().hash,
        head.version,
        head.items
    );
    for (what, events) in script {
        now = events.iter().map(|e| e.ts).max().unwrap_or(now).max(now) + 1000;
        let d = engine.decide(&DecideRequest {
            state: blob.as_deref(),
            events: &events,
            context: ctx.clone(),
            now_ms: now,
            limit: 5,
            tier: None,
            trace: None,
        });
        blob = d.state.clone();
        println!("== {what}");
        println!(
            "   tier {} | variant {} | rules fired: {} | session blob {} bytes",
            d.tier.as_str(),
            d.variant.as_deref().unwrap_or("-"),
            if d.rule_hits.is_empty() {
                "none".into()
            } else {
                d.rule_hits.join(", ")
            },
            blob.as_ref().map_or(0, Vec::len)
        );
        for (i, r) in d.items.iter().enumerate() {
            println!(
                "   {}. {:<9} {:<28} score {:>6.3}  why: {}",
                i + 1,
                r.id,
                r.title.as_deref().unwrap_or_default(),
                r.score,
                r.why.join(", ")
            );
        }
        println!();
    }
}
