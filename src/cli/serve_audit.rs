//! The audit flags of `graphgate serve`, and the audit settings they give.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use graphgate::audit::checkpoint;
use graphgate::audit::open::{AuditSettings, CheckpointSettings, HmacKey, SetupError};
use graphgate::audit::reconcile::{self, ReconcileConfig};
use graphgate::audit::sampler::SamplingLimits;
use graphgate::audit::sink::FileOptions;
use graphgate::audit::{AuditConfig, DEFAULT_MAX_FILE_BYTES};

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
    #[arg(long, env = "GRAPHGATE_AUDIT_MAX_FILE_BYTES", default_value_t = DEFAULT_MAX_FILE_BYTES)]
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
        // Its user info or query may hold a credential: `--help` must not print it.
        hide_env_values = true,
        requires = "audit_signing_key_file"
    )]
    pub audit_checkpoint_url: Option<http::Uri>,
    /// File holding a bearer token sent with every checkpoint push (private to graphgate's
    /// user; re-read for every push, so it can be rotated in place).
    #[arg(
        long,
        env = "GRAPHGATE_AUDIT_CHECKPOINT_TOKEN_FILE",
        requires = "audit_checkpoint_url"
    )]
    pub audit_checkpoint_token_file: Option<PathBuf>,
    /// Export audit records as OTLP log records when OTLP export is configured
    /// (`OTEL_EXPORTER_OTLP_ENDPOINT`); `false` keeps them local.
    #[arg(long, env = "GRAPHGATE_AUDIT_SHIP", default_value_t = true, action = clap::ArgAction::Set)]
    pub audit_ship: bool,
    /// Follow up each device action Graph accepts (its deviceActionResults) and record its
    /// final state as a `completion` record; needs DeviceManagementManagedDevices.Read.All.
    #[arg(long, env = "GRAPHGATE_RECONCILE_OUTCOMES")]
    pub reconcile_outcomes: bool,
    /// How long an accepted action has to reach a final state before it counts as overdue.
    #[arg(long, env = "GRAPHGATE_RECONCILE_DEADLINE_SECS", default_value_t = reconcile::DEFAULT_DEADLINE.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub reconcile_deadline_secs: u64,
}

impl ServeAuditArgs {
    /// The reconciliation these flags ask for.
    pub fn reconcile(&self) -> Option<ReconcileConfig> {
        self.reconcile_outcomes.then(|| ReconcileConfig {
            deadline: Duration::from_secs(self.reconcile_deadline_secs),
        })
    }

    /// The audit log these flags describe (`None`: `--audit-log none`); with `emulator`, a
    /// log and key beside it by default. `shipped`: records are shipped off the host, so
    /// retention keeps what is not shipped yet.
    pub fn settings(
        &self,
        emulator: bool,
        shipped: bool,
    ) -> Result<Option<AuditSettings>, SetupError> {
        let log = match (self.audit_log.as_deref(), emulator) {
            (Some("none"), _) => return Ok(None),
            (Some(p), _) => PathBuf::from(p),
            (None, true) => graphgate::audit::open::emulator_default_log(),
            (None, false) => return Err(SetupError::NotConfigured),
        };
        let hmac_key = match (&self.audit_hmac_key_file, emulator) {
            (Some(file), _) => HmacKey::File(file.clone()),
            (None, true) => HmacKey::BesideLog,
            (None, false) => return Err(SetupError::NoKey),
        };
        let checkpoints =
            self.audit_signing_key_file
                .clone()
                .map(|signing_key_file| CheckpointSettings {
                    signing_key_file,
                    every_records: self.audit_checkpoint_every_records,
                    interval: Duration::from_secs(self.audit_checkpoint_interval_secs),
                    push_url: self.audit_checkpoint_url.clone(),
                    push_token_file: self.audit_checkpoint_token_file.clone(),
                });
        Ok(Some(AuditSettings {
            log,
            hmac_key,
            config: AuditConfig {
                files: FileOptions {
                    max_file_bytes: self.audit_max_file_bytes,
                    retain_files: self.audit_retain_files,
                    keep_unshipped: self.audit_ship && shipped,
                },
                sampling: SamplingLimits {
                    refusals_per_sec: self.audit_refusals_per_sec,
                    auth_failures_per_sec: self.audit_auth_failures_per_sec,
                },
                checkpoints: None,
            },
            checkpoints,
        }))
    }
}
