//! Everything that is not the API goes to the origin: [`proxy`] passes an answer through
//! untouched; [`page`] fills the `data-edgerec-slot` elements of an HTML page with one
//! decision's items (the core's slot markup) as it streams, and injects the tracker.

use crate::budget::now_ms;
use crate::identity;
use crate::intercept::{self, SlotFill};
use crate::ladder::{self, Ask};
use crate::recommend::item_url;
use crate::respond::{context_of, error, with_cookies};
use crate::routes::TRACKER_PATH;
use crate::settings::Settings;
use crate::stats::{self, Counter};
use crate::target::Target;
use std::rc::Rc;
use worker::{Context, Env, Fetch, Headers, Method, Request, Response};

/// Items per slot: a page gets one decision (context.slot = "page") before it streams, and
/// every slot on it shows that list.
const SLOT_ITEMS: usize = 4;

/// Forwards a request to the origin; the origin never sees edgerec's own cookies or
/// hop-by-hop headers. `Err` is the answer to give instead (no origin, origin unreachable).
pub(crate) async fn forward(
    req: &Request,
    s: &Settings,
) -> worker::Result<Result<Response, Response>> {
    let Some(origin) = s.origin_url.clone() else {
        return Ok(Err(error(
            404,
            "path",
            "no origin configured (ORIGIN_URL)",
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
            stats::inc(Counter::OriginErrors);
            Ok(Err(error(502, "origin", e)?))
        }
    }
}

/// The origin's answer, untouched.
pub(crate) async fn proxy(req: Request, s: &Settings) -> worker::Result<Response> {
    Ok(forward(&req, s).await?.unwrap_or_else(|answer| answer))
}

/// A page from the origin with its slots filled (HTML GETs only; anything else passes through).
/// A page is never refused for its session: without a usable identity or engine it goes out
/// as the origin sent it.
pub(crate) async fn page(
    req: Request,
    env: &Env,
    ctx: &Context,
    s: &Settings,
) -> worker::Result<Response> {
    let upstream = match forward(&req, s).await? {
        Ok(r) => r,
        Err(answer) => return Ok(answer),
    };
    let raw: web_sys::Response = upstream.into();
    if !intercept::is_html(&raw) || req.method() != Method::Get {
        return Ok(raw.into());
    }
    let Ok(id) = identity::identify(&req, s) else {
        return Ok(raw.into());
    };
    let (engine, loaded) = ladder::engine_and_session(env, s, Some(&id), now_ms()).await?;
    let mut fill: Option<SlotFill> = None;
    let mut blob = None;
    if let Some(engine) = &engine {
        let context = context_of(&req, &id, Some("page".into()), Target::of(&req).path);
        let ask = Ask {
            id: &id,
            loaded,
            context,
            limit: SLOT_ITEMS,
            fault: ladder::fault_injected(&req, env),
        };
        let (d, b) = ladder::decide(engine, env, ctx, s, ask).await;
        stats::inc(Counter::PagesFilled);
        if !d.items.is_empty() {
            fill = Some(SlotFill {
                html: edgerec::api::slot_list_html(&d.items, &item_url(env)),
                tier: d.tier.as_str(),
            });
        }
        blob = b;
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
