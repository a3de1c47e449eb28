//! `discoctl check [APP]`: a Nagios/Sensu check plugin. One summary line with perfdata
//! (and one line per problem after it), exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
//! (etcd unreachable, unknown app, bad options). It reads etcd only: agents' statuses,
//! the routing state and the published traffic statistics.
//!
//! CRITICAL:
//! - fewer live LB agents than `--min-agents` (default 1);
//! - an LB agent reporting a `last_error` (its last apply failed);
//! - a **stale** LB agent: its newest sign of life (its status' `updated_at`, the `at`
//!   of its traffic statistics) is older than `--stale-after` (60s), judged only where
//!   the agent should have written since: it publishes statistics (rewritten every
//!   `stats_interval`), or it has not applied the latest routing change. An agent
//!   writes its status only when it applies something, so an idle agent without
//!   statistics cannot be told from a hung one until its lease expires (then it drops
//!   out of the live agents);
//! - a route to a missing endpoint or one reported failing.
//!
//! WARNING:
//! - an LB agent that has not applied the latest routing change after `--lag-grace`
//!   (5s) and is not stale;
//! - a version whose 5xx share in the agents' last statistics window is over
//!   `--max-error-rate` (0.05), with at least `--min-requests` (20) requests;
//! - records refused as invalid;
//! - an LB agent keeping endpoints whose registrations expired at once (its
//!   mass-expiry guard: app hosts cut from etcd); the app is served from the last known
//!   endpoints until they register again or the hold ends.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use clap::Args;
use disco::converge;
use disco::stats::{self, AppStats};
use serde_json::json;

use crate::context::{Ctx, Output};
use crate::exit::{Failure, Result};

pub const OK: i32 = 0;
pub const WARNING: i32 = 1;
pub const CRITICAL: i32 = 2;
pub const UNKNOWN: i32 = 3;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Only this app's routes, error rates and rejected records (agents are always
    /// checked: they serve every app).
    #[arg(value_parser = super::app_name)]
    app: Option<String>,
    /// CRITICAL when an LB agent's newest sign of life (status or statistics) is older
    /// than this, where it should have written since.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    stale_after: Duration,
    /// How long an LB agent behind the latest routing change gets to catch up before
    /// it counts as lagging (WARNING).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    lag_grace: Duration,
    /// WARNING when a version's 5xx share (0-1) over the agents' last statistics
    /// window is above this.
    #[arg(long, default_value_t = 0.05)]
    max_error_rate: f64,
    /// Versions with fewer requests in the last window are not judged.
    #[arg(long, default_value_t = 20)]
    min_requests: u64,
    /// CRITICAL with fewer live LB agents (0: none needed).
    #[arg(long, default_value_t = 1)]
    min_agents: usize,
}

/// One finding.
struct Problem {
    code: i32,
    text: String,
}

fn status_name(code: i32) -> &'static str {
    match code {
        OK => "OK",
        WARNING => "WARNING",
        CRITICAL => "CRITICAL",
        _ => "UNKNOWN",
    }
}

fn age(at: &str, now: SystemTime) -> Option<Duration> {
    let t = humantime::parse_rfc3339_weak(at).ok()?;
    Some(now.duration_since(t).unwrap_or_default())
}

/// Prints the plugin output and ends with its code.
fn finish(
    ctx: &Ctx,
    code: i32,
    summary: &str,
    problems: &[Problem],
    perfdata: &[(String, String)],
) -> Result {
    match ctx.output {
        Output::Json => {
            let problems: Vec<_> = problems
                .iter()
                .map(|p| json!({"status": status_name(p.code), "message": p.text}))
                .collect();
            let perf: serde_json::Map<String, serde_json::Value> = perfdata
                .iter()
                .map(|(k, v)| {
                    let value = v.split(';').next().unwrap_or("");
                    (k.clone(), json!(value.parse::<f64>().ok()))
                })
                .collect();
            println!(
                "{}",
                json!({"status": status_name(code), "code": code, "summary": summary, "problems": problems, "perfdata": perf})
            );
        }
        Output::Table => {
            let perf: Vec<String> = perfdata.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let perf = if perf.is_empty() {
                String::new()
            } else {
                format!(" | {}", perf.join(" "))
            };
            println!("DISCO {} - {summary}{perf}", status_name(code));
            if problems.len() > 1 {
                for p in problems {
                    println!("{}: {}", status_name(p.code), p.text);
                }
            }
        }
    }
    if code == OK {
        Ok(())
    } else {
        Err(Failure::quiet(code))
    }
}

fn unknown(ctx: &Ctx, why: String) -> Result {
    finish(ctx, UNKNOWN, &why, &[], &[])
}

pub async fn run(ctx: &Ctx, args: CheckArgs) -> Result {
    match check(ctx, &args).await {
        Ok(r) => r,
        Err(e) => unknown(ctx, format!("{:#}", e.error)),
    }
}

