//! The memory store's budget counts across restarts and crashes, with no write of its own on
//! the request path. A count matters once its request may reach Graph, and by then the
//! request's audit intent is durable: each intent names the budgets its request was counted
//! on ([`BudgetMark`]), and an outcome says when they were given back (the request was not
//! sent after all). So the counts are the budget file's last snapshot plus the intents
//! written after it: [`restore`] adds those at start, and [`Snapshots`] writes the file off
//! the request path every few seconds and at shutdown, so a start reads only the log's
//! newest records.
//!
//! A snapshot never undercounts: it notes the newest durable audit record first, then reads
//! the counts, which by then include every request whose intent that record covers (a
//! request is counted before its intent is written). It may count a request twice (counted
//! in the snapshot and its intent written after): the safe side, and only for requests in
//! flight when it was taken, since the snapshot at a clean shutdown is exact.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use tokio::sync::watch;

use crate::audit::records::record::BudgetMark;
use crate::audit::store::follow::Follower;
use crate::audit::{Audit, Kind};
use crate::policy::BudgetWindow;
use crate::state::{
    BudgetFile, ClaimSettings, Count, Namespace, RecordFile, StateSetupError, StateStore,
    budget_window, wall_clock_secs,
};

/// How often the counts are written to the budget file while they change.
pub const SNAPSHOT_EVERY: Duration = Duration::from_secs(5);
/// Records read from the log at a time while restoring.
const BATCH: usize = 4_096;

/// The memory store with the counts of `file`'s snapshot and of the intents `audit` holds
/// after it; the file is written at once with the result, so the next start reads from
/// here. Without an audit log the snapshot alone is read (a crash loses the counts since
/// the last one). A log or file that cannot be read stops start-up: today's counts would be
/// unknown, and a gateway that guessed zero would reopen every spent budget. Its approvals
/// are read from `records`, if given.
pub fn restore(
    file: &BudgetFile,
    records: Option<RecordFile>,
    audit: &Audit,
    namespace: Namespace,
    claims: ClaimSettings,
) -> Result<StateStore, StateSetupError> {
    let wall = wall_clock_secs();
    let snapshot = file.load(wall)?;
    let mut counts = snapshot.counts;
    let head = audit.durable_seq().map(|d| *d.borrow());
    match (audit.path(), head) {
        (Some(log), Some(head)) => {
            // A file of the release before this one counted every admission itself.
            let from = snapshot.audit_seq.map_or(head, |seq| seq.min(head)) + 1;
            let replayed = replay(log, from, head, &namespace, wall, &mut counts).map_err(|e| {
                StateSetupError::File {
                    path: log.display().to_string(),
                    reason: format!("reading the budgets' intents: {e}"),
                }
            })?;
            if replayed > 0 {
                tracing::info!(
                    intents = replayed,
                    from_seq = from,
                    "budget counts: intents after the last snapshot added from the audit log"
                );
            }
            if let Err(e) = file.store(head, &counts) {
                tracing::warn!(error = %e, "could not write the budget snapshot; the next start reads more of the audit log");
            }
        }
        _ => tracing::warn!(
            budget_file = %file.path().display(),
            "no audit log: budget counts survive a restart through their snapshot alone (a crash loses the counts of the last seconds)"
        ),
    }
    StateStore::memory(namespace, claims, counts, Some(file), records)
}

