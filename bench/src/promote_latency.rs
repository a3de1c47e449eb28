//! Measures `discoctl promote --wait` end to end (process start, reads, transaction,
//! waiting until every LB agent applied it) with 1 and 10 LB agents (template targets
//! with a trivial reload, so the numbers are disco's own), over many promotions.
//! Prints a table. Usage: promote-latency [--promotions N] [--agents 1,10]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use disco::store::{EtcdConfig, Store};
use disco::{Key, Keyspace};
use disco_bench::{percentile, sibling, Proc};
use disco_harness::Etcd;

const SLOTS: usize = 10;

fn discoctl(etcd: &Etcd, args: &[&str]) -> serde_json::Value {
    let out = Command::new(sibling("discoctl"))
        .args(["-o", "json"])
        .args(args)
        .args(["--timeout", "30s"])
        .env("DISCO_ETCD_ENDPOINTS", etcd.endpoints().join(","))
        .output()
        .expect("running discoctl (build it with cargo build --release -p discoctl)");
    assert!(
        out.status.success(),
        "discoctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

async fn run(agents: usize, promotions: usize) -> (Vec<f64>, Vec<f64>) {
    let etcd = Etcd::start();
    let store = Store::new(EtcdConfig {
        endpoints: etcd.endpoints(),
        ..EtcdConfig::default()
    })
    .unwrap();
    let ks = Keyspace::default();
    store
        .put(
            &ks.key(&Key::Policy { app: "app1".into() }),
            r#"{"listen":"127.0.0.1:1"}"#,
            None,
        )
        .await
        .unwrap();
    for i in 0..SLOTS {
        for (v, base) in [("v1", 20000), ("v2", 21000)] {
            let key = ks.key(&Key::Endpoint {
                app: "app1".into(),
                instance: format!("instance{i}"),
                version: v.into(),
            });
            store
                .put(
                    &key,
                    format!(r#"{{"address":"127.0.0.1:{}"}}"#, base + i),
                    None,
                )
                .await
                .unwrap();
        }
        let route = ks.key(&Key::Route {
            app: "app1".into(),
            instance: format!("instance{i}"),
        });
        store.put(&route, "v1", None).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t.j2"),
        "{% for n, a in apps|items %}{% for s in a.routed %}{{ s.instance }} {{ s.address }}\n{% endfor %}{% endfor %}",
    )
    .unwrap();
    let _agents: Vec<Proc> = (0..agents)
        .map(|i| {
            let config = dir.path().join(format!("lb{i}.toml"));
            std::fs::write(
                &config,
                format!(
                    "agent_id = \"lb{i}\"\ncache_path = \"{d}/lb{i}.json\"\n[etcd]\nendpoints = {e:?}\n[[target]]\nkind = \"template\"\npath = \"{d}/lb{i}.out\"\ntemplate = \"{d}/t.j2\"\nreload = [\"true\"]\n",
                    d = dir.path().display(),
                    e = etcd.endpoints()
                ),
            )
            .unwrap();
            Proc::kill_on_drop(
                Command::new(sibling("disco-agent"))
                    .arg("--config")
                    .arg(&config)
                    .env("RUST_LOG", "warn")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("starting disco-agent"),
            )
        })
        .collect();
    // Every agent live and current before measuring.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let live = disco::converge::lb_agents(&store, &ks).await.unwrap();
        if live.len() == agents && live.iter().all(|a| a.applied_revision > 0) {
            break;
        }
        assert!(Instant::now() < deadline, "agents did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut total = Vec::new();
    let mut waited = Vec::new();
    while total.len() < promotions {
        for _ in 0..SLOTS {
            if total.len() == promotions {
                break;
            }
            let t = Instant::now();
            let report = discoctl(&etcd, &["promote", "app1", "v2"]);
            total.push(t.elapsed().as_secs_f64() * 1000.0);
            if let Some(ms) = report["wait_ms"].as_f64() {
                waited.push(ms);
            }
            // Let the agents go idle so each promotion is measured alone.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        discoctl(&etcd, &["switch", "app1", "v1"]);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    total.sort_by(f64::total_cmp);
    waited.sort_by(f64::total_cmp);
    (total, waited)
}

fn main() {
    let mut promotions = 50;
    let mut agent_counts = vec![1, 10];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--promotions" => {
                promotions = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--promotions N")
            }
            "--agents" => {
                agent_counts = args
                    .next()
                    .expect("--agents 1,10")
                    .split(',')
                    .map(|n| n.parse().expect("a number"))
                    .collect()
            }
            _ => panic!("usage: promote-latency [--promotions N] [--agents 1,10]"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("| LB agents | promotions | promote --wait, whole command p50 / p90 / p99 (ms) | of which waiting for agents p50 / p99 (ms) |");
    println!("|---|---|---|---|");
    for agents in agent_counts {
        let (total, waited) = runtime.block_on(run(agents, promotions));
        let wait = if waited.is_empty() {
            "-".to_string()
        } else {
            format!(
                "{:.1} / {:.1}",
                percentile(&waited, 0.5),
                percentile(&waited, 0.99)
            )
        };
        println!(
            "| {agents} | {} | {:.1} / {:.1} / {:.1} | {wait} |",
            total.len(),
            percentile(&total, 0.5),
            percentile(&total, 0.9),
            percentile(&total, 0.99)
        );
    }
}
