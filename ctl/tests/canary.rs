//! `discoctl canary` with the real things: etcd, LB agents driving HAProxy (statistics
//! from its stats socket) and nginx (statistics from its access log), backends and
//! load. A healthy v2 goes all the way without a failed request; a v2 answering 500s
//! is rolled back at its first step, with the reason in the audit log, and with
//! `--dry-run-analysis` is reported at its first step and goes on. A `--gate` that says
//! no pauses the canary; `--notify` gets every event, and never delays a rollback. With template
//! agents (no proxies): abort, pause/resume, --confirm, the lock against a second
//! canary, and a crashed canary taken over with --resume or rolled back by `abort`.

mod common;

use std::time::Duration;

use common::*;
use disco_harness::{Backend, Etcd, Load, LoadOptions};
use serde_json::Value;

/// Three slots on v1, each with a v1 and a v2 backend.
fn backends() -> Vec<(String, String, Backend)> {
    (1..=3)
        .flat_map(|i| {
            ["v1", "v2"].map(|v| (format!("instance{i}"), v.to_string(), Backend::start(v)))
        })
        .collect()
}

/// [`backends`], the v2 ones answering 500 to 30 % of requests.
fn backends_with_failing_v2() -> Vec<(String, String, Backend)> {
    let backends = backends();
    for (_, v, b) in &backends {
        if v == "v2" {
            b.set_error_rate(0.3);
        }
    }
    backends
}

async fn seed_backends(store: &disco::store::Store, backends: &[(String, String, Backend)]) -> i64 {
    let endpoints: Vec<(&str, &str, String)> = backends
        .iter()
        .map(|(i, v, b)| (i.as_str(), v.as_str(), b.addr()))
        .collect();
    seed_app(
        store,
        "app1",
        "0.0.0.0:1",
        &endpoints,
        &[
            ("instance1", "v1"),
            ("instance2", "v1"),
            ("instance3", "v1"),
        ],
    )
    .await
}

fn names(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect()
}

fn history(etcd: &Etcd) -> Vec<Value> {
    ok_json(etcd, &["history", "app1"])["records"]
        .as_array()
        .unwrap()
        .clone()
}

async fn on_v2(store: &disco::store::Store) -> usize {
    routes(store, "app1")
        .await
        .values()
        .filter(|v| *v == "v2")
        .count()
}

fn load(url: &str) -> Load {
    Load::start(
        url,
        LoadOptions {
            connections: 2,
            keep_alive: true,
            headers: vec![],
        },
    )
}

const MINUTE: Duration = Duration::from_secs(60);

