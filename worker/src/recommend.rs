//! `GET /v1/recommendations?limit=10&slot=...&debug=1`: a decision for the session, as the
//! core's [`Answer`] (items with title, category, price and why; tier; variant; rules fired;
//! `partial` when shards were missing; `html` for a slot), header `x-edgerec-tier`. Never a 5xx:
//! see [`crate::ladder`].

use crate::budget::now_ms;
use crate::identity::{self, IdentityError};
use crate::ladder::{self, Ask};
use crate::respond::{
    add_state, context_of, count_for_variant, errors, identity_error, json_response, with_cookies,
};
use crate::settings::Settings;
use crate::stats::{self, Counter};
use crate::target::Target;
use edgerec::api::{slot_list_html, Answer};
use edgerec::{Decision, Engine, FieldError};
use serde_json::json;
use worker::{Context, Env, Request, Response};

/// Query parameters, validated.
/// Query parameters of /v1/recommendations, validated.
pub(crate) struct RecQuery {
    limit: usize,
    slot: Option<String>,
    debug: bool,
}

pub(crate) fn rec_query(req: &Request) -> Result<RecQuery, Vec<FieldError>> {
    let url = Target::of(req);
    let mut q = RecQuery {
        limit: 10,
        slot: None,
        debug: false,
    };
    let mut errs = Vec::new();
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "limit" => match v.parse::<usize>() {
                Ok(n) if (1..=edgerec::engine::MAX_LIMIT).contains(&n) => q.limit = n,
                _ => errs.push(FieldError::new("limit", "must be an integer from 1 to 100")),
            },
            "slot" => {
                if edgerec::event::check_id(&v).is_ok() {
                    q.slot = Some(v.into_owned());
                } else {
                    errs.push(FieldError::new(
                        "slot",
                        "must be 1-128 bytes, no control characters",
                    ));
                }
            }
            "debug" => q.debug = v == "1" || v == "true",
            _ => {}
        }
    }
    if errs.is_empty() {
        Ok(q)
    } else {
        Err(errs)
    }
}

/// The answer body for a decision; with `slot`, its markup too (`ITEM_URL_TEMPLATE`).
fn body(d: &Decision, slot: bool, env: &Env) -> serde_json::Value {
    let mut answer = Answer::of(d);
    if slot {
        answer.html = Some(slot_list_html(&d.items, &item_url(env)));
    }
    serde_json::to_value(answer).unwrap_or_default()
}

/// Where an item's page is: `ITEM_URL_TEMPLATE` (`{id}` = the item id), default `/p/{id}`.
pub(crate) fn item_url(env: &Env) -> String {
    env.var("ITEM_URL_TEMPLATE")
        .map(|v| v.to_string())
        .unwrap_or_else(|_| "/p/{id}".into())
}

fn with_tier(mut r: Response, tier: &str) -> worker::Result<Response> {
    r.headers_mut().set("x-edgerec-tier", tier)?;
    r.headers_mut().set("cache-control", "private, no-store")?;
    Ok(r)
}

/// `GET /v1/recommendations`.
pub(crate) async fn recommendations(
    req: &Request,
    env: &Env,
    ctx: &Context,
    s: &Settings,
) -> worker::Result<Response> {
    let q = match rec_query(req) {
        Ok(q) => q,
        Err(e) => {
            stats::inc(Counter::RecommendationsRejected);
            return errors(400, &e);
        }
    };
    let now = now_ms();
    let id = match identity::identify(req, s) {
        Ok(id) => Some(id),
        Err(e @ (IdentityError::Credential | IdentityError::BadId)) => return identity_error(&e),
        // No session can be named (no random id): popularity for everyone, no cookie.
        Err(IdentityError::NoRandomness(_)) => None,
    };
    let (engine, loaded) = ladder::engine_and_session(env, s, id.as_ref(), now).await?;
    let (Some(engine), Some(id)) = (engine.clone(), id) else {
        return without_session(engine.as_deref(), &q, env, now);
    };
    let context = context_of(req, &id, q.slot.clone(), Target::of(req).path);
    let ask = Ask {
        id: &id,
        loaded,
        context,
        limit: q.limit,
        fault: ladder::fault_injected(req, env),
    };
    let (d, blob) = ladder::decide(&engine, env, ctx, s, ask).await;
    // The ladder always answers (a fallback rung at worst): a 200 under the variant.
    count_for_variant(&engine, d.variant.as_deref(), s, 200, now);
    let mut body = body(&d, q.slot.is_some(), env);
    add_state(req, &mut body, &id, blob.as_deref());
    if q.debug {
        debug(&mut body, &d, &engine);
    }
    let resp = with_tier(json_response(200, &body)?, d.tier.as_str())?;
    with_cookies(resp, &id, blob.as_deref(), s)
}

/// The rungs without a session: static when an engine is loaded, else empty static.
fn without_session(
    engine: Option<&Engine>,
    q: &RecQuery,
    env: &Env,
    now: u64,
) -> worker::Result<Response> {
    let Some(engine) = engine else {
        // Nothing loaded at all (cold isolate and config KV down): the last rung of the
        // ladder is an empty static answer, still a 200.
        stats::inc(Counter::DecisionsStaticEmpty);
        let body = json!({"items": [], "tier": "static", "variant": null, "rule_hits": []});
        return with_tier(json_response(200, &body)?, "static");
    };
    let d = ladder::static_decision(engine, Default::default(), q.limit, now);
    with_tier(
        json_response(200, &body(&d, q.slot.is_some(), env))?,
        "static",
    )
}

/// With `debug=1`: the features the rules saw and what the engine was built from.
fn debug(body: &mut serde_json::Value, d: &Decision, engine: &Engine) {
    body["features"] = serde_json::to_value(&d.features).unwrap_or_default();
    body["bundle"] = json!(engine.bundle().hash);
    body["catalog"] = json!(engine.head().version);
    body["model"] = json!(engine.head().hash);
}
