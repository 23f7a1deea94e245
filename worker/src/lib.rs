//! The Cloudflare Workers host of the edgerec core: one module per concern.
//!
//! | concern | module |
//! | --- | --- |
//! | the dispatch table | [`routes`] |
//! | endpoints: events in, recommendations out, browser reports, the model, operations | [`events`], [`recommend`], [`reports`], [`model`], [`health`] |
//! | the fallback ladder: full → cached → static | [`ladder`] |
//! | a shadow bundle decided after the answer, only counted | [`shadow`] |
//! | answers: bodies, refusals, cookies, request context | [`respond`] |
//! | the origin: proxy, pages with their slots filled | [`origin`] |
//! | who is asking: cookie sessions, credentialed server sessions | [`identity`] |
//! | signed cookies: session id and the hot copy | [`cookie`] |
//! | rate limits (the Workers rate-limiting binding) | [`limits`] |
//! | session blobs: read order, coalesced KV writes (plain state: [`copies`]) | [`store`] |
//! | rules and catalog from KV, cached per isolate | [`config`] |
//! | request interception and HTML slot filling | [`intercept`] |
//! | aggregate outbox (a plain state machine) and signed flush | [`outbox`], [`flush`] |
//! | deadlines and circuit breakers | [`budget`], [`breaker`] |
//! | settings from the environment; isolate counters | [`settings`], [`stats`] |
//! | the request URL in parts (without the `url` crate) | [`target`] |
//!
//! No code path here may panic: a panic leaves the wasm instance broken for every later
//! request on the isolate. Fallible calls return errors; the entry point turns an unexpected
//! error into a JSON 500 for non-decision routes (decision routes fall back instead).

// Talc instead of the default dlmalloc (the same allocator as the browser build): smaller and
// faster for a decision's few hundred small blocks.
#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

pub mod breaker;
pub mod budget;
pub mod config;
pub mod cookie;
pub mod copies;
pub mod events;
pub mod flush;
pub mod health;
pub mod identity;
pub mod intercept;
pub mod ladder;
pub mod limits;
pub mod model;
pub mod origin;
pub mod outbox;
pub mod random;
pub mod recommend;
pub mod reports;
pub mod respond;
pub mod routes;
pub mod settings;
pub mod shadow;
pub mod shards;
pub mod stats;
pub mod store;
pub mod target;

use crate::stats::Counter;
use worker::{event, Context, Env, Request, Response};

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    match routes::handle(req, env, ctx).await {
        Ok(resp) => Ok(resp),
        Err(e) => {
            stats::inc(Counter::InternalErrors);
            worker::console_error!("edgerec: {e}");
            respond::error(500, "request", e)
        }
    }
}
