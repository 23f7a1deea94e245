//! Experiments: deterministic bucketing of a session into a variant.
//!
//! The rule, so any host (edge, browser, a report job in another language) agrees:
//! `h = FNV-1a-64(utf8(salt) ++ [0x00] ++ utf8(session_id))`, `bucket = h mod 10000`; walk the
//! variants in bundle order and pick the first whose cumulative share
//! `floor(10000 * cumulative_weight / total_weight)` exceeds `bucket`.
//! FNV-1a-64: offset basis 0xcbf29ce484222325, prime 0x100000001b3, xor then multiply per byte.

pub mod metrics;
pub mod report;
pub mod stats;

use crate::rules::bundle::Experiment;

/// Buckets per experiment (resolution 0.01%).
pub const BUCKETS: u64 = 10_000;

/// FNV-1a, 64 bit.
pub fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// The session's bucket in `0..BUCKETS` for a salt.
pub fn bucket(salt: &str, session_id: &str) -> u64 {
    fnv1a64(&[salt.as_bytes(), session_id.as_bytes()]) % BUCKETS
}

/// The variant a session is in.
pub fn assign<'a>(exp: &'a Experiment, session_id: &str) -> Option<&'a str> {
    let total: u64 = exp.variants.iter().map(|v| u64::from(v.weight)).sum();
    if total == 0 {
        return None;
    }
    let b = bucket(&exp.salt, session_id);
    let mut cumulative = 0u64;
    for v in &exp.variants {
        cumulative += u64::from(v.weight);
        if b < BUCKETS * cumulative / total {
            return Some(&v.name);
        }
    }
    exp.variants.last().map(|v| v.name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::bundle::Variant;

    #[test]
    fn known_vectors() {
        // Published FNV-1a-64 test vectors.
        assert_eq!(fnv1a64(&[b""]), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(&[b"a"]), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(&[b"foobar"]), 0x85944171f73967e8);
        // The separator is a zero byte.
        assert_eq!(fnv1a64(&[b"a", b"b"]), fnv1a64(&[b"a\0b"]));
    }

    #[test]
    fn split_follows_weights() {
        let exp = Experiment {
            id: "e".into(),
            salt: "s1".into(),
            primary: None,
            guardrails: Vec::new(),
            variants: vec![
                Variant {
                    name: "control".into(),
                    feedback: None,
                    weight: 1,
                },
                Variant {
                    name: "treatment".into(),
                    feedback: None,
                    weight: 3,
                },
            ],
        };
        let n = 20_000;
        let t = (0..n)
            .filter(|i| assign(&exp, &format!("session-{i}")) == Some("treatment"))
            .count();
        let share = t as f64 / n as f64;
        assert!((0.73..0.77).contains(&share), "{share}");
        // Buckets computed by hand (an independent FNV-1a-64 in Python, per the module docs);
        // control takes buckets 0..floor(10000 × 1/4) = 0..2500.
        for (sid, b, variant) in [
            ("abc", 2309, "control"),
            ("session-42015", 0, "control"),
            ("session-12767", 2499, "control"),
            ("session-3698", 2500, "treatment"),
            ("session-193", 9999, "treatment"),
        ] {
            assert_eq!(bucket("s1", sid), b, "{sid}");
            assert_eq!(assign(&exp, sid), Some(variant), "{sid}");
        }
        let none = Experiment {
            variants: vec![Variant {
                name: "off".into(),
                feedback: None,
                weight: 0,
            }],
            ..exp
        };
        assert_eq!(assign(&none, "abc"), None, "no weight, no variant");
        // Three variants 1:1:2 → buckets 0..2500, 2500..5000, 5000..10000.
        let three = Experiment {
            variants: ["a", "b", "c"]
                .iter()
                .zip([1, 1, 2])
                .map(|(n, w)| Variant {
                    name: (*n).into(),
                    feedback: None,
                    weight: w,
                })
                .collect(),
            ..none
        };
        for (sid, variant) in [
            ("session-12767", "a"), // 2499
            ("session-3698", "b"),  // 2500
            ("abc", "a"),           // 2309
            ("session-193", "c"),   // 9999
        ] {
            assert_eq!(assign(&three, sid), Some(variant), "{sid}");
        }
    }
}
