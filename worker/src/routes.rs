//! Routing and the HTTP contract:
//!
//! - `POST /v1/events` (JSON or MessagePack) → 202 `{"accepted":n,"duplicates":d}`; 400 with
//!   `{"errors":[{"field","message"}]}`; 413 over the size limit; nothing partial is stored;
//! - `GET /v1/recommendations?limit=10&slot=...` → `{"items":[...],"tier","variant"}` and
//!   header `x-edgerec-tier`; never a 5xx: it falls back to `cached`, then `static`;
//! - `GET /v1/model/bundle`, `GET /v1/model/catalog`: the live rule bundle (JSON) and catalog
//!   snapshot (MessagePack) as published, for the browser fallback (ETag = content hash);
//! - with `x-edgerec-want-state: 1`, event and recommendation answers also carry the session
//!   blob (`state`, base64url) and id (`sid`), so the browser keeps its own copy;
//! - `POST /v1/browser-decisions` `{"id","delta"}`: counters of decisions the browser made itself
//!   (tier `browser`), relayed at once as their own batch (`b-<id>`) to the collector, which
//!   drops a batch id it has seen: the browser resends the same id until it gets 202;
//! - `GET /v1/health`, `GET /v1/stats`; `GET /edgerec/tracker.js`;
//! - anything else: interception (proxy to the origin, fill slots in HTML).

use crate::budget::now_ms;
use crate::config;
use crate::cookie::{self, HOT_COOKIE, SID_COOKIE};
use crate::flush;
use crate::identity::{self, Identity, IdentityError, Kind};
use crate::intercept::{self, SlotFill};
use crate::limits::{self, Limit};
use crate::settings::Settings;
use crate::shards;
use crate::stats;
use crate::store::{self, Source};
use crate::target::Target;
use edgerec::event::{parse_events_json, parse_events_msgpack};
use edgerec::{Context as Ctx, DecideRequest, Decision, Engine, Event, FieldError, Tier};
use serde_json::json;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use worker::{Context, Env, Fetch, Headers, Method, Request, Response};

/// The tracker script served at `/edgerec/tracker.js` (`www/tracker.js`, slimmed by build.rs).
const TRACKER_JS: &str = include_str!(concat!(env!("OUT_DIR"), "/tracker.js"));
/// Where the tracker is served.
const TRACKER_PATH: &str = "/edgerec/tracker.js";
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

fn text(body: &str, content_type: &str, cache: &str) -> worker::Result<Response> {
    let mut r = Response::ok(body)?;
    r.headers_mut().set("content-type", content_type)?;
    r.headers_mut().set("cache-control", cache)?;
    Ok(r)
}
/// Items per slot: a page gets one decision (context.slot = "page") before it streams, and
/// every slot on it shows that list.
const SLOT_ITEMS: usize = 4;

fn json_response(status: u16, body: &serde_json::Value) -> worker::Result<Response> {
    Ok(Response::from_json(body)?.with_status(status))
}

fn errors(status: u16, errors: &[FieldError]) -> worker::Result<Response> {
    json_response(status, &json!({ "errors": errors }))
}

fn context_of(req: &Request, id: &Identity, slot: Option<String>, path: String) -> Ctx {
    let ua = req
        .headers()
        .get("user-agent")
        .ok()
        .flatten()
        .unwrap_or_default();
    Ctx {
        country: req.cf().and_then(|cf| cf.country()).or_else(|| {
            req.headers()
                .get("x-edgerec-country")
                .ok()
                .flatten()
                .filter(|c| c.len() == 2)
        }),
        device: Some(edgerec::features::device_class(&ua).to_string()),
        path: Some(path),
        slot,
        // Experiments bucket by the unit (a keyed hash), the value the browser also gets.
        session_id: Some(id.unit.clone()),
        variant: None,
    }
}

