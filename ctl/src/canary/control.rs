//! Steering a canary from another terminal. `pause`, `resume` and `abort` each change
//! the `state` of `<prefix>/apps/<app>/rollout` in a transaction that compares the
//! record's mod revision (exit 4 if it moved meanwhile); the discoctl running the
//! canary reads the record twice a second and follows:
//!
//! - `pause`: running → paused. The step's timer stops; nothing advances.
//! - `resume`: paused → running (and confirms the final step of a `--confirm` canary
//!   waiting for it).
//! - `abort`: running or paused → aborting; the running discoctl rolls back, and
//!   `abort` returns once the record says rolled_back. If no discoctl runs the canary
//!   any more (its lock expired), `abort` takes the lock and rolls back itself.

use std::time::Duration;

use disco::change::{ChangeSet, CommitError};
use disco::model::now_rfc3339;
use disco::rollout::{Rollout, RolloutState};
use disco::store::Kv;
use serde::Serialize;
use tokio::time::Instant;

use super::lock::{self, Lock};
use super::runner::{Hooks, Runner};
use crate::context::{Ctx, Output};
use crate::exit::{self, Failure, Result};

/// What a control command did, as it reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Done {
    AlreadyPaused,
    Paused,
    AlreadyRunning,
    Resumed,
    Confirmed,
    RolledBack,
}

impl Done {
    /// The JSON report's `result`.
    fn result(self) -> &'static str {
        match self {
            Done::AlreadyPaused => "already paused",
            Done::Paused => "paused",
            Done::AlreadyRunning => "already running",
            Done::Resumed => "resumed",
            Done::Confirmed => "final step confirmed",
            Done::RolledBack => "rolled back",
        }
    }
}

/// The report of a control command on `app`'s canary, now `rollout`: the JSON line
/// (serde) or the text line (`Display`).
#[derive(Serialize)]
struct Report<'a> {
    app: &'a str,
    result: &'static str,
    version: &'a str,
    state: RolloutState,
    step: usize,
    of: usize,
    reason: &'a Option<String>,
    #[serde(skip)]
    done: Done,
}

impl<'a> Report<'a> {
    fn new(app: &'a str, done: Done, rollout: &'a Rollout) -> Report<'a> {
        Report {
            app,
            result: done.result(),
            version: &rollout.version,
            state: rollout.state,
            step: rollout.step,
            of: rollout.steps.len(),
            reason: &rollout.reason,
            done,
        }
    }

    fn print(&self, output: Output) {
        match output {
            // Through `Value`, for its keys in alphabetical order.
            Output::Json => println!("{}", serde_json::json!(self)),
            Output::Table => println!("{self}"),
        }
    }
}

impl std::fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Report {
            app,
            version,
            step,
            of,
            ..
        } = self;
        match self.done {
            Done::AlreadyPaused => write!(f, "{app}: the canary of {version} is already paused"),
            Done::Paused => write!(
                f,
                "{app}: canary of {version} paused at step {step}/{of}; `discoctl resume {app}` continues"
            ),
            Done::AlreadyRunning => {
                write!(f, "{app}: the canary of {version} is running, not paused")
            }
            Done::Resumed | Done::Confirmed => {
                write!(f, "{app}: canary of {version} {}", self.result)
            }
            Done::RolledBack => write!(
                f,
                "{app}: canary of {version} rolled back: {}",
                self.reason.as_deref().unwrap_or("-")
            ),
        }
    }
}

