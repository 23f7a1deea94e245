//! The collector against a real Kafka-protocol broker (tansu, started here on a free loopback
//! port), checked with a real consumer: totals consumed equal totals posted, duplicates count
//! once, hot items spread over partitions, and a broker outage gives 503s (nothing
//! acknowledged) after which the same batches, retried, are written exactly once.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use edgerec::aggregate::{AggregateBatch, AggregateDelta};
use edgerec::EventKind;
use edgerec_collector::auth::sign;
use edgerec_collector::kafka::{KafkaSettings, KafkaSink};
use edgerec_collector::routes::{router, App};
use edgerec_collector::settings::Settings;
use edgerec_collector::sink::Sink;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::ClientConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tower::ServiceExt;

#[path = "support/broker.rs"]
mod broker;
use broker::{free_port, Broker};

const SECRET: &str = "kafka-test-secret";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn settings(prefix: &str, brokers: &str) -> Settings {
    Settings {
        addr: "127.0.0.1:0".parse().unwrap(),
        secret: SECRET.into(),
        max_skew_ms: 60_000,
        max_body_bytes: 1 << 20,
        dedup_max_ids: 1000,
        dedup_max_age_ms: 3_600_000,
        topic_prefix: prefix.into(),
        output_file: "/dev/null".into(),
        kafka: Some(KafkaSettings {
            brokers: brokers.into(),
            prefix: prefix.into(),
            partitions: 4,
            timeout_ms: 3000,
            queue_max: 10_000,
        }),
        dedup_claim_max_ms: 60_000,
        header_timeout_ms: 5_000,
        body_timeout_ms: 10_000,
        max_connections: 1024,
    }
}

async fn app(prefix: &str, port: u16) -> axum::Router {
    let s = settings(prefix, &format!("127.0.0.1:{port}"));
    let sink = KafkaSink::connect(s.kafka.clone().unwrap())
        .await
        .expect("connect");
    router(App::new(s, Sink::Kafka(sink)))
}

fn batch(id: &str, views_per_item: &[(&str, u64)]) -> Vec<u8> {
    let mut d = AggregateDelta::default();
    for (item, n) in views_per_item {
        for _ in 0..*n {
            d.count_event(item, EventKind::View);
        }
    }
    d.events = views_per_item.iter().map(|x| x.1).sum();
    AggregateBatch::new(id, "kafka-test", now(), d).encode()
}

async fn post(app: &axum::Router, body: Vec<u8>) -> StatusCode {
    post_full(app, body).await.0
}

async fn post_full(app: &axum::Router, body: Vec<u8>) -> (StatusCode, String) {
    let ts = now();
    let req = Request::post("/v1/aggregates")
        .header("x-edgerec-timestamp", ts.to_string())
        .header("x-edgerec-signature", sign(SECRET, ts, &body))
        .body(Body::from(body))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Per-item totals, distinct batch ids, partitions used per item.
type Consumed = (
    BTreeMap<String, u64>,
    BTreeSet<String>,
    BTreeMap<String, BTreeSet<i32>>,
);

/// Consumes `topic` from the start until `want` views are seen (or 30 s pass): per-item
/// totals, distinct batch ids from headers, and partitions used per item.
fn consume(port: u16, topic: &str, want: u64) -> Consumed {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", format!("127.0.0.1:{port}"))
        .set("group.id", format!("g-{topic}-{}", now()))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "2000")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut totals = BTreeMap::new();
    let mut batches = BTreeSet::new();
    let mut partitions: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while totals.values().sum::<u64>() < want && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) {
            let v: serde_json::Value = rmp_serde::from_slice(m.payload().unwrap()).unwrap();
            let item = v["item"].as_str().unwrap().to_string();
            *totals.entry(item.clone()).or_insert(0) += v["count"].as_u64().unwrap();
            partitions.entry(item).or_default().insert(m.partition());
            let h = m.headers().unwrap();
            let id = h.iter().find(|h| h.key == "edgerec-batch-id").unwrap();
            batches.insert(String::from_utf8(id.value.unwrap().to_vec()).unwrap());
        }
    }
    (totals, batches, partitions)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_round_trip_through_kafka_exactly_once() {
    let port = free_port();
    let _broker = Broker::start(port);
    let prefix = format!("t{}a", std::process::id());
    let app = app(&prefix, port).await;
    let mut sent = BTreeMap::new();
    for i in 0..24 {
        let body = batch(
            &format!("b-{i}"),
            &[("hot-item", 3), (&format!("item-{}", i % 4), 1)],
        );
        assert_eq!(post(&app, body.clone()).await, StatusCode::OK);
        if i % 3 == 0 {
            assert_eq!(
                post(&app, body).await,
                StatusCode::OK,
                "duplicate acknowledged"
            );
        }
        *sent.entry("hot-item".to_string()).or_insert(0) += 3;
        *sent.entry(format!("item-{}", i % 4)).or_insert(0) += 1;
    }
    let want: u64 = sent.values().sum();
    let topic = format!("{prefix}.views");
    let (totals, batches, partitions) =
        tokio::task::spawn_blocking(move || consume(port, &topic, want))
            .await
            .unwrap();
    assert_eq!(
        totals, sent,
        "consumed totals equal posted totals; duplicates counted once"
    );
    assert_eq!(batches.len(), 24);
    assert!(
        partitions["hot-item"].len() >= 3,
        "hot item spread over partitions: {:?}",
        partitions["hot-item"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_acknowledges_nothing_and_retries_land_once() {
    let port = free_port();
    let mut broker = Broker::start(port);
    let prefix = format!("t{}b", std::process::id());
    let app = app(&prefix, port).await;
    assert_eq!(post(&app, batch("warm", &[("x", 1)])).await, StatusCode::OK);
    broker.stop();
    let during: Vec<Vec<u8>> = (0..3)
        .map(|i| batch(&format!("o-{i}"), &[("y", 2)]))
        .collect();
    for b in &during {
        assert_eq!(
            post(&app, b.clone()).await,
            StatusCode::SERVICE_UNAVAILABLE,
            "nothing acknowledged while down"
        );
    }
    let _broker = Broker::start(port);
    // The edge retries the same batches (same ids) until it gets a 200.
    for b in &during {
        let mut status = StatusCode::SERVICE_UNAVAILABLE;
        for _ in 0..10 {
            let (s, body) = post_full(&app, b.clone()).await;
            status = s;
            if status == StatusCode::OK {
                break;
            }
            eprintln!("retry: {s} {body}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            post(&app, b.clone()).await,
            StatusCode::OK,
            "and again: a duplicate"
        );
    }
    let topic = format!("{prefix}.views");
    let (totals, batches, _) = tokio::task::spawn_blocking(move || consume(port, &topic, 6))
        .await
        .unwrap();
    // The restarted (in-memory) broker holds only what was written after it came back.
    assert_eq!(
        totals.get("y"),
        Some(&6),
        "3 batches × 2 views, none lost, none doubled: {totals:?}"
    );
    assert_eq!(batches.len(), 3);
}
