//! Getting checkpoints cosigned by witnesses (`--audit-witness URL=KEY`, repeatable): one
//! task per witness follows the newest signed checkpoint and submits it (C2SP
//! `tlog-witness` `add-checkpoint`) with the consistency proof from the size that witness
//! last cosigned. A 409 tells that size (a larger one than the log's is a rollback, which
//! fails readiness), a 422 a proof the witness refuses (a fork: also fails readiness); a
//! witness that is down, slow or answers garbage is retried with jittered backoff. Nothing
//! here is on a request's path. Cosignatures are kept beside the log
//! ([`super::cosigned`]); how long signed checkpoints have waited for a quorum is a metric and
//! part of `/readyz`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};

use super::checkpoint::{Latest, SignedCheckpoint};
use super::note::NoteVerifier;
use super::push::PushClient;
use super::tree::TreeView;
use super::witness_protocol::{self as protocol};

/// Longest one submission may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// First and longest wait between retries.
const BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));
/// Largest answer read from a witness.
const MAX_ANSWER: usize = 16 * 1024;

/// One witness, as configured.
#[derive(Debug, Clone)]
pub struct WitnessConfig {
    /// Its submission prefix (`add-checkpoint` is appended).
    pub url: http::Uri,
    /// Its cosignature public key.
    pub key: NoteVerifier,
}

impl WitnessConfig {
    /// Parses `URL=KEY`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (url, key) = text
            .split_once('=')
            .ok_or_else(|| format!("{text}: expected URL=PUBLIC_KEY"))?;
        let url: http::Uri = url
            .trim_end_matches('/')
            .parse()
            .map_err(|e| format!("{url}: not a URL: {e}"))?;
        if !matches!(url.scheme_str(), Some("http" | "https")) || url.query().is_some() {
            return Err(format!("{url}: an http(s) URL prefix without a query"));
        }
        let key = NoteVerifier::parse(key).map_err(|e| format!("{url}: {e}"))?;
        if !key.is_cosigner() {
            return Err(format!(
                "{url}: {key} is a log's key, not a witness's (type 0x04, from `graphgate witness keygen`)"
            ));
        }
        Ok(WitnessConfig { url, key })
    }

    /// The URL without credentials, for logs and `/readyz`.
    pub fn shown(&self) -> String {
        let authority = self.url.authority().map_or("", |a| {
            let a = a.as_str();
            a.rsplit_once('@').map_or(a, |(_, host)| host)
        });
        format!(
            "{}://{authority}{}",
            self.url.scheme_str().unwrap_or("http"),
            self.url.path().trim_end_matches('/')
        )
    }
}

/// Where one witness stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Nothing submitted yet.
    Pending,
    /// It cosigned.
    Ok,
    /// Could not be reached, timed out, or answered something unusable.
    Failing(String),
    /// It has cosigned a larger tree than the log holds: records were cut off.
    Rollback {
        /// What it cosigned.
        witnessed: u64,
        /// What the log holds.
        log: u64,
    },
    /// It refuses the consistency proof: the log is not the one it cosigned before.
    Inconsistent(String),
}

#[derive(Debug)]
struct WitnessState {
    shown: String,
    key: String,
    cosigned: Option<u64>,
    standing: Standing,
}

/// A cosigned checkpoint being assembled: the note and each witness's line.
#[derive(Debug, Clone)]
struct Cosigs {
    note: String,
    lines: BTreeMap<usize, String>,
    signed_at: u64,
}

struct Shared {
    quorum: usize,
    witnesses: Vec<Mutex<WitnessState>>,
    cosigned: Mutex<BTreeMap<u64, Cosigs>>,
    file: PathBuf,
    /// Held while `file` is written.
    storing: Mutex<()>,
    /// The newest checkpoint a quorum cosigned, once it is in `file` (size, signing time).
    stored_quorum: Mutex<Option<(u64, u64)>>,
    /// The newest signed checkpoint.
    latest: tokio::sync::watch::Receiver<Option<Arc<SignedCheckpoint>>>,
    /// The signed checkpoints no quorum has cosigned yet.
    waiting: Mutex<Waiting>,
}

/// Most uncosigned checkpoints remembered for the quorum's age (the oldest are kept: they
/// are the ones the age is measured from).
const MAX_WAITING: usize = 1024;

/// The signed checkpoints (size, signing time) seen that no quorum has cosigned yet, oldest
/// first: how long records have gone without a quorum vouching for them.
#[derive(Debug, Default)]
struct Waiting(std::collections::VecDeque<(u64, u64)>);

