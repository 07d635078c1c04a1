//! The checkpoint side of `graphgate audit`: `keygen`, and reading the signed checkpoints
//! `verify --public-key` checks a log against (each attack named: truncated, rewritten,
//! forged).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use std::collections::BTreeMap;

use graphgate::audit::checkpoints::checkpoint::{self, Checkpoint};
use graphgate::audit::checkpoints::note::{NoteSigner, NoteVerifier};
use graphgate::audit::checkpoints::tree::{self, Hash, Roots, TreeView};
use graphgate::audit::read::{report, sweep};
use graphgate::audit::records::chain;
use graphgate::audit::store::files;
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
    if let Err(e) =
        graphgate::audit::records::fingerprint::write_private(&args.out, text.as_bytes())
    {
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
    pub(super) verifier: NoteVerifier,
    origin: String,
    files: Vec<PathBuf>,
    checkpoints: Vec<Checkpoint>,
}

/// How many checkpoints matched the log, by what they sign.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Matched {
    /// Checkpoints of the Merkle tree's root.
    pub(super) tree: usize,
    /// Checkpoints written before the log was a tree (of the hash chain's head).
    pub(super) chain: usize,
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
        verifier,
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

    /// Every checkpoint the files reach must match them (the Merkle root at its size, in
    /// `roots`, or for one written before the log was a tree, the chain's head); none may
    /// reach past their end.
    pub(super) fn check(
        &self,
        report: &report::Report,
        roots: &BTreeMap<u64, Hash>,
    ) -> Result<Matched, String> {
        let first = report.first.as_ref().map_or(1, |l| l.seq);
        let last = report.seq_range.map_or(0, |(_, last)| last);
        let mut matched = Matched::default();
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
            if roots
                .get(&c.size)
                .is_some_and(|r| chain::hex(&r.0) == c.hash)
            {
                matched.tree += 1;
                continue;
            }
            let found = report.watched.iter().find(|l| l.seq == c.size);
            if found.is_some_and(|l| l.hash == c.hash) {
                matched.chain += 1;
                continue;
            }
            return Err(format!(
                "rewritten: the record at seq {} is not the one a checkpoint signed by {} vouches for (the log was rewritten with fresh hashes)",
                c.size, self.key
            ));
        }
        Ok(matched)
    }

    /// The sizes the roots are needed at.
    pub(super) fn tree_sizes(&self) -> Vec<u64> {
        self.checkpoints.iter().map(|c| c.size).collect()
    }

    pub(super) fn print_ok(&self, report: &report::Report, matched: Matched) {
        let last = report.seq_range.map_or(0, |(_, last)| last);
        let first = report.first.as_ref().map_or(1, |l| l.seq);
        let checked: Vec<&Checkpoint> = self
            .checkpoints
            .iter()
            .filter(|c| c.size >= first)
            .collect();
        let files: Vec<String> = self.files.iter().map(|f| f.display().to_string()).collect();
        let newest = checked.last().map_or(0, |c| c.size);
        let kinds = match matched.chain {
            0 => "of the Merkle tree's root".to_owned(),
            n => format!(
                "{} of the Merkle tree's root, {n} of the hash chain's head (written before the log was a tree)",
                matched.tree
            ),
        };
        println!(
            "checkpoints ({}): {} signed by {} for {} ({kinds}), all verified; the log matches them up to seq {newest}",
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

/// The Merkle tree's roots at `sizes` (those the verified records reach): folded from the
/// records' leaves when the files start at seq 1, or else read from the log's tree file once
/// its leaves are shown to be the records present.
pub(super) fn tree_roots(
    report: &report::Report,
    leaves: Vec<Hash>,
    logs: &[PathBuf],
    sizes: &[u64],
) -> Result<BTreeMap<u64, Hash>, String> {
    let (Some(first), Some((_, last))) = (report.first.as_ref().map(|l| l.seq), report.seq_range)
    else {
        return Ok(BTreeMap::new());
    };
    let leaves = match leaves.len() as u64 == report.records {
        true => leaves,
        false => leaves_of(logs).map_err(|e| e.to_string())?,
    };
    let mut wanted: Vec<u64> = sizes
        .iter()
        .copied()
        .filter(|s| (first..=last).contains(s))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut roots = BTreeMap::new();
    if first == 1 {
        let mut fold = Roots::default();
        let mut next = wanted.iter().peekable();
        for leaf in leaves {
            fold.push(leaf).map_err(|e| e.to_string())?;
            if next.peek() == Some(&&fold.size()) {
                roots.insert(fold.size(), fold.root().map_err(|e| e.to_string())?);
                next.next();
            }
        }
        return Ok(roots);
    }
    let Some(base) = logs.first().map(|f| files::base_log(f)) else {
        return Ok(roots);
    };
    let path = tree::path_for(&base);
    let view = TreeView::open(&path, last).map_err(|e| {
        format!("the files start at seq {first}: checking the checkpoints needs the log from seq 1, or its Merkle tree file reaching seq {last} ({e})")
    })?;
    let stored = view
        .hashes_at_level(0, first - 1, last - first + 1)
        .map_err(|e| e.to_string())?;
    if stored != leaves {
        return Err(format!(
            "the Merkle tree file {} does not hold the records present (seq {first}..={last}): the log or the tree was rewritten",
            path.display()
        ));
    }
    for size in wanted {
        roots.insert(size, view.root_at(size).map_err(|e| e.to_string())?);
    }
    Ok(roots)
}

/// The leaf hashes of every whole line of `logs`, in chain order (the slow way, for files
/// the parallel check could not take).
fn leaves_of(logs: &[PathBuf]) -> std::io::Result<Vec<Hash>> {
    let mut out = Vec::new();
    for file in sweep::order(logs)? {
        let text = files::read(&file)?;
        let mut lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
        lines.pop();
        out.extend(lines.into_iter().map(tree::leaf_hash));
    }
    Ok(out)
}
