//! Publishes this agent's status to `<prefix>/agents/<id>` under a lease, so that a
//! dead agent's status disappears. Runs as its own task: the apply loop hands it the
//! latest status and never waits for etcd. A lost lease (etcd down longer than the TTL)
//! is replaced and the status written again.

use std::time::Duration;

use disco::model::AgentStatus;
use disco::store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Starts the publisher. Send statuses through the returned sender; set `stop` to true
/// to revoke the lease (removing the status key) and end the task.
pub fn spawn(
    store: Store,
    key: String,
    ttl: Duration,
    mut stop: watch::Receiver<bool>,
) -> (watch::Sender<Option<AgentStatus>>, JoinHandle<()>) {
    let (tx, mut rx) = watch::channel::<Option<AgentStatus>>(None);
    let handle = tokio::spawn(async move {
        let ttl_secs = ttl.as_secs().max(2) as i64;
        let mut lease: Option<i64> = None;
        let mut dirty = false;
        let mut keepalive = tokio::time::interval(Duration::from_secs(ttl_secs as u64) / 3);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut retry = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() { break; }
                    dirty = true;
                }
                _ = keepalive.tick() => {
                    if let Some(id) = lease {
                        match store.keep_alive_once(id).await {
                            Ok(0) => {
                                tracing::warn!(lease = id, "status lease expired; registering a new one");
                                lease = None;
                                dirty = true;
                            }
                            Ok(_) => {}
                            Err(e) => tracing::warn!(error = %e, "keeping the status lease alive failed"),
                        }
                    }
                }
                _ = retry.tick(), if dirty => {}
                _ = stop.changed() => break,
            }
            if !dirty {
                continue;
            }
            let Some(status) = rx.borrow().clone() else {
                continue;
            };
            if lease.is_none() {
                match store.grant_lease(ttl_secs).await {
                    Ok(id) => lease = Some(id),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot publish status: no lease");
                        continue;
                    }
                }
            }
            let json = serde_json::to_vec(&status).expect("status serializes");
            match store.put(&key, json, lease).await {
                Ok(_) => dirty = false,
                Err(e) => {
                    tracing::warn!(error = %e, "publishing status failed; will retry");
                    // The lease may be gone (etcd restarted past its TTL).
                    if e.to_string().contains("lease not found") {
                        lease = None;
                    }
                }
            }
        }
        if let Some(id) = lease {
            if let Err(e) = store.revoke_lease(id).await {
                tracing::warn!(error = %e, "revoking the status lease failed; the status expires with its TTL");
            }
        }
    });
    (tx, handle)
}
