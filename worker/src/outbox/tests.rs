//! The outbox as a state machine: sealing, merging during an outage, bounds, retries.
use super::*;
use edgerec::EventKind;

const L: Limits = Limits {
    seal_keys: 3,
    max_age_ms: 1000,
    max_sealed: 2,
};

fn views(item: &str, n: u64) -> AggregateDelta {
    let mut d = AggregateDelta::default();
    for _ in 0..n {
        d.count_event(item, EventKind::View);
    }
    d.events = n;
    d
}

fn ids() -> impl FnMut() -> Option<String> {
    let mut n = 0;
    move || {
        n += 1;
        Some(format!("b{n}"))
    }
}

#[test]
fn an_outage_merges_into_one_open_buffer_and_loses_nothing() {
    let mut o = Outbox::default();
    let mut next = ids();
    o.record(&views("a", 1), 0, &L, "edge", &mut next);
    assert!(!o.due(999, &L));
    assert!(o.due(1000, &L), "old enough");
    let sent = o.begin(1000, &L, "edge", &mut next);
    assert_eq!(sent.len(), 1);
    o.failed(1000);
    o.finish();
    // The outage goes on: 10,000 decisions on the same two items.
    for t in 0..10_000 {
        o.record(
            &views(if t % 2 == 0 { "a" } else { "b" }, 1),
            1000 + t,
            &L,
            "edge",
            &mut next,
        );
        assert!(
            o.due(1000 + t, &L) == (t >= 1000),
            "retry waits for the backoff"
        );
    }
    assert_eq!(o.sealed(), 1, "no new batch while one waits");
    assert_eq!(o.open().events, 10_000);
    // Retried with the same id, still failing: still one batch, delays grow to 10 s.
    let again = o.begin(11_000, &L, "edge", &mut next);
    assert_eq!(again[0].0, "b1");
    o.failed(11_000);
    o.finish();
    assert!(
        !o.due(12_999, &L) && o.due(13_000, &L),
        "second delay is 2 s"
    );
    // The collector is back: the waiting batch goes, then the merged one is sealed.
    o.begin(13_000, &L, "edge", &mut next);
    assert!(o.done("b1").is_some());
    o.finish();
    let last = o.begin(13_001, &L, "edge", &mut next);
    assert_eq!(last.len(), 1);
    let batch = edgerec::AggregateBatch::decode(&last[0].1).unwrap();
    assert_eq!((batch.id.as_str(), batch.delta.events), ("b2", 10_000));
    assert_eq!(
        batch.delta.items["a"].views + batch.delta.items["b"].views,
        10_000
    );
    o.done("b2");
    o.finish();
    assert_eq!((o.sealed(), o.open().is_empty()), (0, true));
}

#[test]
fn memory_is_bounded_by_keys_and_overflow_is_counted() {
    let mut o = Outbox::default();
    let mut next = ids();
    let mut dropped = 0;
    for i in 0..100 {
        if let Recorded::Dropped { events } =
            o.record(&views(&format!("i{i}"), 1), i, &L, "edge", &mut next)
        {
            dropped += events;
        }
        if o.due(i, &L) {
            o.begin(i, &L, "edge", &mut next);
            o.finish(); // the collector never answers: nothing acknowledged
        }
    }
    // Two sealed batches of 3 keys, an open one of at least 3; the rest counted.
    assert_eq!(o.sealed(), 2);
    assert!(o.sealed_keys() + o.open().key_count() <= 3 * 3 + 1);
    let held = o.sealed_events() + o.open().events;
    assert_eq!(
        held + dropped,
        100,
        "every event is either held or counted as dropped"
    );
}

