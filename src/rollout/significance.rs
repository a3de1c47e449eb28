//! The statistical tests a canary step's analysis uses to tell whether the canary is
//! worse than the stable versions (or than a threshold) by more than chance: one-sided
//! p-values, without IO and without a statistics crate.
//!
//! - 5xx share against the stable versions: Fisher's exact test while the errors are
//!   few (it stays right with 1 or 2 errors, where a z-test calls them significant),
//!   the two-proportion z-test beyond [`FISHER_MAX_ERRORS`].
//! - 5xx share against a threshold (no stable traffic to compare with): the exact
//!   binomial test.
//! - Response times: the Mann–Whitney U test on the two latency histograms, every
//!   bucket a group of ties (tie-corrected variance, continuity correction).

use serde::Serialize;

use crate::stats::Counts;

/// Above this many errors (canary and stable together) Fisher's exact test gives way
/// to the two-proportion z-test, which is accurate by then and costs no sum.
pub const FISHER_MAX_ERRORS: u64 = 2000;

/// One test's result.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Test {
    /// Which test.
    pub test: TestKind,
    /// The one-sided p-value: how likely data at least this bad is if the canary is
    /// not worse.
    pub p_value: f64,
}

/// The tests, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TestKind {
    Fisher,
    TwoProportionZ,
    Binomial,
    MannWhitneyU,
}

impl std::fmt::Display for TestKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TestKind::Fisher => "Fisher's exact test",
            TestKind::TwoProportionZ => "two-proportion z-test",
            TestKind::Binomial => "binomial test",
            TestKind::MannWhitneyU => "Mann-Whitney U test",
        })
    }
}

/// A p-value for people: `p = 0.032`, `p < 1e-12`.
pub fn p_text(p: f64) -> String {
    if p < 1e-12 {
        "p < 1e-12".into()
    } else if p < 0.001 {
        format!("p = {p:.1e}")
    } else {
        format!("p = {p:.3}")
    }
}

/// Whether the canary's 5xx share (`canary_errors` of `canary_requests`) is above the
/// stable versions' by more than chance. None without requests on either side.
pub fn errors_above_stable(
    canary_errors: u64,
    canary_requests: u64,
    stable_errors: u64,
    stable_requests: u64,
) -> Option<Test> {
    if canary_requests == 0 || stable_requests == 0 {
        return None;
    }
    let errors = canary_errors + stable_errors;
    if errors <= FISHER_MAX_ERRORS {
        return Some(Test {
            test: TestKind::Fisher,
            p_value: fisher_upper(
                canary_requests + stable_requests,
                errors,
                canary_requests,
                canary_errors,
            ),
        });
    }
    let (n1, n2) = (canary_requests as f64, stable_requests as f64);
    let pooled = errors as f64 / (n1 + n2);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    let diff = canary_errors as f64 / n1 - stable_errors as f64 / n2;
    let p_value = if se > 0.0 {
        normal_upper(diff / se)
    } else {
        1.0
    };
    Some(Test {
        test: TestKind::TwoProportionZ,
        p_value,
    })
}

/// Whether `errors` of `requests` is a share above `share` by more than chance (the
/// exact binomial test). None without requests.
pub fn errors_above_share(errors: u64, requests: u64, share: f64) -> Option<Test> {
    if requests == 0 {
        return None;
    }
    Some(Test {
        test: TestKind::Binomial,
        p_value: binomial_upper(requests, errors, share),
    })
}

/// Whether the canary's response times are longer than the stable versions' by more
/// than chance: the Mann–Whitney U test on the two histograms ([`Counts::buckets`]).
/// None when either has no histogram or no timed request in it.
pub fn slower_than(canary: &Counts, stable: &Counts) -> Option<Test> {
    let c = per_bucket(canary)?;
    let s = per_bucket(stable)?;
    let n1: f64 = c.iter().sum();
    let n2: f64 = s.iter().sum();
    if n1 == 0.0 || n2 == 0.0 {
        return None;
    }
    // U counts, over every (canary, stable) pair, the canary slower (1) or tied (½).
    let mut u = 0.0;
    let mut stable_below = 0.0;
    let mut ties = 0.0;
    for (ci, si) in c.iter().zip(&s) {
        u += ci * (stable_below + 0.5 * si);
        stable_below += si;
        let t = ci + si;
        ties += t * t * t - t;
    }
    let n = n1 + n2;
    let variance = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    let p_value = if variance > 0.0 {
        normal_upper((u - n1 * n2 / 2.0 - 0.5) / variance.sqrt())
    } else {
        1.0
    };
    Some(Test {
        test: TestKind::MannWhitneyU,
        p_value,
    })
}

/// The histogram's count per bucket (its buckets are cumulative).
fn per_bucket(counts: &Counts) -> Option<Vec<f64>> {
    if counts.buckets.len() != crate::stats::BUCKETS_MS.len() + 1 {
        return None;
    }
    let mut below = 0u64;
    Some(
        counts
            .buckets
            .iter()
            .map(|&cumulative| {
                let n = cumulative.saturating_sub(below);
                below = below.max(cumulative);
                n as f64
            })
            .collect(),
    )
}

