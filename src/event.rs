//! Events: what a shopper did, as the hosts receive it.
//!
//! Hosts hand the core raw JSON (or MessagePack); [`parse_events_json`] and
//! [`parse_events_msgpack`] turn it into typed [`Event`]s and reject bad input with a
//! [`ValidationErrors`] naming every offending field (`events[3].ts`), so a host can answer
//! HTTP 400 with a body a developer can act on. Nothing partial is returned: a batch is either
//! entirely valid or entirely rejected.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::error::FieldError;

/// Longest accepted item or category id, in bytes.
pub const MAX_ID_LEN: usize = 128;
/// Most events accepted in one batch.
pub const MAX_EVENTS_PER_BATCH: usize = 500;

/// What the shopper did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum EventKind {
    /// A product page or tile was looked at.
    View = 0,
    /// A product link was clicked.
    Click = 1,
    /// The product went into the cart.
    AddToCart = 2,
    /// The product was bought.
    Purchase = 3,
    /// The product was shown to the shopper (e.g. in a recommendation slot).
    Impression = 4,
}

impl EventKind {
    /// Every kind, in wire-code order.
    pub const ALL: [EventKind; 5] = [
        EventKind::View,
        EventKind::Click,
        EventKind::AddToCart,
        EventKind::Purchase,
        EventKind::Impression,
    ];

    /// The JSON name (`add_to_cart`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::View => "view",
            EventKind::Click => "click",
            EventKind::AddToCart => "add_to_cart",
            EventKind::Purchase => "purchase",
            EventKind::Impression => "impression",
        }
    }

    /// Parses the JSON name.
    pub fn parse(s: &str) -> Option<EventKind> {
        Some(match s {
            "view" => EventKind::View,
            "click" => EventKind::Click,
            "add_to_cart" => EventKind::AddToCart,
            "purchase" => EventKind::Purchase,
            "impression" => EventKind::Impression,
            _ => return None,
        })
    }

    /// The compact code stored in session blobs.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Inverse of [`EventKind::code`].
    pub fn from_code(c: u8) -> Option<EventKind> {
        EventKind::ALL.get(c as usize).copied()
    }

    /// Whether this kind is a shopper's own interaction (everything but impressions).
    pub fn is_interaction(self) -> bool {
        self != EventKind::Impression
    }
}

/// One validated user action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// The item it happened to.
    pub item: String,
    /// The item's category, when the client knows it (else the catalog's is used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Unit price, for cart value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    /// Quantity, for add_to_cart and purchase (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<u32>,
    /// When it happened, Unix milliseconds.
    pub ts: u64,
    /// Client sequence number; an event whose seq is not above the session's highest is a
    /// duplicate delivery and is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// For an impression or a click of a recommended item: the item whose related list put
    /// it there (the slot markup's `data-edgerec-from`), for the trainer's exposure feedback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// With `from`: its 0-based position in the slot (`data-edgerec-pos`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pos: Option<u32>,
}

impl Event {
    /// A plain event with no optional fields, handy for tests and tools.
    pub fn new(kind: EventKind, item: impl Into<String>, ts: u64) -> Event {
        Event {
            kind,
            item: item.into(),
            category: None,
            price: None,
            quantity: None,
            ts,
            seq: None,
            from: None,
            pos: None,
        }
    }

    /// Where a recommended item was shown, for an impression or click that says so.
    pub fn shown(&self) -> Option<(&str, u32)> {
        Some((self.from.as_deref()?, self.pos?))
    }
}

/// Largest accepted `pos` (slots hold at most 50 items).
pub const MAX_POS: u32 = 63;

/// How far from `now` an event's timestamp may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeLimits {
    /// Largest accepted clock skew into the future, ms.
    pub max_future_ms: u64,
    /// Oldest accepted event age, ms.
    pub max_past_ms: u64,
}

