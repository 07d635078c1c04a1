//! Approvals in the state store (its versioned records): made with the claims that keep out
//! a second pending request for the same action, a repeated idempotency key and a second
//! unreviewed break glass; changed only by a compare-and-swap from the version read, so of
//! two replicas moving one approval exactly one wins (the loser reads what won and tries
//! its step again, which then usually no longer applies). Every change taken is announced
//! by [`super::events`], from here.

use std::time::Duration;

use super::error::ApprovalError;
use super::events::Event;
use super::model::{State, Step, Stored, next};
use super::{Approvals, ms};
use crate::state::{Created, IndexEntry, NewRecord, StateStore, Swap, Swapped, Versioned};

/// How long a decided approval stays readable (`GET`, lists) after its last change; the
/// audit log keeps its history for good.
pub const RETENTION: Duration = Duration::from_secs(7 * 86_400);
/// The most approvals one list shows (newest first).
pub const MAX_LISTED: usize = 500;
/// How many times a step is tried again after another replica changed the approval first.
const RETRIES: usize = 16;

/// What a step asks of an approval read fresh from the store.
pub(super) struct Change {
    /// The step.
    pub step: Step,
    /// Who takes it (a reviewer, the canceling requester).
    pub by: Option<String>,
    /// Why, in words, for the audit record.
    pub note: Option<String>,
    /// The audit's name for what happened, when it says more than the step's.
    pub what: Option<&'static str>,
    /// Nothing worth announcing (a read of Intune's request that changed nothing).
    pub quiet: bool,
}

impl Change {
    /// `step`, taken by nobody in particular.
    pub fn of(step: Step) -> Self {
        Change {
            step,
            by: None,
            note: None,
            what: None,
            quiet: false,
        }
    }
}

/// What making an approval came to.
pub(super) enum Made {
    /// Made (and announced).
    New(Stored),
    /// The caller's idempotency key already made this one.
    Again(Stored),
}

impl Approvals {
    /// The key of approval `id`.
    fn key(state: &StateStore, id: &str) -> String {
        state.namespace().approval(id)
    }

    /// Makes `stored`, with the claim of the caller's idempotency key `idem` (a hex digest)
    /// if given; announces it as `what`.
    pub(super) async fn make(
        &self,
        state: &StateStore,
        stored: Stored,
        idem: Option<&str>,
        what: &'static str,
    ) -> Result<Made, ApprovalError> {
        let ns = state.namespace();
        let key = Self::key(state, &stored.resource.id);
        let value = encode(&stored)?;
        let idem_claim = idem.map(|d| ns.approval_claim("idem", d));
        let mut claims: Vec<&str> = Vec::new();
        claims.extend(idem_claim.as_deref());
        claims.extend(stored.held.open_claim.as_deref());
        claims.extend(stored.held.break_glass_claim.as_deref());
        let (all, open) = (ns.approval_index("all"), ns.approval_index("open"));
        let keep = ms(RETENTION + crate::policy::approval::MAX_TTL);
        let score = stored.held.created_ms;
        let indexes = [
            IndexEntry {
                key: &all,
                score,
                keep,
            },
            IndexEntry {
                key: &open,
                score,
                keep,
            },
        ];
        let pending = ns.approvals_pending(&stored.resource.caller);
        let bounded = (stored.resource.state == State::Pending)
            .then_some((pending.as_str(), self.settings.max_pending_per_caller));
        let new = NewRecord {
            key: &key,
            value: &value,
            ttl: self.ttl(&stored),
            claims: &claims,
            indexes: &indexes,
            bounded,
        };
        match state.record_create(&new).await? {
            Created::Created => {
                let event = Event {
                    approval: stored.resource.clone().into(),
                    from: None,
                    what,
                    by: None,
                    note: None,
                    notify: approvers(&stored),
                };
                self.events.emit(event).await;
                Ok(Made::New(stored))
            }
            Created::Full => Err(ApprovalError::TooManyPending(
                self.settings.max_pending_per_caller,
            )),
            Created::Exists => Err(ApprovalError::Damaged(stored.resource.id.clone())),
            Created::Claimed { index, holder } => {
                let existing = self.read(state, &holder).await?;
                let id = existing.as_ref().map_or_else(
                    || holder.rsplit(':').next().unwrap_or_default().to_owned(),
                    |(_, s)| s.resource.id.clone(),
                );
                match claims.get(index).copied() {
                    Some(c) if Some(c) == idem_claim.as_deref() => match existing {
                        Some((_, s))
                            if s.resource.request_sha256 == stored.resource.request_sha256 =>
                        {
                            Ok(Made::Again(s))
                        }
                        _ => Err(ApprovalError::KeyReused(id)),
                    },
                    Some(c) if Some(c) == stored.held.break_glass_claim.as_deref() => {
                        Err(ApprovalError::BreakGlassUnreviewed(id))
                    }
                    // Intune's hold is already an approval: this one joins it.
                    Some(c) if stored.resource.state == State::ExternalApprovalPending => {
                        tracing::debug!(claim = c, "an Intune hold attached to its approval");
                        existing
                            .map(|(_, s)| Made::Again(s))
                            .ok_or(ApprovalError::Duplicate(id))
                    }
                    _ => Err(ApprovalError::Duplicate(id)),
                }
            }
        }
    }

