//! Aggregate batches as the collector receives them: a batch that decodes re-encodes to one
//! that decodes to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = edgerec::AggregateBatch::decode(data) {
        let again = edgerec::AggregateBatch::decode(&b.encode()).expect("round trip");
        assert_eq!(again, b);
    }
});
