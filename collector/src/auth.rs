//! Who may send batches: the signed-request check is the core's
//! ([`edgerec::aggregate::verify_signed_batch`]), the same contract the edge signs with; this
//! module names it for the collector.

pub use edgerec::aggregate::{
    batch_signature as sign, verify_signed_batch as verify, SignatureError as AuthError,
};

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
