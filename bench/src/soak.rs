//! A soak run (not CI): etcd, a real HAProxy driven by disco-agent, six backends, live
//! keep-alive traffic, a routing change every `--change-every` and a SIGKILL + restart
//! of the agent every `--restart-every`, for `--minutes`. Prints, each minute, the
//! agent's RSS and open file descriptors, the temp files beside its target file, and
//! the requests that succeeded and failed in that minute. Flat is the goal.
//!
//! Usage: soak [--minutes 30] [--change-every-ms 250] [--restart-every-s 300]
//! Run through a release build: cargo build --release -p disco-agent -p disco-bench

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use disco::{Key, Keyspace};
use disco_bench::{sibling, store_for, Proc};
use disco_harness::{Backend, Etcd, Haproxy, Load, LoadOptions};

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn temp_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".staged-") || (n.contains(".disco-") && n.ends_with(".tmp")))
            .count()
    })
}

fn start_agent(config: &Path) -> Proc {
    Proc::kill_on_drop(
        Command::new(sibling("disco-agent"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting disco-agent (cargo build --release -p disco-agent)"),
    )
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number"))
        })
        .unwrap_or(default)
}

async fn run(minutes: u64, change_every: Duration, restart_every: Duration) {
    let etcd = Etcd::start();
    let store = store_for(&etcd);
    let ks = Keyspace::default();
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", disco_harness::ports::free_port());
    let backends: Vec<Backend> = (0..6)
        .map(|i| Backend::start(if i % 2 == 0 { "v1" } else { "v2" }))
        .collect();
    store
        .put(
            &ks.key(&Key::Policy { app: "app1".into() }),
            format!(r#"{{"listen":"{listen}"}}"#),
            None,
        )
        .await
        .unwrap();
    for (i, b) in backends.iter().enumerate() {
        let instance = format!("instance{}", i / 2 + 1);
        let key = ks.key(&Key::Endpoint {
            app: "app1".into(),
            instance: instance.clone(),
            version: b.version().into(),
        });
        store
            .put(
                &key,
                format!(r#"{{"address":"{}","health_path":"/healthz"}}"#, b.addr()),
                None,
            )
            .await
            .unwrap();
        let route = ks.key(&Key::Route {
            app: "app1".into(),
            instance,
        });
        store.put(&route, "v1", None).await.unwrap();
    }
    let fragment = dir.path().join("disco.cfg");
    let haproxy = Haproxy::start(&fragment);
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "agent_id = \"soak\"\ncache_path = \"{d}/soak.snapshot.json\"\n[etcd]\nendpoints = {e:?}\n[[target]]\nkind = \"haproxy\"\npath = \"{f}\"\nhaproxy_config = \"{c}\"\nmaster_socket = \"{m}\"\n",
            d = dir.path().display(),
            e = etcd.endpoints(),
            f = fragment.display(),
            c = haproxy.main_config().display(),
            m = haproxy.master_socket().display(),
        ),
    )
    .unwrap();
    let mut agent = start_agent(&config);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let load = Load::start(
        &format!("http://{listen}/"),
        LoadOptions {
            connections: 4,
            keep_alive: true,
            headers: vec![],
        },
    );
    println!("| minute | agent RSS (MiB) | open fds | temp files | changes | restarts | requests ok | failed |");
    println!("|---|---|---|---|---|---|---|---|");
    let started = Instant::now();
    let mut last_restart = Instant::now();
    let mut seed = 1u64;
    let (mut changes, mut restarts) = (0u64, 0u64);
    let mut before = load.snapshot();
    for minute in 1..=minutes {
        let end = started + Duration::from_secs(60 * minute);
        while Instant::now() < end {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let instance = format!("instance{}", (seed >> 33) % 3 + 1);
            let version = if (seed >> 40) % 2 == 0 { "v1" } else { "v2" };
            let route = ks.key(&Key::Route {
                app: "app1".into(),
                instance,
            });
            if store.put(&route, version, None).await.is_ok() {
                changes += 1;
            }
            if last_restart.elapsed() >= restart_every {
                drop(agent); // SIGKILL
                agent = start_agent(&config);
                restarts += 1;
                last_restart = Instant::now();
            }
            tokio::time::sleep(change_every).await;
        }
        let now = load.snapshot();
        let window = now.since(&before);
        before = now;
        println!(
            "| {minute} | {:.1} | {} | {} | {changes} | {restarts} | {} | {} |",
            rss_mib(agent.id()),
            open_fds(agent.id()),
            temp_files(dir.path()),
            window.ok,
            window.failed,
        );
    }
    let report = load.stop();
    println!(
        "\ntotal: {} requests, {} failed ({:?}); {changes} changes, {restarts} agent restarts (SIGKILL)",
        report.sent, report.failed, report.errors
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("usage: soak [--minutes 30] [--change-every-ms 250] [--restart-every-s 300]");
        return;
    }
    let minutes = arg(&args, "--minutes", 30);
    let change_every = Duration::from_millis(arg(&args, "--change-every-ms", 250));
    let restart_every = Duration::from_secs(arg(&args, "--restart-every-s", 300));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(minutes, change_every, restart_every));
}
