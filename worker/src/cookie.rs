//! Session identity and the hot copy, both carried in HMAC-signed cookies.
//!
//! - `edgerec_sid=<id>.<sig>`: the session id. Missing, malformed or forged → a new session
//!   and a fresh cookie. Server-to-server clients are named in [`crate::identity`].
//! - `edgerec_hot=<blob>.<written_ms>.<sig>`: the newest session blob (base64url) with the time
//!   it was written, signed together with the session id. KV allows one write per second per
//!   key and is eventually consistent; the hot copy gives a shopper read-your-writes anyway:
//!   whichever of cookie and KV was written later wins.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Session cookie name.
pub const SID_COOKIE: &str = "edgerec_sid";
/// Hot-copy cookie name.
pub const HOT_COOKIE: &str = "edgerec_hot";
/// Header for server-to-server session ids.
pub const SID_HEADER: &str = "x-edgerec-session";

/// HMAC-SHA256 over length-prefixed parts (so `["ab","c"]` and `["a","bc"]` differ).
fn mac(secret: &str, parts: &[&[u8]]) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    for p in parts {
        mac.update(&(p.len() as u32).to_be_bytes());
        mac.update(p);
    }
    Some(mac)
}

fn sign(secret: &str, parts: &[&[u8]]) -> String {
    mac(secret, parts).map_or_else(String::new, |m| B64.encode(m.finalize().into_bytes()))
}

fn verify(secret: &str, parts: &[&[u8]], sig: &str) -> bool {
    let Ok(given) = B64.decode(sig) else {
        return false;
    };
    mac(secret, parts).is_some_and(|m| m.verify_slice(&given).is_ok())
}

/// Finds a cookie value in a `Cookie` header.
pub fn find<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// Whether a session id is acceptable (what we mint: 22 base64url characters; clients may send
/// their own ids through the header, 8–64 of `[A-Za-z0-9_-]`).
pub fn valid_id(id: &str) -> bool {
    (8..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A new random session id (16 bytes from the runtime's CSPRNG; no fallback).
pub fn new_id() -> Result<String, crate::random::NoRandomness> {
    let mut bytes = [0u8; 16];
    crate::random::fill(&mut bytes)?;
    Ok(B64.encode(bytes))
}

/// The experiment unit of a session key: a keyed hash, stable per session, that reveals
/// nothing about the id (16 hex digits).
pub fn unit(secret: &str, key: &str) -> String {
    let bytes = mac(secret, &[b"unit", key.as_bytes()])
        .map(|m| m.finalize().into_bytes())
        .unwrap_or_default();
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Whether `given` equals `expected`, compared as HMACs so the time taken says nothing about
/// how much of it matched.
pub fn same_secret(secret: &str, expected: &str, given: &str) -> bool {
    let want = sign(secret, &[b"key", expected.as_bytes()]);
    verify(secret, &[b"key", given.as_bytes()], &want)
}

/// The signed cookie value for a session id.
pub fn sid_value(secret: &str, id: &str) -> String {
    format!("{id}.{}", sign(secret, &[b"sid", id.as_bytes()]))
}

/// The session id in a signed cookie value, if the signature holds.
pub fn parse_sid(secret: &str, value: &str) -> Option<String> {
    let (id, sig) = value.rsplit_once('.')?;
    (valid_id(id) && verify(secret, &[b"sid", id.as_bytes()], sig)).then(|| id.to_string())
}

/// The signed hot-copy cookie value: the blob with the time it was written. A replayed older
/// copy is recognised by that time (see [`crate::store::load`]).
pub fn hot_value(secret: &str, sid: &str, blob: &[u8], written_ms: u64) -> String {
    let at = written_ms.to_string();
    let sig = sign(secret, &[b"hot", sid.as_bytes(), blob, at.as_bytes()]);
    format!("{}.{at}.{sig}", B64.encode(blob))
}

/// The blob and its write time from a hot-copy cookie, if it is this session's and unforged.
pub fn parse_hot(secret: &str, sid: &str, value: &str) -> Option<(Vec<u8>, u64)> {
    let mut parts = value.split('.');
    let (blob, at, sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || blob.len() > 4096 {
        return None;
    }
    let blob = B64.decode(blob).ok()?;
    let written: u64 = at.parse().ok()?;
    verify(secret, &[b"hot", sid.as_bytes(), &blob, at.as_bytes()], sig).then_some((blob, written))
}

/// A `Set-Cookie` header value.
pub fn set_cookie(name: &str, value: &str, max_age_s: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; Max-Age={max_age_s}; HttpOnly; SameSite=Lax{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sid_round_trip_and_forgery() {
        let v = sid_value("k", "abcdefgh12345678");
        assert_eq!(parse_sid("k", &v).as_deref(), Some("abcdefgh12345678"));
        assert_eq!(parse_sid("other", &v), None);
        assert_eq!(parse_sid("k", "abcdefgh12345679.x"), None);
        assert_eq!(parse_sid("k", "no-dot"), None);
        let tampered = v.replace("abcdefgh", "abcdefgX");
        assert_eq!(parse_sid("k", &tampered), None);
    }

    #[test]
    fn hot_copy_is_bound_to_its_session() {
        let v = hot_value("k", "sid-aaaaaaaa", &[1, 2, 3], 42);
        assert_eq!(
            parse_hot("k", "sid-aaaaaaaa", &v),
            Some((vec![1, 2, 3], 42))
        );
        assert_eq!(parse_hot("k", "sid-bbbbbbbb", &v), None);
        assert_eq!(parse_hot("k", "sid-aaaaaaaa", "a.b"), None);
    }

    #[test]
    fn units_and_keys() {
        let u = unit("k", "s:abcdefgh");
        assert_eq!(u.len(), 16);
        assert_ne!(u, unit("k", "h:abcdefgh"), "key spaces differ");
        assert_ne!(u, unit("k2", "s:abcdefgh"));
        assert!(same_secret("k", "api-key-1", "api-key-1"));
        assert!(!same_secret("k", "api-key-1", "api-key-2"));
        assert!(!same_secret("k", "api-key-1", ""));
    }

    #[test]
    fn finds_cookies() {
        let h = "a=1; edgerec_sid=xyz.sig; b=2";
        assert_eq!(find(h, SID_COOKIE), Some("xyz.sig"));
        assert_eq!(find(h, "c"), None);
        assert!(valid_id("abcdEFGH-_12"));
        assert!(!valid_id("short"));
        assert!(!valid_id("has space in it"));
    }
}
