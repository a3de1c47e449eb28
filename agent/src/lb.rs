//! The LB role: watch → snapshot → coalesce → apply every target → publish status.
//!
//! Coalescing: a change is applied as soon as no apply is in progress; what arrives
//! during an apply goes into the next one, all together. One operator transaction is
//! one watch event, hence one apply; a burst of a thousand writes is a handful. Runtime
//! API changes go out at once; two reloads of one target are at least `max_delay` apart
//! (a change that would reload sooner waits for it, see `target.rs`).
//!
//! Alongside: the HTTP endpoints (`http_listen`), the traffic statistics (read every
//! `stats_interval` between applies, so that they are always attributed with the
//! snapshot the running configuration came from; and, while an app has a canary
//! running, its per-request sources read and its record published every
//! `canary_stats_interval` too, after any pending apply). One stream from the store
//! carries the initial state, the changes and the watch's losses and recoveries (for
//! `/healthz`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use disco::model::{now_rfc3339, AgentStatus, TargetStatus};
use disco::rollout::RolloutState;
use disco::store::{Store, WatchSettings, WatchUpdate};
use disco::{Keyspace, Snapshot};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::Config;
use crate::guard::{Guard, Settings as GuardSettings};
use crate::metrics::{FailureLabels, TargetLabel};
use crate::pacing::Retries;
use crate::stats::Collector;
use crate::target::{Outcome, Target};
use crate::view::Shared;

/// The snapshot cache (for a restart while etcd is down) is written at most this often
/// during a stream of changes; the last change is always written.
const CACHE_INTERVAL: Duration = Duration::from_secs(1);

/// An endpoint whose key was deleted: by its lease expiring, or on purpose?
struct Deleted {
    app: String,
    instance: String,
    version: String,
    endpoint: disco::model::Endpoint,
    /// The lease it was under; None when unknown (seen through a full re-read).
    lease: Option<i64>,
}

struct Lb {
    config: Config,
    store: Store,
    guard: Guard,
    /// Endpoint deletions not yet sorted into expiries and explicit removals.
    deleted: Vec<Deleted>,
    keyspace: Keyspace,
    targets: Vec<Target>,
    snapshot: Snapshot,
    status: AgentStatus,
    reloads: Vec<u64>,
    runtime_applies: Vec<u64>,
    applied_by: Vec<Option<&'static str>>,
    /// When a deferred reload, or the retry of a failed apply, is due.
    retry_at: Option<Instant>,
    /// Says when that is, after each apply.
    retries: Retries,
    /// The apps whose records changed since the last apply (None: any may have): the
    /// renderers reuse what they rendered for the others.
    changed: Option<std::collections::BTreeSet<String>>,
    /// The apps the mass-expiry guard held endpoints of at the last apply.
    guarded: std::collections::BTreeSet<String>,
    /// The snapshot cache: when it was written last, and whether it is behind.
    cache_saved_at: Option<Instant>,
    cache_dirty: bool,
    publish: watch::Sender<Option<AgentStatus>>,
    /// Counts the status writes that reached etcd.
    published: watch::Receiver<u64>,
    shared: Arc<Shared>,
    collector: Collector,
    publish_stats: Option<crate::stats::publish::Sender>,
    /// The apps with a canary running (their `rollout` record in state `running`): their
    /// statistics are published every `canary_stats_interval` too.
    canaries: BTreeSet<String>,
}

