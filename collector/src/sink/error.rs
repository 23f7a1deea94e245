//! The one error a sink reports.

/// Why records could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The destination is unavailable; the caller answers 503 and the edge retries.
    #[error("sink unavailable: {0}")]
    Unavailable(String),
}
