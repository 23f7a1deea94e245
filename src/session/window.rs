//! Windowed counts over a session: "views of item X in the last 10 minutes".
//!
//! A window covers timestamps from a lower bound `lo` (inclusive) upwards:
//! - sliding, length W: `lo = now - W + 1`, i.e. the last W ms;
//! - tumbling, length W: `lo = floor(now / W) * W`, i.e. the current W-long period since the
//!   Unix epoch (the current hour, the current day in UTC).
//!
//! **Error bound.** Events still in the ring are counted exactly. Evicted events live in
//! buckets of `bucket_ms`; a bucket is counted when any part of it is inside the window. So a
//! count never undercounts (unless the byte cap or the horizon dropped data) and overcounts
//! by at most the evicted events of that key in the one bucket that straddles `lo`
//! (`0 <= estimate - exact <= straddle`). A tumbling window whose length is a multiple of
//! `bucket_ms` starts on a bucket boundary and is therefore exact. Both facts are
//! property-tested against a brute-force count over the raw event list (tests/session_props.rs).

use super::SessionState;
use crate::event::EventKind;
use serde::{Deserialize, Serialize};

/// A time window relative to "now".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Window {
    /// Length, ms.
    pub length_ms: u64,
    /// Aligned to the epoch (true) or ending now (false).
    pub tumbling: bool,
}

impl Window {
    /// The last `length_ms` milliseconds.
    pub fn sliding(length_ms: u64) -> Window {
        Window {
            length_ms,
            tumbling: false,
        }
    }

    /// The current epoch-aligned period of `length_ms`.
    pub fn tumbling(length_ms: u64) -> Window {
        Window {
            length_ms,
            tumbling: true,
        }
    }

    /// Lowest timestamp inside the window at `now_ms`.
    pub fn lower_bound(self, now_ms: u64) -> u64 {
        let w = self.length_ms.max(1);
        if self.tumbling {
            now_ms / w * w
        } else {
            now_ms.saturating_sub(w - 1)
        }
    }
}

impl SessionState {
    fn bucket_in(&self, bucket: u64, bucket_ms: u64, lo: u64) -> bool {
        bucket.saturating_add(1).saturating_mul(bucket_ms.max(1)) > lo
    }

    /// Count of `kind` events on one interned item within the window.
    pub fn count_item(
        &self,
        item: u32,
        kind: EventKind,
        w: Window,
        now_ms: u64,
        bucket_ms: u64,
    ) -> u32 {
        self.count_where(kind, w, now_ms, bucket_ms, |i| i == item)
    }

    /// Count of `kind` events on items of one interned category within the window.
    pub fn count_category(
        &self,
        category: u32,
        kind: EventKind,
        w: Window,
        now_ms: u64,
        bucket_ms: u64,
    ) -> u32 {
        self.count_where(kind, w, now_ms, bucket_ms, |i| {
            self.items.get(i as usize).and_then(|e| e.category) == Some(category)
        })
    }

    fn count_where(
        &self,
        kind: EventKind,
        w: Window,
        now_ms: u64,
        bucket_ms: u64,
        pred: impl Fn(u32) -> bool,
    ) -> u32 {
        let lo = w.lower_bound(now_ms);
        let mut n = 0u32;
        for r in self.ring.iter().rev() {
            if r.ts < lo {
                break;
            }
            if r.kind == kind && pred(r.item) {
                n = n.saturating_add(1);
            }
        }
        for b in self.buckets.iter().rev() {
            if !self.bucket_in(b.bucket, bucket_ms, lo) {
                break;
            }
            if b.kind == kind && pred(b.item) {
                n = n.saturating_add(b.count);
            }
        }
        n
    }

    /// Counts of `kind` events per interned item within the window (items with a zero count are
    /// left out), for rules that ask "is there any item with ...".
    pub fn counts_per_item(
        &self,
        kind: EventKind,
        w: Window,
        now_ms: u64,
        bucket_ms: u64,
    ) -> Vec<u32> {
        let mut counts = vec![0u32; self.items.len()];
        self.accumulate(w, now_ms, bucket_ms, |item, k, n| {
            if let Some(c) = counts.get_mut(item as usize).filter(|_| k == kind) {
                *c = c.saturating_add(n);
            }
        });
        counts
    }

    /// [`SessionState::counts_per_item`] for several kinds in one pass: `out[item][k]` counts
    /// `kinds[k]`.
    pub fn counts_per_item_of<const K: usize>(
        &self,
        kinds: [EventKind; K],
        w: Window,
        now_ms: u64,
        bucket_ms: u64,
    ) -> Vec<[u32; K]> {
        let mut counts = vec![[0u32; K]; self.items.len()];
        self.accumulate(w, now_ms, bucket_ms, |item, kind, n| {
            let at = kinds.iter().position(|&k| k == kind);
            if let (Some(c), Some(k)) = (counts.get_mut(item as usize), at) {
                c[k] = c[k].saturating_add(n);
            }
        });
        counts
    }

