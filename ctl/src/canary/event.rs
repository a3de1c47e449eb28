//! What a canary reports, as one typed enum: its serde form is the `-o json` line
//! (the schema README.md documents), its `Display` the line printed for people.

use std::fmt;
use std::time::Duration;

use disco::converge::Waited;
use disco::model::Policy;
use disco::plan::Flip;
use disco::rollout::{Analysis, Check, RolloutState, Step, StepChange};
use disco::stats::Counts;
use serde::Serialize;

/// One event of a canary. This enum is the schema of `discoctl canary -o json` (README.md,
/// "Automated canary"): each event is one JSON object per line with `event` (the
/// variant's name in snake case), `app`, `at` and the variant's fields, keys in
/// alphabetical order ([`Line::json`]). The text line is [`Line`]'s `Display`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The canary started, or this process took it over (`--resume`).
    Started {
        version: String,
        steps: Vec<Step>,
        analysis: Analysis,
        confirm: bool,
        owner: String,
        /// Set when this process took the canary over from a dead one.
        #[serde(flatten)]
        taken_over: Option<TakeOver>,
    },
    /// A step is about to be applied.
    StepStarted {
        step: usize,
        of: usize,
        target: Step,
        description: String,
    },
    /// A step's transaction committed, and the wait for the agents ended.
    Applied {
        step: usize,
        of: usize,
        #[serde(flatten)]
        written: Written,
    },
    /// Progress of a step's observation (every 5 s with `-o json`).
    Observation {
        step: usize,
        of: usize,
        elapsed_ms: u64,
        remaining_ms: u64,
        paused: bool,
        canary: VersionCounts,
        stable: VersionCounts,
        /// The step in words, for the text line.
        #[serde(skip)]
        description: String,
        /// Observing the extra interval of `--on-no-data wait`, for the text line.
        #[serde(skip)]
        extended: bool,
    },
    /// Too few requests at the end of a step's interval, and what follows.
    NoData {
        step: usize,
        of: usize,
        reason: String,
        #[serde(flatten)]
        then: NoDataThen,
    },
    /// The verdict at the end of a step's interval was inconclusive (a metric over
    /// its threshold, but not by more than chance), and what follows.
    Inconclusive {
        step: usize,
        of: usize,
        reason: String,
        #[serde(flatten)]
        then: InconclusiveThen,
    },
    /// A step passed.
    StepPassed {
        step: usize,
        of: usize,
        canary: VersionCounts,
        stable: VersionCounts,
        /// Every metric's judgement: value, threshold, test and p-value, outcome, why.
        analysis: Vec<Check>,
        /// The judgement in words, for the text line.
        #[serde(skip)]
        explained: String,
    },
    /// `--dry-run-analysis`: the verdict on a step was to roll back; the canary goes on
    /// to the next step instead.
    StepWouldFail {
        step: usize,
        of: usize,
        /// Why a real run would have rolled back (the first reason seen).
        reason: String,
        /// How far into the step the counts first failed the analysis, in ms: when a
        /// real run would have rolled back.
        failed_after_ms: u64,
        canary: VersionCounts,
        stable: VersionCounts,
    },
    /// The canary was paused (`discoctl pause`, or a `--confirm` canary waiting).
    Paused {
        step: usize,
        of: usize,
        by: Option<String>,
        reason: Option<String>,
    },
    /// The canary was resumed.
    Resumed {
        step: usize,
        of: usize,
        by: Option<String>,
    },
    /// A `--confirm` canary waits before its final step.
    AwaitingConfirmation {
        step: usize,
        of: usize,
        description: String,
    },
    /// Everything went back to the state before the canary.
    RolledBack {
        version: String,
        step: usize,
        of: usize,
        reason: String,
        #[serde(flatten)]
        written: Written,
    },
    /// Every step passed.
    Completed {
        version: String,
        steps: usize,
        revision: i64,
    },
    /// Every slot already served the version: nothing was done (`changed` is false).
    #[serde(rename = "completed")]
    Unchanged { version: String, changed: bool },
}

