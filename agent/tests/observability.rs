//! The agent's observability with the real things: `/healthz`, `/metrics` and
//! `/status` following applies and etcd outages, and per-version traffic statistics
//! read from HAProxy's stats socket and nginx's access log, published to etcd.

use std::collections::BTreeMap;
use std::time::Duration;

use disco::stats::VersionStats;
use disco::Keyspace;
use disco_harness::{Backend, Etcd, Haproxy, Load, LoadOptions, Nginx};
use disco_testkit::*;

/// `GET url` off the async runtime: status and body.
async fn http_get(url: &str) -> (u16, String) {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || disco_harness::get(&url, &[]))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"))
}

const OPENMETRICS: &str =
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";

/// `GET /metrics` as Prometheus asks for it (OpenMetrics), parsed.
async fn scrape(base: &str) -> (BTreeMap<String, f64>, String) {
    let url = format!("{base}/metrics");
    let (status, text) =
        tokio::task::spawn_blocking(move || disco_harness::get(&url, &[("Accept", OPENMETRICS)]))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 200);
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics ends with # EOF:\n{text}"
    );
    (parse_metrics(&text), text)
}

/// Polls `url` until `done(status, body)`; returns the last answer.
async fn wait_http(
    agent: &Agent,
    url: &str,
    what: &str,
    done: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let url2 = url.to_string();
        let answer = tokio::task::spawn_blocking(move || disco_harness::get(&url2, &[]))
            .await
            .unwrap();
        if let Ok((status, body)) = &answer {
            if done(*status, body) {
                return (*status, body.clone());
            }
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "{what}: not within 30s; last answer {answer:?}\n{}",
                agent.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks that `text` is well-formed Prometheus text (OpenMetrics, or the classic 0.0.4
/// format): every line is a `# HELP`, `# TYPE`, `# UNIT` (OpenMetrics) or the final
/// `# EOF` (OpenMetrics), or a sample `name{labels} value` of a family whose HELP and
/// TYPE came before it. Returns every sample, keyed by `name{labels}` as written.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    fn is_name(s: &str) -> bool {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    let mut helped = std::collections::BTreeSet::new();
    let mut typed = BTreeMap::new();
    let mut samples = BTreeMap::new();
    let mut lines: Vec<&str> = text.lines().collect();
    if lines.last() == Some(&"# EOF") {
        lines.pop();
    }
    for line in &lines {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let (kind, name) = (parts.next().unwrap(), parts.next().unwrap_or(""));
            assert!(is_name(name), "bad metric name in {line:?}");
            match kind {
                "HELP" => assert!(helped.insert(name.to_string()), "HELP twice: {line}"),
                "TYPE" => {
                    let t = parts.next().unwrap_or("");
                    assert!(
                        [
                            "counter",
                            "gauge",
                            "histogram",
                            "info",
                            "summary",
                            "unknown"
                        ]
                        .contains(&t),
                        "{line}"
                    );
                    typed.insert(name.to_string(), t.to_string());
                }
                "UNIT" => assert!(text.ends_with("# EOF\n"), "UNIT is OpenMetrics only"),
                _ => panic!("unexpected comment line {line:?}"),
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let name = match series.split_once('{') {
            Some((name, labels)) => {
                let labels = labels
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                for pair in labels.split("\",").filter(|p| !p.is_empty()) {
                    let (key, value) = pair
                        .split_once("=\"")
                        .unwrap_or_else(|| panic!("bad label {pair:?} in {line:?}"));
                    assert!(is_name(key), "bad label name {key:?} in {line:?}");
                    assert!(!value.contains('\n'), "{line:?}");
                }
                name
            }
            None => series,
        };
        assert!(is_name(name), "bad sample name in {line:?}");
        let family = ["_total", "_bucket", "_sum", "_count", "_info", "_created"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix).filter(|f| typed.contains_key(*f)))
            .unwrap_or(name);
        assert!(typed.contains_key(family), "no TYPE before {line:?}");
        assert!(helped.contains(family), "no HELP before {line:?}");
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "sample twice: {line}"
        );
    }
    samples
}

const TEMPLATE: &str = "{% for name, app in apps|items %}{{ name }}{% for s in app.routed %} {{ s.instance }}={{ s.version }}{% endfor %}\n{% endfor %}";

/// `/healthz` is 200 while the agent applies and its watch is live; 503 with the reason
/// when a check command refuses the new file or etcd is down; 200 again after.
/// `/metrics` parses and counts it; `/status` shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_metrics_and_status_follow_applies_and_etcd() {
    let mut etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.j2"), TEMPLATE).unwrap();
    let ok = dir.path().join("ok");
    std::fs::write(&ok, "").unwrap();
    let port = disco_harness::ports::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let rev = seed_checked_app(
        &store,
        "app1",
        "127.0.0.1:8080",
        &[("instance1", "v1", "127.0.0.1:9001".into())],
        &[("instance1", "v1")],
    )
    .await;
    let config = AgentConfig::new("lb1", dir.path(), &etcd.endpoints())
        .set("status_ttl", "3s")
        .set("http_listen", format!("127.0.0.1:{port}"))
        .etcd_raw("request_timeout", "\"2s\"")
        .target(
            TargetConfig::template(&dir.path().join("out.conf"), &dir.path().join("t.j2")).raw(
                "check",
                format!("{:?}", ["test", "-e", &ok.display().to_string()]),
            ),
        )
        .toml();
    let agent = Agent::start(dir.path(), "lb1", &config);
    applied(&store, &agent, rev).await;
    let (_, body) = wait_http(&agent, &format!("{base}/healthz"), "healthy", |s, _| {
        s == 200
    })
    .await;
    assert_eq!(body, "ok\n");

    let (m, text) = scrape(&base).await;
    assert!(m["disco_agent_applies_total"] >= 1.0, "{text}");
    // Without asking for OpenMetrics (older Telegraf, curl): the classic text format,
    // the same samples.
    let (status, classic) = http_get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    assert!(
        !classic.contains("# EOF") && classic.contains("# TYPE disco_agent_applies_total counter")
    );
    let classic = parse_metrics(&classic);
    assert_eq!(classic.len(), m.len());
    // At least the seed's revision: the agent's own status write may come before its
    // first read of the routing state, which then happens at a later revision.
    assert!(m["disco_agent_applied_revision"] >= rev as f64, "{text}");
    assert_eq!(m["disco_agent_healthy"], 1.0);
    assert_eq!(m["disco_agent_watch_live"], 1.0);
    assert_eq!(m["disco_agent_rejected_records"], 0.0);
    assert!(m["disco_agent_apply_duration_seconds_count"] >= 1.0);
    assert!(m["disco_agent_reload_duration_seconds_count{target=\"template\"}"] >= 1.0);
    assert!(m.contains_key(&format!(
        "disco_agent_info{{agent_id=\"lb1\",version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    )));

    let (status, body) = http_get(&format!("{base}/status")).await;
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["healthy"], true, "{doc}");
    assert_eq!(doc["id"], "lb1");
    assert!(doc["applied_revision"].as_i64() >= Some(rev), "{doc}");
    assert_eq!(doc["watch"]["live"], true);
    assert_eq!(doc["apps"]["app1"]["routes"]["instance1"], "v1");
    assert_eq!(doc["apps"]["app1"]["versions"]["v1"]["routed_slots"], 1);
    assert!(
        doc["targets"]["template"]["revision"].as_i64() >= Some(rev),
        "{doc}"
    );

    // A bad record shows as rejected, without making the agent unhealthy.
    store
        .put(&route("app1", "instance2"), "v1; drop", None)
        .await
        .unwrap();
    wait(&store, &agent, |s| !s.rejected.is_empty()).await;
    assert_eq!(scrape(&base).await.0["disco_agent_rejected_records"], 1.0);
    assert_eq!(http_get(&format!("{base}/healthz")).await.0, 200);

    // The check command refuses the next file: 503, with the reason.
    std::fs::remove_file(&ok).unwrap();
    store
        .put(&route("app1", "instance1"), "v2", None)
        .await
        .unwrap();
    let (_, reason) = wait_http(
        &agent,
        &format!("{base}/healthz"),
        "503 on a failed apply",
        |s, _| s == 503,
    )
    .await;
    assert!(
        reason.starts_with("last apply failed: target template: validation failed"),
        "{reason}"
    );
    let (m, _) = scrape(&base).await;
    assert_eq!(m["disco_agent_healthy"], 0.0);
    assert!(m["disco_agent_apply_failures_total{target=\"template\",stage=\"validation\"}"] >= 1.0);
    assert!(
        m["disco_agent_seen_revision"] > m["disco_agent_applied_revision"],
        "lag shows"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&http_get(&format!("{base}/status")).await.1).unwrap();
    assert_eq!(doc["healthy"], false);
    assert!(doc["reason"]
        .as_str()
        .unwrap()
        .contains("validation failed"));

    // Fixed, and the next change applies: healthy again.
    std::fs::write(&ok, "").unwrap();
    let rev = store
        .put(&route("app1", "instance1"), "v1", None)
        .await
        .unwrap();
    applied(&store, &agent, rev).await;
    wait_http(
        &agent,
        &format!("{base}/healthz"),
        "200 after a good apply",
        |s, _| s == 200,
    )
    .await;

    // etcd down: the watch is lost, 503; etcd back: 200.
    etcd.kill(0);
    let (_, reason) = wait_http(
        &agent,
        &format!("{base}/healthz"),
        "503 with etcd down",
        |s, _| s == 503,
    )
    .await;
    assert!(reason.starts_with("etcd watch down since"), "{reason}");
    let (m, _) = scrape(&base).await;
    assert_eq!(m["disco_agent_watch_live"], 0.0);
    assert!(m["disco_agent_watch_reconnects_total"] >= 1.0);
    etcd.restart(0);
    wait_http(
        &agent,
        &format!("{base}/healthz"),
        "200 with etcd back",
        |s, _| s == 200,
    )
    .await;
    // And the watch really resumed: a change is applied.
    let rev = store
        .put(&route("app1", "instance1"), "v2", None)
        .await
        .unwrap();
    applied(&store, &agent, rev).await;
    assert_eq!(http_get(&format!("{base}/healthz")).await.0, 200);

    // SIGHUP restarts the LB role and its endpoints; the counters go on.
    let applies = scrape(&base).await.0["disco_agent_applies_total"];
    agent.signal("HUP");
    wait_http(
        &agent,
        &format!("{base}/metrics"),
        "metrics after SIGHUP",
        |s, body| s == 200 && parse_metrics(body)["disco_agent_applies_total"] > applies,
    )
    .await;
    wait_http(
        &agent,
        &format!("{base}/healthz"),
        "healthy after SIGHUP",
        |s, _| s == 200,
    )
    .await;
}

/// One proxy under load, app1 with slots instance1 and instance2 on v1 and instance3 on
/// v2, whose backend answers 500 to every 5th request, each after 30 ms.
async fn published_stats_by_version(kind: &str) {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let dir = tempfile::tempdir().unwrap();
    let v1a = Backend::start("v1");
    let v1b = Backend::start("v1");
    let v2 = Backend::start("v2");
    v2.set_error_rate(0.2);
    v2.set_latency(Duration::from_millis(30));
    let listen = format!("127.0.0.1:{}", disco_harness::ports::free_port());
    let rev = seed_checked_app(
        &store,
        "app1",
        "0.0.0.0:1",
        &[
            ("instance1", "v1", v1a.addr()),
            ("instance2", "v1", v1b.addr()),
            ("instance3", "v2", v2.addr()),
        ],
        &[
            ("instance1", "v1"),
            ("instance2", "v1"),
            ("instance3", "v2"),
        ],
    )
    .await;
    let port = disco_harness::ports::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let config = AgentConfig::new("lb1", dir.path(), &etcd.endpoints())
        .set("status_ttl", "5s")
        .set("max_delay", "50ms")
        .set("stats_interval", "500ms")
        .set("http_listen", format!("127.0.0.1:{port}"));
    let _haproxy;
    let _nginx;
    let log_socket = dir.path().join("haproxy-log.sock");
    let target = match kind {
        "haproxy" | "haproxy-log" => {
            let fragment = dir.path().join("disco.cfg");
            let h = Haproxy::start(&fragment);
            let mut t = TargetConfig::haproxy(&fragment, &h)
                .set("stats_socket", h.stats_socket().display());
            // Per-request records: HTTP counts from the log only, `show stat` for tcp.
            if kind == "haproxy-log" {
                t = t.set("log_socket", log_socket.display());
            }
            _haproxy = Some(h);
            t
        }
        _ => {
            let fragment = dir.path().join("disco.conf");
            let n = Nginx::start(&fragment);
            let mut t = TargetConfig::nginx(&fragment, &n)
                .set("access_log", dir.path().join("disco-access.log").display());
            // In balancer mode the servers are picked in Lua; the access log is the same.
            if kind == "nginx-balancer" {
                disco_harness::nginx::open_to_workers(dir.path());
                t = t.set(
                    "balancer_socket",
                    dir.path().join("balancer.sock").display(),
                );
            }
            _nginx = Some(n);
            t
        }
    };
    let config = config.target(target.listen("app1", &listen));
    let mut agent = Agent::start(dir.path(), "lb1", &config.toml());
    applied(&store, &agent, rev).await;

    let load = Load::start(&format!("http://{listen}/"), LoadOptions::default());
    // Until the published totals hold enough of both versions.
    let ks = Keyspace::default();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (records, merged) = loop {
        let records = disco::stats::read(&store, &ks, "app1").await.unwrap();
        let merged = disco::stats::merge(&records);
        let total = |v: &str| merged.get(v).map_or(0, |s| s.total.requests);
        if total("v1") >= 400 && total("v2") >= 200 {
            break (records, merged);
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "{kind}: published stats did not reach 400 v1 / 200 v2 requests: {merged:#?}\n{}",
                agent.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let report = load.stop();
    println!("{kind}: load {report:?}\npublished {merged:#?}");

    // The record: one per agent and app, outside apps/, with its shape.
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(
        (record.agent.as_str(), record.app.as_str()),
        ("lb1", "app1")
    );
    // Sources by target name and kind (the balancer is an nginx target).
    let target = kind.trim_end_matches("-balancer").trim_end_matches("-log");
    assert_eq!(
        record.sources,
        BTreeMap::from([(target.to_string(), target.to_string())])
    );
    assert_eq!(record.interval_ms, 500);
    assert!(record.window_ms > 0 && !record.started_at.is_empty());
    let (_, kvs) = store.get_prefix(&ks.stats("app1"), None).await.unwrap();
    assert_eq!(kvs[0].key, "/disco/stats/app1/lb1");
    assert_ne!(kvs[0].lease, 0, "written under a lease");

    // v2's 5xx share is the backend's, v1's is zero; never more than the backends saw.
    let rate = |s: &VersionStats| s.total.errors_5xx as f64 / s.total.requests as f64;
    let (v1, v2s) = (&merged["v1"], &merged["v2"]);
    assert_eq!(v1.total.errors_5xx, 0, "{v1:?}");
    assert!(
        (0.12..=0.28).contains(&rate(v2s)),
        "v2 5xx rate {}: {v2s:?}",
        rate(v2s)
    );
    assert!(
        v2s.total.requests <= v2.requests(),
        "{} > {}",
        v2s.total.requests,
        v2.requests()
    );
    assert!(v1.total.requests <= v1a.requests() + v1b.requests());
    assert!(v1.total.timed > 0 && v1.total.mean_ms().is_some());
    if kind == "haproxy" {
        assert!(
            v1.total.buckets.is_empty(),
            "`show stat` gives no histogram"
        );
    } else {
        // Per-request times: a histogram of every timed request, and percentiles in
        // order; the test backends answer at once, so well under a second.
        for s in [v1, v2s] {
            assert_eq!(s.total.buckets.last(), Some(&s.total.timed), "{s:?}");
            assert!(s.total.timed > 0, "{s:?}");
            let p = [0.5, 0.95, 0.99].map(|q| s.total.percentile_ms(q).unwrap());
            assert!(p[0] <= p[1] && p[1] <= p[2] && p[2] < 1000.0, "{p:?}");
            let window = [s.p50_ms, s.p95_ms, s.p99_ms].map(Option::unwrap);
            assert!(window[0] <= window[1] && window[1] <= window[2], "{s:?}");
        }
        // v2 answers after 30 ms, v1 at once: the median shows it.
        let p50 = |s: &VersionStats| s.total.percentile_ms(0.5).unwrap();
        assert!(p50(v2s) >= 25.0, "v2 takes 30 ms: {v2s:?}");
        assert!(p50(v1) < p50(v2s), "{v1:?}");
    }

    // The same counters on /metrics.
    let (m, text) = scrape(&base).await;
    let series = |name: &str, version: &str| {
        m.get(&format!(
            "{name}{{app=\"app1\",version=\"{version}\",target=\"{target}\"}}"
        ))
        .copied()
        .unwrap_or_else(|| panic!("no {name} of {version} in\n{text}"))
    };
    assert!(series("disco_requests_total", "v2") >= v2s.total.requests as f64);
    assert!(series("disco_requests_5xx_total", "v2") > 0.0);
    assert_eq!(series("disco_requests_5xx_total", "v1"), 0.0);
    assert!(series("disco_response_time_seconds_count", "v1") > 0.0);
    // /status carries the last records too.
    let doc: serde_json::Value =
        serde_json::from_str(&http_get(&format!("{base}/status")).await.1).unwrap();
    assert!(doc["traffic"]["app1"]["versions"]["v2"]["total"]["requests"].as_u64() > Some(0));
    if kind == "haproxy-log" {
        // Foreign datagrams on the log socket are ignored and counted, nothing breaks.
        let garbage = std::os::unix::net::UnixDatagram::unbound().unwrap();
        for d in ["hello", "disco1 disco_app1", "\u{0}\u{ff}"] {
            garbage.send_to(d.as_bytes(), &log_socket).unwrap();
        }
        wait_http(
            &agent,
            &format!("{base}/metrics"),
            "ignored records",
            |_, body| body.contains("disco_stats_ignored_records_total{target=\"haproxy\"} 3"),
        )
        .await;
        assert_eq!(http_get(&format!("{base}/healthz")).await.0, 200);
        agent.stop();
        assert!(
            !log_socket.exists(),
            "the agent removes its log socket on exit"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_stats_socket_gives_per_version_5xx_rates() {
    published_stats_by_version("haproxy").await;
}

/// HAProxy with a log socket: per-request records give the 5xx rates and a latency
/// histogram (p50/p95/p99); with the stats socket set too, nothing is counted twice
/// (each version's count stays within what its backends answered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_log_socket_gives_per_version_5xx_rates_and_percentiles() {
    published_stats_by_version("haproxy-log").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_access_log_gives_per_version_5xx_rates() {
    published_stats_by_version("nginx").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_balancer_access_log_gives_per_version_5xx_rates() {
    published_stats_by_version("nginx-balancer").await;
}

/// Reads `app`'s record of lb1, if any.
async fn stats_of(store: &disco::store::Store, app: &str) -> Option<disco::stats::AppStats> {
    let records = disco::stats::read(store, &Keyspace::default(), app)
        .await
        .unwrap();
    records.into_iter().find(|r| r.agent == "lb1")
}

/// Every version's total requests in a record.
fn total_requests(record: &disco::stats::AppStats) -> u64 {
    record.versions.values().map(|v| v.total.requests).sum()
}

/// While app1 has a canary running, its record is published every
/// `canary_stats_interval` (HAProxy's log socket, under load), far more often than
/// `stats_interval`; app2, without a canary, gets only the regular cycle; once the
/// canary is `done`, the fast publishing stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_canary_gets_its_statistics_every_canary_stats_interval() {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let dir = tempfile::tempdir().unwrap();
    let v1 = Backend::start("v1");
    let v2 = Backend::start("v2");
    let other = Backend::start("v1");
    let listen1 = format!("127.0.0.1:{}", disco_harness::ports::free_port());
    let listen2 = format!("127.0.0.1:{}", disco_harness::ports::free_port());
    seed_checked_app(
        &store,
        "app1",
        "0.0.0.0:1",
        &[
            ("instance1", "v1", v1.addr()),
            ("instance2", "v2", v2.addr()),
        ],
        &[("instance1", "v1"), ("instance2", "v2")],
    )
    .await;
    let rev = seed_checked_app(
        &store,
        "app2",
        "0.0.0.0:1",
        &[("instance1", "v1", other.addr())],
        &[("instance1", "v1")],
    )
    .await;
    let fragment = dir.path().join("disco.cfg");
    let haproxy = Haproxy::start(&fragment);
    let target = TargetConfig::haproxy(&fragment, &haproxy)
        .set("stats_socket", haproxy.stats_socket().display())
        .set("log_socket", dir.path().join("haproxy-log.sock").display())
        .listen("app1", &listen1)
        .listen("app2", &listen2);
    // One regular window over the whole test: whatever else app1 gets is fast.
    let port = disco_harness::ports::free_port();
    let config = AgentConfig::new("lb1", dir.path(), &etcd.endpoints())
        .set("status_ttl", "5s")
        .set("stats_interval", "10s")
        .set("canary_stats_interval", "50ms")
        .set("http_listen", format!("127.0.0.1:{port}"))
        .target(target);
    let agent = Agent::start(dir.path(), "lb1", &config.toml());
    applied(&store, &agent, rev).await;
    let load = Load::start(&format!("http://{listen1}/"), LoadOptions::default());

    let rollout_key = Keyspace::default().key(&disco::Key::Rollout { app: "app1".into() });
    let record = |state: &str| {
        serde_json::json!({ "version": "v2", "steps": [], "step": 1, "state": state }).to_string()
    };
    let rev = store
        .put(&rollout_key, record("running"), None)
        .await
        .unwrap();
    applied(&store, &agent, rev).await;

    // Five records of app1 in a row, each later and with more requests than the last,
    // well within one stats_interval; app2 meanwhile: at most its record from before
    // and one regular one.
    let started = std::time::Instant::now();
    let deadline = started + Duration::from_secs(9);
    let mut app1: Vec<(String, u64)> = Vec::new();
    let mut app2_at = std::collections::BTreeSet::new();
    while app1.len() < 5 {
        if let Some(r) = stats_of(&store, "app1").await {
            let total = total_requests(&r);
            match app1.last() {
                Some((at, _)) if *at == r.at => {}
                Some((_, last)) => {
                    assert!(total >= *last, "totals only grow: {app1:?}, then {r:?}");
                    if total > *last {
                        app1.push((r.at.clone(), total));
                    }
                }
                None => app1.push((r.at.clone(), total)),
            }
        }
        if let Some(r) = stats_of(&store, "app2").await {
            app2_at.insert(r.at);
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "app1 with a running canary: {} records in {:?} ({app1:?})\n{}",
                app1.len(),
                started.elapsed(),
                agent.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        app2_at.len() <= 2,
        "app2 has no canary, only the regular cycle: {app2_at:?}"
    );
    let (_, kvs) = store
        .get_prefix(&Keyspace::default().stats("app1"), None)
        .await
        .unwrap();
    assert_ne!(kvs[0].lease, 0, "written under the stats lease");
    // Counted: at least the fast records seen (the first one seen may be regular).
    let (m, text) = scrape(&format!("http://127.0.0.1:{port}")).await;
    assert!(
        m["disco_agent_canary_stats_publishes_total"] >= 4.0,
        "{text}"
    );

    // The canary is done: no more fast records. Watched for 20 canary intervals; one
    // fast record already on its way and one regular record may still come.
    let rev = store.put(&rollout_key, record("done"), None).await.unwrap();
    applied(&store, &agent, rev).await;
    let mut after_done = std::collections::BTreeSet::new();
    let watched = std::time::Instant::now();
    while watched.elapsed() < Duration::from_secs(1) {
        if let Some(r) = stats_of(&store, "app1").await {
            after_done.insert(r.at);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        after_done.len() <= 3,
        "app1's canary is done, its fast records stop: {after_done:?}"
    );
    let report = load.stop();
    assert!(report.ok > 0, "{report:?}");
}
