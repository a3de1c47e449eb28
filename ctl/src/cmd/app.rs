//! `discoctl app set`: an app's frontend settings, kept in its policy.

use clap::Subcommand;
use disco::change::ChangeSet;
use disco::model::{Mode, Policy};
use disco::Key;

use crate::context::Ctx;
use crate::exit::Result;

#[derive(Debug, Subcommand)]
pub enum AppCmd {
    /// Set where APP's frontend listens, and its mode.
    Set {
        #[arg(value_parser = super::app_name)]
        app: String,
        /// IP:port the proxies listen on for this app (IPv4, or [IPv6]:port).
        #[arg(long, value_parser = super::listen_address)]
        listen: Option<String>,
        /// http (default) or tcp.
        #[arg(long)]
        mode: Option<Mode>,
    },
}

pub async fn run(ctx: &Ctx, cmd: AppCmd) -> Result {
    let AppCmd::Set { app, listen, mode } = cmd;
    if listen.is_none() && mode.is_none() {
        return Err(crate::exit::usage(
            "nothing to set: give --listen and/or --mode",
        ));
    }
    let key = ctx.keyspace.key(&Key::Policy { app: app.clone() });
    let (_, current) = ctx.store.get(&key).await?;
    let mut policy: Policy = match &current {
        Some(kv) => serde_json::from_slice(&kv.value).map_err(|e| {
            anyhow::anyhow!("{key} holds an unreadable policy ({e}); fix or delete it first")
        })?,
        None => Policy::default(),
    };
    if let Some(listen) = listen {
        policy.listen = Some(listen);
    }
    if let Some(mode) = mode {
        policy.mode = mode;
    }
    policy.validate()?;
    let mut change = ChangeSet::default();
    change
        .expect(&key, current.as_ref())
        .put(&key, serde_json::to_vec(&policy)?);
    let revision = change.commit(&ctx.store).await?;
    let listen = policy.listen.as_deref().unwrap_or("(no listener)");
    crate::report(
        ctx,
        &format!("{app}: listen {listen}, mode {}", policy.mode),
        revision,
    );
    Ok(())
}