/// What follows an inconclusive step (`--on-inconclusive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "then", rename_all = "snake_case")]
pub enum InconclusiveThen {
    /// The step is observed for this much longer.
    Extend { extended_ms: u64 },
    /// The canary pauses for an operator.
    Pause,
    /// `--dry-run-analysis`: the canary goes on.
    Continue,
}

/// What a canary taken over (`--resume`) adds to its `started` event.
#[derive(Debug, Clone, Serialize)]
pub struct TakeOver {
    /// Always true.
    pub resumed: bool,
    /// The owner of the lock that expired.
    pub previous_owner: String,
    /// Steps passed before.
    pub passed: usize,
    /// The recorded state.
    pub state: RolloutState,
}

/// What follows a step without enough data (`--on-no-data`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "then", rename_all = "snake_case")]
pub enum NoDataThen {
    /// The step counts as passed.
    Pass,
    /// The step is observed for this much longer.
    Wait { extended_ms: u64 },
}

/// A canary's transaction as committed and applied: what `applied` and `rolled_back`
/// report of it.
#[derive(Debug, Clone, Serialize)]
pub struct Written {
    /// The commit's revision.
    pub revision: i64,
    /// Its audit record's sequence number; none when it changed nothing.
    pub history_seq: Option<u64>,
    /// False when there was nothing to change.
    pub changed: bool,
    /// The slot flips.
    pub slots: Vec<Flip>,
    /// The policy written; none when it stayed.
    pub policy: Option<Policy>,
    /// The wait for the LB agents.
    #[serde(flatten)]
    pub waited: Waited,
    /// The change in words (`instance1 v1->v2`), for the text line.
    #[serde(skip)]
    pub description: String,
}

impl Written {
    /// `change` (the policy `before` it) as committed at `revision`, and the wait.
    pub fn new(
        change: &StepChange,
        before: Option<&Policy>,
        revision: i64,
        history_seq: Option<u64>,
        waited: Waited,
    ) -> Written {
        Written {
            revision,
            history_seq,
            changed: !change.is_empty(),
            slots: change.plan.flips.clone(),
            policy: change.policy.clone(),
            waited,
            description: crate::describe::step_change(change, before),
        }
    }
}

/// One version's traffic over a step: requests, 5xx, their share, mean and p95 (nginx
/// only).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionCounts {
    /// The version, or `stable` for every other version together.
    pub version: String,
    pub requests: u64,
    pub errors_5xx: u64,
    pub error_rate: Option<f64>,
    pub mean_ms: Option<f64>,
    pub p95_ms: Option<f64>,
}

impl VersionCounts {
    /// `version`'s counts `c`.
    pub fn new(version: &str, c: &Counts) -> VersionCounts {
        VersionCounts {
            version: version.to_string(),
            requests: c.requests,
            errors_5xx: c.errors_5xx,
            error_rate: c.error_rate(),
            mean_ms: c.mean_ms(),
            p95_ms: c.percentile_ms(0.95),
        }
    }
}

/// `0.3% 5xx of 1234 requests, mean 1.2 ms` (or `no requests`).
impl fmt::Display for VersionCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(rate) = self.error_rate else {
            return f.write_str("no requests");
        };
        write!(f, "{:.1}% 5xx of {} requests", rate * 100.0, self.requests)?;
        match self.mean_ms {
            Some(mean) => write!(f, ", mean {mean:.1} ms"),
            None => Ok(()),
        }
    }
}

/// `1m 5s`-style, whole seconds.
pub fn duration_text(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// An event of one app's canary as printed: `-o json` gives [`Line::json`], the
/// table output its `Display`.
#[derive(Serialize)]
pub struct Line<'a> {
    pub app: &'a str,
    /// When (RFC 3339).
    pub at: String,
    #[serde(flatten)]
    pub event: &'a Event,
}

