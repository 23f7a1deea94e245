//! Session blobs (KV, the hot cookie, the browser's localStorage): a blob that decodes must
//! survive a round trip and a decision.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let cfg = edgerec::EngineConfig::default().session;
    if let Ok(mut state) = edgerec::SessionState::decode(data, &cfg) {
        let again = state.encode_capped(&cfg);
        assert!(again.len() <= cfg.max_bytes, "the byte cap holds");
        assert!(
            edgerec::SessionState::decode(&again, &cfg).is_ok(),
            "re-encoded blobs decode"
        );
    }
    let d = common::engine().decide(&edgerec::DecideRequest {
        state: Some(data),
        now_ms: common::NOW,
        limit: 5,
        ..Default::default()
    });
    assert!(d.items.len() <= 5);
});
