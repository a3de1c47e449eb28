//! `discoctl pause|resume|abort APP`: steer a running canary from another terminal
//! (the command line; what each does is `crate::canary::control`).

use std::time::Duration;

use clap::Args;

use crate::canary;
use crate::context::Ctx;
use crate::exit::{self, Result};

#[derive(Debug, Args)]
pub struct PauseArgs {
    /// The app.
    #[arg(value_parser = super::app_name)]
    app: String,
    /// Why, shown by the running canary and `discoctl status`.
    #[arg(long)]
    reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The app.
    #[arg(value_parser = super::app_name)]
    app: String,
}

#[derive(Debug, Args)]
pub struct AbortArgs {
    /// The app.
    #[arg(value_parser = super::app_name)]
    app: String,
    /// Why, for the rollback's audit record.
    #[arg(long)]
    reason: Option<String>,
    /// Longest wait for the canary to roll back (exit 3 past it).
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Lease of the lock when this command rolls back a canary nobody runs.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    lock_ttl: Duration,
}

pub async fn pause(ctx: &Ctx, args: PauseArgs) -> Result {
    canary::control::pause(ctx, &args.app, args.reason).await
}

pub async fn resume(ctx: &Ctx, args: ResumeArgs) -> Result {
    canary::control::resume(ctx, &args.app).await
}

pub async fn abort(ctx: &Ctx, args: AbortArgs) -> Result {
    if args.lock_ttl < Duration::from_secs(2) {
        return Err(exit::usage("--lock-ttl must be at least 2s"));
    }
    canary::control::abort(ctx, &args.app, args.reason, args.timeout, args.lock_ttl).await
}
