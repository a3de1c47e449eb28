//! Runs a canary once it holds the lock: for each step, one transaction (the slot flips
//! or policy of the step, its audit record and the canary's state), a wait until every
//! live LB agent has applied it, an observation of the published traffic statistics
//! for the interval, and a verdict: the next step, or an automatic rollback to the
//! state before the canary. `discoctl pause|resume|abort` from another terminal change
//! the state in etcd; the runner reads it twice a second and follows.
//!
//! The canary's state is written at transitions only (a step starts, the final step
//! awaits confirmation, done, rolled back), because LB agents watch `<prefix>/apps/`.

use std::time::Duration;

use disco::change::{ChangeSet, CommitError};
use disco::converge;
use disco::model::{now_rfc3339, HistoryRecord, Policy, PolicyChange};
use disco::rollout::{
    judge, plan_restore, plan_step, restore_warnings, Observation, OnNoData, Rollout, RolloutState,
    StepChange, Verdict,
};
use disco::stats::{self, AppStats};
use disco::store::Kv;
use disco::Key;
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::app_state::{self, AppState};
use crate::context::Ctx;
use crate::events::{counts_json, counts_text, duration_text, Events};
use crate::exit::{self, Failure, Result};
use crate::lock::Lock;

/// Reads `app`'s canary record: the key as read and the record. Exit 5 if unreadable.
pub async fn read_record(ctx: &Ctx, app: &str) -> Result<Option<(Kv, Rollout)>> {
    let key = ctx.keyspace.key(&Key::Rollout {
        app: app.to_string(),
    });
    let (_, kv) = ctx.store.get(&key).await?;
    let Some(kv) = kv else {
        return Ok(None);
    };
    let rollout = serde_json::from_slice(&kv.value).map_err(|e| {
        exit::precondition(format!(
            "{key} holds an unreadable canary record ({e}); check it with `etcdctl get {key}` and delete it if no canary runs"
        ))
    })?;
    Ok(Some((kv, rollout)))
}

/// SIGINT/SIGTERM: the first one asks the canary to roll back; a second one exits at
/// once, leaving the canary to `--resume` (its lock expires with the lease).
#[derive(Clone)]
pub struct Interrupt {
    rx: watch::Receiver<Option<&'static str>>,
}

impl Interrupt {
    /// Starts listening for SIGINT and SIGTERM.
    pub fn install(app: &str) -> Interrupt {
        let (tx, rx) = watch::channel(None);
        let app = app.to_string();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            let first = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
            let _ = tx.send(Some(first));
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
            eprintln!(
                "discoctl: second signal: exiting without rolling back; the canary stays recorded, take it over with `discoctl canary {app} --resume` or roll it back with `discoctl abort {app}`"
            );
            std::process::exit(130);
        });
        Interrupt { rx }
    }

    /// Resolves with the signal's name once one arrived.
    async fn fired(&self) -> &'static str {
        let mut rx = self.rx.clone();
        let name = match rx.wait_for(Option::is_some).await {
            Ok(v) => *v,
            Err(_) => None,
        };
        match name {
            Some(name) => name,
            None => std::future::pending().await,
        }
    }
}

/// How a step's observation ended.
enum Outcome {
    /// The step passed.
    Passed(Observation),
    /// The step failed its analysis: why.
    Failed(String),
    /// Aborted or interrupted: why.
    Stopped(String),
}

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

