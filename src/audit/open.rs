//! Opening the audit log `graphgate serve` was configured with ([`AuditSettings`], typed;
//! the flags are the binary's): checked against its anchor and refused if evidence of its
//! history is missing ([`super::launder`]), or set aside on purpose for a new tree;
//! then checked against what its witnesses cosigned, and their tasks started
//! ([`AuditSettings::witness`]). The `start` record is not written here: `serve` writes it
//! once every start-up check has passed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::checkpoints::checkpoint::{CheckpointConfig, Latest};
use super::checkpoints::note::NoteSigner;
use super::checkpoints::push::{self, PushQueue, PushTarget};
use super::launder;
use super::witnessing::witness::{WitnessConfig, Witnesses};
use super::witnessing::witness_start;
use super::{Audit, AuditConfig, Entry, Fingerprinter, Kind};
use crate::upstream::ConnectRule;

/// Where the audit log's HMAC key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HmacKey {
    /// This file (it must exist, private to graphgate's user).
    File(PathBuf),
    /// `hmac.key` beside the log, created if missing (`serve --emulator` only).
    BesideLog,
}

/// Signed checkpoints of the log.
#[derive(Debug, Clone)]
pub struct CheckpointSettings {
    /// The Ed25519 signing key (`graphgate audit keygen`).
    pub signing_key_file: PathBuf,
    /// A checkpoint at least every this many records.
    pub every_records: u64,
    /// A checkpoint at least this often while records are written.
    pub interval: Duration,
    /// Where every signed checkpoint is POSTed, if anywhere (user info in it is sent as
    /// HTTP Basic, never logged).
    pub push_url: Option<http::Uri>,
    /// A bearer token file sent with every push (re-read for each).
    pub push_token_file: Option<PathBuf>,
    /// Witnesses that cosign the checkpoints (`--audit-witness`), if any.
    pub witnesses: Vec<WitnessConfig>,
    /// How many of them must cosign a checkpoint for it to count as witnessed.
    pub witness_quorum: usize,
}

/// An audit log, as `serve` is configured to keep it.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// The log file.
    pub log: PathBuf,
    /// Its HMAC key.
    pub hmac_key: HmacKey,
    /// Start a new tree on purpose (`--audit-new-tree`): the log's files are moved aside
    /// first, and the new log's first record says so.
    pub new_tree: bool,
    /// Rotation, retention and sampling (`checkpoints` is filled from [`Self::checkpoints`]).
    pub config: AuditConfig,
    /// Signed checkpoints, if a signing key is given.
    pub checkpoints: Option<CheckpointSettings>,
}

