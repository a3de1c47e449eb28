//! `discoctl`: read and change disco's routing in etcd.
#![forbid(unsafe_code)]

mod cmd;
mod context;
mod exit;
mod table;

use clap::{Parser, Subcommand};

use context::{Ctx, Global, Output};

/// Route traffic between application versions behind HAProxy/nginx, through etcd.
///
/// Exit codes: 0 success, 1 error, 2 bad input or usage, 3 timed out waiting for
/// agents, 4 conflict with a concurrent change, 5 precondition failed.
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
    /// Slots, versions, endpoints, agents.
    Status {
        /// Only this app.
        #[arg(value_parser = cmd::app_name)]
        app: Option<String>,
    },
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
        Command::Status { app } => cmd::status::run(&ctx, app).await,
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
