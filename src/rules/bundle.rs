//! The rule bundle as authors write it (JSON). These types are the source of the published
//! JSON Schema (`schema/rules.schema.json`); [`super::compile`] turns them into the form that
//! evaluation uses.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A versioned set of rules plus the recommendation policy they run under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// Author-chosen version label, e.g. `2026-11-27.1`.
    pub version: String,
    /// What this bundle is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Recommendation policy.
    #[serde(default)]
    pub settings: Settings,
    /// An A/B experiment; its variant is available to rules as `context.variant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<Experiment>,
    /// The rules, evaluated in priority order (highest first, then by id).
    pub rules: Vec<Rule>,
}

/// Recommendation policy: candidate sources, filters, diversity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// What to do with items the shopper interacted with recently.
    pub seen_policy: SeenPolicy,
    /// How far back "recently" reaches for `seen_policy`, e.g. `30m`.
    pub seen_window: String,
    /// Score multiplier for recently seen items under `seen_policy: demote`.
    pub seen_demote_factor: f64,
    /// Never recommend items bought in this session.
    pub exclude_purchased: bool,
    /// Most items per category in one list (0 = no cap).
    pub max_per_category: u32,
    /// How many recent items seed related-item candidates.
    pub recent_anchors: u32,
    /// Weight of the n-th most recent anchor is `recency_decay^n`.
    pub recency_decay: f64,
    /// Weight of each candidate source.
    pub weights: SourceWeights,
    /// Related scores use the exposure feedback the trainer published (items shown often and
    /// never clicked sink, items clicked more than their position predicts rise); `false`
    /// ranks by co-visitation alone. A variant's `feedback` overrides it.
    #[serde(skip_serializing_if = "is_true")]
    pub feedback: bool,
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            seen_policy: SeenPolicy::ExcludeRecent,
            seen_window: "30m".into(),
            seen_demote_factor: 0.3,
            exclude_purchased: true,
            max_per_category: 0,
            recent_anchors: 5,
            recency_decay: 0.6,
            weights: SourceWeights::default(),
            feedback: true,
        }
    }
}

/// Treatment of recently seen items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SeenPolicy {
    /// Leave them out.
    ExcludeRecent,
    /// Multiply their score by `seen_demote_factor`.
    Demote,
    /// Treat them like any other item.
    Allow,
}

/// Weight of each candidate source in the final score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SourceWeights {
    /// Items related to recent interactions.
    pub related: f64,
    /// Top items of the session's favourite categories.
    pub category: f64,
    /// Global popularity.
    pub popular: f64,
    /// The shopper's own recent items (a return visit), decayed like anchors. Counts only when
    /// `seen_policy` lets seen items through; 0 leaves them to the model's self-relations.
    pub recent: f64,
    /// Multiplier per kind of anchor interaction.
    pub kinds: KindWeights,
}

impl Default for SourceWeights {
    fn default() -> Self {
        SourceWeights {
            related: 1.0,
            category: 0.3,
            popular: 0.05,
            recent: 0.0,
            kinds: KindWeights::default(),
        }
    }
}

/// How much an anchor counts by what the shopper did with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct KindWeights {
    /// Viewed.
    pub view: f64,
    /// Clicked.
    pub click: f64,
    /// Added to cart.
    pub add_to_cart: f64,
    /// Bought.
    pub purchase: f64,
}

impl Default for KindWeights {
    fn default() -> Self {
        KindWeights {
            view: 1.0,
            click: 1.2,
            add_to_cart: 1.5,
            purchase: 0.8,
        }
    }
}

/// Deterministic split of sessions into variants (see [`crate::experiment`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Experiment id, reported with exposures.
    pub id: String,
    /// Salt mixed into the hash, so different experiments split independently.
    pub salt: String,
    /// Variants with relative weights. The control is the variant named `control`, else the
    /// first.
    pub variants: Vec<Variant>,
    /// The metric the experiment is for: a variant that beats the control on it with
    /// confidence is reported as the winner (promotion stays a human decision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<Metric>,
    /// Limits a variant must keep; the controller stops a variant that breaks one with
    /// confidence (all traffic to the control).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guardrails: Vec<Guardrail>,
}

/// A per-variant metric the edge counts (see `edgerec::experiment::metrics`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Clicks on recommended items / their impressions (a ratio of per-session sums).
    Ctr,
    /// Share of sessions with an add-to-cart.
    AddToCart,
    /// Share of sessions with a purchase.
    Conversion,
    /// Revenue per session (price × quantity of purchases).
    Revenue,
    /// Share of decisions served from a fallback tier (per decision).
    FallbackShare,
    /// Decision time, µs (per decision, as timed by the edge).
    LatencyUs,
    /// Share of API responses to the variant's sessions that were 4xx or 5xx (per response).
    ErrorShare,
}

