//! One app's routing state read at one revision, with the mod revision of every key
//! read, so that a change can be committed only if nothing it read has moved since.

use std::collections::BTreeMap;

use disco::model::Policy;
use disco::snapshot::{App, Snapshot};
use disco::store::Kv;
use disco::Key;

use crate::context::Ctx;
use crate::exit::{self, Result};

/// What a command read of one app.
pub struct AppState {
    /// The app name.
    pub name: String,
    /// The revision everything was read at.
    pub revision: i64,
    /// The app's valid records (invalid ones are left out, as the agents do).
    pub app: App,
    /// Every route key read (valid or not) → its key/value.
    pub routes: BTreeMap<String, Kv>,
    /// The policy key as read; none if absent.
    pub policy: Option<Kv>,
}

/// Reads every key of `app`; an app with no key at all is unknown (exit 2).
pub async fn read(ctx: &Ctx, app: &str) -> Result<AppState> {
    let ks = &ctx.keyspace;
    let (revision, kvs) = ctx.store.get_prefix(&ks.app(app), None).await?;
    if kvs.is_empty() {
        return Err(exit::usage(format!(
            "unknown app {app:?}: nothing is stored under {}",
            ks.app(app)
        )));
    }
    let policy_key = ks.key(&Key::Policy { app: app.into() });
    let mut routes = BTreeMap::new();
    let mut policy = None;
    let routes_prefix = ks.routes(app);
    for kv in &kvs {
        if kv.key == policy_key {
            policy = Some(kv.clone());
        } else if kv.key.starts_with(&routes_prefix) {
            // Valid or not: a route key read is compared at commit.
            routes.insert(kv.key.clone(), kv.clone());
        }
    }
    let snapshot = Snapshot::from_kvs(ks, revision, kvs.into_iter().map(|kv| (kv.key, kv.value)));
    let app_state = snapshot.apps.get(app).cloned().unwrap_or_default();
    Ok(AppState {
        name: app.to_string(),
        revision,
        app: app_state,
        routes,
        policy,
    })
}

impl AppState {
    /// The policy as stored, refusing to build on one that does not parse or validate
    /// (writing over it would lose its settings): exit 5.
    pub fn policy(&self) -> Result<Option<Policy>> {
        let Some(kv) = &self.policy else {
            return Ok(None);
        };
        let policy: Policy = serde_json::from_slice(&kv.value).map_err(|e| {
            exit::precondition(format!(
                "{} holds an unreadable policy ({e}); fix or delete it first",
                kv.key
            ))
        })?;
        policy.validate().map_err(|e| {
            exit::precondition(format!(
                "{} holds an invalid policy ({e}); fix or delete it first",
                kv.key
            ))
        })?;
        Ok(Some(policy))
    }

    /// The route key of `instance`.
    pub fn route_key(&self, ctx: &Ctx, instance: &str) -> String {
        ctx.keyspace.key(&Key::Route {
            app: self.name.clone(),
            instance: instance.to_string(),
        })
    }
}