impl Default for TimeLimits {
    fn default() -> Self {
        TimeLimits {
            max_future_ms: 5 * 60 * 1000,
            max_past_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

/// Every problem found in a rejected batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("invalid events: {}", crate::error::join(.errors))]
pub struct ValidationErrors {
    /// The individual problems, in input order (at most 50 are listed).
    pub errors: Vec<FieldError>,
}

const MAX_LISTED_ERRORS: usize = 50;

struct Collector {
    errors: Vec<FieldError>,
}

impl Collector {
    fn push(&mut self, field: String, message: impl Into<String>) {
        if self.errors.len() < MAX_LISTED_ERRORS {
            self.errors.push(FieldError {
                field,
                message: message.into(),
            });
        }
    }
}

/// Parses and validates `{"events":[...]}` (or a bare array) from JSON bytes.
pub fn parse_events_json(
    body: &[u8],
    now_ms: u64,
    limits: TimeLimits,
) -> Result<Vec<Event>, ValidationErrors> {
    let value: Value = serde_json::from_slice(body).map_err(|e| single("body", e.to_string()))?;
    events_from_value(&value, now_ms, limits)
}

/// Parses and validates the same document encoded as MessagePack.
pub fn parse_events_msgpack(
    body: &[u8],
    now_ms: u64,
    limits: TimeLimits,
) -> Result<Vec<Event>, ValidationErrors> {
    let value: Value = rmp_serde::from_slice(body).map_err(|e| single("body", e.to_string()))?;
    events_from_value(&value, now_ms, limits)
}

fn single(field: &str, message: String) -> ValidationErrors {
    ValidationErrors {
        errors: vec![FieldError {
            field: field.to_string(),
            message,
        }],
    }
}

/// Validates an already-parsed document (`{"events":[...]}` or `[...]`).
pub fn events_from_value(
    value: &Value,
    now_ms: u64,
    limits: TimeLimits,
) -> Result<Vec<Event>, ValidationErrors> {
    let list = match value {
        Value::Array(a) => a,
        Value::Object(o) => match o.get("events") {
            Some(Value::Array(a)) => a,
            Some(_) => return Err(single("events", "must be an array".into())),
            None => return Err(single("events", "missing".into())),
        },
        _ => {
            return Err(single(
                "body",
                "expected an object with an events array".into(),
            ))
        }
    };
    if list.is_empty() {
        return Err(single("events", "must not be empty".into()));
    }
    if list.len() > MAX_EVENTS_PER_BATCH {
        return Err(single(
            "events",
            format!("at most {MAX_EVENTS_PER_BATCH} events per batch"),
        ));
    }
    let mut c = Collector { errors: Vec::new() };
    let mut out = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        if let Some(e) = event_from_value(v, i, now_ms, limits, &mut c) {
            out.push(e);
        }
    }
    if c.errors.is_empty() {
        Ok(out)
    } else {
        Err(ValidationErrors { errors: c.errors })
    }
}

fn event_from_value(
    v: &Value,
    i: usize,
    now_ms: u64,
    limits: TimeLimits,
    c: &mut Collector,
) -> Option<Event> {
    let at = |f: &str| format!("events[{i}].{f}");
    let Value::Object(o) = v else {
        c.push(format!("events[{i}]"), "must be an object");
        return None;
    };
    let before = c.errors.len();
    for key in o.keys() {
        if !matches!(
            key.as_str(),
            "type" | "item" | "category" | "price" | "quantity" | "ts" | "seq" | "from" | "pos"
        ) {
            c.push(at(key), "unknown field");
        }
    }
    let kind = match o.get("type") {
        Some(Value::String(s)) => match EventKind::parse(s) {
            Some(k) => Some(k),
            None => {
                c.push(
                    at("type"),
                    format!("unknown kind {s:?} (view, click, add_to_cart, purchase, impression)"),
                );
                None
            }
        },
        Some(_) => {
            c.push(at("type"), "must be a string");
            None
        }
        None => {
            c.push(at("type"), "missing");
            None
        }
    };
    let item = id_field(o.get("item"), &at("item"), true, c);
    let category = id_field(o.get("category"), &at("category"), false, c);
    let price = match o.get("price") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(p) if p.is_finite() && (0.0..=1e12).contains(&p) => Some(p),
            _ => {
                c.push(at("price"), "must be a finite number from 0 to 1e12");
                None
            }
        },
        Some(_) => {
            c.push(at("price"), "must be a number");
            None
        }
    };
    let quantity = match o.get("quantity") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(q) if (1..=10_000).contains(&q) => Some(q as u32),
            _ => {
                c.push(at("quantity"), "must be an integer from 1 to 10000");
                None
            }
        },
        Some(_) => {
            c.push(at("quantity"), "must be an integer");
            None
        }
    };
    let ts = match o.get("ts") {
        Some(Value::Number(n)) => match n.as_u64() {
            Some(ts) if ts > now_ms.saturating_add(limits.max_future_ms) => {
                c.push(
                    at("ts"),
                    format!(
                        "{ts} is more than {} ms in the future",
                        limits.max_future_ms
                    ),
                );
                None
            }
            Some(ts) if ts < now_ms.saturating_sub(limits.max_past_ms) => {
                c.push(
                    at("ts"),
                    format!("{ts} is more than {} ms in the past", limits.max_past_ms),
                );
                None
            }
            Some(ts) => Some(ts),
            None => {
                c.push(at("ts"), "must be a non-negative integer (Unix ms)");
                None
            }
        },
        Some(_) => {
            c.push(at("ts"), "must be an integer (Unix ms)");
            None
        }
        None => {
            c.push(at("ts"), "missing");
            None
        }
    };
    let seq = match o.get("seq") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(s) => Some(s),
            None => {
                c.push(at("seq"), "must be a non-negative integer");
                None
            }
        },
        Some(_) => {
            c.push(at("seq"), "must be an integer");
            None
        }
    };
    let from = id_field(o.get("from"), &at("from"), false, c);
    let pos = match o.get("pos") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(p) if p <= u64::from(MAX_POS) => Some(p as u32),
            _ => {
                c.push(at("pos"), format!("must be an integer from 0 to {MAX_POS}"));
                None
            }
        },
        Some(_) => {
            c.push(at("pos"), "must be an integer");
            None
        }
    };
    let placed =
        o.get("from").is_some_and(|v| !v.is_null()) || o.get("pos").is_some_and(|v| !v.is_null());
    if placed {
        if !matches!(kind, Some(EventKind::Impression | EventKind::Click)) && kind.is_some() {
            c.push(
                at("from"),
                "only impressions and clicks say where an item was shown",
            );
        } else if from.is_none() != pos.is_none() && c.errors.len() == before {
            c.push(
                at(if from.is_none() { "from" } else { "pos" }),
                "from and pos come together",
            );
        }
    }
    if c.errors.len() != before {
        return None;
    }
    Some(Event {
        kind: kind?,
        item: item?,
        category,
        price,
        quantity,
        ts: ts?,
        seq,
        from,
        pos,
    })
}

