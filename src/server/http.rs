//! One connection from its first byte: its protocol judged from its first bytes (the HTTP/2
//! client preface or not), HTTP/2 served by hyper under the supervisor (`conn`), HTTP/1.1
//! handed to `park`, which holds it outside hyper between requests.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::clock::Instant;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::watch;

use super::conn::{Closed, Deadlines, Requests, Supervised, Tracker, close, stopping, supervise};
use super::h2guard::FrameGuard;
use super::transport::{Protocol, Rewound, Seen, Transport};
use crate::gateway::{ConnInfo, Gateway};

/// hyper's HTTP/1.1 and HTTP/2 connection settings.
pub(super) struct Protocols {
    pub http1: http1::Builder,
    pub http2: http2::Builder<TokioExecutor>,
}

/// Serves one connection until it ends, a deadline passes, or `shutdown` turns true.
pub(super) async fn serve<I: Transport>(
    protocols: &Protocols,
    mut io: I,
    conn: ConnInfo,
    gateway: Arc<Gateway>,
    deadlines: Deadlines,
    mut shutdown: watch::Receiver<bool>,
) {
    let peer = conn.peer;
    let (requests, activity) = Requests::new(conn, gateway);
    // The protocol, within the first request's deadline.
    let first = Instant::now() + deadlines.first_request;
    let detected = tokio::select! {
        detected = super::transport::detect(&mut io) => Ok(detected),
        () = tokio::time::sleep_until(first) => Err(Some(Closed::FirstRequestTimeout)),
        () = stopping(&mut shutdown) => Err(None),
    };
    let (protocol, opening) = match detected {
        Ok(Ok(Some(detected))) => detected,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "connection ended with an error"),
        Err(closed) => {
            if let Some(reason) = closed {
                crate::metrics::connection_closed(reason.as_str());
                tracing::debug!(%peer, reason = reason.as_str(), "connection closed by the server");
            }
            return close(io).await;
        }
    };
    let seen = Arc::new(Seen::default());
    let io = Rewound::new(io, opening, seen);
    let ended = match protocol {
        Protocol::Http1 => {
            super::park::serve(
                &protocols.http1,
                io,
                requests,
                activity,
                deadlines,
                shutdown,
            )
            .await
        }
        // Boxed: HTTP/2's future is not parked, and would otherwise size every connection.
        Protocol::Http2 => {
            Box::pin(serve_http2(
                &protocols.http2,
                io,
                requests,
                activity,
                deadlines,
                shutdown,
            ))
            .await
        }
    };
    match ended {
        Ok(None) => {}
        Ok(Some(reason)) => {
            tracing::debug!(%peer, reason = reason.as_str(), "connection closed by the server");
        }
        Err(e) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
    }
}

/// Serves an HTTP/2 connection (never parked: its streams, windows and pings are state).
async fn serve_http2<I: Transport>(
    builder: &http2::Builder<TokioExecutor>,
    io: Rewound<I>,
    requests: Requests,
    activity: Arc<Tracker>,
    deadlines: Deadlines,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Option<Closed>, hyper::Error> {
    let (io, alarm) = FrameGuard::new(io, deadlines.max_control_frames_per_sec);
    let connection = Http2(Box::pin(
        builder.serve_connection(TokioIo::new(io), requests),
    ));
    let outcome = supervise(
        connection,
        &activity,
        Some(&alarm),
        deadlines,
        &mut shutdown,
    )
    .await?;
    Ok(outcome.closed)
}

/// An HTTP/2 connection, boxed (the connection task stays small).
struct Http2<I: Transport>(Pin<Box<Http2Connection<I>>>);

/// hyper's HTTP/2 connection over a client's stream, under the control-frame guard.
type Http2Connection<I> =
    http2::Connection<TokioIo<FrameGuard<Rewound<I>>>, Requests, TokioExecutor>;

impl<I: Transport> Future for Http2<I> {
    type Output = Result<(), hyper::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl<I: Transport> Supervised for Http2<I> {
    type Done = ();

    fn graceful_shutdown(mut self: Pin<&mut Self>) {
        self.0.as_mut().graceful_shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns, without calling it.
    fn future_size<A, B, C, D, E, G, F: Future>(_: impl FnOnce(A, B, C, D, E, G) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// A parked connection keeps its whole task: its future must stay small (hyper's
    /// connection and HTTP/2 are boxed, and only while in use).
    #[test]
    fn a_plain_connections_future_is_small() {
        let plain = future_size(serve::<tokio::net::TcpStream>);
        let tls = future_size(serve::<Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>>);
        eprintln!("connection future: plain {plain} bytes, TLS {tls} bytes");
        assert!(plain <= 2048, "{plain}");
    }
}
