//! Per-request records from HAProxy: the agent binds the target's `log_socket` (a unix
//! datagram socket) that every generated HTTP frontend logs each request to in disco's
//! format ([`disco::render::haproxy::LOG_FORMAT`], raw), and counts each request, its
//! status and its server response time for the version its backend server serves, as
//! the nginx access log does.
//!
//! A task receives the datagrams as they come (so the socket's buffer does not fill
//! between two polls) and adds them up per backend and server; each poll takes those
//! sums and attributes them with the servers of the installed configuration (or the
//! one before it, for records sent just before a change). A datagram in another format
//! is ignored and counted; a request HAProxy answered without a server (`<NOSRV>`) or
//! on a server the configuration does not have is unattributed. Records sent while the
//! agent is not running are lost: its windows start with it.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use disco::render::haproxy::LOG_TAG;
use disco::render::Serves;
use disco::stats::Counts;
use tokio::net::UnixDatagram;
use tokio::task::JoinHandle;

use super::Poll;

/// One request of disco's HAProxy log format.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<'a> {
    /// `%b`: the backend.
    pub backend: &'a str,
    /// `%s`: the server, `<NOSRV>` when none was reached.
    pub server: &'a str,
    /// `%ST`: the status sent to the client.
    pub status: u16,
    /// `%Tr`: the server's time to the response headers, in ms; none when it did not
    /// answer (`-1`).
    pub response_ms: Option<f64>,
}

/// Parses one datagram; none for anything in another format. A syslog header before
/// the tag (a `log` line without `format raw`) is skipped.
pub fn parse_record(datagram: &str) -> Option<Record<'_>> {
    let mut fields = datagram
        .split_whitespace()
        .skip_while(|field| *field != LOG_TAG)
        .skip(1);
    let backend = fields.next()?;
    let server = fields.next()?;
    let status = fields.next()?.parse().ok()?;
    let response_ms = fields.next()?.parse::<i64>().ok()?;
    // `%Ta`, present in every complete record.
    fields.next()?.parse::<i64>().ok()?;
    Some(Record {
        backend,
        server,
        status,
        response_ms: (response_ms >= 0).then_some(response_ms as f64),
    })
}

/// What the receiving task added up since the last poll.
#[derive(Debug, Default)]
struct Received {
    /// Backend → server → counts.
    by_server: BTreeMap<String, BTreeMap<String, Counts>>,
    /// Datagrams in another format.
    ignored: u64,
}

impl Received {
    fn add(&mut self, datagram: &[u8]) {
        let text = String::from_utf8_lossy(datagram);
        let Some(record) = parse_record(&text) else {
            self.ignored += 1;
            tracing::debug!(datagram = %text.chars().take(200).collect::<String>(), "ignored a datagram on the HAProxy log socket");
            return;
        };
        let servers = match self.by_server.get_mut(record.backend) {
            Some(servers) => servers,
            None => self
                .by_server
                .entry(record.backend.to_string())
                .or_default(),
        };
        let counts = match servers.get_mut(record.server) {
            Some(counts) => counts,
            None => servers.entry(record.server.to_string()).or_default(),
        };
        counts.observe(record.status, record.response_ms);
    }
}

/// The bound socket, and the task that reads it.
struct Bound {
    inode: (u64, u64),
    task: JoinHandle<()>,
}

/// The log socket of one HAProxy target.
pub struct HaproxyLog {
    path: PathBuf,
    bound: Result<Bound, String>,
    received: Arc<Mutex<Received>>,
    /// (backend, server) → what it serves, from the installed configuration.
    servers: BTreeMap<(String, String), Serves>,
    /// The servers before the last change, for records sent before it.
    previous: BTreeMap<(String, String), Serves>,
}

/// Binds a datagram socket at `path` (replacing a socket left there, never another
/// kind of file), readable and writable by the owner and the group.
fn bind(path: &Path) -> std::io::Result<(UnixDatagram, (u64, u64))> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(std::io::Error::other("exists and is not a socket"));
        }
        std::fs::remove_file(path)?;
    }
    let socket = UnixDatagram::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    let meta = std::fs::metadata(path)?;
    Ok((socket, (meta.dev(), meta.ino())))
}

