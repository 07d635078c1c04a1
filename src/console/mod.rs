//! The audit console: a read-only web page on the admin listener (`/audit`) for the ops
//! team's question, "what was done to this device, by whom, and did it complete". Server
//! rendered ([`html`], [`pages`]) from an in-memory [`index`] of the log, with its own
//! stylesheet and script (no CDN, works offline) under a strict Content-Security-Policy.
//! [`approvals`] renders the approvals pages (`/audit/approvals`) from what the admin
//! listener reads in the state store. [`auth`] guards it (and `/metrics`) with an admin token
//! off loopback.

pub mod approvals;
pub mod auth;
mod edge;
pub mod html;
pub mod index;
pub mod pages;
mod record;
mod scan;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::audit::checkpoints::checkpoint::{self, Checkpoint};
use crate::audit::checkpoints::note::NoteVerifier;
use crate::audit::store::follow::Follower;
use index::Index;
use pages::Filters;

const CSS: &str = include_str!("static/console.css");
const JS: &str = include_str!("static/console.js");
/// Records indexed per step (the index is locked for writing only that long).
const BATCH: usize = 8192;
/// How often a log written by another process is looked at for new records.
const POLL: Duration = Duration::from_millis(500);
/// How long the index lets the gateway's own log gather commits before it reads them: a
/// busy gateway commits a few times a millisecond, and reading after each commit cost a
/// blocking-pool hand-off and a context switch per request; a person reading the console
/// does not see 100 ms.
const SETTLE: Duration = Duration::from_millis(100);
/// The tail of the checkpoint file read for its newest checkpoint.
const CHECKPOINT_TAIL: u64 = 16 * 1024;

/// The console over one audit log.
pub struct Console {
    log: PathBuf,
    index: Arc<Index>,
    verifier: Option<NoteVerifier>,
    /// What the index follows, until it is started (taken then).
    pending: Mutex<Option<Option<tokio::sync::watch::Receiver<u64>>>>,
    /// Whether the index has read the whole log once.
    caught_up: Arc<AtomicBool>,
}

impl Console {
    /// A console over the log at `log`, indexing it in the background from now on (following
    /// `durable`, the writer's durable head, or polling the files when the log is another
    /// process's). `verifier` checks the checkpoints shown. Call within a Tokio runtime.
    pub fn start(
        log: &Path,
        durable: Option<tokio::sync::watch::Receiver<u64>>,
        verifier: Option<NoteVerifier>,
    ) -> Arc<Console> {
        let console = Console::lazy(log, durable, verifier);
        console.begin();
        console
    }

