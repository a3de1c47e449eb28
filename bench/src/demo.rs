//! The demo (`scripts/demo.sh`): the seed's story on loopback with the real things.
//! etcd, three instances of a demo app in v1 and three in v2 (each registered by its
//! own `disco-agent register`), HAProxy and nginx each driven by an LB agent, and live
//! traffic through both while `discoctl` promotes a canary, opens a dark canary for
//! internal requests, switches blue/green and rolls back. After each step it prints the
//! share of traffic per version and the failed requests (0). Everything it started is
//! stopped at the end, also on Ctrl-C; `--keep` leaves it running to explore, with
//! `discoctl dashboard` started at the beginning (its address printed) to watch it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use disco_bench::{sibling, Proc};
use disco_harness::{Backend, Etcd, Haproxy, Load, LoadOptions, LoadReport, Nginx};

/// The demo: etcd, a demo app in v1 and v2, HAProxy and nginx each driven by an LB agent,
/// live traffic through both while discoctl promotes a canary, opens a dark canary,
/// switches blue/green and rolls back. Run it through scripts/demo.sh, which builds it.
#[derive(Parser, Debug)]
#[command(name = "disco-demo")]
struct Args {
    /// Leave everything running at the end to explore (Ctrl-C stops it), and print
    /// commands to try; starts `discoctl dashboard` first and prints its address.
    #[arg(long)]
    keep: bool,
    /// Shorter traffic windows and canary intervals (what CI runs).
    #[arg(long)]
    ci: bool,
}

struct Demo {
    endpoints: String,
    dir: PathBuf,
    ci: bool,
}

impl Demo {
    fn discoctl(&self, args: &[&str]) -> bool {
        self.discoctl_code(args) == Some(0)
    }

    fn discoctl_code(&self, args: &[&str]) -> Option<i32> {
        println!("$ discoctl {}", args.join(" "));
        Command::new(sibling("discoctl"))
            .args(args)
            .env("DISCO_ETCD_ENDPOINTS", &self.endpoints)
            .env("DISCO_ACTOR", "demo@localhost")
            .status()
            .expect("running discoctl")
            .code()
    }

    fn agent(&self, id: &str, args: &[String]) -> Proc {
        let log = std::fs::File::create(self.dir.join(format!("{id}.log"))).unwrap();
        Proc::term_on_drop(
            Command::new(sibling("disco-agent"))
                .arg("--agent-id")
                .arg(id)
                .args(args)
                .env("DISCO_ETCD_ENDPOINTS", &self.endpoints)
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("starting disco-agent"),
        )
    }
}

/// The address `discoctl dashboard` printed at start (with its token, when it made one).
fn dashboard_url(dashboard: &disco_testkit::Dashboard) -> String {
    dashboard
        .output()
        .lines()
        .find_map(|l| l.strip_prefix("discoctl dashboard: "))
        .map(|l| l.trim_end_matches(" (read-only)").to_string())
        .unwrap_or_else(|| dashboard.url.clone())
}

/// Traffic per version over the next `n` requests of each load, and failures so far.
fn show(loads: &[(&str, Load)], n: u64) {
    for (name, load) in loads {
        load.wait_for_ok(30);
        let before = load.snapshot();
        let after = load.wait_for_ok(n);
        let window: LoadReport = after.since(&before);
        let total: u64 = window.by_body.values().sum();
        let shares: Vec<String> = window
            .by_body
            .iter()
            .map(|(v, c)| format!("{v} {:>3.0}%", 100.0 * *c as f64 / total.max(1) as f64))
            .collect();
        println!(
            "   {name:<24} {:<20} requests so far {:>7}, failed {}",
            shares.join("  "),
            after.sent,
            after.failed
        );
    }
}

fn main() {
    let Args { keep, ci } = Args::parse();
    // Everything the demo starts is stopped when `run` returns, before the exit.
    let code = match run(keep, ci) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("demo: {e}");
            1
        }
    };
    std::process::exit(code);
}