/// A canary in progress, run by this process.
pub struct Runner<'a> {
    ctx: &'a Ctx,
    app: String,
    rollout: Rollout,
    /// The rollout key's mod revision as last read or written here.
    rollout_rev: i64,
    lock: Option<Lock>,
    events: Events,
    /// Longest wait for the agents after each transaction.
    timeout: Duration,
    interrupt: Interrupt,
    /// The revision of the last step committed here.
    last_revision: i64,
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
    ) -> Runner<'a> {
        Runner {
            ctx,
            app: app.to_string(),
            rollout,
            rollout_rev,
            lock: Some(lock),
            events: Events::new(app, ctx.output),
            timeout,
            interrupt: Interrupt::install(app),
            last_revision: 0,
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
        result
    }

    /// Rolls back right away (`discoctl abort` of a canary nobody runs).
    pub async fn abort(mut self) -> Result {
        let reason = self.abort_reason();
        let result = self.roll_back(reason, exit::ROLLED_BACK).await;
        if let Some(lock) = self.lock.take() {
            lock.release(self.ctx).await;
        }
        result
    }

    fn n(&self) -> usize {
        self.rollout.steps.len()
    }

    fn describe(&self, number: usize) -> String {
        self.rollout.steps[number - 1].describe(&self.rollout.version)
    }

    fn abort_reason(&self) -> String {
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

    fn check_lock(&self) -> Result {
        match &self.lock {
            Some(lock) if !lock.is_lost() => Ok(()),
            _ => Err(self.lock_lost()),
        }
    }

    async fn drive(&mut self) -> Result {
        let mut started: Option<usize> = None;
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
            let n = self.n();
            if self.rollout.passed >= n {
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
            let desc = self.describe(number);
            if started != Some(number) {
                started = Some(number);
                self.events.emit(
                    "step_started",
                    json!({"step": number, "of": n, "target": self.rollout.steps[number - 1], "description": desc}),
                    format!("step {number}/{n}: {desc}"),
                );
            }
            let Committed {
                revision,
                change,
                before,
                history_seq,
            } = match self.apply_step(number).await? {
                Applied::Committed(committed) => *committed,
                Applied::Conflict => continue,
                Applied::Refused(why) => {
                    let reason = format!("step {number}/{n} ({desc}) cannot be applied: {why}");
                    return self.roll_back(reason, exit::ROLLED_BACK).await;
                }
            };
            self.last_revision = revision;
            let waited = tokio::select! {
                w = converge::wait(&self.ctx.store, &self.ctx.keyspace, revision, self.timeout) => w?,
                signal = self.interrupt.fired() => {
                    return self.roll_back(format!("interrupted by {signal}"), exit::ROLLED_BACK).await;
                }
            };
            let changed = describe_change(&change, before.as_ref());
            self.events.emit(
                "applied",
                json!({
                    "step": number, "of": n, "revision": revision, "changed": !change.is_empty(),
                    "slots": change.plan.flips, "policy": change.policy, "history_seq": history_seq,
                    "agents": waited.agents, "lagging": waited.lagging, "wait_ms": waited.wait_ms,
                }),
                if waited.converged() {
                    format!(
                        "step {number}/{n}: {changed} (revision {revision}); applied by {} LB agent{} in {} ms",
                        waited.agents.len(),
                        if waited.agents.len() == 1 { "" } else { "s" },
                        waited.wait_ms
                    )
                } else {
                    format!("step {number}/{n}: {changed} (revision {revision}); NOT applied by every LB agent")
                },
            );
            if !waited.converged() {
                let lagging: Vec<String> = waited.lagging.iter().map(ToString::to_string).collect();
                let reason = format!(
                    "step {number}/{n} ({desc}): {} of {} live LB agents did not apply it within {}: {}",
                    waited.lagging.len(),
                    waited.agents.len(),
                    humantime::format_duration(self.timeout),
                    lagging.join("; ")
                );
                return self.roll_back(reason, exit::TIMEOUT).await;
            }
            if waited.agents.is_empty() && !no_agents_noted {
                no_agents_noted = true;
                eprintln!(
                    "note: no live LB agent under {}: nothing applies the steps, and no traffic is counted",
                    self.ctx.keyspace.agents()
                );
            }
            match self.observe(number).await? {
                Outcome::Passed(obs) => {
                    self.rollout.passed = number;
                    let version = self.rollout.version.clone();
                    self.events.emit(
                        "step_passed",
                        json!({"step": number, "of": n, "canary": counts_json(&version, &obs.canary), "stable": counts_json("stable", &obs.stable)}),
                        format!(
                            "step {number}/{n} passed: {version} {}; others {}",
                            counts_text(&obs.canary),
                            counts_text(&obs.stable)
                        ),
                    );
                }
                Outcome::Failed(why) => {
                    let reason = format!("step {number}/{n} ({desc}): {why}");
                    return self.roll_back(reason, exit::ROLLED_BACK).await;
                }
                Outcome::Stopped(reason) => {
                    return self.roll_back(reason, exit::ROLLED_BACK).await;
                }
            }
        }
    }

    /// Re-reads the canary record and takes over what `pause`, `resume` and `abort`
    /// change (state, reason, who, confirmation). True if it changed.
    async fn refresh(&mut self) -> Result<bool> {
        let Some((kv, record)) = read_record(self.ctx, &self.app).await? else {
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
    async fn commit(&mut self, mut set: ChangeSet, mut next: Rollout) -> Result<Option<i64>> {
        let key = self.ctx.keyspace.key(&Key::Rollout {
            app: self.app.clone(),
        });
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

    /// Adds `change` to `set`: the routes and policy as read in `state` must not have
    /// moved, the flips and the policy are written, with an audit record.
    async fn stage(
        &self,
        set: &mut ChangeSet,
        state: &AppState,
        change: &StepChange,
        action: &str,
        reason: String,
    ) -> Result {
        crate::commit::guard_routes(self.ctx, state, set);
        let policy_key = self.ctx.keyspace.key(&Key::Policy {
            app: self.app.clone(),
        });
        set.expect(&policy_key, state.policy.as_ref());
        for flip in &change.plan.flips {
            set.put(&state.route_key(self.ctx, &flip.instance), flip.to.as_str());
        }
        if let Some(policy) = &change.policy {
            set.put(&policy_key, serde_json::to_vec(policy)?);
        }
        if !change.is_empty() {
            let record = HistoryRecord {
                seq: 0,
                at: now_rfc3339(),
                actor: self.ctx.actor.clone(),
                action: action.into(),
                from: change.plan.from_map(),
                to: change.plan.to_map(),
                reason: Some(reason),
                policy: change.policy.as_ref().map(|p| PolicyChange {
                    from: state.app.policy.clone(),
                    to: Some(p.clone()),
                }),
                id: None,
            };
            set.record(&self.ctx.store, &self.ctx.keyspace, &self.app, record)
                .await?;
        }
        Ok(())
    }

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
        let reason = format!(
            "canary step {number}/{}: {}",
            self.n(),
            self.describe(number)
        );
        self.stage(&mut set, &state, &change, "canary", reason)
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

    async fn read_stats(&self) -> Result<Vec<AppStats>> {
        Ok(stats::read(&self.ctx.store, &self.ctx.keyspace, &self.app).await?)
    }

    /// The statistics once every agent has published a record written after this call
    /// (or dropped out), so that the last requests of the interval are counted; at most
    /// two publishing intervals plus a second.
    async fn read_fresh_stats(&self) -> Result<Vec<AppStats>> {
        let first = self.read_stats().await?;
        let longest = first.iter().map(|r| r.interval_ms).max().unwrap_or(0);
        let deadline = Instant::now() + Duration::from_millis(2 * longest + 1000);
        loop {
            let now = self.read_stats().await?;
            let fresh = first.iter().all(|old| {
                now.iter()
                    .find(|r| r.agent == old.agent)
                    .is_none_or(|r| r.at != old.at || r.started_at != old.started_at)
            });
            if fresh || Instant::now() >= deadline {
                return Ok(now);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Observes step `number` for the interval (paused time does not count), judging
    /// the counts so far every second: over a threshold (with enough requests) fails at
    /// once; the verdict at the end decides, with `--on-no-data` for too few requests.
    async fn observe(&mut self, number: usize) -> Result<Outcome> {
        let n = self.n();
        let version = self.rollout.version.clone();
        let analysis = self.rollout.analysis.clone();
        let interval = Duration::from_millis(analysis.interval_ms);
        let desc = self.describe(number);
        let before = self.read_stats().await?;
        if before.is_empty() && number == 1 {
            eprintln!(
                "note: no LB agent publishes traffic statistics for {} (HAProxy stats_socket, nginx access_log): steps will have no data (--on-no-data {})",
                self.app,
                serde_json::to_value(analysis.on_no_data)?.as_str().unwrap_or("?")
            );
        }
        let mut budget = interval;
        let mut extended = false;
        let mut observed = Duration::ZERO;
        let mut last = Instant::now();
        let mut paused = self.rollout.state == RolloutState::Paused;
        let mut obs = Observation::default();
        let mut last_read: Option<Instant> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                signal = self.interrupt.fired() => {
                    return Ok(Outcome::Stopped(format!("interrupted by {signal} during step {number}/{n}")));
                }
            }
            self.check_lock()?;
            let now = Instant::now();
            if !paused {
                observed += now - last;
            }
            last = now;
            if self.refresh().await? {
                match self.rollout.state {
                    RolloutState::Aborting => {
                        return Ok(Outcome::Stopped(format!(
                            "{} during step {number}/{n}",
                            self.abort_reason()
                        )))
                    }
                    RolloutState::Paused if !paused => {
                        paused = true;
                        self.emit_paused();
                    }
                    RolloutState::Running if paused => {
                        paused = false;
                        self.emit_resumed();
                    }
                    _ => {}
                }
            }
            if last_read.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                last_read = Some(Instant::now());
                match self.read_stats().await {
                    Ok(now) => {
                        obs = Observation::split(&stats::between(&before, &now), &version);
                    }
                    Err(e) => {
                        eprintln!("warning: reading traffic statistics failed: {:#}", e.error)
                    }
                }
                match judge(&obs, &analysis, &version) {
                    Verdict::Fail(why) => return Ok(Outcome::Failed(why)),
                    Verdict::Pass if extended => return Ok(Outcome::Passed(obs)),
                    _ => {}
                }
            }
            let left = budget.saturating_sub(observed);
            let state = if paused {
                format!("PAUSED (`discoctl resume {}`)", self.app)
            } else if extended {
                format!("no data yet, up to {} more", duration_text(left))
            } else {
                format!("{} left", duration_text(left))
            };
            self.events.progress(
                json!({
                    "step": number, "of": n, "elapsed_ms": observed.as_millis() as u64,
                    "remaining_ms": left.as_millis() as u64, "paused": paused,
                    "canary": counts_json(&version, &obs.canary), "stable": counts_json("stable", &obs.stable),
                }),
                format!(
                    "step {number}/{n} ({desc}): {state} | {version}: {} | others: {}",
                    counts_text(&obs.canary),
                    counts_text(&obs.stable)
                ),
            );
            if paused || observed < budget {
                continue;
            }
            let end = self.read_fresh_stats().await?;
            obs = Observation::split(&stats::between(&before, &end), &version);
            match judge(&obs, &analysis, &version) {
                Verdict::Pass => return Ok(Outcome::Passed(obs)),
                Verdict::Fail(why) => return Ok(Outcome::Failed(why)),
                Verdict::NoData(why) => match analysis.on_no_data {
                    OnNoData::Pass => {
                        self.events.emit(
                            "no_data",
                            json!({"step": number, "of": n, "reason": why, "then": "pass"}),
                            format!("step {number}/{n}: no data ({why}); passing it (--on-no-data pass)"),
                        );
                        return Ok(Outcome::Passed(obs));
                    }
                    OnNoData::Fail => return Ok(Outcome::Failed(format!("no data: {why}"))),
                    OnNoData::Wait if !extended => {
                        extended = true;
                        budget += interval;
                        self.events.emit(
                            "no_data",
                            json!({"step": number, "of": n, "reason": why, "then": "wait", "extended_ms": interval.as_millis() as u64}),
                            format!(
                                "step {number}/{n}: no data yet ({why}); observing up to {} more",
                                duration_text(interval)
                            ),
                        );
                    }
                    OnNoData::Wait => {
                        return Ok(Outcome::Failed(format!(
                            "no data after {}: {why}",
                            duration_text(budget)
                        )))
                    }
                },
            }
        }
    }

    fn emit_paused(&mut self) {
        let by = self.rollout.changed_by.clone();
        let reason = self.rollout.reason.clone();
        let human = format!(
            "paused{}{}; `discoctl resume {}` continues",
            by.as_ref().map(|b| format!(" by {b}")).unwrap_or_default(),
            reason
                .as_ref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default(),
            self.app
        );
        self.events.emit(
            "paused",
            json!({"step": self.rollout.step, "of": self.n(), "by": by, "reason": reason}),
            human,
        );
    }

    fn emit_resumed(&mut self) {
        let by = self.rollout.changed_by.clone();
        self.events.emit(
            "resumed",
            json!({"step": self.rollout.step, "of": self.n(), "by": by}),
            format!(
                "resumed{}",
                by.as_ref().map(|b| format!(" by {b}")).unwrap_or_default()
            ),
        );
    }

    /// Waits while the canary is paused. `Some(reason)` to roll back (aborted or
    /// interrupted), `None` to go on.
    async fn wait_while_paused(&mut self) -> Result<Option<String>> {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                signal = self.interrupt.fired() => {
                    return Ok(Some(format!("interrupted by {signal} while paused")));
                }
            }
            self.check_lock()?;
            if self.refresh().await? {
                match self.rollout.state {
                    RolloutState::Paused => {}
                    RolloutState::Running => {
                        self.emit_resumed();
                        return Ok(None);
                    }
                    _ => return Ok(None),
                }
            }
        }
    }

    /// Pauses before the final step until `discoctl resume`. True once paused.
    async fn ask_confirmation(&mut self) -> Result<bool> {
        let n = self.n();
        let desc = self.describe(n);
        let mut next = self.rollout.clone();
        next.state = RolloutState::Paused;
        next.reason = Some(format!(
            "awaiting confirmation of the final step ({desc}): `discoctl resume {}` confirms, `discoctl abort {}` rolls back",
            self.app, self.app
        ));
        next.changed_by = None;
        if self.commit(ChangeSet::default(), next).await?.is_none() {
            return Ok(false);
        }
        self.events.emit(
            "awaiting_confirmation",
            json!({"step": n, "of": n, "description": desc}),
            format!(
                "awaiting confirmation of the final step ({desc}): run `discoctl resume {}` to go on, `discoctl abort {}` to roll back",
                self.app, self.app
            ),
        );
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
        let n = self.n();
        self.events.emit(
            "completed",
            json!({"version": self.rollout.version, "steps": n, "revision": self.last_revision}),
            format!(
                "{}: canary of {} completed: {n} of {n} steps passed",
                self.app, self.rollout.version
            ),
        );
        Ok(true)
    }

    /// Back to the state before the canary, in one transaction with its audit record
    /// and the record's state `rolled_back`; then waits for the agents. Ends with
    /// `code` (or 3 when the agents do not apply the rollback in time).
    async fn roll_back(&mut self, reason: String, code: i32) -> Result {
        let version = self.rollout.version.clone();
        let mut committed = None;
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
            next.reason = Some(reason.clone());
            let mut set = ChangeSet::default();
            let why = format!("canary of {version} rolled back: {reason}");
            self.stage(&mut set, &state, &change, "rollback", why)
                .await?;
            let seq = set.recorded_seq();
            if let Some(revision) = self.commit(set, next).await? {
                committed = Some((revision, seq, change, state.app.policy.clone()));
                break;
            }
        }
        let Some((revision, history_seq, change, before)) = committed else {
            return Err(Failure::new(
                exit::CONFLICT,
                anyhow::anyhow!(
                    "could not roll the canary of {version} on {} back: ten concurrent changes in a row; run `discoctl abort {}`",
                    self.app,
                    self.app
                ),
            ));
        };
        let waited =
            converge::wait(&self.ctx.store, &self.ctx.keyspace, revision, self.timeout).await?;
        self.events.emit(
            "rolled_back",
            json!({
                "version": version, "step": self.rollout.step, "of": self.n(), "reason": reason,
                "revision": revision, "history_seq": history_seq, "changed": !change.is_empty(),
                "slots": change.plan.flips, "policy": change.policy,
                "agents": waited.agents, "lagging": waited.lagging, "wait_ms": waited.wait_ms,
            }),
            format!(
                "{}: canary of {version} ROLLED BACK: {reason} ({}, revision {revision})",
                self.app,
                describe_change(&change, before.as_ref())
            ),
        );
        if !waited.converged() {
            let lagging: Vec<String> = waited.lagging.iter().map(ToString::to_string).collect();
            return Err(exit::timeout(format!(
                "canary of {version} on {} rolled back at revision {revision} ({reason}), but timed out after {} waiting for LB agents to apply the rollback: {}",
                self.app,
                humantime::format_duration(self.timeout),
                lagging.join("; ")
            )));
        }
        Err(Failure::new(
            code,
            anyhow::anyhow!("canary of {version} on {} rolled back: {reason}", self.app),
        ))
    }
}

/// `instance1 v1->v2; weights none -> v2=5%`, or `nothing to change`.
fn describe_change(change: &StepChange, before: Option<&Policy>) -> String {
    let mut parts = Vec::new();
    if !change.plan.is_empty() {
        parts.push(crate::describe::routes_change(
            &change.plan.from_map(),
            &change.plan.to_map(),
        ));
    }
    if let Some(after) = &change.policy {
        parts.push(crate::describe::policy_change(before, Some(after)));
    }
    if parts.is_empty() {
        "nothing to change".into()
    } else {
        parts.join("; ")
    }
}
