//! Automated canaries (`discoctl canary`), the pure part: the steps and their parsing,
//! the state recorded at `<prefix>/apps/<app>/rollout` ([`Rollout`]), each step planned
//! from the routing state ([`plan_step`]), the way back to the state before the canary
//! ([`plan_restore`]), and the analysis of a step's traffic counts ([`judge`]).
//! discoctl does the IO: transactions, waiting for the agents, reading the statistics.
//!
//! Steps are **targets**, not increments: `1,2,all` means one slot on the version, then
//! two, then every slot. So applying a step twice (a resumed canary re-applies the step
//! it was in) changes nothing the second time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{Match, Policy};
use crate::plan::{self, natural_cmp, Count, Flip, Plan, PlanError};
use crate::snapshot::App;
use crate::stats::Counts;
use crate::validate::Invalid;

/// One step of a canary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Only the dark canary: requests matching the recorded matches go to the version;
    /// every slot keeps its version (`--dark-first`).
    Dark,
    /// This many slots, in total, on the version (the next ones in natural order).
    /// The version's weight, if a `%` step set one, is removed: traffic follows slots.
    Slots(u32),
    /// This share of the app's traffic, in percent, to the version, through the
    /// policy's weights; at least one slot routes to the version (the first in natural
    /// order is flipped if none does). The slots' versions do not change otherwise.
    Percent(u32),
    /// Every slot on the version; its weight removed.
    All,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Dark => f.write_str("dark"),
            Step::Slots(n) => write!(f, "{n}"),
            Step::Percent(p) => write!(f, "{p}%"),
            Step::All => f.write_str("all"),
        }
    }
}

impl std::str::FromStr for Step {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Step, Invalid> {
        let bad = |reason: &str| Invalid::new("canary step", s, reason);
        match s {
            "dark" => return Ok(Step::Dark),
            "all" => return Ok(Step::All),
            _ => {}
        }
        let (digits, percent) = match s.strip_suffix('%') {
            Some(d) => (d, true),
            None => (s, false),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("expected a slot count (2), a share (25%) or all"));
        }
        let n: u32 = digits.parse().map_err(|_| bad("number too large"))?;
        match (percent, n) {
            (_, 0) => Err(bad("must be at least 1")),
            (true, 101..) => Err(bad("a share is at most 100%")),
            (true, p) => Ok(Step::Percent(p)),
            (false, n) => Ok(Step::Slots(n)),
        }
    }
}

impl Serialize for Step {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Step, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Step {
    /// What the step does, for people: `1 slot on v2`, `25% of the traffic to v2`.
    pub fn describe(&self, version: &str) -> String {
        match self {
            Step::Dark => format!("dark canary: matching requests to {version}"),
            Step::Slots(1) => format!("1 slot on {version}"),
            Step::Slots(n) => format!("{n} slots on {version}"),
            Step::Percent(p) => format!("{p}% of the traffic to {version}"),
            Step::All => format!("every slot on {version}"),
        }
    }
}

/// Parses `--steps`, e.g. `1,2,all` or `5%,25%,50%,all`: comma-separated slot counts,
/// shares and `all`. Slot counts must grow, shares must grow, `all` may only come last;
/// `dark` is not a step of the list (it is `--dark-first`).
pub fn parse_steps(list: &str) -> Result<Vec<Step>, Invalid> {
    let steps: Vec<Step> = list
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let bad = |reason: &str| Err(Invalid::new("canary steps", list, reason));
    let (mut slots, mut percent) = (0, 0);
    for (i, step) in steps.iter().enumerate() {
        match *step {
            Step::Dark => return bad("dark is not a step of the list: use --dark-first"),
            Step::All if i + 1 != steps.len() => return bad("all can only be the last step"),
            Step::All => {}
            Step::Slots(n) if n <= slots => return bad("slot counts must grow from step to step"),
            Step::Slots(n) => slots = n,
            Step::Percent(p) if p <= percent => return bad("shares must grow from step to step"),
            Step::Percent(p) => percent = p,
        }
    }
    Ok(steps)
}

/// Where a canary is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// Steps are applied and observed.
    Running,
    /// The step timer is stopped until `discoctl resume` (also: waiting for the
    /// confirmation of the final step, with `--confirm`).
    Paused,
    /// `discoctl abort` asked for a rollback; the running discoctl does it.
    Aborting,
    /// Every step passed.
    Done,
    /// Rolled back to the state before the canary; `reason` says why.
    RolledBack,
}

