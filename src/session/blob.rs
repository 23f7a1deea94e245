//! The session blob: how a [`SessionState`] is stored in KV, a cookie or localStorage.
//!
//! Layout: one version byte, then a MessagePack array (rmp-serde, positional) whose hot columns
//! (ring, buckets, cart) are byte strings of LEB128 varints, because a 50-event session must fit
//! in about 600 bytes. Timestamps are deltas from the session start. Any blob that does not
//! decode, or refers to items it does not hold, is a [`StateError`]; the host answers it by
//! starting a fresh session.

use super::{Bucket, CartLine, ItemEntry, RingEvent, SessionConfig, SessionState};
use crate::event::EventKind;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::collections::VecDeque;

/// The blob version this build writes and reads.
pub const BLOB_VERSION: u8 = 1;

/// Why a stored session could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Zero bytes.
    #[error("session blob is empty")]
    Empty,
    /// Written by another version of the format.
    #[error("session blob version {found} is not supported (this build reads {BLOB_VERSION})")]
    UnsupportedVersion {
        /// The version byte found.
        found: u8,
    },
    /// Bytes that are not a well-formed blob.
    #[error("session blob is corrupt: {0}")]
    Corrupt(String),
}

/// What is written (borrows the state: no copies of ids).
#[derive(Serialize)]
struct WireV1Out<'a> {
    bucket_ms: u64,
    started_ms: u64,
    last_ms: u64,
    max_seq: Option<u64>,
    totals: [u32; 5],
    items: ByteBuf,
    item_cats: ByteBuf,
    categories: &'a [String],
    ring: ByteBuf,
    buckets: ByteBuf,
    cart: ByteBuf,
    purchased: ByteBuf,
    last_item: Option<u32>,
    #[serde(skip_serializing_if = "no_bytes")]
    experiment: ByteBuf,
}

fn no_bytes(b: &ByteBuf) -> bool {
    b.is_empty()
}

/// What is read: the same fields, in the same order, owned.
#[derive(Deserialize)]
struct WireV1 {
    bucket_ms: u64,
    started_ms: u64,
    last_ms: u64,
    max_seq: Option<u64>,
    totals: [u32; 5],
    /// Front-coded ids: per item, bytes shared with the previous id (varint), suffix length
    /// (varint), suffix. SKUs share long prefixes, so this halves the table.
    items: ByteBuf,
    /// Per item: 0 = unknown, else category index + 1.
    item_cats: ByteBuf,
    categories: Vec<String>,
    /// Per event: kind byte, item varint, ts delta from the previous event (varint ms).
    ring: ByteBuf,
    /// Per bucket: bucket delta from the previous (varint), item varint, kind byte, count varint.
    buckets: ByteBuf,
    /// Per line: item, quantity, unit cents (varints).
    cart: ByteBuf,
    purchased: ByteBuf,
    last_item: Option<u32>,
    /// The experiment tally (key, impressions, clicks, add-to-carts, purchases, revenue
    /// cents; varints), empty when none. Absent in blobs written before it existed.
    #[serde(default)]
    experiment: ByteBuf,
}

fn put(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn byte(&mut self) -> Result<u8, StateError> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| StateError::Corrupt("truncated column".into()))?;
        self.at += 1;
        Ok(b)
    }

    /// A varint; one-byte values (most ids, kinds and deltas) without a call.
    #[inline(always)]
    fn varint(&mut self) -> Result<u64, StateError> {
        match self.bytes.get(self.at) {
            Some(&b) if b < 0x80 => {
                self.at += 1;
                Ok(u64::from(b))
            }
            _ => self.varint_long(),
        }
    }

    #[inline(never)]
    fn varint_long(&mut self) -> Result<u64, StateError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(StateError::Corrupt("varint too long".into()))
    }

    fn u32(&mut self) -> Result<u32, StateError> {
        u32::try_from(self.varint()?).map_err(|_| StateError::Corrupt("value out of range".into()))
    }

    fn kind(&mut self) -> Result<EventKind, StateError> {
        let c = self.byte()?;
        EventKind::from_code(c).ok_or_else(|| StateError::Corrupt(format!("unknown kind {c}")))
    }
}

