//! Rise and fall: a registered endpoint's health-check results, one by one, turned into
//! the state it is published with: passing after `rise` passes in a row (not published
//! at all before the first time), failing after `fall` failures in a row. Pure.

use disco::model::HealthStatus;

/// The consecutive results of one endpoint's checks, and the state they led to.
#[derive(Debug, Clone)]
pub struct RiseFall {
    rise: u32,
    fall: u32,
    passes: u32,
    fails: u32,
    /// What to publish; `None` until the first `rise` passes.
    state: Option<HealthStatus>,
}

impl RiseFall {
    pub fn new(rise: u32, fall: u32) -> RiseFall {
        RiseFall {
            rise,
            fall,
            passes: 0,
            fails: 0,
            state: None,
        }
    }

    /// The state to publish; `None` until the first `rise` passes.
    pub fn state(&self) -> Option<HealthStatus> {
        self.state
    }

    /// Folds one check result in; returns the new state when it changed.
    pub fn observe(&mut self, ok: bool) -> Option<HealthStatus> {
        if ok {
            self.passes += 1;
            self.fails = 0;
        } else {
            self.fails += 1;
            self.passes = 0;
        }
        let next = match self.state {
            None | Some(HealthStatus::Failing) if self.passes >= self.rise => HealthStatus::Passing,
            Some(HealthStatus::Passing) if self.fails >= self.fall => HealthStatus::Failing,
            _ => return None,
        };
        self.state = Some(next);
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rise_and_fall_counting() {
        let mut h = RiseFall::new(2, 3);
        assert_eq!(h.observe(true), None, "one pass is not enough");
        assert_eq!(h.state(), None, "not published before rise passes");
        assert_eq!(h.observe(false), None);
        assert_eq!(h.observe(true), None);
        assert_eq!(h.observe(true), Some(HealthStatus::Passing));
        assert_eq!(h.observe(false), None);
        assert_eq!(h.observe(false), None);
        assert_eq!(h.observe(true), None, "a pass resets the failures");
        for _ in 0..2 {
            assert_eq!(h.observe(false), None);
        }
        assert_eq!(h.observe(false), Some(HealthStatus::Failing));
        assert_eq!(h.state(), Some(HealthStatus::Failing));
        assert_eq!(h.observe(true), None);
        assert_eq!(h.observe(true), Some(HealthStatus::Passing));
    }

    #[test]
    fn failures_before_the_first_rise_publish_nothing() {
        let mut h = RiseFall::new(1, 1);
        for _ in 0..5 {
            assert_eq!(h.observe(false), None);
        }
        assert_eq!(h.state(), None);
        assert_eq!(h.observe(true), Some(HealthStatus::Passing));
        assert_eq!(h.observe(true), None, "unchanged: nothing to publish");
        assert_eq!(h.observe(false), Some(HealthStatus::Failing));
    }
}