async fn check(ctx: &Ctx, args: &CheckArgs) -> Result<Result> {
    let ks = &ctx.keyspace;
    let first = super::status::read(ctx).await?;
    if let Some(app) = &args.app {
        if !first.snapshot.apps.contains_key(app) {
            return Ok(unknown(
                ctx,
                format!(
                    "unknown app {app:?}: nothing is stored under {}",
                    ks.app(app)
                ),
            ));
        }
    }
    // Agents behind the latest change get --lag-grace to catch up.
    let waited = converge::wait(&ctx.store, ks, first.latest, args.lag_grace).await?;
    let state = super::status::read(ctx).await?;
    let (_, stat_kvs) = ctx.store.get_prefix(&ks.all_stats(), None).await?;
    let records: Vec<AppStats> = stats::parse_records(
        ks,
        stat_kvs
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.as_slice())),
    );
    let now = SystemTime::now();
    let mut problems = Vec::new();
    let lb: Vec<_> = state
        .snapshot
        .agents
        .values()
        .filter(|a| super::status::is_lb(a))
        .collect();
    if lb.len() < args.min_agents {
        problems.push(Problem {
            code: CRITICAL,
            text: format!(
                "{} live LB agents, fewer than --min-agents {}",
                lb.len(),
                args.min_agents
            ),
        });
    }
    let (mut stale, mut lagging, mut failing) = (0, 0, 0);
    for agent in &lb {
        if let Some(error) = &agent.last_error {
            failing += 1;
            problems.push(Problem {
                code: CRITICAL,
                text: format!("agent {} failing: {error}", agent.id),
            });
        }
        for held in &agent.held {
            problems.push(Problem {
                code: WARNING,
                text: format!("agent {} {held}", agent.id),
            });
        }
        let own: Vec<&AppStats> = records.iter().filter(|r| r.agent == agent.id).collect();
        let seen = std::iter::once(agent.updated_at.as_str())
            .chain(own.iter().map(|r| r.at.as_str()))
            .filter_map(|at| age(at, now))
            .min();
        let behind = waited.lagging.iter().any(|l| l.id == agent.id)
            && agent.applied_revision < first.latest;
        let silent = seen.is_none_or(|a| a > args.stale_after);
        if silent && (!own.is_empty() || behind) {
            stale += 1;
            let since = seen
                .map(|a| format!("{}s ago", a.as_secs()))
                .unwrap_or_else(|| "never".into());
            problems.push(Problem {
                code: CRITICAL,
                text: format!(
                    "agent {} stale: last status or statistics written {since} (--stale-after {}){}",
                    agent.id,
                    humantime::format_duration(args.stale_after),
                    if behind {
                        format!(", applied revision {} of {}", agent.applied_revision, first.latest)
                    } else {
                        String::new()
                    }
                ),
            });
        } else if behind {
            lagging += 1;
            problems.push(Problem {
                code: WARNING,
                text: format!(
                    "agent {} lags: applied revision {}, latest {} (after {})",
                    agent.id,
                    agent.applied_revision,
                    first.latest,
                    humantime::format_duration(args.lag_grace)
                ),
            });
        }
    }
    let apps: Vec<_> = state
        .snapshot
        .apps
        .iter()
        .filter(|(name, _)| args.app.as_ref().is_none_or(|a| a == *name))
        .collect();
    let mut missing = 0;
    for (name, app) in &apps {
        let mut slots: Vec<_> = app.slots().collect();
        slots.sort_by(|a, b| disco::plan::natural_cmp(a.instance, b.instance));
        for slot in slots {
            if let Some(reason) = slot.unroutable_reason() {
                missing += 1;
                problems.push(Problem {
                    code: CRITICAL,
                    text: format!(
                        "{name}/{} routes to {}: {reason}",
                        slot.instance, slot.version
                    ),
                });
            }
        }
    }
    let rejected: Vec<_> = state
        .snapshot
        .rejected
        .iter()
        .filter(|(key, _)| {
            args.app
                .as_ref()
                .is_none_or(|a| key.starts_with(&ks.app(a)))
        })
        .collect();
    for (key, reason) in &rejected {
        problems.push(Problem {
            code: WARNING,
            text: format!("record {key} refused: {reason}"),
        });
    }
    let mut perfdata = vec![
        ("agents".to_string(), lb.len().to_string()),
        ("lagging".to_string(), lagging.to_string()),
        ("stale".to_string(), stale.to_string()),
        ("failing".to_string(), failing.to_string()),
        ("missing".to_string(), missing.to_string()),
        ("rejected".to_string(), rejected.len().to_string()),
    ];
    for (name, _) in &apps {
        // Only fresh records: a stale agent's last window says nothing about now.
        let fresh: Vec<&AppStats> = records
            .iter()
            .filter(|r| &r.app == *name)
            .filter(|r| age(&r.at, now).is_some_and(|a| a <= args.stale_after))
            .collect();
        let merged: BTreeMap<_, _> = stats::merge(fresh);
        for (version, s) in merged {
            let label = format!("error_rate_{name}_{version}");
            let value = match s.window.error_rate() {
                Some(r) => format!("{r:.3}"),
                None => "U".into(),
            };
            perfdata.push((label, format!("{value};{};;0;1", args.max_error_rate)));
            let rate = s.window.error_rate().unwrap_or(0.0);
            if s.window.requests >= args.min_requests && rate > args.max_error_rate {
                problems.push(Problem {
                    code: WARNING,
                    text: format!(
                        "{name} {version} 5xx rate {:.1}% ({} of {} requests in the last window) over --max-error-rate {:.1}%",
                        rate * 100.0,
                        s.window.errors_5xx,
                        s.window.requests,
                        args.max_error_rate * 100.0
                    ),
                });
            }
        }
    }
    problems.sort_by_key(|p| std::cmp::Reverse(p.code));
    let code = problems.iter().map(|p| p.code).max().unwrap_or(OK);
    let current = lb.len() - lagging - stale;
    let summary = if problems.is_empty() {
        format!(
            "{} LB agent{} current, 0 routes to missing or failing endpoints",
            current,
            if current == 1 { "" } else { "s" }
        )
    } else {
        let mut texts: Vec<&str> = problems.iter().take(3).map(|p| p.text.as_str()).collect();
        let more = problems.len().saturating_sub(3);
        let extra = format!("and {more} more");
        if more > 0 {
            texts.push(&extra);
        }
        texts.join("; ")
    };
    Ok(finish(ctx, code, &summary, &problems, &perfdata))
}
