//! The harness against the real HAProxy 2.6 and nginx 1.22: traffic flows through them
//! to test backends, reloads under load drop nothing, the load counter does count
//! failures, and dropping a proxy leaves no process behind. Needs /usr/sbin/haproxy and
//! /usr/sbin/nginx: the tests fail, not skip, without them.

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use disco_harness::ports::free_port;
use disco_harness::process::is_running;
use disco_harness::{wait_for, Backend, Haproxy, Load, LoadOptions, Nginx};

/// A HAProxy fragment: a frontend on `port` balancing over `backends`.
fn haproxy_fragment(path: &Path, port: u16, backends: &[&Backend]) {
    let mut text = format!(
        "frontend app\n    bind 127.0.0.1:{port}\n    default_backend app\n\nbackend app\n    balance roundrobin\n"
    );
    for (i, b) in backends.iter().enumerate() {
        text.push_str(&format!("    server s{i} {}\n", b.addr()));
    }
    std::fs::write(path, text).unwrap();
}

/// An nginx fragment: a server on `port` proxying to an upstream of `backends`.
fn nginx_fragment(path: &Path, port: u16, backends: &[&Backend]) {
    let servers: String = backends
        .iter()
        .map(|b| format!("    server {};\n", b.addr()))
        .collect();
    std::fs::write(
        path,
        format!(
            "upstream u {{\n{servers}}}\nserver {{\n    listen 127.0.0.1:{port};\n    location / {{ proxy_pass http://u; }}\n}}\n"
        ),
    )
    .unwrap();
}

fn keep_alive(connections: usize) -> LoadOptions {
    LoadOptions {
        connections,
        keep_alive: true,
        headers: vec![],
    }
}

/// Asserts that none of `pids` runs any more (zombies of reparented orphans count as
/// gone: they hold no socket and run no code).
fn assert_all_gone(what: &str, pids: &[u32]) {
    let left: Vec<u32> = pids.iter().copied().filter(|&p| is_running(p)).collect();
    assert!(left.is_empty(), "{what}: processes {left:?} survived drop");
}

#[test]
fn haproxy_routes_traffic_to_a_backend() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start("v1");
    let port = free_port();
    let fragment = dir.path().join("disco.cfg");
    haproxy_fragment(&fragment, port, &[&backend]);
    let haproxy = Haproxy::start(&fragment);

    let load = Load::start(&format!("http://127.0.0.1:{port}/"), keep_alive(4));
    load.wait_for_ok(200);
    let report = load.stop();
    assert!(
        report.ok > 0 && report.failed == 0,
        "{report:?}\n{}",
        haproxy.log()
    );
    assert_eq!(report.by_body.keys().collect::<Vec<_>>(), ["v1"]);
    assert!(backend.requests() >= report.ok);
    assert!(haproxy.master_cli("show proc").contains("master"));
}

#[test]
fn haproxy_reloads_under_load_without_failures() {
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2) = (Backend::start("v1"), Backend::start("v2"));
    let port = free_port();
    let fragment = dir.path().join("disco.cfg");
    haproxy_fragment(&fragment, port, &[&v1]);
    let haproxy = Haproxy::start(&fragment);
    let mut workers = haproxy.worker_pids();
    assert_eq!(workers.len(), 1, "{workers:?}");

    for keep_alive in [true, false] {
        let load = Load::start(
            &format!("http://127.0.0.1:{port}/"),
            LoadOptions {
                connections: 8,
                keep_alive,
                headers: vec![],
            },
        );
        load.wait_for_ok(100);
        for round in 0..4 {
            let to = if round % 2 == 0 { &v2 } else { &v1 };
            haproxy_fragment(&fragment, port, &[to]);
            let new_workers = haproxy.reload().unwrap();
            assert!(
                new_workers.iter().all(|p| !workers.contains(p)),
                "workers {workers:?} → {new_workers:?}"
            );
            assert_eq!(haproxy.worker_pids(), new_workers);
            workers = new_workers;
            let before = load.snapshot();
            let after = load.wait_for_ok(100);
            // The last 100 requests went to the backend just reloaded in.
            let window = after.since(&before);
            assert!(
                window.by_body.get(to.version()).copied().unwrap_or(0) > 0,
                "{window:?}"
            );
        }
        let report = load.stop();
        eprintln!("haproxy, keep_alive={keep_alive}: {report:?}");
        assert_eq!(
            report.failed,
            0,
            "keep_alive={keep_alive}: {report:?}\n{}",
            haproxy.log()
        );
        assert_eq!(report.sent, report.ok);
    }
}

#[test]
fn haproxy_refused_reload_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start("v1");
    let port = free_port();
    let fragment = dir.path().join("disco.cfg");
    haproxy_fragment(&fragment, port, &[&backend]);
    let haproxy = Haproxy::start(&fragment);
    let workers = haproxy.worker_pids();
    std::fs::write(&fragment, "bogus keyword\n").unwrap();
    let err = haproxy.reload().unwrap_err();
    assert!(err.contains("unknown keyword"), "{err}");
    assert_eq!(haproxy.worker_pids(), workers);
    let url = format!("http://127.0.0.1:{port}/");
    assert_eq!(disco_harness::get(&url, &[]).unwrap(), (200, "v1".into()));
}

