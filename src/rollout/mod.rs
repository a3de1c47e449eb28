//! Automated canaries (`discoctl canary`), the pure part: the steps and their parsing
//! (`steps`), the state recorded at `<prefix>/apps/<app>/rollout` ([`Rollout`], in
//! `record`), each step planned from the routing state ([`plan_step`]) and the way back
//! to the state before the canary ([`plan_restore`]) (both in `planning`), and the
//! analysis of a step's traffic counts ([`judge`], in `analysis`, with the statistical
//! tests of `significance`).
//! discoctl does the IO: transactions, waiting for the agents, reading the statistics.
//!
//! Steps are **targets**, not increments: `1,2,all` means one slot on the version, then
//! two, then every slot. So applying a step twice (a resumed canary re-applies the step
//! it was in) changes nothing the second time.

mod analysis;
#[cfg(test)]
mod fixtures;
mod planning;
mod record;
pub mod significance;
mod steps;

pub use analysis::{
    judge, Analysis, Check, Judgement, Look, Looks, Metric, Observation, OnInconclusive, OnNoData,
    Outcome, Verdict, EARLY_ALPHA,
};
pub use planning::{plan_restore, plan_step, preflight, restore_warnings, StepChange};
pub use record::{Original, Rollout, RolloutState};
pub use steps::{parse_steps, Step};
