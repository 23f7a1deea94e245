//! The HTTP contracts between hosts, as OpenAPI 3.1 documents kept in `schema/`: the edge's
//! API (served by the worker at `/v1/openapi.json`, called by the tracker and by servers) and
//! the collector's (served at `/openapi.json`, called by the edge). Each host's tests compare
//! its route table with [`documented_routes`] of its document.

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
}
