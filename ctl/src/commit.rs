//! Committing a planned change: one etcd transaction that compares everything the plan
//! was built from (each key read by mod revision, and the routes prefix for slots added
//! since), writes the new routes or policy and the audit record together, then waits
//! for the agents (`--wait`, the default) and reports.
//!
//! `-o json` reports a write as ONE line, so that scripts can time it:
//!
//! ```json
//! {"action":"promote","agents":["lb1","lb2"],"app":"app1","changed":true,
//!  "history_seq":4,"lagging":[],"revision":57,"slots":[{"after":"v2","before":"v1",
//!  "changed":true,"instance":"instance1"},...],"version":"v2","wait_ms":31,"waited":true}
//! ```
//!
//! A change that changes nothing is not written (no transaction, no audit record):
//! `"changed":false`, exit code 0. When the wait times out the report is still printed
//! (the change IS committed), with the lagging agents, and the exit code is 3.

use std::time::Duration;

use clap::Args;
use disco::change::{ChangeSet, CommitError};
use disco::model::{HistoryAction, HistoryRecord, Policy, PolicyChange};
use disco::plan::{natural_cmp, Plan};
use disco::Key;
use serde_json::{json, Map, Value};

use crate::app_state::AppState;
use crate::context::{Ctx, Output};
use crate::exit::{self, Failure, Result};
use disco::converge::{self, Waited};

/// Options of every command that changes routing.
#[derive(Debug, Clone, Args)]
pub struct WriteOpts {
    /// Wait until every live LB agent has applied the change (the default).
    #[arg(long, overrides_with = "no_wait")]
    pub wait: bool,
    /// Return as soon as the change is committed.
    #[arg(long, overrides_with = "wait")]
    pub no_wait: bool,
    /// Longest wait for the agents, e.g. 30s or 500ms; exit code 3 when it passes.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Why, for the audit log.
    #[arg(long)]
    pub reason: Option<String>,
    /// Succeed even if an LB agent's status disappears during the wait before it
    /// confirmed (it is still named). Without it that is exit code 3: a host cut from
    /// etcd keeps serving the old routes.
    #[arg(long)]
    pub allow_vanished: bool,
}

/// A change about to be committed: what `history` and the report call it.
pub struct Change {
    /// The audit record's action: `promote`, `switch`, `rollback`, `dark`, `weight`.
    action: HistoryAction,
    /// What the table report's summary line says, e.g. `promote v2`.
    label: String,
    /// Fields of the JSON report.
    fields: Map<String, Value>,
}

impl Change {
    /// A change recorded as `action`, summarised as `label`.
    pub fn new(action: HistoryAction, label: String) -> Self {
        Change {
            action,
            label,
            fields: Map::new(),
        }
    }

    /// Adds `name` to the JSON report.
    pub fn field(mut self, name: &str, value: impl serde::Serialize) -> Self {
        self.fields.insert(name.into(), json!(value));
        self
    }
}

/// Commits `plan`'s slot flips for the app read in `state`.
pub async fn routes(
    ctx: &Ctx,
    state: &AppState,
    change: Change,
    plan: &Plan,
    opts: &WriteOpts,
) -> Result {
    let mut slots: Vec<(&String, &String)> = state.app.routes.iter().collect();
    slots.sort_by(|a, b| natural_cmp(a.0, b.0));
    let after = plan.apply(&state.app.routes);
    let rows: Vec<Value> = slots
        .iter()
        .map(|(instance, before)| {
            let after = &after[*instance];
            json!({ "instance": instance, "before": before, "after": after, "changed": before != &after })
        })
        .collect();
    let change = change.field("slots", rows);
    if plan.is_empty() {
        return nothing_to_do(ctx, state, change);
    }
    let mut set = ChangeSet::default();
    guard_routes(ctx, state, &mut set);
    put_flips(ctx, state, &mut set, plan);
    let record = HistoryRecord::new(
        &ctx.actor,
        change.action.clone(),
        plan.from_map(),
        plan.to_map(),
        None,
        opts.reason.clone(),
    );
    let summary = format!(
        "{}: {}: {} of {} slots changed",
        state.name,
        change.label,
        plan.flips.len(),
        slots.len()
    );
    commit_and_wait(ctx, state, set, record, change, summary, opts).await
}

