//! A canary in progress, run by this process while it holds the lock: the loop that
//! takes it from step to step, following the state of its record (running, paused,
//! aborting) to its end, done or rolled back; and the writes of that record.
//!
//! The record is written at transitions only (a step starts, the final step awaits
//! confirmation, done, rolled back), because LB agents watch `<prefix>/apps/`.

use std::time::Duration;

use disco::change::{ChangeSet, CommitError};
use disco::model::now_rfc3339;
use disco::rollout::{Rollout, RolloutState};
use disco::store::Kv;

use super::event::Event;
use super::hooks::{GateRequest, Gates, Notifier};
use super::interrupt::Interrupt;
use super::lock::Lock;
use super::output::Events;
use crate::context::Ctx;
use crate::exit::{self, Failure, Result};

/// A canary in progress, run by this process.
pub struct Runner<'a> {
    pub(super) ctx: &'a Ctx,
    pub(super) app: String,
    pub(super) rollout: Rollout,
    /// The rollout key's mod revision as last read or written here.
    rollout_rev: i64,
    lock: Option<Lock>,
    pub(super) events: Events,
    /// Longest wait for the agents after each transaction.
    pub(super) timeout: Duration,
    pub(super) interrupt: Interrupt,
    /// The revision of the last step committed here.
    pub(super) last_revision: i64,
    /// `--gate`: asked before each step.
    gates: Gates,
    /// The last step that passed here and its judgement in words: the next step's
    /// audit record says it.
    pub(super) passed_verdict: Option<(usize, String)>,
}

/// What the gates said of a step.
enum Gate {
    /// Every gate answered 2xx (or there is none).
    Open,
    /// A gate refused or did not answer: why.
    Closed(String),
    /// SIGINT/SIGTERM while asking: roll back, why.
    Interrupted(String),
}

/// A canary's webhooks (`--gate`, `--notify`): not recorded, given to each run.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    /// Asked before each step; anything but a 2xx pauses the canary.
    pub gates: Vec<String>,
    /// Sent every event.
    pub notify: Vec<String>,
}

/// How a step ended, when not with an error.
pub(super) enum StepEnd {
    /// Round the loop again: the step passed, or its transaction met a concurrent
    /// change (a pause, an abort, an operator's change).
    Again,
    /// Roll back, and end with `code`.
    RollBack { reason: String, code: i32 },
}

