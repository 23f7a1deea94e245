//! Building answers: JSON and error bodies (the core's [`ErrorBody`]), refusals shared by
//! the endpoints (413, 429, identity), the request body within its limit, session cookies and
//! the state a browser keeps, and the decision context of a request.

use crate::cookie::{self, HOT_COOKIE, SID_COOKIE};
use crate::identity::{Identity, IdentityError, Kind};
use crate::limits::Limit;
use crate::settings::Settings;
use crate::stats::{self, Counter};
use edgerec::api::ErrorBody;
use edgerec::{Context as Ctx, FieldError};
use serde_json::json;
use worker::{Request, Response};

/// A text body with its content type and cache policy.
pub(crate) fn text(body: &str, content_type: &str, cache: &str) -> worker::Result<Response> {
    let mut r = Response::ok(body)?;
    r.headers_mut().set("content-type", content_type)?;
    r.headers_mut().set("cache-control", cache)?;
    Ok(r)
}

/// A JSON answer.
pub(crate) fn json_response<T: serde::Serialize>(
    status: u16,
    body: &T,
) -> worker::Result<Response> {
    Ok(Response::from_json(body)?.with_status(status))
}

/// A refusal: `{"errors":[...]}`.
pub(crate) fn errors(status: u16, errors: &[FieldError]) -> worker::Result<Response> {
    json_response(status, &ErrorBody::new(errors.to_vec()))
}

/// A refusal naming one field.
pub(crate) fn error(
    status: u16,
    field: &str,
    message: impl std::fmt::Display,
) -> worker::Result<Response> {
    json_response(status, &ErrorBody::one(field, message))
}

/// 503: nothing published can be loaded yet.
pub(crate) fn no_config() -> worker::Result<Response> {
    error(503, "config", "no rules/catalog loaded yet")
}

/// 429 for a request over a rate limit.
pub(crate) fn throttled(limit: Limit) -> worker::Result<Response> {
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

/// The refusal for an identity error.
pub(crate) fn identity_error(e: &IdentityError) -> worker::Result<Response> {
    errors(e.status(), &[FieldError::new(e.field(), e.to_string())])
}

/// The body, or the refusal to answer with (413 over `MAX_BODY_BYTES`, 400 cut short).
pub(crate) async fn read_body(
    req: &mut Request,
    s: &Settings,
) -> Result<Vec<u8>, worker::Result<Response>> {
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

/// 413, counted.
pub(crate) fn too_large(s: &Settings) -> worker::Result<Response> {
    stats::inc(Counter::EventsRejectedTooLarge);
    errors(
        413,
        &[FieldError::new(
            "body",
            format!("larger than {} bytes", s.max_body_bytes),
        )],
    )
}

/// The experiment variant of a session (bucketed by its unit, as its decisions are).
pub(crate) fn variant_of(engine: &edgerec::Engine, id: &Identity) -> Option<String> {
    engine.variant_for(&Ctx {
        session_id: Some(id.unit.clone()),
        ..Ctx::default()
    })
}

/// Counts an API response under the variant of the session it went to: the experiments'
/// error-share guardrail. Only responses made once the session and the rules are known can be
/// told apart by variant (a malformed body or session header is refused before either).
pub(crate) fn count_for_variant(
    engine: &edgerec::Engine,
    variant: Option<&str>,
    s: &Settings,
    status: u16,
    now: u64,
) {
    if let Some(v) = variant {
        let mut d = edgerec::AggregateDelta::default();
        d.arm(&engine.variant_key(v)).count_response(status);
        crate::flush::record(s, &d, now);
    }
}

/// The decision context of a request: country, device class, path, slot, experiment unit.
pub(crate) fn context_of(req: &Request, id: &Identity, slot: Option<String>, path: String) -> Ctx {
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
pub(crate) fn with_cookies(
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
        let at = crate::store::cookie_time(&id.key, blob);
        let v = cookie::hot_value(&s.session_secret, &id.sid, blob, at);
        h.append(
            "set-cookie",
            &cookie::set_cookie(HOT_COOKIE, &v, s.session_ttl_s, id.secure),
        )?;
    }
    Ok(resp)
}

/// Adds the session blob and experiment unit for clients that keep a copy (the browser
/// fallback). Never the session id: only the signed cookie names a session.
pub(crate) fn add_state(
    req: &Request,
    body: &mut serde_json::Value,
    id: &Identity,
    blob: Option<&[u8]>,
) {
    let wants = req.headers().get("x-edgerec-want-state").ok().flatten();
    if wants.as_deref() == Some("1") {
        use base64::Engine as _;
        body["unit"] = json!(id.unit);
        body["state"] =
            json!(blob.map(|b| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)));
    }
}
