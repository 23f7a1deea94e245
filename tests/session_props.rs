//! Properties of the session state: window counts against a brute-force count over the raw
//! events (with the documented error bound), blob round trips, the byte cap, and robustness to
//! arbitrary bytes.

use edgerec::event::{Event, EventKind};
use edgerec::session::{SessionConfig, SessionState, Window};
use proptest::prelude::*;

const T0: u64 = 1_764_201_600_000;
const KINDS: [EventKind; 4] = [
    EventKind::View,
    EventKind::Click,
    EventKind::AddToCart,
    EventKind::Purchase,
];

/// (kind, item, category of item, ts) in time order.
fn events() -> impl Strategy<Value = Vec<(EventKind, u8, u64)>> {
    prop::collection::vec((0usize..4, 0u8..6, 0u64..240_000), 1..80).prop_map(|v| {
        let mut ts = T0;
        v.into_iter()
            .map(|(k, item, gap)| {
                ts += gap;
                (KINDS[k], item, ts)
            })
            .collect()
    })
}

fn category(item: u8) -> String {
    format!("cat-{}", item % 3)
}

fn build(evs: &[(EventKind, u8, u64)], cfg: &SessionConfig) -> SessionState {
    let mut s = SessionState::new();
    for &(k, item, ts) in evs {
        let ev = Event::new(k, format!("item-{item}"), ts);
        s.ingest(&ev, Some(&category(item)), Some(1.0), cfg);
    }
    s
}

fn config(ring: usize) -> SessionConfig {
    SessionConfig {
        ring_capacity: ring,
        idle_ms: 0,
        max_bytes: 1 << 20,
        ..Default::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn window_counts_are_within_the_documented_bound(
        evs in events(),
        ring in 1usize..20,
        len_min in 1u64..120,
        tumbling in any::<bool>(),
        extra in 0u64..600_000,
        item in 0u8..6,
        k in 0usize..4,
    ) {
        let cfg = config(ring);
        let s = build(&evs, &cfg);
        let now = evs.last().unwrap().2 + extra;
        let w = Window { length_ms: len_min * 60_000 - 7_000 * (len_min % 2), tumbling };
        let lo = w.lower_bound(now);
        let kind = KINDS[k];
        let evicted = evs.len().saturating_sub(ring);
        let straddle_bucket = lo / cfg.bucket_ms;
        for by_category in [false, true] {
            let matches = |e: &(EventKind, u8, u64)| {
                e.0 == kind && if by_category { category(e.1) == category(item) } else { e.1 == item }
            };
            let exact = evs.iter().filter(|e| matches(e) && e.2 >= lo).count() as u32;
            let straddle = evs[..evicted]
                .iter()
                .filter(|e| matches(e) && e.2 < lo && e.2 / cfg.bucket_ms == straddle_bucket)
                .count() as u32;
            let est = if by_category {
                s.category_index(&category(item))
                    .map_or(0, |c| s.count_category(c, kind, w, now, cfg.bucket_ms))
            } else {
                s.item_index(&format!("item-{item}"))
                    .map_or(0, |i| s.count_item(i, kind, w, now, cfg.bucket_ms))
            };
            prop_assert!(est >= exact, "undercount: est {} exact {}", est, exact);
            prop_assert!(est <= exact + straddle, "overcount: est {} exact {} straddle {}", est, exact, straddle);
            if tumbling && w.length_ms % cfg.bucket_ms == 0 {
                prop_assert_eq!(est, exact, "tumbling windows aligned to buckets are exact");
            }
        }
    }

    #[test]
    fn blob_round_trips(evs in events(), ring in 1usize..64) {
        let cfg = config(ring);
        let s = build(&evs, &cfg);
        let blob = s.encode(&cfg);
        prop_assert_eq!(SessionState::decode(&blob, &cfg).unwrap(), s);
    }

    #[test]
    fn blob_never_exceeds_the_cap_and_keeps_the_newest(
        evs in events(),
        cap in 512usize..2048,
        id_len in 1usize..128,
    ) {
        let cfg = SessionConfig { max_bytes: cap, idle_ms: 0, ..Default::default() };
        let mut s = SessionState::new();
        for &(k, item, ts) in &evs {
            let id = format!("{item}{}", "x".repeat(id_len));
            s.ingest(&Event::new(k, &id[..id.len().min(128)], ts), Some("c"), None, &cfg);
        }
        let blob = s.encode_capped(&cfg);
        prop_assert!(blob.len() <= cap, "{} > {}", blob.len(), cap);
        let back = SessionState::decode(&blob, &cfg).unwrap();
        let newest = evs.last().unwrap();
        let kept = back.ring.back().map(|r| (r.kind, r.ts));
        prop_assert_eq!(kept, Some((newest.0, newest.2)));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let cfg = SessionConfig::default();
        let _ = SessionState::decode(&bytes, &cfg);
        let mut with_version = vec![1u8];
        with_version.extend(&bytes);
        let _ = SessionState::decode(&with_version, &cfg);
    }

    #[test]
    fn mutated_blobs_never_panic(evs in events(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let cfg = config(8);
        let mut blob = build(&evs, &cfg).encode(&cfg);
        let i = at.index(blob.len());
        blob[i] = byte;
        if let Ok(s) = SessionState::decode(&blob, &cfg) {
            // Whatever decodes must be usable.
            let _ = s.encode(&cfg);
            let _ = s.count_item(0, EventKind::View, Window::sliding(600_000), T0, cfg.bucket_ms);
        }
    }
}
