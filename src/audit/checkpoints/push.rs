//! Pushing checkpoints off the host: each signed checkpoint note is POSTed (as
//! `text/plain`) to `--audit-checkpoint-url`, so a copy lives where whoever can rewrite the
//! log cannot reach. The writer thread only offers notes to a bounded queue; one task sends
//! them in order, retrying a failed push with backoff (counted), dropping the oldest note when
//! the queue is full (counted). Nothing here ever waits on a request's path.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Notify;

/// Notes waiting to be pushed; more drop the oldest.
const QUEUE: usize = 256;
/// Longest one push may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// First and longest wait between retries of a failed push.
const BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));

/// The queue the checkpointer offers notes to; cheap to clone.
#[derive(Clone, Default)]
pub struct PushQueue {
    inner: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    notes: Mutex<VecDeque<String>>,
    wake: Notify,
    drained: Notify,
}

impl PushQueue {
    /// Queues `note` for the push (never blocks); drops the oldest when full.
    pub fn offer(&self, note: String) {
        let mut notes = self
            .inner
            .notes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if notes.len() >= QUEUE {
            notes.pop_front();
            crate::metrics::audit_checkpoint_push("dropped");
        }
        notes.push_back(note);
        drop(notes);
        self.inner.wake.notify_one();
    }

    /// Notes not yet pushed.
    pub fn pending(&self) -> usize {
        self.inner
            .notes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Waits until every queued note is pushed, or `within` has passed (at shutdown).
    pub async fn drain(&self, within: Duration) -> bool {
        let drained = async {
            loop {
                let notified = self.inner.drained.notified();
                if self.pending() == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(within, drained).await.is_ok()
    }

    fn front(&self) -> Option<String> {
        let notes = self
            .inner
            .notes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        notes.front().cloned()
    }

    fn pop(&self, note: &str) {
        let mut notes = self
            .inner
            .notes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // The front may have been dropped for a newer note meanwhile.
        if notes.front().is_some_and(|n| n == note) {
            notes.pop_front();
        }
        if notes.is_empty() {
            self.inner.drained.notify_waiters();
        }
    }
}

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
enum PushError {
    #[error("{0}")]
    Send(String),
    #[error("the endpoint answered {0}")]
    Status(u16),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

pub(in crate::audit) type PushClient =
    Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Starts the task pushing `queue`'s notes to `url` (http or https; `extra_ca_pem` adds
/// trusted CAs). Call within a Tokio runtime.
pub fn spawn(
    queue: PushQueue,
    url: http::Uri,
    extra_ca_pem: Option<&str>,
) -> Result<tokio::task::JoinHandle<()>, crate::upstream::UpstreamSetupError> {
    let client = client(extra_ca_pem)?;
    Ok(tokio::spawn(run(queue, url, client)))
}

pub(in crate::audit) fn client(
    extra_ca_pem: Option<&str>,
) -> Result<PushClient, crate::upstream::UpstreamSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra_ca_pem
        .map(crate::tls::certs_from_pem)
        .transpose()?
        .unwrap_or_default()
    {
        roots.add(cert)?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

async fn run(queue: PushQueue, url: http::Uri, client: PushClient) {
    let mut backoff = BACKOFF.0;
    loop {
        let Some(note) = queue.front() else {
            queue.inner.wake.notified().await;
            continue;
        };
        match push_one(&client, &url, &note).await {
            Ok(()) => {
                crate::metrics::audit_checkpoint_push("ok");
                queue.pop(&note);
                backoff = BACKOFF.0;
            }
            Err(e) => {
                crate::metrics::audit_checkpoint_push("error");
                tracing::warn!(error = %e, url = %url, retry_in_ms = backoff.as_millis() as u64, "could not push an audit checkpoint; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF.1);
            }
        }
    }
}

async fn push_one(client: &PushClient, url: &http::Uri, note: &str) -> Result<(), PushError> {
    let req = http::Request::post(url.clone())
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(note.to_owned())))
        .map_err(|e| PushError::Send(e.to_string()))?;
    let resp = tokio::time::timeout(TIMEOUT, client.request(req))
        .await
        .map_err(|_| PushError::Timeout(TIMEOUT))?
        .map_err(|e| PushError::Send(e.to_string()))?;
    match resp.status() {
        s if s.is_success() => Ok(()),
        s => Err(PushError::Status(s.as_u16())),
    }
}
