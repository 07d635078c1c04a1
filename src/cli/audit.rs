//! The `graphgate audit` subcommands as the binary exposes them, and `verify` (`query` is in
//! `audit_query`, `keygen` and the checkpoint side of `verify` in `audit_checkpoints`, its
//! witnesses' side in `audit_witness`, `prove` and `verify-receipt` in `audit_receipt`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use graphgate::audit::Fingerprinter;
use graphgate::audit::checkpoints::checkpoint;
use graphgate::audit::read::{ends, report, verify};
use graphgate::audit::store::anchor::{self, Anchor};
use graphgate::audit::store::files;
use graphgate::words::count;

use super::audit_checkpoints::{KeygenArgs, run_keygen, signed_checkpoints};
use super::audit_query::{QueryArgs, is_beside_log, run_query};

/// `graphgate audit ...`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain of audit log files, and both its ends against the log's anchor;
    /// exits 1 at the first tampering or missing record.
    Verify(VerifyArgs),
    /// Show audit records, filtered.
    Query(QueryArgs),
    /// Make an Ed25519 key pair for signed checkpoints: writes the private key (mode 0600)
    /// and prints the public key in the signed-note verifier-key form.
    Keygen(KeygenArgs),
    /// Write a receipt: a request's records, their inclusion proofs and the newest signed
    /// and cosigned checkpoint, checkable offline with `audit verify-receipt`.
    Prove(super::audit_receipt::ProveArgs),
    /// Check a receipt with the log's public key (and witnesses' keys), nothing else.
    VerifyReceipt(super::audit_receipt::VerifyReceiptArgs),
}

/// What `audit verify` checks.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Log files, e.g. `audit.jsonl*` (any order: they are chained by seq; the log's
    /// `.anchor` file may be among them).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The audit HMAC key file the gateway writes with; it authenticates the anchor.
    #[arg(
        long,
        visible_alias = "audit-hmac-key-file",
        env = "GRAPHGATE_AUDIT_HMAC_KEY_FILE"
    )]
    hmac_key_file: Option<PathBuf>,
    /// The anchor file [default: `<log>.anchor` beside the files, or one among them].
    #[arg(long, env = "GRAPHGATE_AUDIT_ANCHOR")]
    anchor: Option<PathBuf>,
    /// Check the hash chain only: records cut off at either end are then not noticed.
    #[arg(long, conflicts_with = "anchor")]
    no_anchor: bool,
    /// Signed checkpoint files (repeatable) [default with --public-key: `<log>.checkpoints`
    /// beside the files]; an off-host copy is the one to trust.
    #[arg(long = "checkpoints", value_name = "FILE", requires = "public_key")]
    checkpoints: Vec<PathBuf>,
    /// The checkpoint signing key's public key (`<name>+<id>+<key>`, as `audit keygen`
    /// printed it), or a file holding it. With it, the log is checked against its signed
    /// checkpoints, which hold even against someone with the HMAC key.
    #[arg(long, env = "GRAPHGATE_AUDIT_PUBLIC_KEY")]
    public_key: Option<String>,
    /// Witness cosignatures to require.
    #[command(flatten)]
    witnesses: super::audit_witness::WitnessVerifyArgs,
}

/// Runs an audit subcommand, printing to stdout/stderr.
pub fn run(cmd: AuditCommand) -> std::io::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify(args) => run_verify(&args),
        AuditCommand::Query(args) => run_query(args),
        AuditCommand::Keygen(args) => run_keygen(&args),
        AuditCommand::Prove(args) => super::audit_receipt::run_prove(&args),
        AuditCommand::VerifyReceipt(args) => super::audit_receipt::run_verify(&args),
    }
}

