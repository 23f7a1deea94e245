//! The features rules test, as one table: name ↔ feature. Evaluation reads features by
//! these enums (never by name); the compiler resolves names once.

use crate::event::EventKind;

/// Numeric features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumFeature {
    /// `session.duration_s`
    DurationS,
    /// `session.since_last_event_s`
    SinceLastEventS,
    /// `session.events`
    Events,
    /// `session.views` etc.
    KindTotal(EventKind),
    /// `session.distinct_items`
    DistinctItems,
    /// `session.distinct_categories`
    DistinctCategories,
    /// `session.max_item_views`
    MaxItemViews,
    /// `cart.lines`
    CartLines,
    /// `cart.quantity`
    CartQuantity,
    /// `cart.value`
    CartValue,
    /// `purchased.count`
    PurchasedCount,
}

/// Label features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrFeature {
    /// `session.top_category`
    TopCategory,
    /// `session.last_item`
    LastItem,
    /// `session.most_viewed_item`
    MostViewedItem,
    /// `context.country`
    Country,
    /// `context.device`
    Device,
    /// `context.path`
    Path,
    /// `context.slot`
    Slot,
    /// `context.variant`
    Variant,
}

impl StrFeature {
    /// Whether the feature comes from the request alone (usable in the cached tier).
    pub fn is_context(self) -> bool {
        matches!(
            self,
            StrFeature::Country
                | StrFeature::Device
                | StrFeature::Path
                | StrFeature::Slot
                | StrFeature::Variant
        )
    }
}

/// A feature a rule can test: a number or a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// A number.
    Num(NumFeature),
    /// A label.
    Str(StrFeature),
}

/// Every feature by the name rules use: the one list (lookup, error messages and the docs
/// all read it).
pub const FEATURES: &[(&str, Feature)] = {
    use Feature::{Num as N, Str as S};
    use NumFeature as NF;
    use StrFeature as SF;
    &[
        ("session.duration_s", N(NF::DurationS)),
        ("session.since_last_event_s", N(NF::SinceLastEventS)),
        ("session.events", N(NF::Events)),
        ("session.views", N(NF::KindTotal(EventKind::View))),
        ("session.clicks", N(NF::KindTotal(EventKind::Click))),
        (
            "session.add_to_carts",
            N(NF::KindTotal(EventKind::AddToCart)),
        ),
        ("session.purchases", N(NF::KindTotal(EventKind::Purchase))),
        (
            "session.impressions",
            N(NF::KindTotal(EventKind::Impression)),
        ),
        ("session.distinct_items", N(NF::DistinctItems)),
        ("session.distinct_categories", N(NF::DistinctCategories)),
        ("session.max_item_views", N(NF::MaxItemViews)),
        ("cart.lines", N(NF::CartLines)),
        ("cart.quantity", N(NF::CartQuantity)),
        ("cart.value", N(NF::CartValue)),
        ("purchased.count", N(NF::PurchasedCount)),
        ("session.top_category", S(SF::TopCategory)),
        ("session.last_item", S(SF::LastItem)),
        ("session.most_viewed_item", S(SF::MostViewedItem)),
        ("context.country", S(SF::Country)),
        ("context.device", S(SF::Device)),
        ("context.path", S(SF::Path)),
        ("context.slot", S(SF::Slot)),
        ("context.variant", S(SF::Variant)),
    ]
};

/// The feature a name denotes.
pub fn by_name(name: &str) -> Option<Feature> {
    FEATURES.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// Every feature name, comma-separated (for error messages).
pub fn names() -> String {
    FEATURES
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_map_back() {
        for (i, (n, f)) in FEATURES.iter().enumerate() {
            assert_eq!(by_name(n), Some(*f), "{n}");
            assert!(
                FEATURES[..i].iter().all(|(m, g)| m != n && g != f),
                "{n} twice"
            );
        }
        assert_eq!(by_name("session.nope"), None);
        // Only `context.*` labels can be read by the cached tier (no session there).
        for (n, f) in FEATURES {
            if let Feature::Str(label) = f {
                assert_eq!(label.is_context(), n.starts_with("context."), "{n}");
            }
        }
        assert!(names().starts_with("session.duration_s, "));
    }
}
