//! Conditions flattened for evaluation: each rule's condition as one array of steps in prefix
//! order, read against a per-decision vector of numeric features and interned labels
//! ([`Facts`]). Built once per bundle; a decision fills its facts once, and then a rule reads
//! slots and compares integers: no feature is looked up by name and no string is compared in
//! the rule loop. Count conditions keep their tree form (they read the session's windows).

use super::features::{NumFeature, StrFeature};
use super::ir::{Cond, NumOp, StrOp};
use crate::event::EventKind;
use rustc_hash::FxHashMap;

/// The numeric features, in slot order.
pub const NUMS: [NumFeature; 15] = [
    NumFeature::DurationS,
    NumFeature::SinceLastEventS,
    NumFeature::Events,
    NumFeature::KindTotal(EventKind::View),
    NumFeature::KindTotal(EventKind::Click),
    NumFeature::KindTotal(EventKind::AddToCart),
    NumFeature::KindTotal(EventKind::Purchase),
    NumFeature::KindTotal(EventKind::Impression),
    NumFeature::DistinctItems,
    NumFeature::DistinctCategories,
    NumFeature::MaxItemViews,
    NumFeature::CartLines,
    NumFeature::CartQuantity,
    NumFeature::CartValue,
    NumFeature::PurchasedCount,
];

/// The label features, in slot order.
pub const LABELS: [StrFeature; 8] = [
    StrFeature::TopCategory,
    StrFeature::LastItem,
    StrFeature::MostViewedItem,
    StrFeature::Country,
    StrFeature::Device,
    StrFeature::Path,
    StrFeature::Slot,
    StrFeature::Variant,
];

/// The id of a label value no condition names, or of an absent label: equal to no interned id.
pub const UNNAMED: u32 = u32::MAX;

fn num_slot(f: NumFeature) -> u8 {
    NUMS.iter().position(|&g| g == f).unwrap_or(0) as u8
}

fn label_slot(f: StrFeature) -> u8 {
    LABELS.iter().position(|&g| g == f).unwrap_or(0) as u8
}

/// One step of a flattened condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Every child holds; the children are the steps before index `.0`.
    All(u32),
    /// Some child holds; the children are the steps before index `.0`.
    Any(u32),
    /// The next subtree does not hold.
    Not,
    /// A numeric slot `==` a value.
    Eq(u8, f64),
    /// A numeric slot `!=` a value.
    Ne(u8, f64),
    /// A numeric slot `<` a value.
    Lt(u8, f64),
    /// A numeric slot `<=` a value.
    Le(u8, f64),
    /// A numeric slot `>` a value.
    Gt(u8, f64),
    /// A numeric slot `>=` a value.
    Ge(u8, f64),
    /// A label slot is one of these ids.
    In(u8, Box<[u32]>),
    /// A label slot is none of these ids.
    NotIn(u8, Box<[u32]>),
    /// A label starts with the prefix.
    StartsWith(StrFeature, Box<str>),
    /// A count condition, answered by the caller.
    Count(Box<Cond>),
}

/// The label values a bundle's conditions name, interned once per bundle.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Labels {
    ids: FxHashMap<Box<str>, u32>,
    /// Slots some `in`/`not_in` reads (the others are not looked up per decision).
    read: [bool; LABELS.len()],
}

impl Labels {
    fn intern(&mut self, s: &str) -> u32 {
        let next = self.ids.len() as u32;
        *self.ids.entry(s.into()).or_insert(next)
    }

    fn ids(&mut self, slot: u8, values: &[String]) -> Box<[u32]> {
        if let Some(r) = self.read.get_mut(slot as usize) {
            *r = true;
        }
        values.iter().map(|v| self.intern(v)).collect()
    }

    /// A decision's label values as ids: `label` reads a feature; unread slots stay
    /// [`UNNAMED`].
    pub fn facts<'s>(&self, label: impl Fn(StrFeature) -> Option<&'s str>) -> [u32; 8] {
        let mut out = [UNNAMED; LABELS.len()];
        for ((o, &f), &read) in out.iter_mut().zip(LABELS.iter()).zip(self.read.iter()) {
            if read {
                *o = label(f)
                    .and_then(|v| self.ids.get(v))
                    .copied()
                    .unwrap_or(UNNAMED);
            }
        }
        out
    }
}

/// What a decision's rules read, filled once per decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    /// Numeric features by slot ([`NUMS`]).
    pub nums: [f64; NUMS.len()],
    /// Label ids by slot ([`LABELS`]).
    pub labels: [u32; LABELS.len()],
}

/// A rule's condition, flattened.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Flat(Vec<Step>);

impl Flat {
    /// Flattens a condition, interning the labels it names.
    pub fn build(c: &Cond, labels: &mut Labels) -> Flat {
        let mut steps = Vec::new();
        push(c, labels, &mut steps);
        Flat(steps)
    }

    /// Whether the condition holds on `facts`; `label` reads a label as text (for
    /// `starts_with`) and `count` answers a count condition.
    pub fn holds<'s>(
        &self,
        facts: &Facts,
        label: &impl Fn(StrFeature) -> Option<&'s str>,
        count: &impl Fn(&Cond) -> bool,
    ) -> bool {
        match self.0.first() {
            Some(s) => {
                leaf(s, facts, label, count).unwrap_or_else(|| self.node(0, facts, label, count).0)
            }
            None => false,
        }
    }

    /// The value of the `all`/`any`/`not` at `at` and the index after its subtree. Leaf
    /// children are read in place; only nested nodes recurse.
    fn node<'s>(
        &self,
        at: usize,
        facts: &Facts,
        label: &impl Fn(StrFeature) -> Option<&'s str>,
        count: &impl Fn(&Cond) -> bool,
    ) -> (bool, usize) {
        match self.0.get(at) {
            Some(s @ (Step::All(end) | Step::Any(end))) => {
                let (end, all) = (*end as usize, matches!(s, Step::All(_)));
                let mut i = at + 1;
                while i < end {
                    let (ok, next) = self.child(i, facts, label, count);
                    if ok != all {
                        // A false child decides an `all`, a true one an `any`.
                        return (ok, end);
                    }
                    i = next;
                }
                (all, end)
            }
            Some(Step::Not) => {
                let (ok, next) = self.child(at + 1, facts, label, count);
                (!ok, next)
            }
            // Leaves are read by `leaf`; a malformed array holds nothing.
            _ => (false, at + 1),
        }
    }
}

