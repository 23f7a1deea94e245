//! A whole decision from outside input: events JSON (as the edge gets them) plus a context
//! and a stored blob split from the input (`<events>\0<blob>`).
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let (events, blob) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let engine = common::engine();
    let Ok(events) = edgerec::event::parse_events_json(events, common::NOW, engine.config().time)
    else {
        return;
    };
    let d = engine.decide(&edgerec::DecideRequest {
        state: blob,
        events: &events,
        context: edgerec::Context {
            session_id: Some("fuzz".into()),
            ..Default::default()
        },
        now_ms: common::NOW,
        limit: 10,
        tier: Some(edgerec::Tier::Full),
        trace: None,
    });
    assert!(d.items.len() <= 10);
    if d.rejected.is_empty() {
        assert!(u64::from(d.accepted) + u64::from(d.duplicates) <= events.len() as u64);
    }
});