impl HaproxyLog {
    /// Binds `path` and starts receiving (needs a tokio runtime). A failure to bind
    /// is reported by every [`poll`](Self::poll).
    pub fn new(path: PathBuf) -> HaproxyLog {
        let received = Arc::new(Mutex::new(Received::default()));
        let bound = bind(&path)
            .map(|(socket, inode)| {
                let received = received.clone();
                let task = tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    loop {
                        match socket.recv(&mut buf).await {
                            Ok(n) => received.lock().expect("log records").add(&buf[..n]),
                            Err(e) => {
                                tracing::warn!(error = %e, "receiving from the HAProxy log socket failed");
                                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                            }
                        }
                    }
                });
                Bound { inode, task }
            })
            .map_err(|e| format!("HAProxy log socket {}: {e}", path.display()));
        HaproxyLog {
            path,
            bound,
            received,
            servers: BTreeMap::new(),
            previous: BTreeMap::new(),
        }
    }

    /// What each server serves, after an apply.
    pub fn set_servers(&mut self, servers: BTreeMap<(String, String), Serves>) {
        if servers != self.servers {
            self.previous = std::mem::replace(&mut self.servers, servers);
        }
    }

    /// Every (app, version) the installed config routes to.
    pub fn serves(&self) -> impl Iterator<Item = &Serves> {
        self.servers.values()
    }

    /// The requests received since the last poll, attributed to versions.
    pub fn poll(&mut self) -> Result<Poll, String> {
        if let Err(e) = &self.bound {
            return Err(e.clone());
        }
        let received = std::mem::take(&mut *self.received.lock().expect("log records"));
        Ok(self.attribute(received))
    }

    /// Turns per-server sums into per-version samples (pure).
    fn attribute(&self, received: Received) -> Poll {
        let mut poll = Poll {
            ignored: received.ignored,
            ..Poll::default()
        };
        let mut by_version: BTreeMap<(String, String), (Serves, Counts)> = BTreeMap::new();
        for (backend, servers) in received.by_server {
            for (server, counts) in servers {
                let key = (backend.clone(), server);
                let serves = [&self.servers, &self.previous]
                    .into_iter()
                    .find_map(|m| m.get(&key));
                match serves {
                    Some(s) => by_version
                        .entry((s.app.clone(), s.version.clone()))
                        .or_insert_with(|| (s.clone(), Counts::default()))
                        .1
                        .add(&counts),
                    None => poll.unattributed += counts.requests,
                }
            }
        }
        poll.samples.extend(by_version.into_values());
        poll
    }
}

