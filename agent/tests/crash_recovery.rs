//! An agent killed (SIGKILL) at any stage of an apply, then started again: the running
//! proxy serves what the agent's status reports, and no temp file is left. The state a
//! kill leaves at each stage is made exactly (the new file staged beside the target;
//! renamed into place but not reloaded; reloaded but not yet published), with the real
//! agent, etcd, HAProxy and nginx.
//!
//! Also: an LB agent's status key exists before it installs anything, so that a change
//! committed meanwhile is waited for.

use std::path::PathBuf;
use std::time::Duration;

use disco::Keyspace;
use disco_harness::{Backend, Etcd};
use disco_testkit::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Killed while the new file was staged (or being validated) beside the target.
    Staged,
    /// Killed after the new file was renamed into place, before the reload.
    Installed,
    /// Killed after the reload, before the status was written.
    Reloaded,
}

/// The versions that `n` fresh connections to `url` reach.
fn served(url: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| match disco_harness::get(url, &[]) {
            Ok((200, body)) => body.trim().to_string(),
            other => format!("{other:?}"),
        })
        .collect()
}

async fn killed_at(kind: &str, stage: Stage) {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let dir = tempfile::tempdir().unwrap();
    let v1 = Backend::start("v1");
    let v2 = Backend::start("v2");
    let listen = format!("127.0.0.1:{}", disco_harness::ports::free_port());
    let seeded = seed_checked_app(
        &store,
        "app1",
        &listen,
        &[
            ("instance1", "v1", v1.addr()),
            ("instance1", "v2", v2.addr()),
        ],
        &[("instance1", "v1")],
    )
    .await;
    let (name, ext) = if kind == "haproxy" {
        ("disco.cfg", "cfg")
    } else {
        ("disco.conf", "conf")
    };
    let fragment: PathBuf = dir.path().join(name);
    let proxy = Proxy::start(kind, &fragment);
    let config = AgentConfig::new("lb1", dir.path(), &etcd.endpoints())
        .set(
            "cache_path",
            dir.path().join("cache/lb1.snapshot.json").display(),
        )
        .set("status_ttl", "3s")
        .set("max_delay", "50ms")
        .target(proxy.target(&fragment));
    let mut agent = Agent::start(dir.path(), "lb1", &config.toml());
    applied(&store, &agent, seeded).await;
    let url = format!("http://{listen}/");
    assert_eq!(served(&url, 5), vec!["v1"; 5]);

    // The kill, and the change the agent was applying when it died.
    agent.kill();
    let revision = store
        .put(&route("app1", "instance1"), "v2", None)
        .await
        .unwrap();
    let next = proxy.render(&store).await;
    match stage {
        Stage::Staged => {
            std::fs::write(
                dir.path().join(format!(".{name}.staged-a1b2c3.{ext}")),
                &next,
            )
            .unwrap();
        }
        Stage::Installed => {
            std::fs::write(dir.path().join(format!(".{name}.disco-d4e5f6.tmp")), &next).unwrap();
            std::fs::write(&fragment, &next).unwrap();
        }
        Stage::Reloaded => {
            std::fs::write(&fragment, &next).unwrap();
            proxy.reload();
        }
    }

    agent.restart();
    let status = applied(&store, &agent, revision).await;
    assert_eq!(status.last_error, None);
    assert_eq!(
        served(&url, 10),
        vec!["v2"; 10],
        "{kind}, killed at {stage:?}: status says revision {revision} is applied, so the proxy serves it\n{}",
        agent.log_text()
    );
    assert_eq!(std::fs::read_to_string(&fragment).unwrap(), next);
    assert_eq!(
        temp_files(dir.path()),
        Vec::<String>::new(),
        "{kind}, {stage:?}: temp files left"
    );
    if stage != Stage::Reloaded {
        assert!(agent
            .log_text()
            .contains("removed temp files left by an earlier run"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_agent_killed_while_staging() {
    killed_at("haproxy", Stage::Staged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_agent_killed_between_install_and_reload() {
    killed_at("haproxy", Stage::Installed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_agent_killed_between_reload_and_status() {
    killed_at("haproxy", Stage::Reloaded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_agent_killed_while_staging() {
    killed_at("nginx", Stage::Staged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_agent_killed_between_install_and_reload() {
    killed_at("nginx", Stage::Installed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_agent_killed_between_reload_and_status() {
    killed_at("nginx", Stage::Reloaded).await;
}

/// The status key is there (nothing applied yet) while the first apply is still being
/// validated, and a change committed meanwhile is waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_lb_agent_is_visible_before_it_installs_anything() {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let dir = tempfile::tempdir().unwrap();
    let seeded = seed_checked_app(
        &store,
        "app1",
        "127.0.0.1:8080",
        &[("instance1", "v1", "127.0.0.1:9001".into())],
        &[("instance1", "v1")],
    )
    .await;
    let template = dir.path().join("t.j2");
    std::fs::write(
        &template,
        "{% for name, app in apps|items %}{{ name }}\n{% endfor %}",
    )
    .unwrap();
    let out = dir.path().join("out.conf");
    let gate = dir.path().join("gate");
    // The check (of the staged file, before install) holds the first apply until the
    // test opens the gate.
    let check = format!(
        "while [ ! -e {} ]; do sleep 0.02; done; test -f {{staged}}",
        gate.display()
    );
    let config = AgentConfig::new("lb1", dir.path(), &etcd.endpoints())
        .set("max_delay", "10ms")
        .target(
            TargetConfig::template(&out, &template)
                .raw("check", format!("{:?}", ["/bin/sh", "-c", &check])),
        );
    let agent = Agent::start(dir.path(), "lb1", &config.toml());
    let early = wait(&store, &agent, |_| true).await;
    assert_eq!(early.applied_revision, 0, "visible, nothing applied yet");
    assert!(early.roles.contains(&"lb".to_string()));
    assert!(
        !out.exists(),
        "nothing installed before the status key existed"
    );

    let revision = store
        .put(&route("app1", "instance1"), "v1", None)
        .await
        .unwrap();
    assert!(revision > seeded);
    let waiting = {
        let store = store.clone();
        tokio::spawn(async move {
            disco::converge::wait(
                &store,
                &Keyspace::default(),
                revision,
                Duration::from_secs(30),
            )
            .await
        })
    };
    std::fs::write(&gate, b"").unwrap();
    let waited = waiting.await.unwrap().unwrap();
    assert!(waited.converged(), "{waited:?}");
    assert_eq!(
        waited.agents,
        vec!["lb1".to_string()],
        "the new agent was waited for"
    );
    assert!(out.exists());
}
