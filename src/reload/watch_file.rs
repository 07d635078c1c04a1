//! Which file events mean a complete policy file is in place: the writer closed it, a file
//! was renamed onto its name, it appeared as a symlink, or a ConfigMap's `..data` was
//! swapped. Writes to a file still open are incomplete and never read.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use notify::Watcher;
use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};

/// The name kubelet swaps (by rename) to publish a new version of a mounted ConfigMap.
const CONFIGMAP_SWAP: &str = "..data";

/// What an event in the policy file's directory says about the policy file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A complete file may be in place: its writer closed it, a file was renamed onto its
    /// name, it was created as a symlink, or a ConfigMap's `..data` was swapped.
    Complete,
    /// It is being written in place: reading it now could see half of it.
    Incomplete,
    /// Nothing that changes its content: another file, a read, metadata, a removal or a
    /// rename away (the policy in force stays until a complete file is back).
    Unrelated,
}

/// Watches the directory of the policy file at `path` (Kubernetes replaces ConfigMap files
/// by swapping a symlink, which a watch on the file itself would miss) and calls
/// `on_change` for each event about the policy file (see `classify`); events on other
/// files there (an audit or log file, say) go no further.
pub fn watch_policy_file(
    path: &Path,
    on_change: impl Fn(Change) + Send + 'static,
) -> notify::Result<notify::RecommendedWatcher> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    let name = path.file_name().map(OsStr::to_os_string);
    let handler = move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            match classify(&event, name.as_deref()) {
                Change::Unrelated => {}
                change => on_change(change),
            }
        }
    };
    let mut watcher = notify::recommended_watcher(handler)?;
    watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// What `event` means for the file named `policy`. Only a complete file is ever read: an
/// in-place edit is read when its writer closes the file (Linux reports that; elsewhere
/// use a rename or SIGHUP), never between two of its writes. An event naming no path, or
/// a lost watch, may hide anything: it counts as complete.
fn classify(event: &notify::Event, policy: Option<&OsStr>) -> Change {
    if event.paths.is_empty() || event.need_rescan() {
        return Change::Complete;
    }
    // A rename's destination is its last path; every other event names one path.
    let Some(path) = event.paths.last() else {
        return Change::Complete;
    };
    let name = path.file_name();
    let is_policy = name.is_some() && name == policy;
    match event.kind {
        EventKind::Modify(ModifyKind::Name(
            RenameMode::To | RenameMode::Both | RenameMode::Any,
        )) if is_policy || name == Some(OsStr::new(CONFIGMAP_SWAP)) => Change::Complete,
        _ if !is_policy => Change::Unrelated,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Change::Complete,
        // A new symlink is complete when it appears; a new file is written after.
        EventKind::Create(_) if path.is_symlink() => Change::Complete,
        EventKind::Create(_) | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any) => {
            Change::Incomplete
        }
        _ => Change::Unrelated,
    }
}

/// File events on the policy file so far, as the watcher thread counts them.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct FileEvents {
    pub(super) complete: u64,
    pub(super) incomplete: u64,
    /// Whether the latest event was a complete file (not a write begun after it).
    pub(super) settled: bool,
}

impl FileEvents {
    pub(super) fn note(&mut self, change: Change) {
        match change {
            Change::Complete => self.complete += 1,
            Change::Incomplete => self.incomplete += 1,
            Change::Unrelated => return,
        }
        self.settled = change == Change::Complete;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, MetadataKind, RemoveKind};
    use std::time::Duration;

    fn event(kind: EventKind, paths: &[&Path]) -> notify::Event {
        paths
            .iter()
            .fold(notify::Event::new(kind), |e, p| e.add_path(p.to_path_buf()))
    }

    fn change(kind: EventKind, paths: &[&Path]) -> Change {
        classify(&event(kind, paths), Some(OsStr::new("policy.yaml")))
    }

    const WRITE: EventKind = EventKind::Modify(ModifyKind::Data(DataChange::Any));
    const CLOSE_WRITE: EventKind = EventKind::Access(AccessKind::Close(AccessMode::Write));

