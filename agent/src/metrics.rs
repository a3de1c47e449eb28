//! The agent's Prometheus metrics (on `/metrics`, via `prometheus-client`): applies and
//! their failures and durations, reloads, revisions, the etcd watch, rejected records,
//! and the traffic counted per app and version. Every metric is described in
//! `docs/metrics.md`.
//!
//! `prometheus-client` writes OpenMetrics text, which Prometheus asks for; other
//! scrapers (older Telegraf, curl) get the classic text format 0.0.4, converted by
//! [`classic_text`].

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use disco::stats::BUCKETS_MS;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::stats::Totals;

/// Buckets of the apply and reload duration histograms, in seconds.
const DURATION_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A target.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabel {
    pub target: String,
}

/// A failed apply of a target, and the stage that failed.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub target: String,
    pub stage: String,
}

type HistogramFamily = Family<TargetLabel, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// Every metric of the agent, registered once per process (they survive SIGHUP).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub applies: Counter,
    pub apply_failures: Family<FailureLabels, Counter>,
    pub apply_duration: Histogram,
    pub reloads: Family<TargetLabel, Counter>,
    pub reload_duration: HistogramFamily,
    pub runtime_applies: Family<TargetLabel, Counter>,
    pub runtime_duration: HistogramFamily,
    pub applied_revision: Gauge,
    pub seen_revision: Gauge,
    pub last_success: Gauge<f64, AtomicU64>,
    pub watch_reconnects: Counter,
    pub watch_resyncs: Counter,
    pub watch_live: Gauge,
    pub healthy: Gauge,
    pub rejected: Gauge,
    pub warnings: Gauge,
    pub held_endpoints: Gauge,
    pub canary_stats_publishes: Counter,
}

impl Metrics {
    /// Registers every metric; the traffic counters are read from `totals` at scrape.
    pub fn new(agent_id: &str, totals: Arc<Mutex<Totals>>) -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            applies: Counter::default(),
            apply_failures: Family::default(),
            apply_duration: duration_histogram(),
            reloads: Family::default(),
            reload_duration: Family::new_with_constructor(duration_histogram),
            runtime_applies: Family::default(),
            runtime_duration: Family::new_with_constructor(duration_histogram),
            applied_revision: Gauge::default(),
            seen_revision: Gauge::default(),
            last_success: Gauge::default(),
            watch_reconnects: Counter::default(),
            watch_resyncs: Counter::default(),
            watch_live: Gauge::default(),
            healthy: Gauge::default(),
            rejected: Gauge::default(),
            warnings: Gauge::default(),
            held_endpoints: Gauge::default(),
            canary_stats_publishes: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "disco_agent",
            "The agent: its id and build version",
            Info::new(vec![
                ("agent_id", agent_id.to_string()),
                ("version", env!("CARGO_PKG_VERSION").to_string()),
            ]),
        );
        registry.register(
            "disco_agent_applies",
            "Applies of the routing state to every target (each change, or burst of changes, is one)",
            m.applies.clone(),
        );
        registry.register(
            "disco_agent_apply_failures",
            "Failed applies per target and stage (render, stage, validation, install, reload); the previous configuration keeps serving",
            m.apply_failures.clone(),
        );
        registry.register_with_unit(
            "disco_agent_apply_duration",
            "Time an apply of every target took: render, validate, install, reload, confirm",
            Unit::Seconds,
            m.apply_duration.clone(),
        );
        registry.register(
            "disco_agent_reloads",
            "Proxy reloads per target (unchanged content is not reloaded)",
            m.reloads.clone(),
        );
        registry.register_with_unit(
            "disco_agent_reload_duration",
            "Time a reload took per target, until the new workers were confirmed",
            Unit::Seconds,
            m.reload_duration.clone(),
        );
        registry.register(
            "disco_agent_runtime_applies",
            "Changes applied through HAProxy's Runtime API per target, read back and confirmed, with no reload",
            m.runtime_applies.clone(),
        );
        registry.register_with_unit(
            "disco_agent_runtime_apply_duration",
            "Time a Runtime API change took per target: read, commands, read back, file installed",
            Unit::Seconds,
            m.runtime_duration.clone(),
        );
        registry.register(
            "disco_agent_applied_revision",
            "The etcd revision of the routing state the proxies serve",
            m.applied_revision.clone(),
        );
        registry.register(
            "disco_agent_seen_revision",
            "The latest etcd revision of the routing state the agent has seen; minus applied_revision: the agent's lag",
            m.seen_revision.clone(),
        );
        registry.register(
            "disco_agent_last_success_timestamp_seconds",
            "When the last apply succeeded (Unix time)",
            m.last_success.clone(),
        );
        registry.register(
            "disco_agent_watch_reconnects",
            "Times the etcd watch lost its connection",
            m.watch_reconnects.clone(),
        );
        registry.register(
            "disco_agent_watch_resyncs",
            "Times the agent re-read the whole routing state because etcd had compacted the revisions it needed",
            m.watch_resyncs.clone(),
        );
        registry.register(
            "disco_agent_watch_live",
            "1 while the etcd watch is connected (or etcd answers), 0 while it is down",
            m.watch_live.clone(),
        );
        registry.register(
            "disco_agent_healthy",
            "1 when /healthz answers 200: routing state applied, last apply succeeded, watch live",
            m.healthy.clone(),
        );
        registry.register(
            "disco_agent_rejected_records",
            "Records in etcd the agent refused (invalid names, addresses, JSON); listed in its status",
            m.rejected.clone(),
        );
        registry.register(
            "disco_agent_warnings",
            "Routed slots and apps the agent left out (missing or failing endpoint, no listen address...); listed in its status",
            m.warnings.clone(),
        );
        registry.register(
            "disco_agent_held_endpoints",
            "Endpoints kept in the configuration although their registrations expired at once (mass-expiry guard); listed in its status",
            m.held_endpoints.clone(),
        );
        registry.register(
            "disco_agent_canary_stats_publishes",
            "Fast publishes of the statistics of the apps with a running canary (every canary_stats_interval, between the regular ones)",
            m.canary_stats_publishes.clone(),
        );
        registry.register_collector(Box::new(TrafficCollector(totals)));
        Metrics { registry, ..m }
    }

    /// Every metric as OpenMetrics text (`application/openmetrics-text; version=1.0.0`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("encoding metrics into a String cannot fail");
        out
    }
}

