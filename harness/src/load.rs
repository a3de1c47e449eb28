//! A load generator whose counters are the acceptance rules of the zero-drop tests: a
//! request fails unless it gets its 200, retried at most once and only where real HTTP
//! clients retry (a reused keep-alive connection closed before any response byte).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::http::{Connection, Failure, Target};

/// How many distinct error descriptions a report keeps.
const MAX_ERRORS: usize = 20;

/// Pause after a failed request, so that a dead target does not turn the load threads
/// into busy loops that starve the proxies under test of CPU.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_millis(5);

/// What [`Load::start`] sends.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Concurrent connections, one thread each. Default 4.
    pub connections: usize,
    /// Reuse connections (HTTP/1.1 keep-alive) until the server closes them; if false,
    /// every request goes on a fresh connection with `Connection: close`. Default true.
    pub keep_alive: bool,
    /// Extra request headers, e.g. `Host`. Default none.
    pub headers: Vec<(String, String)>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            connections: 4,
            keep_alive: true,
            headers: Vec::new(),
        }
    }
}

/// Counters of a load run. `sent == ok + failed` always holds: a request is counted
/// once it has finished, retry included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Requests finished (each at most once, whether or not it was retried).
    pub sent: u64,
    /// Requests answered 200, possibly after their one retry.
    pub ok: u64,
    /// Requests that did not get a 200 within the rules.
    pub failed: u64,
    /// Retries made (a retried request is also counted in `ok` or `failed`).
    pub retried: u64,
    /// Bodies of the 200 responses, counted: with [`crate::Backend`] the versions.
    pub by_body: BTreeMap<String, u64>,
    /// The first 20 distinct descriptions of failures.
    pub errors: Vec<String>,
}

impl LoadReport {
    /// What happened after `earlier` (a snapshot of the same run): counters and bodies
    /// subtracted; errors are those not already in `earlier` (best effort, as both
    /// lists stop at 20).
    pub fn since(&self, earlier: &LoadReport) -> LoadReport {
        let by_body = self
            .by_body
            .iter()
            .filter_map(|(body, &count)| {
                let before = earlier.by_body.get(body).copied().unwrap_or(0);
                let diff = count.saturating_sub(before);
                (diff > 0).then(|| (body.clone(), diff))
            })
            .collect();
        LoadReport {
            sent: self.sent.saturating_sub(earlier.sent),
            ok: self.ok.saturating_sub(earlier.ok),
            failed: self.failed.saturating_sub(earlier.failed),
            retried: self.retried.saturating_sub(earlier.retried),
            by_body,
            errors: self
                .errors
                .iter()
                .filter(|e| !earlier.errors.contains(e))
                .cloned()
                .collect(),
        }
    }

    fn record(&mut self, outcome: Outcome) {
        self.sent += 1;
        if outcome.retried {
            self.retried += 1;
        }
        match outcome.result {
            Ok(body) => {
                self.ok += 1;
                *self.by_body.entry(body).or_insert(0) += 1;
            }
            Err(error) => {
                self.failed += 1;
                if self.errors.len() < MAX_ERRORS && !self.errors.contains(&error) {
                    self.errors.push(error);
                }
            }
        }
    }
}

/// The end of one request: the body of its 200, or why it failed.
struct Outcome {
    result: Result<String, String>,
    retried: bool,
}

