//! A real nginx 1.22 (master and one worker, in the foreground) in a temp dir, whose
//! `http` block includes the fragment under test — so that tests can reload it the way
//! disco-agent does, with `nginx -s reload` or SIGHUP to the pid in its pid file.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ports::free_port;
use crate::process;

/// How long startup, `nginx -t`/`-s reload` and reloads may take.
const TIMEOUT: Duration = Duration::from_secs(15);

/// A running nginx master and its workers, all stopped on drop.
pub struct Nginx {
    child: Child,
    fragment: PathBuf,
    ready_port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts `nginx -p <dir> -c <dir>/nginx.conf` (`daemon off`, one worker) whose
    /// `http` block includes `fragment`, and waits until `/__ready` answers 200. The
    /// fragment is created empty if it does not exist. Panics (with the logs) if nginx
    /// exits or is not ready within 15 s.
    pub fn start(fragment: &Path) -> Nginx {
        let fragment = std::path::absolute(fragment).expect("absolute fragment path");
        if !fragment.exists() {
            std::fs::write(&fragment, "").expect("creating the empty nginx fragment");
        }
        let dir = tempfile::Builder::new()
            .prefix("disco-nginx-")
            .tempdir()
            .expect("temp dir");
        // Run as root, nginx's workers run as `nobody` and create their temp files
        // under this dir, which the temp dir's 0700 would forbid.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod of the nginx dir");
        let ready_port = free_port();
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, conf_text(dir.path(), &fragment, ready_port))
            .expect("writing nginx.conf");
        let child = spawn(dir.path());
        let mut nginx = Nginx {
            child,
            fragment,
            ready_port,
            dir,
        };
        nginx.wait_ready();
        nginx
    }

    /// Stops nginx (as on drop) and starts it again with the same configuration: its
    /// shared memory, lua dicts included, starts empty.
    pub fn restart(&mut self) {
        self.stop();
        self.child = spawn(self.dir.path());
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nginx exited with {status} while starting:\n{}", self.log());
            }
            if matches!(crate::get(&self.ready_url(), &[]), Ok((200, _))) {
                return;
            }
            if Instant::now() > deadline {
                panic!("nginx not ready after {TIMEOUT:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The main config the harness wrote.
    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("nginx.conf")
    }

    /// The prefix dir (`-p`): logs, pid file and temp paths are in it.
    pub fn prefix_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The pid file (for SIGHUP-style reloads).
    pub fn pid_file(&self) -> PathBuf {
        self.dir.path().join("nginx.pid")
    }

    /// The fragment under test, included in the `http` block.
    pub fn fragment(&self) -> &Path {
        &self.fragment
    }

    /// The pid of the master process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The URL answering 200 "ok" once nginx serves.
    pub fn ready_url(&self) -> String {
        format!("http://127.0.0.1:{}/__ready", self.ready_port)
    }

    /// The current worker processes: children of the master (by `/proc/<pid>/stat`
    /// ppid) titled `nginx: worker process`. Old workers still draining after a reload
    /// (`worker process is shutting down`) are not included.
    pub fn worker_pids(&self) -> Vec<u32> {
        process::children(self.child.id())
            .into_iter()
            .filter(|&pid| {
                let title = process::cmdline(pid);
                title.starts_with("nginx: worker process") && !title.contains("shutting down")
            })
            .collect()
    }

    /// `["-p", <dir>, "-c", <conf>]`: the arguments that point `nginx -t` or
    /// `nginx -s reload` at this instance.
    pub fn nginx_test_args(&self) -> Vec<String> {
        vec![
            "-p".into(),
            self.dir.path().display().to_string(),
            "-c".into(),
            self.conf().display().to_string(),
        ]
    }

    /// nginx's stderr and `error.log` so far.
    pub fn log(&self) -> String {
        format!(
            "--- stderr\n{}\n--- error.log\n{}",
            process::log_tail(&self.dir.path().join("nginx.stderr"), 40),
            process::log_tail(&self.dir.path().join("error.log"), 40)
        )
    }

    /// Runs `nginx <args of this instance> <extra>` without a shell (killed after 15 s);
    /// `Err` carries its stderr if it fails.
    pub fn command(&self, extra: &[&str]) -> Result<(), String> {
        let mut child = Command::new(crate::program("nginx", "nginx"))
            .args(self.nginx_test_args())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("running nginx {extra:?}: {e}"))?;
        let deadline = Instant::now() + TIMEOUT;
        while child.try_wait().map_err(|e| e.to_string())?.is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("nginx {extra:?} did not finish within {TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let output = child.wait_with_output().map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "nginx {extra:?} failed ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// Checks the configuration (`nginx -t`), reloads (`nginx -s reload`) and waits
    /// until the workers have been replaced and `/__ready` answers. Returns the new
    /// worker pids, or why the configuration was refused (the old workers keep
    /// serving then).
    pub fn reload(&self) -> Result<Vec<u32>, String> {
        self.command(&["-t", "-q"])?;
        let before = self.worker_pids();
        self.command(&["-s", "reload"])?;
        let workers = crate::wait_for("new nginx workers after reload", TIMEOUT, || {
            let now = self.worker_pids();
            (!now.is_empty() && now.iter().all(|pid| !before.contains(pid))).then_some(now)
        });
        crate::wait_for("nginx ready after reload", TIMEOUT, || {
            matches!(crate::get(&self.ready_url(), &[]), Ok((200, _))).then_some(())
        });
        Ok(workers)
    }
}

/// Starts `nginx -p <dir> -c <dir>/nginx.conf`, its output appended to `nginx.stderr`.
fn spawn(dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("nginx.stderr"))
        .expect("nginx log");
    Command::new(crate::program("nginx", "nginx"))
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log fd"))
        .stderr(log)
        .spawn()
        .expect("starting nginx")
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Nginx {
    /// Stops nginx the way its docs say (SIGTERM to the master, which stops its workers
    /// first), then SIGKILLs whatever is left after 5 s. A SIGKILL alone would not do:
    /// nginx workers outlive a killed master (they are reparented and keep listening).
    fn stop(&mut self) {
        let master = self.child.id();
        let workers = process::descendants(master);
        process::signal(&[master], "TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut exited = false;
        while !exited && Instant::now() < deadline {
            exited = matches!(self.child.try_wait(), Ok(Some(_)));
            if !exited {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let mut pids = workers;
        if !exited {
            // Still our unreaped child, so its pid and its children's are still its own.
            pids.extend(process::descendants(master));
            pids.push(master);
            process::signal(&pids, "KILL");
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // A master that exited on SIGTERM has waited for its workers; a survivor would
        // be a bug, killed here if it still is an nginx process.
        let stray: Vec<u32> = process::wait_gone(&pids, Duration::from_secs(5))
            .into_iter()
            .filter(|&pid| process::cmdline(pid).starts_with("nginx"))
            .collect();
        process::signal(&stray, "KILL");
        if !process::wait_gone(&stray, Duration::from_secs(5)).is_empty() {
            eprintln!("disco-harness: nginx processes {stray:?} survived SIGKILL");
        }
    }
}

/// The main config: foreground master, one worker, everything inside `dir`.
/// The dynamic modules of Debian's lua-nginx-module, in load order (ndk first).
const LUA_MODULES: [&str; 2] = [
    "/usr/lib/nginx/modules/ndk_http_module.so",
    "/usr/lib/nginx/modules/ngx_http_lua_module.so",
];

/// Opens `dir` (mode 0755) to nginx's workers, which run as `nobody`: a target in
/// balancer mode keeps the Lua module and the routes file that they read beside its
/// file, and a temp dir is 0700.
pub fn open_to_workers(dir: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .expect("chmod 0755 of a dir nginx's workers read");
}

/// True when nginx's lua module is installed (`libnginx-mod-http-lua`); then every
/// nginx the harness starts loads it, for targets with a `balancer_socket`.
pub fn has_lua() -> bool {
    LUA_MODULES.iter().all(|m| Path::new(m).exists())
}

fn conf_text(dir: &Path, fragment: &Path, ready_port: u16) -> String {
    let d = dir.display();
    let modules: String = if has_lua() {
        LUA_MODULES
            .iter()
            .map(|m| format!("load_module {m};\n"))
            .collect()
    } else {
        String::new()
    };
    format!(
        "# Written by disco-harness; the fragment under test is included in http {{}}.
{modules}daemon off;
master_process on;
worker_processes 1;
pid \"{d}/nginx.pid\";
error_log \"{d}/error.log\";

events {{
    worker_connections 1024;
}}

http {{
    access_log \"{d}/access.log\";
    client_body_temp_path \"{d}/client_body_temp\";
    proxy_temp_path \"{d}/proxy_temp\";
    fastcgi_temp_path \"{d}/fastcgi_temp\";
    uwsgi_temp_path \"{d}/uwsgi_temp\";
    scgi_temp_path \"{d}/scgi_temp\";

    include \"{fragment}\";

    server {{
        listen 127.0.0.1:{ready_port};
        location = /__ready {{
            return 200 \"ok\";
        }}
    }}
}}
",
        fragment = fragment.display(),
    )
}
