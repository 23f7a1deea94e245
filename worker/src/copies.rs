//! The session store's bookkeeping as plain structs (no worker types, unit-tested natively);
//! [`crate::store`] wraps them for the isolate and does the KV reads and writes.
//!
//! - [`Copies`]: this isolate's newest copy of each session blob, with when it was written;
//!   reads take the newest of the isolate's copy, the hot-copy cookie and KV ([`newest`]).
//! - [`Coalescer`]: KV takes one write per second per key, so a burst of saves becomes one
//!   put now and at most one delayed put per interval, which writes the newest blob then.

use std::collections::HashMap;

/// Isolate copies kept at most this long (they only bridge KV's write interval and lag).
pub const KEEP_MS: u64 = 60_000;
/// Most isolate copies kept.
pub const MAX_COPIES: usize = 10_000;

/// Where the newest copy of a session is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Newest {
    /// The isolate's copy (at least as new as the cookie's).
    Isolate(Vec<u8>),
    /// The cookie's copy is newer than the isolate's (another isolate wrote it).
    Cookie,
    /// The isolate has no copy: KV decides.
    Unknown,
}

/// One copy.
#[derive(Debug, Clone)]
struct Copy {
    blob: Vec<u8>,
    written_ms: u64,
}

/// This isolate's copies of session blobs, by KV key.
#[derive(Debug, Default)]
pub struct Copies {
    by_key: HashMap<String, Copy>,
}

impl Copies {
    /// Which copy is newest, given the cookie's time; `stale` is set when the cookie is older
    /// than the isolate's copy (a replayed old cookie).
    pub fn newest(&self, key: &str, cookie_ms: Option<u64>) -> (Newest, bool) {
        match self.by_key.get(key) {
            None => (Newest::Unknown, false),
            Some(c) => {
                let stale = cookie_ms.is_some_and(|h| c.written_ms > h);
                if cookie_ms.is_none_or(|h| c.written_ms >= h) {
                    (Newest::Isolate(c.blob.clone()), stale)
                } else {
                    (Newest::Cookie, stale)
                }
            }
        }
    }

    /// Keeps a copy read from elsewhere (cookie or KV), unless the isolate is full of others.
    pub fn remember(&mut self, key: &str, blob: &[u8], written_ms: u64) {
        if self.by_key.len() < MAX_COPIES || self.by_key.contains_key(key) {
            self.by_key.insert(
                key.to_string(),
                Copy {
                    blob: blob.to_vec(),
                    written_ms,
                },
            );
        }
    }

    /// Keeps a blob written now, making room by forgetting old copies when full.
    pub fn store(&mut self, key: &str, blob: Vec<u8>, now_ms: u64) {
        if self.by_key.len() >= MAX_COPIES {
            self.prune(now_ms);
        }
        self.by_key.insert(
            key.to_string(),
            Copy {
                blob,
                written_ms: now_ms,
            },
        );
    }

    /// The copy to write to KV, and when it was written.
    pub fn get(&self, key: &str) -> Option<(Vec<u8>, u64)> {
        self.by_key.get(key).map(|c| (c.blob.clone(), c.written_ms))
    }

    /// When this isolate's copy of `key` was written, if it is exactly `blob`.
    pub fn written_ms(&self, key: &str, blob: &[u8]) -> Option<u64> {
        self.by_key
            .get(key)
            .filter(|c| c.blob == blob)
            .map(|c| c.written_ms)
    }

    /// Forgets copies older than [`KEEP_MS`].
    pub fn prune(&mut self, now_ms: u64) {
        self.by_key
            .retain(|_, c| now_ms.saturating_sub(c.written_ms) < KEEP_MS);
    }

    /// Copies held.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// What KV holds against the cookie's copy, when the isolate has none: the blob to use, when it
/// was written, whether it came from KV, and whether the cookie was stale. `None`: a new
/// session (nothing anywhere).
pub fn kv_or_cookie(
    stored: Option<Vec<u8>>,
    kv_ms: u64,
    cookie: Option<(Vec<u8>, u64)>,
) -> Option<(Vec<u8>, u64, bool, bool)> {
    match (stored, cookie) {
        // A replayed older hot copy: KV holds newer state.
        (Some(b), Some(h)) if kv_ms > h.1 => Some((b, kv_ms, true, true)),
        (_, Some(h)) => Some((h.0, h.1, false, false)),
        (Some(b), None) => Some((b, kv_ms, true, false)),
        (None, None) => None,
    }
}

#[derive(Debug, Default)]
struct Writes {
    last_put_ms: u64,
    scheduled: bool,
}

/// Per-key write scheduling: at most one put per key in flight or waiting.
#[derive(Debug, Default)]
pub struct Coalescer {
    by_key: HashMap<String, Writes>,
}

impl Coalescer {
    /// A save at `now_ms`: `Some(delay)` when a put must be scheduled that far ahead (0 = now:
    /// the interval since the last put has passed), `None` when one is already waiting and
    /// will write the newest blob (coalesced).
    pub fn schedule(&mut self, key: &str, now_ms: u64, interval_ms: u64) -> Option<u64> {
        let w = self.by_key.entry(key.to_string()).or_default();
        if w.scheduled {
            return None;
        }
        w.scheduled = true;
        Some((w.last_put_ms + interval_ms).saturating_sub(now_ms))
    }

    /// The scheduled put starts now: later saves schedule a new one.
    pub fn putting(&mut self, key: &str, now_ms: u64) {
        if let Some(w) = self.by_key.get_mut(key) {
            w.scheduled = false;
            w.last_put_ms = now_ms;
        }
    }

