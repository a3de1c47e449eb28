//! Traffic statistics of the LB role: every `stats_interval`, read what each proxy
//! counted (HAProxy's stats socket, nginx's access log), attribute it to app and version
//! with the snapshot the running configuration was rendered from, and turn it into the
//! records published at `<prefix>/stats/<app>/<agent_id>` and the counters on `/metrics`.
//!
//! - [`haproxy`]: `show stat` deltas, with resets on reload.
//! - [`haproxy_log`]: per-request records HAProxy sends to the target's `log_socket`;
//!   with one, HTTP requests are counted from them only (and `show stat` counts tcp
//!   apps), so that no request counts twice.
//! - [`nginx`]: the tailed access log.
//! - [`publish`]: the records in etcd, under the stats lease.

pub mod haproxy;
pub mod haproxy_log;
pub mod nginx;
pub mod publish;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use disco::model::now_rfc3339;
use disco::render::Serves;
use disco::stats::{AppStats, Counts, VersionStats};
use disco::Snapshot;
use tokio::time::Instant;

use crate::config::{Kind, TargetConfig};

/// What one reading of a proxy gave.
#[derive(Debug, Default)]
pub struct Poll {
    /// Counts since the last reading, per app and version.
    pub samples: Vec<(Serves, Counts)>,
    /// Requests that could not be attributed to a version (a server or address the
    /// installed configuration does not have, e.g. a DNS-named endpoint in nginx).
    pub unattributed: u64,
    /// Records in a format the reader does not know (on HAProxy's log socket).
    pub ignored: u64,
}

/// Where one target's counts come from.
enum Reader {
    Haproxy(haproxy::HaproxyStats),
    HaproxyLog(haproxy_log::HaproxyLog),
    Nginx(nginx::NginxLog),
}

/// A target that has statistics.
struct Source {
    target: String,
    kind: Kind,
    reader: Reader,
    /// The last reading failed with this (logged once per change).
    failing: Option<String>,
}

/// Cumulative counters of one agent process, for `/metrics` and the published totals:
/// shared with the HTTP endpoints; they outlive configuration re-reads (SIGHUP).
#[derive(Debug, Default)]
pub struct Totals {
    /// When counting started (RFC 3339): the published `started_at`.
    pub started_at: String,
    /// (target, app, version) → counts since the agent started.
    pub by_target: BTreeMap<(String, String, String), Counts>,
    /// Target → requests that could not be attributed to a version.
    pub unattributed: BTreeMap<String, u64>,
    /// Target → failed readings.
    pub read_errors: BTreeMap<String, u64>,
    /// Target → records in a format the agent does not know (HAProxy's log socket).
    pub ignored_records: BTreeMap<String, u64>,
}

/// The statistics collector of the LB role.
pub struct Collector {
    agent_id: String,
    interval: Duration,
    started_at: String,
    sources: Vec<Source>,
    totals: Arc<Mutex<Totals>>,
    /// (app, version) → counts of the current window, all targets added up.
    window: BTreeMap<(String, String), Counts>,
    window_start: Instant,
}

impl Collector {
    /// A collector for the targets that have `stats_socket`, `log_socket` or
    /// `access_log`. Binds the log sockets (needs a tokio runtime): create it before the
    /// first reload.
    pub fn new(
        agent_id: &str,
        interval: Duration,
        targets: &[TargetConfig],
        totals: Arc<Mutex<Totals>>,
    ) -> Collector {
        let sources = targets
            .iter()
            .flat_map(|t| {
                let mut readers = Vec::new();
                match t.kind {
                    Kind::Haproxy => {
                        if let Some(socket) = &t.stats_socket {
                            readers.push(Reader::Haproxy(haproxy::HaproxyStats::new(
                                socket.clone(),
                                t.log_socket.is_some(),
                            )));
                        }
                        if let Some(socket) = &t.log_socket {
                            readers.push(Reader::HaproxyLog(haproxy_log::HaproxyLog::new(
                                socket.clone(),
                            )));
                        }
                    }
                    Kind::Nginx => {
                        if let Some(log) = &t.access_log {
                            readers.push(Reader::Nginx(nginx::NginxLog::new(log.clone())));
                        }
                    }
                    Kind::Template => {}
                }
                readers.into_iter().map(|reader| Source {
                    target: t.name(),
                    kind: t.kind,
                    reader,
                    failing: None,
                })
            })
            .collect();
        let started_at = {
            let mut t = totals.lock().expect("stats totals");
            if t.started_at.is_empty() {
                t.started_at = now_rfc3339();
            }
            t.started_at.clone()
        };
        Collector {
            agent_id: agent_id.to_string(),
            interval,
            started_at,
            sources,
            totals,
            window: BTreeMap::new(),
            window_start: Instant::now(),
        }
    }

