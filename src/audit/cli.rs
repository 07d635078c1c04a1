//! The `graphgate audit` subcommands, `verify` and `query`, as the binary exposes them.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::query::{self, Filter};
use super::verify;

/// `graphgate audit ...`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain of audit log files; exits non-zero at the first tampering.
    Verify {
        /// Log files, e.g. `audit.jsonl audit.jsonl.*` (any order: they are chained by seq).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show audit records, filtered.
    Query(QueryArgs),
}

/// Filters for `audit query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Log files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Caller name.
    #[arg(long)]
    caller: Option<String>,
    /// Managed-device id.
    #[arg(long)]
    device: Option<String>,
    /// Operation (e.g. `managedDevices.updateWindowsDeviceAccount` or `updateWindowsDeviceAccount`).
    #[arg(long)]
    operation: Option<String>,
    /// Decision: allowed, denied, shadow_denied, dry_run, rate_limited, invalid, failed, outcome_unknown.
    #[arg(long)]
    decision: Option<String>,
    /// From this time (YYYY-MM-DD or RFC 3339), inclusive.
    #[arg(long)]
    since: Option<String>,
    /// Until this time (YYYY-MM-DD or RFC 3339), exclusive.
    #[arg(long)]
    until: Option<String>,
    /// Also list intent and start records as rows.
    #[arg(long)]
    all: bool,
    /// JSON Lines instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs an audit subcommand, printing to stdout/stderr.
pub fn run(cmd: AuditCommand) -> std::io::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify { files } => run_verify(&files),
        AuditCommand::Query(args) => run_query(args),
    }
}

fn run_verify(files: &[PathBuf]) -> std::io::Result<ExitCode> {
    let report = verify::verify(files)?;
    for torn in &report.torn {
        println!("{torn}: torn last line (a crash mid-write), not tampering; ignored");
    }
    match (&report.problem, report.seq_range) {
        (Some((pos, problem)), _) => {
            println!("{pos}: {problem}");
            println!("FAILED after {} intact record(s)", report.records);
            Ok(ExitCode::FAILURE)
        }
        (None, Some((first, last))) => {
            println!(
                "OK: {} record(s), seq {first}..={last}, hash chain intact",
                report.records
            );
            Ok(ExitCode::SUCCESS)
        }
        (None, None) => {
            println!("OK: no records");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_query(args: QueryArgs) -> std::io::Result<ExitCode> {
    let time = |t: &Option<String>| t.as_deref().map(query::parse_time).transpose();
    let (since, until) = match (time(&args.since), time(&args.until)) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("graphgate: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let filter = Filter {
        caller: args.caller,
        device: args.device,
        operation: args.operation,
        decision: args.decision,
        since,
        until,
        all_kinds: args.all,
    };
    let rows = query::select(&query::read_records(&args.files)?, &filter);
    let mut out = std::io::stdout().lock();
    if args.json {
        query::print_json(&rows, &mut out)?;
    } else {
        query::print_table(&rows, &mut out)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The audit flags of `graphgate serve`.
#[derive(Debug, Args)]
pub struct ServeAuditArgs {
    /// Audit log (JSON Lines, hash-chained); `none` disables auditing (benchmarks only).
    /// Required unless --emulator [with --emulator: $TMPDIR/graphgate-audit/emulator.jsonl].
    #[arg(long, env = "GRAPHGATE_AUDIT_LOG")]
    pub audit_log: Option<String>,
    /// File holding the HMAC key (64+ hex characters) for fingerprints of redacted values.
    /// Required with an audit log, except with --emulator (then created next to the log).
    #[arg(long, env = "GRAPHGATE_AUDIT_HMAC_KEY_FILE")]
    pub audit_hmac_key_file: Option<PathBuf>,
    /// Rotate the audit log when it would grow past this size.
    #[arg(long, env = "GRAPHGATE_AUDIT_MAX_FILE_BYTES", default_value_t = super::DEFAULT_MAX_FILE_BYTES)]
    pub audit_max_file_bytes: u64,
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
        "no audit HMAC key: set --audit-hmac-key-file FILE (or GRAPHGATE_AUDIT_HMAC_KEY_FILE); make one with: head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > FILE"
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

/// Opens the audit log `serve` was asked for and proves it writable with a `start` record.
pub async fn open_for_serve(
    args: &ServeAuditArgs,
    emulator: bool,
) -> Result<super::Audit, SetupError> {
    let path = match (args.audit_log.as_deref(), emulator) {
        (Some("none"), _) => {
            tracing::warn!(
                "auditing is DISABLED (--audit-log none): privileged calls leave no audit record"
            );
            return Ok(super::Audit::disabled());
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
        (Some(file), _) => super::Fingerprinter::from_file(file)?,
        (None, true) => {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            let dir = dir.map_or_else(|| PathBuf::from("."), PathBuf::from);
            std::fs::create_dir_all(&dir).map_err(|e| log_err(e.to_string()))?;
            let key = dir.join("hmac.key");
            let (fp, created) = super::Fingerprinter::from_file_or_create(&key)?;
            let verb = if created { "generated" } else { "using" };
            eprintln!("audit HMAC key: {verb} {}", key.display());
            fp
        }
        (None, false) => return Err(SetupError::NoKey),
    };
    let audit = super::Audit::open(&path, args.audit_max_file_bytes, fingerprinter)
        .map_err(|e| log_err(e.to_string()))?;
    audit
        .write_start(concat!("graphgate ", env!("CARGO_PKG_VERSION"), " started"))
        .await
        .map_err(|e| log_err(e.to_string()))?;
    Ok(audit)
}
