//! The compiled form of a bundle that evaluation reads: conditions over resolved features,
//! actions over resolved references, policy. Built by [`super::compile`], read by
//! [`super::eval`] and the recommender; nothing here is parsed at decision time.

use super::bundle::{self, Bundle, SeenPolicy};
use super::features::{NumFeature, StrFeature};
use crate::event::EventKind;
use crate::session::Window;

/// Numeric comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumOp {
    /// ==
    Eq,
    /// !=
    Ne,
    /// <
    Lt,
    /// <=
    Le,
    /// >
    Gt,
    /// >=
    Ge,
}

impl NumOp {
    /// Applies the comparison.
    pub fn test(self, a: f64, b: f64) -> bool {
        match self {
            NumOp::Eq => a == b,
            NumOp::Ne => a != b,
            NumOp::Lt => a < b,
            NumOp::Le => a <= b,
            NumOp::Gt => a > b,
            NumOp::Ge => a >= b,
        }
    }
}

/// Label comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrOp {
    /// Equal to one of the values (`==` has one, `in` several).
    In(Vec<String>),
    /// Equal to none of them.
    NotIn(Vec<String>),
    /// Starts with the prefix.
    StartsWith(String),
}

/// What a count condition counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CountTarget {
    /// All items.
    Everything,
    /// Any single item (binds `$item`).
    AnyItem,
    /// One item.
    Item(String),
    /// The newest interacted item.
    LastItem,
    /// The most-viewed item.
    MostViewed,
    /// Any single category (binds `$category`).
    AnyCategory,
    /// One category.
    Category(String),
    /// The session's top category.
    TopCategory,
}

/// A compiled condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// All children.
    All(Vec<Cond>),
    /// Any child.
    Any(Vec<Cond>),
    /// Negation.
    Not(Box<Cond>),
    /// Numeric feature test.
    Num(NumFeature, NumOp, f64),
    /// Label feature test.
    Str(StrFeature, StrOp),
    /// Windowed count test.
    Count {
        /// Kind counted.
        kind: EventKind,
        /// What is counted.
        target: CountTarget,
        /// Window.
        window: Window,
        /// Comparison.
        op: NumOp,
        /// Threshold.
        value: f64,
    },
}

impl Cond {
    /// Whether a wildcard count (which binds items or categories) appears anywhere in it.
    pub fn binds(&self) -> bool {
        match self {
            Cond::All(cs) | Cond::Any(cs) => cs.iter().any(Cond::binds),
            Cond::Not(c) => c.binds(),
            Cond::Count { target, .. } => {
                matches!(target, CountTarget::AnyItem | CountTarget::AnyCategory)
            }
            Cond::Num(..) | Cond::Str(..) => false,
        }
    }
}

impl Cond {
    /// Whether the condition reads only the request context.
    pub fn context_only(&self) -> bool {
        match self {
            Cond::All(c) | Cond::Any(c) => c.iter().all(Cond::context_only),
            Cond::Not(c) => c.context_only(),
            Cond::Num(..) | Cond::Count { .. } => false,
            Cond::Str(f, _) => f.is_context(),
        }
    }
}

/// An item reference in an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemRef {
    /// Items bound by an `item: "*"` count.
    Bound,
    /// The newest interacted item.
    Last,
    /// The most-viewed item.
    MostViewed,
    /// A literal id.
    Id(String),
}

/// A category reference in an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CategoryRef {
    /// Categories bound by a `category: "*"` count.
    Bound,
    /// The session's top category.
    Top,
    /// A literal name.
    Name(String),
}

/// A compiled action.
#[derive(Debug, Clone, PartialEq)]
pub enum Act {
    /// Add related items of an anchor.
    BoostRelated(ItemRef, f64),
    /// Multiply a category's scores and add its top items.
    BoostCategory(CategoryRef, f64),
    /// Multiply a category's scores by a factor < 1.
    BuryCategory(CategoryRef, f64),
    /// Pin an item to a position.
    Pin(String, u32),
    /// Exclude items.
    ExcludeItems(Vec<String>),
    /// Exclude categories.
    ExcludeCategories(Vec<String>),
    /// Exclude purchased items, or allow them.
    ExcludePurchased(bool),
    /// Category cap.
    CapPerCategory(u32),
}

