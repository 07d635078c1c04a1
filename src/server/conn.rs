//! A connection's request service and its supervisor: each request in a task of its own
//! (counted in the connection's activity), and deadlines for every state. A connection must
//! bring its first request within the header-read timeout (whether it is silent, half-way
//! through the HTTP/2 preface, or idle after its TLS handshake), may then sit with no request
//! in flight for the idle timeout, and is closed with a GOAWAY when it floods control frames
//! or the server shuts down.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use crate::clock::Instant;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;

use super::h2guard::Alarm;
use crate::admit::RequestIds;
use crate::gateway::{ConnInfo, Gateway};

/// How long a connection closed for a deadline or abuse gets to say goodbye (HTTP/2 GOAWAY,
/// a response being written) before its socket is closed regardless.
pub(super) const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The deadlines of one connection.
#[derive(Debug, Clone, Copy)]
pub(super) struct Deadlines {
    /// From the connection's start (after TLS) to its first complete request head.
    pub first_request: Duration,
    /// Longest time with no request in flight, after the first.
    pub idle: Duration,
    /// Longest time an HTTP/1.1 connection stays open with no request after its last one
    /// (the idle timeout, or the header-read timeout if shorter: hyper's header timer runs
    /// from the end of a response).
    pub keep_alive: Duration,
    /// Control frames per second allowed on an HTTP/2 connection.
    pub max_control_frames_per_sec: u32,
}

/// Requests started on a connection, how many are in flight, and since when none is, as the
/// supervisor sees them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Activity {
    pub started: u64,
    pub in_flight: usize,
    pub idle_since: Instant,
}

/// A connection's [`Activity`], kept by its requests and read by its supervisor, who is woken
/// when it changes. Small: every open connection has one (a `watch` channel was ~400 bytes).
#[derive(Debug)]
pub(super) struct Tracker {
    activity: Mutex<Activity>,
    changed: Notify,
}

impl Tracker {
    /// Nothing started yet, idle from now.
    fn new() -> Self {
        Tracker {
            activity: Mutex::new(Activity {
                started: 0,
                in_flight: 0,
                idle_since: Instant::now(),
            }),
            changed: Notify::new(),
        }
    }

    /// The activity now.
    pub(super) fn now(&self) -> Activity {
        *self.activity.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Resolves once the activity changed since the last time it resolved (a change made
    /// while nobody waited is kept for the next wait). The supervisor is the one waiter.
    pub(super) async fn changed(&self) {
        self.changed.notified().await;
    }

    fn update(&self, f: impl FnOnce(&mut Activity)) {
        f(&mut self.activity.lock().unwrap_or_else(PoisonError::into_inner));
        self.changed.notify_one();
    }
}

/// Why a connection was closed by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Closed {
    FirstRequestTimeout,
    IdleTimeout,
    ControlFrameFlood,
}

impl Closed {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Closed::FirstRequestTimeout => "first_request_timeout",
            Closed::IdleTimeout => "idle_timeout",
            Closed::ControlFrameFlood => "http2_control_frame_flood",
        }
    }
}

/// Closes a connection's stream, saying goodbye (TLS close_notify) within the close grace.
pub(super) async fn close(mut io: impl tokio::io::AsyncWrite + Unpin) {
    let _ = tokio::time::timeout(CLOSE_GRACE, io.shutdown()).await;
}

/// The service hyper calls for each request of a connection.
#[derive(Clone)]
pub(super) struct Requests {
    conn: ConnInfo,
    gateway: Arc<Gateway>,
    activity: Arc<Tracker>,
}

impl Requests {
    /// The service of the connection `conn`, and its activity (nothing yet, idle from now).
    pub(super) fn new(conn: ConnInfo, gateway: Arc<Gateway>) -> (Self, Arc<Tracker>) {
        let activity = Arc::new(Tracker::new());
        let requests = Requests {
            conn,
            gateway,
            activity: Arc::clone(&activity),
        };
        (requests, activity)
    }
}

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for Requests {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Answering;

    fn call(&self, mut req: hyper::Request<hyper::body::Incoming>) -> Answering {
        let gateway = Arc::clone(&self.gateway);
        // The request's ids are made here, before its task: a task that fails is answered
        // with them, so the caller's id matches the log line.
        let ids = RequestIds::from_headers(req.headers());
        req.extensions_mut().insert(self.conn.clone());
        req.extensions_mut().insert(ids.clone());
        let busy = InFlight::start(Arc::clone(&self.activity));
        // The request runs in its own task: a client that disconnects mid-request cannot
        // cancel a privileged call between forwarding it and recording its outcome. Its
        // future is large (the whole pipeline, about 9 KiB) and boxed once here: tokio moves
        // a task's future by value as it spawns, stores and completes it, and the copies of
        // an unboxed one were an eighth of a request's instructions (callgrind).
        let task = tokio::spawn(Box::pin(async move { gateway.handle(req).await }));
        Answering {
            task,
            ids,
            _busy: busy,
        }
    }
}

/// A request's answer, once its task is done. Small and `Unpin`: hyper keeps it in the
/// connection while the request runs, and parking needs the connection `Unpin`.
pub(super) struct Answering {
    task: JoinHandle<Response<Full<Bytes>>>,
    ids: RequestIds,
    _busy: InFlight,
}

impl Future for Answering {
    type Output = Result<Response<Full<Bytes>>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let done = ready!(Pin::new(&mut self.task).poll(cx));
        Poll::Ready(Ok(answer(done, &self.ids)))
    }
}

