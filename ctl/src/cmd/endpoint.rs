//! `discoctl endpoint add|rm`: register or remove an instance's endpoint by hand.

use clap::Subcommand;
use disco::model::Endpoint;
use disco::Key;

use crate::context::Ctx;
use crate::exit::{self, Result};

#[derive(Debug, Subcommand)]
pub enum EndpointCmd {
    /// Register ADDR as the endpoint of VERSION in slot INSTANCE of APP.
    Add {
        #[arg(value_parser = super::app_name)]
        app: String,
        #[arg(value_parser = super::instance_name)]
        instance: String,
        #[arg(value_parser = super::version_name)]
        version: String,
        /// host:port the proxies connect to.
        #[arg(value_parser = super::address)]
        addr: String,
        /// HTTP path the proxies health-check (default: a TCP check).
        #[arg(long, value_parser = super::health_path)]
        health: Option<String>,
        /// Relative weight among the endpoints of one version, 1-256.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=256))]
        weight: u32,
    },
    /// Remove the endpoint of VERSION in slot INSTANCE of APP.
    Rm {
        #[arg(value_parser = super::app_name)]
        app: String,
        #[arg(value_parser = super::instance_name)]
        instance: String,
        #[arg(value_parser = super::version_name)]
        version: String,
    },
}

pub async fn run(ctx: &Ctx, cmd: EndpointCmd) -> Result {
    match cmd {
        EndpointCmd::Add {
            app,
            instance,
            version,
            addr,
            health,
            weight,
        } => {
            let endpoint = Endpoint {
                health_path: health,
                weight,
                ..Endpoint::new(addr)
            };
            endpoint.validate()?;
            let key = ctx.keyspace.key(&Key::Endpoint {
                app,
                instance,
                version,
            });
            let revision = ctx
                .store
                .put(&key, serde_json::to_vec(&endpoint)?, None)
                .await?;
            crate::report(ctx, &format!("{key} = {}", endpoint.address), revision);
        }
        EndpointCmd::Rm {
            app,
            instance,
            version,
        } => {
            let key = ctx.keyspace.key(&Key::Endpoint {
                app,
                instance,
                version,
            });
            let (revision, existed) = ctx.store.delete(&key).await?;
            if !existed {
                return Err(exit::precondition(format!("{key}: no such endpoint")));
            }
            crate::report(ctx, &format!("removed {key}"), revision);
        }
    }
    Ok(())
}
