//! The dispatch table: `(method, path)` → endpoint, one module per endpoint family.
//!
//! | endpoint | module |
//! | --- | --- |
//! | `POST /v1/events` | [`crate::events`] |
//! | `GET /v1/recommendations` (the fallback ladder: [`crate::ladder`]) | [`crate::recommend`] |
//! | `POST /v1/browser-decisions` | [`crate::reports`] |
//! | `GET /v1/model/bundle`, `/v1/model/catalog`, `/v1/model/shard` | [`crate::model`] |
//! | `GET /v1/health`, `/v1/health/kv`, `/v1/stats` | [`crate::health`] |
//! | `GET /v1/openapi.json`, `GET /edgerec/tracker.js` | here (static text) |
//! | anything else under `/v1/` | 404 |
//! | everything else: the origin, HTML pages with their slots filled | [`crate::origin`] |
//!
//! With `x-edgerec-want-state: 1`, event and recommendation answers also carry the session blob
//! (`state`, base64url) and the experiment unit, so the browser keeps its own copy.

use crate::budget::now_ms;
use crate::respond::{error, json_response, text};
use crate::settings::Settings;
use crate::stats::{self, Counter};
use crate::target::Target;
use crate::{events, flush, health, model, origin, recommend, reports};
use serde_json::json;
#[cfg(feature = "conformance")]
use worker::Method;
use worker::{Context, Env, Request, Response};

/// The tracker script served at `/edgerec/tracker.js` (`www/tracker.js`, slimmed by build.rs).
const TRACKER_JS: &str = include_str!(concat!(env!("OUT_DIR"), "/tracker.js"));
/// Where the tracker is served.
pub(crate) const TRACKER_PATH: &str = "/edgerec/tracker.js";
/// The API's OpenAPI 3.1 document (`schema/edge.openapi.json`, minified by build.rs).
const OPENAPI_JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.json"));

/// The API's operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `POST /v1/events`.
    Events,
    /// `GET /v1/recommendations`.
    Recommendations,
    /// `POST /v1/browser-decisions`.
    BrowserDecisions,
    /// `GET /v1/model/bundle`.
    ModelBundle,
    /// `GET /v1/model/catalog`.
    ModelCatalog,
    /// `GET /v1/model/shard`.
    ModelShard,
    /// `GET /v1/health`.
    Health,
    /// `GET /v1/health/kv`.
    HealthKv,
    /// `GET /v1/stats`.
    Stats,
    /// `GET /v1/openapi.json`.
    OpenApi,
    /// `GET /edgerec/tracker.js`.
    Tracker,
}

/// The dispatch table: (method, path) → operation. `schema/edge.openapi.json` documents exactly
/// these (a test compares them); anything else under `/v1/` is a 404, the rest goes to the
/// origin.
pub const API_ROUTES: [(&str, &str, Api); 11] = [
    ("POST", "/v1/events", Api::Events),
    ("GET", "/v1/recommendations", Api::Recommendations),
    ("POST", "/v1/browser-decisions", Api::BrowserDecisions),
    ("GET", "/v1/model/bundle", Api::ModelBundle),
    ("GET", "/v1/model/catalog", Api::ModelCatalog),
    ("GET", "/v1/model/shard", Api::ModelShard),
    ("GET", "/v1/health", Api::Health),
    ("GET", "/v1/health/kv", Api::HealthKv),
    ("GET", "/v1/stats", Api::Stats),
    ("GET", "/v1/openapi.json", Api::OpenApi),
    ("GET", TRACKER_PATH, Api::Tracker),
];

/// The operation a request names, if any.
pub fn api_route(method: &str, path: &str) -> Option<Api> {
    API_ROUTES
        .iter()
        .find(|(m, p, _)| *m == method && *p == path)
        .map(|r| r.2)
}

/// Entry point.
pub async fn handle(mut req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let s = Settings::from_env(&env);
    let path = Target::of(&req).path;
    if let Some(why) = &s.refusal {
        return refuse_to_serve(req, &s, why).await;
    }
    let resp = match api_route(req.method().as_ref(), &path) {
        Some(Api::Events) => events::events(&mut req, &env, &ctx, &s).await,
        Some(Api::Recommendations) => recommend::recommendations(&req, &env, &ctx, &s).await,
        Some(Api::BrowserDecisions) => reports::browser_decisions(&mut req, &env, &s).await,
        Some(Api::ModelBundle) => model::model(&req, &env, &s, false).await,
        Some(Api::ModelCatalog) => model::model(&req, &env, &s, true).await,
        Some(Api::ModelShard) => model::model_shard(&req, &env, &s).await,
        Some(Api::Health) => health::health(&env, &s).await,
        Some(Api::HealthKv) => health::kv_probe(&env).await,
        Some(Api::Stats) => health::stats(),
        Some(Api::OpenApi) => text(OPENAPI_JSON, "application/json", "public, max-age=300"),
        Some(Api::Tracker) => text(
            TRACKER_JS,
            "text/javascript; charset=utf-8",
            "public, max-age=300",
        ),
        #[cfg(feature = "conformance")]
        None if path == "/v1/_conformance"
            && req.method() == Method::Post
            && env.var("ENABLE_CONFORMANCE").is_ok() =>
        {
            health::conformance(&mut req, &s).await
        }
        None if path.starts_with("/v1/") => error(404, "path", format!("no route {path}")),
        None => origin::page(req, &env, &ctx, &s).await,
    };
    if flush::due(&s, now_ms()) {
        ctx.wait_until(flush::flush(s.clone()));
    }
    resp
}

/// Unsafe secrets outside development: the API answers 503 naming the setting, `/v1/health`
/// says why, and pages pass through to the origin untouched (the shop stays up, without
/// personalization).
async fn refuse_to_serve(req: Request, s: &Settings, why: &str) -> worker::Result<Response> {
    stats::inc(Counter::RefusedUnsafeConfig);
    let path = Target::of(&req).path;
    if path == "/v1/health" {
        return json_response(503, &json!({"ok": false, "refusing": why}));
    }
    if path.starts_with("/v1/") || path.starts_with("/edgerec/") {
        return error(503, "config", why);
    }
    origin::proxy(req, s).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_lists_exactly_the_dispatch_table() {
        let mut served: Vec<(String, String)> = API_ROUTES
            .iter()
            .map(|(m, p, _)| (m.to_string(), p.to_string()))
            .collect();
        served.sort();
        let documented = edgerec::api::documented_routes(edgerec::api::EDGE_OPENAPI);
        assert_eq!(documented, served);
        assert_eq!(api_route("GET", "/v1/events"), None, "methods matter");
        assert_eq!(api_route("POST", "/v1/events"), Some(Api::Events));
    }
}
