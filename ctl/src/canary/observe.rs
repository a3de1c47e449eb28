//! Observing a step: the traffic statistics the agents publish are watched and judged
//! at every update over the step's [`Window`] (so that a canary plainly worse than the
//! stable versions fails within the agents' publishing interval: during a canary they
//! publish every `canary_stats_interval`), while `pause`, `resume` and `abort` from
//! other terminals are followed and progress is shown.

use std::collections::BTreeMap;
use std::time::Duration;

use disco::rollout::{judge, Judgement, Look, Looks, Observation, RolloutState};
use disco::stats::{self, AppStats};
use disco::store::{WatchSettings, WatchUpdate};
use disco::Change;
use tokio::time::Instant;

use super::event::{Event, InconclusiveThen, NoDataThen, VersionCounts};
use super::runner::Runner;
use super::window::{Decision, Window};
use crate::exit::{self, Failure, Result};

/// How a step's observation ended.
pub(super) enum Outcome {
    /// The step passed: its counts, and the judgement (none when passed without
    /// data).
    Passed(Observation, Option<Judgement>),
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

/// The agents' statistics records of one app as an etcd watch delivers them, each
/// parsed once when it is written: key → record (a record that does not parse, or
/// whose key and content disagree, is left out, as `stats::parse_records` does).
#[derive(Default)]
struct Records(BTreeMap<String, AppStats>);

/// A step's statistics: the records before its transaction, and the watch of them
/// from then on. Opened before the step is committed, so that the requests during the
/// wait for the agents count, and the updates that came meanwhile are judged as soon
/// as the observation starts.
pub(super) struct Feed {
    before: Vec<AppStats>,
    watch: tokio::sync::mpsc::Receiver<WatchUpdate>,
}

impl Records {
    /// Folds `update` in; true if a record changed.
    fn take(&mut self, keyspace: &disco::Keyspace, update: WatchUpdate) -> bool {
        match update {
            WatchUpdate::Initial { kvs, .. } | WatchUpdate::Resync { kvs, .. } => {
                self.0.clear();
                for (key, value) in kvs {
                    self.put(keyspace, key, &value);
                }
                true
            }
            WatchUpdate::Changes { changes, .. } => {
                for change in changes {
                    match change {
                        Change::Put { key, value } => self.put(keyspace, key, &value),
                        Change::Delete { key, .. } => {
                            self.0.remove(&key);
                        }
                    }
                }
                true
            }
            WatchUpdate::Disconnected { .. } | WatchUpdate::Live => false,
        }
    }

    fn put(&mut self, keyspace: &disco::Keyspace, key: String, value: &[u8]) {
        match stats::parse_records(keyspace, [(key.as_str(), value)]).pop() {
            Some(record) => self.0.insert(key, record),
            None => self.0.remove(&key),
        };
    }

    fn current(&self) -> Vec<AppStats> {
        self.0.values().cloned().collect()
    }
}

impl Runner<'_> {
    /// Reads the statistics as they are and starts watching them: call before
    /// committing a step.
    pub(super) async fn open_feed(&self) -> Result<Feed> {
        let watch = self.ctx.store.watch(
            &self.ctx.keyspace.stats(&self.app),
            0,
            WatchSettings::default(),
        );
        let before = self.read_stats().await?;
        Ok(Feed { before, watch })
    }

