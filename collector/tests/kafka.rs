//! The collector against a real Kafka-protocol broker (tansu, started here on a free loopback
//! port), checked with a real consumer: totals consumed equal totals posted, duplicates count
//! once, hot items spread over partitions, and a broker outage gives 503s (nothing
//! acknowledged) after which the same batches, retried, are written exactly once.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use edgerec::aggregate::{AggregateBatch, AggregateDelta};
use edgerec::EventKind;
use edgerec_collector::auth::sign;
use edgerec_collector::routes::{router, App};
use edgerec_collector::settings::Settings;
use edgerec_collector::sink::KafkaSink;
use edgerec_collector::sink::Sink;
use std::collections::BTreeMap;
use std::sync::Arc;
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
    let mut s = Settings::for_tests(SECRET, "/dev/null".into());
    s.max_skew_ms = 60_000;
    s.dedup_max_ids = 1000;
    s.dedup_max_age_ms = 3_600_000;
    s.topic_prefix = prefix.into();
    s.kafka_brokers = Some(brokers.into());
    s.kafka_timeout_ms = 3000;
    s.kafka_queue_max = 10_000;
    s
}

async fn app(prefix: &str, port: u16) -> axum::Router {
    let s = settings(prefix, &format!("127.0.0.1:{port}"));
    let sink = KafkaSink::connect(s.kafka().unwrap())
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

/// Reads `topic` to its end (the collector's own `tally`: each batch counted once per item,
/// copies counted as doubles).
async fn consume(port: u16, topic: &str) -> edgerec_collector::tally::Tally {
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        edgerec_collector::tally::tally(
            &format!("127.0.0.1:{port}"),
            &topic,
            Duration::from_secs(60),
        )
    })
    .await
    .unwrap()
    .expect("read to the end")
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
    let t = consume(port, &format!("{prefix}.views")).await;
    assert_eq!(
        t.items, sent,
        "consumed totals equal posted totals; duplicates counted once"
    );
    assert_eq!(
        t.doubles, 0,
        "a resent batch is acknowledged without a second write"
    );
    assert_eq!(t.batches, 24);
    assert!(
        t.partitions["hot-item"].len() >= 3,
        "hot item spread over partitions: {:?}",
        t.partitions["hot-item"]
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
    let t = consume(port, &format!("{prefix}.views")).await;
    // The restarted (in-memory) broker holds only what was written after it came back.
    assert_eq!(
        t.items.get("y"),
        Some(&6),
        "3 batches × 2 views, none lost, none doubled: {t:?}"
    );
    assert_eq!((t.batches, t.doubles), (3, 0));
}

/// Posts a signed batch over a real socket and gives up after `wait` without an answer (a
/// client that disconnects halfway); the status if one came.
async fn post_and_hang_up(addr: std::net::SocketAddr, body: &[u8], wait: Duration) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ts = now();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/aggregates HTTP/1.1\r\nhost: x\r\ncontent-type: application/msgpack\r\nx-edgerec-timestamp: {ts}\r\nx-edgerec-signature: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        sign(SECRET, ts, body),
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    match tokio::time::timeout(wait, s.read_to_end(&mut out)).await {
        Ok(_) => String::from_utf8_lossy(&out)
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok()),
        Err(_) => None, // dropped here: the client is gone
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_during_a_stalled_write_leaves_no_stuck_batch() {
    let port = free_port();
    let broker = Broker::start(port);
    let prefix = format!("t{}c", std::process::id());
    let s = settings(&prefix, &format!("127.0.0.1:{port}"));
    let sink = KafkaSink::connect(s.kafka().unwrap())
        .await
        .expect("connect");
    let app = App::new(s, Sink::Kafka(sink));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = edgerec_collector::serve::Limits {
        header_timeout: Duration::from_secs(5),
        max_connections: 64,
    };
    let gauge = app.metrics.connections.clone();
    tokio::spawn(edgerec_collector::serve::serve(
        listener,
        router(Arc::clone(&app)),
        limits,
        gauge,
        std::future::pending(),
    ));
    let warm = batch("warm", &[("w", 1)]);
    assert_eq!(
        post_and_hang_up(addr, &warm, Duration::from_secs(10)).await,
        Some(200)
    );
    // The broker stalls; the client waits 1 s for its answer, then hangs up.
    broker.signal("STOP");
    let stuck = batch("stuck", &[("s", 3)]);
    assert_eq!(
        post_and_hang_up(addr, &stuck, Duration::from_secs(1)).await,
        None
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    broker.signal("CONT");
    // The edge resends the same id until it gets a 200: it must, within seconds, and the
    // batch must be in Kafka once.
    let started = Instant::now();
    let mut answers = Vec::new();
    loop {
        let status = post_and_hang_up(addr, &stuck, Duration::from_secs(10)).await;
        answers.push(status);
        if status == Some(200) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "still refused: {answers:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "resends after the hang-up: {answers:?} in {:?}",
        started.elapsed()
    );
    let t = consume(port, &format!("{prefix}.views")).await;
    assert_eq!(t.items.get("s"), Some(&3), "{t:?}");
    assert_eq!(t.doubles, 0, "written once");
    assert_eq!(t.records, 2, "warm + stuck, nothing else");
}
