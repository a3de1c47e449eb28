//! The agent's loop with a template target and a real etcd: convergence and applied
//! revision, coalescing of bursts, rejected records, validation failures, the retry of a
//! failed reload, etcd outages, and the snapshot cache.

use std::time::Duration;

use disco_harness::Etcd;
use disco_testkit::*;

const TEMPLATE: &str = "{% for name, app in apps|items %}app {{ name }} listen {{ app.listen }}\n{% for s in app.routed %}  server {{ s.instance }} {{ s.address }} {{ s.version }}\n{% endfor %}{% endfor %}{% for r in rejected %}rejected {{ r.key }}\n{% endfor %}";

struct Setup {
    dir: tempfile::TempDir,
    out: std::path::PathBuf,
}

fn setup(template: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.j2"), template).unwrap();
    let out = dir.path().join("out.conf");
    Setup { dir, out }
}

/// Agent `id`'s config: a template target rendering `t.j2` to `out.conf`.
fn config(s: &Setup, id: &str, endpoints: &[String]) -> AgentConfig {
    AgentConfig::new(id, s.dir.path(), endpoints)
        .set("status_ttl", "3s")
        .target(target(s))
}

fn target(s: &Setup) -> TargetConfig {
    TargetConfig::template(&s.out, &s.dir.path().join("t.j2"))
}

