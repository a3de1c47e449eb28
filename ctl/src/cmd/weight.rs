//! `discoctl weight APP VERSION PERCENT`: a weighted split between the routed versions
//! (e.g. 5% to v2), for canaries by traffic share rather than by slots. Sets the app
//! policy's `weights[VERSION]`; 0 removes it. The weights may add up to 100 at most;
//! versions without a weight share what is left.

use anyhow::Context as _;
use clap::Args;
use disco::model::HistoryAction;
use disco::plan::plan_weight;

use crate::commit::{self, Change, WriteOpts};
use crate::context::Ctx;
use crate::exit::Result;

#[derive(Debug, Args)]
pub struct WeightArgs {
    /// The app.
    #[arg(value_parser = super::app_name)]
    app: String,
    /// A version some slot routes to.
    #[arg(value_parser = super::version_name)]
    version: String,
    /// Share of the app's traffic, 0-100; 0 removes the version's weight.
    #[arg(value_parser = clap::value_parser!(u32).range(0..=100))]
    percent: u32,
    #[command(flatten)]
    write: WriteOpts,
}

pub async fn run(ctx: &Ctx, args: WeightArgs) -> Result {
    let state = crate::app_state::read(ctx, &args.app).await?;
    let before = state.policy()?;
    let after = plan_weight(&state.app, &args.version, args.percent).with_context(|| {
        format!(
            "cannot give {} {}% of {}'s traffic",
            args.version, args.percent, args.app
        )
    })?;
    let change = Change::new(
        HistoryAction::Weight,
        format!("weight {} {}%", args.version, args.percent),
    )
    .field("version", &args.version)
    .field("percent", args.percent);
    // The version must still be routed when the weight lands.
    let guard_routes = args.percent > 0;
    commit::policy(
        ctx,
        &state,
        change,
        before,
        after,
        guard_routes,
        &args.write,
    )
    .await
}
