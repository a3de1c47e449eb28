//! One file the agent owns, and how a new routing state reaches its proxy:
//!
//! - unchanged: the rendered content is what the proxy was confirmed to run; nothing.
//! - runtime (HAProxy with `runtime_socket`): the structure the proxy loaded is the
//!   structure of the new file, so the difference goes through the Runtime API, is read
//!   back and compared (`runtime.rs`), and the new file is installed for a later reload
//!   or restart, without a reload.
//! - reload: render → stage → validate → atomic install → graceful reload → confirm.
//!   Any failure leaves the running configuration as it was and puts the previous file
//!   back if it had already been replaced. Two reloads of one target are at least
//!   `max_delay` apart: a change that would reload sooner is deferred.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use disco::render::haproxy::{Keep, RuntimeFiles, RuntimeState};
use disco::render::nginx::{BalancerEntries, BalancerFiles};
use disco::render::{self, HaproxyOptions, NginxOptions, Rendered};
use disco::Snapshot;
use tokio::time::Instant;

use crate::atomic_write;
use crate::config::{Kind, TargetConfig};
use crate::loaded::Structure;
use crate::pacing::ReloadSpacing;
use crate::runtime::{self, Runtime, Touched};

/// A file as written: size, modification time, hash of the content.
type Written = (u64, std::time::SystemTime, String);

/// Pattern file → its values.
type Patterns = std::collections::BTreeMap<String, BTreeSet<String>>;

/// Where an apply failed.
#[derive(Debug, thiserror::Error)]
#[error("target {target}: {stage} failed: {message}")]
pub struct ApplyError {
    pub target: String,
    pub stage: &'static str,
    pub message: String,
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The rendered content is what the proxy runs already; nothing was touched.
    Unchanged,
    /// The change went through the Runtime API, was read back, and the file installed.
    Runtime {
        /// Runtime API commands sent.
        commands: usize,
        /// Reading, commands, reading back and installing the file.
        took: Duration,
    },
    /// New content was installed and the proxy reloaded (confirmed).
    Reloaded {
        /// The reload command and its confirmation.
        took: Duration,
        /// Why the Runtime API was not used, when it is configured.
        why: Option<String>,
    },
    /// A reload is needed, but the last one was less than `max_delay` ago: nothing was
    /// touched; apply again at `until`.
    Deferred { until: Instant },
}

impl Outcome {
    /// `runtime` or `reload`, for a change that reached the proxy.
    pub fn applied_by(&self) -> Option<&'static str> {
        match self {
            Outcome::Runtime { .. } => Some("runtime"),
            Outcome::Reloaded { .. } => Some("reload"),
            Outcome::Unchanged | Outcome::Deferred { .. } => None,
        }
    }
}

/// What an apply did, and what the render had to leave out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub outcome: Outcome,
    pub warnings: Vec<String>,
}

/// The Runtime API side of an HAProxy target.
struct RuntimeApi {
    socket: PathBuf,
    files: RuntimeFiles,
    /// The structure and match kinds of the file HAProxy was confirmed to load (see
    /// `loaded.rs`); None: unknown, the next change reloads.
    loaded: Option<Structure>,
    /// What was last applied and confirmed; None: unknown, the next change reads every
    /// backend back before changing it.
    last: Option<RuntimeState>,
    /// Backends with a removed server left in maintenance (it still had connections).
    pending: BTreeSet<String>,
}

/// The balancer side of an nginx target (`balancer_socket`).
struct BalancerApi {
    socket: PathBuf,
    files: BalancerFiles,
    /// Where the module is written (`<path>.lua/disco_balancer.lua`).
    module: PathBuf,
    /// The last routes pushed, for nginx to load after a restart (`<path>.routes`).
    routes: PathBuf,
    /// The entries the balancer was confirmed to hold; None: unknown, the next push
    /// reads them first.
    last: Option<BalancerEntries>,
    /// The module was written by this process.
    module_written: bool,
    /// A confirmed push whose routes file is not written yet: see [`Target::flush`].
    unflushed: Option<String>,
}

/// What a render gives: the file, and what a reload-free path changes.
pub struct Next {
    pub rendered: Rendered,
    /// HAProxy with `runtime_socket`.
    pub runtime: Option<RuntimeState>,
    /// nginx with `balancer_socket`.
    pub balancer: Option<BalancerEntries>,
}

