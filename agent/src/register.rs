//! The registration role: on an app host, publish the local instances' endpoints under
//! an etcd lease, health-check them (HTTP), mark them failing after `fall` failures and
//! passing again after `rise` passes, and on SIGTERM withdraw them and wait until every
//! live LB agent has applied the withdrawal, so that no request reaches a stopping
//! instance.

use std::time::Duration;

use disco::change::ChangeSet;
use disco::model::{now_rfc3339, Endpoint, Health, HealthStatus};
use disco::store::Store;
use disco::{Key, Keyspace};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::{Config, RegisterConfig};
use crate::lease::Lease;
use crate::rise_fall::RiseFall;

/// What the role should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Keep registering and checking.
    Run,
    /// Stop without withdrawing (the configuration is being re-read).
    Stop,
    /// Withdraw every endpoint, wait for the LB agents, revoke the lease, stop.
    Drain,
}

struct Instance {
    config: RegisterConfig,
    key: String,
    url: Option<String>,
    health_path: Option<String>,
    /// The checks' results so far, and so the state in etcd (none before `rise` passes).
    health: RiseFall,
    detail: String,
    next_check: Instant,
}

impl Instance {
    fn record(&self, agent_id: &str) -> Endpoint {
        Endpoint {
            health_path: self.health_path.clone(),
            weight: self.config.weight,
            health: self.health.state().map(|status| Health {
                status,
                checked_at: Some(now_rfc3339()),
                detail: Some(self.detail.clone()),
            }),
            registered_by: Some(agent_id.to_string()),
            ..Endpoint::new(self.config.address.clone())
        }
    }

    /// Folds one check result in; returns the state to publish if it changed.
    fn observe(&mut self, ok: bool, detail: String) -> Option<HealthStatus> {
        self.detail = detail;
        self.health.observe(ok)
    }
}

/// When the next check of any instance is due.
fn next_due(instances: &[Instance]) -> Instant {
    instances
        .iter()
        .map(|i| i.next_check)
        .min()
        .expect("at least one")
}

/// The instances whose check is due at `now`, in order; the next check of each is then
/// an interval later.
fn take_due(instances: &mut [Instance], now: Instant) -> Vec<usize> {
    let mut due = Vec::new();
    for (index, inst) in instances.iter_mut().enumerate() {
        if inst.next_check <= now {
            inst.next_check = now + inst.config.interval;
            due.push(index);
        }
    }
    due
}

async fn check(client: &reqwest::Client, url: &str, timeout: Duration) -> (bool, String) {
    match client.get(url).timeout(timeout).send().await {
        Ok(resp) => {
            let status = resp.status();
            (
                status.is_success() || status.is_redirection(),
                format!("HTTP {}", status.as_u16()),
            )
        }
        Err(e) => (false, disco::error_chain(&e)),
    }
}

/// Runs the registration role until told to stop or drain.
pub async fn run(config: Config, store: Store, mut control: watch::Receiver<Control>) {
    if config.registrations.is_empty() {
        let _ = control.wait_for(|c| *c != Control::Run).await;
        return;
    }
    let keyspace = Keyspace::new(&config.prefix).expect("validated prefix");
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("HTTP client");
    let now = Instant::now();
    let mut instances: Vec<Instance> = config
        .registrations
        .iter()
        .map(|r| {
            let (url, health_path) = match r.health_url() {
                Some((url, path)) => (Some(url), Some(path)),
                None => (None, None),
            };
            Instance {
                key: keyspace.key(&Key::Endpoint {
                    app: r.app.clone(),
                    instance: r.instance.clone(),
                    version: r.version.clone(),
                }),
                config: r.clone(),
                url,
                health_path,
                health: RiseFall::new(r.rise, r.fall),
                detail: String::new(),
                next_check: now,
            }
        })
        .collect();
    let ttl = instances
        .iter()
        .map(|i| i.config.lease_ttl)
        .min()
        .expect("at least one");
    let mut lease = Lease::new(store.clone(), "registration", ttl);
    let mut unsynced: Vec<usize> = Vec::new();
    let mut keepalive = lease.keepalive_timer();

    loop {
        let due = next_due(&instances);
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {
                for index in take_due(&mut instances, Instant::now()) {
                    let inst = &mut instances[index];
                    let (ok, detail) = match &inst.url {
                        Some(url) => check(&client, url, inst.config.timeout()).await,
                        None => (true, "no health check configured".to_string()),
                    };
                    if let Some(state) = inst.observe(ok, detail) {
                        tracing::info!(endpoint = %inst.key, ?state, detail = %inst.detail, "health changed");
                        if !unsynced.contains(&index) {
                            unsynced.push(index);
                        }
                    }
                }
            }
            _ = keepalive.tick() => {
                if lease.keep_alive().await {
                    unsynced = (0..instances.len()).filter(|i| instances[*i].health.state().is_some()).collect();
                }
            }
            changed = control.changed() => {
                let what = if changed.is_err() { Control::Stop } else { *control.borrow() };
                match what {
                    Control::Run => continue,
                    Control::Stop => return,
                    Control::Drain => {
                        drain(&config, &store, &keyspace, &instances, lease).await;
                        return;
                    }
                }
            }
        }
        // Publish what changed; what fails is retried at the next round.
        if unsynced.is_empty() {
            continue;
        }
        let id = match lease.id().await {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(error = %e, "etcd unreachable; endpoints will be registered when it answers");
                continue;
            }
        };
        let mut still = Vec::new();
        for index in unsynced.drain(..) {
            let inst = &instances[index];
            let json =
                serde_json::to_vec(&inst.record(&config.agent_id)).expect("endpoint serializes");
            if let Err(e) = store.put(&inst.key, json, Some(id)).await {
                tracing::warn!(endpoint = %inst.key, error = %e, "registering failed; will retry");
                lease.check(&e);
                still.push(index);
            }
        }
        unsynced = still;
    }
}

