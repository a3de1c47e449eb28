//! One LB host cut from etcd (its connections closed, new ones frozen by a TCP relay)
//! while routing changes and a compaction happen elsewhere; then it reaches etcd again.
//! The agent keeps its configuration meanwhile, and afterwards converges on exactly the
//! final state (its watch resumes from a compacted revision, so it re-reads).

use disco_harness::relay::{Mode, Relay};
use disco_harness::Etcd;
use disco_testkit::*;

const TEMPLATE: &str = "{% for name, app in apps|items %}{% for s in app.slots %}{{ name }}/{{ s.instance }}={{ s.version }};{% endfor %}{% endfor %}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_cut_from_etcd_through_changes_and_a_compaction_converges_exactly() {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let relay = Relay::start(&etcd.endpoint());
    let dir = tempfile::tempdir().unwrap();
    let endpoints: Vec<(String, String, String)> = (1..=3)
        .flat_map(|i| {
            ["v1", "v2"].map(|v| {
                (
                    format!("instance{i}"),
                    v.to_string(),
                    format!("127.0.0.1:{}", 9000 + i),
                )
            })
        })
        .collect();
    let eps: Vec<(&str, &str, String)> = endpoints
        .iter()
        .map(|(i, v, a)| (i.as_str(), v.as_str(), a.clone()))
        .collect();
    seed_checked_app(
        &store,
        "app1",
        "127.0.0.1:8080",
        &eps,
        &[
            ("instance1", "v1"),
            ("instance2", "v1"),
            ("instance3", "v1"),
        ],
    )
    .await;
    std::fs::write(dir.path().join("t.j2"), TEMPLATE).unwrap();
    let out = dir.path().join("out.conf");
    let agent = Agent::start(
        dir.path(),
        "lb1",
        &AgentConfig::new("lb1", dir.path(), &[relay.url()])
            .set("status_ttl", "30s")
            .set("max_delay", "10ms")
            .etcd_raw("request_timeout", "\"1s\"")
            .target(TargetConfig::template(&out, &dir.path().join("t.j2")))
            .toml(),
    );
    applied(&store, &agent, apps_revision(&store).await).await;
    let before = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        before,
        "app1/instance1=v1;app1/instance2=v1;app1/instance3=v1;"
    );

    // Cut: open connections closed, new ones held.
    relay.set(Mode::Freeze);
    relay.cut();
    for (instance, version) in [
        ("instance1", "v2"),
        ("instance2", "v2"),
        ("instance1", "v1"),
        ("instance3", "v2"),
    ] {
        store
            .put(&route("app1", instance), version, None)
            .await
            .unwrap();
    }
    store.delete(&route("app1", "instance2")).await.unwrap();
    store
        .put(&route("app1", "instance4"), "v1", None)
        .await
        .unwrap();
    store
        .put(
            &endpoint("app1", "instance4", "v1"),
            r#"{"address":"127.0.0.1:9004"}"#,
            None,
        )
        .await
        .unwrap();
    let last = apps_revision(&store).await;
    etcd.compact(last);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        before,
        "cut off, it keeps the last configuration"
    );

    relay.set(Mode::Pass);
    let status = applied(&store, &agent, last).await;
    assert_eq!(status.last_error, None);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "app1/instance1=v1;app1/instance3=v2;app1/instance4=v1;",
        "exactly the final state\n{}",
        agent.log_text()
    );
    assert!(
        agent.log_text().contains("re-read the whole routing state"),
        "the watch resumed past a compaction\n{}",
        agent.log_text()
    );
}
