//! Publishes this agent's status to `<prefix>/agents/<id>` under a lease, so that a
//! dead agent's status disappears. Runs as its own task: the apply loop hands it the
//! latest status and never waits for etcd. A lost lease (etcd down longer than the TTL)
//! is replaced and the status written again.

use std::time::Duration;

use disco::model::AgentStatus;
use disco::store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::lease::Lease;

/// Starts the publisher. Send statuses through the returned sender; the receiver counts
/// the writes that reached etcd. Set `stop` to true to revoke the lease (removing the
/// status key) and end the task.
pub fn spawn(
    store: Store,
    key: String,
    ttl: Duration,
    mut stop: watch::Receiver<bool>,
) -> (
    watch::Sender<Option<AgentStatus>>,
    watch::Receiver<u64>,
    JoinHandle<()>,
) {
    let (tx, mut rx) = watch::channel::<Option<AgentStatus>>(None);
    let (written_tx, written) = watch::channel(0u64);
    let handle = tokio::spawn(async move {
        let mut lease = Lease::new(store.clone(), "status", ttl);
        let mut dirty = false;
        let mut keepalive = lease.keepalive_timer();
        let mut retry = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() { break; }
                    dirty = true;
                }
                _ = keepalive.tick() => dirty |= lease.keep_alive().await,
                _ = retry.tick(), if dirty => {}
                _ = stop.changed() => break,
            }
            if !dirty {
                continue;
            }
            let Some(status) = rx.borrow().clone() else {
                continue;
            };
            let id = match lease.id().await {
                Ok(id) => id,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot publish status: no lease");
                    continue;
                }
            };
            let json = serde_json::to_vec(&status).expect("status serializes");
            let started = tokio::time::Instant::now();
            let bytes = json.len();
            match store.put(&key, json, Some(id)).await {
                Ok(_) => {
                    tracing::trace!(revision = status.applied_revision, bytes, took = ?started.elapsed(), "status written");
                    dirty = false;
                    written_tx.send_modify(|n| *n += 1);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "publishing status failed; will retry");
                    lease.check(&e);
                }
            }
        }
        lease.revoke().await;
    });
    (tx, written, handle)
}
