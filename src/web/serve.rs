//! Serving the dashboard: an HTTP/1 loop over a listener, with the limits a small server
//! on an operator's machine needs. A client must send its request's headers within
//! [`HEADER_TIMEOUT`] (an idle keep-alive connection is closed after it too), no
//! connection lives past [`CONNECTION_LIFE`], and at most [`MAX_CONNECTIONS`] are open at
//! once (more are closed as they arrive), so held connections cannot use up the process's
//! file descriptors and make it unreachable. axum's own `serve` sets none of these.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How long a client has to send a request's headers (and an idle connection stays open).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a connection lives, whatever it does.
pub const CONNECTION_LIFE: Duration = Duration::from_secs(300);
/// Connections open at once.
pub const MAX_CONNECTIONS: usize = 256;

/// Serves `app` on `listener` until `shutdown` completes, then lets open requests finish
/// (for up to 5 s).
///
/// ```no_run
/// # async fn demo(api: psychiq::api::Api) -> std::io::Result<()> {
/// let app = psychiq::web::router(api, psychiq::web::WebConfig::default());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:7433").await?;
/// psychiq::web::serve(listener, app, async { let _ = tokio::signal::ctrl_c().await; }).await;
/// # Ok(()) }
/// ```
pub async fn serve(listener: TcpListener, app: Router, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let room = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: wait for some to close rather than spin.
                tracing::warn!(error = %e, "the dashboard cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&room).try_acquire_owned() else {
            tracing::warn!(
                "the dashboard has {MAX_CONNECTIONS} connections open; one more was closed"
            );
            continue;
        };
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(CONNECTION_LIFE, connection).await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
}
