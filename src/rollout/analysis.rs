//! The analysis of a canary step: its thresholds, the step's traffic split into canary
//! and stable versions, and the judgement: per metric a threshold and a statistical
//! comparison with the stable versions (`significance`), and a verdict of pass, fail,
//! inconclusive or no data that explains itself.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::significance::{errors_above_share, errors_above_stable, p_text, slower_than, Test};
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

/// What a step whose verdict is inconclusive at the end of its interval does: the
/// canary is over a threshold, but not by more than chance (`--on-inconclusive`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnInconclusive {
    /// Observe one more interval (the counts go on adding up); still inconclusive
    /// then: pause for an operator.
    #[default]
    Extend,
    /// Pause for an operator at once: `discoctl resume` observes one more interval,
    /// `discoctl abort` rolls back.
    Pause,
}

impl std::str::FromStr for OnInconclusive {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        match s {
            "extend" => Ok(OnInconclusive::Extend),
            "pause" => Ok(OnInconclusive::Pause),
            _ => Err(Invalid::new(
                "--on-inconclusive",
                s,
                "must be extend or pause",
            )),
        }
    }
}

/// The significance level of the verdicts taken before the end of a step's interval
/// (a Haybittle–Peto boundary): looking at the counts many times over a step would
/// otherwise find chance differences; this strict level keeps the chance of a false
/// early failure small however often the counts are looked at, and lets a step fail
/// within a few dozen requests when the canary is plainly broken.
pub const EARLY_ALPHA: f64 = 0.001;

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
    /// Largest 95th percentile of the canary's response time over a step, in ms
    /// (`--max-p95`); none: not checked. Needs per-request times (HAProxy's
    /// `log_socket`, nginx's access log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p95_ms: Option<f64>,
    /// Largest 99th percentile, in ms (`--max-p99`); none: not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_ms: Option<f64>,
    /// Fewest canary requests in a step for a verdict (`--min-requests`); the stable
    /// versions need as many to be compared with.
    pub min_requests: u64,
    /// What a step with fewer does.
    #[serde(default)]
    pub on_no_data: OnNoData,
    /// How sure the verdict at the end of a step must be that the canary is worse
    /// than the stable versions (or than a threshold, without them) before it fails
    /// (`--confidence`, 0.5–0.9999): the test's p-value must be below 1 − this.
    #[serde(default = "Analysis::default_confidence")]
    pub confidence: f64,
    /// What a step whose verdict is inconclusive does.
    #[serde(default)]
    pub on_inconclusive: OnInconclusive,
    /// Judge and report every step, but never roll back on a verdict
    /// (`--dry-run-analysis`): for tuning the thresholds on real traffic. An abort, an
    /// interrupt or agents that do not apply a step still roll back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

impl Analysis {
    /// `--confidence`'s default, also for records written before it existed.
    pub const DEFAULT_CONFIDENCE: f64 = 0.95;

    fn default_confidence() -> f64 {
        Analysis::DEFAULT_CONFIDENCE
    }

    /// The significance level of a look at the counts.
    pub fn alpha(&self, look: Look) -> f64 {
        let at_end = (1.0 - self.confidence).clamp(1e-6, 0.5);
        match look {
            Look::Final => at_end,
            Look::Interim => EARLY_ALPHA.min(at_end),
        }
    }
}

/// When the interim looks at a step's counts are due: once the canary's requests
/// have grown by a tenth since the last look. Every statistics update (20 a second per
/// agent during a canary) would test the same slowly growing counts a thousand times a
/// step; looks spaced by growth are a few dozen per step (ln(n₁/n₀)/ln 1.1), and come
/// as fast as the requests do while the counts are small, where an early verdict
/// matters. Each look at [`EARLY_ALPHA`] can find a chance difference; the simulation
/// in this module's tests measures how often that fails a canary no worse than the
/// stable versions over a whole step.
#[derive(Debug, Clone, Default)]
pub struct Looks {
    next: u64,
}

impl Looks {
    /// Whether a look at `canary_requests` is due; if so it is taken.
    pub fn due(&mut self, canary_requests: u64) -> bool {
        if canary_requests < self.next.max(1) {
            return false;
        }
        self.next = (canary_requests + canary_requests / 10).max(canary_requests + 1);
        true
    }
}