impl Waiting {
    /// Takes in the newest signed checkpoint `latest` (size, signing time) and the size a
    /// quorum covers, and returns the seconds since the oldest checkpoint still waiting was
    /// signed: 0 when every one is cosigned (an idle log is not a stale one).
    fn age(&mut self, latest: Option<(u64, u64)>, covered: u64, now: u64) -> u64 {
        if let Some((size, signed_at)) = latest {
            let newer = self.0.back().is_none_or(|&(last, _)| size > last);
            if newer && self.0.len() < MAX_WAITING {
                self.0.push_back((size, signed_at.min(now)));
            }
        }
        while self.0.front().is_some_and(|&(size, _)| size <= covered) {
            self.0.pop_front();
        }
        self.0.front().map_or(0, |&(_, at)| now.saturating_sub(at))
    }
}

/// The witnesses of a log; cheap to clone.
#[derive(Clone)]
pub struct Witnesses {
    shared: Arc<Shared>,
}

fn now_secs() -> u64 {
    crate::clock::utc_now().timestamp().max(0).unsigned_abs()
}

impl Witnesses {
    /// Starts one task per witness, following `latest` (the log at `log`, its tree beside
    /// it). Call within a Tokio runtime.
    pub fn spawn(
        configs: Vec<WitnessConfig>,
        quorum: usize,
        latest: &Latest,
        log: &Path,
        connect_to: &[crate::upstream::ConnectRule],
        extra_ca_pem: Option<&str>,
    ) -> Result<Witnesses, crate::upstream::UpstreamSetupError> {
        let client = super::push::client(connect_to, extra_ca_pem)?;
        let file = super::cosigned::path_for(log);
        let shared = Arc::new(Shared {
            quorum,
            witnesses: configs
                .iter()
                .map(|c| {
                    Mutex::new(WitnessState {
                        shown: c.shown(),
                        key: c.key.label(),
                        cosigned: None,
                        standing: Standing::Pending,
                    })
                })
                .collect(),
            cosigned: Mutex::new(BTreeMap::new()),
            file,
            storing: Mutex::new(()),
            stored_quorum: Mutex::new(None),
            latest: latest.subscribe(),
            waiting: Mutex::new(Waiting::default()),
        });
        let witnesses = Witnesses { shared };
        for (i, config) in configs.into_iter().enumerate() {
            let task = Task {
                index: i,
                config,
                client: client.clone(),
                tree: super::tree::path_for(log),
                shared: Arc::clone(&witnesses.shared),
            };
            tokio::spawn(task.run(latest.subscribe()));
        }
        let ticker = witnesses.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                crate::metrics::audit_witness_quorum_age(ticker.quorum_age());
            }
        });
        Ok(witnesses)
    }

    /// Seconds the oldest signed checkpoint that no quorum has cosigned has waited: 0 while
    /// every one is cosigned (or none is signed yet), so a log that is merely idle never
    /// looks stale.
    pub fn quorum_age(&self) -> u64 {
        let covered = self.newest_quorum().map_or(0, |(size, _)| size);
        let latest = self
            .shared
            .latest
            .borrow()
            .as_ref()
            .map(|cp| (cp.size, cp.signed_at));
        lock(&self.shared.waiting).age(latest, covered, now_secs())
    }

    /// The size and signing time of the newest checkpoint a quorum cosigned, as kept on
    /// disk (what `graphgate audit prove` finds).
    fn newest_quorum(&self) -> Option<(u64, u64)> {
        *lock(&self.shared.stored_quorum)
    }

    /// Whether no witness reports a rollback or an inconsistent log.
    pub fn is_ready(&self) -> bool {
        self.shared.witnesses.iter().all(|w| {
            !matches!(
                lock(w).standing,
                Standing::Rollback { .. } | Standing::Inconsistent(_)
            )
        })
    }

    /// The `/readyz` detail.
    pub fn detail(&self) -> serde_json::Value {
        let witnesses: Vec<serde_json::Value> = self
            .shared
            .witnesses
            .iter()
            .map(|w| {
                let w = lock(w);
                let status = match &w.standing {
                    Standing::Pending => "pending".to_owned(),
                    Standing::Ok => "ok".to_owned(),
                    Standing::Failing(e) => format!("failing: {e}"),
                    Standing::Rollback { witnessed, log } => format!(
                        "rollback: the witness has cosigned {witnessed} records but the log holds {log}"
                    ),
                    Standing::Inconsistent(e) => format!("inconsistent: {e}"),
                };
                serde_json::json!({"url": w.shown, "key": w.key, "cosigned_size": w.cosigned, "status": status})
            })
            .collect();
        let newest = self.newest_quorum();
        serde_json::json!({
            "ok": self.is_ready(),
            "quorum": self.shared.quorum,
            "newest_quorum_size": newest.map(|(s, _)| s),
            "quorum_age_seconds": self.quorum_age(),
            "witnesses": witnesses,
        })
    }

    /// Records where witness `i` stands. A rollback or an inconsistency stays until the
    /// witness cosigns again: a witness that goes quiet afterwards does not clear it.
    fn standing(&self, i: usize, standing: Standing) {
        if let Some(w) = self.shared.witnesses.get(i) {
            let mut w = lock(w);
            let sticky = matches!(
                w.standing,
                Standing::Rollback { .. } | Standing::Inconsistent(_)
            );
            if !sticky
                || matches!(
                    standing,
                    Standing::Ok | Standing::Rollback { .. } | Standing::Inconsistent(_)
                )
            {
                w.standing = standing;
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One witness's submitter.
struct Task {
    index: usize,
    config: WitnessConfig,
    client: PushClient,
    tree: PathBuf,
    shared: Arc<Shared>,
}

/// What came of one submission.
enum Outcome {
    Cosigned(String),
    /// The witness has cosigned this size last.
    Conflict(u64),
    Refused(u16, String),
    Inconsistent(String),
    Failed(String),
}

impl Task {
    async fn run(self, mut latest: tokio::sync::watch::Receiver<Option<Arc<SignedCheckpoint>>>) {
        let witnesses = Witnesses {
            shared: Arc::clone(&self.shared),
        };
        // The size this witness cosigned last (0 until it says otherwise).
        let mut old = 0u64;
        let mut backoff = BACKOFF.0;
        let mut done = 0u64;
        loop {
            let current = latest.borrow_and_update().clone();
            let Some(cp) = current.filter(|c| c.size > done) else {
                if latest.changed().await.is_err() {
                    return;
                }
                continue;
            };
            let mut outcome = self.submit(&cp, old).await;
            if let Outcome::Conflict(size) = outcome
                && size <= cp.size
            {
                // Its view is older: once more, from the size it has.
                crate::metrics::audit_witness_submission("conflict");
                old = size;
                outcome = self.submit(&cp, old).await;
            }
            let retry = match outcome {
                Outcome::Cosigned(line) => {
                    crate::metrics::audit_witness_submission("ok");
                    old = cp.size;
                    done = cp.size;
                    backoff = BACKOFF.0;
                    self.cosigned(&cp, line);
                    {
                        let mut w = lock(&self.shared.witnesses[self.index]);
                        w.cosigned = Some(cp.size);
                    }
                    witnesses.standing(self.index, Standing::Ok);
                    false
                }
                Outcome::Conflict(size) => {
                    crate::metrics::audit_witness_submission("rollback");
                    tracing::error!(witness = %self.config.shown(), witnessed = size, log = cp.size, "ROLLBACK: a witness has cosigned a larger audit log than this one holds: records were cut off; the gateway is not ready");
                    witnesses.standing(
                        self.index,
                        Standing::Rollback {
                            witnessed: size,
                            log: cp.size,
                        },
                    );
                    true
                }
                Outcome::Inconsistent(e) => {
                    crate::metrics::audit_witness_submission("inconsistent");
                    tracing::error!(witness = %self.config.shown(), error = %e, "a witness refuses the consistency proof: this log is not the one it cosigned before; the gateway is not ready");
                    witnesses.standing(self.index, Standing::Inconsistent(e));
                    true
                }
                Outcome::Refused(status, e) => {
                    crate::metrics::audit_witness_submission("refused");
                    tracing::warn!(witness = %self.config.shown(), status, error = %e, "a witness refused the checkpoint");
                    witnesses.standing(self.index, Standing::Failing(format!("{status}: {e}")));
                    true
                }
                Outcome::Failed(e) => {
                    crate::metrics::audit_witness_submission("error");
                    tracing::warn!(witness = %self.config.shown(), error = %e, retry_in_ms = backoff.as_millis() as u64, "could not get a checkpoint cosigned; retrying");
                    witnesses.standing(self.index, Standing::Failing(e));
                    true
                }
            };
            if retry {
                tokio::time::sleep(jitter(backoff)).await;
                backoff = (backoff * 2).min(BACKOFF.1);
            }
        }
    }

    async fn submit(&self, cp: &SignedCheckpoint, old: u64) -> Outcome {
        let (tree, size) = (self.tree.clone(), cp.size);
        let proof = tokio::task::spawn_blocking(move || {
            TreeView::open(&tree, size).and_then(|v| v.consistency(old.min(size), size))
        })
        .await;
        let proof = match proof {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return Outcome::Failed(format!("no consistency proof from {old}: {e}")),
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        let body = protocol::request_body(old.min(cp.size), &proof, &cp.note);
        let uri = format!(
            "{}/add-checkpoint",
            self.config.url.to_string().trim_end_matches('/')
        );
        let req = match http::Request::post(uri)
            .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from(body)))
        {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        let answer = async {
            let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, String::from_utf8_lossy(&body).into_owned()))
        };
        let (status, body) = match tokio::time::timeout(TIMEOUT, answer).await {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => return Outcome::Failed(e),
            Err(_) => return Outcome::Failed(format!("no answer within {TIMEOUT:?}")),
        };
        match status {
            200 => self.check_cosignature(cp, &body),
            409 => match protocol::parse_size(&body) {
                Some(size) => Outcome::Conflict(size),
                None => Outcome::Failed("a 409 without a size".into()),
            },
            422 => Outcome::Inconsistent(body.trim().chars().take(200).collect()),
            s => Outcome::Refused(s, body.trim().chars().take(200).collect()),
        }
    }

    /// The witness's cosignature line in `body`, once it verifies on the checkpoint.
    fn check_cosignature(&self, cp: &SignedCheckpoint, body: &str) -> Outcome {
        let prefix = format!("\u{2014} {} ", self.config.key.name());
        let Some(line) = body.split_inclusive('\n').find(|l| l.starts_with(&prefix)) else {
            return Outcome::Failed("the answer holds no cosignature by the witness's key".into());
        };
        match self.config.key.cosigned_at(&format!("{}{line}", cp.note)) {
            Ok(_) => Outcome::Cosigned(line.to_owned()),
            Err(e) => Outcome::Failed(format!("a cosignature that does not verify (forged?): {e}")),
        }
    }

    /// Keeps the cosignature beside the log. The file is written by one writer at a time,
    /// each writing the cosignatures as they are then (a writer that started earlier never
    /// puts back an older set), and a quorum counts once it is on disk.
    fn cosigned(&self, cp: &SignedCheckpoint, line: String) {
        {
            let mut all = lock(&self.shared.cosigned);
            let entry = all.entry(cp.size).or_insert_with(|| Cosigs {
                note: cp.note.clone(),
                lines: BTreeMap::new(),
                signed_at: cp.signed_at,
            });
            entry.lines.insert(self.index, line);
            while all.len() > super::cosigned::KEEP {
                all.pop_first();
            }
        }
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            let _writer = lock(&shared.storing);
            let (notes, quorum) = {
                let all = lock(&shared.cosigned);
                let notes: Vec<String> = all
                    .values()
                    .map(|c| {
                        format!(
                            "{}{}",
                            c.note,
                            c.lines.values().cloned().collect::<String>()
                        )
                    })
                    .collect();
                (notes, newest_quorum(&all, shared.quorum))
            };
            match super::cosigned::store(&shared.file, &notes) {
                Ok(()) => *lock(&shared.stored_quorum) = quorum,
                Err(e) => {
                    tracing::error!(file = %shared.file.display(), error = %e, "could not keep the witnesses' cosignatures")
                }
            }
        });
    }
}