fn v(i: u16) -> String {
    format!("127.0.0.1:{}", 9000 + i)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_and_reports_the_applied_revision() {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let s = setup(TEMPLATE);
    let rev = seed_checked_app(
        &store,
        "app1",
        "127.0.0.1:8080",
        &[
            ("instance1", "v1", v(1)),
            ("instance2", "v1", v(2)),
            ("instance1", "v2", v(11)),
        ],
        &[("instance1", "v1"), ("instance2", "v1")],
    )
    .await;
    let agent = Agent::start(
        s.dir.path(),
        "lb1",
        &config(&s, "lb1", &etcd.endpoints()).toml(),
    );
    let status = applied(&store, &agent, rev).await;
    let text = std::fs::read_to_string(&s.out).unwrap();
    assert_eq!(
        text,
        "app app1 listen 127.0.0.1:8080\n  server instance1 127.0.0.1:9001 v1\n  server instance2 127.0.0.1:9002 v1\n"
    );
    assert_eq!(status.targets["template"].hash, disco::render::hash(&text));
    assert_eq!(status.last_error, None);

    let rev = store
        .put(&route("app1", "instance1"), "v2", None)
        .await
        .unwrap();
    let status = applied(&store, &agent, rev).await;
    let text = std::fs::read_to_string(&s.out).unwrap();
    assert!(
        text.contains("server instance1 127.0.0.1:9011 v2"),
        "{text}"
    );
    assert_eq!(status.targets["template"].hash, disco::render::hash(&text));
    assert_eq!(status.targets["template"].reloads, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_1000_writes_reloads_at_most_once_per_max_delay() {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let s = setup("{% for name, app in apps|items %}{{ name }}{% for s in app.slots %} {{ s.instance }}={{ s.version }}{% endfor %}\n{% endfor %}");
    let rev = seed_checked_app(&store, "app1", "127.0.0.1:8080", &[], &[("slot0", "v0")]).await;
    let agent = Agent::start(
        s.dir.path(),
        "lb1",
        &config(&s, "lb1", &etcd.endpoints())
            .set("max_delay", "250ms")
            .toml(),
    );
    let before = applied(&store, &agent, rev).await.targets["template"].reloads;

    // 1000 writes from 8 concurrent writers, within about a second.
    let started = std::time::Instant::now();
    let mut writers = Vec::new();
    for w in 0..8 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let mut last = 0;
            for i in 0..125 {
                let slot = format!("slot{}", (w * 125 + i) % 50);
                last = store
                    .put(&route("app1", &slot), format!("v{i}"), None)
                    .await
                    .unwrap();
            }
            last
        }));
    }
    let mut last = 0;
    for w in writers {
        last = last.max(w.await.unwrap());
    }
    let burst = started.elapsed();
    let status = applied(&store, &agent, last).await;
    let reloads = status.targets["template"].reloads - before;

    // The file matches the final state exactly.
    let (revision, kvs) = store
        .get_prefix(&disco::Keyspace::default().apps(), None)
        .await
        .unwrap();
    let snapshot = disco::Snapshot::from_kvs(
        &disco::Keyspace::default(),
        revision,
        kvs.into_iter().map(|kv| (kv.key, kv.value)),
    );
    let expected = disco::render::template(
        &snapshot,
        &std::fs::read_to_string(s.dir.path().join("t.j2")).unwrap(),
    )
    .unwrap();
    assert_eq!(std::fs::read_to_string(&s.out).unwrap(), expected.text);
    println!("1000 writes in {burst:?} -> {reloads} applies");
    // At most one reload per max_delay (250ms) during the burst, plus the first and last.
    let bound = 2 + (burst.as_millis() / 250) as u64 + 1;
    assert!(
        reloads <= bound,
        "{reloads} applies for a burst of {burst:?} (bound {bound})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_record_is_listed_and_the_rest_still_renders() {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let s = setup(TEMPLATE);
    seed_checked_app(
        &store,
        "app1",
        "127.0.0.1:8080",
        &[("instance1", "v1", v(1))],
        &[("instance1", "v1")],
    )
    .await;
    let bad_key = endpoint("app1", "instance2", "v1");
    store
        .put(
            &bad_key,
            r#"{"address":"127.0.0.1:9002\n  server evil 6.6.6.6:80"}"#,
            None,
        )
        .await
        .unwrap();
    let rev = store
        .put(&route("app1", "instance2"), "v1", None)
        .await
        .unwrap();
    let agent = Agent::start(
        s.dir.path(),
        "lb1",
        &config(&s, "lb1", &etcd.endpoints()).toml(),
    );
    let status = applied(&store, &agent, rev).await;
    assert_eq!(status.rejected.len(), 1);
    assert_eq!(status.rejected[0].key, bad_key);
    assert!(
        status.rejected[0].reason.contains("control character"),
        "{:?}",
        status.rejected
    );
    assert!(
        status.warnings.iter().any(|w| w.contains("instance2")),
        "{:?}",
        status.warnings
    );
    let text = std::fs::read_to_string(&s.out).unwrap();
    assert!(text.contains("server instance1 127.0.0.1:9001"), "{text}");
    assert!(
        !text.contains("evil") && !text.contains("6.6.6.6"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_that_fails_validation_leaves_the_previous_one_serving() {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    // Valid HAProxy unless an app named "broken" exists.
    let s = setup(
        "defaults d\n  mode http\n  timeout connect 1s\n  timeout client 1s\n  timeout server 1s\n{% for name, app in apps|items %}listen {{ name }}\n  bind {{ app.listen }}\n{% if name == 'broken' %}  this-is-not-haproxy\n{% endif %}{% endfor %}",
    );
    let rev = seed_checked_app(&store, "app1", "127.0.0.1:18080", &[], &[]).await;
    let check = r#"["haproxy", "-c", "-f", "{staged}"]"#;
    let agent = Agent::start(
        s.dir.path(),
        "lb1",
        &AgentConfig::new("lb1", s.dir.path(), &etcd.endpoints())
            .set("status_ttl", "3s")
            .target(target(&s).raw("check", check))
            .toml(),
    );
    applied(&store, &agent, rev).await;
    let good = std::fs::read_to_string(&s.out).unwrap();

    let broken = store
        .put(&policy("broken"), r#"{"listen":"127.0.0.1:18081"}"#, None)
        .await
        .unwrap();
    let status = wait(&store, &agent, |st| st.last_error.is_some()).await;
    let error = status.last_error.unwrap();
    assert!(
        error.contains("validation failed") && error.contains("this-is-not-haproxy"),
        "{error}"
    );
    assert!(status.applied_revision < broken);
    assert_eq!(
        std::fs::read_to_string(&s.out).unwrap(),
        good,
        "the previous file keeps serving"
    );
    let leftovers: Vec<_> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("staged"))
        .collect();
    assert!(leftovers.is_empty(), "staged files are cleaned up");

    let (fixed, _) = store.delete(&policy("broken")).await.unwrap();
    let status = applied(&store, &agent, fixed).await;
    assert_eq!(status.last_error, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reload_is_retried_without_waiting_for_a_change() {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let s = setup(TEMPLATE);
    // The reload command fails while the file `refuse` exists (no shell: `test`).
    let refuse = s.dir.path().join("refuse");
    std::fs::write(&refuse, "").unwrap();
    let reload = format!(r#"["test", "!", "-e", "{}"]"#, refuse.display());
    let rev = seed_checked_app(
        &store,
        "app1",
        "127.0.0.1:18080",
        &[("i1", "v1", v(1))],
        &[("i1", "v1")],
    )
    .await;
    let agent = Agent::start(
        s.dir.path(),
        "lb1",
        &AgentConfig::new("lb1", s.dir.path(), &etcd.endpoints())
            .set("status_ttl", "3s")
            .target(target(&s).raw("reload", &reload))
            .toml(),
    );
    let status = wait(&store, &agent, |st| st.last_error.is_some()).await;
    assert!(status.applied_revision < rev, "{status:?}");
    assert!(status.last_error.unwrap().contains("reload"));

    // The cause goes away; nothing is written to etcd, and the agent gets there alone.
    std::fs::remove_file(&refuse).unwrap();
    let status = applied(&store, &agent, rev).await;
    assert_eq!(status.last_error, None);
    assert!(std::fs::read_to_string(&s.out)
        .unwrap()
        .contains("server i1 127.0.0.1:9001 v1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_outage_keeps_the_config_and_converges_after() {
    let mut etcd = Etcd::cluster(3);
    let endpoints = etcd.endpoints();
    let writer = store(endpoints[1..].to_vec());
    let s = setup(TEMPLATE);
    let rev = seed_checked_app(
        &writer,
        "app1",
        "127.0.0.1:8080",
        &[("instance1", "v1", v(1)), ("instance1", "v2", v(11))],
        &[("instance1", "v1")],
    )
    .await;
    // The agent knows only member 0.
    let agent = Agent::start(
        s.dir.path(),
        "lb1",
        &config(&s, "lb1", &endpoints[..1]).toml(),
    );
    applied(&writer, &agent, rev).await;
    let before = std::fs::read_to_string(&s.out).unwrap();

    etcd.kill(0);
    let changed = writer
        .put(&route("app1", "instance1"), "v2", None)
        .await
        .unwrap();
    // The agent has seen etcd go (a watch that merely had not delivered yet would prove
    // nothing); what runs is still the last config.
    disco_harness::wait_for(
        "the agent to lose its watch",
        Duration::from_secs(30),
        || {
            agent
                .log_text()
                .contains("etcd watch disconnected")
                .then_some(())
        },
    );
    assert_eq!(
        std::fs::read_to_string(&s.out).unwrap(),
        before,
        "the last config stays while etcd is away"
    );
    etcd.restart(0);
    applied(&writer, &agent, changed).await;
    assert!(std::fs::read_to_string(&s.out)
        .unwrap()
        .contains("instance1 127.0.0.1:9011 v2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_while_etcd_is_down_serves_the_cached_snapshot() {
    let mut etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let s = setup(TEMPLATE);
    let rev = seed_checked_app(
        &store,
        "app1",
        "127.0.0.1:8080",
        &[("instance1", "v1", v(1))],
        &[("instance1", "v1")],
    )
    .await;
    let mut agent = Agent::start(
        s.dir.path(),
        "lb1",
        &config(&s, "lb1", &etcd.endpoints()).toml(),
    );
    applied(&store, &agent, rev).await;
    let served = std::fs::read_to_string(&s.out).unwrap();
    assert_eq!(agent.stop(), Some(0));
    assert!(
        status(&store, "lb1").await.is_none(),
        "a stopped agent withdraws its status"
    );

    etcd.kill(0);
    std::fs::remove_file(&s.out).unwrap();
    agent.restart();
    let out = s.out.clone();
    disco_harness::wait_for(
        "the cached config to be rendered",
        Duration::from_secs(20),
        || std::fs::read_to_string(&out).ok(),
    );
    assert_eq!(std::fs::read_to_string(&s.out).unwrap(), served);
    let log = agent.log_text();
    assert!(log.contains("serving the cached snapshot"));
    assert!(
        !log.contains('\x1b'),
        "a log written to a file carries no colour codes:\n{log}"
    );
}
