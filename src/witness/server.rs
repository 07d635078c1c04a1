//! The witness's HTTP side: `POST /add-checkpoint` checks the log's signature, the size
//! the client believes was cosigned last, and the consistency proof, then persists and
//! cosigns (every check and the update under one lock, so two requests cannot roll the
//! state back); `GET /<origin hash>/checkpoint` serves the newest cosigned checkpoint.
//! Answers as the specification asks: 400 malformed, 403 no trusted signature, 404 unknown
//! origin, 409 another size (`text/x.tlog.size`), 422 a bad proof, 200 the cosignature line.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Semaphore};

use super::state::{LogState, States};
use crate::audit::checkpoints::checkpoint::Checkpoint;
use crate::audit::checkpoints::note::{NoteError, NoteSigner, NoteVerifier};
use crate::audit::checkpoints::tree::{self, Hash};
use crate::audit::witnessing::witness_protocol::{self as protocol, SIZE_CONTENT_TYPE};
use crate::server::accept;

/// Largest request body.
const MAX_BODY: usize = 64 * 1024;
/// Longest a request may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once.
const MAX_CONNECTIONS: usize = 512;
/// Most logs one witness keeps a state for (logs named by an origin prefix are taken as
/// they come: this bounds the state folder).
pub const MAX_LOGS: usize = 10_000;

/// A witness: its key, the logs it knows (by origin, or by an origin prefix ending in `*`:
/// every log whose origin starts with it, such as one per Kubernetes pod), and their state.
pub struct Witness {
    signer: NoteSigner,
    logs: HashMap<String, NoteVerifier>,
    states: Mutex<States>,
}

