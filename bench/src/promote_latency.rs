//! Measures `discoctl promote --wait` end to end (process start, reads, transaction,
//! waiting until every LB agent applied it) with 1 and 10 LB agents, over many
//! promotions. The agents' targets (`--kind`): `template` (a trivial reload, so the
//! numbers are disco's own; the default), `haproxy` (each agent with its own HAProxy,
//! every change a reload) or `haproxy-runtime` (each with its own HAProxy and its
//! Runtime API socket: a promotion reloads nothing). Prints a table.
//! Usage: promote-latency [--promotions N] [--agents 1,10] [--kind template,haproxy-runtime]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use disco::Keyspace;
use disco_bench::seed::Seed;
use disco_bench::{agent, flag_value, percentile, sibling, store_for, Proc};
use disco_harness::{Etcd, Haproxy};

const SLOTS: usize = 10;

/// Measures `discoctl promote --wait` end to end with 1 and 10 LB agents, over many
/// promotions. Prints a markdown table.
#[derive(Parser, Debug)]
#[command(
    name = "promote-latency",
    after_help = "AGENT_LOG sets the agents' RUST_LOG (default warn). \
                  Needs a release build: cargo build --release -p disco-agent -p discoctl -p disco-bench"
)]
struct Args {
    /// Promotions per run (one slot each; every 10 a switch back to v1).
    #[arg(long, value_name = "N", default_value_t = 50)]
    promotions: usize,
    /// The numbers of LB agents, comma-separated: one run each.
    #[arg(
        long = "agents",
        value_name = "N,M",
        value_delimiter = ',',
        default_value = "1,10"
    )]
    agent_counts: Vec<usize>,
    /// The agents' targets, comma-separated: one run each (times each --agents).
    #[arg(long = "kind", value_name = "A,B", value_enum, value_delimiter = ',', default_values_t = [Kind::Template])]
    kinds: Vec<Kind>,
}

/// The LB agents' target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Kind {
    /// A template with a trivial reload (`true`): the numbers are disco's own.
    Template,
    /// Each agent with its own HAProxy: every change a reload.
    Haproxy,
    /// Each agent with its own HAProxy and its Runtime API socket: no reload.
    HaproxyRuntime,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&flag_value(self))
    }
}

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
fn target(kind: Kind, dir: &Path, i: usize) -> (String, Option<Haproxy>) {
    let d = dir.display();
    match kind {
        Kind::Template => (
            format!("kind = \"template\"\npath = \"{d}/lb{i}.out\"\ntemplate = \"{d}/t.j2\"\nreload = [\"true\"]\n"),
            None,
        ),
        Kind::Haproxy | Kind::HaproxyRuntime => {
            let fragment = dir.join(format!("lb{i}.cfg"));
            let h = Haproxy::start(&fragment);
            let runtime = if kind == Kind::HaproxyRuntime {
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
    }
}

/// Promotions: whole command and waiting for the agents (ms, sorted), and the reloads
/// of the HAProxy masters during them (None for template targets).
async fn run(kind: Kind, agents: usize, promotions: usize) -> (Vec<f64>, Vec<f64>, Option<u64>) {
    let etcd = Etcd::start();
    let store = store_for(&etcd);
    let ks = Keyspace::default();
    let mut seed = Seed::new(&ks);
    seed.policy("app1", r#"{"listen":"127.0.0.1:1"}"#);
    for i in 0..SLOTS {
        let instance = format!("instance{i}");
        for (v, base) in [("v1", 20000), ("v2", 21000)] {
            seed.endpoint(
                "app1",
                &instance,
                v,
                format!(r#"{{"address":"127.0.0.1:{}"}}"#, base + i),
            );
        }
        seed.route("app1", &instance, "v1");
    }
    seed.write(&store).await;
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
            agent::write_config(
                &config,
                &format!("lb{i}"),
                &dir.path().join(format!("lb{i}.json")),
                &etcd,
                &section,
            );
            agent::start(&config, &agent::log_from_env())
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
    let Args {
        promotions,
        agent_counts,
        kinds,
    } = Args::parse();
    let runtime = disco_bench::runtime();
    println!("| target | LB agents | promotions | promote --wait, whole command p50 / p90 / p99 (ms) | of which waiting for agents p50 / p99 (ms) | HAProxy reloads during the run (all masters) |");
    println!("|---|---|---|---|---|---|");
    for (kind, agents) in kinds
        .iter()
        .flat_map(|k| agent_counts.iter().map(move |a| (*k, *a)))
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

#[cfg(test)]
mod tests {
    use super::{Args, Kind};
    use disco_bench::parse_flags;

    /// Without flags, and as bench/run.sh and bench/README.md call it.
    #[test]
    fn the_documented_invocations_parse() {
        let a: Args = parse_flags(&[]).unwrap();
        assert_eq!(a.promotions, 50);
        assert_eq!(a.agent_counts, [1, 10]);
        assert_eq!(a.kinds, [Kind::Template]);
        let a: Args =
            parse_flags(&["--agents", "10", "--kind", "haproxy,haproxy-runtime"]).unwrap();
        assert_eq!(a.agent_counts, [10]);
        assert_eq!(a.kinds, [Kind::Haproxy, Kind::HaproxyRuntime]);
        let a: Args = parse_flags(&["--promotions", "50", "--agents", "1,10"]).unwrap();
        assert_eq!(a.agent_counts, [1, 10]);
        let all = "template,haproxy,haproxy-runtime";
        let a: Args =
            parse_flags(&["--agents", "10", "--kind", all, "--promotions", "100"]).unwrap();
        assert_eq!(
            (a.kinds.as_slice(), a.promotions),
            (
                [Kind::Template, Kind::Haproxy, Kind::HaproxyRuntime].as_slice(),
                100
            )
        );
        let two = "template,haproxy-runtime";
        let a: Args =
            parse_flags(&["--agents", "10", "--kind", two, "--promotions", "300"]).unwrap();
        assert_eq!(a.kinds, [Kind::Template, Kind::HaproxyRuntime]);
    }

    #[test]
    fn wrong_values_are_refused() {
        assert!(parse_flags::<Args>(&["--kind", "nginx"]).is_err());
        assert!(parse_flags::<Args>(&["--agents", "1,x"]).is_err());
    }
}