/// When the counts are judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// During the step: only a failure counts, at [`EARLY_ALPHA`].
    Interim,
    /// At the end of the step's interval: at 1 − `confidence`.
    Final,
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
    /// Enough requests, and every metric within its threshold or not worse than the
    /// stable versions.
    Pass,
    /// A metric over its threshold and worse than the stable versions (or the
    /// threshold, without them) by more than chance: why.
    Fail(String),
    /// A metric over its threshold, but not by more than chance (or not measurable):
    /// why. More requests decide.
    Inconclusive(String),
    /// Fewer requests than `min_requests`: how many.
    NoData(String),
}

/// A metric a step is judged on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// The 5xx share (`--max-error-rate`).
    ErrorRate,
    /// The mean response time (`--max-latency`).
    MeanLatency,
    /// The 95th percentile (`--max-p95`).
    P95Latency,
    /// The 99th percentile (`--max-p99`).
    P99Latency,
}

/// How one metric came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
    Inconclusive,
}

/// One metric's judgement: the values, the threshold, the test and the reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub metric: Metric,
    /// The canary's value: a share (0–1) or ms; none when not measurable.
    pub canary: Option<f64>,
    /// The stable versions' value, when there were enough of their requests.
    pub stable: Option<f64>,
    /// The threshold.
    pub max: f64,
    /// The statistical test, when one was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<Test>,
    pub outcome: Outcome,
    /// The judgement in words.
    pub why: String,
}

/// A step's judgement: the verdict, and every metric's check behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub verdict: Verdict,
    /// The metrics judged (none without enough requests).
    pub checks: Vec<Check>,
    /// The significance level used.
    pub alpha: f64,
}

