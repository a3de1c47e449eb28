//! Traffic statistics: what every LB agent publishes per app and version at
//! `<prefix>/stats/<app>/<agent-id>` ([`AppStats`], JSON, under a lease), and the
//! arithmetic its readers need: the sum over agents ([`merge`]), the difference over an
//! interval ([`between`]), error rate, mean and a histogram-derived percentile.
//! Shared by `disco-agent` (the writer) and `discoctl` (canary analysis, `check`).
//!
//! Counts come from the data plane: HAProxy's `show stat` (per server, mapped to the
//! version it serves) or an nginx access log the agent tails (per request, mapped by
//! upstream address), or the per-request records HAProxy sends to the agent's log socket
//! (per request, mapped by backend and server). `show stat` gives no per-request times,
//! so those counts have a mean response time but no histogram (and so no percentile);
//! the per-request sources have both.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::keys::{Key, Keyspace};
use crate::store::{Store, StoreError};

/// Upper bounds (inclusive, milliseconds) of the response-time histogram buckets; a
/// last, implicit bucket holds everything slower (`+Inf`).
pub const BUCKETS_MS: [f64; 14] = [
    1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
];

/// Counters of one version over some span of time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Requests this version answered (HAProxy: `req_tot` of its servers, `stot` in tcp
    /// mode; nginx: access-log lines whose last upstream address is one of its endpoints).
    pub requests: u64,
    /// Of those, responses with a status from 500 to 599.
    pub errors_5xx: u64,
    /// Requests whose response time is included in `time_ms_sum`.
    #[serde(default)]
    pub timed: u64,
    /// Sum of the response times of the `timed` requests, in milliseconds (HAProxy: the
    /// server's `rtime`, its average over its last 1024 requests, times the requests
    /// counted; nginx: the last `$upstream_response_time` of each request).
    #[serde(default)]
    pub time_ms_sum: f64,
    /// Response-time histogram, cumulative as in Prometheus: `buckets[i]` counts the
    /// requests that took at most [`BUCKETS_MS`]`[i]` ms, and the last element (one past
    /// `BUCKETS_MS`) counts them all (`+Inf`). Empty when the source has no per-request
    /// times (HAProxy's `show stat`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buckets: Vec<u64>,
}

impl Counts {
    /// Counts one request that took `ms` milliseconds (none: time unknown).
    pub fn observe(&mut self, status: u16, ms: Option<f64>) {
        self.requests += 1;
        if (500..=599).contains(&status) {
            self.errors_5xx += 1;
        }
        if let Some(ms) = ms.filter(|ms| ms.is_finite() && *ms >= 0.0) {
            self.timed += 1;
            self.time_ms_sum += ms;
            if self.buckets.len() != BUCKETS_MS.len() + 1 {
                self.buckets = vec![0; BUCKETS_MS.len() + 1];
            }
            for (bucket, bound) in self.buckets.iter_mut().zip(BUCKETS_MS) {
                if ms <= bound {
                    *bucket += 1;
                }
            }
            *self.buckets.last_mut().expect("not empty") += 1;
        }
    }

