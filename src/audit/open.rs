//! Opening the audit log `graphgate serve` was configured with ([`AuditSettings`], typed;
//! the flags are the binary's), checked against its anchor. The `start` record is not
//! written here: `serve` writes it once every start-up check has passed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::checkpoint::CheckpointConfig;
use super::note::NoteSigner;
use super::push::{PushQueue, PushTarget};
use super::{Audit, AuditConfig, Fingerprinter};
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

/// An audit log, as `serve` is configured to keep it.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// The log file.
    pub log: PathBuf,
    /// Its HMAC key.
    pub hmac_key: HmacKey,
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
        super::fingerprint::KEY_RECIPE
    )]
    NoKey,
    /// The key file is unusable.
    #[error(transparent)]
    Key(#[from] super::fingerprint::KeyError),
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
    /// the key files are usable and the log's directory exists.
    pub fn check(&self) -> Vec<SetupError> {
        let mut problems = Vec::new();
        if let HmacKey::File(file) = &self.hmac_key
            && let Err(e) = Fingerprinter::from_file(file)
        {
            problems.push(e.into());
        }
        if let Some(c) = &self.checkpoints {
            if let Err(e) = load_signer(&c.signing_key_file) {
                problems.push(e);
            }
            if let Some(target) = c.push_target(&[])
                && let Err(e) = super::push::check(&target)
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

    /// Opens the log, checked against its anchor (and starts the checkpoint push, if any,
    /// through `connect_to` and trusting `extra_ca_pem` besides the public roots, as every
    /// outbound client). The caller writes the `start` record ([`Audit::write_start`]) once
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
        let audit = Audit::open_with(&self.log, &config, fingerprinter)
            .map_err(|e| log_err(e.to_string()))?;
        Ok(audit.with_push(push))
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
                super::push::spawn(queue.clone(), &target, extra_ca_pem)
                    .map_err(|e| SetupError::Push(e.to_string()))?;
                let url = super::push::shown(&target.url);
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
    super::fingerprint::check_private(path).map_err(fail)?;
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    NoteSigner::parse(&text)
        .map_err(|e| fail(format!("{e} (make one with `graphgate audit keygen`)")))
}
