//! `edgerec-collector`: see the library docs. Structured (JSON) logs on stderr; stops
//! gracefully on SIGTERM or Ctrl-C, finishing requests in progress.

use clap::Parser;
use edgerec_collector::routes::{router, App};
use edgerec_collector::settings::{Cli, Command};
use edgerec_collector::sink;
use std::process::ExitCode;
use std::sync::Arc;

#[tokio::main]
async fn main() -> ExitCode {
    // Bad settings stop here, with clap's message naming the flag and its variable.
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Tally {
            topic,
            timeout_s,
            brokers,
        }) => return tally(brokers, topic, *timeout_s),
        Some(Command::Dump {
            topic,
            timeout_s,
            brokers,
        }) => return dump(brokers, topic, *timeout_s),
        None => {}
    }
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let settings = cli.serve;
    if let Err(e) = settings.check() {
        eprintln!("edgerec-collector: {e}");
        return ExitCode::FAILURE;
    }
    let sink = match sink::open(&settings).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, sink = if settings.kafka_brokers.is_some() { "kafka" } else { "file" }, "cannot open the sink");
            return ExitCode::FAILURE;
        }
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
    #[cfg(feature = "kafka")]
    if let sink::Sink::Kafka(k) = &app.sink {
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

/// `edgerec-collector tally TOPIC [TIMEOUT_S]`: see [`Command::Tally`].
#[cfg(feature = "kafka")]
fn tally(brokers: &str, topic: &str, timeout_s: u64) -> ExitCode {
    match edgerec_collector::tally::tally(brokers, topic, std::time::Duration::from_secs(timeout_s))
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

/// `edgerec-collector dump TOPIC [TIMEOUT_S]`: see [`Command::Dump`].
#[cfg(feature = "kafka")]
fn dump(brokers: &str, topic: &str, timeout_s: u64) -> ExitCode {
    use rdkafka::message::{Headers, Message};
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let timeout = std::time::Duration::from_secs(timeout_s);
    let read = edgerec_collector::tally::read_to_end(brokers, topic, timeout, |m| {
        let headers: Vec<(&str, &str)> = m.headers().map_or(Vec::new(), |h| {
            h.iter()
                .filter_map(|h| Some((h.key, std::str::from_utf8(h.value?).ok()?)))
                .collect()
        });
        let key = m.key().map(String::from_utf8_lossy).unwrap_or_default();
        let line = edgerec_collector::sink::file::json_line(
            topic,
            &key,
            headers.into_iter(),
            m.payload().unwrap_or_default(),
        );
        let _ = writeln!(out, "{line}");
    });
    let _ = out.flush();
    match read {
        Ok(n) => {
            eprintln!("dump: {n} records of {topic}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dump: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "kafka"))]
fn dump(_: &str, _: &str, _: u64) -> ExitCode {
    eprintln!("dump: this collector was built without the `kafka` feature");
    ExitCode::FAILURE
}

#[cfg(not(feature = "kafka"))]
fn tally(_: &str, _: &str, _: u64) -> ExitCode {
    eprintln!("tally: this collector was built without the `kafka` feature");
    ExitCode::FAILURE
}
