//! `disco-agent`: on every load-balancer host, turns disco's routing state in etcd into
//! HAProxy/nginx configuration with validated, confirmed, hitless reloads; on app hosts,
//! registers and health-checks the local instances.
//!
//! # Layout
//!
//! - [`config`]: the configuration file, parsed once into a validated `Config`.
//! - [`lb`]: the LB role: watch → snapshot → coalesce → apply every target → publish.
//! - [`target`]: one file the agent owns, and how a routing state reaches its proxy
//!   (unchanged, Runtime API or balancer push, or validated install and reload).
//! - [`pacing`]: when the LB role applies again by itself: reloads deferred by
//!   `max_delay`, failed applies retried with a doubling delay.
//! - [`guard`]: the mass-expiry guard, which keeps an app's expired endpoints for a while.
//! - [`runtime`]: routing changes through HAProxy's Runtime API, read back.
//! - [`haproxy_cli`]: the client of HAProxy's master CLI and stats sockets.
//! - [`balancer`]: the client of the nginx balancer's admin socket (`balancer.lua`).
//! - [`reload`]: graceful reloads of HAProxy and nginx, confirmed by a new worker.
//! - [`command`]: external commands as data: argv, no shell, a timeout, stderr kept.
//! - [`atomic_write`]: a file replaced atomically (temp file, fsync, rename).
//! - [`loaded`]: the record of what each proxy was confirmed to have loaded.
//! - [`status`]: this agent's status in etcd, under a lease, from its own task.
//! - [`stats`]: traffic statistics read from the proxies and published per app.
//! - [`view`]: the agent's view of itself (status, watch, apps, health) and its
//!   metrics, kept by the LB role and read by the endpoints.
//! - [`http`]: the HTTP endpoints' router: `/healthz`, `/metrics`, `/status`.
//! - [`metrics`]: the Prometheus metrics and their text formats.
//! - [`register`]: the registration role: endpoints under a lease, health checks,
//!   the drain on SIGTERM.
//! - [`rise_fall`]: consecutive check results turned into passing or failing.
//! - [`lease`]: the lease a task writes its keys under: granted, renewed, replaced.
#![forbid(unsafe_code)]

mod atomic_write;
mod balancer;
mod command;
mod config;
mod guard;
mod haproxy_cli;
mod http;
mod lb;
mod lease;
mod loaded;
mod metrics;
mod pacing;
mod register;
mod reload;
mod rise_fall;
mod runtime;
mod stats;
mod status;
mod target;
mod view;

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

use config::{Config, RegisterConfig};
use register::Control;

/// What the process was told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// SIGTERM/SIGINT: drain registrations, withdraw the status, exit.
    Shutdown,
    /// SIGHUP: re-read the configuration.
    Reload,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// disco's agent: etcd → HAProxy/nginx config, validated, with hitless reloads.
#[derive(Debug, Parser)]
#[command(name = "disco-agent", version)]
struct Cli {
    /// The configuration file (TOML).
    #[arg(
        long,
        short = 'c',
        env = "DISCO_AGENT_CONFIG",
        default_value = "/etc/disco/agent.toml"
    )]
    config: PathBuf,
    /// Overrides `agent_id`.
    #[arg(long, env = "DISCO_AGENT_ID")]
    agent_id: Option<String>,
    /// Overrides `etcd.endpoints` (comma separated).
    #[arg(long, env = "DISCO_ETCD_ENDPOINTS", value_delimiter = ',')]
    endpoints: Option<Vec<String>>,
    /// Overrides `prefix`.
    #[arg(long, env = "DISCO_PREFIX")]
    prefix: Option<String>,
    /// Log format (level from RUST_LOG, default info).
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Register one instance (no config file needed): publish it under a lease,
    /// health-check it, and on SIGTERM withdraw it and wait for the LB agents.
    Register {
        /// The app.
        #[arg(long)]
        app: String,
        /// The instance slot.
        #[arg(long)]
        instance: String,
        /// The version this instance runs.
        #[arg(long)]
        version: String,
        /// host:port the proxies connect to.
        #[arg(long)]
        address: String,
        /// Health check path (/healthz) or http:// URL.
        #[arg(long)]
        health: Option<String>,
        /// Time between checks.
        #[arg(long, default_value_t = RegisterConfig::DEFAULT_INTERVAL.into())]
        interval: humantime::Duration,
        /// Bound on one check. Default: 1s, or the interval when that is shorter.
        #[arg(long)]
        timeout: Option<humantime::Duration>,
        /// Consecutive passes before publishing.
        #[arg(long, default_value_t = RegisterConfig::DEFAULT_RISE)]
        rise: u32,
        /// Consecutive failures before marking failing.
        #[arg(long, default_value_t = RegisterConfig::DEFAULT_FALL)]
        fall: u32,
        /// Lease TTL.
        #[arg(long, default_value_t = RegisterConfig::DEFAULT_LEASE_TTL.into())]
        lease_ttl: humantime::Duration,
        /// Weight among the version's endpoints, 1-256.
        #[arg(long, default_value_t = RegisterConfig::DEFAULT_WEIGHT)]
        weight: u32,
        /// Bound on waiting for the LB agents when draining.
        #[arg(long, default_value_t = Config::DEFAULT_DRAIN_TIMEOUT.into())]
        drain_timeout: humantime::Duration,
    },
}

