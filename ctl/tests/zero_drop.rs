//! The seed's sequence end to end through real HAProxy and nginx under load:
//! 3 slots on v1 → promote → promote → switch → rollback, then the dark canary on and
//! off, each discoctl call returning only after both LB agents applied it. Every
//! request gets its 200 (HAProxy: without a single retry), and the traffic mix follows
//! the routes.

mod common;

use std::collections::BTreeMap;

use common::*;
use disco_harness::{Backend, Etcd, Haproxy, Load, LoadOptions, Nginx};

/// Share of each version over the next `n` successful requests, after letting the
/// requests already in flight finish.
fn mix(load: &Load, n: u64) -> BTreeMap<String, f64> {
    load.wait_for_ok(20);
    let before = load.snapshot();
    let window = load.wait_for_ok(n).since(&before);
    let total: u64 = window.by_body.values().sum();
    window
        .by_body
        .iter()
        .map(|(k, v)| (k.clone(), *v as f64 / total as f64))
        .collect()
}

fn v2(load: &Load) -> f64 {
    mix(load, 600).get("v2").copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_sequence_under_load_fails_no_request() {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let backends: Vec<(String, String, Backend)> = (1..=3)
        .flat_map(|i| {
            ["v1", "v2"].map(|v| (format!("instance{i}"), v.to_string(), Backend::start(v)))
        })
        .collect();
    let endpoints: Vec<(&str, &str, String)> = backends
        .iter()
        .map(|(i, v, b)| (i.as_str(), v.as_str(), b.addr()))
        .collect();
    seed_app(
        &store,
        "app1",
        "0.0.0.0:1",
        &endpoints,
        &[
            ("instance1", "v1"),
            ("instance2", "v1"),
            ("instance3", "v1"),
        ],
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let (hcfg, ncfg) = (dir.path().join("disco.cfg"), dir.path().join("disco.conf"));
    let haproxy = Haproxy::start(&hcfg);
    let nginx = Nginx::start(&ncfg);
    let (hport, nport) = (
        disco_harness::ports::free_port(),
        disco_harness::ports::free_port(),
    );
    let lb_h = agent_with_target(&etcd, "lb-haproxy", "5s", |_| {
        TargetConfig::haproxy(&hcfg, &haproxy).listen("app1", &format!("127.0.0.1:{hport}"))
    });
    let lb_n = agent_with_target(&etcd, "lb-nginx", "5s", |_| {
        TargetConfig::nginx(&ncfg, &nginx).listen("app1", &format!("127.0.0.1:{nport}"))
    });
    let (_, kvs) = store
        .get_prefix(&disco::Keyspace::default().apps(), None)
        .await
        .unwrap();
    let seeded = kvs.iter().map(|kv| kv.mod_revision).max().unwrap();
    applied(&store, &lb_h, seeded).await;
    applied(&store, &lb_n, seeded).await;

    let start = |port: u16, keep_alive: bool, header: bool| {
        Load::start(
            &format!("http://127.0.0.1:{port}/"),
            LoadOptions {
                connections: 2,
                keep_alive,
                headers: if header {
                    vec![("X-Canary".into(), "1".into())]
                } else {
                    vec![]
                },
            },
        )
    };
    let loads: Vec<(&str, u16, Load)> = vec![
        ("haproxy keep-alive", hport, start(hport, true, false)),
        ("haproxy fresh", hport, start(hport, false, false)),
        ("haproxy dark header", hport, start(hport, true, true)),
        ("nginx keep-alive", nport, start(nport, true, false)),
        ("nginx fresh", nport, start(nport, false, false)),
        ("nginx dark header", nport, start(nport, true, true)),
    ];
    let plain: Vec<&Load> = loads
        .iter()
        .filter(|(n, _, _)| n.ends_with("keep-alive"))
        .map(|(_, _, l)| l)
        .collect();
    let dark: Vec<&Load> = loads
        .iter()
        .filter(|(n, _, _)| n.ends_with("header"))
        .map(|(_, _, l)| l)
        .collect();
    for (_, _, l) in &loads {
        l.wait_for_ok(100);
    }

    // Each step returns only after both agents applied it (the default --wait).
    let step = |args: &[&str]| {
        let report = ok_json(&etcd, args);
        report["revision"]
            .as_i64()
            .unwrap_or_else(|| panic!("{args:?}: {report}"))
    };
    let check_applied = |revision: i64| {
        let store = store.clone();
        async move {
            for id in ["lb-haproxy", "lb-nginx"] {
                let s = status(&store, id).await.unwrap();
                assert!(
                    s.applied_revision >= revision,
                    "{id} had not applied {revision} when discoctl returned: {s:?}"
                );
            }
        }
    };

    let r = step(&["promote", "app1", "v2"]);
    check_applied(r).await;
    for l in &plain {
        let share = v2(l);
        assert!(
            (0.2..=0.47).contains(&share),
            "1 of 3 slots on v2: v2 share {share}"
        );
    }
    let r = step(&["promote", "app1", "v2"]);
    check_applied(r).await;
    for l in &plain {
        let share = v2(l);
        assert!(
            (0.53..=0.8).contains(&share),
            "2 of 3 slots on v2: v2 share {share}"
        );
    }
    let r = step(&["switch", "app1", "v2"]);
    check_applied(r).await;
    for l in &plain {
        assert_eq!(v2(l), 1.0, "all slots on v2");
    }
    let r = step(&["rollback", "app1"]);
    check_applied(r).await;
    for l in &plain {
        assert_eq!(v2(l), 0.0, "rolled back: all slots on v1");
    }
    let r = step(&["dark", "app1", "v2", "--header", "X-Canary=1"]);
    check_applied(r).await;
    for l in &dark {
        assert_eq!(v2(l), 1.0, "requests with the header reach only v2");
    }
    for l in &plain {
        assert_eq!(v2(l), 0.0, "requests without it never do");
    }
    let r = step(&["dark", "app1", "--off"]);
    check_applied(r).await;
    for l in &dark {
        assert_eq!(v2(l), 0.0, "dark canary off");
    }

    for (name, _, l) in loads {
        let r = l.stop();
        println!(
            "{name}: sent {} ok {} failed {} retried {} by version {:?}",
            r.sent, r.ok, r.failed, r.retried, r.by_body
        );
        assert_eq!(r.failed, 0, "{name}: {:?}", r.errors);
        if name.starts_with("haproxy") {
            assert_eq!(r.retried, 0, "{name}: {:?}", r.errors);
        }
    }
}
