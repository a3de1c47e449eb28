//! One step of a canary: one transaction (the step's slot flips or policy, its audit
//! record and the canary's record), a wait until every live LB agent has applied it,
//! the observation, and what follows: the next step or a rollback.

use disco::change::ChangeSet;
use disco::converge;
use disco::model::{HistoryAction, HistoryRecord, Policy, PolicyChange};
use disco::rollout::{plan_step, StepChange};

use super::event::{Event, VersionCounts, Written};
use super::observe::Outcome;
use super::runner::{Runner, StepEnd};
use crate::app_state::{self, AppState};
use crate::commit;
use crate::exit::{self, Result};

/// A step committed.
struct Committed {
    revision: i64,
    change: StepChange,
    /// The policy before the change.
    before: Option<Policy>,
    history_seq: Option<u64>,
}

/// How applying a step ended.
enum Applied {
    /// Committed.
    Committed(Box<Committed>),
    /// Something it read changed (a pause, an abort, an operator's change): read again.
    Conflict,
    /// The step cannot be planned any more (an endpoint went away): why.
    Refused(String),
}

impl Runner<'_> {
    /// Runs step `number`: applies it, waits for the agents, observes it. Notes once
    /// (`no_agents_noted`) when no LB agent is there to apply it.
    pub(super) async fn step(
        &mut self,
        number: usize,
        no_agents_noted: &mut bool,
    ) -> Result<StepEnd> {
        let n = self.n();
        let description = self.describe(number);
        let roll_back = |reason| StepEnd::RollBack {
            reason,
            code: exit::ROLLED_BACK,
        };
        let feed = self.open_feed().await?;
        let committed = match self.apply_step(number).await? {
            Applied::Committed(committed) => *committed,
            Applied::Conflict => return Ok(StepEnd::Again),
            Applied::Refused(why) => {
                return Ok(roll_back(format!(
                    "step {number}/{n} ({description}) cannot be applied: {why}"
                )))
            }
        };
        self.last_revision = committed.revision;
        let waited = tokio::select! {
            w = converge::wait(&self.ctx.store, &self.ctx.keyspace, committed.revision, self.timeout) => w?,
            signal = self.interrupt.fired() => {
                return Ok(roll_back(format!("interrupted by {signal}")));
            }
        };
        let not_applied = (!waited.converged()).then(|| {
            format!(
                "step {number}/{n} ({description}): {} of {} live LB agents did not apply it within {}: {}",
                waited.lagging.len(),
                waited.agents.len(),
                humantime::format_duration(self.timeout),
                waited.lagging_list()
            )
        });
        let no_agents = waited.agents.is_empty();
        self.events.emit(Event::Applied {
            step: number,
            of: n,
            written: Written::new(
                &committed.change,
                committed.before.as_ref(),
                committed.revision,
                committed.history_seq,
                waited,
            ),
        });
        if let Some(reason) = not_applied {
            return Ok(StepEnd::RollBack {
                reason,
                code: exit::TIMEOUT,
            });
        }
        if no_agents && !*no_agents_noted {
            *no_agents_noted = true;
            eprintln!(
                "note: no live LB agent under {}: nothing applies the steps, and no traffic is counted",
                self.ctx.keyspace.agents()
            );
        }
        Ok(match self.observe(number, feed).await? {
            Outcome::Passed(obs, judged) => {
                self.rollout.passed = number;
                let version = &self.rollout.version;
                let explained = match &judged {
                    Some(j) => j.explain(),
                    None => "passed without data (--on-no-data pass)".into(),
                };
                self.passed_verdict = Some((number, explained.clone()));
                let passed = Event::StepPassed {
                    step: number,
                    of: n,
                    canary: VersionCounts::new(version, &obs.canary),
                    stable: VersionCounts::new("stable", &obs.stable),
                    analysis: judged.map(|j| j.checks).unwrap_or_default(),
                    explained,
                };
                self.events.emit(passed);
                StepEnd::Again
            }
            Outcome::WouldFail { why, after, obs } => {
                self.rollout.passed = number;
                let version = &self.rollout.version;
                self.events.emit(Event::StepWouldFail {
                    step: number,
                    of: n,
                    reason: why,
                    failed_after_ms: after.as_millis() as u64,
                    canary: VersionCounts::new(version, &obs.canary),
                    stable: VersionCounts::new("stable", &obs.stable),
                });
                StepEnd::Again
            }
            Outcome::Failed(why) => roll_back(format!("step {number}/{n} ({description}): {why}")),
            Outcome::Stopped(reason) => roll_back(reason),
        })
    }

    /// Plans step `number` against the current state and commits it with the canary's
    /// record at that step.
    async fn apply_step(&mut self, number: usize) -> Result<Applied> {
        let state = app_state::read(self.ctx, &self.app).await?;
        if let Err(e) = state.policy() {
            return Ok(Applied::Refused(format!("{:#}", e.error)));
        }
        let change = match plan_step(&state.app, &self.rollout, number) {
            Ok(change) => change,
            Err(e) => return Ok(Applied::Refused(e.to_string())),
        };
        let mut next = self.rollout.clone();
        next.step = number;
        let mut set = ChangeSet::default();
        let mut reason = format!(
            "canary step {number}/{}: {}",
            self.n(),
            self.describe(number)
        );
        if let Some((passed, why)) = &self.passed_verdict {
            reason.push_str(&format!(" (step {passed} passed: {why})"));
        }
        self.stage(&mut set, &state, &change, HistoryAction::Canary, reason)
            .await?;
        let history_seq = set.recorded_seq();
        Ok(match self.commit(set, next).await? {
            Some(revision) => Applied::Committed(Box::new(Committed {
                revision,
                change,
                before: state.app.policy.clone(),
                history_seq,
            })),
            None => Applied::Conflict,
        })
    }

    /// Adds `change` to `set`: the routes and policy as read in `state` must not have
    /// moved, the flips and the policy are written, with an audit record (`action`,
    /// `reason`) when anything changes. Steps and the rollback alike.
    pub(super) async fn stage(
        &self,
        set: &mut ChangeSet,
        state: &AppState,
        change: &StepChange,
        action: HistoryAction,
        reason: String,
    ) -> Result {
        commit::guard_routes(self.ctx, state, set);
        let policy_key = commit::guard_policy(self.ctx, state, set);
        commit::put_flips(self.ctx, state, set, &change.plan);
        if let Some(policy) = &change.policy {
            set.put(&policy_key, serde_json::to_vec(policy)?);
        }
        if !change.is_empty() {
            let record = HistoryRecord::new(
                &self.ctx.actor,
                action,
                change.plan.from_map(),
                change.plan.to_map(),
                change.policy.as_ref().map(|p| PolicyChange {
                    from: state.app.policy.clone(),
                    to: Some(p.clone()),
                }),
                Some(reason),
            );
            set.record(&self.ctx.store, &self.ctx.keyspace, &self.app, record)
                .await?;
        }
        Ok(())
    }
}
