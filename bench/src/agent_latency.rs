//! Measures disco-agent's latency from an etcd put to (a) the new config installed and
//! (b) the change applied and the applied revision published (reload confirmed, or the
//! Runtime API change read back), for a template target with a trivial reload, a
//! template target with a check and a reload command, HAProxy (reload path), HAProxy
//! with a Runtime API socket, and nginx; and the agent's RSS and CPU. Prints a table.
//!
//! With one app (the default) it also measures changes at 5 per second (put → applied
//! p50 / p99) and a burst of back-to-back puts (converged after the last put). With
//! `--apps N` every app has 10 endpoints and its own frontend, and only the idle-path
//! flips are measured.
//!
//! Usage: agent-latency [--changes N] [--targets template,haproxy,nginx] [--apps N]
//!                      [--rate-changes N] [--burst N]
//! Targets: template, template-check, haproxy, haproxy-runtime, nginx, nginx-balancer.
//! Run through bench/run.sh, which builds in release mode first.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use disco::model::AgentStatus;
use disco::store::Store;
use disco::{Key, Keyspace};
use disco_bench::proc_stats::{cpu_ticks, rss_kib};
use disco_bench::seed::Seed;
use disco_bench::{
    agent, flag_value, ms, only_target, percentile, server_lines, store_for, StatusLog,
};
use disco_harness::Etcd;

/// Measures disco-agent's latency from an etcd put to the new config installed and to the
/// change applied and published, per target, and the agent's RSS and CPU. Prints
/// markdown tables.
#[derive(Parser, Debug)]
#[command(
    name = "agent-latency",
    after_help = "AGENT_LOG sets the agents' RUST_LOG (default warn). \
                  Run through bench/run.sh, which builds in release mode first."
)]
struct Args {
    /// Idle-path route flips per target, each applied before the next.
    #[arg(long, value_name = "N", default_value_t = 200)]
    changes: usize,
    /// The targets, comma-separated [default: all six with one app; haproxy,haproxy-runtime
    /// with --apps above 1].
    #[arg(long, value_name = "A,B", value_enum, value_delimiter = ',')]
    targets: Option<Vec<Target>>,
    /// Apps; above 1, every app has 10 endpoints and its own frontend, and only the
    /// idle-path flips are measured.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    apps: u32,
    /// Changes at 5 per second (put → applied p50 / p99); 0 leaves them out.
    #[arg(long, value_name = "N", default_value_t = 50)]
    rate_changes: usize,
    /// Back-to-back puts of the burst (converged after the last put); 0 leaves it out.
    #[arg(long, value_name = "N", default_value_t = 200)]
    burst: usize,
}

/// What a run measures, from [`Args`]: the targets resolved, the rate and burst runs
/// left out with many apps.
struct Config {
    changes: usize,
    targets: Vec<Target>,
    apps: u32,
    rate_changes: usize,
    burst: usize,
}

impl Args {
    fn config(self) -> Config {
        let many = self.apps > 1;
        let targets = self.targets.unwrap_or_else(|| {
            if many {
                vec![Target::Haproxy, Target::HaproxyRuntime]
            } else {
                Target::value_variants().to_vec()
            }
        });
        Config {
            changes: self.changes,
            targets,
            apps: self.apps,
            // Only the idle-path flips are measured with many apps.
            rate_changes: if many { 0 } else { self.rate_changes },
            burst: if many { 0 } else { self.burst },
        }
    }
}

/// A target kind the agent drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Target {
    /// A template with a trivial reload (`true`).
    Template,
    /// confd-compare's job: server lines, a grep check, a reload appending to a marker.
    TemplateCheck,
    /// HAProxy, every change a reload.
    Haproxy,
    /// HAProxy with its Runtime API socket.
    HaproxyRuntime,
    /// nginx, every change a reload.
    Nginx,
    /// nginx with the Lua balancer's socket.
    NginxBalancer,
}

