//! The dashboard's copy of the state in etcd (routing, agents, audit log, traffic
//! statistics, canary locks), kept current from the watches by `follow`, and the hub
//! that hands it to the pages: the whole state when a page connects, then only what
//! changed (one message per app that changed), in order, through a broadcast channel.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use disco::model::HistoryRecord;
use disco::stats::AppStats;
use disco::{Change, Key, Keyspace, Snapshot};
use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::view::{self, Point};

/// How many traffic points each app keeps (one a second at most: two minutes).
pub const TRAFFIC_POINTS: usize = 120;
/// How many audit records of an app are kept (the page shows fewer).
const HISTORY_KEPT: usize = 20;

/// Which part of the key space a watch covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// `<prefix>/apps/`: routing and canary records.
    Apps,
    /// `<prefix>/agents/`: agent statuses.
    Agents,
    /// `<prefix>/history/`: audit records.
    History,
    /// `<prefix>/stats/`: traffic statistics.
    Stats,
    /// `<prefix>/locks/rollout/`: who runs a canary.
    Locks,
}

/// One message to the pages: an SSE event name and its JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub event: &'static str,
    pub data: String,
}

impl Message {
    fn new(event: &'static str, data: &Value) -> Arc<Message> {
        Arc::new(Message {
            event,
            data: data.to_string(),
        })
    }
}

/// Whether the dashboard hears from etcd.
#[derive(Debug, Clone, Default, PartialEq)]
struct Connection {
    live: bool,
    error: Option<String>,
}

/// The state the pages are built from.
#[derive(Debug, Default)]
pub struct Model {
    keyspace: Keyspace,
    /// Apps (from `Part::Apps`) and agents (from `Part::Agents`).
    routing: Snapshot,
    /// The highest mod revision under `<prefix>/apps/`: what LB agents must apply.
    latest: i64,
    history: BTreeMap<String, VecDeque<HistoryRecord>>,
    /// App → agent → its latest record.
    stats: BTreeMap<String, BTreeMap<String, AppStats>>,
    /// Apps whose statistics changed since the last traffic point.
    stats_changed: BTreeSet<String>,
    traffic: BTreeMap<String, VecDeque<Point>>,
    locks: BTreeSet<String>,
    /// The last view sent of each app, so that an unchanged app sends nothing.
    views: BTreeMap<String, Value>,
    agents_view: Value,
    connection: Connection,
    /// What the page's header says about the actions.
    actions: Value,
}

impl Model {
    /// An empty model of the key space `keyspace`; `actions` tells the page whether it
    /// may offer actions and as whom.
    pub fn new(keyspace: Keyspace, actions: Value) -> Model {
        Model {
            keyspace,
            actions,
            ..Model::default()
        }
    }

    /// Everything, for a page that connects.
    pub fn full(&self) -> Value {
        let traffic: BTreeMap<&String, &VecDeque<Point>> = self.traffic.iter().collect();
        json!({
            "meta": self.meta(),
            "agents": self.agents_view,
            "apps": self.views,
            "traffic": traffic,
        })
    }

    fn meta(&self) -> Value {
        json!({
            "prefix": self.keyspace.prefix(),
            "revision": self.routing.revision,
            "latest": self.latest,
            "live": self.connection.live,
            "error": self.connection.error,
            "actions": self.actions,
        })
    }

    /// Replaces everything `part` holds with `kvs`, read at `revision`.
    pub fn reset(
        &mut self,
        part: Part,
        revision: i64,
        kvs: Vec<(String, Vec<u8>)>,
    ) -> Vec<Arc<Message>> {
        let mut touched = BTreeSet::new();
        match part {
            Part::Apps => {
                touched.extend(self.routing.apps.keys().cloned());
                let agents = std::mem::take(&mut self.routing.agents);
                self.routing = Snapshot::from_kvs(&self.keyspace, revision, kvs);
                self.routing.agents = agents;
                touched.extend(self.routing.apps.keys().cloned());
                return self.messages(touched);
            }
            Part::Agents => self.routing.agents.clear(),
            Part::History => {
                touched.extend(self.history.keys().cloned());
                self.history.clear();
            }
            Part::Stats => {
                self.stats_changed.extend(self.stats.keys().cloned());
                self.stats.clear();
            }
            Part::Locks => touched.extend(std::mem::take(&mut self.locks)),
        }
        let changes = kvs
            .into_iter()
            .map(|(key, value)| Change::Put { key, value });
        touched.extend(self.apply_changes(part, changes));
        self.messages(touched)
    }

