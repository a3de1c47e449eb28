//! `disco-agent`: on every load-balancer host, turns disco's routing state in etcd into
//! HAProxy/nginx configuration with validated, confirmed, hitless reloads.
#![forbid(unsafe_code)]

mod atomic_write;
mod command;
mod config;
mod lb;
mod reload;
mod status;
mod target;

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use config::Config;
use lb::Signal;

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
}

impl Cli {
    fn load(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(&self.config)?;
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
    loop {
        tracing::info!(agent_id = %config.agent_id, targets = config.targets.len(), "disco-agent starting");
        let store = disco::store::Store::new(config.etcd.clone())?;
        match lb::run(config.clone(), store, &mut signals).await? {
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

fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
