//! A real HAProxy 2.6 in master-worker mode (`-W -S master.sock`) in a temp dir, loading
//! a main config the harness writes plus the fragment under test — the way disco-agent
//! drives it in production, so reloads go through the real master CLI.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ports::free_port;
use crate::process;

/// How long startup and reloads may take.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running HAProxy master and its workers, all killed on drop.
pub struct Haproxy {
    child: Child,
    fragment: PathBuf,
    ready_port: u16,
    dir: tempfile::TempDir,
}

/// What `show proc` on the master CLI says about the master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MasterState {
    reloads: u64,
    failed: u64,
}

impl Haproxy {
    /// Starts `haproxy -W -S <dir>/master.sock -f <dir>/haproxy.cfg -f <fragment>` in the
    /// foreground and waits until its readiness listener answers 200. The fragment is
    /// created empty if it does not exist. Panics (with the log) if HAProxy exits or is
    /// not ready within 15 s.
    pub fn start(fragment: &Path) -> Haproxy {
        let fragment = std::path::absolute(fragment).expect("absolute fragment path");
        if !fragment.exists() {
            std::fs::write(&fragment, "").expect("creating the empty HAProxy fragment");
        }
        let dir = tempfile::Builder::new()
            .prefix("disco-haproxy-")
            .tempdir()
            .expect("temp dir");
        let ready_port = free_port();
        let main_config = dir.path().join("haproxy.cfg");
        std::fs::write(&main_config, main_config_text(dir.path(), ready_port))
            .expect("writing haproxy.cfg");
        let log = std::fs::File::create(dir.path().join("haproxy.log")).expect("haproxy log");
        let child = Command::new(crate::program("haproxy", "haproxy"))
            .arg("-W")
            .arg("-S")
            .arg(dir.path().join("master.sock"))
            .arg("-f")
            .arg(&main_config)
            .arg("-f")
            .arg(&fragment)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("starting haproxy");
        let mut haproxy = Haproxy {
            child,
            fragment,
            ready_port,
            dir,
        };
        haproxy.wait_ready();
        haproxy
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "haproxy exited with {status} while starting:\n{}",
                    self.log()
                );
            }
            // Ready when a worker serves and the master CLI answers (the master listens
            // on its socket only once its own loop runs, after forking the worker).
            if matches!(crate::get(&self.ready_url(), &[]), Ok((200, _)))
                && self
                    .try_master_cli("show proc")
                    .is_ok_and(|answer| !parse_show_proc(&answer).1.is_empty())
            {
                return;
            }
            if Instant::now() > deadline {
                panic!("haproxy not ready after {START_TIMEOUT:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The master CLI socket (`-S`), where `reload` and `show proc` go.
    pub fn master_socket(&self) -> PathBuf {
        self.dir.path().join("master.sock")
    }

    /// The workers' admin stats socket (`level admin expose-fd listeners`).
    pub fn stats_socket(&self) -> PathBuf {
        self.dir.path().join("admin.sock")
    }

    /// The main config the harness wrote (global, defaults, readiness listener).
    pub fn main_config(&self) -> PathBuf {
        self.dir.path().join("haproxy.cfg")
    }

    /// The fragment under test, loaded after the main config.
    pub fn fragment(&self) -> &Path {
        &self.fragment
    }

    /// The pid of the master process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The temp dir holding config, sockets and `haproxy.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The URL of the readiness listener (answers 200 to anything).
    pub fn ready_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.ready_port)
    }

    /// HAProxy's stdout and stderr so far (notices, alerts, reload failures).
    pub fn log(&self) -> String {
        process::log_tail(&self.dir.path().join("haproxy.log"), 60)
    }

    /// Sends one command to the master CLI and returns its whole answer. Panics if the
    /// socket cannot be reached.
    ///
    /// The request is half-closed after the command: HAProxy 2.6's master CLI otherwise
    /// keeps the connection open after every answer (only `reload` drops it, answering
    /// nothing), and reading to EOF would hang. `cmd;quit` would work too.
    pub fn master_cli(&self, cmd: &str) -> String {
        self.try_master_cli(cmd)
            .unwrap_or_else(|e| panic!("master CLI {cmd:?}: {e}\n{}", self.log()))
    }

    fn try_master_cli(&self, cmd: &str) -> std::io::Result<String> {
        let mut stream = UnixStream::connect(self.master_socket())?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(format!("{cmd}\n").as_bytes())?;
        stream.shutdown(std::net::Shutdown::Write)?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    }

    /// Sends one command to the workers' admin stats socket and returns the answer.
    pub fn admin(&self, cmd: &str) -> String {
        let exchange = || -> std::io::Result<String> {
            let mut stream = UnixStream::connect(self.stats_socket())?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            stream.write_all(format!("{cmd}\n").as_bytes())?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer)?;
            Ok(answer)
        };
        exchange().unwrap_or_else(|e| panic!("stats socket {cmd:?}: {e}\n{}", self.log()))
    }

    /// Reloads the master has made since it started (`show proc`), failed ones included.
    pub fn reloads(&self) -> u64 {
        parse_show_proc(&self.master_cli("show proc"))
            .0
            .map(|m| m.reloads)
            .unwrap_or_else(|| panic!("no master line in `show proc`\n{}", self.log()))
    }

    /// The pids of the current workers, from `show proc` (old workers still draining
    /// connections after a reload are not included).
    pub fn worker_pids(&self) -> Vec<u32> {
        parse_show_proc(&self.master_cli("show proc")).1
    }

    /// Reloads through the master CLI (`reload`) and waits until the master has
    /// re-executed and the readiness listener answers. Returns the new worker pids, or
    /// the log if HAProxy refused the new configuration (the old workers keep serving).
    pub fn reload(&self) -> Result<Vec<u32>, String> {
        let (before, _) = parse_show_proc(&self.master_cli("show proc"));
        let before = before.unwrap_or_else(|| panic!("no master line in show proc"));
        // The master re-executes itself and drops this connection; no answer in 2.6.
        self.master_cli("reload");
        let deadline = Instant::now() + START_TIMEOUT;
        let (after, workers) = loop {
            // The CLI may be briefly unreachable while the master re-executes.
            if let Ok(answer) = self.try_master_cli("show proc") {
                if let (Some(state), workers) = parse_show_proc(&answer) {
                    if state.reloads > before.reloads {
                        break (state, workers);
                    }
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "haproxy did not reload within {START_TIMEOUT:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if after.failed > before.failed {
            return Err(format!(
                "haproxy refused the new configuration:\n{}",
                self.log()
            ));
        }
        crate::wait_for("haproxy ready after reload", START_TIMEOUT, || {
            matches!(crate::get(&self.ready_url(), &[]), Ok((200, _))).then_some(())
        });
        Ok(workers)
    }
}

impl Drop for Haproxy {
    /// Kills the master and every worker (current and old) with SIGKILL and waits until
    /// they are gone. Workers of a killed 2.6 master exit by themselves within
    /// milliseconds (they watch a pipe to the master); they are killed too, to be sure.
    fn drop(&mut self) {
        let mut pids = process::descendants(self.child.id());
        pids.push(self.child.id());
        process::signal(&pids, "KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
        let left = process::wait_gone(&pids, Duration::from_secs(5));
        if !left.is_empty() {
            eprintln!("disco-harness: haproxy processes {left:?} survived SIGKILL");
        }
    }
}

/// The main config: a foreground master-worker HAProxy with an admin socket and a
/// readiness listener (HAProxy 2.6 refuses to start with no proxy at all).
fn main_config_text(dir: &Path, ready_port: u16) -> String {
    format!(
        "# Written by disco-harness; the fragment under test is loaded after this file.
global
    stats socket \"{admin}\" mode 600 level admin expose-fd listeners
    hard-stop-after 30s

defaults
    mode http
    timeout connect 5s
    timeout client 5s
    timeout server 5s

listen disco_harness_ready
    bind 127.0.0.1:{ready_port}
    http-request return status 200
",
        admin = dir.join("admin.sock").display(),
    )
}

/// Parses `show proc`: the master's reload counters and the current workers' pids.
///
/// HAProxy 2.6 prints:
/// ```text
/// #<PID>          <type>          <reloads>       <uptime>        <version>
/// 24835           master          2 [failed: 1]   0d00h00m18s     2.6.12-1+deb12u4
/// # workers
/// 25720           worker          0               0d00h00m01s     2.6.12-1+deb12u4
/// # old workers
/// 25188           worker          1               0d00h00m06s     2.6.12-1+deb12u4
/// # programs
/// ```
fn parse_show_proc(text: &str) -> (Option<MasterState>, Vec<u32>) {
    let mut master = None;
    let mut workers = Vec::new();
    let mut section = "";
    for line in text.lines() {
        let line = line.trim();
        if let Some(title) = line.strip_prefix('#') {
            section = if title.trim() == "workers" {
                "workers"
            } else {
                ""
            };
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [_, "master", reloads, "[failed:", failed, ..] => {
                master = Some(MasterState {
                    reloads: reloads.parse().unwrap_or(0),
                    failed: failed.trim_end_matches(']').parse().unwrap_or(0),
                });
            }
            [pid, "worker", ..] if section == "workers" => {
                if let Ok(pid) = pid.parse() {
                    workers.push(pid);
                }
            }
            _ => {}
        }
    }
    (master, workers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_show_proc_of_2_6() {
        let text =
            "#<PID>          <type>          <reloads>       <uptime>        <version>      \n\
            27154           master          2 [failed: 1]   0d00h00m03s     2.6.12-1+deb12u4\n\
            # workers\n\
            27247           worker          1               0d00h00m02s     2.6.12-1+deb12u4\n\
            # old workers\n\
            27182           worker          2               0d00h00m03s     2.6.12-1+deb12u4\n\
            # programs\n\n";
        let (master, workers) = parse_show_proc(text);
        assert_eq!(
            master,
            Some(MasterState {
                reloads: 2,
                failed: 1
            })
        );
        assert_eq!(workers, [27247]);
    }
}