/// The answer of a request's task; a task that failed (it panicked) gets the generic 500,
/// carrying the request's own ids, and the log line names them.
fn answer(
    done: Result<Response<Full<Bytes>>, tokio::task::JoinError>,
    ids: &RequestIds,
) -> Response<Full<Bytes>> {
    done.unwrap_or_else(|e| {
        tracing::error!(error = %e, request_id = %ids.request_id, "request task failed");
        let mut resp = crate::error::internal_error_response(ids);
        crate::answer::set_ids(resp.headers_mut(), ids);
        resp
    })
}

/// Marks one request in flight on a connection (and in the process, for the allocator's
/// quiet periods) until dropped.
struct InFlight(Arc<Tracker>, super::trim::Busy);

impl InFlight {
    fn start(activity: Arc<Tracker>) -> Self {
        activity.update(|a| {
            a.started += 1;
            a.in_flight += 1;
        });
        InFlight(activity, super::trim::Busy::start())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.update(|a| {
            a.in_flight = a.in_flight.saturating_sub(1);
            if a.in_flight == 0 {
                a.idle_since = Instant::now();
            }
        });
    }
}

/// A hyper connection the supervisor drives: it ends with `Done` (or an error), and can be
/// asked to finish gracefully.
pub(super) trait Supervised: Future<Output = Result<Self::Done, hyper::Error>> {
    type Done;
    /// Finish what is in flight, then end (HTTP/2: GOAWAY; idle HTTP/1: at once).
    fn graceful_shutdown(self: Pin<&mut Self>);
}

/// How a supervised connection ended: what it finished with (if it did), and why the server
/// closed it (if it did).
pub(super) struct Outcome<D> {
    pub done: Option<D>,
    pub closed: Option<Closed>,
}

/// Drives `conn`, closing it when one of its deadlines passes, when it floods control
/// frames, or (gracefully, letting requests in flight finish) when shutdown begins.
pub(super) async fn supervise<C: Supervised>(
    conn: C,
    activity: &Tracker,
    alarm: Option<&Alarm>,
    deadlines: Deadlines,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Outcome<C::Done>, hyper::Error> {
    tokio::pin!(conn);
    let ended = |done| {
        Ok(Outcome {
            done: Some(done),
            closed: None,
        })
    };
    let reason = loop {
        let now = activity.now();
        let (limit, reason) = if now.started == 0 {
            (deadlines.first_request, Closed::FirstRequestTimeout)
        } else {
            (deadlines.idle, Closed::IdleTimeout)
        };
        // Only a connection with nothing in flight has a deadline: requests have their own.
        let deadline = (now.in_flight == 0).then(|| now.idle_since + limit);
        tokio::select! {
            done = conn.as_mut() => return done.and_then(ended),
            () = activity.changed() => {}
            () = sleep_until(deadline) => break reason,
            () = tripped(alarm) => break Closed::ControlFrameFlood,
            () = stopping(shutdown) => {
                // Server shutdown: requests in flight finish (the server bounds the wait).
                conn.as_mut().graceful_shutdown();
                return conn.await.and_then(ended);
            }
        }
    };
    // Counted before the close, so whoever sees the close also sees the count.
    crate::metrics::connection_closed(reason.as_str());
    // HTTP/2 gets a GOAWAY, an idle HTTP/1 connection closes at once; whatever does not end
    // within the grace is dropped.
    conn.as_mut().graceful_shutdown();
    let done = tokio::time::timeout(CLOSE_GRACE, conn.as_mut())
        .await
        .ok()
        .and_then(Result::ok);
    Ok(Outcome {
        done,
        closed: Some(reason),
    })
}

/// Resolves once `alarm` (if any) has tripped.
async fn tripped(alarm: Option<&Alarm>) {
    match alarm {
        Some(alarm) => alarm.tripped().await,
        None => std::future::pending().await,
    }
}

/// Resolves once shutdown has begun (or the server is gone).
pub(super) async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every open connection keeps its activity: it must stay small (the `watch` channel it
    /// replaced took about 400 bytes, on the heap, per connection).
    #[test]
    fn a_connections_activity_is_small() {
        let size = std::mem::size_of::<Tracker>();
        eprintln!("a connection's activity: {size} bytes");
        assert!(size <= 96, "{size}");
    }

    /// A change made while the supervisor was not waiting wakes its next wait.
    #[tokio::test]
    async fn a_change_wakes_the_next_wait() {
        let tracker = Tracker::new();
        tracker.update(|a| a.started += 1);
        tokio::time::timeout(Duration::from_secs(10), tracker.changed())
            .await
            .unwrap();
        assert_eq!(tracker.now().started, 1);
    }

    /// A request whose task fails (it panicked) is answered 500 with its own ids: the ids
    /// the log line names.
    #[tokio::test]
    async fn a_failed_task_is_answered_with_the_requests_own_ids() {
        let ids = RequestIds {
            request_id: "3c7f7ff9-52d4-4c5e-9f50-5d2a5e4b8a11".into(),
            client_request_id: "0d6b2a4e-1f1e-4d0a-9a62-1b5d2b1f0c33".into(),
        };
        #[allow(clippy::panic)]
        let failed = tokio::spawn(async { panic!("a bug") }).await;
        let resp = answer(failed, &ids);
        assert_eq!(resp.status(), 500);
        assert_eq!(
            resp.headers()["x-graphgate-request-id"],
            ids.request_id.as_str()
        );
        assert_eq!(
            resp.headers()["client-request-id"],
            ids.client_request_id.as_str()
        );
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json["error"]["innerError"]["request-id"],
            ids.request_id.as_str()
        );
    }
}
