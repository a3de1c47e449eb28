//! What the benchmark binaries and the demo share: the workspace's sibling binaries,
//! child processes stopped on drop, the runtime they run on, percentiles, and an
//! agent's applied revisions as they arrive.
//!
//! # Layout
//!
//! - [`agent`]: the disco-agent processes the benchmarks measure (config file, process).
//! - [`seed`]: the starting routing state a benchmark writes to its etcd.
//! - [`proc_stats`]: what a process uses, read from `/proc` (RSS, CPU, open files).
//! - [`server_lines`]: confd-compare's job (a server line per routed endpoint, a check,
//!   a reload), also one of agent-latency's targets.

pub mod agent;
pub mod proc_stats;
pub mod seed;
pub mod server_lines;

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

/// A binary built next to the running one (`target/<profile>/<name>`).
pub fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .expect("current exe")
        .parent()
        .expect("target dir")
        .join(name)
}

/// A child process stopped when dropped.
pub struct Proc {
    child: Child,
    graceful: bool,
}

impl Proc {
    /// Stopped with SIGKILL.
    pub fn kill_on_drop(child: Child) -> Proc {
        Proc {
            child,
            graceful: false,
        }
    }

    /// Stopped with SIGTERM (a registering agent drains), SIGKILL after 10 s.
    pub fn term_on_drop(child: Child) -> Proc {
        Proc {
            child,
            graceful: true,
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.graceful {
            disco_harness::process::send(self.child.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The runtime every benchmark runs on: multi-threaded with two workers (the 2-core
/// machine the numbers in bench/README.md come from), IO and timers enabled.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A duration in milliseconds, as the tables show them.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Parses `flags` (the command line after the binary's name) into a binary's `Flags`,
/// after clap's own check of their definitions: what each binary's tests use to check
/// that the invocations in the scripts and docs still parse.
pub fn parse_flags<Flags: clap::Parser>(flags: &[&str]) -> Result<Flags, clap::Error> {
    Flags::command().debug_assert();
    Flags::try_parse_from(std::iter::once("bench").chain(flags.iter().copied()))
}

/// The name a flag's value has on the command line (e.g. `haproxy-runtime`), which the
/// tables show too.
pub fn flag_value(value: &impl clap::ValueEnum) -> String {
    value
        .to_possible_value()
        .expect("no value is skipped")
        .get_name()
        .to_string()
}

/// The `p` quantile (0–1) of sorted samples, by nearest rank; NaN when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Follows one agent's status key in etcd and remembers when each status arrived, so
/// that the time a revision was applied can be looked up after the fact (also for puts
/// made faster than the agent applies them).
pub struct StatusLog {
    seen: std::sync::Arc<std::sync::Mutex<Vec<(Instant, disco::model::AgentStatus)>>>,
    applied: tokio::sync::watch::Receiver<i64>,
    task: tokio::task::JoinHandle<()>,
}

impl StatusLog {
    /// Watches `key` (an agent's status) from `from_revision` on.
    pub fn start(store: &disco::store::Store, key: &str, from_revision: i64) -> StatusLog {
        use disco::store::{WatchSettings, WatchUpdate};
        let mut updates = store.watch(key, from_revision, WatchSettings::default());
        let seen: std::sync::Arc<std::sync::Mutex<Vec<_>>> = Default::default();
        let (tx, applied) = tokio::sync::watch::channel(0i64);
        let task = {
            let seen = seen.clone();
            tokio::spawn(async move {
                while let Some(update) = updates.recv().await {
                    let WatchUpdate::Changes { changes, .. } = update else {
                        continue;
                    };
                    for c in changes {
                        let disco::Change::Put { value, .. } = c else {
                            continue;
                        };
                        let at = Instant::now();
                        let Ok(s) = serde_json::from_slice::<disco::model::AgentStatus>(&value)
                        else {
                            continue;
                        };
                        let revision = s.applied_revision;
                        seen.lock().unwrap().push((at, s));
                        tx.send_modify(|r| *r = (*r).max(revision));
                    }
                }
            })
        };
        StatusLog {
            seen,
            applied,
            task,
        }
    }

    /// When the first status with `applied_revision >= revision` arrived, and that
    /// status; waits up to `timeout` for it. Panics on timeout (with the agent's last
    /// error, if any).
    pub async fn until(
        &mut self,
        revision: i64,
        timeout: Duration,
    ) -> (Instant, disco::model::AgentStatus) {
        let reached =
            tokio::time::timeout(timeout, self.applied.wait_for(|r| *r >= revision)).await;
        let seen = self.seen.lock().unwrap();
        if !matches!(reached, Ok(Ok(_))) {
            let error = seen.iter().rev().find_map(|(_, s)| s.last_error.clone());
            panic!(
                "revision {revision} not applied within {timeout:?}; last agent error: {error:?}"
            );
        }
        seen.iter()
            .find(|(_, s)| s.applied_revision >= revision)
            .cloned()
            .expect("a status at or after the revision")
    }

    /// The latest status seen, if any.
    pub fn latest(&self) -> Option<disco::model::AgentStatus> {
        self.seen.lock().unwrap().last().map(|(_, s)| s.clone())
    }
}

impl Drop for StatusLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The agent's one target in a status (the benchmarks run one target per agent).
pub fn only_target(s: &disco::model::AgentStatus) -> disco::model::TargetStatus {
    s.targets.values().next().cloned().unwrap_or_default()
}

/// A client of the benchmark's own etcd.
pub fn store_for(etcd: &disco_harness::Etcd) -> disco::store::Store {
    disco::store::Store::new(disco::store::EtcdConfig {
        endpoints: etcd.endpoints(),
        ..disco::store::EtcdConfig::default()
    })
    .expect("a client of the benchmark's etcd")
}
