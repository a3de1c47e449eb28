//! HAProxy targets with a `runtime_socket`: routing changes that keep the frontends and
//! backends go through the Runtime API, are read back, and never reload; structural
//! changes still reload, validated and confirmed; a Runtime API that cannot be used
//! falls back to a reload. Real etcd, HAProxy and backends; traffic runs throughout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use disco::model::AgentStatus;
use disco::store::Store;
use disco_harness::{Backend, Etcd, Haproxy, Load, LoadOptions};
use disco_testkit::*;

struct Lb {
    _etcd: Etcd,
    store: Store,
    haproxy: Haproxy,
    agent: Agent,
    dir: tempfile::TempDir,
    url: String,
    /// The backends, kept running.
    _backends: Vec<Backend>,
}

fn fragment(dir: &Path) -> PathBuf {
    dir.join("disco.cfg")
}

fn config(dir: &Path, etcd: &Etcd, haproxy: &Haproxy, socket: &Path, listen: &str) -> String {
    AgentConfig::new("lb1", dir, &etcd.endpoints())
        .set("status_ttl", "3s")
        .target(
            TargetConfig::haproxy(&fragment(dir), haproxy)
                .set("timeout", "20s")
                .set("runtime_socket", socket.display())
                .listen("app1", listen),
        )
        .toml()
}

/// etcd, HAProxy, v1 and v2 on instance1..3 (routed to v1), an agent with the given
/// runtime socket (the HAProxy's admin socket when None); waits for the first apply.
async fn start(socket: Option<PathBuf>) -> Lb {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let dir = tempfile::tempdir().unwrap();
    let haproxy = Haproxy::start(&fragment(dir.path()));
    let port = disco_harness::ports::free_port();
    let listen = format!("127.0.0.1:{port}");
    let (rev, backends) = seed_with_backends(&store, "app1", &listen, 3, &["v1", "v2"]).await;
    let socket = socket.unwrap_or_else(|| haproxy.stats_socket());
    let agent = Agent::start(
        dir.path(),
        "lb1",
        &config(dir.path(), &etcd, &haproxy, &socket, &listen),
    );
    applied(&store, &agent, rev).await;
    Lb {
        _etcd: etcd,
        store,
        haproxy,
        agent,
        dir,
        url: format!("http://{listen}/"),
        _backends: backends,
    }
}

impl Lb {
    /// Waits until the agent applied the latest change; returns its status.
    async fn applied(&self) -> AgentStatus {
        let rev = apps_revision(&self.store).await;
        applied(&self.store, &self.agent, rev).await
    }

    /// Versions answering `n` requests with `headers`.
    fn versions(&self, headers: &[(&str, &str)], n: usize) -> BTreeMap<String, usize> {
        let mut seen = BTreeMap::new();
        for _ in 0..n {
            let (status, body) = disco_harness::get(&self.url, headers).expect("request");
            assert_eq!(status, 200, "{body}");
            *seen.entry(body.trim().to_string()).or_default() += 1;
        }
        seen
    }

