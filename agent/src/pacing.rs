//! When the LB role applies again without a new change: a reload that would come sooner
//! than `max_delay` after the target's last one is deferred until then
//! ([`ReloadSpacing`]), and a failed apply is tried again after 1 s, doubling up to 30 s
//! ([`Retries`]). Pure: the time is a parameter.

use std::time::Duration;

use tokio::time::Instant;

/// The spacing of one target's reloads (`max_delay`).
#[derive(Debug, Default, Clone, Copy)]
pub struct ReloadSpacing {
    /// When the last reload started.
    last_reload_at: Option<Instant>,
}

impl ReloadSpacing {
    /// None: a reload may start at `now`; else the instant it may start, `max_delay`
    /// after the last one started.
    pub fn deferred_until(&self, now: Instant, max_delay: Duration) -> Option<Instant> {
        self.last_reload_at
            .map(|at| at + max_delay)
            .filter(|until| *until > now)
    }

    /// Notes that a reload starts at `at`.
    pub fn started(&mut self, at: Instant) {
        self.last_reload_at = Some(at);
    }
}

/// The applies the LB role makes on its own: deferred reloads and retries of failures.
#[derive(Debug, Default)]
pub struct Retries {
    /// Applies that failed in a row (reset by one that succeeds): spaces their retries.
    failures: u32,
}

impl Retries {
    /// After an apply that ended at `now`: when to apply again without waiting for a
    /// change. At the earliest deferred reload (`deferred`); and after a failure no
    /// later than its backoff ([`retry_after`]), because a reload refused for a passing
    /// cause (a port still held) would otherwise leave the proxy behind until the next
    /// change. None: at the next change.
    pub fn after_apply(
        &mut self,
        now: Instant,
        failed: bool,
        deferred: impl IntoIterator<Item = Instant>,
    ) -> Option<Instant> {
        let deferred = deferred.into_iter().min();
        if !failed {
            self.failures = 0;
            return deferred;
        }
        self.failures = self.failures.saturating_add(1);
        let again = now + retry_after(self.failures);
        Some(deferred.map_or(again, |at| at.min(again)))
    }
}

/// How long after its `failures`-th failure in a row an apply is tried again.
fn retry_after(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(5);
    (Duration::from_secs(1) * (1 << doublings)).min(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_apply_is_retried_after_a_doubling_delay_up_to_30s() {
        let delays: Vec<u64> = (1..=8).map(|n| retry_after(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_sooner_than_max_delay_after_the_last_waits_for_it() {
        let max_delay = Duration::from_secs(1);
        let mut spacing = ReloadSpacing::default();
        assert_eq!(
            spacing.deferred_until(Instant::now(), max_delay),
            None,
            "none yet"
        );
        let first = Instant::now();
        spacing.started(first);
        tokio::time::advance(Duration::from_millis(300)).await;
        assert_eq!(
            spacing.deferred_until(Instant::now(), max_delay),
            Some(first + max_delay)
        );
        tokio::time::advance(Duration::from_millis(700)).await;
        assert_eq!(spacing.deferred_until(Instant::now(), max_delay), None);
        // No max_delay: never deferred, even right after a reload.
        spacing.started(Instant::now());
        assert_eq!(spacing.deferred_until(Instant::now(), Duration::ZERO), None);
    }

    /// A change every 100 ms for 3 s with `max_delay = 1s`: a reload at once, then one
    /// a second (each when the deferral runs out), not thirty.
    #[tokio::test(start_paused = true)]
    async fn a_stream_of_changes_reloads_once_per_max_delay() {
        let max_delay = Duration::from_secs(1);
        let start = Instant::now();
        let mut spacing = ReloadSpacing::default();
        let mut retries = Retries::default();
        let mut retry_at: Option<Instant> = None;
        let mut reloads = Vec::new();
        let mut next_change = start;
        // Bounded: deferring a reload to the instant it is asked at would spin.
        for _ in 0..100 {
            if next_change > start + Duration::from_secs(3) {
                break;
            }
            // The LB loop wakes at the next change or when a deferred reload is due.
            let wake = retry_at.map_or(next_change, |at| at.min(next_change));
            tokio::time::sleep_until(wake).await;
            let now = Instant::now();
            if now == next_change {
                next_change += Duration::from_millis(100);
            }
            let deferred = spacing.deferred_until(now, max_delay);
            if deferred.is_none() {
                spacing.started(now);
                reloads.push(now - start);
            }
            retry_at = retries.after_apply(now, false, deferred);
        }
        assert!(
            next_change > start + Duration::from_secs(3),
            "stuck at {:?}",
            Instant::now() - start
        );
        let secs: Vec<u64> = reloads.iter().map(|d| d.as_secs()).collect();
        assert_eq!(secs, [0, 1, 2, 3]);
        assert!(reloads.iter().all(|d| d.subsec_nanos() == 0), "{reloads:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn retries_come_at_the_earliest_of_a_deferred_reload_and_the_backoff() {
        let mut retries = Retries::default();
        let now = Instant::now();
        assert_eq!(retries.after_apply(now, false, []), None, "nothing to do");
        assert_eq!(
            retries.after_apply(now, true, []),
            Some(now + Duration::from_secs(1))
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        let now = Instant::now();
        assert_eq!(
            retries.after_apply(now, true, []),
            Some(now + Duration::from_secs(2)),
            "the second failure in a row waits twice as long"
        );
        let soon = now + Duration::from_millis(500);
        let later = now + Duration::from_secs(10);
        assert_eq!(
            retries.after_apply(now, true, [later, soon]),
            Some(soon),
            "a deferred reload due before the backoff comes first"
        );
        assert_eq!(
            retries.after_apply(now, true, [later]),
            Some(now + Duration::from_secs(8))
        );
        // A success resets the backoff.
        assert_eq!(retries.after_apply(now, false, [later]), Some(later));
        assert_eq!(
            retries.after_apply(now, true, []),
            Some(now + Duration::from_secs(1))
        );
    }
}
