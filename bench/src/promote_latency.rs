//! Measures `discoctl promote --wait` end to end (process start, reads, transaction,
//! waiting until every LB agent applied it) with 1 and 10 LB agents, over many
//! promotions. The agents' targets (`--kind`): `template` (a trivial reload, so the
//! numbers are disco's own; the default), `haproxy` (each agent with its own HAProxy,
//! every change a reload) or `haproxy-runtime` (each with its own HAProxy and its
//! Runtime API socket: a promotion reloads nothing). Prints a table.
//! Usage: promote-latency [--promotions N] [--agents 1,10] [--kind template,haproxy-runtime]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use disco::{Key, Keyspace};
use disco_bench::{percentile, sibling, store_for, Proc};
use disco_harness::{Etcd, Haproxy};

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

/// The target section of LB agent `i`, and the HAProxy it drives (if any).
fn target(kind: &str, dir: &Path, i: usize) -> (String, Option<Haproxy>) {
    let d = dir.display();
    match kind {
        "template" => (
            format!("kind = \"template\"\npath = \"{d}/lb{i}.out\"\ntemplate = \"{d}/t.j2\"\nreload = [\"true\"]\n"),
            None,
        ),
        "haproxy" | "haproxy-runtime" => {
            let fragment = dir.join(format!("lb{i}.cfg"));
            let h = Haproxy::start(&fragment);
            let runtime = if kind == "haproxy-runtime" {
                format!("runtime_socket = \"{}\"\n", h.stats_socket().display())
            } else {
                String::new()
            };
            (
                format!(
                    "kind = \"haproxy\"\npath = \"{}\"\nhaproxy_config = \"{}\"\nmaster_socket = \"{}\"\n{runtime}[target.listen]\napp1 = \"127.0.0.1:{}\"\n",
                    fragment.display(),
                    h.main_config().display(),
                    h.master_socket().display(),
                    disco_harness::ports::free_port(),
                ),
                Some(h),
            )
        }
        other => panic!("unknown kind {other}"),
    }
}

/// Promotions: whole command and waiting for the agents (ms, sorted), and the reloads
/// of the HAProxy masters during them (None for template targets).
async fn run(kind: &str, agents: usize, promotions: usize) -> (Vec<f64>, Vec<f64>, Option<u64>) {
    let etcd = Etcd::start();
    let store = store_for(&etcd);
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
    let mut haproxies = Vec::new();
    let _agents: Vec<Proc> = (0..agents)
        .map(|i| {
            let (section, haproxy) = target(kind, dir.path(), i);
            haproxies.extend(haproxy);
            let config = dir.path().join(format!("lb{i}.toml"));
            std::fs::write(
                &config,
                format!(
                    "agent_id = \"lb{i}\"\ncache_path = \"{d}/lb{i}.json\"\n[etcd]\nendpoints = {e:?}\n[[target]]\n{section}",
                    d = dir.path().display(),
                    e = etcd.endpoints()
                ),
            )
            .unwrap();
            Proc::kill_on_drop(
                Command::new(sibling("disco-agent"))
                    .arg("--config")
                    .arg(&config)
                    .env(
                        "RUST_LOG",
                        std::env::var("AGENT_LOG").unwrap_or_else(|_| "warn".into()),
                    )
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
    let reloads = |hs: &[Haproxy]| hs.iter().map(Haproxy::reloads).sum::<u64>();
    let reloads_before = reloads(&haproxies);
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
    let reloaded = (!haproxies.is_empty()).then(|| reloads(&haproxies) - reloads_before);
    total.sort_by(f64::total_cmp);
    waited.sort_by(f64::total_cmp);
    (total, waited, reloaded)
}

fn main() {
    let mut promotions = 50;
    let mut agent_counts = vec![1, 10];
    let mut kinds = vec!["template".to_string()];
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
            "--kind" => {
                kinds = args
                    .next()
                    .expect("--kind template,haproxy,haproxy-runtime")
                    .split(',')
                    .map(String::from)
                    .collect()
            }
            _ => panic!(
                "usage: promote-latency [--promotions N] [--agents 1,10] [--kind template,haproxy,haproxy-runtime]"
            ),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("| target | LB agents | promotions | promote --wait, whole command p50 / p90 / p99 (ms) | of which waiting for agents p50 / p99 (ms) | HAProxy reloads during the run (all masters) |");
    println!("|---|---|---|---|---|---|");
    for (kind, agents) in kinds
        .iter()
        .flat_map(|k| agent_counts.iter().map(move |a| (k, *a)))
    {
        let (total, waited, reloaded) = runtime.block_on(run(kind, agents, promotions));
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
            "| {kind} | {agents} | {} | {:.1} / {:.1} / {:.1} | {wait} | {} |",
            total.len(),
            percentile(&total, 0.5),
            percentile(&total, 0.9),
            percentile(&total, 0.99),
            reloaded.map_or_else(|| "-".to_string(), |n| n.to_string()),
        );
    }
}