/// etcd with app1 on three slots ([`seed_three_slots`]), and LB agent `lb1` rendering
/// the template (status lease 10 s), which has applied it.
async fn three_slots_and_a_template_agent() -> (Etcd, disco::store::Store, Agent) {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let seeded = seed_three_slots(&store).await;
    let lb1 = template_agent(&etcd, "lb1", "10s");
    applied(&store, &lb1, seeded).await;
    (etcd, store, lb1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_completes_with_no_failed_request() {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let backends = backends();
    let seeded = seed_backends(&store, &backends).await;
    let haproxy = ProxyAgent::haproxy(&etcd, "lb-haproxy", "5s");
    let nginx = ProxyAgent::nginx(&etcd, "lb-nginx", "5s");
    applied(&store, &haproxy.agent, seeded).await;
    applied(&store, &nginx.agent, seeded).await;
    let loads = [
        ("haproxy", load(&haproxy.url())),
        ("nginx", load(&nginx.url())),
    ];
    for (_, l) in &loads {
        l.wait_for_ok(100);
    }

    let canary = Background::start(
        &etcd,
        &[
            "canary",
            "app1",
            "v2",
            "--steps",
            "1,2,all",
            "--interval",
            "3s",
        ],
    );
    let (code, events, stderr) = canary.finish(Duration::from_secs(120));
    assert_eq!(code, Some(0), "{events:#?}\n{stderr}");
    for (name, l) in loads {
        let r = l.stop();
        println!("{name}: {r:?}");
        assert_eq!(r.failed, 0, "{name}: {:?}", r.errors);
        assert!(
            r.by_body.get("v2").copied().unwrap_or(0) > 0,
            "{name}: {r:?}"
        );
    }

    // Every step: started, applied by both agents, observed with traffic, passed.
    let kinds: Vec<&str> = names(&events)
        .into_iter()
        .filter(|e| *e != "observation")
        .collect();
    assert_eq!(
        kinds,
        [
            "started",
            "step_started",
            "applied",
            "step_passed",
            "step_started",
            "applied",
            "step_passed",
            "step_started",
            "applied",
            "step_passed",
            "completed"
        ],
        "{events:#?}"
    );
    let passed: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "step_passed")
        .collect();
    for (n, e) in passed.iter().enumerate() {
        assert_eq!(e["step"], n + 1);
        assert_eq!(e["of"], 3);
        assert!(e["canary"]["requests"].as_u64().unwrap() >= 20, "{e}");
        assert_eq!(e["canary"]["errors_5xx"], 0, "{e}");
        assert_eq!(e["canary"]["version"], "v2");
    }
    // Until the last step, the stable version had traffic too.
    assert!(passed[0]["stable"]["requests"].as_u64().unwrap() > 0);
    for e in events.iter().filter(|e| e["event"] == "applied") {
        assert_eq!(
            e["agents"],
            serde_json::json!(["lb-haproxy", "lb-nginx"]),
            "{e}"
        );
        assert_eq!(e["lagging"], serde_json::json!([]));
    }

    assert_eq!(on_v2(&store).await, 3);
    let record = rollout(&store, "app1").await.unwrap();
    assert_eq!(record["state"], "done", "{record}");
    assert_eq!(record["step"], 3);
    assert_eq!(record["passed"], 3);
    assert!(!locked(&store, "app1").await, "the lock is given up");
    let records = history(&etcd);
    let actions: Vec<&str> = records
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["canary", "canary", "canary"]);
    assert_eq!(records[0]["to"], serde_json::json!({"instance1": "v2"}));
    assert_eq!(records[1]["to"], serde_json::json!({"instance2": "v2"}));
    assert_eq!(records[2]["to"], serde_json::json!({"instance3": "v2"}));
    assert!(records[0]["reason"]
        .as_str()
        .unwrap()
        .contains("canary step 1/3"));
    // `status` shows the finished canary; a plain `rollback` undoes it.
    let table = ok(&etcd, &["status", "app1"]);
    assert!(
        table.contains("app1: canary v2 step 3/3 (every slot on v2): done"),
        "{table}"
    );
    ok_json(&etcd, &["rollback", "app1"]);
    assert_eq!(on_v2(&store).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_answering_500s_is_rolled_back_at_the_first_step() {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let backends = backends_with_failing_v2();
    let seeded = seed_backends(&store, &backends).await;
    let haproxy = ProxyAgent::haproxy(&etcd, "lb-haproxy", "5s");
    let nginx = ProxyAgent::nginx(&etcd, "lb-nginx", "5s");
    applied(&store, &haproxy.agent, seeded).await;
    applied(&store, &nginx.agent, seeded).await;
    let loads = [load(&haproxy.url()), load(&nginx.url())];
    for l in &loads {
        l.wait_for_ok(100);
    }

    let canary = Background::start(
        &etcd,
        &[
            "canary",
            "app1",
            "v2",
            "--steps",
            "1,2,all",
            "--interval",
            "3s",
        ],
    );
    let (code, events, stderr) = canary.finish(Duration::from_secs(120));
    assert_eq!(
        code,
        Some(6),
        "exit code 6 = rolled back: {events:#?}\n{stderr}"
    );
    assert!(stderr.contains("rolled back: step 1/3"), "{stderr}");
    let kinds: Vec<&str> = names(&events)
        .into_iter()
        .filter(|e| *e != "observation")
        .collect();
    assert_eq!(
        kinds,
        ["started", "step_started", "applied", "rolled_back"],
        "{events:#?}"
    );
    let rolled = events.last().unwrap();
    let reason = rolled["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("step 1/3 (1 slot on v2): v2 5xx rate "),
        "{reason}"
    );
    assert!(reason.contains("over --max-error-rate 1.0%"), "{reason}");
    assert_eq!(rolled["lagging"], serde_json::json!([]));

    // Back on v1 everywhere; the audit log says why.
    assert_eq!(on_v2(&store).await, 0);
    let records = history(&etcd);
    let last = records.last().unwrap();
    assert_eq!(last["action"], "rollback");
    assert_eq!(last["from"], serde_json::json!({"instance1": "v2"}));
    assert_eq!(last["to"], serde_json::json!({"instance1": "v1"}));
    let why = last["reason"].as_str().unwrap();
    assert!(
        why.starts_with("canary of v2 rolled back: step 1/3"),
        "{why}"
    );
    assert!(why.contains("5xx rate"), "{why}");
    assert_eq!(last["revision"], rolled["revision"]);
    let record = rollout(&store, "app1").await.unwrap();
    assert_eq!(record["state"], "rolled_back");
    assert_eq!(record["reason"], reason);
    assert!(!locked(&store, "app1").await);

    // After the rollback (applied by both agents when discoctl returned), no 500 any more.
    for l in &loads {
        l.wait_for_ok(20);
        let before = l.snapshot();
        let after = l.wait_for_ok(300).since(&before);
        assert_eq!(after.failed, 0, "{after:?}");
        assert_eq!(after.by_body.get("v2"), None, "{after:?}");
    }
    // A new canary may start once the last one is over: refused only for lack of
    // endpoints, here a version nobody registered.
    let out = discoctl(&etcd, &["canary", "app1", "v3"]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_reports_the_step_that_would_fail_and_goes_on() {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let backends = backends_with_failing_v2();
    let seeded = seed_backends(&store, &backends).await;
    let haproxy = ProxyAgent::haproxy(&etcd, "lb-haproxy", "5s");
    applied(&store, &haproxy.agent, seeded).await;
    let load = load(&haproxy.url());
    load.wait_for_ok(100);

    let canary = Background::start(
        &etcd,
        &[
            "canary",
            "app1",
            "v2",
            "--steps",
            "1,all",
            "--interval",
            "3s",
            "--dry-run-analysis",
        ],
    );
    let (code, events, stderr) = canary.finish(Duration::from_secs(120));
    assert_eq!(code, Some(0), "a dry run completes: {events:#?}\n{stderr}");
    assert_eq!(events[0]["analysis"]["dry_run"], true, "{events:#?}");
    let kinds: Vec<&str> = names(&events)
        .into_iter()
        .filter(|e| *e != "observation")
        .collect();
    assert_eq!(
        kinds[..4],
        ["started", "step_started", "applied", "step_would_fail"],
        "{events:#?}"
    );
    assert_eq!(kinds.last(), Some(&"completed"), "{events:#?}");
    let would = events
        .iter()
        .find(|e| e["event"] == "step_would_fail")
        .unwrap();
    assert_eq!(would["step"], 1);
    let reason = would["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("v2 5xx rate ") && reason.contains("over --max-error-rate 1.0%"),
        "{reason}"
    );
    // Found failing within the step (a real run would have rolled back then), and the
    // step observed to its end anyway.
    assert!(
        would["failed_after_ms"].as_u64().unwrap() <= 3000,
        "{would}"
    );
    assert!(
        would["canary"]["errors_5xx"].as_u64().unwrap() > 0,
        "{would}"
    );
    // Nothing rolled back: every slot on v2, the record done.
    assert_eq!(on_v2(&store).await, 3);
    assert_eq!(rollout(&store, "app1").await.unwrap()["state"], "done");
    assert!(history(&etcd).iter().all(|r| r["action"] != "rollback"));
    drop(load);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_that_refuses_pauses_the_canary_and_every_event_is_notified() {
    let (etcd, store, _lb1) = three_slots_and_a_template_agent().await;
    let gate = Webhook::start();
    gate.set_status(503);
    let notify = Webhook::start();
    let (gate_url, notify_url) = (gate.url("/gate"), notify.url("/events"));
    let mut canary = Background::start(
        &etcd,
        &[
            "canary",
            "app1",
            "v2",
            "--steps",
            "1,all",
            "--interval",
            "1s",
            "--on-no-data",
            "pass",
            "--gate",
            &gate_url,
            "--notify",
            &notify_url,
        ],
    );

    // The gate says no to step 1: paused, nothing applied, the gate's answer as reason.
    let paused = canary.wait_event("paused", MINUTE, |_| true);
    let reason = paused["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!("gate {gate_url} did not allow step 1/2: HTTP 503")),
        "{reason}"
    );
    assert_eq!(paused["by"], "gate");
    assert_eq!(
        on_v2(&store).await,
        0,
        "nothing applied before the gate allows it"
    );
    assert_eq!(rollout(&store, "app1").await.unwrap()["state"], "paused");
    let asked = gate.bodies();
    assert_eq!(asked.len(), 1, "{asked:#?}");
    assert_eq!(
        (
            &asked[0]["app"],
            &asked[0]["version"],
            &asked[0]["step"],
            &asked[0]["of"]
        ),
        (
            &Value::from("app1"),
            &Value::from("v2"),
            &Value::from(1),
            &Value::from(2)
        ),
    );
    assert!(asked[0]["statistics"].is_object(), "{asked:#?}");

    // Allowed now: `resume` asks again, and every step goes through the gate.
    gate.set_status(200);
    assert_eq!(ok_json(&etcd, &["resume", "app1"])["result"], "resumed");
    let (code, events, stderr) = canary.finish(MINUTE);
    assert_eq!(code, Some(0), "{events:#?}\n{stderr}");
    let steps: Vec<u64> = gate
        .bodies()
        .iter()
        .map(|b| b["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [1, 1, 2]);
    assert_eq!(on_v2(&store).await, 3);

    // Every event but the observations reached the receiver, in order, before exit.
    let printed: Vec<Value> = events
        .into_iter()
        .filter(|e| e["event"] != "observation")
        .collect();
    assert_eq!(notify.bodies(), printed);
    assert!(names(&printed).contains(&"resumed"), "{printed:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_does_not_delay_a_rollback() {
    let (etcd, store, _lb1) = three_slots_and_a_template_agent().await;
    let notify = Webhook::start();
    notify.set_status(disco_testkit::webhook::NO_ANSWER);
    let notify_url = notify.url("/events");
    let mut canary = Background::start(
        &etcd,
        &[
            "canary",
            "app1",
            "v2",
            "--steps",
            "1,all",
            "--interval",
            "60s",
            "--notify",
            &notify_url,
        ],
    );
    canary.wait_event("applied", MINUTE, |e| e["step"] == 1);
    ok_json(&etcd, &["abort", "app1"]);
    // Rolled back while the first notification still waits for its answer.
    canary.wait_event("rolled_back", MINUTE, |_| true);
    assert_eq!(on_v2(&store).await, 0);
    assert_eq!(
        rollout(&store, "app1").await.unwrap()["state"],
        "rolled_back"
    );
    assert!(canary.running(), "still draining the notifications");
    let (code, _, stderr) = canary.finish(MINUTE);
    assert_eq!(code, Some(6), "{stderr}");
    assert!(stderr.contains("dropped"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_from_another_process_rolls_back_and_a_second_canary_is_refused() {
    let (etcd, store, lb1) = three_slots_and_a_template_agent().await;

    let mut canary = Background::start(
        &etcd,
        &[
            "canary",
            "app1",
            "v2",
            "--steps",
            "1,2,all",
            "--interval",
            "10m",
            "--dark-first",
            "--header",
            "X-Canary=1",
        ],
    );
    // Step 1 of 4: only the dark canary; no slot moves.
    canary.wait_event("applied", MINUTE, |e| e["step"] == 1);
    assert_eq!(on_v2(&store).await, 0);
    let record = rollout(&store, "app1").await.unwrap();
    assert_eq!(
        (record["state"].as_str(), record["step"].as_u64()),
        (Some("running"), Some(1))
    );
    assert_eq!(
        record["steps"],
        serde_json::json!(["dark", "1", "2", "all"])
    );
    assert!(locked(&store, "app1").await);
    assert!(
        lb1.rendered().contains("app1:dark=v2,header:1;"),
        "{}",
        lb1.rendered()
    );

    // A second canary of the app is refused while this one runs; nothing changes.
    let out = discoctl(&etcd, &["canary", "app1", "v2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("a canary of app1 is running"), "{stderr}");
    let out = discoctl(&etcd, &["canary", "app1", "--resume"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let aborted = ok_json(&etcd, &["abort", "app1", "--reason", "looks wrong"]);
    assert_eq!(aborted["result"], "rolled back", "{aborted}");
    assert_eq!(aborted["state"], "rolled_back");
    let (code, events, stderr) = canary.finish(MINUTE);
    assert_eq!(code, Some(6), "{stderr}");
    let rolled = events.iter().find(|e| e["event"] == "rolled_back").unwrap();
    assert_eq!(
        rolled["reason"],
        "aborted by tester@ci: looks wrong during step 1/4"
    );
    assert_eq!(on_v2(&store).await, 0);
    assert!(
        !lb1.rendered().contains("dark"),
        "dark canary off again: {}",
        lb1.rendered()
    );
    let last = history(&etcd).last().unwrap().clone();
    assert_eq!(last["action"], "rollback");
    assert!(last["reason"]
        .as_str()
        .unwrap()
        .contains("aborted by tester@ci: looks wrong"));
    assert_eq!(last["policy"]["to"]["dark"], Value::Null);
    assert!(!locked(&store, "app1").await);
    // Nothing left to abort, pause or resume.
    for verb in ["abort", "pause", "resume"] {
        let out = discoctl(&etcd, &[verb, "app1"]);
        assert_eq!(out.status.code(), Some(5), "{verb}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_the_steps_resume_continues_and_confirm_waits_for_a_human() {
    let (etcd, store, _lb1) = three_slots_and_a_template_agent().await;

    // Template agents publish no statistics: every step has no data, and passes.
    let mut canary = Background::start(
        &etcd,
        &[
            "canary",
            "app1",
            "v2",
            "--steps",
            "1,all",
            "--interval",
            "3s",
            "--on-no-data",
            "pass",
            "--confirm",
        ],
    );
    canary.wait_event("applied", MINUTE, |e| e["step"] == 1);
    let paused = ok_json(&etcd, &["pause", "app1", "--reason", "lunch"]);
    assert_eq!(paused["state"], "paused", "{paused}");
    canary.wait_event("paused", MINUTE, |e| e["reason"] == "lunch");
    // Paused for longer than an interval (3 s): the runner's own progress events, one
    // every 5 s, show it paused, its clock stopped, and the step not advanced.
    let paused_observations = |events: &[serde_json::Value]| -> Vec<serde_json::Value> {
        let since = events.iter().position(|e| e["event"] == "paused").unwrap();
        events[since..]
            .iter()
            .filter(|e| e["event"] == "observation" && e["paused"] == true)
            .cloned()
            .collect()
    };
    let observations = disco_harness::wait_for("two observations while paused", MINUTE, || {
        let seen = paused_observations(&canary.events());
        (seen.len() >= 2).then_some(seen)
    });
    assert_eq!(
        observations[0]["remaining_ms"], observations[1]["remaining_ms"],
        "{observations:#?}"
    );
    assert!(canary.running());
    let record = rollout(&store, "app1").await.unwrap();
    assert_eq!(
        (record["state"].as_str(), record["passed"].as_u64()),
        (Some("paused"), Some(0))
    );
    assert!(!canary.events().iter().any(|e| e["event"] == "step_passed"));
    assert_eq!(on_v2(&store).await, 1);
    let table = ok(&etcd, &["status", "app1"]);
    assert!(
        table.contains("app1: canary v2 step 1/2 (1 slot on v2): paused: lunch"),
        "{table}"
    );

    let resumed = ok_json(&etcd, &["resume", "app1"]);
    assert_eq!(resumed["result"], "resumed");
    canary.wait_event("resumed", MINUTE, |_| true);
    canary.wait_event("step_passed", MINUTE, |e| e["step"] == 1);

    // --confirm: the final step waits for `resume`.
    canary.wait_event("awaiting_confirmation", MINUTE, |_| true);
    assert!(canary.running());
    assert_eq!(on_v2(&store).await, 1);
    let record = rollout(&store, "app1").await.unwrap();
    assert_eq!(record["state"], "paused");
    assert!(record["reason"]
        .as_str()
        .unwrap()
        .starts_with("awaiting confirmation"));
    let confirmed = ok_json(&etcd, &["resume", "app1"]);
    assert_eq!(confirmed["result"], "final step confirmed", "{confirmed}");

    let (code, events, stderr) = canary.finish(MINUTE);
    assert_eq!(code, Some(0), "{events:#?}\n{stderr}");
    assert!(
        stderr.contains("no LB agent publishes traffic statistics"),
        "{stderr}"
    );
    assert_eq!(
        events.iter().filter(|e| e["event"] == "no_data").count(),
        2,
        "{events:#?}"
    );
    // The final step was applied only after the confirmation was taken.
    let at = |pred: &dyn Fn(&serde_json::Value) -> bool| {
        events
            .iter()
            .position(pred)
            .unwrap_or_else(|| panic!("{events:#?}"))
    };
    let awaiting = at(&|e| e["event"] == "awaiting_confirmation");
    let confirmed = awaiting
        + 1
        + events[awaiting + 1..]
            .iter()
            .position(|e| e["event"] == "resumed")
            .unwrap_or_else(|| panic!("{events:#?}"));
    let final_step = at(&|e| e["event"] == "applied" && e["step"] == 2);
    assert!(
        awaiting < confirmed && confirmed < final_step,
        "{events:#?}"
    );
    assert_eq!(on_v2(&store).await, 3);
    assert_eq!(rollout(&store, "app1").await.unwrap()["state"], "done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_canary_is_taken_over_with_resume_or_rolled_back_with_abort() {
    let (etcd, store, _lb1) = three_slots_and_a_template_agent().await;

    let args = [
        "canary",
        "app1",
        "v2",
        "--steps",
        "1,2,all",
        "--interval",
        "1s",
        "--on-no-data",
        "pass",
        "--lock-ttl",
        "2s",
    ];
    let mut canary = Background::start(&etcd, &args);
    canary.wait_event("step_passed", MINUTE, |e| e["step"] == 1);
    canary.wait_event("applied", MINUTE, |e| e["step"] == 2);
    canary.kill();
    assert_eq!(on_v2(&store).await, 2);
    // The lock expires with the dead process's lease.
    disco_harness::wait_for_async("the lock to expire", MINUTE, || async {
        (!locked(&store, "app1").await).then_some(())
    })
    .await;
    let record = rollout(&store, "app1").await.unwrap();
    assert_eq!(
        (record["state"].as_str(), record["step"].as_u64()),
        (Some("running"), Some(2))
    );
    // A new canary is refused while the interrupted one is recorded.
    let out = discoctl(&etcd, &["canary", "app1", "v2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");
    let out = discoctl(&etcd, &["canary", "app1", "v3", "--resume"]);
    assert_eq!(out.status.code(), Some(5), "the recorded version is v2");

    // --resume: step 2 again (nothing to change), then the rest, with the recorded settings.
    let resumed = Background::start(&etcd, &["canary", "app1", "--resume"]);
    let (code, events, stderr) = resumed.finish(MINUTE);
    assert_eq!(code, Some(0), "{events:#?}\n{stderr}");
    assert_eq!(events[0]["event"], "started");
    assert_eq!(events[0]["resumed"], true);
    let steps: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "step_passed")
        .map(|e| e["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [2, 3]);
    let applied2 = events
        .iter()
        .find(|e| e["event"] == "applied" && e["step"] == 2)
        .unwrap();
    assert_eq!(
        applied2["changed"], false,
        "step 2 was committed before the crash"
    );
    assert_eq!(on_v2(&store).await, 3);
    let actions: Vec<String> = history(&etcd)
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        actions,
        ["canary", "canary", "canary"],
        "no step written twice"
    );

    // A crashed canary nobody resumes: `abort` takes the lock and rolls back itself.
    let mut canary = Background::start(
        &etcd,
        &[
            "canary",
            "app1",
            "v1",
            "--steps",
            "1,all",
            "--interval",
            "10m",
            "--lock-ttl",
            "2s",
        ],
    );
    canary.wait_event("applied", MINUTE, |e| e["step"] == 1);
    canary.kill();
    assert_eq!(on_v2(&store).await, 2);
    let aborted = ok_json(&etcd, &["abort", "app1"]);
    assert_eq!(aborted["event"], "rolled_back", "{aborted}");
    assert_eq!(
        on_v2(&store).await,
        3,
        "back to the state before that canary"
    );
    assert_eq!(
        rollout(&store, "app1").await.unwrap()["state"],
        "rolled_back"
    );
    assert!(!locked(&store, "app1").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inconclusive_step_pauses_for_an_operator_and_says_why() {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let backends = backends();
    let seeded = seed_backends(&store, &backends).await;
    // HAProxy read through `show stat` only: means, no per-request times, so a
    // --max-p95 cannot be measured: inconclusive at every step, by construction.
    let lb = ProxyAgent::haproxy(&etcd, "lb-haproxy", "5s");
    applied(&store, &lb.agent, seeded).await;
    let traffic = load(&lb.url());
    traffic.wait_for_ok(100);

    let mut canary = Background::start(
        &etcd,
        &[
            "canary",
            "app1",
            "v2",
            "--steps",
            "1,all",
            "--interval",
            "2s",
            "--max-p95",
            "100",
            "--on-inconclusive",
            "pause",
        ],
    );
    let unsure = canary.wait_event("inconclusive", MINUTE, |e| e["step"] == 1);
    assert_eq!(unsure["then"], "pause", "{unsure}");
    let reason = unsure["reason"].as_str().unwrap();
    assert_eq!(
        reason,
        "v2 has no per-request response times for --max-p95 (an HAProxy target needs log_socket)"
    );
    let paused = canary.wait_event("paused", MINUTE, |e| e["by"] == "analysis");
    assert!(
        paused["reason"].as_str().unwrap().starts_with(&format!(
            "step 1/2 is inconclusive: {reason}; `discoctl resume app1` observes one more interval"
        )),
        "{paused}"
    );
    let record = rollout(&store, "app1").await.unwrap();
    assert_eq!(
        (record["state"].as_str(), record["changed_by"].as_str()),
        (Some("paused"), Some("analysis")),
        "{record}"
    );
    // Neither forward nor back: the step stays as it is until an operator decides.
    assert_eq!(on_v2(&store).await, 1);
    assert!(canary.running());

    // A resume observes one more interval; still inconclusive: paused again.
    ok_json(&etcd, &["resume", "app1"]);
    canary.wait_event("resumed", MINUTE, |_| true);
    disco_harness::wait_for("a second inconclusive verdict", MINUTE, || {
        let events = canary.events();
        (events
            .iter()
            .filter(|e| e["event"] == "inconclusive")
            .count()
            >= 2)
            .then_some(())
    });
    canary.wait_event("paused", MINUTE, |e| {
        e["by"] == "analysis" && e["step"] == 1
    });
    assert_eq!(on_v2(&store).await, 1);

    ok_json(&etcd, &["abort", "app1"]);
    let (code, events, stderr) = canary.finish(MINUTE);
    assert_eq!(code, Some(6), "{events:#?}\n{stderr}");
    assert!(!events.iter().any(|e| e["event"] == "step_passed"));
    assert_eq!(on_v2(&store).await, 0);
    let records = history(&etcd);
    assert_eq!(records.last().unwrap()["action"], "rollback");
}

/// The canary's fast path (issue: "faster to safety"): a slot canary (1 of 3) of a v2
/// answering 20 % 500s, HAProxy logging every request to the agent, the agent
/// publishing the canary's app every `canary_stats_interval` (50 ms), discoctl judging
/// every update. Counted by the clients: the public 500s from the first request on v2
/// until discoctl returns, which is after every LB agent applied the rollback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_canary_answering_500s_is_stopped_within_100_public_errors() {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let backends = backends();
    for (_, v, b) in &backends {
        if v == "v2" {
            b.set_error_rate(0.2);
        }
    }
    let seeded = seed_backends(&store, &backends).await;
    let lb = ProxyAgent::haproxy_logging(&etcd, "lb-haproxy", "5s");
    applied(&store, &lb.agent, seeded).await;
    let traffic = Load::start(
        &lb.url(),
        LoadOptions {
            connections: 8,
            ..LoadOptions::default()
        },
    );
    traffic.wait_for_ok(1000);
    let before = traffic.snapshot();
    let started = std::time::Instant::now();

    let canary = Background::start(
        &etcd,
        &[
            "canary",
            "app1",
            "v2",
            "--steps",
            "1,all",
            "--interval",
            "60s",
        ],
    );
    let (code, events, stderr) = canary.finish(MINUTE);
    let during = traffic.snapshot().since(&before);
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(code, Some(6), "{events:#?}\n{stderr}");
    let rolled = events.iter().find(|e| e["event"] == "rolled_back").unwrap();
    let reason = rolled["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("step 1/2 (1 slot on v2): v2 5xx rate "),
        "{reason}"
    );
    assert!(reason.contains("Fisher's exact test"), "{reason}");
    assert_eq!(rolled["lagging"], serde_json::json!([]));
    // v2 was reached (the 500s are its own), and no more than 100 times with a 500.
    let v2_ok = during.by_body.get("v2").copied().unwrap_or(0);
    eprintln!(
        "public requests while the canary ran: {} in {seconds:.1} s ({:.0}/s), {} answered 500 by v2, {v2_ok} answered 200 by v2; {reason}",
        during.sent,
        during.sent as f64 / seconds,
        during.failed
    );
    assert!(during.failed >= 1 && v2_ok >= 1, "{during:?}");
    assert!(
        during.failed <= 100,
        "{} public 500s before the rollback: {during:?}\n{events:#?}",
        during.failed
    );
    assert_eq!(on_v2(&store).await, 0);
}
