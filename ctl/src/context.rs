//! The global options, parsed once into what every command needs.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use disco::store::{EtcdConfig, Store};
use disco::Keyspace;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for humans.
    Table,
    /// One JSON document, for scripts.
    Json,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// etcd client URLs, comma separated.
    #[arg(
        long,
        global = true,
        env = "DISCO_ETCD_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// Key prefix of the disco key space.
    #[arg(long, global = true, env = "DISCO_PREFIX", default_value = "/disco")]
    pub prefix: String,
    /// etcd user (auth).
    #[arg(long, global = true, env = "DISCO_ETCD_USER")]
    pub user: Option<String>,
    /// etcd password (auth); prefer the environment variable.
    #[arg(
        long,
        global = true,
        env = "DISCO_ETCD_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// CA certificate (PEM) for etcd TLS.
    #[arg(long, global = true, env = "DISCO_ETCD_CACERT")]
    pub cacert: Option<PathBuf>,
    /// Client certificate (PEM) for etcd mutual TLS.
    #[arg(long, global = true, env = "DISCO_ETCD_CERT")]
    pub cert: Option<PathBuf>,
    /// Client key (PEM) for etcd mutual TLS.
    #[arg(long, global = true, env = "DISCO_ETCD_KEY")]
    pub key: Option<PathBuf>,
    /// Bound on each etcd request.
    #[arg(long, global = true, default_value = "5s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value = "table")]
    pub output: Output,
    /// Who makes the change, for the audit log. Default: user@host.
    #[arg(long, global = true, env = "DISCO_ACTOR")]
    pub actor: Option<String>,
}

/// What commands work with.
pub struct Ctx {
    pub store: Store,
    pub keyspace: Keyspace,
    pub output: Output,
    pub actor: String,
}

impl Global {
    pub fn context(&self) -> crate::exit::Result<Ctx> {
        let keyspace = Keyspace::new(&self.prefix).map_err(crate::exit::usage)?;
        let store = Store::new(EtcdConfig {
            endpoints: self.endpoints.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
            ca_file: self.cacert.clone(),
            cert_file: self.cert.clone(),
            key_file: self.key.clone(),
            request_timeout: self.request_timeout,
            ..EtcdConfig::default()
        })
        .map_err(crate::exit::usage)?;
        let actor = self.actor.clone().unwrap_or_else(default_actor);
        Ok(Ctx {
            store,
            keyspace,
            output: self.output,
            actor,
        })
    }
}

fn default_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host}")
}
