//! Each step of a canary planned from the routing state as it is now, every step tried
//! before the canary starts, and the restore of the state before it.

use super::record::{Original, Rollout};
use super::steps::Step;
use crate::model::Policy;
use crate::plan::{self, natural_cmp, Count, Flip, Plan, PlanError};
use crate::snapshot::App;
use crate::validate::Invalid;

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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::{Health, HealthStatus};
    use crate::rollout::fixtures::{rollout, seed};

    fn versions(app: &App) -> Vec<String> {
        let mut slots: Vec<_> = app.routes.iter().collect();
        slots.sort_by(|a, b| natural_cmp(a.0, b.0));
        slots.into_iter().map(|(_, v)| v.clone()).collect()
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
}
