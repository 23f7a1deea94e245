//! `POST /v1/events` (JSON or MessagePack) → 202 `{"accepted":n,"duplicates":d,"session"}`;
//! 400 naming the fields; 413 over the size limit; 429 over a rate limit; 503 before any
//! config is loaded (the tracker keeps the events and retries). Nothing partial is stored.

use crate::budget::now_ms;
use crate::config;
use crate::flush;
use crate::identity;
use crate::limits::{self, Limit};
use crate::respond::{
    add_state, context_of, count_for_variant, errors, identity_error, json_response, no_config,
    read_body, throttled, variant_of, with_cookies,
};
use crate::settings::Settings;
use crate::shards;
use crate::stats::{self, Counter};
use crate::store;
use edgerec::event::{parse_events_json, parse_events_msgpack};
use edgerec::{DecideRequest, Event, Tier};
use serde_json::json;
use worker::{Context, Env, Request, Response};

/// `POST /v1/events`: parse, identify, rate-limit, decide with the new events, store the blob.
pub(crate) async fn events(
    req: &mut Request,
    env: &Env,
    ctx: &Context,
    s: &Settings,
) -> worker::Result<Response> {
    let body = match read_body(req, s).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let now = now_ms();
    let kv_config = env.kv("CONFIG")?;
    let engine = config::engine(&kv_config, s, now).await;
    let limits = engine.as_ref().map(|e| e.config().time).unwrap_or_default();
    let ct = req
        .headers()
        .get("content-type")
        .ok()
        .flatten()
        .unwrap_or_default();
    let parsed = if ct.starts_with("application/msgpack") || ct.starts_with("application/x-msgpack")
    {
        parse_events_msgpack(&body, now, limits)
    } else {
        parse_events_json(&body, now, limits)
    };
    let events: Vec<Event> = match parsed {
        Ok(e) => e,
        Err(e) => {
            stats::inc(Counter::EventsRejectedInvalid);
            return errors(400, &e.errors);
        }
    };
    let id = match identity::identify(req, s) {
        Ok(id) => id,
        Err(e) => return identity_error(&e),
    };
    let client = identity::client(req);
    let mut checks = vec![
        (Limit::Client, client.as_str()),
        (Limit::Session, id.key.as_str()),
    ];
    if id.minted {
        checks.push((Limit::NewSession, client.as_str()));
    }
    if let Some(limit) = limits::exceeded(env, &checks).await {
        if let Some(e) = &engine {
            count_for_variant(e, variant_of(e, &id).as_deref(), s, 429, now);
        }
        return throttled(limit);
    }
    let Some(engine) = engine else {
        // Without rules and catalog nothing can be decided, but nothing is lost either: the
        // client keeps the events (the tracker retries) and learns why.
        stats::inc(Counter::EventsDeferredNoConfig);
        return no_config();
    };
    let sessions = env.kv("SESSIONS").ok();
    let loaded = store::load(sessions.as_ref(), &id.key, id.hot.clone(), s).await;
    let context = context_of(req, &id, None, "/v1/events".into());
    let trace = s.trace_of(&id.key);
    let request = DecideRequest {
        state: loaded.blob.as_deref(),
        events: &events,
        context,
        now_ms: now,
        limit: 0,
        tier: Some(Tier::Full),
        trace: trace.as_deref(),
    };
    let d = shards::decide(&kv_config, &engine, &request, s, now).await;
    if !d.rejected.is_empty() {
        stats::inc(Counter::EventsRejectedInvalid);
        count_for_variant(&engine, d.variant.as_deref(), s, 400, now);
        return errors(400, &d.rejected);
    }
    count_for_variant(&engine, d.variant.as_deref(), s, 202, now);
    stats::add(Counter::EventsAccepted, u64::from(d.accepted));
    stats::add(Counter::EventsDuplicate, u64::from(d.duplicates));
    stats::add(Counter::EventsCapped, u64::from(d.capped));
    flush::record(s, &d.delta, now);
    let blob = d.state;
    if let (Some(b), true, Some(kv)) = (&blob, d.state_changed, &sessions) {
        store::save(ctx, kv, &id.key, b.clone(), s);
    }
    let mut body =
        json!({"accepted": d.accepted, "duplicates": d.duplicates, "session": loaded.source});
    add_state(req, &mut body, &id, blob.as_deref());
    let resp = json_response(202, &body)?;
    with_cookies(resp, &id, blob.as_deref(), s)
}