/// Load running in background threads until [`Load::stop`] (or drop).
pub struct Load {
    url: String,
    stopping: Arc<AtomicBool>,
    report: Arc<Mutex<LoadReport>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts `opts.connections` threads sending `GET url` back to back. Panics if the
    /// URL is not `http://host:port/path`.
    pub fn start(url: &str, opts: LoadOptions) -> Load {
        let target = Target::parse(url).unwrap_or_else(|e| panic!("Load::start: {e}"));
        let stopping = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(LoadReport::default()));
        let threads = (0..opts.connections.max(1))
            .map(|i| {
                let (target, opts) = (target.clone(), opts.clone());
                let (stopping, report) = (stopping.clone(), report.clone());
                std::thread::Builder::new()
                    .name(format!("load-{i}"))
                    .stack_size(256 * 1024)
                    .spawn(move || run(&target, &opts, &stopping, &report))
                    .expect("spawning a load thread")
            })
            .collect();
        Load {
            url: url.to_string(),
            stopping,
            report,
            threads,
        }
    }

    /// The counters so far, while the load keeps running.
    pub fn snapshot(&self) -> LoadReport {
        self.report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until `more` requests have succeeded after this call; returns the
    /// snapshot then. Panics (with the counters) if that takes longer than 10 s.
    pub fn wait_for_ok(&self, more: u64) -> LoadReport {
        let start = self.snapshot();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.snapshot();
            if now.ok >= start.ok + more {
                return now;
            }
            if Instant::now() > deadline {
                panic!(
                    "load on {}: fewer than {more} requests succeeded within 10s: {:?}",
                    self.url,
                    now.since(&start)
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops sending, lets every request in flight finish (at most the 5 s request
    /// timeout), and returns the final counters.
    pub fn stop(mut self) -> LoadReport {
        self.halt();
        self.snapshot()
    }

    fn halt(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.halt();
    }
}

/// One load thread: requests back to back on its connection until `stopping`.
fn run(target: &Target, opts: &LoadOptions, stopping: &AtomicBool, report: &Mutex<LoadReport>) {
    let mut connection: Option<Connection> = None;
    while !stopping.load(Ordering::SeqCst) {
        let outcome = request(&mut connection, target, opts);
        let failed = outcome.result.is_err();
        report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(outcome);
        if failed {
            std::thread::sleep(PAUSE_AFTER_FAILURE);
        }
    }
}

/// One request under the counting rules, on `connection` if it is open (keep-alive)
/// or on a fresh one.
fn request(connection: &mut Option<Connection>, target: &Target, opts: &LoadOptions) -> Outcome {
    let reused = connection.is_some();
    let (result, retried) = match attempt(connection, target, opts) {
        // A reused connection the server closed before answering: the one case where
        // real clients retry an idempotent request, on a new connection.
        Err(Failure::ClosedEarly(_)) if reused => {
            let retry = attempt(connection, target, opts);
            (
                retry.map_err(|e| format!("retry failed: {}", describe(&e, false))),
                true,
            )
        }
        first => (first.map_err(|e| describe(&e, reused)), false),
    };
    let result = result.and_then(|(status, body)| match (status, retried) {
        (200, _) => Ok(body),
        (other, false) => Err(format!("status {other}")),
        (other, true) => Err(format!("retry failed: status {other}")),
    });
    Outcome { result, retried }
}

/// An error description that says whether the connection was fresh, since that decides
/// whether an early close may be retried.
fn describe(failure: &Failure, reused: bool) -> String {
    if reused {
        format!("{failure} (reused connection)")
    } else {
        format!("{failure} (fresh connection)")
    }
}

/// One request/response exchange: the status and body, or how the transport failed.
/// The connection is kept for the next request only if keep-alive is on and the
/// exchange ended cleanly without `Connection: close`.
fn attempt(
    connection: &mut Option<Connection>,
    target: &Target,
    opts: &LoadOptions,
) -> Result<(u16, String), Failure> {
    let mut conn = match connection.take() {
        Some(conn) => conn,
        None => Connection::open(target)?,
    };
    let response = conn.get(target, &opts.headers, opts.keep_alive)?;
    if opts.keep_alive && !response.close {
        *connection = Some(conn);
    }
    Ok((
        response.status,
        String::from_utf8_lossy(&response.body).into_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener};
    use std::sync::atomic::AtomicU64;

    /// What the scripted server does with the n-th request it receives (from 1).
    #[derive(Clone, Copy)]
    enum Act {
        Reply(u16),
        Close,
        Partial,
    }

    /// A server that handles request n (counted across connections) with `script(n)`.
    fn scripted(script: fn(u64) -> Act) -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let counter = Arc::new(AtomicU64::new(0));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let (mut stream, counter) = (stream.unwrap(), counter.clone());
                std::thread::spawn(move || loop {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if stream.read(&mut byte).unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                    let reply = match script(n) {
                        Act::Reply(status) => {
                            format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\nv{n}")
                        }
                        Act::Partial => "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nv".into(),
                        Act::Close => String::new(),
                    };
                    let _ = stream.write_all(reply.as_bytes());
                    if !matches!(script(n), Act::Reply(_)) {
                        let _ = stream.shutdown(Shutdown::Both);
                        return;
                    }
                });
            }
        });
        Target::parse(&url).unwrap()
    }

    fn opts(keep_alive: bool) -> LoadOptions {
        LoadOptions {
            connections: 1,
            keep_alive,
            headers: vec![],
        }
    }

    #[test]
    fn retries_once_when_a_reused_connection_closes_before_answering() {
        let target = scripted(|n| if n == 2 { Act::Close } else { Act::Reply(200) });
        let mut report = LoadReport::default();
        let mut conn = None;
        for _ in 0..2 {
            report.record(request(&mut conn, &target, &opts(true)));
        }
        assert_eq!(
            (report.ok, report.failed, report.retried),
            (2, 0, 1),
            "{report:?}"
        );
        assert_eq!(report.by_body.keys().collect::<Vec<_>>(), ["v1", "v3"]);
    }

    #[test]
    fn a_second_early_close_fails() {
        let target = scripted(|n| if n == 1 { Act::Reply(200) } else { Act::Close });
        let mut report = LoadReport::default();
        let mut conn = None;
        for _ in 0..2 {
            report.record(request(&mut conn, &target, &opts(true)));
        }
        assert_eq!(
            (report.ok, report.failed, report.retried),
            (1, 1, 1),
            "{report:?}"
        );
        assert!(report.errors[0].starts_with("retry failed"), "{report:?}");
    }

    #[test]
    fn early_close_on_a_fresh_connection_status_and_partial_responses_fail() {
        let target = scripted(|n| match n {
            1 => Act::Close,
            2 => Act::Reply(503),
            _ => Act::Partial,
        });
        let mut report = LoadReport::default();
        let mut conn = None;
        for _ in 0..3 {
            report.record(request(&mut conn, &target, &opts(false)));
        }
        assert_eq!(
            (report.ok, report.failed, report.retried),
            (0, 3, 0),
            "{report:?}"
        );
        assert_eq!(report.errors.len(), 3, "{report:?}");
        assert!(
            report.errors[0].contains("before any response byte"),
            "{report:?}"
        );
        assert_eq!(report.errors[1], "status 503");
        assert!(report.errors[2].contains("partial"), "{report:?}");
    }

    #[test]
    fn refused_connections_fail() {
        let port = crate::ports::free_port();
        let load = Load::start(&format!("http://127.0.0.1:{port}/"), opts(true));
        std::thread::sleep(Duration::from_millis(50));
        let report = load.stop();
        assert!(report.failed > 0 && report.ok == 0, "{report:?}");
        assert_eq!(report.sent, report.failed);
        assert!(report.errors[0].starts_with("connect:"), "{report:?}");
    }

    #[test]
    fn reports_diff() {
        let mut later = LoadReport::default();
        later.record(Outcome {
            result: Ok("v1".into()),
            retried: false,
        });
        let earlier = later.clone();
        later.record(Outcome {
            result: Ok("v2".into()),
            retried: true,
        });
        later.record(Outcome {
            result: Err("boom".into()),
            retried: false,
        });
        let diff = later.since(&earlier);
        assert_eq!(
            (diff.sent, diff.ok, diff.failed, diff.retried),
            (2, 1, 1, 1)
        );
        assert_eq!(diff.by_body, BTreeMap::from([("v2".to_string(), 1)]));
        assert_eq!(diff.errors, ["boom"]);
    }
}
