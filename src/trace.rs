//! Sampled session traces: what `simulate` replays. The edge keeps whole sessions of a sample
//! (a stable hash of the session id decides, so a sampled session is sampled in every request)
//! and ships their events with the aggregates, under a pseudonym: a keyed hash of the session
//! id, never the id or the cookie. The collector writes each batch's traces to
//! `<prefix>.sessions` ([`crate::records::SessionTrace`]); readers join a session's fragments
//! by pseudonym and order its events by time.

use crate::event::{Event, EventKind};
use serde::{Deserialize, Serialize};

/// Default share of sessions traced, parts per million (1%).
pub const DEFAULT_RATE_PPM: u32 = 10_000;
/// Events of one session one batch carries at most (the rest of a long session is not traced).
pub const MAX_EVENTS_PER_SESSION: usize = 256;
/// Sessions one batch carries at most; beyond this a batch drops traces, never counters.
pub const MAX_SESSIONS_PER_BATCH: usize = 64;

/// One traced event: what, which item, when (ms after the fragment's `start_ms`), and the tier
/// that answered the request that brought it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceEvent {
    /// Event kind.
    pub kind: EventKind,
    /// Item id.
    pub item: String,
    /// Category, when the client sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Milliseconds after the fragment's `start_ms`.
    pub offset_ms: u64,
    /// Tier served (`full`, `related`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
}

/// Whether a session is traced at `rate_ppm` parts per million: a stable hash of its id, so
/// every request of a session gets the same answer and the sample is of whole sessions.
pub fn sampled(session_id: &str, rate_ppm: u32) -> bool {
    let h = crate::experiment::fnv1a64(&[b"edgerec-trace", session_id.as_bytes()]);
    h % 1_000_000 < u64::from(rate_ppm.min(1_000_000))
}

/// The pseudonym a traced session ships under: HMAC-SHA-256 of its id under a secret the origin
/// never needs, first 16 hex digits. Stable per session and key; not reversible without the key.
pub fn pseudonym(key: &str, session_id: &str) -> String {
    use hmac::Mac;
    let mut m = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key.as_bytes())
        .expect("HMAC takes a key of any length");
    m.update(session_id.as_bytes());
    hex::encode(&m.finalize().into_bytes()[..8])
}

/// A session as replayed: its pseudonym (or click-log id) and its events in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// Pseudonym or id.
    pub id: String,
    /// Variant served, when the trace says.
    pub variant: Option<String>,
    /// Events, time order.
    pub events: Vec<Event>,
}

/// Joins trace fragments into sessions: fragments of one pseudonym, events in time order
/// (stable), the same event twice (a batch delivered twice) kept once.
#[derive(Debug, Default)]
pub struct Joiner {
    sessions: std::collections::BTreeMap<String, Session>,
    seen: std::collections::HashSet<(String, EventKind, String, u64)>,
    /// Events dropped as copies.
    pub copies: u64,
}

impl Joiner {
    /// Adds a fragment's events.
    pub fn add(
        &mut self,
        session: &str,
        start_ms: u64,
        variant: Option<&str>,
        events: &[TraceEvent],
    ) {
        let s = self
            .sessions
            .entry(session.to_string())
            .or_insert_with(|| Session {
                id: session.to_string(),
                variant: None,
                events: Vec::new(),
            });
        if s.variant.is_none() {
            s.variant = variant.map(str::to_string);
        }
        for e in events {
            let ts = start_ms.saturating_add(e.offset_ms);
            if !self
                .seen
                .insert((session.to_string(), e.kind, e.item.clone(), ts))
            {
                self.copies += 1;
                continue;
            }
            let mut ev = Event::new(e.kind, e.item.clone(), ts);
            ev.category = e.category.clone();
            s.events.push(ev);
        }
    }

    /// The sessions, each in time order, by pseudonym.
    pub fn finish(self) -> Vec<Session> {
        self.sessions
            .into_values()
            .map(|mut s| {
                s.events.sort_by_key(|e| e.ts);
                s
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_is_stable_per_session_and_near_its_rate() {
        let ids: Vec<String> = (0..100_000).map(|i| format!("s{i}")).collect();
        let n = ids.iter().filter(|s| sampled(s, DEFAULT_RATE_PPM)).count();
        assert!((800..1200).contains(&n), "1% of 100,000: {n}");
        assert!(ids.iter().all(|s| sampled(s, 1_000_000)));
        assert!(!ids.iter().any(|s| sampled(s, 0)));
        let a: Vec<bool> = ids.iter().take(500).map(|s| sampled(s, 50_000)).collect();
        let b: Vec<bool> = ids.iter().take(500).map(|s| sampled(s, 50_000)).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn pseudonyms_are_keyed_and_stable() {
        let p = pseudonym("k1", "session-1");
        assert_eq!(p.len(), 16);
        assert_eq!(p, pseudonym("k1", "session-1"));
        assert_ne!(p, pseudonym("k2", "session-1"));
        assert_ne!(p, pseudonym("k1", "session-2"));
        assert!(!p.contains("session"));
    }

    #[test]
    fn fragments_join_in_time_order_and_copies_count_once() {
        let ev = |item: &str, offset_ms| TraceEvent {
            kind: EventKind::View,
            item: item.into(),
            category: None,
            offset_ms,
            tier: None,
        };
        let mut j = Joiner::default();
        j.add("p1", 1000, Some("control"), &[ev("b", 500), ev("c", 900)]);
        j.add("p2", 0, None, &[ev("x", 1)]);
        j.add("p1", 1000, None, &[ev("a", 0)]);
        j.add("p1", 1000, None, &[ev("b", 500)]); // a batch delivered twice
        assert_eq!(j.copies, 1);
        let s = j.finish();
        assert_eq!(s.len(), 2);
        let items: Vec<&str> = s[0].events.iter().map(|e| e.item.as_str()).collect();
        assert_eq!(items, ["a", "b", "c"]);
        assert_eq!(s[0].events[0].ts, 1000);
        assert_eq!(s[0].variant.as_deref(), Some("control"));
    }
}
