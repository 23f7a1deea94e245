//! HTTP: `POST /v1/aggregates` (the one place a batch is acknowledged), `GET /metrics`,
//! `GET /healthz`, `GET /readyz`. Every refusal is a JSON body naming the field:
//! `{"errors":[{"field":"x-edgerec-signature","message":"bad signature"}]}`.

use crate::auth;
use crate::dedup::{Seen, Window};
use crate::metrics::{Metrics, Topic};
use crate::settings::Settings;
use crate::sink::Sink;
use axum::body::to_bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use edgerec::records;
use edgerec::{AggregateBatch, FieldError};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Shared state of the service.
pub struct App {
    /// Settings.
    pub settings: Settings,
    /// Where records go.
    pub sink: Sink,
    /// Recently acknowledged batch ids.
    pub dedup: Mutex<Window>,
    /// Metrics.
    pub metrics: Metrics,
    /// Running totals for the dashboard.
    pub summary: Mutex<crate::summary::Summary>,
}

impl App {
    /// Builds the state.
    pub fn new(settings: Settings, sink: Sink) -> Arc<App> {
        let dedup = Window::new(
            settings.dedup_max_ids,
            settings.dedup_max_age_ms,
            settings.dedup_claim_max_ms,
        );
        Arc::new(App {
            settings,
            sink,
            dedup: Mutex::new(dedup),
            metrics: Metrics::new(),
            summary: Mutex::new(Default::default()),
        })
    }
}

/// The collector's OpenAPI 3.1 document (`schema/collector.openapi.json`, owned by the core).
pub const OPENAPI_JSON: &str = edgerec::api::COLLECTOR_OPENAPI;

