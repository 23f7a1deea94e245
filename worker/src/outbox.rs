//! The aggregate outbox: counters from decisions wait here until the collector acknowledges
//! them. A plain state machine (no I/O, no platform types), wrapped by [`crate::flush`].
//!
//! Counters are mergeable, so an outage does not multiply batches: while a sealed batch is
//! unacknowledged, new deltas merge into one *open* buffer instead of being sealed. A new
//! batch is sealed only when nothing is waiting, or when the open buffer reaches `seal_keys`
//! keys (then up to `max_sealed` batches wait, oldest sent first). Memory is therefore bounded
//! by key count — `(max_sealed + 1) × seal_keys` — never by how long the outage lasts. Only
//! when every sealed slot is taken *and* the open buffer is full is a new delta refused, and
//! its events are counted as dropped. A sealed batch keeps its id for every retry, so the
//! collector drops the copies it already wrote. Retries back off (1 s doubling to 10 s).

use edgerec::{AggregateBatch, AggregateDelta};
use std::collections::VecDeque;

/// First retry delay after a failed send, ms.
pub const BACKOFF_MIN_MS: u64 = 1_000;
/// Longest retry delay, ms.
pub const BACKOFF_MAX_MS: u64 = 10_000;
/// A send still marked in progress after this long was cut off (the platform ends
/// `waitUntil` work after 30 s); the outbox takes sends again.
pub const SEND_ABANDONED_MS: u64 = 60_000;

/// Sizes and ages that drive the outbox.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Seal the open buffer once it holds this many keys (`FLUSH_MAX_KEYS`).
    pub seal_keys: usize,
    /// ... or once its oldest counter is this old, ms (`FLUSH_MAX_AGE_MS`).
    pub max_age_ms: u64,
    /// Sealed batches kept waiting for acknowledgement (`MAX_UNACKED_BATCHES`).
    pub max_sealed: usize,
}

/// A batch sealed for sending: its id stays the same for every retry.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// Batch id.
    pub id: String,
    /// Encoded batch (MessagePack), signed at send time.
    pub body: Vec<u8>,
    /// Events counted in it.
    pub events: u64,
    /// Keys in it.
    pub keys: usize,
}

/// What [`Outbox::record`] did with a delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Merged into the open buffer.
    Merged,
    /// Refused: the outbox is full (its events are counted as dropped).
    Dropped {
        /// Events in the refused delta.
        events: u64,
    },
}

/// The outbox.
#[derive(Debug, Default)]
pub struct Outbox {
    open: AggregateDelta,
    open_since_ms: u64,
    sealed: VecDeque<Sealed>,
    sending_since_ms: Option<u64>,
    next_try_ms: u64,
    failures: u32,
}

impl Outbox {
    /// Adds a decision's counters.
    pub fn record(&mut self, delta: &AggregateDelta, now_ms: u64, l: &Limits) -> Recorded {
        if delta.is_empty() {
            return Recorded::Merged;
        }
        if self.sealed.len() >= l.max_sealed.max(1) && self.open.key_count() >= l.seal_keys {
            return Recorded::Dropped {
                events: delta.events,
            };
        }
        if self.open.is_empty() {
            self.open_since_ms = now_ms;
        }
        self.open.merge(delta);
        Recorded::Merged
    }

    fn sending(&self, now_ms: u64) -> bool {
        self.sending_since_ms
            .is_some_and(|at| now_ms.saturating_sub(at) < SEND_ABANDONED_MS)
    }

    /// Whether a send should start now: something is sealed or ready to seal, no send is
    /// running, and the retry delay has passed.
    pub fn due(&self, now_ms: u64, l: &Limits) -> bool {
        if self.sending(now_ms) || now_ms < self.next_try_ms {
            return false;
        }
        let full = self.open.key_count() >= l.seal_keys;
        let old =
            !self.open.is_empty() && now_ms.saturating_sub(self.open_since_ms) >= l.max_age_ms;
        !self.sealed.is_empty() || full || old
    }

    /// Starts a send: seals the open buffer when allowed (nothing waiting, or the buffer is
    /// full and a slot is free) under the id `new_id` gives (none: seal later), and returns
    /// the batches to post, oldest first.
    pub fn begin(
        &mut self,
        now_ms: u64,
        l: &Limits,
        source: &str,
        new_id: impl FnOnce() -> Option<String>,
    ) -> Vec<(String, Vec<u8>)> {
        let may_seal = self.sealed.is_empty()
            || (self.open.key_count() >= l.seal_keys && self.sealed.len() < l.max_sealed.max(1));
        if may_seal && !self.open.is_empty() {
            if let Some(id) = new_id() {
                let delta = std::mem::take(&mut self.open);
                let (events, keys) = (delta.events, delta.key_count());
                let batch = AggregateBatch::new(id, source, now_ms, delta);
                self.sealed.push_back(Sealed {
                    id: batch.id.clone(),
                    body: batch.encode(),
                    events,
                    keys,
                });
            }
        }
        self.sending_since_ms = Some(now_ms);
        self.sealed
            .iter()
            .map(|s| (s.id.clone(), s.body.clone()))
            .collect()
    }

    /// The collector acknowledged a batch (or refused it for good): it leaves the outbox.
    pub fn done(&mut self, id: &str) -> Option<Sealed> {
        let at = self.sealed.iter().position(|s| s.id == id)?;
        self.failures = 0;
        self.next_try_ms = 0;
        self.sealed.remove(at)
    }

    /// A send failed: retry after a growing delay.
    pub fn failed(&mut self, now_ms: u64) {
        self.failures = self.failures.saturating_add(1);
        let delay = BACKOFF_MIN_MS
            .saturating_mul(1u64 << self.failures.saturating_sub(1).min(16))
            .min(BACKOFF_MAX_MS);
        self.next_try_ms = now_ms.saturating_add(delay);
    }

    /// The send finished (whatever its outcome).
    pub fn finish(&mut self) {
        self.sending_since_ms = None;
    }

    /// Takes the open buffer (when there is nowhere to send it).
    pub fn take_open(&mut self) -> AggregateDelta {
        std::mem::take(&mut self.open)
    }

    /// Keys and events in the open buffer.
    pub fn open(&self) -> &AggregateDelta {
        &self.open
    }

    /// Sealed batches waiting.
    pub fn sealed(&self) -> usize {
        self.sealed.len()
    }

    /// Keys held in sealed batches.
    pub fn sealed_keys(&self) -> usize {
        self.sealed.iter().map(|s| s.keys).sum()
    }

    /// Events held in sealed batches.
    pub fn sealed_events(&self) -> u64 {
        self.sealed.iter().map(|s| s.events).sum()
    }
}

#[cfg(test)]
mod tests {
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
        o.record(&views("a", 1), 0, &L);
        assert!(!o.due(999, &L));
        assert!(o.due(1000, &L), "old enough");
        let sent = o.begin(1000, &L, "edge", &mut next);
        assert_eq!(sent.len(), 1);
        o.failed(1000);
        o.finish();
        // The outage goes on: 10,000 decisions on the same two items.
        for t in 0..10_000 {
            o.record(&views(if t % 2 == 0 { "a" } else { "b" }, 1), 1000 + t, &L);
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
            if let Recorded::Dropped { events } = o.record(&views(&format!("i{i}"), 1), i, &L) {
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
        o.record(&views("a", 2), 0, &L);
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
}