impl SessionState {
    /// Encodes without enforcing the byte cap.
    pub fn encode(&self, cfg: &SessionConfig) -> Vec<u8> {
        let mut items = Vec::with_capacity(self.items.len() * 6);
        let mut prev: &str = "";
        for e in &self.items {
            let mut shared = prev
                .bytes()
                .zip(e.id.bytes())
                .take_while(|(a, b)| a == b)
                .count();
            while !e.id.is_char_boundary(shared) {
                shared -= 1;
            }
            put(&mut items, shared as u64);
            put(&mut items, (e.id.len() - shared) as u64);
            items.extend_from_slice(&e.id.as_bytes()[shared..]);
            prev = &e.id;
        }
        let mut item_cats = Vec::with_capacity(self.items.len());
        for e in &self.items {
            put(&mut item_cats, e.category.map_or(0, |c| u64::from(c) + 1));
        }
        let mut ring = Vec::with_capacity(self.ring.len() * 5);
        let mut prev = self.started_ms;
        for r in &self.ring {
            ring.push(r.kind.code());
            put(&mut ring, u64::from(r.item));
            put(&mut ring, r.ts.saturating_sub(prev));
            prev = r.ts.max(prev);
        }
        let mut buckets = Vec::with_capacity(self.buckets.len() * 4);
        let mut prev = self.started_ms / cfg.bucket_ms.max(1);
        for b in &self.buckets {
            put(&mut buckets, b.bucket.saturating_sub(prev));
            prev = b.bucket.max(prev);
            put(&mut buckets, u64::from(b.item));
            buckets.push(b.kind.code());
            put(&mut buckets, u64::from(b.count));
        }
        let mut cart = Vec::new();
        for l in &self.cart {
            put(&mut cart, u64::from(l.item));
            put(&mut cart, u64::from(l.quantity));
            put(&mut cart, l.unit_cents);
        }
        let mut purchased = Vec::new();
        for &p in &self.purchased {
            put(&mut purchased, u64::from(p));
        }
        let wire = WireV1Out {
            bucket_ms: cfg.bucket_ms,
            started_ms: self.started_ms,
            last_ms: self.last_ms,
            max_seq: self.max_seq,
            totals: self.totals,
            items: ByteBuf::from(items),
            item_cats: ByteBuf::from(item_cats),
            categories: &self.categories,
            ring: ByteBuf::from(ring),
            buckets: ByteBuf::from(buckets),
            cart: ByteBuf::from(cart),
            purchased: ByteBuf::from(purchased),
            last_item: self.last_item,
            experiment: ByteBuf::from(
                self.experiment
                    .map(|t| {
                        let mut b = Vec::with_capacity(12);
                        for v in [
                            u64::from(t.key),
                            t.impressions,
                            t.clicks,
                            t.add_to_carts,
                            t.purchases,
                            t.revenue_cents,
                        ] {
                            put(&mut b, v);
                        }
                        b
                    })
                    .unwrap_or_default(),
            ),
        };
        let mut out = vec![BLOB_VERSION];
        // Writing plain data into a Vec cannot fail; an empty body would only mean a fresh
        // session on the next read, never a panic.
        let _ = rmp_serde::encode::write(&mut out, &wire);
        out
    }

    /// Encodes, first dropping the oldest data until the blob fits `cfg.max_bytes`.
    ///
    /// Order of sacrifice: the oldest bucket or ring event (whichever is older) but never the
    /// newest event, then the oldest cart line, then the oldest purchase, then the newest event.
    pub fn encode_capped(&mut self, cfg: &SessionConfig) -> Vec<u8> {
        let cap = cfg.max_bytes.max(super::MIN_MAX_BYTES);
        loop {
            let out = self.encode(cfg);
            if out.len() <= cap {
                return out;
            }
            // Drop a few entries per pass: an entry costs 3 to ~130 bytes (with its id), so
            // dropping excess/64 at once never overshoots by much.
            let to_drop = ((out.len() - cap) / 64).max(1);
            let exhausted = (0..to_drop).any(|_| !self.drop_oldest(cfg));
            self.compact_tables();
            if exhausted {
                return self.encode(cfg);
            }
        }
    }

    fn drop_oldest(&mut self, cfg: &SessionConfig) -> bool {
        let ring_ts = self.ring.front().map(|r| r.ts);
        let bucket_ts = self
            .buckets
            .first()
            .map(|b| b.bucket.saturating_mul(cfg.bucket_ms.max(1)));
        match (ring_ts, bucket_ts) {
            (_, Some(b)) if ring_ts.is_none_or(|r| b <= r) => {
                self.buckets.remove(0);
            }
            // The newest event is what the next decision needs most: it goes last.
            (Some(_), _) if self.ring.len() > 1 => {
                self.ring.pop_front();
            }
            _ => {
                if !self.cart.is_empty() {
                    self.cart.remove(0);
                } else if !self.purchased.is_empty() {
                    self.purchased.remove(0);
                } else if self.ring.pop_front().is_none() && self.last_item.take().is_none() {
                    return false;
                }
            }
        }
        true
    }

