//! The audit flags of `graphgate serve` and opening the log they describe. The `start`
//! record is not written here: `serve` writes it once every start-up check has passed.

use std::path::PathBuf;

use clap::Args;

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
}

impl ServeAuditArgs {
    /// The configuration these flags give.
    pub fn config(&self) -> AuditConfig {
        AuditConfig {
            files: FileOptions {
                max_file_bytes: self.audit_max_file_bytes,
                retain_files: self.audit_retain_files,
            },
            sampling: SamplingLimits {
                refusals_per_sec: self.audit_refusals_per_sec,
                auth_failures_per_sec: self.audit_auth_failures_per_sec,
            },
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
pub async fn open_for_serve(args: &ServeAuditArgs, emulator: bool) -> Result<Audit, SetupError> {
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
    Audit::open_with(&path, &args.config(), fingerprinter).map_err(|e| log_err(e.to_string()))
}
