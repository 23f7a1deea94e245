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
use rdkafka::Message;
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
    let (status, _, body) = post_with_headers(app, body).await;
    (status, body)
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
    assert_eq!(
        t.split_batches, 0,
        "each batch's records on one partition (one produce request per topic)"
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

/// Posts `body` signed; status, `retry-after` and body.
async fn post_with_headers(
    app: &axum::Router,
    body: Vec<u8>,
) -> (StatusCode, Option<String>, String) {
    let ts = now();
    let req = Request::post("/v1/aggregates")
        .header("x-edgerec-timestamp", ts.to_string())
        .header("x-edgerec-signature", sign(SECRET, ts, &body))
        .body(Body::from(body))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, retry, String::from_utf8_lossy(&bytes).into_owned())
}

/// `n` items `<prefix>0..` with one view each: `n` view records and one decisions record.
fn items(prefix: &str, n: usize) -> Vec<(String, u64)> {
    (0..n).map(|i| (format!("{prefix}{i}"), 1)).collect()
}

fn batch_of(id: &str, items: &[(String, u64)]) -> Vec<u8> {
    let refs: Vec<(&str, u64)> = items.iter().map(|(i, n)| (i.as_str(), *n)).collect();
    batch(id, &refs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_producer_queue_refuses_the_whole_batch_with_503_and_its_retry_lands_once() {
    let port = free_port();
    let broker = Broker::start(port);
    let prefix = format!("t{}d", std::process::id());
    let mut s = settings(&prefix, &format!("127.0.0.1:{port}"));
    s.kafka_queue_max = 10;
    let sink = KafkaSink::connect(s.kafka().unwrap())
        .await
        .expect("connect");
    let app = router(App::new(s, Sink::Kafka(sink)));
    assert_eq!(post(&app, batch("warm", &[("w", 1)])).await, StatusCode::OK);
    // The broker stalls: batch A's 8 records (7 views + decisions) wait in the queue of 10.
    broker.signal("STOP");
    let (a, b) = (items("a", 7), items("b", 4));
    let waiting = tokio::spawn({
        let (app, body) = (app.clone(), batch_of("a", &a));
        async move { post(&app, body).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Batch B's 5 records do not fit beside them: refused whole, at once, nothing enqueued.
    let started = Instant::now();
    let (status, retry, body) = post_with_headers(&app, batch_of("b", &b)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refused without waiting for the broker: {:?}",
        started.elapsed()
    );
    broker.signal("CONT");
    assert_eq!(waiting.await.unwrap(), StatusCode::OK);
    // The edge resends B (same id) until it gets a 200.
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..20 {
        status = post(&app, batch_of("b", &b)).await;
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(status, StatusCode::OK);
    let t = consume(port, &format!("{prefix}.views")).await;
    let want: BTreeMap<String, u64> = a
        .iter()
        .chain(&b)
        .cloned()
        .chain([("w".to_string(), 1)])
        .collect();
    assert_eq!(t.items, want);
    assert_eq!(
        (t.batches, t.doubles, t.records),
        (3, 0, 12),
        "no record of B was written before its retry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_bad_batches_are_dead_lettered_in_kafka_with_the_reason_and_body() {
    let port = free_port();
    let _broker = Broker::start(port);
    let prefix = format!("t{}e", std::process::id());
    let app = app(&prefix, port).await;
    let garbage = b"\xc1 not a batch".to_vec();
    let (status, body) = post_full(&app, garbage.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let mut d = AggregateDelta::default();
    d.count_event("x", EventKind::View);
    d.events = 1;
    let mut long = AggregateBatch::new("placeholder", "kafka-test", now(), d);
    long.id = "x".repeat(65);
    let invalid = long.encode();
    let (status, body) = post_full(&app, invalid.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("\"field\":\"id\""), "{body}");
    let mut letters = Vec::new();
    let read = edgerec_collector::tally::read_to_end(
        &format!("127.0.0.1:{port}"),
        &format!("{prefix}.deadletter"),
        Duration::from_secs(60),
        |m| {
            let l: edgerec::records::DeadLetter<'_> =
                rmp_serde::from_slice(m.payload().unwrap()).expect("a dead letter");
            letters.push((l.reason.into_owned(), l.body.into_owned(), l.fields.len()));
        },
    )
    .expect("read the dead-letter topic");
    assert_eq!(read, 2, "one dead letter per refused batch");
    letters.sort();
    assert_eq!(letters[0].0, "invalid");
    assert_eq!(letters[0].1, invalid, "the body as received");
    assert_eq!(letters[1].0, "undecodable");
    assert_eq!(letters[1].1, garbage);
    assert!(letters.iter().all(|l| l.2 >= 1), "fields named");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_write_in_progress_answers_it_then_exits_cleanly() {
    use std::process::{Command, Stdio};
    let port = free_port();
    let broker = Broker::start(port);
    let prefix = format!("t{}f", std::process::id());
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut collector = Command::new(env!("CARGO_BIN_EXE_edgerec-collector"))
        .env_clear()
        .env("COLLECTOR_SECRET", SECRET)
        .env("COLLECTOR_ADDR", addr.to_string())
        .env("KAFKA_BROKERS", format!("127.0.0.1:{port}"))
        .env("TOPIC_PREFIX", &prefix)
        .env("KAFKA_TIMEOUT_MS", "8000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the collector binary");
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "collector did not listen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let warm = batch("warm", &[("w", 1)]);
    assert_eq!(
        post_and_hang_up(addr, &warm, Duration::from_secs(10)).await,
        Some(200)
    );
    // A write in progress (the broker stalls), then SIGTERM.
    broker.signal("STOP");
    let body = batch("in-flight", &[("f", 2)]);
    let in_flight =
        tokio::spawn(async move { post_and_hang_up(addr, &body, Duration::from_secs(20)).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let term = Command::new("kill")
        .args(["-TERM", &collector.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connections once stopping"
    );
    assert!(
        collector.try_wait().unwrap().is_none(),
        "still finishing the request in progress"
    );
    broker.signal("CONT");
    assert_eq!(in_flight.await.unwrap(), Some(200), "answered, not cut off");
    let stopped = Instant::now();
    let status = loop {
        if let Some(s) = collector.try_wait().unwrap() {
            break s;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(15),
            "exits after the drain"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}");
    let t = consume(port, &format!("{prefix}.views")).await;
    assert_eq!(t.items.get("f"), Some(&2));
    assert_eq!((t.batches, t.doubles), (2, 0));
}
