//! A step's observation window, without IO: how much of `--interval` has been observed
//! (paused time does not count), and what a verdict on the counts means at that point:
//! fail at once, pass, observe on (once more for `--on-no-data wait` and
//! `--on-inconclusive extend`), or pause for an operator.

use std::time::Duration;

use disco::rollout::{OnInconclusive, OnNoData, Verdict};
use tokio::time::Instant;

use super::event::duration_text;

/// The observation of one step, fed the time by its caller.
#[derive(Debug, Clone)]
pub struct Window {
    /// `--interval`.
    interval: Duration,
    /// How long the step is observed: the interval, plus one more with `--on-no-data
    /// wait` once the first ended without enough requests (or `--on-inconclusive
    /// extend` without a clear verdict), plus one more per resume after a pause for an
    /// inconclusive verdict.
    budget: Duration,
    /// Time observed so far (not counting pauses).
    observed: Duration,
    /// When [`Window::advance`] last counted.
    last: Instant,
    paused: bool,
    extended: bool,
}

/// What to do after judging the counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go on observing.
    Observe,
    /// The step passed.
    Pass,
    /// Too few requests, and `--on-no-data pass`: the step passes; why.
    PassWithoutData(String),
    /// The step failed: why.
    Fail(String),
    /// Too few requests, and `--on-no-data wait`: the window grew by one interval; why.
    Extend(String),
    /// Inconclusive, and `--on-inconclusive extend`: the window grew by one interval;
    /// why.
    ExtendInconclusive(String),
    /// Inconclusive after the extra interval, or with `--on-inconclusive pause`: pause
    /// for an operator (a resume observes one more interval, [`Window::grant`]); why.
    PauseInconclusive(String),
}

impl Window {
    /// A window of `interval` starting `now`, paused or not.
    pub fn new(interval: Duration, paused: bool, now: Instant) -> Window {
        Window {
            interval,
            budget: interval,
            observed: Duration::ZERO,
            last: now,
            paused,
            extended: false,
        }
    }

    /// Counts the time since the last call as observed, unless paused.
    pub fn advance(&mut self, now: Instant) {
        if !self.paused {
            self.observed += now.saturating_duration_since(self.last);
        }
        self.last = now;
    }

    /// Stops counting time; false if already paused.
    pub fn pause(&mut self) -> bool {
        !std::mem::replace(&mut self.paused, true)
    }

