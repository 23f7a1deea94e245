//! Aggregates: the counters a decision produces, merged at the edge and shipped in batches.
//!
//! [`AggregateDelta`] is a commutative monoid: `merge` adds every counter (saturating), so
//! deltas can be combined in any order and grouping (property-tested). A sealed
//! [`AggregateBatch`] carries a unique id (chosen by the host: the core has no randomness) that
//! stays the same across retries, so the collector can drop duplicates. Batches travel as
//! MessagePack with named fields; [`AggregateBatch::decode`] validates everything a collector
//! must not trust.

use crate::error::FieldError;
use crate::event::{check_id, EventKind};
use crate::experiment::metrics::ArmTally;
use crate::trace::{
    TraceEvent, TraceFragment, MAX_EVENTS_PER_SESSION, MAX_OFFSET_MS, MAX_SESSIONS_PER_BATCH,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Batch schema version.
pub const BATCH_VERSION: u8 = 1;
/// Largest counter value accepted in one batch (a sanity bound, not a storage limit).
pub const MAX_COUNTER: u64 = 1_000_000_000;
/// Most distinct keys (items, rules, transitions, ...) in one batch.
pub const MAX_KEYS: usize = 50_000;

/// Interaction counters for one item.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ItemCounts {
    /// Views.
    pub views: u64,
    /// Clicks.
    pub clicks: u64,
    /// Add-to-carts.
    pub add_to_carts: u64,
    /// Purchases.
    pub purchases: u64,
    /// Impressions.
    pub impressions: u64,
}

impl ItemCounts {
    fn add(&mut self, o: &ItemCounts) {
        self.views = self.views.saturating_add(o.views);
        self.clicks = self.clicks.saturating_add(o.clicks);
        self.add_to_carts = self.add_to_carts.saturating_add(o.add_to_carts);
        self.purchases = self.purchases.saturating_add(o.purchases);
        self.impressions = self.impressions.saturating_add(o.impressions);
    }

    /// The counter for one kind.
    pub fn get(&self, kind: EventKind) -> u64 {
        match kind {
            EventKind::View => self.views,
            EventKind::Click => self.clicks,
            EventKind::AddToCart => self.add_to_carts,
            EventKind::Purchase => self.purchases,
            EventKind::Impression => self.impressions,
        }
    }

    fn slot(&mut self, kind: EventKind) -> &mut u64 {
        match kind {
            EventKind::View => &mut self.views,
            EventKind::Click => &mut self.clicks,
            EventKind::AddToCart => &mut self.add_to_carts,
            EventKind::Purchase => &mut self.purchases,
            EventKind::Impression => &mut self.impressions,
        }
    }

    fn values(&self) -> [u64; 5] {
        [
            self.views,
            self.clicks,
            self.add_to_carts,
            self.purchases,
            self.impressions,
        ]
    }
}

/// Exposure and conversion counters for one experiment variant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VariantCounts {
    /// Decisions served under the variant.
    pub exposures: u64,
    /// Purchases by sessions in the variant.
    pub conversions: u64,
    /// Recommendations seen (impression events) by sessions in the variant.
    pub impressions: u64,
    /// Clicks by sessions in the variant.
    pub clicks: u64,
}

impl VariantCounts {
    fn values(&self) -> [u64; 4] {
        [
            self.exposures,
            self.conversions,
            self.impressions,
            self.clicks,
        ]
    }
}

/// What happened under a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VariantEvent {
    /// A decision was served.
    Exposure,
    /// A recommended item was seen.
    Impression,
    /// An item was clicked.
    Click,
    /// A purchase.
    Conversion,
}

/// What shadow evaluation of one candidate bundle counted: on a sample of requests, after the
/// answer was sent, the edge also decided with the shadow bundle on the same state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShadowCounts {
    /// Shadow decisions made.
    pub evaluations: u64,
    /// Sampled requests skipped to stay within the CPU budget.
    pub skipped: u64,
    /// Evaluations whose top-k (ids, in order) differs from what was served.
    pub changed: u64,
    /// Sum over evaluations of overlap@k with what was served, in thousandths (integer, so
    /// it merges exactly).
    pub overlap_milli: u64,
    /// Served decisions' time on those requests, µs (timers advance in local workerd only).
    pub live_us: u64,
    /// Shadow decisions' time, µs.
    pub shadow_us: u64,
    /// Shadow rule id → evaluations it fired in.
    pub rule_hits: BTreeMap<Arc<str>, u64>,
}

impl ShadowCounts {
    /// Adds another's counters.
    pub fn add(&mut self, o: &ShadowCounts) {
        for (a, b) in [
            (&mut self.evaluations, o.evaluations),
            (&mut self.skipped, o.skipped),
            (&mut self.changed, o.changed),
            (&mut self.overlap_milli, o.overlap_milli),
        ] {
            *a = a.saturating_add(b);
        }
        // Time sums stop at the batch bound rather than get a batch (and its counters) refused
        // after a long outage.
        self.live_us = self.live_us.saturating_add(o.live_us).min(MAX_COUNTER);
        self.shadow_us = self.shadow_us.saturating_add(o.shadow_us).min(MAX_COUNTER);
        for (k, v) in &o.rule_hits {
            bump(&mut self.rule_hits, k.clone(), *v);
        }
    }

    fn values(&self) -> [u64; 6] {
        [
            self.evaluations,
            self.skipped,
            self.changed,
            self.overlap_milli,
            self.live_us,
            self.shadow_us,
        ]
    }
}

/// Shadow bundles one batch may count (a pointer names one; a release switch may overlap two).
pub const MAX_SHADOWS: usize = 4;

