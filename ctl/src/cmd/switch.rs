//! `discoctl switch APP VERSION`: blue/green. Every slot flips to VERSION in one
//! transaction (so one reload per LB host), only if every slot that changes has a
//! VERSION endpoint not reported failing. The old endpoints stay registered, so a
//! `rollback` is instant.

use anyhow::Context as _;
use clap::Args;
use disco::model::HistoryAction;
use disco::plan::plan_switch;

use crate::commit::{self, Change, WriteOpts};
use crate::context::Ctx;
use crate::exit::Result;

#[derive(Debug, Args)]
pub struct SwitchArgs {
    /// The app.
    #[arg(value_parser = super::app_name)]
    app: String,
    /// The version every slot goes to.
    #[arg(value_parser = super::version_name)]
    version: String,
    #[command(flatten)]
    write: WriteOpts,
}

pub async fn run(ctx: &Ctx, args: SwitchArgs) -> Result {
    let state = crate::app_state::read(ctx, &args.app).await?;
    let plan = plan_switch(&state.app, &args.version)
        .with_context(|| format!("cannot switch {} to {}", args.app, args.version))?;
    let change = Change::new(HistoryAction::Switch, format!("switch to {}", args.version))
        .field("version", &args.version);
    commit::routes(ctx, &state, change, &plan, &args.write).await
}
