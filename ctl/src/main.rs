//! `discoctl`: read and change disco's routing in etcd.
#![forbid(unsafe_code)]

mod app_state;
mod cmd;
mod commit;
mod context;
mod describe;
mod exit;
mod table;

use clap::{Parser, Subcommand};

use context::{Ctx, Global, Output};

/// Route traffic between application versions behind HAProxy/nginx, through etcd.
///
/// Every change is one etcd transaction (compare what was read, write the routes and
/// the audit record together) and by default waits until every live LB agent has
/// applied it (--no-wait, --timeout).
///
/// Exit codes: 0 success, 1 error, 2 bad input or usage, 3 timed out waiting for
/// agents (named on stderr), 4 conflict with a concurrent change, 5 precondition
/// failed. Nothing is written on 1, 2, 4 and 5; on 3 the change is committed.
#[derive(Debug, Parser)]
#[command(name = "discoctl", version)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Register or remove endpoints by hand.
    #[command(subcommand)]
    Endpoint(cmd::endpoint::EndpointCmd),
    /// Point slots at versions.
    #[command(subcommand)]
    Route(cmd::route::RouteCmd),
    /// An app's frontend settings.
    #[command(subcommand)]
    App(cmd::app::AppCmd),
    /// Canary step: flip the next slot(s), in natural order, to VERSION.
    ///
    /// Slots not yet on VERSION are taken in natural order of their instance names
    /// (instance2 before instance10). Refuses (exit 5) if VERSION has no endpoint, or a
    /// slot to flip has no VERSION endpoint or one reported failing. Prints every slot
    /// before -> after.
    Promote(cmd::promote::PromoteArgs),
    /// Undo the newest rollout (from history), or every slot to --to VERSION.
    ///
    /// Without --to: the newest promote, switch or route set record names the version
    /// it brought in; every slot now on that version goes back to the version it served
    /// before (from the audit log). A second rollback changes nothing.
    Rollback(cmd::rollback::RollbackArgs),
    /// Blue/green: every slot to VERSION at once.
    ///
    /// One transaction, so one reload per LB host; only if every slot that changes has
    /// a VERSION endpoint not reported failing (exit 5 otherwise).
    Switch(cmd::switch::SwitchArgs),
    /// Dark canary: requests matching a header, cookie or network go to VERSION.
    ///
    /// Give at least one --header, --cookie or --cidr (repeatable; any match counts),
    /// or --off. Replaces the previous dark canary.
    Dark(cmd::dark::DarkArgs),
    /// Give a routed VERSION a share of the traffic, in percent (0 removes it).
    Weight(cmd::weight::WeightArgs),
    /// Slots, versions, endpoints, dark canary, weights, agents.
    Status {
        /// Only this app.
        #[arg(value_parser = cmd::app_name)]
        app: Option<String>,
    },
    /// Live agents: applied revision, lag behind the latest change, errors.
    Agents,
    /// An app's audit log.
    History(cmd::history::HistoryArgs),
}

/// Prints what a write did.
pub fn report(ctx: &Ctx, what: &str, revision: i64) {
    match ctx.output {
        Output::Table => println!("{what} (revision {revision})"),
        Output::Json => println!(
            "{}",
            serde_json::json!({ "result": what, "revision": revision })
        ),
    }
}

async fn run(cli: Cli) -> exit::Result {
    let ctx = cli.global.context()?;
    match cli.command {
        Command::Endpoint(c) => cmd::endpoint::run(&ctx, c).await,
        Command::Route(c) => cmd::route::run(&ctx, c).await,
        Command::App(c) => cmd::app::run(&ctx, c).await,
        Command::Promote(a) => cmd::promote::run(&ctx, a).await,
        Command::Rollback(a) => cmd::rollback::run(&ctx, a).await,
        Command::Switch(a) => cmd::switch::run(&ctx, a).await,
        Command::Dark(a) => cmd::dark::run(&ctx, a).await,
        Command::Weight(a) => cmd::weight::run(&ctx, a).await,
        Command::Status { app } => cmd::status::run(&ctx, app).await,
        Command::Agents => cmd::agents::run(&ctx).await,
        Command::History(a) => cmd::history::run(&ctx, a).await,
    }
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("RUST_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = match runtime.block_on(run(cli)) {
        Ok(()) => exit::OK,
        Err(failure) => {
            eprintln!("discoctl: {:#}", failure.error);
            failure.code
        }
    };
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
