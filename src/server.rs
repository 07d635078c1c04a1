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
use crate::identity::PeerCertificate;

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
    /// Longest TLS handshake.
    pub tls_handshake_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(20),
            shutdown_grace: Duration::from_secs(30),
            max_header_bytes: 32 * 1024,
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `gateway` on `listener` (plain HTTP, or TLS when `tls` is given) until `shutdown`
/// resolves, then lets in-flight requests finish (up to the grace period).
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    gateway: Arc<Gateway>,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // A client may close its sending side once the request is out and still get the answer.
        .half_close(true)
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
        let builder = Arc::clone(&builder);
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        let handshake_timeout = limits.tls_handshake_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let Some(acceptor) = acceptor else {
                let conn = ConnInfo {
                    peer,
                    certificate: None,
                };
                return serve_connection(&builder, TokioIo::new(stream), conn, gateway, watcher)
                    .await;
            };
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let certificate = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| PeerCertificate::from_der(c))
                .map(Arc::new);
            let conn = ConnInfo { peer, certificate };
            serve_connection(&builder, TokioIo::new(tls), conn, gateway, watcher).await;
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

async fn serve_connection<I>(
    builder: &auto::Builder<TokioExecutor>,
    io: TokioIo<I>,
    conn: ConnInfo,
    gateway: Arc<Gateway>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let service = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        let gateway = Arc::clone(&gateway);
        req.extensions_mut().insert(conn.clone());
        // The request runs in its own task: a client that disconnects mid-request cannot
        // cancel a privileged call between forwarding it and recording its outcome.
        let task = tokio::spawn(async move { gateway.handle(req).await });
        async move {
            Ok::<_, std::convert::Infallible>(task.await.unwrap_or_else(|e| {
                tracing::error!(error = %e, "request task failed");
                crate::error::internal_error_response()
            }))
        }
    });
    if let Err(e) = watcher
        .watch(builder.serve_connection(io, service).into_owned())
        .await
    {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// The address a listener is bound to, for logs.
pub fn local_addr(listener: &TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}
