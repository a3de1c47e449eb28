//! The values stored under the keys of [`crate::keys`]: serde types, each with a
//! `validate` that refuses anything that could reach a config file unchecked.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::validate::{self, Invalid};

/// What an instance of one version listens on: `<prefix>/apps/<app>/endpoints/<instance>/<version>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// `host:port` the proxies connect to.
    pub address: String,
    /// HTTP path the proxies (and the registering agent) check; none means a TCP check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_path: Option<String>,
    /// Relative weight among the endpoints of one version, 1–256. Default 100.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// The last health-check result of the registering agent; none for endpoints an
    /// operator added by hand (they count as healthy: the proxies still check them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// The agent that registered this endpoint, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_by: Option<String>,
}

fn default_weight() -> u32 {
    100
}

impl Endpoint {
    /// An endpoint at `address` with defaults for the rest.
    pub fn new(address: impl Into<String>) -> Self {
        Endpoint {
            address: address.into(),
            health_path: None,
            weight: default_weight(),
            health: None,
            registered_by: None,
        }
    }

    /// Refuses an address, health path or weight that must not be rendered.
    pub fn validate(&self) -> Result<(), Invalid> {
        validate::address(&self.address)?;
        if let Some(p) = &self.health_path {
            validate::health_path(p)?;
        }
        if !(1..=256).contains(&self.weight) {
            return Err(Invalid::new(
                "weight",
                &self.weight.to_string(),
                "must be 1-256",
            ));
        }
        if let Some(by) = &self.registered_by {
            validate::name("agent id", by)?;
        }
        Ok(())
    }

    /// True unless the registering agent reports the endpoint failing.
    pub fn is_healthy(&self) -> bool {
        !matches!(&self.health, Some(h) if h.status == HealthStatus::Failing)
    }
}

/// A health-check result published with an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Passing or failing, after rise/fall counting.
    pub status: HealthStatus,
    /// When the last check ran (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<String>,
    /// What the last check saw ("200 OK", "connection refused"). Shown, never rendered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Health of an endpoint as its registering agent sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Passed `rise` consecutive checks.
    Passing,
    /// Failed `fall` consecutive checks.
    Failing,
}

/// How the proxy handles an app's traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// HTTP: health paths, retries, dark-canary header/cookie matches.
    #[default]
    Http,
    /// Plain TCP: only source-network dark matches.
    Tcp,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Http => "http",
            Mode::Tcp => "tcp",
        })
    }
}

impl std::str::FromStr for Mode {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        match s {
            "http" => Ok(Mode::Http),
            "tcp" => Ok(Mode::Tcp),
            _ => Err(Invalid::new("mode", s, "must be http or tcp")),
        }
    }
}

/// An app's policy: `<prefix>/apps/<app>/policy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Where the app's frontend listens (`host:port`). An app without it is not rendered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// `http` (default) or `tcp`.
    #[serde(default)]
    pub mode: Mode,
    /// The dark canary: matching requests go to this version's endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dark: Option<Dark>,
    /// Traffic share per version, in percent (0–100), for canaries by weight.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weights: BTreeMap<String, u32>,
}

impl Policy {
    /// Refuses a listen address, dark match or weight that must not be rendered.
    pub fn validate(&self) -> Result<(), Invalid> {
        if let Some(l) = &self.listen {
            validate::listen_address(l)?;
        }
        if let Some(dark) = &self.dark {
            dark.validate()?;
            if self.mode == Mode::Tcp && dark.matches.iter().any(|m| !matches!(m, Match::Cidr(_))) {
                return Err(Invalid::new(
                    "dark match",
                    "header/cookie",
                    "a tcp app can only match source networks",
                ));
            }
        }
        let mut total = 0;
        for (version, percent) in &self.weights {
            validate::name("version name", version)?;
            if *percent > 100 {
                return Err(Invalid::new(
                    "weight",
                    &percent.to_string(),
                    "must be 0-100 percent",
                ));
            }
            total += percent;
        }
        if total > 100 {
            return Err(Invalid::new(
                "weights",
                &total.to_string(),
                "add up to more than 100 percent",
            ));
        }
        Ok(())
    }
}

/// The dark canary of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dark {
    /// The version matching requests are sent to.
    pub version: String,
    /// A request matches if any of these matches.
    pub matches: Vec<Match>,
}

impl Dark {
    /// Refuses a version name or match value that must not be rendered.
    pub fn validate(&self) -> Result<(), Invalid> {
        validate::name("version name", &self.version)?;
        if self.matches.is_empty() {
            return Err(Invalid::new("dark match", "", "needs at least one match"));
        }
        self.matches.iter().try_for_each(Match::validate)
    }
}

/// One way to recognise internal traffic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Match {
    /// A request header with this exact value.
    Header { name: String, value: String },
    /// A cookie with this exact value.
    Cookie { name: String, value: String },
    /// A source network, e.g. `10.0.0.0/8`.
    Cidr(String),
}