    /// Observes step `number` for the interval (paused time does not count), judging
    /// the counts so far as the agents' records update (whenever the canary's requests
    /// grew by a tenth, [`Looks`]), at the strict interim level: a canary worse than the
    /// stable versions beyond doubt fails at once. The
    /// verdict at the end decides, with `--on-no-data` for too few requests and
    /// `--on-inconclusive` for a verdict that is not clear. With `--dry-run-analysis`
    /// a failure is noted and the step observed to its end.
    pub(super) async fn observe(&mut self, number: usize, feed: Feed) -> Result<Outcome> {
        let n = self.n();
        let version = self.rollout.version.clone();
        let analysis = self.rollout.analysis.clone();
        let Feed {
            before,
            watch: mut feed,
        } = feed;
        if before.is_empty() && number == 1 {
            eprintln!(
                "note: no LB agent publishes traffic statistics for {} (HAProxy stats_socket or log_socket, nginx access_log): steps will have no data (--on-no-data {})",
                self.app,
                serde_json::to_value(analysis.on_no_data)?.as_str().unwrap_or("?")
            );
        }
        let mut records = Records::default();
        let mut window = Window::new(
            Duration::from_millis(analysis.interval_ms),
            self.rollout.state == RolloutState::Paused,
            Instant::now(),
        );
        let mut obs = Observation::default();
        // --dry-run-analysis: the first failure, and how far into the step.
        let mut failed: Option<(String, Duration)> = None;
        // Paused here for an inconclusive verdict: a resume grants one more interval.
        let mut awaiting_operator = false;
        let mut looks = Looks::default();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut ticked = false;
            let mut fresh = false;
            tokio::select! {
                _ = tick.tick() => ticked = true,
                update = feed.recv() => {
                    let Some(update) = update else {
                        return Err(Failure::new(exit::ERROR, anyhow::anyhow!("the watch of the traffic statistics ended")));
                    };
                    fresh = records.take(&self.ctx.keyspace, update);
                    while let Ok(update) = feed.try_recv() {
                        fresh |= records.take(&self.ctx.keyspace, update);
                    }
                }
                signal = self.interrupt.fired() => {
                    return Ok(Outcome::Stopped(format!("interrupted by {signal} during step {number}/{n}")));
                }
            }
            self.check_lock()?;
            window.advance(Instant::now());
            if ticked {
                let was_paused = window.is_paused();
                if let Some(stopped) = self.follow(&mut window, number).await? {
                    return Ok(stopped);
                }
                if was_paused && !window.is_paused() && std::mem::take(&mut awaiting_operator) {
                    window.grant();
                }
            }
            if fresh {
                obs = Observation::split(&stats::between(&before, &records.current()), &version);
            }
            if fresh && looks.due(obs.canary.requests) {
                let judged = judge(&obs, &analysis, &version, Look::Interim);
                match window.midway(judged.verdict.clone()) {
                    Decision::Fail(why) if analysis.dry_run => {
                        failed.get_or_insert((why, window.elapsed()));
                    }
                    Decision::Fail(why) => return Ok(Outcome::Failed(why)),
                    Decision::Pass => return Ok(Outcome::Passed(obs, Some(judged))),
                    _ => {}
                }
            }
            if ticked {
                let progress = self.observation(number, &window, &obs);
                self.events.progress(progress);
            }
            if !window.is_over() {
                continue;
            }
            let end = self.read_fresh_stats().await?;
            obs = Observation::split(&stats::between(&before, &end), &version);
            let judged = judge(&obs, &analysis, &version, Look::Final);
            let decision = window.at_end(
                judged.verdict.clone(),
                analysis.on_no_data,
                analysis.on_inconclusive,
            );
            if analysis.dry_run {
                if let Decision::Fail(why) = &decision {
                    failed.get_or_insert((why.clone(), window.elapsed()));
                }
                if let Some((why, after)) = failed {
                    return Ok(Outcome::WouldFail { why, after, obs });
                }
            }
            match decision {
                Decision::Pass => return Ok(Outcome::Passed(obs, Some(judged))),
                Decision::Fail(why) => return Ok(Outcome::Failed(why)),
                Decision::PassWithoutData(reason) => {
                    self.events.emit(Event::NoData {
                        step: number,
                        of: n,
                        reason,
                        then: NoDataThen::Pass,
                    });
                    return Ok(Outcome::Passed(obs, None));
                }
                Decision::Extend(reason) => self.events.emit(Event::NoData {
                    step: number,
                    of: n,
                    reason,
                    then: NoDataThen::Wait {
                        extended_ms: analysis.interval_ms,
                    },
                }),
                Decision::ExtendInconclusive(reason) => self.events.emit(Event::Inconclusive {
                    step: number,
                    of: n,
                    reason,
                    then: InconclusiveThen::Extend {
                        extended_ms: analysis.interval_ms,
                    },
                }),
                Decision::PauseInconclusive(reason) if analysis.dry_run => {
                    self.events.emit(Event::Inconclusive {
                        step: number,
                        of: n,
                        reason,
                        then: InconclusiveThen::Continue,
                    });
                    return Ok(Outcome::Passed(obs, Some(judged)));
                }
                Decision::PauseInconclusive(reason) => {
                    self.events.emit(Event::Inconclusive {
                        step: number,
                        of: n,
                        reason: reason.clone(),
                        then: InconclusiveThen::Pause,
                    });
                    let why = format!(
                        "step {number}/{n} is inconclusive: {reason}; `discoctl resume {app}` observes one more interval, `discoctl abort {app}` rolls back",
                        app = self.app
                    );
                    window.pause();
                    // On a conflict (an operator acted first) the record says what
                    // follows, and `follow` takes it up.
                    if self.pause_for(why, "analysis").await? {
                        awaiting_operator = true;
                    } else {
                        window.grant();
                        window.resume();
                    }
                }
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