/// Counters from one or more decisions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AggregateDelta {
    /// Decisions made.
    pub decisions: u64,
    /// Events accepted.
    pub events: u64,
    /// Events ignored as redeliveries.
    pub duplicates: u64,
    /// Per-item interaction counters.
    pub items: BTreeMap<String, ItemCounts>,
    /// Rule id → times it fired (ids shared with the compiled bundle: no copy per decision).
    pub rule_hits: BTreeMap<Arc<str>, u64>,
    /// Tier → decisions served from it.
    pub tiers: BTreeMap<String, u64>,
    /// `experiment/variant` → counters.
    pub variants: BTreeMap<String, VariantCounts>,
    /// from item → to item → consecutive interactions (the co-visitation signal).
    pub transitions: BTreeMap<String, BTreeMap<String, u64>>,
    /// Sampled sessions' events, by pseudonym ([`crate::trace`]); at most
    /// [`MAX_SESSIONS_PER_BATCH`] sessions of [`MAX_EVENTS_PER_SESSION`] events.
    pub traces: BTreeMap<String, TraceFragment>,
    /// Traced events left out by those bounds or by an outbox under pressure.
    pub traces_dropped: u64,
    /// Shadow bundle hash → what evaluating it counted.
    pub shadow: BTreeMap<String, ShadowCounts>,
    /// `experiment/variant` → per-session metric sums ([`crate::experiment::metrics`]).
    pub experiments: BTreeMap<String, ArmTally>,
    /// from item → recommended item → position bucket → how often it was shown and clicked
    /// there (events that say where: the trainer's exposure feedback).
    pub shown: BTreeMap<String, BTreeMap<String, BTreeMap<u8, Shown>>>,
}

/// Last position bucket: positions from here on are counted together.
pub const LAST_POS_BUCKET: u8 = 15;

/// Impressions and clicks of a recommended item at one position of one anchor's list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Shown {
    /// Times it was shown.
    pub impressions: u64,
    /// Times it was clicked from there.
    pub clicks: u64,
}

impl Shown {
    /// Adds another count.
    pub fn add(&mut self, o: &Shown) {
        self.impressions = self.impressions.saturating_add(o.impressions);
        self.clicks = self.clicks.saturating_add(o.clicks);
    }
}

fn bump<K: Ord>(map: &mut BTreeMap<K, u64>, key: K, by: u64) {
    let c = map.entry(key).or_insert(0);
    *c = c.saturating_add(by);
}