impl<'a> Line<'a> {
    /// `event` of `app`, now.
    pub fn now(app: &'a str, event: &'a Event) -> Line<'a> {
        Line {
            app,
            at: disco::model::now_rfc3339(),
            event,
        }
    }

    /// The JSON object, on one line, keys in alphabetical order.
    pub fn json(&self) -> String {
        // Through `Value`, whose map is ordered by key: the order the events have
        // always had.
        serde_json::to_value(self)
            .expect("canary events serialize")
            .to_string()
    }
}

/// ` by ann@ops`, or nothing.
fn by(who: &Option<String>) -> String {
    who.as_ref().map(|b| format!(" by {b}")).unwrap_or_default()
}

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let app = self.app;
        match self.event {
            Event::Started {
                version,
                steps,
                analysis,
                owner,
                taken_over: None,
                ..
            } => {
                let steps: Vec<String> = steps.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "{app}: canary of {version}: steps {}, {} each, max 5xx {:.1}%{}, min {} requests{} (owner {owner})",
                    steps.join(","),
                    humantime::format_duration(Duration::from_millis(analysis.interval_ms)),
                    analysis.max_error_rate * 100.0,
                    [
                        ("mean latency", analysis.max_latency_ms),
                        ("p95", analysis.max_p95_ms),
                        ("p99", analysis.max_p99_ms)
                    ]
                    .iter()
                    .filter_map(|(name, max)| max.map(|ms| format!(", max {name} {ms} ms")))
                    .collect::<String>(),
                    analysis.min_requests,
                    if analysis.dry_run {
                        ", dry run: verdicts are reported, never acted on"
                    } else {
                        ""
                    },
                )
            }
            Event::Started {
                version,
                steps,
                taken_over: Some(t),
                ..
            } => {
                let n = steps.len();
                write!(
                    f,
                    "{app}: taking over the canary of {version} from {} ({}, {} of {n} steps passed): step {}/{n} is applied again and observed for a full interval",
                    t.previous_owner,
                    t.state,
                    t.passed,
                    (t.passed + 1).min(n),
                )
            }
            Event::StepStarted {
                step,
                of,
                description,
                ..
            } => write!(f, "step {step}/{of}: {description}"),
            Event::Applied { step, of, written } => {
                let Written {
                    revision,
                    waited,
                    description,
                    ..
                } = written;
                write!(f, "step {step}/{of}: {description} (revision {revision}); ")?;
                if waited.converged() {
                    write!(
                        f,
                        "applied by {} LB agent{} in {} ms",
                        waited.agents.len(),
                        if waited.agents.len() == 1 { "" } else { "s" },
                        waited.wait_ms
                    )
                } else {
                    f.write_str("NOT applied by every LB agent")
                }
            }
            Event::Observation {
                step,
                of,
                remaining_ms,
                paused,
                canary,
                stable,
                description,
                extended,
                ..
            } => {
                let left = duration_text(Duration::from_millis(*remaining_ms));
                let state = if *paused {
                    format!("PAUSED (`discoctl resume {app}`)")
                } else if *extended {
                    format!("no data yet, up to {left} more")
                } else {
                    format!("{left} left")
                };
                write!(
                    f,
                    "step {step}/{of} ({description}): {state} | {}: {canary} | others: {stable}",
                    canary.version
                )
            }
            Event::NoData {
                step,
                of,
                reason,
                then: NoDataThen::Pass,
            } => write!(
                f,
                "step {step}/{of}: no data ({reason}); passing it (--on-no-data pass)"
            ),
            Event::NoData {
                step,
                of,
                reason,
                then: NoDataThen::Wait { extended_ms },
            } => write!(
                f,
                "step {step}/{of}: no data yet ({reason}); observing up to {} more",
                duration_text(Duration::from_millis(*extended_ms))
            ),
            Event::Inconclusive {
                step,
                of,
                reason,
                then,
            } => {
                write!(f, "step {step}/{of}: inconclusive ({reason}); ")?;
                match then {
                    InconclusiveThen::Extend { extended_ms } => write!(
                        f,
                        "observing {} more (--on-inconclusive extend)",
                        duration_text(Duration::from_millis(*extended_ms))
                    ),
                    InconclusiveThen::Pause => write!(
                        f,
                        "pausing for an operator: `discoctl resume {app}` observes one more interval, `discoctl abort {app}` rolls back"
                    ),
                    InconclusiveThen::Continue => f.write_str("going on (--dry-run-analysis)"),
                }
            }
            Event::StepPassed {
                step,
                of,
                canary,
                stable,
                explained,
                ..
            } => write!(
                f,
                "step {step}/{of} passed: {} {canary}; others {stable} | {explained}",
                canary.version
            ),
            Event::StepWouldFail {
                step,
                of,
                reason,
                failed_after_ms,
                canary,
                stable,
            } => write!(
                f,
                "step {step}/{of} would have rolled back after {}: {reason}; going on (--dry-run-analysis): {} {canary}; others {stable}",
                duration_text(Duration::from_millis(*failed_after_ms)),
                canary.version
            ),
            Event::Paused { by: who, reason, .. } => write!(
                f,
                "paused{}{}; `discoctl resume {app}` continues",
                by(who),
                reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default(),
            ),
            Event::Resumed { by: who, .. } => write!(f, "resumed{}", by(who)),
            Event::AwaitingConfirmation { description, .. } => write!(
                f,
                "awaiting confirmation of the final step ({description}): run `discoctl resume {app}` to go on, `discoctl abort {app}` to roll back"
            ),
            Event::RolledBack {
                version,
                reason,
                written,
                ..
            } => write!(
                f,
                "{app}: canary of {version} ROLLED BACK: {reason} ({}, revision {})",
                written.description, written.revision
            ),
            Event::Completed { version, steps, .. } => write!(
                f,
                "{app}: canary of {version} completed: {steps} of {steps} steps passed"
            ),
            Event::Unchanged { version, .. } => write!(
                f,
                "{app}: every slot already serves {version}: nothing to do; nothing written"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use disco::converge::Lagging;
    use disco::plan::Plan;
    use disco::rollout::OnNoData;
    use serde_json::{json, Value};

    use super::*;

    const AT: &str = "2024-05-01T10:00:00.000Z";

    /// The JSON and the text line of `event` of app1.
    fn printed(event: &Event) -> (String, String) {
        let line = Line {
            app: "app1",
            at: AT.into(),
            event,
        };
        (line.json(), line.to_string())
    }

    /// What the canary printed before this enum: `event`, `app`, `at` and `fields`.
    fn as_before(event: &str, fields: Value) -> String {
        let mut doc = json!({"event": event, "app": "app1", "at": AT});
        if let (Some(doc), Value::Object(fields)) = (doc.as_object_mut(), fields) {
            doc.extend(fields);
        }
        doc.to_string()
    }

    fn counts(requests: u64, errors_5xx: u64, time_ms_sum: f64) -> Counts {
        Counts {
            requests,
            errors_5xx,
            timed: requests,
            time_ms_sum,
            buckets: Vec::new(),
        }
    }

    fn waited(lagging: Vec<Lagging>) -> Waited {
        Waited {
            agents: vec!["lb1".into(), "lb2".into()],
            lagging,
            wait_ms: 31,
        }
    }

    fn one_flip() -> StepChange {
        StepChange {
            plan: Plan {
                flips: vec![Flip {
                    instance: "instance1".into(),
                    from: "v1".into(),
                    to: "v2".into(),
                }],
            },
            policy: None,
        }
    }

    #[test]
    fn started_prints_its_settings_and_a_take_over_says_from_whom() {
        let analysis = Analysis {
            interval_ms: 60_000,
            max_error_rate: 0.01,
            max_latency_ms: Some(250.0),
            max_p95_ms: None,
            max_p99_ms: None,
            confidence: Analysis::DEFAULT_CONFIDENCE,
            on_inconclusive: Default::default(),
            min_requests: 20,
            on_no_data: OnNoData::Wait,
            dry_run: false,
        };
        let steps = vec![Step::Dark, Step::Slots(1), Step::All];
        let mut event = Event::Started {
            version: "v2".into(),
            steps: steps.clone(),
            analysis: analysis.clone(),
            confirm: false,
            owner: "42@ops1".into(),
            taken_over: None,
        };
        let (json, text) = printed(&event);
        assert_eq!(
            json,
            as_before(
                "started",
                json!({"version": "v2", "steps": steps, "analysis": analysis, "confirm": false, "owner": "42@ops1"})
            )
        );
        assert_eq!(
            text,
            "app1: canary of v2: steps dark,1,all, 1m each, max 5xx 1.0%, max mean latency 250 ms, min 20 requests (owner 42@ops1)"
        );
        if let Event::Started { taken_over, .. } = &mut event {
            *taken_over = Some(TakeOver {
                resumed: true,
                previous_owner: "7@ops2".into(),
                passed: 1,
                state: RolloutState::Paused,
            });
        }
        let (json, text) = printed(&event);
        assert_eq!(
            json,
            as_before(
                "started",
                json!({"version": "v2", "steps": steps, "analysis": analysis, "confirm": false, "owner": "42@ops1",
                       "resumed": true, "previous_owner": "7@ops2", "passed": 1, "state": RolloutState::Paused})
            )
        );
        assert_eq!(
            text,
            "app1: taking over the canary of v2 from 7@ops2 (paused, 1 of 3 steps passed): step 2/3 is applied again and observed for a full interval"
        );
    }

    #[test]
    fn applied_names_the_change_and_who_applied_it() {
        let change = one_flip();
        let event = Event::Applied {
            step: 1,
            of: 3,
            written: Written::new(&change, None, 57, Some(4), waited(Vec::new())),
        };
        let (json, text) = printed(&event);
        assert_eq!(
            json,
            as_before(
                "applied",
                json!({
                    "step": 1, "of": 3, "revision": 57, "changed": true,
                    "slots": change.plan.flips, "policy": change.policy, "history_seq": Some(4),
                    "agents": ["lb1", "lb2"], "lagging": [], "wait_ms": 31,
                })
            )
        );
        assert_eq!(
            text,
            "step 1/3: instance1 v1->v2 (revision 57); applied by 2 LB agents in 31 ms"
        );
        let late = Lagging {
            id: "lb2".into(),
            applied_revision: 56,
            last_error: None,
            vanished: false,
        };
        let event = Event::Applied {
            step: 1,
            of: 3,
            written: Written::new(&change, None, 57, Some(4), waited(vec![late.clone()])),
        };
        let (json, text) = printed(&event);
        let doc: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(doc["lagging"], json!([late]), "{json}");
        assert_eq!(
            text,
            "step 1/3: instance1 v1->v2 (revision 57); NOT applied by every LB agent"
        );
    }

    #[test]
    fn observation_shows_time_left_paused_or_extended() {
        let canary = counts(950, 3, 1140.0);
        let stable = counts(0, 0, 0.0);
        let event = |paused, extended| Event::Observation {
            step: 1,
            of: 3,
            elapsed_ms: 15_400,
            remaining_ms: 44_600,
            paused,
            canary: VersionCounts::new("v2", &canary),
            stable: VersionCounts::new("stable", &stable),
            description: "1 slot on v2".into(),
            extended,
        };
        let (json, text) = printed(&event(false, false));
        let counts_before = |version: &str, c: &Counts| {
            json!({
                "version": version, "requests": c.requests, "errors_5xx": c.errors_5xx,
                "error_rate": c.error_rate(), "mean_ms": c.mean_ms(), "p95_ms": c.percentile_ms(0.95),
            })
        };
        assert_eq!(
            json,
            as_before(
                "observation",
                json!({
                    "step": 1, "of": 3, "elapsed_ms": 15_400, "remaining_ms": 44_600, "paused": false,
                    "canary": counts_before("v2", &canary), "stable": counts_before("stable", &stable),
                })
            )
        );
        assert_eq!(
            text,
            "step 1/3 (1 slot on v2): 44s left | v2: 0.3% 5xx of 950 requests, mean 1.2 ms | others: no requests"
        );
        assert_eq!(
            printed(&event(true, false)).1,
            "step 1/3 (1 slot on v2): PAUSED (`discoctl resume app1`) | v2: 0.3% 5xx of 950 requests, mean 1.2 ms | others: no requests"
        );
        assert_eq!(
            printed(&event(false, true)).1,
            "step 1/3 (1 slot on v2): no data yet, up to 44s more | v2: 0.3% 5xx of 950 requests, mean 1.2 ms | others: no requests"
        );
    }

    #[test]
    fn no_data_says_what_follows() {
        let event = |then| Event::NoData {
            step: 2,
            of: 3,
            reason: "v2 answered 3 requests".into(),
            then,
        };
        let (json, text) = printed(&event(NoDataThen::Pass));
        assert_eq!(
            json,
            as_before(
                "no_data",
                json!({"step": 2, "of": 3, "reason": "v2 answered 3 requests", "then": "pass"})
            )
        );
        assert_eq!(
            text,
            "step 2/3: no data (v2 answered 3 requests); passing it (--on-no-data pass)"
        );
        let (json, text) = printed(&event(NoDataThen::Wait {
            extended_ms: 90_000,
        }));
        assert_eq!(
            json,
            as_before(
                "no_data",
                json!({"step": 2, "of": 3, "reason": "v2 answered 3 requests", "then": "wait", "extended_ms": 90_000})
            )
        );
        assert_eq!(
            text,
            "step 2/3: no data yet (v2 answered 3 requests); observing up to 1m 30s more"
        );
    }

    #[test]
    fn pause_and_resume_name_who_and_why() {
        let (json, text) = printed(&Event::Paused {
            step: 1,
            of: 2,
            by: Some("ann@ops".into()),
            reason: Some("lunch".into()),
        });
        assert_eq!(
            json,
            as_before(
                "paused",
                json!({"step": 1, "of": 2, "by": "ann@ops", "reason": "lunch"})
            )
        );
        assert_eq!(
            text,
            "paused by ann@ops: lunch; `discoctl resume app1` continues"
        );
        let anonymous = Event::Paused {
            step: 1,
            of: 2,
            by: None,
            reason: None,
        };
        assert_eq!(
            printed(&anonymous).0,
            as_before(
                "paused",
                json!({"step": 1, "of": 2, "by": null, "reason": null})
            )
        );
        assert_eq!(
            printed(&anonymous).1,
            "paused; `discoctl resume app1` continues"
        );
        let (json, text) = printed(&Event::Resumed {
            step: 1,
            of: 2,
            by: Some("bob@ops".into()),
        });
        assert_eq!(
            json,
            as_before("resumed", json!({"step": 1, "of": 2, "by": "bob@ops"}))
        );
        assert_eq!(text, "resumed by bob@ops");
    }

    #[test]
    fn the_ends_of_a_canary() {
        let change = one_flip();
        let written = Written::new(&change, None, 131, Some(9), waited(Vec::new()));
        let reason = "step 1/3 (1 slot on v2): too many 5xx";
        let rolled = Event::RolledBack {
            version: "v2".into(),
            step: 1,
            of: 3,
            reason: reason.into(),
            written,
        };
        let (json, text) = printed(&rolled);
        assert_eq!(
            json,
            as_before(
                "rolled_back",
                json!({
                    "version": "v2", "step": 1, "of": 3, "reason": "step 1/3 (1 slot on v2): too many 5xx",
                    "revision": 131, "history_seq": Some(9), "changed": true,
                    "slots": change.plan.flips, "policy": change.policy,
                    "agents": ["lb1", "lb2"], "lagging": [], "wait_ms": 31,
                })
            )
        );
        assert_eq!(
            text,
            "app1: canary of v2 ROLLED BACK: step 1/3 (1 slot on v2): too many 5xx (instance1 v1->v2, revision 131)"
        );
        let (json, text) = printed(&Event::Completed {
            version: "v2".into(),
            steps: 3,
            revision: 140,
        });
        assert_eq!(
            json,
            as_before(
                "completed",
                json!({"version": "v2", "steps": 3, "revision": 140})
            )
        );
        assert_eq!(text, "app1: canary of v2 completed: 3 of 3 steps passed");
        let (json, text) = printed(&Event::Unchanged {
            version: "v2".into(),
            changed: false,
        });
        assert_eq!(
            json,
            as_before("completed", json!({"version": "v2", "changed": false}))
        );
        assert_eq!(
            text,
            "app1: every slot already serves v2: nothing to do; nothing written"
        );
    }

    #[test]
    fn a_step_that_would_fail_says_when_and_why_and_goes_on() {
        let event = Event::StepWouldFail {
            step: 1,
            of: 3,
            reason: "v2 5xx rate 30.0% over --max-error-rate 1.0%".into(),
            failed_after_ms: 2000,
            canary: VersionCounts::new("v2", &counts(40, 12, 48.0)),
            stable: VersionCounts::new("stable", &counts(400, 0, 400.0)),
        };
        let (json, text) = printed(&event);
        assert!(json.contains(r#""event":"step_would_fail","failed_after_ms":2000,"of":3,"reason":"v2 5xx rate 30.0% over --max-error-rate 1.0%","stable":"#), "{json}");
        assert!(
            text.starts_with("step 1/3 would have rolled back after 2s: v2 5xx rate 30.0% over --max-error-rate 1.0%; going on (--dry-run-analysis): v2 30.0% 5xx of 40 requests"),
            "{text}"
        );
    }

    #[test]
    fn a_passed_step_prints_both_sides_counts_and_its_judgement() {
        let obs = disco::rollout::Observation {
            canary: counts(40, 0, 48.0),
            stable: counts(400, 4, 400.0),
        };
        let analysis: Analysis =
            serde_json::from_str(r#"{"interval_ms":1000,"max_error_rate":0.01,"min_requests":20}"#)
                .unwrap();
        let judged = disco::rollout::judge(&obs, &analysis, "v2", disco::rollout::Look::Final);
        let event = Event::StepPassed {
            step: 1,
            of: 2,
            canary: VersionCounts::new("v2", &obs.canary),
            stable: VersionCounts::new("stable", &obs.stable),
            explained: judged.explain(),
            analysis: judged.checks,
        };
        let (json, text) = printed(&event);
        assert!(json.starts_with(r#"{"analysis":[{"canary":0.0,"max":0.01,"metric":"error_rate","outcome":"pass","stable":0.01,"why":"v2 5xx rate 0.0% (0 of 40 requests) is within --max-error-rate 1.0%"}],"app":"app1","at":"2024-05-01T10:00:00.000Z","canary":{"error_rate":0.0,"errors_5xx":0,"mean_ms":1.2,"p95_ms":null,"requests":40,"version":"v2"},"event":"step_passed","of":2,"stable":"#), "{json}");
        assert_eq!(
            text,
            "step 1/2 passed: v2 0.0% 5xx of 40 requests, mean 1.2 ms; others 1.0% 5xx of 400 requests, mean 1.0 ms | v2 5xx rate 0.0% (0 of 40 requests) is within --max-error-rate 1.0%"
        );
    }

    #[test]
    fn an_inconclusive_step_says_what_follows() {
        let text = |then| {
            printed(&Event::Inconclusive {
                step: 2,
                of: 3,
                reason: "not significantly".into(),
                then,
            })
        };
        let (json, line) = text(InconclusiveThen::Extend {
            extended_ms: 60_000,
        });
        assert!(
            json.contains(r#""event":"inconclusive","extended_ms":60000,"of":3,"reason":"not significantly","step":2,"then":"extend""#),
            "{json}"
        );
        assert_eq!(
            line,
            "step 2/3: inconclusive (not significantly); observing 1m more (--on-inconclusive extend)"
        );
        let (json, line) = text(InconclusiveThen::Pause);
        assert!(json.contains(r#""then":"pause""#), "{json}");
        assert!(line.ends_with("pausing for an operator: `discoctl resume app1` observes one more interval, `discoctl abort app1` rolls back"), "{line}");
        let (_, line) = text(InconclusiveThen::Continue);
        assert!(line.ends_with("going on (--dry-run-analysis)"), "{line}");
    }
}
