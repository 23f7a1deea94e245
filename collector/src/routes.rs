//! HTTP: `POST /v1/aggregates` (the one place a batch is acknowledged), `GET /metrics`,
//! `GET /healthz`, `GET /readyz`. Every refusal is a JSON body naming the field:
//! `{"errors":[{"field":"x-edgerec-signature","message":"bad signature"}]}`.

use crate::auth;
use crate::dedup::{Seen, Window};
use crate::metrics::{Metrics, Topic};
use crate::records;
use crate::settings::Settings;
use crate::sink::Sink;
use axum::body::{to_bytes, Body};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use edgerec::{AggregateBatch, FieldError};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Instant;

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

fn refuse(status: StatusCode, errors: &[FieldError]) -> Response {
    (status, Json(json!({ "errors": errors }))).into_response()
}

fn retry_later(message: &str) -> Response {
    let mut r = refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        &[FieldError::new("sink", message)],
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    r
}

/// Why a request body could not be read.
enum BodyError {
    TooLarge,
    Aborted,
    Timeout,
}

/// Reads the body within the size limit and `BODY_TIMEOUT_MS`.
async fn read_body(body: Body, s: &Settings) -> Result<axum::body::Bytes, BodyError> {
    let read = to_bytes(body, s.max_body_bytes);
    match tokio::time::timeout(std::time::Duration::from_millis(s.body_timeout_ms), read).await {
        Err(_) => Err(BodyError::Timeout),
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|c| c.is::<http_body_util::LengthLimitError>())
                || e.into_inner().is::<http_body_util::LengthLimitError>();
            Err(if too_large {
                BodyError::TooLarge
            } else {
                BodyError::Aborted
            })
        }
    }
}

async fn aggregates(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let s = &app.settings;
    let m = &app.metrics;
    let body = match read_body(body, s).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            m.reject("too_large");
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                &[FieldError::new(
                    "body",
                    format!("larger than {} bytes", s.max_body_bytes),
                )],
            );
        }
        Err(BodyError::Aborted) => {
            // The client went away mid-body; nobody reads this answer.
            m.reject("aborted");
            return refuse(
                StatusCode::BAD_REQUEST,
                &[FieldError::new("body", "the body ended early")],
            );
        }
        Err(BodyError::Timeout) => {
            m.reject("timeout");
            return refuse(
                StatusCode::REQUEST_TIMEOUT,
                &[FieldError::new(
                    "body",
                    format!("not received within {} ms", s.body_timeout_ms),
                )],
            );
        }
    };
    let now = now_ms();
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Err(e) = auth::verify(
        &s.secret,
        h("x-edgerec-timestamp"),
        h("x-edgerec-signature"),
        &body,
        now,
        s.max_skew_ms,
    ) {
        m.reject(e.reason());
        tracing::warn!(reason = e.reason(), "refused unauthenticated batch");
        return refuse(
            StatusCode::UNAUTHORIZED,
            &[FieldError::new(e.field(), e.to_string())],
        );
    }
    let batch = match AggregateBatch::decode(&body) {
        Ok(b) => b,
        Err(e) => return dead_letter(&app, e, &body, now).await,
    };
    let claim = app
        .dedup
        .lock()
        .map(|mut w| w.begin(&batch.id, now))
        .map_err(|_| ());
    match claim {
        Ok(Seen::New) => {}
        Ok(Seen::Done) => {
            m.duplicates.inc();
            return Json(json!({"ok": true, "duplicate": true, "id": batch.id})).into_response();
        }
        Ok(Seen::InFlight) => return retry_later("the same batch is being written"),
        Err(_) => return retry_later("dedup window unavailable"),
    }
    // The write, and the commit or abort of the claim, run in their own task: a client that
    // disconnects drops this handler, never the claim.
    let id = batch.id.clone();
    let task = tokio::spawn(write_batch(Arc::clone(&app), batch, body.len()));
    match task.await {
        Ok(Ok(records)) => {
            Json(json!({"ok": true, "duplicate": false, "id": id, "records": records}))
                .into_response()
        }
        Ok(Err(e)) => retry_later(&e.to_string()),
        Err(e) => {
            tracing::error!(batch = %id, error = %e, "write task failed");
            retry_later("write task failed")
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
            for r in &recs {
                m.records
                    .get_or_create(&Topic {
                        topic: r.topic.clone(),
                    })
                    .inc();
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

/// An authenticated but unusable batch: kept in the dead-letter topic with the reason.
async fn dead_letter(
    app: &App,
    e: edgerec::aggregate::BatchError,
    body: &[u8],
    now: u64,
) -> Response {
    let fields = e.fields();
    let reason = match e {
        edgerec::aggregate::BatchError::Decode(_) => "undecodable",
        edgerec::aggregate::BatchError::Invalid(_) => "invalid",
    };
    app.metrics.reject(reason);
    let dl = records::dead_letter(&app.settings.topic_prefix, reason, &fields, body, now);
    if let Err(e) = app.sink.write(std::slice::from_ref(&dl)).await {
        tracing::error!(error = %e, "dead letter not written");
        return retry_later("dead-letter write failed; retry");
    }
    app.metrics
        .records
        .get_or_create(&Topic { topic: dl.topic })
        .inc();
    tracing::warn!(reason, "dead-lettered an authenticated batch");
    refuse(StatusCode::BAD_REQUEST, &fields)
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}

async fn summary(State(app): State<Arc<App>>) -> Response {
    match app.summary.lock() {
        Ok(s) => Json(s.view(10)).into_response(),
        Err(_) => retry_later("summary unavailable"),
    }
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.sink.ready().await {
        Json(json!({"ok": true, "sink": app.sink.kind()})).into_response()
    } else {
        retry_later("sink not ready")
    }
}
