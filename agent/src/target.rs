//! One file the agent owns: render → unchanged? skip → stage → validate → atomic install
//! → graceful reload → confirm. Any failure leaves the running configuration as it was
//! and puts the previous file back if it had already been replaced.

use std::borrow::Cow;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use disco::render::{self, HaproxyOptions, NginxOptions, Rendered};
use disco::Snapshot;

use crate::atomic_write;
use crate::config::{Kind, TargetConfig};

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
    /// The rendered content is what is installed already; nothing was touched.
    Unchanged,
    /// New content was installed and the proxy reloaded.
    Reloaded,
}

/// A target with what it has installed.
pub struct Target {
    pub config: TargetConfig,
    pub name: String,
    template: Option<String>,
    /// Hash of the content the proxy was confirmed to have loaded (by a confirmed
    /// reload of this agent, or as recorded by an earlier run: see `loaded.rs`). None:
    /// unknown, and the next apply validates, installs and reloads whatever the file.
    pub installed_hash: Option<String>,
    /// Warnings of the last render.
    pub warnings: Vec<String>,
    /// How long the last reload took (command and confirmation).
    pub last_reload: Option<Duration>,
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
        Ok(Target {
            config,
            name,
            template,
            installed_hash: None,
            warnings: Vec::new(),
            last_reload: None,
        })
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

    /// Renders the snapshot for this target (pure).
    pub fn render(&self, snapshot: &Snapshot) -> Result<Rendered, ApplyError> {
        let snapshot = self.effective(snapshot);
        let snapshot = snapshot.as_ref();
        match self.config.kind {
            Kind::Haproxy => Ok(render::haproxy(snapshot, &HaproxyOptions::default())),
            Kind::Nginx => {
                let options = NginxOptions {
                    access_log: self
                        .config
                        .access_log
                        .as_ref()
                        .map(|p| p.display().to_string()),
                    ..NginxOptions::default()
                };
                Ok(render::nginx(snapshot, &options))
            }
            Kind::Template => {
                render::template(snapshot, self.template.as_deref().unwrap_or_default())
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

    /// Makes the proxy serve `snapshot`, or leaves it as it was and says why.
    pub async fn apply(&mut self, snapshot: &Snapshot) -> Result<Outcome, ApplyError> {
        let rendered = self.render(snapshot)?;
        self.warnings = rendered.warnings;
        let hash = render::hash(&rendered.text);
        let path = self.config.path.clone();
        let previous = std::fs::read(&path).ok();
        // Unchanged only if the proxy was confirmed to load this content AND the file
        // still holds it: a file on disk alone proves nothing (an agent killed before
        // its reload installed it), and a file removed or edited by hand is rewritten.
        let on_disk = previous
            .as_deref()
            .map(|p| render::hash(&String::from_utf8_lossy(p)));
        if self.installed_hash.as_deref() == Some(hash.as_str()) && on_disk.as_ref() == Some(&hash)
        {
            return Ok(Outcome::Unchanged);
        }
        let check = self.check_argv();
        let timeout = self.config.timeout;
        // Validate before installing when the check can look at a staged file.
        if let Some(argv) = check
            .as_ref()
            .filter(|a| a.iter().any(|s| s.contains("{staged}")))
        {
            let staged = atomic_write::stage(&path, rendered.text.as_bytes())
                .map_err(|e| self.fail("stage", e))?;
            let staged_path = staged.path().display().to_string();
            crate::command::run(argv, Some(&staged_path), timeout)
                .await
                .map_err(|e| self.fail("validation", e))?;
        }
        atomic_write::install(&path, rendered.text.as_bytes())
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
        let reload_started = Instant::now();
        let reloaded = self.reload().await;
        self.last_reload = Some(reload_started.elapsed());
        if let Err(e) = reloaded {
            self.restore(&previous);
            return Err(self.fail("reload", e));
        }
        self.installed_hash = Some(hash);
        Ok(Outcome::Reloaded)
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
