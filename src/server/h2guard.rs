//! A cap on HTTP/2 control frames per connection per second. hyper and h2 acknowledge every
//! SETTINGS and PING and process every WINDOW_UPDATE, with no limit, so a client can keep a
//! core busy with frames that carry no request. [`FrameGuard`] sits under hyper on the
//! connection's (decrypted) byte stream, reads the frame headers after the client preface,
//! and trips an [`Alarm`] when a connection sends more control frames than its budget; the
//! connection's supervisor then closes it with a GOAWAY.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use crate::clock::Instant;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// What an HTTP/2 client sends first (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Frame header length (RFC 9113 §4.1).
const FRAME_HEADER: usize = 9;
/// The budget's window.
const WINDOW: Duration = Duration::from_secs(1);

/// Raised when a connection overspends its control-frame budget.
#[derive(Debug, Default)]
pub(super) struct Alarm {
    tripped: AtomicBool,
    notify: Notify,
}

impl Alarm {
    fn trip(&self) {
        self.tripped.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    fn is_tripped(&self) -> bool {
        self.tripped.load(Ordering::Acquire)
    }

    /// Resolves once the alarm has tripped.
    pub(super) async fn tripped(&self) {
        self.notify.notified().await;
    }
}

/// Frames that cost the server work but open no request: the ones a flood is made of.
/// HEADERS and CONTINUATION are bounded by h2 itself (header list size, reset streams).
fn is_control(kind: u8, flags: u8, len: usize) -> bool {
    const DATA: u8 = 0x0;
    const END_STREAM: u8 = 0x1;
    match kind {
        // PRIORITY, RST_STREAM, SETTINGS, PING, WINDOW_UPDATE.
        0x2 | 0x3 | 0x4 | 0x6 | 0x8 => true,
        // Empty DATA frames that do not end the stream carry nothing (CVE-2019-9518).
        DATA => len == 0 && flags & END_STREAM == 0,
        // HEADERS, PUSH_PROMISE, GOAWAY, CONTINUATION.
        0x1 | 0x5 | 0x7 | 0x9 => false,
        // Unknown frame types are ignored by the receiver: pure cost.
        _ => true,
    }
}

/// So many control frames per second.
#[derive(Debug)]
struct Budget {
    max_per_sec: u32,
    window_start: Instant,
    spent: u32,
}

impl Budget {
    /// Spends one; `false` once this second's budget is exceeded.
    fn spend(&mut self) -> bool {
        let now = Instant::now();
        if now.duration_since(self.window_start) >= WINDOW {
            self.window_start = now;
            self.spent = 0;
        }
        self.spent = self.spent.saturating_add(1);
        self.spent <= self.max_per_sec
    }
}

/// Where the reader is in the byte stream.
#[derive(Debug)]
enum Scan {
    /// Matching the client preface; this many bytes matched so far.
    Preface(usize),
    /// Reading a frame header.
    Header([u8; FRAME_HEADER], usize),
    /// Skipping this many payload bytes.
    Payload(usize),
    /// Not HTTP/2 (or already judged): bytes pass unread.
    Off,
}

impl Scan {
    /// Reads `bytes`; `false` when a control frame went over the budget.
    fn feed(&mut self, mut bytes: &[u8], budget: &mut Budget) -> bool {
        let mut within = true;
        while !bytes.is_empty() {
            let taken = match self {
                Scan::Off => return within,
                Scan::Preface(matched) => {
                    let n = (PREFACE.len() - *matched).min(bytes.len());
                    if bytes[..n] != PREFACE[*matched..*matched + n] {
                        *self = Scan::Off;
                        return within;
                    }
                    *matched += n;
                    if *matched == PREFACE.len() {
                        *self = Scan::Header([0; FRAME_HEADER], 0);
                    }
                    n
                }
                Scan::Header(head, filled) => {
                    let n = (FRAME_HEADER - *filled).min(bytes.len());
                    head[*filled..*filled + n].copy_from_slice(&bytes[..n]);
                    *filled += n;
                    if *filled == FRAME_HEADER {
                        let len = usize::from(head[0]) << 16
                            | usize::from(head[1]) << 8
                            | usize::from(head[2]);
                        if is_control(head[3], head[4], len) && !budget.spend() {
                            within = false;
                        }
                        *self = match len {
                            0 => Scan::Header([0; FRAME_HEADER], 0),
                            len => Scan::Payload(len),
                        };
                    }
                    n
                }
                Scan::Payload(remaining) => {
                    let n = (*remaining).min(bytes.len());
                    *remaining -= n;
                    if *remaining == 0 {
                        *self = Scan::Header([0; FRAME_HEADER], 0);
                    }
                    n
                }
            };
            bytes = &bytes[taken..];
        }
        within
    }
}

/// A connection's byte stream with its HTTP/2 control frames counted (see the module doc).
#[derive(Debug)]
pub(super) struct FrameGuard<I> {
    io: I,
    scan: Scan,
    budget: Budget,
    alarm: Arc<Alarm>,
}

impl<I> FrameGuard<I> {
    /// Guards `io`, allowing `max_per_sec` control frames per second; returns the alarm.
    pub(super) fn new(io: I, max_per_sec: u32) -> (Self, Arc<Alarm>) {
        let alarm = Arc::new(Alarm::default());
        let guard = FrameGuard {
            io,
            scan: Scan::Preface(0),
            budget: Budget {
                max_per_sec,
                window_start: Instant::now(),
                spent: 0,
            },
            alarm: Arc::clone(&alarm),
        };
        (guard, alarm)
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for FrameGuard<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.alarm.is_tripped() {
            // An abuser gets nothing more read: the supervisor (woken by the alarm) sends
            // the GOAWAY and closes the connection, without processing the rest of the flood.
            return Poll::Pending;
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        if !this.scan.feed(&buf.filled()[before..], &mut this.budget) {
            this.scan = Scan::Off;
            this.alarm.trip();
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for FrameGuard<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&[0, 0, 0, 1]);
        f.extend_from_slice(payload);
        f
    }

    fn budget(max_per_sec: u32) -> Budget {
        Budget {
            max_per_sec,
            window_start: Instant::now(),
            spent: 0,
        }
    }

    /// Feeds `bytes` in chunks of `chunk` bytes; whether it stayed within budget.
    fn feed_chunked(bytes: &[u8], chunk: usize, budget: &mut Budget) -> bool {
        let mut scan = Scan::Preface(0);
        bytes.chunks(chunk).all(|c| scan.feed(c, budget))
    }

    #[tokio::test(start_paused = true)]
    async fn counts_control_frames_across_any_read_boundaries() {
        let mut stream = PREFACE.to_vec();
        stream.extend(frame(0x4, 0, &[0; 6])); // SETTINGS
        stream.extend(frame(0x1, 0x4, &[0x82; 300])); // HEADERS with a payload to skip
        stream.extend(frame(0x0, 0x1, &[])); // empty DATA ending the stream: not control
        stream.extend(frame(0x0, 0x0, b"body")); // DATA with data: not control
        stream.extend(frame(0x6, 0, &[0; 8])); // PING
        stream.extend(frame(0x8, 0, &[0, 0, 1, 0])); // WINDOW_UPDATE
        for chunk in [1, 2, 7, 9, 10, 64, 4096] {
            let mut b = budget(3);
            assert!(feed_chunked(&stream, chunk, &mut b), "chunk {chunk}");
            assert_eq!(b.spent, 3, "chunk {chunk}: SETTINGS, PING, WINDOW_UPDATE");
            let mut b = budget(2);
            assert!(
                !feed_chunked(&stream, chunk, &mut b),
                "chunk {chunk}: over 2"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_is_per_second() {
        let mut b = budget(2);
        assert!(b.spend() && b.spend());
        assert!(!b.spend(), "third in the same second");
        tokio::time::advance(WINDOW).await;
        assert!(b.spend(), "a new second");
    }

    #[tokio::test(start_paused = true)]
    async fn http1_bytes_are_not_read_as_frames() {
        let request = b"POST / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(100);
        let mut b = budget(0);
        assert!(feed_chunked(&request, 5, &mut b));
        assert_eq!(b.spent, 0);
        // A near-preface that diverges late is HTTP/1 too.
        let mut b = budget(0);
        assert!(feed_chunked(
            b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n\0\0\0\x04",
            3,
            &mut b
        ));
    }

    #[test]
    fn classification() {
        assert!(is_control(0x4, 0, 0) && is_control(0x6, 0, 8) && is_control(0x8, 0, 4));
        assert!(is_control(0x2, 0, 5) && is_control(0x3, 0, 4) && is_control(0xfa, 0, 0));
        assert!(is_control(0x0, 0, 0), "empty DATA not ending the stream");
        assert!(!is_control(0x0, 0x1, 0) && !is_control(0x0, 0, 1));
        assert!(!is_control(0x1, 0, 10) && !is_control(0x9, 0, 10) && !is_control(0x7, 0, 8));
    }
}