impl Drop for HaproxyLog {
    /// Stops receiving and removes the socket, unless another one took its path since.
    fn drop(&mut self) {
        if let Ok(bound) = &self.bound {
            bound.task.abort();
            let ours = std::fs::symlink_metadata(&self.path)
                .is_ok_and(|m| (m.dev(), m.ino()) == bound.inode);
            if ours {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use disco::model::Mode;

    #[test]
    fn parses_records_and_refuses_other_formats() {
        assert_eq!(
            parse_record("disco1 disco_app1 instance1:v2 200 12 13\n"),
            Some(Record {
                backend: "disco_app1",
                server: "instance1:v2",
                status: 200,
                response_ms: Some(12.0)
            })
        );
        // No server answered: no time.
        let none = parse_record("disco1 disco_app1 <NOSRV> 503 -1 0").unwrap();
        assert_eq!((none.server, none.response_ms), ("<NOSRV>", None));
        // A syslog header before the tag.
        let framed =
            parse_record("<134>Dec  3 04:30:00 haproxy[42]: disco1 disco_a i:v 500 3 4").unwrap();
        assert_eq!((framed.backend, framed.status), ("disco_a", 500));
        for garbage in [
            "",
            "\u{0}\u{1}binary",
            "127.0.0.1:5000 [03/Dec/2026:04:30:00.000] disco_app1 disco_app1/i1:v1 0/0/0/1/1 200",
            "disco1 disco_app1 instance1:v2 abc 12 13",
            "disco1 disco_app1 instance1:v2 200 12",
            "disco1 disco_app1 instance1:v2 200 1.5 13",
            "disco2 disco_app1 instance1:v2 200 12 13",
        ] {
            assert_eq!(parse_record(garbage), None, "{garbage:?}");
        }
    }

    fn serves(version: &str) -> Serves {
        Serves {
            app: "app1".into(),
            version: version.into(),
            mode: Mode::Http,
        }
    }

    #[tokio::test]
    async fn datagrams_on_the_socket_count_per_version_with_histograms() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let mut log = HaproxyLog::new(path.clone());
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o660
        );
        log.set_servers(BTreeMap::from([
            (("disco_app1".into(), "i1:v1".into()), serves("v1")),
            (("disco-dark_app1".into(), "i2:v2".into()), serves("v2")),
            (("disco_app1".into(), "i2:v2".into()), serves("v2")),
        ]));
        let sender = UnixDatagram::unbound().unwrap();
        let datagrams = [
            "disco1 disco_app1 i1:v1 200 4 5",
            "disco1 disco_app1 i1:v1 200 40 41",
            "disco1 disco_app1 i2:v2 500 7 8",
            "disco1 disco-dark_app1 i2:v2 200 1 2",
            "disco1 disco_app1 <NOSRV> 503 -1 0",
            "disco1 disco_gone i9:v9 200 1 2",
            "not ours at all",
            "disco1 disco_app1 i1:v1",
        ];
        for d in datagrams {
            sender.send_to(d.as_bytes(), &path).await.unwrap();
        }
        // Wait for the task to take them all.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut seen = Poll::default();
        let mut counts: BTreeMap<String, Counts> = BTreeMap::new();
        loop {
            let poll = log.poll().unwrap();
            seen.unattributed += poll.unattributed;
            seen.ignored += poll.ignored;
            for (s, c) in poll.samples {
                counts.entry(s.version).or_default().add(&c);
            }
            let requests: u64 = counts.values().map(|c| c.requests).sum();
            if requests + seen.unattributed + seen.ignored == datagrams.len() as u64 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{counts:?} {seen:?}");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!((seen.unattributed, seen.ignored), (2, 2));
        let v1 = &counts["v1"];
        assert_eq!((v1.requests, v1.errors_5xx, v1.timed), (2, 0, 2));
        assert_eq!(v1.time_ms_sum, 44.0);
        assert_eq!(*v1.buckets.last().unwrap(), 2);
        assert!(v1.percentile_ms(0.99).unwrap() > 25.0);
        let v2 = &counts["v2"];
        assert_eq!((v2.requests, v2.errors_5xx), (2, 1), "both backends");

        // A server gone from the config still counts for what it served.
        log.set_servers(BTreeMap::from([(
            ("disco_app1".into(), "i3:v3".into()),
            serves("v3"),
        )]));
        sender
            .send_to(b"disco1 disco_app1 i1:v1 200 4 5", &path)
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let poll = log.poll().unwrap();
            if let Some((s, c)) = poll.samples.first() {
                assert_eq!((s.version.as_str(), c.requests), ("v1", 1));
                break;
            }
            assert!(std::time::Instant::now() < deadline);
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }

        // Dropped: the socket is gone.
        drop(log);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn a_path_held_by_another_kind_of_file_is_an_error_not_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        std::fs::write(&path, "keep me").unwrap();
        let mut log = HaproxyLog::new(path.clone());
        assert!(log.poll().unwrap_err().contains("not a socket"));
        drop(log);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
        // A socket left by an earlier run is replaced.
        std::fs::remove_file(&path).unwrap();
        let stale = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        drop(stale);
        let mut log = HaproxyLog::new(path.clone());
        assert!(log.poll().is_ok());
    }
}
