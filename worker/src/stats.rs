//! Isolate-local counters, served at `GET /v1/stats` (and read by tests and the dashboard).
//! They reset when the isolate is evicted; the durable numbers are the aggregates shipped to
//! the collector.

use std::cell::RefCell;
use std::collections::BTreeMap;

thread_local! {
    static COUNTERS: RefCell<BTreeMap<&'static str, u64>> = const { RefCell::new(BTreeMap::new()) };
}

/// Adds `n` to a counter.
pub fn add(name: &'static str, n: u64) {
    COUNTERS.with(|c| *c.borrow_mut().entry(name).or_insert(0) += n);
}

/// Adds one to a counter.
pub fn inc(name: &'static str) {
    add(name, 1);
}

/// A counter's value.
pub fn get(name: &'static str) -> u64 {
    COUNTERS.with(|c| c.borrow().get(name).copied().unwrap_or(0))
}

/// All counters.
pub fn snapshot() -> serde_json::Value {
    COUNTERS.with(|c| serde_json::json!(*c.borrow()))
}
