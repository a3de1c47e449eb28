//! `discoctl canary APP VERSION --steps 1,2,all`: an automated canary. Each step is
//! one transaction, waits for every live LB agent, is observed for `--interval` through
//! the traffic statistics the agents publish, and is judged against the thresholds
//! and the stable versions; a failed step rolls everything back to the state before
//! the canary (exit 6). `--resume` takes over a canary whose discoctl died.
//!
//! This is the command line; the canary itself is `crate::canary`, its steps, record
//! and analysis `disco::rollout`.

use std::time::Duration;

use clap::{Args, ValueEnum};
use disco::model::Match;
use disco::rollout::{parse_steps, Analysis, OnInconclusive, OnNoData, Step};

use crate::canary::{self, Settings};
use crate::context::Ctx;
use crate::exit::{self, Result};

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

/// `--on-inconclusive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Inconclusive {
    /// Observe one more interval; still inconclusive then: pause.
    Extend,
    /// Pause at once for an operator (`discoctl resume` observes one more interval).
    Pause,
}

impl From<Inconclusive> for OnInconclusive {
    fn from(i: Inconclusive) -> OnInconclusive {
        match i {
            Inconclusive::Extend => OnInconclusive::Extend,
            Inconclusive::Pause => OnInconclusive::Pause,
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

fn confidence(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(c) if (0.5..=0.9999).contains(&c) => Ok(c),
        _ => Err("expected a confidence from 0.5 to 0.9999, e.g. 0.95".into()),
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
    /// Largest 5xx share (0-1) of VERSION over a step. Above it a step fails only if
    /// VERSION's share is above the stable versions' by more than chance (Fisher's
    /// exact test; without stable traffic, a binomial test against the threshold).
    #[arg(long, default_value = "0.01", value_parser = rate, conflicts_with = "resume")]
    max_error_rate: f64,
    /// Largest mean response time of VERSION over a step, in ms (250) or as a duration
    /// (250ms); over it, compared with the stable versions like --max-p95. Default:
    /// unchecked.
    #[arg(long, value_name = "MS", value_parser = latency_ms, conflicts_with = "resume")]
    max_latency: Option<f64>,
    /// Largest 95th percentile of VERSION's response time over a step (ms or a
    /// duration). Over it a step fails only if VERSION is slower than the stable
    /// versions by more than chance (Mann-Whitney U on the latency histograms). Needs
    /// per-request times: HAProxy's log_socket or nginx's access_log. Default:
    /// unchecked.
    #[arg(long, value_name = "MS", value_parser = latency_ms, conflicts_with = "resume")]
    max_p95: Option<f64>,
    /// Largest 99th percentile, like --max-p95.
    #[arg(long, value_name = "MS", value_parser = latency_ms, conflicts_with = "resume")]
    max_p99: Option<f64>,
    /// Fewest requests VERSION must answer in a step for a verdict; the stable
    /// versions need as many to be compared with.
    #[arg(long, default_value_t = 20, conflicts_with = "resume")]
    min_requests: u64,
    /// How sure the verdict at the end of a step must be before it fails: a test's
    /// p-value below 1 - CONFIDENCE. During a step a failure needs p < 0.001, so that a
    /// plainly broken VERSION is rolled back within its first requests.
    #[arg(long, default_value = "0.95", value_parser = confidence, conflicts_with = "resume")]
    confidence: f64,
    /// A step over a threshold but not significantly (inconclusive) at the end of its
    /// interval: extend (observe one more interval, then pause if still inconclusive)
    /// or pause (for an operator: `discoctl resume` observes one more interval,
    /// `discoctl abort` rolls back).
    #[arg(long, value_enum, default_value = "extend", conflicts_with = "resume")]
    on_inconclusive: Inconclusive,
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
    /// Judge and report every step (`step_would_fail` when a step would have been
    /// rolled back, and after how long) but never roll back on a verdict: for tuning
    /// the thresholds on real traffic. Aborts, interrupts and agents that do not apply
    /// a step still roll back.
    #[arg(long, conflicts_with = "resume")]
    dry_run_analysis: bool,
    /// Ask URL (HTTP POST of the step and the traffic statistics, JSON) before each
    /// step; anything but a 2xx answer (after retries on timeouts) pauses the canary
    /// until `discoctl resume APP`, which asks again. Repeatable. Not recorded: give it
    /// again with --resume.
    #[arg(long, value_name = "URL", value_parser = canary::parse_url)]
    gate: Vec<String>,
    /// POST every event (the -o json line; observations left out) to URL, in order,
    /// with a 5 s timeout and 3 attempts, from the background: a slow receiver never
    /// delays a step or a rollback. Repeatable. Not recorded: give it again with
    /// --resume.
    #[arg(long, value_name = "URL", value_parser = canary::parse_url)]
    notify: Vec<String>,
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
    let hooks = canary::Hooks {
        gates: args.gate.clone(),
        notify: args.notify.clone(),
    };
    if args.resume {
        return canary::take_over(
            ctx,
            &args.app,
            args.version.as_deref(),
            args.lock_ttl,
            args.timeout,
            hooks,
        )
        .await;
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
    let mut steps = args.steps.0.clone();
    if args.dark_first {
        steps.insert(0, Step::Dark);
    }
    let settings = Settings {
        version,
        steps,
        analysis: Analysis {
            interval_ms: args.interval.as_millis() as u64,
            max_error_rate: args.max_error_rate,
            max_latency_ms: args.max_latency,
            max_p95_ms: args.max_p95,
            max_p99_ms: args.max_p99,
            min_requests: args.min_requests,
            on_no_data: args.on_no_data.into(),
            confidence: args.confidence,
            on_inconclusive: args.on_inconclusive.into(),
            dry_run: args.dry_run_analysis,
        },
        dark_matches: matches,
        confirm: args.confirm,
        timeout: args.timeout,
        lock_ttl: args.lock_ttl,
        hooks,
    };
    canary::start(ctx, &args.app, settings).await
}
