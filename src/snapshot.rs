//! The whole routing state of a prefix at one etcd revision, built from key/values and
//! kept current by put/delete events. Pure and deterministic: the same revision gives
//! the same snapshot, byte for byte. Invalid records are kept out and listed as rejected.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::keys::{Key, Keyspace};
use crate::model::{AgentStatus, Endpoint, Policy, Rejected};
use crate::validate;

/// One change seen on the watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A key was written.
    Put { key: String, value: Vec<u8> },
    /// A key was deleted (or its lease expired).
    Delete {
        key: String,
        /// The lease the key was under, 0 for none or unknown: whether that lease still
        /// exists tells an explicit delete from an expiry.
        lease: i64,
    },
}

/// The routing state of one app.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// Instance slot → the version it serves.
    pub routes: BTreeMap<String, String>,
    /// Instance slot → version → endpoint. Registered endpoints, routed or not.
    pub endpoints: BTreeMap<String, BTreeMap<String, Endpoint>>,
    /// The app's policy, if one was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// The raw state of an automated canary in progress, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<serde_json::Value>,
}

/// A routed slot, resolved to its endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot<'a> {
    /// The instance slot.
    pub instance: &'a str,
    /// The version it routes to.
    pub version: &'a str,
    /// The endpoint of that version in that slot, if one is registered.
    pub endpoint: Option<&'a Endpoint>,
}

impl Slot<'_> {
    /// Why this slot cannot take traffic, or `None` if it can.
    pub fn unroutable_reason(&self) -> Option<&'static str> {
        match self.endpoint {
            None => Some("no endpoint registered for the routed version"),
            Some(e) if !e.is_healthy() => Some("endpoint reported failing"),
            Some(_) => None,
        }
    }
}

impl App {
    /// Every routed slot, in slot order, with its endpoint.
    pub fn slots(&self) -> impl Iterator<Item = Slot<'_>> {
        self.routes.iter().map(|(instance, version)| Slot {
            instance,
            version,
            endpoint: self.endpoints.get(instance).and_then(|v| v.get(version)),
        })
    }

    /// Every registered endpoint of `version`, in slot order.
    pub fn endpoints_of<'a>(
        &'a self,
        version: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Endpoint)> {
        self.endpoints
            .iter()
            .filter_map(move |(instance, by_version)| {
                by_version.get(version).map(|e| (instance.as_str(), e))
            })
    }

    fn is_empty(&self) -> bool {
        self.routes.is_empty()
            && self.endpoints.is_empty()
            && self.policy.is_none()
            && self.rollout.is_none()
    }
}

/// The routing state at one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The etcd revision this state is current at.
    pub revision: i64,
    /// App name → state.
    pub apps: BTreeMap<String, App>,
    /// Agent id → status (filled only when the agents prefix was read).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub agents: BTreeMap<String, AgentStatus>,
    /// Key → why it was refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rejected: BTreeMap<String, String>,
}

impl Snapshot {
    /// The registered endpoint of `app`'s slot `instance` in `version`, if any.
    pub fn endpoint(&self, app: &str, instance: &str, version: &str) -> Option<&Endpoint> {
        self.apps.get(app)?.endpoints.get(instance)?.get(version)
    }

    /// Builds the state at `revision` from every key/value read under the prefix.
    pub fn from_kvs<K, V>(
        keyspace: &Keyspace,
        revision: i64,
        kvs: impl IntoIterator<Item = (K, V)>,
    ) -> Self
    where
        K: Into<String>,
        V: AsRef<[u8]>,
    {
        let mut snapshot = Snapshot {
            revision,
            ..Snapshot::default()
        };
        for (key, value) in kvs {
            snapshot.put(keyspace, key.into(), value.as_ref());
        }
        snapshot
    }

    /// Applies changes seen at `revision`.
    pub fn apply(
        &mut self,
        keyspace: &Keyspace,
        revision: i64,
        changes: impl IntoIterator<Item = Change>,
    ) {
        for change in changes {
            match change {
                Change::Put { key, value } => self.put(keyspace, key, &value),
                Change::Delete { key, .. } => self.delete(keyspace, &key),
            }
        }
        self.revision = self.revision.max(revision);
    }

    /// The rejected records, in key order.
    pub fn rejected_list(&self) -> Vec<Rejected> {
        self.rejected
            .iter()
            .map(|(key, reason)| Rejected {
                key: key.clone(),
                reason: reason.clone(),
            })
            .collect()
    }

