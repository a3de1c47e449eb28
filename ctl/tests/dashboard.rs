//! `discoctl dashboard` in a real browser (Debian's chromium, driven over WebDriver by
//! chromedriver) against the real things: etcd, an LB agent driving HAProxy with
//! backends and traffic. The page follows a promotion made on the command line within a
//! second without reloading, shows a canary and pauses, aborts and promotes by clicks,
//! each recorded as `dashboard:<name>`, and filters apps; and the action endpoints
//! refuse what they must (read-only, no or wrong token, another origin or host).
//! Without etcd the page is still served and says why it is empty.

mod common;

use std::time::{Duration, Instant};

use common::*;
use disco_harness::{Backend, Etcd, Load, LoadOptions};
use serde_json::{json, Value};

const MINUTE: Duration = Duration::from_secs(60);
const TOKEN: &str = "dashboard-test-token-0123456789";

/// Three slots on v1, each with a v1 and a v2 backend.
fn backends() -> Vec<(String, String, Backend)> {
    (1..=3)
        .flat_map(|i| {
            ["v1", "v2"].map(|v| (format!("instance{i}"), v.to_string(), Backend::start(v)))
        })
        .collect()
}

async fn seed(store: &disco::store::Store, backends: &[(String, String, Backend)]) -> i64 {
    let endpoints: Vec<(&str, &str, String)> = backends
        .iter()
        .map(|(i, v, b)| (i.as_str(), v.as_str(), b.addr()))
        .collect();
    seed_app(
        store,
        "app1",
        "127.0.0.1:8080",
        &endpoints,
        &[
            ("instance1", "v1"),
            ("instance2", "v1"),
            ("instance3", "v1"),
        ],
    )
    .await
}

/// A file holding [`TOKEN`], and the dir it is in.
fn token_file() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    let path = path.display().to_string();
    (dir, path)
}

fn dashboard(etcd: &Etcd, args: &[&str]) -> Dashboard {
    Dashboard::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_discoctl")),
        &etcd.endpoints(),
        args,
    )
}

fn history(etcd: &Etcd) -> Vec<Value> {
    ok_json(etcd, &["history", "app1"])["records"]
        .as_array()
        .unwrap()
        .clone()
}