/// P(Z ≥ z) for a standard normal Z.
pub fn normal_upper(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The complementary error function (Numerical Recipes' Chebyshev fit, relative error
/// below 1.2e-7 everywhere).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms: ~15 significant digits).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// ln C(n, k).
fn ln_choose(n: u64, k: u64) -> f64 {
    if k > n {
        return f64::NEG_INFINITY;
    }
    ln_gamma(n as f64 + 1.0) - ln_gamma(k as f64 + 1.0) - ln_gamma((n - k) as f64 + 1.0)
}

/// Sums `term(x)` for x from `from` to `to` (terms in log space, unimodal in x), ending
/// early once past `mode` the terms no longer change the sum.
fn tail_sum(from: u64, to: u64, mode: f64, term: impl Fn(u64) -> f64) -> f64 {
    let mut sum = 0.0;
    let mut x = from;
    while x <= to {
        let t = term(x).exp();
        sum += t;
        if x as f64 > mode && t <= sum * 1e-17 {
            break;
        }
        x += 1;
    }
    sum.min(1.0)
}

/// P(X ≥ k) for X hypergeometric: `drawn` of `population`, `successes` of which are
/// successes. Fisher's exact test, one-sided.
fn fisher_upper(population: u64, successes: u64, drawn: u64, k: u64) -> f64 {
    let lo = k.max((drawn + successes).saturating_sub(population));
    let hi = successes.min(drawn);
    if lo > hi {
        return 0.0;
    }
    let denominator = ln_choose(population, drawn);
    let mode = (drawn + 1) as f64 * (successes + 1) as f64 / (population + 2) as f64;
    tail_sum(lo, hi, mode, |x| {
        ln_choose(successes, x) + ln_choose(population - successes, drawn - x) - denominator
    })
}

/// P(X ≥ k) for X binomial(n, p).
fn binomial_upper(n: u64, k: u64, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n || p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    // Below the mean the tail is most of the mass: 1 - P(X < k), summed downwards.
    let mean = n as f64 * p;
    if (k as f64) < mean {
        let below = tail_sum_down(k - 1, mean, |x| {
            ln_choose(n, x) + x as f64 * lp + (n - x) as f64 * lq
        });
        return (1.0 - below).clamp(0.0, 1.0);
    }
    tail_sum(k, n, mean, |x| {
        ln_choose(n, x) + x as f64 * lp + (n - x) as f64 * lq
    })
}

/// Sums `term(x)` for x from `from` down to 0, ending early once below `mode` the terms
/// no longer change the sum.
fn tail_sum_down(from: u64, mode: f64, term: impl Fn(u64) -> f64) -> f64 {
    let mut sum = 0.0;
    let mut x = from;
    loop {
        let t = term(x).exp();
        sum += t;
        if (x as f64) < mode && t <= sum * 1e-17 || x == 0 {
            break;
        }
        x -= 1;
    }
    sum.min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::BUCKETS_MS;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-300)
    }

    #[test]
    fn normal_and_gamma_match_known_values() {
        assert!(close(normal_upper(0.0), 0.5, 1e-7));
        assert!(close(normal_upper(1.959_964), 0.025, 1e-5));
        assert!(close(normal_upper(3.090_232), 0.001, 1e-5));
        assert!(close(normal_upper(-1.644_854), 0.95, 1e-6));
        assert!(ln_gamma(1.0).abs() < 1e-12);
        assert!(close(ln_gamma(10.0), (362_880f64).ln(), 1e-12));
        assert!(close(
            ln_gamma(0.5),
            std::f64::consts::PI.sqrt().ln(),
            1e-12
        ));
        assert!(close(ln_choose(52, 5), (2_598_960f64).ln(), 1e-12));
    }

    #[test]
    fn fisher_is_exact_on_small_tables() {
        // 1 error in 20 canary requests, none in 1000 stable: the error had a 20/1020
        // chance to land in the canary. Not evidence (a z-test would say p ~ 1e-12).
        let t = errors_above_stable(1, 20, 0, 1000).unwrap();
        assert_eq!(t.test, TestKind::Fisher);
        assert!(close(t.p_value, 20.0 / 1020.0, 1e-9), "{t:?}");
        // All 3 errors in the canary: C(20,3)/C(1020,3).
        let t = errors_above_stable(3, 20, 0, 1000).unwrap();
        let expected = (20.0 * 19.0 * 18.0) / (1020.0 * 1019.0 * 1018.0);
        assert!(close(t.p_value, expected, 1e-9), "{t:?}");
        // The lady tasting tea: 3 of 4 against 1 of 4, one-sided p = 17/70.
        let t = errors_above_stable(3, 4, 1, 4).unwrap();
        assert!(close(t.p_value, 17.0 / 70.0, 1e-9), "{t:?}");
        // No difference at all.
        assert!(errors_above_stable(0, 100, 0, 100).unwrap().p_value > 0.99);
        assert!(errors_above_stable(5, 100, 5, 100).unwrap().p_value > 0.5);
        // The step the canary's fast path is for: 20% against 0%, a few dozen requests.
        assert!(errors_above_stable(6, 30, 0, 60).unwrap().p_value < 0.001);
        assert_eq!(errors_above_stable(1, 0, 0, 10), None);
    }

    #[test]
    fn many_errors_use_the_z_test_and_agree_with_fisher_where_both_apply() {
        let z = errors_above_stable(1_300, 10_000, 1_000, 10_000).unwrap();
        assert_eq!(z.test, TestKind::TwoProportionZ);
        // 13% against 10%: z = 0.03 / sqrt(0.115 * 0.885 * 2e-4) = 6.649, p = 1.471e-11.
        assert!(close(z.p_value, 1.4710e-11, 1e-3), "{z:?}");
        let fisher = fisher_upper(20_000, 2_300, 10_000, 1_300);
        assert!(close(fisher, z.p_value, 0.5), "{fisher} vs {z:?}");
        assert!(
            errors_above_stable(1_000, 10_000, 1_300, 10_000)
                .unwrap()
                .p_value
                > 0.99
        );
    }

    #[test]
    fn binomial_tails_are_exact() {
        // P(X >= 2), n = 10, p = 0.1: 1 - 0.9^10 - 10 * 0.1 * 0.9^9.
        let expected = 1.0 - 0.9f64.powi(10) - 10.0 * 0.1 * 0.9f64.powi(9);
        assert!(close(binomial_upper(10, 2, 0.1), expected, 1e-9));
        // Summed from below when k is under the mean.
        let expected = 1.0 - 0.5f64.powi(10) * (1.0 + 10.0 + 45.0);
        assert!(close(binomial_upper(10, 3, 0.5), expected, 1e-9));
        assert_eq!(binomial_upper(10, 0, 0.2), 1.0);
        assert_eq!(binomial_upper(10, 1, 0.0), 0.0);
        // 4 of 20 over a 1% threshold.
        let t = errors_above_share(4, 20, 0.01).unwrap();
        assert!(close(t.p_value, 4.2621e-5, 1e-4), "{t:?}");
        // 2 of 100 over 1%: not evidence.
        assert!(errors_above_share(2, 100, 0.01).unwrap().p_value > 0.2);
        // Large n stays finite and exact: 1,100 of 100,000 over 1% (summed exactly in
        // double precision, 9.1178e-4; the normal approximation would say 7.4e-4).
        let t = errors_above_share(1_100, 100_000, 0.01).unwrap();
        assert!(close(t.p_value, 9.1178e-4, 1e-4), "{t:?}");
    }

    fn histogram(per_bucket: &[(usize, u64)]) -> Counts {
        let mut c = Counts::default();
        for &(bucket, n) in per_bucket {
            let ms = if bucket < BUCKETS_MS.len() {
                BUCKETS_MS[bucket]
            } else {
                1e9
            };
            for _ in 0..n {
                c.observe(200, Some(ms));
            }
        }
        c
    }

    #[test]
    fn mann_whitney_on_histograms() {
        let fast = histogram(&[(2, 50), (3, 50)]);
        let slow = histogram(&[(3, 50), (4, 50)]);
        let t = slower_than(&slow, &fast).unwrap();
        assert_eq!(t.test, TestKind::MannWhitneyU);
        assert!(t.p_value < 1e-6, "{t:?}");
        assert!(slower_than(&fast, &slow).unwrap().p_value > 0.99);
        // The same distribution: no evidence.
        let p = slower_than(&fast, &histogram(&[(2, 500), (3, 500)]))
            .unwrap()
            .p_value;
        assert!(p > 0.3, "{p}");
        // Everything in one bucket: every pair tied, no evidence.
        assert_eq!(
            slower_than(&histogram(&[(5, 10)]), &histogram(&[(5, 10)]))
                .unwrap()
                .p_value,
            1.0
        );
        // A textbook value: 3 vs 3 with no ties, canary all slower: U = 9, exact
        // p = 1/20; the normal approximation with continuity: z = (9 - 4.5 - 0.5) / 2.29.
        let canary = histogram(&[(6, 1), (7, 1), (8, 1)]);
        let stable = histogram(&[(1, 1), (2, 1), (3, 1)]);
        let p = slower_than(&canary, &stable).unwrap().p_value;
        assert!(close(p, normal_upper(4.0 / 5.25f64.sqrt()), 1e-9), "{p}");
        // No histogram (HAProxy's show stat): no test.
        let means = Counts {
            requests: 10,
            ..Counts::default()
        };
        assert_eq!(slower_than(&means, &fast), None);
    }

    #[test]
    fn p_values_read_well() {
        assert_eq!(p_text(0.0321), "p = 0.032");
        assert_eq!(p_text(0.00012), "p = 1.2e-4");
        assert_eq!(p_text(1e-30), "p < 1e-12");
    }
}