/// The size and signing time of the newest checkpoint in `all` that `quorum` witnesses
/// cosigned.
fn newest_quorum(all: &BTreeMap<u64, Cosigs>, quorum: usize) -> Option<(u64, u64)> {
    all.iter()
        .rev()
        .find(|(_, c)| c.lines.len() >= quorum)
        .map(|(size, c)| (*size, c.signed_at))
}

/// `base` ± up to a half, at random.
fn jitter(base: Duration) -> Duration {
    let mut b = [0u8; 2];
    let r = match getrandom::fill(&mut b) {
        Ok(()) => u16::from_be_bytes(b),
        Err(_) => 0,
    };
    let ms = base.as_millis() as u64;
    Duration::from_millis(ms / 2 + (ms * u64::from(r)) / u64::from(u16::MAX))
}

#[cfg(test)]
mod tests {
    use super::Waiting;

    #[test]
    fn the_quorum_age_counts_from_the_oldest_checkpoint_no_quorum_covers() {
        let mut w = Waiting::default();
        assert_eq!(w.age(None, 0, 100), 0, "nothing signed yet");
        assert_eq!(w.age(Some((10, 100)), 0, 105), 5);
        // Newer checkpoints while the witnesses lag: still from the oldest waiting.
        assert_eq!(w.age(Some((20, 110)), 0, 115), 15);
        // The first is cosigned: from the second.
        assert_eq!(w.age(Some((30, 120)), 10, 125), 15);
        // All cosigned: 0, and stays 0 while the log is idle.
        assert_eq!(w.age(Some((30, 120)), 30, 130), 0);
        assert_eq!(w.age(Some((30, 120)), 30, 5000), 0);
        // A record after an idle hour: counted from its checkpoint, not the last cosigned.
        assert_eq!(w.age(Some((31, 5000)), 30, 5002), 2);
    }
}
