//! The checkpoint side of `graphgate audit`: `keygen`, and reading the signed checkpoints
//! `verify --public-key` checks a log against (each attack named: truncated, rewritten,
//! forged).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use graphgate::audit::checkpoint::{self, Checkpoint};
use graphgate::audit::note::{NoteSigner, NoteVerifier};
use graphgate::audit::{files, verify};
use graphgate::words::count;

/// What `audit keygen` makes.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The key's name, a schema-less URL naming this gateway's audit, e.g.
    /// `graphgate.corp.example/audit` (no spaces or '+').
    #[arg(long)]
    name: String,
    /// Where to write the private key (must not exist); give it to the gateway with
    /// --audit-signing-key-file.
    #[arg(long)]
    out: PathBuf,
}

pub(super) fn run_keygen(args: &KeygenArgs) -> std::io::Result<ExitCode> {
    let (signer, encoded) = match NoteSigner::generate(&args.name) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("graphgate: --name {:?}: {e}", args.name);
            return Ok(ExitCode::from(2));
        }
    };
    let mut text = encoded.expose().to_owned();
    text.push('\n');
    if let Err(e) = graphgate::audit::fingerprint::write_private(&args.out, text.as_bytes()) {
        eprintln!("graphgate: {}: {e}", args.out.display());
        return Ok(ExitCode::FAILURE);
    }
    eprintln!(
        "private key written to {} (mode 0600): give it to the gateway with --audit-signing-key-file; the public key, for `audit verify --public-key`:",
        args.out.display()
    );
    println!("{}", signer.verifier());
    Ok(ExitCode::SUCCESS)
}

/// Signed checkpoints, each verified with the public key.
pub(super) struct Signed {
    key: String,
    origin: String,
    files: Vec<PathBuf>,
    checkpoints: Vec<Checkpoint>,
}

/// Reads the checkpoints asked for (`named`, those `given` among the files, or the log's
/// own; `None` without --public-key); a forged one, or one of
/// another log, fails here with its verdict printed.
pub(super) fn signed_checkpoints(
    public_key: Option<&String>,
    named: &[PathBuf],
    given: &[PathBuf],
    logs: &[PathBuf],
) -> Result<Option<Signed>, ExitCode> {
    let Some(key) = public_key else {
        if !given.is_empty() {
            eprintln!("graphgate: checking checkpoint files needs --public-key KEY");
            return Err(ExitCode::from(2));
        }
        return Ok(None);
    };
    let text = match std::path::Path::new(key).is_file() {
        true => std::fs::read_to_string(key).unwrap_or_default(),
        false => key.clone(),
    };
    let verifier = NoteVerifier::parse(&text).map_err(|e| {
        eprintln!("graphgate: --public-key: {e}");
        ExitCode::from(2)
    })?;
    let Some(base) = logs.first().map(|f| files::base_log(f)) else {
        return Ok(None);
    };
    // A file named with --checkpoints and also among the files (a glob of the log's) is
    // read once.
    let mut paths: Vec<PathBuf> = Vec::new();
    for path in named.iter().chain(given) {
        let same = |p: &PathBuf| p == path || same_file(p, path);
        if !paths.iter().any(same) {
            paths.push(path.clone());
        }
    }
    if paths.is_empty() {
        paths.push(checkpoint::path_for(&base));
    }
    let fail = |text: String| {
        println!("FAILED: {text}");
        ExitCode::FAILURE
    };
    let origin = checkpoint::origin_for(verifier.name(), &base);
    let mut checkpoints = Vec::new();
    for path in &paths {
        let read = checkpoint::read_verified(path, &verifier).map_err(|e| match e {
            checkpoint::ReadError::Io(_) => fail(format!("no signed checkpoints: {e}")),
            _ => fail(format!("forged checkpoint: {e}")),
        })?;
        if let Some(other) = read.iter().find(|c| c.origin != origin) {
            return Err(fail(format!(
                "{}: a checkpoint of another log ({}), not of {origin}",
                path.display(),
                other.origin
            )));
        }
        checkpoints.extend(read);
    }
    // Copies of one checkpoint (an off-host copy beside the log's own) count once.
    checkpoints.sort_by(|a, b| (a.size, &a.hash).cmp(&(b.size, &b.hash)));
    checkpoints.dedup_by(|a, b| a.size == b.size && a.hash == b.hash);
    Ok(Some(Signed {
        key: verifier.label(),
        origin,
        files: paths,
        checkpoints,
    }))
}

/// Whether two paths name one file.
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

impl Signed {
    pub(super) fn sizes(&self) -> impl Iterator<Item = u64> + '_ {
        self.checkpoints.iter().map(|c| c.size)
    }

    /// Every checkpoint the files reach must match them; none may reach past their end.
    pub(super) fn check(&self, report: &verify::Report) -> Result<(), String> {
        let first = report.first.as_ref().map_or(1, |l| l.seq);
        let last = report.seq_range.map_or(0, |(_, last)| last);
        for c in self.checkpoints.iter().filter(|c| c.size >= first) {
            if c.size > last {
                return Err(format!(
                    "truncated: a checkpoint signed by {} vouches for {}, but the files end at seq {last}: seq {}..={} missing (the newest records cut off)",
                    self.key,
                    count(c.size, "record"),
                    last + 1,
                    c.size
                ));
            }
            let found = report.watched.iter().find(|l| l.seq == c.size);
            if found.is_some_and(|l| l.hash != c.hash) {
                return Err(format!(
                    "rewritten: the record at seq {} is not the one a checkpoint signed by {} vouches for (the log was rewritten with fresh hashes)",
                    c.size, self.key
                ));
            }
        }
        Ok(())
    }

    pub(super) fn print_ok(&self, report: &verify::Report) {
        let last = report.seq_range.map_or(0, |(_, last)| last);
        let first = report.first.as_ref().map_or(1, |l| l.seq);
        let checked: Vec<&Checkpoint> = self
            .checkpoints
            .iter()
            .filter(|c| c.size >= first)
            .collect();
        let files: Vec<String> = self.files.iter().map(|f| f.display().to_string()).collect();
        let newest = checked.last().map_or(0, |c| c.size);
        println!(
            "checkpoints ({}): {} signed by {} for {}, all verified; the log matches them up to seq {newest}",
            files.join(", "),
            count(checked.len(), "checkpoint"),
            self.key,
            self.origin
        );
        if newest < last {
            println!(
                "note: seq {}..={last} are newer than the last checkpoint (the gateway is running, or stopped without a clean shutdown); a cut among them would not be noticed",
                newest + 1
            );
        }
    }
}
