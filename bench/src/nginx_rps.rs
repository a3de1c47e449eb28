//! What the nginx balancer costs in requests per second: the same app (three v1
//! backends) through two nginx, one rendered with plain upstreams (reload mode) and one
//! in balancer mode (`balancer_socket`: each request passes the Lua access and
//! balancer phases), each driven by its own LB agent. `wrk -t2 -c50 -d<secs>s` runs
//! against each in turn, alternating, for a number of rounds; the table gives each
//! round, the medians and their ratio. Both nginx run one worker, as the harness starts
//! them; on 2 cores wrk, nginx and the backends share the CPU, as they do in every
//! benchmark here, and both modes are measured under the same conditions.
//!
//! Usage: nginx-rps [--rounds N] [--seconds S]   (default 3 rounds of 5 s)
//! Needs wrk (scripts/deps.sh) and a release build:
//! cargo build --release -p disco-agent -p disco-bench

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use disco::Keyspace;
use disco_bench::seed::Seed;
use disco_bench::{agent, percentile, store_for, Proc};
use disco_harness::{Backend, Etcd, Nginx};

/// What the nginx balancer costs in requests per second: wrk through nginx in reload
/// mode (plain upstreams) and in balancer mode (Lua), alternating, for some rounds.
/// Prints a markdown table.
#[derive(Parser, Debug)]
#[command(
    name = "nginx-rps",
    after_help = "Needs wrk (scripts/deps.sh) and a release build: \
                  cargo build --release -p disco-agent -p disco-bench"
)]
struct Args {
    /// Rounds: each runs wrk against each mode in turn.
    #[arg(long, value_name = "N", default_value_t = 3)]
    rounds: usize,
    /// Seconds of each wrk run (`wrk -d<S>s`).
    #[arg(long, value_name = "S", default_value_t = 5)]
    seconds: u64,
}

/// `wrk -t2 -c50 -d<seconds>s url`: its requests per second.
fn wrk(url: &str, seconds: u64) -> f64 {
    let out = Command::new("wrk")
        .args(["-t2", "-c50", &format!("-d{seconds}s"), url])
        .stdin(Stdio::null())
        .output()
        .expect("running wrk (scripts/deps.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let errors = text
        .lines()
        .filter(|l| l.contains("Socket errors") || l.contains("Non-2xx"))
        .collect::<Vec<_>>();
    assert!(errors.is_empty(), "wrk saw errors on {url}:\n{text}");
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's output:\n{text}"))
}

struct Lb {
    _nginx: Nginx,
    _agent: Proc,
    url: String,
}

fn lb(dir: &Path, etcd: &Etcd, name: &str, balancer: bool) -> Lb {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let fragment = dir.join("disco.conf");
    let nginx = Nginx::start(&fragment);
    let listen = format!("127.0.0.1:{}", disco_harness::ports::free_port());
    let socket = if balancer {
        format!(
            "balancer_socket = \"{}\"\n",
            dir.join("balancer.sock").display()
        )
    } else {
        String::new()
    };
    let config = dir.join("agent.toml");
    agent::write_config(
        &config,
        name,
        &dir.join("cache.json"),
        etcd,
        &format!(
            "kind = \"nginx\"\npath = \"{f}\"\nnginx_args = {a:?}\npid_file = \"{p}\"\n{socket}[target.listen]\napp1 = \"{listen}\"\n",
            f = fragment.display(),
            a = nginx.nginx_test_args(),
            p = nginx.pid_file().display(),
        ),
    );
    let agent = agent::start(&config, "warn");
    Lb {
        _nginx: nginx,
        _agent: agent,
        url: format!("http://{listen}/"),
    }
}

async fn run(rounds: usize, seconds: u64) {
    let etcd = Etcd::start();
    let store = store_for(&etcd);
    let ks = Keyspace::default();
    let backends: Vec<Backend> = (0..3).map(|_| Backend::start("v1")).collect();
    let mut seed = Seed::new(&ks);
    seed.policy("app1", r#"{"listen":"127.0.0.1:1"}"#);
    for (i, b) in backends.iter().enumerate() {
        let instance = format!("instance{}", i + 1);
        seed.endpoint(
            "app1",
            &instance,
            "v1",
            format!(r#"{{"address":"{}"}}"#, b.addr()),
        )
        .route("app1", &instance, "v1");
    }
    seed.write(&store).await;
    let dir = tempfile::tempdir().unwrap();
    disco_harness::nginx::open_to_workers(dir.path());
    let modes = [
        (
            "reload mode (plain upstream)",
            lb(dir.path(), &etcd, "reload", false),
        ),
        (
            "balancer mode (Lua)",
            lb(dir.path(), &etcd, "balancer", true),
        ),
    ];
    // Both serve app1 before anything is measured.
    let deadline = Instant::now() + Duration::from_secs(30);
    for (name, lb) in &modes {
        while !matches!(disco_harness::get(&lb.url, &[]), Ok((200, _))) {
            assert!(Instant::now() < deadline, "{name} does not serve app1");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // A warm-up of each, not counted.
    for (_, lb) in &modes {
        wrk(&lb.url, 1);
    }
    let mut rps: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for _ in 0..rounds {
        for (i, (_, lb)) in modes.iter().enumerate() {
            rps[i].push(wrk(&lb.url, seconds));
        }
    }
    println!("| nginx mode | wrk -t2 -c50, {seconds} s per round: requests/s by round | median requests/s |");
    println!("|---|---|---|");
    let mut medians = Vec::new();
    for (i, (name, _)) in modes.iter().enumerate() {
        let rounds: Vec<String> = rps[i].iter().map(|r| format!("{r:.0}")).collect();
        let mut sorted = rps[i].clone();
        sorted.sort_by(f64::total_cmp);
        let median = percentile(&sorted, 0.5);
        medians.push(median);
        println!("| {name} | {} | {median:.0} |", rounds.join(" / "));
    }
    println!(
        "\nbalancer mode / reload mode: {:.2} (a cost of {:.0} %)",
        medians[1] / medians[0],
        (1.0 - medians[1] / medians[0]) * 100.0
    );
    drop(backends);
}

fn main() {
    let Args { rounds, seconds } = Args::parse();
    disco_bench::runtime().block_on(run(rounds, seconds));
}

#[cfg(test)]
mod tests {
    use super::Args;
    use disco_bench::parse_flags;

    /// As README.md and bench/README.md call it, and the module's usage line says.
    #[test]
    fn the_documented_invocations_parse() {
        let a: Args = parse_flags(&[]).unwrap();
        assert_eq!((a.rounds, a.seconds), (3, 5));
        let a: Args = parse_flags(&["--rounds", "5", "--seconds", "10"]).unwrap();
        assert_eq!((a.rounds, a.seconds), (5, 10));
        assert!(parse_flags::<Args>(&["--seconds", "5s"]).is_err());
    }
}