impl Judgement {
    /// Every check's reason, in order: the explanation for output and history.
    pub fn explain(&self) -> String {
        match &self.verdict {
            Verdict::NoData(why) => why.clone(),
            _ => self
                .checks
                .iter()
                .map(|c| c.why.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        }
    }
}

fn percent(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

/// `p = 0.01 < 0.05` or `p = 0.2, not below 0.05`.
fn evidence(test: &Test, alpha: f64) -> String {
    let p = p_text(test.p_value);
    // 1 - 0.95 is 0.050000000000000044 in binary.
    let alpha = (alpha * 1e6).round() / 1e6;
    if test.p_value < alpha {
        format!("{} {p} < {alpha}", test.test)
    } else {
        format!("{} {p}, not below {alpha}", test.test)
    }
}

/// Judges `obs` against `analysis` at `look`:
///
/// - fewer than `min_requests` canary requests: no data;
/// - each metric with a threshold (the 5xx share always; the mean, p95 and p99 when
///   set) passes within its threshold. Over it, the canary is compared with the stable
///   versions when they answered at least `min_requests` (Fisher's exact or the
///   two-proportion test on the 5xx share, Mann–Whitney U on the response-time
///   histograms): worse by more than chance (p below the look's level, see
///   [`Analysis::alpha`]) fails; not worse at all (the stable versions are as bad: a
///   shared database down is not the canary's fault) passes; in between is
///   inconclusive. Without stable traffic to compare with, the 5xx share is tested
///   against the threshold itself (binomial test), and a response time over its
///   threshold fails on the threshold alone, as it does without per-request times
///   (HAProxy's `show stat` means);
/// - any metric failing fails the step; else any inconclusive makes it inconclusive;
///   else it passes.
pub fn judge(obs: &Observation, analysis: &Analysis, version: &str, look: Look) -> Judgement {
    let alpha = analysis.alpha(look);
    let canary = &obs.canary;
    if canary.requests < analysis.min_requests {
        return Judgement {
            verdict: Verdict::NoData(format!(
                "{version} answered {} requests, fewer than --min-requests {}",
                canary.requests, analysis.min_requests
            )),
            checks: Vec::new(),
            alpha,
        };
    }
    let mut checks = vec![error_check(obs, analysis, version, alpha)];
    let latencies = [
        (Metric::MeanLatency, analysis.max_latency_ms),
        (Metric::P95Latency, analysis.max_p95_ms),
        (Metric::P99Latency, analysis.max_p99_ms),
    ];
    for (metric, max) in latencies {
        if let Some(max) = max {
            checks.push(latency_check(metric, max, obs, analysis, version, alpha));
        }
    }
    let reasons = |outcome| {
        checks
            .iter()
            .filter(|c| c.outcome == outcome)
            .map(|c| c.why.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    };
    let verdict = if checks.iter().any(|c| c.outcome == Outcome::Fail) {
        Verdict::Fail(reasons(Outcome::Fail))
    } else if checks.iter().any(|c| c.outcome == Outcome::Inconclusive) {
        Verdict::Inconclusive(reasons(Outcome::Inconclusive))
    } else {
        Verdict::Pass
    };
    Judgement {
        verdict,
        checks,
        alpha,
    }
}

fn error_check(obs: &Observation, analysis: &Analysis, version: &str, alpha: f64) -> Check {
    let c = &obs.canary;
    let s = &obs.stable;
    let max = analysis.max_error_rate;
    let rate = c.error_rate().unwrap_or(0.0);
    let stable = s
        .error_rate()
        .filter(|_| s.requests >= analysis.min_requests);
    let head = format!(
        "{version} 5xx rate {} ({} of {} requests)",
        percent(rate),
        c.errors_5xx,
        c.requests
    );
    let over = format!("{head} is over --max-error-rate {}", percent(max));
    let check = |outcome, test, why| Check {
        metric: Metric::ErrorRate,
        canary: Some(rate),
        stable,
        max,
        test,
        outcome,
        why,
    };
    if rate <= max {
        return check(
            Outcome::Pass,
            None,
            format!("{head} is within --max-error-rate {}", percent(max)),
        );
    }
    let Some(stable_rate) = stable else {
        let test = errors_above_share(c.errors_5xx, c.requests, max).expect("requests");
        let outcome = if test.p_value < alpha {
            Outcome::Fail
        } else {
            Outcome::Inconclusive
        };
        let why = format!(
            "{over}{} ({}; too few stable requests to compare with)",
            if outcome == Outcome::Fail {
                ""
            } else {
                ", but not significantly"
            },
            evidence(&test, alpha)
        );
        return check(outcome, Some(test), why);
    };
    let test =
        errors_above_stable(c.errors_5xx, c.requests, s.errors_5xx, s.requests).expect("requests");
    let vs = format!(
        "the stable versions' {} ({} of {})",
        percent(stable_rate),
        s.errors_5xx,
        s.requests
    );
    if test.p_value < alpha {
        let why = format!("{over} and above {vs}: {}", evidence(&test, alpha));
        check(Outcome::Fail, Some(test), why)
    } else if rate <= stable_rate {
        let why = format!("{over} but not above {vs}");
        check(Outcome::Pass, Some(test), why)
    } else {
        let why = format!(
            "{over} and above {vs}, but not significantly: {}",
            evidence(&test, alpha)
        );
        check(Outcome::Inconclusive, Some(test), why)
    }
}

fn latency_check(
    metric: Metric,
    max: f64,
    obs: &Observation,
    analysis: &Analysis,
    version: &str,
    alpha: f64,
) -> Check {
    let (name, flag) = match metric {
        Metric::MeanLatency => ("mean", "--max-latency"),
        Metric::P95Latency => ("p95", "--max-p95"),
        Metric::P99Latency => ("p99", "--max-p99"),
        Metric::ErrorRate => unreachable!("not a latency"),
    };
    let value = |c: &Counts| match metric {
        Metric::MeanLatency => c.mean_ms(),
        Metric::P95Latency => c.percentile_ms(0.95),
        _ => c.percentile_ms(0.99),
    };
    let (c, s) = (&obs.canary, &obs.stable);
    let stable = value(s).filter(|_| s.timed >= analysis.min_requests);
    let check = |canary, outcome, test, why| Check {
        metric,
        canary,
        stable,
        max,
        test,
        outcome,
        why,
    };
    let Some(ms) = value(c) else {
        return if metric == Metric::MeanLatency {
            check(
                None,
                Outcome::Pass,
                None,
                format!("{version} has no timed requests: {flag} not checked"),
            )
        } else {
            check(
                None,
                Outcome::Inconclusive,
                None,
                format!("{version} has no per-request response times for {flag} (an HAProxy target needs log_socket)"),
            )
        };
    };
    let head = format!("{version} {name} response time {ms:.1} ms");
    if ms <= max {
        return check(
            Some(ms),
            Outcome::Pass,
            None,
            format!("{head} is within {flag} {max} ms"),
        );
    }
    let over = format!("{head} is over {flag} {max} ms");
    let (Some(stable_ms), Some(test)) = (stable, slower_than(c, s)) else {
        return check(Some(ms), Outcome::Fail, None, over);
    };
    let vs = format!("the stable versions' {stable_ms:.1} ms");
    if test.p_value < alpha {
        let why = format!("{over} and above {vs}: {}", evidence(&test, alpha));
        check(Some(ms), Outcome::Fail, Some(test), why)
    } else if ms <= stable_ms {
        let why = format!("{over} but not above {vs}");
        check(Some(ms), Outcome::Pass, Some(test), why)
    } else {
        let why = format!(
            "{over} and above {vs}, but not significantly: {}",
            evidence(&test, alpha)
        );
        check(Some(ms), Outcome::Inconclusive, Some(test), why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::fixtures::{rollout, seed};
    use crate::stats::BUCKETS_MS;

    fn counts(requests: u64, errors: u64, mean_ms: f64) -> Counts {
        Counts {
            requests,
            errors_5xx: errors,
            timed: requests,
            time_ms_sum: mean_ms * requests as f64,
            buckets: vec![],
        }
    }

    /// `n` requests per (bucket index, n), all 200.
    fn timed(per_bucket: &[(usize, u64)]) -> Counts {
        let mut c = Counts::default();
        for &(bucket, n) in per_bucket {
            for _ in 0..n {
                c.observe(200, Some(BUCKETS_MS[bucket]));
            }
        }
        c
    }

    fn obs(canary: Counts, stable: Counts) -> Observation {
        Observation { canary, stable }
    }

    fn verdict(o: &Observation, a: &Analysis, look: Look) -> Verdict {
        judge(o, a, "v2", look).verdict
    }

    #[test]
    fn the_5xx_share_is_compared_with_the_stable_versions_by_a_test() {
        let a = rollout(&seed(), "1,all", false).analysis;
        let by_version = BTreeMap::from([
            ("v1".to_string(), counts(600, 0, 1.0)),
            ("v3".to_string(), counts(400, 4, 1.0)),
            ("v2".to_string(), counts(300, 90, 1.0)),
        ]);
        let split = Observation::split(&by_version, "v2");
        assert_eq!((split.stable.requests, split.stable.errors_5xx), (1000, 4));
        let j = judge(&split, &a, "v2", Look::Final);
        let Verdict::Fail(why) = &j.verdict else {
            panic!("{j:?}")
        };
        assert!(
            why.starts_with("v2 5xx rate 30.0% (90 of 300 requests) is over --max-error-rate 1.0% and above the stable versions' 0.4% (4 of 1000): Fisher's exact test p < 1e-12 < 0.05"),
            "{why}"
        );
        assert_eq!(j.checks.len(), 1);
        assert_eq!(j.checks[0].metric, Metric::ErrorRate);
        assert_eq!(j.checks[0].stable, Some(0.004));
        assert_eq!(j.explain(), *why);
        assert_eq!(
            verdict(
                &obs(counts(19, 19, 1.0), counts(0, 0, 0.0)),
                &a,
                Look::Final
            ),
            Verdict::NoData("v2 answered 19 requests, fewer than --min-requests 20".into())
        );
        assert_eq!(
            verdict(
                &obs(counts(100, 1, 1.0), counts(100, 0, 1.0)),
                &a,
                Look::Final
            ),
            Verdict::Pass,
            "1% is not over 1%"
        );
        // Over the threshold, but the stable versions fail as much: not the canary.
        let j = judge(
            &obs(counts(100, 20, 1.0), counts(100, 25, 1.0)),
            &a,
            "v2",
            Look::Final,
        );
        assert_eq!(j.verdict, Verdict::Pass);
        assert!(
            j.explain()
                .contains("but not above the stable versions' 25.0%"),
            "{}",
            j.explain()
        );
        // Above the threshold and the stable versions, but 3 errors in 100 against 1 in
        // 100 is chance as often as not: inconclusive, and it says why.
        let Verdict::Inconclusive(why) = verdict(
            &obs(counts(100, 3, 1.0), counts(100, 1, 1.0)),
            &a,
            Look::Final,
        ) else {
            panic!()
        };
        assert!(
            why.contains("but not significantly: Fisher's exact test p = 0.3"),
            "{why}"
        );
        assert!(why.ends_with("not below 0.05"), "{why}");
        // Stable with too few requests to compare: the threshold, by a binomial test.
        let Verdict::Fail(why) = verdict(
            &obs(counts(100, 20, 1.0), counts(5, 5, 1.0)),
            &a,
            Look::Final,
        ) else {
            panic!()
        };
        assert!(
            why.contains(
                "(binomial test p < 1e-12 < 0.05; too few stable requests to compare with)"
            ),
            "{why}"
        );
        // The "all" step: no stable traffic at all. 2 of 100 over 1% is not evidence;
        // 10 of 100 is.
        assert!(matches!(
            verdict(
                &obs(counts(100, 2, 1.0), Counts::default()),
                &a,
                Look::Final
            ),
            Verdict::Inconclusive(_)
        ));
        assert!(matches!(
            verdict(
                &obs(counts(100, 10, 1.0), Counts::default()),
                &a,
                Look::Final
            ),
            Verdict::Fail(_)
        ));
    }

    #[test]
    fn an_interim_look_fails_only_on_strong_evidence() {
        let a = rollout(&seed(), "1,all", false).analysis;
        // 4 of 40 against 1 of 200: p = 0.003, a failure at the end, not midway.
        let o = obs(counts(40, 4, 1.0), counts(200, 1, 1.0));
        assert!(matches!(verdict(&o, &a, Look::Final), Verdict::Fail(_)));
        assert!(matches!(
            verdict(&o, &a, Look::Interim),
            Verdict::Inconclusive(_)
        ));
        // A canary answering 20% 500s, 40 requests in: already beyond doubt (p = 9e-5).
        let o = obs(counts(40, 8, 1.0), counts(80, 0, 1.0));
        let j = judge(&o, &a, "v2", Look::Interim);
        assert!(matches!(j.verdict, Verdict::Fail(_)), "{j:?}");
        assert_eq!(j.alpha, EARLY_ALPHA);
        // A single error among the first requests never fails a step midway.
        let o = obs(counts(20, 1, 1.0), counts(2000, 0, 1.0));
        assert!(matches!(
            verdict(&o, &a, Look::Interim),
            Verdict::Inconclusive(_)
        ));
        // --confidence sets the final level; the interim one is never looser.
        let mut strict = a.clone();
        strict.confidence = 0.99;
        assert!((strict.alpha(Look::Final) - 0.01).abs() < 1e-12);
        assert_eq!(strict.alpha(Look::Interim), EARLY_ALPHA);
        strict.confidence = 0.9999;
        assert!(strict.alpha(Look::Interim) <= strict.alpha(Look::Final));
    }

    #[test]
    fn latencies_are_compared_by_their_histograms() {
        let mut a = rollout(&seed(), "1,all", false).analysis;
        // Means without histograms (HAProxy's show stat): the threshold alone.
        let o = obs(counts(100, 0, 80.0), counts(100, 0, 1.0));
        assert_eq!(verdict(&o, &a, Look::Final), Verdict::Pass, "unchecked");
        a.max_latency_ms = Some(50.0);
        assert_eq!(
            verdict(&o, &a, Look::Final),
            Verdict::Fail("v2 mean response time 80.0 ms is over --max-latency 50 ms".into())
        );
        assert_eq!(
            verdict(
                &obs(counts(100, 0, 20.0), counts(100, 0, 1.0)),
                &a,
                Look::Final
            ),
            Verdict::Pass
        );
        a.max_latency_ms = None;
        // p95 over its threshold and slower than the stable versions: fails, by
        // Mann-Whitney U.
        a.max_p95_ms = Some(40.0);
        let slow = timed(&[(5, 50), (8, 50)]);
        let fast = timed(&[(3, 500), (4, 500)]);
        let j = judge(&obs(slow.clone(), fast.clone()), &a, "v2", Look::Final);
        let Verdict::Fail(why) = &j.verdict else {
            panic!("{j:?}")
        };
        assert!(why.starts_with("v2 p95 response time"), "{why}");
        assert!(
            why.contains("is over --max-p95 40 ms and above the stable versions'"),
            "{why}"
        );
        assert!(why.contains("Mann-Whitney U test p < 1e-12"), "{why}");
        assert_eq!(j.checks.len(), 2);
        // As slow as the stable versions: not the canary's fault.
        let j = judge(&obs(slow.clone(), slow.clone()), &a, "v2", Look::Final);
        assert_eq!(j.verdict, Verdict::Pass, "{j:?}");
        // A bit slower, on few requests: inconclusive.
        let a_bit = timed(&[(4, 10), (8, 12)]);
        let base = timed(&[(4, 12), (8, 10)]);
        assert!(matches!(
            verdict(&obs(a_bit, base), &a, Look::Final),
            Verdict::Inconclusive(_)
        ));
        // No per-request times for a percentile threshold: inconclusive, says why.
        let Verdict::Inconclusive(why) = verdict(
            &obs(counts(100, 0, 1.0), counts(100, 0, 1.0)),
            &a,
            Look::Final,
        ) else {
            panic!()
        };
        assert!(why.contains("needs log_socket"), "{why}");
        // p99 too: both checks reported, in order.
        a.max_p99_ms = Some(500.0);
        let j = judge(&obs(slow, fast), &a, "v2", Look::Final);
        let metrics: Vec<Metric> = j.checks.iter().map(|c| c.metric).collect();
        assert_eq!(
            metrics,
            [Metric::ErrorRate, Metric::P95Latency, Metric::P99Latency]
        );
    }

    #[test]
    fn old_records_read_with_the_defaults() {
        let old = r#"{"interval_ms":1000,"max_error_rate":0.01,"min_requests":20}"#;
        let a: Analysis = serde_json::from_str(old).unwrap();
        assert_eq!(a.confidence, Analysis::DEFAULT_CONFIDENCE);
        assert_eq!(a.on_inconclusive, OnInconclusive::Extend);
        assert_eq!((a.max_p95_ms, a.max_p99_ms), (None, None));
    }

    /// A tiny deterministic generator for the simulation below.
    struct XorShift(u64);

    impl XorShift {
        fn unit(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }

        /// A binomial draw (exact by counting for small n, normal beyond).
        fn binomial(&mut self, n: u64, p: f64) -> u64 {
            if n <= 64 {
                return (0..n).filter(|_| self.unit() < p).count() as u64;
            }
            let (u1, u2) = (self.unit().max(1e-300), self.unit());
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            let mean = n as f64 * p;
            (mean + z * (mean * (1.0 - p)).sqrt()).round().max(0.0) as u64
        }
    }

    #[test]
    fn interim_looks_rarely_fail_a_canary_that_is_no_worse_than_the_stable_versions() {
        // A shared failure: every version answers 2% 5xx, over --max-error-rate 1%.
        // A 60 s step at ~8k req/s, a third on the canary, an update every 50 ms: the
        // interim looks (spaced by Looks) must rarely fail the canary. Measured: 7 of
        // 400 steps (1.75%), with ~56 looks a step; looking at every update instead
        // failed 6 of 400 with ~1,200 looks a step (Fisher's exact test is
        // conservative on counts this discrete), at 20 times the computation.
        let a = rollout(&seed(), "1,all", false).analysis;
        let mut rng = XorShift(0x5eed_cafe_f00d);
        let steps = 400;
        let mut failed = 0;
        let mut looked = 0u64;
        for _ in 0..steps {
            let mut looks = Looks::default();
            let (mut canary, mut stable) = (Counts::default(), Counts::default());
            for _ in 0..1200 {
                canary.requests += 133;
                canary.errors_5xx += rng.binomial(133, 0.02);
                stable.requests += 267;
                stable.errors_5xx += rng.binomial(267, 0.02);
                if !looks.due(canary.requests) {
                    continue;
                }
                looked += 1;
                let o = obs(canary.clone(), stable.clone());
                if matches!(verdict(&o, &a, Look::Interim), Verdict::Fail(_)) {
                    failed += 1;
                    break;
                }
            }
        }
        eprintln!("{failed} of {steps} steps failed early; {looked} looks");
        assert!(looked / steps < 80, "{looked} looks in {steps} steps");
        let share = failed as f64 / steps as f64;
        assert!(share < 0.03, "{failed} of {steps} steps failed early");
    }

    #[test]
    fn looks_come_with_every_tenth_more_requests() {
        let mut looks = Looks::default();
        assert!(!looks.due(0));
        assert!(looks.due(1));
        assert!(looks.due(2), "small counts: every new request");
        assert!(looks.due(40));
        assert!(!looks.due(43));
        assert!(looks.due(44));
        assert!(!looks.due(47));
        assert!(looks.due(1000));
        assert!(!looks.due(1099));
        assert!(looks.due(1100));
    }
}
