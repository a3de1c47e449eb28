//! Traffic counters from HAProxy's stats socket: `show info;show stat` every stats
//! interval, the per-server lines of disco's backends turned into per-version deltas.
//!
//! HAProxy's counters are cumulative per worker process and start from zero in the new
//! worker after a reload. The worker's pid (`show info`) tells a reload apart: after
//! one, every counter counts from zero; a counter that goes down without a new pid is
//! taken as a restart too. The first reading after the agent starts is only a
//! baseline: what HAProxy counted before is not the agent's window. Requests that an
//! old worker serves after the last reading before a reload are not seen.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::haproxy_cli::{self, Side};
use disco::model::Mode;
use disco::render::Serves;
use disco::stats::Counts;

use super::Poll;

/// One server line of `show stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// `pxname`: the backend.
    pub backend: String,
    /// `svname`: the server.
    pub server: String,
    /// `req_tot`: HTTP requests (empty in tcp mode).
    pub req_tot: Option<u64>,
    /// `stot`: sessions (connections in tcp mode).
    pub stot: u64,
    /// `hrsp_5xx`: responses 500–599.
    pub hrsp_5xx: u64,
    /// `rtime`: average response time (to the response headers) over the server's
    /// last 1024 requests, in ms.
    pub rtime_ms: u64,
}

/// Parses the answer to `show info;show stat`: the worker pid and the server lines of
/// disco's backends (`disco_*`, `disco-dark_*`).
pub fn parse(answer: &str) -> Result<(Option<u64>, Vec<Row>), String> {
    let mut pid = None;
    let mut header: Option<Vec<&str>> = None;
    let mut rows = Vec::new();
    for line in answer.lines() {
        if let Some(p) = line.strip_prefix("Pid: ") {
            pid = p.trim().parse().ok();
            continue;
        }
        if let Some(h) = line.strip_prefix("# ") {
            header = Some(h.split(',').collect());
            continue;
        }
        let Some(columns) = &header else { continue };
        let fields: Vec<&str> = line.split(',').collect();
        let get = |name: &str| {
            columns
                .iter()
                .position(|c| *c == name)
                .and_then(|i| fields.get(i).copied())
        };
        let number = |name: &str| get(name).and_then(|v| v.parse::<u64>().ok());
        let (Some(backend), Some(server)) = (get("pxname"), get("svname")) else {
            continue;
        };
        if !(backend.starts_with("disco_") || backend.starts_with("disco-dark_"))
            || server == "FRONTEND"
            || server == "BACKEND"
        {
            continue;
        }
        rows.push(Row {
            backend: backend.to_string(),
            server: server.to_string(),
            req_tot: number("req_tot"),
            stot: number("stot").unwrap_or(0),
            hrsp_5xx: number("hrsp_5xx").unwrap_or(0),
            rtime_ms: number("rtime").unwrap_or(0),
        });
    }
    if header.is_none() {
        return Err(format!(
            "unexpected answer to `show stat`: {:?}",
            answer.chars().take(200).collect::<String>()
        ));
    }
    Ok((pid, rows))
}

/// What was read last from one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reading {
    requests: u64,
    errors: u64,
}

/// The counters of one HAProxy, turned into deltas.
pub struct HaproxyStats {
    socket: PathBuf,
    /// (backend, server) → what it serves, from the snapshot of the installed config.
    servers: BTreeMap<(String, String), Serves>,
    /// The worker pid of the last reading; none before the first.
    pid: Option<u64>,
    last: BTreeMap<(String, String), Reading>,
    /// HTTP requests are counted from the target's log socket: read tcp servers only.
    tcp_only: bool,
}

impl HaproxyStats {
    /// With `tcp_only` (the target has a `log_socket`), only servers of tcp apps are
    /// counted: the log counts HTTP requests, one request is counted once.
    pub fn new(socket: PathBuf, tcp_only: bool) -> HaproxyStats {
        HaproxyStats {
            socket,
            servers: BTreeMap::new(),
            pid: None,
            last: BTreeMap::new(),
            tcp_only,
        }
    }

