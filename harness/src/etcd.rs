//! A real etcd (Debian's `etcd-server`): one member or a cluster, on free loopback ports
//! in a temp dir. Members can be stopped and restarted (same data, same ports), and the
//! keyspace compacted, to test disconnects, failover and compaction for real.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::ports::free_port;

/// Bound on one run of etcdctl or openssl.
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// PEM files of a TLS-enabled etcd: the CA, and a client certificate it accepts.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    /// A client certificate signed by the CA.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Member {
    fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }
    fn client_url_tls(&self, tls: bool) -> String {
        let scheme = if tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }
    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }
}

/// A running etcd (one member or several). Every member is killed on drop.
pub struct Etcd {
    members: Vec<Member>,
    initial_cluster: String,
    token: String,
    tls: Option<TlsFiles>,
    auth: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts a single-member etcd and waits until it answers.
    pub fn start() -> Etcd {
        Etcd::cluster(1)
    }

    /// Starts a single-member etcd that serves clients over TLS only and requires a
    /// client certificate signed by its CA ([`Etcd::tls_files`]).
    pub fn start_tls() -> Etcd {
        Etcd::start_with(1, true)
    }

    /// The CA and client certificate of a TLS etcd.
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// Creates user `root` with `password` and turns authentication on.
    pub fn enable_auth(&mut self, password: &str) {
        self.etcdctl(&[
            "user",
            "add",
            &format!("root:{password}"),
            "--interactive=false",
        ]);
        self.etcdctl(&["auth", "enable"]);
        self.auth = Some(("root".into(), password.into()));
    }

    fn etcdctl(&self, args: &[&str]) -> String {
        let member = self
            .members
            .iter()
            .find(|m| m.child.is_some())
            .expect("a running member");
        let mut cmd = Command::new(crate::program("etcdctl", "etcd-client"));
        cmd.env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(member.client_url_tls(self.tls.is_some()));
        if let Some(tls) = &self.tls {
            cmd.arg("--cacert")
                .arg(&tls.ca)
                .arg("--cert")
                .arg(&tls.cert)
                .arg("--key")
                .arg(&tls.key);
        }
        if let Some((user, password)) = &self.auth {
            cmd.arg("--user").arg(format!("{user}:{password}"));
        }
        let out =
            crate::process::output_within(cmd.args(args), HELPER_TIMEOUT).expect("running etcdctl");
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts an `n`-member cluster and waits until every member is healthy.
    pub fn cluster(n: usize) -> Etcd {
        Etcd::start_with(n, false)
    }

    fn start_with(n: usize, tls: bool) -> Etcd {
        let dir = tempfile::Builder::new()
            .prefix("disco-etcd-")
            .tempdir()
            .expect("temp dir");
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                data_dir: dir.path().join(format!("m{i}.data")),
                log: dir.path().join(format!("m{i}.log")),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let token = dir
            .path()
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tls = tls.then(|| make_certificates(dir.path()));
        let mut etcd = Etcd {
            members,
            initial_cluster,
            token,
            tls,
            auth: None,
            _dir: dir,
        };
        for i in 0..n {
            etcd.spawn(i);
        }
        for i in 0..n {
            etcd.wait_healthy(i);
        }
        etcd
    }

    fn spawn(&mut self, i: usize) {
        let program = crate::program("etcd", "etcd-server");
        let m = &self.members[i];
        let log = File::options()
            .create(true)
            .append(true)
            .open(&m.log)
            .expect("etcd log file");
        let tls = self.tls.is_some();
        let mut command = Command::new(program);
        if let Some(t) = &self.tls {
            command
                .arg("--cert-file")
                .arg(&t.server_cert)
                .arg("--key-file")
                .arg(&t.server_key)
                .arg("--trusted-ca-file")
                .arg(&t.ca)
                .arg("--client-cert-auth");
        }
        let child = command
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&m.data_dir)
            .arg("--listen-client-urls")
            .arg(m.client_url_tls(tls))
            .arg("--advertise-client-urls")
            .arg(m.client_url_tls(tls))
            .arg("--listen-peer-urls")
            .arg(m.peer_url())
            .arg("--initial-advertise-peer-urls")
            .arg(m.peer_url())
            .arg("--initial-cluster")
            .arg(&self.initial_cluster)
            .arg("--initial-cluster-token")
            .arg(&self.token)
            .arg("--initial-cluster-state")
            .arg("new")
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("starting etcd");
        self.members[i].child = Some(child);
    }

