//! A running canary paused: by `discoctl pause` from another terminal, or by itself
//! before the final step of a `--confirm` canary; it waits for `resume` or `abort`.

use std::time::Duration;

use disco::change::ChangeSet;
use disco::rollout::RolloutState;

use super::event::Event;
use super::runner::Runner;
use crate::exit::Result;

impl Runner<'_> {
    pub(super) fn emit_paused(&mut self) {
        self.events.emit(Event::Paused {
            step: self.rollout.step,
            of: self.n(),
            by: self.rollout.changed_by.clone(),
            reason: self.rollout.reason.clone(),
        });
    }

    pub(super) fn emit_resumed(&mut self) {
        self.events.emit(Event::Resumed {
            step: self.rollout.step,
            of: self.n(),
            by: self.rollout.changed_by.clone(),
        });
    }

    /// Waits while the canary is paused. `Some(reason)` to roll back (aborted or
    /// interrupted), `None` to go on.
    pub(super) async fn wait_while_paused(&mut self) -> Result<Option<String>> {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                signal = self.interrupt.fired() => {
                    return Ok(Some(format!("interrupted by {signal} while paused")));
                }
            }
            self.check_lock()?;
            if self.refresh().await? {
                match self.rollout.state {
                    RolloutState::Paused => {}
                    RolloutState::Running => {
                        self.emit_resumed();
                        return Ok(None);
                    }
                    _ => return Ok(None),
                }
            }
        }
    }

    /// Pauses before the final step until `discoctl resume`. True once paused.
    pub(super) async fn ask_confirmation(&mut self) -> Result<bool> {
        let n = self.n();
        let description = self.describe(n);
        let mut next = self.rollout.clone();
        next.state = RolloutState::Paused;
        next.reason = Some(format!(
            "awaiting confirmation of the final step ({description}): `discoctl resume {}` confirms, `discoctl abort {}` rolls back",
            self.app, self.app
        ));
        next.changed_by = None;
        if self.commit(ChangeSet::default(), next).await?.is_none() {
            return Ok(false);
        }
        self.events.emit(Event::AwaitingConfirmation {
            step: n,
            of: n,
            description,
        });
        Ok(true)
    }
}
