//! Writing checkpoints off the writer thread: the file sink asks for a checkpoint of the
//! durable head (every N records or T seconds, at rotation, at close); a thread of its own
//! takes the new records into the Merkle tree ([`super::leaves`]), signs its root, appends
//! the checkpoint to `<log>.checkpoints`, syncs both and offers it to the push and the
//! witnesses, so the group commit never waits for a hash, a signature or a second fsync. A
//! request dropped because the thread is behind is harmless: the next checkpoint covers more.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::Duration;

use crate::clock::Instant;

use super::chain::ChainState;
use super::checkpoint::{
    self, Checkpoint, CheckpointConfig, SignedCheckpoint, origin_for, path_for,
};
use super::follow::Follower;
use super::sink::Checkpoints;
use super::tree::Tree;

/// Checkpoints waiting for the thread.
const QUEUE: usize = 64;
/// Longest a clean close waits for the last checkpoint.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

enum Job {
    Sign(ChainState),
    /// Sign (if new), then acknowledge: everything asked before is on disk.
    Close(ChainState, mpsc::Sender<()>),
}

/// Decides when a checkpoint is due and hands it to the signing thread.
pub struct Checkpointer {
    tx: SyncSender<Job>,
    every_records: u64,
    interval: Duration,
    /// The head of the last checkpoint asked for.
    last: u64,
    last_at: Instant,
}

impl Checkpointer {
    /// Signs checkpoints of the log at `log`, durable up to `head`, from now on. Brings its
    /// Merkle tree up to the durable records and refuses a log whose tree or newest signed
    /// checkpoint no longer matches it (rewritten, or cut off).
    pub fn start(log: &Path, config: CheckpointConfig, head: &ChainState) -> io::Result<Self> {
        let verifier = config.signer.verifier();
        let tree = super::leaves::open_for(log, head.seq)?;
        let view = tree.view().map_err(io::Error::other)?;
        checkpoint::check_last(log, &verifier, head, &view)?;
        Self::open(log, config, tree)
    }

    /// Opens (creating) the checkpoint file of the log at `log` and starts its thread, which
    /// grows `tree` (already up to date with the log's durable records).
    pub fn open(log: &Path, config: CheckpointConfig, tree: Tree) -> io::Result<Self> {
        let path = path_for(log);
        let mut opts = OpenOptions::new();
        opts.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o644);
        let file = opts.open(&path)?;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let (every_records, interval) = (config.every_records, config.interval);
        let last = tree.size();
        let writer = Writer {
            origin: origin_for(config.signer.name(), log),
            config,
            path,
            file,
            last: 0,
            follower: Follower::new(log, last + 1),
            tree,
        };
        std::thread::Builder::new()
            .name("graphgate-checkpoint".into())
            .spawn(move || writer.run(rx))?;
        Ok(Checkpointer {
            tx,
            every_records,
            interval,
            last: 0,
            last_at: Instant::now(),
        })
    }
}

impl Checkpoints for Checkpointer {
    /// Checkpoints `head` and waits (bounded) until it is on disk (before a rotation may
    /// let retention remove records the tree has not taken in yet).
    fn sync_to(&mut self, head: &ChainState) {
        self.close(head);
    }

    /// Whether the chain at `head` is owed a checkpoint (enough records, or time, since the last).
    fn due(&self, head: &ChainState) -> bool {
        head.seq > self.last
            && (head.seq - self.last >= self.every_records
                || self.last_at.elapsed() >= self.interval)
    }

    /// Asks for a checkpoint of `head` (nothing if it is already checkpointed); never waits.
    fn write(&mut self, head: &ChainState) {
        if head.seq == 0 || head.seq == self.last {
            return;
        }
        self.last_at = Instant::now();
        match self.tx.try_send(Job::Sign(head.clone())) {
            Ok(()) => self.last = head.seq,
            Err(TrySendError::Full(_)) => {
                tracing::warn!(
                    seq = head.seq,
                    "the checkpoint thread is behind; the next checkpoint covers this one"
                );
            }
            Err(TrySendError::Disconnected(_)) => crate::metrics::audit_checkpoint(false),
        }
    }

    /// Checkpoints `head` and waits (bounded) until every checkpoint asked for is on disk.
    fn close(&mut self, head: &ChainState) {
        let (ack, done) = mpsc::channel();
        if self.tx.send(Job::Close(head.clone(), ack)).is_ok()
            && done.recv_timeout(CLOSE_WAIT).is_err()
        {
            tracing::error!("the closing audit checkpoint was not written in time");
        }
        self.last = head.seq;
    }
}

/// The signing thread's side.
struct Writer {
    config: CheckpointConfig,
    origin: String,
    path: PathBuf,
    file: File,
    last: u64,
    tree: Tree,
    follower: Follower,
}

impl Writer {
    fn run(mut self, rx: Receiver<Job>) {
        for job in rx {
            match job {
                Job::Sign(head) => self.write(&head),
                Job::Close(head, ack) => {
                    self.write(&head);
                    let _ = ack.send(());
                }
            }
        }
    }

    /// Appends a signed checkpoint of `head` (synced) and offers it to the push. Failures
    /// are logged and counted: the log itself stays writable.
    fn write(&mut self, head: &ChainState) {
        if head.seq == 0 || head.seq <= self.last {
            return;
        }
        match self.sign_and_append(head) {
            Ok(signed) => {
                self.last = head.seq;
                crate::metrics::audit_checkpoint(true);
                if let Some(push) = &self.config.push {
                    push.offer(signed.note.clone());
                }
                self.config.latest.publish(signed);
            }
            Err(e) => {
                crate::metrics::audit_checkpoint(false);
                tracing::error!(error = %e, path = %self.path.display(), seq = head.seq, "could not write an audit checkpoint");
            }
        }
    }

    fn sign_and_append(&mut self, head: &ChainState) -> io::Result<SignedCheckpoint> {
        super::leaves::extend(&mut self.tree, &mut self.follower, head.seq)?;
        self.tree.sync().map_err(io::Error::other)?;
        let root = self.tree.root().map_err(io::Error::other)?;
        let checkpoint = Checkpoint {
            origin: self.origin.clone(),
            size: head.seq,
            hash: super::chain::hex(&root.0),
        };
        let text = checkpoint.text().map_err(io::Error::other)?;
        let note = self.config.signer.sign(&text).map_err(io::Error::other)?;
        self.file.write_all(note.as_bytes())?;
        self.file.sync_data()?;
        Ok(SignedCheckpoint {
            size: head.seq,
            root,
            note,
            signed_at: crate::clock::utc_now().timestamp().max(0).unsigned_abs(),
        })
    }
}