#[test]
fn a_cut_off_send_is_taken_over_and_a_missing_id_seals_later() {
    let mut o = Outbox::default();
    o.record(&views("a", 2), 0, &L, "edge", || None);
    assert!(
        o.begin(5000, &L, "edge", || None).is_empty(),
        "no id: nothing sealed"
    );
    assert!(!o.due(5001, &L), "a send is running");
    assert!(
        o.due(5000 + SEND_ABANDONED_MS, &L),
        "abandoned after the limit"
    );
    let sent = o.begin(70_000, &L, "edge", || Some("x".into()));
    assert_eq!(sent.len(), 1);
    assert_eq!(o.done("x").map(|s| s.events), Some(2));
    assert!(o.done("x").is_none(), "acknowledged once");
}

#[test]
fn the_bound_holds_while_a_retry_waits() {
    let mut o = Outbox::default();
    let mut next = ids();
    o.record(&views("first", 1), 0, &L, "edge", &mut next);
    o.begin(0, &L, "edge", &mut next);
    o.failed(0);
    o.finish();
    // Within the 1 s retry delay no send starts; 100 distinct items arrive meanwhile.
    let mut dropped = 0;
    for i in 0..100 {
        assert!(!o.due(1 + i, &L));
        if let Recorded::Dropped { events } =
            o.record(&views(&format!("i{i}"), 1), 1 + i, &L, "edge", &mut next)
        {
            dropped += events;
        }
    }
    // Slots: the batch in flight and one more sealed here; the open buffer full.
    assert_eq!(o.sealed(), 2);
    assert_eq!(o.sealed_keys() + o.open().key_count(), 1 + 3 + 3);
    assert_eq!(o.sealed_events() + o.open().events + dropped, 101);
    assert_eq!(dropped, 100 - 3 - 3);
}

#[test]
fn a_waiting_batch_is_retried_and_a_full_buffer_sealed_beside_it() {
    let mut o = Outbox::default();
    let mut next = ids();
    o.record(&views("a", 1), 0, &L, "edge", &mut next);
    o.begin(0, &L, "edge", &mut next);
    o.failed(0);
    o.finish();
    assert!(o.open().is_empty());
    // Only a sealed batch waits: due once the retry delay has passed.
    assert!(!o.due(999, &L) && o.due(1_000, &L));
    // The buffer fills to exactly seal_keys (no later delta seals it): the next send seals it
    // into the free slot and posts both, oldest first.
    let mut three = views("x", 1);
    three.merge(&views("y", 1));
    three.merge(&views("z", 1));
    o.record(&three, 1_000, &L, "edge", &mut next);
    assert_eq!((o.sealed(), o.open().key_count()), (1, 3));
    let sent = o.begin(1_000, &L, "edge", &mut next);
    assert_eq!(
        sent.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        ["b1", "b2"]
    );
    o.finish();
    // With no collector, the open buffer is handed over whole.
    o.record(&views("w", 2), 1_001, &L, "edge", &mut next);
    assert_eq!(o.take_open().events, 2);
    assert!(o.open().is_empty());
}

#[test]
fn traces_give_way_to_counters_while_sends_fail() {
    let traced = |t: u64| {
        let mut d = views("a", 1);
        d.add_trace(
            "p1",
            vec![(EventKind::View, "a".into(), None, t)],
            None,
            "full",
        );
        d
    };
    let mut o = Outbox::default();
    let mut next = ids();
    o.record(&traced(1), 0, &L, "edge", &mut next);
    assert_eq!(
        o.open().traces["p1"].events.len(),
        1,
        "kept while nothing fails"
    );
    let _ = o.begin(1000, &L, "edge", &mut next);
    o.record(&traced(2), 1000, &L, "edge", &mut next);
    assert_eq!(
        o.open().traces.len(),
        1,
        "one batch in flight is no pressure"
    );
    o.failed(1000);
    o.finish();
    assert!(o.under_pressure());
    o.record(&traced(3), 1001, &L, "edge", &mut next);
    o.record(&traced(4), 1002, &L, "edge", &mut next);
    assert_eq!(o.open().events, 3, "every counter kept");
    assert_eq!(o.open().traces["p1"].events.len(), 1);
    assert_eq!(
        o.open().traces_dropped,
        2,
        "the traces left out are counted"
    );
    o.done("b1");
    assert!(!o.under_pressure());
}