impl Match {
    /// Refuses a name or value that must not be rendered.
    pub fn validate(&self) -> Result<(), Invalid> {
        match self {
            Match::Header { name, value } => {
                validate::token("header name", name)?;
                validate::match_value("header value", value)
            }
            Match::Cookie { name, value } => {
                validate::token("cookie name", name)?;
                validate::match_value("cookie value", value)
            }
            Match::Cidr(net) => validate::cidr(net).map(drop),
        }
    }

    /// Parses the command-line forms `NAME=VALUE` for headers and cookies.
    pub fn parse_pair(kind: &str, s: &str) -> Result<Match, Invalid> {
        let (name, value) = s
            .split_once('=')
            .ok_or_else(|| Invalid::new("dark match", s, "expected NAME=VALUE"))?;
        let m = match kind {
            "header" => Match::Header {
                name: name.into(),
                value: value.into(),
            },
            _ => Match::Cookie {
                name: name.into(),
                value: value.into(),
            },
        };
        m.validate()?;
        Ok(m)
    }
}

/// What an agent publishes about itself: `<prefix>/agents/<id>`, under a lease.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// The agent id (also the key).
    pub id: String,
    /// Roles this agent runs: `lb`, `register`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The etcd revision of the routing state the agent has applied, or 0.
    #[serde(default)]
    pub applied_revision: i64,
    /// Per target: what was installed.
    #[serde(default)]
    pub targets: BTreeMap<String, TargetStatus>,
    /// The last failure (render, validate, install, reload), none when the last apply
    /// succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the last apply succeeded (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<String>,
    /// Records the agent refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<Rejected>,
    /// Endpoints the agent keeps rendering although their registrations expired (the
    /// mass-expiry guard), one line per app; empty normally.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<String>,
    /// Routed slots the agent left out (missing or failing endpoint).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// When this status was written (RFC 3339).
    #[serde(default)]
    pub updated_at: String,
    /// The agent's build version.
    #[serde(default)]
    pub agent_version: String,
}

/// What one target has installed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetStatus {
    /// `haproxy`, `nginx` or `template`.
    pub kind: String,
    /// The file the agent owns.
    pub path: String,
    /// SHA-256 of the installed content, hex.
    pub hash: String,
    /// The revision this content was rendered from.
    pub revision: i64,
    /// Reloads this agent has made of this target since it started.
    #[serde(default)]
    pub reloads: u64,
    /// Changes this agent has applied to this target through HAProxy's Runtime API
    /// (read back and confirmed, no reload) since it started.
    #[serde(default)]
    pub runtime_applies: u64,
    /// How the last change reached the proxy: `runtime` or `reload`; none before the
    /// first change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_by: Option<String>,
}

/// A record kept out of the routing state, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Rejected {
    /// The etcd key.
    pub key: String,
    /// Why it was refused.
    pub reason: String,
}

/// One audit record: `<prefix>/history/<app>/<seq>`, written in the same transaction
/// as the change it describes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    /// Sequence number within the app (also the key).
    pub seq: u64,
    /// When (RFC 3339).
    pub at: String,
    /// Who: `user@host`, or `--actor`.
    pub actor: String,
    /// The verb: `route set`, `promote`, `rollback`, `switch`, ...
    pub action: HistoryAction,
    /// Slot → version before the change.
    #[serde(default)]
    pub from: BTreeMap<String, String>,
    /// Slot → version after the change.
    #[serde(default)]
    pub to: BTreeMap<String, String>,
    /// Free text: why (e.g. an automated rollback's reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For policy changes (`dark`, `weight`): the policy before and after; none for
    /// changes of routes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyChange>,
    /// A unique id of the change, set when it is committed: after a lost reply, reading
    /// the record back tells whether this very change was committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl HistoryRecord {
    /// The audit record of a change about to be committed, dated now: `seq` and `id`
    /// are set when it is added to the transaction ([`crate::change::ChangeSet::record`]).
    pub fn new(
        actor: &str,
        action: HistoryAction,
        from: BTreeMap<String, String>,
        to: BTreeMap<String, String>,
        policy: Option<PolicyChange>,
        reason: Option<String>,
    ) -> HistoryRecord {
        HistoryRecord {
            seq: 0,
            at: now_rfc3339(),
            actor: actor.to_string(),
            action,
            from,
            to,
            reason,
            policy,
            id: None,
        }
    }
}

/// An audit record's verb, stored as its name (`"route set"`, `"promote"`, ...). A
/// name this version does not know (written by a newer discoctl, or by hand) is kept as
/// [`HistoryAction::Other`], so that every stored record still reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub enum HistoryAction {
    /// `discoctl route set`.
    RouteSet,
    /// `discoctl promote`.
    Promote,
    /// `discoctl switch`.
    Switch,
    /// `discoctl rollback`, and a canary's automatic rollback.
    Rollback,
    /// `discoctl dark`.
    Dark,
    /// `discoctl weight`.
    Weight,
    /// A step of `discoctl canary`.
    Canary,
    /// Any other name, as stored.
    Other(String),
}

