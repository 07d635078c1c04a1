//! The audit flags of `graphgate serve` (witnesses and a new tree on purpose among them), and
//! the audit settings they give.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use graphgate::app::Problems;
use graphgate::audit::checkpoints::checkpoint;
use graphgate::audit::open::{AuditSettings, CheckpointSettings, HmacKey, SetupError};
use graphgate::audit::reconcile::{self, ReconcileConfig};
use graphgate::audit::records::sampler::SamplingLimits;
use graphgate::audit::store::sink::FileOptions;
use graphgate::audit::witnessing::witness::WitnessConfig;
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
    /// Witnesses, and starting a new tree on purpose.
    #[command(flatten)]
    pub witness: WitnessArgs,
}

/// The witness flags of `graphgate serve` (`--audit-witness`, `--audit-witness-quorum`) and
/// `--audit-new-tree`, the deliberate start of a new log.
#[derive(Debug, Args)]
pub struct WitnessArgs {
    /// A witness to cosign the audit checkpoints: `URL=PUBLIC_KEY`, its submission prefix
    /// and its cosignature key (as `graphgate witness keygen` printed it); repeatable (in
    /// the environment, comma-separated). Needs --audit-signing-key-file.
    #[arg(
        long = "audit-witness",
        env = "GRAPHGATE_AUDIT_WITNESS",
        value_name = "URL=KEY",
        value_delimiter = ',',
        requires = "audit_signing_key_file"
    )]
    pub audit_witness: Vec<String>,
    /// How many witnesses must cosign a checkpoint for it to count as witnessed (the
    /// quorum whose age is reported) [default: all of them].
    #[arg(long, env = "GRAPHGATE_AUDIT_WITNESS_QUORUM", requires = "audit_witness", value_parser = clap::value_parser!(u64).range(1..))]
    pub audit_witness_quorum: Option<u64>,
    /// Start a new audit log on purpose: the current log's files (records, anchor,
    /// checkpoints, tree, cosignatures) are moved into a folder beside it, and the new log's
    /// first record says so. Witnesses of the old log refuse the new one until their
    /// operators reset it.
    #[arg(long, env = "GRAPHGATE_AUDIT_NEW_TREE")]
    pub audit_new_tree: bool,
}

impl WitnessArgs {
    /// The witnesses and the quorum; every bad value goes to `problems`.
    fn witnesses(&self, problems: &mut Problems) -> (Vec<WitnessConfig>, usize) {
        let mut configs = Vec::new();
        for value in &self.audit_witness {
            if let Some(c) = problems
                .take(WitnessConfig::parse(value).map_err(|e| format!("--audit-witness {e}")))
            {
                configs.push(c);
            }
        }
        let quorum = self
            .audit_witness_quorum
            .map_or(configs.len(), |q| usize::try_from(q).unwrap_or(usize::MAX));
        if quorum > self.audit_witness.len() {
            problems.push(format!(
                "--audit-witness-quorum {quorum} is more than the {} witness(es) given",
                self.audit_witness.len()
            ));
        }
        (configs, quorum)
    }
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
    /// retention keeps what is not shipped yet. Every problem goes to `problems` (the
    /// settings are still given when only a witness value is wrong, so the files they name
    /// are checked too).
    pub fn settings(
        &self,
        emulator: bool,
        shipped: bool,
        problems: &mut Problems,
    ) -> Option<AuditSettings> {
        let log = match (self.audit_log.as_deref(), emulator) {
            (Some("none"), _) => return None,
            (Some(p), _) => Some(PathBuf::from(p)),
            (None, true) => Some(graphgate::audit::open::emulator_default_log()),
            (None, false) => {
                problems.push(SetupError::NotConfigured);
                None
            }
        };
        let hmac_key = match (&self.audit_hmac_key_file, emulator) {
            (Some(file), _) => Some(HmacKey::File(file.clone())),
            (None, true) => Some(HmacKey::BesideLog),
            (None, false) => {
                problems.push(SetupError::NoKey);
                None
            }
        };
        let (witnesses, witness_quorum) = self.witness.witnesses(problems);
        let checkpoints =
            self.audit_signing_key_file
                .clone()
                .map(|signing_key_file| CheckpointSettings {
                    signing_key_file,
                    every_records: self.audit_checkpoint_every_records,
                    interval: Duration::from_secs(self.audit_checkpoint_interval_secs),
                    push_url: self.audit_checkpoint_url.clone(),
                    push_token_file: self.audit_checkpoint_token_file.clone(),
                    witnesses,
                    witness_quorum,
                });
        Some(AuditSettings {
            log: log?,
            hmac_key: hmac_key?,
            new_tree: self.witness.audit_new_tree,
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
        })
    }
}
