//! `discoctl dashboard`: a live web page of the routing, the agents, the traffic per
//! version, running canaries and the audit log, fed by etcd watches and pushed to the
//! browser as server-sent events. Read-only unless started with `--allow-actions`.
//!
//! # Layout
//!
//! - `mod` (this file): the options, start-up (token, warnings) and shutdown.
//! - `follow`: the etcd watches that keep the model current.
//! - `model`: the state the page is built from, and the hub that sends its changes.
//! - `view`: the JSON the page shows, built from that state (pure).
//! - `server`: the HTTP routes: page, events, state, actions.
//! - `guard`: host, origin and token checks (pure).
//! - `actions`: the buttons, as the discoctl verbs' own functions.
//! - `assets/`: the page (HTML, CSS, JS), embedded in the binary.

mod actions;
mod follow;
mod guard;
mod model;
mod server;
mod view;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use serde_json::json;
use tokio::sync::watch;

use crate::context::{Ctx, Output};
use crate::exit::{self, Failure, Result};

#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Address to serve the page on. Any other than a loopback address makes the page
    /// reachable from the network (a warning says so).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Offer pause, resume, abort, promote and rollback on the page, each behind a
    /// token (printed at start, or --token-file). Without it the dashboard is read-only.
    #[arg(long)]
    allow_actions: bool,
    /// Read the token from this file (its first line, at least 16 characters) instead
    /// of making one up and printing it.
    #[arg(long, requires = "allow_actions")]
    token_file: Option<PathBuf>,
    /// This dashboard's name in the audit log: actions are recorded as
    /// `dashboard:<NAME>`. Default: the host name.
    #[arg(long, value_parser = name)]
    name: Option<String>,
    /// A host name the page may be opened by, besides IP addresses and localhost
    /// (a DNS name of this host, or of a reverse proxy in front); repeatable. Requests
    /// for any other host are refused, against DNS rebinding.
    #[arg(long = "allow-host", value_name = "HOST", value_parser = name)]
    allow_hosts: Vec<String>,
}

fn name(s: &str) -> std::result::Result<String, String> {
    disco::validate::name("name", s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// The host name, if it is a valid disco name; else `dashboard`.
fn default_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| name(h).is_ok())
        .unwrap_or_else(|| "dashboard".into())
}

pub async fn run(ctx: &Ctx, args: DashboardArgs) -> Result {
    let actor = format!("dashboard:{}", args.name.unwrap_or_else(default_name));
    let token = match (&args.token_file, args.allow_actions) {
        (Some(path), _) => Some(guard::read_token(path).map_err(exit::usage)?),
        (None, true) => Some(guard::new_token().context("making a token from /dev/urandom")?),
        (None, false) => None,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    let url = page_url(local);

    let actions = json!({ "allowed": token.is_some(), "actor": actor });
    let hub = Arc::new(model::Hub::new(model::Model::new(
        ctx.keyspace.clone(),
        actions,
    )));
    let (stop, shutdown) = watch::channel(false);
    let follower = tokio::spawn(follow::run(
        ctx.store.clone(),
        ctx.keyspace.clone(),
        hub.clone(),
        shutdown.clone(),
    ));
    let shared = Arc::new(server::Shared {
        hub,
        guard: guard::Guard::new(&args.allow_hosts, token.clone()),
        ctx: Ctx {
            store: ctx.store.clone(),
            keyspace: ctx.keyspace.clone(),
            output: Output::Json,
            actor: actor.clone(),
        },
        shutdown: shutdown.clone(),
    });

    if let Some(warning) = exposure_warning(local, token.is_some()) {
        eprintln!("{warning}");
    }
    match (&token, &args.token_file) {
        (None, _) => eprintln!("discoctl dashboard: {url} (read-only)"),
        (Some(token), None) => {
            eprintln!("discoctl dashboard: {url}#token={token}");
            eprintln!(
                "actions allowed (pause, resume, abort, promote, rollback), recorded as {actor}; token: {token}"
            );
        }
        (Some(_), Some(path)) => {
            eprintln!("discoctl dashboard: {url}");
            eprintln!(
                "actions allowed (pause, resume, abort, promote, rollback), recorded as {actor}; token from {}",
                path.display()
            );
        }
    }

    // SIGINT/SIGTERM: the event streams end, then the server.
    let stopper = tokio::spawn(async move {
        signal().await;
        let _ = stop.send(true);
    });
    let mut stopping = shutdown;
    let served = axum::serve(listener, server::router(shared))
        .with_graceful_shutdown(async move {
            let _ = stopping.wait_for(|stopped| *stopped).await;
        })
        .await;
    stopper.abort();
    follower.abort();
    served.map_err(|e| Failure::new(exit::ERROR, anyhow::anyhow!("serving the dashboard: {e}")))
}

/// What to say when the page is reachable from other hosts: on any address but a
/// loopback one.
fn exposure_warning(local: SocketAddr, actions: bool) -> Option<String> {
    if local.ip().is_loopback() {
        return None;
    }
    Some(format!(
        "warning: listening on {local}, which is not a loopback address: whoever reaches it sees the routing state{}; prefer 127.0.0.1 behind an SSH tunnel or an authenticating reverse proxy",
        if actions { ", and whoever also has the token can act" } else { "" }
    ))
}

/// The address to give people: an unspecified listen address (0.0.0.0) is reachable
/// as 127.0.0.1 from here.
fn page_url(local: SocketAddr) -> String {
    let ip = if local.ip().is_unspecified() {
        match local {
            SocketAddr::V4(_) => "127.0.0.1".to_string(),
            SocketAddr::V6(_) => "[::1]".to_string(),
        }
    } else if local.is_ipv6() {
        format!("[{}]", local.ip())
    } else {
        local.ip().to_string()
    };
    format!("http://{ip}:{}/", local.port())
}

/// SIGINT or SIGTERM.
async fn signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_loopback_address_goes_without_a_warning() {
        let warning = |s: &str, actions| exposure_warning(s.parse().unwrap(), actions);
        assert_eq!(warning("127.0.0.1:8080", true), None);
        assert_eq!(warning("[::1]:8080", true), None);
        let open = warning("0.0.0.0:8080", false).unwrap();
        assert!(
            open.starts_with("warning: listening on 0.0.0.0:8080"),
            "{open}"
        );
        assert!(!open.contains("token"), "{open}");
        let acting = warning("10.0.0.5:8080", true).unwrap();
        assert!(
            acting.contains("whoever also has the token can act"),
            "{acting}"
        );
    }

    #[test]
    fn the_url_names_an_address_a_browser_here_can_open() {
        let url = |s: &str| page_url(s.parse().unwrap());
        assert_eq!(url("127.0.0.1:8080"), "http://127.0.0.1:8080/");
        assert_eq!(url("0.0.0.0:8080"), "http://127.0.0.1:8080/");
        assert_eq!(url("[::]:8080"), "http://[::1]:8080/");
        assert_eq!(url("[::1]:9"), "http://[::1]:9/");
        assert_eq!(url("10.0.0.5:80"), "http://10.0.0.5:80/");
    }
}
