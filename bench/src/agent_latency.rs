//! Measures disco-agent's latency from an etcd put to (a) the new config installed and
//! (b) the reload confirmed and the applied revision published, for a template target
//! with a trivial reload, HAProxy and nginx; and the agent's RSS and CPU. Prints a table.
//!
//! Usage: agent-latency [--changes N] [--targets template,haproxy,nginx]
//! Run through bench/run.sh, which builds in release mode first.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use disco::store::{EtcdConfig, Store, WatchSettings, WatchUpdate};
use disco::{Key, Keyspace};
use disco_bench::{percentile, sibling, Proc};
use disco_harness::Etcd;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 1..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// Times a command `runs` times; returns the median in ms.
fn median_command_ms(argv: &[String], runs: usize) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            let out = Command::new(&argv[0])
                .args(&argv[1..])
                .output()
                .expect("running check");
            assert!(
                out.status.success(),
                "{argv:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    percentile(&times, 0.5)
}

/// Waits for the agent's status to report `target` applied; returns when it did.
async fn until_applied(
    updates: &mut tokio::sync::mpsc::Receiver<WatchUpdate>,
    target: i64,
) -> Instant {
    loop {
        match tokio::time::timeout(Duration::from_secs(60), updates.recv()).await {
            Ok(Some(WatchUpdate::Changes { changes, .. })) => {
                for c in changes {
                    if let disco::Change::Put { value, .. } = c {
                        let s: disco::model::AgentStatus = serde_json::from_slice(&value).unwrap();
                        if let Some(e) = &s.last_error {
                            panic!("agent error: {e}");
                        }
                        if s.applied_revision >= target {
                            return Instant::now();
                        }
                    }
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => panic!("no agent status within 60s"),
        }
    }
}

/// The proxy a target drives, kept alive (and stopped on drop) for the run.
#[allow(dead_code)] // held for its Drop
enum Proxy {
    None,
    Haproxy(disco_harness::Haproxy),
    Nginx(disco_harness::Nginx),
}

struct Row {
    target: String,
    changes: usize,
    installed: Vec<f64>,
    applied: Vec<f64>,
    put: Vec<f64>,
    check_ms: Option<f64>,
    rss_rest_kib: u64,
    cpu_percent: f64,
}

async fn bench_target(kind: &str, changes: usize) -> Row {
    let etcd = Etcd::start();
    let store = Store::new(EtcdConfig {
        endpoints: etcd.endpoints(),
        ..EtcdConfig::default()
    })
    .unwrap();
    let ks = Keyspace::default();
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", disco_harness::ports::free_port());
    store
        .put(
            &ks.key(&Key::Policy { app: "app1".into() }),
            format!(r#"{{"listen":"{listen}"}}"#),
            None,
        )
        .await
        .unwrap();
    let mut seeded = 0;
    for i in 1..=3 {
        for (v, base) in [("v1", 9000), ("v2", 9100)] {
            let key = ks.key(&Key::Endpoint {
                app: "app1".into(),
                instance: format!("instance{i}"),
                version: v.into(),
            });
            store
                .put(
                    &key,
                    format!(
                        r#"{{"address":"127.0.0.1:{}","health_path":"/healthz"}}"#,
                        base + i
                    ),
                    None,
                )
                .await
                .unwrap();
        }
        let route = ks.key(&Key::Route {
            app: "app1".into(),
            instance: format!("instance{i}"),
        });
        seeded = store.put(&route, "v1", None).await.unwrap();
    }

    let out: PathBuf;
    let target_toml: String;
    let check_ms: Option<f64>;
    let _proxy: Proxy;
    match kind {
        "template" => {
            out = dir.path().join("out.conf");
            std::fs::write(
                dir.path().join("t.j2"),
                "{% for name, app in apps|items %}{% for s in app.routed %}{{ s.instance }} {{ s.address }}\n{% endfor %}{% endfor %}",
            )
            .unwrap();
            target_toml = format!(
                "kind = \"template\"\npath = \"{}\"\ntemplate = \"{}/t.j2\"\nreload = [\"true\"]\n",
                out.display(),
                dir.path().display()
            );
            check_ms = None;
            _proxy = Proxy::None;
        }
        "haproxy" => {
            out = dir.path().join("disco.cfg");
            let h = disco_harness::Haproxy::start(&out);
            target_toml = format!(
                "kind = \"haproxy\"\npath = \"{}\"\nhaproxy_config = \"{}\"\nmaster_socket = \"{}\"\n",
                out.display(),
                h.main_config().display(),
                h.master_socket().display()
            );
            let rendered = std::fs::read_to_string(&out).unwrap_or_default();
            let probe = dir.path().join("probe.cfg");
            std::fs::write(&probe, rendered).unwrap();
            check_ms = Some(median_command_ms(
                &[
                    "haproxy".into(),
                    "-c".into(),
                    "-f".into(),
                    h.main_config().display().to_string(),
                    "-f".into(),
                    probe.display().to_string(),
                ],
                20,
            ));
            _proxy = Proxy::Haproxy(h);
        }
        "nginx" => {
            out = dir.path().join("disco.conf");
            let n = disco_harness::Nginx::start(&out);
            let args = n.nginx_test_args();
            target_toml = format!(
                "kind = \"nginx\"\npath = \"{}\"\nnginx_args = {:?}\npid_file = \"{}\"\n",
                out.display(),
                args,
                n.pid_file().display()
            );
            let mut argv = vec!["nginx".to_string()];
            argv.extend(args);
            argv.push("-t".into());
            check_ms = Some(median_command_ms(&argv, 20));
            _proxy = Proxy::Nginx(n);
        }
        other => panic!("unknown target {other}"),
    }

    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "agent_id = \"bench-{kind}\"\ncache_path = \"{}/cache.json\"\nmax_delay = \"50ms\"\n[etcd]\nendpoints = {:?}\n[[target]]\n{target_toml}",
            dir.path().display(),
            etcd.endpoints()
        ),
    )
    .unwrap();
    let agent = Proc::kill_on_drop(
        Command::new(sibling("disco-agent"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting disco-agent (build it with cargo build --release -p disco-agent)"),
    );
    let pid = agent.id();

    let status_key = ks.key(&Key::Agent {
        id: format!("bench-{kind}"),
    });
    // Wait until the agent has applied the seeded state.
    let deadline = Instant::now() + Duration::from_secs(60);
    let watch_from = loop {
        let (revision, kv) = store.get(&status_key).await.unwrap();
        let status =
            kv.and_then(|kv| serde_json::from_slice::<disco::model::AgentStatus>(&kv.value).ok());
        if let Some(s) = status {
            if let Some(e) = &s.last_error {
                panic!("agent error: {e}");
            }
            if s.applied_revision >= seeded {
                break revision + 1;
            }
        }
        assert!(
            Instant::now() < deadline,
            "agent did not apply the seeded state within 60s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut status_updates = store.watch(&status_key, watch_from, WatchSettings::default());

    // A thread watches the target file and records when its content changes.
    let stop = Arc::new(AtomicBool::new(false));
    let changed_at: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let watcher = {
        let (stop, changed_at, out) = (stop.clone(), changed_at.clone(), out.clone());
        std::thread::spawn(move || {
            let mut last = std::fs::read(&out).unwrap_or_default();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(now) = std::fs::read(&out) {
                    if now != last {
                        changed_at.lock().unwrap().push(Instant::now());
                        last = now;
                    }
                }
                std::thread::sleep(Duration::from_micros(100));
            }
        })
    };

    let cpu_before = cpu_ticks(pid);
    let wall = Instant::now();
    let route = ks.key(&Key::Route {
        app: "app1".into(),
        instance: "instance1".into(),
    });
    let mut installed = Vec::new();
    let mut applied = Vec::new();
    let mut put_rtt = Vec::new();
    for i in 0..changes {
        let seen = changed_at.lock().unwrap().len();
        let version = if i % 2 == 0 { "v2" } else { "v1" };
        let t0 = Instant::now();
        let rev = store.put(&route, version, None).await.unwrap();
        put_rtt.push(t0.elapsed().as_secs_f64() * 1000.0);
        let done = until_applied(&mut status_updates, rev).await;
        applied.push((done - t0).as_secs_f64() * 1000.0);
        let t_installed = changed_at.lock().unwrap().get(seen).copied();
        if let Some(t) = t_installed {
            installed.push((t.max(t0) - t0).as_secs_f64() * 1000.0);
        }
        // Let the agent go idle again so that every change takes the idle path.
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let cpu_ticks_used = cpu_ticks(pid) - cpu_before;
    let wall_s = wall.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_rest_kib = rss_kib(pid);
    installed.sort_by(f64::total_cmp);
    applied.sort_by(f64::total_cmp);
    put_rtt.sort_by(f64::total_cmp);
    Row {
        target: kind.to_string(),
        changes,
        installed,
        applied,
        put: put_rtt,
        check_ms,
        rss_rest_kib,
        cpu_percent: cpu_ticks_used as f64 / 100.0 / wall_s * 100.0,
    }
}

fn main() {
    let mut changes = 200;
    let mut targets = vec!["template".to_string(), "haproxy".into(), "nginx".into()];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--changes" => {
                changes = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--changes N")
            }
            "--targets" => {
                targets = args
                    .next()
                    .expect("--targets a,b")
                    .split(',')
                    .map(String::from)
                    .collect()
            }
            _ => panic!("usage: agent-latency [--changes N] [--targets template,haproxy,nginx]"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rows: Vec<Row> = targets
        .iter()
        .map(|t| runtime.block_on(bench_target(t, changes)))
        .collect();
    println!(
        "| target | changes | etcd put alone p50 (ms) | put→installed p50 / p90 / p99 (ms) | put→reloaded+published p50 / p90 / p99 (ms) | validation alone, median (ms) | agent RSS at rest (MiB) | agent CPU during run |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {:.2} | {:.2} / {:.2} / {:.2} | {:.2} / {:.2} / {:.2} | {} | {:.1} | {:.1} % |",
            r.target,
            r.changes,
            percentile(&r.put, 0.5),
            percentile(&r.installed, 0.5),
            percentile(&r.installed, 0.9),
            percentile(&r.installed, 0.99),
            percentile(&r.applied, 0.5),
            percentile(&r.applied, 0.9),
            percentile(&r.applied, 0.99),
            r.check_ms
                .map(|m| format!("{m:.1}"))
                .unwrap_or_else(|| "-".into()),
            r.rss_rest_kib as f64 / 1024.0,
            r.cpu_percent,
        );
    }
}
