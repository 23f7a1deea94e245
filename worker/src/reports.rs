//! `POST /v1/browser-decisions` `{"id","delta"}`: counters of decisions the browser made itself
//! (tier `browser`), relayed at once as their own batch (`b-<unit>-<id>`) to the collector, which
//! drops a batch id it has seen: the browser resends the same id until it gets 202. Only from an
//! existing cookie session, within the rate limits, naming only the live bundle's rules and
//! variants.

use crate::budget::now_ms;
use crate::config;
use crate::flush;
use crate::identity::{self, Kind};
use crate::limits::{self, Limit};
use crate::respond::{
    error, errors, identity_error, json_response, no_config, read_body, throttled,
};
use crate::settings::Settings;
use crate::stats::{self, Counter};
use edgerec::FieldError;
use serde_json::json;
use worker::{Env, Request, Response};

/// A report of the browser's own decisions, relayed to the collector as one batch. Only from
/// an existing cookie session, within the rate limits, naming only the live bundle's rules and
/// variants.
pub(crate) async fn browser_decisions(
    req: &mut Request,
    env: &Env,
    s: &Settings,
) -> worker::Result<Response> {
    // The body is read first, whatever the answer: a client must not see its upload cut.
    let body = match read_body(req, s).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let id = match identity::identify(req, s) {
        Ok(id) if id.kind == Kind::Cookie && !id.minted => id,
        Ok(_) => {
            stats::inc(Counter::BrowserReportsRejected);
            return error(
                401,
                "cookie",
                "reports come from an existing edgerec_sid session",
            );
        }
        Err(e) => return identity_error(&e),
    };
    let client = identity::client(req);
    let checks = [
        (Limit::Client, client.as_str()),
        (Limit::Session, id.key.as_str()),
    ];
    if let Some(limit) = limits::exceeded(env, &checks).await {
        return throttled(limit);
    }
    #[derive(serde::Deserialize)]
    struct Report {
        id: String,
        delta: edgerec::AggregateDelta,
    }
    let report: Report = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(400, "body", e),
    };
    let mut errs = Vec::new();
    if !(16..=64).contains(&report.id.len()) || !report.id.bytes().all(|b| b.is_ascii_hexdigit()) {
        errs.push(FieldError::new("id", "16 to 64 hex digits"));
    }
    match config::engine(&env.kv("CONFIG")?, s, now_ms()).await {
        Some(engine) => errs.extend(engine.check_browser_report(&report.delta)),
        None => return no_config(),
    }
    if !errs.is_empty() {
        stats::inc(Counter::BrowserReportsRejected);
        return errors(400, &errs);
    }
    let decisions = report.delta.decisions;
    // The id is the page's; the session's unit in front keeps one session's ids from
    // colliding with another's at the collector (batch ids are at most 64 characters: the
    // page's part is cut to 45, which leaves ~180 random bits).
    let batch = edgerec::AggregateBatch::new(
        format!("b-{}-{}", id.unit, &report.id[..report.id.len().min(45)]),
        "browser",
        now_ms(),
        report.delta,
    );
    if s.collector_url.is_none() {
        stats::add(Counter::BrowserDecisionsDiscardedNoCollector, decisions);
        return json_response(202, &json!({"ok": true, "discarded": true}));
    }
    match flush::relay(s, &batch).await {
        Ok(200..=299) => {
            stats::inc(Counter::BrowserReportsRelayed);
            stats::add(Counter::BrowserDecisionsRelayed, decisions);
            json_response(202, &json!({"ok": true}))
        }
        Ok(status) if flush::refused_for_good(status) => {
            stats::inc(Counter::BrowserReportsRejected);
            error(
                400,
                "delta",
                format!("collector refused the batch (HTTP {status})"),
            )
        }
        other => {
            stats::inc(Counter::BrowserReportRelayFailures);
            let why = match other {
                Ok(status) => format!("collector answered HTTP {status}"),
                Err(e) => e,
            };
            let mut r = error(503, "collector", why)?;
            r.headers_mut().set("retry-after", "5")?;
            Ok(r)
        }
    }
}
