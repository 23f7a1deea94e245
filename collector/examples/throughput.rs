//! Collector benchmark on one broker in one run (`make bench-collector`):
//! 1. a raw rdkafka producer (idempotent, acks=all) writing the records of N batches;
//!    1b. the same producer at the collector's concurrency: CLIENTS tasks, each waiting for a
//!    batch's acks before the next, as a request does;
//! 2. the same batches through the collector over HTTP (CLIENTS keep-alive clients, loopback);
//! 3. request latency at a paced 1,000 requests/s.
//!
//! Needs `tansu` on PATH; prints one JSON object.

use edgerec::aggregate::{AggregateBatch, AggregateDelta};
use edgerec::records;
use edgerec::EventKind;
use edgerec_collector::auth::sign;
use edgerec_collector::routes::{router, App};
use edgerec_collector::settings::KafkaSettings;
use edgerec_collector::settings::Settings;
use edgerec_collector::sink::kafka::future_record;
use edgerec_collector::sink::KafkaSink;
use edgerec_collector::sink::Sink;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[path = "../tests/support/broker.rs"]
mod broker;

const SECRET: &str = "bench-secret";

/// A realistic edge batch: 10 items with views and clicks, a few transitions, decision counters.
fn batch(i: usize) -> AggregateBatch {
    let mut d = AggregateDelta::default();
    for k in 0..10 {
        let item = format!("sku-{:04}", (i * 7 + k * 13) % 320);
        for _ in 0..3 {
            d.count_event(&item, EventKind::View);
        }
        d.count_event(&item, EventKind::Click);
        if k > 0 {
            d.count_transition(&format!("sku-{:04}", (i * 7 + (k - 1) * 13) % 320), &item);
        }
    }
    d.count_rule("repeat-view-related");
    d.count_tier("full");
    d.decisions = 10;
    d.events = 40;
    AggregateBatch::new(format!("bench-{i}"), "bench", 0, d)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One keep-alive HTTP/1.1 connection that posts signed batches.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect");
        // Header and body go out in one write anyway; no Nagle delay on small requests.
        stream.set_nodelay(true).expect("nodelay");
        Client {
            stream,
            buf: vec![0; 8192],
        }
    }

    async fn post(&mut self, body: &[u8]) -> u16 {
        let ts = now_ms();
        let head = format!(
            "POST /v1/aggregates HTTP/1.1\r\nhost: bench\r\ncontent-type: application/msgpack\r\nx-edgerec-timestamp: {ts}\r\nx-edgerec-signature: {}\r\ncontent-length: {}\r\n\r\n",
            sign(SECRET, ts, body),
            body.len()
        );
        let mut req = head.into_bytes();
        req.extend_from_slice(body);
        self.stream.write_all(&req).await.expect("write");
        // Read one response: headers, then content-length bytes.
        let mut got = Vec::new();
        loop {
            let n = self.stream.read(&mut self.buf).await.expect("read");
            assert!(n > 0, "connection closed");
            got.extend_from_slice(&self.buf[..n]);
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while got.len() < end + 4 + len {
                    let n = self.stream.read(&mut self.buf).await.expect("read");
                    got.extend_from_slice(&self.buf[..n]);
                }
                return head[9..12].parse().unwrap_or(0);
            }
        }
    }
}

