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
    let app = App::new(settings, sink);
    let served = axum::serve(listener, router(Arc::clone(&app)))
        .with_graceful_shutdown(shutdown())
        .await;
    if let edgerec_collector::sink::Sink::Kafka(k) = &app.sink {
        // Acknowledged batches are already delivered; this only drains stragglers.
        k.flush(std::time::Duration::from_secs(5));
    }
    match served {
        Ok(()) => {
            tracing::info!("collector stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
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

/// `edgerec-collector tally TOPIC EXPECT [TIMEOUT_S]` with `KAFKA_BROKERS` set: per-item totals
/// of an interaction topic as JSON on stdout.
fn tally(args: &[String]) -> ExitCode {
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let (Some(topic), Some(expect)) = (args.first(), args.get(1).and_then(|a| a.parse().ok()))
    else {
        eprintln!("usage: edgerec-collector tally TOPIC EXPECTED_TOTAL [TIMEOUT_S]");
        return ExitCode::FAILURE;
    };
    let timeout = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(30);
    match edgerec_collector::tally::tally(
        &brokers,
        topic,
        expect,
        std::time::Duration::from_secs(timeout),
    ) {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tally: {e}");
            ExitCode::FAILURE
        }
    }
}
