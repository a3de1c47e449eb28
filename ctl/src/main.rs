//! `discoctl`: read and change disco's routing in etcd.
//!
//! # Layout
//!
//! - `main` (this file): the command line, the dispatch to each command, and the
//!   mapping of errors to exit codes.
//! - [`context`]: the global options, parsed once into what every command needs.
//! - [`cmd`]: one module per command group (status, promote, switch, rollback, dark,
//!   weight, route, endpoint, app, agents, history, check, and the canary's verbs).
//! - [`canary`]: the automated canary: its steps, observation, events, lock, pause and
//!   rollback.
//! - [`dashboard`]: `discoctl dashboard`, the live web page (etcd watches, server-sent
//!   events, the page's assets, and its actions behind a token).
//! - [`app_state`]: one app's routing state read at one revision.
//! - [`commit`]: a planned change committed as one etcd transaction with its audit
//!   record, then waited for.
//! - [`describe`]: short human descriptions of routes and changes.
//! - [`table`]: aligned tables for people (`-o json` is for machines).
//! - [`exit`]: the exit codes, stable because CI jobs branch on them.
#![forbid(unsafe_code)]

mod app_state;
mod canary;
mod cmd;
mod commit;
mod context;
mod dashboard;
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
/// Exit codes: 0 success, 1 error, 2 bad input or usage, 3 committed but not confirmed
/// by every LB agent (named on stderr), 4 conflict with a concurrent change, 5
/// precondition failed, 6 canary rolled back, 7 outcome unknown (etcd failed after the
/// change may have reached it and could not be asked). Nothing is written on 1, 2, 4
/// and 5; on 3 the change is committed. `check` follows the Nagios conventions instead: 0 OK, 1 WARNING,
/// 2 CRITICAL, 3 UNKNOWN.
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
    /// Automated canary: apply steps, observe traffic, continue or roll back.
    ///
    /// Each step is one transaction, waits until every live LB agent applied it, and is
    /// observed for --interval through the traffic statistics the agents publish. A
    /// step fails when VERSION's 5xx share is over --max-error-rate and over the other
    /// versions' share, or its mean response time is over --max-latency; then
    /// everything goes back to the state before the canary (routes, dark canary,
    /// weights) with an audit record saying why, and the exit code is 6. Exit 0 when
    /// every step passed; 3 when the agents did not apply a step in time (rolled back
    /// too); 4 when a canary of APP is already running. SIGINT/SIGTERM roll back; a
    /// second signal exits at once, leaving the canary for --resume.
    Canary(cmd::canary::CanaryArgs),
    /// Pause a running canary: its step timer stops until `resume`.
    Pause(cmd::control::PauseArgs),
    /// Resume a paused canary (also: confirm the final step of a --confirm canary).
    Resume(cmd::control::ResumeArgs),
    /// Abort a canary: it rolls back; returns once it has.
    ///
    /// If no discoctl runs the canary any more (its lock expired), this command takes
    /// the lock and rolls back itself.
    Abort(cmd::control::AbortArgs),
    /// Nagios/Sensu check: agents, routes, error rates. Exit 0 OK, 1 WARNING,
    /// 2 CRITICAL, 3 UNKNOWN.
    ///
    /// CRITICAL: fewer live LB agents than --min-agents; an LB agent with a last error;
    /// a stale LB agent (newest status or statistics older than --stale-after, judged
    /// for agents that publish statistics or lag the latest change); a route to a
    /// missing or failing endpoint. WARNING: an LB agent still behind the latest
    /// routing change after --lag-grace; a version whose 5xx share in the agents' last
    /// statistics window is over --max-error-rate (with at least --min-requests);
    /// records refused as invalid. UNKNOWN: etcd unreachable, unknown app, bad options.
    Check(cmd::check::CheckArgs),
    /// A live web page: apps, slots, endpoints, agents, traffic, canaries, history.
    ///
    /// Served on --listen (default 127.0.0.1:8080), updated from etcd watches without
    /// reloading. Read-only unless --allow-actions: then pause, resume, abort, promote
    /// and rollback are offered, each the same transaction and audit record as the
    /// command's, recorded as `dashboard:<NAME>`, and each needs the token printed at
    /// start (or read from --token-file) in the X-Disco-Token header. Requests naming a
    /// host other than an IP address, localhost or an --allow-host are refused (DNS
    /// rebinding), as are actions from another origin. Runs until SIGINT/SIGTERM.
    Dashboard(dashboard::DashboardArgs),
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
    let is_check = matches!(cli.command, Command::Check(_));
    let ctx = match cli.global.context() {
        Ok(ctx) => ctx,
        Err(f) if is_check => {
            println!("DISCO UNKNOWN - {:#}", f.error);
            return Err(exit::Failure::quiet(cmd::check::UNKNOWN));
        }
        Err(f) => return Err(f),
    };
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
        Command::Canary(a) => cmd::canary::run(&ctx, a).await,
        Command::Pause(a) => cmd::control::pause(&ctx, a).await,
        Command::Resume(a) => cmd::control::resume(&ctx, a).await,
        Command::Abort(a) => cmd::control::abort(&ctx, a).await,
        Command::Check(a) => cmd::check::run(&ctx, a).await,
        Command::Dashboard(a) => dashboard::run(&ctx, a).await,
    }
}

/// What to check next, for the errors a new user meets first.
fn hint(error: &anyhow::Error) -> Option<&'static str> {
    match error.downcast_ref::<disco::store::StoreError>()? {
        disco::store::StoreError::Unavailable { .. } => Some(
            "check that etcd runs at those endpoints and is reachable from here; name them \
             with --endpoints or DISCO_ETCD_ENDPOINTS (RUST_LOG=debug shows the full error)",
        ),
        _ => None,
    }
}

/// Colour codes only for a person at a terminal (`RUST_LOG` output redirected to a file
/// stays plain). `NO_COLOR` (any value) turns colour off there too.
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A check plugin's bad options are UNKNOWN (3), not CRITICAL (2).
        Err(e) if e.use_stderr() && std::env::args().any(|a| a == "check") => {
            let _ = e.print();
            std::process::exit(cmd::check::UNKNOWN);
        }
        Err(e) => e.exit(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("RUST_LOG"))
        .with_ansi(colour_on_stderr())
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = match runtime.block_on(run(cli)) {
        Ok(()) => exit::OK,
        Err(failure) => {
            if !failure.quiet {
                eprintln!("discoctl: {:#}", failure.error);
                if let Some(hint) = hint(&failure.error) {
                    eprintln!("  {hint}");
                }
            }
            failure.code
        }
    };
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    /// Completions (bash, zsh, fish) and the man page under packaging/ are current.
    #[test]
    fn generated_completions_and_man_page_are_current() {
        use clap::CommandFactory;
        let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        disco_harness::generated::check_cli(&workspace, "discoctl", super::Cli::command());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