/// Adds session cookies to a response.
fn with_cookies(
    mut resp: Response,
    id: &Identity,
    blob: Option<&[u8]>,
    s: &Settings,
) -> worker::Result<Response> {
    if id.kind != Kind::Cookie {
        // Server-to-server clients (header identity) do not keep cookies.
        return Ok(resp);
    }
    let h = resp.headers_mut();
    if id.minted {
        let v = cookie::sid_value(&s.session_secret, &id.sid);
        h.append(
            "set-cookie",
            &cookie::set_cookie(SID_COOKIE, &v, 30 * 86_400, id.secure),
        )?;
    }
    if let Some(blob) = blob {
        let v = cookie::hot_value(&s.session_secret, &id.sid, blob, now_ms());
        h.append(
            "set-cookie",
            &cookie::set_cookie(HOT_COOKIE, &v, s.session_ttl_s, id.secure),
        )?;
    }
    Ok(resp)
}

/// Entry point.
pub async fn handle(mut req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let s = Settings::from_env(&env);
    let path = Target::of(&req).path;
    if let Some(why) = &s.refusal {
        return refuse_to_serve(req, &s, why).await;
    }
    let resp = match api_route(req.method().as_ref(), &path) {
        Some(Api::Events) => events(&mut req, &env, &ctx, &s).await,
        Some(Api::Recommendations) => recommendations(&req, &env, &ctx, &s).await,
        Some(Api::Health) => health(&env, &s).await,
        Some(Api::BrowserDecisions) => browser_decisions(&mut req, &env, &s).await,
        Some(Api::ModelBundle) => model(&req, &env, &s, false).await,
        Some(Api::ModelCatalog) => model(&req, &env, &s, true).await,
        Some(Api::ModelShard) => model_shard(&req, &env, &s).await,
        Some(Api::HealthKv) => kv_probe(&env).await,
        Some(Api::Stats) => json_response(
            200,
            &json!({"counters": stats::snapshot(), "aggregates": flush::snapshot(),
                    "breakers": crate::breaker::snapshot()}),
        ),
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
            conformance(&mut req, &s).await
        }
        None if path.starts_with("/v1/") => {
            errors(404, &[FieldError::new("path", format!("no route {path}"))])
        }
        None => intercept_request(req, &env, &ctx, &s).await,
    };
    if flush::due(&s, now_ms()) {
        let source = "edge".to_string();
        ctx.wait_until(flush::flush(s.clone(), source));
    }
    resp
}

/// Unsafe secrets outside development: the API answers 503 naming the setting, `/v1/health`
/// says why, and pages pass through to the origin untouched (the shop stays up, without
/// personalization).
async fn refuse_to_serve(req: Request, s: &Settings, why: &str) -> worker::Result<Response> {
    stats::inc("refused_unsafe_config");
    let path = Target::of(&req).path;
    if path == "/v1/health" {
        return json_response(503, &json!({"ok": false, "refusing": why}));
    }
    if path.starts_with("/v1/") || path.starts_with("/edgerec/") {
        return errors(503, &[FieldError::new("config", why)]);
    }
    proxy(req, s).await
}

/// 429 for a request over a rate limit.
fn throttled(limit: Limit) -> worker::Result<Response> {
    let mut r = errors(
        429,
        &[FieldError::new(
            limit.field(),
            "rate limit exceeded; retry later",
        )],
    )?;
    r.headers_mut().set("retry-after", "10")?;
    Ok(r)
}

fn identity_error(e: &IdentityError) -> worker::Result<Response> {
    errors(e.status(), &[FieldError::new(e.field(), e.to_string())])
}

async fn read_body(req: &mut Request, s: &Settings) -> Result<Vec<u8>, worker::Result<Response>> {
    if let Some(len) = req
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|l| l.parse::<usize>().ok())
    {
        if len > s.max_body_bytes {
            return Err(too_large(s));
        }
    }
    match req.bytes().await {
        Ok(b) if b.len() > s.max_body_bytes => Err(too_large(s)),
        Ok(b) => Ok(b),
        Err(e) => Err(errors(400, &[FieldError::new("body", e.to_string())])),
    }
}

fn too_large(s: &Settings) -> worker::Result<Response> {
    stats::inc("events_rejected_too_large");
    errors(
        413,
        &[FieldError::new(
            "body",
            format!("larger than {} bytes", s.max_body_bytes),
        )],
    )
}

