//! Test fixtures of the rollout modules: an app of three slots on `v1` with `v2`
//! endpoints, and a canary of `v2` on it.

use crate::model::{Endpoint, Match, Policy};
use crate::rollout::{parse_steps, Analysis, OnNoData, Original, Rollout, RolloutState, Step};
use crate::snapshot::App;

pub(super) fn seed() -> App {
    let mut app = App::default();
    for i in 1..=3 {
        let instance = format!("instance{i}");
        app.routes.insert(instance.clone(), "v1".into());
        for (v, port) in [("v1", 9000 + i), ("v2", 9100 + i)] {
            app.endpoints
                .entry(instance.clone())
                .or_default()
                .insert(v.into(), Endpoint::new(format!("127.0.0.1:{port}")));
        }
    }
    app.policy = Some(Policy {
        listen: Some("127.0.0.1:8080".into()),
        ..Policy::default()
    });
    app
}

pub(super) fn rollout(app: &App, steps: &str, dark: bool) -> Rollout {
    let mut steps = parse_steps(steps).unwrap();
    if dark {
        steps.insert(0, Step::Dark);
    }
    Rollout {
        version: "v2".into(),
        steps,
        step: 0,
        passed: 0,
        state: RolloutState::Running,
        analysis: Analysis {
            interval_ms: 3000,
            max_error_rate: 0.01,
            max_latency_ms: None,
            max_p95_ms: None,
            max_p99_ms: None,
            confidence: Analysis::DEFAULT_CONFIDENCE,
            on_inconclusive: Default::default(),
            min_requests: 20,
            on_no_data: OnNoData::Wait,
            dry_run: false,
        },
        dark_matches: vec![Match::Header {
            name: "X-Canary".into(),
            value: "1".into(),
        }],
        confirm: false,
        confirmed: false,
        started_at: "t".into(),
        updated_at: "t".into(),
        owner: "1@h".into(),
        actor: "a@h".into(),
        lease: 1,
        original: Original {
            routes: app.routes.clone(),
            policy: app.policy.clone(),
        },
        reason: None,
        changed_by: None,
    }
}