    /// Adds `other` (another agent, another proxy, another span).
    pub fn add(&mut self, other: &Counts) {
        self.requests += other.requests;
        self.errors_5xx += other.errors_5xx;
        self.timed += other.timed;
        self.time_ms_sum += other.time_ms_sum;
        if self.buckets.is_empty() {
            self.buckets = other.buckets.clone();
        } else if self.buckets.len() == other.buckets.len() {
            for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
                *mine += theirs;
            }
        }
    }

    /// What happened after `earlier`, a reading of the same counters. If any counter
    /// went down, the counters restarted in between and all of `self` is new.
    pub fn since(&self, earlier: &Counts) -> Counts {
        let restarted = self.requests < earlier.requests
            || self.errors_5xx < earlier.errors_5xx
            || self.timed < earlier.timed
            || (self.buckets.len() == earlier.buckets.len()
                && self
                    .buckets
                    .iter()
                    .zip(&earlier.buckets)
                    .any(|(a, b)| a < b));
        if restarted {
            return self.clone();
        }
        Counts {
            requests: self.requests - earlier.requests,
            errors_5xx: self.errors_5xx - earlier.errors_5xx,
            timed: self.timed - earlier.timed,
            time_ms_sum: (self.time_ms_sum - earlier.time_ms_sum).max(0.0),
            buckets: if self.buckets.len() == earlier.buckets.len() {
                self.buckets
                    .iter()
                    .zip(&earlier.buckets)
                    .map(|(a, b)| a - b)
                    .collect()
            } else {
                self.buckets.clone()
            },
        }
    }

    /// The share of 5xx responses, 0.0–1.0; none without requests.
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors_5xx as f64 / self.requests as f64)
    }

    /// The mean response time in ms; none without timed requests.
    pub fn mean_ms(&self) -> Option<f64> {
        (self.timed > 0).then(|| self.time_ms_sum / self.timed as f64)
    }

    /// The `q` quantile (0.0–1.0, e.g. 0.95) of the response time in ms, estimated from
    /// the histogram the way Prometheus' `histogram_quantile` does: linear within the
    /// bucket it falls in; in the `+Inf` bucket, the largest finite bound. None without
    /// a histogram (HAProxy) or requests in it.
    pub fn percentile_ms(&self, q: f64) -> Option<f64> {
        if self.buckets.len() != BUCKETS_MS.len() + 1 {
            return None;
        }
        let total = *self.buckets.last()?;
        if total == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * total as f64;
        let mut below = 0u64;
        let mut lower = 0.0;
        for (count, bound) in self.buckets.iter().zip(BUCKETS_MS) {
            if *count as f64 >= rank && *count > below {
                let share = (rank - below as f64) / (*count - below) as f64;
                return Some(lower + (bound - lower) * share.clamp(0.0, 1.0));
            }
            below = *count;
            lower = bound;
        }
        Some(lower)
    }
}

/// One version's counts in an [`AppStats`] record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionStats {
    /// Since the agent started counting ([`AppStats::started_at`]).
    pub total: Counts,
    /// The last window ([`AppStats::window_ms`] long, ending at [`AppStats::at`]). In a
    /// record published between the regular ones (every `canary_stats_interval` while
    /// the app has a canary running), the current window so far: it is not ended there,
    /// so consecutive such records hold growing windows of the same start, until the
    /// next regular record ends it. Differences of `total` are the counts between any
    /// two records.
    pub window: Counts,
    /// The window's 5xx share (0.0–1.0); null without requests. Derived from `window`,
    /// for people reading etcd.
    #[serde(default)]
    pub error_rate: Option<f64>,
    /// The window's mean response time in ms; null without timed requests.
    #[serde(default)]
    pub mean_ms: Option<f64>,
    /// The window's median response time in ms, from the histogram; null without one
    /// (HAProxy's `show stat`) or without requests.
    #[serde(default)]
    pub p50_ms: Option<f64>,
    /// The window's 95th percentile response time in ms, from the histogram; null
    /// without one (HAProxy's `show stat`) or without requests.
    #[serde(default)]
    pub p95_ms: Option<f64>,
    /// The window's 99th percentile response time in ms, from the histogram; null
    /// without one (HAProxy's `show stat`) or without requests.
    #[serde(default)]
    pub p99_ms: Option<f64>,
}

impl VersionStats {
    /// Stats with these counts and the derived fields filled in from `window`.
    pub fn new(total: Counts, window: Counts) -> VersionStats {
        VersionStats {
            error_rate: window.error_rate(),
            mean_ms: window.mean_ms(),
            p50_ms: window.percentile_ms(0.5),
            p95_ms: window.percentile_ms(0.95),
            p99_ms: window.percentile_ms(0.99),
            total,
            window,
        }
    }
}

/// What one LB agent publishes about one app: `<prefix>/stats/<app>/<agent-id>`,
/// rewritten every `stats_interval` under the agent's stats lease (so a dead agent's
/// record disappears); while the app has a canary running, also every
/// `canary_stats_interval` in between, with the window so far (not ended; see
/// [`VersionStats::window`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppStats {
    /// The agent id (also in the key).
    pub agent: String,
    /// The app (also in the key).
    pub app: String,
    /// Where the counts come from: target name → kind (`haproxy`, `nginx`). Counts of
    /// several targets of one agent are added up.
    #[serde(default)]
    pub sources: BTreeMap<String, String>,
    /// When the agent started counting (RFC 3339): the totals are since then. A record
    /// with another `started_at` than an earlier one comes from a restarted agent.
    pub started_at: String,
    /// When this record was written, the end of the window (RFC 3339); in a record
    /// between the regular ones, the moment the window so far reaches.
    pub at: String,
    /// The length of the window, in ms (about `interval_ms`; less in a record between
    /// the regular ones: the window so far).
    pub window_ms: u64,
    /// The agent's `stats_interval`, in ms: a record older than a few of these is stale.
    pub interval_ms: u64,
    /// Version → counts. Every version the agent's proxies route to (or send dark
    /// traffic to) is listed, with zeros if it had no traffic.
    pub versions: BTreeMap<String, VersionStats>,
}