    /// Whether any target has statistics.
    pub fn is_enabled(&self) -> bool {
        !self.sources.is_empty()
    }

    /// After `target` installed (or kept) the configuration rendered from `snapshot`
    /// (its effective snapshot, listen overrides applied): attribute its counts with it.
    pub fn installed(&mut self, target: &str, snapshot: &Snapshot) {
        for source in self.sources.iter_mut().filter(|s| s.target == target) {
            match &mut source.reader {
                Reader::Haproxy(h) => h.set_servers(disco::render::haproxy::servers(snapshot)),
                Reader::HaproxyLog(h) => h.set_servers(disco::render::haproxy::servers(snapshot)),
                Reader::Nginx(n) => {
                    n.set_addresses(disco::render::nginx::upstream_addresses(snapshot))
                }
            }
        }
    }

    /// Reads every proxy and adds what it counted to the totals and the window.
    pub async fn read(&mut self) {
        self.read_sources(true).await;
    }

    /// Whether any target has per-request records (HAProxy's `log_socket`, nginx's
    /// access log): what [`Collector::read_fast`] reads. Without them a canary's records
    /// between windows would only repeat the last ones.
    pub fn has_per_request_sources(&self) -> bool {
        self.sources
            .iter()
            .any(|s| !matches!(s.reader, Reader::Haproxy(_)))
    }

    /// Reads the per-request sources only (HAProxy's log socket, nginx's access log:
    /// what is already buffered, no round trip) and adds what they counted to the totals
    /// and the window, as [`Collector::read`] does. `show stat` waits for the next
    /// `read`, which then counts what it missed: nothing counts twice or not at all.
    pub async fn read_fast(&mut self) {
        self.read_sources(false).await;
    }

    /// Reads the sources (`show stat` too when `all`) into the totals and the window.
    async fn read_sources(&mut self, all: bool) {
        for source in &mut self.sources {
            let result = match &mut source.reader {
                Reader::Haproxy(_) if !all => continue,
                Reader::Haproxy(h) => h.poll().await,
                Reader::HaproxyLog(h) => h.poll(),
                Reader::Nginx(n) => n.poll(),
            };
            let mut totals = self.totals.lock().expect("stats totals");
            match result {
                Ok(poll) => {
                    if source.failing.take().is_some() {
                        tracing::info!(target = %source.target, "reading traffic statistics works again");
                    }
                    for (serves, counts) in poll.samples {
                        totals
                            .by_target
                            .entry((
                                source.target.clone(),
                                serves.app.clone(),
                                serves.version.clone(),
                            ))
                            .or_default()
                            .add(&counts);
                        self.window
                            .entry((serves.app, serves.version))
                            .or_default()
                            .add(&counts);
                    }
                    if poll.ignored > 0 {
                        *totals
                            .ignored_records
                            .entry(source.target.clone())
                            .or_default() += poll.ignored;
                    }
                    if poll.unattributed > 0 {
                        *totals
                            .unattributed
                            .entry(source.target.clone())
                            .or_default() += poll.unattributed;
                    }
                }
                Err(e) => {
                    *totals.read_errors.entry(source.target.clone()).or_default() += 1;
                    if source.failing.as_deref() != Some(e.as_str()) {
                        tracing::warn!(target = %source.target, error = %e, "cannot read traffic statistics");
                        source.failing = Some(e);
                    }
                }
            }
        }
    }

    /// Ends the window: one record per app the proxies serve (every routed version
    /// listed, with zeros if idle), and per app with counted traffic.
    pub fn records(&mut self) -> BTreeMap<String, AppStats> {
        let now = Instant::now();
        let records = self.assemble(now, None);
        self.window_start = now;
        self.window.clear();
        records
    }

    /// The records of `apps` (those of them the proxies serve or counted traffic of) as
    /// they stand: totals up to now, and the current window so far (`window_ms` since
    /// it began). The window goes on: the next [`Collector::records`] ends it.
    pub fn snapshot_for(&self, apps: &BTreeSet<String>) -> BTreeMap<String, AppStats> {
        self.assemble(Instant::now(), Some(apps))
    }

