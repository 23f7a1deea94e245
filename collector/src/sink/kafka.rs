//! The Kafka sink: an idempotent producer with `acks=all`; a batch is acknowledged only when
//! every one of its records is. A batch's records go to one partition of each topic
//! (`edgerec::records::Record::partition`, over the partition counts the broker reports at
//! start and after a failure), so a request waits for one produce request per topic. Topics are created at start-up through the admin API (the test
//! broker, tansu, does not auto-create them), and again if the broker forgot them.
//!
//! Back-pressure: the producer queue is bounded (`queue.buffering.max.messages`); a batch that
//! does not fit beside what is queued is refused whole before any of it is enqueued, and it or a
//! broker that does not acknowledge within `message.timeout.ms` makes the write fail, the
//! collector answers 503 + Retry-After, and the edge retries the same batch id later. If a
//! broker dies mid-batch some records may already be stored; the retry writes them again, and
//! the `edgerec-batch-id` header lets consumers drop those repeats.

use super::error::SinkError;
pub use crate::settings::KafkaSettings;
use edgerec::records::{Record, Topic};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use std::collections::HashMap;
use std::time::Duration;

/// A connected producer.
pub struct KafkaSink {
    /// Replaced when librdkafka reports a fatal error (an idempotent producer cannot go on
    /// after e.g. a broker that lost its state).
    producer: std::sync::RwLock<FutureProducer>,
    admin: AdminClient<DefaultClientContext>,
    settings: KafkaSettings,
    /// Partitions of each topic as the broker reported them: a batch's records go to one
    /// partition of each ([`Record::partition`]). A topic missing here is partitioned by key.
    partitions: std::sync::RwLock<HashMap<String, i32>>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("settings", &self.settings)
            .finish()
    }
}

