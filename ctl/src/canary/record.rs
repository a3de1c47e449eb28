//! The canary's record in etcd, `<prefix>/apps/<app>/rollout`: read by whoever runs,
//! steers or reports on the canary.

use disco::rollout::Rollout;
use disco::store::Kv;
use disco::Key;

use crate::context::Ctx;
use crate::exit::{self, Result};

/// The key of `app`'s canary record.
pub fn key(ctx: &Ctx, app: &str) -> String {
    ctx.keyspace.key(&Key::Rollout {
        app: app.to_string(),
    })
}

/// Reads `app`'s canary record: the key as read and the record. Exit 5 if unreadable.
pub async fn read(ctx: &Ctx, app: &str) -> Result<Option<(Kv, Rollout)>> {
    let key = key(ctx, app);
    let (_, kv) = ctx.store.get(&key).await?;
    let Some(kv) = kv else {
        return Ok(None);
    };
    let rollout = serde_json::from_slice(&kv.value).map_err(|e| {
        exit::precondition(format!(
            "{key} holds an unreadable canary record ({e}); check it with `etcdctl get {key}` and delete it if no canary runs"
        ))
    })?;
    Ok(Some((kv, rollout)))
}
