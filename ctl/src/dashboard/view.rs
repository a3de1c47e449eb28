//! What the dashboard's page shows, as JSON built from the state read from etcd: one
//! document per app (slots, endpoints, dark canary, weights, canary, history), the
//! agents, and points of traffic per version. Pure: no IO, so every field is tested.

use std::collections::{BTreeMap, BTreeSet};

use disco::model::{AgentStatus, Endpoint, HistoryRecord};
use disco::plan::natural_cmp;
use disco::rollout::Rollout;
use disco::snapshot::App;
use disco::stats::AppStats;
use serde::Serialize;
use serde_json::{json, Value};

use crate::cmd::status::{health, slot_state};

/// How many audit records of an app the page shows (the newest).
pub const HISTORY_SHOWN: usize = 10;

/// One app as the page shows it. `history` is oldest first (as stored); the view lists
/// it newest first. `locked`: a discoctl holds the app's canary lock (runs its canary).
pub fn app(name: &str, app: &App, history: &[HistoryRecord], locked: bool) -> Value {
    let policy = app.policy.clone().unwrap_or_default();
    let mut slots: Vec<_> = app.slots().collect();
    slots.sort_by(|x, y| natural_cmp(x.instance, y.instance));
    let slots: Vec<Value> = slots
        .iter()
        .map(|s| {
            json!({
                "instance": s.instance,
                "version": s.version,
                "address": s.endpoint.map(|e| e.address.as_str()),
                "state": slot_state(s),
            })
        })
        .collect();
    let mut instances: Vec<_> = app.endpoints.iter().collect();
    instances.sort_by(|x, y| natural_cmp(x.0, y.0));
    let endpoints: Vec<Value> = instances
        .iter()
        .flat_map(|(instance, versions)| {
            versions.iter().map(move |(version, e)| {
                json!({
                    "instance": instance,
                    "version": version,
                    "address": e.address,
                    "weight": e.weight,
                    "health": health(e),
                    "detail": e.health.as_ref().and_then(|h| h.detail.as_deref()),
                    "routed": app.routes.get(*instance) == Some(version),
                })
            })
        })
        .collect();
    // Every version seen: routed, registered, dark or weighted.
    let mut versions: BTreeSet<&str> = app.routes.values().map(String::as_str).collect();
    versions.extend(
        app.endpoints
            .values()
            .flat_map(|v| v.keys().map(String::as_str)),
    );
    versions.extend(policy.dark.as_ref().map(|d| d.version.as_str()));
    versions.extend(policy.weights.keys().map(String::as_str));
    let versions: Vec<Value> = versions
        .into_iter()
        .map(|v| {
            let routed = app.routes.values().filter(|r| *r == v).count();
            let registered: Vec<&Endpoint> = app.endpoints_of(v).map(|(_, e)| e).collect();
            json!({
                "version": v,
                "slots": routed,
                "endpoints": registered.len(),
                "healthy": registered.iter().filter(|e| e.is_healthy()).count(),
            })
        })
        .collect();
    let dark = policy.dark.as_ref().map(|d| {
        json!({
            "version": d.version,
            "matches": d.matches.iter().map(crate::describe::matcher).collect::<Vec<_>>(),
        })
    });
    let problems = slots.iter().filter(|s| s["state"] != "ok").count();
    json!({
        "name": name,
        "listen": policy.listen,
        "mode": policy.mode,
        "slots": slots,
        "endpoints": endpoints,
        "versions": versions,
        "dark": dark,
        "weights": policy.weights,
        "problems": problems,
        "canary": app.rollout.as_ref().map(|raw| canary(raw, locked)),
        "history": history.iter().rev().take(HISTORY_SHOWN).map(history_record).collect::<Vec<_>>(),
    })
}

