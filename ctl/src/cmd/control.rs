//! `discoctl pause|resume|abort APP`: steer a running canary from another terminal.
//! Each changes the `state` of `<prefix>/apps/<app>/rollout` in a transaction that
//! compares the record's mod revision (exit 4 if it moved meanwhile); the discoctl
//! running the canary reads the record twice a second and follows:
//!
//! - `pause`: running → paused. The step's timer stops; nothing advances.
//! - `resume`: paused → running (and confirms the final step of a `--confirm` canary
//!   waiting for it).
//! - `abort`: running or paused → aborting; the running discoctl rolls back, and
//!   `abort` returns once the record says rolled_back. If no discoctl runs the canary
//!   any more (its lock expired), `abort` takes the lock and rolls back itself.

use std::time::Duration;

use clap::Args;
use disco::change::{ChangeSet, CommitError};
use disco::model::now_rfc3339;
use disco::rollout::{Rollout, RolloutState};
use disco::store::Kv;
use disco::Key;
use serde_json::json;
use tokio::time::Instant;

use crate::context::{Ctx, Output};
use crate::exit::{self, Failure, Result};
use crate::lock::Lock;
use crate::runner::{read_record, Runner};

#[derive(Debug, Args)]
pub struct PauseArgs {
    /// The app.
    #[arg(value_parser = super::app_name)]
    app: String,
    /// Why, shown by the running canary and `discoctl status`.
    #[arg(long)]
    reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The app.
    #[arg(value_parser = super::app_name)]
    app: String,
}

#[derive(Debug, Args)]
pub struct AbortArgs {
    /// The app.
    #[arg(value_parser = super::app_name)]
    app: String,
    /// Why, for the rollback's audit record.
    #[arg(long)]
    reason: Option<String>,
    /// Longest wait for the canary to roll back (exit 3 past it).
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Lease of the lock when this command rolls back a canary nobody runs.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    lock_ttl: Duration,
}

/// The app's canary record, which must exist and not be finished (exit 5 otherwise).
async fn active(ctx: &Ctx, app: &str, verb: &str) -> Result<(Kv, Rollout)> {
    match read_record(ctx, app).await? {
        None => Err(exit::precondition(format!(
            "no canary of {app} is recorded: nothing to {verb}"
        ))),
        Some((_, r)) if r.state.is_terminal() => Err(exit::precondition(format!(
            "the last canary of {app} ({}) is {}: nothing to {verb}",
            r.version, r.state
        ))),
        Some(found) => Ok(found),
    }
}

/// Writes `next` over the record read as `kv`; exit 4 if it moved.
async fn write(ctx: &Ctx, app: &str, kv: &Kv, mut next: Rollout) -> Result<i64> {
    let key = ctx.keyspace.key(&Key::Rollout {
        app: app.to_string(),
    });
    next.updated_at = now_rfc3339();
    let mut set = ChangeSet::default();
    set.expect(&key, Some(kv))
        .put(&key, serde_json::to_vec(&next)?);
    set.commit(&ctx.store).await.map_err(|e| match e {
        CommitError::Conflict(_) => Failure::new(
            exit::CONFLICT,
            anyhow::anyhow!("the canary of {app} moved on while this command read it; nothing was written, run the command again"),
        ),
        e => e.into(),
    })
}

fn say(ctx: &Ctx, app: &str, result: &str, rollout: &Rollout, human: String) {
    match ctx.output {
        Output::Json => println!(
            "{}",
            json!({"app": app, "result": result, "version": rollout.version, "state": rollout.state,
                   "step": rollout.step, "of": rollout.steps.len(), "reason": rollout.reason})
        ),
        Output::Table => println!("{human}"),
    }
}

async fn note_if_unowned(ctx: &Ctx, app: &str) -> Result {
    if crate::lock::holder(ctx, app).await?.is_none() {
        eprintln!(
            "note: no discoctl is running the canary of {app} (its lock expired): take it over with `discoctl canary {app} --resume`, or roll it back with `discoctl abort {app}`"
        );
    }
    Ok(())
}

