//! The worker's cookies and request URL: `Cookie` headers, signed session ids, hot copies
//! (`<blob>.<ms>.<sig>`), URLs. Forged input is refused, never a panic; a value the worker
//! signed is always accepted back.
#![no_main]
use edgerec_worker::cookie;
use libfuzzer_sys::fuzz_target;

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
    let t = edgerec_worker::target::Target::parse(text);
    assert!(t.path.starts_with('/'));
    let _ = t.query_pairs().count();
});
