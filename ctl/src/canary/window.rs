//! A step's observation window, without IO: how much of `--interval` has been observed
//! (paused time does not count), when the counts are due to be read again, and what a
//! verdict on them means at that point: fail at once, pass, or observe on (once more
//! for `--on-no-data wait`).

use std::time::Duration;

use disco::rollout::{OnNoData, Verdict};
use tokio::time::Instant;

use super::event::duration_text;

/// How often the counts are read and judged during the window.
const READ_EVERY: Duration = Duration::from_secs(1);

/// The observation of one step, fed the time by its caller.
#[derive(Debug, Clone)]
pub struct Window {
    /// `--interval`.
    interval: Duration,
    /// How long the step is observed: the interval, plus one more with `--on-no-data
    /// wait` once the first ended without enough requests.
    budget: Duration,
    /// Time observed so far (not counting pauses).
    observed: Duration,
    /// When [`Window::advance`] last counted.
    last: Instant,
    paused: bool,
    extended: bool,
    /// When the counts were last read.
    last_read: Option<Instant>,
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
            last_read: None,
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

    /// True when the counts are due to be read (a second after the last read, or
    /// never read); records `now` as the read.
    pub fn read_due(&mut self, now: Instant) -> bool {
        let due = self
            .last_read
            .is_none_or(|t| now.saturating_duration_since(t) >= READ_EVERY);
        if due {
            self.last_read = Some(now);
        }
        due
    }

    /// True when the whole window is observed and not paused: the final verdict is due.
    pub fn is_over(&self) -> bool {
        !self.paused && self.observed >= self.budget
    }

    /// The verdict on the counts so far: a failure ends the step at once; a pass ends
    /// it only in the extra interval (the requests it waited for came).
    pub fn midway(&self, verdict: Verdict) -> Decision {
        match verdict {
            Verdict::Fail(why) => Decision::Fail(why),
            Verdict::Pass if self.extended => Decision::Pass,
            _ => Decision::Observe,
        }
    }

    /// The verdict at the end of the window; too few requests follow `on_no_data`.
    pub fn at_end(&mut self, verdict: Verdict, on_no_data: OnNoData) -> Decision {
        match verdict {
            Verdict::Pass => Decision::Pass,
            Verdict::Fail(why) => Decision::Fail(why),
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
    async fn counts_are_read_at_once_then_once_a_second() {
        let mut window = Window::new(10 * SECOND, false, Instant::now());
        assert!(
            window.read_due(Instant::now()),
            "the first read is due at once"
        );
        assert!(!window.read_due(Instant::now()));
        wait(&mut window, Duration::from_millis(500)).await;
        assert!(!window.read_due(Instant::now()));
        wait(&mut window, Duration::from_millis(500)).await;
        assert!(window.read_due(Instant::now()));
        assert!(!window.read_due(Instant::now()));
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
            window.at_end(no_data(), OnNoData::Wait),
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
            window.at_end(no_data(), OnNoData::Wait),
            Decision::Fail("no data after 20s: 3 of 20 requests".into())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_data_follows_on_no_data() {
        let mut window = Window::new(10 * SECOND, false, Instant::now());
        wait(&mut window, 10 * SECOND).await;
        let no_data = || Verdict::NoData("none".into());
        assert_eq!(
            window.at_end(no_data(), OnNoData::Pass),
            Decision::PassWithoutData("none".into())
        );
        assert_eq!(
            window.at_end(no_data(), OnNoData::Fail),
            Decision::Fail("no data: none".into())
        );
        assert_eq!(window.at_end(Verdict::Pass, OnNoData::Fail), Decision::Pass);
        assert_eq!(
            window.at_end(Verdict::Fail("slow".into()), OnNoData::Pass),
            Decision::Fail("slow".into())
        );
        assert!(!window.is_extended());
    }
}
