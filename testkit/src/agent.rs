//! A real `disco-agent` process under test: its config file and log in a directory,
//! signals by name, the log printed when the test panics, killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// A running disco-agent; killed on drop (and its log printed if the test panics).
pub struct Agent {
    child: Option<Child>,
    pub id: String,
    /// Its config file, `<dir>/<id>.toml`.
    pub config: PathBuf,
    /// Its stdout and stderr, `<dir>/<id>.log`.
    pub log: PathBuf,
    /// The temp dir it owns, when it made its own ([`Agent::in_temp_dir`]).
    dir: Option<tempfile::TempDir>,
    log_filter: &'static str,
}

impl Agent {
    /// Starts `disco-agent --config <dir>/<id>.toml` with `config` as the file's content.
    pub fn start(dir: &Path, id: &str, config: &str) -> Agent {
        Agent::spawn_in(dir, None, id, config, "info,disco=debug,disco_agent=debug")
    }

    /// Starts agent `id` in a temp dir of its own, with the config `config` returns for
    /// that dir. The dir lives as long as the agent ([`Agent::dir`]).
    pub fn in_temp_dir(id: &str, config: impl FnOnce(&Path) -> String) -> Agent {
        let dir = tempfile::Builder::new()
            .prefix(&format!("disco-agent-{id}-"))
            .tempdir()
            .unwrap();
        let text = config(dir.path());
        let path = dir.path().to_path_buf();
        Agent::spawn_in(&path, Some(dir), id, &text, "info,disco=debug")
    }

    fn spawn_in(
        dir: &Path,
        owned: Option<tempfile::TempDir>,
        id: &str,
        config: &str,
        log_filter: &'static str,
    ) -> Agent {
        let path = dir.join(format!("{id}.toml"));
        std::fs::write(&path, config).unwrap();
        let mut agent = Agent {
            child: None,
            id: id.to_string(),
            config: path,
            log: dir.join(format!("{id}.log")),
            dir: owned,
            log_filter,
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
        let child = Command::new(agent_binary())
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", self.log_filter)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting disco-agent");
        self.child = Some(child);
    }

    /// The directory of its config and log.
    pub fn dir(&self) -> &Path {
        self.config.parent().expect("config in a directory")
    }

    /// Starts it again with the same config.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends a signal by name (TERM, HUP, STOP, CONT, ...).
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

    /// SIGKILL (works on a stopped process too).
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
        // The temp dir goes after the process.
        self.dir.take();
    }
}

/// The `disco-agent` binary of this workspace, built once per test process.
///
/// `CARGO_BIN_EXE_disco-agent` exists only inside the agent's own package, so the path
/// is found next to the running test's binary (`target/<profile>/deps/..`). Cargo
/// builds it before the agent's own tests, and `cargo test --workspace` (scripts/test.sh,
/// CI) before any test; for another package's tests run alone (`cargo test -p
/// discoctl`) it is built here (cargo does not hold its lock while tests run). If that
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
        // Cargo runs a package's tests with CARGO_PKG_NAME set, and has built that
        // package's binaries first.
        if std::env::var_os("CARGO_PKG_NAME").is_some_and(|p| p == "disco-agent") && binary.exists()
        {
            return binary;
        }
        let mut build = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
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
