//! The byte stream under hyper: which protocol a connection speaks (the HTTP/2 client
//! preface or not), the bytes read ahead of hyper replayed into the next hyper connection,
//! a record of what the last reads and writes did (so a connection is parked only when it is
//! provably at rest), and readiness to read while parked.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What an HTTP/2 client sends first (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A client connection's byte stream: TCP, or TLS over TCP.
pub(super) trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Resolves once a read may make progress (bytes, the end of the stream or an error
    /// arrived, or plaintext is already buffered).
    fn readable(&self) -> impl Future<Output = ()> + Send + '_;
}

/// A boxed stream (TLS: its session is over a kilobyte, kept out of the connection's task).
impl<T: Transport> Transport for Box<T> {
    fn readable(&self) -> impl Future<Output = ()> + Send + '_ {
        (**self).readable()
    }
}

impl Transport for TcpStream {
    async fn readable(&self) {
        // An error is reported by the read that follows.
        let _ = TcpStream::readable(self).await;
    }
}

impl Transport for tokio_rustls::server::TlsStream<TcpStream> {
    async fn readable(&self) {
        let (tcp, tls) = self.get_ref();
        // rustls holds decrypted bytes nobody has read yet: no need to wait for the socket.
        if !tls.wants_read() {
            return;
        }
        let _ = tcp.readable().await;
    }
}

/// The protocol a connection speaks, judged from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    Http1,
    Http2,
}

/// Reads until the first bytes either are the HTTP/2 client preface or cannot be; returns
/// the protocol and the bytes read (to be replayed). `None` when the client closed first.
pub(super) async fn detect<I: AsyncRead + Unpin>(
    io: &mut I,
) -> io::Result<Option<(Protocol, Bytes)>> {
    let mut buf = [0u8; PREFACE.len()];
    let mut filled = 0;
    while filled < PREFACE.len() {
        let n = io.read(&mut buf[filled..]).await?;
        if n == 0 {
            if filled == 0 {
                return Ok(None);
            }
            break;
        }
        filled += n;
        if buf[..filled] != PREFACE[..filled] {
            break;
        }
    }
    let protocol = if buf[..filled] == PREFACE[..] {
        Protocol::Http2
    } else {
        Protocol::Http1
    };
    Ok(Some((protocol, Bytes::copy_from_slice(&buf[..filled]))))
}

/// What the latest reads and writes on a connection did, as flags.
#[derive(Debug, Default)]
pub(super) struct Seen(AtomicU8);

/// Something was written (or a write was tried) and not flushed since.
const UNFLUSHED: u8 = 1;
/// The latest read found nothing to read (it returned `Pending`).
const READ_WAITING: u8 = 2;
/// A read returned bytes, the end of the stream or an error after the latest flush of
/// written bytes: hyper may hold part of a request.
const READ_SINCE_FLUSH: u8 = 4;

impl Seen {
    fn set(&self, on: u8, off: u8) {
        let flags = self.0.load(Ordering::Relaxed);
        self.0.store((flags | on) & !off, Ordering::Relaxed);
    }

    /// Everything written is flushed, nothing was read since, and the latest read is
    /// waiting for bytes: hyper holds no part of a request or a response.
    pub(super) fn at_rest(&self) -> bool {
        self.0.load(Ordering::Relaxed) == READ_WAITING
    }
}

/// A stream that first replays bytes read ahead of hyper, and records in [`Seen`] what
/// reads and writes did.
#[derive(Debug)]
pub(super) struct Rewound<I> {
    ahead: Bytes,
    io: I,
    seen: Arc<Seen>,
}

impl<I> Rewound<I> {
    pub(super) fn new(io: I, ahead: Bytes, seen: Arc<Seen>) -> Self {
        Rewound { ahead, io, seen }
    }

    /// Puts `bytes` (read by hyper, not yet parsed) in front of whatever is still to replay.
    pub(super) fn rewind(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.ahead = if self.ahead.is_empty() {
            bytes
        } else {
            let mut both = BytesMut::with_capacity(bytes.len() + self.ahead.len());
            both.extend_from_slice(&bytes);
            both.extend_from_slice(&self.ahead);
            both.freeze()
        };
    }

    /// Bytes are waiting to be replayed.
    pub(super) fn has_ahead(&self) -> bool {
        !self.ahead.is_empty()
    }

    /// The record of this stream's reads and writes.
    pub(super) fn seen(&self) -> Arc<Seen> {
        Arc::clone(&self.seen)
    }

    pub(super) fn get_ref(&self) -> &I {
        &self.io
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewound<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.ahead.is_empty() {
            let n = this.ahead.len().min(buf.remaining());
            buf.put_slice(&this.ahead[..n]);
            this.ahead.advance(n);
            this.seen.set(READ_SINCE_FLUSH, READ_WAITING);
            return Poll::Ready(Ok(()));
        }
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if polled.is_pending() {
            this.seen.set(READ_WAITING, 0);
        } else {
            this.seen.set(READ_SINCE_FLUSH, READ_WAITING);
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewound<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.seen.set(UNFLUSHED, 0);
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.seen.set(UNFLUSHED, 0);
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = Pin::new(&mut self.io).poll_flush(cx);
        if matches!(flushed, Poll::Ready(Ok(())))
            && self.seen.0.load(Ordering::Relaxed) & UNFLUSHED != 0
        {
            // The written bytes (a whole response, as hyper flushes only with its own buffer
            // empty) are out: reads from here on belong to the next request.
            self.seen.set(0, UNFLUSHED | READ_SINCE_FLUSH);
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn the_preface_is_http2_anything_else_http1_and_the_bytes_are_kept() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(PREFACE).await.unwrap();
        let (p, bytes) = detect(&mut server).await.unwrap().unwrap();
        assert_eq!((p, &bytes[..]), (Protocol::Http2, &PREFACE[..]));

        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"POST / HTTP/1.1\r\n").await.unwrap();
        let (p, bytes) = detect(&mut server).await.unwrap().unwrap();
        assert_eq!(p, Protocol::Http1);
        assert!(b"POST / HTTP/1.1\r\n".starts_with(&bytes), "{bytes:?}");

        let (client, mut server) = tokio::io::duplex(64);
        drop(client);
        assert!(detect(&mut server).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn replayed_bytes_come_first_and_reads_and_flushes_are_recorded() {
        let (mut client, server) = tokio::io::duplex(64);
        let seen = Arc::new(Seen::default());
        let mut io = Rewound::new(server, Bytes::from_static(b"GET"), Arc::clone(&seen));
        io.rewind(Bytes::from_static(b">"));
        client.write_all(b" /").await.unwrap();
        let mut got = [0u8; 4];
        io.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b">GET");
        assert!(!seen.at_rest(), "bytes were read");
        io.write_all(b"HTTP/1.1 204\r\n\r\n").await.unwrap();
        assert!(!seen.at_rest(), "written, not flushed");
        io.flush().await.unwrap();
        let mut two = [0u8; 2];
        io.read_exact(&mut two).await.unwrap();
        assert!(!seen.at_rest(), "read after the flush");
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut buf = [0u8; 8];
        let mut rb = ReadBuf::new(&mut buf);
        assert!(Pin::new(&mut io).poll_read(&mut cx, &mut rb).is_pending());
        assert!(!seen.at_rest(), "bytes were read since the last flush");
        io.write_all(b"x").await.unwrap();
        io.flush().await.unwrap();
        assert!(Pin::new(&mut io).poll_read(&mut cx, &mut rb).is_pending());
        assert!(seen.at_rest());
    }
}
