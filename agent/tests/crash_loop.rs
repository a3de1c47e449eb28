//! An agent killed (SIGKILL) again and again during a burst of routing changes, driving
//! a real HAProxy and a real nginx: every file ever seen at the target path passes the
//! proxy's own check (`haproxy -c`, `nginx -t`), no temp file is left, and once the
//! kills stop the agent converges on exactly the final routing state, which the proxy
//! serves. With a Runtime API socket, what HAProxy runs (server weights read back)
//! equals that final state too.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use disco::store::Store;
use disco_harness::{Backend, Etcd};
use disco_testkit::*;

const KILLS: usize = 50;

/// Every distinct content seen at `path` until `stop`, polled from a thread.
fn observe(path: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<BTreeSet<String>> {
    std::thread::spawn(move || {
        let mut seen = BTreeSet::new();
        while !stop.load(Ordering::Relaxed) {
            if let Ok(text) = std::fs::read_to_string(&path) {
                seen.insert(text);
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        seen
    })
}

/// Pseudo-random numbers from a fixed seed: the same run every time.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

async fn crash_loop(mode: &str) {
    let runtime = mode == "haproxy-runtime";
    let kind = if runtime { "haproxy" } else { mode };
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let dir = tempfile::tempdir().unwrap();
    let backends: Vec<Backend> = (0..6)
        .map(|i| Backend::start(if i % 2 == 0 { "v1" } else { "v2" }))
        .collect();
    let listen = format!("127.0.0.1:{}", disco_harness::ports::free_port());
    let endpoints: Vec<(String, String, String)> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            (
                format!("instance{}", i / 2 + 1),
                b.version().to_string(),
                b.addr(),
            )
        })
        .collect();
    let eps: Vec<(&str, &str, String)> = endpoints
        .iter()
        .map(|(i, v, a)| (i.as_str(), v.as_str(), a.clone()))
        .collect();
    seed_checked_app(
        &store,
        "app1",
        &listen,
        &eps,
        &[
            ("instance1", "v1"),
            ("instance2", "v1"),
            ("instance3", "v1"),
        ],
    )
    .await;
    let fragment = dir.path().join(if kind == "haproxy" {
        "disco.cfg"
    } else {
        "disco.conf"
    });
    let proxy = Proxy::start(kind, &fragment);
    let mut target = proxy.target(&fragment);
    if let Proxy::Haproxy(h) = &proxy {
        if runtime {
            target = target.set("runtime_socket", h.stats_socket().display());
        }
    }
    let config = AgentConfig::new("lb1", dir.path(), &etcd.endpoints())
        .set("status_ttl", "3s")
        .set("max_delay", "20ms")
        .target(target);
    let mut agent = Agent::start(dir.path(), "lb1", &config.toml());
    applied(&store, &agent, apps_revision(&store).await).await;

    let stop = Arc::new(AtomicBool::new(false));
    let observer = observe(fragment.clone(), stop.clone());
    // The burst: slot flips and endpoint weights, written while the agent is killed.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let store: Store = store.clone();
        let writing = writing.clone();
        tokio::spawn(async move {
            let mut rng = Lcg(7);
            let mut n = 0u64;
            while writing.load(Ordering::Relaxed) {
                let instance = format!("instance{}", rng.next(3) + 1);
                let version = if rng.next(2) == 0 { "v1" } else { "v2" };
                store
                    .put(&route("app1", &instance), version, None)
                    .await
                    .unwrap();
                n += 1;
                tokio::time::sleep(Duration::from_millis(rng.next(15))).await;
            }
            n
        })
    };
    let mut rng = Lcg(11);
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(5 + rng.next(60))).await;
        agent.restart(); // SIGKILL, then start again
    }
    writing.store(false, Ordering::Relaxed);
    let writes = writer.await.unwrap();
    assert!(writes > 50, "the burst wrote {writes} changes");
    // The last write makes the final state differ from the first (every slot on v2,
    // the seed has them on v1), so that the file must have changed by the end even if
    // no install completed between two kills of the burst.
    for instance in ["instance1", "instance2", "instance3"] {
        store
            .put(&route("app1", instance), "v2", None)
            .await
            .unwrap();
    }

    // Converged on the final state, exactly.
    let last = apps_revision(&store).await;
    let status = applied(&store, &agent, last).await;
    assert_eq!(status.last_error, None);
    stop.store(true, Ordering::Relaxed);
    let seen = observer.join().unwrap();
    let routes = disco_routes(&store).await;
    let url = format!("http://{listen}/");
    let expected = if runtime {
        let ks = disco::Keyspace::default();
        let (revision, kvs) = store.get_prefix(&ks.apps(), None).await.unwrap();
        let snapshot =
            disco::Snapshot::from_kvs(&ks, revision, kvs.into_iter().map(|kv| (kv.key, kv.value)));
        let path = fragment.display().to_string();
        let (rendered, state) = disco::render::haproxy::haproxy_runtime(
            &snapshot,
            &disco::render::HaproxyOptions::default(),
            Some(&disco::render::haproxy::RuntimeFiles {
                pattern_dir: format!("{path}.patterns"),
                state_file: format!("{path}.state"),
            }),
            &Default::default(),
        );
        // What HAProxy runs: every server at the weight of the final state.
        let Proxy::Haproxy(h) = &proxy else {
            unreachable!()
        };
        let running = h.admin("show servers state disco_app1");
        for (name, server) in state.backends["disco_app1"].iter() {
            let line = running
                .lines()
                .find(|l| l.split_whitespace().nth(3) == Some(name.as_str()))
                .unwrap_or_else(|| panic!("{name} is not running:\n{running}"));
            let weight = line.split_whitespace().nth(7).unwrap();
            assert_eq!(
                weight,
                server.weight.to_string(),
                "{name}: running {line}\n{}",
                agent.log_text()
            );
        }
        println!(
            "{mode}: {} reloads, {} Runtime API changes of the last run",
            status.targets["haproxy"].reloads, status.targets["haproxy"].runtime_applies
        );
        rendered.text
    } else {
        proxy.render(&store).await
    };
    assert_eq!(
        std::fs::read_to_string(&fragment).unwrap(),
        expected,
        "the final state, exactly"
    );
    let routed: BTreeSet<&str> = routes.values().map(String::as_str).collect();
    for _ in 0..20 {
        let (code, body) = disco_harness::get(&url, &[]).unwrap();
        assert_eq!(code, 200);
        assert!(
            routed.contains(body.trim()),
            "{body} served, routes {routes:?}"
        );
    }

    // Every file the proxy could ever have read passes its check.
    assert!(seen.len() > 1, "the file changed by the end of the burst");
    for (i, text) in seen.iter().enumerate() {
        let copy = dir.path().join(format!(
            "seen-{i}.{}",
            if kind == "haproxy" { "cfg" } else { "conf" }
        ));
        std::fs::write(&copy, text).unwrap();
        let out = match &proxy {
            Proxy::Haproxy(h) => Command::new("haproxy")
                .args(["-c", "-q", "-f"])
                .arg(h.main_config())
                .arg("-f")
                .arg(&copy)
                .output()
                .unwrap(),
            Proxy::Nginx(n) => {
                let conf = std::fs::read_to_string(n.conf())
                    .unwrap()
                    .replace(&fragment.display().to_string(), &copy.display().to_string());
                let test_conf = n.prefix_dir().join(format!("seen-{i}.nginx.conf"));
                std::fs::write(&test_conf, conf).unwrap();
                Command::new("nginx")
                    .arg("-p")
                    .arg(n.prefix_dir())
                    .arg("-c")
                    .arg(&test_conf)
                    .arg("-t")
                    .output()
                    .unwrap()
            }
        };
        assert!(
            out.status.success(),
            "{kind}: a file seen at the target path fails the check:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let leftovers = temp_files(dir.path());
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

async fn disco_routes(store: &Store) -> std::collections::BTreeMap<String, String> {
    let (_, kvs) = store
        .get_prefix("/disco/apps/app1/routes/", None)
        .await
        .unwrap();
    kvs.into_iter()
        .map(|kv| {
            (
                kv.key.rsplit('/').next().unwrap().to_string(),
                String::from_utf8(kv.value).unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_agent_killed_50_times_in_a_burst() {
    crash_loop("haproxy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_runtime_agent_killed_50_times_in_a_burst() {
    crash_loop("haproxy-runtime").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_agent_killed_50_times_in_a_burst() {
    crash_loop("nginx").await;
}