    /// Decodes a blob written by [`SessionState::encode`].
    pub fn decode(bytes: &[u8], cfg: &SessionConfig) -> Result<SessionState, StateError> {
        let (&version, body) = bytes.split_first().ok_or(StateError::Empty)?;
        if version != BLOB_VERSION {
            return Err(StateError::UnsupportedVersion { found: version });
        }
        let w: WireV1 =
            rmp_serde::from_slice(body).map_err(|e| StateError::Corrupt(e.to_string()))?;
        // Capacities from the byte sizes (an entry takes at least one byte per field), so the
        // tables are not regrown while decoding; bounded by the blob's own size.
        let mut ids: Vec<String> = Vec::with_capacity(w.item_cats.len());
        let mut r = Reader {
            bytes: &w.items,
            at: 0,
        };
        while !r.done() {
            let shared = r.varint()? as usize;
            let len = r.varint()? as usize;
            let prev = ids.last().map_or(&[][..], |p: &String| p.as_bytes());
            let end = r.at.saturating_add(len);
            let (Some(head), Some(tail)) = (prev.get(..shared), w.items.get(r.at..end)) else {
                return Err(StateError::Corrupt("item table out of range".into()));
            };
            r.at = end;
            let mut id = Vec::with_capacity(shared + len);
            id.extend_from_slice(head);
            id.extend_from_slice(tail);
            ids.push(
                String::from_utf8(id)
                    .map_err(|_| StateError::Corrupt("item id is not UTF-8".into()))?,
            );
        }
        let n_items = ids.len() as u64;
        let check_item = |i: u64| -> Result<u32, StateError> {
            if i < n_items {
                Ok(i as u32)
            } else {
                Err(StateError::Corrupt(format!("item index {i} out of range")))
            }
        };
        let mut r = Reader {
            bytes: &w.item_cats,
            at: 0,
        };
        let mut items = Vec::with_capacity(ids.len());
        for id in ids {
            let c = r.varint()?;
            let category = match c {
                0 => None,
                c if c - 1 < w.categories.len() as u64 => Some((c - 1) as u32),
                c => {
                    return Err(StateError::Corrupt(format!(
                        "category index {c} out of range"
                    )))
                }
            };
            items.push(ItemEntry { id, category });
        }
        // +1: the event this decision ingests.
        let mut ring = VecDeque::with_capacity(w.ring.len() / 3 + 1);
        let mut r = Reader {
            bytes: &w.ring,
            at: 0,
        };
        let mut prev = w.started_ms;
        while !r.done() {
            let kind = r.kind()?;
            let item = check_item(r.varint()?)?;
            let ts = prev.saturating_add(r.varint()?);
            prev = ts;
            ring.push_back(RingEvent { ts, item, kind });
        }
        // Buckets are re-based on the bucket width they were written with; if the
        // configuration changed since, they are re-bucketed to the new width.
        let written_ms = w.bucket_ms.max(1);
        let mut buckets: Vec<Bucket> = Vec::with_capacity(w.buckets.len() / 4);
        let mut r = Reader {
            bytes: &w.buckets,
            at: 0,
        };
        let mut prev = w.started_ms / written_ms;
        while !r.done() {
            let bucket = prev.saturating_add(r.varint()?);
            prev = bucket;
            let item = check_item(r.varint()?)?;
            let kind = r.kind()?;
            let count = r.u32()?;
            let bucket = bucket.saturating_mul(written_ms) / cfg.bucket_ms.max(1);
            buckets.push(Bucket {
                bucket,
                item,
                kind,
                count,
            });
        }
        buckets.sort();
        buckets.dedup_by(|b, a| {
            let same = (a.bucket, a.item, a.kind) == (b.bucket, b.item, b.kind);
            if same {
                a.count = a.count.saturating_add(b.count);
            }
            same
        });
        let mut cart = Vec::new();
        let mut r = Reader {
            bytes: &w.cart,
            at: 0,
        };
        while !r.done() {
            cart.push(CartLine {
                item: check_item(r.varint()?)?,
                quantity: r.u32()?,
                unit_cents: r.varint()?,
            });
        }
        let mut purchased = Vec::new();
        let mut r = Reader {
            bytes: &w.purchased,
            at: 0,
        };
        while !r.done() {
            purchased.push(check_item(r.varint()?)?);
        }
        let last_item = w.last_item.map(|i| check_item(u64::from(i))).transpose()?;
        let experiment = if w.experiment.is_empty() {
            None
        } else {
            let mut r = Reader {
                bytes: &w.experiment,
                at: 0,
            };
            let t = crate::experiment::metrics::SessionTally {
                key: r.u32()?,
                impressions: r.varint()?,
                clicks: r.varint()?,
                add_to_carts: r.varint()?,
                purchases: r.varint()?,
                revenue_cents: r.varint()?,
            };
            if !r.done() {
                return Err(StateError::Corrupt("experiment tally too long".into()));
            }
            Some(t)
        };
        Ok(SessionState {
            started_ms: w.started_ms,
            last_ms: w.last_ms,
            max_seq: w.max_seq,
            totals: w.totals,
            items,
            categories: w.categories,
            ring,
            buckets,
            cart,
            purchased,
            last_item,
            experiment,
        })
    }

