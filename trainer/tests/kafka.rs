//! The trainer as a consumer group on a real Kafka-protocol broker (tansu on a loopback
//! port), fed by the collector's own Kafka sink: known transitions give the expected related
//! lists; each record counts once even when the broker re-delivers it; a restart resumes
//! from committed offsets and ends at the same snapshot a single pass gives; a new group over
//! the same state skips everything already counted.

use edgerec::aggregate::{AggregateBatch, AggregateDelta};
use edgerec::records::from_batch;
use edgerec::EventKind;
use edgerec_collector::settings::KafkaSettings;
use edgerec_collector::sink::KafkaSink;
use edgerec_trainer::kafka::{run, KafkaSource, Until};
use edgerec_trainer::model::ModelConfig;
use edgerec_trainer::publish::load_current;
use edgerec_trainer::run::Trainer;
use edgerec_trainer::state::StateDir;
use std::path::Path;

/// A release's records by item id.
type Release = std::collections::BTreeMap<String, edgerec::model::Record>;
use std::time::Duration;

#[path = "../../collector/tests/support/broker.rs"]
mod broker;
use broker::{free_port, Broker};

const PREFIX: &str = "trn";

fn batch(id: &str, moves: &[(&str, &str, u64)]) -> AggregateBatch {
    let mut d = AggregateDelta::default();
    for &(from, to, n) in moves {
        for _ in 0..n {
            d.count_transition(from, to);
            d.count_event(to, EventKind::View);
        }
    }
    AggregateBatch::new(id, "edge", 1_764_201_600_000, d)
}

async fn send(brokers: &str, batches: &[AggregateBatch]) {
    let sink = KafkaSink::connect(KafkaSettings {
        brokers: brokers.into(),
        prefix: PREFIX.into(),
        partitions: 3,
        timeout_ms: 5000,
        queue_max: 10_000,
    })
    .await
    .expect("collector sink connects");
    for b in batches {
        sink.write(&from_batch(b, PREFIX))
            .await
            .expect("records written");
    }
}

fn train(brokers: &str, group: &str, state: &Path, out: &Path) -> (Trainer, Release) {
    let cfg = ModelConfig {
        half_life_ms: 0,
        ..ModelConfig::default()
    };
    let mut t = Trainer::open(cfg, PREFIX, StateDir::new(state, "one"), None, out, None)
        .expect("state opens");
    let src = KafkaSource {
        brokers: brokers.into(),
        group: group.into(),
        session_timeout_ms: 2000,
    };
    run(&src, &mut t, Until::Idle(Duration::from_secs(3))).expect("run");
    let (head, shards) = load_current(out).expect("a release was published");
    (t, shards.records(&head))
}

fn related(cat: &Release, id: &str) -> Vec<(String, f32)> {
    cat[id]
        .related
        .iter()
        .map(|r| (r.card.id.clone(), r.score))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn consumes_topics_publishes_and_resumes_without_double_counting() {
    let port = free_port();
    let _broker = Broker::start(port);
    let brokers = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let (state, out) = (dir.path().join("state"), dir.path().join("out"));

    // a→b 3, a→c 1 (spread over two batches, so over partitions).
    send(
        &brokers,
        &[
            batch("b1", &[("a", "b", 2), ("a", "c", 1)]),
            batch("b2", &[("a", "b", 1)]),
        ],
    )
    .await;
    let b = brokers.clone();
    let (st, out1) = (state.clone(), out.clone());
    let (t1, cat1) = tokio::task::spawn_blocking(move || train(&b, "g1", &st, &out1))
        .await
        .unwrap();
    assert_eq!(t1.stats.bad, 0);
    assert_eq!(
        related(&cat1, "a"),
        vec![("b".into(), 1.0), ("c".into(), 1.0 / 3.0)]
    );
    // Backward weight 0.5: b→a 1.5, c→a 0.5, each list normalised to its best.
    assert_eq!(related(&cat1, "b"), vec![("a".into(), 1.0)]);
    // b1: 2 transition + 2 view records; b2: 1 + 1. Each applied once, even when the group
    // rebalances and the broker delivers a partition again from its start (tansu does):
    // those re-deliveries are counted as skipped.
    assert_eq!(t1.stats.applied, 6);
    drop(t1);

    // More data; the same group restarts from its committed offsets.
    send(&brokers, &[batch("b3", &[("a", "c", 5)])]).await;
    let b = brokers.clone();
    let (st, out2) = (state.clone(), out.clone());
    let (t2, cat2) = tokio::task::spawn_blocking(move || train(&b, "g1", &st, &out2))
        .await
        .unwrap();
    assert_eq!(t2.stats.applied, 2, "only b3's two records are new");
    // a→c 6, a→b 3.
    assert_eq!(
        related(&cat2, "a"),
        vec![("c".into(), 1.0), ("b".into(), 0.5)]
    );

    // A single pass over everything (fresh group, fresh state) gives the same snapshot.
    let b = brokers.clone();
    let (st, out3) = (dir.path().join("fresh-state"), dir.path().join("fresh-out"));
    let (_, once) = tokio::task::spawn_blocking(move || train(&b, "g2", &st, &out3))
        .await
        .unwrap();
    assert_eq!(once, cat2);

    // A new group over the old state re-reads from the start: all of it is skipped.
    let b = brokers.clone();
    let (st, out4) = (state.clone(), dir.path().join("out4"));
    let (t4, cat4) = tokio::task::spawn_blocking(move || train(&b, "g3", &st, &out4))
        .await
        .unwrap();
    assert_eq!(t4.stats.applied, 0);
    assert!(t4.stats.skipped_seen > 0);
    assert_eq!(cat4, cat2);
}
