//! Waiting for convergence (`discoctl --wait`, and the registration role's drain):
//! after a change committed at revision R, wait until every live LB agent (a status key
//! under `<prefix>/agents/` whose roles include `lb`) reports an applied revision ≥ R. Agents publish their status under a lease, so a dead agent drops out
//! by itself; one that is alive but does not apply is named when the time runs out.
//! The statuses are watched, so the wait ends as soon as the last agent reports; a
//! slow re-read every second covers a watch that is reconnecting.
//!
//! An agent that was live during the wait and whose status disappears before it
//! confirmed (its lease expired: the host died, froze or was cut from etcd; or it was
//! stopped) is not counted as confirming: it is named as *vanished* and the wait is not
//! converged. A host cut from etcd still serves its clients with the old routes.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::keys::Keyspace;
use crate::model::AgentStatus;
use crate::snapshot::Snapshot;
use crate::store::{Store, StoreError, WatchSettings, WatchUpdate};

/// A live LB agent that had not applied the revision when the time ran out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lagging {
    /// The agent id.
    pub id: String,
    /// The revision it had applied.
    pub applied_revision: i64,
    /// Its last error, if any.
    pub last_error: Option<String>,
    /// Its status disappeared during the wait before it confirmed the revision.
    pub vanished: bool,
}

impl std::fmt::Display for Lagging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.vanished {
            return write!(
                f,
                "{} (not confirmed: its status expired or was withdrawn during the wait; it had applied revision {})",
                self.id, self.applied_revision
            );
        }
        write!(f, "{} (applied revision {}", self.id, self.applied_revision)?;
        match &self.last_error {
            Some(e) => write!(f, ", last error: {e})"),
            None => write!(f, ", no error reported)"),
        }
    }
}

/// How a wait ended.
#[derive(Debug, Clone, Serialize)]
pub struct Waited {
    /// The live LB agents at the end, by id, in id order. Empty: none was live, and
    /// there was nothing to wait for.
    pub agents: Vec<String>,
    /// The agents that had not applied the revision, live or vanished; empty when every
    /// one had.
    pub lagging: Vec<Lagging>,
    /// How long the wait took, in milliseconds.
    pub wait_ms: u64,
}

impl Waited {
    /// True when every LB agent seen during the wait applied the revision.
    pub fn converged(&self) -> bool {
        self.lagging.is_empty()
    }

    /// True when every live LB agent applied the revision; vanished ones aside.
    pub fn live_converged(&self) -> bool {
        self.lagging.iter().all(|l| l.vanished)
    }

    /// The lagging agents for a message, one after the other: `lb1 (applied revision
    /// 41, no error reported); lb2 (...)`.
    pub fn lagging_list(&self) -> String {
        let lagging: Vec<String> = self.lagging.iter().map(ToString::to_string).collect();
        lagging.join("; ")
    }
}

/// LB agents seen during a wait: id → the highest revision each reported applied.
type Seen = BTreeMap<String, i64>;

/// The live LB agents of `agents` and the agents behind `revision`: live ones, and
/// those in `seen` (updated here) whose status disappeared before they confirmed.
fn check(agents: &Snapshot, revision: i64, seen: &mut Seen) -> (Vec<String>, Vec<Lagging>) {
    let lb: Vec<_> = agents
        .agents
        .values()
        .filter(|a| a.roles.iter().any(|r| r == "lb"))
        .collect();
    for a in &lb {
        let applied = seen.entry(a.id.clone()).or_insert(a.applied_revision);
        *applied = (*applied).max(a.applied_revision);
    }
    let mut lagging: Vec<Lagging> = lb
        .iter()
        .filter(|a| a.applied_revision < revision)
        .map(|a| Lagging {
            id: a.id.clone(),
            applied_revision: a.applied_revision,
            last_error: a.last_error.clone(),
            vanished: false,
        })
        .collect();
    lagging.extend(
        seen.iter()
            .filter(|(id, &applied)| applied < revision && !agents.agents.contains_key(*id))
            .map(|(id, &applied)| Lagging {
                id: id.clone(),
                applied_revision: applied,
                last_error: None,
                vanished: true,
            }),
    );
    lagging.sort_by(|a, b| a.id.cmp(&b.id));
    (lb.iter().map(|a| a.id.clone()).collect(), lagging)
}

/// The live agents with the LB role.
pub async fn lb_agents(store: &Store, keyspace: &Keyspace) -> Result<Vec<AgentStatus>, StoreError> {
    let (revision, kvs) = store.get_prefix(&keyspace.agents(), None).await?;
    let snapshot = Snapshot::from_kvs(
        keyspace,
        revision,
        kvs.into_iter().map(|kv| (kv.key, kv.value)),
    );
    Ok(snapshot
        .agents
        .into_values()
        .filter(|a| a.roles.iter().any(|r| r == "lb"))
        .collect())
}