    /// Counts time again; false if not paused.
    pub fn resume(&mut self) -> bool {
        std::mem::replace(&mut self.paused, false)
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Observing the extra interval of `--on-no-data wait`.
    pub fn is_extended(&self) -> bool {
        self.extended
    }

    /// Time observed so far.
    pub fn elapsed(&self) -> Duration {
        self.observed
    }

    /// Time left to observe.
    pub fn remaining(&self) -> Duration {
        self.budget.saturating_sub(self.observed)
    }

    /// One more interval to observe (a resume after a pause for an inconclusive
    /// verdict); in it, a pass ends the step as soon as it comes.
    pub fn grant(&mut self) {
        self.extended = true;
        self.budget = self.observed.max(self.budget) + self.interval;
    }

    /// True when the whole window is observed and not paused: the final verdict is due.
    pub fn is_over(&self) -> bool {
        !self.paused && self.observed >= self.budget
    }

    /// The verdict on the counts so far (judged at the strict interim level): a failure
    /// ends the step at once; a pass ends it only in an extra interval (the requests or
    /// the evidence it waited for came).
    pub fn midway(&self, verdict: Verdict) -> Decision {
        match verdict {
            Verdict::Fail(why) => Decision::Fail(why),
            Verdict::Pass if self.extended => Decision::Pass,
            _ => Decision::Observe,
        }
    }

    /// The verdict at the end of the window; too few requests follow `on_no_data`, an
    /// inconclusive verdict `on_inconclusive`.
    pub fn at_end(
        &mut self,
        verdict: Verdict,
        on_no_data: OnNoData,
        on_inconclusive: OnInconclusive,
    ) -> Decision {
        match verdict {
            Verdict::Pass => Decision::Pass,
            Verdict::Fail(why) => Decision::Fail(why),
            Verdict::Inconclusive(why) => match on_inconclusive {
                OnInconclusive::Extend if !self.extended => {
                    self.extended = true;
                    self.budget += self.interval;
                    Decision::ExtendInconclusive(why)
                }
                _ => Decision::PauseInconclusive(why),
            },
            Verdict::NoData(why) => match on_no_data {
                OnNoData::Pass => Decision::PassWithoutData(why),
                OnNoData::Fail => Decision::Fail(format!("no data: {why}")),
                OnNoData::Wait if !self.extended => {
                    self.extended = true;
                    self.budget += self.interval;
                    Decision::Extend(why)
                }
                OnNoData::Wait => Decision::Fail(format!(
                    "no data after {}: {why}",
                    duration_text(self.budget)
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    /// Advances the paused clock by `d` and the window with it.
    async fn wait(window: &mut Window, d: Duration) {
        tokio::time::advance(d).await;
        window.advance(Instant::now());
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_is_over_after_the_interval_observed() {
        let mut window = Window::new(10 * SECOND, false, Instant::now());
        wait(&mut window, 4 * SECOND).await;
        assert_eq!(window.elapsed(), 4 * SECOND);
        assert_eq!(window.remaining(), 6 * SECOND);
        assert!(!window.is_over());
        wait(&mut window, 6 * SECOND).await;
        assert!(window.is_over());
        assert_eq!(window.remaining(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn paused_time_does_not_count() {
        let mut window = Window::new(10 * SECOND, false, Instant::now());
        wait(&mut window, 3 * SECOND).await;
        assert!(window.pause());
        assert!(!window.pause(), "already paused");
        wait(&mut window, 60 * SECOND).await;
        assert_eq!(window.elapsed(), 3 * SECOND);
        wait(&mut window, 60 * SECOND).await;
        assert!(
            !window.is_over(),
            "over only when observed, and never while paused"
        );
        assert!(window.resume());
        assert!(!window.resume(), "already running");
        wait(&mut window, 7 * SECOND).await;
        assert_eq!(window.elapsed(), 10 * SECOND);
        assert!(window.is_over());
        window.pause();
        assert!(!window.is_over(), "paused at the end: the verdict waits");
    }

    #[tokio::test(start_paused = true)]
    async fn a_window_started_paused_counts_from_the_resume() {
        let mut window = Window::new(5 * SECOND, true, Instant::now());
        wait(&mut window, 30 * SECOND).await;
        assert_eq!(window.elapsed(), Duration::ZERO);
        window.resume();
        wait(&mut window, 5 * SECOND).await;
        assert!(window.is_over());
    }

    #[tokio::test(start_paused = true)]
    async fn midway_a_failure_ends_the_step_and_a_pass_waits_for_the_end() {
        let mut window = Window::new(10 * SECOND, false, Instant::now());
        wait(&mut window, 2 * SECOND).await;
        assert_eq!(window.midway(Verdict::Pass), Decision::Observe);
        assert_eq!(
            window.midway(Verdict::NoData("3 requests".into())),
            Decision::Observe
        );
        assert_eq!(
            window.midway(Verdict::Fail("5xx".into())),
            Decision::Fail("5xx".into())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_data_with_wait_extends_the_window_once_then_fails() {
        let mut window = Window::new(10 * SECOND, false, Instant::now());
        wait(&mut window, 10 * SECOND).await;
        assert!(window.is_over());
        let no_data = || Verdict::NoData("3 of 20 requests".into());
        assert_eq!(
            window.at_end(no_data(), OnNoData::Wait, OnInconclusive::Extend),
            Decision::Extend("3 of 20 requests".into())
        );
        assert!(window.is_extended() && !window.is_over());
        assert_eq!(window.remaining(), 10 * SECOND);
        wait(&mut window, 4 * SECOND).await;
        assert_eq!(
            window.midway(Verdict::Pass),
            Decision::Pass,
            "in the extra interval, enough requests end the step"
        );
        wait(&mut window, 6 * SECOND).await;
        assert!(window.is_over());
        assert_eq!(
            window.at_end(no_data(), OnNoData::Wait, OnInconclusive::Extend),
            Decision::Fail("no data after 20s: 3 of 20 requests".into())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_data_follows_on_no_data() {
        let mut window = Window::new(10 * SECOND, false, Instant::now());
        wait(&mut window, 10 * SECOND).await;
        let no_data = || Verdict::NoData("none".into());
        assert_eq!(
            window.at_end(no_data(), OnNoData::Pass, OnInconclusive::Extend),
            Decision::PassWithoutData("none".into())
        );
        assert_eq!(
            window.at_end(no_data(), OnNoData::Fail, OnInconclusive::Extend),
            Decision::Fail("no data: none".into())
        );
        assert_eq!(
            window.at_end(Verdict::Pass, OnNoData::Fail, OnInconclusive::Extend),
            Decision::Pass
        );
        assert_eq!(
            window.at_end(
                Verdict::Fail("slow".into()),
                OnNoData::Pass,
                OnInconclusive::Extend
            ),
            Decision::Fail("slow".into())
        );
        assert!(!window.is_extended());
    }

    #[tokio::test(start_paused = true)]
    async fn inconclusive_extends_once_then_pauses_and_a_resume_grants_an_interval() {
        let mut window = Window::new(10 * SECOND, false, Instant::now());
        let unsure = || Verdict::Inconclusive("3 of 100 against 1 of 100".into());
        assert_eq!(window.midway(unsure()), Decision::Observe);
        wait(&mut window, 10 * SECOND).await;
        assert_eq!(
            window.at_end(unsure(), OnNoData::Wait, OnInconclusive::Extend),
            Decision::ExtendInconclusive("3 of 100 against 1 of 100".into())
        );
        assert_eq!(window.remaining(), 10 * SECOND);
        wait(&mut window, 10 * SECOND).await;
        assert!(window.is_over());
        assert_eq!(
            window.at_end(unsure(), OnNoData::Wait, OnInconclusive::Extend),
            Decision::PauseInconclusive("3 of 100 against 1 of 100".into())
        );
        // Paused for an operator; the time paused does not count; a resume gives one
        // more interval, in which a pass ends the step.
        window.pause();
        wait(&mut window, 60 * SECOND).await;
        window.resume();
        window.grant();
        assert!(!window.is_over());
        assert_eq!(window.remaining(), 10 * SECOND);
        wait(&mut window, 3 * SECOND).await;
        assert_eq!(window.midway(Verdict::Pass), Decision::Pass);
        // --on-inconclusive pause: at once.
        let mut window = Window::new(10 * SECOND, false, Instant::now());
        wait(&mut window, 10 * SECOND).await;
        assert_eq!(
            window.at_end(unsure(), OnNoData::Wait, OnInconclusive::Pause),
            Decision::PauseInconclusive("3 of 100 against 1 of 100".into())
        );
    }
}
