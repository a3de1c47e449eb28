//! Waiting for convergence: until every live LB agent reports an applied revision at or
//! past a change's. Agents publish their status under a lease, so a dead agent drops out
//! of "live" by itself; one that is alive but cannot apply is named when time runs out.

use std::time::Duration;

use crate::keys::Keyspace;
use crate::model::AgentStatus;
use crate::snapshot::Snapshot;
use crate::store::{Store, StoreError};

/// An agent that had not applied the revision when time ran out.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Laggard {
    /// The agent id.
    pub id: String,
    /// What it had applied.
    pub applied_revision: i64,
    /// Its last error, if any.
    pub last_error: Option<String>,
}

impl std::fmt::Display for Laggard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (applied {}", self.id, self.applied_revision)?;
        if let Some(e) = &self.last_error {
            write!(f, ", last error: {e}")?;
        }
        write!(f, ")")
    }
}

/// Why waiting ended without convergence.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// Some live LB agents had not applied the revision in time.
    #[error("timed out after {timeout:?} waiting for revision {revision}; lagging: {}", laggards.iter().map(|l| l.to_string()).collect::<Vec<_>>().join("; "))]
    Timeout {
        revision: i64,
        timeout: Duration,
        laggards: Vec<Laggard>,
    },
    /// etcd could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The live agents with the LB role.
pub async fn lb_agents(store: &Store, keyspace: &Keyspace) -> Result<Vec<AgentStatus>, StoreError> {
    let (revision, kvs) = store.get_prefix(&keyspace.agents(), None).await?;
    let snapshot = Snapshot::from_kvs(keyspace, revision, kvs.into_iter().map(|kv| (kv.key, kv.value)));
    Ok(snapshot
        .agents
        .into_values()
        .filter(|a| a.roles.iter().any(|r| r == "lb"))
        .collect())
}

/// Waits until every live LB agent has applied `revision`; returns how many there are
/// (0 when none is live: nothing to wait for).
pub async fn wait_for_lb_agents(
    store: &Store,
    keyspace: &Keyspace,
    revision: i64,
    timeout: Duration,
) -> Result<usize, WaitError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let agents = lb_agents(store, keyspace).await?;
        let laggards: Vec<Laggard> = agents
            .iter()
            .filter(|a| a.applied_revision < revision)
            .map(|a| Laggard {
                id: a.id.clone(),
                applied_revision: a.applied_revision,
                last_error: a.last_error.clone(),
            })
            .collect();
        if laggards.is_empty() {
            return Ok(agents.len());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(WaitError::Timeout {
                revision,
                timeout,
                laggards,
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
