//! Outcome reconciliation: Graph's 2xx for a device action means Intune queued it. With
//! `--reconcile-outcomes`, each accepted device action is followed up: the device's
//! `deviceActionResults` are read (paced, with backoff) until that action is `done`,
//! `failed`, `notSupported` or `canceled`, and a `completion` record with the intent's audit
//! id says so. Past the deadline a `pending_past_deadline` completion is written and the
//! action counts as overdue (`graphgate_reconcile_actions{state="overdue"}`) while it is
//! still read, slowly, for a final state. At start the log is read for accepted actions
//! without a final completion, so a restart loses none.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::time::Instant;

mod graph;
mod scan;

use graph::{ActionResult, Reader, final_state, result_for};

use super::records::record::{Entry, Kind, now_rfc3339};
use super::{Audit, WriteError};
use crate::cloud::Cloud;
use crate::token::TokenBroker;
use crate::upstream::HttpClient;

/// The permission reading `deviceActionResults` needs.
pub const READ_PERMISSION: &str = "DeviceManagementManagedDevices.Read.All";
/// Default time an action has to reach a final state.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(3600);
/// First wait before reading a device, and the longest between reads.
const FIRST_POLL: Duration = Duration::from_secs(1);
const MAX_POLL: Duration = Duration::from_secs(300);
/// Device reads per second, at most: Intune allows 2,000 requests per 20 s per tenant
/// (about 100 a second) for everything the app does; reconciliation takes a small share.
const READS_PER_SEC: u32 = 5;
/// Overdue actions are still read until this many deadlines after they were accepted.
const OVERDUE_HORIZON: u32 = 24;
/// Actions waiting to be tracked; more are logged and left to the next restart's scan.
const QUEUE: usize = 4096;
/// A device's clock and the gateway's may differ: results started this much before the
/// call are still taken for it.
pub(super) const SKEW: chrono::Duration = chrono::Duration::minutes(5);
/// Longest one device read may take.
pub(super) const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest text of Graph's copied into a completion's note, per field (an action name, a
/// state, a time are far shorter): the note stays a line, whatever Graph answers.
const MAX_NOTE_FIELD_CHARS: usize = 64;

/// How actions are followed up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileConfig {
    /// How long an action has to reach a final state.
    pub deadline: Duration,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        ReconcileConfig {
            deadline: DEFAULT_DEADLINE,
        }
    }
}

/// Hands accepted actions to the reconciler; cheap to clone.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::Sender<Action>,
    done: tokio::sync::broadcast::Sender<Completed>,
}

/// A final state found for an action run under an approval (which records it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    /// The approval it ran under.
    pub approval_id: String,
    /// The audit id of the run (its intent and outcome records).
    pub audit_id: String,
    /// `done`, `failed`, `not_supported`, `canceled`, or `pending_past_deadline`.
    pub state: String,
    /// What `deviceActionResults` said, in words.
    pub note: Option<String>,
}

impl Handle {
    /// Final states of actions run under approvals, from now on (the approvals record
    /// them; a lagging receiver misses some, which the audit log still has).
    pub fn completions(&self) -> tokio::sync::broadcast::Receiver<Completed> {
        self.done.subscribe()
    }

    /// Follows up an outcome record, if it is a device action Graph accepted.
    pub fn track(&self, outcome: &Entry) {
        let Some(action) = Action::of(outcome) else {
            return;
        };
        if let Err(e) = self.tx.try_send(action) {
            tracing::warn!(audit_id = %outcome.audit_id, error = %e, "outcome reconciliation is behind; this action is followed up after the next restart");
        }
    }
}

/// An accepted device action being followed up.
#[derive(Debug, Clone)]
pub(super) struct Action {
    pub(super) audit_id: String,
    pub(super) caller: Option<String>,
    pub(super) operation: String,
    /// Graph's action name, as `deviceActionResults` spells it.
    pub(super) action: String,
    pub(super) device: String,
    pub(super) accepted: DateTime<Utc>,
    /// A `pending_past_deadline` completion was already written.
    pub(super) overdue: bool,
    /// The approval it ran under, if any.
    pub(super) approval_id: Option<String>,
}

impl Action {
    /// The action an outcome record describes, if Graph accepted a device action.
    fn of(e: &Entry) -> Option<Action> {
        Self::from_parts(
            e.kind?,
            e.upstream_status?,
            e.operation.as_deref()?,
            e.device_id.as_deref()?,
            &e.audit_id,
            &e.time,
        )
        .map(|a| Action {
            caller: e.caller.clone(),
            approval_id: e.approval_id.clone(),
            ..a
        })
    }

    pub(super) fn from_parts(
        kind: Kind,
        upstream: u16,
        operation: &str,
        device: &str,
        audit_id: &str,
        time: &str,
    ) -> Option<Action> {
        let action = operation.strip_prefix("managedDevices.")?;
        let accepted = DateTime::parse_from_rfc3339(time).ok()?.with_timezone(&Utc);
        let device_action = action != "delete" && crate::operation::route::is_guid(device);
        (kind == Kind::Outcome && (200..300).contains(&upstream) && device_action).then(|| Action {
            audit_id: audit_id.to_owned(),
            caller: None,
            operation: operation.to_owned(),
            action: action.to_owned(),
            device: device.to_owned(),
            accepted,
            overdue: false,
            approval_id: None,
        })
    }
}