/// Waits up to `timeout` until every live LB agent has applied `revision`. Ends with
/// the laggards named when the time runs out, or as soon as the only ones left are
/// agents that vanished; an error only if etcd cannot be read at the start.
pub async fn wait(
    store: &Store,
    keyspace: &Keyspace,
    revision: i64,
    timeout: Duration,
) -> Result<Waited, StoreError> {
    let started = Instant::now();
    let deadline = started + timeout;
    let ks = keyspace;
    let read = || async {
        let (at, kvs) = store.get_prefix(&ks.agents(), None).await?;
        Ok::<_, StoreError>(Snapshot::from_kvs(
            ks,
            at,
            kvs.into_iter().map(|kv| (kv.key, kv.value)),
        ))
    };
    // The watch reads the statuses once it is open (see `Store::watch`): a status
    // written while it opens is in that read or among its changes, at once.
    let mut watch = store.watch(&ks.agents(), 0, WatchSettings::default());
    let mut agents = match watch.recv().await {
        Some(WatchUpdate::Initial { revision, kvs }) => Snapshot::from_kvs(ks, revision, kvs),
        // The error as a read reports it; then the re-reads carry the wait.
        _ => read().await?,
    };
    let mut reread = tokio::time::interval_at(
        Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let mut watching = true;
    let mut seen = Seen::new();
    loop {
        let (ids, lagging) = check(&agents, revision, &mut seen);
        // Waiting longer does not bring a vanished agent's confirmation.
        let done = lagging.iter().all(|l| l.vanished);
        if done || Instant::now() >= deadline {
            return Ok(Waited {
                agents: ids,
                lagging,
                wait_ms: started.elapsed().as_millis() as u64,
            });
        }
        tokio::select! {
            update = watch.recv(), if watching => match update {
                // Events older than a re-read are already in it.
                Some(WatchUpdate::Changes { revision: at, changes }) if at > agents.revision => {
                    agents.apply(ks, at, changes);
                }
                Some(WatchUpdate::Initial { revision: at, kvs } | WatchUpdate::Resync { revision: at, kvs, .. }) if at > agents.revision => {
                    agents = Snapshot::from_kvs(ks, at, kvs);
                }
                Some(_) => {}
                // The watch task ended: rely on the re-reads.
                None => watching = false,
            },
            _ = reread.tick() => match read().await {
                Ok(fresh) => agents = fresh,
                // The change is committed: keep waiting through a passing etcd error.
                Err(e) => tracing::debug!(error = %e, "re-reading the agents failed"),
            },
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agents(list: &[(&str, &[&str], i64)]) -> Snapshot {
        let ks = Keyspace::default();
        Snapshot::from_kvs(
            &ks,
            100,
            list.iter().map(|(id, roles, applied)| {
                let status = AgentStatus {
                    id: id.to_string(),
                    roles: roles.iter().map(|r| r.to_string()).collect(),
                    applied_revision: *applied,
                    last_error: (*applied < 10).then(|| "reload failed".to_string()),
                    ..AgentStatus::default()
                };
                (
                    ks.key(&crate::Key::Agent { id: id.to_string() }),
                    serde_json::to_vec(&status).unwrap(),
                )
            }),
        )
    }

    #[test]
    fn only_live_lb_agents_count_and_laggards_are_named() {
        let s = agents(&[
            ("app-host", &["register"], 0),
            ("lb1", &["lb"], 42),
            ("lb2", &["lb", "register"], 5),
        ]);
        let (ids, lagging) = check(&s, 42, &mut Seen::new());
        assert_eq!(ids, ["lb1", "lb2"]);
        assert_eq!(
            lagging,
            [Lagging {
                id: "lb2".into(),
                applied_revision: 5,
                last_error: Some("reload failed".into()),
                vanished: false,
            }]
        );
        assert_eq!(
            lagging[0].to_string(),
            "lb2 (applied revision 5, last error: reload failed)"
        );
        let (ids, lagging) = check(
            &agents(&[("app-host", &["register"], 0)]),
            42,
            &mut Seen::new(),
        );
        assert!(ids.is_empty() && lagging.is_empty());
    }

    #[test]
    fn an_agent_whose_status_disappears_before_it_confirmed_is_named_vanished() {
        let mut seen = Seen::new();
        let both = agents(&[
            ("lb1", &["lb"], 42),
            ("lb2", &["lb"], 40),
            ("lb3", &["lb"], 43),
        ]);
        let (_, lagging) = check(&both, 42, &mut seen);
        assert_eq!(lagging.len(), 1);
        // lb2 and lb3 disappear: lb3 had confirmed, lb2 had not.
        let (ids, lagging) = check(&agents(&[("lb1", &["lb"], 42)]), 42, &mut seen);
        assert_eq!(ids, ["lb1"]);
        assert_eq!(lagging.len(), 1, "{lagging:?}");
        assert!(lagging[0].vanished && lagging[0].id == "lb2");
        assert!(
            lagging[0].to_string().contains("not confirmed"),
            "{}",
            lagging[0]
        );
        let waited = Waited {
            agents: ids,
            lagging,
            wait_ms: 1,
        };
        assert!(!waited.converged() && waited.live_converged());
    }

    #[test]
    fn lagging_agents_are_listed_in_one_line() {
        let lagging = |id: &str, applied_revision| Lagging {
            id: id.into(),
            applied_revision,
            last_error: None,
            vanished: false,
        };
        let waited = Waited {
            agents: vec!["lb1".into(), "lb2".into()],
            lagging: vec![lagging("lb1", 40), lagging("lb2", 41)],
            wait_ms: 30_000,
        };
        assert_eq!(
            waited.lagging_list(),
            "lb1 (applied revision 40, no error reported); lb2 (applied revision 41, no error reported)"
        );
        let none = Waited {
            lagging: Vec::new(),
            ..waited
        };
        assert_eq!(none.lagging_list(), "");
    }
}
