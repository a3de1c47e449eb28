//! A soak run (not CI): etcd, a real HAProxy driven by disco-agent, six backends, live
//! keep-alive traffic, a routing change every `--change-every` and a SIGKILL + restart
//! of the agent every `--restart-every`, for `--minutes`. Prints, each minute, the
//! agent's RSS and open file descriptors, the temp files beside its target file, and
//! the requests that succeeded and failed in that minute. Flat is the goal.
//!
//! Usage: soak [--minutes 30] [--change-every-ms 250] [--restart-every-s 300]
//! Run through a release build: cargo build --release -p disco-agent -p disco-bench

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::Parser;
use disco::{Key, Keyspace};
use disco_bench::proc_stats::{open_fds, rss_kib};
use disco_bench::seed::Seed;
use disco_bench::{agent, store_for, Proc};
use disco_harness::{Backend, Etcd, Haproxy, Load, LoadOptions};

/// A soak run (not CI): HAProxy driven by disco-agent under live traffic, a routing
/// change every --change-every-ms and an agent SIGKILL + restart every
/// --restart-every-s. Prints the agent's RSS, open files, temp files and the requests of
/// each minute.
#[derive(Parser, Debug)]
#[command(
    name = "soak",
    after_help = "Run through a release build: cargo build --release -p disco-agent -p disco-bench"
)]
struct Args {
    /// How long the run lasts, in minutes.
    #[arg(long, value_name = "N", default_value_t = 30)]
    minutes: u64,
    /// Milliseconds between routing changes.
    #[arg(long, value_name = "MS", default_value_t = 250)]
    change_every_ms: u64,
    /// Seconds between SIGKILLs (and restarts) of the agent.
    #[arg(long, value_name = "S", default_value_t = 300)]
    restart_every_s: u64,
}

fn rss_mib(pid: u32) -> f64 {
    rss_kib(pid).map_or(0.0, |kib| kib as f64 / 1024.0)
}

fn temp_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".staged-") || (n.contains(".disco-") && n.ends_with(".tmp")))
            .count()
    })
}

/// The agent, its stderr closed (it is killed over and over).
fn start_agent(config: &Path) -> Proc {
    agent::spawn(agent::command(config, "warn").stderr(Stdio::null()))
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
    let mut seed = Seed::new(&ks);
    seed.policy("app1", format!(r#"{{"listen":"{listen}"}}"#));
    for (i, b) in backends.iter().enumerate() {
        let instance = format!("instance{}", i / 2 + 1);
        seed.endpoint(
            "app1",
            &instance,
            b.version(),
            format!(r#"{{"address":"{}","health_path":"/healthz"}}"#, b.addr()),
        )
        .route("app1", &instance, "v1");
    }
    seed.write(&store).await;
    let fragment = dir.path().join("disco.cfg");
    let haproxy = Haproxy::start(&fragment);
    let config = dir.path().join("agent.toml");
    agent::write_config(
        &config,
        "soak",
        &dir.path().join("soak.snapshot.json"),
        &etcd,
        &format!(
            "kind = \"haproxy\"\npath = \"{f}\"\nhaproxy_config = \"{c}\"\nmaster_socket = \"{m}\"\n",
            f = fragment.display(),
            c = haproxy.main_config().display(),
            m = haproxy.master_socket().display(),
        ),
    );
    let mut agent = start_agent(&config);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let load = Load::start(&format!("http://{listen}/"), LoadOptions::default());
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
    let args = Args::parse();
    disco_bench::runtime().block_on(run(
        args.minutes,
        Duration::from_millis(args.change_every_ms),
        Duration::from_secs(args.restart_every_s),
    ));
}

#[cfg(test)]
mod tests {
    use super::Args;
    use disco_bench::parse_flags;

    /// The defaults, and the flags as bench/README.md and the module's usage line give them.
    #[test]
    fn the_documented_invocations_parse() {
        let given: Args = parse_flags(&[
            "--minutes",
            "30",
            "--change-every-ms",
            "100",
            "--restart-every-s",
            "60",
        ])
        .unwrap();
        assert_eq!(
            (given.minutes, given.change_every_ms, given.restart_every_s),
            (30, 100, 60)
        );
        let defaults: Args = parse_flags(&[]).unwrap();
        assert_eq!(
            (
                defaults.minutes,
                defaults.change_every_ms,
                defaults.restart_every_s
            ),
            (30, 250, 300)
        );
    }
}
