//! A canary's rollback: back to the state before the canary (routes, dark canary,
//! weights) in one transaction with its audit record and the record's state
//! `rolled_back`, then a wait for the agents.

use disco::change::ChangeSet;
use disco::converge;
use disco::model::{HistoryAction, Policy};
use disco::rollout::{plan_restore, restore_warnings, RolloutState, StepChange};

use super::event::{Event, Written};
use super::runner::Runner;
use crate::app_state;
use crate::exit::{self, Failure, Result};

/// A rollback committed.
struct Committed {
    revision: i64,
    history_seq: Option<u64>,
    change: StepChange,
    /// The policy before it.
    before: Option<Policy>,
}

impl Runner<'_> {
    /// Rolls back because of `reason` and waits for the agents. Ends with `code` (or 3
    /// when the agents do not apply the rollback in time).
    pub(super) async fn roll_back(&mut self, reason: String, code: i32) -> Result {
        let version = self.rollout.version.clone();
        let Some(committed) = self.commit_rollback(&reason).await? else {
            return Err(Failure::new(
                exit::CONFLICT,
                anyhow::anyhow!(
                    "could not roll the canary of {version} on {} back: ten concurrent changes in a row; run `discoctl abort {}`",
                    self.app,
                    self.app
                ),
            ));
        };
        let revision = committed.revision;
        let waited =
            converge::wait(&self.ctx.store, &self.ctx.keyspace, revision, self.timeout).await?;
        let not_applied = (!waited.converged()).then(|| waited.lagging_list());
        self.events.emit(Event::RolledBack {
            version: version.clone(),
            step: self.rollout.step,
            of: self.n(),
            reason: reason.clone(),
            written: Written::new(
                &committed.change,
                committed.before.as_ref(),
                revision,
                committed.history_seq,
                waited,
            ),
        });
        if let Some(lagging) = not_applied {
            return Err(exit::timeout(format!(
                "canary of {version} on {} rolled back at revision {revision} ({reason}), but timed out after {} waiting for LB agents to apply the rollback: {lagging}",
                self.app,
                humantime::format_duration(self.timeout),
            )));
        }
        Err(Failure::new(
            code,
            anyhow::anyhow!("canary of {version} on {} rolled back: {reason}", self.app),
        ))
    }

    /// Commits the restore of the state before the canary, trying up to ten times
    /// against concurrent changes; `None` if every try met one.
    async fn commit_rollback(&mut self, reason: &str) -> Result<Option<Committed>> {
        let version = self.rollout.version.clone();
        for _ in 0..10 {
            self.check_lock()?;
            let state = app_state::read(self.ctx, &self.app).await?;
            let mut change = plan_restore(&state.app, &self.rollout.original);
            if change.policy.is_some() && state.policy().is_err() {
                eprintln!(
                    "warning: {}'s stored policy is unreadable: its dark canary and weights are not restored",
                    self.app
                );
                change.policy = None;
            }
            for warning in restore_warnings(&state.app, &change) {
                eprintln!("warning: rolling {} back: {warning}", self.app);
            }
            let mut next = self.rollout.clone();
            next.state = RolloutState::RolledBack;
            next.reason = Some(reason.to_string());
            let mut set = ChangeSet::default();
            let why = format!("canary of {version} rolled back: {reason}");
            self.stage(&mut set, &state, &change, HistoryAction::Rollback, why)
                .await?;
            let history_seq = set.recorded_seq();
            if let Some(revision) = self.commit(set, next).await? {
                return Ok(Some(Committed {
                    revision,
                    history_seq,
                    change,
                    before: state.app.policy.clone(),
                }));
            }
        }
        Ok(None)
    }
}
