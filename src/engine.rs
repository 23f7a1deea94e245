//! The engine: the one place a decision is made. Hosts build an [`Engine`] once per
//! (rule bundle, catalog) pair and call [`Engine::decide`] per request:
//!
//! stored blob + new events + context → ingest → features → rules → recommend → aggregates.

use crate::aggregate::{AggregateDelta, VariantEvent};
use crate::catalog::{Catalog, CatalogError};
use crate::event::{Event, EventKind, TimeLimits};
use crate::experiment;
use crate::experiment::metrics::{record, tally_key, Step};
use crate::features::{Context, Features};
use crate::model::{
    self, find, Found, Head, ModelError, NoShards, ShardMap, ShardRef, ShardSource,
};
use crate::recommend::{recommend, RecommendInput, Recommendation, Tier};
use crate::rules::compile::{compile_json, BundleError};
use crate::rules::eval::{Env, Hits};
use crate::rules::ir::{Act, CompiledBundle, ItemRef};
use crate::session::{Ingested, SessionConfig, SessionState, MIN_MAX_BYTES};
use serde::{Deserialize, Serialize};

/// Most items one decision returns.
pub const MAX_LIMIT: usize = 100;

/// Largest step a client sequence number may take above the session's highest: a larger
/// jump would make every later event of that session look like a redelivery, so the batch is
/// refused (`events[i].seq`) instead.
pub const MAX_SEQ_JUMP: u64 = 10_000;

/// Most one session adds to one item's counter of one kind in the aggregates the edge ships
/// (views of an item, clicks on it, ...): a client repeating an item cannot move the model.
/// The session's own state still counts everything (its rules see the real behaviour).
pub const MAX_SHIPPED_PER_ITEM: u32 = 10;

/// Most transitions into one item one session ships: only the session's first arrival at an
/// item counts (co-visitation counted once per session, as session-based recommenders do), so
/// going back and forth between two items cannot pile up a relation.
pub const MAX_SHIPPED_TRANSITIONS_TO: u32 = 1;

/// Most impressions one session ships as exposure feedback (`from`/`pos`): past this, a
/// session (or a client replaying one) stops moving the trainer's per-position counts. Its
/// clicks are bounded by [`MAX_SHIPPED_PER_ITEM`] like every interaction.
pub const MAX_SHOWN_PER_SESSION: u32 = 200;

/// Engine settings (hosts may load them from their environment).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineConfig {
    /// Session state shape and limits.
    pub session: SessionConfig,
    /// Accepted event timestamp range.
    pub time: TimeLimits,
}

/// Why an engine could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// The rule bundle is invalid.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The catalog is invalid.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The published model is invalid.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The configuration is out of range.
    #[error("invalid engine config: {0}")]
    Config(String),
}

/// One decision request.
#[derive(Debug, Clone, Default)]
pub struct DecideRequest<'a> {
    /// The stored session blob, if any.
    pub state: Option<&'a [u8]>,
    /// Validated new events (see [`crate::event::parse_events_json`]).
    pub events: &'a [Event],
    /// Request context.
    pub context: Context,
    /// Now, Unix ms.
    pub now_ms: u64,
    /// Items wanted (0 = only ingest; no rules run, no decision is counted).
    pub limit: usize,
    /// Tier to serve; `cached` and `static` neither read nor write the state.
    pub tier: Option<Tier>,
    /// The session's trace pseudonym when it is sampled ([`crate::trace`]): the accepted events
    /// go into `delta.traces` under it.
    pub trace: Option<&'a str>,
}

/// The outcome of a decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// Ranked items.
    pub items: Vec<Recommendation>,
    /// Tier served.
    pub tier: Tier,
    /// Experiment variant, if the bundle has an experiment and the session an id.
    pub variant: Option<String>,
    /// Ids of the rules that fired, in priority order.
    pub rule_hits: Vec<std::sync::Arc<str>>,
    /// New session blob to store (None for tiers that do not touch state).
    #[serde(skip)]
    pub state: Option<Vec<u8>>,
    /// Whether the blob differs from what was read (the host can skip the write if not).
    pub state_changed: bool,
    /// Why the stored blob was discarded, if it was.
    pub state_error: Option<String>,
    /// Events stored.
    pub accepted: u32,
    /// Events ignored as redeliveries.
    pub duplicates: u32,
    /// Events stored but left out of the aggregates by the per-session caps
    /// ([`MAX_SHIPPED_PER_ITEM`]).
    pub capped: u32,
    /// Why the batch of events was refused as a whole (nothing ingested, no state written):
    /// a field error per offending event, e.g. `events[0].seq`.
    pub rejected: Vec<crate::FieldError>,
    /// Counters for the aggregates.
    pub delta: AggregateDelta,
    /// Features the rules saw (for explanations and the debug drawer).
    pub features: Features,
    /// Item lookups (events, anchors, pins) whose model shard was not loaded: the decision
    /// was made without them (0 = complete).
    pub missing: u32,
}

/// A ready-to-use decision engine: a rule bundle and a model head. Item shards come with each
/// decision ([`Engine::plan`] says which), or all at once for a model held in memory.
#[derive(Debug, Clone)]
pub struct Engine {
    config: EngineConfig,
    bundle: CompiledBundle,
    head: Head,
    /// Items the bundle names literally (anchors, pins): every decision may need them.
    named: Vec<String>,
    /// Every shard, for a model built in memory ([`Engine::with_catalog`]).
    local: Option<ShardMap>,
}

