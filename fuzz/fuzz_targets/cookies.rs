//! The worker's cookies and request URL: `Cookie` headers, signed session ids, hot copies
//! (`<blob>.<ms>.<sig>`), URLs. Forged input is refused, never a panic; a value the worker
//! signed is always accepted back.
#![no_main]
use libfuzzer_sys::fuzz_target;

// The worker's own sources, as the edge runs them.
#[allow(dead_code)]
#[path = "../../worker/src/cookie.rs"]
mod cookie;
#[allow(dead_code)]
#[path = "../../worker/src/target.rs"]
mod target;

/// What cookie.rs imports from the worker crate: the CSPRNG (not reached by this target).
mod random {
    /// No randomness here.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
    #[error("no random bytes")]
    pub struct NoRandomness;

    /// Never called by the target (it parses and signs, it does not mint ids).
    pub fn fill(_buf: &mut [u8]) -> Result<(), NoRandomness> {
        Err(NoRandomness)
    }
}

const SECRET: &str = "fuzz-session-secret";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(v) = cookie::find(text, cookie::SID_COOKIE) {
        if let Some(sid) = cookie::parse_sid(SECRET, v) {
            assert!(cookie::valid_id(&sid));
        }
    }
    let _ = cookie::parse_sid(SECRET, text);
    let _ = cookie::parse_hot(SECRET, "fuzz-session-0001", text);
    if cookie::valid_id(text) {
        let signed = cookie::sid_value(SECRET, text);
        assert_eq!(cookie::parse_sid(SECRET, &signed).as_deref(), Some(text));
        let hot = cookie::hot_value(SECRET, text, data, 42);
        if data.len() <= 3000 {
            assert_eq!(
                cookie::parse_hot(SECRET, text, &hot),
                Some((data.to_vec(), 42))
            );
        }
    }
    assert_eq!(cookie::unit(SECRET, text).len(), 16);
    assert!(cookie::same_secret(SECRET, text, text));
    let t = target::Target::parse(text);
    assert!(t.path.starts_with('/'));
    let _ = t.query_pairs().count();
});
