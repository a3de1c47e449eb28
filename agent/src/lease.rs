//! The lease an agent task writes its keys under (status, traffic stats, registered
//! endpoints): granted on first use, renewed every third of its TTL, replaced when etcd
//! has lost it (its holder could not reach etcd for longer than the TTL), revoked on stop
//! so that the keys disappear at once.

use std::time::Duration;

use disco::store::{Store, StoreError};

/// One lease of one task.
pub struct Lease {
    store: Store,
    /// What the keys are, for logs: "status", "stats", "registration".
    what: &'static str,
    ttl_secs: i64,
    id: Option<i64>,
}

impl Lease {
    /// A lease of `ttl` (at least 2 s), not granted yet.
    pub fn new(store: Store, what: &'static str, ttl: Duration) -> Lease {
        Lease {
            store,
            what,
            ttl_secs: ttl.as_secs().max(2) as i64,
            id: None,
        }
    }

    /// A timer to call [`Lease::keep_alive`] on: every third of the TTL.
    pub fn keepalive_timer(&self) -> tokio::time::Interval {
        let mut timer = tokio::time::interval(Duration::from_secs(self.ttl_secs as u64) / 3);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer
    }

    /// The lease to write under, granted now if there is none.
    pub async fn id(&mut self) -> Result<i64, StoreError> {
        if let Some(id) = self.id {
            return Ok(id);
        }
        let id = self.store.grant_lease(self.ttl_secs).await?;
        self.id = Some(id);
        Ok(id)
    }

    /// Renews the lease. True when etcd had lost it: the keys written under it are gone
    /// and must be written again (under a new lease, which [`Lease::id`] grants).
    pub async fn keep_alive(&mut self) -> bool {
        let Some(id) = self.id else { return false };
        let lost = match self.store.keep_alive_once(id).await {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) if e.is_lease_not_found() => true,
            Err(e) => {
                tracing::warn!(error = %e, "keeping the {} lease alive failed", self.what);
                false
            }
        };
        if lost {
            tracing::warn!(
                lease = id,
                "{} lease expired; registering a new one",
                self.what
            );
            self.id = None;
        }
        lost
    }

    /// After a failed write under the lease: forgets it if etcd no longer knows it, so
    /// that the next write gets a new one.
    pub fn check(&mut self, error: &StoreError) {
        if error.is_lease_not_found() {
            self.id = None;
        }
    }

    /// Revokes the lease, deleting every key written under it.
    pub async fn revoke(self) {
        if let Some(id) = self.id {
            if let Err(e) = self.store.revoke_lease(id).await {
                tracing::warn!(error = %e, "revoking the {} lease failed; its keys expire with its TTL", self.what);
            }
        }
    }
}