/// Adds up the records of several agents (for one app): version → counts.
pub fn merge<'a>(
    records: impl IntoIterator<Item = &'a AppStats>,
) -> BTreeMap<String, VersionStats> {
    let mut sums: BTreeMap<String, (Counts, Counts)> = BTreeMap::new();
    for record in records {
        for (version, stats) in &record.versions {
            let (total, window) = sums.entry(version.clone()).or_default();
            total.add(&stats.total);
            window.add(&stats.window);
        }
    }
    sums.into_iter()
        .map(|(version, (total, window))| (version, VersionStats::new(total, window)))
        .collect()
}

/// Version → what happened between two readings of the same app's records (e.g. at the
/// start and the end of a canary step), added up over agents. An agent whose
/// `started_at` changed (restarted) or that is new in `after` counts with its whole
/// totals; an agent gone from `after` counts nothing.
pub fn between(before: &[AppStats], after: &[AppStats]) -> BTreeMap<String, Counts> {
    let mut out: BTreeMap<String, Counts> = BTreeMap::new();
    for record in after {
        let earlier = before
            .iter()
            .find(|b| b.agent == record.agent && b.started_at == record.started_at);
        for (version, stats) in &record.versions {
            let delta = match earlier.and_then(|e| e.versions.get(version)) {
                Some(e) => stats.total.since(&e.total),
                None => stats.total.clone(),
            };
            out.entry(version.clone()).or_default().add(&delta);
        }
    }
    out
}

/// Parses the records read under `<prefix>/stats/<app>/`: those whose key and content
/// agree; the others are left out.
pub fn parse_records<'a>(
    keyspace: &Keyspace,
    kvs: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Vec<AppStats> {
    kvs.into_iter()
        .filter_map(|(key, value)| {
            let Ok(Key::Stats { app, agent }) = keyspace.parse(key) else {
                return None;
            };
            let record: AppStats = serde_json::from_slice(value).ok()?;
            (record.app == app && record.agent == agent).then_some(record)
        })
        .collect()
}