    /// What each server serves, after an apply.
    pub fn set_servers(&mut self, servers: BTreeMap<(String, String), Serves>) {
        self.servers = servers;
    }

    /// Every (app, version) the installed config routes to.
    pub fn serves(&self) -> impl Iterator<Item = &Serves> {
        self.servers.values()
    }

    /// Reads the socket and returns the deltas since the last reading.
    pub async fn poll(&mut self) -> Result<Poll, String> {
        let answer = haproxy_cli::exchange(
            &self.socket,
            Side::Worker,
            "show info;show stat",
            Duration::from_secs(5),
        )
        .await
        .map_err(|e| e.to_string())?;
        let (pid, rows) = parse(&answer)?;
        Ok(self.take(pid, rows))
    }

    /// Folds one reading into deltas (pure).
    fn take(&mut self, pid: Option<u64>, rows: Vec<Row>) -> Poll {
        let first = self.pid.is_none();
        if !first && pid != self.pid {
            // A new worker: its counters started from zero.
            self.last.clear();
        }
        self.pid = pid.or(Some(0));
        let mut poll = Poll::default();
        let mut seen = BTreeMap::new();
        for row in rows {
            let key = (row.backend, row.server);
            let serves = self.servers.get(&key);
            let http = serves.is_none_or(|s| s.mode == Mode::Http);
            if http && self.tcp_only {
                continue;
            }
            let now = Reading {
                requests: if http {
                    row.req_tot.unwrap_or(row.stot)
                } else {
                    row.stot
                },
                errors: if http { row.hrsp_5xx } else { 0 },
            };
            let delta = match self.last.get(&key) {
                Some(before) if now.requests >= before.requests && now.errors >= before.errors => {
                    Reading {
                        requests: now.requests - before.requests,
                        errors: now.errors - before.errors,
                    }
                }
                // Went down: the counters restarted.
                Some(_) => now,
                None if first => Reading {
                    requests: 0,
                    errors: 0,
                },
                // A server new to this worker counts from zero.
                None => now,
            };
            seen.insert(key.clone(), now);
            if delta.requests == 0 && delta.errors == 0 {
                continue;
            }
            match serves {
                Some(s) => {
                    let timed = if http { delta.requests } else { 0 };
                    poll.samples.push((
                        s.clone(),
                        Counts {
                            requests: delta.requests,
                            errors_5xx: delta.errors,
                            timed,
                            time_ms_sum: (row.rtime_ms * timed) as f64,
                            buckets: Vec::new(),
                        },
                    ));
                }
                None => poll.unattributed += delta.requests,
            }
        }
        self.last = seen;
        poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "# pxname,svname,qcur,stot,hrsp_2xx,hrsp_5xx,req_tot,rtime,mode,";

    fn answer(pid: u64, lines: &[&str]) -> String {
        format!(
            "Name: HAProxy\nPid: {pid}\nUptime_sec: 3\n\n{HEADER}\n{}\n\n",
            lines.join("\n")
        )
    }

    fn serves(version: &str) -> Serves {
        Serves {
            app: "app1".into(),
            version: version.into(),
            mode: Mode::Http,
        }
    }

    fn stats() -> HaproxyStats {
        let mut s = HaproxyStats::new("/nonexistent".into(), false);
        s.set_servers(BTreeMap::from([
            (("disco_app1".into(), "instance1".into()), serves("v1")),
            (("disco_app1".into(), "instance2".into()), serves("v2")),
        ]));
        s
    }

    fn totals(poll: &Poll) -> BTreeMap<String, (u64, u64, f64)> {
        let mut out: BTreeMap<String, (u64, u64, f64)> = BTreeMap::new();
        for (s, c) in &poll.samples {
            let e = out.entry(s.version.clone()).or_default();
            e.0 += c.requests;
            e.1 += c.errors_5xx;
            e.2 += c.time_ms_sum;
        }
        out
    }

    #[test]
    fn parses_disco_server_lines_by_column_name() {
        let (pid, rows) = parse(&answer(
            42,
            &[
                "f,FRONTEND,,9,9,0,9,,http,",
                "disco_app1,instance1,0,10,8,2,10,4,http,",
                "disco_app1,BACKEND,0,10,8,2,10,4,http,",
                "other,instance1,0,10,8,2,10,4,http,",
                "disco-dark_app1,instance2,0,3,3,0,3,1,http,",
            ],
        ))
        .unwrap();
        assert_eq!(pid, Some(42));
        assert_eq!(
            rows,
            [
                Row {
                    backend: "disco_app1".into(),
                    server: "instance1".into(),
                    req_tot: Some(10),
                    stot: 10,
                    hrsp_5xx: 2,
                    rtime_ms: 4
                },
                Row {
                    backend: "disco-dark_app1".into(),
                    server: "instance2".into(),
                    req_tot: Some(3),
                    stot: 3,
                    hrsp_5xx: 0,
                    rtime_ms: 1
                },
            ]
        );
        assert!(parse("Unknown command").is_err());
    }

    #[test]
    fn with_a_log_socket_only_tcp_servers_count() {
        let mut s = HaproxyStats::new("/nonexistent".into(), true);
        s.set_servers(BTreeMap::from([
            (("disco_app1".into(), "instance1".into()), serves("v1")),
            (
                ("disco_db".into(), "instance1".into()),
                Serves {
                    app: "db".into(),
                    version: "v1".into(),
                    mode: Mode::Tcp,
                },
            ),
        ]));
        let mut read = |lines: &[&str]| {
            let (p, rows) = parse(&answer(1, lines)).unwrap();
            s.take(p, rows)
        };
        read(&[
            "disco_app1,instance1,0,1,1,0,1,2,http,",
            "disco_db,instance1,0,1,,,,0,tcp,",
        ]);
        let p = read(&[
            "disco_app1,instance1,0,9,9,0,9,2,http,",
            "disco_app1,instance7,0,9,9,0,9,2,http,",
            "disco_db,instance1,0,4,,,,0,tcp,",
        ]);
        assert_eq!(p.samples.len(), 1, "{:?}", p.samples);
        assert_eq!(
            (p.samples[0].0.app.as_str(), p.samples[0].1.requests),
            ("db", 3)
        );
        assert_eq!(p.unattributed, 0, "HTTP servers are the log's to count");
    }

    #[test]
    fn deltas_with_a_baseline_first_and_resets_on_a_new_worker_or_a_decrease() {
        let mut s = stats();
        let read = |s: &mut HaproxyStats, pid, lines: &[&str]| {
            let (p, rows) = parse(&answer(pid, lines)).unwrap();
            s.take(p, rows)
        };
        // The first reading is the baseline.
        let p = read(&mut s, 1, &["disco_app1,instance1,0,100,90,10,100,2,http,"]);
        assert!(p.samples.is_empty());
        let p = read(
            &mut s,
            1,
            &[
                "disco_app1,instance1,0,130,117,13,130,2,http,",
                "disco_app1,instance2,0,5,5,0,5,3,http,",
                "disco_app1,instance9,0,7,7,0,7,3,http,",
            ],
        );
        assert_eq!(
            totals(&p),
            BTreeMap::from([("v1".into(), (30, 3, 60.0)), ("v2".into(), (5, 0, 15.0))])
        );
        assert_eq!(p.unattributed, 7, "a server the snapshot does not know");
        // A reload: a new pid, counters from zero, even when they already passed the
        // old values.
        let p = read(&mut s, 2, &["disco_app1,instance1,0,150,150,0,150,1,http,"]);
        assert_eq!(totals(&p), BTreeMap::from([("v1".into(), (150, 0, 150.0))]));
        // A decrease without a new pid is a restart too.
        let p = read(&mut s, 2, &["disco_app1,instance1,0,4,3,1,4,1,http,"]);
        assert_eq!(totals(&p), BTreeMap::from([("v1".into(), (4, 1, 4.0))]));
        // Nothing new: no samples.
        let p = read(&mut s, 2, &["disco_app1,instance1,0,4,3,1,4,1,http,"]);
        assert!(p.samples.is_empty() && p.unattributed == 0);
    }
}
