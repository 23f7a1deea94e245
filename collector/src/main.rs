//! `edgerec-collector`: see the library docs. Structured (JSON) logs on stderr; stops
//! gracefully on SIGTERM or Ctrl-C, finishing requests in progress.

use edgerec_collector::kafka::KafkaSink;
use edgerec_collector::routes::{router, App};
use edgerec_collector::settings::Settings;
use edgerec_collector::sink::{FileSink, Sink};
use std::process::ExitCode;
use std::sync::Arc;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("tally") {
        return tally(&args[2..]);
    }
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "bad settings");
            return ExitCode::FAILURE;
        }
    };
    let sink = match &settings.kafka {
        Some(k) => match KafkaSink::connect(k.clone()).await {
            Ok(k) => Sink::Kafka(k),
            Err(e) => {
                tracing::error!(error = %e, "cannot reach Kafka");
                return ExitCode::FAILURE;
            }
        },
        None => match FileSink::open(&settings.output_file).await {
            Ok(f) => Sink::File(f),
            Err(e) => {
                tracing::error!(error = %e, "cannot open the records file");
                return ExitCode::FAILURE;
            }
        },
    };
    let listener = match tokio::net::TcpListener::bind(settings.addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(addr = %settings.addr, error = %e, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(addr = %settings.addr, sink = sink.kind(), "collector listening");
    let limits = edgerec_collector::serve::Limits {
        header_timeout: std::time::Duration::from_millis(settings.header_timeout_ms),
        max_connections: settings.max_connections,
    };
    let app = App::new(settings, sink);
    edgerec_collector::serve::serve(
        listener,
        router(Arc::clone(&app)),
        limits,
        app.metrics.connections.clone(),
        shutdown(),
    )
    .await;
    if let edgerec_collector::sink::Sink::Kafka(k) = &app.sink {
        // Acknowledged batches are already delivered; this only drains stragglers.
        k.flush(std::time::Duration::from_secs(5));
    }
    tracing::info!("collector stopped");
    ExitCode::SUCCESS
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// `edgerec-collector tally TOPIC [TIMEOUT_S]` with `KAFKA_BROKERS` set: reads the topic to
/// its end; per-item totals (each batch counted once), records and doubles as JSON on stdout.
fn tally(args: &[String]) -> ExitCode {
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let Some(topic) = args.first() else {
        eprintln!("usage: edgerec-collector tally TOPIC [TIMEOUT_S]");
        return ExitCode::FAILURE;
    };
    let timeout = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(60);
    match edgerec_collector::tally::tally(&brokers, topic, std::time::Duration::from_secs(timeout))
    {
        Ok(t) => {
            println!("{}", serde_json::to_string(&t).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tally: {e}");
            ExitCode::FAILURE
        }
    }
}
