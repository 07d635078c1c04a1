//! The audit flags of `graphgate serve` and opening the log they describe. The `start`
//! record is not written here: `serve` writes it once every start-up check has passed.

use std::path::PathBuf;

use clap::Args;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::checkpoint::{self, CheckpointConfig};
use super::note::NoteSigner;
use super::push::PushQueue;
use super::sampler::SamplingLimits;
use super::sink::FileOptions;
use super::{Audit, AuditConfig, Fingerprinter};

/// The audit flags of `graphgate serve`.
#[derive(Debug, Args)]
pub struct ServeAuditArgs {
    /// Audit log (JSON Lines, hash-chained); `none` disables auditing (benchmarks only).
    /// Required unless --emulator [with --emulator: $TMPDIR/graphgate-audit/emulator.jsonl].
    #[arg(long, env = "GRAPHGATE_AUDIT_LOG")]
    pub audit_log: Option<String>,
    /// File holding the HMAC key (32 random bytes: 64 hex characters, base64 or binary),
    /// private to graphgate's user (mode 0600), for fingerprints of redacted values and the
    /// log's anchor. Required with an audit log, except with --emulator (then created next
    /// to the log).
    #[arg(long, env = "GRAPHGATE_AUDIT_HMAC_KEY_FILE")]
    pub audit_hmac_key_file: Option<PathBuf>,
    /// Rotate the audit log when it would grow past this size.
    #[arg(long, env = "GRAPHGATE_AUDIT_MAX_FILE_BYTES", default_value_t = super::DEFAULT_MAX_FILE_BYTES)]
    pub audit_max_file_bytes: u64,
    /// Keep at most this many rotated audit files, removing the oldest (ship them off-host
    /// first) [default: keep all].
    #[arg(long, env = "GRAPHGATE_AUDIT_RETAIN_FILES")]
    pub audit_retain_files: Option<usize>,
    /// Refusal records (denied, invalid, rate limited) written per caller per second; the
    /// rest are counted (0: record every one).
    #[arg(long, env = "GRAPHGATE_AUDIT_REFUSALS_PER_SEC", default_value_t = SamplingLimits::default().refusals_per_sec)]
    pub audit_refusals_per_sec: u32,
    /// Failed-authentication records written per source address per second; the rest are
    /// counted (0: record every one).
    #[arg(long, env = "GRAPHGATE_AUDIT_AUTH_FAILURES_PER_SEC", default_value_t = SamplingLimits::default().auth_failures_per_sec)]
    pub audit_auth_failures_per_sec: u32,
    /// Ed25519 signing key for the log's checkpoints (`graphgate audit keygen`), private to
    /// graphgate's user (mode 0600) [default: no checkpoints].
    #[arg(long, env = "GRAPHGATE_AUDIT_SIGNING_KEY_FILE")]
    pub audit_signing_key_file: Option<PathBuf>,
    /// Sign a checkpoint at least every this many records (with a signing key).
    #[arg(long, env = "GRAPHGATE_AUDIT_CHECKPOINT_EVERY_RECORDS", default_value_t = checkpoint::DEFAULT_EVERY_RECORDS, value_parser = clap::value_parser!(u64).range(1..))]
    pub audit_checkpoint_every_records: u64,
    /// Sign a checkpoint at least this often while records are written (with a signing key).
    #[arg(long, env = "GRAPHGATE_AUDIT_CHECKPOINT_INTERVAL_SECS", default_value_t = checkpoint::DEFAULT_INTERVAL.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub audit_checkpoint_interval_secs: u64,
    /// POST every signed checkpoint (the note text) to this http(s) URL, so a copy lives off
    /// the host; failures are retried and counted, never block requests.
    #[arg(
        long,
        env = "GRAPHGATE_AUDIT_CHECKPOINT_URL",
        requires = "audit_signing_key_file"
    )]
    pub audit_checkpoint_url: Option<http::Uri>,
    /// Export audit records as OTLP log records when OTLP export is configured
    /// (`OTEL_EXPORTER_OTLP_ENDPOINT`); `false` keeps them local.
    #[arg(long, env = "GRAPHGATE_AUDIT_SHIP", default_value_t = true, action = clap::ArgAction::Set)]
    pub audit_ship: bool,
    /// Follow up each device action Graph accepts (its deviceActionResults) and record its
    /// final state as a `completion` record; needs DeviceManagementManagedDevices.Read.All.
    #[arg(long, env = "GRAPHGATE_RECONCILE_OUTCOMES")]
    pub reconcile_outcomes: bool,
    /// How long an accepted action has to reach a final state before it counts as overdue.
    #[arg(long, env = "GRAPHGATE_RECONCILE_DEADLINE_SECS", default_value_t = super::reconcile::DEFAULT_DEADLINE.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub reconcile_deadline_secs: u64,
    /// Witnesses, and starting a new tree on purpose.
    #[command(flatten)]
    pub witness: super::witness_args::WitnessArgs,
}

impl ServeAuditArgs {
    /// The reconciliation these flags ask for.
    pub fn reconcile(&self) -> Option<super::reconcile::ReconcileConfig> {
        self.reconcile_outcomes
            .then(|| super::reconcile::ReconcileConfig {
                deadline: Duration::from_secs(self.reconcile_deadline_secs),
            })
    }

