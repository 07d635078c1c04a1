//! `graphgate audit prove` (write a receipt for a request's records) and `graphgate audit
//! verify-receipt` (check one anywhere, with nothing but the keys); see `graphgate::audit::read::receipt`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use graphgate::audit::checkpoints::checkpoint::{self, Checkpoint};
use graphgate::audit::checkpoints::note::NoteVerifier;
use graphgate::audit::checkpoints::tree::{self, TreeView};
use graphgate::audit::read::receipt::{self, Receipt};
use graphgate::audit::read::sweep;
use graphgate::audit::records::chain;
use graphgate::audit::store::files;
use graphgate::audit::witnessing::cosigned;

/// What `audit prove` proves.
#[derive(Debug, Args)]
pub struct ProveArgs {
    /// The request's audit id (`x-graphgate-request-id`): every record of it is proven.
    #[arg(long)]
    pub audit_id: String,
    /// The audit log (its checkpoints, tree and cosigned checkpoints beside it).
    #[arg(long, env = "GRAPHGATE_AUDIT_LOG")]
    pub audit_log: PathBuf,
    /// Write the receipt here [default: standard output].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// What `audit verify-receipt` checks.
#[derive(Debug, Args)]
pub struct VerifyReceiptArgs {
    /// The receipt file.
    pub receipt: PathBuf,
    /// The log's public key (`<name>+<id>+<key>`), or a file holding it.
    #[arg(long, env = "GRAPHGATE_AUDIT_PUBLIC_KEY")]
    pub public_key: String,
    /// A witness's public key, or a file holding it; repeatable.
    #[arg(long = "witness-key", value_name = "KEY")]
    pub witness_keys: Vec<String>,
    /// How many of the witnesses must have cosigned [default: all given].
    #[arg(long, requires = "witness_keys")]
    pub witness_quorum: Option<usize>,
}

fn key(text: &str) -> Result<NoteVerifier, String> {
    let text = match Path::new(text).is_file() {
        true => std::fs::read_to_string(text).unwrap_or_default(),
        false => text.to_owned(),
    };
    NoteVerifier::parse(&text).map_err(|e| e.to_string())
}

/// Runs `audit verify-receipt`.
pub fn run_verify(args: &VerifyReceiptArgs) -> std::io::Result<ExitCode> {
    let usage = |e: String| {
        eprintln!("graphgate: {e}");
        Ok(ExitCode::from(2))
    };
    let log_key = match key(&args.public_key) {
        Ok(k) if !k.is_cosigner() => k,
        Ok(_) => return usage("--public-key: a witness's key, not the log's".into()),
        Err(e) => return usage(format!("--public-key: {e}")),
    };
    let mut witnesses = Vec::new();
    for w in &args.witness_keys {
        match key(w) {
            Ok(k) if k.is_cosigner() => witnesses.push(k),
            Ok(_) => return usage(format!("--witness-key {w}: a log's key, not a witness's")),
            Err(e) => return usage(format!("--witness-key {w}: {e}")),
        }
    }
    let quorum = args.witness_quorum.unwrap_or(witnesses.len());
    if quorum > witnesses.len() {
        return usage(format!(
            "--witness-quorum {quorum} is more than the {} given",
            graphgate::words::count(witnesses.len(), "witness key")
        ));
    }
    let text = read_bounded(&args.receipt)?;
    let checked = match receipt::check(&text, &log_key, &witnesses, quorum) {
        Ok(c) => c,
        Err(e) => {
            println!("FAILED: {}: {e}", args.receipt.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    let cp = &checked.witnessed.checkpoint;
    for r in &checked.records {
        let field = |k: &str| r[k].as_str().unwrap_or("-").to_owned();
        println!(
            "OK: record seq {} (audit_id {}, {} {} {}) is in the log {} of {} records",
            r["seq"],
            field("audit_id"),
            field("kind"),
            field("operation"),
            field("decision"),
            cp.origin,
            cp.size
        );
    }
    let by: Vec<String> = checked
        .witnessed
        .by
        .iter()
        .map(|(w, at)| format!("{w} at {}", time(*at)))
        .collect();
    println!("checkpoint signed by {}", log_key.label());
    match by.is_empty() {
        true => println!("not cosigned by any witness given (no --witness-key: not checked)"),
        false => println!(
            "cosigned by {} of {} witness(es): {}",
            by.len(),
            witnesses.len(),
            by.join(", ")
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn time(secs: u64) -> String {
    chrono::DateTime::from_timestamp(i64::try_from(secs).unwrap_or(0), 0)
        .map_or_else(|| secs.to_string(), |t| t.to_rfc3339())
}

fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, receipt::MAX_BYTES), &mut out)?;
    Ok(out)
}

/// Runs `audit prove`.
pub fn run_prove(args: &ProveArgs) -> std::io::Result<ExitCode> {
    let log = &args.audit_log;
    let records = find(log, &args.audit_id)?;
    let Some(newest) = records.iter().map(|(i, _)| *i + 1).max() else {
        println!(
            "FAILED: no record with audit id {} in {}*",
            args.audit_id,
            log.display()
        );
        return Ok(ExitCode::FAILURE);
    };
    let Some((note, cp, cosigned)) = checkpoint_covering(log, newest)? else {
        println!(
            "FAILED: no signed checkpoint covers seq {newest} yet (checkpoints are signed every few seconds with --audit-signing-key-file); try again shortly"
        );
        return Ok(ExitCode::FAILURE);
    };
    let view = TreeView::open(&tree::path_for(log), cp.size)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let root = view
        .root_at(cp.size)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    if chain::hex(&root.0) != cp.hash {
        println!(
            "FAILED: the log's Merkle tree at {} records is not the one its checkpoint signs: check the log with `graphgate audit verify`",
            cp.size
        );
        return Ok(ExitCode::FAILURE);
    }
    let receipt = Receipt::build(&note, cp.size, &records, &view).map_err(std::io::Error::other)?;
    match &args.out {
        Some(out) => std::fs::write(out, receipt.to_text())?,
        None => print!("{}", receipt.to_text()),
    }
    eprintln!(
        "receipt of {} against the checkpoint of {}{}",
        graphgate::words::count(records.len(), "record"),
        graphgate::words::count(cp.size, "record"),
        match cosigned {
            true => ", cosigned by the witnesses",
            false => " (not cosigned by a witness yet)",
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// The records (leaf index, line) whose audit id is `id`.
fn find(log: &Path, id: &str) -> std::io::Result<Vec<(u64, Vec<u8>)>> {
    let mut all = files::rotated_files(log)?;
    all.push(log.to_owned());
    let all: Vec<PathBuf> = all.into_iter().filter(|f| f.exists()).collect();
    let needle = format!(
        "\"audit_id\":{}",
        serde_json::to_string(id).unwrap_or_default()
    );
    let mut out = Vec::new();
    for file in sweep::order(&all)? {
        let text = files::read(&file)?;
        for line in text.split(|b| *b == b'\n') {
            if line.windows(needle.len()).any(|w| w == needle.as_bytes())
                && let Ok(v) = serde_json::from_slice::<serde_json::Value>(line)
                && v["audit_id"] == id
                && let Some(seq) = v["seq"].as_u64()
            {
                out.push((seq - 1, line.to_vec()));
            }
        }
    }
    Ok(out)
}

/// The newest cosigned checkpoint reaching seq `seq`, else the newest signed one: its note,
/// the checkpoint, and whether it is cosigned.
fn checkpoint_covering(
    log: &Path,
    seq: u64,
) -> std::io::Result<Option<(String, Checkpoint, bool)>> {
    let parse = |note: &str| {
        let text = &note[..=note.find("\n\n")?];
        Checkpoint::parse(text).ok()
    };
    let newest = |notes: Vec<String>| {
        notes
            .into_iter()
            .filter_map(|n| parse(&n).map(|c| (n, c)))
            .filter(|(_, c)| c.size >= seq)
            .max_by_key(|(n, c)| (c.size, n.matches('\u{2014}').count()))
    };
    if let Some((note, cp)) = newest(cosigned::read(&cosigned::path_for(log))?) {
        return Ok(Some((note, cp, true)));
    }
    let text = match std::fs::read_to_string(checkpoint::path_for(log)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let notes = checkpoint::split_notes(&text)
        .into_iter()
        .map(str::to_owned)
        .collect();
    Ok(newest(notes).map(|(n, c)| (n, c, false)))
}