/// Runs the LB role (and publishes the agent's status, whatever its roles) until `stop`
/// turns true; then withdraws the status and the traffic statistics. Serves the HTTP
/// endpoints meanwhile, if configured; `shared` outlives it (metrics survive SIGHUP).
pub async fn run(
    config: Config,
    store: Store,
    mut stop: watch::Receiver<bool>,
    shared: Arc<Shared>,
) -> anyhow::Result<()> {
    let keyspace = Keyspace::new(&config.prefix)?;
    let mut targets = config
        .targets
        .iter()
        .cloned()
        .map(Target::new)
        .collect::<anyhow::Result<Vec<_>>>()?;
    remove_leftovers(&config, &targets);
    let loaded = crate::loaded::read(&crate::loaded::path_for(&config.cache_path()));
    for target in &mut targets {
        let path = &target.config.path;
        target.set_loaded(
            loaded.targets.get(path).cloned(),
            loaded.structures.get(path).cloned(),
        );
        match target.config.kind {
            crate::config::Kind::Haproxy if !target.has_runtime() => {
                tracing::info!(target = %target.name, "no runtime_socket: every routing change reloads HAProxy")
            }
            crate::config::Kind::Nginx if target.config.balancer_socket.is_none() => {
                tracing::info!(target = %target.name, "no balancer_socket: every routing change reloads nginx")
            }
            _ => {}
        }
    }
    let (stop_http, http_stop) = watch::channel(false);
    let http = match config.http_listen {
        Some(address) => Some(crate::http::serve(address, shared.clone(), http_stop).await?),
        None => None,
    };
    shared.update(|v| {
        v.watch.watching = false;
    });
    let status_key = keyspace.key(&disco::Key::Agent {
        id: config.agent_id.clone(),
    });
    let (stop_status, stop_rx) = watch::channel(false);
    let (publish, published, status_task) = crate::status::spawn(
        store.clone(),
        status_key,
        config.status_ttl,
        stop_rx.clone(),
    );
    let collector = Collector::new(
        &config.agent_id,
        config.stats_interval,
        &config.targets,
        shared.totals.clone(),
    );
    let (publish_stats, stats_task) = if collector.is_enabled() {
        let ttl = config.status_ttl.max(config.stats_interval * 3);
        let (tx, task) =
            crate::stats::publish::spawn(store.clone(), keyspace.clone(), ttl, stop_rx);
        (Some(tx), Some(task))
    } else {
        (None, None)
    };
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
        runtime_applies: vec![0; targets.len()],
        applied_by: vec![None; targets.len()],
        retry_at: None,
        retries: Retries::default(),
        changed: None,
        guarded: Default::default(),
        cache_saved_at: None,
        cache_dirty: false,
        store: store.clone(),
        guard: Guard::new(GuardSettings {
            share: config.mass_expiry_share,
            window: config.mass_expiry_window,
            hold: config.mass_expiry_hold,
        }),
        deleted: Vec::new(),
        config,
        keyspace,
        targets,
        snapshot: Snapshot::default(),
        publish,
        published,
        shared,
        collector,
        publish_stats,
        canaries: BTreeSet::new(),
    };
    let result = lb.serve(&store, &mut stop).await;
    let _ = stop_status.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), status_task).await;
    if let Some(task) = stats_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    let _ = stop_http.send(true);
    if let Some(mut task) = http {
        // A client holding a connection open does not hold us up.
        if tokio::time::timeout(Duration::from_secs(2), &mut task)
            .await
            .is_err()
        {
            tracing::debug!("HTTP endpoints: connections still open at stop; closed");
            task.abort();
        }
    }
    result
}

/// Removes the temp files that an agent killed mid-write left beside its target files,
/// its snapshot cache and its record of loaded configurations, and says which.
fn remove_leftovers(config: &Config, targets: &[Target]) {
    let cache = config.cache_path();
    let own = targets
        .iter()
        .map(|t| t.config.path.clone())
        .chain([crate::loaded::path_for(&cache), cache]);
    for path in own {
        match crate::atomic_write::remove_leftovers(&path) {
            Ok(removed) if removed.is_empty() => {}
            Ok(removed) => {
                let removed: Vec<String> =
                    removed.iter().map(|p| p.display().to_string()).collect();
                tracing::info!(files = %removed.join(", "), "removed temp files left by an earlier run");
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "could not look for temp files left by an earlier run")
            }
        }
    }
}