impl HistoryAction {
    /// The name stored in the record.
    pub fn as_str(&self) -> &str {
        match self {
            HistoryAction::RouteSet => "route set",
            HistoryAction::Promote => "promote",
            HistoryAction::Switch => "switch",
            HistoryAction::Rollback => "rollback",
            HistoryAction::Dark => "dark",
            HistoryAction::Weight => "weight",
            HistoryAction::Canary => "canary",
            HistoryAction::Other(name) => name,
        }
    }
}

impl From<&str> for HistoryAction {
    fn from(name: &str) -> HistoryAction {
        match name {
            "route set" => HistoryAction::RouteSet,
            "promote" => HistoryAction::Promote,
            "switch" => HistoryAction::Switch,
            "rollback" => HistoryAction::Rollback,
            "dark" => HistoryAction::Dark,
            "weight" => HistoryAction::Weight,
            "canary" => HistoryAction::Canary,
            other => HistoryAction::Other(other.to_string()),
        }
    }
}

impl From<String> for HistoryAction {
    fn from(name: String) -> HistoryAction {
        HistoryAction::from(name.as_str())
    }
}

impl Serialize for HistoryAction {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for HistoryAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A policy change in an audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyChange {
    /// The policy before; none if the app had none.
    #[serde(default)]
    pub from: Option<Policy>,
    /// The policy after.
    #[serde(default)]
    pub to: Option<Policy>,
}

/// Now, as RFC 3339 with milliseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_json_has_defaults_and_refuses_injection() {
        let e: Endpoint = serde_json::from_str(r#"{"address":"10.0.0.5:8081"}"#).unwrap();
        assert_eq!(e.weight, 100);
        e.validate().unwrap();
        for bad in [
            r#"{"address":"10.0.0.5:8081\n  server x 1.2.3.4:80"}"#,
            r#"{"address":"10.0.0.5:8081","health_path":"/h check inter 1"}"#,
            r#"{"address":"10.0.0.5:8081","weight":0}"#,
            r#"{"address":"10.0.0.5:8081","weight":1000}"#,
        ] {
            let e: Endpoint = serde_json::from_str(bad).unwrap();
            assert!(e.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn policy_round_trips_and_validates() {
        let p = Policy {
            listen: Some("127.0.0.1:8080".into()),
            mode: Mode::Http,
            dark: Some(Dark {
                version: "v2".into(),
                matches: vec![
                    Match::Header {
                        name: "X-Canary".into(),
                        value: "1".into(),
                    },
                    Match::Cidr("10.0.0.0/8".into()),
                ],
            }),
            weights: BTreeMap::from([("v2".into(), 5)]),
        };
        p.validate().unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Policy>(&json).unwrap(), p);

        let mut bad = p.clone();
        bad.dark.as_mut().unwrap().matches[0] = Match::Header {
            name: "X-Canary".into(),
            value: "1\"; server evil".into(),
        };
        assert!(bad.validate().is_err());
        let mut tcp = p.clone();
        tcp.mode = Mode::Tcp;
        assert!(tcp.validate().is_err());
        let mut heavy = p;
        heavy.weights.insert("v3".into(), 96);
        assert!(heavy.validate().is_err());
    }

    #[test]
    fn history_record_new_dates_the_record_and_leaves_seq_and_id_to_the_commit() {
        let from = BTreeMap::from([("instance1".to_string(), "v1".to_string())]);
        let to = BTreeMap::from([("instance1".to_string(), "v2".to_string())]);
        let r = HistoryRecord::new(
            "ann@ops",
            HistoryAction::Promote,
            from.clone(),
            to.clone(),
            None,
            Some("why".into()),
        );
        assert_eq!((r.seq, r.id.as_deref()), (0, None));
        assert_eq!((r.actor.as_str(), &r.from, &r.to), ("ann@ops", &from, &to));
        assert_eq!(r.reason.as_deref(), Some("why"));
        assert!(humantime::parse_rfc3339(&r.at).is_ok(), "{}", r.at);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["action"], "promote");
        assert_eq!(serde_json::from_value::<HistoryRecord>(json).unwrap(), r);
    }

    #[test]
    fn history_actions_are_stored_by_name_and_unknown_names_still_read() {
        for (action, name) in [
            (HistoryAction::RouteSet, "route set"),
            (HistoryAction::Promote, "promote"),
            (HistoryAction::Switch, "switch"),
            (HistoryAction::Rollback, "rollback"),
            (HistoryAction::Dark, "dark"),
            (HistoryAction::Weight, "weight"),
            (HistoryAction::Canary, "canary"),
        ] {
            assert_eq!(serde_json::to_value(&action).unwrap(), name);
            assert_eq!(
                serde_json::from_value::<HistoryAction>(name.into()).unwrap(),
                action
            );
            assert_eq!(action.to_string(), name);
        }
        let stored =
            r#"{"seq":3,"at":"2024-01-01T00:00:00.000Z","actor":"x@y","action":"migrate"}"#;
        let r: HistoryRecord = serde_json::from_str(stored).unwrap();
        assert_eq!(r.action, HistoryAction::Other("migrate".into()));
        assert_eq!(serde_json::to_value(&r).unwrap()["action"], "migrate");
    }
}
