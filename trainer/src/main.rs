//! `edgerec-trainer`: build and publish the edge's model; evaluate it by replay.

use clap::{Args, Parser, Subcommand};
use edgerec::catalog::{Catalog, CatalogDoc};
use edgerec::engine::{Engine, EngineConfig};
use edgerec::rules::compile_json;
use edgerec::rules::ir::parse_duration;
use edgerec_trainer::eval::replay;
#[cfg(feature = "kafka")]
use edgerec_trainer::kafka::{self, KafkaSource, Until};
use edgerec_trainer::model::{Model, ModelConfig};
use edgerec_trainer::publish::{publish, Kv, KvArgs};
use edgerec_trainer::run::Trainer;
use edgerec_trainer::state::StateDir;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "edgerec-trainer", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Back-fill from click logs (`SessionId<TAB>ItemId<TAB>Time`) and publish once.
    Clicks {
        /// Click logs, read in order.
        #[arg(long = "log", required = true)]
        logs: Vec<PathBuf>,
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        out: PublishArgs,
    },
    /// Train from the collector's records file (its embedded sink), resuming where the
    /// saved state stopped.
    Records {
        /// The records file (JSON lines).
        #[arg(long, default_value = "data/collector/records.jsonl")]
        file: PathBuf,
        #[command(flatten)]
        job: JobArgs,
    },
    /// Train from the collector's Kafka topics as a consumer group (feature `kafka`).
    #[cfg(feature = "kafka")]
    Kafka {
        /// Bootstrap servers.
        #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
        brokers: String,
        /// Consumer group.
        #[arg(long, default_value = "edgerec-trainer")]
        group: String,
        /// Group session timeout (ms).
        #[arg(long, default_value_t = 6000)]
        session_timeout_ms: u32,
        /// Quiet time that ends a run without `--follow`.
        #[arg(long, default_value = "5s")]
        idle: String,
        #[command(flatten)]
        job: JobArgs,
    },
    /// Train on one click log, replay another through `decide`; HR@K and MRR@K with POP and
    /// session-POP baselines.
    Eval {
        /// Training click log.
        #[arg(long)]
        train: PathBuf,
        /// Held-out click log, replayed.
        #[arg(long)]
        test: PathBuf,
        /// Rule bundles to compare (one row each).
        #[arg(long = "bundle", required = true)]
        bundles: Vec<PathBuf>,
        /// Cut-offs.
        #[arg(long, value_delimiter = ',', default_value = "10,20")]
        k: Vec<usize>,
        /// Also replay each bundle with exposure feedback learned from the newest SHARE of the
        /// training sessions, served by a model of the older ones (e.g. `0.2`).
        #[arg(long, value_name = "SHARE")]
        feedback: Option<f64>,
        /// Items each decision of that replay shows.
        #[arg(long, default_value_t = 10)]
        shown: usize,
        #[command(flatten)]
        model: ModelArgs,
    },
}

#[derive(Args)]
struct ModelArgs {
    /// Related items per item.
    #[arg(long, default_value_t = ModelConfig::default().top_k)]
    top_k: usize,
    /// Following items within this distance count as related.
    #[arg(long, default_value_t = ModelConfig::default().steps)]
    steps: usize,
    /// Weight of the reverse direction.
    #[arg(long, default_value_t = ModelConfig::default().backward)]
    backward: f64,
    /// Half-life of an observation (`0` = no decay), e.g. `7d`.
    #[arg(long, default_value = "7d")]
    half_life: String,
}

/// What a training run needs: where it keeps state, how it counts, where it publishes.
#[derive(Args)]
struct JobArgs {
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    out: PublishArgs,
}

#[derive(Args)]
struct RunArgs {
    /// Keep going, publishing every `--interval` when there is news (else one round: to the
    /// end of the file, or until Kafka has been quiet for `--idle`).
    #[arg(long)]
    follow: bool,
    /// Publish cadence with `--follow`.
    #[arg(long, default_value = "20s")]
    interval: String,
    /// State directory (counts and read positions; shared by a group's instances).
    #[arg(long, default_value = "data/trainer")]
    state_dir: PathBuf,
    /// This instance's name in the state directory.
    #[arg(long, default_value = "default")]
    instance: String,
    /// Records' topic prefix.
    #[arg(long, default_value = "edgerec")]
    prefix: String,
}

