//! Observing a step: the traffic statistics the agents publish are read and judged
//! every second over the step's [`Window`], while `pause`, `resume` and `abort` from
//! other terminals are followed and progress is shown.

use std::time::Duration;

use disco::rollout::{judge, Observation, RolloutState};
use disco::stats::{self, AppStats};
use tokio::time::Instant;

use super::event::{Event, NoDataThen, VersionCounts};
use super::runner::Runner;
use super::window::{Decision, Window};
use crate::exit::Result;

/// How a step's observation ended.
pub(super) enum Outcome {
    /// The step passed.
    Passed(Observation),
    /// The step failed its analysis: why.
    Failed(String),
    /// `--dry-run-analysis`: the step failed its analysis (why, and how far into the
    /// step), and was observed to its end anyway.
    WouldFail {
        why: String,
        after: Duration,
        obs: Observation,
    },
    /// Aborted or interrupted: why.
    Stopped(String),
}

impl Runner<'_> {
    /// Observes step `number` for the interval (paused time does not count), judging
    /// the counts so far every second: over a threshold (with enough requests) fails at
    /// once; the verdict at the end decides, with `--on-no-data` for too few requests.
    /// With `--dry-run-analysis` a failure is noted and the step observed to its end.
    pub(super) async fn observe(&mut self, number: usize) -> Result<Outcome> {
        let n = self.n();
        let version = self.rollout.version.clone();
        let analysis = self.rollout.analysis.clone();
        let before = self.read_stats().await?;
        if before.is_empty() && number == 1 {
            eprintln!(
                "note: no LB agent publishes traffic statistics for {} (HAProxy stats_socket, nginx access_log): steps will have no data (--on-no-data {})",
                self.app,
                serde_json::to_value(analysis.on_no_data)?.as_str().unwrap_or("?")
            );
        }
        let mut window = Window::new(
            Duration::from_millis(analysis.interval_ms),
            self.rollout.state == RolloutState::Paused,
            Instant::now(),
        );
        let mut obs = Observation::default();
        // --dry-run-analysis: the first failure, and how far into the step.
        let mut failed: Option<(String, Duration)> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                signal = self.interrupt.fired() => {
                    return Ok(Outcome::Stopped(format!("interrupted by {signal} during step {number}/{n}")));
                }
            }
            self.check_lock()?;
            window.advance(Instant::now());
            if let Some(stopped) = self.follow(&mut window, number).await? {
                return Ok(stopped);
            }
            if window.read_due(Instant::now()) {
                match self.read_stats().await {
                    Ok(now) => obs = Observation::split(&stats::between(&before, &now), &version),
                    Err(e) => {
                        eprintln!("warning: reading traffic statistics failed: {:#}", e.error)
                    }
                }
                match window.midway(judge(&obs, &analysis, &version)) {
                    Decision::Fail(why) if analysis.dry_run => {
                        failed.get_or_insert((why, window.elapsed()));
                    }
                    Decision::Fail(why) => return Ok(Outcome::Failed(why)),
                    Decision::Pass => return Ok(Outcome::Passed(obs)),
                    _ => {}
                }
            }
            let progress = self.observation(number, &window, &obs);
            self.events.progress(progress);
            if !window.is_over() {
                continue;
            }
            let end = self.read_fresh_stats().await?;
            obs = Observation::split(&stats::between(&before, &end), &version);
            let decision = window.at_end(judge(&obs, &analysis, &version), analysis.on_no_data);
            if analysis.dry_run {
                if let Decision::Fail(why) = &decision {
                    failed.get_or_insert((why.clone(), window.elapsed()));
                }
                if let Some((why, after)) = failed {
                    return Ok(Outcome::WouldFail { why, after, obs });
                }
            }
            match decision {
                Decision::Pass => return Ok(Outcome::Passed(obs)),
                Decision::Fail(why) => return Ok(Outcome::Failed(why)),
                Decision::PassWithoutData(reason) => {
                    self.events.emit(Event::NoData {
                        step: number,
                        of: n,
                        reason,
                        then: NoDataThen::Pass,
                    });
                    return Ok(Outcome::Passed(obs));
                }
                Decision::Extend(reason) => self.events.emit(Event::NoData {
                    step: number,
                    of: n,
                    reason,
                    then: NoDataThen::Wait {
                        extended_ms: analysis.interval_ms,
                    },
                }),
                Decision::Observe => {}
            }
        }
    }

    /// Follows what `pause`, `resume` and `abort` changed in the record during step
    /// `number`: the window stops or counts again; an abort ends the observation.
    async fn follow(&mut self, window: &mut Window, number: usize) -> Result<Option<Outcome>> {
        if !self.refresh().await? {
            return Ok(None);
        }
        match self.rollout.state {
            RolloutState::Aborting => {
                return Ok(Some(Outcome::Stopped(format!(
                    "{} during step {number}/{}",
                    self.abort_reason(),
                    self.n()
                ))))
            }
            RolloutState::Paused if window.pause() => self.emit_paused(),
            RolloutState::Running if window.resume() => self.emit_resumed(),
            _ => {}
        }
        Ok(None)
    }

    /// The progress of step `number`: its window and the counts so far.
    fn observation(&self, number: usize, window: &Window, obs: &Observation) -> Event {
        Event::Observation {
            step: number,
            of: self.n(),
            elapsed_ms: window.elapsed().as_millis() as u64,
            remaining_ms: window.remaining().as_millis() as u64,
            paused: window.is_paused(),
            canary: VersionCounts::new(&self.rollout.version, &obs.canary),
            stable: VersionCounts::new("stable", &obs.stable),
            description: self.describe(number),
            extended: window.is_extended(),
        }
    }

    async fn read_stats(&self) -> Result<Vec<AppStats>> {
        Ok(stats::read(&self.ctx.store, &self.ctx.keyspace, &self.app).await?)
    }

    /// The statistics once every agent has published a record written after this call
    /// (or dropped out), so that the last requests of the interval are counted; at most
    /// two publishing intervals plus a second.
    async fn read_fresh_stats(&self) -> Result<Vec<AppStats>> {
        let first = self.read_stats().await?;
        let longest = first.iter().map(|r| r.interval_ms).max().unwrap_or(0);
        let deadline = Instant::now() + Duration::from_millis(2 * longest + 1000);
        loop {
            let now = self.read_stats().await?;
            let fresh = first.iter().all(|old| {
                now.iter()
                    .find(|r| r.agent == old.agent)
                    .is_none_or(|r| r.at != old.at || r.started_at != old.started_at)
            });
            if fresh || Instant::now() >= deadline {
                return Ok(now);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
