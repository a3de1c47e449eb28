//! discoctl's verbs against a real etcd and real `disco-agent` processes (template
//! targets, so no HAProxy/nginx): the seed's canary sequence with `--wait`, concurrent
//! promotions without lost updates, a timeout naming a stopped agent, bad input that
//! writes nothing, the dark canary and weights. The same sequence through real HAProxy
//! and nginx under load is in zero_drop.rs.

mod common;

use std::collections::BTreeMap;
use std::process::Stdio;

use common::*;
use disco_harness::Etcd;
use serde_json::{json, Value};

fn addr(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn history(etcd: &Etcd, app: &str) -> Vec<Value> {
    ok_json(etcd, &["history", app])["records"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_sequence_returns_only_after_every_agent_applied_each_step() {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let seeded = seed_three_slots(&store).await;
    let agents = [
        template_agent(&etcd, "lb1", "10s"),
        template_agent(&etcd, "lb2", "10s"),
    ];
    for agent in &agents {
        applied(&store, agent, seeded).await;
    }

    let steps: [(&[&str], [&str; 3]); 4] = [
        (&["promote", "app1", "v2"], ["v2", "v1", "v1"]),
        (&["promote", "app1", "v2"], ["v2", "v2", "v1"]),
        (&["switch", "app1", "v2"], ["v2", "v2", "v2"]),
        (&["rollback", "app1"], ["v1", "v1", "v1"]),
    ];
    let mut revisions = Vec::new();
    for (args, expected) in steps {
        let report = ok_json(&etcd, args);
        let revision = report["revision"].as_i64().unwrap();
        assert_eq!(report["changed"], true, "{args:?}: {report}");
        assert_eq!(report["waited"], true);
        assert_eq!(report["agents"], json!(["lb1", "lb2"]));
        assert_eq!(report["lagging"], json!([]));
        assert!(report["wait_ms"].is_u64(), "{report}");
        // Read once, no retry: the command returned only after both agents applied it.
        let rendered = format!(
            "app1/instance1={};app1/instance2={};app1/instance3={};",
            expected[0], expected[1], expected[2]
        );
        for agent in &agents {
            let status = status(&store, &agent.id).await.unwrap();
            assert!(
                status.applied_revision >= revision,
                "{args:?}: {} applied {} < {revision}",
                agent.id,
                status.applied_revision
            );
            assert_eq!(agent.rendered().trim_end(), rendered, "{args:?}");
        }
        let slots = report["slots"].as_array().unwrap();
        let after: Vec<&str> = slots.iter().map(|s| s["after"].as_str().unwrap()).collect();
        assert_eq!(after, expected, "{report}");
        assert_eq!(
            routes(&store, "app1").await,
            map(&[
                ("instance1", expected[0]),
                ("instance2", expected[1]),
                ("instance3", expected[2])
            ])
        );
        revisions.push(revision);
    }

    // The audit log: one record per step, at the step's revision.
    let records = history(&etcd, "app1");
    let actions: Vec<&str> = records
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["promote", "promote", "switch", "rollback"]);
    let record_revisions: Vec<i64> = records
        .iter()
        .map(|r| r["revision"].as_i64().unwrap())
        .collect();
    assert_eq!(record_revisions, revisions);
    assert_eq!(records[0]["from"], json!({"instance1": "v1"}));
    assert_eq!(records[0]["to"], json!({"instance1": "v2"}));
    assert_eq!(records[2]["to"], json!({"instance3": "v2"}));
    assert_eq!(
        records[3]["from"],
        json!({"instance1": "v2", "instance2": "v2", "instance3": "v2"})
    );
    assert_eq!(records[3]["actor"], "tester@ci");
    let table = ok(&etcd, &["history", "app1"]);
    assert!(table.starts_with("SEQ"), "{table}");
    assert!(table.contains(" instance1 v1->v2 "), "{table}");

    // Every agent has applied the latest change.
    let report = ok_json(&etcd, &["agents"]);
    assert_eq!(report["latest_revision"], json!(revisions[3]));
    for agent in report["agents"].as_array().unwrap() {
        assert_eq!(agent["applied_latest"], true, "{agent}");
        assert_eq!(agent["lag"], 0);
        assert_eq!(agent["roles"], json!(["lb"]));
    }
    // The table says how each target's last change reached its proxy.
    let table = ok(&etcd, &["agents"]);
    assert!(table.contains("LAST CHANGE BY"), "{table}");
    assert!(table.contains("=reload"), "{table}");
    let status = ok_json(&etcd, &["status", "app1"]);
    assert_eq!(status["agents"]["lb1"]["applied_latest"], true);

    // The table report of a promotion: every slot before -> after.
    let out = ok(&etcd, &["promote", "app1", "v2", "--count", "2"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["SLOT", "BEFORE", "AFTER"]
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["instance1", "v1", "v2", "changed"]
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["instance2", "v1", "v2", "changed"]
    );
    assert_eq!(
        lines[3].split_whitespace().collect::<Vec<_>>(),
        ["instance3", "v1", "v1"]
    );
    assert!(
        lines[4].starts_with("app1: promote v2: 2 of 3 slots changed (revision "),
        "{out}"
    );
    assert!(lines[5].starts_with("applied by 2 LB agents in "), "{out}");
    assert!(lines[5].ends_with(": lb1, lb2"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_concurrent_promotions_lose_no_update() {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    // Twelve slots, so that ten promotions never run out of slots to flip.
    let names: Vec<String> = (1..=12).map(|i| format!("slot{i}")).collect();
    let endpoints: Vec<(&str, &str, String)> = names
        .iter()
        .enumerate()
        .flat_map(|(i, n)| {
            [
                (n.as_str(), "v1", addr(9000 + i as u16)),
                (n.as_str(), "v2", addr(9100 + i as u16)),
            ]
        })
        .collect();
    let initial: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v1")).collect();
    seed_app(&store, "app1", "127.0.0.1:8080", &endpoints, &initial).await;

    let children: Vec<_> = (0..10)
        .map(|_| {
            command(&etcd, &["-o", "json", "promote", "app1", "v2", "--no-wait"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut committed = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => {
                let report: Value = serde_json::from_slice(&out.stdout).unwrap();
                assert_eq!(report["changed"], true, "{report}");
                assert_eq!(report["waited"], false);
                committed.push(report["revision"].as_i64().unwrap());
            }
            Some(4) => assert!(stderr.contains("conflict"), "{stderr}"),
            other => panic!("promote exited {other:?}: {stderr}"),
        }
    }
    assert!(!committed.is_empty(), "at least one promotion commits");
    committed.sort();

    // History == the successful promotions, exactly, and replaying it gives the routes.
    let records = history(&etcd, "app1");
    let revisions: Vec<i64> = records
        .iter()
        .map(|r| r["revision"].as_i64().unwrap())
        .collect();
    assert_eq!(revisions, committed);
    let mut replayed: BTreeMap<String, String> = initial
        .iter()
        .map(|(i, v)| (i.to_string(), v.to_string()))
        .collect();
    for (n, record) in records.iter().enumerate() {
        assert_eq!(record["seq"], json!(n + 1));
        assert_eq!(record["action"], "promote");
        // Each one flipped the next slot in natural order: slot1, slot2, ... slot10.
        let to: BTreeMap<String, String> = serde_json::from_value(record["to"].clone()).unwrap();
        assert_eq!(to, map(&[(&format!("slot{}", n + 1), "v2")]), "{record}");
        let from: BTreeMap<String, String> =
            serde_json::from_value(record["from"].clone()).unwrap();
        for (slot, version) in &from {
            assert_eq!(&replayed[slot], version, "record {n} read what was there");
        }
        replayed.extend(to);
    }
    assert_eq!(routes(&store, "app1").await, replayed);
    println!("{} of 10 concurrent promotions committed", committed.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_times_out_with_exit_3_naming_a_stopped_agent() {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let seeded = seed_three_slots(&store).await;
    // A long lease: the stopped agent's status stays while it cannot apply anything.
    let lb1 = template_agent(&etcd, "lb1", "60s");
    let lb2 = template_agent(&etcd, "lb2", "60s");
    applied(&store, &lb1, seeded).await;
    applied(&store, &lb2, seeded).await;

    lb2.signal("STOP");
    let out = discoctl(
        &etcd,
        &["-o", "json", "promote", "app1", "v2", "--timeout", "2s"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("timed out") && stderr.contains("lb2 (applied revision"),
        "{stderr}"
    );
    assert!(!stderr.contains("lb1 (applied"), "{stderr}");
    // The change itself is committed, and reported.
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let revision = report["revision"].as_i64().unwrap();
    assert_eq!(report["agents"], json!(["lb1", "lb2"]));
    assert_eq!(report["lagging"][0]["id"], "lb2");
    assert_eq!(report["lagging"].as_array().unwrap().len(), 1);
    assert_eq!(routes(&store, "app1").await["instance1"], "v2");
    assert!(status(&store, "lb1").await.unwrap().applied_revision >= revision);

    // `agents` tells the same story.
    let agents = ok_json(&etcd, &["agents"]);
    let by_id = |id: &str| {
        agents["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id("lb1")["applied_latest"], true);
    assert_eq!(by_id("lb2")["applied_latest"], false);
    assert!(by_id("lb2")["lag"].as_i64().unwrap() > 0);
    let table = ok(&etcd, &["agents"]);
    let lb2_row = table.lines().find(|l| l.starts_with("lb2")).unwrap();
    assert_eq!(lb2_row.split_whitespace().nth(3), Some("no"), "{table}");

    lb2.signal("CONT");
    applied(&store, &lb2, revision).await;
    // Now a wait succeeds.
    let report = ok_json(&etcd, &["promote", "app1", "v2", "--timeout", "20s"]);
    assert_eq!(report["lagging"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_failed_preconditions_write_nothing() {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    // app1: v2 endpoints on instance1 (reported failing) and instance2; none on instance3.
    seed_app(
        &store,
        "app1",
        "127.0.0.1:8080",
        &[
            ("instance1", "v1", addr(9001)),
            ("instance2", "v1", addr(9002)),
            ("instance3", "v1", addr(9003)),
            ("instance2", "v2", addr(9102)),
        ],
        &[
            ("instance1", "v1"),
            ("instance2", "v1"),
            ("instance3", "v1"),
        ],
    )
    .await;
    store
        .put(
            &endpoint("app1", "instance1", "v2"),
            r#"{"address":"127.0.0.1:9101","health":{"status":"failing","detail":"503 Service Unavailable"}}"#,
            None,
        )
        .await
        .unwrap();
    // app2: tcp, v1 and v2 routed, v1 weighted 60%.
    seed_app(
        &store,
        "app2",
        "127.0.0.1:8081",
        &[("a1", "v1", addr(9201)), ("a2", "v2", addr(9202))],
        &[("a1", "v1"), ("a2", "v2")],
    )
    .await;
    store
        .put(
            &key(disco::Key::Policy { app: "app2".into() }),
            r#"{"listen":"127.0.0.1:8081","mode":"tcp","weights":{"v1":60}}"#,
            None,
        )
        .await
        .unwrap();
    let before = all_keys(&store).await;

    let cases: &[(&[&str], i32, &str)] = &[
        (&["promote", "nosuchapp", "v2"], 2, "unknown app"),
        (&["promote", "app1", "v2;"], 2, "version name"),
        (&["promote", "app1"], 2, "VERSION"),
        (&["promote", "app1", "v2", "--count", "0"], 2, "count"),
        (&["promote", "app1", "v2", "--all", "--count", "2"], 2, "cannot be used"),
        (&["promote", "app1", "v2", "--timeout", "soon"], 2, "timeout"),
        (&["promote", "app1", "v3"], 5, "no endpoint of v3 is registered"),
        (
            &["promote", "app1", "v2"],
            5,
            "cannot promote app1 to v2: the v2 endpoint of slot instance1 (127.0.0.1:9101) is reported failing: 503",
        ),
        (&["switch", "app1", "v2"], 5, "reported failing"),
        (&["switch", "app1", "v3"], 5, "no endpoint of v3"),
        (&["switch", "nosuchapp", "v2"], 2, "unknown app"),
        (&["rollback", "app1"], 5, "nothing to roll back"),
        (&["rollback", "app1", "--to", "v3"], 5, "no endpoint of v3"),
        (&["rollback", "app1", "--to", "v1}"], 2, "version name"),
        (&["rollback", "nosuchapp"], 2, "unknown app"),
        (&["dark", "app1", "v2"], 2, "at least one"),
        (&["dark", "app1", "--header", "X=1"], 2, "VERSION"),
        (&["dark", "app1", "v2", "--header", "X-Canary"], 2, "NAME=VALUE"),
        (&["dark", "app1", "v2", "--header", "X-Canary=1\"; evil"], 2, "header value"),
        (&["dark", "app1", "v2", "--cookie", "c=1 2"], 2, "cookie value"),
        (&["dark", "app1", "v2", "--cidr", "10.0.0.0/33"], 2, "prefix length"),
        (&["dark", "app1", "v2", "--off"], 2, "cannot be used"),
        (&["dark", "app1", "v3", "--cidr", "10.0.0.0/8"], 5, "no endpoint of v3"),
        (&["dark", "app2", "v2", "--header", "X=1"], 2, "tcp app"),
        (&["dark", "nosuchapp", "--off"], 2, "unknown app"),
        (&["weight", "app1", "v2", "101"], 2, "101"),
        (&["weight", "app1", "v2", "5"], 5, "v2 is not routed to any slot"),
        (&["weight", "app2", "v2", "50"], 2, "more than 100 percent"),
        (&["weight", "nosuchapp", "v2", "5"], 2, "unknown app"),
        (&["history", "nosuchapp"], 2, "unknown app"),
    ];
    for (args, code, message) in cases {
        let out = discoctl(&etcd, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    assert_eq!(all_keys(&store).await, before, "nothing may be written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dark_and_weight_write_the_policy_with_an_audit_record() {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let seeded = seed_three_slots(&store).await;
    let lb1 = template_agent(&etcd, "lb1", "10s");
    applied(&store, &lb1, seeded).await;
    let slots = "app1/instance1=v1;app1/instance2=v1;app1/instance3=v1;";

    let on = ok_json(
        &etcd,
        &[
            "dark",
            "app1",
            "v2",
            "--header",
            "X-Canary=1",
            "--cidr",
            "10.0.0.0/8",
            "--reason",
            "internal testing",
        ],
    );
    assert_eq!(on["changed"], true);
    assert_eq!(on["lagging"], json!([]));
    assert_eq!(on["policy"]["listen"], "127.0.0.1:8080", "{on}");
    assert_eq!(
        lb1.rendered().trim_end(),
        format!("{slots}app1:dark=v2,header:1,cidr:10.0.0.0/8;")
    );
    let status = ok_json(&etcd, &["status", "app1"]);
    assert_eq!(status["apps"]["app1"]["dark"]["version"], "v2");
    assert_eq!(
        status["apps"]["app1"]["dark"]["matches"],
        json!([{"header": {"name": "X-Canary", "value": "1"}}, {"cidr": "10.0.0.0/8"}])
    );
    let table = ok(&etcd, &["status", "app1"]);
    assert!(
        table.contains("app1: dark v2 if header X-Canary=1 or cidr 10.0.0.0/8; weights none"),
        "{table}"
    );

    let off = ok_json(&etcd, &["dark", "app1", "--off"]);
    assert_eq!(off["changed"], true);
    assert_eq!(lb1.rendered().trim_end(), slots);
    // Off again: nothing to change, nothing written.
    let again = ok_json(&etcd, &["dark", "app1", "--off"]);
    assert_eq!(again["changed"], false);

    // Weights only for routed versions; 0 removes.
    ok_json(&etcd, &["promote", "app1", "v2"]);
    let weight = ok_json(&etcd, &["weight", "app1", "v2", "5"]);
    assert_eq!(weight["policy"]["weights"], json!({"v2": 5}));
    assert!(lb1.rendered().contains("app1:weight:v2=5;"));
    ok_json(&etcd, &["weight", "app1", "v1", "95"]);
    let removed = ok_json(&etcd, &["weight", "app1", "v2", "0"]);
    assert_eq!(removed["policy"]["weights"], json!({"v1": 95}));
    assert!(!lb1.rendered().contains("weight:v2"), "{}", lb1.rendered());

    let records = history(&etcd, "app1");
    let actions: Vec<&str> = records
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["dark", "dark", "promote", "weight", "weight", "weight"]
    );
    assert_eq!(records[0]["reason"], "internal testing");
    assert_eq!(records[0]["revision"], on["revision"]);
    assert_eq!(records[0]["policy"]["from"]["dark"], Value::Null);
    assert_eq!(records[0]["policy"]["to"]["dark"]["version"], "v2");
    assert_eq!(records[1]["revision"], off["revision"]);
    assert_eq!(records[5]["policy"]["to"]["weights"], json!({"v1": 95}));
    let table = ok(&etcd, &["history", "app1", "--limit", "6"]);
    assert!(
        table.contains("dark off -> v2 if header X-Canary=1 or cidr 10.0.0.0/8"),
        "{table}"
    );
    assert!(table.contains("internal testing"), "{table}");
    assert!(table.contains("weights v1=95% v2=5% -> v1=95%"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_to_change_writes_nothing_and_no_agents_means_nothing_to_wait_for() {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    seed_three_slots(&store).await;

    // No agent is live: the wait is trivially over, and says so.
    let out = discoctl(&etcd, &["-o", "json", "promote", "app1", "v2", "--all"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("no live LB agent"), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["agents"], json!([]));
    assert_eq!(report["slots"].as_array().unwrap().len(), 3);

    let before = all_keys(&store).await;
    for args in [
        &["promote", "app1", "v2"][..],
        &["switch", "app1", "v2"],
        &["rollback", "app1", "--to", "v2"],
        &["weight", "app1", "v1", "0"],
    ] {
        let report = ok_json(&etcd, args);
        assert_eq!(report["changed"], false, "{args:?}: {report}");
    }
    assert_eq!(all_keys(&store).await, before, "a no-op writes nothing");

    // Rollback goes back to v1 once; a second rollback has nothing left to undo.
    let back = ok_json(&etcd, &["rollback", "app1", "--no-wait"]);
    assert_eq!(back["changed"], true);
    assert_eq!(back["rolls_back"], json!(["v2"]));
    assert_eq!(back["undoes_seq"], 1);
    let again = ok_json(&etcd, &["rollback", "app1"]);
    assert_eq!(again["changed"], false);
    assert!(routes(&store, "app1").await.values().all(|v| v == "v1"));
    assert_eq!(history(&etcd, "app1").len(), 2);
}
