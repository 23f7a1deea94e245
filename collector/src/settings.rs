//! Settings: flags or environment variables, parsed once at start-up by clap. A value that
//! does not parse, is out of range or is unsafe (a short secret) stops the collector with a
//! message naming it; nothing falls back to a default silently.

use clap::{Args, FromArgMatches, Parser, Subcommand};
use edgerec::records::MAX_RECORDS_PER_BATCH;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Kafka settings.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `bootstrap.servers` (`KAFKA_BROKERS`).
    pub brokers: String,
    /// Topic prefix.
    pub prefix: String,
    /// Partitions of each topic created (`KAFKA_PARTITIONS`, default 4).
    pub partitions: i32,
    /// How long a record may wait for acknowledgement, ms (`KAFKA_TIMEOUT_MS`, default 5000).
    pub timeout_ms: u64,
    /// Producer queue bound, messages (`KAFKA_QUEUE_MAX`, default 500,000).
    pub queue_max: usize,
}

/// Shortest accepted `COLLECTOR_SECRET`, bytes.
pub const MIN_SECRET_BYTES: usize = 16;

/// The command line: serve (default), or tally a topic.
#[derive(Debug, Parser)]
#[command(
    name = "edgerec-collector",
    version,
    about = "Signed aggregate batches from the edge in, records out (Kafka, or an embedded file)"
)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Serving settings.
    #[command(flatten)]
    pub serve: Settings,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Reads a topic to its end; per-item totals (each batch counted once), records and doubles
    /// as JSON on stdout.
    Tally {
        /// Topic name.
        topic: String,
        /// Give up after this many seconds.
        #[arg(default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout_s: u64,
        /// Kafka bootstrap servers.
        #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
        brokers: String,
    },
    /// Reads a topic to its end and prints its records as JSON lines, in the embedded file's
    /// format (e.g. `<prefix>.sessions` for `edgerec simulate --traces`).
    Dump {
        /// Topic name.
        topic: String,
        /// Give up after this many seconds.
        #[arg(default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout_s: u64,
        /// Kafka bootstrap servers.
        #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
        brokers: String,
    },
}

/// The collector's configuration.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Listen address.
    #[arg(long, env = "COLLECTOR_ADDR", default_value = "127.0.0.1:8789")]
    pub addr: SocketAddr,
    /// HMAC key shared with the edge (at least 16 bytes; no default: a collector anyone can
    /// sign for would take anyone's counters).
    #[arg(long, env = "COLLECTOR_SECRET", hide_env_values = true, value_parser = secret, default_value = "")]
    pub secret: String,
    /// Largest accepted |now − x-edgerec-timestamp|, ms.
    #[arg(long, env = "MAX_SKEW_MS", default_value_t = 300_000, value_parser = clap::value_parser!(u64).range(1_000..=86_400_000))]
    pub max_skew_ms: u64,
    /// Largest accepted body, bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 1 << 20, value_parser = in_range::<usize>(1024, 64 << 20))]
    pub max_body_bytes: usize,
    /// Dedup window: batch ids remembered ...
    #[arg(long, env = "DEDUP_MAX_IDS", default_value_t = 100_000, value_parser = in_range::<usize>(1, 100_000_000))]
    pub dedup_max_ids: usize,
    /// ... for at most this long, ms.
    #[arg(long, env = "DEDUP_MAX_AGE_MS", default_value_t = 24 * 3600 * 1000, value_parser = clap::value_parser!(u64).range(1_000..))]
    pub dedup_max_age_ms: u64,
    /// Topic prefix (`<prefix>.views`, ...).
    #[arg(long, env = "TOPIC_PREFIX", default_value = "edgerec", value_parser = topic_prefix)]
    pub topic_prefix: String,
    /// Kafka: bootstrap servers; unset = embedded file mode.
    #[arg(long = "kafka-brokers", env = "KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Kafka: partitions of each topic created.
    #[arg(long, env = "KAFKA_PARTITIONS", default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub kafka_partitions: i32,
    /// Kafka: how long a record may wait for acknowledgement, ms.
    #[arg(long, env = "KAFKA_TIMEOUT_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(100..=300_000))]
    pub kafka_timeout_ms: u64,
    /// Kafka: producer queue bound, messages; at least one largest batch's records
    /// (`records::MAX_RECORDS_PER_BATCH`, 250,065), or such a batch could never be written.
    #[arg(long, env = "KAFKA_QUEUE_MAX", default_value_t = 500_000, value_parser = in_range::<usize>(MAX_RECORDS_PER_BATCH, 10_000_000))]
    pub kafka_queue_max: usize,
    /// Records file for the embedded mode.
    #[arg(
        long,
        env = "OUTPUT_FILE",
        default_value = "data/collector/records.jsonl"
    )]
    pub output_file: PathBuf,
    /// A batch id claimed longer ago than this is taken over by a retry, ms (writes finish or
    /// fail well before).
    #[arg(long, env = "DEDUP_CLAIM_MAX_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1_000..))]
    pub dedup_claim_max_ms: u64,
    /// A client must send its request headers within this time, ms; also the longest an idle
    /// keep-alive connection is held.
    #[arg(long, env = "HEADER_TIMEOUT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub header_timeout_ms: u64,
    /// ... and its body within this time, ms.
    #[arg(long, env = "BODY_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub body_timeout_ms: u64,
    /// The experiment controller's report (the trainer's `<state-dir>/experiments.json`),
    /// exported as `edgerec_experiment_*` gauges on `/metrics` when set.
    #[arg(long, env = "EXPERIMENTS_REPORT")]
    pub experiments_report: Option<PathBuf>,
    /// Most client connections open at once; more wait in the listen backlog.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1024, value_parser = in_range::<usize>(1, 1_000_000))]
    pub max_connections: usize,
}