/// OpenMetrics text from `prometheus-client` as the classic Prometheus text format
/// (`text/plain; version=0.0.4`): no `# UNIT` and `# EOF` lines, and the HELP/TYPE
/// names of counters and infos carry their samples' suffix (`_total`, `_info`; an info
/// is a gauge there). Samples are the same in both formats.
pub fn classic_text(openmetrics: &str) -> String {
    let mut types = std::collections::HashMap::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, kind)) = rest.split_once(' ') {
                types.insert(name.to_string(), kind.to_string());
            }
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let described = ["# HELP ", "# TYPE "]
            .iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (&line[..p.len()], rest)));
        if let Some((prefix, rest)) = described {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            let (name, tail) = match (types.get(name).map(String::as_str), prefix) {
                (Some("counter"), _) => (format!("{name}_total"), tail.to_string()),
                (Some("info"), "# TYPE ") => (format!("{name}_info"), "gauge".to_string()),
                (Some("info"), _) => (format!("{name}_info"), tail.to_string()),
                _ => (name.to_string(), tail.to_string()),
            };
            out.push_str(&format!("{prefix}{name} {tail}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The traffic counters, read from the collector's totals at each scrape.
#[derive(Debug)]
struct TrafficCollector(Arc<Mutex<Totals>>);

impl Collector for TrafficCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let totals = self.0.lock().expect("stats totals");
        let labels = |(target, app, version): &(String, String, String)| {
            [
                ("app", app.clone()),
                ("version", version.clone()),
                ("target", target.clone()),
            ]
        };
        let mut family = encoder.encode_descriptor(
            "disco_requests",
            "Requests the proxies sent to each app version and got an answer from",
            None,
            MetricType::Counter,
        )?;
        for (key, counts) in &totals.by_target {
            let labels = labels(key);
            ConstCounter::new(counts.requests).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "disco_requests_5xx",
            "Of those, answers with a status from 500 to 599",
            None,
            MetricType::Counter,
        )?;
        for (key, counts) in &totals.by_target {
            let labels = labels(key);
            ConstCounter::new(counts.errors_5xx).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "disco_response_time",
            "Response time per app version (nginx: a histogram of each request's upstream time; HAProxy: sum and count only, from the servers' average rtime)",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (key, counts) in &totals.by_target {
            let labels = labels(key);
            // The encoder takes counts per bucket and adds them up itself.
            let mut buckets = Vec::new();
            if counts.buckets.len() == BUCKETS_MS.len() + 1 {
                let mut below = 0;
                for (cumulative, bound) in counts.buckets.iter().zip(BUCKETS_MS) {
                    buckets.push((bound / 1000.0, cumulative - below));
                    below = *cumulative;
                }
                buckets.push((f64::MAX, counts.buckets[BUCKETS_MS.len()] - below));
            } else {
                buckets.push((f64::MAX, counts.timed));
            }
            family
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(
                    counts.time_ms_sum / 1000.0,
                    counts.timed,
                    &buckets,
                    None,
                )?;
        }
        let per_target = [
            (
                "disco_stats_unattributed_requests",
                "Requests counted by a proxy that could not be attributed to an app version",
                &totals.unattributed,
            ),
            (
                "disco_stats_read_errors",
                "Failed readings of a proxy's statistics (stats socket, log socket or access log)",
                &totals.read_errors,
            ),
            (
                "disco_stats_ignored_records",
                "Records on a proxy's log socket in a format the agent does not know",
                &totals.ignored_records,
            ),
        ];
        for (name, help, by_target) in per_target {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (target, n) in by_target {
                let labels = [("target", target.clone())];
                ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use disco::stats::Counts;

    #[test]
    fn traffic_and_agent_metrics_encode_as_openmetrics() {
        let totals = Arc::new(Mutex::new(Totals::default()));
        let mut nginx = Counts::default();
        nginx.observe(200, Some(3.0));
        nginx.observe(500, Some(40.0));
        let haproxy = Counts {
            requests: 10,
            errors_5xx: 1,
            timed: 10,
            time_ms_sum: 20.0,
            buckets: Vec::new(),
        };
        {
            let mut t = totals.lock().unwrap();
            t.by_target
                .insert(("nginx".into(), "app1".into(), "v2".into()), nginx);
            t.by_target
                .insert(("haproxy".into(), "app1".into(), "v1".into()), haproxy);
            t.unattributed.insert("nginx".into(), 3);
        }
        let m = Metrics::new("lb1", totals);
        m.applies.inc();
        m.reload_duration
            .get_or_create(&TargetLabel {
                target: "haproxy".into(),
            })
            .observe(0.2);
        let text = m.encode();
        let info = format!(
            "disco_agent_info{{agent_id=\"lb1\",version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        for line in [
            info.as_str(),
            "disco_agent_applies_total 1",
            "disco_requests_total{app=\"app1\",version=\"v2\",target=\"nginx\"} 2",
            "disco_requests_5xx_total{app=\"app1\",version=\"v1\",target=\"haproxy\"} 1",
            "disco_response_time_seconds_bucket{le=\"0.005\",app=\"app1\",version=\"v2\",target=\"nginx\"} 1",
            "disco_response_time_seconds_bucket{le=\"+Inf\",app=\"app1\",version=\"v2\",target=\"nginx\"} 2",
            "disco_response_time_seconds_count{app=\"app1\",version=\"v1\",target=\"haproxy\"} 10",
            "disco_response_time_seconds_sum{app=\"app1\",version=\"v1\",target=\"haproxy\"} 0.02",
            "disco_stats_unattributed_requests_total{target=\"nginx\"} 3",
            "# TYPE disco_agent_reload_duration_seconds histogram",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }

        let classic = classic_text(&text);
        for line in [
            "# HELP disco_agent_applies_total Applies of the routing state to every target (each change, or burst of changes, is one).",
            "# TYPE disco_agent_applies_total counter",
            "disco_agent_applies_total 1",
            "# TYPE disco_agent_info gauge",
            "# TYPE disco_response_time_seconds histogram",
            "disco_requests_total{app=\"app1\",version=\"v2\",target=\"nginx\"} 2",
        ] {
            assert!(classic.lines().any(|l| l == line), "{line:?} not in\n{classic}");
        }
        assert!(!classic.contains("# EOF") && !classic.contains("# UNIT"));
    }
}