    fn put(&mut self, keyspace: &Keyspace, key: String, value: &[u8]) {
        // A new value replaces whatever was there, valid or not.
        self.delete(keyspace, &key);
        if let Err(reason) = self.insert(keyspace, &key, value) {
            self.rejected.insert(key, reason);
        }
    }

    fn insert(&mut self, keyspace: &Keyspace, full: &str, value: &[u8]) -> Result<(), String> {
        let key = keyspace.parse(full).map_err(|e| e.reason)?;
        let text = std::str::from_utf8(value).map_err(|_| "value is not UTF-8".to_string())?;
        fn json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
            serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))
        }
        match key {
            Key::Endpoint {
                app,
                instance,
                version,
            } => {
                let endpoint: Endpoint = json(text)?;
                endpoint.validate().map_err(|e| e.to_string())?;
                let app = self.apps.entry(app).or_default();
                app.endpoints
                    .entry(instance)
                    .or_default()
                    .insert(version, endpoint);
            }
            Key::Route { app, instance } => {
                let version = text.trim_end_matches('\n');
                validate::name("version name", version).map_err(|e| e.to_string())?;
                let app = self.apps.entry(app).or_default();
                app.routes.insert(instance, version.to_string());
            }
            Key::Policy { app } => {
                let policy: Policy = json(text)?;
                policy.validate().map_err(|e| e.to_string())?;
                self.apps.entry(app).or_default().policy = Some(policy);
            }
            Key::Rollout { app } => {
                let rollout: serde_json::Value = json(text)?;
                self.apps.entry(app).or_default().rollout = Some(rollout);
            }
            Key::Agent { id } => {
                let status: AgentStatus = json(text)?;
                if status.id != id {
                    return Err(format!(
                        "status names agent {:?}, key names {id:?}",
                        status.id
                    ));
                }
                self.agents.insert(id, status);
            }
            // The audit log, traffic statistics and locks are not routing state.
            Key::History { .. } | Key::Stats { .. } | Key::RolloutLock { .. } => {}
        }
        Ok(())
    }

    fn delete(&mut self, keyspace: &Keyspace, full: &str) {
        self.rejected.remove(full);
        let Ok(key) = keyspace.parse(full) else {
            return;
        };
        let app_name = match &key {
            Key::Endpoint { app, .. }
            | Key::Route { app, .. }
            | Key::Policy { app }
            | Key::Rollout { app } => app,
            Key::Agent { id } => {
                self.agents.remove(id);
                return;
            }
            Key::History { .. } | Key::Stats { .. } | Key::RolloutLock { .. } => return,
        };
        let Some(app) = self.apps.get_mut(app_name) else {
            return;
        };
        match &key {
            Key::Endpoint {
                instance, version, ..
            } => {
                if let Some(versions) = app.endpoints.get_mut(instance) {
                    versions.remove(version);
                    if versions.is_empty() {
                        app.endpoints.remove(instance);
                    }
                }
            }
            Key::Route { instance, .. } => {
                app.routes.remove(instance);
            }
            Key::Policy { .. } => app.policy = None,
            Key::Rollout { .. } => app.rollout = None,
            Key::Agent { .. }
            | Key::History { .. }
            | Key::Stats { .. }
            | Key::RolloutLock { .. } => {}
        }
        if app.is_empty() {
            self.apps.remove(app_name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ks() -> Keyspace {
        Keyspace::default()
    }

    fn seed() -> Vec<(&'static str, &'static str)> {
        vec![
            ("/disco/apps/app1/policy", r#"{"listen":"127.0.0.1:8080"}"#),
            ("/disco/apps/app1/routes/instance1", "v1"),
            ("/disco/apps/app1/routes/instance2", "v1"),
            ("/disco/apps/app1/routes/instance3", "v1"),
            (
                "/disco/apps/app1/endpoints/instance1/v1",
                r#"{"address":"127.0.0.1:9001"}"#,
            ),
            (
                "/disco/apps/app1/endpoints/instance2/v1",
                r#"{"address":"127.0.0.1:9002"}"#,
            ),
            (
                "/disco/apps/app1/endpoints/instance3/v1",
                r#"{"address":"127.0.0.1:9003"}"#,
            ),
            (
                "/disco/apps/app1/endpoints/instance1/v2",
                r#"{"address":"127.0.0.1:9101"}"#,
            ),
            // Refused, and the rest still works:
            (
                "/disco/apps/app1/endpoints/instance9/v1",
                r#"{"address":"1.2.3.4:80\n server evil 6.6.6.6:80"}"#,
            ),
            ("/disco/apps/app1/routes/instance4", "v1; drop"),
            ("/disco/apps/bad app/policy", "{}"),
            ("/disco/apps/app2/policy", "not json"),
            ("/disco/apps/app1/whatever", "x"),
        ]
    }

    #[test]
    fn builds_from_kvs_and_lists_rejected_records() {
        let s = Snapshot::from_kvs(&ks(), 7, seed());
        assert_eq!(s.revision, 7);
        let app = &s.apps["app1"];
        let slots: Vec<_> = app
            .slots()
            .map(|s| {
                (
                    s.instance,
                    s.version,
                    s.endpoint.map(|e| e.address.as_str()),
                )
            })
            .collect();
        assert_eq!(
            slots,
            [
                ("instance1", "v1", Some("127.0.0.1:9001")),
                ("instance2", "v1", Some("127.0.0.1:9002")),
                ("instance3", "v1", Some("127.0.0.1:9003")),
            ]
        );
        let rejected: Vec<&str> = s.rejected.keys().map(String::as_str).collect();
        assert_eq!(
            rejected,
            [
                "/disco/apps/app1/endpoints/instance9/v1",
                "/disco/apps/app1/routes/instance4",
                "/disco/apps/app1/whatever",
                "/disco/apps/app2/policy",
                "/disco/apps/bad app/policy",
            ]
        );
        assert!(s.rejected["/disco/apps/app1/endpoints/instance9/v1"].contains("control character"));
        assert!(s.rejected["/disco/apps/app2/policy"].contains("invalid JSON"));
        assert!(!s.apps.contains_key("app2"));
    }

    #[test]
    fn events_update_the_state_like_a_fresh_read() {
        let mut s = Snapshot::from_kvs(&ks(), 7, seed());
        s.apply(
            &ks(),
            8,
            [
                Change::Put {
                    key: "/disco/apps/app1/routes/instance1".into(),
                    value: b"v2".to_vec(),
                },
                // A bad record fixed by a later put leaves the rejected list.
                Change::Put {
                    key: "/disco/apps/app1/routes/instance4".into(),
                    value: b"v1".to_vec(),
                },
                // A good record overwritten with a bad one leaves the state.
                Change::Put {
                    key: "/disco/apps/app1/endpoints/instance3/v1".into(),
                    value: br#"{"address":"x y:1"}"#.to_vec(),
                },
                Change::Delete {
                    key: "/disco/apps/app2/policy".into(),
                    lease: 0,
                },
            ],
        );
        assert_eq!(s.revision, 8);
        let app = &s.apps["app1"];
        assert_eq!(app.routes["instance1"], "v2");
        assert_eq!(app.routes["instance4"], "v1");
        assert!(!app.endpoints.contains_key("instance3"));
        assert!(s
            .rejected
            .contains_key("/disco/apps/app1/endpoints/instance3/v1"));
        assert!(!s.rejected.contains_key("/disco/apps/app2/policy"));
        let unroutable: Vec<_> = app
            .slots()
            .filter_map(|s| s.unroutable_reason().map(|r| (s.instance, r)))
            .collect();
        assert_eq!(
            unroutable,
            [
                ("instance3", "no endpoint registered for the routed version"),
                ("instance4", "no endpoint registered for the routed version")
            ]
        );

        // Deleting every key of an app removes the app.
        let keys: Vec<String> = seed()
            .iter()
            .filter(|(k, _)| k.contains("/app1/"))
            .map(|(k, _)| k.to_string())
            .collect();
        s.apply(
            &ks(),
            9,
            keys.into_iter()
                .chain(["/disco/apps/app1/routes/instance4".to_string()])
                .map(|key| Change::Delete { key, lease: 0 }),
        );
        assert!(!s.apps.contains_key("app1"), "{:?}", s.apps.get("app1"));
    }

    #[test]
    fn deterministic_whatever_the_order() {
        let mut reversed = seed();
        reversed.reverse();
        let a = Snapshot::from_kvs(&ks(), 7, seed());
        let b = Snapshot::from_kvs(&ks(), 7, reversed);
        assert_eq!(a, b);
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
    }
}
