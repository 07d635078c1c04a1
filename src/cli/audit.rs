//! The `graphgate audit` subcommands (`verify`, `query`, `keygen`, `prove`,
//! `verify-receipt`), as the binary exposes them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::{Args, Subcommand};

use graphgate::audit::Fingerprinter;
use graphgate::audit::checkpoints::checkpoint;
use graphgate::audit::read::query::{self, Filter};
use graphgate::audit::read::{ends, report, verify};
use graphgate::audit::records::record::AuditDecision;
use graphgate::audit::store::anchor::{self, Anchor};
use graphgate::audit::store::files;

use super::audit_checkpoints::{KeygenArgs, run_keygen, signed_checkpoints};

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

/// Filters for `audit query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Log files (the `.anchor`, `.checkpoints` and `.ship-cursor` files among them are skipped).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Caller name.
    #[arg(long)]
    caller: Option<String>,
    /// Managed-device id (a GUID).
    #[arg(long, value_parser = parse_device)]
    device: Option<String>,
    /// Operation (e.g. `managedDevices.updateWindowsDeviceAccount` or `updateWindowsDeviceAccount`).
    #[arg(long, value_parser = parse_operation)]
    operation: Option<String>,
    /// Decision.
    #[arg(long, value_parser = decisions())]
    decision: Option<String>,
    /// graphgate's request id (`x-graphgate-request-id`, the record's `audit_id`).
    #[arg(long, visible_alias = "audit-id")]
    request_id: Option<String>,
    /// Graph's `request-id` for the call (the record's `graph_request_id`).
    #[arg(long)]
    graph_request_id: Option<String>,
    /// The person the request was made for (a UPN or object id, case-insensitive; or
    /// `@domain` for everyone of a domain).
    #[arg(long)]
    initiator: Option<String>,
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

/// The valid `--decision` values (and the policy words `allow` and `deny` for them).
fn decisions() -> PossibleValuesParser {
    PossibleValuesParser::new(AuditDecision::ALL.map(|d| {
        let value = PossibleValue::new(d.as_str());
        match d {
            AuditDecision::Allowed => value.alias("allow"),
            AuditDecision::Denied => value.alias("deny"),
            _ => value,
        }
    }))
}

fn parse_device(text: &str) -> Result<String, String> {
    if graphgate::operation::route::is_guid(text) {
        Ok(text.to_ascii_lowercase())
    } else {
        Err("a managed-device id is a GUID, e.g. 0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb".into())
    }
}

fn parse_operation(text: &str) -> Result<String, String> {
    let known = graphgate::operation::catalog::CATALOG
        .iter()
        .any(|op| op.name.eq_ignore_ascii_case(text) || op.action.eq_ignore_ascii_case(text));
    if known {
        return Ok(text.to_owned());
    }
    let names: Vec<String> = graphgate::operation::catalog::CATALOG
        .iter()
        .map(|op| format!("{} (or {})", op.name, op.action))
        .collect();
    Err(format!(
        "not an operation graphgate offers; valid: {}",
        names.join(", ")
    ))
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

/// The shipping cursor beside a log (a glob of the log's files picks it up).
fn is_ship_cursor(file: &Path) -> bool {
    file.extension().is_some_and(|e| e == "ship-cursor")
}

/// Files beside a log that a glob of its files picks up and that are not records (a folder
/// is one whose files `--audit-new-tree` set aside).
fn is_beside_log(file: &Path) -> bool {
    file.is_dir()
        || is_ship_cursor(file)
        || graphgate::audit::checkpoints::tree::is_tree_file(file)
        || graphgate::audit::witnessing::cosigned::is_cosigned_file(file)
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
        println!("FAILED after {} intact record(s)", report.records);
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
    let mut made = vec![format!("hash chain ({} records)", report.records)];
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
            println!("FAILED after {} intact record(s)", report.records);
            ExitCode::FAILURE
        }
        (None, Some((first, last))) => {
            println!(
                "OK: {} record(s), seq {first}..={last}, hash chain intact",
                report.records
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
        println!("FAILED after {} intact record(s)", report.records);
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

fn run_query(args: QueryArgs) -> std::io::Result<ExitCode> {
    let time = |t: &Option<String>| t.as_deref().map(query::parse_time).transpose();
    let (since, until) = match (time(&args.since), time(&args.until)) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("graphgate: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let decision = args.decision.as_deref().map(|d| match d {
        "allow" => "allowed".to_owned(),
        "deny" => "denied".to_owned(),
        d => d.to_owned(),
    });
    let filter = Filter {
        caller: args.caller,
        device: args.device,
        operation: args.operation,
        decision,
        request_id: args.request_id,
        graph_request_id: args.graph_request_id,
        initiator: args.initiator,
        since,
        until,
        all_kinds: args.all,
    };
    let files: Vec<PathBuf> = args
        .files
        .into_iter()
        .filter(|f| {
            !anchor::is_anchor_file(f) && !checkpoint::is_checkpoint_file(f) && !is_beside_log(f)
        })
        .collect();
    let records = query::read_records(&files)?;
    let rows = query::select(&records, &filter);
    let mut out = std::io::stdout().lock();
    if args.json {
        query::print_json(&rows, &mut out)?;
    } else {
        query::print_table(&rows, &query::completions(&records), &mut out)?;
    }
    Ok(ExitCode::SUCCESS)
}