impl Engine {
    /// Builds an engine from a bundle and a published model head.
    pub fn new(
        config: EngineConfig,
        bundle: CompiledBundle,
        head: Head,
    ) -> Result<Engine, EngineError> {
        let s = &config.session;
        if s.max_bytes < MIN_MAX_BYTES {
            return Err(EngineError::Config(format!(
                "session.max_bytes must be at least {MIN_MAX_BYTES}"
            )));
        }
        if s.ring_capacity == 0 || s.ring_capacity > 1000 {
            return Err(EngineError::Config(
                "session.ring_capacity must be 1..=1000".into(),
            ));
        }
        if s.bucket_ms == 0 || s.horizon_ms < s.bucket_ms {
            return Err(EngineError::Config(
                "session.bucket_ms must be > 0 and <= horizon_ms".into(),
            ));
        }
        let mut named: Vec<String> = Vec::new();
        for act in bundle.rules.iter().flat_map(|r| &r.then) {
            let id = match act {
                Act::BoostRelated(ItemRef::Id(id), _) | Act::Pin(id, _) => id,
                _ => continue,
            };
            if !named.contains(id) {
                named.push(id.clone());
            }
        }
        Ok(Engine {
            config,
            bundle,
            head,
            named,
            local: None,
        })
    }

    /// Builds an engine over a whole catalog held in memory: published into head and shards
    /// like any release, every shard loaded (tools, tests, the conformance corpus).
    pub fn with_catalog(
        config: EngineConfig,
        bundle: CompiledBundle,
        catalog: &Catalog,
    ) -> Result<Engine, EngineError> {
        let (head, shards) = model::build::in_memory(catalog)?;
        let mut e = Engine::new(config, bundle, head)?;
        e.local = Some(shards);
        Ok(e)
    }

    /// Builds an engine from a JSON rule bundle and a JSON catalog.
    pub fn from_json(
        config: EngineConfig,
        bundle_json: &str,
        catalog_json: &[u8],
    ) -> Result<Engine, EngineError> {
        let bundle = compile_json(bundle_json, config.session.horizon_ms)?;
        let catalog = Catalog::from_json(catalog_json)?;
        Engine::with_catalog(config, bundle, &catalog)
    }

    /// Configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The compiled bundle.
    pub fn bundle(&self) -> &CompiledBundle {
        &self.bundle
    }

    /// The model head.
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// Every shard, for an engine built with [`Engine::with_catalog`].
    pub fn local_shards(&self) -> Option<&ShardMap> {
        self.local.as_ref()
    }

    /// The shards a decision on this request needs, at most [`model::MAX_PLANNED_SHARDS`]: those
    /// of the items the bundle names, of the events' items and of the session's items (both
    /// newest first). A host loads them (one bulk read for the ones it lacks) and calls
    /// [`Engine::decide_with`]; whatever it could not load, the decision goes without.
    pub fn plan(&self, req: &DecideRequest) -> Vec<ShardRef> {
        let tier = req.tier.unwrap_or(Tier::Full);
        let cfg = &self.config.session;
        let state = req
            .state
            .filter(|b| !b.is_empty() && matches!(tier, Tier::Full | Tier::Browser))
            .and_then(|b| SessionState::decode(b, cfg).ok())
            .unwrap_or_default();
        let recent = state.recent_items(usize::MAX);
        let session = recent
            .iter()
            .map(|r| r.0)
            .chain(0..state.items.len() as u32)
            .map(|i| state.item_id(i));
        // Newest events first: past the cap (a batch may name 500 items), the oldest events'
        // items go without their category and price, never the bundle's or the newest ones.
        let mut events: Vec<&Event> = req.events.iter().collect();
        events.sort_by_key(|e| std::cmp::Reverse((e.ts, e.seq)));
        let ids = self
            .named
            .iter()
            .map(String::as_str)
            .chain(events.iter().map(|e| e.item.as_str()))
            .chain(session);
        self.head.shards_for(ids)
    }

    /// Cache key for the `cached` tier: everything that tier's output depends on.
    pub fn segment_key(&self, ctx: &Context) -> String {
        let variant = self.variant_for(ctx);
        let f = |o: &Option<String>| o.clone().unwrap_or_default();
        format!(
            "{}|{}|{}|{}|{}|{}|{}",
            self.bundle.hash,
            self.head.hash,
            f(&ctx.device),
            f(&ctx.country),
            f(&ctx.slot),
            f(&ctx.path),
            variant.unwrap_or_default()
        )
    }

    /// The experiment variant for a context: its own `variant`, else bucketing by session id.
    pub fn variant_for(&self, ctx: &Context) -> Option<String> {
        if ctx.variant.is_some() {
            return ctx.variant.clone();
        }
        let exp = self.bundle.experiment.as_ref()?;
        let sid = ctx.session_id.as_deref()?;
        experiment::assign(exp, sid).map(str::to_string)
    }

    /// The `experiment/variant` key counters of a variant are kept under.
    pub fn variant_key(&self, variant: &str) -> String {
        let exp = self
            .bundle
            .experiment
            .as_ref()
            .map_or("-", |e| e.id.as_str());
        format!("{exp}/{variant}")
    }

