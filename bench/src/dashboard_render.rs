//! Measures `discoctl dashboard` with many apps in a real headless Chromium: the time
//! from navigation start to the page's first full render (all apps listed, from the
//! first server-sent event: `window.__renderedAt`, set by the page), the page's size in
//! DOM elements and its initial state in bytes (the first event), and the time from
//! one route change in etcd to the page showing it. Each app has three slots with a v1 and a v2 endpoint,
//! five audit records and one agent's traffic statistics. Prints a markdown table.
//! Usage: dashboard-render [--apps 100,1000] [--rounds 7]

use std::time::{Duration, Instant};

use clap::Parser;
use disco::model::{HistoryAction, HistoryRecord};
use disco::Keyspace;
use disco_bench::seed::Seed;
use disco_bench::{ms, percentile, sibling, store_for};
use disco_harness::Etcd;
use disco_testkit::{Browser, Dashboard};
use serde_json::json;

/// Time to first render of `discoctl dashboard` in headless Chromium, by number of apps.
#[derive(Parser, Debug)]
#[command(
    name = "dashboard-render",
    after_help = "Needs a release build (cargo build --release -p discoctl -p disco-bench), \
                  chromium and chromium-driver."
)]
struct Args {
    /// The numbers of apps, comma-separated: one run each.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    apps: Vec<usize>,
    /// Page loads (and route changes) per run.
    #[arg(long, default_value_t = 7)]
    rounds: usize,
}

fn name(i: usize) -> String {
    format!("app{i:04}")
}

async fn seed(store: &disco::store::Store, apps: usize) {
    let ks = Keyspace::default();
    let mut seed = Seed::new(&ks);
    for i in 0..apps {
        let app = name(i);
        seed.policy(&app, format!(r#"{{"listen":"127.0.0.1:{}"}}"#, 20000 + i));
        for slot in 1..=3 {
            let instance = format!("instance{slot}");
            for (v, base) in [("v1", 30000), ("v2", 40000)] {
                let address = format!("127.0.0.{}:{}", 1 + slot, base + i);
                seed.endpoint(
                    &app,
                    &instance,
                    v,
                    json!({ "address": address }).to_string(),
                );
            }
            seed.route(&app, &instance, "v1");
        }
        for seq in 1..=5u64 {
            let mut record = HistoryRecord::new(
                "bench@ci",
                HistoryAction::Promote,
                [("instance1".to_string(), "v1".to_string())].into(),
                [("instance1".to_string(), "v2".to_string())].into(),
                None,
                None,
            );
            record.seq = seq;
            seed.history(&app, seq, serde_json::to_vec(&record).unwrap());
        }
        let counts =
            json!({"requests": 1000, "errors_5xx": 3, "timed": 1000, "time_ms_sum": 4000.0});
        let stats = json!({
            "agent": "lb1", "app": app, "started_at": "2026-12-03T00:00:00Z",
            "at": "2026-12-03T00:00:01Z", "window_ms": 1000, "interval_ms": 1000,
            "versions": {"v1": {"total": counts, "window": counts}},
        });
        seed.stats(&app, "lb1", stats.to_string());
    }
    seed.write(store).await;
}

struct Run {
    apps: usize,
    renders_ms: Vec<f64>,
    elements: u64,
    state_bytes: usize,
    updates_ms: Vec<f64>,
}

async fn run(apps: usize, rounds: usize) -> Run {
    let etcd = Etcd::start();
    let store = store_for(&etcd);
    seed(&store, apps).await;
    let dashboard = Dashboard::start(&sibling("discoctl"), &etcd.endpoints(), &[]);
    let browser = Browser::start(1280, 1000).await;
    let mut renders_ms = Vec::new();
    let mut elements = 0;
    let mut state_bytes = 0;
    for _ in 0..rounds {
        browser.goto(&dashboard.url).await;
        let rendered = browser
            .wait_until(
                "the first render",
                Duration::from_secs(60),
                "return window.__renderedAt || 0;",
            )
            .await;
        renders_ms.push(rendered.as_f64().unwrap());
        let listed = browser
            .execute(
                "return document.querySelectorAll('[data-app]').length;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(listed.as_u64(), Some(apps as u64), "every app is listed");
        let size = browser
            .execute(
                "return [document.getElementsByTagName('*').length, window.__initBytes];",
                vec![],
            )
            .await
            .unwrap();
        elements = size[0].as_u64().unwrap();
        state_bytes = size[1].as_u64().unwrap() as usize;
    }
    // One route change in etcd → the page shows it (polled over WebDriver).
    let mut updates_ms = Vec::new();
    let app = name(apps / 2);
    let route = Keyspace::default().key(&disco::Key::Route {
        app: app.clone(),
        instance: "instance1".into(),
    });
    let chip = format!(r#"[data-app="{app}"] .slot[data-instance="instance1"]"#);
    for round in 0..rounds {
        let version = if round % 2 == 0 { "v2" } else { "v1" };
        let put = Instant::now();
        store.put(&route, version, None).await.unwrap();
        browser
            .wait_for_text(&chip, Duration::from_secs(10), |t| t == version)
            .await;
        updates_ms.push(ms(put.elapsed()));
    }
    browser.close().await;
    Run {
        apps,
        renders_ms,
        elements,
        state_bytes,
        updates_ms,
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile(&sorted, 0.5)
}

fn main() {
    let args = Args::parse();
    let runtime = disco_bench::runtime();
    let runs: Vec<Run> = args
        .apps
        .iter()
        .map(|&apps| runtime.block_on(run(apps, args.rounds)))
        .collect();
    println!("| apps | first render, median (min–max) | DOM elements | initial state | route change → shown, median (max) |");
    println!("|---:|---:|---:|---:|---:|");
    for r in &runs {
        let max = |v: &[f64]| v.iter().copied().fold(f64::MIN, f64::max);
        let min = |v: &[f64]| v.iter().copied().fold(f64::MAX, f64::min);
        println!(
            "| {} | {:.0} ms ({:.0}–{:.0}) | {} | {:.0} KiB | {:.0} ms ({:.0}) |",
            r.apps,
            median(&r.renders_ms),
            min(&r.renders_ms),
            max(&r.renders_ms),
            r.elements,
            r.state_bytes as f64 / 1024.0,
            median(&r.updates_ms),
            max(&r.updates_ms),
        );
    }
    println!(
        "\n{} page loads and {} route changes per run; first render: navigation start → every app listed from the first event (`window.__renderedAt`); route change: etcd put → the page's slot shows it, polled over WebDriver every 20 ms",
        args.rounds, args.rounds
    );
}
