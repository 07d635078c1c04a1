//! No laundering at start: a log that has records but whose anchor is missing, or whose
//! checkpoints (and Merkle tree) are missing while its anchor says it had them, is refused
//! with every missing piece named and how to look into it; continuing would sign whatever
//! is left as if it were the whole log. (A log below what a witness cosigned is refused by
//! `serve`, which asks the witnesses: [`super::witnessing::witness_start`].) Starting a new
//! tree on purpose ([`set_aside`]) moves the old files into a folder of their own; `serve`
//! then writes a record saying so.

use std::io;
use std::path::{Path, PathBuf};

use super::checkpoints::{checkpoint, tree};
use super::store::{anchor, files, ship_cursor};
use super::witnessing::cosigned;

/// Refuses to open the log at `path` if parts of its evidence are missing (see the module
/// text). `signing` says whether checkpoints are configured.
pub fn check(path: &Path, key: &super::Fingerprinter, signing: bool) -> io::Result<()> {
    let Some(first) = first_record(path)? else {
        return Ok(());
    };
    let anchor_path = anchor::path_for(path);
    let mut missing = Vec::new();
    let anchor = match anchor::Anchor::load(&anchor_path, key) {
        Ok(found) => found,
        // An anchor that is not authentic is refused, with its own message, when the log opens.
        Err(_) => return Ok(()),
    };
    let had_checkpoints = match &anchor {
        None => {
            missing.push(format!("its anchor {}", anchor_path.display()));
            true
        }
        Some(a) => a.checkpoints,
    };
    if signing && had_checkpoints {
        for file in [checkpoint::path_for(path), tree::path_for(path)] {
            if !file.exists() {
                missing.push(format!("its {}", file.display()));
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "the audit log {} holds records (from seq {first}) but {} missing: continuing would vouch for whatever is left as if it were the whole log. To investigate: `graphgate audit verify --hmac-key-file KEY --public-key PUB {}*` shows what the files hold; compare its end with the copy of the checkpoints kept off the host (--audit-checkpoint-url) and with what the witnesses cosigned. Restore the missing files from a backup, or, once the loss is understood, start a new tree on purpose with --audit-new-tree (the files are moved aside and an audit record says so)",
            path.display(),
            match missing.len() {
                1 => format!("{} is", missing[0]),
                _ => format!("{} are", missing.join(" and ")),
            },
            path.display()
        ),
    ))
}

/// Moves every file of the log at `path` (records, anchor, checkpoints, tree, cosigned
/// checkpoints, shipping cursor) into a new folder beside it; returns the folder and how
/// many files were moved.
pub fn set_aside(path: &Path) -> io::Result<(PathBuf, usize)> {
    let mut all = files::rotated_files(path).unwrap_or_default();
    all.push(path.to_owned());
    all.extend([
        anchor::path_for(path),
        checkpoint::path_for(path),
        tree::path_for(path),
        cosigned::path_for(path),
        ship_cursor::path_for(path),
    ]);
    let present: Vec<PathBuf> = all.into_iter().filter(|f| f.exists()).collect();
    let stamp = crate::clock::utc_now().format("%Y%m%dT%H%M%SZ");
    let folder = with_suffix(path, &format!(".set-aside-{stamp}"));
    std::fs::create_dir(&folder)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", folder.display())))?;
    for file in &present {
        let to = folder.join(file.file_name().unwrap_or_default());
        files::rename_no_replace(file, &to)?;
    }
    files::sync_dir(path)?;
    Ok((folder, present.len()))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// The seq of the oldest record among the log's files, if any.
fn first_record(path: &Path) -> io::Result<Option<u64>> {
    if !path.exists() && files::rotated_files(path).unwrap_or_default().is_empty() {
        return Ok(None);
    }
    let mut all = files::rotated_files(path)?;
    all.push(path.to_owned());
    for file in all.iter().filter(|f| f.exists()) {
        if let Some(first) = files::first_link(file)? {
            return Ok(Some(first.seq));
        }
    }
    Ok(None)
}
