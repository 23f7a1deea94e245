//! The HTTP contracts between hosts, as OpenAPI 3.1 documents kept in `schema/`: the edge's
//! API (served by the worker at `/v1/openapi.json`, called by the tracker and by servers) and
//! the collector's (served at `/openapi.json`, called by the edge). Each host's tests compare
//! its route table with [`documented_routes`] of its document.
//!
//! The bodies the edge and the browser build answer in are typed here once: [`ErrorBody`] (every
//! refusal, on every host), [`Answer`] (a decision as `/v1/recommendations` and the browser's
//! local decisions show it) and the slot markup ([`slot_html`]) pages are filled with.

use crate::engine::Decision;
use crate::error::FieldError;
use crate::recommend::Recommendation;
use serde::{Deserialize, Serialize};

/// The edge API's document (`schema/edge.openapi.json`).
pub const EDGE_OPENAPI: &str = include_str!("../schema/edge.openapi.json");
/// The collector API's document (`schema/collector.openapi.json`).
pub const COLLECTOR_OPENAPI: &str = include_str!("../schema/collector.openapi.json");

/// Every (METHOD, path) an OpenAPI document describes, sorted; empty if it does not parse.
pub fn documented_routes(doc: &str) -> Vec<(String, String)> {
    let doc: serde_json::Value = serde_json::from_str(doc).unwrap_or_default();
    let mut routes: Vec<(String, String)> = doc["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .into_iter()
                .flatten()
                .map(move |(m, _)| (m.to_uppercase(), path.clone()))
        })
        .collect();
    routes.sort();
    routes
}

/// Every refusal's body, on every host: `{"errors":[{"field","message"}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What was refused, field by field.
    pub errors: Vec<FieldError>,
}

impl ErrorBody {
    /// A body from its errors.
    pub fn new(errors: Vec<FieldError>) -> ErrorBody {
        ErrorBody { errors }
    }

    /// A body naming one field.
    pub fn one(field: &str, message: impl std::fmt::Display) -> ErrorBody {
        ErrorBody::new(vec![FieldError::new(field, message.to_string())])
    }

    /// As JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Made without some model shards: how many were missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partial {
    /// Shards the decision could not read.
    pub missing: u32,
}

/// The markup of a whole slot: [`slot_html`] of each item, in order.
pub fn slot_list_html(items: &[Recommendation], item_url: &str) -> String {
    items
        .iter()
        .enumerate()
        .map(|(pos, r)| slot_html(r, pos, item_url))
        .collect()
}

/// A decision as clients see it (`GET /v1/recommendations`, the browser's own decisions):
/// the items with what a page renders them with, the tier, the variant, the rules that fired.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer<'a> {
    /// Items in order, each with its score, why, title, category and price.
    pub items: &'a [Recommendation],
    /// Which rung of the ladder served it.
    pub tier: &'static str,
    /// Experiment variant, if any.
    pub variant: Option<&'a str>,
    /// Rules that fired.
    pub rule_hits: &'a [std::sync::Arc<str>],
    /// Present when shards were missing (KV slow or down): said, not hidden.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial: Option<Partial>,
    /// The items as slot markup ([`slot_list_html`]), when the request named a slot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

