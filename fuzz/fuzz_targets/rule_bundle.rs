//! Rule bundles as published (JSON): compiled or refused with a path, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = edgerec::rules::compile_json(text, 24 * 3600 * 1000);
    }
});