    /// Adds an app (a structural change) and checks that it was applied by one reload.
    async fn add_app_and_reload(&self) {
        let reloads = self.haproxy.reloads();
        let other = disco_harness::ports::free_port();
        self.put(
            &policy("app2"),
            &format!(r#"{{"listen":"127.0.0.1:{other}"}}"#),
        )
        .await;
        let s = self.applied().await;
        assert_eq!(target_status(&s).applied_by.as_deref(), Some("reload"));
        assert_eq!(self.haproxy.reloads(), reloads + 1);
    }

    async fn put(&self, key: &str, value: &str) {
        self.store.put(key, value.to_string(), None).await.unwrap();
    }
}

fn only(version: &str, seen: &BTreeMap<String, usize>) {
    assert_eq!(seen.keys().collect::<Vec<_>>(), [version], "{seen:?}");
}

fn target_status(s: &AgentStatus) -> &disco::model::TargetStatus {
    &s.targets["haproxy"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_changes_go_through_the_runtime_api_without_a_reload() {
    let lb = start(None).await;
    let first = lb.applied().await;
    // The first apply after start reloads: what HAProxy loaded was not known.
    assert_eq!(target_status(&first).applied_by.as_deref(), Some("reload"));
    let reloads = lb.haproxy.reloads();
    let runtime_before = target_status(&first).runtime_applies;
    let load = Load::start(&lb.url, LoadOptions::default());
    load.wait_for_ok(50);
    let mut steps = 0;
    let step = |s: AgentStatus, what: &str| {
        let t = target_status(&s).clone();
        assert_eq!(
            t.applied_by.as_deref(),
            Some("runtime"),
            "{what}: {t:?}\n{}",
            lb.agent.log_text()
        );
        t.runtime_applies
    };

    // Promote one slot, then all, then roll back: weights only.
    lb.put(&route("app1", "instance1"), "v2").await;
    step(lb.applied().await, "promote one");
    steps += 1;
    let seen = lb.versions(&[], 60);
    assert!(
        seen.get("v2").is_some_and(|n| *n > 0) && seen.get("v1").is_some_and(|n| *n > 0),
        "{seen:?}"
    );
    let mut txn = Vec::new();
    for i in 2..=3 {
        txn.push((route("app1", &format!("instance{i}")), "v2".to_string()));
    }
    for (k, v) in &txn {
        lb.put(k, v).await;
    }
    step(lb.applied().await, "promote all");
    steps += 2;
    only("v2", &lb.versions(&[], 30));
    for i in 1..=3 {
        lb.put(&route("app1", &format!("instance{i}")), "v1").await;
    }
    step(lb.applied().await, "rollback");
    steps += 3;
    only("v1", &lb.versions(&[], 30));

    // A dark canary: the first one with a header renders its ACL (a reload); off and
    // on again after that are Runtime API changes.
    let listen = lb.url.trim_start_matches("http://").trim_end_matches('/');
    let dark = format!(
        r#"{{"listen":"{listen}","dark":{{"version":"v2","matches":[{{"header":{{"name":"X-Canary","value":"internal"}}}}]}}}}"#
    );
    let plain = format!(r#"{{"listen":"{listen}"}}"#);
    lb.put(&policy("app1"), &dark).await;
    let s = lb.applied().await;
    assert_eq!(target_status(&s).applied_by.as_deref(), Some("reload"));
    let reloads = reloads + 1;
    only("v2", &lb.versions(&[("X-Canary", "internal")], 20));
    only("v1", &lb.versions(&[], 20));
    lb.put(&policy("app1"), &plain).await;
    step(lb.applied().await, "dark off");
    only("v1", &lb.versions(&[("X-Canary", "internal")], 20));
    lb.put(&policy("app1"), &dark).await;
    step(lb.applied().await, "dark on again");
    only("v2", &lb.versions(&[("X-Canary", "internal")], 20));
    only("v1", &lb.versions(&[], 20));
    lb.put(&policy("app1"), &plain).await;
    step(lb.applied().await, "dark off again");
    steps += 3;

    // Weights between versions of routed slots.
    lb.put(&route("app1", "instance1"), "v2").await;
    step(lb.applied().await, "promote one again");
    lb.put(
        &policy("app1"),
        &format!(r#"{{"listen":"{listen}","weights":{{"v2":0}}}}"#),
    )
    .await;
    step(lb.applied().await, "v2 at 0%");
    only("v1", &lb.versions(&[], 30));
    lb.put(&policy("app1"), &plain).await;
    step(lb.applied().await, "weights removed");
    steps += 3;

    // A new instance registers and is routed: a server added at run time.
    let new = Backend::start("v1");
    lb.put(
        &endpoint("app1", "instance4", "v1"),
        &format!(r#"{{"address":"{}","health_path":"/healthz"}}"#, new.addr()),
    )
    .await;
    lb.put(&route("app1", "instance4"), "v1").await;
    step(lb.applied().await, "instance4 added");
    lb.versions(&[], 40);
    let served = new.requests();
    assert!(served > 0, "the added server takes no traffic");
    // Reported failing: no more traffic.
    lb.put(
        &endpoint("app1", "instance4", "v1"),
        &format!(
            r#"{{"address":"{}","health_path":"/healthz","health":{{"status":"failing"}}}}"#,
            new.addr()
        ),
    )
    .await;
    step(lb.applied().await, "instance4 failing");
    let served = new.requests();
    lb.versions(&[], 40);
    assert_eq!(
        new.requests(),
        served,
        "a failing server still takes traffic"
    );
    // Removed: its route and endpoint deleted, the server deleted.
    lb.store.delete(&route("app1", "instance4")).await.unwrap();
    let (rev, _) = lb
        .store
        .delete(&endpoint("app1", "instance4", "v1"))
        .await
        .unwrap();
    // (Deleted keys leave no revision under apps/ to wait for: wait for this one.)
    let last = step(
        applied(&lb.store, &lb.agent, rev).await,
        "instance4 removed",
    );
    steps += 4;
    let state = lb.haproxy.admin("show servers state disco_app1");
    assert!(
        !state.contains("instance4"),
        "{state}\n{}",
        lb.agent.log_text()
    );

    assert_eq!(lb.haproxy.reloads(), reloads, "{}", lb.agent.log_text());
    // At least one Runtime API apply per wait above (12); writes made between two waits
    // may be applied together when the agent is slower than the writer.
    assert!(
        last - runtime_before >= 12,
        "{last} - {runtime_before} runtime applies over {steps} changes"
    );

    // A structural change (another app) reloads, validated and confirmed.
    lb.add_app_and_reload().await;

    let report = load.stop();
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(report.retried, 0, "{report:?}");
    drop(lb.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_api_that_cannot_be_reached_falls_back_to_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let lb = start(Some(dir.path().join("nobody.sock"))).await;
    let reloads = lb.haproxy.reloads();
    lb.put(&route("app1", "instance1"), "v2").await;
    let s = lb.applied().await;
    assert_eq!(target_status(&s).applied_by.as_deref(), Some("reload"));
    assert_eq!(lb.haproxy.reloads(), reloads + 1);
    let seen = lb.versions(&[], 60);
    assert!(seen.contains_key("v2"), "{seen:?}");
    let log = lb.agent.log_text();
    assert!(
        log.contains("the Runtime API change did not take; reloading instead")
            && log.contains("nobody.sock"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_goes_on_without_a_reload() {
    let mut lb = start(None).await;
    lb.put(&route("app1", "instance1"), "v2").await;
    lb.applied().await;
    let reloads = lb.haproxy.reloads();
    lb.agent.restart();
    lb.put(&route("app1", "instance2"), "v2").await;
    let s = lb.applied().await;
    assert_eq!(
        target_status(&s).applied_by.as_deref(),
        Some("runtime"),
        "{}",
        lb.agent.log_text()
    );
    assert_eq!(lb.haproxy.reloads(), reloads, "{}", lb.agent.log_text());
    let seen = lb.versions(&[], 60);
    assert!(
        seen["v2"] > seen.get("v1").copied().unwrap_or(0),
        "{seen:?}"
    );
}

/// The op state (`srv_op_state`: 0 down, 2 up) of `server` in `show servers state`.
fn op_state(haproxy: &Haproxy, backend: &str, server: &str) -> Option<u32> {
    haproxy
        .admin(&format!("show servers state {backend}"))
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(3) == Some(&server))
        .and_then(|f| f.get(5)?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_stays_down_across_a_reload() {
    let mut lb = start(None).await;
    // instance3's v1 dies; HAProxy's checks take it down (fall 2, inter 1s).
    let dead = lb._backends.remove(4);
    assert_eq!(dead.version(), "v1");
    dead.stop();
    disco_harness::wait_for(
        "instance3:v1 down",
        std::time::Duration::from_secs(15),
        || (op_state(&lb.haproxy, "disco_app1", "instance3:v1") == Some(0)).then_some(()),
    );
    lb.add_app_and_reload().await;
    // The new worker starts it down (from the saved state), not up until checked.
    assert_eq!(
        op_state(&lb.haproxy, "disco_app1", "instance3:v1"),
        Some(0),
        "{}",
        lb.haproxy.log()
    );
    for _ in 0..30 {
        let (status, body) = disco_harness::get(&lb.url, &[]).unwrap();
        assert_eq!((status, body.trim()), (200, "v1"));
    }
}

/// An agent killed after a Runtime API change and before its file and record were
/// written leaves HAProxy running something that neither says, possibly what the next
/// routing state is again. The next agent reads back before it calls anything
/// unchanged, and corrects HAProxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_what_haproxy_runs_is_read_back_before_unchanged() {
    let mut lb = start(None).await;
    lb.put(&route("app1", "instance1"), "v2").await;
    lb.applied().await;
    only_after_flush(&lb).await;
    lb.agent.kill();
    // What a killed agent's last Runtime API change would have left: instance1 back
    // on v1, with the file and the record still saying v2.
    lb.haproxy
        .admin("set server disco_app1/instance1:v1 weight 100");
    lb.haproxy
        .admin("set server disco_app1/instance1:v2 weight 0");
    lb.agent.restart();
    // (The killed agent's status outlives it for its lease: wait on HAProxy itself.)
    let weights = || {
        let running = lb.haproxy.admin("show servers state disco_app1");
        let weight = |name: &str| {
            running
                .lines()
                .find(|l| l.split_whitespace().nth(3) == Some(name))
                .and_then(|l| l.split_whitespace().nth(7).map(String::from))
                .unwrap_or_default()
        };
        (weight("instance1:v1"), weight("instance1:v2"))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while weights() != ("0".to_string(), "100".to_string()) {
        assert!(
            std::time::Instant::now() < deadline,
            "HAProxy still runs {:?} for instance1 v1/v2, not the routing state:\n{}",
            weights(),
            lb.agent.log_text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(lb
        .agent
        .log_text()
        .contains("applied through the Runtime API"));
}

/// Waits until the file of the last Runtime API change is written.
async fn only_after_flush(lb: &Lb) {
    let path = fragment(lb.dir.path());
    let v2 = "server instance1:v2";
    disco_harness::wait_for(
        "the file written",
        std::time::Duration::from_secs(10),
        || {
            let text = std::fs::read_to_string(&path).ok()?;
            text.lines()
                .find(|l| l.trim_start().starts_with(v2))
                .filter(|l| l.contains("weight 100"))
                .map(drop)
        },
    );
}
