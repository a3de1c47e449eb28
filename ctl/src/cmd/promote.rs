//! `discoctl promote APP VERSION [--count N | --all]`: the canary step. The next N
//! slots not yet on VERSION, in natural order of their instance names (instance2
//! before instance10), flip to VERSION in one transaction.

use anyhow::Context as _;
use clap::Args;
use disco::model::HistoryAction;
use disco::plan::{plan_promote, Count};

use crate::commit::{self, Change, WriteOpts};
use crate::context::Ctx;
use crate::exit::Result;

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The app.
    #[arg(value_parser = super::app_name)]
    pub app: String,
    /// The version to flip slots to.
    #[arg(value_parser = super::version_name)]
    pub version: String,
    /// How many slots to flip.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub count: u32,
    /// Flip every slot not yet on VERSION.
    #[arg(long, conflicts_with = "count")]
    pub all: bool,
    #[command(flatten)]
    pub write: WriteOpts,
}

pub async fn run(ctx: &Ctx, args: PromoteArgs) -> Result {
    let state = crate::app_state::read(ctx, &args.app).await?;
    let count = if args.all {
        Count::All
    } else {
        Count::Next(args.count as usize)
    };
    let plan = plan_promote(&state.app, &args.version, count)
        .with_context(|| format!("cannot promote {} to {}", args.app, args.version))?;
    let change = Change::new(HistoryAction::Promote, format!("promote {}", args.version))
        .field("version", &args.version);
    commit::routes(ctx, &state, change, &plan, &args.write).await
}
