//! The agent driving real HAProxy and nginx under load: at least 30 routing changes
//! (slot flips, an endpoint added and removed, the dark match on and off) with zero
//! failed requests, the applied revision reached after each change, and the traffic mix
//! following the routes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use disco::store::Store;
use disco_harness::{Backend, Etcd, Load, LoadOptions, LoadReport};
use disco_testkit::*;

struct World {
    _etcd: Etcd,
    store: Store,
    dir: tempfile::TempDir,
    backends: BTreeMap<(String, String), Backend>,
    agent: Agent,
    _proxy: Proxy,
    url: String,
}

/// etcd, six backends (instance1-3 in v1 and v2), app1 with three slots on v1, one
/// proxy of `kind` and an agent driving it.
async fn world(kind: &str) -> World {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let dir = tempfile::tempdir().unwrap();
    let mut backends = BTreeMap::new();
    let mut endpoints = Vec::new();
    for i in 1..=3 {
        for v in ["v1", "v2"] {
            let b = Backend::start(v);
            endpoints.push((format!("instance{i}"), v.to_string(), b.addr()));
            backends.insert((format!("instance{i}"), v.to_string()), b);
        }
    }
    let listen = format!("127.0.0.1:{}", disco_harness::ports::free_port());
    let eps: Vec<(&str, &str, String)> = endpoints
        .iter()
        .map(|(i, v, a)| (i.as_str(), v.as_str(), a.clone()))
        .collect();
    let rev = seed_checked_app(
        &store,
        "app1",
        "0.0.0.0:1",
        &eps,
        &[
            ("instance1", "v1"),
            ("instance2", "v1"),
            ("instance3", "v1"),
        ],
    )
    .await;
    let fragment: PathBuf = dir.path().join(if kind == "haproxy" {
        "disco.cfg"
    } else {
        "disco.conf"
    });
    let proxy = Proxy::start(kind, &fragment);
    let agent = Agent::start(
        dir.path(),
        "lb1",
        &AgentConfig::new("lb1", dir.path(), &etcd.endpoints())
            .set("status_ttl", "5s")
            .set("max_delay", "50ms")
            .target(proxy.target(&fragment).listen("app1", &listen))
            .toml(),
    );
    applied(&store, &agent, rev).await;
    World {
        _etcd: etcd,
        store,
        dir,
        backends,
        agent,
        _proxy: proxy,
        url: format!("http://{listen}/"),
    }
}

impl World {
    /// Writes one key and waits until the agent has applied it.
    async fn put(&self, key: &str, value: &str) -> i64 {
        let rev = self.store.put(key, value, None).await.unwrap();
        let status = applied(&self.store, &self.agent, rev).await;
        assert_eq!(status.last_error, None);
        rev
    }

    async fn delete(&self, key: &str) -> i64 {
        let (rev, existed) = self.store.delete(key).await.unwrap();
        assert!(existed, "{key}");
        let status = applied(&self.store, &self.agent, rev).await;
        assert_eq!(status.last_error, None);
        rev
    }
}

/// The share of each body over the next `n` successful requests, after letting `settle`
/// requests drain whatever old workers still had in flight.
fn mix(load: &Load, n: u64) -> BTreeMap<String, f64> {
    load.wait_for_ok(20);
    let before = load.snapshot();
    let after = load.wait_for_ok(n);
    let window: LoadReport = after.since(&before);
    let total: u64 = window.by_body.values().sum();
    window
        .by_body
        .iter()
        .map(|(k, v)| (k.clone(), *v as f64 / total as f64))
        .collect()
}

