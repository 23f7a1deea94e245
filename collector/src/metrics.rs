//! Prometheus metrics (text format at `GET /metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A label with one value.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// Why.
    pub reason: String,
}

/// A topic label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Topic {
    /// Topic name.
    pub topic: String,
}

/// Every metric the collector exports.
pub struct Metrics {
    /// Registry they live in.
    pub registry: Registry,
    /// Batches written.
    pub batches: Counter,
    /// Batches acknowledged again without writing (dedup window hits).
    pub duplicates: Counter,
    /// Requests refused, by reason.
    pub rejects: Family<Reason, Counter>,
    /// Records written, by topic.
    pub records: Family<Topic, Counter>,
    /// Request body bytes accepted.
    pub bytes: Counter,
    /// Sink write latency, seconds.
    pub sink_latency: Histogram,
    /// Records being written right now.
    pub in_flight: Gauge,
    /// Open client connections.
    pub connections: Gauge,
}

impl Metrics {
    /// Registers everything.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("edgerec_collector");
        let batches = Counter::default();
        let duplicates = Counter::default();
        let rejects = Family::<Reason, Counter>::default();
        let records = Family::<Topic, Counter>::default();
        let bytes = Counter::default();
        let buckets = [
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ];
        let sink_latency = Histogram::new(buckets);
        let in_flight = Gauge::default();
        let connections = Gauge::default();
        registry.register("batches", "Batches written", batches.clone());
        registry.register(
            "duplicates",
            "Batches acknowledged again without writing",
            duplicates.clone(),
        );
        registry.register("rejects", "Requests refused, by reason", rejects.clone());
        registry.register("records", "Records written, by topic", records.clone());
        registry.register("bytes", "Request body bytes accepted", bytes.clone());
        registry.register(
            "sink_latency_seconds",
            "Sink write latency",
            sink_latency.clone(),
        );
        registry.register("queue_depth", "Records being written", in_flight.clone());
        registry.register(
            "connections",
            "Open client connections",
            connections.clone(),
        );
        Metrics {
            registry,
            batches,
            duplicates,
            rejects,
            records,
            bytes,
            sink_latency,
            in_flight,
            connections,
        }
    }

    /// Counts a refusal.
    pub fn reject(&self, reason: &str) {
        self.rejects
            .get_or_create(&Reason {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
