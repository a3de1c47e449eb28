//! The analysis of a canary step: its thresholds, the step's traffic split into canary
//! and stable versions, and the verdict.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::stats::Counts;
use crate::validate::Invalid;

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
    /// Judge and report every step, but never roll back on a verdict
    /// (`--dry-run-analysis`): for tuning the thresholds on real traffic. An abort, an
    /// interrupt or agents that do not apply a step still roll back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
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
    use crate::rollout::fixtures::{rollout, seed};

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
}