/// The canary record as the page shows it; `owned`: a discoctl runs it (holds its lock).
pub fn canary(raw: &Value, owned: bool) -> Value {
    let Ok(r) = serde_json::from_value::<Rollout>(raw.clone()) else {
        return json!({ "unreadable": true });
    };
    let step = r
        .step
        .checked_sub(1)
        .and_then(|i| r.steps.get(i))
        .map(|s| s.describe(&r.version));
    json!({
        "version": r.version,
        "state": r.state,
        "active": !r.state.is_terminal(),
        "step": r.step,
        "of": r.steps.len(),
        "step_description": step,
        "passed": r.passed,
        "interval_ms": r.analysis.interval_ms,
        "max_error_rate": r.analysis.max_error_rate,
        "dry_run": r.analysis.dry_run,
        "awaits_confirmation": r.awaits_confirmation(),
        "reason": r.reason,
        "changed_by": r.changed_by,
        "owner": r.owner,
        "owned": owned,
        "actor": r.actor,
        "started_at": r.started_at,
        "updated_at": r.updated_at,
    })
}

/// One audit record: what the page's history lists.
pub fn history_record(r: &HistoryRecord) -> Value {
    let routes = crate::describe::routes_change(&r.from, &r.to);
    let change = match &r.policy {
        Some(p) => {
            let policy = crate::describe::policy_change(p.from.as_ref(), p.to.as_ref());
            if routes.is_empty() {
                policy
            } else {
                format!("{routes}; {policy}")
            }
        }
        None => routes,
    };
    json!({
        "seq": r.seq,
        "at": r.at,
        "actor": r.actor,
        "action": r.action,
        "change": change,
        "reason": r.reason,
    })
}

/// The agents, with how far each LB agent lags `latest` (the last routing write).
pub fn agents(agents: &BTreeMap<String, AgentStatus>, latest: i64) -> Value {
    let list: Vec<Value> = agents
        .values()
        .map(|a| {
            let lb = crate::cmd::status::is_lb(a);
            let applied_by: BTreeMap<&str, &str> = a
                .targets
                .iter()
                .filter_map(|(name, t)| Some((name.as_str(), t.applied_by.as_deref()?)))
                .collect();
            json!({
                "id": a.id,
                "roles": a.roles,
                "applied_revision": a.applied_revision,
                "lag": lb.then_some((latest - a.applied_revision).max(0)),
                "applied_by": applied_by,
                "reloads": a.targets.values().map(|t| t.reloads).sum::<u64>(),
                "runtime_applies": a.targets.values().map(|t| t.runtime_applies).sum::<u64>(),
                "last_error": a.last_error,
                "last_success_at": a.last_success_at,
                "warnings": a.warnings,
                "held": a.held,
                "rejected": a.rejected.len(),
                "updated_at": a.updated_at,
                "agent_version": a.agent_version,
            })
        })
        .collect();
    json!({ "latest": latest, "agents": list })
}

/// One version's traffic at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionPoint {
    /// Requests per second over the agents' last windows, added up over agents.
    pub rps: f64,
    /// The share of 5xx answers (0.0–1.0) in those windows; none without requests.
    pub error_share: Option<f64>,
    /// The 95th percentile response time in ms, when the source has a histogram.
    pub p95_ms: Option<f64>,
    /// The mean response time in ms, when the source times requests.
    pub mean_ms: Option<f64>,
}

/// The traffic of one app at one moment, per version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// When, in ms since the Unix epoch.
    pub at_ms: u64,
    /// Version → its traffic.
    pub versions: BTreeMap<String, VersionPoint>,
}

/// The app's traffic now, from the latest record of every agent that publishes it.
pub fn traffic_point<'a>(records: impl IntoIterator<Item = &'a AppStats>, at_ms: u64) -> Point {
    let records: Vec<&AppStats> = records.into_iter().collect();
    let mut rps: BTreeMap<&str, f64> = BTreeMap::new();
    for r in &records {
        let seconds = r.window_ms as f64 / 1000.0;
        for (version, stats) in &r.versions {
            let per_second = if seconds > 0.0 {
                stats.window.requests as f64 / seconds
            } else {
                0.0
            };
            *rps.entry(version).or_default() += per_second;
        }
    }
    let merged = disco::stats::merge(records.iter().copied());
    let versions = merged
        .iter()
        .map(|(version, s)| {
            (
                version.clone(),
                VersionPoint {
                    rps: rps.get(version.as_str()).copied().unwrap_or(0.0),
                    error_share: s.error_rate,
                    p95_ms: s.p95_ms,
                    mean_ms: s.mean_ms,
                },
            )
        })
        .collect();
    Point { at_ms, versions }
}

