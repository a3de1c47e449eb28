//! Planning discoctl's verbs: pure functions from one app's routing state (and, for a
//! rollback, its audit log) to the slot flips or the new policy a command writes.
//! Nothing here touches etcd; every refusal is a typed error naming the slot, version
//! or value, so that `discoctl` can map it to an exit code.
//!
//! Slots are always taken in **natural order** of their instance names (`instance2`
//! before `instance10`, see [`natural_cmp`]), so that which slot a `promote` flips next
//! is stable and documented.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::model::{Dark, HistoryRecord, Match, Policy};
use crate::snapshot::App;
use crate::validate::{self, Invalid};

/// The history actions that bring a version in: [`plan_rollback`] undoes the newest of
/// them (`canary` is a step of `discoctl canary`). `rollback` itself is not one, so that
/// rolling back twice changes nothing.
pub const ROLLOUT_ACTIONS: [&str; 4] = ["promote", "switch", "route set", "canary"];

/// Why a verb cannot be planned. Nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Bad input: a name, match or percentage that is invalid in itself.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The app has no routed slot to change.
    #[error("no slot is routed yet (give slots a version with `discoctl route set` first)")]
    NoSlots,
    /// Not one endpoint of the version is registered.
    #[error("no endpoint of {version} is registered in any slot")]
    NoEndpoints {
        /// The version asked for.
        version: String,
    },
    /// A slot that would be flipped has no endpoint of the version.
    #[error("slot {instance} has no {version} endpoint registered")]
    MissingEndpoint {
        /// The slot.
        instance: String,
        /// The version it would be flipped to.
        version: String,
    },
    /// A slot that would be flipped has an endpoint of the version reported failing.
    #[error("the {version} endpoint of slot {instance} ({address}) is reported failing{}",
        detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    FailingEndpoint {
        /// The slot.
        instance: String,
        /// The version it would be flipped to.
        version: String,
        /// The endpoint's address.
        address: String,
        /// What the last health check saw, if published.
        detail: Option<String>,
    },
    /// A weight was asked for a version that no slot routes to.
    #[error("{version} is not routed to any slot (routed: {}); a weight applies to routed versions only",
        if routed.is_empty() { "none".to_string() } else { routed.join(", ") })]
    NotRouted {
        /// The version asked for.
        version: String,
        /// The versions the slots route to.
        routed: Vec<String>,
    },
    /// A rollback found no promote, switch, route set or canary record to undo.
    #[error("nothing to roll back: the history has no promote, switch, route set or canary record (use --to VERSION)")]
    NothingToRollBack,
    /// A rollback found a slot on the version being rolled back whose previous version
    /// the history does not tell.
    #[error("slot {instance} is on {version} but the history does not say what it served before (use --to VERSION)")]
    UnknownPrevious {
        /// The slot.
        instance: String,
        /// The version it is on.
        version: String,
    },
}

impl PlanError {
    /// True for bad input (exit code 2 in discoctl); false for a failed precondition on
    /// the stored state (exit code 5).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, PlanError::Invalid(_))
    }
}

/// How many slots a promotion flips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// The next N slots not yet on the version (fewer if fewer are left). At least 1.
    Next(usize),
    /// Every slot not yet on the version.
    All,
}

/// One slot moved from one version to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flip {
    /// The instance slot.
    pub instance: String,
    /// The version it serves now.
    pub from: String,
    /// The version it will serve.
    pub to: String,
}

/// The slot flips of one command, in natural slot order. Empty when there is nothing to
/// do (every slot concerned is already where it should be).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The flips, in natural order of the instance names.
    pub flips: Vec<Flip>,
}

impl Plan {
    /// True when the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.flips.is_empty()
    }

    /// Slot → version before, for the flipped slots only (the audit record's `from`).
    pub fn from_map(&self) -> BTreeMap<String, String> {
        self.flips
            .iter()
            .map(|f| (f.instance.clone(), f.from.clone()))
            .collect()
    }

    /// Slot → version after, for the flipped slots only (the audit record's `to`).
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.flips
            .iter()
            .map(|f| (f.instance.clone(), f.to.clone()))
            .collect()
    }

    /// Every slot of `routes` after the plan is applied.
    pub fn apply(&self, routes: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut after = routes.clone();
        after.extend(self.to_map());
        after
    }
}

