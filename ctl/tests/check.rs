//! `discoctl check` as Nagios/Sensu run it, against real etcd, an LB agent driving
//! HAProxy (publishing statistics) and a template agent: OK with perfdata; CRITICAL
//! for a stale agent (SIGSTOPped: its statistics stop, or it does not apply a change),
//! a failing agent and a route to a missing endpoint; WARNING for a lagging agent and a
//! 5xx share over the threshold; UNKNOWN when etcd cannot be reached.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use disco_harness::{Backend, Etcd, Load, LoadOptions};

/// Runs `discoctl check ARGS`: exit code and stdout.
fn check(etcd: &Etcd, args: &[&str]) -> (i32, String) {
    let all: Vec<&str> = ["check"].iter().chain(args).copied().collect();
    let out = discoctl(etcd, &all);
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

/// Parses a plugin output's first line: `DISCO <STATUS> - <text> | <perfdata>`.
fn parse(output: &str) -> (String, String, BTreeMap<String, String>) {
    let first = output.lines().next().unwrap_or_default();
    let (head, perf) = first
        .split_once(" | ")
        .unwrap_or_else(|| panic!("no perfdata in {first:?}"));
    let rest = head
        .strip_prefix("DISCO ")
        .unwrap_or_else(|| panic!("{first:?}"));
    let (status, text) = rest.split_once(" - ").unwrap();
    let mut perfdata = BTreeMap::new();
    for item in perf.split(' ') {
        // label=value[UOM];[warn];[crit];[min];[max]
        let (label, data) = item
            .split_once('=')
            .unwrap_or_else(|| panic!("bad perfdata {item:?}"));
        assert!(
            !label.is_empty() && !label.contains(['\'', '=', ' ']),
            "{item}"
        );
        let fields: Vec<&str> = data.split(';').collect();
        assert!(fields.len() <= 5, "{item}");
        let value = fields[0];
        assert!(value == "U" || value.parse::<f64>().is_ok(), "{item}");
        for f in &fields[1..] {
            assert!(f.is_empty() || f.parse::<f64>().is_ok(), "{item}");
        }
        perfdata.insert(label.to_string(), value.to_string());
    }
    (status.to_string(), text.to_string(), perfdata)
}

/// Runs check until its exit code is `code` (up to 30 s); returns its output.
async fn until(etcd: &Etcd, args: &[&str], code: i32) -> String {
    until_output(etcd, args, code, |_| true).await
}

/// Runs check until its exit code is `code` and `done(output)` (up to 30 s).
async fn until_output(
    etcd: &Etcd,
    args: &[&str],
    code: i32,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (got, out) = check(etcd, args);
        if got == code && done(&out) {
            return out;
        }
        if std::time::Instant::now() > deadline {
            panic!("check {args:?} exited {got}, not {code} (or not as expected): {out}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_ok_stale_failing_lagging_missing_error_rates_and_unknown() {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let v1 = Backend::start("v1");
    let v1b = Backend::start("v1");
    let seeded = seed_app(
        &store,
        "app1",
        "0.0.0.0:1",
        &[
            ("instance1", "v1", v1.addr()),
            ("instance2", "v1", v1b.addr()),
        ],
        &[("instance1", "v1"), ("instance2", "v1")],
    )
    .await;
    // Long status leases: a stopped agent stays listed, as a hung one would.
    let haproxy = ProxyAgent::haproxy(&etcd, "lb-haproxy", "60s");
    let template = template_agent(&etcd, "lb-template", "60s");
    applied(&store, &haproxy.agent, seeded).await;
    applied(&store, &template, seeded).await;
    let load = Load::start(
        &haproxy.url(),
        LoadOptions {
            connections: 2,
            keep_alive: true,
            headers: vec![],
        },
    );
    load.wait_for_ok(100);

    // All is well (once a statistics window with traffic is published).
    let out = until_output(&etcd, &["--stale-after", "2s"], 0, |out| {
        parse(out)
            .2
            .get("error_rate_app1_v1")
            .is_some_and(|v| v != "U")
    })
    .await;
    let (status, text, perf) = parse(&out);
    assert_eq!(status, "OK");
    assert_eq!(
        text,
        "2 LB agents current, 0 routes to missing or failing endpoints"
    );
    for (label, value) in [
        ("agents", "2"),
        ("lagging", "0"),
        ("stale", "0"),
        ("failing", "0"),
        ("missing", "0"),
        ("rejected", "0"),
    ] {
        assert_eq!(perf[label], value, "{out}");
    }
    assert_eq!(perf["error_rate_app1_v1"], "0.000", "{out}");
    let json = ok_json(&etcd, &["check"]);
    assert_eq!(json["status"], "OK");
    assert_eq!(json["perfdata"]["agents"], 2.0);

    // The HAProxy agent hangs: its statistics stop. CRITICAL, naming it.
    haproxy.agent.signal("STOP");
    let out = until(&etcd, &["--stale-after", "1s"], 2).await;
    let (status, text, perf) = parse(&out);
    assert_eq!(status, "CRITICAL");
    assert!(
        text.starts_with("agent lb-haproxy stale: last status or statistics written "),
        "{text}"
    );
    assert_eq!(perf["stale"], "1");
    haproxy.agent.signal("CONT");
    until(&etcd, &["--stale-after", "2s"], 0).await;

    // The template agent (no statistics) hangs: noticed once it misses a change.
    template.signal("STOP");
    store
        .put(&route("app1", "instance2"), "v1", None)
        .await
        .unwrap();
    let (code, out) = check(&etcd, &["--stale-after", "1s", "--lag-grace", "1s"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("agent lb-template stale"), "{out}");
    assert!(out.contains(", applied revision "), "{out}");
    // With more patience for silence, it only lags: WARNING.
    let (code, out) = check(&etcd, &["--stale-after", "10m", "--lag-grace", "1s"]);
    assert_eq!(code, 1, "{out}");
    let (_, text, perf) = parse(&out);
    assert!(
        text.starts_with("agent lb-template lags: applied revision "),
        "{text}"
    );
    assert_eq!(perf["lagging"], "1");
    template.signal("CONT");
    until(&etcd, &["--stale-after", "2s"], 0).await;

    // A route to a version without an endpoint: CRITICAL.
    store
        .put(&route("app1", "instance3"), "v9", None)
        .await
        .unwrap();
    let out = until(&etcd, &["app1"], 2).await;
    assert!(
        out.contains("app1/instance3 routes to v9: no endpoint registered"),
        "{out}"
    );
    assert_eq!(parse(&out).2["missing"], "1");
    store.delete(&route("app1", "instance3")).await.unwrap();
    until(&etcd, &[], 0).await;

    // One v1 backend answers 500 to 60% of its requests: WARNING over --max-error-rate.
    v1.set_error_rate(0.6);
    let out = until(&etcd, &["app1", "--max-error-rate", "0.1"], 1).await;
    let (status, text, perf) = parse(&out);
    assert_eq!(status, "WARNING");
    assert!(text.starts_with("app1 v1 5xx rate "), "{text}");
    assert!(
        perf["error_rate_app1_v1"].parse::<f64>().unwrap() > 0.1,
        "{out}"
    );
    v1.set_error_rate(0.0);
    load.stop();

    // Unknown: an unknown app, bad options, etcd unreachable.
    let (code, out) = check(&etcd, &["nosuchapp"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.starts_with("DISCO UNKNOWN - unknown app"), "{out}");
    let (code, _) = check(&etcd, &["--stale-after", "soon"]);
    assert_eq!(code, 3);
    let dead = format!("http://127.0.0.1:{}", disco_harness::ports::free_port());
    let out = command(
        &etcd,
        &["--endpoints", &dead, "--request-timeout", "1s", "check"],
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.starts_with("DISCO UNKNOWN - "), "{stdout}");

    // An agent whose last apply failed: CRITICAL.
    let broken = agent_with_target(&etcd, "lb-broken", "60s", |dir| {
        let template = dir.join("t.j2");
        std::fs::write(&template, TEMPLATE).unwrap();
        TargetConfig::template(&dir.join("out.conf"), &template).raw("check", r#"["false"]"#)
    });
    let out = until(&etcd, &[], 2).await;
    assert!(out.contains("agent lb-broken failing: "), "{out}");
    assert_eq!(parse(&out).2["failing"], "1");
    drop(broken);
}