#[cfg(test)]
mod tests {
    use disco::model::{Health, HealthStatus};
    use disco::stats::{Counts, VersionStats};
    use disco::Keyspace;

    use super::*;

    fn seeded() -> App {
        let kvs = [
            (
                "/disco/apps/app1/policy",
                r#"{"listen":"127.0.0.1:8080","weights":{"v3":10}}"#.to_string(),
            ),
            ("/disco/apps/app1/routes/instance10", "v1".into()),
            ("/disco/apps/app1/routes/instance2", "v2".into()),
            ("/disco/apps/app1/routes/instance3", "v1".into()),
            (
                "/disco/apps/app1/endpoints/instance2/v2",
                r#"{"address":"127.0.0.1:9102"}"#.into(),
            ),
            (
                "/disco/apps/app1/endpoints/instance10/v1",
                r#"{"address":"127.0.0.1:9001","health":{"status":"failing","detail":"503"}}"#
                    .into(),
            ),
        ];
        let snapshot = disco::Snapshot::from_kvs(&Keyspace::default(), 9, kvs);
        snapshot.apps["app1"].clone()
    }

    #[test]
    fn an_app_lists_slots_in_natural_order_with_endpoint_states() {
        let view = app("app1", &seeded(), &[], false);
        let slots: Vec<(&str, &str, &str)> = view["slots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["instance"].as_str().unwrap(),
                    s["version"].as_str().unwrap(),
                    s["state"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            slots,
            [
                ("instance2", "v2", "ok"),
                ("instance3", "v1", "missing"),
                ("instance10", "v1", "failing"),
            ]
        );
        assert_eq!(view["problems"], 2);
        assert_eq!(view["listen"], "127.0.0.1:8080");
        assert_eq!(view["weights"], json!({"v3": 10}));
        assert_eq!(view["endpoints"][0]["instance"], "instance2");
        assert_eq!(view["endpoints"][1]["health"], "failing");
        assert_eq!(view["endpoints"][1]["detail"], "503");
        assert_eq!(view["endpoints"][1]["routed"], true);
        let versions: Vec<&str> = view["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_str().unwrap())
            .collect();
        assert_eq!(versions, ["v1", "v2", "v3"], "weighted versions count too");
        assert_eq!(
            view["versions"][0],
            json!({"version": "v1", "slots": 2, "endpoints": 1, "healthy": 0})
        );
        assert_eq!(view["canary"], Value::Null);
    }

    fn record(seq: u64) -> HistoryRecord {
        let mut r = HistoryRecord::new(
            "dashboard:ops",
            disco::model::HistoryAction::Promote,
            [("instance1".to_string(), "v1".to_string())].into(),
            [("instance1".to_string(), "v2".to_string())].into(),
            None,
            None,
        );
        r.seq = seq;
        r
    }

    #[test]
    fn history_is_newest_first_and_bounded() {
        let history: Vec<HistoryRecord> = (1..=15).map(record).collect();
        let view = app("app1", &seeded(), &history, false);
        let seqs: Vec<u64> = view["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (6..=15).rev().collect::<Vec<_>>());
        assert_eq!(view["history"][0]["actor"], "dashboard:ops");
        assert_eq!(view["history"][0]["action"], "promote");
        assert_eq!(view["history"][0]["change"], "instance1 v1->v2");
    }

    #[test]
    fn a_canary_shows_its_step_and_whether_anyone_runs_it() {
        let raw = json!({
            "version": "v2", "steps": ["1", "all"], "step": 1, "passed": 0, "state": "paused",
            "analysis": {"interval_ms": 3000, "max_error_rate": 0.01, "min_requests": 20},
            "started_at": "t0", "updated_at": "t1", "owner": "42@ops1", "actor": "ann@ops",
            "lease": 7, "original": {"routes": {}}, "reason": "lunch",
            "changed_by": "dashboard:ops"
        });
        let view = canary(&raw, true);
        assert_eq!(view["state"], "paused");
        assert_eq!(view["active"], true);
        assert_eq!(
            (view["step"].as_u64(), view["of"].as_u64()),
            (Some(1), Some(2))
        );
        assert_eq!(view["step_description"], "1 slot on v2");
        assert_eq!(view["interval_ms"], 3000);
        assert_eq!(view["changed_by"], "dashboard:ops");
        assert_eq!(view["owned"], true);
        assert_eq!(
            canary(&json!({"version": 3}), false),
            json!({"unreadable": true})
        );
    }

    #[test]
    fn agents_lag_behind_the_latest_change_only_in_the_lb_role() {
        let lb = AgentStatus {
            id: "lb1".into(),
            roles: vec!["lb".into()],
            applied_revision: 40,
            last_error: Some("haproxy -c failed".into()),
            ..AgentStatus::default()
        };
        let register = AgentStatus {
            id: "app-host".into(),
            roles: vec!["register".into()],
            ..AgentStatus::default()
        };
        let all = BTreeMap::from([("lb1".into(), lb), ("app-host".into(), register)]);
        let view = agents(&all, 42);
        assert_eq!(view["latest"], 42);
        assert_eq!(view["agents"][0]["id"], "app-host");
        assert_eq!(view["agents"][0]["lag"], Value::Null);
        assert_eq!(view["agents"][1]["lag"], 2);
        assert_eq!(view["agents"][1]["last_error"], "haproxy -c failed");
    }

    fn stats(agent: &str, window_ms: u64, v1: (u64, u64), v2: (u64, u64)) -> AppStats {
        let counts = |(requests, errors): (u64, u64)| {
            let mut c = Counts::default();
            for i in 0..requests {
                c.observe(if i < errors { 500 } else { 200 }, Some(4.0));
            }
            VersionStats::new(c.clone(), c)
        };
        AppStats {
            agent: agent.into(),
            app: "app1".into(),
            window_ms,
            versions: BTreeMap::from([("v1".into(), counts(v1)), ("v2".into(), counts(v2))]),
            ..AppStats::default()
        }
    }

    #[test]
    fn traffic_adds_up_the_agents_rates_and_shares() {
        let a = stats("lb1", 1000, (100, 0), (10, 1));
        let b = stats("lb2", 2000, (100, 0), (30, 3));
        let point = traffic_point([&a, &b], 7);
        assert_eq!(point.at_ms, 7);
        assert_eq!(point.versions["v1"].rps, 150.0);
        assert_eq!(point.versions["v2"].rps, 25.0);
        assert_eq!(point.versions["v2"].error_share, Some(0.1));
        let p95 = point.versions["v1"].p95_ms.unwrap();
        assert!((2.5..=5.0).contains(&p95), "{p95}");
        assert_eq!(point.versions["v1"].mean_ms, Some(4.0));
        assert!(traffic_point([], 1).versions.is_empty());
        // A zero window (a first record) counts no rate rather than dividing by zero.
        let first = stats("lb3", 0, (5, 0), (0, 0));
        assert_eq!(traffic_point([&first], 1).versions["v1"].rps, 0.0);
    }

    #[test]
    fn the_endpoint_health_reads_as_words() {
        let mut e = Endpoint::new("127.0.0.1:1");
        assert_eq!(health(&e), "unknown");
        e.health = Some(Health {
            status: HealthStatus::Passing,
            checked_at: None,
            detail: None,
        });
        assert_eq!(health(&e), "passing");
    }
}
