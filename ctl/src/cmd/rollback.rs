//! `discoctl rollback APP [--to VERSION]`: undo the newest rollout, from the audit log,
//! or put every slot on VERSION. One transaction either way.
//!
//! Without `--to`: the newest `promote`, `switch` or `route set` record names the
//! version it brought in; every slot now on that version goes back to the version it
//! served before it moved onto it. `rollback` records are not rollouts, so a second
//! rollback changes nothing (see `disco::plan::plan_rollback`).

use anyhow::Context as _;
use clap::Args;
use disco::model::{HistoryAction, HistoryRecord};
use disco::plan::{plan_rollback, plan_switch};

use crate::commit::{self, Change, WriteOpts};
use crate::context::Ctx;
use crate::exit::Result;

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The app.
    #[arg(value_parser = super::app_name)]
    pub app: String,
    /// Put every slot on this version instead (each needs an endpoint of it not
    /// reported failing).
    #[arg(long, value_parser = super::version_name)]
    pub to: Option<String>,
    #[command(flatten)]
    pub write: WriteOpts,
}

pub async fn run(ctx: &Ctx, args: RollbackArgs) -> Result {
    let state = crate::app_state::read(ctx, &args.app).await?;
    let (plan, change) = match &args.to {
        Some(version) => {
            let plan = plan_switch(&state.app, version)
                .with_context(|| format!("cannot roll {} back to {version}", args.app))?;
            let change = Change::new(HistoryAction::Rollback, format!("rollback to {version}"))
                .field("to", version);
            (plan, change)
        }
        None => {
            let history = read_history(ctx, &args.app).await?;
            let rollback = plan_rollback(&state.app, &history)
                .with_context(|| format!("cannot roll {} back", args.app))?;
            let versions: Vec<&str> = rollback.versions.iter().map(String::as_str).collect();
            let label = format!(
                "rollback of {} (history #{})",
                versions.join(", "),
                rollback.undoes
            );
            let change = Change::new(HistoryAction::Rollback, label)
                .field("rolls_back", &versions)
                .field("undoes_seq", rollback.undoes);
            (rollback.plan, change)
        }
    };
    commit::routes(ctx, &state, change, &plan, &args.write).await
}

/// The app's audit records, in order; unreadable ones are skipped with a warning.
pub async fn read_history(ctx: &Ctx, app: &str) -> Result<Vec<HistoryRecord>> {
    let (_, kvs) = ctx
        .store
        .get_prefix(&ctx.keyspace.history(app), None)
        .await?;
    let mut records = Vec::new();
    for kv in kvs {
        match serde_json::from_slice::<HistoryRecord>(&kv.value) {
            Ok(r) => records.push(r),
            Err(e) => eprintln!(
                "warning: {}: unreadable audit record ({e}); skipped",
                kv.key
            ),
        }
    }
    Ok(records)
}
