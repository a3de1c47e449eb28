//! `discoctl canary APP VERSION --steps 1,2,all`: an automated canary. Each step is
//! one transaction, waits for every live LB agent, is observed for `--interval` through
//! the traffic statistics the agents publish, and is judged against the thresholds
//! and the stable versions; a failed step rolls everything back to the state before
//! the canary (exit 6). `--resume` takes over a canary whose discoctl died.
//!
//! The run itself is in `crate::runner`; the steps, the record and the analysis are
//! `disco::rollout`.

use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use disco::model::{now_rfc3339, Match};
use disco::rollout::{
    parse_steps, preflight, Analysis, OnNoData, Original, Rollout, RolloutState, Step,
};
use serde_json::json;

use crate::context::Ctx;
use crate::exit::{self, Failure, Result};
use crate::lock::Lock;
use crate::runner::{read_record, Runner};

/// `--on-no-data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NoData {
    /// Roll back.
    Fail,
    /// Observe up to one more interval, then roll back if there is still too little.
    Wait,
    /// Count the step as passed.
    Pass,
}

impl From<NoData> for OnNoData {
    fn from(n: NoData) -> OnNoData {
        match n {
            NoData::Fail => OnNoData::Fail,
            NoData::Wait => OnNoData::Wait,
            NoData::Pass => OnNoData::Pass,
        }
    }
}

/// The steps as one clap value.
#[derive(Debug, Clone)]
pub struct Steps(Vec<Step>);

fn steps(s: &str) -> std::result::Result<Steps, String> {
    parse_steps(s).map(Steps).map_err(|e| e.to_string())
}

fn rate(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err("expected a share from 0 to 1, e.g. 0.01 for 1%".into()),
    }
}

/// Milliseconds: `250` or a duration such as `250ms`, `1.5s`.
fn latency_ms(s: &str) -> std::result::Result<f64, String> {
    if let Ok(ms) = s.parse::<f64>() {
        if ms.is_finite() && ms > 0.0 {
            return Ok(ms);
        }
    }
    humantime::parse_duration(s)
        .ok()
        .filter(|d| !d.is_zero())
        .map(|d| d.as_secs_f64() * 1000.0)
        .ok_or_else(|| "expected milliseconds (250) or a duration (250ms, 1.5s)".into())
}

#[derive(Debug, Args)]
pub struct CanaryArgs {
    /// The app.
    #[arg(value_parser = super::app_name)]
    app: String,
    /// The version to roll out (with --resume: optional, must match the recorded one).
    #[arg(value_parser = super::version_name, required_unless_present = "resume")]
    version: Option<String>,
    /// Steps, comma separated: slot counts (1,2: that many slots on VERSION in total),
    /// shares of the traffic (5%,25%: through the policy's weights) and a final `all`.
    #[arg(long, default_value = "1,all", value_parser = steps, conflicts_with = "resume")]
    steps: Steps,
    /// How long each step is observed (paused time does not count).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, conflicts_with = "resume")]
    interval: Duration,
    /// Largest 5xx share (0-1) of VERSION over a step; a step fails above it only if
    /// the stable versions' share is lower.
    #[arg(long, default_value = "0.01", value_parser = rate, conflicts_with = "resume")]
    max_error_rate: f64,
    /// Largest mean response time of VERSION over a step, in ms (250) or as a duration
    /// (250ms). A mean, because HAProxy gives no per-request times. Default: unchecked.
    #[arg(long, value_name = "MS", value_parser = latency_ms, conflicts_with = "resume")]
    max_latency: Option<f64>,
    /// Fewest requests VERSION must answer in a step for a verdict.
    #[arg(long, default_value_t = 20, conflicts_with = "resume")]
    min_requests: u64,
    /// A step with fewer requests: fail (roll back), wait (observe up to one more
    /// interval, then fail) or pass.
    #[arg(long, value_enum, default_value = "wait", conflicts_with = "resume")]
    on_no_data: NoData,
    /// A first step with only the dark canary (--header, --cookie, --cidr): internal
    /// traffic to VERSION, observed like the others. It stays on until the last step.
    #[arg(long, conflicts_with = "resume")]
    dark_first: bool,
    /// Dark-first match: a request header NAME=VALUE. Repeatable.
    #[arg(long, value_name = "NAME=VALUE", value_parser = super::header_match, requires = "dark_first")]
    header: Vec<Match>,
    /// Dark-first match: a cookie NAME=VALUE. Repeatable.
    #[arg(long, value_name = "NAME=VALUE", value_parser = super::cookie_match, requires = "dark_first")]
    cookie: Vec<Match>,
    /// Dark-first match: a source network. Repeatable.
    #[arg(long, value_name = "NET", value_parser = super::cidr_match, requires = "dark_first")]
    cidr: Vec<Match>,
    /// Pause before the final step until `discoctl resume APP`.
    #[arg(long, conflicts_with = "resume")]
    confirm: bool,
    /// Take over the canary of APP whose discoctl died (its lock expired): re-apply the
    /// step it was in and observe it again, with the recorded settings.
    #[arg(long)]
    resume: bool,
    /// Longest wait for the LB agents to apply each step; past it the canary is rolled
    /// back and the exit code is 3.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Lease of this process's lock on the canary: how soon another discoctl can take
    /// over (--resume) after this one dies.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    lock_ttl: Duration,
}