impl<'a> Runner<'a> {
    /// A runner of `rollout` (as written at `rollout_rev`) holding `lock`; waits up to
    /// `timeout` for the agents after each transaction.
    pub fn new(
        ctx: &'a Ctx,
        app: &str,
        rollout: Rollout,
        rollout_rev: i64,
        lock: Lock,
        timeout: Duration,
        hooks: Hooks,
    ) -> Runner<'a> {
        let mut events = Events::new(app, ctx.output);
        events.notify_to(Notifier::start(hooks.notify));
        Runner {
            ctx,
            app: app.to_string(),
            rollout,
            rollout_rev,
            lock: Some(lock),
            events,
            timeout,
            interrupt: Interrupt::install(app),
            last_revision: 0,
            gates: Gates::new(hooks.gates),
            passed_verdict: None,
        }
    }

    /// The event printer, for what the command says before the run.
    pub fn events(&mut self) -> &mut Events {
        &mut self.events
    }

    /// Runs the canary to its end and gives the lock up: exit 0 when every step
    /// passed, [`exit::ROLLED_BACK`] after a rollback, 3 when the agents did not apply a
    /// step (rolled back too), 1 on errors (the canary stays recorded for `--resume`).
    pub async fn run(mut self) -> Result {
        let result = self.drive().await;
        if let Some(lock) = self.lock.take() {
            if !lock.is_lost() {
                lock.release(self.ctx).await;
            }
        }
        // After everything is done (a rollback included): the last notifications.
        self.events.drain().await;
        result
    }

    /// Rolls back right away (`discoctl abort` of a canary nobody runs).
    pub async fn abort(mut self) -> Result {
        let reason = self.abort_reason();
        let result = self.roll_back(reason, exit::ROLLED_BACK).await;
        if let Some(lock) = self.lock.take() {
            lock.release(self.ctx).await;
        }
        self.events.drain().await;
        result
    }

    /// The number of steps.
    pub(super) fn n(&self) -> usize {
        self.rollout.steps.len()
    }

    /// Step `number` (from 1) in words.
    pub(super) fn describe(&self, number: usize) -> String {
        self.rollout.steps[number - 1].describe(&self.rollout.version)
    }

    pub(super) fn abort_reason(&self) -> String {
        self.rollout
            .reason
            .clone()
            .unwrap_or_else(|| "aborted".into())
    }

    fn lock_lost(&self) -> Failure {
        Failure::new(
            exit::ERROR,
            anyhow::anyhow!(
                "lost the canary lock of {app} (its lease expired: etcd unreachable for longer than --lock-ttl?); stopped acting. The canary stays recorded at step {}/{}: take it over with `discoctl canary {app} --resume` or roll it back with `discoctl abort {app}`",
                self.rollout.step,
                self.n(),
                app = self.app
            ),
        )
    }

    /// Fails once the lock is lost: another process may act on the canary now.
    pub(super) fn check_lock(&self) -> Result {
        match &self.lock {
            Some(lock) if !lock.is_lost() => Ok(()),
            _ => Err(self.lock_lost()),
        }
    }

    async fn drive(&mut self) -> Result {
        let mut announced: Option<usize> = None;
        let mut pause_announced = false;
        let mut no_agents_noted = false;
        loop {
            self.check_lock()?;
            match self.rollout.state {
                RolloutState::Aborting => {
                    let reason = self.abort_reason();
                    return self.roll_back(reason, exit::ROLLED_BACK).await;
                }
                RolloutState::Paused => {
                    if !pause_announced {
                        self.emit_paused();
                    }
                    pause_announced = false;
                    if let Some(reason) = self.wait_while_paused().await? {
                        return self.roll_back(reason, exit::ROLLED_BACK).await;
                    }
                    continue;
                }
                RolloutState::Done | RolloutState::RolledBack => return Ok(()),
                RolloutState::Running => {}
            }
            if self.rollout.passed >= self.n() {
                if self.finish().await? {
                    return Ok(());
                }
                continue;
            }
            if self.rollout.awaits_confirmation() {
                pause_announced = self.ask_confirmation().await?;
                continue;
            }
            let number = self.rollout.passed + 1;
            if announced != Some(number) {
                match self.ask_gates(number).await? {
                    Gate::Open => {}
                    Gate::Closed(why) => {
                        let why = format!(
                            "{why}; `discoctl resume {app}` asks again, `discoctl abort {app}` rolls back",
                            app = self.app
                        );
                        pause_announced = self.pause_for(why, "gate").await?;
                        continue;
                    }
                    Gate::Interrupted(reason) => {
                        return self.roll_back(reason, exit::ROLLED_BACK).await
                    }
                }
                announced = Some(number);
                self.events.emit(Event::StepStarted {
                    step: number,
                    of: self.n(),
                    target: self.rollout.steps[number - 1],
                    description: self.describe(number),
                });
            }
            if let StepEnd::RollBack { reason, code } =
                self.step(number, &mut no_agents_noted).await?
            {
                return self.roll_back(reason, code).await;
            }
        }
    }

    /// Re-reads the canary record and takes over what `pause`, `resume` and `abort`
    /// change (state, reason, who, confirmation). True if it changed.
    pub(super) async fn refresh(&mut self) -> Result<bool> {
        let Some((kv, record)) = super::record::read(self.ctx, &self.app).await? else {
            return Err(Failure::new(
                exit::ERROR,
                anyhow::anyhow!(
                    "the canary record of {} was deleted while the canary ran; stopped",
                    self.app
                ),
            ));
        };
        if record.lease != self.rollout.lease {
            return Err(self.lock_lost());
        }
        if kv.mod_revision == self.rollout_rev {
            return Ok(false);
        }
        self.rollout_rev = kv.mod_revision;
        self.rollout.state = record.state;
        self.rollout.reason = record.reason;
        self.rollout.changed_by = record.changed_by;
        self.rollout.confirmed = record.confirmed;
        Ok(true)
    }

    /// Commits `set` with `next` as the canary record, if the record and the lock are
    /// as this process last saw them. `None` on a conflict (the record was re-read).
    pub(super) async fn commit(
        &mut self,
        mut set: ChangeSet,
        mut next: Rollout,
    ) -> Result<Option<i64>> {
        let key = super::record::key(self.ctx, &self.app);
        let read = Kv {
            key: key.clone(),
            value: Vec::new(),
            mod_revision: self.rollout_rev,
            create_revision: 0,
            lease: 0,
        };
        next.updated_at = now_rfc3339();
        set.expect(&key, Some(&read));
        match &self.lock {
            Some(lock) => lock.guard(&mut set),
            None => return Err(self.lock_lost()),
        }
        set.put(&key, serde_json::to_vec(&next)?);
        match set.commit(&self.ctx.store).await {
            Ok(revision) => {
                self.rollout = next;
                self.rollout_rev = revision;
                Ok(Some(revision))
            }
            Err(CommitError::Conflict(_)) => {
                self.check_lock()?;
                self.refresh().await?;
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Asks the `--gate` URLs whether step `number` may be applied.
    async fn ask_gates(&mut self, number: usize) -> Result<Gate> {
        if self.gates.is_empty() {
            return Ok(Gate::Open);
        }
        let records = disco::stats::read(&self.ctx.store, &self.ctx.keyspace, &self.app).await?;
        let request = GateRequest {
            app: &self.app,
            version: &self.rollout.version,
            step: number,
            of: self.n(),
            description: self.describe(number),
            passed: self.rollout.passed,
            statistics: disco::stats::merge(&records),
            at: now_rfc3339(),
        };
        Ok(tokio::select! {
            answer = self.gates.ask(&request) => answer.map_or(Gate::Open, Gate::Closed),
            signal = self.interrupt.fired() => Gate::Interrupted(format!("interrupted by {signal} while asking the gates")),
        })
    }

    /// Pauses the canary for `why` (a gate's refusal, an inconclusive verdict), `by`
    /// whom (`gate`, `analysis`). True once paused (announced); false on a conflict
    /// (re-read; the caller decides).
    pub(super) async fn pause_for(&mut self, why: String, by: &str) -> Result<bool> {
        let mut next = self.rollout.clone();
        next.state = RolloutState::Paused;
        next.reason = Some(why);
        next.changed_by = Some(by.into());
        if self.commit(ChangeSet::default(), next).await?.is_none() {
            return Ok(false);
        }
        self.emit_paused();
        Ok(true)
    }

    /// Records the canary as done. False on a conflict (re-read; the loop decides).
    async fn finish(&mut self) -> Result<bool> {
        let mut next = self.rollout.clone();
        next.state = RolloutState::Done;
        next.reason = None;
        if self.commit(ChangeSet::default(), next).await?.is_none() {
            return Ok(false);
        }
        self.events.emit(Event::Completed {
            version: self.rollout.version.clone(),
            steps: self.n(),
            revision: self.last_revision,
        });
        Ok(true)
    }
}