/// Compares instance names in natural order: runs of digits compare as numbers
/// (`instance2` < `instance10`), everything else byte by byte; names equal as numbers
/// (`i01`, `i1`) fall back to plain order, so the order is total.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    fn chunks(s: &str) -> impl Iterator<Item = &str> {
        let mut rest = s;
        std::iter::from_fn(move || {
            let first = rest.chars().next()?;
            let digit = first.is_ascii_digit();
            let end = rest
                .find(|c: char| c.is_ascii_digit() != digit)
                .unwrap_or(rest.len());
            let (chunk, tail) = rest.split_at(end);
            rest = tail;
            Some(chunk)
        })
    }
    let (mut x, mut y) = (chunks(a), chunks(b));
    loop {
        match (x.next(), y.next()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) => {
                let both_numbers =
                    p.as_bytes()[0].is_ascii_digit() && q.as_bytes()[0].is_ascii_digit();
                let order = if both_numbers {
                    let (p, q) = (p.trim_start_matches('0'), q.trim_start_matches('0'));
                    p.len().cmp(&q.len()).then_with(|| p.cmp(q))
                } else {
                    p.cmp(q)
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

/// The routed slots of `app` in natural order: (instance, version).
fn slots_in_order(app: &App) -> Vec<(&str, &str)> {
    let mut slots: Vec<(&str, &str)> = app
        .routes
        .iter()
        .map(|(i, v)| (i.as_str(), v.as_str()))
        .collect();
    slots.sort_by(|a, b| natural_cmp(a.0, b.0));
    slots
}

/// Refuses to route `instance` to `version` unless an endpoint of it is registered
/// there and not reported failing (an endpoint without health information counts as
/// healthy: the proxies' own checks still guard it).
fn check_endpoint(app: &App, instance: &str, version: &str) -> Result<(), PlanError> {
    let endpoint = app
        .endpoints
        .get(instance)
        .and_then(|by_version| by_version.get(version))
        .ok_or_else(|| PlanError::MissingEndpoint {
            instance: instance.to_string(),
            version: version.to_string(),
        })?;
    if !endpoint.is_healthy() {
        return Err(PlanError::FailingEndpoint {
            instance: instance.to_string(),
            version: version.to_string(),
            address: endpoint.address.clone(),
            detail: endpoint.health.as_ref().and_then(|h| h.detail.clone()),
        });
    }
    Ok(())
}

/// The common checks of promote, switch and rollback --to: a valid version name, slots
/// to flip, and at least one endpoint of the version somewhere.
fn check_target(app: &App, version: &str) -> Result<(), PlanError> {
    validate::name("version name", version)?;
    if app.routes.is_empty() {
        return Err(PlanError::NoSlots);
    }
    if app.endpoints_of(version).next().is_none() {
        return Err(PlanError::NoEndpoints {
            version: version.to_string(),
        });
    }
    Ok(())
}

/// Flips `slots` (in the given order) to `version`, after checking each one's endpoint.
fn flips_to(app: &App, slots: &[(&str, &str)], version: &str) -> Result<Plan, PlanError> {
    let mut flips = Vec::new();
    for (instance, from) in slots {
        check_endpoint(app, instance, version)?;
        flips.push(Flip {
            instance: instance.to_string(),
            from: from.to_string(),
            to: version.to_string(),
        });
    }
    Ok(Plan { flips })
}

/// The canary step: the next `count` slots not yet on `version`, in natural order of
/// their instance names, flip to `version`.
///
/// Refuses if the version has no endpoint at all, or if any slot it would flip has no
/// `version` endpoint or one reported failing (it does not skip that slot for the next
/// one: the order stays predictable). An empty plan means every slot is already on
/// `version`.
pub fn plan_promote(app: &App, version: &str, count: Count) -> Result<Plan, PlanError> {
    check_target(app, version)?;
    let limit = match count {
        Count::Next(0) => {
            return Err(Invalid::new("count", "0", "must be at least 1").into());
        }
        Count::Next(n) => n,
        Count::All => usize::MAX,
    };
    let slots: Vec<_> = slots_in_order(app)
        .into_iter()
        .filter(|(_, v)| *v != version)
        .take(limit)
        .collect();
    flips_to(app, &slots, version)
}

/// Blue/green: every slot not yet on `version` flips to it, in one plan, only if each of
/// those slots has a `version` endpoint not reported failing. Also `rollback --to`.
pub fn plan_switch(app: &App, version: &str) -> Result<Plan, PlanError> {
    check_target(app, version)?;
    let slots: Vec<_> = slots_in_order(app)
        .into_iter()
        .filter(|(_, v)| *v != version)
        .collect();
    flips_to(app, &slots, version)
}

/// A rollback planned from the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollback {
    /// The version(s) being rolled back: what the newest rollout record brought in.
    pub versions: BTreeSet<String>,
    /// The sequence number of that record.
    pub undoes: u64,
    /// The flips back to the previous versions.
    pub plan: Plan,
}

/// Undoes the newest rollout: the newest record in `history` whose action is one of
/// [`ROLLOUT_ACTIONS`] (promote, switch, route set) names the version it brought in;
/// every slot now on that version goes back to the version it served before it last
/// moved onto it (the newest record of any action that moved it there). Slots on other
/// versions are left alone.
///
/// So after `promote v2`, `promote v2`, `switch v2`, a rollback puts every slot back on
/// v1; a second rollback finds no slot on v2 and changes nothing. Each slot's previous
/// version must have an endpoint not reported failing. `history` may come in any order.
pub fn plan_rollback(app: &App, history: &[HistoryRecord]) -> Result<Rollback, PlanError> {
    if app.routes.is_empty() {
        return Err(PlanError::NoSlots);
    }
    let mut newest_first: Vec<&HistoryRecord> = history.iter().collect();
    newest_first.sort_by_key(|r| std::cmp::Reverse(r.seq));
    let rollout = newest_first
        .iter()
        .find(|r| ROLLOUT_ACTIONS.contains(&r.action.as_str()) && !r.to.is_empty())
        .ok_or(PlanError::NothingToRollBack)?;
    let versions: BTreeSet<String> = rollout.to.values().cloned().collect();
    let mut flips = Vec::new();
    for (instance, current) in slots_in_order(app) {
        if !versions.contains(current) {
            continue;
        }
        let previous = newest_first
            .iter()
            .filter(|r| r.to.get(instance).map(String::as_str) == Some(current))
            .find_map(|r| r.from.get(instance).filter(|from| *from != current))
            .ok_or_else(|| PlanError::UnknownPrevious {
                instance: instance.to_string(),
                version: current.to_string(),
            })?;
        check_endpoint(app, instance, previous)?;
        flips.push(Flip {
            instance: instance.to_string(),
            from: current.to_string(),
            to: previous.clone(),
        });
    }
    Ok(Rollback {
        versions,
        undoes: rollout.seq,
        plan: Plan { flips },
    })
}

/// The app's policy after turning the dark canary on: requests matching any of
/// `matches` go to `version`'s endpoints. Replaces any earlier dark canary. The version
/// must have at least one registered endpoint; the matches must be valid (and only
/// source networks for a tcp app).
pub fn plan_dark(app: &App, version: &str, matches: Vec<Match>) -> Result<Policy, PlanError> {
    validate::name("version name", version)?;
    let mut unique = Vec::new();
    for m in matches {
        if !unique.contains(&m) {
            unique.push(m);
        }
    }
    let mut policy = app.policy.clone().unwrap_or_default();
    policy.dark = Some(Dark {
        version: version.to_string(),
        matches: unique,
    });
    policy.validate()?;
    if app.endpoints_of(version).next().is_none() {
        return Err(PlanError::NoEndpoints {
            version: version.to_string(),
        });
    }
    Ok(policy)
}

/// The app's policy without a dark canary (unchanged if it had none).
pub fn plan_dark_off(app: &App) -> Policy {
    let mut policy = app.policy.clone().unwrap_or_default();
    policy.dark = None;
    policy
}

/// The app's policy with `percent` of the traffic for `version` (0 removes the
/// version's weight). A non-zero weight needs a version some slot routes to; the
/// weights together may not exceed 100.
pub fn plan_weight(app: &App, version: &str, percent: u32) -> Result<Policy, PlanError> {
    validate::name("version name", version)?;
    let mut policy = app.policy.clone().unwrap_or_default();
    if percent == 0 {
        policy.weights.remove(version);
        return Ok(policy);
    }
    if percent > 100 {
        return Err(Invalid::new("weight", &percent.to_string(), "must be 0-100 percent").into());
    }
    if !app.routes.values().any(|v| v == version) {
        let routed: BTreeSet<&String> = app.routes.values().collect();
        return Err(PlanError::NotRouted {
            version: version.to_string(),
            routed: routed.into_iter().cloned().collect(),
        });
    }
    policy.weights.insert(version.to_string(), percent);
    policy.validate()?;
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, Health, HealthStatus, Mode};

    /// An app with `routes` (instance, version) and endpoints (instance, version).
    fn app(routes: &[(&str, &str)], endpoints: &[(&str, &str)]) -> App {
        let mut app = App::default();
        for (i, v) in routes {
            app.routes.insert(i.to_string(), v.to_string());
        }
        for (n, (i, v)) in endpoints.iter().enumerate() {
            app.endpoints.entry(i.to_string()).or_default().insert(
                v.to_string(),
                Endpoint::new(format!("127.0.0.1:{}", 9000 + n)),
            );
        }
        app
    }

    fn set_health(app: &mut App, instance: &str, version: &str, status: HealthStatus) {
        app.endpoints
            .get_mut(instance)
            .unwrap()
            .get_mut(version)
            .unwrap()
            .health = Some(Health {
            status,
            checked_at: None,
            detail: Some("503 Service Unavailable".into()),
        });
    }

    /// The seed: three slots on v1, every slot with a v1 and a v2 endpoint.
    fn seed() -> App {
        app(
            &[
                ("instance1", "v1"),
                ("instance2", "v1"),
                ("instance3", "v1"),
            ],
            &[
                ("instance1", "v1"),
                ("instance2", "v1"),
                ("instance3", "v1"),
                ("instance1", "v2"),
                ("instance2", "v2"),
                ("instance3", "v2"),
            ],
        )
    }

    fn flips(plan: &Plan) -> Vec<(&str, &str, &str)> {
        plan.flips
            .iter()
            .map(|f| (f.instance.as_str(), f.from.as_str(), f.to.as_str()))
            .collect()
    }

    fn record(seq: u64, action: &str, from: &[(&str, &str)], to: &[(&str, &str)]) -> HistoryRecord {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(i, v)| (i.to_string(), v.to_string()))
                .collect()
        };
        let mut record = HistoryRecord::new("t@h", action.into(), map(from), map(to), None, None);
        record.seq = seq;
        record
    }

    /// Applies a plan to the app and returns the matching history record.
    fn apply(app: &mut App, plan: &Plan, seq: u64, action: &str) -> HistoryRecord {
        app.routes = plan.apply(&app.routes);
        let mut r = record(seq, action, &[], &[]);
        r.from = plan.from_map();
        r.to = plan.to_map();
        r
    }

    #[test]
    fn natural_order_compares_numbers_as_numbers() {
        let mut names = vec![
            "instance10",
            "instance2",
            "instance1",
            "b",
            "a10b",
            "a2b",
            "a2a",
            "instance02",
            "x",
            "instance",
            "10",
            "9",
        ];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            names,
            [
                "9",
                "10",
                "a2a",
                "a2b",
                "a10b",
                "b",
                "instance",
                "instance1",
                "instance02",
                "instance2",
                "instance10",
                "x"
            ]
        );
        assert_eq!(natural_cmp("i01", "i1"), "i01".cmp("i1"));
        assert_eq!(natural_cmp("same", "same"), Ordering::Equal);
        // Longer than any integer type: still compared as numbers.
        assert_eq!(
            natural_cmp("n99999999999999999999999", "n100000000000000000000000"),
            Ordering::Less
        );
    }

    #[test]
    fn promote_flips_the_next_slot_in_natural_order() {
        let mut a = app(
            &[
                ("instance10", "v1"),
                ("instance2", "v1"),
                ("instance1", "v2"),
            ],
            &[
                ("instance10", "v2"),
                ("instance2", "v2"),
                ("instance1", "v2"),
            ],
        );
        let plan = plan_promote(&a, "v2", Count::Next(1)).unwrap();
        assert_eq!(flips(&plan), [("instance2", "v1", "v2")]);
        apply(&mut a, &plan, 1, "promote");
        let plan = plan_promote(&a, "v2", Count::Next(1)).unwrap();
        assert_eq!(flips(&plan), [("instance10", "v1", "v2")]);
        apply(&mut a, &plan, 2, "promote");
        assert!(plan_promote(&a, "v2", Count::Next(1)).unwrap().is_empty());
        assert!(plan_promote(&a, "v2", Count::All).unwrap().is_empty());
    }

    #[test]
    fn promote_count_and_all() {
        let a = seed();
        let plan = plan_promote(&a, "v2", Count::Next(2)).unwrap();
        assert_eq!(
            flips(&plan),
            [("instance1", "v1", "v2"), ("instance2", "v1", "v2")]
        );
        // More than are left: the rest.
        let plan = plan_promote(&a, "v2", Count::Next(10)).unwrap();
        assert_eq!(plan.flips.len(), 3);
        assert_eq!(plan_promote(&a, "v2", Count::All).unwrap(), plan);
        assert!(matches!(
            plan_promote(&a, "v2", Count::Next(0)),
            Err(PlanError::Invalid(_))
        ));
        let after = plan.apply(&a.routes);
        assert!(after.values().all(|v| v == "v2"));
        assert_eq!(plan.from_map().len(), 3);
        assert_eq!(plan.to_map()["instance3"], "v2");
    }

    #[test]
    fn promote_refuses_missing_or_failing_endpoints_and_never_skips_a_slot() {
        let a = app(
            &[("instance1", "v1"), ("instance2", "v1")],
            &[
                ("instance1", "v1"),
                ("instance2", "v1"),
                ("instance2", "v2"),
            ],
        );
        let e = plan_promote(&a, "v2", Count::Next(1)).unwrap_err();
        assert_eq!(
            e,
            PlanError::MissingEndpoint {
                instance: "instance1".into(),
                version: "v2".into()
            }
        );
        assert!(!e.is_bad_input());
        assert_eq!(
            e.to_string(),
            "slot instance1 has no v2 endpoint registered"
        );

        let mut a = seed();
        set_health(&mut a, "instance1", "v2", HealthStatus::Failing);
        let e = plan_promote(&a, "v2", Count::Next(1)).unwrap_err();
        assert!(
            matches!(&e, PlanError::FailingEndpoint { instance, .. } if instance == "instance1")
        );
        assert!(e.to_string().contains("reported failing: 503"), "{e}");
        // Failing in a slot beyond the count does not matter; within it, it does.
        let mut a = seed();
        set_health(&mut a, "instance3", "v2", HealthStatus::Failing);
        assert_eq!(
            plan_promote(&a, "v2", Count::Next(2)).unwrap().flips.len(),
            2
        );
        assert!(plan_promote(&a, "v2", Count::All).is_err());
        // Passing and unknown health both count as healthy.
        set_health(&mut a, "instance3", "v2", HealthStatus::Passing);
        assert_eq!(plan_promote(&a, "v2", Count::All).unwrap().flips.len(), 3);
    }

    #[test]
    fn promote_refuses_versions_without_endpoints_bad_names_and_apps_without_slots() {
        let a = seed();
        assert_eq!(
            plan_promote(&a, "v3", Count::Next(1)),
            Err(PlanError::NoEndpoints {
                version: "v3".into()
            })
        );
        let e = plan_promote(&a, "v3;", Count::Next(1)).unwrap_err();
        assert!(e.is_bad_input(), "{e}");
        let empty = app(&[], &[("instance1", "v2")]);
        assert_eq!(
            plan_promote(&empty, "v2", Count::Next(1)),
            Err(PlanError::NoSlots)
        );
    }

    #[test]
    fn switch_flips_every_slot_or_none() {
        let mut a = seed();
        a.routes.insert("instance1".into(), "v2".into());
        let plan = plan_switch(&a, "v2").unwrap();
        assert_eq!(
            flips(&plan),
            [("instance2", "v1", "v2"), ("instance3", "v1", "v2")]
        );
        // One slot without a v2 endpoint refuses the whole switch.
        a.endpoints.get_mut("instance3").unwrap().remove("v2");
        assert_eq!(
            plan_switch(&a, "v2"),
            Err(PlanError::MissingEndpoint {
                instance: "instance3".into(),
                version: "v2".into()
            })
        );
        let mut a = seed();
        set_health(&mut a, "instance2", "v2", HealthStatus::Failing);
        assert!(matches!(
            plan_switch(&a, "v2"),
            Err(PlanError::FailingEndpoint { .. })
        ));
        assert_eq!(
            plan_switch(&seed(), "v9"),
            Err(PlanError::NoEndpoints {
                version: "v9".into()
            })
        );
        // Already there: nothing to do.
        assert!(plan_switch(&seed(), "v1").unwrap().is_empty());
    }

    #[test]
    fn rollback_after_the_seed_sequence_puts_every_slot_back_on_v1() {
        let mut a = seed();
        let mut history = Vec::new();
        let plan = plan_promote(&a, "v2", Count::Next(1)).unwrap();
        history.push(apply(&mut a, &plan, 1, "promote"));
        let plan = plan_promote(&a, "v2", Count::Next(1)).unwrap();
        history.push(apply(&mut a, &plan, 2, "promote"));
        let plan = plan_switch(&a, "v2").unwrap();
        assert_eq!(flips(&plan), [("instance3", "v1", "v2")]);
        history.push(apply(&mut a, &plan, 3, "switch"));

        let rollback = plan_rollback(&a, &history).unwrap();
        assert_eq!(rollback.undoes, 3);
        assert_eq!(rollback.versions, BTreeSet::from(["v2".to_string()]));
        assert_eq!(
            flips(&rollback.plan),
            [
                ("instance1", "v2", "v1"),
                ("instance2", "v2", "v1"),
                ("instance3", "v2", "v1")
            ]
        );
        history.push(apply(&mut a, &rollback.plan, 4, "rollback"));
        assert!(a.routes.values().all(|v| v == "v1"));
        // Rolling back again changes nothing.
        assert!(plan_rollback(&a, &history).unwrap().plan.is_empty());
        // The order of the records does not matter.
        history.reverse();
        assert!(plan_rollback(&a, &history).unwrap().plan.is_empty());
    }

    #[test]
    fn rollback_undoes_only_the_newest_rollout() {
        // v1 -> v2 everywhere, then a canary of v3 on instance1.
        let mut a = seed();
        for i in 1..=3 {
            a.endpoints
                .get_mut(&format!("instance{i}"))
                .unwrap()
                .insert(
                    "v3".into(),
                    Endpoint::new(format!("127.0.0.1:{}", 9300 + i)),
                );
        }
        let mut history = vec![];
        let plan = plan_switch(&a, "v2").unwrap();
        history.push(apply(&mut a, &plan, 1, "switch"));
        let plan = plan_promote(&a, "v3", Count::Next(1)).unwrap();
        history.push(apply(&mut a, &plan, 2, "promote"));
        // A policy record in between is not a rollout.
        history.push(record(3, "dark", &[], &[]));
        let rollback = plan_rollback(&a, &history).unwrap();
        assert_eq!(rollback.undoes, 2);
        assert_eq!(flips(&rollback.plan), [("instance1", "v3", "v2")]);
        history.push(apply(&mut a, &rollback.plan, 4, "rollback"));
        // The rollback is not itself undone by the next rollback.
        assert!(plan_rollback(&a, &history).unwrap().plan.is_empty());
        // A route set counts as a rollout.
        history.push(record(
            5,
            "route set",
            &[("instance2", "v2")],
            &[("instance2", "v3")],
        ));
        a.routes.insert("instance2".into(), "v3".into());
        let rollback = plan_rollback(&a, &history).unwrap();
        assert_eq!(flips(&rollback.plan), [("instance2", "v3", "v2")]);
    }

    #[test]
    fn rollback_refuses_what_it_cannot_know_or_route() {
        let a = seed();
        assert_eq!(plan_rollback(&a, &[]), Err(PlanError::NothingToRollBack));
        assert_eq!(
            plan_rollback(&a, &[record(1, "dark", &[], &[])]),
            Err(PlanError::NothingToRollBack)
        );
        // A slot moved to v2 by hand, with no record of where it came from.
        let mut a = seed();
        a.routes.insert("instance1".into(), "v2".into());
        a.routes.insert("instance2".into(), "v2".into());
        let history = [record(
            1,
            "promote",
            &[("instance2", "v1")],
            &[("instance2", "v2")],
        )];
        assert_eq!(
            plan_rollback(&a, &history),
            Err(PlanError::UnknownPrevious {
                instance: "instance1".into(),
                version: "v2".into()
            })
        );
        // The previous version's endpoint is gone.
        a.routes.insert("instance1".into(), "v1".into());
        a.endpoints.get_mut("instance2").unwrap().remove("v1");
        assert_eq!(
            plan_rollback(&a, &history),
            Err(PlanError::MissingEndpoint {
                instance: "instance2".into(),
                version: "v1".into()
            })
        );
        assert_eq!(
            plan_rollback(&App::default(), &history),
            Err(PlanError::NoSlots)
        );
    }

    #[test]
    fn dark_sets_replaces_and_removes_the_dark_canary() {
        let mut a = seed();
        a.policy = Some(Policy {
            listen: Some("127.0.0.1:8080".into()),
            ..Policy::default()
        });
        let header = Match::Header {
            name: "X-Canary".into(),
            value: "1".into(),
        };
        let cidr = Match::Cidr("10.0.0.0/8".into());
        let policy =
            plan_dark(&a, "v2", vec![header.clone(), cidr.clone(), header.clone()]).unwrap();
        assert_eq!(policy.listen.as_deref(), Some("127.0.0.1:8080"));
        let dark = policy.dark.clone().unwrap();
        assert_eq!(dark.version, "v2");
        assert_eq!(
            dark.matches,
            [header.clone(), cidr.clone()],
            "duplicates dropped"
        );
        a.policy = Some(policy);
        let replaced = plan_dark(&a, "v2", vec![cidr.clone()]).unwrap();
        assert_eq!(replaced.dark.unwrap().matches, std::slice::from_ref(&cidr));
        let off = plan_dark_off(&a);
        assert_eq!(off.dark, None);
        assert_eq!(off.listen.as_deref(), Some("127.0.0.1:8080"));
        // An app without policy gets one.
        assert!(plan_dark(&seed(), "v2", vec![cidr.clone()])
            .unwrap()
            .dark
            .is_some());
        assert_eq!(plan_dark_off(&seed()), Policy::default());
    }

    #[test]
    fn dark_refuses_bad_matches_and_versions_without_endpoints() {
        let a = seed();
        let bad = Match::Header {
            name: "X-Canary".into(),
            value: "1\"; evil".into(),
        };
        assert!(plan_dark(&a, "v2", vec![bad]).unwrap_err().is_bad_input());
        assert!(plan_dark(&a, "v2", vec![]).unwrap_err().is_bad_input());
        assert!(plan_dark(&a, "v 2", vec![Match::Cidr("10.0.0.0/8".into())])
            .unwrap_err()
            .is_bad_input());
        let mut tcp = seed();
        tcp.policy = Some(Policy {
            mode: Mode::Tcp,
            ..Policy::default()
        });
        let cookie = Match::Cookie {
            name: "c".into(),
            value: "1".into(),
        };
        assert!(plan_dark(&tcp, "v2", vec![cookie])
            .unwrap_err()
            .is_bad_input());
        assert!(plan_dark(&tcp, "v2", vec![Match::Cidr("10.0.0.0/8".into())]).is_ok());
        assert_eq!(
            plan_dark(&a, "v3", vec![Match::Cidr("10.0.0.0/8".into())]),
            Err(PlanError::NoEndpoints {
                version: "v3".into()
            })
        );
    }

    #[test]
    fn weight_sets_and_removes_a_routed_versions_share() {
        let mut a = seed();
        a.routes.insert("instance1".into(), "v2".into());
        let policy = plan_weight(&a, "v2", 5).unwrap();
        assert_eq!(policy.weights, BTreeMap::from([("v2".to_string(), 5)]));
        a.policy = Some(policy);
        let policy = plan_weight(&a, "v1", 95).unwrap();
        assert_eq!(policy.weights.len(), 2);
        a.policy = Some(policy);
        let e = plan_weight(&a, "v2", 6).unwrap_err();
        assert!(e.is_bad_input(), "sum over 100: {e}");
        assert!(plan_weight(&a, "v2", 101).unwrap_err().is_bad_input());
        let policy = plan_weight(&a, "v2", 0).unwrap();
        assert_eq!(policy.weights, BTreeMap::from([("v1".to_string(), 95)]));
        // Removing a weight needs no routed version; setting one does.
        assert!(plan_weight(&seed(), "v7", 0).is_ok());
        let e = plan_weight(&seed(), "v7", 5).unwrap_err();
        assert_eq!(
            e,
            PlanError::NotRouted {
                version: "v7".into(),
                routed: vec!["v1".into()]
            }
        );
        assert!(!e.is_bad_input());
        assert!(plan_weight(&seed(), "v 7", 5).unwrap_err().is_bad_input());
    }
}
