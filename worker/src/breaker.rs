//! Circuit breakers: after `threshold` consecutive failures (errors or blown deadlines) a
//! dependency is skipped for a cool-down, so a failing KV or collector costs nothing instead of
//! its timeout on every request. After the cool-down one trial call is let through
//! (half-open); its success closes the breaker.

use std::cell::RefCell;

/// One breaker's state.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Breaker {
    /// Consecutive failures.
    pub failures: u32,
    /// Skipping calls until this time, Unix ms (0 = closed).
    pub open_until_ms: u64,
    /// Times it opened.
    pub opened: u64,
}

/// The dependencies guarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dep {
    /// Session KV.
    SessionKv,
    /// Config KV.
    ConfigKv,
    /// The origin collector.
    Collector,
}

impl Breaker {
    /// Whether a call may go ahead now: closed, or open past its cool-down (half-open: one
    /// trial decides).
    pub fn allow(&self, now_ms: u64) -> bool {
        self.open_until_ms == 0 || now_ms >= self.open_until_ms
    }

    /// A call succeeded: closed again.
    pub fn success(&mut self) {
        self.failures = 0;
        self.open_until_ms = 0;
    }

    /// A call failed: at `threshold` consecutive failures the breaker opens for `cooldown_ms`
    /// (a failed trial call re-opens it for another cool-down).
    pub fn failure(&mut self, now_ms: u64, threshold: u32, cooldown_ms: u64) {
        self.failures = self.failures.saturating_add(1);
        if self.failures >= threshold.max(1) {
            if self.allow(now_ms) {
                self.opened += 1;
            }
            self.open_until_ms = now_ms.saturating_add(cooldown_ms);
        }
    }
}

thread_local! {
    static BREAKERS: RefCell<[Breaker; 3]> = RefCell::new([Breaker::default(); 3]);
}

fn with<R>(dep: Dep, f: impl FnOnce(&mut Breaker) -> R) -> R {
    BREAKERS.with(|b| f(&mut b.borrow_mut()[dep as usize]))
}

/// Whether a call to `dep` may go ahead now.
pub fn allow(dep: Dep, now_ms: u64) -> bool {
    with(dep, |b| b.allow(now_ms))
}

/// Records a success of `dep`.
pub fn success(dep: Dep) {
    with(dep, Breaker::success)
}

/// Records a failure of `dep`.
pub fn failure(dep: Dep, now_ms: u64, threshold: u32, cooldown_ms: u64) {
    with(dep, |b| b.failure(now_ms, threshold, cooldown_ms))
}

/// Snapshot for /v1/health.
pub fn snapshot() -> serde_json::Value {
    BREAKERS.with(|b| {
        let b = b.borrow();
        serde_json::json!({"session_kv": b[0], "config_kv": b[1], "collector": b[2]})
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_at_the_threshold_for_the_cool_down_then_lets_one_trial_through() {
        let mut b = Breaker::default();
        b.failure(1_000, 3, 5_000);
        b.failure(1_100, 3, 5_000);
        assert!(b.allow(1_200), "two failures of three: still closed");
        b.failure(1_200, 3, 5_000);
        assert_eq!((b.opened, b.open_until_ms), (1, 6_200));
        assert!(!b.allow(1_201));
        assert!(!b.allow(6_199));
        assert!(b.allow(6_200), "half-open after the cool-down");
        // The trial fails: open again for a whole cool-down, counted as a new opening.
        b.failure(6_300, 3, 5_000);
        assert_eq!((b.opened, b.open_until_ms), (2, 11_300));
        assert!(!b.allow(11_000));
        // A failure while open extends it without counting another opening.
        b.failure(7_000, 3, 5_000);
        assert_eq!((b.opened, b.open_until_ms), (2, 12_000));
        // The next trial succeeds: closed, and the count starts over.
        b.success();
        assert!(b.allow(12_000));
        b.failure(12_100, 3, 5_000);
        assert!(
            b.allow(12_200),
            "one failure after closing does not reopen it"
        );
    }

    #[test]
    fn a_zero_threshold_means_one_and_dependencies_are_separate() {
        let mut b = Breaker::default();
        b.failure(10, 0, 100);
        assert!(!b.allow(50));
        failure(Dep::Collector, 10, 1, 100);
        assert!(!allow(Dep::Collector, 50));
        assert!(
            allow(Dep::ConfigKv, 50),
            "another dependency is not affected"
        );
        success(Dep::Collector);
        assert!(allow(Dep::Collector, 50));
    }

    #[test]
    fn the_snapshot_names_each_dependency_s_breaker() {
        failure(Dep::Collector, 1_000, 1, 500);
        let s = snapshot();
        assert_eq!(s["collector"]["opened"], 1);
        assert_eq!(s["collector"]["open_until_ms"], 1_500);
        assert_eq!(s["session_kv"]["failures"], 0);
        assert_eq!(s["config_kv"]["opened"], 0);
    }
}
