//! Session state: what one shopper did recently, small enough to live in a KV value or a cookie.
//!
//! The state keeps a ring of the most recent interactions exactly (kind, item, ms timestamp)
//! and folds older ones into per-item, per-kind counters in fixed time buckets. Window queries
//! ([`window`]) read both; the blob format and the byte cap live in [`blob`]. Items and
//! categories are interned once per session, so each event costs a few bytes.
//!
//! Impressions are not stored per item (a page shows ten of them; they would crowd out what the
//! shopper actually did); they count towards the session's per-kind totals and the aggregates.

pub mod blob;
pub mod window;

use crate::event::{Event, EventKind};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

pub use blob::StateError;
pub use window::Window;

/// Limits that shape a session's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionConfig {
    /// Interactions kept exactly, newest first out of the ring into buckets.
    pub ring_capacity: usize,
    /// Width of a counter bucket, ms. Window counts are exact to within one bucket.
    pub bucket_ms: u64,
    /// Oldest data kept, ms; also the longest window a rule may ask for.
    pub horizon_ms: u64,
    /// Idle time after which the next event starts a new session, ms (0 = never).
    pub idle_ms: u64,
    /// Largest encoded blob, bytes; oldest data is dropped first to stay under it.
    pub max_bytes: usize,
    /// Most cart lines kept.
    pub max_cart_lines: usize,
    /// Most purchased items remembered.
    pub max_purchased: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            ring_capacity: 48,
            bucket_ms: 60_000,
            horizon_ms: 24 * 3600 * 1000,
            idle_ms: 30 * 60 * 1000,
            max_bytes: 2048,
            max_cart_lines: 20,
            max_purchased: 20,
        }
    }
}

/// Smallest byte cap accepted: room for one longest id plus headers.
pub const MIN_MAX_BYTES: usize = 512;

/// One exactly-kept interaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingEvent {
    /// Unix ms.
    pub ts: u64,
    /// Index into the session's item table.
    pub item: u32,
    /// What happened.
    pub kind: EventKind,
}

/// Count of evicted interactions of one kind with one item in one time bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bucket {
    /// Bucket number: `ts / bucket_ms`.
    pub bucket: u64,
    /// Index into the session's item table.
    pub item: u32,
    /// What happened.
    pub kind: EventKind,
    /// How many times.
    pub count: u32,
}

/// One cart line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CartLine {
    /// Index into the item table.
    pub item: u32,
    /// Units.
    pub quantity: u32,
    /// Unit price in cents (0 when unknown).
    pub unit_cents: u64,
}

/// An interned item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemEntry {
    /// The item id.
    pub id: String,
    /// Index into the category table, if known.
    pub category: Option<u32>,
}

/// A shopper's session.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionState {
    /// First event of the session, Unix ms (0 for an empty session).
    pub started_ms: u64,
    /// Newest event timestamp seen, Unix ms.
    pub last_ms: u64,
    /// Highest client sequence number accepted.
    pub max_seq: Option<u64>,
    /// Exact per-kind totals for the whole session, indexed by [`EventKind::code`].
    pub totals: [u32; 5],
    /// Interned items.
    pub items: Vec<ItemEntry>,
    /// Interned categories.
    pub categories: Vec<String>,
    /// Recent interactions, oldest first, ordered by timestamp.
    pub ring: VecDeque<RingEvent>,
    /// Older interactions, sorted by (bucket, item, kind).
    pub buckets: Vec<Bucket>,
    /// Cart contents.
    pub cart: Vec<CartLine>,
    /// Purchased items, oldest first.
    pub purchased: Vec<u32>,
    /// Item of the newest interaction, for item→item transitions.
    pub last_item: Option<u32>,
    /// Running values of the experiment variant the session is in (its per-session metrics
    /// so far); a new session starts without.
    pub experiment: Option<crate::experiment::metrics::SessionTally>,
}

/// What ingesting one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    /// Stored.
    Stored,
    /// A redelivery (client seq not above the session's highest); ignored.
    Duplicate,
}

impl SessionState {
    /// An empty session.
    pub fn new() -> SessionState {
        SessionState::default()
    }

    /// Whether nothing has happened yet.
    pub fn is_empty(&self) -> bool {
        self.totals.iter().all(|&t| t == 0)
    }

    /// Looks an item up in the table.
    pub fn item_index(&self, id: &str) -> Option<u32> {
        self.items.iter().position(|e| e.id == id).map(|i| i as u32)
    }

