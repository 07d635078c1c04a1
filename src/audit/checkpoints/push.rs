//! Pushing checkpoints off the host: each signed checkpoint note is POSTed (as
//! `text/plain`) to `--audit-checkpoint-url`, so a copy lives where whoever can rewrite the
//! log cannot reach. The writer thread only offers notes to a bounded queue; one task sends
//! them in order, retrying a failed push with backoff (counted), dropping the oldest note when
//! the queue is full (counted). Nothing here ever waits on a request's path. The push can
//! authenticate: a bearer token from a file (re-read for every push, so it rotates in place),
//! or the URL's user info as HTTP Basic; logs show the URL without user info or query.
//! `GRAPHGATE_CONNECT_TO` applies, as to every outbound client.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use tokio::sync::Notify;

use crate::secret::Secret;
use crate::upstream::{ConnectRule, ConnectTo};

/// Notes waiting to be pushed; more drop the oldest.
const QUEUE: usize = 256;
/// Longest one push may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Longest TCP connect of one push.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest bearer token read from the token file.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
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

/// Where checkpoints go, and how the push proves who sends them.
pub struct PushTarget {
    /// The endpoint, `http(s)://`; user info in it is sent as HTTP Basic (never logged).
    pub url: http::Uri,
    /// A file holding a bearer token (private to graphgate's user), read for every push.
    pub token_file: Option<PathBuf>,
    /// Connect-to overrides (`GRAPHGATE_CONNECT_TO`).
    pub connect_to: Vec<ConnectRule>,
}

/// The push cannot be set up (a start-up error).
#[derive(Debug, thiserror::Error)]
pub enum PushSetupError {
    /// The client could not be built.
    #[error(transparent)]
    Client(#[from] crate::upstream::UpstreamSetupError),
    /// The token file is unusable.
    #[error("the checkpoint push token file {path}: {reason}")]
    TokenFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// Both a token file and user info in the URL: which credential to send is unclear.
    #[error(
        "the checkpoint URL carries user info and a token file is set: use one (the token file)"
    )]
    TwoCredentials,
    /// The URL is not one a push can go to.
    #[error("the checkpoint URL must be http:// or https:// with a host")]
    Url,
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
    #[error("{0}")]
    Token(String),
}

pub(in crate::audit) type PushClient = Client<hyper_rustls::HttpsConnector<ConnectTo>, Full<Bytes>>;

/// The endpoint as requests go to it: its URL without user info, the credential, and the
/// URL as logs show it.
struct Endpoint {
    uri: http::Uri,
    basic: Option<Secret>,
    token_file: Option<PathBuf>,
    shown: String,
}

impl Endpoint {
    fn new(target: &PushTarget) -> Result<Self, PushSetupError> {
        let url = &target.url;
        let (Some(scheme), Some(authority)) = (url.scheme_str(), url.authority()) else {
            return Err(PushSetupError::Url);
        };
        if !matches!(scheme, "http" | "https") {
            return Err(PushSetupError::Url);
        }
        let (userinfo, host) = match authority.as_str().rsplit_once('@') {
            Some((userinfo, host)) => (Some(userinfo), host),
            None => (None, authority.as_str()),
        };
        let path = url.path_and_query().map_or("/", |p| p.as_str());
        let uri = format!("{scheme}://{host}{path}")
            .parse()
            .map_err(|_| PushSetupError::Url)?;
        let basic = userinfo.map(|info| {
            use base64::Engine;
            let decoded = percent_encoding::percent_decode_str(info).collect::<Vec<u8>>();
            let encoded = base64::engine::general_purpose::STANDARD.encode(decoded);
            Secret::new(format!("Basic {encoded}"))
        });
        if basic.is_some() && target.token_file.is_some() {
            return Err(PushSetupError::TwoCredentials);
        }
        if let Some(file) = &target.token_file {
            read_token(file).map_err(|reason| PushSetupError::TokenFile {
                path: file.display().to_string(),
                reason,
            })?;
        }
        Ok(Endpoint {
            uri,
            basic,
            token_file: target.token_file.clone(),
            shown: shown(url),
        })
    }

    /// The `Authorization` value of the next push, if it authenticates.
    fn authorization(&self) -> Result<Option<HeaderValue>, PushError> {
        let value = match (&self.basic, &self.token_file) {
            (Some(basic), _) => basic.expose().to_owned(),
            (None, Some(file)) => format!(
                "Bearer {}",
                read_token(file).map_err(|reason| PushError::Token(format!(
                    "the token file {}: {reason}",
                    file.display()
                )))?
            ),
            (None, None) => return Ok(None),
        };
        let mut value = HeaderValue::try_from(value)
            .map_err(|_| PushError::Token("the credential is not a valid header value".into()))?;
        value.set_sensitive(true);
        Ok(Some(value))
    }
}

