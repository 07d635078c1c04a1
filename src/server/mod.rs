//! The listener: admits connections (capped in total and per source address, answered at
//! once past a cap), serves HTTP/1.1 and HTTP/2 with hyper under per-state deadlines (see
//! `conn`), hands each request to the [`Gateway`], and drains in-flight requests on shutdown.

pub(crate) mod accept;
mod conn;
mod h2guard;
mod http;
pub mod park;
mod refuse;
mod transport;
pub mod trim;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::gateway::{ConnInfo, Gateway};
use crate::identity::PeerCertificate;
use crate::slots::{KeyedSlot, KeyedSlots};
use conn::Deadlines;
use http::Protocols;
use refuse::{ConnectionRefusal, Refuser};

/// Connection-level bounds.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Most client connections open at once; further ones are refused at once (503 on
    /// plain HTTP, closed on TLS) instead of waiting in the kernel backlog.
    pub max_connections: usize,
    /// Most connections open at once from one source IP address; refused the same way.
    pub max_connections_per_source: usize,
    /// Longest time a client may take to send request headers (slowloris guard). It is also
    /// the deadline for a new connection's first request: a silent socket, an unfinished
    /// HTTP/2 preface, a TLS connection idle after its handshake are closed after it.
    pub header_read_timeout: Duration,
    /// Longest time a connection stays open with no request in flight after its first one
    /// (HTTP/2 gets a GOAWAY). HTTP/1.1 keep-alive is also bounded by the header-read timeout.
    pub idle_timeout: Duration,
    /// How often an HTTP/2 connection is pinged (zero: never).
    pub http2_keep_alive_interval: Duration,
    /// How long an HTTP/2 ping may go unanswered before the connection is closed.
    pub http2_keep_alive_timeout: Duration,
    /// Control frames (SETTINGS, PING, WINDOW_UPDATE, PRIORITY, RST_STREAM, empty DATA,
    /// unknown types) an HTTP/2 connection may send per second before it is closed with GOAWAY.
    pub http2_max_control_frames_per_sec: u32,
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
            max_connections_per_source: 1_000,
            header_read_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            http2_keep_alive_interval: Duration::from_secs(20),
            http2_keep_alive_timeout: Duration::from_secs(10),
            http2_max_control_frames_per_sec: 1_000,
            shutdown_grace: Duration::from_secs(20),
            max_header_bytes: 32 * 1024,
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Most refused connections being answered at once.
const CONCURRENT_REFUSALS: usize = 256;

