//! disco-agent and confd side by side, doing the same job: one etcd put → every
//! `server <name> <addr> check` line re-rendered (one per routed endpoint) → a check
//! command on the staged file → install → a reload command that appends a newline to a
//! marker file (a touch that also counts). Both tools run the check and the reload
//! through `/bin/sh -c` with the same command text, render byte-identical files (the
//! benchmark waits for the exact expected content) and read the same keys from their
//! own fresh etcd.
//!
//! Measured for each tool, in interleaved rounds (disco, confd, disco, confd, ...):
//! put → installed and put → reload done over N puts 0.3 s apart; a burst of 200
//! back-to-back puts (time from the last put until the file shows the final state, and
//! how many installs happened); RSS after that; 1,000 apps × 10 endpoints, one flip
//! put → installed. "Installed" is seen by a thread polling the file (inode/mtime, then
//! content; metadata only for the 10,000-line file); "reload done" by the same thread
//! when the marker grows.
//!
//! Usage: confd-compare [--rounds 3] [--puts 100] [--flips 10]
//! The peer comes from `CONFD=/path/to/confd`; without it only disco is measured.
//! Run through bench/run.sh, which builds in release mode first.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::Parser;
use disco::{Key, Keyspace};
use disco_bench::proc_stats::rss_kib;
use disco_bench::seed::Seed;
use disco_bench::{agent, ms, percentile, server_lines, store_for, Proc};
use disco_harness::Etcd;

/// disco-agent and confd side by side, doing the same job (server lines, a check, a
/// reload), in interleaved rounds. Prints a markdown table.
#[derive(Parser, Debug)]
#[command(
    name = "confd-compare",
    after_help = "The peer comes from CONFD=/path/to/confd; without it only disco is measured. \
                  Run through bench/run.sh, which builds in release mode first."
)]
struct Args {
    /// Interleaved rounds (disco, confd, disco, confd, ...).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = at_least_one)]
    rounds: usize,
    /// Route flips 0.3 s apart per round, on one app with three slots.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = at_least_one)]
    puts: usize,
    /// Flips of one slot per round among 1,000 apps × 10 endpoints.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = at_least_one)]
    flips: usize,
}

/// A count of at least 1.
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e}")),
    }
}

/// Spacing of the measured puts: long enough that every put takes the idle path of both
/// tools (it was chosen above disco's former 250 ms `max_delay`; the default is now 0).
const SPACING: Duration = Duration::from_millis(300);
const BURST: usize = 200;
/// Bound on waiting for any one thing a tool should do.
const WAIT: Duration = Duration::from_secs(60);

/// confd's template (Go text/template with confd's functions), the same lines: one scan
/// of the routes, then a map lookup of each routed endpoint.
const CONFD_TEMPLATE: &str = "\
{{range gets \"/apps/*/routes/*\"}}{{$p := split .Key \"/\"}}{{$app := index $p 2}}{{$inst := index $p 4}}{{$ep := json (getv (printf \"/apps/%s/endpoints/%s/%s\" $app $inst .Value))}}server {{$app}}-{{$inst}} {{$ep.address}} check
{{end}}";

#[derive(Clone)]
enum Tool {
    Disco,
    Confd(PathBuf),
}