    /// Looks a category up in the table.
    pub fn category_index(&self, name: &str) -> Option<u32> {
        self.categories
            .iter()
            .position(|c| c == name)
            .map(|i| i as u32)
    }

    /// The id of an interned item.
    pub fn item_id(&self, idx: u32) -> &str {
        self.items.get(idx as usize).map_or("", |e| e.id.as_str())
    }

    /// The category name of an interned item, if known.
    pub fn item_category(&self, idx: u32) -> Option<&str> {
        let c = self.items.get(idx as usize)?.category?;
        self.categories.get(c as usize).map(String::as_str)
    }

    fn intern_category(&mut self, name: &str) -> u32 {
        match self.category_index(name) {
            Some(i) => i,
            None => {
                self.categories.push(name.to_string());
                (self.categories.len() - 1) as u32
            }
        }
    }

    fn intern_item(&mut self, id: &str, category: Option<&str>) -> u32 {
        let cat = category.map(|c| self.intern_category(c));
        match self.item_index(id) {
            Some(i) => {
                if cat.is_some() {
                    self.items[i as usize].category = cat;
                }
                i
            }
            None => {
                self.items.push(ItemEntry {
                    id: id.to_string(),
                    category: cat,
                });
                (self.items.len() - 1) as u32
            }
        }
    }

    /// Adds one event. `category` and `unit_price` are the event's own or the catalog's.
    ///
    /// Never panics; timestamps may arrive out of order (they are inserted in order).
    pub fn ingest(
        &mut self,
        ev: &Event,
        category: Option<&str>,
        unit_price: Option<f64>,
        cfg: &SessionConfig,
    ) -> Ingested {
        if let (Some(seq), Some(max)) = (ev.seq, self.max_seq) {
            if seq <= max {
                return Ingested::Duplicate;
            }
        }
        if cfg.idle_ms > 0 && !self.is_empty() && ev.ts > self.last_ms.saturating_add(cfg.idle_ms) {
            *self = SessionState::new();
        }
        if let Some(seq) = ev.seq {
            self.max_seq = Some(self.max_seq.map_or(seq, |m| m.max(seq)));
        }
        if self.is_empty() || ev.ts < self.started_ms {
            self.started_ms = ev.ts;
        }
        self.last_ms = self.last_ms.max(ev.ts);
        let k = ev.kind.code() as usize;
        self.totals[k] = self.totals[k].saturating_add(1);
        if !ev.kind.is_interaction() {
            return Ingested::Stored;
        }
        let item = self.intern_item(&ev.item, category);
        let at = self.ring.partition_point(|r| r.ts <= ev.ts);
        self.ring.insert(
            at,
            RingEvent {
                ts: ev.ts,
                item,
                kind: ev.kind,
            },
        );
        if at == self.ring.len() - 1 {
            self.last_item = Some(item);
        }
        let quantity = ev.quantity.unwrap_or(1);
        let cents = unit_price
            .filter(|p| p.is_finite() && *p >= 0.0)
            .map_or(0, |p| (p * 100.0).round().min(u64::MAX as f64) as u64);
        match ev.kind {
            EventKind::AddToCart => {
                if let Some(line) = self.cart.iter_mut().find(|l| l.item == item) {
                    line.quantity = line.quantity.saturating_add(quantity);
                    if cents > 0 {
                        line.unit_cents = cents;
                    }
                } else {
                    self.cart.push(CartLine {
                        item,
                        quantity,
                        unit_cents: cents,
                    });
                    if self.cart.len() > cfg.max_cart_lines {
                        self.cart.remove(0);
                    }
                }
            }
            EventKind::Purchase => {
                self.cart.retain(|l| l.item != item);
                self.purchased.retain(|&p| p != item);
                self.purchased.push(item);
                if self.purchased.len() > cfg.max_purchased {
                    self.purchased.remove(0);
                }
            }
            _ => {}
        }
        while self.ring.len() > cfg.ring_capacity.max(1) {
            if let Some(old) = self.ring.pop_front() {
                self.add_to_bucket(old, cfg.bucket_ms);
            }
        }
        Ingested::Stored
    }

