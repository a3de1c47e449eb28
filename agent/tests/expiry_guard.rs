//! Losing registrations en masse does not empty an app: three instances registered by
//! `disco-agent register` (lease TTL 2 s) are cut from etcd (a frozen TCP relay) while
//! the LB agent still reaches it. Their leases expire, and the LB agent driving a real
//! HAProxy keeps the last known endpoints (reported in its status and /healthz): traffic
//! keeps flowing with 0 failed requests. When they reach etcd again they register anew
//! and the guard lets go, without a single reload.

use std::path::Path;
use std::time::Duration;

use disco::store::Store;
use disco_harness::relay::{Mode, Relay};
use disco_harness::{wait_for_async, Backend, Etcd, Haproxy, Load, LoadOptions};
use disco_testkit::*;

fn register_config(dir: &Path, id: &str, etcd: &str, instance: &str, backend: &Backend) -> String {
    AgentConfig::new(id, dir, &[etcd.to_string()])
        .set("status_ttl", "2s")
        .etcd_raw("request_timeout", "\"2s\"")
        .tables(&format!(
            r#"[[register]]
app = "app1"
instance = "{instance}"
version = "v1"
address = "{address}"
health = "/healthz"
interval = "100ms"
timeout = "500ms"
rise = 1
fall = 2
lease_ttl = "2s"
"#,
            address = backend.addr(),
        ))
        .toml()
}

async fn registered(store: &Store) -> usize {
    let (_, kvs) = store
        .get_prefix("/disco/apps/app1/endpoints/", None)
        .await
        .unwrap();
    kvs.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_expiring_at_once_keep_the_app_serving() {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let relay = Relay::start(&etcd.endpoint());
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", disco_harness::ports::free_port());
    store
        .put(&policy("app1"), format!(r#"{{"listen":"{listen}"}}"#), None)
        .await
        .unwrap();
    for i in 1..=3 {
        store
            .put(&route("app1", &format!("instance{i}")), "v1", None)
            .await
            .unwrap();
    }
    let backends: Vec<Backend> = (0..3).map(|_| Backend::start("v1")).collect();
    let _app_hosts: Vec<Agent> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let id = format!("app{}", i + 1);
            let config = register_config(
                dir.path(),
                &id,
                &relay.url(),
                &format!("instance{}", i + 1),
                b,
            );
            Agent::start(dir.path(), &id, &config)
        })
        .collect();
    wait_for_async("three registrations", Duration::from_secs(20), || async {
        (registered(&store).await == 3).then_some(())
    })
    .await;

    let fragment = dir.path().join("disco.cfg");
    let haproxy = Haproxy::start(&fragment);
    let lb = Agent::start(
        dir.path(),
        "lb1",
        &AgentConfig::new("lb1", dir.path(), &etcd.endpoints())
            .set("status_ttl", "5s")
            .set("max_delay", "50ms")
            .target(TargetConfig::haproxy(&fragment, &haproxy))
            .toml(),
    );
    applied(&store, &lb, apps_revision(&store).await).await;
    let load = Load::start(&format!("http://{listen}/"), LoadOptions::default());
    load.wait_for_ok(300);

    // The app hosts lose etcd; their leases expire; the LB agent still sees etcd.
    relay.set(Mode::Freeze);
    wait_for_async(
        "the registrations to expire",
        Duration::from_secs(20),
        || async { (registered(&store).await == 0).then_some(()) },
    )
    .await;
    // (Deleted keys leave no revision to wait for: wait for what the status says.)
    let held = wait(&store, &lb, |s| {
        s.held
            .iter()
            .any(|h| h.starts_with("app1: keeping 3 endpoints"))
    })
    .await;
    assert!(
        held.held[0].starts_with("app1: keeping 3 endpoints"),
        "{:?}",
        held.held
    );
    load.wait_for_ok(500);
    let reloads_held = held.targets["haproxy"].reloads;

    // They reach etcd again and register anew: the guard lets go.
    relay.set(Mode::Pass);
    wait_for_async(
        "the registrations to come back",
        Duration::from_secs(30),
        || async { (registered(&store).await == 3).then_some(()) },
    )
    .await;
    let back_at = apps_revision(&store).await;
    let normal = wait(&store, &lb, |s| {
        s.applied_revision >= back_at && s.held.is_empty()
    })
    .await;
    load.wait_for_ok(300);
    let report = load.stop();
    assert_eq!(report.failed, 0, "{report:?}\n{}", lb.log_text());
    assert_eq!(
        normal.targets["haproxy"].reloads,
        reloads_held,
        "no reload when the registrations come back\n{}",
        lb.log_text()
    );
}

/// A drain (endpoints deleted while their lease lives) is not an expiry: the app's
/// endpoints go at once, even all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_removal_of_every_endpoint_goes_through() {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let dir = tempfile::tempdir().unwrap();
    let lease = store.grant_lease(30).await.unwrap();
    store
        .put(&policy("app1"), r#"{"listen":"127.0.0.1:8080"}"#, None)
        .await
        .unwrap();
    for i in 1..=2 {
        store
            .put(&route("app1", &format!("instance{i}")), "v1", None)
            .await
            .unwrap();
        store
            .put(
                &endpoint("app1", &format!("instance{i}"), "v1"),
                format!(r#"{{"address":"127.0.0.1:{}"}}"#, 9000 + i),
                Some(lease),
            )
            .await
            .unwrap();
    }
    std::fs::write(
        dir.path().join("t.j2"),
        "{% for name, app in apps|items %}{% for s in app.routed %}{{ s.instance }} {{ s.address }}\n{% endfor %}{% endfor %}",
    )
    .unwrap();
    let out = dir.path().join("out.conf");
    let lb = Agent::start(
        dir.path(),
        "lb1",
        &AgentConfig::new("lb1", dir.path(), &etcd.endpoints())
            .set("max_delay", "10ms")
            .target(TargetConfig::template(&out, &dir.path().join("t.j2")))
            .toml(),
    );
    applied(&store, &lb, apps_revision(&store).await).await;
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 2);

    let mut last = 0;
    for i in 1..=2 {
        last = store
            .delete(&endpoint("app1", &format!("instance{i}"), "v1"))
            .await
            .unwrap()
            .0;
    }
    let status = applied(&store, &lb, last).await;
    assert!(status.held.is_empty(), "{:?}", status.held);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "");
    store.revoke_lease(lease).await.unwrap();
}