    /// The records of every app (`only`: of these apps), with the window from its start
    /// to `now`.
    fn assemble(
        &self,
        now: Instant,
        only: Option<&BTreeSet<String>>,
    ) -> BTreeMap<String, AppStats> {
        let wanted = |app: &String| only.is_none_or(|apps| apps.contains(app));
        let window_ms = now.duration_since(self.window_start).as_millis() as u64;
        let window = &self.window;
        let at = now_rfc3339();
        let totals = self.totals.lock().expect("stats totals");

        let mut versions: BTreeSet<(String, String)> = BTreeSet::new();
        let mut sources: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for source in &self.sources {
            let serves: Vec<&Serves> = match &source.reader {
                Reader::Haproxy(h) => h.serves().filter(|s| wanted(&s.app)).collect(),
                Reader::HaproxyLog(h) => h.serves().filter(|s| wanted(&s.app)).collect(),
                Reader::Nginx(n) => n.serves().filter(|s| wanted(&s.app)).collect(),
            };
            for s in serves {
                versions.insert((s.app.clone(), s.version.clone()));
                sources
                    .entry(s.app.clone())
                    .or_default()
                    .insert(source.target.clone(), source.kind.to_string());
            }
        }
        for (target, app, version) in totals.by_target.keys().filter(|(_, app, _)| wanted(app)) {
            versions.insert((app.clone(), version.clone()));
            let kind = self
                .sources
                .iter()
                .find(|s| &s.target == target)
                .map(|s| s.kind.to_string())
                .unwrap_or_default();
            sources
                .entry(app.clone())
                .or_default()
                .insert(target.clone(), kind);
        }

        let mut records: BTreeMap<String, AppStats> = BTreeMap::new();
        for (app, version) in versions {
            let mut total = Counts::default();
            for ((_, a, v), counts) in &totals.by_target {
                if *a == app && *v == version {
                    total.add(counts);
                }
            }
            let in_window = window
                .get(&(app.clone(), version.clone()))
                .cloned()
                .unwrap_or_default();
            let record = records.entry(app.clone()).or_insert_with(|| AppStats {
                agent: self.agent_id.clone(),
                app: app.clone(),
                sources: sources.get(&app).cloned().unwrap_or_default(),
                started_at: self.started_at.clone(),
                at: at.clone(),
                window_ms,
                interval_ms: self.interval.as_millis() as u64,
                versions: BTreeMap::new(),
            });
            record
                .versions
                .insert(version, VersionStats::new(total, in_window));
        }
        records
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A collector of one nginx target whose access log is `dir/access.log` (5 s
    /// windows), its totals, and the log's path.
    fn nginx_collector(
        dir: &std::path::Path,
    ) -> (Collector, Arc<Mutex<Totals>>, std::path::PathBuf) {
        let log = dir.join("access.log");
        let target: TargetConfig = toml::from_str(&format!(
            "kind = \"nginx\"\npath = \"/x\"\naccess_log = \"{}\"",
            log.display()
        ))
        .unwrap();
        let totals = Arc::new(Mutex::new(Totals::default()));
        let c = Collector::new("lb1", Duration::from_secs(5), &[target], totals.clone());
        (c, totals, log)
    }

    #[tokio::test]
    async fn records_list_routed_versions_and_add_up_windows_and_totals() {
        let dir = tempfile::tempdir().unwrap();
        let (mut c, totals, log) = nginx_collector(dir.path());
        assert!(c.is_enabled());
        let snapshot = Snapshot::from_kvs(
            &disco::Keyspace::default(),
            3,
            [
                ("/disco/apps/app1/policy", r#"{"listen":"127.0.0.1:8080"}"#),
                ("/disco/apps/app1/routes/i1", "v1"),
                ("/disco/apps/app1/routes/i2", "v2"),
                (
                    "/disco/apps/app1/endpoints/i1/v1",
                    r#"{"address":"127.0.0.1:9001"}"#,
                ),
                (
                    "/disco/apps/app1/endpoints/i2/v2",
                    r#"{"address":"127.0.0.1:9002"}"#,
                ),
            ],
        );
        c.installed("nginx", &snapshot);
        c.read().await;
        let mut f = std::fs::File::create(&log).unwrap();
        for status in [200, 500, 200, 200] {
            writeln!(f, "disco1|app1|{status}|127.0.0.1:9002|0.010|0.011").unwrap();
        }
        c.read().await;
        let records = c.records();
        let r = &records["app1"];
        assert_eq!(r.agent, "lb1");
        assert_eq!(
            r.sources,
            BTreeMap::from([("nginx".into(), "nginx".into())])
        );
        assert_eq!(r.versions["v1"].window.requests, 0, "routed, idle: listed");
        assert_eq!(r.versions["v2"].window.requests, 4);
        assert_eq!(r.versions["v2"].error_rate, Some(0.25));
        assert_eq!(r.versions["v2"].mean_ms, Some(10.0));
        assert!(r.versions["v2"].p95_ms.is_some());

        // The next window starts empty; the totals go on.
        writeln!(f, "disco1|app1|200|127.0.0.1:9002|0.010|0.011").unwrap();
        c.read().await;
        let r = &c.records()["app1"];
        assert_eq!(r.versions["v2"].window.requests, 1);
        assert_eq!(r.versions["v2"].total.requests, 5);
        let t = totals.lock().unwrap();
        assert_eq!(
            t.by_target[&("nginx".into(), "app1".into(), "v2".into())].errors_5xx,
            1
        );
    }

    #[tokio::test]
    async fn a_snapshot_between_windows_counts_once_and_leaves_the_window_running() {
        let dir = tempfile::tempdir().unwrap();
        let (mut c, _, log) = nginx_collector(dir.path());
        let snapshot = Snapshot::from_kvs(
            &disco::Keyspace::default(),
            3,
            [
                ("/disco/apps/app1/policy", r#"{"listen":"127.0.0.1:8080"}"#),
                ("/disco/apps/app1/routes/i1", "v1"),
                (
                    "/disco/apps/app1/endpoints/i1/v1",
                    r#"{"address":"127.0.0.1:9001"}"#,
                ),
                ("/disco/apps/app2/policy", r#"{"listen":"127.0.0.1:8081"}"#),
                ("/disco/apps/app2/routes/i1", "v1"),
                (
                    "/disco/apps/app2/endpoints/i1/v1",
                    r#"{"address":"127.0.0.1:9101"}"#,
                ),
            ],
        );
        c.installed("nginx", &snapshot);
        c.read().await;
        c.records();
        let mut f = std::fs::File::create(&log).unwrap();
        let line = |f: &mut std::fs::File, app: &str, status: u16, port: u16| {
            writeln!(f, "disco1|{app}|{status}|127.0.0.1:{port}|0.010|0.011").unwrap()
        };
        for status in [200, 500, 200] {
            line(&mut f, "app1", status, 9001);
        }
        line(&mut f, "app2", 200, 9101);
        let only_app1 = BTreeSet::from(["app1".to_string()]);

        c.read_fast().await;
        let fast = c.snapshot_for(&only_app1);
        assert_eq!(
            fast.keys().collect::<Vec<_>>(),
            ["app1"],
            "only the apps asked for"
        );
        let v1 = &fast["app1"].versions["v1"];
        assert_eq!((v1.total.requests, v1.window.requests), (3, 3));
        assert_eq!(v1.window.errors_5xx, 1);
        assert_eq!(fast["app1"].interval_ms, 5000);

        // The next snapshot: the same window, grown; the totals go on.
        line(&mut f, "app1", 200, 9001);
        c.read_fast().await;
        let fast = c.snapshot_for(&only_app1);
        let v1 = &fast["app1"].versions["v1"];
        assert_eq!((v1.total.requests, v1.window.requests), (4, 4));

        // The regular reading counts nothing again, and ends that window.
        line(&mut f, "app1", 500, 9001);
        c.read().await;
        let records = c.records();
        let v1 = &records["app1"].versions["v1"];
        assert_eq!((v1.total.requests, v1.window.requests), (5, 5));
        assert_eq!(v1.window.errors_5xx, 2);
        assert_eq!(records["app2"].versions["v1"].window.requests, 1);
        let fast = c.snapshot_for(&only_app1);
        assert_eq!(
            fast["app1"].versions["v1"].window.requests, 0,
            "a new window"
        );
        assert_eq!(fast["app1"].versions["v1"].total.requests, 5);
        assert!(c.snapshot_for(&BTreeSet::new()).is_empty());
    }
}