    fn rename(mode: RenameMode) -> EventKind {
        EventKind::Modify(ModifyKind::Name(mode))
    }

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("graphgate-watch-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn only_a_complete_policy_file_is_read() {
        let dir = temp_dir();
        let policy = dir.join("policy.yaml");
        let (audit, tmp) = (dir.join("audit.jsonl"), dir.join(".policy.yaml.tmp"));
        let (data, data_tmp) = (dir.join("..data"), dir.join("..data_tmp"));
        use Change::{Complete, Incomplete, Unrelated};

        // In-place edits: every write is incomplete until the writer closes the file.
        std::fs::write(&policy, "version: 1\n").unwrap();
        assert_eq!(change(WRITE, &[&policy]), Incomplete);
        assert_eq!(
            change(EventKind::Create(CreateKind::File), &[&policy]),
            Incomplete
        );
        assert_eq!(change(CLOSE_WRITE, &[&policy]), Complete);
        // Renames onto the name, and kubelet's `..data` swap, put a whole file in place.
        assert_eq!(change(rename(RenameMode::To), &[&policy]), Complete);
        assert_eq!(change(rename(RenameMode::Both), &[&tmp, &policy]), Complete);
        assert_eq!(change(rename(RenameMode::To), &[&data]), Complete);
        assert_eq!(
            change(rename(RenameMode::Both), &[&data_tmp, &data]),
            Complete
        );
        // A symlink is complete the moment it appears.
        std::fs::remove_file(&policy).unwrap();
        std::os::unix::fs::symlink(&audit, &policy).unwrap();
        assert_eq!(
            change(EventKind::Create(CreateKind::File), &[&policy]),
            Complete
        );
        // Nothing else is read: moving or removing the file, reads, metadata, other files
        // (a log written beside the policy), a ConfigMap's new version before the swap.
        for unrelated in [
            change(rename(RenameMode::From), &[&policy]),
            change(rename(RenameMode::Both), &[&policy, &tmp]),
            change(EventKind::Remove(RemoveKind::File), &[&policy]),
            change(
                EventKind::Access(AccessKind::Open(AccessMode::Any)),
                &[&policy],
            ),
            change(
                EventKind::Access(AccessKind::Close(AccessMode::Read)),
                &[&policy],
            ),
            change(
                EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
                &[&policy],
            ),
            change(WRITE, &[&audit]),
            change(CLOSE_WRITE, &[&audit]),
            change(CLOSE_WRITE, &[&dir.join("policy.yaml.bak")]),
            change(
                EventKind::Create(CreateKind::Folder),
                &[&dir.join("..2026_11_28_16_00_00.1")],
            ),
            change(CLOSE_WRITE, &[&dir.join("..touch")]),
        ] {
            assert_eq!(unrelated, Unrelated);
        }
        assert_eq!(
            change(EventKind::Any, &[]),
            Complete,
            "a lost watch may hide a change"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_watch_reports_an_in_place_write_as_complete_only_when_closed() {
        use std::io::Write;
        let dir = temp_dir();
        let policy = dir.join("policy.yaml");
        std::fs::write(&policy, "version: 1\n").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let watcher = watch_policy_file(&policy, move |c| {
            let _ = tx.send(c);
        })
        .unwrap();
        // Sibling writes first: the watch delivers events in order, so had any of them got
        // through (each closes its file), it would be the first change seen.
        for i in 0..20 {
            std::fs::write(dir.join("audit.jsonl"), format!("{i}\n")).unwrap();
        }
        let mut file = std::fs::File::create(&policy).unwrap();
        file.write_all(b"version: 1\n# half").unwrap();
        let next = || rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(next(), Change::Incomplete, "open and written, not closed");
        file.write_all(b" and the rest\n").unwrap();
        drop(file);
        let mut seen = vec![next()];
        while seen.last() != Some(&Change::Complete) {
            seen.push(next());
        }
        assert!(
            seen[..seen.len() - 1]
                .iter()
                .all(|c| *c == Change::Incomplete),
            "{seen:?}"
        );
        drop(watcher);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn events_settle_only_on_a_complete_file_with_no_write_after_it() {
        let mut e = FileEvents::default();
        e.note(Change::Incomplete);
        assert!(!e.settled);
        e.note(Change::Complete);
        assert!(e.settled);
        e.note(Change::Unrelated);
        assert!(e.settled, "other files do not unsettle it");
        e.note(Change::Incomplete);
        assert!(
            !e.settled,
            "a write begun after the close waits for its own close"
        );
        assert_eq!((e.complete, e.incomplete), (1, 2));
    }
}