impl Tool {
    fn name(&self) -> &'static str {
        match self {
            Tool::Disco => "disco",
            Tool::Confd(_) => "confd",
        }
    }

    /// Starts the tool on `etcd`, rendering `out`; its reload appends to `marker`.
    fn start(&self, dir: &Path, etcd: &Etcd, out: &Path, marker: &Path) -> Proc {
        let command = match self {
            Tool::Disco => {
                let template = dir.join("servers.j2");
                std::fs::write(&template, server_lines::TEMPLATE).unwrap();
                let config = dir.join("agent.toml");
                // max_delay is left at its default (0: no minimum interval between reloads).
                agent::write_config(
                    &config,
                    "bench-disco",
                    &dir.join("cache.json"),
                    etcd,
                    &server_lines::target(out, &template, marker),
                );
                agent::command(&config, "warn")
            }
            Tool::Confd(binary) => {
                let confdir = dir.join("confd");
                std::fs::create_dir_all(confdir.join("conf.d")).unwrap();
                std::fs::create_dir_all(confdir.join("templates")).unwrap();
                std::fs::write(confdir.join("templates/servers.tmpl"), CONFD_TEMPLATE).unwrap();
                // confd runs both commands with /bin/sh -c.
                std::fs::write(
                    confdir.join("conf.d/servers.toml"),
                    format!(
                        "[template]\nsrc = \"servers.tmpl\"\ndest = \"{}\"\nkeys = [\"/apps\"]\n\
                         check_cmd = \"grep -q server {{{{.src}}}}\"\nreload_cmd = \"{}\"\n",
                        out.display(),
                        server_lines::reload_command(marker),
                    ),
                )
                .unwrap();
                let mut c = Command::new(binary);
                c.args(["-backend", "etcdv3", "-node"])
                    .arg(etcd.endpoint())
                    .args(["-watch", "-prefix", "/disco", "-log-level", "warn"])
                    .arg("-confdir")
                    .arg(&confdir)
                    // A file that does not exist: no /etc/confd/confd.toml is read.
                    .arg("-config-file")
                    .arg(confdir.join("confd.toml"));
                c
            }
        };
        let mut command = command;
        Proc::kill_on_drop(
            command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "starting {} ({e}; disco-agent: cargo build --release -p disco-agent; \
                         confd: CONFD=/path/to/confd)",
                        self.name()
                    )
                }),
        )
    }
}

/// What a thread polling the target file and the marker has seen.
#[derive(Default)]
struct Seen {
    /// When the file changed (new inode, mtime, ctime or size), with its content when
    /// the content is polled (then only changes of content count).
    installs: Vec<(Instant, Option<Vec<u8>>)>,
    /// `reloads[k]`: when the marker first had k + 1 newlines.
    reloads: Vec<Instant>,
}