    /// Applies the changes a watch of `part` saw up to `revision`.
    pub fn apply(&mut self, part: Part, revision: i64, changes: Vec<Change>) -> Vec<Arc<Message>> {
        if part == Part::Apps {
            self.latest = self.latest.max(revision);
        }
        self.routing.revision = self.routing.revision.max(revision);
        let touched = self.apply_changes(part, changes);
        self.messages(touched)
    }

    /// Sets the highest mod revision under `<prefix>/apps/`, as read.
    pub fn set_latest(&mut self, latest: i64) -> Vec<Arc<Message>> {
        self.latest = self.latest.max(latest);
        self.messages(BTreeSet::new())
    }

    /// Records whether etcd answers.
    pub fn set_connection(&mut self, live: bool, error: Option<String>) -> Vec<Arc<Message>> {
        let next = Connection { live, error };
        if next == self.connection {
            return Vec::new();
        }
        self.connection = next;
        vec![Message::new("meta", &self.meta())]
    }

    /// A traffic point, now, of every app whose statistics changed since the last: one
    /// message for them all (none if none changed).
    pub fn sample_traffic(&mut self, at_ms: u64) -> Vec<Arc<Message>> {
        let mut points = serde_json::Map::new();
        for app in std::mem::take(&mut self.stats_changed) {
            let records = self.stats.get(&app).into_iter().flat_map(|r| r.values());
            let point = view::traffic_point(records, at_ms);
            let kept = self.traffic.entry(app.clone()).or_default();
            kept.push_back(point.clone());
            while kept.len() > TRAFFIC_POINTS {
                kept.pop_front();
            }
            points.insert(app, json!(point));
        }
        if points.is_empty() {
            return Vec::new();
        }
        vec![Message::new("traffic", &json!({ "points": points }))]
    }

    /// Applies `changes` of `part`; returns the apps whose view they may change.
    fn apply_changes(
        &mut self,
        part: Part,
        changes: impl IntoIterator<Item = Change>,
    ) -> BTreeSet<String> {
        let mut touched = BTreeSet::new();
        let ks = self.keyspace.clone();
        let changes: Vec<Change> = changes.into_iter().collect();
        if matches!(part, Part::Apps | Part::Agents) {
            for change in &changes {
                let key = match change {
                    Change::Put { key, .. } | Change::Delete { key, .. } => key,
                };
                if let Ok(
                    Key::Endpoint { app, .. }
                    | Key::Route { app, .. }
                    | Key::Policy { app }
                    | Key::Rollout { app },
                ) = ks.parse(key)
                {
                    touched.insert(app);
                }
            }
            let revision = self.routing.revision;
            self.routing.apply(&ks, revision, changes);
            return touched;
        }
        for change in changes {
            let (key, value) = match change {
                Change::Put { key, value } => (key, Some(value)),
                Change::Delete { key, .. } => (key, None),
            };
            match ks.parse(&key) {
                Ok(Key::History { app, seq }) => {
                    let records = self.history.entry(app.clone()).or_default();
                    records.retain(|r| r.seq != seq);
                    if let Some(record) =
                        value.and_then(|v| serde_json::from_slice::<HistoryRecord>(&v).ok())
                    {
                        let at = records.partition_point(|r| r.seq < record.seq);
                        records.insert(at, record);
                        while records.len() > HISTORY_KEPT {
                            records.pop_front();
                        }
                    }
                    touched.insert(app);
                }
                Ok(Key::Stats { app, agent }) => {
                    let records = self.stats.entry(app.clone()).or_default();
                    let parsed = value
                        .as_deref()
                        .and_then(|v| disco::stats::parse_records(&ks, [(key.as_str(), v)]).pop());
                    match parsed {
                        Some(record) => {
                            records.insert(agent, record);
                        }
                        None => {
                            records.remove(&agent);
                        }
                    }
                    if records.is_empty() {
                        self.stats.remove(&app);
                    }
                    self.stats_changed.insert(app);
                }
                Ok(Key::RolloutLock { app }) => {
                    if value.is_some() {
                        self.locks.insert(app.clone());
                    } else {
                        self.locks.remove(&app);
                    }
                    touched.insert(app);
                }
                _ => {}
            }
        }
        touched
    }

