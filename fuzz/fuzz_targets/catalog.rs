//! Catalogs and model snapshots (MessagePack snapshot, or JSON): loaded or refused.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = edgerec::catalog::Catalog::from_snapshot(data) {
        let again = c.to_snapshot();
        assert!(edgerec::catalog::Catalog::from_snapshot(&again).is_ok());
    }
    let _ = edgerec::catalog::Catalog::from_json(data);
});