impl Settings {
    /// Parses flags only (never the environment): the defaults for anything not given.
    fn flags_only(args: &[&str]) -> Settings {
        let cmd = Settings::augment_args(clap::Command::new("test"));
        let cmd = cmd.get_arguments().fold(cmd.clone(), |c, a| {
            c.mut_arg(a.get_id().clone(), |a| a.env(None::<&str>))
        });
        let m = cmd.get_matches_from(args);
        Settings::from_arg_matches(&m).unwrap_or_else(|e| e.exit())
    }

    /// What clap cannot check alone: a collector serves only with a secret.
    pub fn check(&self) -> Result<(), String> {
        if self.secret.is_empty() {
            return Err(
                "--secret / COLLECTOR_SECRET is not set (the HMAC key shared with the edge)".into(),
            );
        }
        Ok(())
    }

    /// The Kafka sink's settings, when brokers are set.
    pub fn kafka(&self) -> Option<KafkaSettings> {
        self.kafka_brokers.clone().map(|brokers| KafkaSettings {
            brokers,
            prefix: self.topic_prefix.clone(),
            partitions: self.kafka_partitions,
            timeout_ms: self.kafka_timeout_ms,
            queue_max: self.kafka_queue_max,
        })
    }

    /// Settings for tests and tools: the defaults, with this secret (unchecked) and records
    /// file; independent of the environment.
    pub fn for_tests(secret: &str, output_file: PathBuf) -> Settings {
        let mut s = Settings::flags_only(&["test"]);
        s.secret = secret.into();
        s.output_file = output_file;
        s
    }
}

fn secret(v: &str) -> Result<String, String> {
    // Empty = not given: `check` refuses it for serving (a tally needs no secret).
    if !v.is_empty() && v.len() < MIN_SECRET_BYTES {
        return Err(format!("shorter than {MIN_SECRET_BYTES} bytes"));
    }
    Ok(v.to_string())
}

fn topic_prefix(v: &str) -> Result<String, String> {
    let ok = !v.is_empty()
        && v.len() <= 200
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(v.to_string())
    } else {
        Err("1-200 characters of [A-Za-z0-9._-] (a Kafka topic name)".into())
    }
}

fn in_range<T>(lo: T, hi: T) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy + Send + Sync + 'static,
    T::Err: std::fmt::Display,
{
    move |v: &str| {
        let n: T = v.parse().map_err(|e: T::Err| e.to_string())?;
        if n < lo || n > hi {
            return Err(format!("must be from {lo} to {hi}"));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Settings, String> {
        let mut argv = vec!["edgerec-collector"];
        argv.extend_from_slice(args);
        let s = Cli::try_parse_from(argv)
            .map(|c| c.serve)
            .map_err(|e| e.to_string())?;
        s.check().map(|()| s)
    }

    #[test]
    fn defaults_with_a_secret_and_refusals_naming_the_setting() {
        let s = parse(&["--secret", "0123456789abcdef"]).unwrap();
        assert_eq!(s.addr.to_string(), "127.0.0.1:8789");
        assert_eq!((s.max_body_bytes, s.max_connections), (1 << 20, 1024));
        assert!(s.kafka().is_none());
        let e = parse(&[]).unwrap_err();
        assert!(e.contains("COLLECTOR_SECRET is not set"), "{e}");
        let e = parse(&["--secret", "short"]).unwrap_err();
        assert!(e.contains("shorter than 16"), "{e}");
        let e = parse(&["--secret", "0123456789abcdef", "--max-connections", "lots"]).unwrap_err();
        assert!(e.contains("--max-connections"), "{e}");
        let e = parse(&["--secret", "0123456789abcdef", "--max-connections", "0"]).unwrap_err();
        assert!(e.contains("from 1 to"), "{e}");
        let e = parse(&["--secret", "0123456789abcdef", "--topic-prefix", "a b"]).unwrap_err();
        assert!(e.contains("--topic-prefix"), "{e}");
        let e = parse(&["--secret", "0123456789abcdef", "--addr", "nowhere"]).unwrap_err();
        assert!(e.contains("--addr"), "{e}");
        let k = parse(&[
            "--secret",
            "0123456789abcdef",
            "--kafka-brokers",
            "h:9092",
            "--topic-prefix",
            "shop",
        ])
        .unwrap()
        .kafka()
        .unwrap();
        assert_eq!(
            (
                k.brokers.as_str(),
                k.prefix.as_str(),
                k.partitions,
                k.queue_max
            ),
            ("h:9092", "shop", 4, 500_000)
        );
        // A queue smaller than the largest valid batch's records could never take that batch.
        let q = |n: usize| {
            parse(&[
                "--secret",
                "0123456789abcdef",
                "--kafka-queue-max",
                &n.to_string(),
            ])
        };
        assert_eq!(MAX_RECORDS_PER_BATCH, 250_065);
        let e = q(MAX_RECORDS_PER_BATCH - 1).unwrap_err();
        assert!(
            e.contains("--kafka-queue-max") && e.contains("from 250065"),
            "{e}"
        );
        assert_eq!(q(MAX_RECORDS_PER_BATCH).unwrap().kafka_queue_max, 250_065);
    }
}