impl RolloutState {
    /// Done or rolled back: nothing runs, a new canary may start.
    pub fn is_terminal(self) -> bool {
        matches!(self, RolloutState::Done | RolloutState::RolledBack)
    }
}

impl std::fmt::Display for RolloutState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RolloutState::Running => "running",
            RolloutState::Paused => "paused",
            RolloutState::Aborting => "aborting",
            RolloutState::Done => "done",
            RolloutState::RolledBack => "rolled_back",
        })
    }
}

/// What a step with fewer canary requests than `min_requests` does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnNoData {
    /// Roll back.
    Fail,
    /// Observe up to one more interval; still too few requests then: roll back.
    #[default]
    Wait,
    /// Count the step as passed.
    Pass,
}

impl std::str::FromStr for OnNoData {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        match s {
            "fail" => Ok(OnNoData::Fail),
            "wait" => Ok(OnNoData::Wait),
            "pass" => Ok(OnNoData::Pass),
            _ => Err(Invalid::new(
                "--on-no-data",
                s,
                "must be fail, wait or pass",
            )),
        }
    }
}

/// The analysis settings of a canary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// How long each step is observed, in ms (`--interval`).
    pub interval_ms: u64,
    /// Largest 5xx share (0–1) of the canary version over a step (`--max-error-rate`).
    pub max_error_rate: f64,
    /// Largest mean response time of the canary version over a step, in ms
    /// (`--max-latency`); none: not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency_ms: Option<f64>,
    /// Fewest canary requests in a step for a verdict (`--min-requests`).
    pub min_requests: u64,
    /// What a step with fewer does.
    #[serde(default)]
    pub on_no_data: OnNoData,
}

/// The routing state before the canary: what a rollback restores.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Original {
    /// Slot → version.
    pub routes: BTreeMap<String, String>,
    /// The app's policy (its dark canary and weights are restored).
    #[serde(default)]
    pub policy: Option<Policy>,
}

/// A canary's state: `<prefix>/apps/<app>/rollout` (JSON, not leased, so that it
/// survives the discoctl running it). Written at step transitions only, since LB agents
/// watch `<prefix>/apps/` (they ignore this key for rendering).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// The version being rolled out.
    pub version: String,
    /// The steps, `dark` first with `--dark-first`.
    pub steps: Vec<Step>,
    /// The step in progress (applied or being applied), 1-based; 0 before the first.
    pub step: usize,
    /// How many steps have passed their observation.
    #[serde(default)]
    pub passed: usize,
    /// Where it is.
    pub state: RolloutState,
    /// Thresholds and timing.
    pub analysis: Analysis,
    /// The dark canary's matches, for the `dark` step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dark_matches: Vec<Match>,
    /// Pause for a human before the final step (`--confirm`).
    #[serde(default)]
    pub confirm: bool,
    /// The final step was confirmed (`discoctl resume` while awaiting confirmation).
    #[serde(default)]
    pub confirmed: bool,
    /// When the canary started (RFC 3339).
    pub started_at: String,
    /// When this record was last written (RFC 3339).
    pub updated_at: String,
    /// The discoctl process running it: `pid@host`.
    pub owner: String,
    /// Who started it (`--actor`), for the audit log.
    pub actor: String,
    /// The etcd lease of the lock the owner keeps alive (`<prefix>/locks/rollout/<app>`).
    pub lease: i64,
    /// What a rollback restores.
    pub original: Original,
    /// Why it was paused, aborted or rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who paused, resumed or aborted it last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<String>,
}

impl Rollout {
    /// True when the next step is the final one and waits for `discoctl resume`.
    pub fn awaits_confirmation(&self) -> bool {
        self.confirm && !self.confirmed && self.passed + 1 == self.steps.len()
    }

