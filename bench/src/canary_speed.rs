//! How fast a failing canary is stopped ("faster to safety"): etcd, HAProxy with its
//! LB agent, app1 on three slots (each with a v1 and a v2 backend, v2 answering a
//! share of 500s) and keep-alive load through HAProxy; each round runs `discoctl canary
//! app1 v2 --steps 1,all --interval 60s` (one slot of three on v2) until its analysis
//! rolls it back, and counts the public 500s the clients got meanwhile (v1 never
//! fails: every 500 is v2's, from its first request until every LB host is back on
//! v1). The modes (`--modes`) differ only in how the agent reads and publishes the
//! statistics the canary judges; every mode has its own etcd, HAProxy, agent and
//! backends, started once, and the rounds take the modes in turn, so that they share
//! the machine's state evenly. The agents publish their regular statistics every
//! second; round n of N starts (n - 0.5)/N s after the load's warm-up, so that the
//! rounds start at points spread evenly over that cycle (left alone, every round
//! would start at about the same point of it, a fixed time after the last rollback,
//! which came with one of those publishes). Prints a table of every round and one of
//! the modes:
//! median requests/s, median and max public 500s, median ms from the step's `applied`
//! event to `rolled_back`, and the ratio of the median public 500s to the baseline's
//! (`stats-interval`).
//!
//! Usage: canary-speed [--rounds 5] [--connections 8] [--error-rate 0.2]
//!                     [--modes canary-stats,stats-interval,show-stat]
//! Run through a release build: cargo build --release -p disco-agent -p discoctl -p disco-bench

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use clap::{Parser, ValueEnum};
use disco::store::Store;
use disco::{Key, Keyspace};
use disco_bench::seed::Seed;
use disco_bench::{agent, flag_value, percentile, sibling, store_for, Proc, StatusLog};
use disco_harness::{Backend, Etcd, Haproxy, Load, LoadOptions, LoadReport};

/// How fast a canary of a v2 answering 500s is rolled back, by how the LB agent
/// reads and publishes statistics: public 500s and time to the rollback per round.
#[derive(Parser, Debug)]
#[command(
    name = "canary-speed",
    after_help = "AGENT_LOG sets the agents' RUST_LOG (default warn). \
                  Needs a release build: cargo build --release -p disco-agent -p discoctl -p disco-bench"
)]
struct Args {
    /// Canaries per mode.
    #[arg(long, value_name = "N", default_value_t = 5)]
    rounds: usize,
    /// Keep-alive connections of the load through HAProxy (one thread each).
    #[arg(long, value_name = "N", default_value_t = 8)]
    connections: usize,
    /// The share (0–1) of v2's answers that are 500s.
    #[arg(long, value_name = "RATE", default_value_t = 0.2)]
    error_rate: f64,
    /// The modes, comma-separated: each gets its own etcd, HAProxy and agent.
    #[arg(
        long = "modes",
        value_name = "A,B",
        value_enum,
        value_delimiter = ',',
        default_values_t = [Mode::CanaryStats, Mode::StatsInterval]
    )]
    modes: Vec<Mode>,
}

/// How the LB agent reads and publishes the statistics (all with `stats_interval =
/// "1s"` and routing changes through the Runtime API).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// The new path: per-request records (`log_socket`), and a canary app's statistics
    /// published every `canary_stats_interval` (its default, 50 ms).
    CanaryStats,
    /// The baseline: `log_socket`, `canary_stats_interval = "0s"`: statistics only
    /// every `stats_interval` (1 s), as before.
    StatsInterval,
    /// The older set-up: no `log_socket` (HAProxy's `show stat` only, every 1 s),
    /// `canary_stats_interval = "0s"`.
    ShowStat,
}

impl Mode {
    /// The top-level settings of the agent's config.
    fn settings(self) -> String {
        let regular = format!(
            "stats_interval = \"{}\"\n",
            humantime::format_duration(STATS_INTERVAL)
        );
        match self {
            Mode::CanaryStats => regular,
            Mode::StatsInterval | Mode::ShowStat => regular + "canary_stats_interval = \"0s\"\n",
        }
    }

    /// Whether HAProxy logs every request to the agent.
    fn logs_requests(self) -> bool {
        self != Mode::ShowStat
    }
}

/// The mode the others are compared with.
const BASELINE: Mode = Mode::StatsInterval;
/// The agents' `stats_interval`.
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// Bound on any one wait: an agent's apply, a canary's run.
const WAIT: Duration = Duration::from_secs(120);
/// Requests answered 200 before each canary starts.
const WARM_UP: u64 = 1000;
/// discoctl's exit code when the canary was rolled back.
const ROLLED_BACK: i32 = 6;