const SLOT1: &str = r#"[data-app="app1"] .slot[data-instance="instance1"]"#;
const CANARY_STATE: &str = r#"[data-app="app1"] .canary-state"#;
const NEWEST_ACTOR: &str = r#"[data-app="app1"] tr[data-seq]:first-child .actor"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_follows_etcd_live_and_steers_a_canary_by_clicks() {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let backends = backends();
    let seeded = seed(&store, &backends).await;
    let haproxy = ProxyAgent::haproxy(&etcd, "lb-haproxy", "5s");
    applied(&store, &haproxy.agent, seeded).await;
    let load = Load::start(
        &haproxy.url(),
        LoadOptions {
            connections: 2,
            keep_alive: true,
            headers: vec![],
        },
    );
    load.wait_for_ok(50);
    let (_token_dir, token_path) = token_file();
    let dash = dashboard(
        &etcd,
        &[
            "--allow-actions",
            "--token-file",
            &token_path,
            "--name",
            "ci",
        ],
    );
    let browser = Browser::start(1280, 1000).await;

    // A wrong token first: the page says the action was refused.
    browser
        .goto(&format!("{}#token=not-the-token-0123456789", dash.url))
        .await;
    browser
        .wait_for_text(SLOT1, Duration::from_secs(10), |t| t == "v1")
        .await;
    assert_eq!(
        browser.text("#actions-mode").await.as_deref(),
        Some("actions as dashboard:ci")
    );
    let hash = browser
        .execute("return location.hash;", vec![])
        .await
        .unwrap();
    assert_eq!(hash, "", "the token is taken out of the address bar");
    browser
        .wait_for_text(
            r#"[data-agent="lb-haproxy"]"#,
            Duration::from_secs(10),
            |t| t.contains("current"),
        )
        .await;

    // Promoted on the command line: the page shows it within a second, not reloaded.
    browser
        .execute("window.__marker = 'same page'; return null;", vec![])
        .await
        .unwrap();
    ok(&etcd, &["promote", "app1", "v2", "--no-wait"]);
    let committed = Instant::now();
    browser
        .wait_for_text(SLOT1, Duration::from_secs(1), |t| t == "v2")
        .await;
    println!("promotion shown {:?} after its commit", committed.elapsed());
    let marker = browser
        .execute("return window.__marker;", vec![])
        .await
        .unwrap();
    assert_eq!(marker, "same page", "the page was not reloaded");
    browser
        .wait_for_text(NEWEST_ACTOR, Duration::from_secs(5), |t| t == "tester@ci")
        .await;
    // The traffic the agent publishes reaches the charts.
    browser
        .wait_for_text(
            r#"[data-app="app1"] .traffic .chart"#,
            Duration::from_secs(15),
            |t| t.starts_with("requests/s: v1 ") && !t.contains("v1 0.0"),
        )
        .await;
    ok(&etcd, &["rollback", "app1"]);
    browser
        .wait_for_text(SLOT1, Duration::from_secs(5), |t| t == "v1")
        .await;

    // A canary, long enough per step to be paused in its first.
    let mut canary = Background::start(
        &etcd,
        &[
            "canary",
            "app1",
            "v2",
            "--steps",
            "1,all",
            "--interval",
            "5m",
        ],
    );
    canary.wait_event("applied", MINUTE, |e| e["step"] == 1);
    browser
        .wait_for_text(CANARY_STATE, Duration::from_secs(5), |t| t == "running")
        .await;
    let pause = r#"[data-app="app1"] button[data-action="pause"]"#;
    browser.click(pause).await;
    let refused = browser
        .wait_for_text("#flash", Duration::from_secs(5), |t| !t.is_empty())
        .await;
    assert_eq!(refused, "refused: wrong token");
    assert_eq!(rollout(&store, "app1").await.unwrap()["state"], "running");

    // The right token: paused, in the page and in etcd, by dashboard:ci.
    browser
        .execute(
            "const t = document.getElementById('token'); t.value = arguments[0]; \
             t.dispatchEvent(new Event('change')); return null;",
            vec![json!(TOKEN)],
        )
        .await
        .unwrap();
    browser.click(pause).await;
    browser
        .wait_for_text(CANARY_STATE, Duration::from_secs(10), |t| t == "paused")
        .await;
    let record = rollout(&store, "app1").await.unwrap();
    assert_eq!(record["state"], "paused", "{record}");
    assert_eq!(record["changed_by"], "dashboard:ci", "{record}");
    assert_eq!(record["reason"], "paused from the dashboard", "{record}");
    canary.wait_event("paused", MINUTE, |e| e["by"] == "dashboard:ci");
    browser
        .wait_for_text(
            r#"[data-app="app1"] .canary"#,
            Duration::from_secs(5),
            |t| t.contains("last changed by dashboard:ci"),
        )
        .await;

    // The screenshot: a paused canary, its traffic, the agent, the history.
    browser
        .wait_for_text(
            r#"[data-app="app1"] .traffic .chart"#,
            Duration::from_secs(15),
            |t| t.contains("v2 ") && !t.contains("v2 –"),
        )
        .await;
    // ... with ten seconds of traffic on the charts.
    browser
        .wait_until(
            "ten points on the charts",
            Duration::from_secs(30),
            "const l = document.querySelector('[data-app=\"app1\"] .traffic polyline'); \
             return l && l.getAttribute('points').split(' ').length >= 10;",
        )
        .await;
    let png = browser.screenshot().await;
    assert_eq!(&png[1..4], b"PNG");
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&shot, &png).unwrap();
    println!("screenshot: {}", shot.display());
    if disco_harness::golden::updating() {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/dashboard.png");
        std::fs::write(docs, &png).unwrap();
    }

    // Aborted by a click (after the confirmation): rolled back, as the page shows.
    browser
        .click(r#"[data-app="app1"] button[data-action="abort"]"#)
        .await;
    browser.accept_dialog().await;
    browser
        .wait_for_text(CANARY_STATE, MINUTE, |t| t == "rolled back")
        .await;
    let (code, events, stderr) = canary.finish(MINUTE);
    assert_eq!(code, Some(6), "{events:#?}\n{stderr}");
    let record = rollout(&store, "app1").await.unwrap();
    let reason = record["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("aborted by dashboard:ci: aborted from the dashboard"),
        "{record}"
    );
    assert!(routes(&store, "app1").await.values().all(|v| v == "v1"));

    // Promoted by a click: the CLI's transaction and audit record, as dashboard:ci.
    browser
        .click(r#"[data-app="app1"] button[data-action="promote"]"#)
        .await;
    browser.accept_dialog().await;
    browser
        .wait_for_text(SLOT1, Duration::from_secs(10), |t| t == "v2")
        .await;
    browser
        .wait_for_text(NEWEST_ACTOR, Duration::from_secs(5), |t| {
            t == "dashboard:ci"
        })
        .await;
    let last = history(&etcd).pop().unwrap();
    assert_eq!(last["actor"], "dashboard:ci", "{last}");
    assert_eq!(last["action"], "promote", "{last}");
    assert_eq!(last["reason"], "promoted from the dashboard", "{last}");
    assert_eq!(last["to"], json!({"instance1": "v2"}), "{last}");
    // The page says so once the agents have applied it.
    browser
        .wait_for_text("#flash", Duration::from_secs(30), |t| {
            t == "promote app1: done, recorded as dashboard:ci"
        })
        .await;
    let reports = dash.output();
    assert!(
        reports.contains(r#""action":"promote""#) && reports.contains(r#""result":"paused""#),
        "the actions' reports go to the dashboard's stdout: {reports}"
    );

    // The filter box: by name or version.
    let filter = "const f = document.getElementById('filter'); f.value = arguments[0]; \
                  f.dispatchEvent(new Event('input')); return null;";
    browser
        .execute(filter, vec![json!("nothing-like-it")])
        .await
        .unwrap();
    browser
        .wait_for_text("#count", Duration::from_secs(5), |t| t == "0 of 1 apps")
        .await;
    browser.execute(filter, vec![json!("V2")]).await.unwrap();
    browser
        .wait_for_text("#count", Duration::from_secs(5), |t| t == "1 of 1 apps")
        .await;

    browser.close().await;
    let report = load.stop();
    assert_eq!(report.failed, 0, "{report:?}");
    // SIGTERM ends it, open event streams included.
    assert_eq!(dash.stop(Duration::from_secs(10)), Some(0));
}

/// A request header: name and value.
type Header<'a> = (&'a str, &'a str);

/// POSTs `body` to the dashboard's action `path` with `headers`: status and JSON answer.
async fn post(url: &str, path: &str, headers: &[Header<'_>], body: Value) -> (u16, Value) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut request = client
        .post(format!("{url}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let answer = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_are_refused_read_only_without_the_token_or_from_elsewhere() {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    seed_three_slots(&store).await;
    let promote = "api/apps/app1/promote";
    let v2 = json!({ "version": "v2" });

    // Read-only: the page is served, every action refused.
    let read_only = dashboard(&etcd, &[]);
    assert!(
        read_only.output().contains("(read-only)"),
        "{}",
        read_only.output()
    );
    let (status, page) = disco_harness::get(&read_only.url, &[]).unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("<title>disco dashboard</title>"), "{page}");
    for verb in ["pause", "resume", "abort", "promote", "rollback"] {
        let (status, answer) = post(
            &read_only.url,
            &format!("api/apps/app1/{verb}"),
            &[("x-disco-token", TOKEN)],
            v2.clone(),
        )
        .await;
        assert_eq!(status, 403, "{verb}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("--allow-actions"),
            "{answer}"
        );
    }

    // With --allow-actions: only with the token, from this origin, for this host.
    let (_token_dir, token_path) = token_file();
    let dash = dashboard(
        &etcd,
        &[
            "--allow-actions",
            "--token-file",
            &token_path,
            "--name",
            "ci",
        ],
    );
    assert!(
        !dash.output().contains(TOKEN),
        "a token from a file is not printed: {}",
        dash.output()
    );
    let host = dash.url.trim_start_matches("http://").trim_end_matches('/');
    let origin = format!("http://{host}");
    let refused: [(&[Header], u16, &str); 5] = [
        (&[], 401, "no token"),
        (
            &[("x-disco-token", "not-the-token-0123456789")],
            401,
            "wrong token",
        ),
        (
            &[("x-disco-token", TOKEN), ("origin", "http://evil.example")],
            403,
            "http://evil.example",
        ),
        (
            &[("x-disco-token", TOKEN), ("sec-fetch-site", "cross-site")],
            403,
            "cross-site",
        ),
        (
            &[("x-disco-token", TOKEN), ("host", "evil.example")],
            421,
            "evil.example",
        ),
    ];
    for (headers, status, says) in refused {
        let (got, answer) = post(&dash.url, promote, headers, v2.clone()).await;
        assert_eq!(got, status, "{headers:?}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(says),
            "{headers:?}: {answer}"
        );
    }
    // A rebinding page cannot read the state either.
    let (status, _) = disco_harness::get(
        &format!("{}api/state", dash.url),
        &[("Host", "evil.example:80")],
    )
    .unwrap();
    assert_eq!(status, 421);
    assert!(
        routes(&store, "app1").await.values().all(|v| v == "v1"),
        "nothing was written"
    );
    assert!(history(&etcd).is_empty(), "no audit record either");

    // The CLI's refusals come back as they are; the token from this origin acts.
    let allowed = [("x-disco-token", TOKEN), ("origin", origin.as_str())];
    let (status, answer) = post(&dash.url, "api/apps/app1/pause", &allowed, json!({})).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["exit_code"], 5);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("no canary of app1 is recorded"),
        "{answer}"
    );
    let (status, answer) = post(&dash.url, "api/apps/app1/switch", &allowed, json!({})).await;
    assert_eq!(status, 404, "{answer}");
    let (status, answer) = post(&dash.url, promote, &allowed, v2.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["actor"], "dashboard:ci");
    let last = history(&etcd).pop().unwrap();
    assert_eq!(
        (last["actor"].as_str(), last["action"].as_str()),
        (Some("dashboard:ci"), Some("promote")),
        "{last}"
    );
    assert_eq!(routes(&store, "app1").await["instance1"], "v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_etcd_the_page_is_served_and_says_why_it_is_empty() {
    let nowhere = format!("http://127.0.0.1:{}", disco_harness::ports::free_port());
    let dash = Dashboard::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_discoctl")),
        std::slice::from_ref(&nowhere),
        &[],
    );
    let (status, _) = disco_harness::get(&dash.url, &[]).unwrap();
    assert_eq!(status, 200);
    let meta = disco_harness::wait_for("the dashboard to report etcd", MINUTE, || {
        let (_, body) = disco_harness::get(&format!("{}api/state", dash.url), &[]).ok()?;
        let state: Value = serde_json::from_str(&body).ok()?;
        state["meta"]["error"]
            .is_string()
            .then(|| state["meta"].clone())
    });
    assert_eq!(meta["live"], false, "{meta}");
    let error = meta["error"].as_str().unwrap();
    assert!(
        error.contains(&nowhere["http://".len()..]),
        "names the endpoint: {error}"
    );
}