    /// Forgets keys with nothing waiting and no put in the last 5 s.
    pub fn prune(&mut self, now_ms: u64) {
        self.by_key
            .retain(|_, w| w.scheduled || now_ms.saturating_sub(w.last_put_ms) < 5_000);
    }

    /// Keys tracked.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_copy_wins_and_a_replayed_cookie_is_seen_as_stale() {
        let mut c = Copies::default();
        assert_eq!(c.newest("s:a", Some(5)), (Newest::Unknown, false));
        c.store("s:a", vec![2], 200);
        assert_eq!(c.newest("s:a", None), (Newest::Isolate(vec![2]), false));
        assert_eq!(
            c.newest("s:a", Some(200)),
            (Newest::Isolate(vec![2]), false)
        );
        // An older cookie (replayed): the isolate's copy wins, and the cookie is stale.
        assert_eq!(c.newest("s:a", Some(100)), (Newest::Isolate(vec![2]), true));
        // A newer cookie (another isolate wrote since): the cookie wins.
        assert_eq!(c.newest("s:a", Some(300)), (Newest::Cookie, false));
        c.remember("s:a", &[3], 300);
        assert_eq!(c.get("s:a"), Some((vec![3], 300)));
    }

    #[test]
    fn kv_against_the_cookie_newer_wins() {
        assert_eq!(kv_or_cookie(None, 0, None), None);
        assert_eq!(
            kv_or_cookie(Some(vec![1]), 50, None),
            Some((vec![1], 50, true, false))
        );
        assert_eq!(
            kv_or_cookie(Some(vec![1]), 50, Some((vec![2], 40))),
            Some((vec![1], 50, true, true)),
            "KV newer than a replayed cookie"
        );
        assert_eq!(
            kv_or_cookie(Some(vec![1]), 50, Some((vec![2], 50))),
            Some((vec![2], 50, false, false)),
            "a tie goes to the cookie (KV may lag)"
        );
        assert_eq!(
            kv_or_cookie(None, 0, Some((vec![2], 9))),
            Some((vec![2], 9, false, false))
        );
    }

    #[test]
    fn copies_are_bounded_and_pruned_by_age() {
        let mut c = Copies::default();
        for i in 0..MAX_COPIES {
            c.remember(&format!("s:{i}"), &[1], 0);
        }
        c.remember("s:extra", &[1], 0);
        assert_eq!(
            c.len(),
            MAX_COPIES,
            "a full isolate does not take copies read elsewhere"
        );
        c.remember("s:0", &[9], 10);
        assert_eq!(
            c.get("s:0"),
            Some((vec![9], 10)),
            "but refreshes one it holds"
        );
        // A write now makes room: copies older than KEEP_MS go.
        c.store("s:new", vec![7], KEEP_MS + 5);
        assert_eq!(c.len(), 2, "s:0 (written at 10) and s:new remain");
        c.prune(2 * KEEP_MS + 11);
        assert!(c.is_empty());
    }

    #[test]
    fn a_cookie_mirrors_the_write_time_of_the_copy_it_carries() {
        let mut c = Copies::default();
        c.store("s:a", vec![1, 2], 100);
        assert_eq!(c.written_ms("s:a", &[1, 2]), Some(100));
        // With the cookie at the copy's own time, the copy is not taken as older.
        assert!(matches!(
            c.newest("s:a", Some(100)),
            (Newest::Isolate(_), false)
        ));
        assert_eq!(
            c.written_ms("s:a", &[1, 3]),
            None,
            "another blob: not this copy"
        );
        assert_eq!(c.written_ms("s:b", &[1, 2]), None);
    }

    #[test]
    fn a_burst_of_saves_is_one_put_now_and_one_delayed_put() {
        let mut w = Coalescer::default();
        // First save: the interval since the last put (never) has passed: put now.
        assert_eq!(w.schedule("s:a", 10_000, 1_000), Some(0));
        // Saves while it waits are folded into it.
        assert_eq!(w.schedule("s:a", 10_001, 1_000), None);
        w.putting("s:a", 10_002);
        // Within the interval: one put, delayed to a second after the last.
        assert_eq!(w.schedule("s:a", 10_300, 1_000), Some(702));
        assert_eq!(w.schedule("s:a", 10_500, 1_000), None);
        assert_eq!(
            w.schedule("s:b", 10_500, 1_000),
            Some(0),
            "keys are independent"
        );
        w.putting("s:a", 11_002);
        w.putting("s:b", 10_500);
        w.prune(15_600);
        assert_eq!(
            w.len(),
            1,
            "s:b forgotten 5 s after its put; s:a still recent"
        );
        w.prune(16_100);
        assert!(w.is_empty());
    }

    #[test]
    fn copies_and_write_records_are_kept_until_exactly_their_age_limit() {
        let mut c = Copies::default();
        assert!(c.is_empty());
        c.store("s:a", vec![1], 1_000);
        assert!(!c.is_empty());
        c.prune(1_000 + KEEP_MS - 1);
        assert_eq!(c.len(), 1, "one millisecond short of KEEP_MS: kept");
        c.prune(1_000 + KEEP_MS);
        assert!(c.is_empty());
        let mut w = Coalescer::default();
        assert_eq!(w.schedule("s:a", 1_000, 1_000), Some(0));
        w.putting("s:a", 1_000);
        w.prune(5_999);
        assert_eq!(w.len(), 1, "a put 4,999 ms ago is remembered");
        assert!(!w.is_empty());
        w.prune(6_000);
        assert!(w.is_empty());
        assert_eq!(w.len(), 0);
    }
}
