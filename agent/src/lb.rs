//! The LB role: watch → snapshot → coalesce → apply every target → publish status.
//!
//! Coalescing: an agent that has been idle for `max_delay` applies a change at once;
//! while changes keep coming it applies at most once per `max_delay`, with everything
//! that arrived meanwhile. One operator transaction is one watch event, hence one
//! reload; a burst of a thousand writes is a handful.

use std::time::Duration;

use disco::model::{now_rfc3339, AgentStatus, TargetStatus};
use disco::store::{Store, WatchSettings, WatchUpdate};
use disco::{Keyspace, Snapshot};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::Config;
use crate::target::{Outcome, Target};

struct Lb {
    config: Config,
    keyspace: Keyspace,
    targets: Vec<Target>,
    snapshot: Snapshot,
    status: AgentStatus,
    reloads: Vec<u64>,
    publish: watch::Sender<Option<AgentStatus>>,
}

/// Runs the LB role (and publishes the agent's status, whatever its roles) until `stop`
/// turns true; then withdraws the status.
pub async fn run(config: Config, store: Store, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let keyspace = Keyspace::new(&config.prefix)?;
    let targets = config
        .targets
        .iter()
        .cloned()
        .map(Target::new)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let status_key = keyspace.key(&disco::Key::Agent {
        id: config.agent_id.clone(),
    });
    let (stop_status, stop_rx) = watch::channel(false);
    let (publish, status_task) =
        crate::status::spawn(store.clone(), status_key, config.status_ttl, stop_rx);
    let mut roles = vec![];
    if !targets.is_empty() {
        roles.push("lb".to_string());
    }
    if !config.registrations.is_empty() {
        roles.push("register".to_string());
    }
    let mut lb = Lb {
        status: AgentStatus {
            id: config.agent_id.clone(),
            roles,
            agent_version: env!("CARGO_PKG_VERSION").into(),
            ..AgentStatus::default()
        },
        reloads: vec![0; targets.len()],
        config,
        keyspace,
        targets,
        snapshot: Snapshot::default(),
        publish,
    };
    let result = lb.serve(&store, &mut stop).await;
    let _ = stop_status.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), status_task).await;
    result
}

impl Lb {
    async fn serve(&mut self, store: &Store, stop: &mut watch::Receiver<bool>) -> anyhow::Result<()> {
        // The first read; while etcd is unreachable, serve the cached snapshot.
        let mut backoff = Duration::from_millis(100);
        let mut served_cache = false;
        let apps = self.keyspace.apps();
        loop {
            match store.get_prefix(&apps, None).await {
                Ok((revision, kvs)) => {
                    self.snapshot = Snapshot::from_kvs(
                        &self.keyspace,
                        revision,
                        kvs.into_iter().map(|kv| (kv.key, kv.value)),
                    );
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "etcd unreachable at start; retrying");
                    if !served_cache {
                        served_cache = true;
                        if let Some(cached) = self.load_cache() {
                            tracing::info!(
                                revision = cached.revision,
                                "serving the cached snapshot until etcd answers"
                            );
                            self.snapshot = cached;
                            self.apply().await;
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.wait_for(|s| *s) => return Ok(()),
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        tracing::info!(
            revision = self.snapshot.revision,
            apps = self.snapshot.apps.len(),
            "read routing state"
        );
        self.apply().await;
        let mut updates = store.watch(&apps, self.snapshot.revision + 1, WatchSettings::default());
        let max_delay = self.config.max_delay;
        let mut last_apply = Instant::now();
        let mut pending = false;
        loop {
            let due = last_apply + max_delay;
            tokio::select! {
                update = updates.recv() => {
                    let Some(update) = update else { anyhow::bail!("etcd watch ended") };
                    pending |= self.take(update);
                    // Everything that is already queued goes into the same apply.
                    while let Ok(update) = updates.try_recv() {
                        pending |= self.take(update);
                    }
                }
                _ = tokio::time::sleep_until(due), if pending => {}
                _ = stop.wait_for(|s| *s) => return Ok(()),
            }
            if pending && Instant::now() >= last_apply + max_delay {
                pending = false;
                self.apply().await;
                last_apply = Instant::now();
            }
        }
    }

    /// Folds one watch update into the snapshot; true if the routing state changed.
    fn take(&mut self, update: WatchUpdate) -> bool {
        match update {
            WatchUpdate::Changes { revision, changes } => {
                self.snapshot.apply(&self.keyspace, revision, changes);
                true
            }
            WatchUpdate::Resync {
                revision,
                kvs,
                reason,
            } => {
                tracing::warn!(%reason, revision, "re-read the whole routing state");
                self.snapshot = Snapshot::from_kvs(&self.keyspace, revision, kvs);
                true
            }
            WatchUpdate::Disconnected { error } => {
                tracing::warn!(%error, "etcd watch disconnected; the proxies keep the last configuration");
                false
            }
        }
    }

    /// Applies the snapshot to every target and publishes the result.
    async fn apply(&mut self) {
        let started = Instant::now();
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        for (i, target) in self.targets.iter_mut().enumerate() {
            match target.apply(&self.snapshot).await {
                Ok(Outcome::Reloaded) => {
                    self.reloads[i] += 1;
                    tracing::info!(target = %target.name, revision = self.snapshot.revision, "installed and reloaded");
                }
                Ok(Outcome::Unchanged) => {
                    tracing::debug!(target = %target.name, revision = self.snapshot.revision, "unchanged")
                }
                Err(e) => {
                    tracing::error!(error = %e, "apply failed; the previous configuration keeps serving");
                    errors.push(e.to_string());
                }
            }
            warnings.extend(
                target
                    .warnings
                    .iter()
                    .map(|w| format!("{}: {w}", target.name)),
            );
        }
        let status = &mut self.status;
        status.targets = self
            .targets
            .iter()
            .zip(&self.reloads)
            .map(|(t, reloads)| {
                let previous = status.targets.get(&t.name).map(|s| s.revision).unwrap_or(0);
                (
                    t.name.clone(),
                    TargetStatus {
                        kind: t.config.kind.to_string(),
                        path: t.config.path.display().to_string(),
                        hash: t.installed_hash.clone().unwrap_or_default(),
                        revision: if errors.is_empty() {
                            self.snapshot.revision
                        } else {
                            previous
                        },
                        reloads: *reloads,
                    },
                )
            })
            .collect();
        status.rejected = self.snapshot.rejected_list();
        status.warnings = warnings;
        status.updated_at = now_rfc3339();
        if errors.is_empty() {
            status.applied_revision = self.snapshot.revision;
            status.last_error = None;
            status.last_success_at = Some(status.updated_at.clone());
        } else {
            status.last_error = Some(errors.join("; "));
        }
        let _ = self.publish.send(Some(status.clone()));
        if errors.is_empty() {
            self.save_cache();
        }
        tracing::debug!(revision = self.snapshot.revision, took = ?started.elapsed(), "apply done");
    }

    fn load_cache(&self) -> Option<Snapshot> {
        let path = self.config.cache_path();
        let text = std::fs::read(&path).ok()?;
        match serde_json::from_slice(&text) {
            Ok(snapshot) => Some(snapshot),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable snapshot cache");
                None
            }
        }
    }

    fn save_cache(&self) {
        let path = self.config.cache_path();
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let json = serde_json::to_vec(&self.snapshot).expect("snapshot serializes");
        if let Err(e) = crate::atomic_write::install(&path, &json) {
            tracing::warn!(path = %path.display(), error = %e, "could not save the snapshot cache");
        }
    }
}
