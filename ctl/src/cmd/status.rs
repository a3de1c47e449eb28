//! `discoctl status [APP]`: slots → version → address → endpoint state, agents, and
//! records refused as invalid.

use disco::snapshot::Snapshot;
use serde_json::json;

use crate::context::{Ctx, Output};
use crate::exit::{self, Result};

/// Reads the apps and the agents at one revision each.
pub async fn read(ctx: &Ctx) -> Result<Snapshot> {
    let ks = &ctx.keyspace;
    let (revision, apps) = ctx.store.get_prefix(&ks.apps(), None).await?;
    let (_, agents) = ctx.store.get_prefix(&ks.agents(), None).await?;
    let kvs = apps.into_iter().chain(agents).map(|kv| (kv.key, kv.value));
    Ok(Snapshot::from_kvs(ks, revision, kvs))
}

pub async fn run(ctx: &Ctx, app: Option<String>) -> Result {
    let snapshot = read(ctx).await?;
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
    let slot_state = |slot: &disco::snapshot::Slot| match slot.endpoint {
        None => "missing",
        Some(e) if !e.is_healthy() => "failing",
        Some(_) => "ok",
    };
    match ctx.output {
        Output::Json => {
            let apps: serde_json::Map<String, serde_json::Value> = apps
                .iter()
                .map(|(name, a)| {
                    let slots: Vec<_> = a
                        .slots()
                        .map(|s| {
                            json!({
                                "instance": s.instance,
                                "version": s.version,
                                "address": s.endpoint.map(|e| e.address.as_str()),
                                "endpoint": slot_state(&s),
                            })
                        })
                        .collect();
                    (
                        name.to_string(),
                        json!({ "policy": a.policy, "slots": slots, "endpoints": a.endpoints }),
                    )
                })
                .collect();
            let doc = json!({
                "revision": snapshot.revision,
                "apps": apps,
                "agents": snapshot.agents,
                "rejected": snapshot.rejected_list(),
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Output::Table => {
            let mut rows = Vec::new();
            for (name, a) in &apps {
                let listen = a
                    .policy
                    .as_ref()
                    .and_then(|p| p.listen.clone())
                    .unwrap_or_else(|| "-".into());
                for s in a.slots() {
                    rows.push(vec![
                        name.to_string(),
                        listen.clone(),
                        s.instance.to_string(),
                        s.version.to_string(),
                        s.endpoint
                            .map(|e| e.address.clone())
                            .unwrap_or_else(|| "-".into()),
                        slot_state(&s).to_string(),
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
            }
            crate::table::print(
                &["APP", "LISTEN", "SLOT", "VERSION", "ADDRESS", "ENDPOINT"],
                &rows,
            );
            if !snapshot.agents.is_empty() {
                println!();
                let rows: Vec<Vec<String>> = snapshot
                    .agents
                    .values()
                    .map(|a| {
                        vec![
                            a.id.clone(),
                            a.applied_revision.to_string(),
                            if a.applied_revision >= snapshot.revision {
                                "yes".into()
                            } else {
                                "no".into()
                            },
                            a.last_error.clone().unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                crate::table::print(&["AGENT", "APPLIED", "CURRENT", "LAST ERROR"], &rows);
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
