//! `discoctl dark APP VERSION --header NAME=VALUE | --cookie NAME=VALUE | --cidr NET`
//! and `discoctl dark APP --off`: the dark canary. Requests matching any of the matches
//! go to VERSION's endpoints; everyone else's traffic is untouched. A new dark canary
//! replaces the previous one. Written to the app's policy with an audit record.

use anyhow::Context as _;
use clap::Args;
use disco::model::{HistoryAction, Match};
use disco::plan::{plan_dark, plan_dark_off};

use crate::commit::{self, Change, WriteOpts};
use crate::context::Ctx;
use crate::exit::{self, Result};

#[derive(Debug, Args)]
pub struct DarkArgs {
    /// The app.
    #[arg(value_parser = super::app_name)]
    app: String,
    /// The version matching requests go to.
    #[arg(value_parser = super::version_name, required_unless_present = "off")]
    version: Option<String>,
    /// Requests with this header value (NAME=VALUE). Repeatable.
    #[arg(long, value_name = "NAME=VALUE", value_parser = super::header_match)]
    header: Vec<Match>,
    /// Requests with this cookie value (NAME=VALUE). Repeatable.
    #[arg(long, value_name = "NAME=VALUE", value_parser = super::cookie_match)]
    cookie: Vec<Match>,
    /// Requests from this source network (10.0.0.0/8, 2001:db8::/32, or one address).
    /// Repeatable; the only kind a tcp app can match.
    #[arg(long, value_name = "NET", value_parser = super::cidr_match)]
    cidr: Vec<Match>,
    /// Turn the dark canary off.
    #[arg(long, conflicts_with_all = ["version", "header", "cookie", "cidr"])]
    off: bool,
    #[command(flatten)]
    write: WriteOpts,
}

pub async fn run(ctx: &Ctx, args: DarkArgs) -> Result {
    let matches: Vec<Match> = [args.header, args.cookie, args.cidr].concat();
    let version = match (&args.version, args.off) {
        (_, true) => None,
        (Some(version), false) if !matches.is_empty() => Some(version.clone()),
        _ => {
            return Err(exit::usage(
                "dark needs at least one --header, --cookie or --cidr (or --off)",
            ))
        }
    };
    let state = crate::app_state::read(ctx, &args.app).await?;
    let before = state.policy()?;
    let (after, change) = match &version {
        None => (
            plan_dark_off(&state.app),
            Change::new(HistoryAction::Dark, "dark canary off".into()).field("dark", "off"),
        ),
        Some(version) => {
            let policy = plan_dark(&state.app, version, matches)
                .with_context(|| format!("cannot send {}'s dark canary to {version}", args.app))?;
            if !state.app.endpoints_of(version).any(|(_, e)| e.is_healthy()) {
                eprintln!(
                    "warning: every {version} endpoint of {} is reported failing: the proxies leave the dark canary out until one passes",
                    args.app
                );
            }
            let change = Change::new(HistoryAction::Dark, format!("dark canary to {version}"))
                .field("dark", policy.dark.clone());
            (policy, change)
        }
    };
    commit::policy(ctx, &state, change, before, after, false, &args.write).await
}