/// A target with what it has installed.
pub struct Target {
    pub config: TargetConfig,
    pub name: String,
    template: Option<String>,
    /// Hash of the content the proxy was confirmed to run (by a confirmed reload or
    /// Runtime API change of this agent, or as recorded by an earlier run: see
    /// `loaded.rs`). None: unknown, and the next apply validates, installs and reloads
    /// whatever the file.
    pub installed_hash: Option<String>,
    /// That content, when this process installed it: an unchanged render is then told
    /// by comparing texts, without hashing a file of a megabyte or more.
    installed_text: Option<Arc<String>>,
    runtime: Option<RuntimeApi>,
    balancer: Option<BalancerApi>,
    /// When the last reload started, so that the next is `max_delay` later.
    spacing: ReloadSpacing,
    /// The built-in HAProxy renderer's app blocks, reused while an app is unchanged.
    cache: render::haproxy::RenderCache,
    /// The file this agent wrote last: size, modification time and hash. While the
    /// file's metadata match, it is not read back to be hashed again.
    written: Option<Written>,
    /// A Runtime API change confirmed and published but whose file (and pattern files)
    /// are not written yet: see [`Target::flush`].
    unflushed: Option<(Arc<String>, String, Patterns)>,
    /// The background write of the last one (and of the balancer's routes file).
    flushing: Option<tokio::task::JoinHandle<Result<Option<Written>, String>>>,
}