impl Flat {
    /// The value of the subtree at `i` and the index after it.
    #[inline(always)]
    fn child<'s>(
        &self,
        i: usize,
        facts: &Facts,
        label: &impl Fn(StrFeature) -> Option<&'s str>,
        count: &impl Fn(&Cond) -> bool,
    ) -> (bool, usize) {
        match self.0.get(i) {
            Some(s) => match leaf(s, facts, label, count) {
                Some(ok) => (ok, i + 1),
                None => self.node(i, facts, label, count),
            },
            None => (false, i + 1),
        }
    }
}

/// A leaf's value, or None for `all`/`any`/`not`.
#[inline(always)]
fn leaf<'s>(
    s: &Step,
    facts: &Facts,
    label: &impl Fn(StrFeature) -> Option<&'s str>,
    count: &impl Fn(&Cond) -> bool,
) -> Option<bool> {
    let id = |slot: u8| facts.labels.get(slot as usize).copied().unwrap_or(UNNAMED);
    let num = |slot: u8| facts.nums.get(slot as usize).copied().unwrap_or(0.0);
    Some(match s {
        Step::All(_) | Step::Any(_) | Step::Not => return None,
        // One variant per operator: one dispatch a leaf, not two.
        Step::Eq(slot, v) => num(*slot) == *v,
        Step::Ne(slot, v) => num(*slot) != *v,
        Step::Lt(slot, v) => num(*slot) < *v,
        Step::Le(slot, v) => num(*slot) <= *v,
        Step::Gt(slot, v) => num(*slot) > *v,
        Step::Ge(slot, v) => num(*slot) >= *v,
        Step::In(slot, ids) => ids.contains(&id(*slot)),
        Step::NotIn(slot, ids) => !ids.contains(&id(*slot)),
        Step::StartsWith(f, p) => label(*f).is_some_and(|v| v.starts_with(&**p)),
        Step::Count(c) => count(c),
    })
}

fn push(c: &Cond, labels: &mut Labels, steps: &mut Vec<Step>) {
    match c {
        Cond::All(cs) | Cond::Any(cs) => {
            let at = steps.len();
            steps.push(Step::Not); // placeholder, set once the children's end is known
            for c in cs {
                push(c, labels, steps);
            }
            let end = steps.len() as u32;
            steps[at] = match c {
                Cond::All(_) => Step::All(end),
                _ => Step::Any(end),
            };
        }
        Cond::Not(c) => {
            steps.push(Step::Not);
            push(c, labels, steps);
        }
        Cond::Num(f, op, v) => {
            let (slot, v) = (num_slot(*f), *v);
            steps.push(match op {
                NumOp::Eq => Step::Eq(slot, v),
                NumOp::Ne => Step::Ne(slot, v),
                NumOp::Lt => Step::Lt(slot, v),
                NumOp::Le => Step::Le(slot, v),
                NumOp::Gt => Step::Gt(slot, v),
                NumOp::Ge => Step::Ge(slot, v),
            })
        }
        Cond::Str(f, op) => {
            let slot = label_slot(*f);
            steps.push(match op {
                StrOp::In(vs) => Step::In(slot, labels.ids(slot, vs)),
                StrOp::NotIn(vs) => Step::NotIn(slot, labels.ids(slot, vs)),
                StrOp::StartsWith(p) => Step::StartsWith(*f, p.as_str().into()),
            })
        }
        c @ Cond::Count { .. } => steps.push(Step::Count(Box::new(c.clone()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_feature_has_its_own_slot() {
        for (i, f) in NUMS.iter().enumerate() {
            assert_eq!(num_slot(*f) as usize, i, "{f:?}");
        }
        for (i, f) in LABELS.iter().enumerate() {
            assert_eq!(label_slot(*f) as usize, i, "{f:?}");
        }
        // Every feature of the table is in a slot.
        for (name, f) in super::super::features::FEATURES {
            let found = match f {
                super::super::features::Feature::Num(n) => NUMS.contains(n),
                super::super::features::Feature::Str(s) => LABELS.contains(s),
            };
            assert!(found, "{name}");
        }
    }

    #[test]
    fn only_labels_some_condition_names_are_looked_up() {
        let mut labels = Labels::default();
        let c = Cond::Str(
            StrFeature::Device,
            StrOp::In(vec!["mobile".into(), "tablet".into()]),
        );
        let f = Flat::build(&c, &mut labels);
        let read = |s: StrFeature| match s {
            StrFeature::Device => Some("tablet"),
            _ => Some("mobile"),
        };
        let ids = labels.facts(read);
        let slot = label_slot(StrFeature::Device) as usize;
        assert_eq!(ids[slot], 1);
        assert!(ids
            .iter()
            .enumerate()
            .all(|(i, &v)| i == slot || v == UNNAMED));
        let facts = Facts {
            nums: [0.0; 15],
            labels: ids,
        };
        assert!(f.holds(&facts, &read, &|_| false));
        // A value no condition names is no id.
        assert_eq!(labels.facts(|_| Some("desktop"))[slot], UNNAMED);
    }
}
