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
use disco_harness::Etcd;

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
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} {}", self.pid());
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
