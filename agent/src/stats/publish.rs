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
        let ttl_secs = ttl.as_secs().max(2) as i64;
        let mut lease: Option<i64> = None;
        // Keys written under the current lease.
        let mut written: Vec<String> = Vec::new();
        let mut keepalive = tokio::time::interval(Duration::from_secs(ttl_secs as u64) / 3);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { break },
                _ = keepalive.tick() => {
                    if let Some(id) = lease {
                        match store.keep_alive_once(id).await {
                            Ok(0) => {
                                tracing::warn!(lease = id, "stats lease expired; registering a new one");
                                lease = None;
                                written.clear();
                            }
                            Ok(_) => {}
                            Err(e) => tracing::debug!(error = %e, "keeping the stats lease alive failed"),
                        }
                    }
                    continue;
                }
                _ = stop.changed() => break,
            }
            let records = rx.borrow_and_update().clone();
            if lease.is_none() {
                match store.grant_lease(ttl_secs).await {
                    Ok(id) => lease = Some(id),
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot publish traffic statistics: no lease");
                        continue;
                    }
                }
            }
            let mut now_written = Vec::new();
            for (app, record) in &records {
                let key = keyspace.key(&Key::Stats {
                    app: app.clone(),
                    agent: record.agent.clone(),
                });
                let json = serde_json::to_vec(record).expect("stats serialize");
                match store.put(&key, json, lease).await {
                    Ok(_) => now_written.push(key),
                    Err(e) => {
                        tracing::debug!(error = %e, %key, "publishing traffic statistics failed");
                        if e.to_string().contains("lease not found") {
                            lease = None;
                        }
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
        if let Some(id) = lease {
            if let Err(e) = store.revoke_lease(id).await {
                tracing::warn!(error = %e, "revoking the stats lease failed; the records expire with its TTL");
            }
        }
    });
    (tx, handle)
}