async fn events(
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
            stats::inc("events_rejected_invalid");
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
        return throttled(limit);
    }
    let Some(engine) = engine else {
        // Without rules and catalog nothing can be decided, but nothing is lost either: the
        // client keeps the events (the tracker retries) and learns why.
        stats::inc("events_deferred_no_config");
        return errors(
            503,
            &[FieldError::new("config", "no rules/catalog loaded yet")],
        );
    };
    let sessions = env.kv("SESSIONS").ok();
    let loaded = store::load(sessions.as_ref(), &id.key, id.hot.clone(), s).await;
    let context = context_of(req, &id, None, "/v1/events".into());
    let request = DecideRequest {
        state: loaded.blob.as_deref(),
        events: &events,
        context,
        now_ms: now,
        limit: 0,
        tier: Some(Tier::Full),
    };
    let d = shards::decide(&kv_config, &engine, &request, s, now).await;
    if !d.rejected.is_empty() {
        stats::inc("events_rejected_invalid");
        return errors(400, &d.rejected);
    }
    stats::add("events_accepted", u64::from(d.accepted));
    stats::add("events_duplicate", u64::from(d.duplicates));
    stats::add("events_capped", u64::from(d.capped));
    flush::record(s, &d.delta, now);
    let blob = d.state;
    if let (Some(b), true, Some(kv)) = (&blob, d.state_changed, &sessions) {
        store::save(ctx, kv, &id.key, b.clone(), s);
    }
    let mut body = json!({"accepted": d.accepted, "duplicates": d.duplicates, "session": source_name(loaded.source)});
    add_state(req, &mut body, &id, blob.as_deref());
    let resp = json_response(202, &body)?;
    with_cookies(resp, &id, blob.as_deref(), s)
}