    /// Makes one decision with the shards the engine holds (all of them for an engine built
    /// with [`Engine::with_catalog`], none otherwise).
    pub fn decide(&self, req: &DecideRequest) -> Decision {
        match &self.local {
            Some(s) => self.decide_with(req, s),
            None => self.decide_with(req, &NoShards),
        }
    }

    /// Makes one decision with these shards loaded. Never panics; a bad stored blob starts a
    /// fresh session (reported in `state_error`); a missing shard leaves its items out
    /// (reported in `missing`).
    pub fn decide_with(&self, req: &DecideRequest, shards: &dyn ShardSource) -> Decision {
        let cfg = &self.config.session;
        let tier = req.tier.unwrap_or(Tier::Full);
        let stateful = matches!(tier, Tier::Full | Tier::Browser);
        let mut ctx = req.context.clone();
        ctx.variant = self.variant_for(&ctx);
        let mut delta = AggregateDelta::default();
        let mut state_error = None;
        let mut state = SessionState::new();
        if stateful {
            if let Some(blob) = req.state.filter(|b| !b.is_empty()) {
                match SessionState::decode(blob, cfg) {
                    Ok(s) => state = s,
                    Err(e) => state_error = Some(e),
                }
            }
        }
        let rejected = seq_jumps(&state, req.events, cfg.idle_ms);
        if !rejected.is_empty() {
            return Decision {
                items: Vec::new(),
                tier,
                variant: ctx.variant.clone(),
                rule_hits: Vec::new(),
                state: None,
                state_changed: false,
                state_error: state_error.map(|e| e.to_string()),
                accepted: 0,
                duplicates: 0,
                capped: 0,
                rejected,
                delta,
                features: Features::compute(&state, ctx, req.now_ms, cfg),
                missing: 0,
            };
        }
        let mut traced = req.trace.map(|_| Vec::new());
        let (accepted, duplicates, capped, mut missing) = self.ingest(
            &mut state,
            req.events,
            &ctx,
            &mut delta,
            shards,
            traced.as_mut(),
        );
        if let (Some(key), Some(events)) = (req.trace, traced) {
            delta.add_trace(key, events, ctx.variant.as_deref(), tier.as_str());
        }
        let mut out_state = None;
        let mut state_changed = false;
        if stateful {
            state.prune(req.now_ms, cfg);
            let blob = state.encode_capped(cfg);
            // Comparing bytes is exact and cheaper than keeping a copy of the state.
            state_changed = req.state != Some(blob.as_slice());
            out_state = Some(blob);
        }
        let features = Features::compute(&state, ctx, req.now_ms, cfg);
        let mut items = Vec::new();
        let mut rule_hits = Vec::new();
        let limit = req.limit.min(MAX_LIMIT);
        if limit > 0 {
            let env = Env::new(&state, &features, req.now_ms, cfg.bucket_ms);
            let hits = match tier {
                Tier::Static => Hits::default(),
                Tier::Cached => env.run(&self.bundle, true),
                Tier::Full | Tier::Browser => env.run(&self.bundle, false),
            };
            let ranked = recommend(&RecommendInput {
                head: &self.head,
                shards,
                policy: &self.bundle.policy,
                state: &state,
                features: &features,
                hits: &hits,
                tier,
                limit,
                now_ms: req.now_ms,
                bucket_ms: cfg.bucket_ms,
                feedback: self.uses_feedback(features.context.variant.as_deref()),
            });
            items = ranked.items;
            missing += ranked.missing;
            delta.decisions = 1;
            delta.count_tier(tier.as_str());
            delta.count_rules_sorted(&hits.ids_sorted());
            if let Some(v) = &features.context.variant {
                let key = self.variant_key(v);
                delta.count_variant(&key, VariantEvent::Exposure);
                delta.arm(&key).count_decision(tier != Tier::Full);
            }
            rule_hits = hits.ids().cloned().collect();
        }
        Decision {
            items,
            tier,
            variant: features.context.variant.clone(),
            rule_hits,
            state: out_state,
            state_changed,
            state_error: state_error.map(|e| e.to_string()),
            accepted,
            duplicates,
            capped,
            rejected: Vec::new(),
            delta,
            features,
            missing,
        }
    }

    /// Whether a decision for `variant` uses the model's exposure feedback: the variant's
    /// `feedback`, else the bundle's `settings.feedback`.
    pub fn uses_feedback(&self, variant: Option<&str>) -> bool {
        let of_variant = variant.and_then(|v| {
            let exp = self.bundle.experiment.as_ref()?;
            exp.variants.iter().find(|x| x.name == v)?.feedback
        });
        of_variant.unwrap_or(self.bundle.policy.feedback)
    }

    /// Checks a report of decisions the browser made itself: its shape
    /// ([`crate::aggregate::check_browser_report`]) and that every rule id and variant it
    /// names belongs to this engine's bundle, so a page cannot invent counters.
    pub fn check_browser_report(&self, d: &AggregateDelta) -> Vec<crate::FieldError> {
        let mut errs = crate::aggregate::check_browser_report(d);
        let mut unknown = Vec::new();
        for k in d.rule_hits.keys() {
            if !self.bundle.rules.iter().any(|r| *r.id == **k) {
                unknown.push((
                    format!("delta.rule_hits[{k:?}]"),
                    "not a rule of the live bundle",
                ));
            }
        }
        for k in d.variants.keys() {
            let known = self
                .bundle
                .experiment
                .as_ref()
                .is_some_and(|e| e.variants.iter().any(|v| self.variant_key(&v.name) == *k));
            if !known {
                unknown.push((
                    format!("delta.variants[{k:?}]"),
                    "not a variant of the live experiment",
                ));
            }
        }
        // One error per field: a name already refused for its shape is not listed twice.
        for (field, message) in unknown {
            if !errs.iter().any(|e| e.field == field) {
                errs.push(crate::FieldError::new(field, message));
            }
        }
        errs
    }