/// Polls a target file and the reload marker every 100 µs; stopped on drop.
struct Poller {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

type Stamp = (u64, i64, i64, i64, i64, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some((
        m.ino(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
        m.size(),
    ))
}

impl Poller {
    fn start(out: &Path, marker: &Path, read_content: bool) -> Poller {
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            let (out, marker) = (out.to_path_buf(), marker.to_path_buf());
            std::thread::spawn(move || {
                let mut last_stamp = stamp(&out);
                let mut last_content = std::fs::read(&out).ok();
                let mut reloads = std::fs::metadata(&marker).map(|m| m.len()).unwrap_or(0);
                while !stop.load(Ordering::Relaxed) {
                    let now_stamp = stamp(&out);
                    if now_stamp.is_some() && now_stamp != last_stamp {
                        let at = Instant::now();
                        last_stamp = now_stamp;
                        if read_content {
                            let content = std::fs::read(&out).ok();
                            if content.is_some() && content != last_content {
                                seen.lock().unwrap().installs.push((at, content.clone()));
                                last_content = content;
                            }
                        } else {
                            seen.lock().unwrap().installs.push((at, None));
                        }
                    }
                    let len = std::fs::metadata(&marker).map(|m| m.len()).unwrap_or(0);
                    if len > reloads {
                        let at = Instant::now();
                        let mut s = seen.lock().unwrap();
                        for _ in reloads..len {
                            s.reloads.push(at);
                        }
                        reloads = len;
                    }
                    std::thread::sleep(Duration::from_micros(100));
                }
            })
        };
        Poller {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn installs(&self) -> usize {
        self.seen.lock().unwrap().installs.len()
    }

    fn reloads(&self) -> usize {
        self.seen.lock().unwrap().reloads.len()
    }

    /// When the first change from index `from` on was seen (with `want` as content, if
    /// given).
    fn wait_install(&self, from: usize, want: Option<&[u8]>, what: &str) -> Instant {
        let deadline = Instant::now() + WAIT;
        loop {
            {
                let s = self.seen.lock().unwrap();
                let found = s
                    .installs
                    .iter()
                    .skip(from)
                    .find(|(_, content)| match want {
                        Some(w) => content.as_deref() == Some(w),
                        None => true,
                    });
                if let Some((at, _)) = found {
                    return *at;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not installed within 60 s"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// When the marker showed `n` reloads.
    fn wait_reloads(&self, n: usize, what: &str) -> Instant {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(at) = self.seen.lock().unwrap().reloads.get(n - 1) {
                return *at;
            }
            assert!(Instant::now() < deadline, "{what}: no reload within 60 s");
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The file both tools must render: (app, instance) → address, in key order.
fn expected(servers: &BTreeMap<(String, String), String>) -> Vec<u8> {
    let mut text = String::new();
    for ((app, instance), address) in servers {
        text.push_str(&format!("server {app}-{instance} {address} check\n"));
    }
    text.into_bytes()
}

fn endpoint_value(address: &str) -> String {
    format!(r#"{{"address":"{address}"}}"#)
}

fn rss_mib(pid: u32) -> f64 {
    rss_kib(pid).map_or(f64::NAN, |kib| kib as f64 / 1024.0)
}

/// Waits until `path` holds `want` (read every 10 ms: start-up only).
fn wait_file(path: &Path, want: &[u8], what: &str) {
    let deadline = Instant::now() + WAIT;
    while std::fs::read(path).ok().as_deref() != Some(want) {
        assert!(
            Instant::now() < deadline,
            "{what}: the file never showed the expected content"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One tool's numbers from one round.
#[derive(Clone, Copy)]
struct Sample {
    put_p50: f64,
    installed_p50: f64,
    installed_p99: f64,
    reloaded_p50: f64,
    converged: f64,
    burst_installs: f64,
    rss: f64,
    big_installed_p50: f64,
    big_rss: f64,
}

struct Small {
    put_p50: f64,
    installed_p50: f64,
    installed_p99: f64,
    reloaded_p50: f64,
    converged: f64,
    burst_installs: f64,
    rss: f64,
}

/// One app, three slots: `puts` route flips 0.3 s apart, then a burst of 200
/// back-to-back endpoint updates, then the tool's RSS.
fn small(tool: &Tool, rt: &tokio::runtime::Runtime, puts: usize) -> Small {
    let etcd = Etcd::start();
    let store = store_for(&etcd);
    let ks = Keyspace::default();
    let dir = tempfile::tempdir().unwrap();
    let (out, marker) = (dir.path().join("servers.cfg"), dir.path().join("reloads"));
    let address = |version: &str, i: u32| {
        format!(
            "127.0.0.1:{}",
            if version == "v1" { 9000 } else { 9100 } + i
        )
    };
    let mut servers = BTreeMap::new();
    let mut seed = Seed::new(&ks);
    for i in 1..=3 {
        let instance = format!("instance{i}");
        for v in ["v1", "v2"] {
            seed.endpoint("app1", &instance, v, endpoint_value(&address(v, i)));
        }
        seed.route("app1", &instance, "v1");
        servers.insert(("app1".to_string(), instance), address("v1", i));
    }
    rt.block_on(seed.write(&store));

    let poller = Poller::start(&out, &marker, true);
    let proc = tool.start(dir.path(), &etcd, &out, &marker);
    let name = tool.name();
    poller.wait_install(0, Some(&expected(&servers)), name);
    poller.wait_reloads(1, name);
    std::thread::sleep(SPACING);

    // (1) puts on the idle path.
    let route = ks.key(&Key::Route {
        app: "app1".into(),
        instance: "instance1".into(),
    });
    let slot = ("app1".to_string(), "instance1".to_string());
    let (mut put_rtt, mut installed, mut reloaded) = (Vec::new(), Vec::new(), Vec::new());
    let mut version = "v1";
    for _ in 0..puts {
        version = if version == "v1" { "v2" } else { "v1" };
        servers.insert(slot.clone(), address(version, 1));
        let want = expected(&servers);
        let (from, reloads) = (poller.installs(), poller.reloads());
        let t0 = Instant::now();
        rt.block_on(store.put(&route, version, None)).unwrap();
        put_rtt.push(ms(t0.elapsed()));
        let t_installed = poller.wait_install(from, Some(&want), name);
        let t_reloaded = poller.wait_reloads(reloads + 1, name);
        installed.push(ms(t_installed.saturating_duration_since(t0)));
        reloaded.push(ms(t_reloaded.saturating_duration_since(t0)));
        std::thread::sleep(SPACING);
    }

    // (2) a burst: 200 back-to-back puts, each a new address of instance1's endpoint.
    let endpoint = ks.key(&Key::Endpoint {
        app: "app1".into(),
        instance: "instance1".into(),
        version: version.into(),
    });
    let (from, reloads) = (poller.installs(), poller.reloads());
    let mut last_put = Instant::now();
    let mut final_address = String::new();
    rt.block_on(async {
        for i in 0..BURST {
            final_address = format!("127.0.0.1:{}", 20000 + i);
            last_put = Instant::now();
            store
                .put(&endpoint, endpoint_value(&final_address), None)
                .await
                .unwrap();
        }
    });
    servers.insert(slot, final_address);
    let t_converged = poller.wait_install(from, Some(&expected(&servers)), name);
    // Any install still under way finishes; then nothing may change any more.
    std::thread::sleep(Duration::from_secs(1));
    let burst_installs = poller.reloads() - reloads;
    let seen_changes = poller.installs() - from;
    assert_eq!(
        std::fs::read(&out).unwrap(),
        expected(&servers),
        "{name}: the file moved away from the final state"
    );

    // (3) RSS at rest after the run.
    let rss = rss_mib(proc.id());
    drop(proc);

    put_rtt.sort_by(f64::total_cmp);
    installed.sort_by(f64::total_cmp);
    reloaded.sort_by(f64::total_cmp);
    eprintln!(
        "  {name}: put alone {:.2} ms, installed p50 {:.2} / p99 {:.2} ms, reload done p50 {:.2} ms; \
         burst converged {:.1} ms after the last put, {burst_installs} installs (poller saw {seen_changes} changes); RSS {rss:.1} MiB",
        percentile(&put_rtt, 0.5),
        percentile(&installed, 0.5),
        percentile(&installed, 0.99),
        percentile(&reloaded, 0.5),
        ms(t_converged.saturating_duration_since(last_put)),
    );
    Small {
        put_p50: percentile(&put_rtt, 0.5),
        installed_p50: percentile(&installed, 0.5),
        installed_p99: percentile(&installed, 0.99),
        reloaded_p50: percentile(&reloaded, 0.5),
        converged: ms(t_converged.saturating_duration_since(last_put)),
        burst_installs: burst_installs as f64,
        rss,
    }
}

/// 1,000 apps × 10 routed endpoints (a 10,000-line file): `flips` route flips of one
/// slot, 0.3 s apart. Returns put → installed p50 and the tool's RSS.
fn big(tool: &Tool, rt: &tokio::runtime::Runtime, flips: usize) -> (f64, f64) {
    const APPS: u32 = 1000;
    const SLOTS: u32 = 10;
    let etcd = Etcd::start();
    let store = store_for(&etcd);
    let ks = Keyspace::default();
    let dir = tempfile::tempdir().unwrap();
    let (out, marker) = (dir.path().join("servers.cfg"), dir.path().join("reloads"));
    let mut servers = BTreeMap::new();
    let mut seed = Seed::new(&ks);
    for a in 0..APPS {
        for i in 0..SLOTS {
            let (app, instance) = (format!("app{a:04}"), format!("i{i}"));
            let address = format!("127.0.0.1:{}", 10000 + a * SLOTS + i);
            seed.endpoint(&app, &instance, "v1", endpoint_value(&address))
                .route(&app, &instance, "v1");
            servers.insert((app, instance), address);
        }
    }
    // The flipped slot's second version.
    let flipped = ("app0000".to_string(), "i0".to_string());
    let v2_address = "127.0.0.1:30000".to_string();
    seed.endpoint(&flipped.0, &flipped.1, "v2", endpoint_value(&v2_address));
    let v1_address = servers[&flipped].clone();
    rt.block_on(seed.write(&store));

    let name = tool.name();
    let poller = Poller::start(&out, &marker, false);
    let proc = tool.start(dir.path(), &etcd, &out, &marker);
    wait_file(&out, &expected(&servers), name);
    poller.wait_reloads(1, name);
    std::thread::sleep(SPACING);

    let route = ks.key(&Key::Route {
        app: flipped.0.clone(),
        instance: flipped.1.clone(),
    });
    let mut installed = Vec::new();
    let mut version = "v1";
    for _ in 0..flips {
        version = if version == "v1" { "v2" } else { "v1" };
        let (from, reloads) = (poller.installs(), poller.reloads());
        let t0 = Instant::now();
        rt.block_on(store.put(&route, version, None)).unwrap();
        let t_installed = poller.wait_install(from, None, name);
        poller.wait_reloads(reloads + 1, name);
        installed.push(ms(t_installed.saturating_duration_since(t0)));
        std::thread::sleep(SPACING);
    }
    let address = if version == "v1" {
        v1_address
    } else {
        v2_address
    };
    servers.insert(flipped, address);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        expected(&servers),
        "{name}: wrong content after the flips"
    );
    let rss = rss_mib(proc.id());
    drop(proc);
    installed.sort_by(f64::total_cmp);
    eprintln!(
        "  {name}: 1,000 apps x 10: flip installed p50 {:.1} ms (min {:.1}, max {:.1}); RSS {rss:.1} MiB",
        percentile(&installed, 0.5),
        installed[0],
        installed[installed.len() - 1],
    );
    (percentile(&installed, 0.5), rss)
}

fn round(tool: &Tool, rt: &tokio::runtime::Runtime, puts: usize, flips: usize) -> Sample {
    let started = Instant::now();
    let s = small(tool, rt, puts);
    let (big_installed_p50, big_rss) = big(tool, rt, flips);
    eprintln!(
        "  {}: round took {:.0} s",
        tool.name(),
        started.elapsed().as_secs_f64()
    );
    Sample {
        put_p50: s.put_p50,
        installed_p50: s.installed_p50,
        installed_p99: s.installed_p99,
        reloaded_p50: s.reloaded_p50,
        converged: s.converged,
        burst_installs: s.burst_installs,
        rss: s.rss,
        big_installed_p50,
        big_rss,
    }
}

/// A number as in the tables: one decimal below 10, none above.
fn num(v: f64) -> String {
    if v.abs() < 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// "min–max" over the rounds (one value when they agree at the shown precision).
fn span(values: &[f64], fmt: fn(f64) -> String) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (a, b) = (fmt(min), fmt(max));
    if a == b {
        a
    } else {
        format!("{a}–{b}")
    }
}

fn ratio(v: f64) -> String {
    if v.abs() < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.0}")
    }
}

type Field = fn(&Sample) -> f64;

/// A table row: its label, the numbers in its cells (p50 / p99), how they are shown.
type Row = (&'static str, &'static [Field], fn(f64) -> String);

fn main() {
    let Args {
        rounds,
        puts,
        flips,
    } = Args::parse();
    let mut tools = vec![Tool::Disco];
    match std::env::var_os("CONFD").filter(|p| !p.is_empty()) {
        Some(path) => tools.push(Tool::Confd(PathBuf::from(path))),
        None => eprintln!("confd skipped: CONFD is not set (CONFD=/path/to/confd compares)"),
    }
    let runtime = disco_bench::runtime();

    let started = Instant::now();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); tools.len()];
    for r in 1..=rounds {
        for (t, tool) in tools.iter().enumerate() {
            eprintln!("round {r}/{rounds}: {}", tool.name());
            samples[t].push(round(tool, &runtime, puts, flips));
        }
    }

    let rows: [Row; 8] = [
        ("etcd put round trip alone p50 (ms)", &[|s| s.put_p50], num),
        (
            "put → installed p50 / p99 (ms)",
            &[|s| s.installed_p50, |s| s.installed_p99],
            num,
        ),
        ("put → reload done p50 (ms)", &[|s| s.reloaded_p50], num),
        (
            "200 back-to-back puts: converged after the last put (ms)",
            &[|s| s.converged],
            num,
        ),
        (
            "installs (check + reload) during that burst",
            &[|s| s.burst_installs],
            |v| format!("{v:.0}"),
        ),
        ("RSS after the run (MiB)", &[|s| s.rss], |v| {
            format!("{v:.1}")
        }),
        (
            "1,000 apps × 10 endpoints: one flip, put → installed p50 (ms)",
            &[|s| s.big_installed_p50],
            num,
        ),
        (
            "RSS with 1,000 apps × 10 endpoints (MiB)",
            &[|s| s.big_rss],
            |v| format!("{v:.1}"),
        ),
    ];
    println!(
        "{rounds} interleaved rounds; {puts} puts 0.3 s apart, a burst of {BURST}, {flips} flips of 1,000 apps x 10 endpoints; ranges are min–max over the rounds{}",
        if tools.len() == 1 {
            "; confd skipped (CONFD not set)"
        } else {
            ""
        }
    );
    println!();
    if tools.len() == 1 {
        println!("| | disco |\n|---|---|");
    } else {
        println!("| | disco | confd | disco/confd |\n|---|---|---|---|");
    }
    for (label, fields, fmt) in rows {
        let cell = |t: usize| {
            fields
                .iter()
                .map(|f| span(&samples[t].iter().map(f).collect::<Vec<_>>(), fmt))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        if tools.len() == 1 {
            println!("| {label} | {} |", cell(0));
        } else {
            // Per round (the two tools ran back to back), disco's value over confd's.
            let ratios = fields
                .iter()
                .map(|f| {
                    let r: Vec<f64> = samples[0]
                        .iter()
                        .zip(&samples[1])
                        .map(|(d, c)| f(d) / f(c))
                        .collect();
                    span(&r, ratio)
                })
                .collect::<Vec<_>>()
                .join(" / ");
            println!("| {label} | {} | {} | {ratios} |", cell(0), cell(1));
        }
    }
    eprintln!("took {:.0} s", started.elapsed().as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::Args;
    use disco_bench::parse_flags;

    /// Without flags, and as bench/run.sh and bench/README.md call it.
    #[test]
    fn the_documented_invocations_parse() {
        let a: Args = parse_flags(&[]).unwrap();
        assert_eq!((a.rounds, a.puts, a.flips), (3, 100, 10));
        assert_eq!(parse_flags::<Args>(&["--rounds", "3"]).unwrap().rounds, 3);
        let a: Args = parse_flags(&["--rounds", "1", "--puts", "20", "--flips", "2"]).unwrap();
        assert_eq!((a.rounds, a.puts, a.flips), (1, 20, 2));
    }

    #[test]
    fn counts_are_at_least_one() {
        for flag in ["--rounds", "--puts", "--flips"] {
            assert!(parse_flags::<Args>(&[flag, "0"]).is_err(), "{flag} 0");
        }
    }
}