/// Endpoints (slots) per app with `--apps N`.
const BIG_SLOTS: u32 = 10;
/// Spacing of the puts of the "changes at 5 per second" run.
const RATE_SPACING: Duration = Duration::from_millis(200);
/// Bound on waiting for any one apply.
const WAIT: Duration = Duration::from_secs(60);
/// How often the target file is looked at for "installed": often enough for a
/// millisecond's resolution, rarely enough not to take a core's share from the agent
/// on a 2-core machine.
const POLL: Duration = Duration::from_micros(500);

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

/// The proxy a target drives, kept alive (and stopped on drop) for the run.
#[allow(dead_code)] // held for its Drop
enum Proxy {
    None,
    Haproxy(disco_harness::Haproxy),
    Nginx(disco_harness::Nginx),
}

impl Proxy {
    /// Reloads the HAProxy master has made (`show proc`); None for other proxies.
    fn haproxy_reloads(&self) -> Option<u64> {
        match self {
            Proxy::Haproxy(h) => Some(h.reloads()),
            _ => None,
        }
    }
}

/// Reloads and Runtime API applies the agent reported, and the HAProxy master's
/// reloads, over a part of the run.
#[derive(Default, Clone, Copy)]
struct Applies {
    reloads: u64,
    runtime: u64,
    haproxy: Option<u64>,
}

impl Applies {
    /// The counters of the latest status (`before` if none arrived since the watch began).
    fn now(log: &StatusLog, before: &AgentStatus, proxy: &Proxy) -> Applies {
        let t = only_target(&log.latest().unwrap_or_else(|| before.clone()));
        Applies {
            reloads: t.reloads,
            runtime: t.runtime_applies,
            haproxy: proxy.haproxy_reloads(),
        }
    }

    fn since(self, before: Applies) -> Applies {
        Applies {
            reloads: self.reloads.saturating_sub(before.reloads),
            runtime: self.runtime.saturating_sub(before.runtime),
            haproxy: self
                .haproxy
                .zip(before.haproxy)
                .map(|(a, b)| a.saturating_sub(b)),
        }
    }

    /// "reloads / runtime applies (HAProxy master reloads)".
    fn cell(self) -> String {
        let master = self.haproxy.map(|n| format!(" ({n})")).unwrap_or_default();
        format!("{} / {}{master}", self.reloads, self.runtime)
    }
}

struct Rate {
    changes: usize,
    applied: Vec<f64>,
    applies: Applies,
}

struct Burst {
    puts: usize,
    converged_ms: f64,
    applies: Applies,
}

struct Row {
    target: String,
    apps: u32,
    slots: u32,
    changes: usize,
    installed: Vec<f64>,
    applied: Vec<f64>,
    put: Vec<f64>,
    check_ms: Option<f64>,
    rss_rest_kib: u64,
    cpu_percent: f64,
    /// Over the idle-path changes.
    applies: Applies,
    rate: Option<Rate>,
    burst: Option<Burst>,
}