    fn wait_healthy(&mut self, i: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.members[i].child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "etcd member {} exited with {status} while starting:\n{}",
                        self.members[i].name,
                        self.log_tail(i)
                    );
                }
            }
            let healthy = match &self.tls {
                None => health(self.members[i].client_port),
                Some(_) => {
                    std::net::TcpStream::connect(("127.0.0.1", self.members[i].client_port)).is_ok()
                        && self.try_etcdctl_health(i)
                }
            };
            if healthy {
                return;
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "etcd member {} not healthy after 30s:\n{}",
                    self.members[i].name,
                    self.log_tail(i)
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn try_etcdctl_health(&self, i: usize) -> bool {
        let tls = self.tls.as_ref().expect("TLS etcd");
        let mut cmd = Command::new(crate::program("etcdctl", "etcd-client"));
        cmd.env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(self.members[i].client_url_tls(true))
            .arg("--cacert")
            .arg(&tls.ca)
            .arg("--cert")
            .arg(&tls.cert)
            .arg("--key")
            .arg(&tls.key)
            .args(["endpoint", "health"]);
        crate::process::output_within(&mut cmd, HELPER_TIMEOUT)
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    fn log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(&self.members[i].log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The client URL of every member, e.g. `http://127.0.0.1:40123` (`https://` for a
    /// TLS etcd).
    pub fn endpoints(&self) -> Vec<String> {
        let tls = self.tls.is_some();
        self.members.iter().map(|m| m.client_url_tls(tls)).collect()
    }

    /// The client URL of the first member.
    pub fn endpoint(&self) -> String {
        self.members[0].client_url_tls(self.tls.is_some())
    }

    /// The index of the member that is the raft leader now, as the running members
    /// report it (`etcdctl endpoint status`); None while there is none.
    pub fn leader(&self) -> Option<usize> {
        let running: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].child.is_some())
            .collect();
        let endpoints: Vec<String> = running
            .iter()
            .map(|&i| self.members[i].client_url_tls(self.tls.is_some()))
            .collect();
        let mut cmd = Command::new(crate::program("etcdctl", "etcd-client"));
        cmd.env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(endpoints.join(","))
            .args([
                "--command-timeout",
                "2s",
                "endpoint",
                "status",
                "-w",
                "json",
            ]);
        if let Some(tls) = &self.tls {
            cmd.arg("--cacert")
                .arg(&tls.ca)
                .arg("--cert")
                .arg(&tls.cert)
                .arg("--key")
                .arg(&tls.key);
        }
        let out = crate::process::output_within(&mut cmd, HELPER_TIMEOUT).ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        // [{"Endpoint":"http://...","Status":{"header":{...,"member_id":N,...},...,"leader":M,...}},...]
        let number_after = |s: &str, field: &str| -> Option<u64> {
            let start = s.find(field)? + field.len();
            let digits: String = s[start..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        };
        text.split("{\"Endpoint\":").skip(1).find_map(|entry| {
            let member = number_after(entry, "\"member_id\":")?;
            let leader = number_after(entry, "\"leader\":")?;
            if member != leader {
                return None;
            }
            let url = entry.trim_start_matches('"').split('"').next()?;
            running
                .iter()
                .copied()
                .find(|&i| self.members[i].client_url_tls(self.tls.is_some()) == url)
        })
    }

    /// Kills member `i` (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts member `i` with its data and ports, and waits until it is healthy.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_healthy(i);
    }

    /// Compacts the keyspace up to `revision` (with `etcdctl`).
    pub fn compact(&self, revision: i64) {
        let endpoint = self
            .members
            .iter()
            .find(|m| m.child.is_some())
            .expect("a running member")
            .client_url();
        let out = crate::process::output_within(
            Command::new(crate::program("etcdctl", "etcd-client"))
                .env("ETCDCTL_API", "3")
                .arg("--endpoints")
                .arg(endpoint)
                .arg("compact")
                .arg(revision.to_string()),
            HELPER_TIMEOUT,
        )
        .expect("running etcdctl");
        assert!(
            out.status.success(),
            "etcdctl compact {revision} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with the
/// `openssl` command in `dir`.
fn make_certificates(dir: &std::path::Path) -> TlsFiles {
    let openssl = |args: &[&str]| {
        let out = crate::process::output_within(
            Command::new(crate::program("openssl", "openssl"))
                .current_dir(dir)
                .args(args),
            HELPER_TIMEOUT,
        )
        .expect("running openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=disco test CA",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for name in ["server", "client"] {
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN=disco test {name}"),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ]);
    }
    TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("client.pem"),
        key: dir.join("client.key"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
    }
}

/// True if etcd on `port` answers `/health` with `"health":"true"`.
fn health(port: u16) -> bool {
    let Ok(mut s) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}
