//! Features: the numbers and labels rules are written against, derived from the session state
//! and the request context. Computed once per decision; shown in the debug drawer as-is.

use crate::event::EventKind;
use crate::session::{SessionConfig, SessionState, Window};
use serde::{Deserialize, Serialize};

/// What the host knows about the request (not about the shopper's history).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Context {
    /// ISO country code, e.g. `DE` (Cloudflare's `cf.country`).
    pub country: Option<String>,
    /// Device class: `desktop`, `mobile`, `tablet`, `bot` or `unknown` (see [`device_class`]).
    pub device: Option<String>,
    /// Request path, e.g. `/p/sku-123`.
    pub path: Option<String>,
    /// Recommendation slot name, e.g. `home-top`.
    pub slot: Option<String>,
    /// Session id used for experiment bucketing.
    pub session_id: Option<String>,
    /// Experiment variant; filled in by the engine from the bundle's experiment when absent.
    pub variant: Option<String>,
}

/// Classifies a User-Agent header the same way on every host.
pub fn device_class(user_agent: &str) -> &'static str {
    let ua = user_agent.to_ascii_lowercase();
    if ua.is_empty() {
        "unknown"
    } else if ["bot", "crawler", "spider", "slurp", "headlesschrome"]
        .iter()
        .any(|b| ua.contains(b))
    {
        "bot"
    } else if ua.contains("ipad") || ua.contains("tablet") {
        "tablet"
    } else if ua.contains("mobi") || ua.contains("iphone") || ua.contains("android") {
        "mobile"
    } else {
        "desktop"
    }
}

/// Everything a rule can ask about a session, at one instant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Features {
    /// Seconds from the first event to now.
    pub session_duration_s: f64,
    /// Seconds since the newest event (0 for an empty session).
    pub since_last_event_s: f64,
    /// All events in the session.
    pub events: u32,
    /// Views.
    pub views: u32,
    /// Clicks.
    pub clicks: u32,
    /// Add-to-carts.
    pub add_to_carts: u32,
    /// Purchases.
    pub purchases: u32,
    /// Impressions.
    pub impressions: u32,
    /// Distinct items interacted with (within the horizon).
    pub distinct_items: u32,
    /// Distinct categories interacted with (within the horizon).
    pub distinct_categories: u32,
    /// Categories by interactions, most first (at most 3), with their counts.
    pub top_categories: Vec<(String, u32)>,
    /// Most-viewed item and its views (repeat views), within the horizon.
    pub most_viewed_item: Option<(String, u32)>,
    /// Newest interacted item.
    pub last_item: Option<String>,
    /// Cart lines.
    pub cart_lines: u32,
    /// Cart units.
    pub cart_quantity: u32,
    /// Cart value in currency units.
    pub cart_value: f64,
    /// Items in the cart.
    pub cart_items: Vec<String>,
    /// Items bought this session.
    pub purchased: Vec<String>,
    /// The request context (variant filled in).
    pub context: Context,
}