/// Starts following up accepted actions of `audit` (and, first, those its log shows
/// without a final completion). Call within a Tokio runtime.
pub fn spawn(
    audit: Audit,
    broker: TokenBroker,
    http: HttpClient,
    cloud: Cloud,
    config: ReconcileConfig,
) -> Handle {
    broker.require_also(READ_PERMISSION);
    let (tx, rx) = mpsc::channel(QUEUE);
    let (done, _) = tokio::sync::broadcast::channel(QUEUE);
    let handle = Handle {
        tx: tx.clone(),
        done: done.clone(),
    };
    if let (Some(log), Some(durable)) = (audit.path().map(Path::to_owned), audit.durable_seq()) {
        let head = *durable.borrow();
        tokio::spawn(async move {
            let horizon = config_horizon(config.deadline);
            let found =
                tokio::task::spawn_blocking(move || scan::unfinished(&log, head, horizon)).await;
            for action in found.unwrap_or_default() {
                let _ = tx.send(action).await;
            }
        });
    }
    let reader = Reader {
        http,
        broker,
        cloud,
    };
    tokio::spawn(run(rx, Arc::new(reader), (audit, done), config));
    handle
}

fn config_horizon(deadline: Duration) -> chrono::Duration {
    chrono::Duration::from_std(deadline * OVERDUE_HORIZON).unwrap_or(chrono::Duration::days(1))
}

/// One action followed up, and when to read its device next.
struct Tracked {
    action: Action,
    next: Instant,
    interval: Duration,
    deadline: Instant,
    give_up: Instant,
}

impl Tracked {
    fn new(action: Action, deadline: Duration) -> Self {
        let age = (crate::clock::utc_now() - action.accepted)
            .to_std()
            .unwrap_or_default();
        let now = Instant::now();
        let left = deadline.saturating_sub(age);
        let give_up = (deadline * OVERDUE_HORIZON).saturating_sub(age);
        Tracked {
            action,
            next: now + FIRST_POLL,
            interval: FIRST_POLL,
            deadline: now + left,
            give_up: now + give_up,
        }
    }
}

/// Where completions go: the audit log, and the approvals' listeners.
type Sinks = (Audit, tokio::sync::broadcast::Sender<Completed>);