    /// A console that builds its index only when it is first opened: a gateway whose console
    /// nobody reads spends no CPU per request on indexing and no memory on an index that
    /// grows with its log. The first page shows how far the index has got.
    pub fn lazy(
        log: &Path,
        durable: Option<tokio::sync::watch::Receiver<u64>>,
        verifier: Option<NoteVerifier>,
    ) -> Arc<Console> {
        Arc::new(Console {
            log: log.to_owned(),
            index: Arc::new(Index::default()),
            verifier,
            pending: Mutex::new(Some(durable)),
            caught_up: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Starts the index's follower, once. Call within a Tokio runtime.
    fn begin(&self) {
        let pending = match self.pending.lock() {
            Ok(mut pending) => pending.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(durable) = pending {
            tokio::spawn(follow(
                self.log.clone(),
                Arc::clone(&self.index),
                durable,
                Arc::clone(&self.caught_up),
            ));
        }
    }

    /// Whether the index is being built (the console was opened, or started eagerly).
    pub fn is_indexing(&self) -> bool {
        self.pending.lock().map_or(true, |p| p.is_none())
    }

    /// The index (tests wait on it).
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Answers a GET under `/audit`.
    pub fn handle(&self, path: &str, query: Option<&str>) -> Response<Full<Bytes>> {
        self.begin();
        let filters = Filters::parse(query);
        match path.trim_end_matches('/') {
            "/audit" => self.page(
                "Recent privileged actions",
                &pages::list(&self.index, &filters),
            ),
            "/audit/static/console.css" => asset(CSS, "text/css; charset=utf-8"),
            "/audit/static/console.js" => asset(JS, "text/javascript; charset=utf-8"),
            p => match p.strip_prefix("/audit/device/") {
                Some(id) if !id.is_empty() && !id.contains('/') => {
                    let id = percent_encoding::percent_decode_str(id).decode_utf8_lossy();
                    let body = pages::device(&self.index, &id, &filters);
                    self.page(&format!("Device {id}"), &body)
                }
                _ => respond(
                    StatusCode::NOT_FOUND,
                    "text/plain; charset=utf-8",
                    "not found\n".into(),
                ),
            },
        }
    }

    /// The approvals page: `all` as the state store listed them, or why it could not.
    pub fn approvals(
        &self,
        all: Result<Vec<crate::approval::Resource>, String>,
    ) -> Response<Full<Bytes>> {
        self.begin();
        match all {
            Ok(all) => self.page("Approvals", &approvals::list(&all)),
            Err(e) => unavailable(&e),
        }
    }

    /// Approval `id`'s page.
    pub fn approval(
        &self,
        id: &str,
        found: Result<Option<crate::approval::Resource>, String>,
    ) -> Response<Full<Bytes>> {
        self.begin();
        match found {
            Ok(Some(a)) => self.page(&format!("Approval {id}"), &approvals::one(&a)),
            Ok(None) => respond(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "no such approval\n".into(),
            ),
            Err(e) => unavailable(&e),
        }
    }

    fn page(&self, title: &str, body: &str) -> Response<Full<Bytes>> {
        let caught_up = self.caught_up.load(Ordering::Acquire);
        let status = pages::status_panel(&self.index, &self.checkpoint_status(), caught_up);
        let html = html::page(title, &status, body);
        respond(StatusCode::OK, "text/html; charset=utf-8", html)
    }

    /// The newest checkpoint: when it was written, how far it reaches, and whether the log
    /// still matches it.
    fn checkpoint_status(&self) -> String {
        let Some(verifier) = &self.verifier else {
            return "Checkpoints: off (no --audit-signing-key-file)".to_owned();
        };
        let path = checkpoint::path_for(&self.log);
        let Some((cp, written)) = newest_checkpoint(&path, verifier) else {
            return "Checkpoints: none yet".to_owned();
        };
        // A checkpoint signs the Merkle root of the first `size` records (one written
        // before the log was a tree: the chain's head at that record).
        let of_chain = self.index.locate(cp.size).and_then(|(file, offset)| {
            let line = crate::audit::store::follow::read_at(&file, offset).ok()?;
            let link: crate::audit::store::files::Link = serde_json::from_slice(&line).ok()?;
            Some(link.hash == cp.hash)
        });
        let matches = match of_chain {
            Some(true) => Some(true),
            _ => self
                .index
                .root_at(cp.size)
                .map(|root| crate::audit::records::chain::hex(&root.0) == cp.hash),
        };
        let verdict = match matches {
            Some(true) => r#"<span class="good">the log matches it</span>"#,
            Some(false) => r#"<span class="bad">THE LOG DOES NOT MATCH IT</span>"#,
            None if cp.size > self.index.last_seq() => "not indexed yet",
            None => {
                "not checked here (the Merkle tree before the records indexed is not at hand: `graphgate audit verify --public-key` checks it)"
            }
        };
        format!(
            "Last checkpoint: seq {}, signed by {}, written {written}; {verdict}",
            cp.size,
            html::esc(&verifier.label())
        )
    }
}

/// The state store did not answer: 503, saying why (the store's error names no secret).
fn unavailable(why: &str) -> Response<Full<Bytes>> {
    respond(
        StatusCode::SERVICE_UNAVAILABLE,
        "text/plain; charset=utf-8",
        format!("approvals are unavailable: {why}\n"),
    )
}

/// The newest verified checkpoint in `path` and its file's modification time.
fn newest_checkpoint(path: &Path, verifier: &NoteVerifier) -> Option<(Checkpoint, String)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    let start = meta.len().saturating_sub(CHECKPOINT_TAIL);
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut tail = String::new();
    file.take(CHECKPOINT_TAIL).read_to_string(&mut tail).ok()?;
    let note = checkpoint::split_notes(&tail).into_iter().last()?;
    let cp = Checkpoint::parse(verifier.open(note).ok()?).ok()?;
    let written = meta.modified().ok().map_or_else(String::new, |t| {
        chrono::DateTime::<chrono::Utc>::from(t)
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string()
    });
    Some((cp, written))
}

/// Builds the index and keeps it up to date.
async fn follow(
    log: PathBuf,
    index: Arc<Index>,
    mut durable: Option<tokio::sync::watch::Receiver<u64>>,
    caught_up: Arc<AtomicBool>,
) {
    let mut follower = Some((Follower::new(&log, 1), index::Batch::default()));
    loop {
        let until = durable
            .as_mut()
            .map_or(u64::MAX, |d| *d.borrow_and_update());
        let Some((mut f, mut batch)) = follower.take() else {
            return;
        };
        let index2 = Arc::clone(&index);
        let step = tokio::task::spawn_blocking(move || {
            let read = index2.follow(&mut f, until, BATCH, &mut batch);
            (f, batch, read)
        })
        .await;
        let Ok((f, batch, read)) = step else { return };
        follower = Some((f, batch));
        match read {
            Ok(n) if n == BATCH => continue,
            Ok(_) => caught_up.store(true, Ordering::Release),
            Err(e) => tracing::warn!(error = %e, "the audit console could not read the log"),
        }
        match durable.as_mut() {
            Some(d) => {
                if d.changed().await.is_err() {
                    return;
                }
                tokio::time::sleep(SETTLE).await;
            }
            None => tokio::time::sleep(POLL).await,
        }
    }
}

fn asset(body: &'static str, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut resp = respond(StatusCode::OK, content_type, String::new());
    *resp.body_mut() = Full::new(Bytes::from_static(body.as_bytes()));
    resp
}

/// A console response with its security headers.
pub fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: String,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    h.insert(
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(html::CSP),
    );
    h.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        http::header::X_FRAME_OPTIONS,
        HeaderValue::from_static("DENY"),
    );
    h.insert(
        http::header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    resp
}