    /// The messages for the apps in `touched` whose view changed, and for the agents
    /// if theirs did (their lag depends on `latest`).
    fn messages(&mut self, touched: BTreeSet<String>) -> Vec<Arc<Message>> {
        let mut messages = Vec::new();
        for name in touched {
            let next = self.routing.apps.get(&name).map(|app| {
                let history: Vec<HistoryRecord> = self
                    .history
                    .get(&name)
                    .map(|h| h.iter().cloned().collect())
                    .unwrap_or_default();
                view::app(&name, app, &history, self.locks.contains(&name))
            });
            match next {
                Some(view) if self.views.get(&name) != Some(&view) => {
                    messages.push(Message::new("app", &json!({ "name": name, "view": view })));
                    self.views.insert(name, view);
                }
                None if self.views.remove(&name).is_some() => {
                    messages.push(Message::new("app", &json!({ "name": name, "view": null })));
                }
                _ => {}
            }
        }
        let agents = view::agents(&self.routing.agents, self.latest);
        if agents != self.agents_view {
            self.agents_view = agents;
            messages.push(Message::new("agents", &self.agents_view));
            messages.push(Message::new("meta", &self.meta()));
        }
        messages
    }
}

/// The model behind a lock, and the channel its changes go out on.
pub struct Hub {
    model: Mutex<Model>,
    sender: broadcast::Sender<Arc<Message>>,
}

impl Hub {
    pub fn new(model: Model) -> Hub {
        let (sender, _) = broadcast::channel(4096);
        Hub {
            model: Mutex::new(model),
            sender,
        }
    }

    /// Changes the model with `f` and sends the messages it returns, under the lock, so
    /// that a page subscribing meanwhile gets them after its full state, never before.
    pub fn update(&self, f: impl FnOnce(&mut Model) -> Vec<Arc<Message>>) {
        let mut model = self.model.lock().unwrap_or_else(|e| e.into_inner());
        for message in f(&mut model) {
            // No page connected: nobody to tell.
            let _ = self.sender.send(message);
        }
    }

