//! Serving connections with the limits axum's own `serve` does not set: a client must send its
//! request headers within `HEADER_TIMEOUT_MS` (also how long an idle keep-alive connection is
//! held), at most `MAX_CONNECTIONS` connections are open at once (more wait in the listen
//! backlog), and SIGTERM closes the listening socket, lets requests in progress finish (at most 10 s),
//! then returns. The body's own deadline is the handler's (`BODY_TIMEOUT_MS`).

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use prometheus_client::metrics::gauge::Gauge;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Longest wait for requests in progress at shutdown.
const DRAIN: Duration = Duration::from_secs(10);

/// Connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Request headers must arrive within this.
    pub header_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `shutdown` resolves; `connections` counts open ones.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    connections: Gauge,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(
                TokioIo::new(stream),
                TowerToHyperService::new(router.clone()),
            );
        let conn = graceful.watch(conn);
        let open = connections.clone();
        open.inc();
        tokio::spawn(async move {
            let _ = conn.await;
            open.dec();
            drop(permit);
        });
    }
    // Close the listening socket now: a new connection is refused at once (a load balancer
    // moves on) instead of waiting in the backlog for a process that will not accept it.
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN) => tracing::warn!("requests still running at shutdown"),
    }
}
