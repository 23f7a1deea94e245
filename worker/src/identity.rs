//! Who is asking. A browser session is addressable only through its signed cookie
//! (`edgerec_sid=<id>.<HMAC>`); knowing a session id without the cookie gives nothing. A
//! server-to-server client names its own session with `x-edgerec-session: <id>` and proves it
//! may with `authorization: Bearer <SERVER_API_KEY>`; such sessions live in their own KV key
//! space (`h:<id>`, cookie sessions are `s:<id>`), so a header can never reach a cookie
//! session. Answers never carry a session id: the browser gets only `unit`, a keyed hash
//! that is the experiment unit (the same value the edge buckets by).

use crate::cookie::{self, HOT_COOKIE, SID_COOKIE, SID_HEADER};
use crate::settings::Settings;
use crate::stats::{self, Counter};
use worker::Request;

/// How the session was named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A signed cookie the edge minted (possibly just now).
    Cookie,
    /// A server-to-server client with the API key.
    Server,
}

/// The session a request belongs to.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The session id (never sent back to a browser).
    pub sid: String,
    /// Where its blob lives in `SESSIONS`: `s:<id>` or `h:<id>`.
    pub key: String,
    /// How it was named.
    pub kind: Kind,
    /// Minted by this request (a `Set-Cookie` goes out).
    pub minted: bool,
    /// The hot copy from the cookie: blob and the time it was written.
    pub hot: Option<(Vec<u8>, u64)>,
    /// Whether the request came over https (cookies get `Secure`).
    pub secure: bool,
    /// The experiment unit: a keyed hash of the key, safe to show the browser.
    pub unit: String,
}

/// Why a request has no usable identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// `x-edgerec-session` without a valid `authorization: Bearer <SERVER_API_KEY>`.
    #[error("x-edgerec-session needs authorization: Bearer <SERVER_API_KEY>")]
    Credential,
    /// `x-edgerec-session` is not 8–64 of `[A-Za-z0-9_-]`.
    #[error("x-edgerec-session must be 8-64 of [A-Za-z0-9_-]")]
    BadId,
    /// No random bytes for a new session id.
    #[error(transparent)]
    NoRandomness(#[from] crate::random::NoRandomness),
}

impl IdentityError {
    /// The header the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            IdentityError::Credential => "authorization",
            IdentityError::BadId => SID_HEADER,
            IdentityError::NoRandomness(_) => "session",
        }
    }

    /// The HTTP status it gets.
    pub fn status(&self) -> u16 {
        match self {
            IdentityError::Credential => 401,
            IdentityError::BadId => 400,
            IdentityError::NoRandomness(_) => 503,
        }
    }
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

/// The request's session: a credentialed header, else the signed cookie, else a new one.
pub fn identify(req: &Request, s: &Settings) -> Result<Identity, IdentityError> {
    let secure = crate::target::Target::of(req).https;
    let secret = &s.session_secret;
    if let Some(id) = header(req, SID_HEADER) {
        let given = header(req, "authorization");
        let key_ok = match (&s.server_api_key, given.as_deref()) {
            (Some(k), Some(g)) => g
                .strip_prefix("Bearer ")
                .is_some_and(|g| cookie::same_secret(secret, k, g)),
            _ => false,
        };
        if !key_ok {
            stats::inc(Counter::ServerSessionsRefused);
            return Err(IdentityError::Credential);
        }
        if !cookie::valid_id(&id) {
            return Err(IdentityError::BadId);
        }
        let key = format!("h:{id}");
        return Ok(Identity {
            unit: cookie::unit(secret, &key),
            sid: id,
            key,
            kind: Kind::Server,
            minted: false,
            hot: None,
            secure,
        });
    }
    let cookies = header(req, "cookie").unwrap_or_default();
    let from_cookie = cookie::find(&cookies, SID_COOKIE).and_then(|v| cookie::parse_sid(secret, v));
    let (sid, minted, hot) = match from_cookie {
        Some(sid) => {
            let hot =
                cookie::find(&cookies, HOT_COOKIE).and_then(|v| cookie::parse_hot(secret, &sid, v));
            (sid, false, hot)
        }
        None => {
            if cookie::find(&cookies, SID_COOKIE).is_some() {
                stats::inc(Counter::BadSessionCookies);
            }
            (cookie::new_id()?, true, None)
        }
    };
    let key = format!("s:{sid}");
    Ok(Identity {
        unit: cookie::unit(secret, &key),
        sid,
        key,
        kind: Kind::Cookie,
        minted,
        hot,
        secure,
    })
}

/// The client's address (`cf-connecting-ip`, set by the platform), the rate limits' key.
pub fn client(req: &Request) -> String {
    header(req, "cf-connecting-ip")
        .filter(|ip| ip.len() <= 64)
        .unwrap_or_else(|| "unknown".into())
}