impl AggregateDelta {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &AggregateDelta) {
        self.merge_counts(other);
        self.merge_traces(other);
    }

    /// Adds every counter of `other`, traces aside.
    fn merge_counts(&mut self, other: &AggregateDelta) {
        self.decisions = self.decisions.saturating_add(other.decisions);
        self.events = self.events.saturating_add(other.events);
        self.duplicates = self.duplicates.saturating_add(other.duplicates);
        for (k, v) in &other.items {
            self.items.entry(k.clone()).or_default().add(v);
        }
        for (k, v) in &other.rule_hits {
            bump(&mut self.rule_hits, k.clone(), *v);
        }
        for (k, v) in &other.tiers {
            bump(&mut self.tiers, k.clone(), *v);
        }
        for (k, v) in &other.variants {
            let e = self.variants.entry(k.clone()).or_default();
            e.exposures = e.exposures.saturating_add(v.exposures);
            e.conversions = e.conversions.saturating_add(v.conversions);
            e.impressions = e.impressions.saturating_add(v.impressions);
            e.clicks = e.clicks.saturating_add(v.clicks);
        }
        for (from, tos) in &other.transitions {
            let e = self.transitions.entry(from.clone()).or_default();
            for (to, n) in tos {
                bump(e, to.clone(), *n);
            }
        }
        for (k, v) in &other.shadow {
            self.shadow.entry(k.clone()).or_default().add(v);
        }
        for (k, v) in &other.experiments {
            self.experiments.entry(k.clone()).or_default().add(v);
        }
        for (from, items) in &other.shown {
            let e = self.shown.entry(from.clone()).or_default();
            for (item, at) in items {
                let e = e.entry(item.clone()).or_default();
                for (pos, n) in at {
                    e.entry(*pos).or_default().add(n);
                }
            }
        }
    }

    /// The sums of one `experiment/variant`, created empty.
    pub fn arm(&mut self, key: &str) -> &mut ArmTally {
        self.experiments.entry(key.to_string()).or_default()
    }

    /// Counts one shadow evaluation of bundle `hash`: its top-k against what was `served`,
    /// the rules it fired, and both decisions' times.
    pub fn count_shadow(
        &mut self,
        hash: &str,
        served: &[&str],
        shadow: &[&str],
        rules: &[Arc<str>],
        live_us: u64,
        shadow_us: u64,
    ) {
        let c = self.shadow.entry(hash.to_string()).or_default();
        c.evaluations = c.evaluations.saturating_add(1);
        c.changed = c.changed.saturating_add(u64::from(served != shadow));
        let overlap = crate::recommend::overlap(served, shadow);
        c.overlap_milli = c
            .overlap_milli
            .saturating_add((overlap * 1000.0).round() as u64);
        c.live_us = c.live_us.saturating_add(live_us).min(MAX_COUNTER);
        c.shadow_us = c.shadow_us.saturating_add(shadow_us).min(MAX_COUNTER);
        for r in rules {
            bump(&mut c.rule_hits, r.clone(), 1);
        }
    }

    /// Counts a sampled shadow evaluation skipped for the CPU budget.
    pub fn count_shadow_skipped(&mut self, hash: &str) {
        let c = self.shadow.entry(hash.to_string()).or_default();
        c.skipped = c.skipped.saturating_add(1);
    }

    /// Adds `other`'s counters but not its traces, which are counted as dropped (an outbox
    /// under pressure keeps counters first).
    pub fn merge_counters(&mut self, other: &AggregateDelta) {
        self.merge_counts(other);
        let events: u64 = other.traces.values().map(|f| f.events.len() as u64).sum();
        self.traces_dropped = self
            .traces_dropped
            .saturating_add(other.traces_dropped)
            .saturating_add(events);
    }

    /// Merges traces: fragments of one session joined, then the bounds (the earliest events of
    /// a session, the sessions with the smallest pseudonyms), whatever is left out counted.
    fn merge_traces(&mut self, other: &AggregateDelta) {
        let mut dropped = other.traces_dropped;
        for (k, f) in &other.traces {
            match self.traces.get_mut(k) {
                Some(mine) => dropped = dropped.saturating_add(mine.merge(f)),
                None => {
                    let mut f = f.clone();
                    dropped = dropped.saturating_add(f.merge(&TraceFragment::default()));
                    self.traces.insert(k.clone(), f);
                }
            }
        }
        while self.traces.len() > MAX_SESSIONS_PER_BATCH {
            if let Some((_, f)) = self.traces.pop_last() {
                dropped = dropped.saturating_add(f.events.len() as u64);
            }
        }
        self.traces_dropped = self.traces_dropped.saturating_add(dropped);
    }

    /// Traces a decision's accepted events `(kind, item, category, ts)` under a pseudonym.
    pub fn add_trace(
        &mut self,
        key: &str,
        events: Vec<crate::trace::Accepted>,
        variant: Option<&str>,
        tier: &str,
    ) {
        let Some(start) = events.iter().map(|e| e.3).min() else {
            return;
        };
        let fragment = TraceFragment {
            start_ms: start,
            variant: variant.map(str::to_string),
            events: events
                .into_iter()
                .map(|(kind, item, category, ts)| TraceEvent {
                    kind,
                    item,
                    category,
                    offset_ms: ts - start,
                    tier: Some(tier.to_string()),
                })
                .collect(),
        };
        let one = AggregateDelta {
            traces: [(key.to_string(), fragment)].into(),
            ..AggregateDelta::default()
        };
        self.merge_traces(&one);
    }

    /// Counts one interaction.
    pub fn count_event(&mut self, item: &str, kind: EventKind) {
        let c = self.items.entry(item.to_string()).or_default().slot(kind);
        *c = c.saturating_add(1);
    }

    /// Counts one item→item transition.
    pub fn count_transition(&mut self, from: &str, to: &str) {
        bump(
            self.transitions.entry(from.to_string()).or_default(),
            to.to_string(),
            1,
        );
    }

    /// Counts an impression or click of `item` shown at `pos` of `from`'s related list.
    pub fn count_shown(&mut self, from: &str, item: &str, pos: u32, kind: EventKind) {
        let bucket = pos.min(u32::from(LAST_POS_BUCKET)) as u8;
        let at = self
            .shown
            .entry(from.to_string())
            .or_default()
            .entry(item.to_string())
            .or_default()
            .entry(bucket)
            .or_default();
        match kind {
            EventKind::Impression => at.impressions = at.impressions.saturating_add(1),
            EventKind::Click => at.clicks = at.clicks.saturating_add(1),
            _ => {}
        }
    }

    /// Counts a rule hit.
    pub fn count_rule(&mut self, id: &str) {
        match self.rule_hits.get_mut(id) {
            Some(n) => *n = n.saturating_add(1),
            None => {
                self.rule_hits.insert(Arc::from(id), 1);
            }
        }
    }

    /// Counts one hit per id, given in ascending order: into an empty map (a decision's own
    /// delta) the map is built in one pass, without searching it per id.
    pub fn count_rules_sorted(&mut self, ids: &[&Arc<str>]) {
        if !self.rule_hits.is_empty() || !ids.is_sorted() {
            for &id in ids {
                match self.rule_hits.get_mut(id) {
                    Some(n) => *n = n.saturating_add(1),
                    None => {
                        self.rule_hits.insert(Arc::clone(id), 1);
                    }
                }
            }
            return;
        }
        let mut runs: Vec<(Arc<str>, u64)> = Vec::with_capacity(ids.len());
        for &id in ids {
            match runs.last_mut() {
                Some((last, n)) if last == id => *n += 1,
                _ => runs.push((Arc::clone(id), 1)),
            }
        }
        self.rule_hits = runs.into_iter().collect();
    }

    /// Counts a decision served from a tier.
    pub fn count_tier(&mut self, tier: &str) {
        bump(&mut self.tiers, tier.to_string(), 1);
    }

    /// Counts a variant exposure or conversion.
    pub fn count_variant(&mut self, key: &str, what: VariantEvent) {
        let e = self.variants.entry(key.to_string()).or_default();
        let c = match what {
            VariantEvent::Exposure => &mut e.exposures,
            VariantEvent::Impression => &mut e.impressions,
            VariantEvent::Click => &mut e.clicks,
            VariantEvent::Conversion => &mut e.conversions,
        };
        *c = c.saturating_add(1);
    }

    /// Distinct keys held; hosts seal a batch before this passes [`MAX_KEYS`].
    pub fn key_count(&self) -> usize {
        self.items.len()
            + self.rule_hits.len()
            + self.tiers.len()
            + self.variants.len()
            + self.experiments.len()
            + self.transitions.values().map(BTreeMap::len).sum::<usize>()
            + self
                .shown
                .values()
                .flat_map(BTreeMap::values)
                .map(BTreeMap::len)
                .sum::<usize>()
            + self
                .shadow
                .values()
                .map(|s| 1 + s.rule_hits.len())
                .sum::<usize>()
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        *self == AggregateDelta::default()
    }

    /// Sum of all interaction counters of one kind (for reconciling totals end to end).
    pub fn total(&self, kind: EventKind) -> u64 {
        self.items.values().map(|c| c.get(kind)).sum()
    }
}