impl KafkaSink {
    /// Connects and makes sure the topics exist.
    pub async fn connect(settings: KafkaSettings) -> Result<KafkaSink, SinkError> {
        let err = |e: KafkaError| SinkError::Unavailable(e.to_string());
        let producer = std::sync::RwLock::new(new_producer(&settings)?);
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &settings.brokers)
            .create()
            .map_err(err)?;
        let sink = KafkaSink {
            producer,
            admin,
            settings,
            partitions: Default::default(),
        };
        sink.ensure_topics().await?;
        sink.learn_partitions().await;
        Ok(sink)
    }

    /// Topic names this sink writes.
    pub fn topics(&self) -> Vec<String> {
        Topic::ALL
            .iter()
            .map(|t| t.name(&self.settings.prefix))
            .collect()
    }

    /// Creates missing topics (existing ones are left alone).
    pub async fn ensure_topics(&self) -> Result<(), SinkError> {
        let names = self.topics();
        let topics: Vec<NewTopic> = names
            .iter()
            .map(|n| NewTopic::new(n, self.settings.partitions, TopicReplication::Fixed(1)))
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = self
            .admin
            .create_topics(&topics, &opts)
            .await
            .map_err(|e| SinkError::Unavailable(e.to_string()))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(SinkError::Unavailable(format!("create {topic}: {code}")))
                }
            }
        }
        Ok(())
    }

    /// Reads the topics' partition counts from the broker (bounded; on failure the old counts
    /// stay).
    async fn learn_partitions(&self) {
        let (producer, names) = (self.producer(), self.topics());
        let got = tokio::task::spawn_blocking(move || {
            let md = producer
                .client()
                .fetch_metadata(None, Duration::from_secs(3))
                .ok()?;
            let counts: HashMap<String, i32> = md
                .topics()
                .iter()
                .filter(|t| names.iter().any(|n| n == t.name()) && !t.partitions().is_empty())
                .map(|t| (t.name().to_string(), t.partitions().len() as i32))
                .collect();
            Some(counts)
        })
        .await
        .ok()
        .flatten();
        if let (Some(got), Ok(mut slot)) = (got, self.partitions.write()) {
            *slot = got;
        }
    }

    fn producer(&self) -> FutureProducer {
        match self.producer.read() {
            Ok(p) => p.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// After a failed write: make sure the topics exist (a broker restarted with in-memory
    /// storage has forgotten them) and start a fresh producer (the old one's cached metadata and
    /// idempotence state belong to the broker that went away). Bounded, so a 503 stays quick.
    async fn recover(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(3), self.ensure_topics()).await;
        match (new_producer(&self.settings), self.producer.write()) {
            (Ok(fresh), Ok(mut slot)) => *slot = fresh,
            (Err(e), _) => tracing::warn!(error = %e, "could not create a new Kafka producer"),
            (_, Err(_)) => {}
        }
        let _ = tokio::time::timeout(Duration::from_secs(3), self.learn_partitions()).await;
    }

    /// Produces records; Ok only when the broker acknowledged all of them.
    pub async fn write(&self, records: &[Record]) -> Result<(), SinkError> {
        let producer = self.producer();
        // Refuse the whole batch while it does not fit beside what is queued, rather than
        // enqueue part of it: a partly written batch would be written again on retry (copies
        // consumers must drop). Two requests racing past this check can still meet a full
        // queue below; that path stays correct, only less tidy.
        let queued = usize::try_from(producer.in_flight_count()).unwrap_or(0);
        if queued + records.len() > self.settings.queue_max {
            return Err(SinkError::Unavailable(format!(
                "producer queue full ({queued} queued, {} more)",
                records.len()
            )));
        }
        let parts: Vec<Option<i32>> = match self.partitions.read() {
            Ok(counts) => records
                .iter()
                .map(|r| counts.get(&r.topic).map(|&n| r.partition(n)))
                .collect(),
            Err(_) => vec![None; records.len()],
        };
        let mut pending = Vec::with_capacity(records.len());
        for (r, part) in records.iter().zip(parts) {
            let mut rec = future_record(r);
            if let Some(p) = part {
                rec = rec.partition(p);
            }
            match producer.send_result(rec) {
                Ok(delivery) => pending.push(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    return Err(SinkError::Unavailable("producer queue full".into()))
                }
                Err((e, _)) => {
                    self.recover().await;
                    return Err(SinkError::Unavailable(e.to_string()));
                }
            }
        }
        let mut failure = None;
        for d in pending {
            match d.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    failure.get_or_insert(e.to_string());
                }
                Err(_) => {
                    failure.get_or_insert("delivery cancelled".to_string());
                }
            }
        }
        if failure.is_some() {
            self.recover().await;
        }
        match failure {
            None => Ok(()),
            Some(e) => Err(SinkError::Unavailable(e)),
        }
    }

    /// Whether the brokers answer a metadata request.
    pub async fn ready(&self) -> bool {
        let producer = self.producer();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Duration::from_secs(2))
                .is_ok()
        })
        .await
        .unwrap_or(false)
    }

    /// Waits for queued records (graceful shutdown).
    pub fn flush(&self, timeout: Duration) {
        let _ = self.producer().flush(timeout);
    }
}

/// A record as rdkafka sends it: topic, key, value and headers.
pub fn future_record(r: &Record) -> FutureRecord<'_, String, Vec<u8>> {
    let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
    for (k, v) in &r.headers {
        headers = headers.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        });
    }
    FutureRecord::to(&r.topic)
        .key(&r.key)
        .payload(&r.value)
        .headers(headers)
}

fn new_producer(settings: &KafkaSettings) -> Result<FutureProducer, SinkError> {
    ClientConfig::new()
        .set("bootstrap.servers", &settings.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", settings.timeout_ms.to_string())
        .set(
            "queue.buffering.max.messages",
            settings.queue_max.to_string(),
        )
        // A request waits for its records' acks: linger only briefly (0 was measured slower:
        // more, smaller produce requests for the broker).
        .set("linger.ms", "1")
        // Small produce requests wait for delayed ACKs under Nagle (~40 ms a round trip).
        .set("socket.nagle.disable", "true")
        .create()
        .map_err(|e| SinkError::Unavailable(e.to_string()))
}
