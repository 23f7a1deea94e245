//! Time: the clock and deadlines. Every call to KV or the collector on the request path runs
//! under a budget; a blown budget counts as a failure for the circuit breaker and the request
//! falls back to a cheaper tier instead of waiting.

use futures_util::future::{select, Either};
use std::future::Future;
use std::time::Duration;

/// Now, Unix ms.
pub fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

/// Runs `fut` for at most `ms`; `None` when the deadline passed first.
pub async fn within<F: Future>(ms: u64, fut: F) -> Option<F::Output> {
    let fut = std::pin::pin!(fut);
    let delay = worker::Delay::from(Duration::from_millis(ms));
    match select(fut, delay).await {
        Either::Left((out, _)) => Some(out),
        Either::Right(_) => None,
    }
}
