//! Abuse limits through the Workers rate-limiting binding (`[[ratelimits]]` in
//! wrangler.toml; counted per Cloudflare location, periods of 10 or 60 s):
//!
//! | binding | key | guards |
//! | --- | --- | --- |
//! | `LIMIT_CLIENT` | client address | event posts and browser reports from one client |
//! | `LIMIT_SESSION` | session key | event posts and browser reports into one session |
//! | `LIMIT_NEW_SESSION` | client address | sessions minted by event posts from one client |
//!
//! A request over a limit gets 429 + `Retry-After`. Without the binding (or when it errors)
//! the request goes ahead and the miss is counted: limits protect the model, they must not
//! take the shop down.

use crate::stats::{self, Counter};
use worker::Env;

/// One limit to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Per client address.
    Client,
    /// Per session.
    Session,
    /// New sessions per client address.
    NewSession,
}

impl Limit {
    fn binding(self) -> &'static str {
        match self {
            Limit::Client => "LIMIT_CLIENT",
            Limit::Session => "LIMIT_SESSION",
            Limit::NewSession => "LIMIT_NEW_SESSION",
        }
    }

    /// The field a 429 names.
    pub fn field(self) -> &'static str {
        match self {
            Limit::Client => "client",
            Limit::Session => "session",
            Limit::NewSession => "new_sessions",
        }
    }
}

/// Checks the limits in order; the first one exceeded, if any.
pub async fn exceeded(env: &Env, checks: &[(Limit, &str)]) -> Option<Limit> {
    for &(limit, key) in checks {
        let Ok(binding) = env.rate_limiter(limit.binding()) else {
            stats::inc(Counter::RateLimitUnbound);
            continue;
        };
        match binding.limit(format!("{}:{key}", limit.field())).await {
            Ok(outcome) if !outcome.success => {
                stats::inc(match limit {
                    Limit::Client => Counter::ThrottledClient,
                    Limit::Session => Counter::ThrottledSession,
                    Limit::NewSession => Counter::ThrottledNewSession,
                });
                return Some(limit);
            }
            Ok(_) => {}
            Err(_) => stats::inc(Counter::RateLimitErrors),
        }
    }
    None
}