    fn add_to_bucket(&mut self, ev: RingEvent, bucket_ms: u64) {
        let key = Bucket {
            bucket: ev.ts / bucket_ms.max(1),
            item: ev.item,
            kind: ev.kind,
            count: 0,
        };
        let probe = |b: &Bucket| (b.bucket, b.item, b.kind).cmp(&(key.bucket, key.item, key.kind));
        match self.buckets.binary_search_by(probe) {
            Ok(i) => self.buckets[i].count = self.buckets[i].count.saturating_add(1),
            Err(i) => self.buckets.insert(i, Bucket { count: 1, ..key }),
        }
    }

    /// Drops what is older than the horizon and forgets items nothing refers to any more.
    pub fn prune(&mut self, now_ms: u64, cfg: &SessionConfig) {
        let oldest = now_ms.saturating_sub(cfg.horizon_ms);
        while self.ring.front().is_some_and(|r| r.ts < oldest) {
            self.ring.pop_front();
        }
        let bucket_ms = cfg.bucket_ms.max(1);
        self.buckets
            .retain(|b| (b.bucket.saturating_add(1)).saturating_mul(bucket_ms) > oldest);
        if self.ring.is_empty() {
            // The newest interaction is past the horizon: no transition should start from it.
            self.last_item = None;
        }
        self.compact_tables();
    }

    /// Removes unreferenced items and categories and renumbers the rest.
    pub fn compact_tables(&mut self) {
        let mut used = vec![false; self.items.len()];
        let refs = self
            .ring
            .iter()
            .map(|r| r.item)
            .chain(self.buckets.iter().map(|b| b.item))
            .chain(self.cart.iter().map(|c| c.item))
            .chain(self.purchased.iter().copied())
            .chain(self.last_item);
        for i in refs {
            if let Some(u) = used.get_mut(i as usize) {
                *u = true;
            }
        }
        if used.iter().all(|&u| u) && self.categories_all_used() {
            return;
        }
        let mut remap = vec![u32::MAX; self.items.len()];
        let mut items = Vec::new();
        for (i, e) in self.items.drain(..).enumerate() {
            if used[i] {
                remap[i] = items.len() as u32;
                items.push(e);
            }
        }
        self.items = items;
        let m = |i: &mut u32| *i = remap.get(*i as usize).copied().unwrap_or(0);
        self.ring.iter_mut().for_each(|r| m(&mut r.item));
        self.buckets.iter_mut().for_each(|b| m(&mut b.item));
        self.cart.iter_mut().for_each(|c| m(&mut c.item));
        self.purchased.iter_mut().for_each(m);
        if let Some(l) = self.last_item.as_mut() {
            m(l);
        }
        // Renumbering items keeps (bucket, item, kind) order only if we re-sort.
        self.buckets.sort();
        let mut cat_used = vec![false; self.categories.len()];
        for e in &self.items {
            if let Some(c) = e.category.and_then(|c| cat_used.get_mut(c as usize)) {
                *c = true;
            }
        }
        let mut cat_remap = vec![None; self.categories.len()];
        let mut cats = Vec::new();
        for (i, c) in self.categories.drain(..).enumerate() {
            if cat_used[i] {
                cat_remap[i] = Some(cats.len() as u32);
                cats.push(c);
            }
        }
        self.categories = cats;
        for e in &mut self.items {
            e.category = e
                .category
                .and_then(|c| cat_remap.get(c as usize).copied().flatten());
        }
    }

    fn categories_all_used(&self) -> bool {
        (0..self.categories.len() as u32).all(|c| self.items.iter().any(|e| e.category == Some(c)))
    }