    /// The configuration these flags give.
    pub fn config(&self) -> AuditConfig {
        AuditConfig {
            files: FileOptions {
                max_file_bytes: self.audit_max_file_bytes,
                retain_files: self.audit_retain_files,
                keep_unshipped: self.audit_ship && super::ship::otlp_configured(),
            },
            sampling: SamplingLimits {
                refusals_per_sec: self.audit_refusals_per_sec,
                auth_failures_per_sec: self.audit_auth_failures_per_sec,
            },
            checkpoints: None,
        }
    }
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

/// Opens the audit log `serve` was asked for, checked against its anchor. The caller
/// writes the `start` record ([`Audit::write_start`]) once every other check has passed.
pub async fn open_for_serve(
    args: &ServeAuditArgs,
    emulator: bool,
    extra_ca_pem: Option<&str>,
) -> Result<Audit, SetupError> {
    let path = match (args.audit_log.as_deref(), emulator) {
        (Some("none"), _) => {
            tracing::warn!(
                "auditing is DISABLED (--audit-log none): privileged calls leave no audit record"
            );
            return Ok(Audit::disabled());
        }
        (Some(p), _) => PathBuf::from(p),
        (None, true) => emulator_default_log(),
        (None, false) => return Err(SetupError::NotConfigured),
    };
    let log_err = |reason: String| SetupError::Log {
        path: path.display().to_string(),
        reason,
    };
    let fingerprinter = match (&args.audit_hmac_key_file, emulator) {
        (Some(file), _) => Fingerprinter::from_file(file)?,
        (None, true) => {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            let dir = dir.map_or_else(|| PathBuf::from("."), PathBuf::from);
            std::fs::create_dir_all(&dir).map_err(|e| log_err(e.to_string()))?;
            let key = dir.join("hmac.key");
            let (fp, created) = Fingerprinter::from_file_or_create(&key)?;
            let verb = if created { "generated" } else { "using" };
            eprintln!("audit HMAC key: {verb} {}", key.display());
            fp
        }
        (None, false) => return Err(SetupError::NoKey),
    };
    let (witnesses, quorum) = args.witness.witnesses().map_err(SetupError::Witness)?;
    let mut config = args.config();
    config.checkpoints = checkpoints(args, extra_ca_pem)?;
    let push = config.checkpoints.as_ref().and_then(|c| c.push.clone());
    let set_aside = match args.witness.audit_new_tree {
        true => Some(super::launder::set_aside(&path).map_err(|e| log_err(e.to_string()))?),
        false => None,
    };
    let audit =
        Audit::open_with(&path, &config, fingerprinter).map_err(|e| log_err(e.to_string()))?;
    if let Some((folder, moved)) = &set_aside {
        let note = format!(
            "a new audit tree was started on purpose (--audit-new-tree): the previous log's {moved} file(s) were moved to {}",
            folder.display()
        );
        tracing::warn!(folder = %folder.display(), "{note}");
        let entry = super::Entry {
            kind: Some(super::Kind::Start),
            time: super::record::now_rfc3339(),
            audit_id: uuid::Uuid::new_v4().to_string(),
            note: Some(note),
            ..super::Entry::default()
        };
        audit
            .write_durable(entry)
            .await
            .map_err(|e| log_err(e.to_string()))?;
    }
    let audit = audit.with_push(push);
    let Some(checkpoints) = config
        .checkpoints
        .as_ref()
        .filter(|_| !witnesses.is_empty())
    else {
        return Ok(audit);
    };
    if set_aside.is_none()
        && let Err(e) =
            super::witness_start::check(&audit, &path, checkpoints, &witnesses, extra_ca_pem).await
    {
        audit.close().await;
        return Err(SetupError::Witness(e));
    }
    let handle = super::witness::Witnesses::spawn(
        witnesses,
        quorum,
        &checkpoints.latest,
        &path,
        extra_ca_pem,
    )
    .map_err(|e| SetupError::Witness(e.to_string()))?;
    Ok(audit.with_witnesses(handle))
}

/// The checkpoint configuration the flags ask for (and the push task, started).
fn checkpoints(
    args: &ServeAuditArgs,
    extra_ca_pem: Option<&str>,
) -> Result<Option<CheckpointConfig>, SetupError> {
    let Some(file) = &args.audit_signing_key_file else {
        return Ok(None);
    };
    let signer = load_signer(file)?;
    tracing::info!(public_key = %signer.verifier(), "audit checkpoints are signed; verify with this public key");
    let push = match &args.audit_checkpoint_url {
        Some(url) => {
            let queue = PushQueue::default();
            super::push::spawn(queue.clone(), url.clone(), extra_ca_pem)
                .map_err(|e| SetupError::Push(e.to_string()))?;
            Some(queue)
        }
        None => None,
    };
    Ok(Some(CheckpointConfig {
        signer: Arc::new(signer),
        every_records: args.audit_checkpoint_every_records,
        interval: Duration::from_secs(args.audit_checkpoint_interval_secs),
        push,
        latest: checkpoint::Latest::default(),
    }))
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