/// Why a batch was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Not MessagePack of the batch shape.
    #[error("batch does not decode: {0}")]
    Decode(String),
    /// Decodes, but a field is out of bounds.
    #[error("invalid batch: {}", crate::error::join(.0))]
    Invalid(Vec<FieldError>),
}

impl BatchError {
    /// The offending fields, for a JSON error body.
    pub fn fields(&self) -> Vec<FieldError> {
        match self {
            BatchError::Decode(m) => vec![FieldError::new("body", m.clone())],
            BatchError::Invalid(v) => v.clone(),
        }
    }
}

/// A sealed, shippable batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateBatch {
    /// Schema version ([`BATCH_VERSION`]).
    pub v: u8,
    /// Unique id, kept across retries.
    pub id: String,
    /// Which edge produced it (free-form, e.g. colo + isolate).
    pub source: String,
    /// When it was sealed, Unix ms.
    pub created_ms: u64,
    /// The counters.
    pub delta: AggregateDelta,
}

impl AggregateBatch {
    /// Seals a delta.
    pub fn new(
        id: impl Into<String>,
        source: impl Into<String>,
        created_ms: u64,
        delta: AggregateDelta,
    ) -> Self {
        AggregateBatch {
            v: BATCH_VERSION,
            id: id.into(),
            source: source.into(),
            created_ms,
            delta,
        }
    }

    /// MessagePack with named fields.
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).unwrap_or_default()
    }

    /// Decodes and validates untrusted bytes.
    pub fn decode(bytes: &[u8]) -> Result<AggregateBatch, BatchError> {
        let b: AggregateBatch =
            rmp_serde::from_slice(bytes).map_err(|e| BatchError::Decode(e.to_string()))?;
        b.validate()?;
        Ok(b)
    }

    /// Checks bounds: version, id, key count, key syntax, counter sizes.
    pub fn validate(&self) -> Result<(), BatchError> {
        let mut errs = Vec::new();
        let mut err = |f: String, m: &str| {
            if errs.len() < 50 {
                errs.push(FieldError::new(f, m));
            }
        };
        if self.v != BATCH_VERSION {
            err("v".into(), "unsupported batch version");
        }
        if self.id.is_empty() || self.id.len() > 64 || !self.id.is_ascii() {
            err("id".into(), "must be 1 to 64 ASCII characters");
        }
        if self.source.len() > 128 {
            err("source".into(), "longer than 128 bytes");
        }
        let d = &self.delta;
        if d.key_count() > MAX_KEYS {
            err("delta".into(), "more than 50000 keys");
        }
        let big = |v: u64| v > MAX_COUNTER;
        for (name, v) in [
            ("decisions", d.decisions),
            ("events", d.events),
            ("duplicates", d.duplicates),
        ] {
            if big(v) {
                err(format!("delta.{name}"), "counter above 1e9");
            }
        }
        for (k, c) in &d.items {
            if check_id(k).is_err() {
                err(format!("delta.items[{k:?}]"), "invalid item id");
            }
            if c.values().iter().any(|&v| big(v)) {
                err(format!("delta.items[{k:?}]"), "counter above 1e9");
            }
        }
        let rules = d.rule_hits.iter().map(|(k, v)| (&**k, v));
        let tiers = d.tiers.iter().map(|(k, v)| (k.as_str(), v));
        for (entries, name) in [
            (rules.collect::<Vec<_>>(), "rule_hits"),
            (tiers.collect(), "tiers"),
        ] {
            for (k, v) in entries {
                if check_id(k).is_err() {
                    err(format!("delta.{name}[{k:?}]"), "invalid key");
                }
                if big(*v) {
                    err(format!("delta.{name}[{k:?}]"), "counter above 1e9");
                }
            }
        }
        for (k, v) in &d.variants {
            if k.is_empty() || k.len() > 257 {
                err(format!("delta.variants[{k:?}]"), "invalid key");
            }
            if v.values().iter().any(|&n| big(n)) {
                err(format!("delta.variants[{k:?}]"), "counter above 1e9");
            }
        }
        for (k, a) in &d.experiments {
            if k.is_empty() || k.len() > 257 {
                err(format!("delta.experiments[{k:?}]"), "invalid key");
            }
            let counts = [a.sessions, a.decisions, a.fallbacks, a.timed];
            if counts.iter().any(|&n| big(n)) {
                err(format!("delta.experiments[{k:?}]"), "counter above 1e9");
            }
            if let Some(why) = a.implausible() {
                err(format!("delta.experiments[{k:?}]"), why);
            }
        }
        for (from, items) in &d.shown {
            for (item, at) in items {
                let bad_pos = at.keys().any(|&p| p > LAST_POS_BUCKET);
                let bad_count = at.values().any(|n| big(n.impressions) || big(n.clicks));
                if check_id(from).is_err() || check_id(item).is_err() || bad_pos || bad_count {
                    err(
                        format!("delta.shown[{from:?}][{item:?}]"),
                        "invalid item id, position above 15 or counter above 1e9",
                    );
                }
            }
        }
        for (from, tos) in &d.transitions {
            if check_id(from).is_err() {
                err(format!("delta.transitions[{from:?}]"), "invalid item id");
            }
            for (to, v) in tos {
                if check_id(to).is_err() || big(*v) {
                    err(
                        format!("delta.transitions[{from:?}][{to:?}]"),
                        "invalid item id or counter above 1e9",
                    );
                }
            }
        }
        if d.shadow.len() > MAX_SHADOWS {
            err("delta.shadow".into(), "more than 4 shadow bundles");
        }
        for (k, c) in &d.shadow {
            if !hash_like(k) {
                err(
                    format!("delta.shadow[{k:?}]"),
                    "bundle hash must be 1 to 64 ASCII letters or digits",
                );
            }
            if c.values().iter().any(|&v| big(v))
                || c.changed > c.evaluations
                || c.overlap_milli > c.evaluations.saturating_mul(1000)
            {
                err(
                    format!("delta.shadow[{k:?}]"),
                    "counter above 1e9, or more changes or overlap than evaluations",
                );
            }
            for (r, n) in &c.rule_hits {
                if check_id(r).is_err() || *n > c.evaluations {
                    err(
                        format!("delta.shadow[{k:?}].rule_hits[{r:?}]"),
                        "invalid rule id or more hits than evaluations",
                    );
                }
            }
        }
        if d.traces.len() > MAX_SESSIONS_PER_BATCH {
            err("delta.traces".into(), "more than 64 sessions");
        }
        if big(d.traces_dropped) {
            err("delta.traces_dropped".into(), "counter above 1e9");
        }
        for (k, f) in &d.traces {
            if !hash_like(k) {
                err(
                    format!("delta.traces[{k:?}]"),
                    "pseudonym must be 1 to 64 ASCII letters or digits",
                );
            }
            if f.events.is_empty() || f.events.len() > MAX_EVENTS_PER_SESSION {
                err(format!("delta.traces[{k:?}].events"), "1 to 64 events");
            }
            if f.variant.as_ref().is_some_and(|v| check_id(v).is_err()) {
                err(format!("delta.traces[{k:?}].variant"), "invalid variant");
            }
            for (i, e) in f.events.iter().enumerate() {
                let bad_category = e
                    .category
                    .as_ref()
                    .is_some_and(|c| c.is_empty() || c.len() > 128);
                let bad_tier = e.tier.as_ref().is_some_and(|t| check_id(t).is_err());
                if check_id(&e.item).is_err()
                    || e.offset_ms > MAX_OFFSET_MS
                    || bad_category
                    || bad_tier
                {
                    err(
                        format!("delta.traces[{k:?}].events[{i}]"),
                        "invalid item id, offset above a day, category or tier",
                    );
                }
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(BatchError::Invalid(errs))
        }
    }
}