impl Target {
    /// Prepares a target; reads its template, if any.
    pub fn new(config: TargetConfig) -> anyhow::Result<Target> {
        let name = config.name();
        let template = match &config.template {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("target {name}: reading template {}: {e}", path.display())
            })?),
            None => None,
        };
        let runtime = config.runtime_socket.clone().map(|socket| {
            let path = config.path.display().to_string();
            RuntimeApi {
                socket,
                files: RuntimeFiles {
                    pattern_dir: format!("{path}.patterns"),
                    state_file: format!("{path}.state"),
                },
                loaded: None,
                last: None,
                pending: Default::default(),
            }
        });
        let balancer = config.balancer_socket.clone().map(|socket| {
            let path = config.path.display().to_string();
            let module_dir = format!("{path}.lua");
            BalancerApi {
                files: BalancerFiles {
                    module_dir: module_dir.clone(),
                    socket: socket.display().to_string(),
                },
                socket,
                module: PathBuf::from(module_dir).join("disco_balancer.lua"),
                routes: PathBuf::from(format!("{path}.routes")),
                last: None,
                module_written: false,
                unflushed: None,
            }
        });
        Ok(Target {
            config,
            name,
            template,
            installed_hash: None,
            installed_text: None,
            runtime,
            balancer,
            spacing: ReloadSpacing::default(),
            cache: Default::default(),
            written: None,
            unflushed: None,
            flushing: None,
        })
    }

    /// Takes what an earlier run recorded as loaded (see `loaded.rs`).
    pub fn set_loaded(&mut self, hash: Option<String>, structure: Option<Structure>) {
        self.installed_hash = hash;
        self.installed_text = None;
        if let Some(rt) = &mut self.runtime {
            rt.loaded = structure;
        }
    }

    /// The structure the proxy was confirmed to load, for `loaded.rs`.
    pub fn loaded_structure(&self) -> Option<&Structure> {
        self.runtime.as_ref()?.loaded.as_ref()
    }

    /// True when changes can go through the Runtime API.
    pub fn has_runtime(&self) -> bool {
        self.runtime.is_some()
    }

    /// True for an nginx target in balancer mode.
    pub fn has_balancer(&self) -> bool {
        self.balancer.is_some()
    }

    /// Between changes, in balancer mode: true when the balancer no longer holds what
    /// was last pushed (nginx restarted and found no routes file, or someone else wrote
    /// to it), so that the next apply pushes again. An unreachable balancer is left to
    /// the next change.
    pub async fn balancer_lost(&mut self) -> bool {
        let timeout = self.config.timeout;
        let Some(b) = &mut self.balancer else {
            return false;
        };
        let Some(last) = &b.last else {
            return false;
        };
        match crate::balancer::read(&b.socket, timeout).await {
            Ok(held) if held.entries == *last => false,
            Ok(_) => {
                tracing::warn!(target = %self.name, "the nginx balancer lost the routes pushed (nginx restarted?): pushing again");
                b.last = None;
                true
            }
            Err(e) => {
                tracing::debug!(target = %self.name, error = %e, "could not read the nginx balancer");
                false
            }
        }
    }

    fn fail(&self, stage: &'static str, message: impl std::fmt::Display) -> ApplyError {
        ApplyError {
            target: self.name.clone(),
            stage,
            message: message.to_string(),
        }
    }

    /// The snapshot as this target renders it: with its `listen` overrides.
    pub fn effective<'a>(&self, snapshot: &'a Snapshot) -> Cow<'a, Snapshot> {
        if self.config.listen.is_empty() {
            return Cow::Borrowed(snapshot);
        }
        let mut copy = snapshot.clone();
        for (app, address) in &self.config.listen {
            if let Some(policy) = copy.apps.get_mut(app).and_then(|a| a.policy.as_mut()) {
                policy.listen = Some(address.clone());
            }
        }
        Cow::Owned(copy)
    }

    /// Renders the snapshot for this target (pure), with what the Runtime API can
    /// change when it has a runtime socket.
    /// `changed`: the apps that may differ since the last render (None: any).
    pub fn render(
        &mut self,
        snapshot: &Snapshot,
        changed: Option<&BTreeSet<String>>,
    ) -> Result<Next, ApplyError> {
        let effective = self.effective(snapshot);
        let snapshot = effective.as_ref();
        match self.config.kind {
            Kind::Haproxy => {
                let empty = Keep::new();
                let rt = self.runtime.as_ref();
                let keep = rt
                    .and_then(|rt| rt.loaded.as_ref())
                    .map_or(&empty, |l| &l.kinds);
                let options = HaproxyOptions {
                    log_socket: path_text(&self.config.log_socket),
                    ..HaproxyOptions::default()
                };
                let (rendered, state) = render::haproxy::haproxy_cached(
                    snapshot,
                    &options,
                    rt.map(|rt| &rt.files),
                    keep,
                    &mut self.cache,
                    changed,
                );
                Ok(Next {
                    rendered,
                    runtime: rt.map(|_| state),
                    balancer: None,
                })
            }
            Kind::Nginx => {
                let options = NginxOptions {
                    access_log: path_text(&self.config.access_log),
                    ..NginxOptions::default()
                };
                let (rendered, balancer) = match &self.balancer {
                    Some(b) => {
                        let (rendered, entries) =
                            render::nginx::nginx_balancer(snapshot, &options, &b.files);
                        (rendered, Some(entries))
                    }
                    None => (render::nginx(snapshot, &options), None),
                };
                Ok(Next {
                    rendered,
                    runtime: None,
                    balancer,
                })
            }
            Kind::Template => {
                render::template(snapshot, self.template.as_deref().unwrap_or_default())
                    .map(|rendered| Next {
                        rendered,
                        runtime: None,
                        balancer: None,
                    })
                    .map_err(|e| self.fail("render", e))
            }
        }
    }

    fn check_argv(&self) -> Option<Vec<String>> {
        if let Some(argv) = &self.config.check {
            return Some(argv.clone());
        }
        match self.config.kind {
            Kind::Haproxy => {
                let main = self
                    .config
                    .haproxy_config
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("/etc/haproxy/haproxy.cfg"));
                Some(vec![
                    "haproxy".into(),
                    "-c".into(),
                    "-f".into(),
                    main.display().to_string(),
                    "-f".into(),
                    "{staged}".into(),
                ])
            }
            Kind::Nginx => {
                let mut argv = vec!["nginx".to_string()];
                argv.extend(self.config.nginx_args.iter().cloned());
                argv.push("-t".into());
                Some(argv)
            }
            Kind::Template => None,
        }
    }

    async fn reload(&self) -> Result<(), String> {
        let timeout = self.config.timeout;
        match (self.config.kind, &self.config.reload) {
            (Kind::Haproxy, None) => {
                let socket = self
                    .config
                    .master_socket
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("/run/haproxy-master.sock"));
                crate::reload::haproxy(&socket, timeout).await
            }
            (Kind::Nginx, None) => {
                let mut argv = vec!["nginx".to_string()];
                argv.extend(self.config.nginx_args.iter().cloned());
                argv.extend(["-s".to_string(), "reload".to_string()]);
                let pid_file = self
                    .config
                    .pid_file
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("/run/nginx.pid"));
                crate::reload::nginx(&argv, &pid_file, timeout).await
            }
            (Kind::Template, None) => Ok(()),
            (_, Some(argv)) => crate::command::run(argv, None, timeout)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
        }
    }

    /// Makes the proxy serve `snapshot`, or leaves it as it was and says why. A reload
    /// sooner than `min_interval` after the last one is deferred.
    /// `changed`: the apps that may differ since the last apply (None: any).
    pub async fn apply(
        &mut self,
        snapshot: &Snapshot,
        min_interval: Duration,
        changed: Option<&BTreeSet<String>>,
    ) -> Result<Report, ApplyError> {
        self.settle().await;
        let t0 = Instant::now();
        let Next {
            rendered,
            runtime: state,
            balancer: entries,
        } = self.render(snapshot, changed)?;
        tracing::trace!(target = %self.name, took = ?t0.elapsed(), "rendered");
        let warnings = rendered.warnings.clone();
        let report = |outcome| Report {
            outcome,
            warnings: warnings.clone(),
        };
        let text = Arc::new(rendered.text);
        let path = self.config.path.clone();
        // Unchanged only if the proxy was confirmed to run this content AND the file
        // still holds it: a file on disk alone proves nothing (an agent killed before
        // its reload installed it), and a file removed or edited by hand is rewritten.
        let on_disk = self.on_disk_hash();
        let runs_it = match &self.installed_text {
            Some(installed) => **installed == *text,
            None => self.installed_hash.as_ref() == Some(&render::hash(&text)),
        };
        tracing::trace!(target = %self.name, took = ?t0.elapsed(), "compared with what runs, and the file's hash known");
        let pending = self
            .runtime
            .as_ref()
            .is_some_and(|rt| !rt.pending.is_empty());
        let pushed = self
            .balancer
            .as_ref()
            .is_none_or(|b| b.last.is_some() && b.last == entries);
        // What runs through the Runtime API is known only once this process read it
        // back: an earlier run may have changed it after the record was written (a kill
        // between a Runtime API change and its file), even back to what the record says.
        let read_back = self.runtime.as_ref().is_none_or(|rt| rt.last.is_some());
        if runs_it
            && on_disk.is_some()
            && on_disk == self.installed_hash
            && !pending
            && pushed
            && read_back
        {
            return Ok(report(Outcome::Unchanged));
        }
        // The new content's hash: that of what runs when it is the same text (a
        // balancer push; or compared by hash above), else computed on another thread
        // while a Runtime API change goes out.
        let known = runs_it.then(|| self.installed_hash.clone()).flatten();
        let hashing = {
            let text = text.clone();
            tokio::task::spawn_blocking(move || known.unwrap_or_else(|| render::hash(&text)))
        };
        let mut why = None;
        // A Runtime API change that failed half-way leaves HAProxy between two states:
        // then the reload is not deferred.
        let mut half_way = false;
        if let (Some(rt), Some(next)) = (&self.runtime, &state) {
            match &rt.loaded {
                Some(loaded) if loaded.structure == next.structure => {
                    match self.apply_runtime(next).await {
                        Ok(outcome) => {
                            let next = state.expect("a runtime state");
                            let hash = hashing.await.map_err(|e| self.fail("install", e))?;
                            self.installed_hash = Some(hash.clone());
                            self.installed_text = Some(text.clone());
                            self.unflushed = Some((text, hash, next.patterns.clone()));
                            if let Some(rt) = &mut self.runtime {
                                rt.last = Some(next);
                            }
                            return Ok(report(outcome));
                        }
                        Err(e) => {
                            tracing::warn!(target = %self.name, error = %e, "the Runtime API change did not take; reloading instead");
                            if let Some(rt) = &mut self.runtime {
                                rt.last = None;
                            }
                            half_way = true;
                            why = Some(e);
                        }
                    }
                }
                Some(_) => why = Some("the frontends or backends changed".to_string()),
                None => why = Some("the loaded configuration is not known yet".to_string()),
            }
        }
        if let Some(next) = entries.as_ref().filter(|_| self.balancer.is_some()) {
            if runs_it && on_disk.is_some() && on_disk == self.installed_hash {
                // nginx runs this file: only the routes change.
                match self.push(next, snapshot.revision).await {
                    Ok(outcome) => return Ok(report(outcome)),
                    Err(e) => {
                        tracing::warn!(target = %self.name, error = %e, "the balancer push did not take; reloading instead");
                        half_way = true;
                        why = Some(e);
                    }
                }
            } else if self.installed_hash.is_none() {
                why = Some("the loaded configuration is not known yet".to_string());
            } else {
                why =
                    Some("the apps, listen addresses or dark-canary networks changed".to_string());
            }
        }
        if let Some(until) = self
            .spacing
            .deferred_until(Instant::now(), min_interval)
            .filter(|_| !half_way)
        {
            return Ok(report(Outcome::Deferred { until }));
        }
        if let (Some(rt), Some(state)) = (&self.runtime, &state) {
            write_patterns(&state.patterns).map_err(|e| self.fail("install", e))?;
            // A server that is down stays down in the new worker.
            let api = Runtime {
                socket: &rt.socket,
                timeout: self.config.timeout,
            };
            if let Err(e) = api.save_state(Path::new(&rt.files.state_file), state).await {
                // An older state file would bring back older weights: none at all.
                let _ = std::fs::remove_file(&rt.files.state_file);
                tracing::warn!(target = %self.name, error = %e, "could not save the server state; after this reload every server starts up until checked");
            }
        }
        self.unflushed = None;
        if let Some(b) = &mut self.balancer {
            b.unflushed = None;
        }
        if let Err(e) = self.prepare_balancer() {
            return Err(self.fail("install", e));
        }
        let hash = hashing.await.map_err(|e| self.fail("install", e))?;
        let previous = std::fs::read(&path).ok();
        let check = self.check_argv();
        let timeout = self.config.timeout;
        // Validate before installing when the check can look at a staged file; the
        // staged file is then the one installed.
        let mut staged = None;
        if let Some(argv) = check
            .as_ref()
            .filter(|a| a.iter().any(|s| s.contains("{staged}")))
        {
            let file =
                atomic_write::stage(&path, text.as_bytes()).map_err(|e| self.fail("stage", e))?;
            let staged_path = file.path().display().to_string();
            crate::command::run(argv, Some(&staged_path), timeout)
                .await
                .map_err(|e| self.fail("validation", e))?;
            staged = Some(file);
        }
        self.install(&text, &hash, staged)
            .map_err(|e| self.fail("install", e))?;
        if let Some(argv) = check
            .as_ref()
            .filter(|a| !a.iter().any(|s| s.contains("{staged}")))
        {
            if let Err(e) = crate::command::run(argv, None, timeout).await {
                self.restore(&previous);
                return Err(self.fail("validation", e));
            }
        }
        // A new app's routes are in the balancer before its first request.
        if let Some(next) = entries.as_ref().filter(|_| self.balancer.is_some()) {
            if let Err(e) = self.push(next, snapshot.revision).await {
                tracing::debug!(target = %self.name, error = %e, "could not push before the reload; pushing after it");
            }
        }
        let reload_started = Instant::now();
        self.spacing.started(reload_started);
        let reloaded = self.reload().await;
        let took = reload_started.elapsed();
        if let Err(e) = reloaded {
            self.restore(&previous);
            return Err(self.fail("reload", e));
        }
        self.installed_hash = Some(hash);
        self.installed_text = Some(text);
        if let Some(next) = entries.as_ref().filter(|_| self.balancer.is_some()) {
            // The dict outlives a reload, but what it holds is confirmed all the same.
            if let Err(e) = self.push(next, snapshot.revision).await {
                return Err(self.fail("balancer push", e));
            }
        }
        if let (Some(rt), Some(state)) = (&mut self.runtime, state) {
            rt.loaded = Some(Structure {
                structure: state.structure.clone(),
                kinds: state.kinds.clone(),
            });
            rt.last = None;
            rt.pending.clear();
            // Verify, don't assume: what the new worker runs, read back, corrected
            // through the Runtime API if it differs.
            match self.apply_runtime(&state).await {
                Ok(outcome) => {
                    if let Outcome::Runtime { commands, .. } = outcome {
                        if commands > 0 {
                            tracing::warn!(target = %self.name, commands, "after the reload HAProxy ran something else than the file; corrected through the Runtime API");
                        }
                    }
                    if let Some(rt) = &mut self.runtime {
                        rt.last = Some(state);
                    }
                }
                // The reload itself is confirmed; the next change reads everything.
                Err(e) => {
                    tracing::warn!(target = %self.name, error = %e, "could not read back what HAProxy runs after the reload")
                }
            }
        }
        Ok(report(Outcome::Reloaded { took, why }))
    }

    /// Before a reload in balancer mode: the socket's directory (0700: nginx makes the
    /// socket 0666) and the balancer module.
    fn prepare_balancer(&mut self) -> Result<(), String> {
        let Some(b) = &mut self.balancer else {
            return Ok(());
        };
        if let Some(dir) = b.socket.parent().filter(|d| !d.exists()) {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        if !b.module_written {
            write_if_changed(&b.module, &crate::balancer::module(&b.routes))?;
            b.module_written = true;
        }
        Ok(())
    }

    /// Makes the nginx balancer hold `next` (pushing what differs from what it was
    /// confirmed to hold, or from what it holds when that is not known) and confirms it
    /// by reading back. The routes file is written later ([`Target::flush`]).
    async fn push(&mut self, next: &BalancerEntries, generation: i64) -> Result<Outcome, String> {
        let started = Instant::now();
        let timeout = self.config.timeout;
        let b = self.balancer.as_mut().expect("a balancer target");
        if !b.module_written {
            let changed = write_if_changed(&b.module, &crate::balancer::module(&b.routes))?;
            b.module_written = true;
            // nginx's workers keep the module they loaded until a reload.
            if changed {
                return Err(
                    "the balancer module changed (a new disco-agent): reloading nginx to load it"
                        .into(),
                );
            }
        }
        let held = match b.last.take() {
            Some(last) => last,
            None => crate::balancer::read(&b.socket, timeout).await?.entries,
        };
        let (body, count) = crate::balancer::body(Some(&held), next, generation);
        crate::balancer::push(&b.socket, &body, timeout).await?;
        let after = crate::balancer::read(&b.socket, timeout).await?;
        if after.generation != Some(generation) || after.entries != *next {
            let differ: Vec<&String> = next
                .keys()
                .chain(after.entries.keys())
                .filter(|app| next.get(*app) != after.entries.get(*app))
                .collect();
            return Err(format!(
                "read back after the push: generation {:?} (pushed {generation}), apps that differ: {differ:?}",
                after.generation
            ));
        }
        b.last = Some(next.clone());
        b.unflushed = Some(crate::balancer::body(None, next, generation).0);
        Ok(Outcome::Runtime {
            commands: count,
            took: started.elapsed(),
        })
    }

    /// Makes HAProxy run `next` through the Runtime API and confirms it by reading
    /// back. The file that describes `next` is written later ([`Target::flush`]).
    async fn apply_runtime(&mut self, next: &RuntimeState) -> Result<Outcome, String> {
        let started = Instant::now();
        let rt = self.runtime.as_ref().expect("a runtime target");
        let api = Runtime {
            socket: &rt.socket,
            timeout: self.config.timeout,
        };
        let mut touched = Touched::between(rt.last.as_ref(), next);
        // Servers left in maintenance for removal: try again.
        touched.backends.extend(rt.pending.iter().cloned());
        tracing::trace!(target = %self.name, took = ?started.elapsed(), backends = touched.backends.len(), "compared");
        let running = api.read(&touched).await?;
        let commands = runtime::commands(&running, next, &touched)?;
        tracing::debug!(target = %self.name, commands = ?commands.iter().map(|c| &c.text).collect::<Vec<_>>(), "Runtime API");
        let deferred = api.run(&commands).await.map_err(|e| e.to_string())?;
        let after = api.read(&touched).await?;
        runtime::verify(&after, next, &touched)?;
        let pending = touched
            .backends
            .iter()
            .filter(|b| {
                let want = next.backends.get(*b);
                after.backends.get(*b).is_some_and(|have| {
                    have.keys()
                        .any(|s| !want.is_some_and(|w| w.contains_key(s)))
                })
            })
            .cloned()
            .collect();
        if deferred > 0 {
            tracing::info!(target = %self.name, servers = deferred, "removed servers still have connections: left in maintenance, deleted by a later change");
        }
        tracing::trace!(target = %self.name, took = ?started.elapsed(), "commands sent and read back");
        if let Some(rt) = &mut self.runtime {
            rt.pending = pending;
        }
        Ok(Outcome::Runtime {
            commands: commands.len(),
            took: started.elapsed(),
        })
    }

    /// Writes the file (and pattern files) of a Runtime API change, once it is published:
    /// HAProxy runs it already, the file is for a later reload or restart. A crash
    /// before this costs a read-back after the restart (the record of what runs is
    /// older than the change), never a wrong status. Returns whether it wrote anything.
    ///
    /// The writing runs in the background (a 1.4 MB file with its fsyncs takes a few
    /// ms); the next apply, and the agent's stop, wait for it first ([`Target::settle`]).
    pub fn flush(&mut self) -> bool {
        let file = self.unflushed.take();
        let routes = self
            .balancer
            .as_mut()
            .and_then(|b| Some((b.routes.clone(), b.unflushed.take()?)));
        if file.is_none() && routes.is_none() {
            return false;
        }
        let path = self.config.path.clone();
        self.flushing = Some(tokio::task::spawn_blocking(move || {
            if let Some((routes, body)) = routes {
                atomic_write::install(&routes, body.as_bytes())
                    .map_err(|e| format!("{}: {e}", routes.display()))?;
            }
            let Some((text, hash, patterns)) = file else {
                return Ok(None);
            };
            write_patterns(&patterns)?;
            install_file(&path, &text, hash)
                .map(Some)
                .map_err(|e| format!("{}: {e}", path.display()))
        }));
        true
    }

    /// Waits for the file of the last Runtime API change to be written.
    pub async fn settle(&mut self) {
        let Some(task) = self.flushing.take() else {
            return;
        };
        match task.await {
            Ok(Ok(Some(written))) => self.written = Some(written),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::error!(target = %self.name, error = %e, "HAProxy runs the change, but its file could not be written; the next change writes it again");
            }
            Err(e) => tracing::error!(target = %self.name, error = %e, "writing the file failed"),
        }
    }

    /// Installs `text` (whose hash is `hash`, and which `staged` holds when given) at
    /// the target path, atomically.
    fn install(
        &mut self,
        text: &str,
        hash: &str,
        staged: Option<tempfile::NamedTempFile>,
    ) -> std::io::Result<()> {
        let path = &self.config.path;
        self.written = Some(match staged {
            Some(file) => {
                atomic_write::persist(file, path)?;
                let m = std::fs::metadata(path)?;
                (m.len(), m.modified()?, hash.to_string())
            }
            None => install_file(path, text, hash.to_string())?,
        });
        Ok(())
    }

    /// The hash of what the target file holds: remembered while its size and
    /// modification time are those of this agent's last write, read and hashed
    /// otherwise; None when there is no file.
    fn on_disk_hash(&self) -> Option<String> {
        let meta = std::fs::metadata(&self.config.path).ok()?;
        if let Some((len, modified, hash)) = &self.written {
            if meta.len() == *len && meta.modified().ok().as_ref() == Some(modified) {
                return Some(hash.clone());
            }
        }
        let content = std::fs::read(&self.config.path).ok()?;
        Some(render::hash(&String::from_utf8_lossy(&content)))
    }

    /// Puts the previous file back (or removes a file that did not exist before).
    fn restore(&self, previous: &Option<Vec<u8>>) {
        let path = &self.config.path;
        let result = match previous {
            Some(content) => atomic_write::install(path, content),
            None => std::fs::remove_file(path),
        };
        if let Err(e) = result {
            tracing::error!(target = %self.name, path = %path.display(), error = %e, "could not restore the previous file");
        }
    }
}

/// Writes `content` at `path` (creating its directory) unless it holds it already;
/// returns whether it wrote.
/// A configured path as the renderers take it (checked as UTF-8 by the config).
fn path_text(path: &Option<PathBuf>) -> Option<String> {
    path.as_ref().map(|p| p.display().to_string())
}

fn write_if_changed(path: &Path, content: &str) -> Result<bool, String> {
    if std::fs::read(path).ok().as_deref() == Some(content.as_bytes()) {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    atomic_write::install(path, content.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(true)
}

/// Writes the pattern files that differ from what they hold.
fn write_patterns(patterns: &Patterns) -> Result<(), String> {
    for (file, values) in patterns {
        let content: String = values.iter().flat_map(|v| [v.as_str(), "\n"]).collect();
        let path = Path::new(file);
        if std::fs::read(path).ok().as_deref() == Some(content.as_bytes()) {
            continue;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        atomic_write::install(path, content.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// Installs `text` (whose hash is `hash`) at `path` atomically; returns its size,
/// modification time and hash.
fn install_file(path: &Path, text: &str, hash: String) -> std::io::Result<Written> {
    atomic_write::install(path, text.as_bytes())?;
    let m = std::fs::metadata(path)?;
    Ok((m.len(), m.modified()?, hash))
}
