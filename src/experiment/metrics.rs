//! Per-session experiment metrics, counted at the edge without shipping raw events.
//!
//! The randomisation unit is the session (one variant per session id, [`super::assign`]; a
//! session ends at the idle timeout, when its state starts afresh). For each variant the edge
//! ships what a variance estimate needs: the number of sessions, and per metric the sum and the
//! sum of squares of the per-session values (plus the cross-product for a ratio metric).
//!
//! **Counted incrementally, exactly.** A session keeps its running values in its state
//! ([`SessionTally`]). When a value goes from `a` to `b`, the delta adds `b - a` to the sum and
//! `b² - a²` to the sum of squares (for a product, `b·d - a·c`). Summed over every increment of
//! every session these telescope, so at any moment the totals equal Σx and Σx² over the
//! sessions' values *so far*: the same numbers a close-at-idle-timeout count would give if every
//! session closed now, without waiting for the timeout and without a second pass. A session
//! still open contributes its partial values, exactly as an open session would in any
//! "so far" analysis; both arms are treated alike, so the comparison is not biased by it.
//!
//! **A session enters** its variant's count with its first accepted event (the tracker sends
//! a view with every product page, so every real visit has one). A decision alone does not
//! make a unit: the edge does not store a new session's state for a request that only asks
//! (a bot asking a million times costs no KV writes), so counting there would count the
//! session again at its first event. Treatments cannot stop a visit's own page view, so this
//! filter is the same in every arm.
//!
//! Per-decision guardrails (the share of decisions served from a fallback tier, decision
//! latency) are counted per decision, because the cheaper tiers do not read the session's state:
//! their variance treats decisions as independent (see the README's experiments section).

use serde::{Deserialize, Serialize};

/// Largest revenue one session contributes, in cents: values above are capped (winsorised),
/// which bounds the sums of squares and keeps one outlier order from owning the variance.
pub const REVENUE_CAP_CENTS: u64 = 1_000_000;
/// Largest count of impressions, clicks, add-to-carts or purchases one session contributes
/// (a bot sending thousands of impressions would otherwise own the variance).
pub const COUNT_CAP: u64 = 1_000;
/// Largest decision time counted, µs (a decision slower than a second counts as one second).
pub const LATENCY_CAP_US: u64 = 1_000_000;

/// Σx and Σx² of one value over sessions (or decisions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Moments {
    /// Σx.
    pub sum: u64,
    /// Σx².
    pub sum_sq: u64,
}

impl Moments {
    /// Moves one unit's value from `from` to `to` (never down: values only grow).
    fn step(&mut self, from: u64, to: u64) {
        self.sum = self.sum.saturating_add(to.saturating_sub(from));
        let sq = |v: u64| v.saturating_mul(v);
        self.sum_sq = self.sum_sq.saturating_add(sq(to).saturating_sub(sq(from)));
    }

    /// Adds one observation.
    fn observe(&mut self, x: u64) {
        self.step(0, x);
    }

    fn add(&mut self, o: &Moments) {
        self.sum = self.sum.saturating_add(o.sum);
        self.sum_sq = self.sum_sq.saturating_add(o.sum_sq);
    }
}

/// What one variant's sessions and decisions add up to (a commutative monoid, like the rest of
/// the aggregates).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ArmTally {
    /// Sessions in the variant (counted at their first accepted event).
    pub sessions: u64,
    /// Impressions of recommended items per session.
    pub impressions: Moments,
    /// Clicks on recommended items per session.
    pub clicks: Moments,
    /// Σ clicks × impressions over sessions (for the CTR's delta-method variance).
    pub clicks_x_impressions: u64,
    /// Sessions with an add-to-cart (0/1 per session).
    pub added: Moments,
    /// Sessions with a purchase (0/1 per session).
    pub converted: Moments,
    /// Revenue per session, cents (price × quantity of purchases, capped).
    pub revenue_cents: Moments,
    /// Decisions served under the variant.
    pub decisions: u64,
    /// Of those, served from a fallback tier (anything but `full`).
    pub fallbacks: u64,
    /// Decision time per decision, µs (decisions timed by the host).
    pub latency_us: Moments,
    /// Decisions timed.
    pub timed: u64,
    /// API responses to the variant's sessions (events and recommendations answered once the
    /// session, and so its variant, is known).
    pub responses: u64,
    /// Of those, 4xx and 5xx.
    pub errors: u64,
}

