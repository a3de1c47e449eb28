//! The registration role against real etcd, agents, HAProxy/nginx and backends: leases,
//! health checks with rise/fall, drain under load, and etcd restarts.

use std::path::Path;
use std::time::Duration;

use disco::model::HealthStatus;
use disco::store::Store;
use disco_harness::{wait_for_async, Backend, Etcd, Haproxy, Load, LoadOptions, Nginx};
use disco_testkit::*;

fn register_config(
    dir: &Path,
    id: &str,
    endpoints: &[String],
    instance: &str,
    backend: &Backend,
) -> String {
    AgentConfig::new(id, dir, endpoints)
        .set("status_ttl", "3s")
        .set("drain_timeout", "20s")
        .tables(&format!(
            r#"[[register]]
app = "app1"
instance = "{instance}"
version = "{version}"
address = "{address}"
health = "/healthz"
interval = "100ms"
timeout = "500ms"
rise = 2
fall = 2
lease_ttl = "2s"
"#,
            version = backend.version(),
            address = backend.addr(),
        ))
        .toml()
}

async fn endpoint_record(store: &Store, instance: &str) -> Option<disco::store::Kv> {
    store.get(&endpoint("app1", instance, "v1")).await.ok()?.1
}

async fn health(store: &Store, instance: &str) -> Option<HealthStatus> {
    let kv = endpoint_record(store, instance).await?;
    let e: disco::model::Endpoint = serde_json::from_slice(&kv.value).ok()?;
    e.health.map(|h| h.status)
}

/// Waits until the endpoint of `instance` is published with `state` (or absent for None).
async fn until_health(store: &Store, instance: &str, state: Option<HealthStatus>) {
    wait_for_async(
        &format!("{instance} health {state:?}"),
        Duration::from_secs(20),
        || async { (health(store, instance).await == state).then_some(()) },
    )
    .await;
}

/// A template LB agent whose file lists the routed servers. Its mass-expiry guard is
/// off: these tests follow single registrations, whose expiry the guard would hold
/// (tests/expiry_guard.rs covers it).
fn template_lb(dir: &Path, endpoints: &[String]) -> Agent {
    std::fs::write(dir.join("lb.j2"), "{% for name, app in apps|items %}{% for s in app.routed %}{{ s.instance }} {{ s.address }}\n{% endfor %}{% endfor %}").unwrap();
    Agent::start(
        dir,
        "lb-template",
        &AgentConfig::new("lb-template", dir, endpoints)
            .set("status_ttl", "3s")
            .set("max_delay", "20ms")
            .raw("mass_expiry_share", "1.0")
            .target(TargetConfig::template(
                &dir.join("lb.out"),
                &dir.join("lb.j2"),
            ))
            .toml(),
    )
}

