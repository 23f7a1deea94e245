//! A collector request: timestamp and signature headers and a body, all from the input
//! (`<ts>\n<sig>\n<body>`), through the signature check and the decoder.
#![no_main]
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "fuzz-collector-secret";

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let ts = parts.next().and_then(|p| std::str::from_utf8(p).ok());
    let sig = parts.next().and_then(|p| std::str::from_utf8(p).ok());
    let body = parts.next().unwrap_or_default();
    let now = 1_764_201_600_000;
    let checked = edgerec::aggregate::verify_signed_batch(SECRET, ts, sig, body, now, 300_000);
    // Also the path a correctly signed request takes: the decoder behind the check.
    let signed = edgerec::aggregate::batch_signature(SECRET, now, body);
    assert!(edgerec::aggregate::verify_signed_batch(
        SECRET,
        Some(&now.to_string()),
        Some(&signed),
        body,
        now,
        0
    )
    .is_ok());
    if checked.is_ok() || body.len() < 4096 {
        let _ = edgerec::AggregateBatch::decode(body);
    }
});
