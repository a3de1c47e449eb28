//! The steps of a canary (`1`, `25%`, `all`, `dark`): parsed, printed and checked as a
//! `--steps` list.

use serde::{Deserialize, Serialize};

use crate::validate::Invalid;

/// One step of a canary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Only the dark canary: requests matching the recorded matches go to the version;
    /// every slot keeps its version (`--dark-first`).
    Dark,
    /// This many slots, in total, on the version (the next ones in natural order).
    /// The version's weight, if a `%` step set one, is removed: traffic follows slots.
    Slots(u32),
    /// This share of the app's traffic, in percent, to the version, through the
    /// policy's weights; at least one slot routes to the version (the first in natural
    /// order is flipped if none does). The slots' versions do not change otherwise.
    Percent(u32),
    /// Every slot on the version; its weight removed.
    All,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Dark => f.write_str("dark"),
            Step::Slots(n) => write!(f, "{n}"),
            Step::Percent(p) => write!(f, "{p}%"),
            Step::All => f.write_str("all"),
        }
    }
}

impl std::str::FromStr for Step {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Step, Invalid> {
        let bad = |reason: &str| Invalid::new("canary step", s, reason);
        match s {
            "dark" => return Ok(Step::Dark),
            "all" => return Ok(Step::All),
            _ => {}
        }
        let (digits, percent) = match s.strip_suffix('%') {
            Some(d) => (d, true),
            None => (s, false),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("expected a slot count (2), a share (25%) or all"));
        }
        let n: u32 = digits.parse().map_err(|_| bad("number too large"))?;
        match (percent, n) {
            (_, 0) => Err(bad("must be at least 1")),
            (true, 101..) => Err(bad("a share is at most 100%")),
            (true, p) => Ok(Step::Percent(p)),
            (false, n) => Ok(Step::Slots(n)),
        }
    }
}

impl Serialize for Step {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Step, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Step {
    /// What the step does, for people: `1 slot on v2`, `25% of the traffic to v2`.
    pub fn describe(&self, version: &str) -> String {
        match self {
            Step::Dark => format!("dark canary: matching requests to {version}"),
            Step::Slots(1) => format!("1 slot on {version}"),
            Step::Slots(n) => format!("{n} slots on {version}"),
            Step::Percent(p) => format!("{p}% of the traffic to {version}"),
            Step::All => format!("every slot on {version}"),
        }
    }
}

/// Parses `--steps`, e.g. `1,2,all` or `5%,25%,50%,all`: comma-separated slot counts,
/// shares and `all`. Slot counts must grow, shares must grow, `all` may only come last;
/// `dark` is not a step of the list (it is `--dark-first`).
pub fn parse_steps(list: &str) -> Result<Vec<Step>, Invalid> {
    let steps: Vec<Step> = list
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let bad = |reason: &str| Err(Invalid::new("canary steps", list, reason));
    let (mut slots, mut percent) = (0, 0);
    for (i, step) in steps.iter().enumerate() {
        match *step {
            Step::Dark => return bad("dark is not a step of the list: use --dark-first"),
            Step::All if i + 1 != steps.len() => return bad("all can only be the last step"),
            Step::All => {}
            Step::Slots(n) if n <= slots => return bad("slot counts must grow from step to step"),
            Step::Slots(n) => slots = n,
            Step::Percent(p) if p <= percent => return bad("shares must grow from step to step"),
            Step::Percent(p) => percent = p,
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_parse_validate_and_print_back() {
        let steps = parse_steps("1, 2,all").unwrap();
        assert_eq!(steps, [Step::Slots(1), Step::Slots(2), Step::All]);
        let steps = parse_steps("5%,25%,50%,all").unwrap();
        assert_eq!(steps[0], Step::Percent(5));
        let text: Vec<String> = steps.iter().map(ToString::to_string).collect();
        assert_eq!(text, ["5%", "25%", "50%", "all"]);
        assert_eq!(parse_steps("10%,1,2").unwrap().len(), 3, "mixed is fine");
        assert_eq!(
            serde_json::to_string(&parse_steps("1,5%,all").unwrap()).unwrap(),
            r#"["1","5%","all"]"#
        );
        let back: Vec<Step> = serde_json::from_str(r#"["dark","3","all"]"#).unwrap();
        assert_eq!(back, [Step::Dark, Step::Slots(3), Step::All]);
        for (bad, reason) in [
            ("", "expected a slot count"),
            ("1,,all", "expected a slot count"),
            ("0", "at least 1"),
            ("0%", "at least 1"),
            ("101%", "at most 100%"),
            ("x", "expected"),
            ("-1", "expected"),
            ("1.5", "expected"),
            ("all,1", "last"),
            ("2,1", "grow"),
            ("1,1", "grow"),
            ("50%,5%", "grow"),
            ("dark,1", "--dark-first"),
            ("99999999999", "too large"),
        ] {
            let e = parse_steps(bad).unwrap_err();
            assert!(e.to_string().contains(reason), "{bad}: {e}");
        }
    }
}
