//! The listener: accepts connections (bounded in number), serves HTTP/1.1 and HTTP/2 with
//! hyper, hands each request to the [`Gateway`], and drains in-flight requests on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::gateway::{ConnInfo, Gateway};

/// Connection-level bounds.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Most client connections open at once; further ones wait in the kernel backlog.
    pub max_connections: usize,
    /// Longest time a client may take to send request headers (slowloris guard).
    pub header_read_timeout: Duration,
    /// Longest time in-flight requests get to finish after shutdown begins.
    pub shutdown_grace: Duration,
    /// Largest request-header block accepted (HTTP/1 buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
            max_header_bytes: 32 * 1024,
        }
    }
}

/// Serves `gateway` on `listener` until `shutdown` resolves, then lets in-flight requests
/// finish (up to the grace period).
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let gateway = Arc::clone(&gateway);
        let service = service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
            // The pipeline records where each request came from.
            req.extensions_mut().insert(ConnInfo { peer });
            let gateway = Arc::clone(&gateway);
            async move { Ok::<_, std::convert::Infallible>(gateway.handle(req).await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!("shutting down: no new connections, draining in-flight requests");
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
    Ok(())
}

/// The address a listener is bound to, for logs.
pub fn local_addr(listener: &TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}
