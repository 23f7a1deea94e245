//! `POST /v1/browser-decisions` bodies: parsed and checked against the live bundle.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Report {
    id: String,
    delta: edgerec::AggregateDelta,
}

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = serde_json::from_slice::<Report>(data) {
        let _ = common::engine().check_browser_report(&r.delta);
    }
});