    /// Adds events to the state in time order and counts them (interactions, transitions,
    /// conversions).
    fn ingest(
        &self,
        state: &mut SessionState,
        events: &[Event],
        ctx: &Context,
        delta: &mut AggregateDelta,
        shards: &dyn ShardSource,
        mut traced: Option<&mut Vec<crate::trace::Accepted>>,
    ) -> (u32, u32, u32, u32) {
        let cfg = &self.config.session;
        let mut order: Vec<&Event> = events.iter().collect();
        order.sort_by_key(|e| (e.ts, e.seq));
        let (mut accepted, mut duplicates, mut capped, mut missing) = (0u32, 0u32, 0u32, 0u32);
        // The variant's counter key and tally key, once per request rather than per event.
        let arm_key = ctx.variant.as_deref().map(|v| {
            let key = self.variant_key(v);
            let tally = tally_key(&key);
            (key, tally)
        });
        for ev in order {
            let known = match find(&self.head, shards, &ev.item) {
                Found::Item(r) => Some(&r.card),
                Found::Absent => None,
                Found::Missing => {
                    missing += 1;
                    None
                }
            };
            let category = ev.category.as_deref().or_else(|| {
                known
                    .and_then(|it| it.category())
                    .and_then(|c| self.head.category_name(c))
            });
            let price = ev.price.or_else(|| known.and_then(|it| it.price()));
            let prev = state.last_item.map(|i| state.item_id(i).to_string());
            match state.ingest(ev, category, price, cfg) {
                Ingested::Duplicate => duplicates += 1,
                Ingested::Stored => {
                    accepted += 1;
                    if let Some(t) = traced.as_deref_mut() {
                        t.push((
                            ev.kind,
                            ev.item.clone(),
                            category.map(str::to_string),
                            ev.ts,
                        ));
                    }
                    let (this_kind, all_kinds) = shipped_counts(state, ev, cfg.bucket_ms);
                    if this_kind > MAX_SHIPPED_PER_ITEM {
                        capped += 1;
                        continue;
                    }
                    delta.count_event(&ev.item, ev.kind);
                    // Only items the model holds were recommended: a placed event about any
                    // other id is not feedback (and cannot grow the trainer's item table).
                    if let Some((from, pos)) = ev.shown().filter(|_| known.is_some()) {
                        let shown = state.totals[EventKind::Impression as usize];
                        if ev.kind == EventKind::Click || shown <= MAX_SHOWN_PER_SESSION {
                            delta.count_shown(from, &ev.item, pos, ev.kind);
                        }
                    }
                    if ev.kind.is_interaction() && all_kinds <= MAX_SHIPPED_TRANSITIONS_TO {
                        if let Some(p) = prev.filter(|p| *p != ev.item) {
                            if state.last_item.map(|i| state.item_id(i)) == Some(ev.item.as_str()) {
                                delta.count_transition(&p, &ev.item);
                            }
                        }
                    }
                    let under_variant = match ev.kind {
                        EventKind::Impression => Some(VariantEvent::Impression),
                        EventKind::Click => Some(VariantEvent::Click),
                        EventKind::Purchase => Some(VariantEvent::Conversion),
                        _ => None,
                    };
                    if let Some((key, tally)) = &arm_key {
                        if let Some(what) = under_variant {
                            delta.count_variant(key, what);
                        }
                        let quantity = u64::from(ev.quantity.unwrap_or(1));
                        let cents = price
                            .map_or(0, |p| (p * 100.0).round() as u64)
                            .saturating_mul(quantity);
                        let step = match ev.kind {
                            EventKind::View => Step::Enter,
                            EventKind::Impression => Step::Impression,
                            EventKind::Click => Step::Click,
                            EventKind::AddToCart => Step::AddToCart,
                            EventKind::Purchase => Step::Purchase(cents),
                        };
                        let t = record(delta.arm(key), state.experiment, *tally, step);
                        state.experiment = Some(t);
                    }
                }
            }
        }
        delta.events = u64::from(accepted);
        delta.duplicates = u64::from(duplicates);
        (accepted, duplicates, capped, missing)
    }
}

/// The session's counts of an event's item after storing it: of the event's kind, and of
/// every interaction kind (for the shipping caps). Impressions are not kept per item: 0.
fn shipped_counts(state: &SessionState, ev: &Event, bucket_ms: u64) -> (u32, u32) {
    let Some(idx) = state
        .item_index(&ev.item)
        .filter(|_| ev.kind.is_interaction())
    else {
        return (0, 0);
    };
    let all = crate::session::window::Window::sliding(u64::MAX);
    // One scan per interaction kind; the event's own kind is one of them.
    let (mut own, mut total) = (0u32, 0u32);
    for &k in EventKind::ALL.iter().filter(|k| k.is_interaction()) {
        let n = state.count_item(idx, k, all, ev.ts, bucket_ms);
        if k == ev.kind {
            own = n;
        }
        total = total.saturating_add(n);
    }
    (own, total)
}

