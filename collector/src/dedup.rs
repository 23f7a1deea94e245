//! The dedup window: batch ids acknowledged recently, bounded by count and age. A batch whose
//! id is in the window is acknowledged again without writing (the edge retries until it sees a
//! 200, so a lost 200 must not double anything). Beyond the window — more than
//! `DEDUP_MAX_IDS` batches or `DEDUP_MAX_AGE_MS` ago, or on another collector instance — every
//! record carries its batch id in a header, so consumers can dedupe further.
//!
//! An id is "in flight" while its records are being written; a concurrent delivery of the same
//! id gets 503 + Retry-After rather than a second write. The write runs in its own task, so a
//! client that disconnects cannot leave a claim behind; as a second guard, a claim older than
//! `max_claim_ms` is taken over by the next delivery.

use std::collections::{HashMap, VecDeque};

/// What the window says about an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Never seen (or forgotten): write it. The id is now in flight.
    New,
    /// Already written: acknowledge without writing.
    Done,
    /// Being written by another request right now.
    InFlight,
}

/// Bounded set of recent batch ids.
#[derive(Debug)]
pub struct Window {
    max_ids: usize,
    max_age_ms: u64,
    max_claim_ms: u64,
    done: HashMap<String, u64>,
    order: VecDeque<(String, u64)>,
    in_flight: HashMap<String, u64>,
}

impl Window {
    /// An empty window.
    pub fn new(max_ids: usize, max_age_ms: u64, max_claim_ms: u64) -> Window {
        Window {
            max_ids: max_ids.max(1),
            max_age_ms,
            max_claim_ms,
            done: HashMap::new(),
            order: VecDeque::new(),
            in_flight: HashMap::new(),
        }
    }

    fn expire(&mut self, now_ms: u64) {
        while let Some((id, at)) = self.order.front() {
            if self.order.len() > self.max_ids || now_ms.saturating_sub(*at) > self.max_age_ms {
                if self.done.get(id) == Some(at) {
                    self.done.remove(id);
                }
                self.order.pop_front();
            } else {
                break;
            }
        }
    }

    /// Claims an id for writing, or says why not.
    pub fn begin(&mut self, id: &str, now_ms: u64) -> Seen {
        self.expire(now_ms);
        let fresh_claim = |at: &u64| now_ms.saturating_sub(*at) < self.max_claim_ms;
        if self.done.contains_key(id) {
            Seen::Done
        } else if self.in_flight.get(id).is_some_and(fresh_claim) {
            Seen::InFlight
        } else {
            self.in_flight.insert(id.to_string(), now_ms);
            Seen::New
        }
    }

    /// The write succeeded: remember the id.
    pub fn commit(&mut self, id: &str, now_ms: u64) {
        self.in_flight.remove(id);
        self.done.insert(id.to_string(), now_ms);
        self.order.push_back((id.to_string(), now_ms));
        self.expire(now_ms);
    }

    /// The write failed: forget the claim so a retry can write.
    pub fn abort(&mut self, id: &str) {
        self.in_flight.remove(id);
    }

    /// Ids remembered.
    pub fn len(&self) -> usize {
        self.done.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.done.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_within_bounds() {
        let mut w = Window::new(2, 1000, 60_000);
        assert_eq!(w.begin("a", 0), Seen::New);
        assert_eq!(w.begin("a", 1), Seen::InFlight);
        w.abort("a");
        assert_eq!(w.begin("a", 2), Seen::New);
        w.commit("a", 2);
        assert_eq!(w.begin("a", 3), Seen::Done);
        for id in ["b", "c"] {
            assert_eq!(w.begin(id, 4), Seen::New);
            w.commit(id, 4);
        }
        assert_eq!(w.begin("a", 5), Seen::New, "evicted by count");
        w.abort("a");
        assert_eq!(w.begin("b", 2000), Seen::New, "evicted by age");
    }

    #[test]
    fn an_abandoned_claim_is_taken_over() {
        let mut w = Window::new(10, 1000, 500);
        assert_eq!(w.begin("a", 0), Seen::New);
        assert_eq!(w.begin("a", 499), Seen::InFlight);
        assert_eq!(w.begin("a", 500), Seen::New, "claim older than the limit");
        w.commit("a", 600);
        assert_eq!(w.begin("a", 700), Seen::Done);
    }
}