impl Features {
    /// Derives the features of `state` at `now_ms`.
    pub fn compute(
        state: &SessionState,
        ctx: Context,
        now_ms: u64,
        cfg: &SessionConfig,
    ) -> Features {
        let all = Window::sliding(cfg.horizon_ms);
        let mut per_cat = vec![0u32; state.categories.len()];
        let mut touched = vec![false; state.items.len()];
        // One pass over the session for the four kinds; views are read again below.
        let kinds = [
            EventKind::View,
            EventKind::Click,
            EventKind::AddToCart,
            EventKind::Purchase,
        ];
        let counts = state.counts_per_item_of(kinds, all, now_ms, cfg.bucket_ms);
        for k in 0..kinds.len() {
            for (i, c) in counts.iter().enumerate() {
                let n = c[k];
                if n > 0 {
                    touched[i] = true;
                    if let Some(c) = state.items[i].category {
                        per_cat[c as usize] = per_cat[c as usize].saturating_add(n);
                    }
                }
            }
        }
        let most_viewed_item = counts
            .iter()
            .map(|c| c[0])
            .enumerate()
            .filter(|&(_, n)| n > 0)
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
            .map(|(i, n)| (state.item_id(i as u32).to_string(), n));
        // Rank categories by index, then copy only the names kept.
        let mut top: Vec<(usize, u32)> = per_cat
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(i, &n)| (i, n))
            .collect();
        let name = |i: usize| state.categories[i].as_str();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| name(a.0).cmp(name(b.0))));
        let distinct_categories = top.len() as u32;
        let top: Vec<(String, u32)> = top
            .into_iter()
            .take(3)
            .map(|(i, n)| (name(i).to_string(), n))
            .collect();
        let t = &state.totals;
        let empty = state.is_empty();
        Features {
            session_duration_s: if empty {
                0.0
            } else {
                now_ms.saturating_sub(state.started_ms) as f64 / 1000.0
            },
            since_last_event_s: if empty {
                0.0
            } else {
                now_ms.saturating_sub(state.last_ms) as f64 / 1000.0
            },
            events: t.iter().fold(0u32, |a, &b| a.saturating_add(b)),
            views: t[EventKind::View as usize],
            clicks: t[EventKind::Click as usize],
            add_to_carts: t[EventKind::AddToCart as usize],
            purchases: t[EventKind::Purchase as usize],
            impressions: t[EventKind::Impression as usize],
            distinct_items: touched.iter().filter(|&&x| x).count() as u32,
            distinct_categories,
            top_categories: top,
            most_viewed_item,
            last_item: state.last_item.map(|i| state.item_id(i).to_string()),
            cart_lines: state.cart.len() as u32,
            cart_quantity: state
                .cart
                .iter()
                .fold(0u32, |a, l| a.saturating_add(l.quantity)),
            cart_value: state
                .cart
                .iter()
                .map(|l| l.unit_cents as f64 * f64::from(l.quantity) / 100.0)
                .sum(),
            cart_items: state
                .cart
                .iter()
                .map(|l| state.item_id(l.item).to_string())
                .collect(),
            purchased: state
                .purchased
                .iter()
                .map(|&p| state.item_id(p).to_string())
                .collect(),
            context: ctx,
        }
    }

    /// The category with the most interactions, if any.
    pub fn top_category(&self) -> Option<&str> {
        self.top_categories.first().map(|(c, _)| c.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    #[test]
    fn derives_counts_cart_and_categories() {
        let cfg = SessionConfig::default();
        let t0 = 1_764_201_600_000;
        let mut s = SessionState::new();
        let evs = [
            (EventKind::View, "a", "shoes"),
            (EventKind::View, "a", "shoes"),
            (EventKind::View, "b", "hats"),
            (EventKind::AddToCart, "a", "shoes"),
        ];
        for (i, (k, item, cat)) in evs.iter().enumerate() {
            let ev = Event::new(*k, *item, t0 + i as u64 * 1000);
            s.ingest(&ev, Some(cat), Some(10.0), &cfg);
        }
        let f = Features::compute(&s, Context::default(), t0 + 10_000, &cfg);
        assert_eq!(f.views, 3);
        assert_eq!(f.events, 4);
        assert_eq!(f.distinct_items, 2);
        assert_eq!(f.top_category(), Some("shoes"));
        assert_eq!(f.most_viewed_item, Some(("a".into(), 2)));
        assert_eq!(f.cart_value, 10.0);
        assert_eq!(f.session_duration_s, 10.0);
        assert_eq!(f.since_last_event_s, 7.0);
        assert_eq!(f.last_item.as_deref(), Some("a"));
    }

    #[test]
    fn classifies_devices() {
        assert_eq!(
            device_class("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)"),
            "mobile"
        );
        assert_eq!(device_class("Mozilla/5.0 (iPad; CPU OS 17_0)"), "tablet");
        assert_eq!(device_class("Googlebot/2.1"), "bot");
        assert_eq!(device_class("Mozilla/5.0 (X11; Linux x86_64)"), "desktop");
        assert_eq!(device_class(""), "unknown");
    }

    /// A session that viewed item a (category shoes) at t0.
    fn viewed_a_shoe() -> (SessionConfig, u64, SessionState) {
        let cfg = SessionConfig::default();
        let t0 = 1_764_201_600_000;
        let mut s = SessionState::new();
        s.ingest(
            &Event::new(EventKind::View, "a", t0),
            Some("shoes"),
            None,
            &cfg,
        );
        (cfg, t0, s)
    }

    #[test]
    fn impressions_alone_do_not_make_an_item_or_category_visited() {
        let (cfg, t0, mut s) = viewed_a_shoe();
        s.ingest(
            &Event::new(EventKind::Impression, "b", t0 + 1),
            Some("hats"),
            None,
            &cfg,
        );
        let f = Features::compute(&s, Context::default(), t0 + 10, &cfg);
        assert_eq!(
            (f.distinct_items, f.distinct_categories, f.impressions),
            (1, 1, 1)
        );
    }

    #[test]
    fn nothing_past_the_horizon_counts_and_cart_value_is_price_times_quantity() {
        let (cfg, t0, mut s) = viewed_a_shoe();
        let mut cart = Event::new(EventKind::AddToCart, "b", t0);
        cart.quantity = Some(3);
        s.ingest(&cart, Some("hats"), Some(2.5), &cfg);
        let f = Features::compute(&s, Context::default(), t0 + 1, &cfg);
        assert_eq!((f.distinct_items, f.cart_value), (2, 7.5));
        // One horizon later the events are out of every window (nothing pruned yet).
        let f = Features::compute(&s, Context::default(), t0 + cfg.horizon_ms, &cfg);
        assert_eq!((f.distinct_items, f.distinct_categories), (0, 0));
        assert_eq!(f.most_viewed_item, None);
        assert!(f.top_categories.is_empty());
    }
}