fn run(keep: bool, ci: bool) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // Ctrl-C: stop between steps; Drop cleans up everything started.
        let _ = std::thread::spawn(move || {
            let mut signals = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            signals.block_on(async {
                let _ = tokio::signal::ctrl_c().await;
            });
            stop.store(true, Ordering::SeqCst);
            let _ = &mut signals;
        });
    }
    let work = tempfile::Builder::new()
        .prefix("disco-demo-")
        .tempdir()
        .unwrap();
    disco_harness::nginx::open_to_workers(work.path());
    let etcd = Etcd::start();
    let demo = Demo {
        endpoints: etcd.endpoints().join(","),
        dir: work.path().to_path_buf(),
        ci,
    };
    println!("etcd is up at {}", demo.endpoints);

    // The application: three instances in v1 and three in v2, each registered by its
    // own agent (as on an app host).
    let mut instances = BTreeMap::new();
    let mut registrations = Vec::new();
    for i in 1..=3 {
        for v in ["v1", "v2"] {
            let backend = Backend::start(v);
            let instance = format!("instance{i}");
            registrations.push(
                demo.agent(
                    &format!("app-{instance}-{v}"),
                    &[
                        "register",
                        "--app",
                        "app1",
                        "--instance",
                        &instance,
                        "--version",
                        v,
                        "--address",
                        &backend.addr(),
                        "--health",
                        "/healthz",
                        "--interval",
                        "300ms",
                        "--rise",
                        "1",
                        "--lease-ttl",
                        "5s",
                    ]
                    .map(String::from),
                ),
            );
            instances.insert((instance, v), backend);
        }
    }
    println!("demo app: instance1-3 in v1 and v2, each registered by `disco-agent register`");

    // The load balancers: HAProxy and nginx, each with its LB agent.
    let hfile = demo.dir.join("disco.cfg");
    let nfile = demo.dir.join("disco.conf");
    let haproxy = Haproxy::start(&hfile);
    let nginx = Nginx::start(&nfile);
    let hport = disco_harness::ports::free_port();
    let nport = disco_harness::ports::free_port();
    let config = |id: &str, target: String| -> String {
        let path = demo.dir.join(format!("{id}.toml"));
        std::fs::write(
            &path,
            format!(
                "cache_path = \"{}/{id}.cache.json\"\n{target}",
                demo.dir.display()
            ),
        )
        .unwrap();
        path.display().to_string()
    };
    let hconf = config(
        "lb-haproxy",
        format!(
            "[[target]]\nkind = \"haproxy\"\npath = \"{}\"\nhaproxy_config = \"{}\"\nmaster_socket = \"{}\"\nstats_socket = \"{s}\"\nruntime_socket = \"{s}\"\n[target.listen]\napp1 = \"127.0.0.1:{hport}\"\n",
            hfile.display(),
            haproxy.main_config().display(),
            haproxy.master_socket().display(),
            s = haproxy.stats_socket().display()
        ),
    );
    let nconf = config(
        "lb-nginx",
        format!(
            "[[target]]\nkind = \"nginx\"\npath = \"{}\"\nnginx_args = {:?}\npid_file = \"{}\"\naccess_log = \"{d}/nginx-access.log\"\nbalancer_socket = \"{d}/nginx-balancer.sock\"\n[target.listen]\napp1 = \"127.0.0.1:{nport}\"\n",
            nfile.display(),
            nginx.nginx_test_args(),
            nginx.pid_file().display(),
            d = demo.dir.display()
        ),
    );
    let _lb_h = demo.agent("lb-haproxy", &["--config".into(), hconf]);
    let _lb_n = demo.agent("lb-nginx", &["--config".into(), nconf]);
    println!(
        "HAProxy on 127.0.0.1:{hport}, nginx on 127.0.0.1:{nport}, each driven by an LB agent\n"
    );
    // With --keep, the dashboard from the start: the story can be watched live.
    let dashboard = keep.then(|| {
        disco_testkit::Dashboard::start(
            &sibling("discoctl"),
            &etcd.endpoints(),
            &["--allow-actions", "--name", "demo"],
        )
    });
    let dashboard_url = dashboard.as_ref().map(dashboard_url);
    if let Some(url) = &dashboard_url {
        println!("dashboard (watch the story live): {url}\n");
    }

    let step = |title: &str| println!("\n== {title}");
    let must = |ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(format!(
                "a discoctl step failed; logs in {}",
                demo.dir.display()
            ))
        }
    };
    step("the seed: app1 with three slots on v1");
    must(demo.discoctl(&["app", "set", "app1", "--listen", "0.0.0.0:8080"]))?;
    // Wait until every instance registered itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new(sibling("discoctl"))
            .args(["-o", "json", "status", "app1"])
            .env("DISCO_ETCD_ENDPOINTS", &demo.endpoints)
            .output()
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let registered = doc["apps"]["app1"]["endpoints"]
            .as_object()
            .map(|m| {
                m.values()
                    .map(|v| v.as_object().map_or(0, |o| o.len()))
                    .sum::<usize>()
            })
            .unwrap_or(0);
        if registered == 6 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "instances did not register within 30s; logs in {}",
                demo.dir.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for i in 1..=3 {
        must(demo.discoctl(&["route", "set", "app1", &format!("instance{i}"), "v1"]))?;
    }
    // Both LB agents up and serving the seed before the traffic starts.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let converged = runtime.block_on(async {
        let store = disco::store::Store::new(disco::store::EtcdConfig {
            endpoints: etcd.endpoints(),
            ..Default::default()
        })
        .unwrap();
        let ks = disco::Keyspace::default();
        let deadline = Instant::now() + Duration::from_secs(30);
        while disco::converge::lb_agents(&store, &ks)
            .await
            .map(|a| a.len())
            .unwrap_or(0)
            < 2
        {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (_, kvs) = store.get_prefix(&ks.apps(), None).await.unwrap();
        let latest = kvs.iter().map(|kv| kv.mod_revision).max().unwrap_or(0);
        disco::converge::wait(&store, &ks, latest, Duration::from_secs(30))
            .await
            .map(|w| w.converged())
            .unwrap_or(false)
    });
    if !converged {
        return Err(format!(
            "the LB agents did not apply the seed within 30s; logs in {}",
            demo.dir.display()
        ));
    }
    must(demo.discoctl(&["status", "app1"]))?;

    let internal = vec![("X-Internal".to_string(), "1".to_string())];
    let load = |port: u16, keep_alive: bool, headers: Vec<(String, String)>| {
        Load::start(
            &format!("http://127.0.0.1:{port}/"),
            LoadOptions {
                connections: 2,
                keep_alive,
                headers,
            },
        )
    };
    let loads = vec![
        ("HAProxy public", load(hport, true, vec![])),
        ("HAProxy new connections", load(hport, false, vec![])),
        ("HAProxy internal", load(hport, true, internal.clone())),
        ("nginx public", load(nport, true, vec![])),
        ("nginx new connections", load(nport, false, vec![])),
        ("nginx internal", load(nport, true, internal)),
    ];
    let haproxy_reloads = haproxy.reloads();
    let nginx_workers = nginx.worker_pids();
    println!("\nlive traffic through both proxies: public, fresh connections, and internal (X-Internal: 1)");
    let window = if demo.ci { 300 } else { 2000 };
    show(&loads, window);

    let steps: Vec<(&str, Vec<&str>)> = vec![
        (
            "canary: one slot to v2 (returns once both LB agents applied it)",
            vec!["promote", "app1", "v2"],
        ),
        (
            "dark canary: internal requests (X-Internal: 1) reach v2 only",
            vec!["dark", "app1", "v2", "--header", "X-Internal=1"],
        ),
        ("dark canary off", vec!["dark", "app1", "--off"]),
        (
            "blue/green: every slot to v2 at once",
            vec!["switch", "app1", "v2"],
        ),
        (
            "rollback: back to v1, instantly (v1 never stopped)",
            vec!["rollback", "app1"],
        ),
    ];
    for (title, args) in steps {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        step(title);
        must(demo.discoctl(&args))?;
        show(&loads, window);
    }
    let interval = if demo.ci { "3s" } else { "10s" };
    let mut expected_500s = 0;
    if !stop.load(Ordering::SeqCst) {
        step("automated canary of a healthy v2: steps 1 slot, then all, each observed for the interval");
        must(demo.discoctl(&[
            "canary",
            "app1",
            "v2",
            "--steps",
            "1,all",
            "--interval",
            interval,
        ]))?;
        show(&loads, window);
        step("back to v1 for the next act");
        must(demo.discoctl(&["rollback", "app1"]))?;
        show(&loads, window);
    }
    if !stop.load(Ordering::SeqCst) {
        step(
            "automated canary of a broken v2 (30% of its answers are 500), internal traffic first",
        );
        for ((_, version), backend) in &instances {
            if *version == "v2" {
                backend.set_error_rate(0.3);
            }
        }
        let internal_failed = |loads: &[(&str, Load)]| -> u64 {
            loads
                .iter()
                .filter(|(n, _)| n.ends_with("internal"))
                .map(|(_, l)| l.snapshot().failed)
                .sum()
        };
        let before = internal_failed(&loads);
        let code = demo.discoctl_code(&[
            "canary",
            "app1",
            "v2",
            "--dark-first",
            "--header",
            "X-Internal=1",
            "--steps",
            "1,all",
            "--interval",
            interval,
        ]);
        if code != Some(6) {
            return Err(format!(
                "the broken canary should have been rolled back (exit 6), got {code:?}"
            ));
        }
        println!(
            "   exit code 6: rolled back by the analysis; the public never reached the broken v2"
        );
        show(&loads, window);
        expected_500s = internal_failed(&loads) - before;
        println!("   internal requests answered 500 by the broken v2 before the rollback: {expected_500s}");
    }
    step("history");
    must(demo.discoctl(&["history", "app1"]))?;

    let mut failed = 0;
    let mut sent = 0;
    println!("\n== summary");
    for (name, load) in loads {
        let r = load.stop();
        println!(
            "   {name:<24} sent {:>7}  failed {}  retried {}",
            r.sent, r.failed, r.retried
        );
        failed += r.failed;
        sent += r.sent;
    }
    println!(
        "   HAProxy reloads during the story: {} (routing changes go through its Runtime API; the first dark canary with a new header adds its match, a reload)",
        haproxy.reloads() - haproxy_reloads
    );
    let workers = nginx.worker_pids();
    println!(
        "   nginx workers during the story: {} ({nginx_workers:?} → {workers:?}; routing changes are pushed to its Lua balancer)",
        if workers == nginx_workers { "unchanged, no reload" } else { "replaced: reloaded" }
    );
    // The broken canary's own 500s on internal traffic are the point of that act:
    // reported, not counted as failures of the upgrade machinery.
    let failed = failed - expected_500s;
    println!(
        "   total: {sent} requests, {failed} failed (not counting the {expected_500s} internal 500s of the broken canary)"
    );

    if keep && !stop.load(Ordering::SeqCst) {
        println!(
            "\neverything keeps running (Ctrl-C stops it). Try:\n  export DISCO_ETCD_ENDPOINTS={}\n  {} status app1\n  {} promote app1 v2\n  curl -s http://127.0.0.1:{hport}/ ; curl -s http://127.0.0.1:{nport}/\n  curl -s -H 'X-Internal: 1' http://127.0.0.1:{hport}/\nlogs: {}",
            demo.endpoints,
            sibling("discoctl").display(),
            sibling("discoctl").display(),
            demo.dir.display()
        );
        if let Some(url) = &dashboard_url {
            println!("dashboard (actions allowed, as dashboard:demo; the token is in the address): {url}");
        }
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // Registering agents drain on SIGTERM (Drop), while the LB agents still run.
    drop(registrations);
    drop(instances);
    if failed > 0 {
        return Err(format!(
            "{failed} requests failed; logs in {}",
            demo.dir.display()
        ));
    }
    println!("demo finished: 0 failed requests");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Args;
    use disco_bench::parse_flags;

    /// As scripts/demo.sh (which passes on exactly these), .ci/run and README.md call it.
    #[test]
    fn the_documented_invocations_parse() {
        let cases: [(&[&str], bool, bool); 4] = [
            (&[], false, false),
            (&["--ci"], false, true),
            (&["--keep"], true, false),
            (&["--keep", "--ci"], true, true),
        ];
        for (flags, keep, ci) in cases {
            let a: Args = parse_flags(flags).unwrap();
            assert_eq!((a.keep, a.ci), (keep, ci), "{flags:?}");
        }
        assert!(parse_flags::<Args>(&["--fast"]).is_err());
    }
}
