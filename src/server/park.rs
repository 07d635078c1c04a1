//! HTTP/1.1 keep-alive connections parked outside hyper. A connection at rest (its last
//! response written and flushed, no request in flight, nothing read since) costs hyper about
//! 35 KB (read and write buffers, dispatcher); parked, it is its socket (and TLS session), the
//! service and a small wait for readability, its keep-alive deadline or shutdown. When bytes
//! arrive a new hyper connection is built on the same stream, with any bytes hyper had read
//! ahead replayed first. Parking is exact: hyper is asked to end only when it is idle in its
//! own terms (a connection mid-request or mid-response would lose keep-alive instead).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use super::conn::{self, Activity, Closed, Deadlines, Requests, Supervised};
use super::transport::{Rewound, Seen, Transport};

/// Serves an HTTP/1.1 connection, parking it whenever it is at rest, until it ends, a
/// deadline passes or shutdown begins.
pub(super) async fn serve<I: Transport>(
    builder: &http1::Builder,
    mut io: Rewound<I>,
    mut requests: Requests,
    activity: watch::Receiver<Activity>,
    deadlines: Deadlines,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Option<Closed>, hyper::Error> {
    let seen = io.seen();
    loop {
        let hyper = Http1 {
            conn: Some(Box::new(
                builder.serve_connection(TokioIo::new(io), requests),
            )),
            seen: Arc::clone(&seen),
            activity: activity.clone(),
            closing: false,
            parking: false,
        };
        // Boxed: the supervisor lives only while hyper does; parked, the task keeps only this
        // function's few locals.
        let supervised = conn::supervise(hyper, activity.clone(), None, deadlines, &mut shutdown);
        let outcome = Box::pin(supervised).await?;
        let parked = match outcome.done {
            Some(Ended::Parked(parked)) => parked,
            Some(Ended::Closed(stream)) => {
                conn::close(stream).await;
                return Ok(outcome.closed);
            }
            None => return Ok(outcome.closed),
        };
        let Parked {
            stream,
            read_ahead,
            service,
        } = parked;
        io = stream;
        requests = service;
        io.rewind(read_ahead);
        if io.has_ahead() {
            // Part of the next request came with the last one: serve it now.
            continue;
        }
        let _parked = ParkedGauge::enter();
        let deadline = activity.borrow().idle_since + deadlines.keep_alive;
        let woken = tokio::select! {
            () = io.get_ref().readable() => None,
            () = tokio::time::sleep_until(deadline) => Some(Some(Closed::IdleTimeout)),
            () = conn::stopping(&mut shutdown) => Some(None),
        };
        if let Some(closed) = woken {
            if let Some(reason) = closed {
                crate::metrics::connection_closed(reason.as_str());
            }
            drop(_parked);
            conn::close(io).await;
            return Ok(closed);
        }
    }
}

/// Counts a connection in `graphgate_connections_parked` while it lives.
struct ParkedGauge;

impl ParkedGauge {
    fn enter() -> Self {
        crate::metrics::connections_parked(1);
        ParkedGauge
    }
}

impl Drop for ParkedGauge {
    fn drop(&mut self) {
        crate::metrics::connections_parked(-1);
    }
}

/// A hyper connection's stream, its unparsed bytes and its service, taken back at rest.
struct Parked<I> {
    stream: Rewound<I>,
    read_ahead: Bytes,
    service: Requests,
}

/// How a hyper HTTP/1.1 connection ended.
enum Ended<I> {
    /// At rest, taken apart to be parked.
    Parked(Parked<I>),
    /// Done (the client closed, asked to close, or the server closes it): its stream, to be
    /// shut down as hyper would have.
    Closed(Rewound<I>),
}

type Connection<I> = http1::Connection<TokioIo<Rewound<I>>, Requests>;

/// One hyper HTTP/1.1 connection (boxed: parked connections keep only the small task),
/// which ends by itself once it is at rest.
struct Http1<I: Transport> {
    conn: Option<Box<Connection<I>>>,
    seen: Arc<Seen>,
    activity: watch::Receiver<Activity>,
    /// The supervisor asked for a graceful end: never park.
    closing: bool,
    /// hyper was asked to end because it is at rest.
    parking: bool,
}

/// At rest: a request was served, none is in flight, its response is flushed, and the latest
/// read found nothing, with nothing read since the response. hyper is then idle (between
/// messages; its read buffer empty or holding part of a pipelined request).
fn at_rest(activity: &watch::Receiver<Activity>, seen: &Seen) -> bool {
    let now = activity.borrow();
    now.started > 0 && now.in_flight == 0 && seen.at_rest()
}

impl<I: Transport> Future for Http1<I> {
    type Output = Result<Ended<I>, hyper::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Pending;
            };
            match conn.poll_without_shutdown(cx) {
                Poll::Ready(Ok(())) => {
                    let Some(conn) = this.conn.take() else {
                        return Poll::Pending;
                    };
                    let parts = conn.into_parts();
                    let stream = parts.io.into_inner();
                    return Poll::Ready(Ok(if this.parking {
                        Ended::Parked(Parked {
                            stream,
                            read_ahead: parts.read_buf,
                            service: parts.service,
                        })
                    } else {
                        Ended::Closed(stream)
                    }));
                }
                Poll::Ready(Err(e)) => {
                    this.conn = None;
                    return Poll::Ready(Err(e));
                }
                Poll::Pending if this.parking => {
                    // Asked to end at rest, hyper still has work: it was not idle after all,
                    // and now closes after its exchange. Never expected; visible if it happens.
                    tracing::warn!(
                        "an HTTP/1.1 connection judged at rest was busy; it closes after its exchange"
                    );
                    this.parking = false;
                    this.closing = true;
                    return Poll::Pending;
                }
                Poll::Pending => {
                    if this.closing || !at_rest(&this.activity, &this.seen) {
                        return Poll::Pending;
                    }
                    this.parking = true;
                    Pin::new(&mut **conn).graceful_shutdown();
                }
            }
        }
    }
}

impl<I: Transport> Supervised for Http1<I> {
    type Done = Ended<I>;

    fn graceful_shutdown(mut self: Pin<&mut Self>) {
        self.closing = true;
        if let Some(conn) = self.conn.as_mut() {
            Pin::new(&mut **conn).graceful_shutdown();
        }
    }
}
