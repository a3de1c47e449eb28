//! The state of a canary as recorded in etcd at `<prefix>/apps/<app>/rollout`: where it
//! is, its settings, and what a rollback restores.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::analysis::Analysis;
use super::steps::Step;
use crate::model::{Match, Policy};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::fixtures::{rollout, seed};

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
