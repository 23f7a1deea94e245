//! `POST /v1/events` bodies as MessagePack.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = edgerec::EngineConfig::default().time;
    let _ = edgerec::event::parse_events_msgpack(data, 1_764_201_600_000, limits);
});