/// A bundle hash or a trace pseudonym: 1 to 64 ASCII letters or digits.
fn hash_like(k: &str) -> bool {
    (1..=64).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The `x-edgerec-signature` value for a batch body sent at `ts` (Unix ms):
/// `v1=<hex HMAC-SHA256(secret, "<ts>." ++ body)>`. Hosts sign with it; collectors check it
/// with [`batch_signature_matches`].
pub fn batch_signature(secret: &str, ts: u64, body: &[u8]) -> String {
    use hmac::Mac as _;
    use std::fmt::Write as _;
    let mac = batch_mac(secret, ts, body).finalize().into_bytes();
    let mut out = String::with_capacity(3 + 2 * mac.len());
    out.push_str("v1=");
    for b in mac {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Whether `mac` (the bytes the hex after `v1=` stands for) signs `body` at `ts`, compared in
/// constant time.
pub fn batch_signature_matches(secret: &str, ts: u64, body: &[u8], mac: &[u8]) -> bool {
    use hmac::Mac as _;
    batch_mac(secret, ts, body).verify_slice(mac).is_ok()
}

fn batch_mac(secret: &str, ts: u64, body: &[u8]) -> hmac::Hmac<sha2::Sha256> {
    use hmac::Mac as _;
    // HMAC takes keys of any length: this cannot fail.
    let mut m = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!());
    m.update(ts.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// Why a signed batch request is not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Header missing or malformed.
    #[error("missing or malformed {0}")]
    Malformed(&'static str),
    /// The signature does not match.
    #[error("bad signature")]
    BadSignature,
    /// The timestamp is outside the skew window.
    #[error("timestamp outside the {max_ms} ms skew window")]
    Skew {
        /// The window.
        max_ms: u64,
    },
}

impl SignatureError {
    /// Short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            SignatureError::Malformed(_) => "unsigned",
            SignatureError::BadSignature => "bad_signature",
            SignatureError::Skew { .. } => "skew",
        }
    }

    /// The header the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            SignatureError::Skew { .. } => "x-edgerec-timestamp",
            SignatureError::Malformed(f) => f,
            SignatureError::BadSignature => "x-edgerec-signature",
        }
    }
}

