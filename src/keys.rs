//! The key space: every etcd key disco reads or writes is built and parsed here, and
//! nowhere else.
//!
//! ```text
//! <prefix>/apps/<app>/endpoints/<instance>/<version>   endpoint record (JSON)
//! <prefix>/apps/<app>/routes/<instance>                routed version (plain text)
//! <prefix>/apps/<app>/policy                           app policy (JSON)
//! <prefix>/apps/<app>/rollout                          automated canary state (JSON)
//! <prefix>/agents/<agent-id>                           agent status (JSON, leased)
//! <prefix>/history/<app>/<seq>                         audit record (JSON)
//! <prefix>/stats/<app>/<agent-id>                      traffic stats of one LB agent (JSON, leased)
//! <prefix>/locks/rollout/<app>                         lock of the discoctl running a canary (JSON, leased)
//! ```
//!
//! What agents write (status, stats) lives outside `<prefix>/apps/`, which LB agents
//! watch, so that agents reporting never wake each other up; so does the canary lock,
//! whose lease expiring must not wake them either.

use crate::validate::{self, Invalid};

/// A key that could not be parsed: the key and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key {key:?}: {reason}")]
pub struct KeyError {
    /// The key as read.
    pub key: String,
    /// Why it is not a disco key.
    pub reason: String,
}

/// One key of the key space, without its prefix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    /// An endpoint of one version of one instance slot.
    Endpoint {
        app: String,
        instance: String,
        version: String,
    },
    /// Which version an instance slot serves.
    Route { app: String, instance: String },
    /// An app's policy: frontend, dark canary, weights.
    Policy { app: String },
    /// An automated canary in progress.
    Rollout { app: String },
    /// An agent's status.
    Agent { id: String },
    /// One audit record. The sequence number is written zero-padded so that keys sort
    /// in the order they were written.
    History { app: String, seq: u64 },
    /// One LB agent's traffic statistics for one app ([`crate::stats::AppStats`]).
    Stats { app: String, agent: String },
    /// The lock of the discoctl running an app's canary, under that discoctl's lease
    /// (the canary's state, [`Key::Rollout`], is not leased: it survives a crash).
    RolloutLock { app: String },
}

/// The prefix all keys live under (default `/disco`), normalised: it starts with `/`
/// and has no trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyspace {
    prefix: String,
}

impl Default for Keyspace {
    fn default() -> Self {
        Keyspace {
            prefix: "/disco".into(),
        }
    }
}

impl Keyspace {
    /// A key space under `prefix`, e.g. `/disco` or `/team-a/disco`.
    pub fn new(prefix: &str) -> Result<Self, Invalid> {
        let trimmed = prefix.trim_end_matches('/');
        if !prefix.starts_with('/') {
            return Err(Invalid::new("prefix", prefix, "must start with '/'"));
        }
        for part in trimmed.split('/').skip(1) {
            validate::name("prefix component", part)?;
        }
        Ok(Keyspace {
            prefix: trimmed.to_string(),
        })
    }

    /// The prefix, without trailing slash.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>/apps/`: everything an LB agent watches.
    pub fn apps(&self) -> String {
        format!("{}/apps/", self.prefix)
    }

    /// `<prefix>/apps/<app>/`: one app's keys.
    pub fn app(&self, app: &str) -> String {
        format!("{}/apps/{app}/", self.prefix)
    }

    /// `<prefix>/apps/<app>/routes/`: one app's slots.
    pub fn routes(&self, app: &str) -> String {
        format!("{}/apps/{app}/routes/", self.prefix)
    }

    /// `<prefix>/agents/`: every agent's status.
    pub fn agents(&self) -> String {
        format!("{}/agents/", self.prefix)
    }

    /// `<prefix>/history/<app>/`: one app's audit log.
    pub fn history(&self, app: &str) -> String {
        format!("{}/history/{app}/", self.prefix)
    }

    /// `<prefix>/stats/<app>/`: every agent's traffic statistics of one app.
    pub fn stats(&self, app: &str) -> String {
        format!("{}/stats/{app}/", self.prefix)
    }

    /// `<prefix>/stats/`: every traffic statistic.
    pub fn all_stats(&self) -> String {
        format!("{}/stats/", self.prefix)
    }

    /// `<prefix>/history/`: every app's audit log.
    pub fn all_history(&self) -> String {
        format!("{}/history/", self.prefix)
    }

    /// `<prefix>/locks/rollout/`: the locks of every running canary.
    pub fn rollout_locks(&self) -> String {
        format!("{}/locks/rollout/", self.prefix)
    }

    /// The full etcd key for `key`.
    pub fn key(&self, key: &Key) -> String {
        let p = &self.prefix;
        match key {
            Key::Endpoint {
                app,
                instance,
                version,
            } => format!("{p}/apps/{app}/endpoints/{instance}/{version}"),
            Key::Route { app, instance } => format!("{p}/apps/{app}/routes/{instance}"),
            Key::Policy { app } => format!("{p}/apps/{app}/policy"),
            Key::Rollout { app } => format!("{p}/apps/{app}/rollout"),
            Key::Agent { id } => format!("{p}/agents/{id}"),
            Key::History { app, seq } => format!("{p}/history/{app}/{seq:020}"),
            Key::Stats { app, agent } => format!("{p}/stats/{app}/{agent}"),
            Key::RolloutLock { app } => format!("{p}/locks/rollout/{app}"),
        }
    }

