//! The collector over HTTP (in process): signed batches in, records in the file, duplicates
//! once, every refusal a JSON body naming the field, dead letters for authenticated junk, and
//! 503 + Retry-After when the sink cannot write.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use edgerec::aggregate::{AggregateBatch, AggregateDelta};
use edgerec::EventKind;
use edgerec_collector::auth::sign;
use edgerec_collector::routes::{router, App};
use edgerec_collector::settings::Settings;
use edgerec_collector::sink::{FileSink, Sink};
use http_body_util::BodyExt;
use std::path::{Path, PathBuf};
use tower::ServiceExt;

const SECRET: &str = "test-secret";

fn settings(file: &Path) -> Settings {
    let mut s = Settings::for_tests(SECRET, file.to_path_buf());
    s.max_skew_ms = 60_000;
    s.max_body_bytes = 64 * 1024;
    s.dedup_max_ids = 1000;
    s.dedup_max_age_ms = 3_600_000;
    s
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgerec-collector-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("records.jsonl")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn batch(id: &str, views: u64) -> Vec<u8> {
    let mut d = AggregateDelta::default();
    for i in 0..views {
        d.count_event(&format!("sku-{}", i % 3), EventKind::View);
    }
    d.count_transition("sku-0", "sku-1");
    d.count_rule("repeat-view-related");
    d.count_tier("full");
    d.decisions = 2;
    d.events = views;
    AggregateBatch::new(id, "test-edge", now(), d).encode()
}

async fn post(
    app: &axum::Router,
    body: Vec<u8>,
    ts: Option<u64>,
    sig: Option<String>,
) -> (StatusCode, serde_json::Value, Option<String>) {
    let mut req = Request::post("/v1/aggregates").header("content-type", "application/msgpack");
    let ts = ts.unwrap_or_else(now);
    let sig = sig.unwrap_or_else(|| sign(SECRET, ts, &body));
    req = req
        .header("x-edgerec-timestamp", ts.to_string())
        .header("x-edgerec-signature", sig);
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or_default(),
        retry,
    )
}