/// The app's canary record, which must exist and not be finished (exit 5 otherwise).
async fn active(ctx: &Ctx, app: &str, verb: &str) -> Result<(Kv, Rollout)> {
    match super::record::read(ctx, app).await? {
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
    let key = super::record::key(ctx, app);
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

async fn note_if_unowned(ctx: &Ctx, app: &str) -> Result {
    if lock::holder(ctx, app).await?.is_none() {
        eprintln!(
            "note: no discoctl is running the canary of {app} (its lock expired): take it over with `discoctl canary {app} --resume`, or roll it back with `discoctl abort {app}`"
        );
    }
    Ok(())
}

/// `discoctl pause`: running → paused, saying `reason`.
pub async fn pause(ctx: &Ctx, app: &str, reason: Option<String>) -> Result {
    let (kv, rollout) = active(ctx, app, "pause").await?;
    match rollout.state {
        RolloutState::Paused => {
            Report::new(app, Done::AlreadyPaused, &rollout).print(ctx.output);
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
    next.reason = reason;
    write(ctx, app, &kv, next.clone()).await?;
    Report::new(app, Done::Paused, &next).print(ctx.output);
    note_if_unowned(ctx, app).await
}

/// `discoctl resume`: paused → running; confirms a final step waiting for it.
pub async fn resume(ctx: &Ctx, app: &str) -> Result {
    let (kv, rollout) = active(ctx, app, "resume").await?;
    match rollout.state {
        RolloutState::Running => {
            Report::new(app, Done::AlreadyRunning, &rollout).print(ctx.output);
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
    let done = if confirming {
        Done::Confirmed
    } else {
        Done::Resumed
    };
    Report::new(app, done, &next).print(ctx.output);
    note_if_unowned(ctx, app).await
}

/// `discoctl abort`: → aborting, then waits up to `timeout` for the rollback; rolls
/// back here (under a lock of `lock_ttl`) if nobody runs the canary.
pub async fn abort(
    ctx: &Ctx,
    app: &str,
    reason: Option<String>,
    timeout: Duration,
    lock_ttl: Duration,
) -> Result {
    let (kv, rollout) = active(ctx, app, "abort").await?;
    let reason = match &reason {
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
    let Some((kv, mut rollout)) = wait_for_rollback(ctx, app, timeout).await? else {
        return Ok(());
    };
    // Nobody runs it: take the lock and roll back here.
    let (lock, rollout_rev) = Lock::acquire(ctx, app, lock_ttl, &mut rollout, Some(&kv)).await?;
    let runner = Runner::new(
        ctx,
        app,
        rollout,
        rollout_rev,
        lock,
        timeout,
        Hooks::default(),
    );
    match runner.abort().await {
        Err(f) if f.code == exit::ROLLED_BACK => Ok(()),
        other => other,
    }
}

/// Waits up to `timeout` for the running discoctl to roll back (reported: `None`), or
/// until nobody holds the lock any more: the record, to roll back here.
async fn wait_for_rollback(
    ctx: &Ctx,
    app: &str,
    timeout: Duration,
) -> Result<Option<(Kv, Rollout)>> {
    let deadline = Instant::now() + timeout;
    loop {
        let unowned = lock::holder(ctx, app).await?.is_none();
        match super::record::read(ctx, app).await? {
            Some((_, r)) if r.state == RolloutState::RolledBack => {
                Report::new(app, Done::RolledBack, &r).print(ctx.output);
                return Ok(None);
            }
            Some((_, r)) if r.state.is_terminal() => {
                return Err(exit::precondition(format!(
                    "the canary of {app} ended as {} before it could be aborted",
                    r.state
                )))
            }
            Some(found) if unowned => return Ok(Some(found)),
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
                humantime::format_duration(timeout)
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use disco::rollout::{Analysis, Original, Step};

    use super::*;

    fn rollout(state: RolloutState, reason: Option<&str>) -> Rollout {
        Rollout {
            version: "v2".into(),
            steps: vec![Step::Slots(1), Step::All],
            step: 1,
            passed: 0,
            state,
            analysis: Analysis {
                interval_ms: 60_000,
                max_error_rate: 0.01,
                max_latency_ms: None,
                max_p95_ms: None,
                max_p99_ms: None,
                confidence: Analysis::DEFAULT_CONFIDENCE,
                on_inconclusive: Default::default(),
                min_requests: 20,
                on_no_data: Default::default(),
                dry_run: false,
            },
            dark_matches: Vec::new(),
            confirm: false,
            confirmed: false,
            started_at: String::new(),
            updated_at: String::new(),
            owner: "42@ops1".into(),
            actor: "ann@ops".into(),
            lease: 7,
            original: Original::default(),
            reason: reason.map(Into::into),
            changed_by: None,
        }
    }

    #[test]
    fn reports_say_the_result_in_json_and_in_words() {
        let paused = rollout(RolloutState::Paused, Some("lunch"));
        let report = Report::new("app1", Done::Paused, &paused);
        assert_eq!(
            serde_json::json!(report).to_string(),
            serde_json::json!({"app": "app1", "result": "paused", "version": "v2", "state": "paused",
                               "step": 1, "of": 2, "reason": "lunch"})
            .to_string()
        );
        assert_eq!(
            report.to_string(),
            "app1: canary of v2 paused at step 1/2; `discoctl resume app1` continues"
        );
        let running = rollout(RolloutState::Running, None);
        let confirmed = Report::new("app1", Done::Confirmed, &running);
        assert_eq!(
            confirmed.to_string(),
            "app1: canary of v2 final step confirmed"
        );
        assert_eq!(
            serde_json::json!(confirmed)["reason"],
            serde_json::Value::Null
        );
        let rolled_back = rollout(RolloutState::RolledBack, None);
        assert_eq!(
            Report::new("app1", Done::RolledBack, &rolled_back).to_string(),
            "app1: canary of v2 rolled back: -"
        );
    }
}