/// A compiled rule.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledRule {
    /// Rule id (shared, so a decision lists fired rules without copying strings).
    pub id: std::sync::Arc<str>,
    /// `rule:<id>`, the "why" of the items it touches (shared the same way).
    pub why: std::sync::Arc<str>,
    /// Priority.
    pub priority: i32,
    /// Condition.
    pub when: Cond,
    /// Actions.
    pub then: Vec<Act>,
    /// Whether the rule reads only the request context (so it can run in the cached tier).
    pub context_only: bool,
    /// Whether its condition has a wildcard count (`item: "*"`, `category: "*"`), whose bound
    /// items decide an `all` and feed `$item`/`$category`; without one, evaluation is a plain
    /// boolean walk ([`Cond::binds`]).
    pub binds: bool,
    /// Position of its id among the bundle's ids in sorted order (a decision's hits are
    /// counted in that order without comparing strings).
    pub id_rank: u32,
    /// The condition flattened over feature slots (what a rule that does not bind runs).
    pub flat: super::flat::Flat,
}

/// Compiled policy settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Seen-items policy.
    pub seen_policy: SeenPolicy,
    /// Seen window.
    pub seen_window: Window,
    /// Demote factor.
    pub seen_demote_factor: f64,
    /// Exclude purchased by default.
    pub exclude_purchased: bool,
    /// Default category cap (0 = none).
    pub max_per_category: u32,
    /// Related-item anchors.
    pub recent_anchors: usize,
    /// Anchor recency decay.
    pub recency_decay: f64,
    /// Source weights.
    pub weights: bundle::SourceWeights,
    /// Related scores use the model's exposure feedback (`settings.feedback`).
    pub feedback: bool,
}

/// A validated, compiled bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledBundle {
    /// The author's version label.
    pub version: String,
    /// Content hash: first 16 hex digits of SHA-256 over the canonical JSON of the bundle.
    pub hash: String,
    /// Policy.
    pub policy: Policy,
    /// Experiment, if any.
    pub experiment: Option<bundle::Experiment>,
    /// Enabled rules, highest priority first, ties by id.
    pub rules: Vec<CompiledRule>,
    /// The label values the rules' conditions name, interned.
    pub labels: super::flat::Labels,
    /// The source bundle, for publishing and display.
    pub source: Bundle,
}

/// Parses a duration such as `500ms`, `90s`, `10m`, `1h`, `7d`.
pub fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(mult).filter(|&v| v > 0)
}

#[cfg(test)]
mod tests {
    use super::NumOp;

    #[test]
    fn numeric_operators_compare_as_named() {
        // (a, b) = below, equal, above.
        let table = [
            (NumOp::Eq, [false, true, false]),
            (NumOp::Ne, [true, false, true]),
            (NumOp::Lt, [true, false, false]),
            (NumOp::Le, [true, true, false]),
            (NumOp::Gt, [false, false, true]),
            (NumOp::Ge, [false, true, true]),
        ];
        for (op, want) in table {
            let got = [op.test(1.0, 2.0), op.test(2.0, 2.0), op.test(3.0, 2.0)];
            assert_eq!(got, want, "{op:?}");
        }
    }

    #[test]
    fn durations_parse_in_every_unit_and_refuse_zero_and_unknown_units() {
        use super::parse_duration as d;
        let got = [d("500ms"), d("90s"), d("10m"), d("1h"), d("7d"), d(" 2s ")];
        let want = [500, 90_000, 600_000, 3_600_000, 604_800_000, 2_000].map(Some);
        assert_eq!(got, want);
        for bad in ["0s", "5x", "s", "10", "", "-1s", "99999999999999999d"] {
            assert_eq!(d(bad), None, "{bad}");
        }
    }
}
