//! The reload-free story: etcd, one proxy (HAProxy with `runtime_socket`, or nginx with
//! `balancer_socket`), one LB agent, versioned backends and keep-alive load through the
//! app's listener. After a set-up (the agent's first apply, and a dark canary on a
//! header switched on and off once so that its match kind is rendered), every routing
//! change an operator or an instance makes in a day is made once — promotions,
//! weights, rollbacks, a switch, the dark canary, an instance registering, failing its
//! health check, recovering and draining — and for each the time from the etcd write
//! until the agent reported it applied, and how (`runtime` or `reload`). Totals: reloads
//! during the story (HAProxy: the master's `show proc`; nginx: the agent's count),
//! whether the worker pids changed, the load's failed and retried requests (both must
//! be 0: no request may fail, and none may need a client's retry), and, when wrk is
//! installed, a plain `wrk -t2 -c50` run through the story (no socket error, no
//! non-2xx answer).
//!
//! Usage: runtime-story [--proxy haproxy|nginx]   (default haproxy)
//! Run through a release build: cargo build --release -p disco-agent -p disco-bench

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use disco::model::AgentStatus;
use disco::store::{Store, Txn, TxnOp, WatchSettings, WatchUpdate};
use disco::{Key, Keyspace};
use disco_bench::{agent, only_target, sibling, store_for, Proc, StatusLog};
use disco_harness::{Backend, Etcd, Haproxy, Load, LoadOptions, LoadReport, Nginx};

/// The reload-free story: every routing change of an operator's or an instance's day,
/// made once through one proxy under load, each timed until applied and reported as
/// applied by `runtime` or `reload`. Exits 1 on a reload, a worker change or a failed or
/// retried request.
#[derive(Parser, Debug)]
#[command(
    name = "runtime-story",
    after_help = "Run through a release build: cargo build --release -p disco-agent -p disco-bench"
)]
struct Args {
    /// The proxy the story runs through.
    #[arg(long, value_enum, default_value_t = ProxyKind::Haproxy)]
    proxy: ProxyKind,
}

/// Which proxy, as `--proxy` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ProxyKind {
    /// HAProxy with `runtime_socket`.
    Haproxy,
    /// nginx with `balancer_socket`.
    Nginx,
}

/// Bound on waiting for any one apply.
const WAIT: Duration = Duration::from_secs(60);
/// Requests of the load counted after each step, to show where traffic goes.
const SAMPLE: u64 = 300;

fn route(ks: &Keyspace, instance: &str) -> String {
    ks.key(&Key::Route {
        app: "app1".into(),
        instance: instance.into(),
    })
}

fn endpoint(ks: &Keyspace, instance: &str, version: &str) -> String {
    ks.key(&Key::Endpoint {
        app: "app1".into(),
        instance: instance.into(),
        version: version.into(),
    })
}

/// One write of the story, in one transaction; returns its revision.
async fn write(store: &Store, puts: &[(String, String)]) -> i64 {
    let ops: Vec<TxnOp> = puts
        .iter()
        .map(|(k, v)| TxnOp::put(k.as_str(), v.as_str(), None))
        .collect();
    let resp = store.txn(Txn::new().and_then(ops)).await.unwrap();
    resp.header().expect("a txn header").revision()
}

/// A change as a watch saw it: when, at which revision, the value (None: deleted).
type Seen = (Instant, i64, Option<Vec<u8>>);

