//! Where records go: Kafka ([`kafka`]) when `KAFKA_BROKERS` is set, else the embedded
//! default, a local append-only file of JSON lines ([`file`]), so the demo starts in seconds
//! with no broker. Either way a write returns only when the records are durable. The sinks
//! know nothing of each other or of this module: they share only [`SinkError`].

mod error;
pub mod file;
#[cfg(feature = "kafka")]
pub mod kafka;

pub use error::SinkError;
pub use file::FileSink;
#[cfg(feature = "kafka")]
pub use kafka::KafkaSink;

use edgerec::records::Record;

/// The configured sink.
#[derive(Debug)]
pub enum Sink {
    /// Embedded mode: a local file.
    File(FileSink),
    /// Kafka.
    #[cfg(feature = "kafka")]
    Kafka(KafkaSink),
}

impl Sink {
    /// Writes records; Ok only when they are durable.
    pub async fn write(&self, records: &[Record]) -> Result<(), SinkError> {
        match self {
            Sink::File(f) => f.write(records).await,
            #[cfg(feature = "kafka")]
            Sink::Kafka(k) => k.write(records).await,
        }
    }

    /// Whether the sink can take writes now (for /readyz).
    pub async fn ready(&self) -> bool {
        match self {
            Sink::File(f) => tokio::fs::metadata(f.path()).await.is_ok(),
            #[cfg(feature = "kafka")]
            Sink::Kafka(k) => k.ready().await,
        }
    }

    /// Short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Sink::File(_) => "file",
            #[cfg(feature = "kafka")]
            Sink::Kafka(_) => "kafka",
        }
    }
}

/// Opens the sink the settings name: Kafka when brokers are set (topics created), else the
/// records file.
pub async fn open(settings: &crate::settings::Settings) -> Result<Sink, SinkError> {
    match settings.kafka() {
        #[cfg(feature = "kafka")]
        Some(k) => Ok(Sink::Kafka(KafkaSink::connect(k).await?)),
        #[cfg(not(feature = "kafka"))]
        Some(_) => Err(SinkError::Unavailable(
            "KAFKA_BROKERS is set but this collector was built without the `kafka` feature".into(),
        )),
        None => Ok(Sink::File(FileSink::open(&settings.output_file).await?)),
    }
}