fn run_verify(args: &VerifyArgs) -> std::io::Result<ExitCode> {
    let (anchors, rest): (Vec<PathBuf>, Vec<PathBuf>) = args
        .files
        .iter()
        .cloned()
        .partition(|f| anchor::is_anchor_file(f));
    let (given_checkpoints, logs): (Vec<PathBuf>, Vec<PathBuf>) = rest
        .into_iter()
        .filter(|f| !is_beside_log(f))
        .partition(|f| checkpoint::is_checkpoint_file(f));
    let witness_keys = match args.witnesses.keys() {
        Ok(keys) => keys,
        Err(e) => {
            eprintln!("graphgate: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let signed = match signed_checkpoints(
        args.public_key.as_ref(),
        &args.checkpoints,
        &given_checkpoints,
        &logs,
    ) {
        Ok(signed) => signed,
        Err(code) => return Ok(code),
    };
    // With signed checkpoints, the anchor is checked only when its key is at hand.
    let skip_anchor = args.no_anchor
        || (signed.is_some() && args.hmac_key_file.is_none() && args.anchor.is_none());
    let anchor = match skip_anchor {
        true => None,
        false => match load_anchor(args, &anchors, &logs) {
            Ok(found) => Some(found),
            Err(code) => return Ok(code),
        },
    };
    let mut watch: Vec<u64> = signed.iter().flat_map(|s| s.sizes()).collect();
    if let Some((a, _)) = &anchor {
        watch.extend([a.tail.seq, a.head.seq]);
    }
    let (report, leaves) = verify::verify_with_leaves(&logs, &watch, signed.is_some())?;
    if report.problem.is_some() {
        return Ok(print_chain(&report));
    }
    let failed = |problem: String| {
        println!("{problem}");
        println!("FAILED after {}", count(report.records, "intact record"));
        ExitCode::FAILURE
    };
    let mut checks = Vec::new();
    let mut witnessed = None;
    if let Some(signed) = &signed {
        let mut sizes = signed.tree_sizes();
        sizes.extend(super::audit_witness::sizes(&args.witnesses, &logs));
        let roots = match super::audit_checkpoints::tree_roots(&report, leaves, &logs, &sizes) {
            Ok(roots) => roots,
            Err(problem) => return Ok(failed(problem)),
        };
        let matched = match signed.check(&report, &roots) {
            Ok(matched) => matched,
            Err(problem) => return Ok(failed(problem)),
        };
        if !witness_keys.is_empty() {
            match super::audit_witness::check(
                &args.witnesses,
                &signed.verifier,
                &witness_keys,
                &logs,
                &report,
                &roots,
            ) {
                Ok(w) => witnessed = Some(w),
                Err(problem) => return Ok(failed(problem)),
            }
        }
        checks.push(format!(
            "signed checkpoints ({} of the Merkle tree, {} of the hash chain)",
            matched.tree, matched.chain
        ));
        let code = match &anchor {
            Some((a, path)) => print_ends(&report, a, path),
            None => print_chain(&report),
        };
        signed.print_ok(&report, matched);
        if let Some(w) = &witnessed {
            let names: Vec<&str> = w.by.iter().map(|(n, _)| n.as_str()).collect();
            println!(
                "witnesses: the checkpoint of {} records is cosigned by {} of {} ({}); the log matches it",
                w.checkpoint.size,
                w.by.len(),
                witness_keys.len(),
                names.join(", ")
            );
            checks.push(format!(
                "witness cosignatures ({} of {})",
                w.by.len(),
                witness_keys.len()
            ));
        }
        print_checks(
            &report,
            anchor.is_some(),
            args.no_anchor,
            &checks,
            witness_keys.is_empty(),
        );
        return Ok(code);
    }
    let code = match &anchor {
        Some((a, path)) => print_ends(&report, a, path),
        None => print_chain(&report),
    };
    print_checks(&report, anchor.is_some(), args.no_anchor, &checks, true);
    Ok(code)
}

/// States which checks were made, and which were not and why.
fn print_checks(
    report: &report::Report,
    anchored: bool,
    no_anchor: bool,
    signed: &[String],
    no_witnesses: bool,
) {
    let mut made = vec![format!("hash chain ({})", count(report.records, "record"))];
    if anchored {
        made.push("anchor (both ends)".into());
    }
    made.extend(signed.iter().cloned());
    println!("checked: {}", made.join("; "));
    let mut not = Vec::new();
    if !anchored {
        not.push(match no_anchor {
            true => "anchor not checked (--no-anchor): records cut off at either end would not be noticed by it",
            false => "anchor not checked (no --hmac-key-file): the signed checkpoints stand for it",
        });
    }
    if signed.is_empty() {
        not.push("signed checkpoints not checked (no --public-key)");
    }
    if no_witnesses {
        not.push("witness cosignatures not checked (no --witness-key)");
    }
    if !not.is_empty() {
        println!("not checked: {}", not.join("; "));
    }
}

/// The anchor (and where it is), authenticated with the HMAC key; or the exit code.
fn load_anchor(
    args: &VerifyArgs,
    anchors: &[PathBuf],
    logs: &[PathBuf],
) -> Result<(Anchor, PathBuf), ExitCode> {
    let anchor_path = find_anchor(args.anchor.as_deref(), anchors, logs).map_err(|e| {
        println!("FAILED: {e}");
        ExitCode::FAILURE
    })?;
    let Some(key_file) = &args.hmac_key_file else {
        eprintln!(
            "graphgate: checking the anchor {} needs the audit HMAC key: give --hmac-key-file FILE (or GRAPHGATE_AUDIT_HMAC_KEY_FILE), --public-key KEY to check the signed checkpoints instead, or --no-anchor to check the hash chain only",
            anchor_path.display()
        );
        return Err(ExitCode::from(2));
    };
    let key = Fingerprinter::from_file(key_file).map_err(|e| {
        eprintln!("graphgate: {e}");
        ExitCode::from(2)
    })?;
    match Anchor::load(&anchor_path, &key) {
        Ok(Some(a)) => Ok((a, anchor_path)),
        Ok(None) => {
            println!("FAILED: the anchor {} is missing", anchor_path.display());
            Err(ExitCode::FAILURE)
        }
        Err(e) => {
            println!("FAILED: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// Prints the chain's verdict; fails on tampering.
fn print_chain(report: &report::Report) -> ExitCode {
    for torn in &report.torn {
        println!("{torn}: torn last line (a crash mid-write), not tampering; ignored");
    }
    match (&report.problem, report.seq_range) {
        (Some((pos, problem)), _) => {
            println!("{pos}: {problem}");
            println!("FAILED after {}", count(report.records, "intact record"));
            ExitCode::FAILURE
        }
        (None, Some((first, last))) => {
            println!(
                "OK: {}, seq {first}..={last}, hash chain intact",
                count(report.records, "record")
            );
            ExitCode::SUCCESS
        }
        (None, None) => {
            println!("OK: no records");
            ExitCode::SUCCESS
        }
    }
}

/// Prints the ends' verdict after an intact chain; fails on a missing or rewritten end.
fn print_ends(report: &report::Report, anchor: &Anchor, path: &Path) -> ExitCode {
    let ends = ends::check(anchor, report);
    let written = format!("written {} at {}", anchor.written, anchor.reason);
    if let Some(problem) = &ends.problem {
        for torn in &report.torn {
            println!("{torn}: torn last line (a crash mid-write), not tampering; ignored");
        }
        println!("{} ({written}): {problem}", path.display());
        println!("FAILED after {}", count(report.records, "intact record"));
        return ExitCode::FAILURE;
    }
    let code = print_chain(report);
    let reach = match anchor.head.seq {
        0 => "the anchor was written before any record".to_owned(),
        seq => format!("reaches seq {seq} as anchored"),
    };
    println!(
        "anchor {} ({written}): the log starts at seq {} and {reach}",
        path.display(),
        anchor.tail.seq,
    );
    if let Some((from, to)) = ends.unanchored {
        println!(
            "note: seq {from}..={to} are newer than the anchor (the gateway is running, or stopped without a clean shutdown); a cut among them would not be noticed"
        );
    }
    code
}

/// The anchor to check against: named, given among the files, or `<log>.anchor` beside them.
fn find_anchor(
    named: Option<&Path>,
    given: &[PathBuf],
    logs: &[PathBuf],
) -> Result<PathBuf, String> {
    if let Some(path) = named {
        return Ok(path.to_owned());
    }
    let mut candidates: Vec<PathBuf> = given.to_vec();
    if candidates.is_empty() {
        candidates = logs
            .iter()
            .map(|f| anchor::path_for(&files::base_log(f)))
            .filter(|a| a.exists())
            .collect();
    }
    candidates.sort();
    candidates.dedup();
    match candidates.as_slice() {
        [one] => Ok(one.clone()),
        [] => {
            let looked: Vec<String> = logs
                .iter()
                .map(|f| anchor::path_for(&files::base_log(f)).display().to_string())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            Err(format!(
                "no anchor found (looked for {}): cannot tell whether records are missing at either end; give --anchor FILE, or --no-anchor to check the hash chain only",
                looked.join(", ")
            ))
        }
        several => Err(format!(
            "several anchors ({}): verify one log at a time, or name its anchor with --anchor",
            several
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}
