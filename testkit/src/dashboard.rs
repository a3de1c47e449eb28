//! A real `discoctl dashboard` process on a free loopback port: started against an
//! etcd, waited for until it answers, its output kept in a log file, killed on drop.
//! Shared by discoctl's browser test and the dashboard benchmark.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `discoctl dashboard`; killed on drop.
pub struct Dashboard {
    child: Child,
    /// `http://127.0.0.1:<port>/`.
    pub url: String,
    /// Its stdout (the actions' reports, one JSON line each) and stderr.
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Dashboard {
    /// Starts `<discoctl> dashboard --listen 127.0.0.1:<free port> <args>` against
    /// `endpoints` and waits (up to 30 s) until it answers `/healthz`.
    pub fn start(discoctl: &Path, endpoints: &[String], args: &[&str]) -> Dashboard {
        let dir = tempfile::Builder::new()
            .prefix("disco-dashboard-")
            .tempdir()
            .unwrap();
        let log = dir.path().join("dashboard.log");
        let out = std::fs::File::create(&log).unwrap();
        let port = disco_harness::ports::free_port();
        let listen = format!("127.0.0.1:{port}");
        let child = Command::new(discoctl)
            .args(["dashboard", "--listen", &listen])
            .args(args)
            .env("DISCO_ETCD_ENDPOINTS", endpoints.join(","))
            .env("RUST_LOG", "info")
            .env_remove("DISCO_PREFIX")
            .env_remove("DISCO_ACTOR")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("starting discoctl dashboard");
        let mut dashboard = Dashboard {
            child,
            url: format!("http://{listen}/"),
            log,
            _dir: dir,
        };
        let health = format!("{}healthz", dashboard.url);
        disco_harness::wait_for("the dashboard to answer", Duration::from_secs(30), || {
            if let Ok(Some(status)) = dashboard.child.try_wait() {
                panic!(
                    "discoctl dashboard exited ({status}): {}",
                    dashboard.output()
                );
            }
            matches!(disco_harness::get(&health, &[]), Ok((200, _))).then_some(())
        });
        dashboard
    }

    /// What it printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit; its exit code.
    pub fn stop(mut self, timeout: Duration) -> Option<i32> {
        disco_harness::process::send(self.child.id(), "TERM");
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "discoctl dashboard still running {timeout:?} after SIGTERM: {}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- discoctl dashboard output ---\n{}", self.output());
        }
    }
}
