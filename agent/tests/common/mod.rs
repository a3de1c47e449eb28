//! Helpers for agent integration tests: run the real `disco-agent` binary with a config
//! in a temp dir, read its published status.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use disco::model::AgentStatus;
use disco::store::{EtcdConfig, Store};
use disco::{Key, Keyspace};

/// A running disco-agent; killed on drop.
pub struct Agent {
    child: Option<Child>,
    pub id: String,
    pub config: PathBuf,
    pub log: PathBuf,
}

impl Agent {
    /// Starts `disco-agent --config <dir>/<id>.toml` with `config` as the file's content.
    pub fn start(dir: &Path, id: &str, config: &str) -> Agent {
        let path = dir.join(format!("{id}.toml"));
        std::fs::write(&path, config).unwrap();
        let log = dir.join(format!("{id}.log"));
        let mut agent = Agent {
            child: None,
            id: id.to_string(),
            config: path,
            log,
        };
        agent.spawn();
        agent
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_disco-agent"))
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info,disco=debug,disco_agent=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting disco-agent");
        self.child = Some(child);
    }

    /// Starts it again with the same config.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends a signal by name (TERM, HUP, ...).
    pub fn signal(&self, name: &str) {
        assert!(
            disco_harness::process::send(self.pid(), name),
            "kill -{name} {}",
            self.pid()
        );
    }

    /// SIGTERM and wait for the exit; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        self.signal("TERM");
        let mut child = self.child.take().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("agent did not stop within 15s:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- log of agent {} ---\n{}", self.id, self.log_text());
        }
        self.kill();
    }
}

pub fn store(endpoints: Vec<String>) -> Store {
    Store::new(EtcdConfig {
        endpoints,
        connect_timeout: Duration::from_millis(500),
        ..EtcdConfig::default()
    })
    .unwrap()
}

pub fn key(k: Key) -> String {
    Keyspace::default().key(&k)
}

pub fn route(app: &str, instance: &str) -> String {
    key(Key::Route {
        app: app.into(),
        instance: instance.into(),
    })
}

pub fn endpoint(app: &str, instance: &str, version: &str) -> String {
    key(Key::Endpoint {
        app: app.into(),
        instance: instance.into(),
        version: version.into(),
    })
}

pub fn policy(app: &str) -> String {
    key(Key::Policy { app: app.into() })
}

/// The agent's published status, if any.
pub async fn status(store: &Store, id: &str) -> Option<AgentStatus> {
    let (_, kv) = store.get(&key(Key::Agent { id: id.into() })).await.ok()?;
    serde_json::from_slice(&kv?.value).ok()
}

/// Waits until the agent reports `revision` applied; returns its status.
pub async fn applied(store: &Store, agent: &Agent, revision: i64) -> AgentStatus {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = status(store, &agent.id).await {
            if s.applied_revision >= revision {
                return s;
            }
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "agent {} did not apply revision {revision} within 30s; status {:?}\n{}",
                agent.id,
                status(store, &agent.id).await,
                agent.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Writes an app with `slots` slots routed to `version`, one endpoint per slot and
/// version, listening on `listen`. Returns the revision of the last write.
pub async fn seed_app(
    store: &Store,
    app: &str,
    listen: &str,
    endpoints: &[(&str, &str, String)],
    routes: &[(&str, &str)],
) -> i64 {
    let mut rev = store
        .put(&policy(app), format!(r#"{{"listen":"{listen}"}}"#), None)
        .await
        .unwrap();
    for (instance, version, address) in endpoints {
        rev = store
            .put(
                &endpoint(app, instance, version),
                format!(r#"{{"address":"{address}","health_path":"/healthz"}}"#),
                None,
            )
            .await
            .unwrap();
    }
    for (instance, version) in routes {
        rev = store
            .put(&route(app, instance), *version, None)
            .await
            .unwrap();
    }
    rev
}

/// Waits until the agent's status satisfies `done`.
pub async fn wait(
    store: &Store,
    agent: &Agent,
    done: impl Fn(&AgentStatus) -> bool,
) -> AgentStatus {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = status(store, &agent.id).await {
            if done(&s) {
                return s;
            }
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "agent {}: condition not met within 30s; status {:?}\n{}",
                agent.id,
                status(store, &agent.id).await,
                agent.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The revision of the last change under `<prefix>/apps/` (what LB agents apply; agent
/// status writes move the store's revision, not this).
pub async fn apps_revision(store: &Store) -> i64 {
    let (_, kvs) = store
        .get_prefix(&Keyspace::default().apps(), None)
        .await
        .unwrap();
    kvs.iter().map(|kv| kv.mod_revision).max().unwrap_or(0)
}

/// A real HAProxy or nginx that an agent's target drives.
pub enum Proxy {
    Haproxy(disco_harness::Haproxy),
    Nginx(disco_harness::Nginx),
}

impl Proxy {
    /// Starts `kind` (`haproxy` or `nginx`) loading `fragment`.
    pub fn start(kind: &str, fragment: &Path) -> Proxy {
        match kind {
            "haproxy" => Proxy::Haproxy(disco_harness::Haproxy::start(fragment)),
            _ => Proxy::Nginx(disco_harness::Nginx::start(fragment)),
        }
    }

    /// The agent's `[[target]]` section for this proxy and `fragment`.
    pub fn target(&self, fragment: &Path) -> String {
        match self {
            Proxy::Haproxy(h) => format!(
                "[[target]]\nkind = \"haproxy\"\npath = \"{}\"\nhaproxy_config = \"{}\"\nmaster_socket = \"{}\"\ntimeout = \"20s\"\n",
                fragment.display(),
                h.main_config().display(),
                h.master_socket().display()
            ),
            Proxy::Nginx(n) => format!(
                "[[target]]\nkind = \"nginx\"\npath = \"{}\"\nnginx_args = {:?}\npid_file = \"{}\"\ntimeout = \"20s\"\n",
                fragment.display(),
                n.nginx_test_args(),
                n.pid_file().display()
            ),
        }
    }

    /// What the agent renders for the routing state in etcd now.
    pub async fn render(&self, store: &Store) -> String {
        let ks = Keyspace::default();
        let (revision, kvs) = store.get_prefix(&ks.apps(), None).await.unwrap();
        let snapshot =
            disco::Snapshot::from_kvs(&ks, revision, kvs.into_iter().map(|kv| (kv.key, kv.value)));
        match self {
            Proxy::Haproxy(_) => {
                disco::render::haproxy(&snapshot, &disco::render::HaproxyOptions::default()).text
            }
            Proxy::Nginx(_) => {
                disco::render::nginx(&snapshot, &disco::render::NginxOptions::default()).text
            }
        }
    }

    /// Reloads the proxy by hand (not through an agent).
    pub fn reload(&self) {
        match self {
            Proxy::Haproxy(h) => h.reload().map(drop),
            Proxy::Nginx(n) => n.reload().map(drop),
        }
        .expect("reloading the proxy by hand")
    }
}

/// Temp files of the agent's (staged or install temp files) in `dir`.
pub fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".staged-") || (n.contains(".disco-") && n.ends_with(".tmp")))
        .collect()
}
