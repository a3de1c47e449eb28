//! What only discoctl's integration tests need, on top of `disco_testkit`: running
//! `discoctl` against a real etcd (in the foreground, or in the background collecting
//! its JSON events), and LB agents rendering a template whose text is the routing
//! (no HAProxy/nginx needed) or driving a real proxy that publishes statistics.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use disco::store::Store;
use disco_harness::{Etcd, Haproxy, Nginx};
pub use disco_testkit::*;

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

/// The template every test agent renders: one `app/slot=version;` per slot, then
/// `dark=version;` and `weights=...;` when set. Only routable slots carry an address.
pub const TEMPLATE: &str = "{% for name, app in apps|items %}{% for s in app.slots %}{{ name }}/{{ s.instance }}={{ s.version }};{% endfor %}{% if app.dark %}{{ name }}:dark={{ app.dark.version }}{% for m in app.dark.matches %},{{ m.kind }}:{{ m.value }}{% endfor %};{% endif %}{% for v, p in app.weights|items %}{{ name }}:weight:{{ v }}={{ p }};{% endfor %}{% endfor %}";

/// LB agent `id` rendering [`TEMPLATE`] to `out.conf` in its temp dir, with a status
/// lease of `status_ttl`.
pub fn template_agent(etcd: &Etcd, id: &str, status_ttl: &str) -> Agent {
    agent_with_target(etcd, id, status_ttl, |dir| {
        let template = dir.join("t.j2");
        std::fs::write(&template, TEMPLATE).unwrap();
        TargetConfig::template(&dir.join("out.conf"), &template)
    })
}

/// LB agent `id` in a temp dir of its own with the target `target` returns for that
/// dir, a status lease of `status_ttl` and a 50 ms `max_delay`.
pub fn agent_with_target(
    etcd: &Etcd,
    id: &str,
    status_ttl: &str,
    target: impl FnOnce(&Path) -> TargetConfig,
) -> Agent {
    agent_with_config(etcd, id, status_ttl, |config| config, target)
}

/// [`agent_with_target`], with top-level settings added by `top`.
pub fn agent_with_config(
    etcd: &Etcd,
    id: &str,
    status_ttl: &str,
    top: impl FnOnce(AgentConfig) -> AgentConfig,
    target: impl FnOnce(&Path) -> TargetConfig,
) -> Agent {
    Agent::in_temp_dir(id, |dir| {
        top(AgentConfig::new(id, dir, &etcd.endpoints())
            .set("status_ttl", status_ttl)
            .set("max_delay", "50ms"))
        .target(target(dir))
        .toml()
    })
}

/// What an agent of [`template_agent`] rendered.
pub trait Rendered {
    /// What the agent has rendered so far ("" before the first apply).
    fn rendered(&self) -> String;
}

impl Rendered for Agent {
    fn rendered(&self) -> String {
        std::fs::read_to_string(self.dir().join("out.conf")).unwrap_or_default()
    }
}

/// A real HAProxy (statistics from its stats socket) or nginx (statistics from its
/// access log) driven by its own LB agent, which publishes traffic statistics every
/// 200 ms. Serves app1 on `port` (the agent's listen override).
pub struct ProxyAgent {
    pub agent: Agent,
    pub port: u16,
    _haproxy: Option<Haproxy>,
    _nginx: Option<Nginx>,
    _dir: tempfile::TempDir,
}

/// Top-level agent settings of every [`ProxyAgent`]: statistics every 200 ms.
pub fn stats_every_200ms(config: AgentConfig) -> AgentConfig {
    config.set("stats_interval", "200ms")
}

impl ProxyAgent {
    /// HAProxy with a stats socket, and LB agent `id` (status lease `status_ttl`).
    pub fn haproxy(etcd: &Etcd, id: &str, status_ttl: &str) -> ProxyAgent {
        ProxyAgent::haproxy_with(etcd, id, status_ttl, stats_every_200ms, |t, _, _| t)
    }

    /// HAProxy logging every request to the agent's `log_socket` (per-request times,
    /// statistics every second, and every `canary_stats_interval`, its default, for an
    /// app in a canary), routing changes through its Runtime API (`runtime_socket`),
    /// and LB agent `id` (status lease `status_ttl`).
    pub fn haproxy_logging(etcd: &Etcd, id: &str, status_ttl: &str) -> ProxyAgent {
        ProxyAgent::haproxy_with(
            etcd,
            id,
            status_ttl,
            |config| config.set("stats_interval", "1s"),
            |target, dir, haproxy| {
                target
                    .set("log_socket", dir.join("log.sock").display())
                    .set("runtime_socket", haproxy.stats_socket().display())
            },
        )
    }

    /// HAProxy with a stats socket and LB agent `id`: top-level settings from `top`,
    /// the target's extra settings from `extra` (given the agent's dir and HAProxy).
    fn haproxy_with(
        etcd: &Etcd,
        id: &str,
        status_ttl: &str,
        top: impl FnOnce(AgentConfig) -> AgentConfig,
        extra: impl FnOnce(TargetConfig, &Path, &Haproxy) -> TargetConfig,
    ) -> ProxyAgent {
        let dir = tempfile::tempdir().unwrap();
        let fragment = dir.path().join("disco.cfg");
        let haproxy = Haproxy::start(&fragment);
        let port = disco_harness::ports::free_port();
        let target = TargetConfig::haproxy(&fragment, &haproxy)
            .set("stats_socket", haproxy.stats_socket().display())
            .listen("app1", &format!("127.0.0.1:{port}"));
        let target = extra(target, dir.path(), &haproxy);
        let agent = agent_with_config(etcd, id, status_ttl, top, |_| target);
        ProxyAgent {
            agent,
            port,
            _haproxy: Some(haproxy),
            _nginx: None,
            _dir: dir,
        }
    }

    /// nginx with disco's access log, and LB agent `id` (status lease `status_ttl`).
    pub fn nginx(etcd: &Etcd, id: &str, status_ttl: &str) -> ProxyAgent {
        let dir = tempfile::tempdir().unwrap();
        let fragment = dir.path().join("disco.conf");
        let nginx = Nginx::start(&fragment);
        let port = disco_harness::ports::free_port();
        let log = dir.path().join("disco-access.log");
        let agent = agent_with_config(etcd, id, status_ttl, stats_every_200ms, |_| {
            TargetConfig::nginx(&fragment, &nginx)
                .set("access_log", log.display())
                .listen("app1", &format!("127.0.0.1:{port}"))
        });
        ProxyAgent {
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
