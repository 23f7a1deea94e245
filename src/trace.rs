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
/// Events of one session one batch carries at most (the earliest; later ones are dropped and
/// counted).
pub const MAX_EVENTS_PER_SESSION: usize = 64;
/// Sessions one batch carries at most (so at most 4,096 traced events, ~150 KiB); beyond this a
/// batch drops traces, never counters.
pub const MAX_SESSIONS_PER_BATCH: usize = 64;
/// Longest offset accepted in a fragment, ms (a day: fragments are rebased per batch).
pub const MAX_OFFSET_MS: u64 = 86_400_000;

/// An accepted event as a decision traces it: kind, item, category, time (Unix ms).
pub type Accepted = (EventKind, String, Option<String>, u64);

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

/// One session's traced events in one delta: offsets from `start_ms`, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceFragment {
    /// Time origin of the offsets, Unix ms.
    pub start_ms: u64,
    /// Variant served, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Events, by (offset, kind, item).
    pub events: Vec<TraceEvent>,
}

impl TraceFragment {
    /// Adds `other`'s events (rebased to the earlier origin), keeps the earliest
    /// [`MAX_EVENTS_PER_SESSION`] in a fixed order (so merging is commutative and associative)
    /// and returns how many were dropped.
    pub fn merge(&mut self, other: &TraceFragment) -> u64 {
        if self.events.is_empty() {
            self.start_ms = other.start_ms;
        }
        let start = if other.events.is_empty() {
            self.start_ms
        } else {
            self.start_ms.min(other.start_ms)
        };
        let shift = self.start_ms - start;
        for e in &mut self.events {
            e.offset_ms += shift;
        }
        self.start_ms = start;
        let shift = other.start_ms.saturating_sub(start);
        self.events.extend(other.events.iter().map(|e| TraceEvent {
            offset_ms: e.offset_ms.saturating_add(shift),
            ..e.clone()
        }));
        if self.variant.is_none() || (other.variant.is_some() && other.variant < self.variant) {
            self.variant.clone_from(&other.variant);
        }
        self.events.sort_by(|a, b| {
            (a.offset_ms, a.kind, &a.item, &a.category, &a.tier).cmp(&(
                b.offset_ms,
                b.kind,
                &b.item,
                &b.category,
                &b.tier,
            ))
        });
        let over = self.events.len().saturating_sub(MAX_EVENTS_PER_SESSION);
        self.events.truncate(MAX_EVENTS_PER_SESSION);
        over as u64
    }
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