impl ArmTally {
    /// Adds `o` into `self`.
    pub fn add(&mut self, o: &ArmTally) {
        self.sessions = self.sessions.saturating_add(o.sessions);
        self.impressions.add(&o.impressions);
        self.clicks.add(&o.clicks);
        self.clicks_x_impressions = self
            .clicks_x_impressions
            .saturating_add(o.clicks_x_impressions);
        self.added.add(&o.added);
        self.converted.add(&o.converted);
        self.revenue_cents.add(&o.revenue_cents);
        self.decisions = self.decisions.saturating_add(o.decisions);
        self.fallbacks = self.fallbacks.saturating_add(o.fallbacks);
        self.latency_us.add(&o.latency_us);
        self.timed = self.timed.saturating_add(o.timed);
        self.responses = self.responses.saturating_add(o.responses);
        self.errors = self.errors.saturating_add(o.errors);
    }

    /// Sessions of which `converted` converted, nothing else counted (hand-computed cases and
    /// simulations).
    pub fn with_conversions(sessions: u64, converted: u64) -> ArmTally {
        ArmTally {
            sessions,
            converted: Moments {
                sum: converted,
                sum_sq: converted,
            },
            ..ArmTally::default()
        }
    }

    /// Counts one decision, from a fallback tier or not.
    pub fn count_decision(&mut self, fallback: bool) {
        self.decisions = self.decisions.saturating_add(1);
        self.fallbacks = self.fallbacks.saturating_add(u64::from(fallback));
    }

    /// Counts one API response to the variant's session, by its status.
    pub fn count_response(&mut self, status: u16) {
        self.responses = self.responses.saturating_add(1);
        self.errors = self.errors.saturating_add(u64::from(status >= 400));
    }

    /// Counts one decision's time.
    pub fn count_latency(&mut self, us: u64) {
        self.latency_us.observe(us.min(LATENCY_CAP_US));
        self.timed = self.timed.saturating_add(1);
    }

    /// Why these counters cannot come from real sessions, if they cannot: sums of squares below
    /// sums, a 0/1 metric whose squares differ from its sum, more fallbacks than decisions (or
    /// errors than responses).
    /// Only what holds for any batch's share of the increments is checked (a batch may hold a
    /// session's click without the impressions before it, so no Cauchy–Schwarz bound).
    pub fn implausible(&self) -> Option<&'static str> {
        let integer = [
            self.impressions,
            self.clicks,
            self.revenue_cents,
            self.latency_us,
        ];
        if integer.iter().any(|m| m.sum_sq < m.sum) {
            return Some("a sum of squares below its sum");
        }
        if [self.added, self.converted]
            .iter()
            .any(|m| m.sum != m.sum_sq)
        {
            return Some("a 0/1 metric whose sum of squares is not its sum");
        }
        if self.fallbacks > self.decisions {
            return Some("more fallbacks than decisions");
        }
        if self.errors > self.responses {
            return Some("more errors than responses");
        }
        None
    }
}

/// One session's running values for the variant it is in (kept in its state).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionTally {
    /// Which `experiment/variant` the values belong to (FNV-1a-64 of the key): a session whose
    /// variant changes (a new split) starts counting afresh, as a new unit.
    pub key: u32,
    /// Impressions of recommended items.
    pub impressions: u64,
    /// Clicks on recommended items.
    pub clicks: u64,
    /// Add-to-carts.
    pub add_to_carts: u64,
    /// Purchases.
    pub purchases: u64,
    /// Revenue, cents (capped at [`REVENUE_CAP_CENTS`]).
    pub revenue_cents: u64,
}

/// What just happened in a session, for its tally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Any other accepted event (a view): the session enters its variant if it had not yet.
    Enter,
    /// An impression of a recommended item.
    Impression,
    /// A click on a recommended item.
    Click,
    /// An add-to-cart.
    AddToCart,
    /// A purchase worth this many cents.
    Purchase(u64),
}

/// The key a [`SessionTally`] stores for an `experiment/variant` key.
pub fn tally_key(variant_key: &str) -> u32 {
    (super::fnv1a64(&[b"edgerec-tally", variant_key.as_bytes()]) >> 32) as u32
}

