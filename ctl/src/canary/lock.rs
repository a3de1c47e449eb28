//! The lock of the discoctl running an app's canary: `<prefix>/locks/rollout/<app>`,
//! created only if absent, under a lease this process keeps alive. A second canary on
//! the app is refused while it exists; when this process dies, the lease expires (after
//! `--lock-ttl`) and the lock with it, and `discoctl canary APP --resume` can take the
//! canary over. The lock lives outside `<prefix>/apps/` so that taking it, and its
//! lease expiring, never wake the LB agents. The canary's state itself
//! (`<prefix>/apps/<app>/rollout`) is not leased: it survives this process.

use std::time::Duration;

use disco::change::{ChangeSet, CommitError};
use disco::rollout::Rollout;
use disco::store::Kv;
use disco::Key;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::context::Ctx;
use crate::exit::{self, Failure, Result};

/// A held lock; [`Lock::release`] it, or let its lease expire.
pub struct Lock {
    key: String,
    /// The lease the lock key is written under.
    pub lease: i64,
    /// The lock key as written, for compares: a write guarded by it fails if the lease
    /// expired and someone else took the lock.
    kv: Kv,
    lost: watch::Receiver<bool>,
    keeper: JoinHandle<()>,
}

/// `pid@host`: who holds a lock.
pub fn owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{}@{host}", std::process::id())
}

/// The lock key of `app`.
pub fn key(ctx: &Ctx, app: &str) -> String {
    ctx.keyspace.key(&Key::RolloutLock {
        app: app.to_string(),
    })
}

/// Who holds `app`'s lock, as written in it (`pid@host since …`), if anyone.
pub async fn holder(ctx: &Ctx, app: &str) -> Result<Option<String>> {
    let (_, kv) = ctx.store.get(&key(ctx, app)).await?;
    Ok(kv.map(|kv| describe_holder(&kv.value)))
}

fn describe_holder(value: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(value).unwrap_or_default();
    format!(
        "{} ({}, since {})",
        v["owner"].as_str().unwrap_or("unknown"),
        v["actor"].as_str().unwrap_or("unknown"),
        v["since"].as_str().unwrap_or("unknown")
    )
}

impl Lock {
    /// Takes `app`'s lock and writes `rollout` (with this process as owner and the
    /// lock's lease) in one transaction, only if nobody holds the lock and the rollout
    /// key is still as read (`rollout_kv`). Returns the lock and the rollout key's new
    /// mod revision. Exit 4 when someone holds the lock or the key moved.
    pub async fn acquire(
        ctx: &Ctx,
        app: &str,
        ttl: Duration,
        rollout: &mut Rollout,
        rollout_kv: Option<&Kv>,
    ) -> Result<(Lock, i64)> {
        let ttl_secs = ttl.as_secs().max(2) as i64;
        let lease = ctx.store.grant_lease(ttl_secs).await?;
        rollout.lease = lease;
        rollout.owner = owner();
        let lock_key = key(ctx, app);
        let rollout_key = super::record::key(ctx, app);
        let value = serde_json::to_vec(&json!({
            "owner": rollout.owner,
            "actor": ctx.actor,
            "version": rollout.version,
            "since": disco::model::now_rfc3339(),
        }))?;
        let mut set = ChangeSet::default();
        set.expect(&lock_key, None)
            .expect(&rollout_key, rollout_kv)
            .put_leased(&lock_key, value.clone(), lease)
            .put(&rollout_key, serde_json::to_vec(rollout)?);
        let revision = match set.commit(&ctx.store).await {
            Ok(revision) => revision,
            Err(e) => {
                let _ = ctx.store.revoke_lease(lease).await;
                return Err(match e {
                    CommitError::Conflict(_) => match holder(ctx, app).await? {
                        Some(who) => Failure::new(
                            exit::CONFLICT,
                            anyhow::anyhow!("a canary of {app} is running: {who}; pause, resume or abort it with `discoctl pause|resume|abort {app}`"),
                        ),
                        None => Failure::new(
                            exit::CONFLICT,
                            anyhow::anyhow!("the canary state of {app} changed while this command read it; nothing was written, run the command again"),
                        ),
                    },
                    e => e.into(),
                });
            }
        };
        let kv = Kv {
            key: lock_key.clone(),
            value,
            mod_revision: revision,
            create_revision: revision,
            lease,
        };
        let (lost_tx, lost) = watch::channel(false);
        let keeper = tokio::spawn(keep_alive(
            ctx.store.clone(),
            lease,
            Duration::from_secs(ttl_secs as u64),
            lost_tx,
        ));
        Ok((
            Lock {
                key: lock_key,
                lease,
                kv,
                lost,
                keeper,
            },
            revision,
        ))
    }

    /// Makes `set` fail unless this process still holds the lock.
    pub fn guard(&self, set: &mut ChangeSet) {
        set.expect(&self.key, Some(&self.kv));
    }

    /// True once the lease is gone (expired while etcd was unreachable, say): another
    /// process may hold the lock now, so this one must stop acting.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Gives the lock up: revokes the lease, which deletes the lock key.
    pub async fn release(self, ctx: &Ctx) {
        self.keeper.abort();
        if let Err(e) = ctx.store.revoke_lease(self.lease).await {
            tracing::warn!(error = %e, "revoking the canary lock's lease failed; it expires with its TTL");
        }
    }
}

/// Renews the lease every third of its TTL; reports it lost when etcd says it is gone,
/// or when no renewal succeeded for a whole TTL.
async fn keep_alive(
    store: disco::store::Store,
    lease: i64,
    ttl: Duration,
    lost: watch::Sender<bool>,
) {
    let mut last_ok = Instant::now();
    let mut tick = tokio::time::interval((ttl / 3).max(Duration::from_millis(500)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match store.keep_alive_once(lease).await {
            Ok(0) => {
                let _ = lost.send(true);
                return;
            }
            Ok(_) => last_ok = Instant::now(),
            Err(e) => {
                tracing::warn!(error = %e, "renewing the canary lock's lease failed");
                if last_ok.elapsed() >= ttl {
                    let _ = lost.send(true);
                    return;
                }
            }
        }
    }
}
