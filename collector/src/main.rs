//! `edgerec-collector`: see the library docs. Structured (JSON) logs on stderr; stops
//! gracefully on SIGTERM or Ctrl-C, finishing requests in progress.

use edgerec_collector::routes::{router, App};
use edgerec_collector::settings::Settings;
use edgerec_collector::sink::{FileSink, Sink};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
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
    let sink = match FileSink::open(&settings.output_file).await {
        Ok(f) => Sink::File(f),
        Err(e) => {
            tracing::error!(error = %e, "cannot open the records file");
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
    tracing::info!(addr = %settings.addr, sink = sink.kind(), file = %settings.output_file.display(), "collector listening");
    let app = App::new(settings, sink);
    let served = axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown())
        .await;
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