/// Serves `gateway` on `listener` (plain HTTP, or TLS when `tls` is given) until `shutdown`
/// resolves, then drains: the gateway stops sending (see [`Gateway::begin_drain`]) and the
/// calls already sent to Graph get up to the grace period to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    gateway: Arc<Gateway>,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let protocols = Arc::new(protocols(&limits));
    let admission = Admission::new(&limits);
    let refuser = Refuser::new(acceptor.is_some(), CONCURRENT_REFUSALS);
    let deadlines = Deadlines {
        first_request: limits.header_read_timeout,
        idle: limits.idle_timeout,
        keep_alive: limits.idle_timeout.min(limits.header_read_timeout),
        max_control_frames_per_sec: limits.http2_max_control_frames_per_sec,
    };
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    while let Some((stream, peer)) = accept::next(&listener, &mut shutdown, "gateway").await {
        let admitted = match admission.admit(peer.ip()) {
            Ok(admitted) => admitted,
            Err(why) => {
                crate::metrics::connection_closed(why.as_str());
                tracing::debug!(%peer, cap = why.as_str(), "connection refused");
                refuser.refuse(stream, why);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let accepted = Accepted {
            stream,
            peer,
            acceptor: acceptor.clone(),
            handshake_timeout: limits.tls_handshake_timeout,
        };
        let protocols = Arc::clone(&protocols);
        let gateway = Arc::clone(&gateway);
        let stopping = stopping.clone();
        tokio::spawn(async move {
            let _admitted = admitted;
            accepted
                .serve(&protocols, gateway, deadlines, stopping)
                .await;
        });
    }
    drop(listener);
    tracing::info!(
        grace_secs = limits.shutdown_grace.as_secs(),
        "shutting down: no new connections; duplicates stop waiting (409), nothing more is sent to Graph, calls already sent finish within the grace period"
    );
    gateway.begin_drain();
    let _ = stop.send(true);
    if tokio::time::timeout(limits.shutdown_grace, admission.drained())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
    Ok(())
}

/// hyper's HTTP/1.1 and HTTP/2 settings.
fn protocols(limits: &ServerLimits) -> Protocols {
    let mut http1 = http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // A client may close its sending side once the request is out and still get the answer.
        .half_close(true)
        .max_buf_size(limits.max_header_bytes.max(8192));
    let ping = Some(limits.http2_keep_alive_interval).filter(|d| !d.is_zero());
    let mut http2 = http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(ping)
        .keep_alive_timeout(limits.http2_keep_alive_timeout);
    Protocols { http1, http2 }
}

/// The connection caps: in total and per source address.
struct Admission {
    total: Arc<Semaphore>,
    max_total: u32,
    per_source: KeyedSlots<IpAddr>,
}

/// An admitted connection's place under both caps; dropping it frees them.
struct Admitted {
    _total: OwnedSemaphorePermit,
    _source: KeyedSlot<IpAddr>,
}

impl Admission {
    fn new(limits: &ServerLimits) -> Self {
        let max_total =
            u32::try_from(limits.max_connections.min(Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
        Admission {
            total: Arc::new(Semaphore::new(max_total as usize)),
            max_total,
            per_source: KeyedSlots::new(limits.max_connections_per_source),
        }
    }

    fn admit(&self, source: IpAddr) -> Result<Admitted, ConnectionRefusal> {
        // The per-source cap first: one client at its cap must not use up global slots.
        let source = self
            .per_source
            .try_acquire(&source.to_canonical())
            .ok_or(ConnectionRefusal::PerSource)?;
        let total = Arc::clone(&self.total)
            .try_acquire_owned()
            .map_err(|_| ConnectionRefusal::MaxConnections)?;
        Ok(Admitted {
            _total: total,
            _source: source,
        })
    }

    /// Resolves when every admitted connection has ended.
    async fn drained(&self) {
        let _ = self.total.acquire_many(self.max_total).await;
    }
}

/// An accepted TCP connection, before TLS.
struct Accepted {
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    handshake_timeout: Duration,
}

impl Accepted {
    /// TLS (if configured) within its timeout, then HTTP until the connection ends.
    async fn serve(
        self,
        protocols: &Protocols,
        gateway: Arc<Gateway>,
        deadlines: Deadlines,
        stopping: watch::Receiver<bool>,
    ) {
        let peer = self.peer;
        let Some(acceptor) = self.acceptor else {
            let info = ConnInfo {
                peer,
                certificate: None,
            };
            return http::serve(protocols, self.stream, info, gateway, deadlines, stopping).await;
        };
        // Boxed: a TLS connection's future (handshake, session) is several times a plain
        // one's, and every connection task would otherwise be allocated at its size.
        Box::pin(serve_tls(
            acceptor,
            self.stream,
            peer,
            self.handshake_timeout,
            protocols,
            gateway,
            deadlines,
            stopping,
        ))
        .await;
    }
}

/// The TLS handshake within its timeout, then HTTP until the connection ends.
#[allow(clippy::too_many_arguments)]
async fn serve_tls(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    handshake_timeout: Duration,
    protocols: &Protocols,
    gateway: Arc<Gateway>,
    deadlines: Deadlines,
    stopping: watch::Receiver<bool>,
) {
    let handshake = acceptor.accept(stream);
    let tls = match tokio::time::timeout(handshake_timeout, handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            crate::metrics::connection_closed("tls_handshake_failed");
            return tracing::debug!(%peer, error = %e, "TLS handshake failed");
        }
        Err(_) => {
            crate::metrics::connection_closed("tls_handshake_timeout");
            return tracing::debug!(%peer, "TLS handshake timed out");
        }
    };
    let certificate = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| PeerCertificate::from_der(c))
        .map(Arc::new);
    let info = ConnInfo { peer, certificate };
    http::serve(protocols, Box::new(tls), info, gateway, deadlines, stopping).await;
}

/// The address a listener is bound to, for logs.
pub fn local_addr(listener: &TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}
