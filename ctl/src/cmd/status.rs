//! `discoctl status [APP]`: slots → version → address → endpoint state, every
//! registered endpoint with its health, the dark canary and weights, the agents (and
//! whether each has applied the latest routing change), and records refused as invalid.

use disco::model::{AgentStatus, Endpoint, HealthStatus};
use disco::plan::natural_cmp;
use disco::snapshot::{Slot, Snapshot};
use serde_json::{json, Value};

use crate::context::{Ctx, Output};
use crate::exit::{self, Result};

/// The routing state and the agents, with the latest routing revision.
pub struct State {
    /// Apps and agents; `revision` is the store's revision when the apps were read.
    pub snapshot: Snapshot,
    /// The highest mod revision under `<prefix>/apps/`: the last routing write, which
    /// every LB agent has to apply (0 when nothing is stored).
    pub latest: i64,
}

/// Reads the apps and the agents at one revision each.
pub async fn read(ctx: &Ctx) -> Result<State> {
    let ks = &ctx.keyspace;
    let (revision, apps) = ctx.store.get_prefix(&ks.apps(), None).await?;
    let (_, agents) = ctx.store.get_prefix(&ks.agents(), None).await?;
    let latest = apps.iter().map(|kv| kv.mod_revision).max().unwrap_or(0);
    let kvs = apps.into_iter().chain(agents).map(|kv| (kv.key, kv.value));
    Ok(State {
        snapshot: Snapshot::from_kvs(ks, revision, kvs),
        latest,
    })
}

/// Whether the agent runs the LB role (the agents `--wait` waits for).
pub fn is_lb(agent: &AgentStatus) -> bool {
    agent.roles.iter().any(|r| r == "lb")
}

/// An agent's status with `applied_latest` and `lag` (revisions behind `latest`; both
/// null for agents without the LB role).
pub fn agent_json(agent: &AgentStatus, latest: i64) -> Value {
    let mut v = json!(agent);
    let lb = is_lb(agent);
    v["applied_latest"] = json!(lb.then_some(agent.applied_revision >= latest));
    v["lag"] = json!(lb.then_some((latest - agent.applied_revision).max(0)));
    v
}

/// `canary v2 step 2/3 (2 slots on v2): running, owner 123@host`.
fn rollout_line(raw: &Value) -> String {
    let Ok(r) = serde_json::from_value::<disco::rollout::Rollout>(raw.clone()) else {
        return "canary record unreadable".into();
    };
    let step = match r.step.checked_sub(1).and_then(|i| r.steps.get(i)) {
        Some(s) => format!(" ({})", s.describe(&r.version)),
        None => String::new(),
    };
    let reason = r.reason.map(|x| format!(": {x}")).unwrap_or_default();
    format!(
        "canary {} step {}/{}{step}: {}{reason} (owner {}, started {})",
        r.version,
        r.step,
        r.steps.len(),
        r.state,
        r.owner,
        r.started_at
    )
}

/// A slot's endpoint in a word: `missing`, `failing` or `ok` (also the dashboard's).
pub(crate) fn slot_state(slot: &Slot) -> &'static str {
    match slot.endpoint {
        None => "missing",
        Some(e) if !e.is_healthy() => "failing",
        Some(_) => "ok",
    }
}

/// An endpoint's health check in a word: `passing`, `failing` or `unknown` (also the
/// dashboard's).
pub(crate) fn health(e: &Endpoint) -> &'static str {
    match e.health.as_ref().map(|h| h.status) {
        Some(HealthStatus::Passing) => "passing",
        Some(HealthStatus::Failing) => "failing",
        None => "unknown",
    }
}