impl<'a> Answer<'a> {
    /// The answer for a decision.
    pub fn of(d: &'a Decision) -> Answer<'a> {
        Answer {
            items: &d.items,
            tier: d.tier.as_str(),
            variant: d.variant.as_deref(),
            rule_hits: &d.rule_hits,
            partial: (d.missing > 0).then_some(Partial { missing: d.missing }),
            html: None,
        }
    }
}

/// Escapes text for HTML content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a URL component as JavaScript's `encodeURIComponent` does.
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The markup of one recommended item in a page slot: a link to `item_url` (`{id}` replaced by
/// the percent-encoded item id) carrying the item id and why, around its title. The edge fills slots with it
/// and the browser build renders local decisions with it (`itemHtml`), so a slot looks the
/// same whoever filled it.
pub fn slot_html(r: &Recommendation, pos: usize, item_url: &str) -> String {
    let title = r.title.as_deref().unwrap_or(&r.id);
    let href = item_url.replace("{id}", &encode_component(&r.id));
    // Where a related list placed it: the tracker sends these with the item's impression and
    // click (`from`, `pos`), the trainer's exposure feedback.
    let placed = r
        .anchor()
        .map(|from| {
            format!(
                r#" data-edgerec-from="{}" data-edgerec-pos="{pos}""#,
                escape_html(from)
            )
        })
        .unwrap_or_default();
    format!(
        r#"<a class="edgerec-item" href="{}" data-edgerec-item="{}" data-edgerec-why="{}"{placed}><span class="edgerec-title">{}</span></a>"#,
        escape_html(&href),
        escape_html(&r.id),
        escape_html(&r.why.join(" ")),
        escape_html(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_documents_parse_and_describe_their_apis() {
        let edge = documented_routes(EDGE_OPENAPI);
        assert!(edge.contains(&("POST".into(), "/v1/events".into())));
        let collector = documented_routes(COLLECTOR_OPENAPI);
        assert!(collector.contains(&("POST".into(), "/v1/aggregates".into())));
        assert!(documented_routes("not json").is_empty());
    }

    #[test]
    fn error_bodies_and_slot_markup_have_one_shape() {
        assert_eq!(
            ErrorBody::one("limit", "too big").to_json(),
            r#"{"errors":[{"field":"limit","message":"too big"}]}"#
        );
        let r = Recommendation {
            id: "a\"<b>".into(),
            score: 1.0,
            why: vec!["rule:x".into(), "popular".into()],
            title: Some("Tea & 'Co'".into()),
            category: None,
            price: None,
        };
        assert_eq!(
            slot_html(&r, 0, "/p/{id}"),
            r#"<a class="edgerec-item" href="/p/a%22%3Cb%3E" data-edgerec-item="a&quot;&lt;b&gt;" data-edgerec-why="rule:x popular"><span class="edgerec-title">Tea &amp; &#39;Co&#39;</span></a>"#
        );
        // Placed by a related list: its anchor (the first) and position go with it.
        let related = Recommendation {
            why: vec!["rule:x".into(), "related:s\"1".into(), "related:t".into()],
            ..r.clone()
        };
        assert!(slot_html(&related, 3, "/p/{id}")
            .contains(r#"data-edgerec-why="rule:x related:s&quot;1 related:t" data-edgerec-from="s&quot;1" data-edgerec-pos="3">"#));
        let plain = Recommendation {
            id: "b".into(),
            title: None,
            ..r.clone()
        };
        assert_eq!(
            slot_list_html(&[plain.clone(), plain.clone()], "/i/{id}"),
            slot_html(&plain, 0, "/i/{id}").repeat(2),
            "a slot is its items' markup in order"
        );
        assert!(slot_html(&plain, 1, "/i/{id}").contains(r#"<span class="edgerec-title">b</span>"#));
        assert_eq!(slot_list_html(&[], "/i/{id}"), "");
    }

    #[test]
    fn an_answer_says_partial_only_when_shards_were_missing() {
        let engine = crate::Engine::from_json(
            crate::EngineConfig::default(),
            r#"{"version":"1","rules":[]}"#,
            br#"{"version":"c","items":[{"id":"a"}]}"#,
        )
        .unwrap();
        let mut d = engine.decide(&crate::DecideRequest {
            now_ms: 1_764_201_600_000,
            tier: Some(crate::Tier::Full),
            ..Default::default()
        });
        let whole = serde_json::to_value(Answer::of(&d)).unwrap();
        assert_eq!(
            whole,
            serde_json::json!({"items": [], "tier": "full", "variant": null, "rule_hits": []})
        );
        d.missing = 1;
        assert_eq!(Answer::of(&d).partial, Some(Partial { missing: 1 }));
        d.missing = 3;
        let v = serde_json::to_value(Answer::of(&d)).unwrap();
        assert_eq!(v["partial"], serde_json::json!({"missing": 3}));
    }
}