    /// Whether the steps include the dark-canary step.
    pub fn dark_first(&self) -> bool {
        self.steps.first() == Some(&Step::Dark)
    }
}

/// What one step (or the restore) writes: slot flips and, if it changes, the policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepChange {
    /// The slot flips.
    pub plan: Plan,
    /// The new policy; none when the policy stays as it is.
    pub policy: Option<Policy>,
}

impl StepChange {
    /// True when the step changes nothing.
    pub fn is_empty(&self) -> bool {
        self.plan.is_empty() && self.policy.is_none()
    }

    /// `app` after the change.
    pub fn apply(&self, app: &App) -> App {
        let mut after = app.clone();
        after.routes = self.plan.apply(&app.routes);
        if let Some(policy) = &self.policy {
            after.policy = Some(policy.clone());
        }
        after
    }
}

/// `policy` if it differs from the app's current one (absent counts as default).
fn changed_policy(app: &App, policy: Policy) -> Option<Policy> {
    let current = app.policy.clone().unwrap_or_default();
    (policy != current).then_some(policy)
}

/// Step `number` (1-based) of `rollout`, planned from `app` as it is now. Refuses, as
/// the promote/switch/dark verbs do, a slot to flip without an endpoint of the version
/// or with one reported failing. The final step also restores the dark canary as it
/// was before a `--dark-first` canary.
pub fn plan_step(app: &App, rollout: &Rollout, number: usize) -> Result<StepChange, PlanError> {
    let version = rollout.version.as_str();
    let step = *rollout
        .steps
        .get(number.wrapping_sub(1))
        .ok_or_else(|| Invalid::new("canary step", &number.to_string(), "no such step"))?;
    let on_version = app.routes.values().filter(|v| *v == version).count();
    let mut policy = app.policy.clone().unwrap_or_default();
    let plan = match step {
        Step::Dark => {
            policy = plan::plan_dark(app, version, rollout.dark_matches.clone())?;
            Plan::default()
        }
        Step::Slots(n) => {
            policy.weights.remove(version);
            let missing = (n as usize).saturating_sub(on_version);
            if missing == 0 {
                Plan::default()
            } else {
                plan::plan_promote(app, version, Count::Next(missing))?
            }
        }
        Step::Percent(p) => {
            policy.weights.insert(version.to_string(), p);
            policy.validate()?;
            if on_version == 0 {
                plan::plan_promote(app, version, Count::Next(1))?
            } else {
                Plan::default()
            }
        }
        Step::All => {
            policy.weights.remove(version);
            plan::plan_switch(app, version)?
        }
    };
    if number == rollout.steps.len() && rollout.dark_first() {
        policy.dark = rollout
            .original
            .policy
            .as_ref()
            .and_then(|p| p.dark.clone());
    }
    Ok(StepChange {
        plan,
        policy: changed_policy(app, policy),
    })
}

/// Plans every step from `app` in turn, so that a canary that cannot reach its last
/// step (a slot without an endpoint of the version, weights over 100%) is refused
/// before it changes anything.
pub fn preflight(app: &App, rollout: &Rollout) -> Result<(), PlanError> {
    let mut simulated = app.clone();
    for number in 1..=rollout.steps.len() {
        let change = plan_step(&simulated, rollout, number)?;
        simulated = change.apply(&simulated);
    }
    Ok(())
}

/// Back to the state before the canary: every slot that was routed then and serves
/// another version now goes back to its original version (slots added since are left
/// alone), and the policy's dark canary and weights are restored. Never refuses: a
/// rollback must happen; see [`restore_warnings`] for slots whose original endpoint is
/// gone.
pub fn plan_restore(app: &App, original: &Original) -> StepChange {
    let mut slots: Vec<(&String, &String)> = app.routes.iter().collect();
    slots.sort_by(|a, b| natural_cmp(a.0, b.0));
    let flips = slots
        .into_iter()
        .filter_map(|(instance, current)| {
            let before = original.routes.get(instance)?;
            (before != current).then(|| Flip {
                instance: instance.clone(),
                from: current.clone(),
                to: before.clone(),
            })
        })
        .collect();
    let mut policy = app.policy.clone().unwrap_or_default();
    let before = original.policy.clone().unwrap_or_default();
    policy.dark = before.dark;
    policy.weights = before.weights;
    StepChange {
        plan: Plan { flips },
        policy: changed_policy(app, policy),
    }
}

