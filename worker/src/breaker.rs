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

thread_local! {
    static BREAKERS: RefCell<[Breaker; 3]> = RefCell::new([Breaker::default(); 3]);
}

fn with<R>(dep: Dep, f: impl FnOnce(&mut Breaker) -> R) -> R {
    BREAKERS.with(|b| f(&mut b.borrow_mut()[dep as usize]))
}

/// Whether a call may go ahead now.
pub fn allow(dep: Dep, now_ms: u64) -> bool {
    with(dep, |b| b.open_until_ms == 0 || now_ms >= b.open_until_ms)
}

/// Records a success (closes the breaker).
pub fn success(dep: Dep) {
    with(dep, |b| {
        b.failures = 0;
        b.open_until_ms = 0;
    })
}

/// Records a failure; opens the breaker at the threshold.
pub fn failure(dep: Dep, now_ms: u64, threshold: u32, cooldown_ms: u64) {
    with(dep, |b| {
        b.failures = b.failures.saturating_add(1);
        if b.failures >= threshold.max(1) {
            if b.open_until_ms == 0 || now_ms >= b.open_until_ms {
                b.opened += 1;
            }
            b.open_until_ms = now_ms + cooldown_ms;
        }
    })
}

/// Snapshot for /v1/health.
pub fn snapshot() -> serde_json::Value {
    BREAKERS.with(|b| {
        let b = b.borrow();
        serde_json::json!({"session_kv": b[0], "config_kv": b[1], "collector": b[2]})
    })
}