async fn routes(store: &Store, n: usize) -> i64 {
    let mut rev = store
        .put(&policy("app1"), r#"{"listen":"0.0.0.0:1"}"#, None)
        .await
        .unwrap();
    for i in 1..=n {
        rev = store
            .put(&route("app1", &format!("instance{i}")), "v1", None)
            .await
            .unwrap();
    }
    rev
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agents_endpoints_leave_within_the_lease_ttl() {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let dir = tempfile::tempdir().unwrap();
    routes(&store, 1).await;
    let backend = Backend::start("v1");
    let lb = template_lb(dir.path(), &etcd.endpoints());
    let mut app = Agent::start(
        dir.path(),
        "app-i1",
        &register_config(
            dir.path(),
            "app-i1",
            &etcd.endpoints(),
            "instance1",
            &backend,
        ),
    );
    until_health(&store, "instance1", Some(HealthStatus::Passing)).await;
    let registered = endpoint_record(&store, "instance1").await.unwrap();
    assert_ne!(registered.lease, 0, "registered under a lease");
    let routed = applied(&store, &lb, registered.mod_revision).await;
    assert!(std::fs::read_to_string(dir.path().join("lb.out"))
        .unwrap()
        .contains(&backend.addr()));
    assert!(status(&store, "app-i1")
        .await
        .unwrap()
        .roles
        .contains(&"register".to_string()));

    app.kill();
    let killed = std::time::Instant::now();
    until_health(&store, "instance1", None).await;
    println!(
        "endpoint gone {:?} after kill -9 (lease TTL 2s)",
        killed.elapsed()
    );
    // The LB agent stops routing to it.
    let out = dir.path().join("lb.out");
    let lb_status = wait(&store, &lb, |s| {
        s.applied_revision > routed.applied_revision
    })
    .await;
    assert!(
        lb_status.warnings.iter().any(|w| w.contains("instance1")),
        "{:?}",
        lb_status.warnings
    );
    assert!(!std::fs::read_to_string(out)
        .unwrap()
        .contains(&backend.addr()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_backend_is_withdrawn_after_fall_and_back_after_rise() {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let dir = tempfile::tempdir().unwrap();
    routes(&store, 2).await;
    let backends = [Backend::start("v1"), Backend::start("v1")];
    let _apps: Vec<Agent> = (1..=2)
        .map(|i| {
            let id = format!("app-i{i}");
            Agent::start(
                dir.path(),
                &id,
                &register_config(
                    dir.path(),
                    &id,
                    &etcd.endpoints(),
                    &format!("instance{i}"),
                    &backends[i - 1],
                ),
            )
        })
        .collect();
    for i in 1..=2 {
        until_health(&store, &format!("instance{i}"), Some(HealthStatus::Passing)).await;
    }
    let fragment = dir.path().join("disco.cfg");
    let haproxy = Haproxy::start(&fragment);
    let listen = format!("127.0.0.1:{}", disco_harness::ports::free_port());
    let lb = Agent::start(
        dir.path(),
        "lb1",
        &AgentConfig::new("lb1", dir.path(), &etcd.endpoints())
            .set("status_ttl", "3s")
            .set("max_delay", "20ms")
            .target(TargetConfig::haproxy(&fragment, &haproxy).listen("app1", &listen))
            .toml(),
    );
    applied(&store, &lb, apps_revision(&store).await).await;
    let load = Load::start(&format!("http://{listen}/"), LoadOptions::default());
    load.wait_for_ok(300);
    assert!(backends[0].requests() > 0 && backends[1].requests() > 0);

    backends[0].set_healthy(false);
    until_health(&store, "instance1", Some(HealthStatus::Failing)).await;
    applied(&store, &lb, apps_revision(&store).await).await;
    load.wait_for_ok(50);
    let before = backends[0].requests();
    load.wait_for_ok(500);
    assert_eq!(
        backends[0].requests(),
        before,
        "a failing instance takes no traffic"
    );

    backends[0].set_healthy(true);
    until_health(&store, "instance1", Some(HealthStatus::Passing)).await;
    applied(&store, &lb, apps_revision(&store).await).await;
    let before = backends[0].requests();
    load.wait_for_ok(500);
    assert!(
        backends[0].requests() > before,
        "it takes traffic again after rise passes"
    );
    let report = load.stop();
    assert_eq!(report.failed, 0, "{:?}", report.errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_under_load_then_stop_the_server_fails_nothing() {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let dir = tempfile::tempdir().unwrap();
    routes(&store, 3).await;
    let backends: Vec<Backend> = (0..3).map(|_| Backend::start("v1")).collect();
    let mut apps: Vec<Agent> = (1..=3)
        .map(|i| {
            let id = format!("app-i{i}");
            Agent::start(
                dir.path(),
                &id,
                &register_config(
                    dir.path(),
                    &id,
                    &etcd.endpoints(),
                    &format!("instance{i}"),
                    &backends[i - 1],
                ),
            )
        })
        .collect();
    for i in 1..=3 {
        until_health(&store, &format!("instance{i}"), Some(HealthStatus::Passing)).await;
    }
    // One HAProxy and one nginx LB host.
    let hcfg = dir.path().join("disco.cfg");
    let ncfg = dir.path().join("disco.conf");
    let haproxy = Haproxy::start(&hcfg);
    let nginx = Nginx::start(&ncfg);
    let (hport, nport) = (
        disco_harness::ports::free_port(),
        disco_harness::ports::free_port(),
    );
    let lb_h = Agent::start(
        dir.path(),
        "lb-h",
        &AgentConfig::new("lb-h", dir.path(), &etcd.endpoints())
            .set("status_ttl", "3s")
            .set("max_delay", "20ms")
            .target(
                TargetConfig::haproxy(&hcfg, &haproxy)
                    .listen("app1", &format!("127.0.0.1:{hport}")),
            )
            .toml(),
    );
    let lb_n = Agent::start(
        dir.path(),
        "lb-n",
        &AgentConfig::new("lb-n", dir.path(), &etcd.endpoints())
            .set("status_ttl", "3s")
            .set("max_delay", "20ms")
            .target(
                TargetConfig::nginx(&ncfg, &nginx).listen("app1", &format!("127.0.0.1:{nport}")),
            )
            .toml(),
    );
    let rev = apps_revision(&store).await;
    applied(&store, &lb_h, rev).await;
    applied(&store, &lb_n, rev).await;
    let loads: Vec<(String, Load)> = [("haproxy", hport), ("nginx", nport)]
        .into_iter()
        .flat_map(|(name, port)| {
            [true, false].map(|keep_alive| {
                (
                    format!("{name} keep_alive={keep_alive}"),
                    Load::start(
                        &format!("http://127.0.0.1:{port}/"),
                        LoadOptions {
                            connections: 3,
                            keep_alive,
                            headers: vec![],
                        },
                    ),
                )
            })
        })
        .collect();
    for (_, l) in &loads {
        l.wait_for_ok(200);
    }

    // Drain instance1: its agent withdraws, waits for both LB agents, exits 0; then
    // the server process stops at once.
    assert_eq!(apps[0].stop(), Some(0), "{}", apps[0].log_text());
    assert!(
        apps[0]
            .log_text()
            .contains("every live LB agent applied the withdrawal"),
        "{}",
        apps[0].log_text()
    );
    backends[0].stop();
    for (_, l) in &loads {
        l.wait_for_ok(500);
    }
    for (name, l) in loads {
        let r = l.stop();
        println!(
            "drain {name}: sent {} ok {} failed {} retried {}",
            r.sent, r.ok, r.failed, r.retried
        );
        assert_eq!(r.failed, 0, "{name}: {:?}", r.errors);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_come_back_after_etcd_restarts_and_lost_leases() {
    let mut etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start("v1");
    let app = Agent::start(
        dir.path(),
        "app-i1",
        &register_config(
            dir.path(),
            "app-i1",
            &etcd.endpoints(),
            "instance1",
            &backend,
        ),
    );
    until_health(&store, "instance1", Some(HealthStatus::Passing)).await;

    // etcd restarted, down until the agent failed to keep its lease alive.
    etcd.kill(0);
    disco_harness::wait_for("a failed keep-alive", Duration::from_secs(30), || {
        app.log_text().contains("lease alive failed").then_some(())
    });
    etcd.restart(0);
    until_health(&store, "instance1", Some(HealthStatus::Passing)).await;
    // The lease is being kept alive again: it outlives three TTLs, still the record's.
    let kv = endpoint_record(&store, "instance1")
        .await
        .expect("registered after the restart");
    lease_kept_alive(&etcd.endpoints(), kv.lease, 3).await;
    assert_eq!(
        endpoint_record(&store, "instance1").await.map(|r| r.lease),
        Some(kv.lease)
    );

    // A lost lease (revoked here; expired in real life) is replaced without help.
    store.revoke_lease(kv.lease).await.unwrap();
    assert!(endpoint_record(&store, "instance1").await.is_none());
    until_health(&store, "instance1", Some(HealthStatus::Passing)).await;
    let again = endpoint_record(&store, "instance1").await.unwrap();
    assert_ne!(again.lease, kv.lease);
}