impl Cli {
    fn load(&self) -> anyhow::Result<Config> {
        let mut config = match &self.command {
            None => Config::load(&self.config)?,
            Some(Sub::Register {
                app,
                instance,
                version,
                address,
                health,
                interval,
                timeout,
                rise,
                fall,
                lease_ttl,
                weight,
                drain_timeout,
            }) => Config {
                registrations: vec![RegisterConfig {
                    app: app.clone(),
                    instance: instance.clone(),
                    version: version.clone(),
                    address: address.clone(),
                    health: health.clone(),
                    interval: (*interval).into(),
                    timeout: timeout.map(Into::into),
                    rise: *rise,
                    fall: *fall,
                    lease_ttl: (*lease_ttl).into(),
                    weight: *weight,
                }],
                drain_timeout: (*drain_timeout).into(),
                cache_path: Some(std::env::temp_dir().join("disco-register.snapshot.json")),
                ..Config::default()
            },
        };
        if let Some(id) = &self.agent_id {
            config.agent_id = id.clone();
        }
        if let Some(endpoints) = &self.endpoints {
            config.etcd.endpoints = endpoints.clone();
        }
        if let Some(prefix) = &self.prefix {
            config.prefix = prefix.clone();
        }
        config.validate()?;
        Ok(config)
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let (tx, mut signals) = mpsc::channel(4);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            let s = tokio::select! {
                _ = term.recv() => Signal::Shutdown,
                _ = int.recv() => Signal::Shutdown,
                _ = hup.recv() => Signal::Reload,
            };
            if tx.send(s).await.is_err() {
                return;
            }
        }
    });
    let mut config = cli.load()?;
    // Metrics and the endpoints' view outlive configuration re-reads.
    let shared = view::Shared::new(&config.agent_id);
    loop {
        tracing::info!(
            agent_id = %config.agent_id,
            targets = config.targets.len(),
            registrations = config.registrations.len(),
            "disco-agent starting"
        );
        let store = disco::store::Store::new(config.etcd.clone())?;
        let (control, control_rx) = watch::channel(Control::Run);
        let registering = tokio::spawn(register::run(config.clone(), store.clone(), control_rx));
        let (stop_lb, stop_rx) = watch::channel(false);
        let mut lb = tokio::spawn(lb::run(config.clone(), store, stop_rx, shared.clone()));
        let signal = tokio::select! {
            signal = signals.recv() => signal.unwrap_or(Signal::Shutdown),
            ended = &mut lb => {
                let _ = control.send(Control::Stop);
                let _ = registering.await;
                return ended?;
            }
        };
        // Registrations go first: on shutdown they drain while this host's LB role
        // keeps applying (and reporting) the withdrawal.
        let _ = control.send(if signal == Signal::Shutdown {
            Control::Drain
        } else {
            Control::Stop
        });
        let _ = registering.await;
        let _ = stop_lb.send(true);
        lb.await??;
        match signal {
            Signal::Shutdown => {
                tracing::info!("stopped; status withdrawn");
                return Ok(());
            }
            Signal::Reload => match cli.load() {
                Ok(new) => {
                    tracing::info!("SIGHUP: configuration re-read");
                    config = new;
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "SIGHUP: keeping the running configuration")
                }
            },
        }
    }
}

/// Colour codes only for a person at a terminal: a log file or journald gets plain text.
/// `NO_COLOR` (any value) turns colour off there too.
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour_on_stderr())
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("disco-agent: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    /// Completions (bash, zsh, fish) and the man page under packaging/ are current.
    #[test]
    fn generated_completions_and_man_page_are_current() {
        use clap::CommandFactory;
        let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        disco_harness::generated::check_cli(&workspace, "disco-agent", super::Cli::command());
    }

    /// `disco-agent register` registers as a `[[register]]` entry of the config file
    /// with the same fields does: the defaults are the same.
    #[test]
    fn the_register_subcommand_has_the_config_files_defaults() {
        use clap::Parser;
        let cli = super::Cli::try_parse_from([
            "disco-agent",
            "register",
            "--app=a",
            "--instance=i",
            "--version=v1",
            "--address=10.0.0.5:80",
        ])
        .unwrap();
        let config = cli.load().unwrap();
        let file: super::Config = toml::from_str(
            "[[register]]\napp = \"a\"\ninstance = \"i\"\nversion = \"v1\"\naddress = \"10.0.0.5:80\"",
        )
        .unwrap();
        assert_eq!(config.registrations, file.registrations);
        assert_eq!(config.drain_timeout, file.drain_timeout);
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
