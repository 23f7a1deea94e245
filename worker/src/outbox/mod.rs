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
//!
//! Session traces ride along but give way first: they take no key slots (their own bounds are
//! per batch, see `edgerec::trace`), and while sends fail or batches queue they are not kept at
//! all — only counted in `traces_dropped` — so an outage never holds traces instead of counters.

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
    /// Adds a decision's counters. A full open buffer is sealed here when a slot is free
    /// (under the id `new_id` gives), not only when a send starts: during a retry delay or an
    /// open breaker no send starts, and the bound must hold then too.
    pub fn record(
        &mut self,
        delta: &AggregateDelta,
        now_ms: u64,
        l: &Limits,
        source: &str,
        new_id: impl FnOnce() -> Option<String>,
    ) -> Recorded {
        if delta.is_empty() {
            return Recorded::Merged;
        }
        if self.open.key_count() >= l.seal_keys {
            if self.sealed.len() < l.max_sealed.max(1) {
                self.seal(now_ms, source, new_id);
            }
            if self.open.key_count() >= l.seal_keys {
                return Recorded::Dropped {
                    events: delta.events,
                };
            }
        }
        if self.open.is_empty() {
            self.open_since_ms = now_ms;
        }
        if self.under_pressure() {
            self.open.merge_counters(delta);
        } else {
            self.open.merge(delta);
        }
        Recorded::Merged
    }

    /// Sends are failing or batches queue behind the one in flight: session traces are left
    /// out (and counted) so that what waits is counters only.
    pub fn under_pressure(&self) -> bool {
        self.failures > 0 || self.sealed.len() > 1
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
        if may_seal {
            self.seal(now_ms, source, new_id);
        }
        self.sending_since_ms = Some(now_ms);
        self.sealed
            .iter()
            .map(|s| (s.id.clone(), s.body.clone()))
            .collect()
    }

    /// Seals the open buffer (if any) under the id `new_id` gives (none: it stays open).
    fn seal(&mut self, now_ms: u64, source: &str, new_id: impl FnOnce() -> Option<String>) {
        if self.open.is_empty() {
            return;
        }
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
mod tests;
