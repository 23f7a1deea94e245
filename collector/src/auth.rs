//! Who may send batches: `x-edgerec-signature: v1=<hex HMAC-SHA256(secret, "<ts>." ++ body)>`
//! with `x-edgerec-timestamp: <unix ms>` inside the skew window (replay protection: a captured
//! request stops working after `MAX_SKEW_MS`; within it, the batch-id dedup drops replays).

use edgerec::aggregate::{batch_signature, batch_signature_matches};

/// Why a request is not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Header missing or malformed.
    #[error("missing or malformed {0}")]
    Malformed(&'static str),
    /// The signature does not match.
    #[error("bad signature")]
    BadSignature,
    /// The timestamp is outside the skew window.
    #[error("timestamp outside the {max_ms} ms skew window")]
    Skew {
        /// The window.
        max_ms: u64,
    },
}

impl AuthError {
    /// Short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Malformed(_) => "unsigned",
            AuthError::BadSignature => "bad_signature",
            AuthError::Skew { .. } => "skew",
        }
    }
}

/// The signature the edge sends for `body` at `ts` (defined once, in the core).
pub fn sign(secret: &str, ts: u64, body: &[u8]) -> String {
    batch_signature(secret, ts, body)
}

/// Checks timestamp and signature headers against the body.
pub fn verify(
    secret: &str,
    ts_header: Option<&str>,
    sig_header: Option<&str>,
    body: &[u8],
    now_ms: u64,
    max_skew_ms: u64,
) -> Result<(), AuthError> {
    let ts: u64 = ts_header
        .and_then(|t| t.trim().parse().ok())
        .ok_or(AuthError::Malformed("x-edgerec-timestamp"))?;
    let sig = sig_header
        .and_then(|s| s.trim().strip_prefix("v1="))
        .and_then(|h| hex::decode(h).ok())
        .ok_or(AuthError::Malformed("x-edgerec-signature"))?;
    if !batch_signature_matches(secret, ts, body, &sig) {
        return Err(AuthError::BadSignature);
    }
    if now_ms.abs_diff(ts) > max_skew_ms {
        return Err(AuthError::Skew {
            max_ms: max_skew_ms,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_and_skew() {
        let sig = sign("k", 1000, b"body");
        assert_eq!(
            verify("k", Some("1000"), Some(&sig), b"body", 1000, 10),
            Ok(())
        );
        assert_eq!(
            verify("x", Some("1000"), Some(&sig), b"body", 1000, 10),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify("k", Some("1000"), Some(&sig), b"bodY", 1000, 10),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify("k", Some("1000"), Some(&sig), b"body", 2000, 10),
            Err(AuthError::Skew { max_ms: 10 })
        );
        assert!(matches!(
            verify("k", None, Some(&sig), b"body", 1000, 10),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            verify("k", Some("1000"), Some("v2=00"), b"body", 1000, 10),
            Err(AuthError::Malformed(_))
        ));
    }
}
