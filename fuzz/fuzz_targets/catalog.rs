//! Catalogs (JSON) and the published model (head, item shards): loaded or refused, never a
//! panic; a catalog that loads publishes into a head and shards that load again.
#![no_main]
use edgerec::model::{build, Head, Shard};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Head::decode(data);
    let _ = Shard::decode(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Shard::decode_stored(text);
    }
    if let Ok(c) = edgerec::catalog::Catalog::from_json(data) {
        assert!(build::in_memory(&c).is_ok(), "a valid catalog publishes");
    }
});
