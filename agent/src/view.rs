//! The agent's view of itself, one per process: what the LB loop last applied and
//! published, the etcd watch, the routing state per app, the traffic published, and the
//! health verdict drawn from them; with the metrics and the traffic totals. The LB loop
//! keeps it current ([`Shared::update`]); the HTTP endpoints (`http.rs`) only read it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use disco::model::{AgentStatus, Dark, Mode};
use disco::stats::AppStats;
use disco::Snapshot;
use serde::Serialize;

use crate::metrics::Metrics;
use crate::stats::Totals;

/// The state of the etcd watch.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WatchState {
    /// Connected (or etcd answers again after a disconnect: the watch resumes from the
    /// last revision it delivered, so nothing is skipped).
    pub live: bool,
    /// When it was lost (RFC 3339), while it is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub down_since: Option<String>,
    /// Why it was lost, while it is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Disconnects since the agent started.
    pub reconnects: u64,
    /// The watch has been started (after the first read of the routing state).
    #[serde(skip)]
    pub watching: bool,
}

/// One version of an app, as `/status` summarises it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VersionSummary {
    /// Registered endpoints (routed or not).
    pub endpoints: usize,
    /// Of those, reported failing by their registering agent.
    pub failing: usize,
    /// Slots routed to this version.
    pub routed_slots: usize,
}

/// One app of the applied snapshot, as `/status` summarises it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AppSummary {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    pub mode: Mode,
    /// Slot → routed version.
    pub routes: BTreeMap<String, String>,
    pub versions: BTreeMap<String, VersionSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dark: Option<Dark>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub weights: BTreeMap<String, u32>,
    /// An automated canary is in progress.
    pub rollout: bool,
}

/// Summarises every app of `snapshot`.
pub fn summarize(snapshot: &Snapshot) -> BTreeMap<String, AppSummary> {
    snapshot
        .apps
        .iter()
        .map(|(name, app)| {
            let mut versions: BTreeMap<String, VersionSummary> = BTreeMap::new();
            for by_version in app.endpoints.values() {
                for (version, endpoint) in by_version {
                    let v = versions.entry(version.clone()).or_default();
                    v.endpoints += 1;
                    v.failing += usize::from(!endpoint.is_healthy());
                }
            }
            for version in app.routes.values() {
                versions.entry(version.clone()).or_default().routed_slots += 1;
            }
            let policy = app.policy.clone().unwrap_or_default();
            let summary = AppSummary {
                listen: policy.listen,
                mode: policy.mode,
                routes: app.routes.clone(),
                versions,
                dark: policy.dark,
                weights: policy.weights,
                rollout: app.rollout.is_some(),
            };
            (name.clone(), summary)
        })
        .collect()
}

/// What the endpoints show, kept current by the LB loop.
#[derive(Debug, Default, Clone, Serialize)]
pub struct View {
    /// The status the agent publishes to `<prefix>/agents/<id>`.
    #[serde(flatten)]
    pub status: AgentStatus,
    /// An apply has succeeded since the agent started (from etcd or the cache).
    pub applied: bool,
    pub watch: WatchState,
    /// The revision of the latest routing state seen (applied or not).
    pub snapshot_revision: i64,
    /// The latest routing state seen, per app.
    pub apps: BTreeMap<String, AppSummary>,
    /// The last traffic statistics published, per app.
    pub traffic: BTreeMap<String, AppStats>,
}

impl View {
    /// Ok, or why the agent is not healthy.
    pub fn health(&self) -> Result<(), String> {
        if let Some(e) = &self.status.last_error {
            return Err(format!("last apply failed: {e}"));
        }
        if !self.watch.live {
            let since = self.watch.down_since.as_deref().unwrap_or("start");
            let error = self.watch.error.as_deref().unwrap_or("not connected yet");
            return Err(format!("etcd watch down since {since}: {error}"));
        }
        if !self.applied {
            return Err("starting: the routing state has not been applied yet".into());
        }
        Ok(())
    }
}

/// What the LB loop and the endpoints share; one per process.
#[derive(Debug)]
pub struct Shared {
    pub metrics: Metrics,
    pub view: Mutex<View>,
    /// The traffic totals the stats collector adds to and `/metrics` reads.
    pub totals: Arc<Mutex<Totals>>,
}

impl Shared {
    pub fn new(agent_id: &str) -> Arc<Shared> {
        let totals = Arc::new(Mutex::new(Totals::default()));
        Arc::new(Shared {
            metrics: Metrics::new(agent_id, totals.clone()),
            view: Mutex::new(View::default()),
            totals,
        })
    }

    /// Changes the view, and the gauges that mirror it.
    pub fn update(&self, change: impl FnOnce(&mut View)) {
        let mut view = self.view.lock().expect("view");
        change(&mut view);
        let m = &self.metrics;
        m.watch_live.set(i64::from(view.watch.live));
        m.healthy.set(i64::from(view.health().is_ok()));
    }

    /// A copy of the view.
    pub fn view(&self) -> View {
        self.view.lock().expect("view").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_names_the_first_reason() {
        let mut view = View::default();
        assert!(view.health().unwrap_err().contains("etcd watch down"));
        view.watch.live = true;
        assert!(view.health().unwrap_err().contains("not been applied"));
        view.applied = true;
        assert_eq!(view.health(), Ok(()));
        view.status.last_error = Some("target x: validation failed: boom".into());
        assert_eq!(
            view.health().unwrap_err(),
            "last apply failed: target x: validation failed: boom"
        );
    }

    #[test]
    fn apps_are_summarised_per_version() {
        let snapshot = Snapshot::from_kvs(
            &disco::Keyspace::default(),
            3,
            [
                (
                    "/disco/apps/app1/policy",
                    r#"{"listen":"127.0.0.1:8080","weights":{"v2":10}}"#,
                ),
                ("/disco/apps/app1/routes/i1", "v1"),
                ("/disco/apps/app1/routes/i2", "v1"),
                (
                    "/disco/apps/app1/endpoints/i1/v1",
                    r#"{"address":"127.0.0.1:9001"}"#,
                ),
                (
                    "/disco/apps/app1/endpoints/i1/v2",
                    r#"{"address":"127.0.0.1:9002","health":{"status":"failing"}}"#,
                ),
            ],
        );
        let apps = summarize(&snapshot);
        let app = &apps["app1"];
        assert_eq!(app.listen.as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(app.versions["v1"].routed_slots, 2);
        assert_eq!(app.versions["v1"].endpoints, 1);
        assert_eq!(app.versions["v2"].failing, 1);
        assert_eq!(app.weights["v2"], 10);
    }
}
