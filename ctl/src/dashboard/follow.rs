//! Keeps the dashboard's model current: one etcd watch per part of the key space
//! (apps, agents, history, stats, canary locks), each resumed after disconnects by
//! `Store::watch`, and a traffic point per app a second at most. Stops on `shutdown`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use disco::store::{Store, WatchSettings, WatchUpdate};
use disco::Keyspace;
use tokio::sync::{mpsc, watch};

use super::model::{Hub, Part};

/// How often traffic points are taken (of the apps whose statistics changed).
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Follows etcd into `hub` until `shutdown` turns true.
pub async fn run(
    store: Store,
    keyspace: Keyspace,
    hub: Arc<Hub>,
    mut shutdown: watch::Receiver<bool>,
) {
    let settings = WatchSettings::default();
    let parts = [
        (Part::Apps, keyspace.apps()),
        (Part::Agents, keyspace.agents()),
        (Part::History, keyspace.all_history()),
        (Part::Stats, keyspace.all_stats()),
        (Part::Locks, keyspace.rollout_locks()),
    ];
    // One channel for all: each watch's updates stay in order.
    let (tx, mut rx) = mpsc::channel::<(Part, WatchUpdate)>(256);
    for (part, prefix) in parts {
        let mut updates = store.watch(&prefix, 0, settings);
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(update) = updates.recv().await {
                if tx.send((part, update)).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let mut ticker = tokio::time::interval(SAMPLE_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            update = rx.recv() => {
                let Some((part, update)) = update else { return };
                handle(&store, &keyspace, &hub, part, update).await;
            }
            _ = ticker.tick() => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
                hub.update(|m| m.sample_traffic(now.as_millis() as u64));
            }
            _ = shutdown.changed() => return,
        }
    }
}

async fn handle(store: &Store, keyspace: &Keyspace, hub: &Hub, part: Part, update: WatchUpdate) {
    match update {
        WatchUpdate::Initial { revision, kvs } | WatchUpdate::Resync { revision, kvs, .. } => {
            hub.update(|m| m.reset(part, revision, kvs));
            if part == Part::Apps {
                // A full read carries no mod revisions: read them for the agents' lag.
                match latest_routing_change(store, keyspace).await {
                    Ok(latest) => hub.update(|m| m.set_latest(latest)),
                    Err(e) => tracing::warn!(error = %e, "reading the latest routing change"),
                }
            }
        }
        WatchUpdate::Changes { revision, changes } => {
            hub.update(|m| m.apply(part, revision, changes));
        }
        WatchUpdate::Disconnected { error } => {
            tracing::warn!(%error, ?part, "etcd watch lost; reconnecting");
            hub.update(|m| m.set_connection(false, Some(error)));
        }
        WatchUpdate::Live => hub.update(|m| m.set_connection(true, None)),
    }
}

/// The highest mod revision under `<prefix>/apps/`, as `discoctl agents` counts it.
async fn latest_routing_change(
    store: &Store,
    keyspace: &Keyspace,
) -> Result<i64, disco::store::StoreError> {
    let (_, kvs) = store.get_prefix(&keyspace.apps(), None).await?;
    Ok(kvs.iter().map(|kv| kv.mod_revision).max().unwrap_or(0))
}