/// A report of the browser's own decisions, relayed to the collector as one batch. Only from
/// an existing cookie session, within the rate limits, naming only the live bundle's rules and
/// variants.
async fn browser_decisions(req: &mut Request, env: &Env, s: &Settings) -> worker::Result<Response> {
    // The body is read first, whatever the answer: a client must not see its upload cut.
    let body = match read_body(req, s).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let id = match identity::identify(req, s) {
        Ok(id) if id.kind == Kind::Cookie && !id.minted => id,
        Ok(_) => {
            stats::inc("browser_reports_rejected");
            return errors(
                401,
                &[FieldError::new(
                    "cookie",
                    "reports come from an existing edgerec_sid session",
                )],
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
        Err(e) => return errors(400, &[FieldError::new("body", e.to_string())]),
    };
    let mut errs = Vec::new();
    if !(16..=64).contains(&report.id.len()) || !report.id.bytes().all(|b| b.is_ascii_hexdigit()) {
        errs.push(FieldError::new("id", "16 to 64 hex digits"));
    }
    match config::engine(&env.kv("CONFIG")?, s, now_ms()).await {
        Some(engine) => errs.extend(engine.check_browser_report(&report.delta)),
        None => {
            return errors(
                503,
                &[FieldError::new("config", "no rules/catalog loaded yet")],
            )
        }
    }
    if !errs.is_empty() {
        stats::inc("browser_reports_rejected");
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
        stats::add("browser_decisions_discarded_no_collector", decisions);
        return json_response(202, &json!({"ok": true, "discarded": true}));
    }
    match flush::relay(s, &batch).await {
        Ok(200..=299) => {
            stats::inc("browser_reports_relayed");
            stats::add("browser_decisions_relayed", decisions);
            json_response(202, &json!({"ok": true}))
        }
        Ok(status) if flush::refused_for_good(status) => {
            stats::inc("browser_reports_rejected");
            errors(
                400,
                &[FieldError::new(
                    "delta",
                    format!("collector refused the batch (HTTP {status})"),
                )],
            )
        }
        other => {
            stats::inc("browser_report_relay_failures");
            let why = match other {
                Ok(status) => format!("collector answered HTTP {status}"),
                Err(e) => e,
            };
            let mut r = errors(503, &[FieldError::new("collector", why)])?;
            r.headers_mut().set("retry-after", "5")?;
            Ok(r)
        }
    }
}

/// Adds the session blob and experiment unit for clients that keep a copy (the browser
/// fallback). Never the session id: only the signed cookie names a session.
fn add_state(req: &Request, body: &mut serde_json::Value, id: &Identity, blob: Option<&[u8]>) {
    let wants = req.headers().get("x-edgerec-want-state").ok().flatten();
    if wants.as_deref() == Some("1") {
        use base64::Engine as _;
        body["unit"] = json!(id.unit);
        body["state"] =
            json!(blob.map(|b| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)));
    }
}

/// The live bundle or model head, byte for byte as published; `304` when the client has it.
async fn model(req: &Request, env: &Env, s: &Settings, catalog: bool) -> worker::Result<Response> {
    let _ = config::engine(&env.kv("CONFIG")?, s, now_ms()).await;
    let Some(raw) = config::raw() else {
        return errors(
            503,
            &[FieldError::new("config", "no rules/catalog loaded yet")],
        );
    };
    let tag = if catalog {
        format!("\"{}\"", raw.pointer.catalog)
    } else {
        format!("\"{}\"", raw.pointer.bundle)
    };
    let unchanged =
        req.headers().get("if-none-match").ok().flatten().as_deref() == Some(tag.as_str());
    let mut r = if unchanged {
        Response::empty()?.with_status(304)
    } else if catalog {
        Response::from_bytes(raw.head.clone())?
    } else {
        Response::ok(raw.bundle.clone())?
    };
    let h = r.headers_mut();
    h.set("etag", &tag)?;
    h.set("cache-control", "public, max-age=30")?;
    h.set(
        "content-type",
        if catalog {
            "application/msgpack"
        } else {
            "application/json; charset=utf-8"
        },
    )?;
    Ok(r)
}

/// One model shard as stored (`?key=shard:<base>:<i>` or `patch:<hash>`, the keys a head
/// names): content-addressed, so cacheable forever. Any other key is refused, so the route
/// reads nothing else from the config KV.
async fn model_shard(req: &Request, env: &Env, s: &Settings) -> worker::Result<Response> {
    let key = Target::of(req)
        .query_pairs()
        .find(|(k, _)| k == "key")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    if !edgerec::model::is_shard_key(&key) {
        return errors(
            400,
            &[FieldError::new(
                "key",
                "not a model shard key (shard:<base>:<i> or patch:<hash>)",
            )],
        );
    }
    let kv = env.kv("CONFIG")?;
    let read = crate::budget::within(s.shard_budget_ms, kv.get(&key).text()).await;
    let text = match read {
        Some(Ok(Some(t))) => t,
        Some(Ok(None)) => return errors(404, &[FieldError::new("key", "no such shard")]),
        _ => return errors(503, &[FieldError::new("config", "model shard read failed")]),
    };
    let mut r = Response::ok(text)?;
    let h = r.headers_mut();
    h.set("content-type", "text/plain; charset=utf-8")?;
    h.set("cache-control", "public, max-age=31536000, immutable")?;
    Ok(r)
}

fn source_name(s: Source) -> serde_json::Value {
    serde_json::to_value(s).unwrap_or_default()
}

/// Query parameters of /v1/recommendations, validated.
struct RecQuery {
    limit: usize,
    slot: Option<String>,
    debug: bool,
}

fn rec_query(req: &Request) -> Result<RecQuery, Vec<FieldError>> {
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

thread_local! {
    /// Per-segment results of the `cached` tier: (expires, items, variant).
    static SEGMENTS: RefCell<HashMap<String, (u64, Rc<Decision>)>> = RefCell::new(HashMap::new());
}

/// The `cached` tier: context-only decisions per segment, kept for `SEGMENT_TTL_MS` (unless
/// made without some model shard).
async fn cached_decision(
    engine: &Engine,
    env: &Env,
    s: &Settings,
    context: Ctx,
    limit: usize,
    now: u64,
) -> worker::Result<Rc<Decision>> {
    let key = format!("{}|{limit}", engine.segment_key(&context));
    if let Some(hit) = SEGMENTS.with(|m| {
        m.borrow()
            .get(&key)
            .filter(|(exp, _)| *exp > now)
            .map(|(_, d)| d.clone())
    }) {
        stats::inc("segment_cache_hits");
        return Ok(hit);
    }
    let request = DecideRequest {
        context,
        now_ms: now,
        limit,
        tier: Some(Tier::Cached),
        ..Default::default()
    };
    let d = Rc::new(shards::decide(&env.kv("CONFIG")?, engine, &request, s, now).await);
    if d.missing == 0 {
        SEGMENTS.with(|m| {
            let mut m = m.borrow_mut();
            if m.len() > 1000 {
                m.retain(|_, (exp, _)| *exp > now);
            }
            m.insert(key, (now + s.segment_ttl_ms, d.clone()));
        });
    }
    Ok(d)
}

/// Reads the engine and the session at once (independent reads: a cold isolate waits for the
/// slower, not for their sum).
async fn engine_and_session(
    env: &Env,
    s: &Settings,
    id: Option<&Identity>,
    now: u64,
) -> worker::Result<(Option<Rc<Engine>>, store::Loaded)> {
    let config = env.kv("CONFIG")?;
    let sessions = env.kv("SESSIONS").ok();
    let session = async {
        match id {
            Some(id) => store::load(sessions.as_ref(), &id.key, id.hot.clone(), s).await,
            None => store::Loaded {
                blob: None,
                source: Source::New,
            },
        }
    };
    Ok(futures_util::future::join(config::engine(&config, s, now), session).await)
}

/// Decides for a request with its session as read, walking down the ladder: full → cached →
/// static.
async fn decide_for(
    engine: &Engine,
    env: &Env,
    ctx: &Context,
    s: &Settings,
    (id, loaded): (&Identity, store::Loaded),
    context: Ctx,
    limit: usize,
) -> worker::Result<(Rc<Decision>, Option<Vec<u8>>)> {
    let now = now_ms();
    let sessions = env.kv("SESSIONS").ok();
    let d = if loaded.source == Source::Unavailable {
        stats::inc("fallback_cached");
        cached_decision(engine, env, s, context, limit, now).await?
    } else {
        let request = DecideRequest {
            state: loaded.blob.as_deref(),
            events: &[],
            context,
            now_ms: now,
            limit,
            tier: Some(Tier::Full),
        };
        let d = shards::decide(&env.kv("CONFIG")?, engine, &request, s, now).await;
        if let (Some(b), true, Some(kv)) = (
            &d.state,
            d.state_changed && loaded.blob.is_some(),
            &sessions,
        ) {
            // Pruning changed the stored blob (time passed): keep KV in step, coalesced.
            store::save(ctx, kv, &id.key, b.clone(), s);
        }
        Rc::new(d)
    };
    stats::inc(match d.tier {
        Tier::Full => "decisions_full",
        Tier::Cached => "decisions_cached",
        Tier::Static => "decisions_static",
        Tier::Browser => "decisions_browser",
    });
    flush::record(s, &d.delta, now);
    let blob = d.state.clone();
    Ok((d, blob))
}

async fn recommendations(
    req: &Request,
    env: &Env,
    ctx: &Context,
    s: &Settings,
) -> worker::Result<Response> {
    let q = match rec_query(req) {
        Ok(q) => q,
        Err(e) => {
            stats::inc("recommendations_rejected");
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
    let (engine, loaded) = engine_and_session(env, s, id.as_ref(), now).await?;
    let (Some(engine), Some(id)) = (engine.clone(), id) else {
        if let Some(engine) = &engine {
            let d = engine.decide(&DecideRequest {
                now_ms: now,
                limit: q.limit,
                tier: Some(Tier::Static),
                ..Default::default()
            });
            let mut r = json_response(
                200,
                &json!({"items": described(&d), "tier": "static", "variant": null}),
            )?;
            r.headers_mut().set("x-edgerec-tier", "static")?;
            return Ok(r);
        }
        // Nothing loaded at all (cold isolate and config KV down): the last rung of the
        // ladder is an empty static answer, still a 200.
        stats::inc("decisions_static_empty");
        let mut r = json_response(
            200,
            &json!({"items": [], "tier": "static", "variant": null}),
        )?;
        r.headers_mut().set("x-edgerec-tier", "static")?;
        return Ok(r);
    };
    let context = context_of(req, &id, q.slot.clone(), Target::of(req).path);
    let (d, blob) = match decide_for(
        &engine,
        env,
        ctx,
        s,
        (&id, loaded),
        context.clone(),
        q.limit,
    )
    .await
    {
        Ok(x) => x,
        Err(e) => {
            worker::console_warn!("edgerec: full decision failed: {e}; serving static");
            stats::inc("fallback_static");
            let d = engine.decide(&DecideRequest {
                context,
                now_ms: now,
                limit: q.limit,
                tier: Some(Tier::Static),
                ..Default::default()
            });
            flush::record(s, &d.delta, now);
            (Rc::new(d), None)
        }
    };
    let mut body = json!({
        "items": described(&d),
        "tier": d.tier.as_str(),
        "variant": d.variant,
        "rule_hits": d.rule_hits,
    });
    if d.missing > 0 {
        // Made without some model shards (KV slow or down): said, not hidden.
        body["partial"] = json!({"missing": d.missing});
    }
    add_state(req, &mut body, &id, blob.as_deref());
    if q.debug {
        body["features"] = serde_json::to_value(&d.features).unwrap_or_default();
        body["bundle"] = json!(engine.bundle().hash);
        body["catalog"] = json!(engine.head().version);
        body["model"] = json!(engine.head().hash);
    }
    let mut resp = json_response(200, &body)?;
    resp.headers_mut().set("x-edgerec-tier", d.tier.as_str())?;
    resp.headers_mut()
        .set("cache-control", "private, no-store")?;
    with_cookies(resp, &id, blob.as_deref(), s)
}

/// One uncached KV read (the config pointer): is KV reachable, and how fast. Also the
/// baseline the latency benchmark compares `/v1/recommendations` against.
async fn kv_probe(env: &Env) -> worker::Result<Response> {
    let found = env
        .kv("CONFIG")?
        .get(edgerec::release::POINTER_KEY)
        .text()
        .await?
        .is_some();
    json_response(200, &json!({"ok": true, "pointer": found}))
}

#[cfg(feature = "conformance")]
/// Runs one conformance case inside workerd (enabled only with `ENABLE_CONFORMANCE`, for the
/// test suite): `{"case": "<json>", "bundle": "<json>", "catalog": "<json>"}` → the report.
async fn conformance(req: &mut Request, s: &Settings) -> worker::Result<Response> {
    let body = match read_body(
        req,
        &Settings {
            max_body_bytes: 4 << 20,
            ..s.clone()
        },
    )
    .await
    {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    #[derive(serde::Deserialize)]
    struct Input {
        case: String,
        bundle: String,
        catalog: String,
    }
    let input: Input = match serde_json::from_slice(&body) {
        Ok(i) => i,
        Err(e) => return errors(400, &[FieldError::new("body", e.to_string())]),
    };
    let report = edgerec::scenario::run_json(&input.case, &input.bundle, input.catalog.as_bytes());
    json_response(200, &serde_json::to_value(report).unwrap_or_default())
}

async fn health(env: &Env, s: &Settings) -> worker::Result<Response> {
    let now = now_ms();
    let engine = config::engine(&env.kv("CONFIG")?, s, now).await;
    json_response(
        200,
        &json!({
            "ok": true,
            "config": config::loaded(),
            "rules": engine.as_ref().map(|e| e.bundle().rules.len()),
            "items": engine.as_ref().map(|e| e.head().items),
            "shards": shards::usage(),
            "wasm_memory_bytes": wasm_memory_bytes(),
            "breakers": crate::breaker::snapshot(),
        }),
    )
}

/// Size of this isolate's wasm linear memory (it grows, never shrinks: its high-water mark).
fn wasm_memory_bytes() -> usize {
    #[cfg(target_arch = "wasm32")]
    {
        core::arch::wasm32::memory_size(0) * 65_536
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        0
    }
}

/// Items as JSON with what a client needs to render them (title, category, price).
fn described(d: &Decision) -> Vec<serde_json::Value> {
    d.items
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "score": r.score,
                "why": r.why,
                "title": r.title,
                "category": r.category,
                "price": r.price,
            })
        })
        .collect()
}

fn render(d: &Decision, item_url: &str) -> Vec<String> {
    d.items
        .iter()
        .map(|r| {
            let title = r.title.as_deref().unwrap_or(&r.id);
            let href = item_url.replace("{id}", &r.id);
            format!(
                r#"<a class="edgerec-item" href="{}" data-edgerec-item="{}" data-edgerec-why="{}"><span class="edgerec-title">{}</span></a>"#,
                intercept::escape(&href),
                intercept::escape(&r.id),
                intercept::escape(&r.why.join(" ")),
                intercept::escape(title)
            )
        })
        .collect()
}

/// Forwards a request to the origin; the origin never sees edgerec's own cookies or
/// hop-by-hop headers. `Err` is the answer to give instead (no origin, origin unreachable).
async fn forward(req: &Request, s: &Settings) -> worker::Result<Result<Response, Response>> {
    let Some(origin) = s.origin_url.clone() else {
        return Ok(Err(errors(
            404,
            &[FieldError::new("path", "no origin configured (ORIGIN_URL)")],
        )?));
    };
    let url = Target::of(req);
    let target = format!(
        "{}{}{}",
        origin.trim_end_matches('/'),
        url.path,
        url.query.map(|q| format!("?{q}")).unwrap_or_default()
    );
    let headers = Headers::new();
    for (k, v) in req.headers().entries() {
        if k == "host" || k == "connection" {
            continue;
        }
        if k == "cookie" {
            let kept: Vec<&str> = v
                .split(';')
                .map(str::trim)
                .filter(|c| !c.starts_with("edgerec_"))
                .collect();
            if !kept.is_empty() {
                headers.set("cookie", &kept.join("; "))?;
            }
            continue;
        }
        headers.set(&k, &v)?;
    }
    let mut init = worker::RequestInit::new();
    init.with_method(req.method()).with_headers(headers);
    if !matches!(req.method(), Method::Get | Method::Head) {
        let mut req = req.clone()?;
        init.with_body(Some(
            js_sys::Uint8Array::from(req.bytes().await?.as_slice()).into(),
        ));
    }
    match Fetch::Request(Request::new_with_init(&target, &init)?)
        .send()
        .await
    {
        Ok(r) => Ok(Ok(r)),
        Err(e) => {
            stats::inc("origin_errors");
            Ok(Err(errors(
                502,
                &[FieldError::new("origin", e.to_string())],
            )?))
        }
    }
}

/// The origin's answer, untouched.
async fn proxy(req: Request, s: &Settings) -> worker::Result<Response> {
    Ok(forward(&req, s).await?.unwrap_or_else(|answer| answer))
}

async fn intercept_request(
    req: Request,
    env: &Env,
    ctx: &Context,
    s: &Settings,
) -> worker::Result<Response> {
    let upstream = match forward(&req, s).await? {
        Ok(r) => r,
        Err(answer) => return Ok(answer),
    };
    let url = Target::of(&req);
    let raw: web_sys::Response = upstream.into();
    if !intercept::is_html(&raw) || req.method() != Method::Get {
        return Ok(raw.into());
    }
    // A page is never refused for its session: without a usable identity it goes out as the
    // origin sent it.
    let Ok(id) = identity::identify(&req, s) else {
        return Ok(raw.into());
    };
    let now = now_ms();
    let (engine, loaded) = engine_and_session(env, s, Some(&id), now).await?;
    let mut fill: Option<SlotFill> = None;
    let mut blob = None;
    if let Some(engine) = &engine {
        let context = context_of(&req, &id, Some("page".into()), url.path.clone());
        let decided = decide_for(engine, env, ctx, s, (&id, loaded), context, SLOT_ITEMS).await;
        if let Ok((d, b)) = decided {
            stats::inc("pages_filled");
            let item_url = env
                .var("ITEM_URL_TEMPLATE")
                .map(|v| v.to_string())
                .unwrap_or_else(|_| "/p/{id}".into());
            let items = render(&d, &item_url);
            if !items.is_empty() {
                fill = Some(SlotFill {
                    html: items.join(""),
                    tier: d.tier.as_str(),
                });
            }
            blob = b;
        }
    }
    let fill = Rc::new(fill);
    let rewritten = intercept::rewrite(
        raw,
        move |_slot: &str| {
            fill.as_ref().as_ref().map(|f| SlotFill {
                html: f.html.clone(),
                tier: f.tier,
            })
        },
        TRACKER_PATH,
    )
    .map_err(|e| worker::Error::from(format!("rewrite failed: {e:?}")))?;
    let resp = intercept::with_mutable_headers(rewritten)
        .map_err(|e| worker::Error::from(format!("response rebuild failed: {e:?}")))?;
    with_cookies(resp.into(), &id, blob.as_deref(), s)
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