impl Lb {
    async fn serve(
        &mut self,
        store: &Store,
        stop: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        // Visible before anything is installed (applied revision 0: none yet), so that a
        // change committed meanwhile is waited for.
        if self.status.roles.iter().any(|r| r == "lb") {
            self.status.updated_at = now_rfc3339();
            let _ = self.publish.send(Some(self.status.clone()));
        }
        // One stream: the initial state, then the changes. While etcd does not answer
        // the first read, serve the cached snapshot.
        let apps = self.keyspace.apps();
        let mut updates = store.watch(&apps, 0, WatchSettings::default());
        let mut served_cache = false;
        loop {
            let update = tokio::select! {
                update = updates.recv() => update,
                _ = stop.wait_for(|s| *s) => return Ok(()),
            };
            match update {
                None => anyhow::bail!("etcd watch ended"),
                Some(WatchUpdate::Initial { revision, kvs }) => {
                    self.snapshot = Snapshot::from_kvs(&self.keyspace, revision, kvs);
                    self.changed = None;
                    break;
                }
                Some(WatchUpdate::Disconnected { error }) => {
                    tracing::warn!(%error, "etcd unreachable at start; retrying");
                    self.shared.update(|v| {
                        v.watch.live = false;
                        v.watch.down_since.get_or_insert_with(now_rfc3339);
                        v.watch.error = Some(format!("etcd unreachable at start: {error}"));
                    });
                    if !served_cache {
                        served_cache = true;
                        if let Some(cached) = self.load_cache() {
                            tracing::info!(
                                revision = cached.revision,
                                "serving the cached snapshot until etcd answers"
                            );
                            self.snapshot = cached;
                            self.changed = None;
                            self.apply().await;
                        }
                    }
                }
                Some(_) => {}
            }
        }
        tracing::info!(
            revision = self.snapshot.revision,
            apps = self.snapshot.apps.len(),
            "read routing state"
        );
        if self.status.roles.iter().any(|r| r == "lb") {
            self.until_visible(stop).await;
        }
        self.shared.update(|v| {
            v.watch.live = true;
            v.watch.watching = true;
            v.watch.down_since = None;
            v.watch.error = None;
        });
        self.apply().await;
        let mut stats_tick = tokio::time::interval(self.config.stats_interval);
        stats_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // nginx balancers are read back between changes too: a restarted nginx whose
        // dict came back empty is filled again.
        let check = self
            .targets
            .iter()
            .filter(|t| t.has_balancer() && !t.config.balancer_check.is_zero())
            .map(|t| t.config.balancer_check)
            .min();
        let has_balancer = check.is_some();
        let mut balancer_tick = tokio::time::interval(check.unwrap_or(Duration::from_secs(3600)));
        balancer_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let has_stats = self.collector.is_enabled();
        // Only while a canary runs; its first tick comes at once.
        let canary_interval = self.config.canary_stats_interval;
        // Only with per-request sources: `show stat` is read at `stats_interval` only.
        let fast_stats = self.collector.has_per_request_sources() && !canary_interval.is_zero();
        let mut canary_tick = tokio::time::interval(if fast_stats {
            canary_interval
        } else {
            Duration::from_secs(3600)
        });
        canary_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.canaries = running_canaries(&self.snapshot);
        let mut collect = false;
        let mut collect_canaries = false;
        let mut check_balancers = false;
        let mut pending = false;
        let mut stopping = false;
        loop {
            let hold_ends = self.guard.next_deadline();
            let retry_at = self.retry_at;
            tokio::select! {
                update = updates.recv() => {
                    let Some(update) = update else { anyhow::bail!("etcd watch ended") };
                    tracing::trace!("watch update");
                    let mut changed = self.take(update);
                    // Everything that is already queued goes into the same apply.
                    while let Ok(update) = updates.try_recv() {
                        changed |= self.take(update);
                    }
                    if changed {
                        pending = true;
                        self.canaries = running_canaries(&self.snapshot);
                    }
                }
                // A hold of the mass-expiry guard runs out: render without it.
                _ = tokio::time::sleep_until(hold_ends.unwrap_or_else(Instant::now)), if hold_ends.is_some() => {
                    pending = true;
                }
                // A deferred reload, or the retry of a failed apply, is due.
                _ = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                    self.retry_at = None;
                    pending = true;
                }
                _ = stats_tick.tick(), if has_stats => collect = true,
                _ = canary_tick.tick(), if fast_stats && !self.canaries.is_empty() => {
                    collect_canaries = true;
                }
                _ = balancer_tick.tick(), if has_balancer => check_balancers = true,
                // The snapshot cache is behind: write it.
                _ = tokio::time::sleep_until(self.cache_saved_at.unwrap_or_else(Instant::now) + CACHE_INTERVAL), if self.cache_dirty => {
                    self.save_cache();
                }
                _ = stop.wait_for(|s| *s) => stopping = true,
            }
            if stopping {
                for target in &mut self.targets {
                    target.settle().await;
                }
                if self.cache_dirty {
                    self.save_cache();
                }
                return Ok(());
            }
            if std::mem::take(&mut collect) {
                self.collect_stats().await;
            }
            if std::mem::take(&mut check_balancers) {
                for target in &mut self.targets {
                    if !target.config.balancer_check.is_zero() {
                        pending |= target.balancer_lost().await;
                    }
                }
            }
            if pending {
                pending = false;
                self.apply().await;
            }
            // After the apply: a fast publish never delays one.
            if std::mem::take(&mut collect_canaries) {
                self.collect_canary_stats().await;
            }
        }
    }

    /// Waits (up to the etcd request timeout) until the first status write reached etcd:
    /// a discoctl that commits from now on sees this agent and waits for it.
    async fn until_visible(&mut self, stop: &mut watch::Receiver<bool>) {
        let bound = self.config.etcd.request_timeout;
        tokio::select! {
            seen = tokio::time::timeout(bound, self.published.wait_for(|n| *n > 0)) => {
                if seen.is_err() {
                    tracing::warn!(?bound, "status not yet written to etcd; applying anyway");
                }
            }
            _ = stop.wait_for(|s| *s) => {}
        }
    }

    /// Reads the proxies' counters and hands the records to the publisher.
    async fn collect_stats(&mut self) {
        self.collector.read().await;
        let records = self.collector.records();
        if let Some(publish) = &self.publish_stats {
            publish.send_all(records.clone());
        }
        self.shared.update(|v| v.traffic = records);
    }

    /// Between windows: reads the per-request sources and hands the canary apps'
    /// records (the window so far, not ended) to the publisher.
    async fn collect_canary_stats(&mut self) {
        self.collector.read_fast().await;
        let records = self.collector.snapshot_for(&self.canaries);
        if let Some(publish) = &self.publish_stats {
            if !records.is_empty() {
                self.shared.metrics.canary_stats_publishes.inc();
            }
            publish.send_some(records);
        }
    }

    /// Folds one watch update into the snapshot; true if the routing state changed.
    fn take(&mut self, update: WatchUpdate) -> bool {
        let shared = self.shared.clone();
        let metrics = &shared.metrics;
        if matches!(update, WatchUpdate::Live) && !self.shared.view.lock().expect("view").watch.live
        {
            tracing::info!("etcd answers again; the watch resumes");
        }
        if !matches!(update, WatchUpdate::Disconnected { .. }) {
            self.shared.update(|v| {
                v.watch.live = true;
                v.watch.down_since = None;
                v.watch.error = None;
            });
        }
        match update {
            WatchUpdate::Changes { revision, changes } => {
                for change in &changes {
                    // Without a lease, a key can only have been deleted on purpose.
                    let disco::Change::Delete { key, lease } = change else {
                        continue;
                    };
                    if *lease == 0 {
                        continue;
                    }
                    if let Ok(disco::Key::Endpoint {
                        app,
                        instance,
                        version,
                    }) = self.keyspace.parse(key)
                    {
                        self.note_deleted(app, instance, version, Some(*lease));
                    }
                }
                self.note_changed(&changes);
                self.snapshot.apply(&self.keyspace, revision, changes);
                metrics.seen_revision.set(self.snapshot.revision);
                true
            }
            WatchUpdate::Resync {
                revision,
                kvs,
                reason,
            } => {
                tracing::warn!(%reason, revision, "re-read the whole routing state");
                let next = Snapshot::from_kvs(&self.keyspace, revision, kvs);
                // Endpoints gone in the re-read: how they went is not known.
                let gone: Vec<(String, String, String)> = self
                    .snapshot
                    .apps
                    .iter()
                    .flat_map(|(app, a)| {
                        a.endpoints.iter().flat_map(move |(instance, versions)| {
                            versions.keys().map(move |version| (app, instance, version))
                        })
                    })
                    .filter(|(app, instance, version)| {
                        next.endpoint(app, instance, version).is_none()
                    })
                    .map(|(app, instance, version)| {
                        (app.clone(), instance.clone(), version.clone())
                    })
                    .collect();
                for (app, instance, version) in gone {
                    self.note_deleted(app, instance, version, None);
                }
                self.snapshot = next;
                self.changed = None;
                metrics.watch_resyncs.inc();
                metrics.seen_revision.set(self.snapshot.revision);
                true
            }
            WatchUpdate::Live => false,
            // Only the first update of the stream is an initial state.
            WatchUpdate::Initial { .. } => false,
            WatchUpdate::Disconnected { error } => {
                tracing::warn!(%error, "etcd watch disconnected; the proxies keep the last configuration");
                metrics.watch_reconnects.inc();
                self.shared.update(|v| {
                    v.watch.live = false;
                    v.watch.reconnects += 1;
                    v.watch.down_since.get_or_insert_with(now_rfc3339);
                    v.watch.error = Some(error);
                });
                false
            }
        }
    }

    /// Adds the apps of `changes` to the changed ones (all of them when a key does not
    /// name an app).
    fn note_changed(&mut self, changes: &[disco::Change]) {
        let apps = self.keyspace.apps();
        for change in changes {
            let key = match change {
                disco::Change::Put { key, .. } | disco::Change::Delete { key, .. } => key,
            };
            match (app_of(&apps, key), &mut self.changed) {
                (Some(app), Some(changed)) => {
                    changed.insert(app.to_string());
                }
                (None, changed) => *changed = None,
                (Some(_), None) => {}
            }
        }
    }

    /// Notes that the endpoint (`app`, `instance`, `version`), under `lease` (`None`:
    /// unknown), is being deleted; the snapshot still holds it.
    fn note_deleted(&mut self, app: String, instance: String, version: String, lease: Option<i64>) {
        let Some(endpoint) = self.snapshot.endpoint(&app, &instance, &version) else {
            return;
        };
        self.deleted.push(Deleted {
            endpoint: endpoint.clone(),
            app,
            instance,
            version,
            lease,
        });
    }

    /// Sorts the noted deletions: an endpoint whose lease is gone expired (or its
    /// owner's lease was revoked without a drain); one whose lease still exists was
    /// deleted on purpose. The expiries go to the guard.
    async fn sort_deleted(&mut self) {
        let now = Instant::now();
        let mut alive: BTreeMap<i64, bool> = BTreeMap::new();
        for d in std::mem::take(&mut self.deleted) {
            let expired = match d.lease {
                None => true,
                Some(lease) => {
                    if let std::collections::btree_map::Entry::Vacant(e) = alive.entry(lease) {
                        // Unknown when etcd cannot say: count it, the guard is the safe side.
                        e.insert(self.store.lease_exists(lease).await.unwrap_or(false));
                    }
                    !alive[&lease]
                }
            };
            // Registered again meanwhile: nothing to guard.
            let back = self
                .snapshot
                .endpoint(&d.app, &d.instance, &d.version)
                .is_some();
            if !expired || back {
                continue;
            }
            let remaining = self
                .snapshot
                .apps
                .get(&d.app)
                .map_or(0, |a| a.endpoints.values().map(|v| v.len()).sum());
            tracing::info!(app = %d.app, instance = %d.instance, version = %d.version, remaining, "an endpoint's registration expired");
            self.guard
                .expired(now, &d.app, &d.instance, &d.version, d.endpoint, remaining);
        }
    }

    /// Applies the snapshot to every target and publishes the result.
    async fn apply(&mut self) {
        if !self.deleted.is_empty() {
            self.sort_deleted().await;
        }
        let started = Instant::now();
        let metrics = &self.shared.metrics;
        metrics.applies.inc();
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let mut reloaded_any = false;
        // What is rendered: the routing state, with the endpoints the guard keeps.
        let (view, guarded) = self.guard.view(Instant::now(), &self.snapshot);
        // The guard's view differs from the routing state in the apps it holds
        // endpoints of, now or at the last apply.
        let holding: std::collections::BTreeSet<String> = self.guard.holding().cloned().collect();
        let mut changed = self.changed.take();
        if let Some(changed) = &mut changed {
            changed.extend(holding.iter().cloned());
            changed.extend(std::mem::take(&mut self.guarded));
        }
        self.guarded = holding;
        self.changed = Some(Default::default());
        let mut deferred = Vec::new();
        let mut done = vec![false; self.targets.len()];
        let min_interval = self.config.max_delay;
        for (i, target) in self.targets.iter_mut().enumerate() {
            let label = TargetLabel {
                target: target.name.clone(),
            };
            match target.apply(&view, min_interval, changed.as_ref()).await {
                Ok(report) => {
                    let revision = self.snapshot.revision;
                    match &report.outcome {
                        Outcome::Reloaded { took, why } => {
                            reloaded_any = true;
                            self.reloads[i] += 1;
                            metrics.reloads.get_or_create(&label).inc();
                            metrics
                                .reload_duration
                                .get_or_create(&label)
                                .observe(took.as_secs_f64());
                            match why {
                                Some(why) => {
                                    tracing::info!(target = %target.name, revision, took = ?took, %why, "installed and reloaded")
                                }
                                None => {
                                    tracing::info!(target = %target.name, revision, took = ?took, "installed and reloaded")
                                }
                            }
                        }
                        Outcome::Runtime { commands, took } => {
                            self.runtime_applies[i] += 1;
                            metrics.runtime_applies.get_or_create(&label).inc();
                            metrics
                                .runtime_duration
                                .get_or_create(&label)
                                .observe(took.as_secs_f64());
                            if target.config.kind == crate::config::Kind::Nginx {
                                tracing::info!(target = %target.name, revision, apps = commands, took = ?took, "pushed to the nginx balancer and read back; no reload");
                            } else {
                                tracing::info!(target = %target.name, revision, commands, took = ?took, "applied through the Runtime API and read back; installed, no reload");
                            }
                        }
                        Outcome::Unchanged => {
                            tracing::debug!(target = %target.name, revision, "unchanged")
                        }
                        Outcome::Deferred { until } => {
                            tracing::debug!(target = %target.name, revision, in_ = ?until.saturating_duration_since(Instant::now()), "reload deferred (max_delay)");
                            deferred.push((target.name.clone(), *until));
                        }
                    }
                    done[i] = !matches!(report.outcome, Outcome::Deferred { .. });
                    if let Some(by) = report.outcome.applied_by() {
                        self.applied_by[i] = Some(by);
                    }
                    // What runs now was rendered from this snapshot.
                    if self.collector.is_enabled()
                        && !matches!(report.outcome, Outcome::Deferred { .. })
                    {
                        self.collector
                            .installed(&target.name, &target.effective(&view));
                    }
                    warnings.extend(
                        report
                            .warnings
                            .iter()
                            .map(|w| format!("{}: {w}", target.name)),
                    );
                }
                Err(e) => {
                    tracing::error!(error = %e, "apply failed; the previous configuration keeps serving");
                    metrics
                        .apply_failures
                        .get_or_create(&FailureLabels {
                            target: e.target.clone(),
                            stage: e.stage.to_string(),
                        })
                        .inc();
                    errors.push(e.to_string());
                }
            }
        }
        // A failed apply is tried again without waiting for the next change: after 1 s,
        // doubling up to 30 s (see `pacing.rs`).
        self.retry_at = self.retries.after_apply(
            Instant::now(),
            !errors.is_empty(),
            deferred.iter().map(|(_, until)| *until),
        );
        let deferred: Vec<String> = deferred.into_iter().map(|(name, _)| name).collect();
        drop(view);
        if reloaded_any {
            self.save_loaded();
        }
        let status = &mut self.status;
        status.targets = self
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let previous = status.targets.get(&t.name).map(|s| s.revision).unwrap_or(0);
                (
                    t.name.clone(),
                    TargetStatus {
                        kind: t.config.kind.to_string(),
                        path: t.config.path.display().to_string(),
                        hash: t.installed_hash.clone().unwrap_or_default(),
                        revision: if done[i] {
                            self.snapshot.revision
                        } else {
                            previous
                        },
                        reloads: self.reloads[i],
                        runtime_applies: self.runtime_applies[i],
                        applied_by: self.applied_by[i].map(str::to_string),
                    },
                )
            })
            .collect();
        status.rejected = self.snapshot.rejected_list();
        status.warnings = warnings;
        status.held = guarded.held;
        metrics.held_endpoints.set(guarded.held_count as i64);
        status.updated_at = now_rfc3339();
        if errors.is_empty() {
            status.last_error = None;
            if deferred.is_empty() {
                status.applied_revision = self.snapshot.revision;
                status.last_success_at = Some(status.updated_at.clone());
            }
        } else {
            status.last_error = Some(errors.join("; "));
        }
        let _ = self.publish.send(Some(status.clone()));
        // The publisher was woken on this thread and would otherwise wait until this
        // apply returns (tokio runs a task woken by the running one next, on the same
        // thread): let it send the status to etcd before the files are written.
        tokio::task::yield_now().await;
        // Published: now the files of Runtime API changes, and the record of what runs.
        let mut flushed = false;
        for target in &mut self.targets {
            flushed |= target.flush();
        }
        if flushed {
            self.save_loaded();
        }
        let status = &self.status;
        let metrics = &self.shared.metrics;
        metrics
            .apply_duration
            .observe(started.elapsed().as_secs_f64());
        metrics.applied_revision.set(status.applied_revision);
        metrics.seen_revision.set(self.snapshot.revision);
        metrics.rejected.set(status.rejected.len() as i64);
        metrics.warnings.set(status.warnings.len() as i64);
        if errors.is_empty() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            metrics.last_success.set(now.as_secs_f64());
        }
        let (status, revision) = (status.clone(), self.snapshot.revision);
        // The per-app summary is for /status only.
        let apps = self
            .config
            .http_listen
            .map(|_| crate::view::summarize(&self.snapshot));
        let ok = errors.is_empty();
        self.shared.update(|v| {
            v.status = status;
            v.applied |= ok;
            v.snapshot_revision = revision;
            if let Some(apps) = apps {
                v.apps = apps;
            }
        });
        if errors.is_empty() && deferred.is_empty() {
            self.cache_dirty = true;
            if self
                .cache_saved_at
                .is_none_or(|at| at.elapsed() >= CACHE_INTERVAL)
            {
                self.save_cache();
            }
        }
        tracing::debug!(revision = self.snapshot.revision, took = ?started.elapsed(), "apply done");
    }

    /// Records what every target's proxy confirmed loading (see `loaded.rs`).
    fn save_loaded(&self) {
        let path = crate::loaded::path_for(&self.config.cache_path());
        let loaded = crate::loaded::Loaded {
            targets: self
                .targets
                .iter()
                .filter_map(|t| Some((t.config.path.clone(), t.installed_hash.clone()?)))
                .collect(),
            structures: self
                .targets
                .iter()
                .filter_map(|t| Some((t.config.path.clone(), t.loaded_structure()?.clone())))
                .collect(),
        };
        if let Err(e) = crate::loaded::write(&path, &loaded) {
            tracing::warn!(path = %path.display(), error = %e, "could not record the loaded configurations; the next start reloads once more");
        }
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

    fn save_cache(&mut self) {
        self.cache_dirty = false;
        self.cache_saved_at = Some(Instant::now());
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

/// The apps whose `rollout` record says a canary is running. A record that does not
/// parse counts as not running.
fn running_canaries(snapshot: &Snapshot) -> BTreeSet<String> {
    use serde::Deserialize;
    #[derive(Deserialize)]
    struct State {
        state: RolloutState,
    }
    snapshot
        .apps
        .iter()
        .filter(|(_, app)| {
            app.rollout
                .as_ref()
                .and_then(|r| State::deserialize(r).ok())
                .is_some_and(|r| r.state == RolloutState::Running)
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// The app a key under `apps` (`<prefix>/apps/`) belongs to: its next path segment,
/// when another segment follows it (`<prefix>/apps/<app>/...`).
fn app_of<'k>(apps: &str, key: &'k str) -> Option<&'k str> {
    key.strip_prefix(apps)
        .and_then(|rest| rest.split_once('/'))
        .map(|(app, _)| app)
        .filter(|app| !app.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_names_its_app_or_none() {
        let apps = "/disco/apps/";
        assert_eq!(app_of(apps, "/disco/apps/app1/routes/i1"), Some("app1"));
        assert_eq!(
            app_of(apps, "/disco/apps/my.app-2/policy"),
            Some("my.app-2")
        );
        // Not an app's key: every app counts as changed.
        assert_eq!(app_of(apps, "/disco/apps/app1"), None);
        assert_eq!(app_of(apps, "/disco/apps//policy"), None);
        assert_eq!(app_of(apps, "/other/apps/app1/policy"), None);
    }

    #[test]
    fn only_running_canaries_count() {
        let snapshot = Snapshot::from_kvs(
            &Keyspace::default(),
            7,
            [
                (
                    "/disco/apps/app1/rollout",
                    r#"{"version":"v2","state":"running"}"#,
                ),
                (
                    "/disco/apps/app2/rollout",
                    r#"{"version":"v2","state":"paused"}"#,
                ),
                (
                    "/disco/apps/app3/rollout",
                    r#"{"version":"v2","state":"done"}"#,
                ),
                (
                    "/disco/apps/app4/rollout",
                    r#"{"version":"v2","state":"sideways"}"#,
                ),
                ("/disco/apps/app5/rollout", r#"[1, 2]"#),
                ("/disco/apps/app6/routes/i1", "v1"),
            ],
        );
        assert_eq!(
            running_canaries(&snapshot),
            BTreeSet::from(["app1".to_string()])
        );
    }
}