pub async fn run(ctx: &Ctx, args: CanaryArgs) -> Result {
    if args.lock_ttl < Duration::from_secs(2) {
        return Err(exit::usage("--lock-ttl must be at least 2s"));
    }
    if args.resume {
        return resume(ctx, args).await;
    }
    let version = args.version.clone().expect("clap requires VERSION");
    let matches: Vec<Match> =
        [args.header.clone(), args.cookie.clone(), args.cidr.clone()].concat();
    if args.dark_first && matches.is_empty() {
        return Err(exit::usage(
            "--dark-first needs at least one --header, --cookie or --cidr",
        ));
    }
    if args.interval.is_zero() {
        return Err(exit::usage("--interval must be more than 0"));
    }
    let state = crate::app_state::read(ctx, &args.app).await?;
    let policy = state.policy()?;
    let existing = read_record(ctx, &args.app).await?;
    refuse_if_running(ctx, &args.app, existing.as_ref().map(|(_, r)| r)).await?;
    let mut steps = args.steps.0.clone();
    if args.dark_first {
        steps.insert(0, Step::Dark);
    }
    let now = now_rfc3339();
    let mut rollout = Rollout {
        version: version.clone(),
        steps,
        step: 0,
        passed: 0,
        state: RolloutState::Running,
        analysis: Analysis {
            interval_ms: args.interval.as_millis() as u64,
            max_error_rate: args.max_error_rate,
            max_latency_ms: args.max_latency,
            min_requests: args.min_requests,
            on_no_data: args.on_no_data.into(),
        },
        dark_matches: matches,
        confirm: args.confirm,
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
        let summary = format!(
            "{}: every slot already serves {version}: nothing to do; nothing written",
            args.app
        );
        match ctx.output {
            crate::context::Output::Json => println!(
                "{}",
                json!({"event": "completed", "app": args.app, "version": version, "changed": false, "at": now_rfc3339()})
            ),
            crate::context::Output::Table => println!("{summary}"),
        }
        return Ok(());
    }
    preflight(&state.app, &rollout)
        .with_context(|| format!("cannot run a canary of {version} on {}", args.app))?;
    let (lock, rollout_rev) = Lock::acquire(
        ctx,
        &args.app,
        args.lock_ttl,
        &mut rollout,
        existing.as_ref().map(|(kv, _)| kv),
    )
    .await?;
    let mut runner = Runner::new(
        ctx,
        &args.app,
        rollout.clone(),
        rollout_rev,
        lock,
        args.timeout,
    );
    let steps: Vec<String> = rollout.steps.iter().map(ToString::to_string).collect();
    runner.events().emit(
        "started",
        json!({"version": version, "steps": rollout.steps, "analysis": rollout.analysis, "confirm": rollout.confirm, "owner": rollout.owner}),
        format!(
            "{}: canary of {version}: steps {}, {} each, max 5xx {:.1}%{}, min {} requests (owner {})",
            args.app,
            steps.join(","),
            humantime::format_duration(args.interval),
            args.max_error_rate * 100.0,
            args.max_latency
                .map(|ms| format!(", max mean latency {ms} ms"))
                .unwrap_or_default(),
            args.min_requests,
            rollout.owner
        ),
    );
    runner.run().await
}

/// Refuses to start while a canary of `app` runs (exit 4) or an interrupted one is
/// recorded (exit 5: resume or abort it first).
async fn refuse_if_running(ctx: &Ctx, app: &str, existing: Option<&Rollout>) -> Result {
    if let Some(who) = crate::lock::holder(ctx, app).await? {
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

/// `--resume`: takes the lock of a canary whose discoctl died and runs it on.
async fn resume(ctx: &Ctx, args: CanaryArgs) -> Result {
    let app = &args.app;
    crate::app_state::read(ctx, app).await?;
    let Some((kv, mut rollout)) = read_record(ctx, app).await? else {
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
    if let Some(version) = &args.version {
        if *version != rollout.version {
            return Err(exit::precondition(format!(
                "the recorded canary of {app} rolls out {}, not {version}",
                rollout.version
            )));
        }
    }
    let previous = rollout.owner.clone();
    rollout.changed_by = Some(ctx.actor.clone());
    let (lock, rollout_rev) =
        Lock::acquire(ctx, app, args.lock_ttl, &mut rollout, Some(&kv)).await?;
    let n = rollout.steps.len();
    let next = (rollout.passed + 1).min(n);
    let mut runner = Runner::new(ctx, app, rollout.clone(), rollout_rev, lock, args.timeout);
    runner.events().emit(
        "started",
        json!({"version": rollout.version, "steps": rollout.steps, "analysis": rollout.analysis, "confirm": rollout.confirm, "owner": rollout.owner, "resumed": true, "previous_owner": previous, "passed": rollout.passed, "state": rollout.state}),
        format!(
            "{app}: taking over the canary of {} from {previous} ({}, {} of {n} steps passed): step {next}/{n} is applied again and observed for a full interval",
            rollout.version, rollout.state, rollout.passed
        ),
    );
    runner.run().await
}
