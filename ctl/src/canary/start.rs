//! Starting a canary: refused while another runs on the app or an interrupted one is
//! recorded; every step planned against the current state before anything is written;
//! then the lock, and the run. Or taking over (`--resume`) a canary whose discoctl died.

use std::time::Duration;

use anyhow::Context as _;
use disco::model::{now_rfc3339, Match};
use disco::rollout::{preflight, Analysis, Original, Rollout, RolloutState, Step};

use super::event::{Event, TakeOver};
use super::lock::{self, Lock};
use super::output::Events;
use super::runner::{Hooks, Runner};
use crate::context::Ctx;
use crate::exit::{self, Failure, Result};

/// A new canary, as the command line asks for it.
pub struct Settings {
    /// The version to roll out.
    pub version: String,
    /// The steps, `--dark-first`'s included.
    pub steps: Vec<Step>,
    pub analysis: Analysis,
    /// The dark canary's matches (`--dark-first`).
    pub dark_matches: Vec<Match>,
    /// Pause before the final step.
    pub confirm: bool,
    /// Longest wait for the agents after each transaction.
    pub timeout: Duration,
    /// The lock's lease.
    pub lock_ttl: Duration,
    /// `--gate` and `--notify`.
    pub hooks: Hooks,
}

/// Starts a canary of `app` and runs it to its end.
pub async fn start(ctx: &Ctx, app: &str, settings: Settings) -> Result {
    let version = settings.version;
    let state = crate::app_state::read(ctx, app).await?;
    let policy = state.policy()?;
    let existing = super::record::read(ctx, app).await?;
    refuse_if_running(ctx, app, existing.as_ref().map(|(_, r)| r)).await?;
    let now = now_rfc3339();
    let mut rollout = Rollout {
        version: version.clone(),
        steps: settings.steps,
        step: 0,
        passed: 0,
        state: RolloutState::Running,
        analysis: settings.analysis,
        dark_matches: settings.dark_matches,
        confirm: settings.confirm,
        confirmed: false,
        started_at: now.clone(),
        updated_at: now,
        owner: String::new(),
        actor: ctx.actor.clone(),
        lease: 0,
        original: Original {
            routes: state.app.routes.clone(),
            policy: policy.clone(),
        },
        reason: None,
        changed_by: None,
    };
    let everywhere = !state.app.routes.is_empty()
        && state.app.routes.values().all(|v| *v == version)
        && !policy
            .as_ref()
            .is_some_and(|p| p.weights.contains_key(&version));
    if everywhere {
        Events::new(app, ctx.output).emit(Event::Unchanged {
            version,
            changed: false,
        });
        return Ok(());
    }
    preflight(&state.app, &rollout)
        .with_context(|| format!("cannot run a canary of {version} on {app}"))?;
    let (lock, rollout_rev) = Lock::acquire(
        ctx,
        app,
        settings.lock_ttl,
        &mut rollout,
        existing.as_ref().map(|(kv, _)| kv),
    )
    .await?;
    let mut runner = Runner::new(
        ctx,
        app,
        rollout.clone(),
        rollout_rev,
        lock,
        settings.timeout,
        settings.hooks,
    );
    runner.events().emit(Event::Started {
        version,
        steps: rollout.steps,
        analysis: rollout.analysis,
        confirm: rollout.confirm,
        owner: rollout.owner,
        taken_over: None,
    });
    runner.run().await
}

/// Refuses to start while a canary of `app` runs (exit 4) or an interrupted one is
/// recorded (exit 5: resume or abort it first).
async fn refuse_if_running(ctx: &Ctx, app: &str, existing: Option<&Rollout>) -> Result {
    if let Some(who) = lock::holder(ctx, app).await? {
        return Err(Failure::new(
            exit::CONFLICT,
            anyhow::anyhow!("a canary of {app} is running: {who}; pause, resume or abort it with `discoctl pause|resume|abort {app}`"),
        ));
    }
    match existing {
        Some(r) if !r.state.is_terminal() => Err(exit::precondition(format!(
            "an interrupted canary of {} on {app} is recorded ({}, step {}/{}, owner {} gone): take it over with `discoctl canary {app} --resume`, or roll it back with `discoctl abort {app}`",
            r.version,
            r.state,
            r.step,
            r.steps.len(),
            r.owner
        ))),
        _ => Ok(()),
    }
}

/// `--resume`: takes the lock of `app`'s canary whose discoctl died (rolling out
/// `version`, if given) and runs it on.
pub async fn take_over(
    ctx: &Ctx,
    app: &str,
    version: Option<&str>,
    lock_ttl: Duration,
    timeout: Duration,
    hooks: Hooks,
) -> Result {
    crate::app_state::read(ctx, app).await?;
    let Some((kv, mut rollout)) = super::record::read(ctx, app).await? else {
        return Err(exit::precondition(format!(
            "no canary of {app} is recorded: nothing to resume"
        )));
    };
    if rollout.state.is_terminal() {
        return Err(exit::precondition(format!(
            "the last canary of {app} ({}) is {}: nothing to resume",
            rollout.version, rollout.state
        )));
    }
    if let Some(version) = version {
        if version != rollout.version {
            return Err(exit::precondition(format!(
                "the recorded canary of {app} rolls out {}, not {version}",
                rollout.version
            )));
        }
    }
    let previous_owner = rollout.owner.clone();
    rollout.changed_by = Some(ctx.actor.clone());
    let (lock, rollout_rev) = Lock::acquire(ctx, app, lock_ttl, &mut rollout, Some(&kv)).await?;
    let mut runner = Runner::new(ctx, app, rollout.clone(), rollout_rev, lock, timeout, hooks);
    runner.events().emit(Event::Started {
        version: rollout.version,
        steps: rollout.steps,
        analysis: rollout.analysis,
        confirm: rollout.confirm,
        owner: rollout.owner,
        taken_over: Some(TakeOver {
            resumed: true,
            previous_owner,
            passed: rollout.passed,
            state: rollout.state,
        }),
    });
    runner.run().await
}