fn lines(file: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn app_for(file: &Path) -> (axum::Router, std::sync::Arc<App>) {
    let sink = Sink::File(FileSink::open(file).await.unwrap());
    let app = App::new(settings(file), sink);
    (router(app.clone()), app)
}

#[tokio::test]
async fn batches_become_records_once() {
    let file = tmp("once");
    let (app, _) = app_for(&file).await;
    let (s, body, _) = post(&app, batch("b-1", 7), None, None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["duplicate"], false);
    let (s, body, _) = post(&app, batch("b-1", 7), None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["duplicate"], true);
    let (s, _, _) = post(&app, batch("b-2", 5), None, None).await;
    assert_eq!(s, StatusCode::OK);
    let recs = lines(&file);
    let views: u64 = recs
        .iter()
        .filter(|r| r["topic"] == "edgerec.views")
        .map(|r| r["value"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(views, 12, "7 + 5 views, the duplicate not counted");
    assert!(recs
        .iter()
        .all(|r| r["headers"]["edgerec-batch-id"].is_string()));
    assert_eq!(
        recs.iter()
            .filter(|r| r["topic"] == "edgerec.transitions")
            .count(),
        2
    );
    assert_eq!(
        recs.iter()
            .filter(|r| r["topic"] == "edgerec.decisions")
            .count(),
        2
    );
    // The per-topic counters on /metrics agree with the records written.
    let r = app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text =
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    let mut topics: Vec<&str> = recs.iter().map(|r| r["topic"].as_str().unwrap()).collect();
    topics.sort();
    topics.dedup();
    assert!(topics.len() >= 3, "{topics:?}");
    for t in topics {
        let written = recs.iter().filter(|r| r["topic"] == t).count();
        let line = format!("edgerec_collector_records_total{{topic=\"{t}\"}} {written}");
        assert!(text.contains(&line), "{line} missing from:\n{text}");
    }
}

#[tokio::test]
async fn bad_input_matrix() {
    let file = tmp("matrix");
    let (app, state) = app_for(&file).await;
    let good = batch("m-1", 3);
    // Bad signature, wrong secret, missing headers, skew.
    let (s, b, _) = post(&app, good.clone(), None, Some("v1=00".into())).await;
    assert_eq!(
        (s, b["errors"][0]["field"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("x-edgerec-signature"))
    );
    let ts = now();
    let (s, _, _) = post(&app, good.clone(), Some(ts), Some(sign("other", ts, &good))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let old = now() - 3_600_000;
    let (s, b, _) = post(
        &app,
        good.clone(),
        Some(old),
        Some(sign(SECRET, old, &good)),
    )
    .await;
    assert_eq!(
        (s, b["errors"][0]["field"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("x-edgerec-timestamp"))
    );
    let resp = app
        .clone()
        .oneshot(
            Request::post("/v1/aggregates")
                .body(Body::from(good.clone()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // Too large.
    let (s, b, _) = post(&app, vec![0u8; 70 * 1024], None, None).await;
    assert_eq!(
        (s, b["errors"][0]["field"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("body"))
    );
    assert!(
        lines(&file).is_empty(),
        "nothing unauthenticated or oversize is written"
    );
    // Signed garbage and signed nonsense go to the dead-letter topic with a 400.
    let (s, b, _) = post(&app, b"\x93garbage".to_vec(), None, None).await;
    assert_eq!(
        (s, b["errors"][0]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("body"))
    );
    let mut d = AggregateDelta::default();
    d.count_event("sku-1", EventKind::Click);
    d.items.get_mut("sku-1").unwrap().clicks = u64::MAX;
    let huge = AggregateBatch::new("m-huge", "e", now(), d).encode();
    let (s, b, _) = post(&app, huge, None, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(b["errors"][0]["field"]
        .as_str()
        .unwrap()
        .starts_with("delta.items"));
    let wrong_types = rmp_serde::to_vec_named(
        &serde_json::json!({"v": 1, "id": 7, "source": [], "created_ms": "x", "delta": 1}),
    )
    .unwrap();
    let (s, _, _) = post(&app, wrong_types, None, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let dead = lines(&file);
    assert_eq!(dead.len(), 3);
    assert!(dead
        .iter()
        .all(|r| r["topic"] == "edgerec.deadletter" && r["value"]["reason"].is_string()));
    // Still serving.
    let (s, _, _) = post(&app, good, None, None).await;
    assert_eq!(s, StatusCode::OK);
    let m = state.metrics.render();
    for want in [
        "edgerec_collector_rejects_total{reason=\"bad_signature\"} 2",
        "reason=\"skew\"",
        "reason=\"too_large\"",
        "reason=\"invalid\"",
        "edgerec_collector_batches_total 1",
    ] {
        assert!(m.contains(want), "metrics lack {want}:\n{m}");
    }
}

#[tokio::test]
async fn a_sink_that_cannot_write_answers_503_and_acknowledges_nothing() {
    let (app, _) = app_for(Path::new("/dev/full")).await;
    let (s, b, retry) = post(&app, batch("f-1", 2), None, None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    assert_eq!(retry.as_deref(), Some("1"));
    // The id was not remembered: a retry against a working sink writes it.
    let file = tmp("retry");
    let (good, _) = app_for(&file).await;
    let (s, b, _) = post(&good, batch("f-1", 2), None, None).await;
    assert_eq!((s, b["duplicate"].as_bool()), (StatusCode::OK, Some(false)));
    let (s, b, _) = post(&app, batch("f-1", 2), None, None).await;
    assert_eq!(
        s,
        StatusCode::SERVICE_UNAVAILABLE,
        "still failing sink, id not marked done: {b}"
    );
}

#[tokio::test]
async fn health_ready_metrics() {
    let file = tmp("health");
    let (app, _) = app_for(&file).await;
    for (path, status) in [
        ("/healthz", 200),
        ("/readyz", 200),
        ("/metrics", 200),
        ("/nope", 404),
    ] {
        let r = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{path}");
    }
}

#[tokio::test]
async fn the_grafana_dashboard_and_alerts_only_use_exported_metrics() {
    let file = tmp("dash");
    // The controller's report, as the trainer writes it (one experiment, one variant).
    let report = file.with_file_name("experiments.json");
    std::fs::write(
        &report,
        r#"{"updated_ms":1000,"bundle":"b","model_published_ms":2000,"experiments":{"e\"x":{
          "report":{"control":"control","control_sessions":10,"srm":{"p_value":0.5},
            "variants":[{"name":"b","sessions":9,"wins":false,
              "guardrails":[{"guardrail":{"metric":"ctr","max_drop":0.1},"breached":true}],
              "metrics":[{"metric":"ctr","lift":-0.2,"lift_ci":[-0.5,0.1]}]}]},
          "looks":[],"stops":[{"at_ms":1,"reason":"r","from_bundle":"a","to_bundle":"b"}],"winners":[]}}}"#,
    )
    .unwrap();
    let sink = Sink::File(FileSink::open(&file).await.unwrap());
    let mut s = settings(&file);
    s.experiments_report = Some(report);
    let state = App::new(s, sink);
    let app = router(state.clone());
    // The edge's counters: a batch with decisions, rule hits, a variant and experiment sums.
    let mut d = AggregateDelta {
        decisions: 1,
        events: 1,
        ..AggregateDelta::default()
    };
    d.count_tier("full");
    d.count_rule("r1");
    d.count_variant("e/b", edgerec::aggregate::VariantEvent::Exposure);
    let arm = d.arm("e/b");
    edgerec::experiment::metrics::record(arm, None, 1, edgerec::experiment::metrics::Step::Click);
    let (st, body, _) = post(
        &app,
        AggregateBatch::new("g-1", "e", now(), d).encode(),
        None,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    // Labelled families appear once they have a member.
    state.metrics.reject("skew");
    state
        .metrics
        .records
        .get_or_create(&edgerec_collector::metrics::Topic {
            topic: "edgerec.views".into(),
        })
        .inc();
    state.metrics.sink_latency.observe(0.01);
    let exported = edgerec_collector::routes::exposition(&state);
    assert!(exported.ends_with("# EOF\n") && exported.matches("# EOF").count() == 1);
    // Label values are escaped (the experiment id holds a quote).
    assert!(
        exported.contains(r#"edgerec_experiment_stopped{experiment="e\"x"} 1"#),
        "{exported}"
    );
    assert!(exported.contains(r#"edgerec_edge_decisions_total{tier="full"} 1"#));
    assert!(exported.contains(r#"edgerec_edge_variant_sessions_total{variant="e/b"} 1"#));
    // The Grafana dashboard and the alerting rules shipped with it.
    let dash = [
        concat!(env!("CARGO_MANIFEST_DIR"), "/grafana/dashboard.json"),
        concat!(env!("CARGO_MANIFEST_DIR"), "/prometheus/alerts.yml"),
    ]
    .map(|p| std::fs::read_to_string(p).unwrap())
    .join("\n");
    let mut names = std::collections::BTreeSet::new();
    for prefix in [
        "edgerec_collector_",
        "edgerec_edge_",
        "edgerec_experiment_",
        "edgerec_model_",
    ] {
        for (i, _) in dash.match_indices(prefix) {
            let name: String = dash[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            names.insert(name);
        }
    }
    assert!(names.len() >= 16, "{names:?}");
    for n in names {
        assert!(
            exported.contains(&n),
            "dashboard uses {n}, /metrics lacks it"
        );
    }
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes_and_each_is_served() {
    use edgerec_collector::routes::{OPENAPI_JSON, ROUTES};
    let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut listed: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    listed.sort();
    assert_eq!(edgerec::api::documented_routes(OPENAPI_JSON), listed);
    let file = tmp("openapi");
    let (app, _) = app_for(&file).await;
    for (method, path) in ROUTES {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let status = app.clone().oneshot(req).await.unwrap().status();
        let ops = &doc["paths"][path][method.to_lowercase()]["responses"];
        assert!(
            ops.get(status.as_str()).is_some(),
            "{method} {path} answered {status}, not a documented status"
        );
    }
    let unknown = Request::get("/v1/nope").body(Body::empty()).unwrap();
    assert_eq!(
        app.clone().oneshot(unknown).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
}

/// `MAX_KEYS` (50,000) distinct keys per batch: one more is refused whole (400 naming `delta`,
/// kept as a dead letter), exactly the limit is written.
#[tokio::test]
async fn a_batch_over_the_key_limit_is_refused_and_dead_lettered() {
    let file = tmp("max-keys");
    let mut settings = settings(&file);
    settings.max_body_bytes = 4 << 20;
    let sink = Sink::File(FileSink::open(&file).await.unwrap());
    let app = router(App::new(settings, sink));
    let keys = |n: usize| {
        let mut d = AggregateDelta::default();
        for i in 0..n {
            d.count_event(&format!("k{i}"), EventKind::View);
        }
        d.events = n as u64;
        d
    };
    let over = AggregateBatch::new(
        "over-limit",
        "e",
        now(),
        keys(edgerec::aggregate::MAX_KEYS + 1),
    );
    let (s, b, _) = post(&app, over.encode(), None, None).await;
    assert_eq!(
        (s, b["errors"][0]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("delta"))
    );
    assert!(
        b["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("50000 keys"),
        "{b}"
    );
    let written = lines(&file);
    assert_eq!(written.len(), 1);
    assert_eq!(written[0]["topic"], "edgerec.deadletter");
    assert_eq!(written[0]["value"]["reason"], "invalid");
    let at = AggregateBatch::new("at-limit", "e", now(), keys(edgerec::aggregate::MAX_KEYS));
    let (s, b, _) = post(&app, at.encode(), None, None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // 50,000 view records and the batch's decision counters.
    assert_eq!(b["records"], 50_001);
    assert_eq!(lines(&file).len(), 1 + 50_001);
}
