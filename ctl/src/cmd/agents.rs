//! `discoctl agents`: every live agent (statuses are leased, so dead agents are gone):
//! roles, applied revision, whether it has applied the latest routing change and how
//! far behind it is, last error, records it refused.
//!
//! "Latest" is the highest mod revision of the keys under `<prefix>/apps/`: the last
//! write an LB agent has to apply. (A deletion leaves no key behind to carry its
//! revision; an agent that has applied it reports a higher revision, never a lower.)

use serde_json::json;

use crate::context::{Ctx, Output};
use crate::exit::Result;

pub async fn run(ctx: &Ctx) -> Result {
    let state = super::status::read(ctx).await?;
    let latest = state.latest;
    match ctx.output {
        Output::Json => {
            let agents: Vec<_> = state
                .snapshot
                .agents
                .values()
                .map(|a| super::status::agent_json(a, latest))
                .collect();
            let doc = json!({
                "revision": state.snapshot.revision,
                "latest_revision": latest,
                "agents": agents,
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Output::Table => {
            if state.snapshot.agents.is_empty() {
                println!("no live agent under {}", ctx.keyspace.agents());
                return Ok(());
            }
            let rows: Vec<Vec<String>> = state
                .snapshot
                .agents
                .values()
                .map(|a| {
                    let lb = super::status::is_lb(a);
                    let (current, lag) = if !lb {
                        ("-".to_string(), "-".to_string())
                    } else if a.applied_revision >= latest {
                        ("yes".into(), "0".into())
                    } else {
                        ("no".into(), (latest - a.applied_revision).to_string())
                    };
                    vec![
                        a.id.clone(),
                        a.roles.join(","),
                        a.applied_revision.to_string(),
                        current,
                        lag,
                        applied_by(a),
                        a.rejected.len().to_string(),
                        a.last_error.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            crate::table::print(
                &[
                    "AGENT",
                    "ROLES",
                    "APPLIED",
                    "LATEST",
                    "LAG",
                    "LAST CHANGE BY",
                    "REJECTED",
                    "LAST ERROR",
                ],
                &rows,
            );
            println!("latest routing change: revision {latest}");
        }
    }
    Ok(())
}

/// How each target's last change reached its proxy: `haproxy=runtime`, `nginx=reload`.
fn applied_by(a: &disco::model::AgentStatus) -> String {
    let list: Vec<String> = a
        .targets
        .iter()
        .filter_map(|(name, t)| Some(format!("{name}={}", t.applied_by.as_deref()?)))
        .collect();
    if list.is_empty() {
        "-".into()
    } else {
        list.join(",")
    }
}