/// Checks a signed batch request as the collector receives it: `x-edgerec-timestamp: <unix
/// ms>` within `max_skew_ms` of now (a captured request stops working after that; within it,
/// the batch-id dedup drops replays) and `x-edgerec-signature: v1=<hex>` matching
/// [`batch_signature`] over the body.
pub fn verify_signed_batch(
    secret: &str,
    ts_header: Option<&str>,
    sig_header: Option<&str>,
    body: &[u8],
    now_ms: u64,
    max_skew_ms: u64,
) -> Result<(), SignatureError> {
    let ts: u64 = ts_header
        .and_then(|t| t.trim().parse().ok())
        .ok_or(SignatureError::Malformed("x-edgerec-timestamp"))?;
    let sig = sig_header
        .and_then(|s| s.trim().strip_prefix("v1="))
        .and_then(|h| hex::decode(h).ok())
        .ok_or(SignatureError::Malformed("x-edgerec-signature"))?;
    if !batch_signature_matches(secret, ts, body, &sig) {
        return Err(SignatureError::BadSignature);
    }
    if now_ms.abs_diff(ts) > max_skew_ms {
        return Err(SignatureError::Skew {
            max_ms: max_skew_ms,
        });
    }
    Ok(())
}

/// Most decisions one browser report may carry.
pub const MAX_BROWSER_DECISIONS: u64 = 1000;