    /// The full state now, and the changes after it.
    pub fn subscribe(&self) -> (Arc<Message>, broadcast::Receiver<Arc<Message>>) {
        let model = self.model.lock().unwrap_or_else(|e| e.into_inner());
        let receiver = self.sender.subscribe();
        (Message::new("init", &model.full()), receiver)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &str) -> Change {
        Change::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    fn model() -> Model {
        let mut m = Model::new(Keyspace::default(), json!({"allowed": false}));
        m.reset(
            Part::Apps,
            5,
            vec![
                ("/disco/apps/app1/routes/instance1".into(), b"v1".to_vec()),
                ("/disco/apps/app2/routes/instance1".into(), b"v1".to_vec()),
            ],
        );
        m.set_latest(5);
        m
    }

    fn events(messages: &[Arc<Message>]) -> Vec<(&'static str, Value)> {
        messages
            .iter()
            .map(|m| (m.event, serde_json::from_str(&m.data).unwrap()))
            .collect()
    }

    #[test]
    fn a_change_sends_only_the_app_it_touches() {
        let mut m = model();
        let sent = m.apply(
            Part::Apps,
            6,
            vec![put("/disco/apps/app2/routes/instance1", "v2")],
        );
        let sent = events(&sent);
        assert_eq!(sent[0].0, "app");
        assert_eq!(sent[0].1["name"], "app2");
        assert_eq!(sent[0].1["view"]["slots"][0]["version"], "v2");
        assert!(sent.iter().all(|(_, v)| v["name"] != "app1"), "{sent:?}");
        // The same value again changes no view: nothing is sent for the app.
        let again = m.apply(
            Part::Apps,
            7,
            vec![put("/disco/apps/app2/routes/instance1", "v2")],
        );
        assert!(events(&again).iter().all(|(e, _)| *e != "app"));
        // A deleted app is sent as null.
        let gone = m.apply(
            Part::Apps,
            8,
            vec![Change::Delete {
                key: "/disco/apps/app2/routes/instance1".into(),
                lease: 0,
            }],
        );
        assert_eq!(events(&gone)[0].1, json!({"name": "app2", "view": null}));
        assert_eq!(m.full()["apps"].as_object().unwrap().len(), 1);
    }

    #[test]
    fn history_locks_and_agents_reach_their_views() {
        let mut m = model();
        let record = |seq: u64, actor: &str| {
            format!(
                r#"{{"seq":{seq},"at":"t","actor":"{actor}","action":"promote","from":{{}},"to":{{}}}}"#
            )
        };
        m.reset(
            Part::History,
            9,
            vec![(
                "/disco/history/app1/00000000000000000001".into(),
                record(1, "ann").into_bytes(),
            )],
        );
        let sent = m.apply(
            Part::History,
            10,
            vec![put(
                "/disco/history/app1/00000000000000000002",
                &record(2, "dashboard:ops"),
            )],
        );
        let sent = events(&sent);
        let actors: Vec<&str> = sent[0].1["view"]["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["actor"].as_str().unwrap())
            .collect();
        assert_eq!(actors, ["dashboard:ops", "ann"], "newest first");

        let agent = r#"{"id":"lb1","roles":["lb"],"applied_revision":4}"#;
        let sent = events(&m.apply(Part::Agents, 11, vec![put("/disco/agents/lb1", agent)]));
        let agents = sent.iter().find(|(e, _)| *e == "agents").unwrap();
        assert_eq!(agents.1["agents"][0]["lag"], 1, "latest is 5, as read");

        m.apply(
            Part::Locks,
            12,
            vec![put("/disco/locks/rollout/app1", "{}")],
        );
        assert!(m.locks.contains("app1"));
    }

    #[test]
    fn traffic_is_sampled_only_for_apps_whose_statistics_changed() {
        let mut m = model();
        let record = r#"{"agent":"lb1","app":"app1","started_at":"t0","at":"t1","window_ms":1000,"interval_ms":1000,
            "versions":{"v1":{"total":{"requests":50,"errors_5xx":0},"window":{"requests":20,"errors_5xx":1}}}}"#;
        m.apply(Part::Stats, 13, vec![put("/disco/stats/app1/lb1", record)]);
        let sent = events(&m.sample_traffic(1000));
        assert_eq!(sent.len(), 1);
        let points = sent[0].1["points"].as_object().unwrap();
        assert_eq!(points.keys().collect::<Vec<_>>(), ["app1"]);
        assert_eq!(points["app1"]["versions"]["v1"]["rps"], 20.0);
        assert_eq!(points["app1"]["versions"]["v1"]["error_share"], 0.05);
        assert!(m.sample_traffic(2000).is_empty(), "nothing changed since");
        for i in 0..(TRAFFIC_POINTS as u64 + 5) {
            m.apply(
                Part::Stats,
                14 + i as i64,
                vec![put("/disco/stats/app1/lb1", record)],
            );
            m.sample_traffic(3000 + i);
        }
        assert_eq!(m.traffic["app1"].len(), TRAFFIC_POINTS);
        // A record whose key and content disagree is left out.
        m.apply(Part::Stats, 200, vec![put("/disco/stats/app1/lb2", record)]);
        assert_eq!(m.stats["app1"].len(), 1);
    }
}