    /// Counts of `kind` events per interned category within the window.
    pub fn counts_per_category(
        &self,
        kind: EventKind,
        w: Window,
        now_ms: u64,
        bucket_ms: u64,
    ) -> Vec<u32> {
        let mut counts = vec![0u32; self.categories.len()];
        self.accumulate(w, now_ms, bucket_ms, |item, k, n| {
            if k != kind {
                return;
            }
            let cat = self.items.get(item as usize).and_then(|e| e.category);
            if let Some(c) = cat.and_then(|c| counts.get_mut(c as usize)) {
                *c = c.saturating_add(n);
            }
        });
        counts
    }

    /// Every event and bucket in `w`, newest first, as (item, kind, count).
    fn accumulate(
        &self,
        w: Window,
        now_ms: u64,
        bucket_ms: u64,
        mut add: impl FnMut(u32, EventKind, u32),
    ) {
        let lo = w.lower_bound(now_ms);
        for r in self.ring.iter().rev() {
            if r.ts < lo {
                break;
            }
            add(r.item, r.kind, 1);
        }
        for b in self.buckets.iter().rev() {
            if !self.bucket_in(b.bucket, bucket_ms, lo) {
                break;
            }
            add(b.item, b.kind, b.count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::session::SessionConfig;

    #[test]
    fn bounds() {
        assert_eq!(Window::sliding(600_000).lower_bound(1_000_000), 400_001);
        assert_eq!(
            Window::tumbling(3_600_000).lower_bound(7_300_000),
            7_200_000
        );
        assert_eq!(Window::sliding(10).lower_bound(3), 0);
    }

    #[test]
    fn counts_views_in_the_last_ten_minutes() {
        let cfg = SessionConfig {
            ring_capacity: 2,
            ..Default::default()
        };
        let t0 = 1_764_201_600_000u64;
        let mut s = SessionState::new();
        for m in [0u64, 5, 9, 12, 14] {
            s.ingest(
                &Event::new(EventKind::View, "x", t0 + m * 60_000),
                Some("c"),
                None,
                &cfg,
            );
        }
        let now = t0 + 14 * 60_000;
        let w = Window::sliding(600_000);
        // lo = minute 4 + 1 ms: minutes 5, 9, 12, 14 count; minute 0's bucket ends before lo.
        let n = s.count_item(0, EventKind::View, w, now, cfg.bucket_ms);
        assert_eq!(n, 4);
        assert_eq!(
            s.count_category(0, EventKind::View, w, now, cfg.bucket_ms),
            n
        );
        assert_eq!(
            s.counts_per_item(EventKind::View, w, now, cfg.bucket_ms),
            vec![n]
        );
    }

    #[test]
    fn an_event_at_the_window_s_lower_bound_counts() {
        let cfg = SessionConfig::default();
        let t = 1_764_201_600_000u64;
        let mut s = SessionState::new();
        s.ingest(&Event::new(EventKind::View, "x", t), None, None, &cfg);
        let w = Window::sliding(600_000);
        let count = |now: u64| s.count_item(0, EventKind::View, w, now, cfg.bucket_ms);
        assert_eq!(
            count(t + 599_999),
            1,
            "lower bound = now - 599,999 = the event"
        );
        assert_eq!(count(t + 600_000), 0);
        let per_item = |now: u64| s.counts_per_item(EventKind::View, w, now, cfg.bucket_ms);
        assert_eq!(
            (per_item(t + 599_999), per_item(t + 600_000)),
            (vec![1], vec![0])
        );
    }

    #[test]
    fn several_kinds_in_one_pass_count_what_each_kind_counts_alone() {
        // A small ring, so older events sit in buckets; four items, every kind.
        let cfg = SessionConfig {
            ring_capacity: 4,
            ..Default::default()
        };
        let t0 = 1_764_201_600_000u64;
        let mut s = SessionState::new();
        for i in 0..40u64 {
            let kind = EventKind::ALL[(i * 7 % 5) as usize];
            let item = ["a", "b", "c", "d"][(i % 4) as usize];
            s.ingest(
                &Event::new(kind, item, t0 + i * 45_000),
                Some("c"),
                None,
                &cfg,
            );
        }
        let kinds = [EventKind::Click, EventKind::View, EventKind::Purchase];
        for w in [
            Window::sliding(600_000),
            Window::sliding(7_200_000),
            Window::tumbling(3_600_000),
        ] {
            let now = t0 + 40 * 45_000;
            let all = s.counts_per_item_of(kinds, w, now, cfg.bucket_ms);
            for (k, &kind) in kinds.iter().enumerate() {
                let one: Vec<u32> = all.iter().map(|c| c[k]).collect();
                assert_eq!(
                    one,
                    s.counts_per_item(kind, w, now, cfg.bucket_ms),
                    "{kind:?} {w:?}"
                );
            }
            assert!(
                all.iter().any(|c| c.iter().any(|&n| n > 0)),
                "{w:?}: something counted"
            );
        }
    }
}
