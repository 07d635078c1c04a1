//! One connection, from its first byte to its close: HTTP/1.1 or HTTP/2 served by hyper, each
//! request in a task of its own, and a supervisor that gives every state a deadline. A
//! connection must bring its first request within the header-read timeout (whether it is
//! silent, half-way through the HTTP/2 preface, or idle after its TLS handshake), may then
//! sit with no request in flight for the idle timeout, and is closed with a GOAWAY when it
//! floods control frames or the server shuts down.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Instant;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;

use super::h2guard::{Alarm, FrameGuard};
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
    /// Control frames per second allowed on an HTTP/2 connection.
    pub max_control_frames_per_sec: u32,
}

/// Requests started on a connection and how many are in flight, as the supervisor sees them.
#[derive(Debug, Clone, Copy, Default)]
struct Activity {
    started: u64,
    in_flight: usize,
}

/// Why a connection was closed by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    FirstRequestTimeout,
    IdleTimeout,
    ControlFrameFlood,
}

impl Closed {
    fn as_str(self) -> &'static str {
        match self {
            Closed::FirstRequestTimeout => "first_request_timeout",
            Closed::IdleTimeout => "idle_timeout",
            Closed::ControlFrameFlood => "http2_control_frame_flood",
        }
    }
}

/// Serves one connection until it ends, a deadline passes, or `shutdown` turns true.
pub(super) async fn serve<I>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    conn: ConnInfo,
    gateway: Arc<Gateway>,
    deadlines: Deadlines,
    shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let (io, alarm) = FrameGuard::new(io, deadlines.max_control_frames_per_sec);
    let (activity_tx, activity) = watch::channel(Activity::default());
    let activity_tx = Arc::new(activity_tx);
    let service = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        let gateway = Arc::clone(&gateway);
        // The request's ids are made here, before its task: a task that fails is answered
        // with them, so the caller's id matches the log line.
        let ids = RequestIds::from_headers(req.headers());
        req.extensions_mut().insert(conn.clone());
        req.extensions_mut().insert(ids.clone());
        let busy = InFlight::start(Arc::clone(&activity_tx));
        // The request runs in its own task: a client that disconnects mid-request cannot
        // cancel a privileged call between forwarding it and recording its outcome. Its
        // future is large (the whole pipeline, about 9 KiB) and boxed once here: tokio moves
        // a task's future by value as it spawns, stores and completes it, and the copies of
        // an unboxed one were an eighth of a request's instructions (callgrind).
        let task = tokio::spawn(Box::pin(async move { gateway.handle(req).await }));
        async move {
            let _busy = busy;
            Ok::<_, std::convert::Infallible>(answer(task.await, &ids))
        }
    });
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .into_owned();
    let ended = supervise(connection, activity, &alarm, deadlines, shutdown).await;
    match ended {
        Ok(None) => {}
        Ok(Some(reason)) => {
            tracing::debug!(%peer, reason = reason.as_str(), "connection closed by the server");
        }
        Err(e) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
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

/// Marks one request in flight on a connection until dropped.
struct InFlight(Arc<watch::Sender<Activity>>);

impl InFlight {
    fn start(tx: Arc<watch::Sender<Activity>>) -> Self {
        tx.send_modify(|a| {
            a.started += 1;
            a.in_flight += 1;
        });
        InFlight(tx)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .send_modify(|a| a.in_flight = a.in_flight.saturating_sub(1));
    }
}

/// Drives `conn`, closing it when one of its deadlines passes, when it floods control
/// frames, or (gracefully, letting requests in flight finish) when shutdown begins.
async fn supervise<C>(
    conn: C,
    mut activity: watch::Receiver<Activity>,
    alarm: &Alarm,
    deadlines: Deadlines,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Option<Closed>, C::Error>
where
    C: GracefulConnection,
{
    tokio::pin!(conn);
    let mut idle_since = Instant::now();
    let reason = loop {
        let now = *activity.borrow_and_update();
        let (limit, reason) = if now.started == 0 {
            (deadlines.first_request, Closed::FirstRequestTimeout)
        } else {
            (deadlines.idle, Closed::IdleTimeout)
        };
        // Only a connection with nothing in flight has a deadline: requests have their own.
        let deadline = (now.in_flight == 0).then(|| idle_since + limit);
        tokio::select! {
            ended = conn.as_mut() => return ended.map(|()| None),
            changed = activity.changed() => {
                if changed.is_err() {
                    // The service is gone with the connection's protocol state; the
                    // connection future ends next.
                    return conn.await.map(|()| None);
                }
                if activity.borrow().in_flight == 0 {
                    idle_since = Instant::now();
                }
            }
            () = sleep_until(deadline) => break reason,
            () = alarm.tripped() => break Closed::ControlFrameFlood,
            () = stopping(&mut shutdown) => {
                // Server shutdown: requests in flight finish (the server bounds the wait).
                conn.as_mut().graceful_shutdown();
                return conn.await.map(|()| None);
            }
        }
    };
    // Counted before the close, so whoever sees the close also sees the count.
    crate::metrics::connection_closed(reason.as_str());
    // HTTP/2 gets a GOAWAY, an idle HTTP/1 connection closes at once, a connection still
    // detecting its protocol stops; whatever does not end within the grace is dropped.
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(CLOSE_GRACE, conn.as_mut()).await;
    Ok(Some(reason))
}

/// Resolves once shutdown has begun (or the server is gone).
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
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