async fn zero_drop(kind: &str) {
    let w = world(kind).await;
    let keep_alive = Load::start(
        &w.url,
        LoadOptions {
            connections: 6,
            keep_alive: true,
            headers: vec![],
        },
    );
    let fresh = Load::start(
        &w.url,
        LoadOptions {
            connections: 2,
            keep_alive: false,
            headers: vec![],
        },
    );
    let dark_traffic = Load::start(
        &w.url,
        LoadOptions {
            connections: 2,
            keep_alive: true,
            headers: vec![("X-Canary".into(), "1".into())],
        },
    );
    keep_alive.wait_for_ok(200);

    let mut changes = 0;
    let v2_share = |load: &Load| mix(load, 600).get("v2").copied().unwrap_or(0.0);
    // Baseline: everything on v1.
    assert_eq!(v2_share(&keep_alive), 0.0);

    for round in 0..3 {
        // Canary, slot by slot, and back.
        w.put(&route("app1", "instance1"), "v2").await;
        changes += 1;
        if round == 0 {
            let share = v2_share(&keep_alive);
            assert!(
                (0.2..=0.47).contains(&share),
                "1 of 3 slots on v2 should serve about a third, got {share}"
            );
        }
        w.put(&route("app1", "instance2"), "v2").await;
        w.put(&route("app1", "instance3"), "v2").await;
        changes += 2;
        if round == 0 {
            assert_eq!(v2_share(&keep_alive), 1.0, "all slots on v2");
        }
        for i in 1..=3 {
            w.put(&route("app1", &format!("instance{i}")), "v1").await;
            changes += 1;
        }

        // A new instance joins (endpoint, then route) and leaves (route, then endpoint).
        let extra = Backend::start("v1");
        w.put(
            &endpoint("app1", "instance4", "v1"),
            &format!(
                r#"{{"address":"{}","health_path":"/healthz"}}"#,
                extra.addr()
            ),
        )
        .await;
        w.put(&route("app1", "instance4"), "v1").await;
        keep_alive.wait_for_ok(100);
        assert!(extra.requests() > 0, "the new instance takes traffic");
        w.delete(&route("app1", "instance4")).await;
        w.delete(&endpoint("app1", "instance4", "v1")).await;
        changes += 4;

        // The dark canary: on, then off.
        w.put(&policy("app1"), r#"{"listen":"0.0.0.0:1","dark":{"version":"v2","matches":[{"header":{"name":"X-Canary","value":"1"}}]}}"#)
            .await;
        if round == 0 {
            assert_eq!(
                v2_share(&dark_traffic),
                1.0,
                "requests with the header reach only v2"
            );
            assert_eq!(v2_share(&keep_alive), 0.0, "requests without it never do");
        }
        w.put(&policy("app1"), r#"{"listen":"0.0.0.0:1"}"#).await;
        changes += 2;
        drop(extra);
    }
    assert!(changes >= 30, "{changes} changes");
    assert_eq!(
        v2_share(&dark_traffic),
        0.0,
        "dark match off: everyone on v1"
    );

    let reports = [
        ("keep-alive", keep_alive.stop()),
        ("fresh connections", fresh.stop()),
        ("dark header", dark_traffic.stop()),
    ];
    let reloads = status(&w.store, "lb1").await.unwrap().targets[kind].reloads;
    for (name, r) in &reports {
        println!(
            "{kind} {name}: sent {} ok {} failed {} retried {} by version {:?} ({changes} changes, {reloads} reloads)",
            r.sent, r.ok, r.failed, r.retried, r.by_body
        );
        assert_eq!(
            r.failed, 0,
            "{kind} {name}: failed requests: {:?}",
            r.errors
        );
        assert!(
            r.by_body.keys().all(|b| b == "v1" || b == "v2"),
            "{:?}",
            r.by_body
        );
        if kind == "haproxy" {
            assert_eq!(
                r.retried, 0,
                "{kind} {name}: HAProxy reloads must not even need retries: {:?}",
                r.errors
            );
        }
    }
    assert!(reloads >= 30, "{reloads} reloads");
    let _ = (&w.dir, &w.backends);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_zero_drop_over_30_routing_changes() {
    zero_drop("haproxy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_zero_drop_over_30_routing_changes() {
    zero_drop("nginx").await;
}

/// etcd killed under load: traffic keeps flowing on the last config, and the agent
/// converges to a change made after etcd is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_killed_mid_run_traffic_keeps_flowing() {
    let mut w = world("haproxy").await;
    let load = Load::start(&w.url, LoadOptions::default());
    load.wait_for_ok(100);
    w._etcd.kill(0);
    let during = load.snapshot();
    load.wait_for_ok(500);
    let outage = load.snapshot().since(&during);
    assert_eq!(outage.failed, 0);
    assert!(outage.ok >= 500);
    w._etcd.restart(0);
    w.put(&route("app1", "instance1"), "v2").await;
    let share = mix(&load, 600).get("v2").copied().unwrap_or(0.0);
    assert!(
        share > 0.2,
        "converged after etcd came back: v2 share {share}"
    );
    let report = load.stop();
    assert_eq!(report.failed, 0, "{:?}", report.errors);
}