    /// Newest distinct interacted items, newest first, with the kind of their newest event.
    pub fn recent_items(&self, limit: usize) -> Vec<(u32, EventKind, u64)> {
        let mut out: Vec<(u32, EventKind, u64)> = Vec::new();
        for r in self.ring.iter().rev() {
            if out.len() >= limit {
                break;
            }
            if !out.iter().any(|o| o.0 == r.item) {
                out.push((r.item, r.kind, r.ts));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_764_201_600_000;

    #[test]
    fn ring_overflows_into_buckets_and_tables_stay_small() {
        let cfg = SessionConfig {
            ring_capacity: 4,
            ..Default::default()
        };
        let mut s = SessionState::new();
        for i in 0..10u64 {
            let ev = Event::new(EventKind::View, format!("sku-{}", i % 3), T0 + i * 1000);
            s.ingest(&ev, Some("shoes"), None, &cfg);
        }
        assert_eq!(s.ring.len(), 4);
        assert_eq!(s.buckets.iter().map(|b| b.count).sum::<u32>(), 6);
        assert_eq!(s.items.len(), 3);
        assert_eq!(s.categories, ["shoes"]);
        assert_eq!(s.totals[0], 10);
    }

    #[test]
    fn duplicates_by_seq_are_ignored() {
        let cfg = SessionConfig::default();
        let mut s = SessionState::new();
        let mut ev = Event::new(EventKind::Click, "a", T0);
        ev.seq = Some(5);
        assert_eq!(s.ingest(&ev, None, None, &cfg), Ingested::Stored);
        assert_eq!(s.ingest(&ev, None, None, &cfg), Ingested::Duplicate);
        assert_eq!(s.totals[1], 1);
    }

    #[test]
    fn cart_and_purchase() {
        let cfg = SessionConfig::default();
        let mut s = SessionState::new();
        let mut add = Event::new(EventKind::AddToCart, "a", T0);
        add.quantity = Some(2);
        s.ingest(&add, None, Some(9.99), &cfg);
        s.ingest(
            &Event::new(EventKind::AddToCart, "b", T0 + 1),
            None,
            None,
            &cfg,
        );
        assert_eq!(s.cart.len(), 2);
        assert_eq!(s.cart[0].unit_cents, 999);
        s.ingest(
            &Event::new(EventKind::Purchase, "a", T0 + 2),
            None,
            None,
            &cfg,
        );
        assert_eq!(s.cart.len(), 1);
        assert_eq!(s.purchased, vec![0]);
    }

    #[test]
    fn idle_gap_starts_a_new_session_and_prune_drops_old_data() {
        let cfg = SessionConfig::default();
        let mut s = SessionState::new();
        s.ingest(&Event::new(EventKind::View, "a", T0), None, None, &cfg);
        let later = T0 + cfg.idle_ms + 1;
        s.ingest(&Event::new(EventKind::View, "b", later), None, None, &cfg);
        assert_eq!(s.started_ms, later);
        assert_eq!(s.items.len(), 1);
        s.prune(later + cfg.horizon_ms + 1, &cfg);
        assert!(s.ring.is_empty() && s.items.is_empty());
    }

    #[test]
    fn cart_lines_keep_the_latest_known_price_and_at_most_max_cart_lines() {
        let cfg = SessionConfig {
            max_cart_lines: 3,
            ..Default::default()
        };
        let mut s = SessionState::new();
        let cart = |s: &mut SessionState, item: &str, ts: u64, price: Option<f64>| {
            s.ingest(
                &Event::new(EventKind::AddToCart, item, ts),
                None,
                price,
                &cfg,
            );
        };
        cart(&mut s, "a", T0, Some(10.0));
        cart(&mut s, "a", T0 + 1, Some(12.5));
        cart(&mut s, "a", T0 + 2, None);
        assert_eq!((s.cart[0].quantity, s.cart[0].unit_cents), (3, 1250));
        // A price that is not a finite, non-negative number is unknown (0), never huge.
        cart(&mut s, "b", T0 + 3, Some(f64::INFINITY));
        cart(&mut s, "c", T0 + 4, Some(-5.0));
        assert_eq!(s.cart.len(), 3, "exactly max_cart_lines are kept");
        assert_eq!((s.cart[1].unit_cents, s.cart[2].unit_cents), (0, 0));
        cart(&mut s, "d", T0 + 5, Some(1.0));
        let items: Vec<&str> = s.cart.iter().map(|l| s.item_id(l.item)).collect();
        assert_eq!(items, ["b", "c", "d"], "the oldest line goes");
    }

    #[test]
    fn an_older_event_arriving_late_moves_the_session_start_back() {
        let cfg = SessionConfig::default();
        let mut s = SessionState::new();
        s.ingest(
            &Event::new(EventKind::View, "a", T0 + 5000),
            None,
            None,
            &cfg,
        );
        s.ingest(
            &Event::new(EventKind::View, "b", T0 + 5000),
            None,
            None,
            &cfg,
        );
        assert_eq!(s.started_ms, T0 + 5000);
        s.ingest(&Event::new(EventKind::View, "c", T0), None, None, &cfg);
        assert_eq!((s.started_ms, s.last_ms), (T0, T0 + 5000));
        assert_eq!(
            s.last_item.map(|i| s.item_id(i)),
            Some("b"),
            "the newest stays last"
        );
    }

    #[test]
    fn prune_keeps_the_horizon_s_edge_and_forgets_unreferenced_items_and_categories() {
        let cfg = SessionConfig::default();
        let mut s = SessionState::new();
        s.ingest(
            &Event::new(EventKind::View, "a", T0),
            Some("shoes"),
            None,
            &cfg,
        );
        s.ingest(
            &Event::new(EventKind::View, "b", T0 + 1),
            Some("hats"),
            None,
            &cfg,
        );
        // Exactly one horizon old: kept.
        s.prune(T0 + cfg.horizon_ms, &cfg);
        assert_eq!(s.ring.len(), 2);
        s.prune(T0 + cfg.horizon_ms + 1, &cfg);
        assert_eq!(s.ring.len(), 1);
        assert_eq!(
            (s.items.len(), s.categories.clone()),
            (1, vec!["hats".to_string()])
        );
        // An item re-filed under another category leaves the old one unused: it goes too.
        s.ingest(
            &Event::new(EventKind::View, "b", T0 + 2),
            Some("caps"),
            None,
            &cfg,
        );
        s.compact_tables();
        assert_eq!(s.categories, ["caps"]);
    }

    #[test]
    fn a_purchase_leaves_the_cart_and_purchases_keep_their_newest_max() {
        let cfg = SessionConfig {
            max_purchased: 3,
            ..Default::default()
        };
        let mut s = SessionState::new();
        let ev = |k, id: &str, t: u64| Event::new(k, id, T0 + t);
        s.ingest(&ev(EventKind::AddToCart, "a", 0), Some("shoes"), None, &cfg);
        s.ingest(&ev(EventKind::AddToCart, "b", 1), Some("hats"), None, &cfg);
        s.ingest(&ev(EventKind::Purchase, "a", 2), None, None, &cfg);
        let cart: Vec<&str> = s.cart.iter().map(|l| s.item_id(l.item)).collect();
        assert_eq!(cart, ["b"]);
        assert_eq!(
            (s.item_category(0), s.item_category(1)),
            (Some("shoes"), Some("hats"))
        );
        s.ingest(&ev(EventKind::Purchase, "c", 3), None, None, &cfg);
        s.ingest(&ev(EventKind::Purchase, "d", 4), None, None, &cfg);
        assert_eq!(s.purchased.len(), 3, "exactly max_purchased kept");
        s.ingest(&ev(EventKind::Purchase, "e", 5), None, None, &cfg);
        let bought: Vec<&str> = s.purchased.iter().map(|&i| s.item_id(i)).collect();
        assert_eq!(bought, ["c", "d", "e"]);
    }

    #[test]
    fn a_bucket_is_kept_while_any_of_it_is_inside_the_horizon() {
        let cfg = SessionConfig {
            ring_capacity: 1,
            ..Default::default()
        };
        let mut s = SessionState::new();
        s.ingest(&Event::new(EventKind::View, "a", T0), None, None, &cfg);
        s.ingest(&Event::new(EventKind::View, "b", T0 + 1), None, None, &cfg);
        assert_eq!(
            s.buckets.len(),
            1,
            "the older view overflowed into a bucket"
        );
        let end = (T0 / cfg.bucket_ms + 1) * cfg.bucket_ms;
        let mut kept = s.clone();
        kept.prune(end + cfg.horizon_ms - 1, &cfg);
        assert_eq!(kept.buckets.len(), 1, "its last millisecond is inside");
        s.prune(end + cfg.horizon_ms, &cfg);
        assert_eq!(s.buckets.len(), 0);
    }

    #[test]
    fn compaction_drops_a_category_no_item_uses_even_when_every_item_is_used() {
        let cfg = SessionConfig::default();
        let mut s = SessionState::new();
        s.ingest(
            &Event::new(EventKind::View, "a", T0),
            Some("hats"),
            None,
            &cfg,
        );
        s.ingest(
            &Event::new(EventKind::View, "b", T0 + 1),
            Some("caps"),
            None,
            &cfg,
        );
        s.ingest(
            &Event::new(EventKind::View, "b", T0 + 2),
            Some("shoes"),
            None,
            &cfg,
        );
        s.compact_tables();
        assert_eq!(s.categories, ["hats", "shoes"]);
        assert_eq!(
            (s.item_category(0), s.item_category(1)),
            (Some("hats"), Some("shoes"))
        );
    }
}