/// Seeds `apps` apps; returns the revision of the last write and the slots per app.
/// One app: app1 with instance1..3, v1 and v2 each, health path /healthz, routed to v1.
/// More: app1..appN with BIG_SLOTS slots each on v1 (no health path: TCP checks), each
/// with its own listen port, and a v2 endpoint of app1/instance1 (the flipped slot).
async fn seed(store: &Store, ks: &Keyspace, apps: u32) -> (i64, u32) {
    let mut seed = Seed::new(ks);
    if apps == 1 {
        let listen = format!("127.0.0.1:{}", disco_harness::ports::free_port());
        seed.policy("app1", format!(r#"{{"listen":"{listen}"}}"#));
        for i in 1..=3 {
            let instance = format!("instance{i}");
            for (v, base) in [("v1", 9000), ("v2", 9100)] {
                seed.endpoint(
                    "app1",
                    &instance,
                    v,
                    format!(
                        r#"{{"address":"127.0.0.1:{}","health_path":"/healthz"}}"#,
                        base + i
                    ),
                );
            }
            seed.route("app1", &instance, "v1");
        }
        return (seed.write(store).await, 3);
    }
    for a in 1..=apps {
        let app = format!("app{a}");
        let listen = format!("127.0.0.1:{}", disco_harness::ports::free_port());
        seed.policy(&app, format!(r#"{{"listen":"{listen}"}}"#));
        for i in 1..=BIG_SLOTS {
            let instance = format!("instance{i}");
            // Closed ports on 127.0.2.1: nothing listens there (HAProxy's frontends are
            // on 127.0.0.1), so the proxies' checks are refused at once.
            let address = format!("127.0.2.1:{}", 20000 + (a - 1) * BIG_SLOTS + i);
            seed.endpoint(
                &app,
                &instance,
                "v1",
                format!(r#"{{"address":"{address}"}}"#),
            )
            .route(&app, &instance, "v1");
        }
    }
    seed.endpoint(
        "app1",
        "instance1",
        "v2",
        r#"{"address":"127.0.3.1:20000"}"#,
    );
    (seed.write(store).await, BIG_SLOTS)
}

type Stamp = (u64, i64, i64, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.mtime(), m.mtime_nsec(), m.size()))
}

/// A thread that polls the target file every 100 µs and records when it changed: its
/// content (one app), or its metadata only (many apps: a large file).
struct FileWatch {
    stop: Arc<AtomicBool>,
    changed_at: Arc<Mutex<Vec<Instant>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FileWatch {
    fn start(out: &Path, content: bool) -> FileWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let changed_at: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let thread = {
            let (stop, changed_at, out) = (stop.clone(), changed_at.clone(), out.to_path_buf());
            std::thread::spawn(move || {
                let mut last = std::fs::read(&out).unwrap_or_default();
                let mut last_stamp = stamp(&out);
                while !stop.load(Ordering::Relaxed) {
                    if content {
                        if let Ok(now) = std::fs::read(&out) {
                            if now != last {
                                changed_at.lock().unwrap().push(Instant::now());
                                last = now;
                            }
                        }
                    } else {
                        let now = stamp(&out);
                        if now.is_some() && now != last_stamp {
                            changed_at.lock().unwrap().push(Instant::now());
                            last_stamp = now;
                        }
                    }
                    std::thread::sleep(POLL);
                }
            })
        };
        FileWatch {
            stop,
            changed_at,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> usize {
        self.changed_at.lock().unwrap().len()
    }

    fn at(&self, index: usize) -> Option<Instant> {
        self.changed_at.lock().unwrap().get(index).copied()
    }
}

impl Drop for FileWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn bench_target(
    target: Target,
    changes: usize,
    apps: u32,
    rate_changes: usize,
    burst: usize,
) -> Row {
    let kind = flag_value(&target);
    let etcd = Etcd::start();
    let store = store_for(&etcd);
    let ks = Keyspace::default();
    let dir = tempfile::tempdir().unwrap();
    let (seeded, slots) = seed(&store, &ks, apps).await;

    let out: PathBuf;
    let target_toml: String;
    let proxy: Proxy;
    match target {
        Target::Template => {
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
            proxy = Proxy::None;
        }
        Target::TemplateCheck => {
            out = dir.path().join("servers.cfg");
            let template = dir.path().join("servers.j2");
            std::fs::write(&template, server_lines::TEMPLATE).unwrap();
            target_toml = server_lines::target(&out, &template, &dir.path().join("reloads"));
            proxy = Proxy::None;
        }
        Target::Haproxy | Target::HaproxyRuntime => {
            out = dir.path().join("disco.cfg");
            let h = disco_harness::Haproxy::start(&out);
            let runtime = if target == Target::HaproxyRuntime {
                format!("runtime_socket = \"{}\"\n", h.stats_socket().display())
            } else {
                String::new()
            };
            target_toml = format!(
                "kind = \"haproxy\"\npath = \"{}\"\nhaproxy_config = \"{}\"\nmaster_socket = \"{}\"\n{runtime}",
                out.display(),
                h.main_config().display(),
                h.master_socket().display()
            );
            proxy = Proxy::Haproxy(h);
        }
        Target::Nginx | Target::NginxBalancer => {
            out = dir.path().join("disco.conf");
            let n = disco_harness::Nginx::start(&out);
            let balancer = if target == Target::NginxBalancer {
                disco_harness::nginx::open_to_workers(dir.path());
                format!(
                    "balancer_socket = \"{}\"\n",
                    dir.path().join("balancer.sock").display()
                )
            } else {
                String::new()
            };
            target_toml = format!(
                "kind = \"nginx\"\npath = \"{}\"\nnginx_args = {:?}\npid_file = \"{}\"\n{balancer}",
                out.display(),
                n.nginx_test_args(),
                n.pid_file().display()
            );
            proxy = Proxy::Nginx(n);
        }
    }

    // max_delay at its default (0: no minimum interval between reloads).
    let config = dir.path().join("agent.toml");
    agent::write_config(
        &config,
        &format!("bench-{kind}"),
        &dir.path().join("cache.json"),
        &etcd,
        &target_toml,
    );
    let agent = agent::start(&config, &agent::log_from_env());
    let pid = agent.id();

    let status_key = ks.key(&Key::Agent {
        id: format!("bench-{kind}"),
    });
    // Wait until the agent has applied the seeded state.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (watch_from, seed_status) = loop {
        let (revision, kv) = store.get(&status_key).await.unwrap();
        let status =
            kv.and_then(|kv| serde_json::from_slice::<disco::model::AgentStatus>(&kv.value).ok());
        if let Some(s) = status {
            if let Some(e) = &s.last_error {
                panic!("agent error: {e}");
            }
            if s.applied_revision >= seeded {
                break (revision + 1, s);
            }
        }
        assert!(
            Instant::now() < deadline,
            "agent did not apply the seeded state within 120s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut log = StatusLog::start(&store, &status_key, watch_from);

    // Validation alone, on the file the agent rendered from the seed.
    let check_ms = match &proxy {
        Proxy::Haproxy(h) => {
            let probe = dir.path().join("probe.cfg");
            std::fs::copy(&out, &probe).unwrap();
            Some(median_command_ms(
                &[
                    "haproxy".into(),
                    "-c".into(),
                    "-f".into(),
                    h.main_config().display().to_string(),
                    "-f".into(),
                    probe.display().to_string(),
                ],
                if apps > 1 { 5 } else { 20 },
            ))
        }
        Proxy::Nginx(n) => {
            let mut argv = vec!["nginx".to_string()];
            argv.extend(n.nginx_test_args());
            argv.push("-t".into());
            Some(median_command_ms(&argv, 20))
        }
        Proxy::None => None,
    };

    // In balancer mode a routing change writes the routes file, not the config.
    let watched = if target == Target::NginxBalancer {
        dir.path().join("disco.conf.routes")
    } else {
        out.clone()
    };
    let watch = FileWatch::start(&watched, apps == 1);
    let applies_before = Applies::now(&log, &seed_status, &proxy);

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
        let seen = watch.seen();
        let version = if i % 2 == 0 { "v2" } else { "v1" };
        let t0 = Instant::now();
        let rev = store.put(&route, version, None).await.unwrap();
        put_rtt.push(ms(t0.elapsed()));
        let (done, _) = log.until(rev, WAIT).await;
        applied.push(ms(done - t0));
        if let Some(t) = watch.at(seen) {
            installed.push(ms(t.max(t0) - t0));
        }
        // Let the agent go idle again so that every change takes the idle path.
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let cpu_ticks_used = cpu_ticks(pid) - cpu_before;
    let wall_s = wall.elapsed().as_secs_f64();
    let applies = Applies::now(&log, &seed_status, &proxy).since(applies_before);
    drop(watch);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_rest_kib = rss_kib(pid).unwrap_or(0);

    // Changes at 5 per second: puts 200 ms apart whether or not the previous one was
    // applied; each put → the first status reporting its revision applied.
    let rate = if rate_changes > 0 {
        let before = Applies::now(&log, &seed_status, &proxy);
        let mut puts = Vec::new();
        let start = Instant::now();
        for i in 0..rate_changes {
            let due = start + RATE_SPACING * i as u32;
            tokio::time::sleep_until(due.into()).await;
            let version = if i % 2 == 0 { "v2" } else { "v1" };
            let t0 = Instant::now();
            let rev = store.put(&route, version, None).await.unwrap();
            puts.push((t0, rev));
        }
        let mut times = Vec::new();
        for (t0, rev) in puts {
            let (done, _) = log.until(rev, WAIT).await;
            times.push(ms(done - t0));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let applies = Applies::now(&log, &seed_status, &proxy).since(before);
        times.sort_by(f64::total_cmp);
        Some(Rate {
            changes: rate_changes,
            applied: times,
            applies,
        })
    } else {
        None
    };

    // A burst: back-to-back puts (each awaited before the next), flips of the three
    // slots in turn, so that the final state differs from the one before the burst.
    let burst = if burst > 0 && apps == 1 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = Applies::now(&log, &seed_status, &proxy);
        let mut last_put = Instant::now();
        let mut last_rev = 0;
        for k in 0..burst {
            let slot = ks.key(&Key::Route {
                app: "app1".into(),
                instance: format!("instance{}", k % 3 + 1),
            });
            let version = if (k / 3) % 2 == 0 { "v2" } else { "v1" };
            last_put = Instant::now();
            last_rev = store.put(&slot, version, None).await.unwrap();
        }
        let (done, _) = log.until(last_rev, WAIT).await;
        // Whatever was still under way ends; then count.
        tokio::time::sleep(Duration::from_secs(1)).await;
        Some(Burst {
            puts: burst,
            converged_ms: ms(done.saturating_duration_since(last_put)),
            applies: Applies::now(&log, &seed_status, &proxy).since(before),
        })
    } else {
        None
    };
    drop(agent);

    installed.sort_by(f64::total_cmp);
    applied.sort_by(f64::total_cmp);
    put_rtt.sort_by(f64::total_cmp);
    if target == Target::HaproxyRuntime && applies.haproxy != Some(0) {
        eprintln!(
            "agent-latency: UNEXPECTED: {:?} HAProxy reloads during {changes} flips with the Runtime API",
            applies.haproxy
        );
    }
    Row {
        target: kind,
        apps,
        slots,
        changes,
        installed,
        applied,
        put: put_rtt,
        check_ms,
        rss_rest_kib,
        cpu_percent: cpu_ticks_used as f64 / 100.0 / wall_s * 100.0,
        applies,
        rate,
        burst,
    }
}

fn main() {
    let Config {
        changes,
        targets,
        apps,
        rate_changes,
        burst,
    } = Args::parse().config();
    let runtime = disco_bench::runtime();
    let rows: Vec<Row> = targets
        .iter()
        .map(|t| runtime.block_on(bench_target(*t, changes, apps, rate_changes, burst)))
        .collect();
    println!(
        "| target | apps × endpoints | changes | etcd put alone p50 (ms) | put→installed p50 / p90 / p99 (ms) | put→applied+published p50 / p90 / p99 (ms) | reloads / runtime applies (HAProxy master reloads) during the changes | validation alone, median (ms) | agent RSS at rest (MiB) | agent CPU during run |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} × {} | {} | {:.2} | {:.2} / {:.2} / {:.2} | {:.2} / {:.2} / {:.2} | {} | {} | {:.1} | {:.1} % |",
            r.target,
            r.apps,
            r.slots,
            r.changes,
            percentile(&r.put, 0.5),
            percentile(&r.installed, 0.5),
            percentile(&r.installed, 0.9),
            percentile(&r.installed, 0.99),
            percentile(&r.applied, 0.5),
            percentile(&r.applied, 0.9),
            percentile(&r.applied, 0.99),
            r.applies.cell(),
            r.check_ms
                .map(|m| format!("{m:.1}"))
                .unwrap_or_else(|| "-".into()),
            r.rss_rest_kib as f64 / 1024.0,
            r.cpu_percent,
        );
    }
    if rows.iter().any(|r| r.rate.is_some() || r.burst.is_some()) {
        println!();
        println!(
            "| target | changes at 5/s | put→applied p50 / p99 (ms) | reloads / runtime applies (HAProxy master reloads) | burst: back-to-back puts | converged (applied) after the last put (ms) | reloads / runtime applies (HAProxy master reloads) during the burst |"
        );
        println!("|---|---|---|---|---|---|---|");
        for r in &rows {
            let (rc, rp, ra) = match &r.rate {
                Some(rate) => (
                    rate.changes.to_string(),
                    format!(
                        "{:.2} / {:.2}",
                        percentile(&rate.applied, 0.5),
                        percentile(&rate.applied, 0.99)
                    ),
                    rate.applies.cell(),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            let (bp, bc, ba) = match &r.burst {
                Some(b) => (
                    b.puts.to_string(),
                    format!("{:.1}", b.converged_ms),
                    b.applies.cell(),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            println!("| {} | {rc} | {rp} | {ra} | {bp} | {bc} | {ba} |", r.target);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Args, Config, Target};
    use disco_bench::parse_flags;

    fn config(flags: &[&str]) -> Config {
        parse_flags::<Args>(flags).unwrap().config()
    }

    #[test]
    fn defaults() {
        let c = config(&[]);
        assert_eq!((c.changes, c.apps), (200, 1));
        assert_eq!((c.rate_changes, c.burst), (50, 200));
        assert_eq!(
            c.targets,
            [
                Target::Template,
                Target::TemplateCheck,
                Target::Haproxy,
                Target::HaproxyRuntime,
                Target::Nginx,
                Target::NginxBalancer
            ]
        );
    }

    /// As bench/run.sh, bench/README.md and the module's usage line call it.
    #[test]
    fn the_documented_invocations_parse() {
        assert_eq!(config(&["--changes", "50"]).changes, 50);
        let five = "template,template-check,haproxy,haproxy-runtime,nginx";
        assert_eq!(config(&["--targets", five]).targets.len(), 5);
        for changes in ["20", "100"] {
            let c = config(&["--apps", "1000", "--changes", changes]);
            assert_eq!(c.apps, 1000);
            assert_eq!(c.targets, [Target::Haproxy, Target::HaproxyRuntime]);
            // Only the idle-path flips with many apps.
            assert_eq!((c.rate_changes, c.burst), (0, 0));
        }
        let c = config(&[
            "--apps",
            "1000",
            "--changes",
            "20",
            "--targets",
            "haproxy-runtime",
        ]);
        assert_eq!(c.targets, [Target::HaproxyRuntime]);
        let c = config(&["--targets", "haproxy-runtime", "--changes", "200"]);
        assert_eq!(c.targets, [Target::HaproxyRuntime]);
        assert_eq!(c.changes, 200);
        let c = config(&["--rate-changes", "10", "--burst", "0"]);
        assert_eq!((c.rate_changes, c.burst), (10, 0));
    }

    #[test]
    fn wrong_values_are_refused() {
        assert!(parse_flags::<Args>(&["--apps", "0"]).is_err());
        assert!(parse_flags::<Args>(&["--targets", "haproxy,apache"]).is_err());
        assert!(parse_flags::<Args>(&["--changes", "many"]).is_err());
    }
}