    #[test]
    fn a_sampled_decision_traces_its_accepted_events_and_a_batch_ships_them() {
        use crate::aggregate::AggregateBatch;
        use crate::records::{from_batch, SessionTrace};
        let engine = crate::Engine::from_json(
            crate::EngineConfig::default(),
            r#"{"version":"1","rules":[]}"#,
            br#"{"version":"c","items":[{"id":"a","category":"shoes"},{"id":"b"}]}"#,
        )
        .unwrap();
        let t0 = 1_764_201_600_000;
        let mut first = Event::new(EventKind::View, "a", t0);
        first.seq = Some(1);
        let mut again = first.clone();
        again.ts = t0 + 5; // a redelivery: same seq
        let mut second = Event::new(EventKind::Click, "b", t0 + 2000);
        second.seq = Some(2);
        let d1 = engine.decide(&crate::DecideRequest {
            events: std::slice::from_ref(&first),
            now_ms: t0 + 10,
            trace: Some("p1"),
            ..Default::default()
        });
        let d2 = engine.decide(&crate::DecideRequest {
            state: d1.state.as_deref(),
            events: &[again, second],
            now_ms: t0 + 2010,
            limit: 3,
            tier: Some(crate::Tier::Full),
            trace: Some("p1"),
            ..Default::default()
        });
        assert_eq!((d2.accepted, d2.duplicates), (1, 1));
        let untraced = engine.decide(&crate::DecideRequest {
            events: std::slice::from_ref(&first),
            now_ms: t0 + 10,
            ..Default::default()
        });
        assert!(untraced.delta.traces.is_empty());
        let mut delta = d1.delta.clone();
        delta.merge(&d2.delta);
        let f = &delta.traces["p1"];
        assert_eq!(f.start_ms, t0);
        let ev = |kind, item: &str, category: Option<&str>, offset_ms| TraceEvent {
            kind,
            item: item.into(),
            category: category.map(str::to_string),
            offset_ms,
            tier: Some("full".into()),
        };
        assert_eq!(
            f.events,
            [
                ev(EventKind::View, "a", Some("shoes"), 0),
                ev(EventKind::Click, "b", None, 2000),
            ],
            "accepted events only, category from the catalog, the tier served"
        );
        let batch = AggregateBatch::new("b1", "edge", t0, delta);
        let batch = AggregateBatch::decode(&batch.encode()).unwrap();
        let records: Vec<_> = from_batch(&batch, "p")
            .into_iter()
            .filter(|r| r.topic == "p.sessions")
            .collect();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].key, "p1");
        let v: SessionTrace = rmp_serde::from_slice(&records[0].value).unwrap();
        assert_eq!(
            (v.session.as_ref(), v.start_ms, v.events.len()),
            ("p1", t0, 2)
        );
    }

    #[test]
    fn batches_with_forged_traces_are_refused() {
        use crate::aggregate::{AggregateBatch, AggregateDelta};
        let ev = |item: &str, offset_ms| TraceEvent {
            kind: EventKind::View,
            item: item.into(),
            category: None,
            offset_ms,
            tier: Some("full".into()),
        };
        let refused = |key: &str, f: TraceFragment| {
            let mut d = AggregateDelta::default();
            d.traces.insert(key.into(), f);
            AggregateBatch::new("b", "edge", 1, d).validate().is_err()
        };
        let ok = TraceFragment {
            start_ms: 1,
            variant: None,
            events: vec![ev("a", 0)],
        };
        assert!(!refused("p1", ok.clone()));
        assert!(
            refused("raw session id!", ok.clone()),
            "pseudonyms are alphanumeric"
        );
        assert!(refused(
            "p1",
            TraceFragment {
                events: vec![],
                ..ok.clone()
            }
        ));
        assert!(refused(
            "p1",
            TraceFragment {
                events: vec![ev("a", 0); 65],
                ..ok.clone()
            }
        ));
        assert!(refused(
            "p1",
            TraceFragment {
                events: vec![ev("a", MAX_OFFSET_MS + 1)],
                ..ok.clone()
            }
        ));
        assert!(refused(
            "p1",
            TraceFragment {
                events: vec![ev("bad id\n", 0)],
                ..ok.clone()
            }
        ));
        let mut many = AggregateDelta::default();
        for i in 0..65 {
            many.traces.insert(format!("p{i}"), ok.clone());
        }
        assert!(AggregateBatch::new("b", "edge", 1, many)
            .validate()
            .is_err());
        // Bounds hold when merging: the earliest events of a session, the smallest pseudonyms.
        let mut d = AggregateDelta::default();
        for i in 0..70u64 {
            d.add_trace(
                &format!("p{i:02}"),
                (0..70)
                    .map(|j| (EventKind::View, "a".to_string(), None, 1000 + j))
                    .collect(),
                None,
                "full",
            );
        }
        assert_eq!(d.traces.len(), MAX_SESSIONS_PER_BATCH);
        assert!(d.traces.contains_key("p00") && !d.traces.contains_key("p64"));
        assert_eq!(d.traces["p00"].events.last().unwrap().offset_ms, 63);
        assert_eq!(d.traces_dropped, 70 * 70 - 64 * 64);
        assert!(AggregateBatch::new("b", "edge", 1, d).validate().is_ok());
    }
}
