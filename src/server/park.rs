//! HTTP/1.1 keep-alive connections parked outside hyper. A connection at rest (its last
//! response written and flushed, no request in flight, nothing read since) costs hyper about
//! 35 KB (read and write buffers, dispatcher); parked, it is its socket (and TLS session), the
//! service and a small wait for readability, its keep-alive deadline or shutdown. When bytes
//! arrive a new hyper connection is built on the same stream, with any bytes hyper had read
//! ahead replayed first. A connection is parked once it has rested [`PARK_AFTER`] (one in
//! steady use keeps hyper: tearing it down and building it again per request costs CPU and
//! allocator churn). Parking is exact: hyper is asked to end only when it is idle in its own
//! terms (a connection mid-request or mid-response would lose keep-alive instead).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio::time::Sleep;

use super::conn::{self, Activity, Closed, Deadlines, Requests, Supervised, Tracker};
use super::transport::{Rewound, Seen, Transport};

/// How long an HTTP/1.1 connection rests (no request since its last response) before it is
/// parked. A connection used more often than this keeps its hyper connection.
pub const PARK_AFTER: Duration = Duration::from_secs(1);

/// The park delay in force, in milliseconds: [`PARK_AFTER`] unless set at start-up.
static PARK_AFTER_MS: AtomicU64 = AtomicU64::new(PARK_AFTER.as_millis() as u64);

/// Sets the park delay for the process, at start-up (the hidden `--park-after-ms`: tests
/// use a long one to see the [`HYPER_MAX`] cap alone at work).
pub fn set_park_after(after: Duration) {
    let ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
    PARK_AFTER_MS.store(ms, Ordering::Relaxed);
}

fn park_after() -> Duration {
    Duration::from_millis(PARK_AFTER_MS.load(Ordering::Relaxed))
}

/// Most hyper HTTP/1.1 connections (about 35 KB each) alive before a connection at rest is
/// parked at once rather than after [`PARK_AFTER`]: with many connections open, memory is
/// bounded as if there were no delay (a burst of 10,000 connections would otherwise hold
/// 10,000 hyper connections for a second, and the allocator keeps that peak). 64: the
/// bench's steady runs (16 and 64 connections) keep hyper.
pub const HYPER_MAX: usize = 64;

/// hyper HTTP/1.1 connections alive now.
static HYPER_ALIVE: AtomicUsize = AtomicUsize::new(0);

/// Counts a hyper connection in [`HYPER_ALIVE`] while it lives.
struct Alive;

impl Alive {
    fn enter() -> Self {
        HYPER_ALIVE.fetch_add(1, Ordering::Relaxed);
        Alive
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        HYPER_ALIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves an HTTP/1.1 connection, parking it whenever it is at rest, until it ends, a
/// deadline passes or shutdown begins.
pub(super) async fn serve<I: Transport>(
    builder: &http1::Builder,
    mut io: Rewound<I>,
    mut requests: Requests,
    activity: Arc<Tracker>,
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
            activity: Arc::clone(&activity),
            closing: false,
            parking: false,
            rest: None,
            _alive: Alive::enter(),
        };
        // Boxed: the supervisor lives only while hyper does; parked, the task keeps only this
        // function's few locals.
        let supervised = conn::supervise(hyper, &activity, None, deadlines, &mut shutdown);
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
        let deadline = activity.now().idle_since + deadlines.keep_alive;
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
        super::trim::parked();
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
    activity: Arc<Tracker>,
    /// The supervisor asked for a graceful end: never park.
    closing: bool,
    /// hyper was asked to end because it is at rest.
    parking: bool,
    /// The rest timer, made the first time the connection is at rest.
    rest: Option<Rest>,
    _alive: Alive,
}

/// When a connection's rest ends: [`PARK_AFTER`] after the end of request number `started`.
/// One timer per hyper connection, moved on (not made again) when it fires and requests ran
/// in the meantime: a connection in steady use resets it about once per [`PARK_AFTER`], not
/// per request.
struct Rest {
    timer: Pin<Box<Sleep>>,
    started: u64,
}

impl Rest {
    /// Whether the connection, at rest now with `now`'s requests, has rested [`PARK_AFTER`]
    /// with no request started since; if not, the task is woken when it may have.
    fn over(this: &mut Option<Rest>, now: &Activity, cx: &mut Context<'_>) -> bool {
        if HYPER_ALIVE.load(Ordering::Relaxed) > HYPER_MAX {
            return true;
        }
        let rest = this.get_or_insert_with(|| Rest {
            timer: Box::pin(tokio::time::sleep_until(now.idle_since + park_after())),
            started: now.started,
        });
        if rest.timer.as_mut().poll(cx).is_pending() {
            return false;
        }
        if rest.started != now.started {
            // Requests ran since the timer was set: the rest counts from the latest one's end.
            rest.started = now.started;
            rest.timer.as_mut().reset(now.idle_since + park_after());
            return rest.timer.as_mut().poll(cx).is_ready();
        }
        true
    }
}

/// At rest: a request was served, none is in flight, its response is flushed, and the latest
/// read found nothing, with nothing read since the response. hyper is then idle (between
/// messages; its read buffer empty or holding part of a pipelined request). The activity,
/// when at rest.
fn at_rest(activity: &Tracker, seen: &Seen) -> Option<Activity> {
    let now = activity.now();
    (now.started > 0 && now.in_flight == 0 && seen.at_rest()).then_some(now)
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
                    if this.closing {
                        return Poll::Pending;
                    }
                    let Some(now) = at_rest(&this.activity, &this.seen) else {
                        return Poll::Pending;
                    };
                    if !Rest::over(&mut this.rest, &now, cx) {
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