/// Commits `after` as the app's policy (read in `state` as `before`). With
/// `also_routes`, the routes the plan checked must not have moved either.
pub async fn policy(
    ctx: &Ctx,
    state: &AppState,
    change: Change,
    before: Option<Policy>,
    after: Policy,
    also_routes: bool,
    opts: &WriteOpts,
) -> Result {
    let change = change
        .field("policy_before", &before)
        .field("policy", &after);
    if before.as_ref().unwrap_or(&Policy::default()) == &after {
        return nothing_to_do(ctx, state, change);
    }
    let mut set = ChangeSet::default();
    let key = guard_policy(ctx, state, &mut set);
    if also_routes {
        guard_routes(ctx, state, &mut set);
    }
    set.put(&key, serde_json::to_vec(&after)?);
    let summary = format!(
        "{}: {}",
        state.name,
        crate::describe::policy_change(before.as_ref(), Some(&after))
    );
    let record = HistoryRecord::new(
        &ctx.actor,
        change.action.clone(),
        Default::default(),
        Default::default(),
        Some(PolicyChange {
            from: before,
            to: Some(after),
        }),
        opts.reason.clone(),
    );
    commit_and_wait(ctx, state, set, record, change, summary, opts).await
}

/// Requires every route key read to be unchanged, and no slot added since the read.
pub fn guard_routes(ctx: &Ctx, state: &AppState, set: &mut ChangeSet) {
    for kv in state.routes.values() {
        set.expect(&kv.key, Some(kv));
    }
    set.expect_prefix_unchanged_since(&ctx.keyspace.routes(&state.name), state.revision);
}

/// Requires the app's policy key to be as read (absent if it was); returns the key.
pub fn guard_policy(ctx: &Ctx, state: &AppState, set: &mut ChangeSet) -> String {
    let key = ctx.keyspace.key(&Key::Policy {
        app: state.name.clone(),
    });
    set.expect(&key, state.policy.as_ref());
    key
}

/// Writes `plan`'s slot flips: each slot's route key gets its new version.
pub fn put_flips(ctx: &Ctx, state: &AppState, set: &mut ChangeSet, plan: &Plan) {
    for flip in &plan.flips {
        set.put(&state.route_key(ctx, &flip.instance), flip.to.as_str());
    }
}

async fn commit_and_wait(
    ctx: &Ctx,
    state: &AppState,
    mut set: ChangeSet,
    record: HistoryRecord,
    change: Change,
    summary: String,
    opts: &WriteOpts,
) -> Result {
    set.record(&ctx.store, &ctx.keyspace, &state.name, record)
        .await?;
    let revision = set.commit(&ctx.store).await.map_err(|e| match e {
        CommitError::Conflict(_) => Failure::new(
            exit::CONFLICT,
            anyhow::anyhow!(
                "conflict: a concurrent change touched {}'s slots, policy or audit log after this command read them; nothing was written, run the command again",
                state.name
            ),
        ),
        e => e.into(),
    })?;
    let seq = set.recorded_seq();
    let mut report = Report {
        app: &state.name,
        change,
        changed: true,
        revision,
        summary: match seq {
            Some(seq) => format!("{summary} (revision {revision}, history #{seq})"),
            None => format!("{summary} (revision {revision})"),
        },
        waited: None,
    };
    report
        .change
        .fields
        .insert("history_seq".into(), json!(seq));
    if opts.no_wait {
        report.print(ctx.output);
        return Ok(());
    }
    let waited = converge::wait(&ctx.store, &ctx.keyspace, revision, opts.timeout).await;
    let waited = match waited {
        Ok(w) => w,
        Err(e) => {
            report.print(ctx.output);
            // Committed: exit 1 would say "nothing written".
            return Err(exit::timeout(format!(
                "committed at revision {revision}, but waiting for the agents failed: {e}"
            )));
        }
    };
    report.waited = Some(waited.clone());
    report.print(ctx.output);
    if !waited.converged() {
        if opts.allow_vanished && waited.live_converged() {
            eprintln!(
                "note: not confirmed by LB agents that vanished during the wait (--allow-vanished): {}",
                waited.lagging_list()
            );
            return Ok(());
        }
        let live = waited.lagging.iter().filter(|l| !l.vanished).count();
        let timed_out = if live > 0 {
            format!(
                " (timed out after {})",
                humantime::format_duration(opts.timeout)
            )
        } else {
            String::new()
        };
        return Err(exit::timeout(format!(
            "committed at revision {revision}, but not confirmed by {} LB agent{}{timed_out}: {}",
            waited.lagging.len(),
            if waited.lagging.len() == 1 { "" } else { "s" },
            waited.lagging_list()
        )));
    }
    if waited.agents.is_empty() {
        eprintln!(
            "note: no live LB agent under {}: nothing to wait for",
            ctx.keyspace.agents()
        );
    }
    Ok(())
}