/// One mode's etcd, HAProxy, agent and backends, kept for all its rounds.
struct Setup {
    mode: Mode,
    etcd: Etcd,
    store: Store,
    url: String,
    status: StatusLog,
    // Dropped in this order: the agent before its HAProxy and its files.
    _agent: Proc,
    _haproxy: Haproxy,
    _backends: Vec<Backend>,
    _dir: tempfile::TempDir,
}

impl Setup {
    /// Starts everything for `mode`, v2's backends answering `error_rate` 500s, and
    /// waits for the agent's first apply.
    async fn start(mode: Mode, error_rate: f64) -> Setup {
        let etcd = Etcd::start();
        let store = store_for(&etcd);
        let ks = Keyspace::default();
        let dir = tempfile::tempdir().expect("a temp dir");
        let listen = format!("127.0.0.1:{}", disco_harness::ports::free_port());
        let mut seed = Seed::new(&ks);
        seed.policy("app1", format!(r#"{{"listen":"{listen}"}}"#));
        let mut backends = Vec::new();
        for i in 1..=3 {
            let instance = format!("instance{i}");
            for version in ["v1", "v2"] {
                let b = Backend::start(version);
                if version == "v2" {
                    b.set_error_rate(error_rate);
                }
                seed.endpoint(
                    "app1",
                    &instance,
                    version,
                    format!(r#"{{"address":"{}","health_path":"/healthz"}}"#, b.addr()),
                );
                backends.push(b);
            }
            seed.route("app1", &instance, "v1");
        }
        let seeded = seed.write(&store).await;

        let haproxy = Haproxy::start(&dir.path().join("disco.cfg"));
        let config = dir.path().join("lb1.toml");
        agent::write_config_with(
            &config,
            "lb1",
            &dir.path().join("lb1.snapshot.json"),
            &etcd,
            &mode.settings(),
            &target(mode, &haproxy, dir.path()),
        );
        let agent = agent::start(&config, &agent::log_from_env());
        let mut status = StatusLog::start(&store, &ks.key(&Key::Agent { id: "lb1".into() }), 1);
        status.until(seeded, WAIT).await;
        Setup {
            mode,
            etcd,
            store,
            url: format!("http://{listen}/"),
            status,
            _agent: agent,
            _haproxy: haproxy,
            _backends: backends,
            _dir: dir,
        }
    }

    /// Puts app1's slots back on v1 where they are not (a rolled-back canary left them
    /// there already), and waits until the agent applied the last change of app1.
    async fn back_on_v1(&mut self) {
        let ks = Keyspace::default();
        let (_, routes) = self
            .store
            .get_prefix(&ks.routes("app1"), None)
            .await
            .expect("reading app1's routes");
        let mut seed = Seed::new(&ks);
        let mut off = 0;
        for kv in &routes {
            if kv.value != b"v1" {
                let instance = kv.key.rsplit('/').next().expect("a route key");
                seed.route("app1", instance, "v1");
                off += 1;
            }
        }
        if off > 0 {
            seed.write(&self.store).await;
        }
        let (_, apps) = self
            .store
            .get_prefix(&ks.apps(), None)
            .await
            .expect("reading the apps");
        let last_change = apps.iter().map(|kv| kv.mod_revision).max().unwrap_or(0);
        self.status.until(last_change, WAIT).await;
    }
}

/// The agent's `[[target]]`: HAProxy with its stats socket (also the Runtime API's),
/// and the log socket unless the mode reads `show stat` only.
fn target(mode: Mode, haproxy: &Haproxy, dir: &Path) -> String {
    let mut target = format!(
        "kind = \"haproxy\"\npath = \"{f}\"\nhaproxy_config = \"{c}\"\nmaster_socket = \"{m}\"\nstats_socket = \"{s}\"\nruntime_socket = \"{s}\"\n",
        f = haproxy.fragment().display(),
        c = haproxy.main_config().display(),
        m = haproxy.master_socket().display(),
        s = haproxy.stats_socket().display(),
    );
    if mode.logs_requests() {
        target.push_str(&format!(
            "log_socket = \"{}\"\n",
            dir.join("log.sock").display()
        ));
    }
    target
}

/// What one canary cost.
struct Round {
    mode: Mode,
    /// Public requests per second between the snapshots.
    requests_per_s: f64,
    /// Public 500s between the snapshots (all v2's).
    public_500s: u64,
    /// v2's 200s between the snapshots.
    v2_ok: u64,
    /// From the step's `applied` event to `rolled_back`, by their `at`.
    applied_to_rolled_back_ms: f64,
    /// How long after the load's warm-up the canary started.
    stagger: Duration,
    /// The rollback's wait for the agents (`rolled_back`'s `wait_ms`).
    rollback_wait_ms: u64,
    /// The verdict's counts, from the reason: `v2 5xx/requests vs stable 5xx/requests`.
    verdict: String,
}

/// Runs one canary on `setup` under load and measures it; the canary starts `stagger`
/// after the load's warm-up.
async fn round(setup: &mut Setup, connections: usize, stagger: Duration) -> Round {
    setup.back_on_v1().await;
    let load = Load::start(
        &setup.url,
        LoadOptions {
            connections,
            ..LoadOptions::default()
        },
    );
    let (before, started, canary) = tokio::task::block_in_place(|| {
        load.wait_for_ok(WARM_UP);
        std::thread::sleep(stagger);
        let before = load.snapshot();
        let started = Instant::now();
        let canary = run_canary(&setup.etcd);
        (before, started, canary)
    });
    let during: LoadReport = load.snapshot().since(&before);
    let seconds = started.elapsed().as_secs_f64();
    tokio::task::block_in_place(|| drop(load));

    let Canary {
        code,
        events,
        stderr,
    } = canary;
    let event = |name: &str| events.iter().find(|e| e["event"] == name);
    let (Some(ROLLED_BACK), Some(applied), Some(rolled_back)) =
        (code, event("applied"), event("rolled_back"))
    else {
        panic!(
            "{}: the canary was not rolled back after its step was applied (exit code {code:?}): events {events:#?}\nstderr: {stderr}",
            flag_value(&setup.mode)
        );
    };
    let reason = rolled_back["reason"].as_str().unwrap_or_default();
    Round {
        mode: setup.mode,
        requests_per_s: during.sent as f64 / seconds,
        public_500s: during.failed,
        v2_ok: during.by_body.get("v2").copied().unwrap_or(0),
        applied_to_rolled_back_ms: ms_between(&applied["at"], &rolled_back["at"]),
        stagger,
        rollback_wait_ms: rolled_back["wait_ms"].as_u64().unwrap_or(0),
        verdict: verdict_counts(reason).unwrap_or_else(|| reason.to_string()),
    }
}

/// A finished `discoctl -o json canary`: its exit code, its events, its stderr.
struct Canary {
    code: Option<i32>,
    events: Vec<serde_json::Value>,
    stderr: String,
}

/// Runs `discoctl -o json canary app1 v2 --steps 1,all --interval 60s` to its end.
fn run_canary(etcd: &Etcd) -> Canary {
    let mut child = Command::new(sibling("discoctl"))
        .args(["-o", "json", "canary", "app1", "v2"])
        .args(["--steps", "1,all", "--interval", "60s"])
        .env("DISCO_ETCD_ENDPOINTS", etcd.endpoints().join(","))
        .env("DISCO_ACTOR", "canary-speed@bench")
        .env_remove("DISCO_PREFIX")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting discoctl (build it with cargo build --release -p discoctl)");
    let stdout = child.stdout.take().expect("discoctl's stdout");
    let mut stderr = child.stderr.take().expect("discoctl's stderr");
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let deadline = Instant::now() + WAIT;
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .map(|line| {
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
            })
            .collect::<Vec<serde_json::Value>>()
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for discoctl") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("discoctl canary still running after {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Canary {
        code: status.code(),
        events: reader.join().expect("reading discoctl's events"),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Milliseconds from one event's `at` to another's (RFC 3339, ms precision).
fn ms_between(from: &serde_json::Value, to: &serde_json::Value) -> f64 {
    let at = |v: &serde_json::Value| -> SystemTime {
        humantime::parse_rfc3339(v.as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("an event's at {v}: {e}"))
    };
    disco_bench::ms(at(to).duration_since(at(from)).unwrap_or_default())
}

/// The counts in a rollback's reason, `... v2 5xx rate 20.0% (18 of 90 requests) is
/// over ... the stable versions' 0.0% (0 of 400): ...`, as `18/90 vs 0/400`; none when
/// the reason has no counts.
fn verdict_counts(reason: &str) -> Option<String> {
    let counts: Vec<String> = reason
        .split('(')
        .skip(1)
        .filter_map(|part| {
            let inside = part.split(')').next()?;
            let (errors, rest) = inside.split_once(" of ")?;
            let requests = rest.split_whitespace().next()?;
            (errors.parse::<u64>().is_ok() && requests.parse::<u64>().is_ok())
                .then(|| format!("{errors}/{requests}"))
        })
        .collect();
    (!counts.is_empty()).then(|| counts.join(" vs "))
}

/// The median of `values` (the middle one by nearest rank, as the tables elsewhere).
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut sorted: Vec<f64> = values.collect();
    sorted.sort_by(f64::total_cmp);
    percentile(&sorted, 0.5)
}

fn print_rounds(rounds: &[Round]) {
    println!("| mode | round | started after the warm-up (ms) | requests/s | public 500s | v2 200s | applied → rolled_back (ms) | rollback's wait for the agent (ms) | verdict: v2 5xx/requests vs stable |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut numbers = std::collections::BTreeMap::<String, usize>::new();
    for r in rounds {
        let mode = flag_value(&r.mode);
        let n = numbers.entry(mode.clone()).or_default();
        *n += 1;
        println!(
            "| {mode} | {n} | {:.0} | {:.0} | {} | {} | {:.0} | {} | {} |",
            disco_bench::ms(r.stagger),
            r.requests_per_s,
            r.public_500s,
            r.v2_ok,
            r.applied_to_rolled_back_ms,
            r.rollback_wait_ms,
            r.verdict
        );
    }
}

fn print_modes(modes: &[Mode], rounds: &[Round]) {
    let of = |mode: Mode| rounds.iter().filter(move |r| r.mode == mode);
    let median_500s = |mode: Mode| median(of(mode).map(|r| r.public_500s as f64));
    let baseline = modes.contains(&BASELINE).then(|| median_500s(BASELINE));
    println!("| mode | rounds | median requests/s | public 500s median / max | applied → rolled_back median (ms) | public 500s median / {}'s |", flag_value(&BASELINE));
    println!("|---|---|---|---|---|---|");
    for &mode in modes {
        let max = of(mode).map(|r| r.public_500s).max().unwrap_or(0);
        let ratio = match baseline {
            Some(b) if b > 0.0 => format!("{:.2}", median_500s(mode) / b),
            _ => "-".into(),
        };
        println!(
            "| {} | {} | {:.0} | {:.0} / {max} | {:.0} | {ratio} |",
            flag_value(&mode),
            of(mode).count(),
            median(of(mode).map(|r| r.requests_per_s)),
            median_500s(mode),
            median(of(mode).map(|r| r.applied_to_rolled_back_ms)),
        );
    }
}

async fn run(args: Args) {
    let mut setups = Vec::new();
    for &mode in &args.modes {
        setups.push(Setup::start(mode, args.error_rate).await);
    }
    let mut rounds = Vec::new();
    for n in 1..=args.rounds {
        // The agent's regular statistics come every STATS_INTERVAL, and a round starts
        // a fairly constant time after the last one's rollback, which came with one of
        // them: left alone, every round would start at about the same point of that
        // cycle. Each round starts at another point, the rounds evenly over the cycle.
        let stagger = STATS_INTERVAL.mul_f64((n as f64 - 0.5) / args.rounds as f64);
        for setup in &mut setups {
            let r = round(setup, args.connections, stagger).await;
            eprintln!(
                "round {n} {}: {} public 500s, {:.0} ms applied → rolled_back",
                flag_value(&r.mode),
                r.public_500s,
                r.applied_to_rolled_back_ms
            );
            rounds.push(r);
        }
    }
    println!(
        "canary-speed: v2 answering {:.0}% 500s, {} keep-alive connections through HAProxy, `discoctl canary app1 v2 --steps 1,all --interval 60s` (1 slot of 3 on v2), {} rounds per mode, modes in turn",
        args.error_rate * 100.0,
        args.connections,
        args.rounds
    );
    println!();
    print_rounds(&rounds);
    println!();
    print_modes(&args.modes, &rounds);
}

fn main() {
    let args = Args::parse();
    assert!(
        (0.0..=1.0).contains(&args.error_rate),
        "--error-rate must be between 0 and 1"
    );
    disco_bench::runtime().block_on(run(args));
}

#[cfg(test)]
mod tests {
    use super::{verdict_counts, Args, Mode};
    use disco_bench::parse_flags;

    /// As bench/run.sh and bench/README.md call it.
    #[test]
    fn the_documented_invocations_parse() {
        let args = parse_flags::<Args>(&[]).unwrap();
        assert_eq!(
            (args.rounds, args.connections, args.error_rate),
            (5, 8, 0.2)
        );
        assert_eq!(args.modes, [Mode::CanaryStats, Mode::StatsInterval]);
        let args = parse_flags::<Args>(&[
            "--rounds",
            "5",
            "--modes",
            "canary-stats,stats-interval,show-stat",
        ])
        .unwrap();
        assert_eq!(
            args.modes,
            [Mode::CanaryStats, Mode::StatsInterval, Mode::ShowStat]
        );
        let args = parse_flags::<Args>(&["--connections", "4", "--error-rate", "0.3"]).unwrap();
        assert_eq!((args.connections, args.error_rate), (4, 0.3));
        assert!(parse_flags::<Args>(&["--modes", "fast"]).is_err());
    }

    #[test]
    fn a_reason_gives_its_counts() {
        assert_eq!(
            verdict_counts("step 1/2 (1 slot on v2): v2 5xx rate 20.0% (18 of 90 requests) is over --max-error-rate 1.0% and above the stable versions' 0.0% (0 of 400): Fisher's exact test p < 1e-12 < 0.001").as_deref(),
            Some("18/90 vs 0/400")
        );
        assert_eq!(verdict_counts("aborted by ann@ops (no reason given)"), None);
    }
}
