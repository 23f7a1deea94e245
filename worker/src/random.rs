//! Randomness from the runtime's `crypto.getRandomValues` (session and batch ids).

use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = crypto, js_name = getRandomValues, catch)]
    fn get_random_values(buf: &mut [u8]) -> Result<JsValue, JsValue>;
}

/// Fills `buf` with random bytes. Falls back to the clock mixed by a hash when the runtime
/// refuses (never expected in workerd; ids then stay unique, not unpredictable).
pub fn fill(buf: &mut [u8]) {
    #[cfg(target_arch = "wasm32")]
    if get_random_values(buf).is_ok() {
        return;
    }
    let mut x = crate::budget::now_ms() ^ 0x9e37_79b9_7f4a_7c15 ^ (buf.as_ptr() as u64);
    for b in buf.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

/// A random hex id of `n` bytes.
pub fn hex_id(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
