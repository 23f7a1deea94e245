//! The live release for the browser fallback, byte for byte as published (ETag = content
//! hash): `GET /v1/model/bundle` (JSON), `GET /v1/model/catalog` (the model head, MessagePack),
//! `GET /v1/model/shard?key=` (one item shard, immutable).

use crate::budget::now_ms;
use crate::config;
use crate::respond::{error, no_config};
use crate::settings::Settings;
use crate::target::Target;
use worker::{Env, Request, Response};

/// The live bundle or model head, byte for byte as published; `304` when the client has it.
pub(crate) async fn model(
    req: &Request,
    env: &Env,
    s: &Settings,
    catalog: bool,
) -> worker::Result<Response> {
    let _ = config::engine(&env.kv("CONFIG")?, s, now_ms()).await;
    let Some(raw) = config::raw() else {
        return no_config();
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
pub(crate) async fn model_shard(
    req: &Request,
    env: &Env,
    s: &Settings,
) -> worker::Result<Response> {
    let key = Target::of(req)
        .query_pairs()
        .find(|(k, _)| k == "key")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    if !edgerec::model::is_shard_key(&key) {
        return error(
            400,
            "key",
            "not a model shard key (shard:<base>:<i> or patch:<hash>)",
        );
    }
    let kv = env.kv("CONFIG")?;
    let read = crate::budget::within(s.shard_budget_ms, kv.get(&key).text()).await;
    let text = match read {
        Some(Ok(Some(t))) => t,
        Some(Ok(None)) => return error(404, "key", "no such shard"),
        _ => return error(503, "config", "model shard read failed"),
    };
    let mut r = Response::ok(text)?;
    let h = r.headers_mut();
    h.set("content-type", "text/plain; charset=utf-8")?;
    h.set("cache-control", "public, max-age=31536000, immutable")?;
    Ok(r)
}