/// Slots a restore puts back on a version whose endpoint is missing or reported
/// failing there: `instance1: no v1 endpoint registered`.
pub fn restore_warnings(app: &App, change: &StepChange) -> Vec<String> {
    change
        .plan
        .flips
        .iter()
        .filter_map(
            |f| match app.endpoints.get(&f.instance).and_then(|e| e.get(&f.to)) {
                None => Some(format!("{}: no {} endpoint registered", f.instance, f.to)),
                Some(e) if !e.is_healthy() => Some(format!(
                    "{}: the {} endpoint ({}) is reported failing",
                    f.instance, f.to, e.address
                )),
                Some(_) => None,
            },
        )
        .collect()
}

/// A step's traffic: the canary version and every other version together (the stable).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    /// The canary version's counts.
    pub canary: Counts,
    /// The other versions' counts, added up.
    pub stable: Counts,
}

impl Observation {
    /// Splits counts per version (e.g. [`crate::stats::between`]) into canary and stable.
    pub fn split(counts: &BTreeMap<String, Counts>, version: &str) -> Observation {
        let mut obs = Observation::default();
        for (v, c) in counts {
            if v == version {
                obs.canary.add(c);
            } else {
                obs.stable.add(c);
            }
        }
        obs
    }
}

/// The analysis of a step's counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Enough requests, and within the thresholds.
    Pass,
    /// Over a threshold: why.
    Fail(String),
    /// Fewer requests than `min_requests`: how many.
    NoData(String),
}