/// Adds to `counts` the budget marks of the intents with sequence numbers `from..=head`
/// (less those their outcome gave back) whose windows are not over at `wall`; returns how
/// many intents counted.
fn replay(
    log: &Path,
    from: u64,
    head: u64,
    namespace: &Namespace,
    wall: u64,
    counts: &mut HashMap<String, Count>,
) -> std::io::Result<usize> {
    let mut follower = Follower::new(log, from);
    // The intents read, by audit id: an outcome gives back only what was counted here (one
    // given back before the snapshot was taken is not in the snapshot's counts).
    let mut counted: HashMap<String, Vec<(String, u32)>> = HashMap::new();
    let mut intents = 0;
    while follower.next_seq() <= head {
        let lines = follower.read(head, BATCH)?;
        if lines.is_empty() {
            break;
        }
        for line in lines {
            // Most records name no budget: only those that do are parsed.
            if !contains(&line.bytes, b"\"budgets") {
                continue;
            }
            let Ok(record) = serde_json::from_slice::<Counted>(&line.bytes) else {
                continue;
            };
            match (record.kind, record.budgets_refunded) {
                (Some(Kind::Intent), _) => {
                    let mut keyed = Vec::new();
                    let marks = record.budgets.unwrap_or_default();
                    for mark in marks.iter().filter(|m| m.window_end > wall) {
                        let Some(key) = key_of(namespace, mark) else {
                            continue;
                        };
                        let count = counts.entry(key.clone()).or_insert(Count {
                            window_end: mark.window_end,
                            used: 0,
                        });
                        count.used += u64::from(mark.devices);
                        keyed.push((key, mark.devices));
                    }
                    intents += 1;
                    counted.insert(record.audit_id, keyed);
                }
                (_, Some(true)) => {
                    for (key, devices) in counted.remove(&record.audit_id).unwrap_or_default() {
                        if let Some(c) = counts.get_mut(&key) {
                            c.used = c.used.saturating_sub(u64::from(devices));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(intents)
}

/// What a record says about budgets.
#[derive(serde::Deserialize)]
struct Counted {
    kind: Option<Kind>,
    #[serde(default)]
    audit_id: String,
    #[serde(default)]
    budgets: Option<Vec<BudgetMark>>,
    #[serde(default)]
    budgets_refunded: Option<bool>,
}

/// The store key of the counter a mark names (the same as [`super::PolicyLimits`] charges).
fn key_of(namespace: &Namespace, mark: &BudgetMark) -> Option<String> {
    let (kind, name) = mark.budget.split_once(':')?;
    if !matches!(kind, "caller" | "rule" | "tenant") {
        return None;
    }
    let window = match mark.window.as_str() {
        "hour" => BudgetWindow::Hour,
        "day" => BudgetWindow::Day,
        _ => return None,
    };
    let index = (mark.window_end / window.secs()).checked_sub(1)?;
    Some(budget_window(&namespace.budget(kind, name, window), index))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Writes the memory store's budget counts to their file every [`SNAPSHOT_EVERY`] while they
/// change, off the request path, each with the newest durable audit record they include.
pub struct Snapshots {
    file: BudgetFile,
    durable: Option<watch::Receiver<u64>>,
    written: Option<u64>,
}

impl Snapshots {
    /// Snapshots of the counts into `file`, naming `audit`'s durable records.
    pub fn new(file: BudgetFile, audit: &Audit) -> Self {
        Snapshots {
            file,
            durable: audit.durable_seq(),
            written: None,
        }
    }

    /// Writes a snapshot every [`SNAPSHOT_EVERY`] until `stop` resolves.
    pub async fn run(mut self, store: &StateStore, stop: impl Future<Output = ()>) -> Self {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(SNAPSHOT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = &mut stop => return self,
            }
            let Some((generation, head, counts)) = self.changed(store) else {
                continue;
            };
            let file = self.file.clone();
            let written = tokio::task::spawn_blocking(move || file.store(head, &counts)).await;
            match written {
                Ok(Ok(())) => self.written = Some(generation),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "could not write the budget snapshot; retrying (the audit log keeps the counts)")
                }
                Err(e) => tracing::warn!(error = %e, "could not write the budget snapshot"),
            }
        }
    }

    /// The last snapshot, once nothing is in flight and the audit log is closed: exact.
    pub fn finish(mut self, store: &StateStore) {
        if let Some((_, head, counts)) = self.changed(store)
            && let Err(e) = self.file.store(head, &counts)
        {
            tracing::warn!(error = %e, "could not write the budget snapshot at shutdown; the next start reads it from the audit log");
        }
    }

    /// The newest durable record (read first) and the counts, when they changed since the
    /// last snapshot written.
    fn changed(&mut self, store: &StateStore) -> Option<(u64, u64, HashMap<String, Count>)> {
        let head = self.durable.as_mut().map_or(0, |d| *d.borrow_and_update());
        let (generation, counts) = store.budget_counts()?;
        (self.written != Some(generation)).then_some((generation, head, counts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::records::chain::ChainState;
    use crate::audit::records::record::Entry;
    use crate::cloud::Cloud;

    const DAY: u64 = 86_400;

    fn mark(budget: &str, window: &str, window_end: u64) -> BudgetMark {
        BudgetMark {
            budget: budget.to_owned(),
            devices: 2,
            window: window.to_owned(),
            window_end,
        }
    }

    fn entry(
        kind: Kind,
        audit_id: &str,
        budgets: Option<Vec<BudgetMark>>,
        refunded: bool,
    ) -> Entry {
        Entry {
            kind: Some(kind),
            audit_id: audit_id.to_owned(),
            budgets,
            budgets_refunded: refunded.then_some(true),
            ..Entry::default()
        }
    }

    /// A log of these entries, sealed in a chain as the writer would.
    fn log(entries: &[Entry]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("gg-ledger-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let mut chain = ChainState::default();
        let mut text = Vec::new();
        for e in entries {
            text.extend(chain.seal(e).unwrap());
            text.push(b'\n');
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The intents after the snapshot count, less those their outcome gave back (only when
    /// the intent was counted here too), in windows not over; their keys are the ones the
    /// limits charge.
    #[test]
    fn the_counts_are_the_intents_after_the_snapshot_less_those_given_back() {
        let wall = 1_000 * DAY + 100;
        let today = 1_001 * DAY;
        let ns = Namespace::new(Cloud::Global, "t", "app", "d");
        let caller_day = budget_window(&ns.budget("caller", "ops", BudgetWindow::Day), 1_000);
        let rule_day = budget_window(&ns.budget("rule", "r", BudgetWindow::Day), 1_000);
        let caller_hour = budget_window(
            &ns.budget("caller", "ops", BudgetWindow::Hour),
            wall / 3_600,
        );
        let hour_end = (wall / 3_600 + 1) * 3_600;
        let path = log(&[
            // 1: given back after a snapshot that counted it: stays counted there.
            entry(Kind::Outcome, "a0", None, true),
            // 2, 3: counted.
            entry(
                Kind::Intent,
                "a1",
                Some(vec![mark("caller:ops", "day", today)]),
                false,
            ),
            entry(
                Kind::Outcome,
                "a1",
                Some(vec![mark("caller:ops", "day", today)]),
                false,
            ),
            // 4, 5: counted on two budgets, then given back.
            entry(
                Kind::Intent,
                "a2",
                Some(vec![
                    mark("caller:ops", "day", today),
                    mark("rule:r", "day", today),
                ]),
                false,
            ),
            entry(Kind::Outcome, "a2", None, true),
            // 6: yesterday's window is over.
            entry(
                Kind::Intent,
                "a3",
                Some(vec![mark("caller:ops", "day", today - DAY)]),
                false,
            ),
            // 7: an hourly budget; 8: a name no budget has.
            entry(
                Kind::Intent,
                "a4",
                Some(vec![mark("caller:ops", "hour", hour_end)]),
                false,
            ),
            entry(
                Kind::Intent,
                "a5",
                Some(vec![mark("nobody", "day", today)]),
                false,
            ),
            // 9: a request never sent names no intent.
            entry(
                Kind::Request,
                "a6",
                Some(vec![mark("caller:ops", "day", today)]),
                false,
            ),
        ]);
        let mut counts = HashMap::new();
        counts.insert(
            caller_day.clone(),
            Count {
                window_end: today,
                used: 5,
            },
        );
        let intents = replay(&path, 1, 9, &ns, wall, &mut counts).unwrap();
        assert_eq!(intents, 5);
        let used = |key: &str| counts.get(key).map(|c| c.used);
        assert_eq!(used(&caller_day), Some(7), "5 from the snapshot, 2 from a1");
        assert_eq!(used(&rule_day), Some(0), "a2 was given back");
        assert_eq!(used(&caller_hour), Some(2));
        assert_eq!(counts.len(), 3, "{counts:?}");
        // From a later record on, only what follows counts.
        let mut later = HashMap::new();
        replay(&path, 6, 9, &ns, wall, &mut later).unwrap();
        assert_eq!(later.len(), 1, "{later:?}");
        assert_eq!(later[&caller_hour].used, 2);
    }
}
