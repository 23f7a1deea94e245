//! The collector's topics as a consumer group: partitions spread over trainer instances,
//! offsets committed only after the snapshot that includes them is published. Records below
//! the saved state's positions (read again after a restart or a rebalance) are skipped.

use crate::records::Encoded;
use crate::records::TOPICS;
use crate::run::{RunError, Trainer};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct KafkaSource {
    /// Bootstrap servers.
    pub brokers: String,
    /// Consumer group.
    pub group: String,
    /// Group session timeout (ms); a new member waits about half of it to join.
    pub session_timeout_ms: u32,
}

/// When a run stops.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// Publish and stop once nothing new arrived for this long (back-fills, tests).
    Idle(Duration),
    /// Publish every interval while new records arrived; never stop.
    Forever(Duration),
}

/// Longest wait for a partition assignment in a run that stops when idle.
const JOIN_LIMIT: Duration = Duration::from_secs(60);

fn position_key(topic: &str, partition: i32) -> String {
    format!("kafka:{topic}/{partition}")
}

/// Consumes until `until` says stop, publishing as it goes.
pub fn run(src: &KafkaSource, trainer: &mut Trainer, until: Until) -> Result<(), RunError> {
    let kerr = |e: rdkafka::error::KafkaError| RunError::Kafka(e.to_string());
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &src.brokers)
        .set("group.id", &src.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", src.session_timeout_ms.to_string())
        .create()
        .map_err(kerr)?;
    let topics: Vec<String> = TOPICS.iter().map(|t| t.name(&trainer.prefix)).collect();
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&refs).map_err(kerr)?;
    let mut last_record = Instant::now();
    let mut last_publish = Instant::now();
    let mut assigned = false;
    let started = Instant::now();
    loop {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                assigned = true;
                last_record = Instant::now();
                let key = position_key(m.topic(), m.partition());
                let payload = m.payload().unwrap_or_default();
                trainer.take(
                    &key,
                    m.offset() as u64,
                    m.topic(),
                    Encoded::MsgPack(payload),
                );
            }
            Some(Err(e)) => eprintln!("{{\"level\":\"warn\",\"kafka\":{:?}}}", e.to_string()),
            None => {}
        }
        if !assigned {
            assigned = consumer.assignment().is_ok_and(|a| a.count() > 0);
            // A run that should end must not wait forever for a group that never forms.
            if !assigned && matches!(until, Until::Idle(_)) && started.elapsed() > JOIN_LIMIT {
                return Err(RunError::Kafka(format!(
                    "no partitions assigned to group {} within {JOIN_LIMIT:?}",
                    src.group
                )));
            }
        }
        let (due, stop) = match until {
            Until::Idle(idle) => {
                let quiet = assigned && last_record.elapsed() >= idle;
                (quiet, quiet)
            }
            Until::Forever(every) => (last_publish.elapsed() >= every, false),
        };
        if due {
            last_publish = Instant::now();
            if trainer.dirty() || trainer.stats.published == 0 {
                trainer.publish()?;
                commit(&consumer, trainer);
            }
        }
        if stop {
            return Ok(());
        }
    }
}

/// Commits this instance's saved positions for the partitions it holds. A failure (e.g. a
/// rebalance in progress) is logged only: the state file, not the group offset, is what
/// prevents double counting.
fn commit(consumer: &BaseConsumer, trainer: &Trainer) {
    let Ok(assignment) = consumer.assignment() else {
        return;
    };
    let mut tpl = TopicPartitionList::new();
    for e in assignment.elements() {
        let key = position_key(e.topic(), e.partition());
        if let Some(&next) = trainer.state.positions.get(&key) {
            let _ = tpl.add_partition_offset(e.topic(), e.partition(), Offset::Offset(next as i64));
        }
    }
    if tpl.count() > 0 {
        if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
            eprintln!("{{\"level\":\"warn\",\"commit\":{:?}}}", e.to_string());
        }
    }
}