/// Every (method, path) the router serves; `schema/collector.openapi.json` documents exactly
/// these (a test compares them, another requests each).
pub const ROUTES: [(&str, &str); 6] = [
    ("POST", "/v1/aggregates"),
    ("GET", "/v1/summary"),
    ("GET", "/metrics"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/openapi.json"),
];

/// The router.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/aggregates", post(aggregates))
        .route("/v1/summary", get(summary))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { Json(json!({"ok": true})) }))
        .route("/readyz", get(readyz))
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON) }),
        )
        .layer(DefaultBodyLimit::disable())
        .with_state(app)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Every way a request is refused: the error type is the response (status, `{"errors"}`
/// body naming the field, `retry-after` where a retry can succeed), and each refusal is counted
/// by its reason in `edgerec_collector_rejected_total`.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Body over `MAX_BODY_BYTES` → 413.
    #[error("larger than {0} bytes")]
    TooLarge(usize),
    /// The client went away mid-body → 400 (nobody reads it).
    #[error("the body ended early")]
    Aborted,
    /// Body not received within `BODY_TIMEOUT_MS` → 408.
    #[error("not received within {0} ms")]
    Timeout(u64),
    /// Signature or timestamp refused → 401.
    #[error(transparent)]
    Unauthenticated(#[from] auth::AuthError),
    /// Authenticated but unusable (dead-lettered) → 400.
    #[error("invalid batch")]
    Invalid(Vec<FieldError>),
    /// Not written now; the same request can succeed later → 503 + `retry-after: 1`.
    #[error("{0}")]
    RetryLater(String),
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Aborted | Refusal::Invalid(_) => StatusCode::BAD_REQUEST,
            Refusal::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            Refusal::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Refusal::RetryLater(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `reason` label it is counted under (dead letters and sink failures are counted
    /// where they happen).
    fn reason(&self) -> Option<&'static str> {
        match self {
            Refusal::TooLarge(_) => Some("too_large"),
            Refusal::Aborted => Some("aborted"),
            Refusal::Timeout(_) => Some("timeout"),
            Refusal::Unauthenticated(e) => Some(e.reason()),
            Refusal::Invalid(_) | Refusal::RetryLater(_) => None,
        }
    }

    fn fields(&self) -> Vec<FieldError> {
        match self {
            Refusal::Invalid(f) => f.clone(),
            Refusal::Unauthenticated(e) => vec![FieldError::new(e.field(), e.to_string())],
            Refusal::RetryLater(m) => vec![FieldError::new("sink", m.as_str())],
            other => vec![FieldError::new("body", other.to_string())],
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = edgerec::api::ErrorBody::new(self.fields());
        let mut r = (self.status(), Json(body)).into_response();
        if matches!(self, Refusal::RetryLater(_)) {
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        r
    }
}

/// A request body whose signature checked out: the extractor reads the body within the size
/// limit and `BODY_TIMEOUT_MS`, then verifies `x-edgerec-timestamp` / `x-edgerec-signature`.
/// Anything else is a [`Refusal`], counted.
pub struct Signed {
    /// The body, as signed.
    pub body: axum::body::Bytes,
    /// When it was verified, Unix ms.
    pub now_ms: u64,
}

impl FromRequest<Arc<App>> for Signed {
    type Rejection = Refusal;

    async fn from_request(req: Request, app: &Arc<App>) -> Result<Signed, Refusal> {
        let checked = signed(req, &app.settings).await;
        if let Err(r) = &checked {
            if let Some(reason) = r.reason() {
                app.metrics.reject(reason);
            }
            if let Refusal::Unauthenticated(e) = r {
                tracing::warn!(reason = e.reason(), "refused unauthenticated batch");
            }
        }
        checked
    }
}

async fn signed(req: Request, s: &Settings) -> Result<Signed, Refusal> {
    let (parts, body) = req.into_parts();
    let read = to_bytes(body, s.max_body_bytes);
    let body = match tokio::time::timeout(Duration::from_millis(s.body_timeout_ms), read).await {
        Err(_) => return Err(Refusal::Timeout(s.body_timeout_ms)),
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|c| c.is::<http_body_util::LengthLimitError>())
                || e.into_inner().is::<http_body_util::LengthLimitError>();
            return Err(if too_large {
                Refusal::TooLarge(s.max_body_bytes)
            } else {
                Refusal::Aborted
            });
        }
    };
    let now_ms = now_ms();
    let h = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    auth::verify(
        &s.secret,
        h("x-edgerec-timestamp"),
        h("x-edgerec-signature"),
        &body,
        now_ms,
        s.max_skew_ms,
    )?;
    Ok(Signed { body, now_ms })
}

/// `POST /v1/aggregates`: decode (or dead-letter), claim the id, write, acknowledge.
async fn aggregates(State(app): State<Arc<App>>, req: Signed) -> Result<Json<Value>, Refusal> {
    let batch = match AggregateBatch::decode(&req.body) {
        Ok(b) => b,
        Err(e) => return Err(dead_letter(&app, e, &req.body, req.now_ms).await),
    };
    // (The lock's error holds the guard: dropped here, not held across the write.)
    let claim = app
        .dedup
        .lock()
        .map(|mut w| w.begin(&batch.id, req.now_ms))
        .map_err(|_| ());
    match claim {
        Ok(Seen::New) => {}
        Ok(Seen::Done) => {
            app.metrics.duplicates.inc();
            return Ok(Json(json!({"ok": true, "duplicate": true, "id": batch.id})));
        }
        Ok(Seen::InFlight) => {
            return Err(Refusal::RetryLater(
                "the same batch is being written".into(),
            ))
        }
        Err(_) => return Err(Refusal::RetryLater("dedup window unavailable".into())),
    }
    // The write, and the commit or abort of the claim, run in their own task: a client that
    // disconnects drops this handler, never the claim.
    let id = batch.id.clone();
    match tokio::spawn(write_batch(Arc::clone(&app), batch, req.body.len())).await {
        Ok(Ok(records)) => Ok(Json(
            json!({"ok": true, "duplicate": false, "id": id, "records": records}),
        )),
        Ok(Err(e)) => Err(Refusal::RetryLater(e.to_string())),
        Err(e) => {
            tracing::error!(batch = %id, error = %e, "write task failed");
            Err(Refusal::RetryLater("write task failed".into()))
        }
    }
}

/// Writes a claimed batch's records, then commits (or, on failure, releases) the claim.
async fn write_batch(
    app: Arc<App>,
    batch: AggregateBatch,
    body_len: usize,
) -> Result<usize, crate::sink::SinkError> {
    let (s, m) = (&app.settings, &app.metrics);
    let recs = records::from_batch(&batch, &s.topic_prefix);
    m.in_flight.inc_by(recs.len() as i64);
    let started = Instant::now();
    let written = app.sink.write(&recs).await;
    m.sink_latency.observe(started.elapsed().as_secs_f64());
    m.in_flight.dec_by(recs.len() as i64);
    match written {
        Ok(()) => {
            if let Ok(mut w) = app.dedup.lock() {
                w.commit(&batch.id, now_ms());
            }
            m.batches.inc();
            m.bytes.inc_by(body_len as u64);
            if let Ok(mut sum) = app.summary.lock() {
                sum.add(&batch.delta);
            }
            // One counter update per topic, not per record (a batch is ~30 records over 5
            // topics; each update clones the label and takes the family's lock).
            let mut per_topic: Vec<(&str, u64)> = Vec::with_capacity(8);
            for r in &recs {
                match per_topic.iter_mut().find(|(t, _)| *t == r.topic) {
                    Some((_, n)) => *n += 1,
                    None => per_topic.push((&r.topic, 1)),
                }
            }
            for (topic, n) in per_topic {
                m.records
                    .get_or_create(&Topic {
                        topic: topic.to_string(),
                    })
                    .inc_by(n);
            }
            tracing::info!(batch = %batch.id, source = %batch.source, records = recs.len(), events = batch.delta.events, "batch written");
            Ok(recs.len())
        }
        Err(e) => {
            if let Ok(mut w) = app.dedup.lock() {
                w.abort(&batch.id);
            }
            m.reject("sink_unavailable");
            tracing::error!(batch = %batch.id, error = %e, "batch not written");
            Err(e)
        }
    }
}

/// An authenticated but unusable batch: kept in the dead-letter topic with the reason, then
/// refused (400) — or 503 when even the dead letter could not be written.
async fn dead_letter(
    app: &App,
    e: edgerec::aggregate::BatchError,
    body: &[u8],
    now: u64,
) -> Refusal {
    let fields = e.fields();
    let reason = match e {
        edgerec::aggregate::BatchError::Decode(_) => "undecodable",
        edgerec::aggregate::BatchError::Invalid(_) => "invalid",
    };
    app.metrics.reject(reason);
    let dl = records::dead_letter(&app.settings.topic_prefix, reason, &fields, body, now);
    if let Err(e) = app.sink.write(std::slice::from_ref(&dl)).await {
        tracing::error!(error = %e, "dead letter not written");
        return Refusal::RetryLater("dead-letter write failed; retry".into());
    }
    app.metrics
        .records
        .get_or_create(&Topic { topic: dl.topic })
        .inc();
    tracing::warn!(reason, "dead-lettered an authenticated batch");
    Refusal::Invalid(fields)
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        exposition(&app),
    )
        .into_response()
}

/// Everything `/metrics` shows: the collector's own metrics, the edge's counters from the
/// running summary, and the experiment controller's verdicts when its report is configured.
pub fn exposition(app: &App) -> String {
    let mut text = app.metrics.render();
    // The registry's exposition ends with `# EOF`; the edge's counters and the controller's
    // verdicts go before it.
    let eof = text.rfind("# EOF").unwrap_or(text.len());
    text.truncate(eof);
    if let Ok(s) = app.summary.lock() {
        s.openmetrics(&mut text);
    }
    if let Some(path) = &app.settings.experiments_report {
        crate::experiments::openmetrics(path, &mut text);
    }
    text.push_str("# EOF\n");
    text
}

async fn summary(State(app): State<Arc<App>>) -> Response {
    match app.summary.lock() {
        Ok(s) => Json(s.view(10)).into_response(),
        Err(_) => Refusal::RetryLater("summary unavailable".into()).into_response(),
    }
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.sink.ready().await {
        Json(json!({"ok": true, "sink": app.sink.kind()})).into_response()
    } else {
        Refusal::RetryLater("sink not ready".into()).into_response()
    }
}
