//! `audit verify --witness-key W --witness-quorum N`: the log must match a checkpoint that
//! at least N of the given witnesses cosigned (read from `<log>.cosigned`, or the files
//! given with `--cosigned`, such as a witness's own copy). Only a witness's key can make a
//! cosignature: someone who rewrites the host cannot.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;

use graphgate::audit::checkpoints::checkpoint::Checkpoint;
use graphgate::audit::checkpoints::note::NoteVerifier;
use graphgate::audit::checkpoints::tree::Hash;
use graphgate::audit::read::report;
use graphgate::audit::records::chain;
use graphgate::audit::store::files;
use graphgate::audit::witnessing::cosigned::{self, Witnessed};

/// The witness flags of `audit verify`.
#[derive(Debug, Args)]
pub struct WitnessVerifyArgs {
    /// A witness's public key (`<name>+<id>+<key>`, as `graphgate witness keygen` printed
    /// it), or a file holding it; repeatable. With it, the log must match a checkpoint
    /// cosigned by --witness-quorum of these witnesses (needs --public-key).
    #[arg(long = "witness-key", value_name = "KEY", requires = "public_key")]
    pub witness_keys: Vec<String>,
    /// How many of the --witness-key witnesses must have cosigned [default: all of them].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..), requires = "witness_keys")]
    pub witness_quorum: Option<u64>,
    /// Files of cosigned checkpoints (repeatable); by default `<log>.cosigned` beside the files.
    #[arg(long = "cosigned", value_name = "FILE", requires = "witness_keys")]
    pub cosigned: Vec<PathBuf>,
}

impl WitnessVerifyArgs {
    /// The witness keys, parsed; a usage error names the bad one.
    pub fn keys(&self) -> Result<Vec<NoteVerifier>, String> {
        self.witness_keys
            .iter()
            .map(|k| {
                let text = match std::path::Path::new(k).is_file() {
                    true => std::fs::read_to_string(k).unwrap_or_default(),
                    false => k.clone(),
                };
                let key =
                    NoteVerifier::parse(&text).map_err(|e| format!("--witness-key {k}: {e}"))?;
                match key.is_cosigner() {
                    true => Ok(key),
                    false => Err(format!(
                        "--witness-key {k}: a log's key (type 0x01), not a witness's (type 0x04)"
                    )),
                }
            })
            .collect()
    }

    /// The quorum asked for (all the keys by default).
    pub fn quorum(&self) -> usize {
        self.witness_quorum.map_or(self.witness_keys.len(), |q| {
            usize::try_from(q).unwrap_or(usize::MAX)
        })
    }
}

/// The newest checkpoint cosigned by at least `quorum` of `witnesses` that the log matches
/// (its root at that size in `roots`, the records reaching it); or what is wrong.
pub fn check(
    args: &WitnessVerifyArgs,
    log_key: &NoteVerifier,
    witnesses: &[NoteVerifier],
    logs: &[PathBuf],
    report: &report::Report,
    roots: &BTreeMap<u64, Hash>,
) -> Result<Witnessed, String> {
    let quorum = args.quorum();
    if quorum > witnesses.len() {
        return Err(format!(
            "--witness-quorum {quorum} is more than the {} given",
            graphgate::words::count(witnesses.len(), "witness key")
        ));
    }
    let mut paths = args.cosigned.clone();
    if paths.is_empty()
        && let Some(base) = logs.first().map(|f| files::base_log(f))
    {
        paths.push(cosigned::path_for(&base));
    }
    let last = report.seq_range.map_or(0, |(_, last)| last);
    let mut best: Option<Witnessed> = None;
    for path in &paths {
        let notes = cosigned::read(path).map_err(|e| e.to_string())?;
        for (i, note) in notes.iter().enumerate() {
            let w = cosigned::check(note, log_key, witnesses)
                .map_err(|e| format!("{} cosigned checkpoint #{}: {e}", path.display(), i + 1))?;
            if w.by.len() < quorum {
                continue;
            }
            if w.checkpoint.size > last {
                return Err(format!(
                    "truncated: a checkpoint cosigned by {} witness(es) vouches for {} records, but the files end at seq {last}: seq {}..={} missing (the newest records cut off)",
                    w.by.len(),
                    w.checkpoint.size,
                    last + 1,
                    w.checkpoint.size
                ));
            }
            match roots.get(&w.checkpoint.size) {
                Some(root) if chain::hex(&root.0) == w.checkpoint.hash => {}
                Some(_) => {
                    return Err(format!(
                        "rewritten: the log's Merkle tree at {} records is not the one {} witness(es) cosigned",
                        w.checkpoint.size,
                        w.by.len()
                    ));
                }
                None => continue,
            }
            if best
                .as_ref()
                .is_none_or(|b| b.checkpoint.size < w.checkpoint.size)
            {
                best = Some(w);
            }
        }
    }
    best.ok_or_else(|| {
        let looked: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        format!(
            "no checkpoint the log reaches is cosigned by {quorum} of the {} witness(es) given (looked in {})",
            witnesses.len(),
            looked.join(", ")
        )
    })
}

/// The sizes of the cosigned checkpoints (unverified: which roots [`check`] will need).
pub fn sizes(args: &WitnessVerifyArgs, logs: &[PathBuf]) -> Vec<u64> {
    let mut paths = args.cosigned.clone();
    if paths.is_empty()
        && let Some(base) = logs.first().map(|f| files::base_log(f))
    {
        paths.push(cosigned::path_for(&base));
    }
    paths
        .iter()
        .flat_map(|p| cosigned::read(p).unwrap_or_default())
        .filter_map(|note| {
            let text = &note[..=note.find("\n\n")?];
            Checkpoint::parse(text).ok().map(|c| c.size)
        })
        .collect()
}