#[test]
fn haproxy_drop_leaves_no_process_even_with_draining_old_workers() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start("v1");
    let port = free_port();
    let fragment = dir.path().join("disco.cfg");
    haproxy_fragment(&fragment, port, &[&backend]);
    let haproxy = Haproxy::start(&fragment);
    // A half-sent request keeps the old worker busy after the reload.
    let mut stuck = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stuck.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let old = haproxy.worker_pids();
    haproxy.reload().unwrap();
    let show_proc = haproxy.master_cli("show proc");
    assert!(show_proc.contains("# old workers"), "{show_proc}");
    let mut pids = disco_harness::process::descendants(haproxy.pid());
    pids.push(haproxy.pid());
    assert!(
        pids.len() >= 3 && pids.contains(&old[0]),
        "{pids:?}\n{show_proc}"
    );
    drop(haproxy);
    assert_all_gone("haproxy", &pids);
}

#[test]
fn nginx_routes_traffic_and_reloads_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2) = (Backend::start("v1"), Backend::start("v2"));
    let port = free_port();
    let fragment = dir.path().join("disco.conf");
    nginx_fragment(&fragment, port, &[&v1]);
    let nginx = Nginx::start(&fragment);
    let mut workers = nginx.worker_pids();
    assert_eq!(workers.len(), 1, "{workers:?}");

    let load = Load::start(&format!("http://127.0.0.1:{port}/"), keep_alive(8));
    load.wait_for_ok(100);
    for round in 0..4 {
        let to = if round % 2 == 0 { &v2 } else { &v1 };
        nginx_fragment(&fragment, port, &[to]);
        let new_workers = nginx.reload().unwrap();
        assert!(
            new_workers.iter().all(|p| !workers.contains(p)),
            "workers {workers:?} → {new_workers:?}"
        );
        workers = new_workers;
        let before = load.snapshot();
        let window = load.wait_for_ok(100).since(&before);
        assert!(
            window.by_body.get(to.version()).copied().unwrap_or(0) > 0,
            "{window:?}"
        );
    }
    let report = load.stop();
    eprintln!("nginx: {report:?}");
    assert!(report.ok > 0, "{report:?}");
    assert_eq!(report.failed, 0, "{report:?}\n{}", nginx.log());
}

#[test]
fn nginx_reload_by_command_shows_new_workers_and_refuses_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let fragment = dir.path().join("missing.conf");
    let nginx = Nginx::start(&fragment);
    assert!(fragment.exists(), "the fragment is created empty");
    let before = nginx.worker_pids();
    nginx.command(&["-s", "reload"]).unwrap();
    disco_harness::wait_for("new nginx workers", Duration::from_secs(10), || {
        let now = nginx.worker_pids();
        (!now.is_empty() && now != before).then_some(())
    });
    std::fs::write(&fragment, "bogus;\n").unwrap();
    let err = nginx.reload().unwrap_err();
    assert!(err.contains("unknown directive"), "{err}");
    assert_eq!(
        disco_harness::get(&nginx.ready_url(), &[]).unwrap(),
        (200, "ok".into())
    );
}

#[test]
fn nginx_drop_leaves_no_process() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start("v1");
    let port = free_port();
    let fragment = dir.path().join("disco.conf");
    nginx_fragment(&fragment, port, &[&backend]);
    let nginx = Nginx::start(&fragment);
    let url = format!("http://127.0.0.1:{port}/");
    assert_eq!(disco_harness::get(&url, &[]).unwrap(), (200, "v1".into()));
    let mut pids = disco_harness::process::descendants(nginx.pid());
    pids.push(nginx.pid());
    assert!(pids.len() >= 2, "{pids:?}");
    let pid_file = nginx.pid_file();
    drop(nginx);
    assert_all_gone("nginx", &pids);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(!pid_file.exists());
}

#[test]
fn a_backend_killed_mid_load_is_counted_as_failures() {
    // Directly: the load's kept-alive connections break, reconnecting is refused.
    let backend = Backend::start("v1");
    let load = Load::start(&format!("http://{}/", backend.addr()), keep_alive(4));
    load.wait_for_ok(100);
    backend.stop();
    wait_for("a failure counted", Duration::from_secs(10), || {
        (load.snapshot().failed > 0).then_some(())
    });
    let report = load.stop();
    assert!(report.ok >= 100 && report.failed > 0, "{report:?}");
    assert_eq!(report.sent, report.ok + report.failed);

    // Through HAProxy: its only server is gone, so it answers 503.
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start("v1");
    let port = free_port();
    let fragment = dir.path().join("disco.cfg");
    haproxy_fragment(&fragment, port, &[&backend]);
    let _haproxy = Haproxy::start(&fragment);
    let load = Load::start(&format!("http://127.0.0.1:{port}/"), keep_alive(4));
    load.wait_for_ok(100);
    backend.stop();
    wait_for("a 50x counted", Duration::from_secs(10), || {
        let report = load.snapshot();
        report
            .errors
            .iter()
            .any(|e| e.starts_with("status 50"))
            .then_some(())
    });
    let report = load.stop();
    assert!(report.failed > 0, "{report:?}");
    assert!(
        report.errors.iter().any(|e| e.starts_with("status 50")),
        "{report:?}"
    );
}