/// Field errors for events whose sequence number jumps more than [`MAX_SEQ_JUMP`] above the
/// session's highest (events that will start a fresh session after the idle timeout are not
/// held to the old one's numbers).
fn seq_jumps(state: &SessionState, events: &[Event], idle_ms: u64) -> Vec<crate::FieldError> {
    let Some(max) = state.max_seq else {
        return Vec::new();
    };
    events
        .iter()
        .enumerate()
        .filter(|(_, e)| idle_ms == 0 || e.ts <= state.last_ms.saturating_add(idle_ms))
        .filter(|(_, e)| e.seq.is_some_and(|s| s > max.saturating_add(MAX_SEQ_JUMP)))
        .map(|(i, _)| {
            crate::FieldError::new(
                format!("events[{i}].seq"),
                format!("jumps more than {MAX_SEQ_JUMP} above the session's last ({max})"),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_counts_exposures_impressions_clicks_and_conversions() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/data/demo/");
        let bundle = std::fs::read_to_string(format!("{dir}rules.json")).unwrap();
        let catalog = std::fs::read(format!("{dir}catalog.json")).unwrap();
        let engine = Engine::from_json(EngineConfig::default(), &bundle, &catalog).unwrap();
        let t = 1_764_201_600_000;
        let events = [
            Event::new(EventKind::Impression, "sku-0008", t),
            Event::new(EventKind::Impression, "sku-0011", t + 1),
            Event::new(EventKind::Click, "sku-0008", t + 2),
            Event::new(EventKind::Purchase, "sku-0008", t + 3),
        ];
        let d = engine.decide(&DecideRequest {
            events: &events,
            context: Context {
                variant: Some("treatment".into()),
                ..Context::default()
            },
            now_ms: t + 4,
            limit: 3,
            ..Default::default()
        });
        let v = d.delta.variants.values().next().expect("one variant");
        assert_eq!(
            (v.exposures, v.impressions, v.clicks, v.conversions),
            (1, 2, 1, 1)
        );
    }
    fn demo_engine() -> Engine {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/data/demo/");
        let bundle = std::fs::read_to_string(format!("{dir}rules.json")).unwrap();
        let catalog = std::fs::read(format!("{dir}catalog.json")).unwrap();
        Engine::from_json(EngineConfig::default(), &bundle, &catalog).unwrap()
    }

    #[test]
    fn placed_impressions_and_clicks_ship_as_exposure_feedback_up_to_the_session_cap() {
        let engine = demo_engine();
        let t = 1_764_201_600_000;
        let placed = |kind, item: &str, pos, ts| Event {
            from: Some("sku-0005".into()),
            pos: Some(pos),
            ..Event::new(kind, item, ts)
        };
        // A session replaying impressions of one item far past the cap, then one click.
        let mut events: Vec<Event> = (0..300)
            .map(|i| placed(EventKind::Impression, "sku-0008", 1, t + i))
            .collect();
        events.push(placed(EventKind::Click, "sku-0008", 1, t + 400));
        events.push(Event::new(EventKind::Impression, "sku-0011", t + 401));
        events.push(placed(EventKind::Impression, "no-such-item", 0, t + 402));
        let mut state: Option<Vec<u8>> = None;
        let mut shown = crate::aggregate::Shown::default();
        for chunk in events.chunks(50) {
            let d = engine.decide(&DecideRequest {
                events: chunk,
                state: state.as_deref(),
                now_ms: t + 500,
                limit: 3,
                ..Default::default()
            });
            state = d.state.clone().or(state);
            if let Some(n) = d
                .delta
                .shown
                .get("sku-0005")
                .and_then(|m| m.get("sku-0008"))
            {
                shown.add(&n[&1]);
            }
            // Neither the unplaced impression nor the id the model does not hold.
            for (from, items) in &d.delta.shown {
                assert_eq!(from, "sku-0005");
                assert!(items.keys().all(|i| i == "sku-0008"), "{items:?}");
            }
        }
        assert_eq!(
            (shown.impressions, shown.clicks),
            (u64::from(MAX_SHOWN_PER_SESSION), 1)
        );
    }

    #[test]
    fn a_variant_without_feedback_ranks_by_co_visitation_alone() {
        let catalog = br#"{"version":"f","items":[
            {"id":"a","category":"x","related":[["b",1.0],["c",0.5]],"feedback":[["b",0.25],["c",2.0]]},
            {"id":"b","category":"x"},{"id":"c","category":"x"}]}"#;
        let bundle = r#"{"version":"t","settings":{"weights":{"popular":0,"category":0}},
            "experiment":{"id":"fb","salt":"s","variants":[
              {"name":"control","weight":1,"feedback":false},{"name":"treatment","weight":1}]},
            "rules":[]}"#;
        let engine = Engine::from_json(EngineConfig::default(), bundle, catalog).unwrap();
        let t = 1_764_201_600_000;
        let first = |variant: Option<&str>| {
            let d = engine.decide(&DecideRequest {
                events: &[Event::new(EventKind::View, "a", t)],
                context: Context {
                    variant: variant.map(str::to_string),
                    ..Context::default()
                },
                now_ms: t + 1,
                limit: 2,
                ..Default::default()
            });
            d.items.iter().map(|r| r.id.clone()).collect::<Vec<_>>()
        };
        assert_eq!(first(Some("control")), ["b", "c"]);
        assert_eq!(first(Some("treatment")), ["c", "b"], "1 × 0.25 < 0.5 × 2");
        assert_eq!(
            first(None),
            ["c", "b"],
            "settings.feedback defaults to true"
        );
        // Off for the shop; a variant may still turn it on.
        let off = bundle
            .replace(r#""category":0}}"#, r#""category":0},"feedback":false}"#)
            .replace(
                r#""name":"treatment","weight":1"#,
                r#""name":"treatment","weight":1,"feedback":true"#,
            );
        assert_ne!(off, bundle);
        let engine = Engine::from_json(EngineConfig::default(), &off, catalog).unwrap();
        assert!(!engine.uses_feedback(None));
        assert!(engine.uses_feedback(Some("treatment")));
        assert!(!engine.uses_feedback(Some("control")));
        assert!(!engine.uses_feedback(Some("unknown")));
    }

    #[test]
    fn one_session_ships_at_most_the_cap_per_item_and_kind() {
        let engine = demo_engine();
        let t = 1_764_201_600_000;
        // 30 views of one item, alternating with another: a client trying to move the model.
        let events: Vec<Event> = (0..60)
            .map(|i| {
                let item = if i % 2 == 0 { "sku-0005" } else { "sku-0163" };
                Event::new(EventKind::View, item, t + i)
            })
            .collect();
        let d = engine.decide(&DecideRequest {
            events: &events,
            now_ms: t + 100,
            ..Default::default()
        });
        assert_eq!(d.accepted, 60, "the session itself stores every event");
        let views = |id: &str| d.delta.items.get(id).map_or(0, |c| c.views);
        assert_eq!(views("sku-0005"), u64::from(MAX_SHIPPED_PER_ITEM));
        assert_eq!(views("sku-0163"), u64::from(MAX_SHIPPED_PER_ITEM));
        assert_eq!(d.capped, 40);
        let to = |a: &str, b: &str| {
            d.delta
                .transitions
                .get(a)
                .and_then(|m| m.get(b))
                .copied()
                .unwrap_or(0)
        };
        // Only the first arrival at an item ships a transition.
        assert_eq!(to("sku-0005", "sku-0163"), 1);
        assert_eq!(
            to("sku-0163", "sku-0005"),
            0,
            "sku-0005 was reached first, with no predecessor"
        );
    }

    #[test]
    fn a_session_s_experiment_metrics_are_counted_once_across_requests() {
        let engine = demo_engine();
        let t = 1_764_201_600_000;
        let context = Context {
            session_id: Some("abc".into()),
            ..Default::default()
        };
        let key = engine.variant_key(&engine.variant_for(&context).unwrap());
        let ev = |kind, i: u64| Event::new(kind, "sku-0005", t + i);
        let mut buy = ev(EventKind::Purchase, 4);
        buy.price = Some(10.25);
        buy.quantity = Some(2);
        let mut total = AggregateDelta::default();
        // Events (no decision), then a decision with one more impression, then a static-tier
        // decision (no state: a fallback, not a new session).
        let first = engine.decide(&DecideRequest {
            events: &[
                ev(EventKind::Impression, 1),
                ev(EventKind::Impression, 2),
                ev(EventKind::Click, 3),
                buy,
            ],
            context: context.clone(),
            now_ms: t + 5,
            ..Default::default()
        });
        total.merge(&first.delta);
        let second = engine.decide(&DecideRequest {
            state: first.state.as_deref(),
            events: &[ev(EventKind::Impression, 6)],
            context: context.clone(),
            now_ms: t + 7,
            limit: 4,
            ..Default::default()
        });
        total.merge(&second.delta);
        let fallback = engine.decide(&DecideRequest {
            context,
            now_ms: t + 8,
            limit: 4,
            tier: Some(Tier::Static),
            ..Default::default()
        });
        total.merge(&fallback.delta);
        let arm = total.experiments[&key];
        use crate::experiment::metrics::Moments;
        // One session: impressions 3, clicks 1, converted, revenue 2 × 10.25 = 2050 cents.
        assert_eq!(arm.sessions, 1);
        assert_eq!(arm.impressions, Moments { sum: 3, sum_sq: 9 });
        assert_eq!(arm.clicks, Moments { sum: 1, sum_sq: 1 });
        assert_eq!(arm.clicks_x_impressions, 3);
        assert_eq!(arm.converted, Moments { sum: 1, sum_sq: 1 });
        assert_eq!(arm.added, Moments::default());
        assert_eq!(
            arm.revenue_cents,
            Moments {
                sum: 2050,
                sum_sq: 2050 * 2050
            }
        );
        assert_eq!((arm.decisions, arm.fallbacks), (2, 1));
        // The tally travels in the state: a later decision without events adds nothing to the
        // session's sums, and the session is not counted again.
        let again = engine.decide(&DecideRequest {
            state: second.state.as_deref(),
            events: &[],
            context: Context {
                session_id: Some("abc".into()),
                ..Default::default()
            },
            now_ms: t + 9,
            limit: 4,
            ..Default::default()
        });
        assert_eq!(again.delta.experiments[&key].sessions, 0);
        assert_eq!(
            again.delta.experiments[&key].impressions,
            Moments::default()
        );
    }

    #[test]
    fn a_seq_jump_is_refused_whole_and_stores_nothing() {
        let engine = demo_engine();
        let t = 1_764_201_600_000;
        let mut first = Event::new(EventKind::View, "sku-0005", t);
        first.seq = Some(7);
        let d = engine.decide(&DecideRequest {
            events: &[first],
            now_ms: t + 1,
            ..Default::default()
        });
        let blob = d.state.unwrap();
        let mut ok = Event::new(EventKind::View, "sku-0006", t + 2);
        ok.seq = Some(8);
        let mut far = Event::new(EventKind::Purchase, "sku-0006", t + 3);
        far.seq = Some(7 + MAX_SEQ_JUMP + 1);
        let d = engine.decide(&DecideRequest {
            state: Some(&blob),
            events: &[ok.clone(), far.clone()],
            now_ms: t + 4,
            ..Default::default()
        });
        let fields: Vec<&str> = d.rejected.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["events[1].seq"]);
        assert_eq!(
            (d.accepted, d.state.is_none(), d.delta.is_empty()),
            (0, true, true)
        );
        // Exactly at the bound is accepted.
        far.seq = Some(7 + MAX_SEQ_JUMP);
        let d = engine.decide(&DecideRequest {
            state: Some(&blob),
            events: &[ok, far],
            now_ms: t + 4,
            ..Default::default()
        });
        assert!(d.rejected.is_empty());
        assert_eq!(d.accepted, 2);
    }

    #[test]
    fn a_decision_reads_only_its_planned_shards_and_degrades_without_them() {
        let engine = demo_engine();
        let all = engine.local_shards().unwrap();
        let t = 1_764_201_600_000;
        let events = [
            Event::new(EventKind::View, "sku-0005", t),
            Event::new(EventKind::View, "sku-0163", t + 1),
        ];
        let req = DecideRequest {
            events: &events,
            now_ms: t + 10,
            limit: 8,
            ..Default::default()
        };
        let plan = engine.plan(&req);
        assert!(plan.len() <= model::MAX_PLANNED_SHARDS);
        assert!(plan.len() < engine.head().base_shards as usize, "{plan:?}");
        // Only the planned shards: the same decision as with every shard.
        let mut some = ShardMap::default();
        for r in &plan {
            some.0.insert(*r, all.0[r].clone());
        }
        let full = engine.decide_with(&req, all);
        let planned = engine.decide_with(&req, &some);
        assert_eq!(planned.items, full.items);
        assert_eq!((planned.missing, full.missing), (0, 0));
        assert!(full
            .items
            .iter()
            .any(|r| r.why.iter().any(|w| w.starts_with("related:"))));
        // No shard at all (KV down): still a list, from the head's candidate lists, and the
        // decision says what it lacked.
        let bare = engine.decide_with(&req, &NoShards);
        assert!(bare.missing > 0);
        assert!(!bare.items.is_empty());
        assert!(bare
            .items
            .iter()
            .all(|r| !r.why.iter().any(|w| w.starts_with("related:"))));
        assert_eq!(bare.accepted, 2, "events are still stored");
    }

    #[test]
    fn a_batch_naming_hundreds_of_items_plans_a_bounded_read_keeping_the_newest() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/data/demo/");
        let bundle = std::fs::read_to_string(format!("{dir}rules.json")).unwrap();
        let bundle = compile_json(&bundle, EngineConfig::default().session.horizon_ms).unwrap();
        let doc = crate::model::synthetic::Synthetic::new(4_000, 1).to_doc();
        let catalog = Catalog::from_doc(&doc).unwrap();
        let engine = Engine::with_catalog(EngineConfig::default(), bundle, &catalog).unwrap();
        // Many more shards than a plan may name, so the cap is what binds.
        assert!(engine.head().base_shards > 2 * model::MAX_PLANNED_SHARDS as u32);
        let t = 1_764_201_600_000;
        let mut events: Vec<Event> = (0..500)
            .map(|i| Event::new(EventKind::View, format!("sku-{:05}", i * 7), t + i))
            .collect();
        events.push(Event::new(EventKind::View, "sku-03999", t + 1000));
        let req = DecideRequest {
            events: &events,
            now_ms: t + 2000,
            limit: 5,
            ..Default::default()
        };
        let plan = engine.plan(&req);
        assert!(plan.len() <= model::MAX_PLANNED_SHARDS);
        let head = engine.head();
        assert_eq!(
            plan.len(),
            model::MAX_PLANNED_SHARDS,
            "the cap is what binds here"
        );
        let newest = head.place("sku-03999").unwrap().base;
        assert!(plan.contains(&newest), "the newest event's shard is kept");
        for id in &engine.named {
            assert!(plan.contains(&head.place(id).unwrap().base), "{id}");
        }
    }

    #[test]
    fn one_event_without_shards_counts_each_missing_lookup() {
        let engine = demo_engine();
        let t = 1_764_201_600_000;
        let events = [Event::new(EventKind::View, "sku-0005", t)];
        let req = DecideRequest {
            events: &events,
            now_ms: t + 10,
            limit: 4,
            ..Default::default()
        };
        let d = engine.decide_with(&req, &NoShards);
        // One lookup in ingest (the event's item, for its category) plus one in ranking (the
        // session's anchor, for its related list): missing adds them.
        assert_eq!(d.missing, 2);
    }

    #[test]
    fn segment_keys_separate_every_input_of_the_cached_tier() {
        let engine = demo_engine();
        let ctx = |device: &str, country: &str, slot: &str, variant: &str| Context {
            device: Some(device.into()),
            country: Some(country.into()),
            slot: Some(slot.into()),
            variant: Some(variant.into()),
            ..Context::default()
        };
        let base = engine.segment_key(&ctx("mobile", "AT", "home", "control"));
        assert_eq!(
            base,
            engine.segment_key(&ctx("mobile", "AT", "home", "control"))
        );
        for other in [
            ctx("desktop", "AT", "home", "control"),
            ctx("mobile", "DE", "home", "control"),
            ctx("mobile", "AT", "pdp", "control"),
            ctx("mobile", "AT", "home", "treatment"),
        ] {
            assert_ne!(base, engine.segment_key(&other), "{other:?}");
        }
        assert!(base.starts_with(&engine.bundle().hash), "{base}");
    }

    #[test]
    fn browser_reports_may_name_only_the_live_bundle_s_rules_and_variants() {
        let engine = demo_engine();
        let report = |rule: &str, variant: &str| {
            let mut d = AggregateDelta {
                decisions: 1,
                ..Default::default()
            };
            d.count_tier("browser");
            d.count_rule(rule);
            d.count_variant(&engine.variant_key(variant), VariantEvent::Exposure);
            engine
                .check_browser_report(&d)
                .into_iter()
                .map(|e| e.field)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            report("repeat-view-related", "treatment"),
            Vec::<String>::new()
        );
        assert_eq!(
            report("invented", "treatment"),
            ["delta.rule_hits[\"invented\"]"]
        );
        let key = engine.variant_key("nope");
        assert_eq!(
            report("repeat-view-related", "nope"),
            [format!("delta.variants[{key:?}]")]
        );
    }

    #[test]
    fn errors_list_every_field_with_its_message() {
        let e = crate::aggregate::BatchError::Invalid(vec![
            crate::FieldError::new("id", "bad"),
            crate::FieldError::new("delta", "too big"),
        ]);
        assert_eq!(e.to_string(), "invalid batch: id: bad; delta: too big");
    }

    #[test]
    fn the_engine_keeps_its_config_and_plans_no_session_items_for_stateless_tiers() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/data/demo/");
        let bundle = std::fs::read_to_string(format!("{dir}rules.json")).unwrap();
        let catalog = std::fs::read(format!("{dir}catalog.json")).unwrap();
        let mut cfg = EngineConfig::default();
        cfg.session.ring_capacity = 7;
        let engine = Engine::from_json(cfg, &bundle, &catalog).unwrap();
        assert_eq!(engine.config().session.ring_capacity, 7);
        let t = 1_764_201_600_000;
        let events = [Event::new(EventKind::View, "sku-0163", t)];
        let d = engine.decide(&DecideRequest {
            events: &events,
            now_ms: t + 1,
            limit: 0,
            ..Default::default()
        });
        // limit 0: events stored, no decision made or counted.
        assert!(d.state_changed && d.items.is_empty() && d.rule_hits.is_empty());
        assert_eq!(d.delta.decisions, 0);
        let blob = d.state.unwrap();
        let again = engine.decide(&DecideRequest {
            state: Some(&blob),
            now_ms: t + 2,
            limit: 4,
            ..Default::default()
        });
        assert!(!again.state_changed, "nothing new: the same bytes");
        assert_eq!(again.delta.decisions, 1);
        let plan = |tier, state: Option<&[u8]>| {
            engine.plan(&DecideRequest {
                state,
                now_ms: t + 2,
                limit: 4,
                tier: Some(tier),
                ..Default::default()
            })
        };
        assert_eq!(plan(Tier::Static, Some(&blob)), plan(Tier::Static, None));
        assert_eq!(plan(Tier::Cached, Some(&blob)), plan(Tier::Cached, None));
        assert_eq!(
            plan(Tier::Full, Some(&blob)).len(),
            plan(Tier::Full, None).len() + 1
        );
        assert_eq!(plan(Tier::Full, Some(&[])), plan(Tier::Full, None));
    }

    #[test]
    fn a_report_field_refused_for_its_shape_and_as_unknown_is_listed_once() {
        let engine = demo_engine();
        let mut d = AggregateDelta {
            decisions: 1,
            ..Default::default()
        };
        d.count_tier("browser");
        d.rule_hits.insert("invented".into(), 5);
        let fields: Vec<String> = engine
            .check_browser_report(&d)
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["delta.rule_hits[\"invented\"]"]);
    }

    #[test]
    fn after_the_idle_timeout_a_new_session_is_not_held_to_the_old_numbers() {
        let engine = demo_engine();
        let t = 1_764_201_600_000;
        let mut first = Event::new(EventKind::View, "sku-0005", t);
        first.seq = Some(5);
        let blob = engine
            .decide(&DecideRequest {
                events: &[first],
                now_ms: t + 1,
                ..Default::default()
            })
            .state
            .unwrap();
        let idle = engine.config().session.idle_ms;
        let mut far = Event::new(EventKind::View, "sku-0006", t + idle + 1);
        far.seq = Some(5 + MAX_SEQ_JUMP + 1);
        let d = engine.decide(&DecideRequest {
            state: Some(&blob),
            events: &[far],
            now_ms: t + idle + 2,
            ..Default::default()
        });
        assert!(d.rejected.is_empty(), "{:?}", d.rejected);
        assert_eq!(d.accepted, 1);
    }
}