    /// A JSON rendering of the same state, for debugging and for size comparisons.
    pub fn to_debug_json(&self) -> serde_json::Value {
        serde_json::json!({
            "started_ms": self.started_ms,
            "last_ms": self.last_ms,
            "max_seq": self.max_seq,
            "totals": self.totals,
            "items": self.items.iter().map(|e| serde_json::json!({
                "id": e.id,
                "category": e.category.and_then(|c| self.categories.get(c as usize)),
            })).collect::<Vec<_>>(),
            "ring": self.ring.iter().map(|r| serde_json::json!({
                "ts": r.ts, "item": self.item_id(r.item), "type": r.kind.as_str(),
            })).collect::<Vec<_>>(),
            "buckets": self.buckets.iter().map(|b| serde_json::json!({
                "bucket": b.bucket, "item": self.item_id(b.item), "type": b.kind.as_str(),
                "count": b.count,
            })).collect::<Vec<_>>(),
            "cart": self.cart.iter().map(|l| serde_json::json!({
                "item": self.item_id(l.item), "quantity": l.quantity, "unit_cents": l.unit_cents,
            })).collect::<Vec<_>>(),
            "purchased": self.purchased.iter().map(|&p| self.item_id(p)).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    #[test]
    fn round_trip_and_bad_blobs() {
        let cfg = SessionConfig {
            ring_capacity: 3,
            ..Default::default()
        };
        let mut s = SessionState::new();
        for i in 0..8u64 {
            let kind = EventKind::ALL[(i % 4) as usize];
            let ev = Event::new(kind, format!("sku-{i}"), 1_764_201_600_000 + i * 7_000);
            s.ingest(
                &ev,
                Some(if i % 2 == 0 { "a" } else { "b" }),
                Some(1.5),
                &cfg,
            );
        }
        let blob = s.encode(&cfg);
        assert_eq!(SessionState::decode(&blob, &cfg).unwrap(), s);
        assert_eq!(SessionState::decode(&[], &cfg), Err(StateError::Empty));
        assert!(matches!(
            SessionState::decode(&[9, 1, 2], &cfg),
            Err(StateError::UnsupportedVersion { found: 9 })
        ));
        assert!(matches!(
            SessionState::decode(&[BLOB_VERSION, 0xc1], &cfg),
            Err(StateError::Corrupt(_))
        ));
        for cut in 1..blob.len() {
            assert!(SessionState::decode(&blob[..cut], &cfg).is_err());
        }
    }

    #[test]
    fn the_experiment_tally_round_trips_and_old_blobs_read_without_one() {
        let cfg = SessionConfig::default();
        let mut s = SessionState::new();
        s.ingest(&Event::new(EventKind::View, "a", 1_000), None, None, &cfg);
        let without = s.encode(&cfg);
        assert_eq!(
            SessionState::decode(&without, &cfg).unwrap().experiment,
            None
        );
        let t = crate::experiment::metrics::SessionTally {
            key: u32::MAX,
            impressions: 3,
            clicks: 1,
            add_to_carts: 0,
            purchases: 2,
            revenue_cents: 123_456,
        };
        s.experiment = Some(t);
        let with = s.encode(&cfg);
        assert!(
            with.len() <= without.len() + 14,
            "{} vs {}",
            with.len(),
            without.len()
        );
        assert_eq!(SessionState::decode(&with, &cfg).unwrap(), s);
    }

    #[test]
    fn cap_drops_oldest_first() {
        let cfg = SessionConfig {
            max_bytes: 600,
            ..Default::default()
        };
        let mut s = SessionState::new();
        for i in 0..200u64 {
            let ev = Event::new(
                EventKind::View,
                format!("item-with-a-long-id-{i:04}"),
                1_764_201_600_000 + i * 1000,
            );
            s.ingest(&ev, None, None, &cfg);
        }
        let blob = s.encode_capped(&cfg);
        assert!(blob.len() <= 600, "{}", blob.len());
        let back = SessionState::decode(&blob, &cfg).unwrap();
        assert_eq!(
            back.ring.back().map(|r| back.item_id(r.item)),
            Some("item-with-a-long-id-0199")
        );
    }

    #[test]
    fn ids_sharing_part_of_a_multibyte_character_round_trip() {
        let cfg = SessionConfig::default();
        let mut s = SessionState::new();
        // "é" and "è" share their first UTF-8 byte: the shared prefix must back off to 0.
        for (i, id) in ["é", "è", "èa", "éé"].iter().enumerate() {
            s.ingest(
                &Event::new(EventKind::View, *id, 1_764_201_600_000 + i as u64),
                None,
                None,
                &cfg,
            );
        }
        let back = SessionState::decode(&s.encode(&cfg), &cfg).unwrap();
        let ids: Vec<&str> = back.items.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["é", "è", "èa", "éé"]);
    }

    #[test]
    fn the_cap_drops_old_views_before_cart_lines() {
        let cfg = SessionConfig {
            max_bytes: 600,
            ..Default::default()
        };
        let mut s = SessionState::new();
        let t = 1_764_201_600_000;
        for (i, id) in ["c1", "c2"].iter().enumerate() {
            s.ingest(
                &Event::new(EventKind::AddToCart, *id, t + i as u64),
                None,
                Some(1.0),
                &cfg,
            );
        }
        for i in 0..40u64 {
            // Ids that share no prefix, so each costs its length.
            let ev = Event::new(EventKind::View, format!("{i:03}-viewed-item"), t + 10 + i);
            s.ingest(&ev, None, None, &cfg);
        }
        let back = SessionState::decode(&s.encode_capped(&cfg), &cfg).unwrap();
        assert!(
            back.ring.len() > 1 && back.ring.len() < 42,
            "{}",
            back.ring.len()
        );
        assert_eq!(back.cart.len(), 2, "cart lines outlive old views");
    }

    /// A session that viewed item a (category c).
    fn one_view() -> (SessionConfig, SessionState) {
        let cfg = SessionConfig::default();
        let mut s = SessionState::new();
        s.ingest(
            &Event::new(EventKind::View, "a", 1_764_201_600_000),
            Some("c"),
            None,
            &cfg,
        );
        (cfg, s)
    }

    #[test]
    fn a_category_index_past_the_table_is_refused() {
        let (cfg, s) = one_view();
        let blob = s.encode(&cfg);
        // Every way of raising a 0 or a 1 by one either fails to decode or stays in range.
        let mut refused = 0;
        for at in (0..blob.len()).filter(|&i| blob[i] <= 1) {
            let mut b = blob.clone();
            b[at] += 1;
            match SessionState::decode(&b, &cfg) {
                Ok(d) => {
                    let n = d.items.len() as u32;
                    assert!(
                        d.items
                            .iter()
                            .all(|e| e.category.is_none_or(|c| (c as usize) < d.categories.len()))
                            && d.ring.iter().all(|r| r.item < n)
                            && d.last_item.is_none_or(|i| i < n),
                        "byte {at}: {d:?}"
                    )
                }
                Err(_) => refused += 1,
            }
        }
        assert!(refused > 0);
    }

    #[test]
    fn the_debug_json_shows_items_categories_and_the_ring() {
        let (_, s) = one_view();
        let j = s.to_debug_json();
        assert_eq!(j["items"][0]["id"], "a");
        assert_eq!(j["items"][0]["category"], "c");
        assert_eq!(j["ring"][0]["type"], "view");
        assert_eq!(j["started_ms"], 1_764_201_600_000u64);
    }
}