/// Every change of one key prefix as the benchmark's own watch saw it: when, at which
/// revision, and the value (None: deleted). Times changes made by other processes.
struct KeyLog {
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl KeyLog {
    fn start(store: &Store, prefix: &str, from: i64) -> KeyLog {
        let mut updates = store.watch(prefix, from, WatchSettings::default());
        let seen: Arc<Mutex<Vec<_>>> = Arc::default();
        let task = {
            let seen = seen.clone();
            tokio::spawn(async move {
                while let Some(update) = updates.recv().await {
                    let WatchUpdate::Changes { revision, changes } = update else {
                        continue;
                    };
                    let at = Instant::now();
                    for c in changes {
                        let value = match c {
                            disco::Change::Put { value, .. } => Some(value),
                            disco::Change::Delete { .. } => None,
                        };
                        seen.lock().unwrap().push((at, revision, value));
                    }
                }
            })
        };
        KeyLog { seen, task }
    }

    fn len(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// The first change from index `from` on that `want` accepts: when it was seen and
    /// its revision.
    async fn wait(
        &self,
        from: usize,
        what: &str,
        want: impl Fn(Option<&disco::model::Endpoint>) -> bool,
    ) -> (Instant, i64) {
        let deadline = Instant::now() + WAIT;
        loop {
            {
                let seen = self.seen.lock().unwrap();
                let found = seen.iter().skip(from).find(|(_, _, v)| {
                    let e = v
                        .as_ref()
                        .and_then(|v| serde_json::from_slice::<disco::model::Endpoint>(v).ok());
                    want(e.as_ref())
                });
                if let Some((at, rev, _)) = found {
                    return (*at, *rev);
                }
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not seen within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

impl Drop for KeyLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One row of the table.
struct Step {
    name: String,
    applied_by: String,
    ms: f64,
    traffic: String,
    note: String,
}

/// Shares of the load's 200 answers by body (version) over the next SAMPLE requests.
fn traffic(load: &Load) -> String {
    tokio::task::block_in_place(|| {
        let before = load.snapshot();
        let after = load.wait_for_ok(SAMPLE);
        let window: LoadReport = after.since(&before);
        let total: u64 = window.by_body.values().sum();
        window
            .by_body
            .iter()
            .map(|(v, n)| format!("{v} {:.0}%", 100.0 * *n as f64 / total.max(1) as f64))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// Versions answering `n` requests sent with `headers`, e.g. "v2 20/20".
fn probe(url: &str, headers: &[(&str, &str)], n: usize) -> String {
    tokio::task::block_in_place(|| {
        let mut seen = std::collections::BTreeMap::<String, usize>::new();
        for _ in 0..n {
            let answer = match disco_harness::get(url, headers) {
                Ok((200, body)) => body.trim().to_string(),
                Ok((status, _)) => format!("status {status}"),
                Err(e) => format!("error {e}"),
            };
            *seen.entry(answer).or_default() += 1;
        }
        seen.iter()
            .map(|(v, c)| format!("{v} {c}/{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// A step made by another process (the registering agent): timed from when the
/// benchmark's watch saw its write.
fn agent_step(
    steps: &mut Vec<Step>,
    name: &str,
    (t0, rev): (Instant, i64),
    (done, s): (Instant, AgentStatus),
    traffic: String,
    note: String,
) {
    steps.push(Step {
        name: name.to_string(),
        applied_by: applied_by(&s),
        ms: (done - t0).as_secs_f64() * 1000.0,
        traffic,
        note: format!("{note}; timed from its write at revision {rev}, as a watch saw it"),
    });
}

fn applied_by(s: &AgentStatus) -> String {
    only_target(s).applied_by.unwrap_or_else(|| "-".into())
}

/// The proxy the story runs through.
enum Proxy {
    /// HAProxy with `runtime_socket`.
    Haproxy(Haproxy),
    /// nginx with `balancer_socket`.
    Nginx(Nginx),
}

impl Proxy {
    fn start(kind: ProxyKind, dir: &Path) -> Proxy {
        match kind {
            ProxyKind::Haproxy => Proxy::Haproxy(Haproxy::start(&dir.join("disco.cfg"))),
            ProxyKind::Nginx => {
                disco_harness::nginx::open_to_workers(dir);
                Proxy::Nginx(Nginx::start(&dir.join("disco.conf")))
            }
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Proxy::Haproxy(_) => "HAProxy",
            Proxy::Nginx(_) => "nginx",
        }
    }

    /// The agent's `[[target]]`.
    fn target(&self, dir: &Path) -> String {
        match self {
            Proxy::Haproxy(h) => format!(
                "kind = \"haproxy\"\npath = \"{f}\"\nhaproxy_config = \"{c}\"\nmaster_socket = \"{m}\"\nruntime_socket = \"{s}\"\n",
                f = h.fragment().display(),
                c = h.main_config().display(),
                m = h.master_socket().display(),
                s = h.stats_socket().display(),
            ),
            Proxy::Nginx(n) => format!(
                "kind = \"nginx\"\npath = \"{f}\"\nnginx_args = {a:?}\npid_file = \"{p}\"\nbalancer_socket = \"{s}\"\n",
                f = n.fragment().display(),
                a = n.nginx_test_args(),
                p = n.pid_file().display(),
                s = dir.join("balancer.sock").display(),
            ),
        }
    }

    /// Reloads so far: HAProxy's master counts them; for nginx, the agent's counter.
    fn reloads(&self, status: Option<&AgentStatus>) -> u64 {
        match self {
            Proxy::Haproxy(h) => h.reloads(),
            Proxy::Nginx(_) => status.map(|s| only_target(s).reloads).unwrap_or(0),
        }
    }

    fn worker_pids(&self) -> Vec<u32> {
        match self {
            Proxy::Haproxy(h) => h.worker_pids(),
            Proxy::Nginx(n) => n.worker_pids(),
        }
    }
}

/// `wrk -t2 -c50` on `url` until stopped (SIGINT: wrk prints its summary), when wrk is
/// installed.
struct Wrk(Option<std::process::Child>);

impl Wrk {
    fn start(url: &str) -> Wrk {
        let child = Command::new("wrk")
            .args(["-t2", "-c50", "-d600s", url])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        if child.is_none() {
            println!("note: wrk is not installed (scripts/deps.sh installs it): no wrk totals");
        }
        Wrk(child)
    }

    /// Stops wrk; its requests, socket errors and non-2xx/3xx answers.
    fn stop(mut self) -> Option<(String, String, String)> {
        let child = self.0.take()?;
        disco_harness::process::signal(&[child.id()], "INT");
        let out = child.wait_with_output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let requests = text
            .lines()
            .find(|l| l.contains("requests in"))
            .map(|l| l.trim().to_string())
            .unwrap_or_else(|| "?".into());
        let sockets = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Socket errors: "))
            .map(String::from)
            .unwrap_or_else(|| "none".into());
        let non2xx = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses: "))
            .map(String::from)
            .unwrap_or_else(|| "0".into());
        Some((requests, sockets, non2xx))
    }
}

impl Drop for Wrk {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn run(kind: ProxyKind) -> bool {
    let etcd = Etcd::start();
    let store = store_for(&etcd);
    let ks = Keyspace::default();
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", disco_harness::ports::free_port());
    let url = format!("http://{listen}/");
    let policy_key = ks.key(&Key::Policy { app: "app1".into() });
    let plain = format!(r#"{{"listen":"{listen}"}}"#);
    let dark = format!(
        r#"{{"listen":"{listen}","dark":{{"version":"v2","matches":[{{"header":{{"name":"X-Canary","value":"internal"}}}}]}}}}"#
    );
    let weighted = format!(r#"{{"listen":"{listen}","weights":{{"v2":10}}}}"#);

    // app1: instance1..3, v1 and v2 each, routed to v1.
    let mut backends = Vec::new();
    let mut seed = vec![(policy_key.clone(), plain.clone())];
    for i in 1..=3 {
        let instance = format!("instance{i}");
        for v in ["v1", "v2"] {
            let b = Backend::start(v);
            seed.push((
                endpoint(&ks, &instance, v),
                format!(r#"{{"address":"{}","health_path":"/healthz"}}"#, b.addr()),
            ));
            backends.push(b);
        }
        seed.push((route(&ks, &instance), "v1".into()));
    }
    let seeded = write(&store, &seed).await;

    let proxy = Proxy::start(kind, dir.path());
    let config = dir.path().join("lb1.toml");
    agent::write_config(
        &config,
        "lb1",
        &dir.path().join("lb1.snapshot.json"),
        &etcd,
        &proxy.target(dir.path()),
    );
    let _agent = agent::start(&config, "warn");
    let status_key = ks.key(&Key::Agent { id: "lb1".into() });
    let mut log = StatusLog::start(&store, &status_key, 1);
    let (_, first) = log.until(seeded, WAIT).await;
    println!(
        "set-up: the agent's first apply: {} (what {} had loaded was not known)",
        applied_by(&first),
        proxy.name()
    );
    let load = Load::start(&url, LoadOptions::default());
    tokio::task::block_in_place(|| load.wait_for_ok(100));

    // Set-up: a dark canary on the X-Canary header once, so that its match kind is
    // rendered (the first one reloads); off again.
    let setup_reloads = proxy.reloads(log.latest().as_ref());
    let rev = write(&store, &[(policy_key.clone(), dark.clone())]).await;
    let (_, s) = log.until(rev, WAIT).await;
    let on = applied_by(&s);
    let rev = write(&store, &[(policy_key.clone(), plain.clone())]).await;
    let (_, s) = log.until(rev, WAIT).await;
    println!(
        "set-up: dark canary on X-Canary switched on ({on}) and off ({}) once, so that its match kind is rendered; {} reloads in the set-up: {}",
        applied_by(&s),
        proxy.name(),
        proxy.reloads(Some(&s)) - setup_reloads
    );

    // The story, counted from here.
    let reloads_before = proxy.reloads(log.latest().as_ref());
    let workers_before = proxy.worker_pids();
    let load_before = load.snapshot();
    let wrk = Wrk::start(&url);
    let mut steps: Vec<Step> = Vec::new();

    macro_rules! step {
        ($name:expr, $puts:expr, $note:expr) => {{
            let puts: Vec<(String, String)> = $puts;
            let t0 = Instant::now();
            let rev = write(&store, &puts).await;
            let (done, s) = log.until(rev, WAIT).await;
            let ms = (done - t0).as_secs_f64() * 1000.0;
            let traffic = traffic(&load);
            let note: String = $note;
            steps.push(Step {
                name: $name.to_string(),
                applied_by: applied_by(&s),
                ms,
                traffic,
                note,
            });
        }};
    }
    let all = |v: &str| -> Vec<(String, String)> {
        (1..=3)
            .map(|i| (route(&ks, &format!("instance{i}")), v.to_string()))
            .collect()
    };

    step!(
        "promote app1 v2 (instance1)",
        vec![(route(&ks, "instance1"), "v2".into())],
        String::new()
    );
    step!(
        "weight app1 v2 10",
        vec![(policy_key.clone(), weighted.clone())],
        String::new()
    );
    step!(
        "weight app1 v2 0 (weights removed)",
        vec![(policy_key.clone(), plain.clone())],
        String::new()
    );
    step!(
        "promote app1 v2 --all (instance2, instance3; one txn)",
        vec![
            (route(&ks, "instance2"), "v2".into()),
            (route(&ks, "instance3"), "v2".into())
        ],
        String::new()
    );
    step!("rollback app1 --to v1 (one txn)", all("v1"), String::new());
    step!("switch app1 v2 (one txn)", all("v2"), String::new());
    step!("rollback app1 --to v1 (one txn)", all("v1"), String::new());
    step!(
        "dark app1 v2 --header X-Canary=internal",
        vec![(policy_key.clone(), dark.clone())],
        format!(
            "with X-Canary: {}",
            probe(&url, &[("X-Canary", "internal")], 20)
        )
    );
    step!(
        "dark app1 --off",
        vec![(policy_key.clone(), plain.clone())],
        format!(
            "with X-Canary: {}",
            probe(&url, &[("X-Canary", "internal")], 20)
        )
    );

    // instance4 (v1) starts and registers itself: a `disco-agent register` of its own.
    let new = Backend::start("v1");
    let key4 = endpoint(&ks, "instance4", "v1");
    let (rev_now, _) = store.get(&key4).await.unwrap();
    let key4_log = KeyLog::start(&store, &key4, rev_now + 1);
    let registrar = Proc::term_on_drop(
        Command::new(sibling("disco-agent"))
            .args(["--agent-id", "app1-instance4"])
            .env("DISCO_ETCD_ENDPOINTS", etcd.endpoints().join(","))
            .env("RUST_LOG", "warn")
            .args([
                "register",
                "--app",
                "app1",
                "--instance",
                "instance4",
                "--version",
                "v1",
                "--address",
                &new.addr(),
                "--health",
                "/healthz",
                "--interval",
                "200ms",
                "--rise",
                "1",
                "--fall",
                "2",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting disco-agent register"),
    );
    let seen = key4_log
        .wait(0, "instance4 registered", |e| e.is_some())
        .await;
    let applied = log.until(seen.1, WAIT).await;
    agent_step(
        &mut steps,
        "instance4 registers (not routed yet)",
        seen,
        applied,
        String::new(),
        "a new server, weight 0".into(),
    );
    let served = new.requests();
    step!(
        "route set app1 instance4 v1",
        vec![(route(&ks, "instance4"), "v1".into())],
        String::new()
    );
    let note = format!(
        "instance4 served {} requests meanwhile (all load counted)",
        new.requests() - served
    );
    steps.last_mut().unwrap().note = note;

    let from = key4_log.len();
    new.set_healthy(false);
    let seen = key4_log
        .wait(from, "instance4 failing", |e| {
            e.and_then(|e| e.health.as_ref())
                .is_some_and(|h| h.status == disco::model::HealthStatus::Failing)
        })
        .await;
    let applied = log.until(seen.1, WAIT).await;
    let served = new.requests();
    let t = traffic(&load);
    agent_step(
        &mut steps,
        "instance4 fails its health check (reported failing)",
        seen,
        applied,
        t,
        format!("instance4 served {}", new.requests() - served),
    );
    let from = key4_log.len();
    new.set_healthy(true);
    let seen = key4_log
        .wait(from, "instance4 passing", |e| {
            e.and_then(|e| e.health.as_ref())
                .is_some_and(|h| h.status == disco::model::HealthStatus::Passing)
        })
        .await;
    let applied = log.until(seen.1, WAIT).await;
    // HAProxy's own check (inter 1s, fall 2) may have taken it down too; it is back
    // after its next check. (nginx has no check of its own in balancer mode.)
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let served = new.requests();
    let t = traffic(&load);
    agent_step(
        &mut steps,
        "instance4 recovers (reported passing)",
        seen,
        applied,
        t,
        format!(
            "instance4 served {} (traffic counted 1.2 s later{})",
            new.requests() - served,
            match proxy {
                Proxy::Haproxy(_) => ": HAProxy's own check",
                Proxy::Nginx(_) => "",
            }
        ),
    );

    // Drain: SIGTERM; the registering agent withdraws its endpoint in one transaction,
    // waits until the LB agents applied it, and exits. Then the instance stops.
    let from = key4_log.len();
    let drained = tokio::task::spawn_blocking(move || drop(registrar));
    let seen = key4_log
        .wait(from, "instance4 withdrawn", |e| e.is_none())
        .await;
    let applied = log.until(seen.1, WAIT).await;
    drained.await.unwrap();
    new.stop();
    let t = traffic(&load);
    agent_step(
        &mut steps,
        "instance4 drains (SIGTERM: endpoint withdrawn), then stops",
        seen,
        applied,
        t,
        "its route stays: the slot is left out".into(),
    );

    let wrk = wrk.stop();
    let reloads = proxy.reloads(log.latest().as_ref()) - reloads_before;
    let workers_after = proxy.worker_pids();
    let story_load = load.snapshot().since(&load_before);
    let total = load.stop();
    let last = log.latest().map(|s| only_target(&s)).unwrap_or_default();

    println!();
    println!("| # | step | applied by | put→applied (ms) | plain traffic after (next {SAMPLE} requests) | note |");
    println!("|---|---|---|---|---|---|");
    for (i, s) in steps.iter().enumerate() {
        println!(
            "| {} | {} | {} | {:.1} | {} | {} |",
            i + 1,
            s.name,
            s.applied_by,
            s.ms,
            if s.traffic.is_empty() {
                "-"
            } else {
                &s.traffic
            },
            if s.note.is_empty() { "-" } else { &s.note },
        );
    }
    let mut times: Vec<f64> = steps.iter().map(|s| s.ms).collect();
    times.sort_by(f64::total_cmp);
    let same_workers = workers_before == workers_after;
    println!();
    println!("| total | |");
    println!("|---|---|");
    println!(
        "| steps | {} ({} applied by runtime) |",
        steps.len(),
        steps.iter().filter(|s| s.applied_by == "runtime").count()
    );
    println!(
        "| put→applied median / max (ms) | {:.1} / {:.1} |",
        disco_bench::percentile(&times, 0.5),
        times.last().copied().unwrap_or(f64::NAN)
    );
    match &proxy {
        Proxy::Haproxy(_) => println!("| HAProxy master reloads during the story | {reloads} |"),
        Proxy::Nginx(_) => {
            println!("| nginx reloads during the story (the agent's count) | {reloads} |")
        }
    }
    println!(
        "| worker pids unchanged | {} ({workers_before:?} → {workers_after:?}) |",
        if same_workers { "yes" } else { "no" }
    );
    println!(
        "| requests during the story: sent / failed / retried | {} / {} / {} |",
        story_load.sent, story_load.failed, story_load.retried
    );
    println!(
        "| requests in the whole run (set-up included): sent / failed / retried | {} / {} / {} |",
        total.sent, total.failed, total.retried
    );
    println!(
        "| agent counters at the end: reloads / runtime applies | {} / {} |",
        last.reloads, last.runtime_applies
    );
    let mut wrk_clean = true;
    if let Some((requests, sockets, non2xx)) = &wrk {
        println!("| wrk -t2 -c50 during the story | {requests}; socket errors: {sockets}; non-2xx/3xx: {non2xx} |");
        wrk_clean = sockets == "none" && non2xx == "0";
    }
    if !total.errors.is_empty() {
        println!("\nload errors: {:?}", total.errors);
    }
    drop(backends);
    reloads == 0 && same_workers && total.failed == 0 && total.retried == 0 && wrk_clean
}

fn main() {
    let Args { proxy } = Args::parse();
    if !disco_bench::runtime().block_on(run(proxy)) {
        eprintln!(
            "runtime-story: reloads, worker changes or failed/retried requests (see the totals)"
        );
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::{Args, ProxyKind};
    use disco_bench::parse_flags;

    fn proxy(flags: &[&str]) -> ProxyKind {
        parse_flags::<Args>(flags).unwrap().proxy
    }

    /// As bench/run.sh and bench/README.md call it.
    #[test]
    fn the_documented_invocations_parse() {
        assert_eq!(proxy(&[]), ProxyKind::Haproxy);
        assert_eq!(proxy(&["--proxy", "haproxy"]), ProxyKind::Haproxy);
        assert_eq!(proxy(&["--proxy", "nginx"]), ProxyKind::Nginx);
        assert!(parse_flags::<Args>(&["--proxy", "envoy"]).is_err());
    }
}