pub async fn pause(ctx: &Ctx, args: PauseArgs) -> Result {
    let app = &args.app;
    let (kv, rollout) = active(ctx, app, "pause").await?;
    match rollout.state {
        RolloutState::Paused => {
            say(
                ctx,
                app,
                "already paused",
                &rollout,
                format!("{app}: the canary of {} is already paused", rollout.version),
            );
            return Ok(());
        }
        RolloutState::Aborting => {
            return Err(exit::precondition(format!(
                "the canary of {app} is being aborted: nothing to pause"
            )))
        }
        _ => {}
    }
    let mut next = rollout;
    next.state = RolloutState::Paused;
    next.changed_by = Some(ctx.actor.clone());
    next.reason = args.reason.clone();
    write(ctx, app, &kv, next.clone()).await?;
    say(
        ctx,
        app,
        "paused",
        &next,
        format!(
            "{app}: canary of {} paused at step {}/{}; `discoctl resume {app}` continues",
            next.version,
            next.step,
            next.steps.len()
        ),
    );
    note_if_unowned(ctx, app).await
}

pub async fn resume(ctx: &Ctx, args: ResumeArgs) -> Result {
    let app = &args.app;
    let (kv, rollout) = active(ctx, app, "resume").await?;
    match rollout.state {
        RolloutState::Running => {
            say(
                ctx,
                app,
                "already running",
                &rollout,
                format!(
                    "{app}: the canary of {} is running, not paused",
                    rollout.version
                ),
            );
            return note_if_unowned(ctx, app).await;
        }
        RolloutState::Aborting => {
            return Err(exit::precondition(format!(
                "the canary of {app} is being aborted: nothing to resume"
            )))
        }
        _ => {}
    }
    let mut next = rollout;
    let confirming = next.awaits_confirmation();
    next.state = RolloutState::Running;
    next.confirmed |= confirming;
    next.changed_by = Some(ctx.actor.clone());
    next.reason = None;
    write(ctx, app, &kv, next.clone()).await?;
    let what = if confirming {
        "final step confirmed"
    } else {
        "resumed"
    };
    say(
        ctx,
        app,
        what,
        &next,
        format!("{app}: canary of {} {what}", next.version),
    );
    note_if_unowned(ctx, app).await
}

pub async fn abort(ctx: &Ctx, args: AbortArgs) -> Result {
    let app = &args.app;
    if args.lock_ttl < Duration::from_secs(2) {
        return Err(exit::usage("--lock-ttl must be at least 2s"));
    }
    let (kv, rollout) = active(ctx, app, "abort").await?;
    let reason = match &args.reason {
        Some(r) => format!("aborted by {}: {r}", ctx.actor),
        None => format!("aborted by {}", ctx.actor),
    };
    if rollout.state != RolloutState::Aborting {
        let mut next = rollout;
        next.state = RolloutState::Aborting;
        next.changed_by = Some(ctx.actor.clone());
        next.reason = Some(reason);
        write(ctx, app, &kv, next).await?;
    }
    // The running discoctl rolls back; if none runs it, this command does.
    let deadline = Instant::now() + args.timeout;
    let (kv, mut rollout) = loop {
        let unowned = crate::lock::holder(ctx, app).await?.is_none();
        match read_record(ctx, app).await? {
            Some((_, r)) if r.state == RolloutState::RolledBack => {
                return rolled_back(ctx, app, &r);
            }
            Some((_, r)) if r.state.is_terminal() => {
                return Err(exit::precondition(format!(
                    "the canary of {app} ended as {} before it could be aborted",
                    r.state
                )))
            }
            Some(found) if unowned => break found,
            Some(_) => {}
            None => {
                return Err(exit::precondition(format!(
                    "the canary record of {app} is gone"
                )))
            }
        }
        if Instant::now() >= deadline {
            return Err(exit::timeout(format!(
                "asked the canary of {app} to abort, but it had not rolled back within {}; see `discoctl status {app}`",
                humantime::format_duration(args.timeout)
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // Nobody runs it: take the lock and roll back here.
    let (lock, rollout_rev) =
        Lock::acquire(ctx, app, args.lock_ttl, &mut rollout, Some(&kv)).await?;
    let runner = Runner::new(ctx, app, rollout, rollout_rev, lock, args.timeout);
    match runner.abort().await {
        Err(f) if f.code == exit::ROLLED_BACK => Ok(()),
        other => other,
    }
}

fn rolled_back(ctx: &Ctx, app: &str, r: &Rollout) -> Result {
    say(
        ctx,
        app,
        "rolled back",
        r,
        format!(
            "{app}: canary of {} rolled back: {}",
            r.version,
            r.reason.as_deref().unwrap_or("-")
        ),
    );
    Ok(())
}
