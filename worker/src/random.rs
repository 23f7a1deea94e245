//! Randomness from the runtime's CSPRNG, `crypto.getRandomValues` (session and batch ids).
//! There is no fallback: an id that could be predicted would let one client guess another's
//! session, so when the runtime refuses, the caller fails (503) instead.

use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = crypto, js_name = getRandomValues, catch)]
    fn get_random_values(buf: &mut [u8]) -> Result<JsValue, JsValue>;
}

/// The runtime gave no random bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no random bytes from crypto.getRandomValues")]
pub struct NoRandomness;

/// Fills `buf` with random bytes from the runtime's CSPRNG.
pub fn fill(buf: &mut [u8]) -> Result<(), NoRandomness> {
    #[cfg(target_arch = "wasm32")]
    if get_random_values(buf).is_ok() {
        return Ok(());
    }
    let _ = buf;
    Err(NoRandomness)
}

/// A random hex id of `n` bytes.
pub fn hex_id(n: usize) -> Result<String, NoRandomness> {
    let mut bytes = vec![0u8; n];
    fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