    /// Approval `id` and its version, if the store has it.
    pub async fn load(
        &self,
        state: &StateStore,
        id: &str,
    ) -> Result<Option<(u64, Stored)>, ApprovalError> {
        self.read(state, &Self::key(state, id)).await
    }

    async fn read(
        &self,
        state: &StateStore,
        key: &str,
    ) -> Result<Option<(u64, Stored)>, ApprovalError> {
        match state.record_get(key).await? {
            None => Ok(None),
            Some(v) => decode(key, &v).map(Some),
        }
    }

    /// Takes the step `decide` asks for on approval `id`, read fresh from the store (again
    /// after another replica changed it first); `decide` may refuse, or ask for nothing.
    /// Returns the approval as it is after.
    pub(super) async fn change(
        &self,
        state: &StateStore,
        id: &str,
        mut decide: impl FnMut(&mut Stored, u64) -> Result<Option<Change>, ApprovalError>,
    ) -> Result<Stored, ApprovalError> {
        let key = Self::key(state, id);
        let Some(mut current) = self.read(state, &key).await? else {
            return Err(ApprovalError::NotFound(id.to_owned()));
        };
        for _ in 0..RETRIES {
            let (version, before) = current;
            let mut after = before.clone();
            let Some(change) = decide(&mut after, self.clock.now_ms())? else {
                return Ok(before);
            };
            let from = before.resource.state;
            let to = next(from, change.step).ok_or(ApprovalError::NotNow {
                id: id.to_owned(),
                state: from,
                doing: change.step.as_str(),
            })?;
            after.resource.state = to;
            match self.swap(state, &key, version, &before, &after).await? {
                Swapped::Swapped(_) if change.quiet => return Ok(after),
                Swapped::Swapped(_) => {
                    let event = Event {
                        approval: after.resource.clone().into(),
                        from: Some(from),
                        what: change.what.unwrap_or(change.step.as_str()),
                        by: change.by,
                        note: change.note,
                        notify: approvers(&after),
                    };
                    self.events.emit(event).await;
                    return Ok(after);
                }
                Swapped::Stale(None) => return Err(ApprovalError::NotFound(id.to_owned())),
                Swapped::Stale(Some(seen)) => current = decode(&key, &seen)?,
            }
        }
        Err(ApprovalError::Damaged(id.to_owned()))
    }

    /// Writes `after` over `before` (at `version`), letting go of what `before`'s state
    /// held and `after`'s does not.
    async fn swap(
        &self,
        state: &StateStore,
        key: &str,
        version: u64,
        before: &Stored,
        after: &Stored,
    ) -> Result<Swapped, ApprovalError> {
        let ns = state.namespace();
        let (from, to) = (before.resource.state, after.resource.state);
        let mut release: Vec<&str> = Vec::new();
        if from.is_open() && !to.is_open() {
            release.extend(before.held.open_claim.as_deref());
        }
        if from == State::NeedsReview && to != State::NeedsReview {
            release.extend(before.held.break_glass_claim.as_deref());
        }
        let open = ns.approval_index("open");
        let unindex: Vec<&str> = match to.is_final() {
            true => vec![open.as_str()],
            false => Vec::new(),
        };
        let pending = ns.approvals_pending(&before.resource.caller);
        let leave = (from == State::Pending && to != State::Pending).then_some(pending.as_str());
        let value = encode(after)?;
        let swap = Swap {
            key,
            version,
            value: &value,
            ttl: self.ttl(after),
            release: &release,
            unindex: &unindex,
            leave,
        };
        Ok(state.record_swap(&swap).await?)
    }

    /// Approvals of the index `which` (`all` or `open`), newest first.
    pub(super) async fn list(
        &self,
        state: &StateStore,
        which: &str,
    ) -> Result<Vec<Stored>, ApprovalError> {
        let index = state.namespace().approval_index(which);
        let found = state.record_list(&index, MAX_LISTED).await?;
        let mut out = Vec::with_capacity(found.len());
        for (key, v) in found {
            match decode(&key, &v) {
                Ok((_, stored)) => out.push(stored),
                Err(e) => tracing::warn!(error = %e, "an approval in the store could not be read"),
            }
        }
        Ok(out)
    }

    /// How long the store keeps `stored`: past its last deadline by [`RETENTION`].
    fn ttl(&self, stored: &Stored) -> Duration {
        let h = &stored.held;
        let deadline = [Some(h.expires_ms), h.execute_by_ms, h.lease_ms]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(0);
        let left = deadline.saturating_sub(self.clock.now_ms());
        RETENTION + Duration::from_millis(left)
    }
}

/// Every approver of `stored`'s groups, once each: whom its changes concern.
fn approvers(stored: &Stored) -> Vec<String> {
    let mut all: Vec<String> = stored.held.approvers.iter().flatten().cloned().collect();
    all.sort();
    all.dedup();
    all
}

fn encode(stored: &Stored) -> Result<Vec<u8>, ApprovalError> {
    serde_json::to_vec(stored).map_err(|_| ApprovalError::Damaged(stored.resource.id.clone()))
}

fn decode(key: &str, v: &Versioned) -> Result<(u64, Stored), ApprovalError> {
    serde_json::from_slice(&v.value)
        .map(|s| (v.version, s))
        .map_err(|e| {
            tracing::warn!(error = %e, key, "an approval in the store could not be read");
            ApprovalError::Damaged(key.rsplit(':').next().unwrap_or_default().to_owned())
        })
}