/// An answer: status, content type, body.
type Answer = (StatusCode, &'static str, String);

fn answer(status: StatusCode, text: impl Into<String>) -> Answer {
    (status, "text/plain; charset=utf-8", text.into())
}

impl Witness {
    /// A witness cosigning with `signer` the logs in `logs` (origin, or a prefix ending in
    /// `*`, → the log's key), its state in `states`.
    pub fn new(signer: NoteSigner, logs: HashMap<String, NoteVerifier>, states: States) -> Self {
        Witness {
            signer,
            logs,
            states: Mutex::new(states),
        }
    }

    /// Its cosignature public key (what gateways and verifiers are given).
    pub fn public_key(&self) -> NoteVerifier {
        self.signer.verifier()
    }

    /// The origins of the logs it witnesses.
    pub fn origins(&self) -> Vec<&str> {
        let mut origins: Vec<&str> = self.logs.keys().map(String::as_str).collect();
        origins.sort_unstable();
        origins
    }

    /// Handles an `add-checkpoint` body.
    pub async fn add_checkpoint(&self, body: &[u8]) -> Answer {
        let Ok(body) = std::str::from_utf8(body) else {
            return answer(StatusCode::BAD_REQUEST, "the body is not UTF-8\n");
        };
        let request = match protocol::parse_request(body) {
            Ok(r) => r,
            Err(e) => return answer(StatusCode::BAD_REQUEST, format!("{e}\n")),
        };
        let origin = request.note.split('\n').next().unwrap_or_default();
        let Some(key) = self.key_for(origin) else {
            return answer(
                StatusCode::NOT_FOUND,
                format!("unknown log origin {origin:?}\n"),
            );
        };
        let text = match key.open(request.note) {
            Ok(text) => text,
            Err(e @ (NoteError::NotSignedByKey(_) | NoteError::BadSignature(_))) => {
                return answer(StatusCode::FORBIDDEN, format!("{e}\n"));
            }
            Err(e) => return answer(StatusCode::BAD_REQUEST, format!("{e}\n")),
        };
        let checkpoint = match Checkpoint::parse(text) {
            Ok(c) if c.origin == origin => c,
            Ok(_) => return answer(StatusCode::BAD_REQUEST, "origin mismatch\n"),
            Err(e) => return answer(StatusCode::BAD_REQUEST, format!("{e}\n")),
        };
        if request.old > checkpoint.size {
            return answer(
                StatusCode::BAD_REQUEST,
                "old size is larger than the checkpoint's\n",
            );
        }
        let root = match hex32(&checkpoint.hash) {
            Some(h) => Hash(h),
            None => return answer(StatusCode::BAD_REQUEST, "bad root hash\n"),
        };
        let mut states = self.states.lock().await;
        if states.get(origin).is_none() && states.len() >= MAX_LOGS {
            return answer(
                StatusCode::FORBIDDEN,
                format!("this witness keeps at most {MAX_LOGS} logs\n"),
            );
        }
        let (known_size, known_root) = match states.get(origin) {
            Some(s) => (s.size, b64_hash(&s.root).unwrap_or_default()),
            None => (0, tree::EMPTY_ROOT),
        };
        if request.old != known_size {
            return (
                StatusCode::CONFLICT,
                SIZE_CONTENT_TYPE,
                format!("{known_size}\n"),
            );
        }
        if checkpoint.size == 0 && root != tree::EMPTY_ROOT {
            return answer(
                StatusCode::UNPROCESSABLE_ENTITY,
                "a checkpoint of size 0 must have the empty tree's root\n",
            );
        }
        if let Err(e) = tree::check_consistency(
            &request.proof,
            request.old,
            known_root,
            checkpoint.size,
            root,
        ) {
            tracing::warn!(origin, old = request.old, size = checkpoint.size, error = %e, "refused a checkpoint that is not consistent with the one cosigned before");
            return answer(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "the consistency proof from {} to {} does not verify: {e}\n",
                    request.old, checkpoint.size
                ),
            );
        }
        let now = crate::clock::utc_now().timestamp().max(1).unsigned_abs();
        let line = match self.signer.cosign(text, now) {
            Ok(l) => l,
            Err(e) => return answer(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        };
        let state = LogState {
            origin: origin.to_owned(),
            size: checkpoint.size,
            root: B64.encode(root.0),
            note: format!("{}{line}", own_signatures_only(request.note, key)),
        };
        if let Err(e) = states.put(state) {
            tracing::error!(origin, error = %e, "could not persist the witness state; not cosigning");
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "the witness could not persist its state\n",
            );
        }
        tracing::info!(origin, size = checkpoint.size, "cosigned");
        answer(StatusCode::OK, line)
    }

    /// The newest cosigned checkpoint of the log whose origin hashes to `hash`.
    pub async fn checkpoint(&self, hash: &str) -> Answer {
        match self.states.lock().await.by_hash(hash) {
            Some(s) => answer(StatusCode::OK, s.note.clone()),
            None => answer(
                StatusCode::NOT_FOUND,
                "no checkpoint cosigned for that log\n",
            ),
        }
    }

    /// The key of the log `origin`: its own entry, else the longest prefix entry it
    /// starts with.
    fn key_for(&self, origin: &str) -> Option<&NoteVerifier> {
        if let Some(key) = self.logs.get(origin) {
            return Some(key);
        }
        self.logs
            .iter()
            .filter_map(|(pattern, key)| Some((pattern.strip_suffix('*')?, key)))
            .filter(|(prefix, _)| origin.starts_with(prefix) && origin.len() > prefix.len())
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, key)| key)
    }

    async fn handle(&self, req: Request<Incoming>) -> Answer {
        let path = req.uri().path().to_owned();
        match (req.method(), path.as_str()) {
            // For probes: the process serves (its state loaded at start).
            (&Method::GET, "/healthz") => answer(StatusCode::OK, "ok\n"),
            (&Method::POST, "/add-checkpoint") => {
                let limited = Limited::new(req.into_body(), MAX_BODY);
                match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
                    Ok(Ok(body)) => self.add_checkpoint(&body.to_bytes()).await,
                    Ok(Err(_)) => answer(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n"),
                    Err(_) => answer(StatusCode::REQUEST_TIMEOUT, "body too slow\n"),
                }
            }
            (&Method::GET, p) => match p
                .strip_prefix('/')
                .and_then(|p| p.strip_suffix("/checkpoint"))
            {
                Some(hash) if hash.len() == 64 => self.checkpoint(hash).await,
                _ => answer(StatusCode::NOT_FOUND, "not found\n"),
            },
            _ => answer(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

/// The checkpoint with only the log's own signature lines (what the witness verified).
fn own_signatures_only(note: &str, key: &NoteVerifier) -> String {
    let Some(split) = note.find("\n\n") else {
        return note.to_owned();
    };
    let mut out = note[..split + 2].to_owned();
    let prefix = format!("\u{2014} {} ", key.name());
    for line in note[split + 2..].split_inclusive('\n') {
        if line.starts_with(&prefix) {
            out.push_str(line);
        }
    }
    out
}

fn hex32(hex: &str) -> Option<[u8; 32]> {
    let bytes = crate::audit::checkpoints::checkpoint::hex_decode(hex)?;
    bytes.try_into().ok()
}

fn b64_hash(text: &str) -> Option<Hash> {
    let bytes: [u8; 32] = B64.decode(text).ok()?.try_into().ok()?;
    Some(Hash(bytes))
}

/// Serves `witness` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    witness: Arc<Witness>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    while let Some((stream, _)) = accept::next(&listener, &mut shutdown, "witness").await {
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let witness = Arc::clone(&witness);
        let service = service_fn(move |req| {
            let witness = Arc::clone(&witness);
            async move {
                let (status, content_type, body) = witness.handle(req).await;
                let resp = Response::builder()
                    .status(status)
                    .header(http::header::CONTENT_TYPE, content_type)
                    .header(http::header::CACHE_CONTROL, "no-store")
                    .body(Full::new(Bytes::from(body)))
                    .unwrap_or_default();
                Ok::<_, std::convert::Infallible>(resp)
            }
        });
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "witness connection ended with an error");
            }
            drop(permit);
        });
    }
    Ok(())
}