fn q(xs: &mut [f64], p: f64) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[((xs.len() as f64 - 1.0) * p) as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let port = broker::free_port();
    let mut broker = broker::Broker::start(port);
    let brokers = format!("127.0.0.1:{port}");
    let kafka = |prefix: &str| KafkaSettings {
        brokers: brokers.clone(),
        prefix: prefix.into(),
        partitions: 4,
        timeout_ms: 10_000,
        queue_max: 200_000,
    };
    let batches: Vec<AggregateBatch> = (0..n).map(batch).collect();

    // 1. Raw producer: the same records, straight to Kafka (median of 3 rounds after warm-up).
    let raw_sink = KafkaSink::connect(kafka("raw")).await.expect("raw topics");
    drop(raw_sink);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1")
        .set("socket.nagle.disable", "true")
        .create()
        .unwrap();
    let recs: Vec<records::Record> = batches
        .iter()
        .flat_map(|b| records::from_batch(b, "raw"))
        .collect();
    let produce_all = |recs: &[records::Record]| {
        let mut pending = Vec::with_capacity(recs.len());
        for r in recs {
            // Partitioned as the collector does it: a batch's records on one partition.
            pending.push(
                producer
                    .send_result(future_record(r).partition(r.partition(4)))
                    .map_err(|(e, _)| e)
                    .expect("enqueue"),
            );
        }
        pending
    };
    // Warm-up: metadata for every topic and partition, the idempotent producer id.
    for p in produce_all(&recs[..recs.len().min(500)]) {
        p.await.expect("delivered").expect("acked");
    }
    let mut raw_rates = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        for p in produce_all(&recs) {
            p.await.expect("delivered").expect("acked");
        }
        raw_rates.push(recs.len() as f64 / t.elapsed().as_secs_f64());
    }
    let raw_rate = q(&mut raw_rates, 0.5);
    // Broker round trip for one record, produced and awaited alone (the floor for a request
    // that must wait for acks=all).
    let mut single = Vec::new();
    for r in recs.iter().take(50) {
        let t = Instant::now();
        let rec = FutureRecord::to(&r.topic).key(&r.key).payload(&r.value);
        producer
            .send_result(rec)
            .map_err(|(e, _)| e)
            .expect("enqueue")
            .await
            .expect("delivered")
            .expect("acked");
        single.push(t.elapsed().as_secs_f64() * 1000.0);
    }

    // 1b. The raw producer at the collector's concurrency: CLIENTS tasks, each producing one
    // batch's records and awaiting all their acks before the next, as a request must. The gap
    // between this and (1) is the wait for acks; between this and (2), the collector itself.
    let clients: usize = std::env::var("CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let per_batch: Vec<Vec<records::Record>> = batches
        .iter()
        .map(|b| records::from_batch(b, "raw"))
        .collect();
    let per_batch = std::sync::Arc::new(per_batch);
    let mut paced_raw_rates = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..clients {
            let (producer, per_batch) = (producer.clone(), per_batch.clone());
            tasks.push(tokio::spawn(async move {
                for recs in per_batch.iter().skip(c).step_by(clients) {
                    let pending: Vec<_> = recs
                        .iter()
                        .map(|r| {
                            producer
                                .send_result(future_record(r).partition(r.partition(4)))
                                .map_err(|(e, _)| e)
                                .expect("enqueue")
                        })
                        .collect();
                    for p in pending {
                        p.await.expect("delivered").expect("acked");
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        paced_raw_rates.push(recs.len() as f64 / t.elapsed().as_secs_f64());
    }
    let raw_waiting_rate = q(&mut paced_raw_rates, 0.5);
    let concurrency = clients;

    // 2. Through the collector over HTTP (median of 3 rounds, fresh batch ids each round).
    let mut settings = Settings::for_tests(SECRET, "/dev/null".into());
    settings.max_skew_ms = 60_000;
    settings.dedup_max_ids = 1_000_000;
    settings.dedup_max_age_ms = 3_600_000;
    settings.topic_prefix = "col".into();
    settings.kafka_brokers = Some(brokers.clone());
    settings.kafka_timeout_ms = 10_000;
    settings.kafka_queue_max = 200_000;
    let sink = KafkaSink::connect(settings.kafka().unwrap())
        .await
        .expect("collector topics");
    let app = App::new(settings, Sink::Kafka(sink));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(app)).await });
    // Many edge isolates post at once; each request waits for its acks, so throughput comes
    // from concurrency (the same CLIENTS as 1b).
    let mut col_rates = Vec::new();
    let mut avg_body = 0;
    for round in 0..3 {
        let bodies: Vec<Vec<u8>> = batches
            .iter()
            .map(|b| {
                let mut b = b.clone();
                b.id = format!("{}-r{round}", b.id);
                b.encode()
            })
            .collect();
        avg_body = bodies.iter().map(Vec::len).sum::<usize>() / bodies.len().max(1);
        let t = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..clients {
            let mine: Vec<Vec<u8>> = bodies.iter().skip(c).step_by(clients).cloned().collect();
            tasks.push(tokio::spawn(async move {
                let mut client = Client::connect(addr).await;
                for b in mine {
                    assert_eq!(client.post(&b).await, 200);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        col_rates.push(recs.len() as f64 / t.elapsed().as_secs_f64());
    }
    let col_rate = q(&mut col_rates, 0.5);

    // 3. Paced 1,000 requests/s for 5 s (new batch ids), latency per request.
    let paced = 5000;
    let clients = 8;
    let per_client = paced / clients;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await;
            let mut lat = Vec::with_capacity(per_client);
            for i in 0..per_client {
                let due = Duration::from_micros(((i * clients + c) as u64) * 1000);
                if let Some(wait) = due.checked_sub(t0.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
                let mut b = batch(i);
                b.id = format!("paced-{c}-{i}");
                let body = b.encode();
                let t = Instant::now();
                assert_eq!(client.post(&body).await, 200);
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let achieved = lat.len() as f64 / t0.elapsed().as_secs_f64();
    broker.stop();
    println!(
        "{}",
        serde_json::json!({
            "batches": n,
            "records": recs.len(),
            "avg_batch_bytes": avg_body,
            "raw_producer_records_per_s": raw_rate.round(),
            "raw_single_record_ack_ms": {"p50": q(&mut single, 0.5), "p99": q(&mut single, 0.99)},
            "collector_records_per_s": col_rate.round(),
            "collector_vs_raw": ((col_rate / raw_rate) * 100.0).round() / 100.0,
            "clients": concurrency,
            "raw_waiting_for_acks_records_per_s": raw_waiting_rate.round(),
            "collector_vs_raw_waiting_for_acks": ((col_rate / raw_waiting_rate) * 100.0).round() / 100.0,
            "paced_requests_per_s": achieved.round(),
            "paced_latency_ms": {"p50": q(&mut lat, 0.5), "p90": q(&mut lat, 0.9), "p99": q(&mut lat, 0.99)},
        })
    );
}
