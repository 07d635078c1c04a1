//! Keeping time: every replica looks at the open approvals every
//! [`super::Settings::sweep_every`]: deadlines and leases ([`super::run::due`]), approved
//! requests nobody has started within [`super::run::START_GRACE`], and Intune's requests
//! whose read is due (a few per sweep, see [`super::maa::Settings::polls_per_sweep`]).

use std::future::Future;

use super::Approvals;
use super::model::{RunBy, State};
use super::ms;
use super::run::{Runner, START_GRACE, due};
use crate::state::StateStore;

impl Approvals {
    /// One look at every open approval: deadlines and leases, and approved requests no
    /// replica has started within [`START_GRACE`].
    pub async fn sweep(&self, state: &StateStore, runner: &dyn Runner) {
        let open = match self.list(state, "open").await {
            Ok(open) => open,
            Err(e) => {
                tracing::warn!(error = %e, "could not look at open approvals");
                return;
            }
        };
        let mut polls = self.settings.maa.polls_per_sweep;
        for s in open {
            let id = &s.resource.id;
            let now = self.clock.now_ms();
            let poll_due = s.resource.state == State::ExternalApprovalPending
                && s.held.maa_poll.as_ref().is_some_and(|p| now >= p.next_ms);
            let result = if due(&s, now).is_some() {
                self.expire_if_due(state, id).await
            } else if poll_due && polls > 0 {
                // Paced: a few reads per sweep; the rest wait for the next one.
                polls -= 1;
                self.poll_intune(state, runner, id).await
            } else if s.resource.state == State::Approved
                && s.resource.run_by == RunBy::Gateway
                && s.held.execute_by_ms.is_some_and(|by| {
                    let approved = by.saturating_sub(s.held.execute_within_ms);
                    now >= approved + ms(START_GRACE)
                })
            {
                self.run_approved(state, runner, id).await.map(drop)
            } else {
                Ok(())
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, approval_id = %id, "could not move an approval past its deadline");
            }
        }
    }

    /// Sweeps every [`super::Settings::sweep_every`] until `shutdown` resolves.
    pub async fn keep_time(
        &self,
        state: &StateStore,
        runner: &dyn Runner,
        shutdown: impl Future<Output = ()>,
    ) {
        let mut every = tokio::time::interval(self.settings.sweep_every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = every.tick() => self.sweep(state, runner).await,
            }
        }
    }
}