fn percent(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

/// Judges `obs` against `analysis`:
///
/// - fewer than `min_requests` canary requests: no data;
/// - the canary's 5xx share above `max_error_rate` **and** above the stable versions'
///   share fails (the stable share counts only with at least `min_requests` requests;
///   without it the threshold alone decides). A share above the threshold that the
///   stable versions have too (a shared database down, say) is not the canary's fault;
/// - the canary's mean response time above `max_latency_ms` fails (a mean, because
///   HAProxy gives no per-request times);
/// - otherwise it passes.
pub fn judge(obs: &Observation, analysis: &Analysis, version: &str) -> Verdict {
    let canary = &obs.canary;
    if canary.requests < analysis.min_requests {
        return Verdict::NoData(format!(
            "{version} answered {} requests, fewer than --min-requests {}",
            canary.requests, analysis.min_requests
        ));
    }
    let rate = canary.error_rate().unwrap_or(0.0);
    let stable_rate = obs
        .stable
        .error_rate()
        .filter(|_| obs.stable.requests >= analysis.min_requests);
    if rate > analysis.max_error_rate && stable_rate.is_none_or(|s| rate > s) {
        let stable = match stable_rate {
            Some(s) => format!(" and over the stable versions' {}", percent(s)),
            None => String::new(),
        };
        return Verdict::Fail(format!(
            "{version} 5xx rate {} ({} of {} requests) is over --max-error-rate {}{stable}",
            percent(rate),
            canary.errors_5xx,
            canary.requests,
            percent(analysis.max_error_rate)
        ));
    }
    if let (Some(max), Some(mean)) = (analysis.max_latency_ms, canary.mean_ms()) {
        if mean > max {
            return Verdict::Fail(format!(
                "{version} mean response time {mean:.1} ms is over --max-latency {max} ms"
            ));
        }
    }
    Verdict::Pass
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, Health, HealthStatus};

    fn seed() -> App {
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

    fn rollout(app: &App, steps: &str, dark: bool) -> Rollout {
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
                min_requests: 20,
                on_no_data: OnNoData::Wait,
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

    fn versions(app: &App) -> Vec<String> {
        let mut slots: Vec<_> = app.routes.iter().collect();
        slots.sort_by(|a, b| natural_cmp(a.0, b.0));
        slots.into_iter().map(|(_, v)| v.clone()).collect()
    }

    #[test]
    fn steps_parse_validate_and_print_back() {
        let steps = parse_steps("1, 2,all").unwrap();
        assert_eq!(steps, [Step::Slots(1), Step::Slots(2), Step::All]);
        let steps = parse_steps("5%,25%,50%,all").unwrap();
        assert_eq!(steps[0], Step::Percent(5));
        let text: Vec<String> = steps.iter().map(ToString::to_string).collect();
        assert_eq!(text, ["5%", "25%", "50%", "all"]);
        assert_eq!(parse_steps("10%,1,2").unwrap().len(), 3, "mixed is fine");
        assert_eq!(
            serde_json::to_string(&parse_steps("1,5%,all").unwrap()).unwrap(),
            r#"["1","5%","all"]"#
        );
        let back: Vec<Step> = serde_json::from_str(r#"["dark","3","all"]"#).unwrap();
        assert_eq!(back, [Step::Dark, Step::Slots(3), Step::All]);
        for (bad, reason) in [
            ("", "expected a slot count"),
            ("1,,all", "expected a slot count"),
            ("0", "at least 1"),
            ("0%", "at least 1"),
            ("101%", "at most 100%"),
            ("x", "expected"),
            ("-1", "expected"),
            ("1.5", "expected"),
            ("all,1", "last"),
            ("2,1", "grow"),
            ("1,1", "grow"),
            ("50%,5%", "grow"),
            ("dark,1", "--dark-first"),
            ("99999999999", "too large"),
        ] {
            let e = parse_steps(bad).unwrap_err();
            assert!(e.to_string().contains(reason), "{bad}: {e}");
        }
    }

    #[test]
    fn slot_steps_are_targets_and_reapplying_one_changes_nothing() {
        let app = seed();
        let r = rollout(&app, "1,2,all", false);
        let mut a = app.clone();
        let mut seen = Vec::new();
        for n in 1..=3 {
            let change = plan_step(&a, &r, n).unwrap();
            assert_eq!(change.policy, None, "slot steps leave the policy alone");
            a = change.apply(&a);
            seen.push(versions(&a));
            // A resumed canary applies the step again: nothing to do.
            assert!(plan_step(&a, &r, n).unwrap().is_empty(), "step {n}");
        }
        assert_eq!(
            seen,
            [["v2", "v1", "v1"], ["v2", "v2", "v1"], ["v2", "v2", "v2"]]
        );
        // More slots than the app has: every slot.
        let r = rollout(&app, "5", false);
        assert_eq!(plan_step(&app, &r, 1).unwrap().plan.flips.len(), 3);
        assert!(plan_step(&app, &r, 2).is_err(), "no such step");
        assert!(plan_step(&app, &r, 0).is_err(), "no such step");
    }

    #[test]
    fn percent_steps_route_one_slot_and_set_the_weight_then_all_removes_it() {
        let app = seed();
        let r = rollout(&app, "5%,50%,all", false);
        let c1 = plan_step(&app, &r, 1).unwrap();
        assert_eq!(c1.plan.flips.len(), 1);
        assert_eq!(c1.plan.flips[0].instance, "instance1");
        let p1 = c1.policy.clone().unwrap();
        assert_eq!(p1.weights, BTreeMap::from([("v2".to_string(), 5)]));
        assert_eq!(p1.listen.as_deref(), Some("127.0.0.1:8080"));
        let a = c1.apply(&app);
        let c2 = plan_step(&a, &r, 2).unwrap();
        assert!(c2.plan.is_empty(), "a slot already routes v2");
        assert_eq!(c2.policy.as_ref().unwrap().weights["v2"], 50);
        let a = c2.apply(&a);
        let c3 = plan_step(&a, &r, 3).unwrap();
        assert_eq!(c3.plan.flips.len(), 2);
        assert!(c3.policy.as_ref().unwrap().weights.is_empty());
        let a = c3.apply(&a);
        assert_eq!(versions(&a), ["v2", "v2", "v2"]);

        // A slot step after a share step: traffic follows slots again.
        let r = rollout(&app, "5%,2", false);
        let a = plan_step(&app, &r, 1).unwrap().apply(&app);
        let c = plan_step(&a, &r, 2).unwrap();
        assert_eq!(c.plan.flips.len(), 1);
        assert!(c.policy.unwrap().weights.is_empty());

        // Weights of other versions that leave no room: refused up front.
        let mut heavy = app.clone();
        heavy
            .policy
            .as_mut()
            .unwrap()
            .weights
            .insert("v1".into(), 98);
        let r = rollout(&heavy, "5%,all", false);
        assert!(plan_step(&heavy, &r, 1).unwrap_err().is_bad_input());
        assert!(preflight(&heavy, &r).is_err());
    }

    #[test]
    fn dark_first_sets_the_dark_canary_and_the_last_step_restores_it() {
        let app = seed();
        let r = rollout(&app, "1,all", true);
        assert!(r.dark_first());
        let c = plan_step(&app, &r, 1).unwrap();
        assert!(c.plan.is_empty(), "dark moves no slot");
        let dark = c.policy.clone().unwrap().dark.unwrap();
        assert_eq!(dark.version, "v2");
        let a = c.apply(&app);
        let c = plan_step(&a, &r, 2).unwrap();
        assert_eq!(c.plan.flips.len(), 1);
        assert_eq!(
            c.policy, None,
            "the dark canary stays on through public steps"
        );
        let a = c.apply(&a);
        let c = plan_step(&a, &r, 3).unwrap();
        assert_eq!(c.policy.as_ref().unwrap().dark, None, "restored: off");
        let a = c.apply(&a);
        assert_eq!(a.policy, app.policy);
    }

    #[test]
    fn preflight_refuses_a_canary_that_cannot_reach_its_last_step() {
        let mut app = seed();
        app.endpoints.get_mut("instance3").unwrap().remove("v2");
        let r = rollout(&app, "1,2", false);
        preflight(&app, &r).unwrap();
        let r = rollout(&app, "1,2,all", false);
        assert_eq!(
            preflight(&app, &r),
            Err(PlanError::MissingEndpoint {
                instance: "instance3".into(),
                version: "v2".into()
            })
        );
        let mut app = seed();
        app.endpoints
            .get_mut("instance1")
            .unwrap()
            .get_mut("v2")
            .unwrap()
            .health = Some(Health {
            status: HealthStatus::Failing,
            checked_at: None,
            detail: None,
        });
        let r = rollout(&app, "1,all", false);
        assert!(matches!(
            preflight(&app, &r),
            Err(PlanError::FailingEndpoint { .. })
        ));
    }

    #[test]
    fn restore_puts_back_routes_dark_and_weights() {
        let app = seed();
        let r = rollout(&app, "5%,2,all", true);
        let mut a = app.clone();
        for n in 1..=3 {
            a = plan_step(&a, &r, n).unwrap().apply(&a);
        }
        // A slot added during the canary is left alone.
        a.routes.insert("instance4".into(), "v2".into());
        let back = plan_restore(&a, &r.original);
        let b = back.apply(&a);
        assert_eq!(b.policy, app.policy, "dark off, weights gone");
        assert_eq!(b.routes["instance4"], "v2");
        b.routes
            .iter()
            .filter(|(i, _)| *i != "instance4")
            .for_each(|(_, v)| assert_eq!(v, "v1"));
        assert!(restore_warnings(&a, &back).is_empty());
        // Nothing to restore: empty.
        assert!(plan_restore(&app, &r.original).is_empty());
        // The original endpoint is gone: restored anyway, with a warning.
        a.endpoints.get_mut("instance1").unwrap().remove("v1");
        let back = plan_restore(&a, &r.original);
        assert_eq!(back.plan.flips.len(), 2);
        assert_eq!(
            restore_warnings(&a, &back),
            ["instance1: no v1 endpoint registered"]
        );
    }

    fn counts(requests: u64, errors: u64, mean_ms: f64) -> Counts {
        Counts {
            requests,
            errors_5xx: errors,
            timed: requests,
            time_ms_sum: mean_ms * requests as f64,
            buckets: vec![],
        }
    }

    #[test]
    fn judge_compares_with_the_thresholds_and_the_stable_versions() {
        let r = rollout(&seed(), "1,all", false);
        let mut a = r.analysis.clone();
        let obs = |canary, stable| Observation { canary, stable };
        let by_version = BTreeMap::from([
            ("v1".to_string(), counts(600, 0, 1.0)),
            ("v3".to_string(), counts(400, 4, 1.0)),
            ("v2".to_string(), counts(300, 90, 1.0)),
        ]);
        let split = Observation::split(&by_version, "v2");
        assert_eq!((split.stable.requests, split.stable.errors_5xx), (1000, 4));
        let Verdict::Fail(why) = judge(&split, &a, "v2") else {
            panic!()
        };
        assert_eq!(
            why,
            "v2 5xx rate 30.0% (90 of 300 requests) is over --max-error-rate 1.0% and over the stable versions' 0.4%"
        );
        assert_eq!(
            judge(&obs(counts(19, 19, 1.0), counts(0, 0, 0.0)), &a, "v2"),
            Verdict::NoData("v2 answered 19 requests, fewer than --min-requests 20".into())
        );
        assert_eq!(
            judge(&obs(counts(100, 1, 1.0), counts(100, 0, 1.0)), &a, "v2"),
            Verdict::Pass,
            "1% is not over 1%"
        );
        // Over the threshold, but the stable versions fail as much: not the canary.
        assert_eq!(
            judge(&obs(counts(100, 20, 1.0), counts(100, 25, 1.0)), &a, "v2"),
            Verdict::Pass
        );
        // Stable with too few requests to compare: the threshold alone.
        let Verdict::Fail(why) = judge(&obs(counts(100, 20, 1.0), counts(5, 5, 1.0)), &a, "v2")
        else {
            panic!()
        };
        assert!(why.ends_with("over --max-error-rate 1.0%"), "{why}");
        // The "all" step: no stable traffic at all.
        assert!(matches!(
            judge(&obs(counts(100, 2, 1.0), Counts::default()), &a, "v2"),
            Verdict::Fail(_)
        ));
        // Latency: the mean, when set.
        assert_eq!(
            judge(&obs(counts(100, 0, 80.0), counts(100, 0, 1.0)), &a, "v2"),
            Verdict::Pass
        );
        a.max_latency_ms = Some(50.0);
        let Verdict::Fail(why) = judge(&obs(counts(100, 0, 80.0), counts(100, 0, 1.0)), &a, "v2")
        else {
            panic!()
        };
        assert_eq!(
            why,
            "v2 mean response time 80.0 ms is over --max-latency 50 ms"
        );
        assert_eq!(
            judge(&obs(counts(100, 0, 20.0), counts(100, 0, 1.0)), &a, "v2"),
            Verdict::Pass
        );
    }

    #[test]
    fn the_record_round_trips_and_knows_when_to_ask_for_confirmation() {
        let app = seed();
        let mut r = rollout(&app, "1,2,all", false);
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""steps":["1","2","all"]"#), "{json}");
        assert!(json.contains(r#""state":"running""#), "{json}");
        assert!(json.contains(r#""on_no_data":"wait""#), "{json}");
        assert_eq!(serde_json::from_str::<Rollout>(&json).unwrap(), r);
        assert!(!r.awaits_confirmation());
        r.confirm = true;
        r.passed = 2;
        assert!(r.awaits_confirmation());
        r.confirmed = true;
        assert!(!r.awaits_confirmation());
        assert_eq!(RolloutState::RolledBack.to_string(), "rolled_back");
        assert!(RolloutState::Done.is_terminal() && !RolloutState::Paused.is_terminal());
        assert_eq!(
            serde_json::to_string(&RolloutState::RolledBack).unwrap(),
            r#""rolled_back""#
        );
    }
}
