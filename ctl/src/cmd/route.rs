//! `discoctl route set`: point one slot at one version, with an audit record.

use std::collections::BTreeMap;

use clap::Subcommand;
use disco::change::ChangeSet;
use disco::model::{HistoryAction, HistoryRecord};
use disco::Key;

use crate::context::Ctx;
use crate::exit::Result;

#[derive(Debug, Subcommand)]
pub enum RouteCmd {
    /// Route slot INSTANCE of APP to VERSION.
    Set {
        #[arg(value_parser = super::app_name)]
        app: String,
        #[arg(value_parser = super::instance_name)]
        instance: String,
        #[arg(value_parser = super::version_name)]
        version: String,
    },
}

pub async fn run(ctx: &Ctx, cmd: RouteCmd) -> Result {
    let RouteCmd::Set {
        app,
        instance,
        version,
    } = cmd;
    let route_key = ctx.keyspace.key(&Key::Route {
        app: app.clone(),
        instance: instance.clone(),
    });
    let endpoint_key = ctx.keyspace.key(&Key::Endpoint {
        app: app.clone(),
        instance: instance.clone(),
        version: version.clone(),
    });
    let (_, current) = ctx.store.get(&route_key).await?;
    let (_, endpoint) = ctx.store.get(&endpoint_key).await?;
    if endpoint.is_none() {
        eprintln!("warning: {app}/{instance} has no {version} endpoint yet; the proxies leave the slot out until one is registered");
    }
    let before = current
        .as_ref()
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
    let record = HistoryRecord::new(
        &ctx.actor,
        HistoryAction::RouteSet,
        before
            .iter()
            .map(|v| (instance.clone(), v.clone()))
            .collect(),
        BTreeMap::from([(instance.clone(), version.clone())]),
        None,
        None,
    );
    let mut change = ChangeSet::default();
    change
        .expect(&route_key, current.as_ref())
        .put(&route_key, version.as_str());
    change
        .record(&ctx.store, &ctx.keyspace, &app, record)
        .await?;
    let revision = change.commit(&ctx.store).await?;
    let from = before.unwrap_or_else(|| "(none)".into());
    crate::report(
        ctx,
        &format!("{app}/{instance}: {from} -> {version}"),
        revision,
    );
    Ok(())
}