#[derive(Args)]
struct PublishArgs {
    /// Folder for releases (shards, heads, the pointer) and the base index.
    #[arg(long, default_value = "build/model")]
    out: PathBuf,
    /// Base catalog (titles, categories, prices, availability); learned data is added.
    #[arg(long)]
    base_catalog: Option<PathBuf>,
    #[command(flatten)]
    kv: KvArgs,
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Run(#[from] edgerec_trainer::run::RunError),
    #[error(transparent)]
    Publish(#[from] edgerec_trainer::publish::PublishError),
    #[error(transparent)]
    Log(#[from] edgerec_trainer::clicklog::ClickLogError),
    #[error(transparent)]
    Engine(#[from] edgerec::EngineError),
    #[error(transparent)]
    Feedback(#[from] edgerec_trainer::eval::FeedbackError),
}

fn open(p: &Path) -> Result<BufReader<std::fs::File>, CliError> {
    std::fs::File::open(p)
        .map(|f| BufReader::with_capacity(1 << 16, f))
        .map_err(|e| CliError::Io(p.display().to_string(), e))
}

fn duration(s: &str, what: &str) -> Result<u64, CliError> {
    if s == "0" {
        return Ok(0);
    }
    parse_duration(s).ok_or_else(|| CliError::Usage(format!("{what}: not a duration: {s}")))
}

impl ModelArgs {
    fn config(&self) -> Result<ModelConfig, CliError> {
        if self.top_k == 0 || self.top_k > edgerec::catalog::MAX_RELATED {
            return Err(CliError::Usage("--top-k: 1 to 50".into()));
        }
        Ok(ModelConfig::new(
            self.top_k,
            self.steps,
            self.backward,
            duration(&self.half_life, "--half-life")?,
        ))
    }
}

impl PublishArgs {
    fn kv(&self) -> Option<Kv> {
        self.kv.kv()
    }

    fn base(&self) -> Result<Option<CatalogDoc>, CliError> {
        let Some(p) = &self.base_catalog else {
            return Ok(None);
        };
        let bytes = std::fs::read(p).map_err(|e| CliError::Io(p.display().to_string(), e))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CliError::Usage(format!("{}: {e}", p.display())))
    }
}

fn trainer(job: &JobArgs) -> Result<Trainer, CliError> {
    let (run, model, out) = (&job.run, &job.model, &job.out);
    Ok(Trainer::open(
        model.config()?,
        &run.prefix,
        StateDir::new(&run.state_dir, &run.instance),
        out.base()?,
        &out.out,
        out.kv(),
    )?)
}

fn train_logs(cfg: &ModelConfig, logs: &[PathBuf]) -> Result<Model, CliError> {
    let (m, stats) = edgerec_trainer::clicklog::train(cfg, logs)?;
    for (log, st) in logs.iter().zip(stats) {
        eprintln!(
            "{}: {} rows, {} sessions, {} bad rows{}",
            log.display(),
            st.rows,
            st.sessions,
            st.bad_rows,
            st.first_bad
                .first()
                .map(|b| format!(" (first: line {} {})", b.line, b.field))
                .unwrap_or_default()
        );
    }
    Ok(m)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    match cli.cmd {
        Cmd::Clicks { logs, model, out } => {
            let cfg = model.config()?;
            let m = train_logs(&cfg, &logs)?;
            let doc = m.build(&cfg, out.base()?.as_ref());
            let done = publish(&doc, &out.out, out.kv().as_ref())?;
            println!(
                "published {} as head {} ({} items, {} shards written, {} keys written, switched: {})",
                done.version,
                done.head,
                done.items,
                done.stats.shards_written,
                done.keys_written,
                done.switched
            );
        }
        Cmd::Records { file, job } => {
            let every = Duration::from_millis(duration(&job.run.interval, "--interval")?);
            let mut t = trainer(&job)?;
            loop {
                t.read_records_file(&file)?;
                if t.dirty() || t.stats.published == 0 {
                    t.publish()?;
                }
                if !job.run.follow {
                    break;
                }
                std::thread::sleep(every);
            }
            println!("{}", t.stats.json());
        }
        #[cfg(feature = "kafka")]
        Cmd::Kafka {
            brokers,
            group,
            session_timeout_ms,
            idle,
            job,
        } => {
            let until = if job.run.follow {
                Until::Forever(Duration::from_millis(duration(
                    &job.run.interval,
                    "--interval",
                )?))
            } else {
                Until::Idle(Duration::from_millis(duration(&idle, "--idle")?))
            };
            let mut t = trainer(&job)?;
            let src = KafkaSource {
                brokers,
                group,
                session_timeout_ms,
            };
            kafka::run(&src, &mut t, until)?;
            println!(
                "applied {} records ({} already counted, {} copies, {} bad), published {}",
                t.stats.applied,
                t.stats.skipped_seen,
                t.stats.copies,
                t.stats.bad,
                t.stats.published
            );
            println!("{}", t.stats.json());
        }
        Cmd::Eval {
            train,
            test,
            bundles,
            k,
            feedback,
            shown,
            model,
        } => {
            let cfg = model.config()?;
            let started = Instant::now();
            let m = train_logs(&cfg, std::slice::from_ref(&train))?;
            let doc = m.build(&cfg, None);
            let trained = started.elapsed();
            let catalog = Catalog::from_doc(&doc).map_err(edgerec::EngineError::from)?;
            let mut shard_bytes = 0usize;
            let release = edgerec::model::build::build(&catalog, None, &mut |_, b| {
                shard_bytes += edgerec::model::stored_len(b.len())
            })
            .map_err(edgerec::EngineError::from)?;
            // What the edge pays when it loads a new model: its head (median of 5).
            let mut loads: Vec<Duration> = (0..5)
                .map(|_| {
                    let t = Instant::now();
                    let _ = edgerec::model::Head::decode(&release.head);
                    t.elapsed()
                })
                .collect();
            loads.sort();
            let mut popular: Vec<(&str, f32)> = doc
                .items
                .iter()
                .map(|i| (i.id.as_str(), i.popularity))
                .collect();
            popular.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
            let popular: Vec<String> = popular.into_iter().map(|p| p.0.to_string()).collect();
            let mut engines = Vec::new();
            for b in &bundles {
                let text = std::fs::read_to_string(b)
                    .map_err(|e| CliError::Io(b.display().to_string(), e))?;
                let config = EngineConfig::default();
                let compiled = compile_json(&text, config.session.horizon_ms)
                    .map_err(edgerec::EngineError::from)?;
                let name = format!("edgerec decide, bundle `{}`", compiled.version);
                if let Some(share) = feedback {
                    let mut with = m.clone();
                    let st = edgerec_trainer::eval::learn_feedback(
                        &mut with,
                        &cfg,
                        &compiled,
                        open(&train)?,
                        share,
                        shown,
                    )?;
                    eprintln!(
                        "feedback for `{}`: {} sessions served by a model of {} older ones; {} impressions, {} clicks ({:.2}% CTR)",
                        compiled.version,
                        st.replayed_sessions,
                        st.fit_sessions,
                        st.impressions,
                        st.clicks,
                        100.0 * st.clicks as f64 / st.impressions.max(1) as f64
                    );
                    let doc = with.build(&cfg, None);
                    let with_fb = Catalog::from_doc(&doc).map_err(edgerec::EngineError::from)?;
                    let mut fb_bytes = 0usize;
                    edgerec::model::build::build(&with_fb, None, &mut |_, b| {
                        fb_bytes += edgerec::model::stored_len(b.len())
                    })
                    .map_err(edgerec::EngineError::from)?;
                    let factors: usize = doc.items.iter().map(|i| i.feedback.len()).sum();
                    eprintln!(
                        "model with feedback: {} items with factors, {factors} factors, shards {fb_bytes} bytes in all",
                        doc.items.iter().filter(|i| !i.feedback.is_empty()).count()
                    );
                    engines.push((
                        format!("{name} + exposure feedback"),
                        Engine::with_catalog(config, compiled.clone(), &with_fb)?,
                    ));
                }
                engines.push((name, Engine::with_catalog(config, compiled, &catalog)?));
            }
            let refs: Vec<(String, &Engine)> =
                engines.iter().map(|(n, e)| (n.clone(), e)).collect();
            let report = replay(&refs, &popular, open(&test)?, &k)?;
            let related: usize = doc.items.iter().map(|i| i.related.len()).sum();
            println!(
                "model: {} items, {} related entries ({:.1}/item), head {} bytes (loads in {:.2} ms), {} shards of {} bytes in all ({:.0} B/item), trained in {:.2} s",
                doc.items.len(),
                related,
                related as f64 / doc.items.len().max(1) as f64,
                release.head.len(),
                loads[2].as_secs_f64() * 1e3,
                release.stats.base_shards,
                shard_bytes,
                shard_bytes as f64 / doc.items.len().max(1) as f64,
                trained.as_secs_f64()
            );
            println!(
                "test: {} sessions, {} clicks, {} predictions, {} bad rows\n",
                report.log.sessions,
                report.log.rows,
                report.rows.first().map_or(0, |r| r.metrics.predictions),
                report.log.bad_rows
            );
            print!("{}", report.markdown());
        }
    }
    Ok(())
}