async fn run(
    mut rx: mpsc::Receiver<Action>,
    reader: Arc<Reader>,
    audit: Sinks,
    config: ReconcileConfig,
) {
    let max_poll = (config.deadline / 4).clamp(FIRST_POLL, MAX_POLL);
    let gap = Duration::from_secs(1) / READS_PER_SEC;
    let mut tracked: Vec<Tracked> = Vec::new();
    let mut last_read = Instant::now();
    loop {
        let next = tracked.iter().map(|t| t.next).min();
        tokio::select! {
            got = rx.recv() => match got {
                Some(action) if !tracked.iter().any(|t| t.action.audit_id == action.audit_id) => {
                    count(&action, 1);
                    tracked.push(Tracked::new(action, config.deadline));
                }
                Some(_) => {}
                None if tracked.is_empty() => return,
                None => {}
            },
            () = sleep_until(next) => {}
        }
        while let Some(i) = tracked.iter().position(|t| t.next <= Instant::now()) {
            // Paced: at most READS_PER_SEC device reads a second, whatever is due.
            tokio::time::sleep_until(last_read + gap).await;
            last_read = Instant::now();
            let done = step(&reader, &audit, &mut tracked[i], max_poll).await;
            if done {
                count(&tracked.swap_remove(i).action, -1);
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Reads one device; returns whether its action is finished with.
async fn step(reader: &Reader, audit: &Sinks, t: &mut Tracked, max_poll: Duration) -> bool {
    let found = match reader.results(&t.action.device).await {
        Ok(results) => {
            crate::metrics::reconcile_poll(true);
            result_for(&results, &t.action).cloned()
        }
        Err(e) => {
            crate::metrics::reconcile_poll(false);
            tracing::warn!(audit_id = %t.action.audit_id, error = %e, "could not read the device's action results; retrying");
            None
        }
    };
    if let Some((state, r)) = found
        .as_ref()
        .and_then(|r| final_state(&r.action_state).map(|s| (s, r)))
    {
        complete(audit, &t.action, state, Some(r)).await;
        return true;
    }
    let now = Instant::now();
    if now >= t.deadline && !t.action.overdue {
        complete(audit, &t.action, "pending_past_deadline", found.as_ref()).await;
        count(&t.action, -1);
        t.action.overdue = true;
        count(&t.action, 1);
    }
    if now >= t.give_up {
        tracing::warn!(audit_id = %t.action.audit_id, "no final state for this device action; no longer followed up");
        return true;
    }
    t.interval = (t.interval * 2).min(max_poll);
    t.next = now + t.interval;
    false
}

/// Writes the `completion` record of `action`.
async fn complete(
    (audit, done): &Sinks,
    action: &Action,
    state: &'static str,
    result: Option<&ActionResult>,
) {
    let note = result.map(|r| {
        format!(
            "deviceActionResults: {} {} (started {}, updated {})",
            clip(&r.action_name),
            clip(&r.action_state),
            clip(r.start_date_time.as_deref().unwrap_or("-")),
            clip(r.last_updated_date_time.as_deref().unwrap_or("-"))
        )
    });
    let entry = Entry {
        kind: Some(Kind::Completion),
        time: now_rfc3339(),
        audit_id: action.audit_id.clone(),
        caller: action.caller.clone(),
        operation: Some(action.operation.clone()),
        device_id: Some(action.device.clone()),
        completion: Some(state.to_owned()),
        note: note.or_else(|| Some("no result for this action yet".to_owned())),
        approval_id: action.approval_id.clone(),
        ..Entry::default()
    };
    if let Some(approval_id) = &action.approval_id {
        // Nobody listening is fine: the record says it.
        let _ = done.send(Completed {
            approval_id: approval_id.clone(),
            audit_id: action.audit_id.clone(),
            state: state.to_owned(),
            note: entry.note.clone(),
        });
    }
    crate::metrics::reconcile_completion(state);
    if let Err(e @ (WriteError::Io(_) | WriteError::Stopped)) = audit.write(entry).await {
        tracing::error!(error = %e, audit_id = %action.audit_id, state, "could not write a completion record");
    }
}

/// `text` cut to [`MAX_NOTE_FIELD_CHARS`] characters (marked with '…' when cut).
fn clip(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(MAX_NOTE_FIELD_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]).into(),
        None => text.into(),
    }
}

/// Counts `action` in (or, with -1, out of) its gauge: pending, or overdue.
fn count(action: &Action, delta: i64) {
    match action.overdue {
        true => crate::metrics::reconcile_actions(0, delta),
        false => crate::metrics::reconcile_actions(delta, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::graph::ActionResult;
    use super::*;

    fn action(accepted: &str) -> Action {
        Action {
            audit_id: "a".into(),
            caller: None,
            operation: "managedDevices.wipe".into(),
            action: "wipe".into(),
            device: "0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb".into(),
            accepted: DateTime::parse_from_rfc3339(accepted)
                .unwrap()
                .with_timezone(&Utc),
            overdue: false,
            approval_id: None,
        }
    }

    fn result(name: &str, state: &str, started: &str) -> ActionResult {
        ActionResult {
            action_name: name.into(),
            action_state: state.into(),
            start_date_time: Some(started.into()),
            last_updated_date_time: None,
        }
    }

    #[test]
    fn graphs_text_in_a_note_is_clipped_on_a_character_boundary() {
        assert_eq!(clip("done"), "done");
        let long = "\u{e9}".repeat(MAX_NOTE_FIELD_CHARS + 10);
        let cut = clip(&long);
        assert_eq!(cut.chars().count(), MAX_NOTE_FIELD_CHARS + 1);
        assert!(cut.ends_with('…'));
        let exact = "x".repeat(MAX_NOTE_FIELD_CHARS);
        assert_eq!(clip(&exact), exact, "not cut at the bound");
    }

    #[test]
    fn the_newest_result_of_the_same_action_since_the_call_decides() {
        let a = action("2026-11-28T10:00:00Z");
        let results = [
            result("wipe", "failed", "2026-11-27T10:00:00Z"), // an older wipe
            result("retire", "done", "2026-11-28T10:00:05Z"),
            result("Wipe", "pending", "2026-11-28T10:00:01Z"),
        ];
        let r = result_for(&results, &a).unwrap();
        assert_eq!(r.action_state, "pending");
        assert_eq!(final_state(&r.action_state), None);
        assert_eq!(final_state("done"), Some("done"));
        assert_eq!(final_state("notSupported"), Some("not_supported"));
        assert_eq!(final_state("canceled"), Some("canceled"));
        assert_eq!(final_state("active"), None);
        assert!(
            result_for(&results[..2], &a).is_none(),
            "an older run is not this call's"
        );
    }

    #[test]
    fn only_accepted_device_actions_are_followed_up() {
        let e = |kind, status, op: &str| Entry {
            kind: Some(kind),
            upstream_status: Some(status),
            operation: Some(op.into()),
            device_id: Some("0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb".into()),
            time: "2026-11-28T10:00:00Z".into(),
            audit_id: "x".into(),
            ..Entry::default()
        };
        assert!(Action::of(&e(Kind::Outcome, 204, "managedDevices.wipe")).is_some());
        assert!(Action::of(&e(Kind::Outcome, 400, "managedDevices.wipe")).is_none());
        assert!(Action::of(&e(Kind::Intent, 204, "managedDevices.wipe")).is_none());
        assert!(Action::of(&e(Kind::Outcome, 204, "managedDevices.delete")).is_none());
        assert!(
            Action::of(&e(
                Kind::Outcome,
                204,
                "users.removeAllDevicesFromManagement"
            ))
            .is_none()
        );
    }
}