/// A limit on one metric of every non-control variant. Give one of the three bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Guardrail {
    /// The metric.
    pub metric: Metric,
    /// Breached when the variant is worse than the control by more than this share
    /// (e.g. `0.02`: conversion must not drop by more than 2%), with confidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_drop: Option<f64>,
    /// Breached when the variant's value rises above the control's by more than this share
    /// (for metrics where lower is better, e.g. latency), with confidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rise: Option<f64>,
    /// Breached when the variant's own value is above this, with confidence (e.g. a fallback
    /// share of at most `0.05`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// One arm of an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// Variant name, e.g. `control`.
    pub name: String,
    /// Relative weight (share = weight / sum of weights).
    pub weight: u32,
    /// Whether this variant's related scores use the model's exposure feedback (default: the
    /// bundle's `settings.feedback`): `false` serves the model as it would be without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<bool>,
}

/// One rule: when a condition holds, apply actions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique id, reported in "why" and in rule-hit counters.
    pub id: String,
    /// What the rule is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Higher runs first; a higher-priority pin wins a slot.
    #[serde(default)]
    pub priority: i32,
    /// Disabled rules are validated but never run.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The condition.
    pub when: Condition,
    /// What to do when it holds.
    pub then: Vec<Action>,
}

fn yes() -> bool {
    true
}

/// A condition over features, context and windowed counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Every child holds (an empty list always holds).
    All(Vec<Condition>),
    /// At least one child holds.
    Any(Vec<Condition>),
    /// The child does not hold.
    Not(Box<Condition>),
    /// A session feature or context field compared with a value.
    Feature(FeatureTest),
    /// A windowed event count compared with a number.
    Count(CountTest),
}

/// `{"name": "cart.value", "op": ">=", "value": 100}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FeatureTest {
    /// Feature name: `session.*`, `cart.*`, `purchased.count` or `context.*`.
    pub name: String,
    /// Comparison.
    pub op: Op,
    /// A number for numeric features; a string (or a list of strings for `in`/`not_in`) for
    /// labels.
    pub value: Value,
}

/// `{"kind": "view", "item": "*", "window": "10m", "op": ">=", "value": 3}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CountTest {
    /// Which events to count.
    pub kind: String,
    /// An item id, `*` (any item: matching items become `$item`), `$last` or `$most_viewed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    /// A category, `*` (any category: matches become `$category`) or `$top`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Window length: `90s`, `10m`, `1h`, `1d`.
    pub window: String,
    /// Epoch-aligned period (current hour, current day) instead of the last `window`.
    #[serde(default)]
    pub tumbling: bool,
    /// Comparison.
    pub op: Op,
    /// Threshold.
    pub value: f64,
}

/// Comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Op {
    /// Equal.
    #[serde(rename = "==")]
    Eq,
    /// Not equal.
    #[serde(rename = "!=")]
    Ne,
    /// Less than.
    #[serde(rename = "<")]
    Lt,
    /// Less or equal.
    #[serde(rename = "<=")]
    Le,
    /// Greater than.
    #[serde(rename = ">")]
    Gt,
    /// Greater or equal.
    #[serde(rename = ">=")]
    Ge,
    /// Member of a list of strings.
    #[serde(rename = "in")]
    In,
    /// Not a member of a list of strings.
    #[serde(rename = "not_in")]
    NotIn,
    /// String starts with.
    #[serde(rename = "starts_with")]
    StartsWith,
}

/// What a rule does to the recommendations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Add the related items of an item (`$item`, `$last`, `$most_viewed` or an id).
    BoostRelated(BoostRelated),
    /// Multiply scores in a category (`$category`, `$top` or a name) and add its top items.
    BoostCategory(BoostCategory),
    /// Multiply scores in a category by a factor below 1.
    BuryCategory(BuryCategory),
    /// Put an item at a position (0-based).
    Pin(Pin),
    /// Never show these items.
    ExcludeItems(Vec<String>),
    /// Never show items of these categories.
    ExcludeCategories(Vec<String>),
    /// Never show items bought this session (true) — or allow them (false).
    ExcludePurchased(bool),
    /// At most this many items per category.
    CapPerCategory(u32),
}

/// See [`Action::BoostRelated`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BoostRelated {
    /// Anchor item.
    pub item: String,
    /// Added score = weight × relatedness.
    pub weight: f64,
}

/// See [`Action::BoostCategory`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BoostCategory {
    /// Category.
    pub category: String,
    /// Score multiplier (> 1 raises).
    pub weight: f64,
}

/// See [`Action::BuryCategory`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BuryCategory {
    /// Category.
    pub category: String,
    /// Score multiplier (0..1).
    pub factor: f64,
}

/// See [`Action::Pin`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// Item id.
    pub item: String,
    /// 0-based position.
    pub slot: u32,
}

/// The JSON Schema of [`Bundle`], pretty-printed.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Bundle);
    serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"
}
