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
        let dedup = Window::new(settings.dedup_max_ids, settings.dedup_max_age_ms);
        Arc::new(App {
            settings,
            sink,
            dedup: Mutex::new(dedup),
            metrics: Metrics::new(),
            summary: Mutex::new(Default::default()),
        })
    }
}

/// The router.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/aggregates", post(aggregates))
        .route("/metrics", get(metrics))
        .route("/v1/summary", get(summary))
        .route("/healthz", get(|| async { Json(json!({"ok": true})) }))
        .route("/readyz", get(readyz))
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

async fn aggregates(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let s = &app.settings;
    let m = &app.metrics;
    let Ok(body) = to_bytes(body, s.max_body_bytes).await else {
        m.reject("too_large");
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            &[FieldError::new(
                "body",
                format!("larger than {} bytes", s.max_body_bytes),
            )],
        );
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
        let field = match e {
            auth::AuthError::Skew { .. } => "x-edgerec-timestamp",
            auth::AuthError::Malformed(f) => f,
            auth::AuthError::BadSignature => "x-edgerec-signature",
        };
        return refuse(
            StatusCode::UNAUTHORIZED,
            &[FieldError::new(field, e.to_string())],
        );
    }
    let batch = match AggregateBatch::decode(&body) {
        Ok(b) => b,
        Err(e) => {
            // Authenticated but unusable: keep it in the dead-letter topic with the reason.
            let fields = e.fields();
            let reason = match e {
                edgerec::aggregate::BatchError::Decode(_) => "undecodable",
                edgerec::aggregate::BatchError::Invalid(_) => "invalid",
            };
            m.reject(reason);
            let dl = records::dead_letter(&s.topic_prefix, reason, &fields, &body, now);
            if let Err(e) = app.sink.write(std::slice::from_ref(&dl)).await {
                tracing::error!(error = %e, "dead letter not written");
                return retry_later("dead-letter write failed; retry");
            }
            m.records.get_or_create(&Topic { topic: dl.topic }).inc();
            tracing::warn!(reason, "dead-lettered an authenticated batch");
            return refuse(StatusCode::BAD_REQUEST, &fields);
        }
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
            m.bytes.inc_by(body.len() as u64);
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
            Json(json!({"ok": true, "duplicate": false, "id": batch.id, "records": recs.len()}))
                .into_response()
        }
        Err(e) => {
            if let Ok(mut w) = app.dedup.lock() {
                w.abort(&batch.id);
            }
            m.reject("sink_unavailable");
            tracing::error!(batch = %batch.id, error = %e, "batch not written");
            retry_later(&e.to_string())
        }
    }
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