/// Applies one step to a session's tally and adds exactly the change it makes to the variant's
/// sums (see the module docs). Returns the updated tally.
pub fn record(
    arm: &mut ArmTally,
    tally: Option<SessionTally>,
    key: u32,
    step: Step,
) -> SessionTally {
    let before = match tally {
        Some(t) if t.key == key => t,
        _ => {
            arm.sessions = arm.sessions.saturating_add(1);
            SessionTally {
                key,
                ..SessionTally::default()
            }
        }
    };
    let mut after = before;
    match step {
        Step::Enter => {}
        Step::Impression => after.impressions = after.impressions.saturating_add(1).min(COUNT_CAP),
        Step::Click => after.clicks = after.clicks.saturating_add(1).min(COUNT_CAP),
        Step::AddToCart => after.add_to_carts = after.add_to_carts.saturating_add(1).min(COUNT_CAP),
        Step::Purchase(cents) => {
            after.purchases = after.purchases.saturating_add(1).min(COUNT_CAP);
            after.revenue_cents = after
                .revenue_cents
                .saturating_add(cents)
                .min(REVENUE_CAP_CENTS);
        }
    }
    arm.impressions.step(before.impressions, after.impressions);
    arm.clicks.step(before.clicks, after.clicks);
    let product = |t: &SessionTally| t.clicks.saturating_mul(t.impressions);
    arm.clicks_x_impressions = arm
        .clicks_x_impressions
        .saturating_add(product(&after).saturating_sub(product(&before)));
    let once = |n: u64| u64::from(n > 0);
    arm.added
        .step(once(before.add_to_carts), once(after.add_to_carts));
    arm.converted
        .step(once(before.purchases), once(after.purchases));
    arm.revenue_cents
        .step(before.revenue_cents, after.revenue_cents);
    after
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn step_of(code: u8, cents: u16) -> Step {
        match code % 5 {
            0 => Step::Enter,
            1 => Step::Impression,
            2 => Step::Click,
            3 => Step::AddToCart,
            _ => Step::Purchase(u64::from(cents)),
        }
    }

    #[test]
    fn three_sessions_by_hand() {
        // Session A: 3 impressions, 1 click, a purchase of 12.50 → (i, c, added, conv, rev) =
        // (3, 1, 0, 1, 1250). B: 2 impressions, 2 clicks, one add-to-cart → (2, 2, 1, 0, 0).
        // C: one view, nothing else → (0, 0, 0, 0, 0).
        let mut arm = ArmTally::default();
        let mut run = |steps: &[Step]| {
            let mut t = None;
            for s in steps {
                t = Some(record(&mut arm, t, 7, *s));
            }
        };
        use Step::*;
        run(&[
            Enter,
            Impression,
            Impression,
            Click,
            Impression,
            Purchase(1250),
        ]);
        run(&[Impression, Click, Impression, Click, AddToCart]);
        run(&[Enter]);
        assert_eq!(arm.sessions, 3);
        assert_eq!(
            arm.impressions,
            Moments {
                sum: 5,
                sum_sq: 9 + 4
            }
        );
        assert_eq!(
            arm.clicks,
            Moments {
                sum: 3,
                sum_sq: 1 + 4
            }
        );
        assert_eq!(arm.clicks_x_impressions, 3 + 4);
        assert_eq!(arm.added, Moments { sum: 1, sum_sq: 1 });
        assert_eq!(arm.converted, Moments { sum: 1, sum_sq: 1 });
        assert_eq!(
            arm.revenue_cents,
            Moments {
                sum: 1250,
                sum_sq: 1_562_500
            }
        );
        assert_eq!(arm.implausible(), None);
    }

    #[test]
    fn decisions_and_their_times_are_counted_per_decision() {
        let mut arm = ArmTally::default();
        arm.count_decision(false);
        arm.count_decision(true);
        arm.count_latency(300);
        arm.count_latency(LATENCY_CAP_US * 5);
        assert_eq!((arm.decisions, arm.fallbacks, arm.timed), (2, 1, 2));
        let cap = LATENCY_CAP_US;
        assert_eq!(
            arm.latency_us,
            Moments {
                sum: 300 + cap,
                sum_sq: 90_000 + cap * cap
            }
        );
    }

    #[test]
    fn each_variant_key_has_its_own_tally_key() {
        // FNV-1a-64 of "edgerec-tally" ‖ 0x00 ‖ key, high 32 bits: stable across builds.
        let k = tally_key("e/a");
        assert_eq!(k, tally_key("e/a"));
        assert_ne!(k, tally_key("e/b"));
        assert_ne!(tally_key("x/control"), tally_key("y/control"));
        assert_eq!(
            u64::from(k),
            super::super::fnv1a64(&[b"edgerec-tally", b"e/a"]) >> 32
        );
        // A session moving to another variant's key is a new unit there.
        let mut arm = ArmTally::default();
        let t = record(&mut arm, None, tally_key("e/a"), Step::Click);
        let t = record(&mut arm, Some(t), tally_key("e/b"), Step::Click);
        assert_eq!((arm.sessions, t.clicks), (2, 1));
    }

    #[test]
    fn a_tally_with_extreme_values_never_panics() {
        // Whatever a stored tally holds (the blob is the edge's own, but a panic would poison the
        // isolate), every step saturates or caps.
        let max = SessionTally {
            key: 1,
            impressions: u64::MAX,
            clicks: u64::MAX,
            add_to_carts: u64::MAX,
            purchases: u64::MAX,
            revenue_cents: u64::MAX,
        };
        let mut arm = ArmTally::default();
        assert_eq!(record(&mut arm, Some(max), 1, Step::Enter), max);
        // Counts come back to the cap; sums never go down or wrap.
        let t = record(&mut arm, Some(max), 1, Step::Impression);
        assert_eq!(t.impressions, COUNT_CAP);
        let t = record(&mut arm, Some(max), 1, Step::Purchase(u64::MAX));
        assert_eq!(
            (t.purchases, t.revenue_cents),
            (COUNT_CAP, REVENUE_CAP_CENTS)
        );
        record(&mut arm, Some(max), 1, Step::Click);
        record(&mut arm, Some(max), 1, Step::AddToCart);
        assert_eq!(arm.impressions, Moments::default());
        assert_eq!(arm.clicks_x_impressions, 0);
        assert_eq!(arm.sessions, 0);
        arm.count_latency(u64::MAX);
        assert_eq!(arm.latency_us.sum, LATENCY_CAP_US);
    }

    #[test]
    fn one_session_s_counts_are_capped() {
        let mut arm = ArmTally::default();
        let mut t = None;
        for _ in 0..COUNT_CAP + 500 {
            t = Some(record(&mut arm, t, 3, Step::Impression));
        }
        assert_eq!(t.unwrap().impressions, COUNT_CAP);
        assert_eq!(
            arm.impressions,
            Moments {
                sum: COUNT_CAP,
                sum_sq: COUNT_CAP * COUNT_CAP
            }
        );
    }

    #[test]
    fn a_new_variant_is_a_new_unit_and_revenue_is_capped() {
        let mut arm = ArmTally::default();
        let t = record(&mut arm, None, 1, Step::Purchase(REVENUE_CAP_CENTS * 3));
        assert_eq!(t.revenue_cents, REVENUE_CAP_CENTS);
        let t2 = record(&mut arm, Some(t), 2, Step::Impression);
        assert_eq!(arm.sessions, 2);
        assert_eq!(t2.revenue_cents, 0);
        assert_eq!(arm.revenue_cents.sum, REVENUE_CAP_CENTS);
    }

    #[test]
    fn implausible_counters_are_named() {
        let mut a = ArmTally::default();
        a.clicks.sum = 3;
        assert!(a.implausible().is_some());
        let b = ArmTally {
            converted: Moments { sum: 2, sum_sq: 4 },
            ..ArmTally::default()
        };
        assert!(b.implausible().is_some());
        let d = ArmTally {
            fallbacks: 1,
            ..ArmTally::default()
        };
        assert!(d.implausible().is_some());
    }

    proptest! {
        /// Incremental sums equal the sums over the sessions' final values, however the steps
        /// of different sessions interleave and however the deltas are grouped into batches.
        #[test]
        fn increments_telescope_to_the_final_values(
            steps in proptest::collection::vec((0usize..6, any::<u8>(), any::<u16>()), 0..200),
            cut in 0usize..200,
        ) {
            let mut tallies: Vec<Option<SessionTally>> = vec![None; 6];
            let (mut first, mut second) = (ArmTally::default(), ArmTally::default());
            for (i, (s, code, cents)) in steps.iter().enumerate() {
                let arm = if i < cut { &mut first } else { &mut second };
                tallies[*s] = Some(record(arm, tallies[*s], 9, step_of(*code, *cents)));
            }
            // Every batch's share of the increments passes the collector's checks.
            prop_assert_eq!(first.implausible(), None);
            prop_assert_eq!(second.implausible(), None);
            let mut merged = second;
            merged.add(&first);
            let live: Vec<SessionTally> = tallies.iter().flatten().copied().collect();
            let sum = |f: &dyn Fn(&SessionTally) -> u64| live.iter().map(f).sum::<u64>();
            prop_assert_eq!(merged.sessions, live.len() as u64);
            prop_assert_eq!(merged.impressions.sum, sum(&|t| t.impressions));
            prop_assert_eq!(merged.impressions.sum_sq, sum(&|t| t.impressions * t.impressions));
            prop_assert_eq!(merged.clicks.sum_sq, sum(&|t| t.clicks * t.clicks));
            prop_assert_eq!(merged.clicks_x_impressions, sum(&|t| t.clicks * t.impressions));
            prop_assert_eq!(merged.converted.sum, sum(&|t| u64::from(t.purchases > 0)));
            prop_assert_eq!(merged.added.sum_sq, sum(&|t| u64::from(t.add_to_carts > 0)));
            prop_assert_eq!(merged.revenue_cents.sum_sq, sum(&|t| t.revenue_cents * t.revenue_cents));
            prop_assert_eq!(merged.implausible(), None);
        }
    }
}
