//! Publishes the statistics records to `<prefix>/stats/<app>/<agent_id>` under one lease
//! of the agent's own, so that a dead agent's records disappear with it. Its own task:
//! the LB loop hands it the latest records and never waits for etcd. A record of an app
//! the agent no longer serves is deleted; on stop the lease is revoked.

use std::collections::BTreeMap;
use std::time::Duration;

use disco::stats::AppStats;
use disco::store::Store;
use disco::{Key, Keyspace};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::lease::Lease;

/// Starts the publisher. Send each window's records through the returned sender; set
/// `stop` to true to revoke the lease (removing the records) and end the task.
pub fn spawn(
    store: Store,
    keyspace: Keyspace,
    ttl: Duration,
    mut stop: watch::Receiver<bool>,
) -> (watch::Sender<BTreeMap<String, AppStats>>, JoinHandle<()>) {
    let (tx, mut rx) = watch::channel(BTreeMap::<String, AppStats>::new());
    let handle = tokio::spawn(async move {
        let mut lease = Lease::new(store.clone(), "stats", ttl);
        // Keys written under the current lease.
        let mut written: Vec<String> = Vec::new();
        let mut keepalive = lease.keepalive_timer();
        loop {
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { break },
                _ = keepalive.tick() => {
                    if lease.keep_alive().await {
                        written.clear();
                    }
                    continue;
                }
                _ = stop.changed() => break,
            }
            let records = rx.borrow_and_update().clone();
            let id = match lease.id().await {
                Ok(id) => id,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot publish traffic statistics: no lease");
                    continue;
                }
            };
            let mut now_written = Vec::new();
            for (app, record) in &records {
                let key = keyspace.key(&Key::Stats {
                    app: app.clone(),
                    agent: record.agent.clone(),
                });
                let json = serde_json::to_vec(record).expect("stats serialize");
                match store.put(&key, json, Some(id)).await {
                    Ok(_) => now_written.push(key),
                    Err(e) => {
                        tracing::debug!(error = %e, %key, "publishing traffic statistics failed");
                        lease.check(&e);
                        break;
                    }
                }
            }
            for gone in written.iter().filter(|k| !now_written.contains(k)) {
                if records.len() == now_written.len() {
                    let _ = store.delete(gone).await;
                }
            }
            if records.len() == now_written.len() {
                written = now_written;
            } else {
                written.extend(now_written);
                written.sort();
                written.dedup();
            }
        }
        lease.revoke().await;
    });
    (tx, handle)
}