/// Reads every live agent's record of `app`.
pub async fn read(
    store: &Store,
    keyspace: &Keyspace,
    app: &str,
) -> Result<Vec<AppStats>, StoreError> {
    let (_, kvs) = store.get_prefix(&keyspace.stats(app), None).await?;
    Ok(parse_records(
        keyspace,
        kvs.iter().map(|kv| (kv.key.as_str(), kv.value.as_slice())),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(requests: u64, errors: u64) -> Counts {
        let mut c = Counts::default();
        for i in 0..requests {
            c.observe(if i < errors { 503 } else { 200 }, Some(3.0));
        }
        c
    }

    #[test]
    fn observe_fills_counts_and_a_cumulative_histogram() {
        let mut c = Counts::default();
        for ms in [0.5, 2.0, 7.0, 7.0, 40000.0] {
            c.observe(200, Some(ms));
        }
        c.observe(500, None);
        c.observe(404, Some(f64::NAN));
        assert_eq!((c.requests, c.errors_5xx, c.timed), (7, 1, 5));
        assert_eq!(c.buckets.len(), BUCKETS_MS.len() + 1);
        assert_eq!(&c.buckets[..4], [1, 2, 2, 4]);
        assert_eq!(c.buckets[BUCKETS_MS.len() - 1], 4);
        assert_eq!(*c.buckets.last().unwrap(), 5);
        assert_eq!(c.error_rate(), Some(1.0 / 7.0));
        assert_eq!(c.mean_ms(), Some((0.5 + 2.0 + 7.0 + 7.0 + 40000.0) / 5.0));
    }

    #[test]
    fn percentiles_interpolate_within_the_bucket() {
        let mut c = Counts::default();
        // 100 requests evenly in (10, 25] ms: the median is about halfway.
        for i in 0..100 {
            c.observe(200, Some(10.0 + 0.15 * (i + 1) as f64));
        }
        let p50 = c.percentile_ms(0.5).unwrap();
        assert!((17.0..=18.0).contains(&p50), "{p50}");
        assert_eq!(c.percentile_ms(1.0), Some(25.0));
        // Everything beyond the last bound: the last bound.
        let mut slow = Counts::default();
        slow.observe(200, Some(99999.0));
        assert_eq!(slow.percentile_ms(0.95), Some(30000.0));
        // No histogram (HAProxy) or no requests: none.
        let haproxy = Counts {
            requests: 10,
            timed: 10,
            time_ms_sum: 50.0,
            ..Counts::default()
        };
        assert_eq!(haproxy.percentile_ms(0.95), None);
        assert_eq!(haproxy.mean_ms(), Some(5.0));
        assert_eq!(Counts::default().percentile_ms(0.95), None);
        assert_eq!(Counts::default().error_rate(), None);
    }

    #[test]
    fn since_subtracts_and_treats_a_decrease_as_a_restart() {
        let early = counts(10, 1);
        let late = counts(30, 4);
        let d = late.since(&early);
        assert_eq!((d.requests, d.errors_5xx, d.timed), (20, 3, 20));
        assert_eq!(*d.buckets.last().unwrap(), 20);
        let restarted = counts(5, 0);
        assert_eq!(restarted.since(&late), restarted);
    }

    fn record(agent: &str, started: &str, v1: Counts, v2: Counts) -> AppStats {
        AppStats {
            agent: agent.into(),
            app: "app1".into(),
            started_at: started.into(),
            versions: BTreeMap::from([
                ("v1".into(), VersionStats::new(v1.clone(), v1)),
                ("v2".into(), VersionStats::new(v2.clone(), v2)),
            ]),
            ..AppStats::default()
        }
    }

    #[test]
    fn merge_adds_agents_and_between_handles_restarts() {
        let a0 = record("lb1", "t0", counts(10, 0), counts(10, 1));
        let b0 = record("lb2", "t0", counts(20, 0), counts(20, 2));
        let merged = merge([&a0, &b0]);
        assert_eq!(merged["v2"].total.requests, 30);
        assert_eq!(merged["v2"].error_rate, Some(0.1));
        assert_eq!(merged["v1"].error_rate, Some(0.0));
        let v1 = &merged["v1"];
        for p in [v1.p50_ms, v1.p95_ms, v1.p99_ms] {
            let p = p.unwrap();
            assert!(
                (2.5..=5.0).contains(&p),
                "3 ms lies in the (2.5, 5] bucket: {p}"
            );
        }
        assert!(v1.p50_ms < v1.p95_ms && v1.p95_ms < v1.p99_ms, "{v1:?}");
        let p95 = v1.p95_ms.unwrap();
        assert!((4.8..=5.0).contains(&p95), "{p95}");

        // lb1 counted on; lb2 restarted; lb3 is new.
        let a1 = record("lb1", "t0", counts(15, 0), counts(20, 3));
        let b1 = record("lb2", "t1", counts(4, 0), counts(4, 1));
        let c1 = record("lb3", "t1", counts(1, 0), counts(1, 0));
        let d = between(&[a0, b0], &[a1, b1, c1]);
        assert_eq!((d["v1"].requests, d["v1"].errors_5xx), (5 + 4 + 1, 0));
        assert_eq!((d["v2"].requests, d["v2"].errors_5xx), (10 + 4 + 1, 2 + 1));
    }

    #[test]
    fn records_round_trip_and_must_match_their_key() {
        let ks = Keyspace::default();
        let r = record("lb1", "t0", counts(3, 1), Counts::default());
        let json = serde_json::to_vec(&r).unwrap();
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(text.contains(r#""error_rate":0.3333"#), "{text}");
        for p in ["p50_ms", "p95_ms", "p99_ms"] {
            assert!(text.contains(&format!(r#""{p}":null"#)), "{text}");
        }
        let good = ks.key(&Key::Stats {
            app: "app1".into(),
            agent: "lb1".into(),
        });
        let wrong = ks.key(&Key::Stats {
            app: "app1".into(),
            agent: "lb2".into(),
        });
        let parsed = parse_records(
            &ks,
            [
                (good.as_str(), json.as_slice()),
                (wrong.as_str(), json.as_slice()),
                (good.as_str(), b"not json".as_slice()),
            ],
        );
        assert_eq!(parsed, [r]);
    }
}