/// Checks a report of decisions made in the browser (tier `browser`) before a host relays it:
/// only decision counters (decisions, the `browser` tier, rule hits, variant exposures), each
/// bounded by the number of decisions — events travel separately, as events.
pub fn check_browser_report(d: &AggregateDelta) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let n = d.decisions;
    if n == 0 || n > MAX_BROWSER_DECISIONS {
        errs.push(FieldError::new(
            "delta.decisions",
            format!("must be 1 to {MAX_BROWSER_DECISIONS}"),
        ));
    }
    if d.events != 0
        || d.duplicates != 0
        || !d.items.is_empty()
        || !d.transitions.is_empty()
        || !d.traces.is_empty()
        || d.traces_dropped != 0
        || !d.shadow.is_empty()
        || !d.experiments.is_empty()
        || !d.shown.is_empty()
    {
        errs.push(FieldError::new(
            "delta",
            "only decisions, tiers, rule_hits and variants (events are sent as events)",
        ));
    }
    if d.tiers.len() != 1 || d.tiers.get("browser") != Some(&n) {
        errs.push(FieldError::new(
            "delta.tiers",
            "must be {\"browser\": decisions}",
        ));
    }
    for (k, v) in &d.rule_hits {
        if check_id(k).is_err() || *v > n {
            errs.push(FieldError::new(
                format!("delta.rule_hits[{k:?}]"),
                "invalid rule id or more hits than decisions",
            ));
        }
    }
    for (k, v) in &d.variants {
        if k.is_empty()
            || k.len() > 257
            || v.exposures > n
            || v.values()[1..].iter().any(|&x| x != 0)
        {
            errs.push(FieldError::new(
                format!("delta.variants[{k:?}]"),
                "exposures only, at most one per decision",
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {

    #[test]
    fn counting_sorted_rule_ids_at_once_equals_counting_them_one_by_one() {
        let one_by_one = |ids: &[&str]| {
            let mut d = AggregateDelta::default();
            ids.iter().for_each(|id| d.count_rule(id));
            d
        };
        let shared = |ids: &[&str]| ids.iter().map(|&i| Arc::<str>::from(i)).collect::<Vec<_>>();
        for ids in [&["a", "a", "b", "c"][..], &["c", "a", "b"], &[], &["x"]] {
            let mut d = AggregateDelta::default();
            d.count_rules_sorted(&shared(ids).iter().collect::<Vec<_>>());
            assert_eq!(d, one_by_one(ids), "{ids:?}");
        }
        // Into a map that already counts: added to, not replaced.
        let mut d = one_by_one(&["a"]);
        d.count_rules_sorted(&shared(&["a", "b"]).iter().collect::<Vec<_>>());
        assert_eq!(d, one_by_one(&["a", "a", "b"]));
    }

    #[test]
    fn browser_reports_carry_decision_counters_only() {
        let mut d = AggregateDelta {
            decisions: 2,
            ..Default::default()
        };
        d.count_tier("browser");
        d.count_tier("browser");
        d.count_rule("r");
        d.count_variant("exp/a", VariantEvent::Exposure);
        assert!(check_browser_report(&d).is_empty());
        let mut bad = d.clone();
        bad.count_event("x", EventKind::View);
        bad.count_rule("r");
        bad.count_rule("r");
        bad.count_tier("full");
        bad.count_variant("exp/a", VariantEvent::Click);
        let fields: Vec<String> = check_browser_report(&bad)
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "delta",
                "delta.tiers",
                "delta.rule_hits[\"r\"]",
                "delta.variants[\"exp/a\"]"
            ]
        );
        assert!(!check_browser_report(&AggregateDelta::default()).is_empty());
    }
    use super::*;

    #[test]
    fn merge_encode_decode_validate() {
        let mut a = AggregateDelta::default();
        a.count_event("x", EventKind::View);
        a.count_transition("x", "y");
        a.count_rule("r1");
        let mut b = a.clone();
        b.count_tier("full");
        b.merge(&a);
        assert_eq!(b.items["x"].views, 2);
        assert_eq!(b.transitions["x"]["y"], 2);
        let batch = AggregateBatch::new("b-1", "test", 1, b.clone());
        let back = AggregateBatch::decode(&batch.encode()).unwrap();
        assert_eq!(back, batch);
        assert!(matches!(
            AggregateBatch::decode(b"\x01\x02"),
            Err(BatchError::Decode(_))
        ));
        let mut huge = batch.clone();
        huge.delta.items.get_mut("x").unwrap().clicks = MAX_COUNTER + 1;
        huge.id = String::new();
        let err = AggregateBatch::decode(&huge.encode()).unwrap_err();
        let fields: Vec<_> = err.fields().into_iter().map(|f| f.field).collect();
        assert_eq!(fields, ["id", "delta.items[\"x\"]"]);
    }

    fn fields(r: Result<(), BatchError>) -> Vec<String> {
        r.err().map_or(vec![], |e| {
            e.fields().into_iter().map(|f| f.field).collect()
        })
    }

    fn batch(d: AggregateDelta) -> AggregateBatch {
        AggregateBatch::new("b", "e", 1, d)
    }

    #[test]
    fn key_count_and_totals_add_every_map() {
        let mut d = AggregateDelta::default();
        d.count_event("a", EventKind::View);
        d.count_event("a", EventKind::View);
        d.count_event("b", EventKind::View);
        d.count_event("b", EventKind::Click);
        for r in ["r1", "r2", "r3"] {
            d.count_rule(r);
        }
        d.count_tier("full");
        d.count_variant("e/a", VariantEvent::Exposure);
        d.count_variant("e/b", VariantEvent::Exposure);
        d.count_transition("a", "b");
        d.count_transition("a", "c");
        d.count_transition("d", "e");
        // Shown: positions 17 and 40 share the last bucket; 3 keys.
        d.count_shown("a", "b", 0, EventKind::Impression);
        d.count_shown("a", "b", 0, EventKind::Click);
        d.count_shown("a", "b", 17, EventKind::Impression);
        d.count_shown("a", "b", 40, EventKind::Impression);
        d.count_shown("a", "c", 1, EventKind::Impression);
        d.count_shown("a", "c", 1, EventKind::View);
        assert_eq!(d.shown["a"]["b"][&LAST_POS_BUCKET].impressions, 2);
        assert_eq!(
            d.shown["a"]["b"][&0],
            Shown {
                impressions: 1,
                clicks: 1
            }
        );
        assert_eq!(d.shown["a"]["c"][&1].impressions, 1);
        // 2 items + 3 rules + 1 tier + 2 variants + 3 transitions + 3 shown.
        assert_eq!(d.key_count(), 14);
        assert_eq!(
            (d.total(EventKind::View), d.total(EventKind::Click)),
            (3, 1)
        );
        assert_eq!(d.total(EventKind::Purchase), 0);
    }

    #[test]
    fn validate_refuses_exactly_past_each_limit() {
        let items = |n: usize| {
            let mut d = AggregateDelta::default();
            for i in 0..n {
                d.count_event(&format!("k{i}"), EventKind::View);
            }
            d
        };
        assert_eq!(
            fields(batch(items(MAX_KEYS)).validate()),
            Vec::<String>::new()
        );
        assert_eq!(fields(batch(items(MAX_KEYS + 1)).validate()), ["delta"]);
        // Variant keys: 1 to 257 bytes.
        let variant = |k: &str| {
            let mut d = AggregateDelta::default();
            d.count_variant(k, VariantEvent::Exposure);
            fields(batch(d).validate())
        };
        assert_eq!(variant(&"v".repeat(257)), Vec::<String>::new());
        assert_eq!(variant(&"v".repeat(258)).len(), 1);
        assert_eq!(variant("").len(), 1);
        // A transition is refused for a bad target id alone, or for a huge count alone.
        let mut d = AggregateDelta::default();
        d.transitions
            .entry("a".into())
            .or_default()
            .insert("bad\u{7}".into(), 1);
        assert_eq!(
            fields(batch(d).validate()),
            ["delta.transitions[\"a\"][\"bad\\u{7}\"]"]
        );
        let mut d = AggregateDelta::default();
        d.transitions
            .entry("a".into())
            .or_default()
            .insert("b".into(), MAX_COUNTER + 1);
        assert_eq!(
            fields(batch(d).validate()),
            ["delta.transitions[\"a\"][\"b\"]"]
        );
        // Exposure feedback: a position past the last bucket, a bad id or a huge count alone.
        let shown = |from: &str, pos: u8, n: u64| {
            let mut d = AggregateDelta::default();
            d.shown
                .entry(from.into())
                .or_default()
                .entry("b".into())
                .or_default()
                .insert(
                    pos,
                    Shown {
                        impressions: n,
                        clicks: 0,
                    },
                );
            fields(batch(d).validate())
        };
        assert_eq!(
            shown("a", LAST_POS_BUCKET, MAX_COUNTER),
            Vec::<String>::new()
        );
        let at = ["delta.shown[\"a\"][\"b\"]"];
        assert_eq!(shown("a", LAST_POS_BUCKET + 1, 1), at);
        assert_eq!(shown("a", 0, MAX_COUNTER + 1), at);
        assert_eq!(shown("", 0, 1).len(), 1);
    }

    #[test]
    fn signed_batches_verify_within_the_skew_window_only() {
        let (secret, body, ts) = ("s3cret", b"body".as_slice(), 1_000_000);
        let sig = batch_signature(secret, ts, body);
        let check = |now: u64, sig: &str| {
            verify_signed_batch(secret, Some(&ts.to_string()), Some(sig), body, now, 500)
        };
        assert_eq!(check(ts, &sig), Ok(()));
        assert_eq!(
            check(ts + 500, &sig),
            Ok(()),
            "exactly at the window's edge"
        );
        assert_eq!(check(ts - 500, &sig), Ok(()));
        assert_eq!(
            check(ts + 501, &sig),
            Err(SignatureError::Skew { max_ms: 500 })
        );
        assert_eq!(
            check(ts - 501, &sig),
            Err(SignatureError::Skew { max_ms: 500 })
        );
        let other = batch_signature("other", ts, body);
        assert_eq!(check(ts, &other), Err(SignatureError::BadSignature));
        assert_eq!(
            verify_signed_batch(secret, None, Some(&sig), body, ts, 500),
            Err(SignatureError::Malformed("x-edgerec-timestamp"))
        );
        let e = check(ts, "v2=00").unwrap_err();
        assert_eq!((e.field(), e.reason()), ("x-edgerec-signature", "unsigned"));
        assert_eq!(
            (
                SignatureError::BadSignature.field(),
                SignatureError::BadSignature.reason()
            ),
            ("x-edgerec-signature", "bad_signature")
        );
        let skew = SignatureError::Skew { max_ms: 1 };
        assert_eq!(
            (skew.field(), skew.reason()),
            ("x-edgerec-timestamp", "skew")
        );
    }

    #[test]
    fn browser_reports_are_bounded_at_the_edges() {
        let report = |n: u64, hits: u64| {
            let mut d = AggregateDelta {
                decisions: n,
                ..Default::default()
            };
            d.tiers.insert("browser".into(), n);
            if hits > 0 {
                d.rule_hits.insert("r".into(), hits);
            }
            check_browser_report(&d)
                .into_iter()
                .map(|e| e.field)
                .collect::<Vec<_>>()
        };
        assert_eq!(report(MAX_BROWSER_DECISIONS, 0), Vec::<String>::new());
        assert_eq!(report(MAX_BROWSER_DECISIONS + 1, 0), ["delta.decisions"]);
        assert_eq!(report(0, 0), ["delta.decisions"]);
        assert_eq!(
            report(1, 1),
            Vec::<String>::new(),
            "one hit per decision is fine"
        );
        assert_eq!(report(1, 2), ["delta.rule_hits[\"r\"]"]);
        let mut d = AggregateDelta {
            decisions: 1,
            ..Default::default()
        };
        d.tiers.insert("browser".into(), 1);
        d.rule_hits.insert("".into(), 1);
        assert_eq!(
            check_browser_report(&d).len(),
            1,
            "an empty rule id alone is refused"
        );
    }

    #[test]
    fn emptiness_ids_sources_counters_and_the_error_cap_each_on_their_own() {
        assert!(AggregateDelta::default().is_empty());
        let mut one = AggregateDelta::default();
        one.count_tier("full");
        assert!(!one.is_empty());
        let with = |f: &dyn Fn(&mut AggregateBatch)| {
            let mut b = batch(AggregateDelta::default());
            f(&mut b);
            fields(b.validate())
        };
        assert_eq!(with(&|_| {}), Vec::<String>::new());
        assert_eq!(with(&|b| b.id = String::new()), ["id"]);
        assert_eq!(with(&|b| b.id = "i".repeat(64)), Vec::<String>::new());
        assert_eq!(with(&|b| b.id = "i".repeat(65)), ["id"]);
        assert_eq!(with(&|b| b.id = "id-é".into()), ["id"], "ASCII only");
        assert_eq!(with(&|b| b.source = "s".repeat(128)), Vec::<String>::new());
        assert_eq!(with(&|b| b.source = "s".repeat(129)), ["source"]);
        assert_eq!(
            with(&|b| b.delta.events = MAX_COUNTER),
            Vec::<String>::new()
        );
        assert_eq!(
            with(&|b| b.delta.events = MAX_COUNTER + 1),
            ["delta.events"]
        );
        // At most 50 errors are listed, however many there are.
        let many = with(&|b| {
            for i in 0..60 {
                b.delta
                    .rule_hits
                    .insert(format!("r{i}").into(), MAX_COUNTER + 1);
            }
        });
        assert_eq!(many.len(), 50);
    }

    #[test]
    fn a_browser_report_is_refused_for_each_foreign_counter_alone() {
        let base = || {
            let mut d = AggregateDelta {
                decisions: 2,
                ..Default::default()
            };
            d.tiers.insert("browser".into(), 2);
            d
        };
        let refused = |f: &dyn Fn(&mut AggregateDelta)| {
            let mut d = base();
            f(&mut d);
            check_browser_report(&d)
                .into_iter()
                .map(|e| e.field)
                .collect::<Vec<_>>()
        };
        assert_eq!(refused(&|_| {}), Vec::<String>::new());
        assert_eq!(refused(&|d| d.events = 1), ["delta"]);
        assert_eq!(refused(&|d| d.duplicates = 1), ["delta"]);
        assert_eq!(refused(&|d| d.count_event("x", EventKind::View)), ["delta"]);
        assert_eq!(refused(&|d| d.count_transition("x", "y")), ["delta"]);
        assert_eq!(refused(&|d| d.arm("e/a").count_decision(false)), ["delta"]);
        assert_eq!(
            refused(&|d| d.count_shown("a", "b", 0, EventKind::Impression)),
            ["delta"],
            "exposure feedback comes from events the edge saw, not from reports"
        );
        let variant = |f: &dyn Fn(&mut VariantCounts)| {
            refused(&|d| f(d.variants.entry("e/a".into()).or_default()))
        };
        assert_eq!(
            variant(&|v| v.exposures = 2),
            Vec::<String>::new(),
            "one per decision"
        );
        assert_eq!(variant(&|v| v.exposures = 3), ["delta.variants[\"e/a\"]"]);
        assert_eq!(variant(&|v| v.clicks = 1), ["delta.variants[\"e/a\"]"]);
        let key = |k: String| {
            refused(&|d| {
                d.variants.insert(k.clone(), VariantCounts::default());
            })
            .len()
        };
        assert_eq!(
            (
                key(String::new()),
                key("v".repeat(257)),
                key("v".repeat(258))
            ),
            (1, 0, 1)
        );
    }
}