/// `url` as logs show it: no user info, and the query (a signature, a key) left out.
pub fn shown(url: &http::Uri) -> String {
    let host = url
        .authority()
        .map(|a| a.as_str().rsplit_once('@').map_or(a.as_str(), |(_, h)| h))
        .unwrap_or_default();
    let query = if url.query().is_some() { "?…" } else { "" };
    format!(
        "{}://{host}{}{query}",
        url.scheme_str().unwrap_or("?"),
        url.path()
    )
}

/// The bearer token in `file`: private to graphgate's user, one line of visible ASCII.
fn read_token(file: &std::path::Path) -> Result<String, String> {
    crate::audit::records::fingerprint::check_private(file)?;
    let text = std::fs::read(file).map_err(|e| e.to_string())?;
    if text.len() > MAX_TOKEN_BYTES {
        return Err(format!("longer than {MAX_TOKEN_BYTES} bytes"));
    }
    let token = std::str::from_utf8(&text)
        .map_err(|_| "not text".to_owned())?
        .trim();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("it must hold one token of visible ASCII characters".to_owned());
    }
    Ok(token.to_owned())
}

/// Checks that a push to `target` can be set up (the URL, the credential, a readable token
/// file) without starting it: `serve --check-config`.
pub fn check(target: &PushTarget) -> Result<(), PushSetupError> {
    Endpoint::new(target).map(|_| ())
}

/// Starts the task pushing `queue`'s notes to `target` (http or https; `extra_ca_pem` adds
/// trusted CAs). Call within a Tokio runtime.
pub fn spawn(
    queue: PushQueue,
    target: &PushTarget,
    extra_ca_pem: Option<&str>,
) -> Result<tokio::task::JoinHandle<()>, PushSetupError> {
    let endpoint = Endpoint::new(target)?;
    let client = client(&target.connect_to, extra_ca_pem)?;
    Ok(tokio::spawn(run(queue, endpoint, client)))
}

/// The HTTP(S) client pushes (and witness submissions) go out on: the public roots and
/// `extra_ca_pem`, through `connect_to`.
pub(in crate::audit) fn client(
    connect_to: &[ConnectRule],
    extra_ca_pem: Option<&str>,
) -> Result<PushClient, crate::upstream::UpstreamSetupError> {
    crate::upstream::side_client(connect_to, extra_ca_pem, CONNECT_TIMEOUT)
}

async fn run(queue: PushQueue, endpoint: Endpoint, client: PushClient) {
    let mut backoff = BACKOFF.0;
    loop {
        let Some(note) = queue.front() else {
            queue.inner.wake.notified().await;
            continue;
        };
        match push_one(&client, &endpoint, &note).await {
            Ok(()) => {
                crate::metrics::audit_checkpoint_push("ok");
                queue.pop(&note);
                backoff = BACKOFF.0;
            }
            Err(e) => {
                crate::metrics::audit_checkpoint_push("error");
                tracing::warn!(error = %e, url = %endpoint.shown, retry_in_ms = backoff.as_millis() as u64, "could not push an audit checkpoint; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF.1);
            }
        }
    }
}

async fn push_one(client: &PushClient, endpoint: &Endpoint, note: &str) -> Result<(), PushError> {
    let mut req = http::Request::post(endpoint.uri.clone())
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8");
    if let Some(value) = endpoint.authorization()? {
        req = req.header(http::header::AUTHORIZATION, value);
    }
    let req = req
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_show_the_url_without_user_info_or_query() {
        let url: http::Uri = "https://ops:s3cret@checkpoints.example:8443/in?sig=abc&code=k"
            .parse()
            .unwrap();
        assert_eq!(shown(&url), "https://checkpoints.example:8443/in?…");
        let plain: http::Uri = "http://127.0.0.1:9/c".parse().unwrap();
        assert_eq!(shown(&plain), "http://127.0.0.1:9/c");
        let target = PushTarget {
            url,
            token_file: None,
            connect_to: Vec::new(),
        };
        let endpoint = Endpoint::new(&target).unwrap();
        assert_eq!(
            endpoint.uri.to_string(),
            "https://checkpoints.example:8443/in?sig=abc&code=k",
            "sent without the user info"
        );
        let auth = endpoint.authorization().unwrap().unwrap();
        assert!(auth.is_sensitive());
        assert_eq!(auth, "Basic b3BzOnMzY3JldA==", "ops:s3cret");
    }
}