/// Checks an id: present (when required), a non-empty string of at most [`MAX_ID_LEN`] bytes
/// without control characters.
fn id_field(v: Option<&Value>, field: &str, required: bool, c: &mut Collector) -> Option<String> {
    match v {
        None | Some(Value::Null) => {
            if required {
                c.push(field.to_string(), "missing");
            }
            None
        }
        Some(Value::String(s)) => match check_id(s) {
            Ok(()) => Some(s.clone()),
            Err(m) => {
                c.push(field.to_string(), m);
                None
            }
        },
        Some(_) => {
            c.push(field.to_string(), "must be a string");
            None
        }
    }
}

/// Why an id is unacceptable, if it is.
pub fn check_id(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        Err("must not be empty")
    } else if s.len() > MAX_ID_LEN {
        Err("longer than 128 bytes")
    } else if s.chars().any(char::is_control) {
        Err("contains control characters")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_764_201_600_000;

    fn parse(s: &str) -> Result<Vec<Event>, ValidationErrors> {
        parse_events_json(s.as_bytes(), NOW, TimeLimits::default())
    }

    #[test]
    fn accepts_a_valid_batch() {
        let ev = parse(&format!(
            r#"{{"events":[{{"type":"view","item":"sku-1","ts":{NOW}}},
            {{"type":"add_to_cart","item":"sku-2","category":"shoes","price":19.5,"quantity":2,"ts":{NOW},"seq":7}}]}}"#
        ))
        .unwrap();
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[1].kind, EventKind::AddToCart);
        assert_eq!(ev[1].price, Some(19.5));
        assert_eq!(ev[1].seq, Some(7));
    }

    #[test]
    fn names_every_bad_field() {
        let err = parse(&format!(
            r#"{{"events":[{{"type":"view","item":"a","ts":{NOW}}},
            {{"type":"teleport","item":"","ts":1}},
            {{"type":"view","item":"b","ts":{NOW},"price":-1,"extra":true}}]}}"#
        ))
        .unwrap_err();
        let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "events[1].type",
                "events[1].item",
                "events[1].ts",
                "events[2].extra",
                "events[2].price"
            ]
        );
    }

    #[test]
    fn rejects_garbage_and_shapes() {
        assert_eq!(parse("nope").unwrap_err().errors[0].field, "body");
        assert_eq!(parse("{}").unwrap_err().errors[0].field, "events");
        assert_eq!(
            parse(r#"{"events":[]}"#).unwrap_err().errors[0].field,
            "events"
        );
        assert_eq!(
            parse(r#"{"events":[3]}"#).unwrap_err().errors[0].field,
            "events[0]"
        );
        let future = NOW + 3_600_000;
        let e = parse(&format!(r#"[{{"type":"view","item":"a","ts":{future}}}]"#)).unwrap_err();
        assert!(e.errors[0].message.contains("future"));
        let long = "x".repeat(129);
        let e = parse(&format!(
            r#"[{{"type":"view","item":"{long}","ts":{NOW}}}]"#
        ))
        .unwrap_err();
        assert_eq!(e.errors[0].field, "events[0].item");
    }

    #[test]
    fn placement_comes_whole_on_impressions_and_clicks_only() {
        let ok = parse(&format!(
            r#"[{{"type":"impression","item":"b","from":"a","pos":0,"ts":{NOW}}},
            {{"type":"click","item":"b","from":"a","pos":63,"ts":{NOW}}}]"#
        ))
        .unwrap();
        assert_eq!(ok[0].shown(), Some(("a", 0)));
        assert_eq!(ok[1].shown(), Some(("a", 63)));
        for (body, field) in [
            (
                r#""type":"view","item":"b","from":"a","pos":1"#,
                "events[0].from",
            ),
            (r#""type":"click","item":"b","from":"a""#, "events[0].pos"),
            (r#""type":"click","item":"b","pos":1"#, "events[0].from"),
            (
                r#""type":"click","item":"b","from":"a","pos":64"#,
                "events[0].pos",
            ),
            (
                r#""type":"click","item":"b","from":"a","pos":-1"#,
                "events[0].pos",
            ),
            (
                r#""type":"click","item":"b","from":"","pos":1"#,
                "events[0].from",
            ),
            (
                r#""type":"click","item":"b","from":7,"pos":1"#,
                "events[0].from",
            ),
        ] {
            let e = parse(&format!(r#"[{{{body},"ts":{NOW}}}]"#)).unwrap_err();
            assert_eq!(e.errors.len(), 1, "{body}: {e:?}");
            assert_eq!(e.errors[0].field, field, "{body}");
        }
    }

    #[test]
    fn msgpack_matches_json() {
        let doc = serde_json::json!({"events":[{"type":"click","item":"sku-9","ts":NOW}]});
        let mp = rmp_serde::to_vec_named(&doc).unwrap();
        let a = parse_events_msgpack(&mp, NOW, TimeLimits::default()).unwrap();
        let b = events_from_value(&doc, NOW, TimeLimits::default()).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn timestamps_are_accepted_up_to_each_limit_and_refused_one_ms_past_it() {
        let l = TimeLimits::default();
        let one = |ts: u64| parse(&format!(r#"[{{"type":"view","item":"a","ts":{ts}}}]"#));
        assert!(one(NOW + l.max_future_ms).is_ok());
        assert_eq!(
            one(NOW + l.max_future_ms + 1).unwrap_err().errors[0].field,
            "events[0].ts"
        );
        assert!(one(NOW - l.max_past_ms).is_ok());
        assert_eq!(
            one(NOW - l.max_past_ms - 1).unwrap_err().errors[0].field,
            "events[0].ts"
        );
    }

    #[test]
    fn kinds_name_themselves_and_impressions_are_not_interactions() {
        let names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            ["view", "click", "add_to_cart", "purchase", "impression"]
        );
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
            assert_eq!(k.is_interaction(), k != EventKind::Impression);
        }
    }

    #[test]
    fn batch_size_id_length_and_listed_errors_are_bounded_at_their_edges() {
        let batch = |n: usize, item: &str| {
            let one = format!(r#"{{"type":"view","item":"{item}","ts":{NOW}}}"#);
            parse(&format!("[{}]", vec![one; n].join(",")))
        };
        assert_eq!(
            batch(MAX_EVENTS_PER_BATCH, "a").unwrap().len(),
            MAX_EVENTS_PER_BATCH
        );
        assert_eq!(
            batch(MAX_EVENTS_PER_BATCH + 1, "a").unwrap_err().errors[0].field,
            "events"
        );
        assert!(batch(1, &"x".repeat(MAX_ID_LEN)).is_ok());
        assert!(batch(1, &"x".repeat(MAX_ID_LEN + 1)).is_err());
        // 60 bad events: at most 50 errors listed.
        assert_eq!(batch(60, "").unwrap_err().errors.len(), 50);
    }
}
