//! Short human descriptions of routes, dark canaries, weights and changes, shared by
//! the tables of every command.

use std::collections::BTreeMap;

use disco::model::{Dark, Match, Policy};
use disco::plan::natural_cmp;
use disco::rollout::StepChange;

/// `header X-Canary=1`, `cookie canary=1`, `cidr 10.0.0.0/8`.
pub fn matcher(m: &Match) -> String {
    match m {
        Match::Header { name, value } => format!("header {name}={value}"),
        Match::Cookie { name, value } => format!("cookie {name}={value}"),
        Match::Cidr(net) => format!("cidr {net}"),
    }
}

/// `v2 if header X-Canary=1 or cidr 10.0.0.0/8`, or `off`.
pub fn dark(dark: Option<&Dark>) -> String {
    match dark {
        None => "off".into(),
        Some(d) => {
            let matches: Vec<String> = d.matches.iter().map(matcher).collect();
            format!("{} if {}", d.version, matches.join(" or "))
        }
    }
}

/// `v1=90% v2=10%`, or `none`.
pub fn weights(weights: &BTreeMap<String, u32>) -> String {
    if weights.is_empty() {
        return "none".into();
    }
    let parts: Vec<String> = weights.iter().map(|(v, p)| format!("{v}={p}%")).collect();
    parts.join(" ")
}

/// `instance1 v1->v2, instance2 v1->v2` (slots in natural order; `none` for a slot
/// without a route).
pub fn routes_change(from: &BTreeMap<String, String>, to: &BTreeMap<String, String>) -> String {
    let mut slots: Vec<&String> = from.keys().chain(to.keys()).collect();
    slots.sort_by(|a, b| natural_cmp(a, b));
    slots.dedup();
    let parts: Vec<String> = slots
        .into_iter()
        .map(|slot| {
            let before = from.get(slot).map(String::as_str).unwrap_or("none");
            let after = to.get(slot).map(String::as_str).unwrap_or("none");
            format!("{slot} {before}->{after}")
        })
        .collect();
    parts.join(", ")
}

/// What a policy change changed: `dark off -> v2 if header X=1`, `weights none -> v2=5%`.
pub fn policy_change(from: Option<&Policy>, to: Option<&Policy>) -> String {
    let default = Policy::default();
    let (from, to) = (from.unwrap_or(&default), to.unwrap_or(&default));
    let mut parts = Vec::new();
    if from.dark != to.dark {
        parts.push(format!(
            "dark {} -> {}",
            dark(from.dark.as_ref()),
            dark(to.dark.as_ref())
        ));
    }
    if from.weights != to.weights {
        parts.push(format!(
            "weights {} -> {}",
            weights(&from.weights),
            weights(&to.weights)
        ));
    }
    if from.listen != to.listen || from.mode != to.mode {
        parts.push(format!(
            "listen {} {} -> {} {}",
            from.listen.as_deref().unwrap_or("-"),
            from.mode,
            to.listen.as_deref().unwrap_or("-"),
            to.mode
        ));
    }
    if parts.is_empty() {
        "policy unchanged".into()
    } else {
        parts.join("; ")
    }
}

/// A canary step's or rollback's change (`policy` before it): `instance1 v1->v2;
/// weights none -> v2=5%`, or `nothing to change`.
pub fn step_change(change: &StepChange, before: Option<&Policy>) -> String {
    let mut parts = Vec::new();
    if !change.plan.is_empty() {
        parts.push(routes_change(
            &change.plan.from_map(),
            &change.plan.to_map(),
        ));
    }
    if let Some(after) = &change.policy {
        parts.push(policy_change(before, Some(after)));
    }
    if parts.is_empty() {
        "nothing to change".into()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn route_changes_list_slots_in_natural_order() {
        let from = map(&[("i10", "v1"), ("i2", "v1")]);
        let to = map(&[("i10", "v2"), ("i2", "v2"), ("i3", "v2")]);
        assert_eq!(
            routes_change(&from, &to),
            "i2 v1->v2, i3 none->v2, i10 v1->v2"
        );
    }

    #[test]
    fn policy_changes_name_only_what_changed() {
        let before = Policy {
            listen: Some("127.0.0.1:80".into()),
            ..Policy::default()
        };
        let mut after = before.clone();
        after.dark = Some(Dark {
            version: "v2".into(),
            matches: vec![
                Match::Header {
                    name: "X-Canary".into(),
                    value: "1".into(),
                },
                Match::Cookie {
                    name: "c".into(),
                    value: "1".into(),
                },
                Match::Cidr("10.0.0.0/8".into()),
            ],
        });
        assert_eq!(
            policy_change(Some(&before), Some(&after)),
            "dark off -> v2 if header X-Canary=1 or cookie c=1 or cidr 10.0.0.0/8"
        );
        let mut weighted = before.clone();
        weighted.weights = BTreeMap::from([("v2".into(), 5), ("v1".into(), 95)]);
        assert_eq!(
            policy_change(Some(&before), Some(&weighted)),
            "weights none -> v1=95% v2=5%"
        );
        assert_eq!(
            policy_change(None, Some(&before)),
            "listen - http -> 127.0.0.1:80 http"
        );
        assert_eq!(
            policy_change(Some(&before), Some(&before)),
            "policy unchanged"
        );
    }
}
