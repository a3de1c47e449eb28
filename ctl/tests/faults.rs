//! discoctl under faults, with real etcd and real agents: exit codes that tell the truth.
//!
//! - The etcd leader killed while writes are in flight, at several offsets: exit 0 means
//!   committed once, 1/4 mean nothing written, 7 means "unknown"; no change is lost or
//!   doubled in the history.
//! - An LB agent frozen during `--wait` (as a host cut from etcd would be: it still
//!   serves the old routes) is not counted as confirming once its status expires: it
//!   is named, exit 3; `--allow-vanished` accepts that.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use disco_harness::Etcd;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_mid_write_never_makes_the_exit_code_lie() {
    let mut etcd = Etcd::cluster(3);
    let store = store(etcd.endpoints());
    seed_three_slots(&store).await;

    let trials = 12;
    let mut outcomes: Vec<(String, i32, String)> = Vec::new();
    for trial in 0..trials {
        let actor = format!("trial{trial}@ci");
        let current = routes(&store, "app1").await["instance1"].clone();
        let target = if current == "v1" { "v2" } else { "v1" };
        let leader =
            disco_harness::wait_for("an etcd leader", Duration::from_secs(20), || etcd.leader());
        let mut child = command(
            &etcd,
            &[
                "switch",
                "app1",
                target,
                "--no-wait",
                "--request-timeout",
                "5s",
            ],
        )
        .env("DISCO_ACTOR", &actor)
        .env("RUST_LOG", "disco::change=info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
        // Offsets around the commit: the process start, its reads, the transaction.
        std::thread::sleep(Duration::from_millis(2 + 4 * trial as u64));
        etcd.kill(leader);
        let deadline = Instant::now() + Duration::from_secs(40);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "discoctl hung after the leader was killed"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        use std::io::Read;
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        outcomes.push((actor, status.code().unwrap_or(-1), stderr));
        etcd.restart(leader);
    }

    let history = ok_json(&etcd, &["history", "app1"]);
    let records = history["records"].as_array().unwrap();
    let mut per_actor: BTreeMap<String, usize> = BTreeMap::new();
    for r in records {
        *per_actor
            .entry(r["actor"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    for (actor, code, stderr) in &outcomes {
        let written = per_actor.get(actor).copied().unwrap_or(0);
        match code {
            0 => assert_eq!(written, 1, "{actor}: exit 0 means committed once\n{stderr}"),
            7 => assert!(written <= 1, "{actor}: doubled\n{stderr}"),
            1 | 4 => assert_eq!(
                written, 0,
                "{actor}: exit {code} means nothing written\n{stderr}"
            ),
            other => panic!("{actor}: unexpected exit {other}\n{stderr}"),
        }
    }
    // The routes are what the last committed record says.
    let last: &Value = records.last().expect("at least one switch committed");
    let routes = routes(&store, "app1").await;
    for (slot, version) in last["to"].as_object().unwrap() {
        assert_eq!(&routes[slot], version.as_str().unwrap(), "{last}");
    }
    let codes: Vec<i32> = outcomes.iter().map(|(_, code, _)| *code).collect();
    let found = |what: &str| outcomes.iter().filter(|(_, _, e)| e.contains(what)).count();
    println!(
        "leader-kill trials, exit codes in order: {codes:?}; reply lost but committed: {}; not committed, sent again: {}",
        found("reply was lost, but it was committed"),
        found("not committed; sending it again")
    );
    let committed = outcomes.iter().filter(|(_, code, _)| *code == 0).count();
    assert!(committed > 0, "no trial committed: {outcomes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_lb_agent_that_vanishes_during_the_wait_is_not_counted_as_confirming() {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let seeded = seed_three_slots(&store).await;
    let lb1 = template_agent(&etcd, "lb1", "10s");
    // A short lease: frozen, its status expires during the wait.
    let lb2 = template_agent(&etcd, "lb2", "2s");
    applied(&store, &lb1, seeded).await;
    applied(&store, &lb2, seeded).await;

    lb2.signal("STOP");
    let out = discoctl(&etcd, &["promote", "app1", "v2", "--timeout", "20s"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("lb2 (not confirmed"), "{stderr}");
    assert!(!stderr.contains("lb1"), "lb1 confirmed: {stderr}");
    assert_eq!(routes(&store, "app1").await["instance1"], "v2", "committed");

    // It comes back and catches up; frozen again, the operator accepts the loss.
    lb2.signal("CONT");
    let (_, kvs) = store
        .get_prefix(&disco::Keyspace::default().apps(), None)
        .await
        .unwrap();
    let revision = kvs.iter().map(|kv| kv.mod_revision).max().unwrap();
    applied(&store, &lb2, revision).await;
    lb2.signal("STOP");
    let out = discoctl(
        &etcd,
        &[
            "promote",
            "app1",
            "v2",
            "--timeout",
            "20s",
            "--allow-vanished",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("lb2 (not confirmed"),
        "still named: {stderr}"
    );
    lb2.signal("CONT");
}