fn nothing_to_do(ctx: &Ctx, state: &AppState, change: Change) -> Result {
    let summary = format!(
        "{}: {}: nothing to change; nothing written",
        state.name, change.label
    );
    Report {
        app: &state.name,
        change,
        changed: false,
        revision: state.revision,
        summary,
        waited: None,
    }
    .print(ctx.output);
    Ok(())
}

/// What a write command prints.
struct Report<'a> {
    app: &'a str,
    change: Change,
    /// False when there was nothing to write.
    changed: bool,
    /// The commit's revision; the read revision when nothing was written.
    revision: i64,
    /// The table's summary line.
    summary: String,
    /// None with `--no-wait` or when nothing was written.
    waited: Option<Waited>,
}

impl Report<'_> {
    fn print(&self, output: Output) {
        let waited = self.waited.as_ref();
        match output {
            Output::Json => {
                let mut doc = self.change.fields.clone();
                doc.insert("app".into(), json!(self.app));
                doc.insert("action".into(), json!(self.change.action));
                doc.insert("changed".into(), json!(self.changed));
                doc.insert("revision".into(), json!(self.revision));
                doc.insert("waited".into(), json!(waited.is_some()));
                doc.insert("wait_ms".into(), json!(waited.map(|w| w.wait_ms)));
                doc.insert("agents".into(), json!(waited.map(|w| &w.agents)));
                doc.insert("lagging".into(), json!(waited.map(|w| &w.lagging)));
                println!("{}", Value::Object(doc));
            }
            Output::Table => {
                if let Some(Value::Array(slots)) = self.change.fields.get("slots") {
                    let rows: Vec<Vec<String>> = slots
                        .iter()
                        .map(|s| {
                            let cell = |k: &str| s[k].as_str().unwrap_or("-").to_string();
                            let mark = if s["changed"] == json!(true) {
                                "changed"
                            } else {
                                ""
                            };
                            vec![cell("instance"), cell("before"), cell("after"), mark.into()]
                        })
                        .collect();
                    crate::table::print(&["SLOT", "BEFORE", "AFTER", ""], &rows);
                }
                println!("{}", self.summary);
                match waited {
                    Some(w) if w.agents.is_empty() => {}
                    Some(w) if w.converged() => println!(
                        "applied by {} LB agent{} in {} ms: {}",
                        w.agents.len(),
                        if w.agents.len() == 1 { "" } else { "s" },
                        w.wait_ms,
                        w.agents.join(", ")
                    ),
                    Some(w) => {
                        let ids: Vec<&str> = w.lagging.iter().map(|l| l.id.as_str()).collect();
                        println!("NOT applied within {} ms by: {}", w.wait_ms, ids.join(", "))
                    }
                    None => {}
                }
            }
        }
    }
}