/// The audit log could not be set up; the gateway must not start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Neither a log nor an explicit `none`.
    #[error(
        "no audit log configured: set --audit-log PATH (or GRAPHGATE_AUDIT_LOG); graphgate does not run privileged calls unaudited (use --audit-log none only for benchmarks)"
    )]
    NotConfigured,
    /// No key for fingerprints.
    #[error(
        "no audit HMAC key: set --audit-hmac-key-file FILE (or GRAPHGATE_AUDIT_HMAC_KEY_FILE); {}",
        super::records::fingerprint::KEY_RECIPE
    )]
    NoKey,
    /// The key file is unusable.
    #[error(transparent)]
    Key(#[from] super::records::fingerprint::KeyError),
    /// The checkpoint signing key is unusable.
    #[error("audit signing key {path}: {reason}")]
    SigningKey {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The checkpoint push cannot be set up.
    #[error("--audit-checkpoint-url: {0}")]
    Push(String),
    /// The witnesses cannot be set up, or one has cosigned more than the log holds.
    #[error("{0}")]
    Witness(String),
    /// The log cannot be opened or written.
    #[error("audit log {path}: {reason}")]
    Log {
        /// The log.
        path: String,
        /// Why.
        reason: String,
    },
}

/// The default audit log of `serve --emulator`.
pub fn emulator_default_log() -> PathBuf {
    std::env::temp_dir()
        .join("graphgate-audit")
        .join("emulator.jsonl")
}

impl AuditSettings {
    /// The HMAC key file, wherever it comes from.
    pub fn hmac_key_path(&self) -> PathBuf {
        match &self.hmac_key {
            HmacKey::File(path) => path.clone(),
            HmacKey::BesideLog => beside(&self.log).join("hmac.key"),
        }
    }

    /// Checks what opening the log needs without writing anything (`serve --check-config`):
    /// the key files are usable, the log's directory exists, and the log is not one a start
    /// would refuse for missing evidence (unless a new tree is asked for). What witnesses
    /// cosigned is not asked: nothing is contacted.
    pub fn check(&self) -> Vec<SetupError> {
        let mut problems = Vec::new();
        let key = match &self.hmac_key {
            HmacKey::File(file) => Fingerprinter::from_file(file)
                .map_err(|e| problems.push(e.into()))
                .ok(),
            // Made at the first start: none yet means no log to continue either.
            HmacKey::BesideLog => Fingerprinter::from_file(&self.hmac_key_path()).ok(),
        };
        if let Some(key) = key.filter(|_| !self.new_tree)
            && let Err(e) = launder::check(&self.log, &key, self.checkpoints.is_some())
        {
            problems.push(SetupError::Log {
                path: self.log.display().to_string(),
                reason: e.to_string(),
            });
        }
        if let Some(c) = &self.checkpoints {
            if let Err(e) = load_signer(&c.signing_key_file) {
                problems.push(e);
            }
            if let Some(target) = c.push_target(&[])
                && let Err(e) = push::check(&target)
            {
                problems.push(SetupError::Push(e.to_string()));
            }
        }
        let dir = beside(&self.log);
        if self.hmac_key != HmacKey::BesideLog && !dir.is_dir() {
            problems.push(SetupError::Log {
                path: self.log.display().to_string(),
                reason: format!("its directory {} does not exist", dir.display()),
            });
        }
        problems
    }

    /// Opens the log, checked against its anchor and refused if evidence is missing (with
    /// `new_tree`, its files are first moved aside and the new log's first record says so),
    /// and starts the checkpoint push, if any, through `connect_to` and trusting
    /// `extra_ca_pem` besides the public roots, as every outbound client. Then
    /// [`Self::witness`]; the caller writes the `start` record ([`Audit::write_start`]) once
    /// every other check has passed.
    pub async fn open(
        &self,
        connect_to: &[ConnectRule],
        extra_ca_pem: Option<&str>,
    ) -> Result<Audit, SetupError> {
        let log_err = |reason: String| SetupError::Log {
            path: self.log.display().to_string(),
            reason,
        };
        let fingerprinter = match &self.hmac_key {
            HmacKey::File(file) => Fingerprinter::from_file(file)?,
            HmacKey::BesideLog => {
                let dir = beside(&self.log);
                std::fs::create_dir_all(&dir).map_err(|e| log_err(e.to_string()))?;
                let key = dir.join("hmac.key");
                let (fp, created) = Fingerprinter::from_file_or_create(&key)?;
                let verb = if created { "generated" } else { "using" };
                eprintln!("audit HMAC key: {verb} {}", key.display());
                fp
            }
        };
        let mut config = self.config.clone();
        config.checkpoints = self.checkpoint_config(connect_to, extra_ca_pem)?;
        let push = config.checkpoints.as_ref().and_then(|c| c.push.clone());
        let set_aside = match self.new_tree {
            true => Some(launder::set_aside(&self.log).map_err(|e| log_err(e.to_string()))?),
            false => None,
        };
        let audit = Audit::open_with(&self.log, &config, fingerprinter)
            .map_err(|e| log_err(e.to_string()))?;
        // What opening repaired (a torn checkpoint cut back) is said in the log itself.
        audit
            .write_notices()
            .await
            .map_err(|e| log_err(e.to_string()))?;
        if let Some((folder, moved)) = &set_aside {
            let note = format!(
                "a new audit tree was started on purpose (--audit-new-tree): the previous log's files ({}) were moved to {}",
                crate::words::count(*moved, "file"),
                folder.display()
            );
            tracing::warn!(folder = %folder.display(), "{note}");
            let entry = Entry {
                kind: Some(Kind::Start),
                time: super::records::record::now_rfc3339(),
                audit_id: uuid::Uuid::new_v4().to_string(),
                note: Some(note),
                ..Entry::default()
            };
            audit
                .write_durable(entry)
                .await
                .map_err(|e| log_err(e.to_string()))?;
        }
        Ok(audit.with_push(push))
    }

    /// With witnesses configured: refuses a log below what a witness (or the cosigned
    /// checkpoints kept beside it) vouch for, unless a new tree was started on purpose, and
    /// starts one task per witness submitting the log's checkpoints (through `connect_to`,
    /// trusting `extra_ca_pem` besides the public roots). Nothing here waits on a witness
    /// once started; an unreachable witness does not stop the start.
    pub async fn witness(
        &self,
        audit: Audit,
        connect_to: &[ConnectRule],
        extra_ca_pem: Option<&str>,
    ) -> Result<Audit, SetupError> {
        let Some(c) = self
            .checkpoints
            .as_ref()
            .filter(|c| !c.witnesses.is_empty())
        else {
            return Ok(audit);
        };
        let Some(latest) = audit.latest_checkpoint().cloned() else {
            return Ok(audit);
        };
        let signer = load_signer(&c.signing_key_file)?;
        if !self.new_tree
            && let Err(e) = witness_start::check(
                &audit,
                &self.log,
                &signer.verifier(),
                &c.witnesses,
                connect_to,
                extra_ca_pem,
            )
            .await
        {
            audit.close().await;
            return Err(SetupError::Witness(e));
        }
        let witnesses = Witnesses::spawn(
            c.witnesses.clone(),
            c.witness_quorum,
            &latest,
            &self.log,
            connect_to,
            extra_ca_pem,
        )
        .map_err(|e| SetupError::Witness(e.to_string()))?;
        Ok(audit.with_witnesses(witnesses))
    }

    /// The checkpoint configuration (and the push task, started).
    fn checkpoint_config(
        &self,
        connect_to: &[ConnectRule],
        extra_ca_pem: Option<&str>,
    ) -> Result<Option<CheckpointConfig>, SetupError> {
        let Some(c) = &self.checkpoints else {
            return Ok(None);
        };
        let signer = load_signer(&c.signing_key_file)?;
        tracing::info!(public_key = %signer.verifier(), "audit checkpoints are signed; verify with this public key");
        let push = match c.push_target(connect_to) {
            Some(target) => {
                let queue = PushQueue::default();
                push::spawn(queue.clone(), &target, extra_ca_pem)
                    .map_err(|e| SetupError::Push(e.to_string()))?;
                let url = push::shown(&target.url);
                tracing::info!(%url, "audit checkpoints are pushed off the host");
                Some(queue)
            }
            None => None,
        };
        Ok(Some(CheckpointConfig {
            signer: Arc::new(signer),
            every_records: c.every_records,
            interval: c.interval,
            push,
            latest: Latest::default(),
        }))
    }
}

impl CheckpointSettings {
    /// Where checkpoints are pushed, if anywhere.
    fn push_target(&self, connect_to: &[ConnectRule]) -> Option<PushTarget> {
        Some(PushTarget {
            url: self.push_url.clone()?,
            token_file: self.push_token_file.clone(),
            connect_to: connect_to.to_vec(),
        })
    }
}

/// The directory a file is in (`.` for a bare name).
fn beside(file: &Path) -> PathBuf {
    file.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from)
}

/// Reads a signing key written by `graphgate audit keygen`, refusing a file that its group
/// or others may read.
pub fn load_signer(path: &Path) -> Result<NoteSigner, SetupError> {
    let fail = |reason: String| SetupError::SigningKey {
        path: path.display().to_string(),
        reason,
    };
    super::records::fingerprint::check_private(path).map_err(fail)?;
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    NoteSigner::parse(&text)
        .map_err(|e| fail(format!("{e} (make one with `graphgate audit keygen`)")))
}