    /// Parses a full etcd key; every name in it is validated.
    pub fn parse(&self, full: &str) -> Result<Key, KeyError> {
        let err = |reason: String| KeyError {
            key: full.to_string(),
            reason,
        };
        let rest = full
            .strip_prefix(self.prefix.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| err(format!("not under prefix {:?}", self.prefix)))?;
        let parts: Vec<&str> = rest.split('/').collect();
        let check =
            |what: &'static str, s: &str| validate::name(what, s).map_err(|e| err(e.to_string()));
        let key = match parts.as_slice() {
            ["apps", app, "endpoints", instance, version] => {
                check("app name", app)?;
                check("instance name", instance)?;
                check("version name", version)?;
                Key::Endpoint {
                    app: app.to_string(),
                    instance: instance.to_string(),
                    version: version.to_string(),
                }
            }
            ["apps", app, "routes", instance] => {
                check("app name", app)?;
                check("instance name", instance)?;
                Key::Route {
                    app: app.to_string(),
                    instance: instance.to_string(),
                }
            }
            ["apps", app, "policy"] => {
                check("app name", app)?;
                Key::Policy {
                    app: app.to_string(),
                }
            }
            ["apps", app, "rollout"] => {
                check("app name", app)?;
                Key::Rollout {
                    app: app.to_string(),
                }
            }
            ["agents", id] => {
                check("agent id", id)?;
                Key::Agent { id: id.to_string() }
            }
            ["history", app, seq] => {
                check("app name", app)?;
                let seq = seq
                    .parse::<u64>()
                    .ok()
                    .filter(|_| seq.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| err(format!("history sequence {seq:?} is not a number")))?;
                Key::History {
                    app: app.to_string(),
                    seq,
                }
            }
            ["stats", app, agent] => {
                check("app name", app)?;
                check("agent id", agent)?;
                Key::Stats {
                    app: app.to_string(),
                    agent: agent.to_string(),
                }
            }
            ["locks", "rollout", app] => {
                check("app name", app)?;
                Key::RolloutLock {
                    app: app.to_string(),
                }
            }
            _ => return Err(err("not a disco key".into())),
        };
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_kinds() -> Vec<Key> {
        vec![
            Key::Endpoint {
                app: "app1".into(),
                instance: "instance1".into(),
                version: "v2".into(),
            },
            Key::Route {
                app: "app1".into(),
                instance: "instance1".into(),
            },
            Key::Policy { app: "app1".into() },
            Key::Rollout { app: "app1".into() },
            Key::Agent { id: "lb-1".into() },
            Key::History {
                app: "app1".into(),
                seq: 42,
            },
            Key::Stats {
                app: "app1".into(),
                agent: "lb-1".into(),
            },
            Key::RolloutLock { app: "app1".into() },
        ]
    }

    #[test]
    fn every_key_kind_round_trips_under_any_prefix() {
        for prefix in ["/disco", "/disco/", "/team-a/disco"] {
            let ks = Keyspace::new(prefix).unwrap();
            for key in all_kinds() {
                let full = ks.key(&key);
                assert!(full.starts_with(ks.prefix()));
                assert_eq!(ks.parse(&full).unwrap(), key, "{full}");
            }
        }
    }

    #[test]
    fn keys_look_like_the_design() {
        let ks = Keyspace::default();
        let keys: Vec<String> = all_kinds().iter().map(|k| ks.key(k)).collect();
        assert_eq!(
            keys,
            [
                "/disco/apps/app1/endpoints/instance1/v2",
                "/disco/apps/app1/routes/instance1",
                "/disco/apps/app1/policy",
                "/disco/apps/app1/rollout",
                "/disco/agents/lb-1",
                "/disco/history/app1/00000000000000000042",
                "/disco/stats/app1/lb-1",
                "/disco/locks/rollout/app1",
            ]
        );
        // Every key of a kind starts with that kind's root.
        for (root, key) in [
            (ks.all_history(), &keys[5]),
            (ks.all_stats(), &keys[6]),
            (ks.rollout_locks(), &keys[7]),
        ] {
            assert!(key.starts_with(&root), "{key} under {root}");
        }
    }

    #[test]
    fn history_keys_sort_in_sequence_order() {
        let ks = Keyspace::default();
        let k = |seq| {
            ks.key(&Key::History {
                app: "a".into(),
                seq,
            })
        };
        assert!(k(9) < k(10) && k(99) < k(100));
    }

    #[test]
    fn bad_keys_name_the_key_and_the_reason() {
        let ks = Keyspace::default();
        for (key, reason) in [
            ("/other/apps/a/policy", "not under prefix"),
            ("/discox/apps/a/policy", "not under prefix"),
            ("/disco/apps/a b/policy", "whitespace"),
            ("/disco/apps/a/routes/in;st", "';'"),
            ("/disco/apps/a/endpoints/i/v#1", "'#'"),
            ("/disco/apps/a/unknown", "not a disco key"),
            ("/disco/apps/a/routes/i/extra", "not a disco key"),
            ("/disco/history/a/12x", "not a number"),
            ("/disco/agents/", "must not be empty"),
            ("/disco/stats/app1", "not a disco key"),
            ("/disco/stats/app1/lb 1", "whitespace"),
        ] {
            let e = ks.parse(key).unwrap_err();
            assert_eq!(e.key, key);
            assert!(e.to_string().contains(reason), "{key}: {e}");
        }
        assert!(Keyspace::new("disco").is_err());
        assert!(Keyspace::new("/dis co").is_err());
    }
}