pub async fn run(ctx: &Ctx, app: Option<String>) -> Result {
    let State { snapshot, latest } = read(ctx).await?;
    if let Some(app) = &app {
        if !snapshot.apps.contains_key(app) {
            return Err(exit::usage(format!(
                "unknown app {app:?}: nothing is stored under {}",
                ctx.keyspace.app(app)
            )));
        }
    }
    let apps: Vec<_> = snapshot
        .apps
        .iter()
        .filter(|(name, _)| app.as_ref().is_none_or(|a| a == *name))
        .collect();
    match ctx.output {
        Output::Json => {
            let apps: serde_json::Map<String, Value> = apps
                .iter()
                .map(|(name, a)| {
                    let mut slots: Vec<Slot> = a.slots().collect();
                    slots.sort_by(|x, y| natural_cmp(x.instance, y.instance));
                    let slots: Vec<_> = slots
                        .iter()
                        .map(|s| {
                            json!({
                                "instance": s.instance,
                                "version": s.version,
                                "address": s.endpoint.map(|e| e.address.as_str()),
                                "endpoint": slot_state(s),
                            })
                        })
                        .collect();
                    let policy = a.policy.clone().unwrap_or_default();
                    (
                        name.to_string(),
                        json!({
                            "policy": a.policy,
                            "slots": slots,
                            "endpoints": a.endpoints,
                            "dark": policy.dark,
                            "weights": policy.weights,
                            "rollout": a.rollout,
                        }),
                    )
                })
                .collect();
            let agents: serde_json::Map<String, Value> = snapshot
                .agents
                .iter()
                .map(|(id, a)| (id.clone(), agent_json(a, latest)))
                .collect();
            let doc = json!({
                "revision": snapshot.revision,
                "latest_revision": latest,
                "apps": apps,
                "agents": agents,
                "rejected": snapshot.rejected_list(),
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Output::Table => {
            let mut rows = Vec::new();
            let mut notes = Vec::new();
            let mut endpoints = Vec::new();
            for (name, a) in &apps {
                let policy = a.policy.clone().unwrap_or_default();
                let listen = policy.listen.clone().unwrap_or_else(|| "-".into());
                let mut slots: Vec<Slot> = a.slots().collect();
                slots.sort_by(|x, y| natural_cmp(x.instance, y.instance));
                for s in &slots {
                    rows.push(vec![
                        name.to_string(),
                        listen.clone(),
                        s.instance.to_string(),
                        s.version.to_string(),
                        s.endpoint
                            .map(|e| e.address.clone())
                            .unwrap_or_else(|| "-".into()),
                        slot_state(s).to_string(),
                    ]);
                }
                if a.routes.is_empty() {
                    rows.push(vec![
                        name.to_string(),
                        listen,
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "no slots".into(),
                    ]);
                }
                if let Some(raw) = &a.rollout {
                    notes.push(format!("{name}: {}", rollout_line(raw)));
                }
                if policy.dark.is_some() || !policy.weights.is_empty() {
                    notes.push(format!(
                        "{name}: dark {}; weights {}",
                        crate::describe::dark(policy.dark.as_ref()),
                        crate::describe::weights(&policy.weights)
                    ));
                }
                let mut instances: Vec<_> = a.endpoints.iter().collect();
                instances.sort_by(|x, y| natural_cmp(x.0, y.0));
                for (instance, versions) in instances {
                    for (version, e) in versions {
                        let routed = a.routes.get(instance) == Some(version);
                        endpoints.push(vec![
                            name.to_string(),
                            instance.clone(),
                            version.clone(),
                            e.address.clone(),
                            health(e).to_string(),
                            if routed { "yes" } else { "no" }.to_string(),
                        ]);
                    }
                }
            }
            crate::table::print(
                &["APP", "LISTEN", "SLOT", "VERSION", "ADDRESS", "ENDPOINT"],
                &rows,
            );
            if !notes.is_empty() {
                println!();
                for note in notes {
                    println!("{note}");
                }
            }
            if !endpoints.is_empty() {
                println!();
                crate::table::print(
                    &["APP", "SLOT", "VERSION", "ADDRESS", "HEALTH", "ROUTED"],
                    &endpoints,
                );
            }
            if !snapshot.agents.is_empty() {
                println!();
                let rows: Vec<Vec<String>> = snapshot
                    .agents
                    .values()
                    .map(|a| {
                        let current = match (is_lb(a), a.applied_revision >= latest) {
                            (false, _) => "-",
                            (true, true) => "yes",
                            (true, false) => "no",
                        };
                        vec![
                            a.id.clone(),
                            a.roles.join(","),
                            a.applied_revision.to_string(),
                            current.into(),
                            a.last_error.clone().unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                crate::table::print(
                    &["AGENT", "ROLES", "APPLIED", "LATEST", "LAST ERROR"],
                    &rows,
                );
            }
            if !snapshot.rejected.is_empty() {
                println!("\nrejected records (left out of every config):");
                for (key, reason) in &snapshot.rejected {
                    println!("  {key}: {reason}");
                }
            }
        }
    }
    Ok(())
}