/// Withdraws every endpoint in one transaction and waits for the LB agents.
async fn drain(
    config: &Config,
    store: &Store,
    keyspace: &Keyspace,
    instances: &[Instance],
    lease: Lease,
) {
    let deadline = Instant::now() + config.drain_timeout;
    let mut change = ChangeSet::default();
    for inst in instances {
        change.delete(&inst.key);
    }
    let revision = loop {
        match change.commit(store).await {
            Ok(revision) => break Some(revision),
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(error = %e, "withdrawing endpoints failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "could not withdraw the endpoints; they expire with the lease");
                break None;
            }
        }
    };
    if let Some(revision) = revision {
        tracing::info!(
            revision,
            "endpoints withdrawn; waiting for the LB agents to apply it"
        );
        let left = deadline.saturating_duration_since(Instant::now());
        match disco::converge::wait(store, keyspace, revision, left).await {
            Ok(waited) if waited.converged() => tracing::info!(
                agents = waited.agents.len(),
                revision,
                "every live LB agent applied the withdrawal"
            ),
            Ok(waited) => tracing::warn!(
                lagging = %waited.lagging_list(),
                "drain timed out; exiting anyway"
            ),
            Err(e) => tracing::warn!(error = %e, "drain incomplete: cannot read the agents"),
        }
    }
    lease.revoke().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(interval: Duration, rise: u32, fall: u32) -> Instance {
        Instance {
            config: RegisterConfig {
                app: "app1".into(),
                instance: "i1".into(),
                version: "v1".into(),
                address: "127.0.0.1:1".into(),
                health: None,
                interval,
                timeout: None,
                rise,
                fall,
                lease_ttl: Duration::from_secs(10),
                weight: 100,
            },
            key: String::new(),
            url: None,
            health_path: None,
            health: RiseFall::new(rise, fall),
            detail: String::new(),
            next_check: Instant::now(),
        }
    }

    /// Runs the checks of `instances` as `run` does, for `how_long` of paused time, with
    /// the result `ok(index, elapsed)`; returns each state change with when it came.
    async fn checks(
        instances: &mut [Instance],
        how_long: Duration,
        ok: impl Fn(usize, Duration) -> bool,
    ) -> Vec<(usize, Duration, HealthStatus)> {
        let start = Instant::now();
        let mut changes = Vec::new();
        loop {
            let due = next_due(instances);
            if due > start + how_long {
                return changes;
            }
            tokio::time::sleep_until(due).await;
            let now = Instant::now();
            for index in take_due(instances, now) {
                let passed = ok(index, now - start);
                if let Some(state) = instances[index].observe(passed, String::new()) {
                    changes.push((index, now - start, state));
                }
            }
        }
    }

    /// Checks start at once and come every `interval`: with rise 2 an endpoint is
    /// published one interval after start; with fall 3, failing two intervals after its
    /// first failed check. Each instance keeps its own interval.
    #[tokio::test(start_paused = true)]
    async fn rise_and_fall_take_their_counts_of_intervals() {
        let secs = Duration::from_secs;
        let mut instances = [instance(secs(2), 2, 3), instance(secs(5), 2, 3)];
        // Instance 0 fails from 10 s on; instance 1 always passes.
        let changes = checks(&mut instances, secs(20), |i, at| i == 1 || at < secs(10)).await;
        assert_eq!(
            changes,
            [
                (0, secs(2), HealthStatus::Passing),
                (1, secs(5), HealthStatus::Passing),
                (0, secs(14), HealthStatus::Failing),
            ]
        );
        assert_eq!(
            instances[0].record("a1").health.unwrap().status,
            HealthStatus::Failing
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_due_late_is_rescheduled_from_when_it_ran() {
        let mut instances = [instance(Duration::from_secs(2), 1, 1)];
        let start = Instant::now();
        // The loop was busy (a slow check of another instance, etcd): 3 s late.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(take_due(&mut instances, Instant::now()), [0]);
        assert_eq!(next_due(&instances), start + Duration::from_secs(7));
        assert!(take_due(&mut instances, Instant::now()).is_empty());
    }
}
