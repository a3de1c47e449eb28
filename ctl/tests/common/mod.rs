//! Helpers for discoctl's integration tests: run `discoctl` against a real etcd, and
//! real `disco-agent` processes with a template target (no HAProxy/nginx needed), whose
//! published status and rendered file the tests check. Adapted from
//! `agent/tests/common/mod.rs`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use disco::model::AgentStatus;
use disco::store::{EtcdConfig, Store};
use disco::{Key, Keyspace};
use disco_harness::{Etcd, Haproxy, Nginx};

/// Runs discoctl against `etcd` with `args`.
pub fn discoctl(etcd: &Etcd, args: &[&str]) -> Output {
    command(etcd, args).output().expect("running discoctl")
}

/// A discoctl command against `etcd`, not yet started.
pub fn command(etcd: &Etcd, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_discoctl"));
    c.args(args)
        .env("DISCO_ETCD_ENDPOINTS", etcd.endpoints().join(","))
        .env("DISCO_ACTOR", "tester@ci")
        .env_remove("DISCO_PREFIX");
    c
}

/// Runs discoctl and returns its stdout; panics with its stderr if it failed.
pub fn ok(etcd: &Etcd, args: &[&str]) -> String {
    let out = discoctl(etcd, args);
    assert!(
        out.status.success(),
        "discoctl {args:?} failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs discoctl with `-o json` and parses its output; panics if it failed.
pub fn ok_json(etcd: &Etcd, args: &[&str]) -> serde_json::Value {
    let args: Vec<&str> = ["-o", "json"].iter().chain(args).copied().collect();
    let out = ok(etcd, &args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

pub fn store(etcd: &Etcd) -> Store {
    Store::new(EtcdConfig {
        endpoints: etcd.endpoints(),
        connect_timeout: Duration::from_millis(500),
        ..EtcdConfig::default()
    })
    .unwrap()
}

/// Every key and value in etcd, in key order.
pub async fn all_keys(store: &Store) -> Vec<(String, Vec<u8>)> {
    let (_, kvs) = store.get_prefix("/", None).await.unwrap();
    kvs.into_iter().map(|kv| (kv.key, kv.value)).collect()
}

pub fn key(k: Key) -> String {
    Keyspace::default().key(&k)
}

pub fn route_key(app: &str, instance: &str) -> String {
    key(Key::Route {
        app: app.into(),
        instance: instance.into(),
    })
}

pub fn endpoint_key(app: &str, instance: &str, version: &str) -> String {
    key(Key::Endpoint {
        app: app.into(),
        instance: instance.into(),
        version: version.into(),
    })
}

/// Every slot of `app` → its version, as stored.
pub async fn routes(store: &Store, app: &str) -> std::collections::BTreeMap<String, String> {
    let (_, kvs) = store
        .get_prefix(&Keyspace::default().routes(app), None)
        .await
        .unwrap();
    kvs.into_iter()
        .map(|kv| {
            let instance = kv.key.rsplit('/').next().unwrap().to_string();
            (instance, String::from_utf8(kv.value).unwrap())
        })
        .collect()
}

/// The `disco-agent` binary of this workspace, built once per test process.
///
/// `CARGO_BIN_EXE_disco-agent` exists only inside the agent's own package, so the path
/// is found next to this test's own binary (`target/<profile>/deps/..`). `cargo test
/// --workspace` (scripts/test.sh, CI) builds it before any test runs; for `cargo test -p
/// discoctl` it is built here (cargo does not hold its lock while tests run). If that
/// build fails (say, agent/ mid-edit), an existing binary is used with a warning.
pub fn agent_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let exe = std::env::current_exe().expect("test binary path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary under target/<profile>/deps");
        let binary = profile_dir.join("disco-agent");
        let mut build = Command::new(env!("CARGO"));
        build
            .args(["build", "--quiet", "-p", "disco-agent"])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let built = build.output().expect("running cargo build -p disco-agent");
        if !built.status.success() {
            let stderr = String::from_utf8_lossy(&built.stderr);
            assert!(
                binary.exists(),
                "`cargo build -p disco-agent` failed and {} does not exist:\n{stderr}",
                binary.display()
            );
            eprintln!(
                "warning: `cargo build -p disco-agent` failed; using the existing {}:\n{stderr}",
                binary.display()
            );
        }
        assert!(binary.exists(), "{} was not built", binary.display());
        binary
    })
}

/// The template every test agent renders: one `app/slot=version;` per slot, then
/// `dark=version;` and `weights=...;` when set. Only routable slots carry an address.
pub const TEMPLATE: &str = "{% for name, app in apps|items %}{% for s in app.slots %}{{ name }}/{{ s.instance }}={{ s.version }};{% endfor %}{% if app.dark %}{{ name }}:dark={{ app.dark.version }}{% for m in app.dark.matches %},{{ m.kind }}:{{ m.value }}{% endfor %};{% endif %}{% for v, p in app.weights|items %}{{ name }}:weight:{{ v }}={{ p }};{% endfor %}{% endfor %}";

/// A running disco-agent with a template target in its own temp dir; killed on drop.
pub struct Agent {
    child: Option<Child>,
    pub id: String,
    pub dir: tempfile::TempDir,
    pub out: PathBuf,
    pub log: PathBuf,
}

impl Agent {
    /// Starts LB agent `id` rendering [`TEMPLATE`], with a status lease of `status_ttl`.
    pub fn start(etcd: &Etcd, id: &str, status_ttl: &str) -> Agent {
        Agent::with_target(etcd, id, status_ttl, |dir| {
            let template = dir.join("t.j2");
            std::fs::write(&template, TEMPLATE).unwrap();
            format!(
                "[[target]]\nkind = \"template\"\npath = \"{}\"\ntemplate = \"{}\"\n",
                dir.join("out.conf").display(),
                template.display()
            )
        })
    }

    /// Starts agent `id` with the `[[target]]` section `target` returns for its temp dir.
    pub fn with_target(
        etcd: &Etcd,
        id: &str,
        status_ttl: &str,
        target: impl FnOnce(&Path) -> String,
    ) -> Agent {
        Agent::with_config(etcd, id, status_ttl, "", target)
    }

    /// Like [`Agent::with_target`], with `top` (top-level settings such as
    /// `stats_interval = "200ms"`) added before the tables.
    pub fn with_config(
        etcd: &Etcd,
        id: &str,
        status_ttl: &str,
        top: &str,
        target: impl FnOnce(&Path) -> String,
    ) -> Agent {
        let dir = tempfile::Builder::new()
            .prefix(&format!("discoctl-agent-{id}-"))
            .tempdir()
            .unwrap();
        let out = dir.path().join("out.conf");
        let config = dir.path().join("agent.toml");
        std::fs::write(
            &config,
            format!(
                r#"agent_id = "{id}"
cache_path = "{cache}"
status_ttl = "{status_ttl}"
max_delay = "50ms"
{top}
[etcd]
endpoints = {endpoints:?}
connect_timeout = "500ms"
{target}"#,
                cache = dir.path().join("cache.json").display(),
                endpoints = etcd.endpoints(),
                target = target(dir.path()),
            ),
        )
        .unwrap();
        let log = dir.path().join("agent.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(agent_binary())
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info,disco=debug")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("starting disco-agent");
        Agent {
            child: Some(child),
            id: id.to_string(),
            dir,
            out,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends a signal by name (STOP, CONT, TERM, ...).
    pub fn signal(&self, name: &str) {
        assert!(
            disco_harness::process::send(self.pid(), name),
            "kill -{name} {}",
            self.pid()
        );
    }

    /// What the agent has rendered so far ("" before the first apply).
    pub fn rendered(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
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
        if let Some(mut child) = self.child.take() {
            // SIGKILL works on a stopped process too.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The agent's published status, if any.
pub async fn status(store: &Store, id: &str) -> Option<AgentStatus> {
    let (_, kv) = store.get(&key(Key::Agent { id: id.into() })).await.ok()?;
    serde_json::from_slice(&kv?.value).ok()
}

/// Waits (up to 30 s) until the agent reports `revision` applied; returns its status.
pub async fn applied(store: &Store, agent: &Agent, revision: i64) -> AgentStatus {
    let what = format!("agent {} to apply revision {revision}", agent.id);
    disco_harness::wait_for_async(&what, Duration::from_secs(30), || async {
        status(store, &agent.id)
            .await
            .filter(|s| s.applied_revision >= revision)
    })
    .await
}

/// Writes app `app` listening on `listen`, with `endpoints` (instance, version,
/// address) and `routes` (instance, version), straight to etcd. Returns the revision
/// of the last write.
pub async fn seed_app(
    store: &Store,
    app: &str,
    listen: &str,
    endpoints: &[(&str, &str, String)],
    routes: &[(&str, &str)],
) -> i64 {
    let mut rev = store
        .put(
            &key(Key::Policy { app: app.into() }),
            format!(r#"{{"listen":"{listen}"}}"#),
            None,
        )
        .await
        .unwrap();
    for (instance, version, address) in endpoints {
        rev = store
            .put(
                &endpoint_key(app, instance, version),
                format!(r#"{{"address":"{address}"}}"#),
                None,
            )
            .await
            .unwrap();
    }
    for (instance, version) in routes {
        rev = store
            .put(&route_key(app, instance), *version, None)
            .await
            .unwrap();
    }
    rev
}

/// A real HAProxy (statistics from its stats socket) or nginx (statistics from its
/// access log) driven by its own LB agent, which publishes traffic statistics every
/// 200 ms. Serves app1 on `port` (the agent's listen override).
pub struct Proxy {
    pub agent: Agent,
    pub port: u16,
    _haproxy: Option<Haproxy>,
    _nginx: Option<Nginx>,
    _dir: tempfile::TempDir,
}

/// Top-level agent settings of every [`Proxy`]: statistics every 200 ms.
pub const STATS_EVERY_200MS: &str = "stats_interval = \"200ms\"";

impl Proxy {
    /// HAProxy with a stats socket, and LB agent `id` (status lease `status_ttl`).
    pub fn haproxy(etcd: &Etcd, id: &str, status_ttl: &str) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let fragment = dir.path().join("disco.cfg");
        let haproxy = Haproxy::start(&fragment);
        let port = disco_harness::ports::free_port();
        let agent = Agent::with_config(etcd, id, status_ttl, STATS_EVERY_200MS, |_| {
            format!(
                "[[target]]\nkind = \"haproxy\"\npath = \"{}\"\nhaproxy_config = \"{}\"\nmaster_socket = \"{}\"\nstats_socket = \"{}\"\n[target.listen]\napp1 = \"127.0.0.1:{port}\"\n",
                fragment.display(),
                haproxy.main_config().display(),
                haproxy.master_socket().display(),
                haproxy.stats_socket().display()
            )
        });
        Proxy {
            agent,
            port,
            _haproxy: Some(haproxy),
            _nginx: None,
            _dir: dir,
        }
    }

    /// nginx with disco's access log, and LB agent `id` (status lease `status_ttl`).
    pub fn nginx(etcd: &Etcd, id: &str, status_ttl: &str) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let fragment = dir.path().join("disco.conf");
        let nginx = Nginx::start(&fragment);
        let port = disco_harness::ports::free_port();
        let log = dir.path().join("disco-access.log");
        let agent = Agent::with_config(etcd, id, status_ttl, STATS_EVERY_200MS, |_| {
            format!(
                "[[target]]\nkind = \"nginx\"\npath = \"{}\"\nnginx_args = {:?}\npid_file = \"{}\"\naccess_log = \"{}\"\n[target.listen]\napp1 = \"127.0.0.1:{port}\"\n",
                fragment.display(),
                nginx.nginx_test_args(),
                nginx.pid_file().display(),
                log.display()
            )
        });
        Proxy {
            agent,
            port,
            _haproxy: None,
            _nginx: Some(nginx),
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

/// The highest mod revision under `<prefix>/apps/`: what every LB agent must apply.
pub async fn latest_revision(store: &Store) -> i64 {
    let (_, kvs) = store
        .get_prefix(&Keyspace::default().apps(), None)
        .await
        .unwrap();
    kvs.iter().map(|kv| kv.mod_revision).max().unwrap_or(0)
}

/// A discoctl running in the background with `-o json`, its stdout lines (events)
/// and stderr collected as they come.
pub struct Background {
    child: Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    pub args: Vec<String>,
}

impl Background {
    /// Starts `discoctl -o json <args>`.
    pub fn start(etcd: &Etcd, args: &[&str]) -> Background {
        use std::io::{BufRead, Read};
        let all: Vec<&str> = ["-o", "json"].iter().chain(args).copied().collect();
        let mut child = command(etcd, &all)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting discoctl");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let (l, e) = (lines.clone(), stderr.clone());
        let readers = vec![
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                    l.lock().unwrap().push(line);
                }
            }),
            std::thread::spawn(move || {
                let mut text = String::new();
                let mut err = err;
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    text.push_str(&String::from_utf8_lossy(&buf[..n]));
                    *e.lock().unwrap() = text.clone();
                }
            }),
        ];
        Background {
            child,
            lines,
            stderr,
            readers,
            args: all.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The events so far (stdout lines parsed as JSON).
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (up to `timeout`) for an event named `name` for which `pred` holds.
    pub fn wait_event(
        &mut self,
        name: &str,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(e) = self
                .events()
                .into_iter()
                .find(|e| e["event"] == name && pred(e))
            {
                return e;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "{:?} exited ({status}) before event {name}: events {:#?}\nstderr: {}",
                    self.args,
                    self.events(),
                    self.stderr()
                );
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "no event {name} from {:?} within {timeout:?}: events {:#?}\nstderr: {}",
                    self.args,
                    self.events(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits (up to `timeout`) for the exit; returns the code, the events and stderr.
    pub fn finish(mut self, timeout: Duration) -> (Option<i32>, Vec<serde_json::Value>, String) {
        let deadline = std::time::Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "{:?} still running after {timeout:?}: events {:#?}\nstderr: {}",
                    self.args,
                    self.events(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        (status.code(), self.events(), self.stderr())
    }

    /// SIGKILL, as a crash.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The canary record of `app`, if any.
pub async fn rollout(store: &Store, app: &str) -> Option<serde_json::Value> {
    let (_, kv) = store
        .get(&key(Key::Rollout { app: app.into() }))
        .await
        .unwrap();
    kv.map(|kv| serde_json::from_slice(&kv.value).unwrap())
}

/// Whether `app`'s canary lock is held.
pub async fn locked(store: &Store, app: &str) -> bool {
    let (_, kv) = store
        .get(&key(Key::RolloutLock { app: app.into() }))
        .await
        .unwrap();
    kv.is_some()
}

/// app1 with three slots on v1, every slot with a v1 endpoint (127.0.0.1:9001-9003) and
/// a v2 endpoint (127.0.0.1:9101-9103), listening on 127.0.0.1:8080.
pub async fn seed_three_slots(store: &Store) -> i64 {
    let endpoints: Vec<(&str, &str, String)> = ["instance1", "instance2", "instance3"]
        .iter()
        .enumerate()
        .flat_map(|(n, i)| {
            [
                (*i, "v1", format!("127.0.0.1:{}", 9001 + n)),
                (*i, "v2", format!("127.0.0.1:{}", 9101 + n)),
            ]
        })
        .collect();
    seed_app(
        store,
        "app1",
        "127.0.0.1:8080",
        &endpoints,
        &[
            ("instance1", "v1"),
            ("instance2", "v1"),
            ("instance3", "v1"),
        ],
    )
    .await
}
