//! Traffic counters from nginx: the agent tails the access log that the generated file
//! writes in disco's format (see [`disco::render::nginx::ACCESS_LOG_FORMAT`]) and counts
//! each request for the version behind its last upstream address.
//!
//! The log is followed across rotation (the path names another file: the rest of the
//! old one is read, then the new one from its start) and truncation (the file got
//! shorter than what was read: read again from its start). At start the agent skips
//! what is already in the file: its windows start with it. A request that nginx
//! retried on another server lists every address tried (`a, b`); the last one answered
//! and counts. Lines with no upstream (`-`: nginx answered by itself, e.g. 503 with no
//! routable endpoint) count for no version.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use disco::render::nginx::ACCESS_LOG_TAG;
use disco::render::Serves;
use disco::stats::Counts;

use super::Poll;

/// At most this much of the log is read per poll; the rest waits for the next one.
const MAX_READ: u64 = 64 * 1024 * 1024;

/// One request of disco's access log.
#[derive(Debug, Clone, PartialEq)]
pub struct Line<'a> {
    pub app: &'a str,
    pub status: u16,
    /// The last upstream address tried, or `-`.
    pub upstream: &'a str,
    /// The last upstream's response time, in ms.
    pub upstream_ms: Option<f64>,
}

/// The last element of an nginx list variable (`a, b` or `a : b`).
fn last(list: &str) -> &str {
    let after_comma = list.rsplit(", ").next().unwrap_or(list);
    after_comma
        .rsplit(" : ")
        .next()
        .unwrap_or(after_comma)
        .trim()
}

/// Parses one line; none for lines in another format.
pub fn parse_line(line: &str) -> Option<Line<'_>> {
    let mut fields = line.split('|');
    if fields.next()? != ACCESS_LOG_TAG {
        return None;
    }
    let app = fields.next()?;
    let status = fields.next()?.parse().ok()?;
    let upstream = last(fields.next()?);
    let upstream_ms = last(fields.next()?)
        .parse::<f64>()
        .ok()
        .map(|seconds| seconds * 1000.0);
    Some(Line {
        app,
        status,
        upstream,
        upstream_ms,
    })
}

/// The open log and how far it was read.
struct Open {
    file: File,
    inode: (u64, u64),
    offset: u64,
}

/// A tailed nginx access log.
pub struct NginxLog {
    path: PathBuf,
    open: Option<Open>,
    /// Whether a poll has run: the first skips what the file already holds.
    started: bool,
    /// An incomplete last line, kept for the next read.
    partial: Vec<u8>,
    /// App → upstream address → what it serves, from the installed config.
    addresses: BTreeMap<String, BTreeMap<String, Serves>>,
    /// The addresses before the last change, for lines written before it.
    previous: BTreeMap<String, BTreeMap<String, Serves>>,
}

impl NginxLog {
    pub fn new(path: PathBuf) -> NginxLog {
        NginxLog {
            path,
            open: None,
            started: false,
            partial: Vec::new(),
            addresses: BTreeMap::new(),
            previous: BTreeMap::new(),
        }
    }

    /// What each upstream address serves, after an apply.
    pub fn set_addresses(&mut self, addresses: BTreeMap<String, BTreeMap<String, Serves>>) {
        if addresses != self.addresses {
            self.previous = std::mem::replace(&mut self.addresses, addresses);
        }
    }

    /// Every (app, version) the installed config routes to.
    pub fn serves(&self) -> impl Iterator<Item = &Serves> {
        self.addresses.values().flat_map(|a| a.values())
    }

    /// Reads what was appended since the last poll and counts it.
    pub fn poll(&mut self) -> Result<Poll, String> {
        let mut poll = Poll::default();
        let skip_existing = !self.started;
        self.started = true;
        let on_disk = std::fs::metadata(&self.path)
            .ok()
            .map(|m| ((m.dev(), m.ino()), m.len()));
        if self.open.is_none() {
            if let Some((inode, len)) = on_disk {
                self.open_log(inode, if skip_existing { len } else { 0 })?;
            }
        }
        let Some(open) = &mut self.open else {
            return Ok(poll);
        };
        // Truncated (copytruncate): what is there now is new.
        let len = match open.file.metadata() {
            Ok(m) => m.len(),
            Err(e) => return Err(self.error(e)),
        };
        let open = self.open.as_mut().expect("open");
        if len < open.offset {
            open.offset = 0;
            self.partial.clear();
        }
        let data = self.read_open()?;
        self.count(&data, &mut poll);
        // Rotated: the rest of the old file was just read; go on with the new one.
        if let Some((inode, _)) = on_disk {
            if self.open.as_ref().is_some_and(|o| o.inode != inode) {
                self.partial.clear();
                self.open_log(inode, 0)?;
                let data = self.read_open()?;
                self.count(&data, &mut poll);
            }
        }
        Ok(poll)
    }

    fn error(&self, e: std::io::Error) -> String {
        format!("nginx access log {}: {e}", self.path.display())
    }

    fn open_log(&mut self, inode: (u64, u64), offset: u64) -> Result<(), String> {
        let file = File::open(&self.path).map_err(|e| self.error(e))?;
        self.open = Some(Open {
            file,
            inode,
            offset,
        });
        Ok(())
    }

    fn read_open(&mut self) -> Result<Vec<u8>, String> {
        let open = self.open.as_mut().expect("open");
        let mut data = Vec::new();
        let read = open
            .file
            .seek(SeekFrom::Start(open.offset))
            .and_then(|_| (&mut open.file).take(MAX_READ).read_to_end(&mut data));
        match read {
            Ok(n) => {
                open.offset += n as u64;
                Ok(data)
            }
            Err(e) => Err(self.error(e)),
        }
    }

    /// Counts the complete lines of `partial` + `data`, keeping an incomplete end.
    fn count(&mut self, data: &[u8], poll: &mut Poll) {
        self.partial.extend_from_slice(data);
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return;
        };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        let mut by_version: BTreeMap<(&str, &str), (Serves, Counts)> = BTreeMap::new();
        for line in String::from_utf8_lossy(&complete).lines() {
            let Some(line) = parse_line(line) else {
                continue;
            };
            if line.upstream == "-" {
                continue;
            }
            let serves = [&self.addresses, &self.previous]
                .into_iter()
                .find_map(|m| m.get(line.app).and_then(|a| a.get(line.upstream)));
            let Some(serves) = serves else {
                poll.unattributed += 1;
                continue;
            };
            by_version
                .entry((&serves.app, &serves.version))
                .or_insert_with(|| (serves.clone(), Counts::default()))
                .1
                .observe(line.status, line.upstream_ms);
        }
        poll.samples.extend(by_version.into_values());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn parses_lines_and_counts_the_last_upstream() {
        assert_eq!(
            parse_line("disco1|app1|200|127.0.0.1:9001|0.004|0.005"),
            Some(Line {
                app: "app1",
                status: 200,
                upstream: "127.0.0.1:9001",
                upstream_ms: Some(4.0)
            })
        );
        let retried =
            parse_line("disco1|app1|500|127.0.0.1:9001, [::1]:9002|0.001, 0.010|0.012").unwrap();
        assert_eq!(
            (retried.upstream, retried.upstream_ms),
            ("[::1]:9002", Some(10.0))
        );
        let redirected =
            parse_line("disco1|app1|200|10.0.0.1:80 : 10.0.0.2:80|- : 0.002|0.003").unwrap();
        assert_eq!(redirected.upstream, "10.0.0.2:80");
        let none = parse_line("disco1|app1|503|-|-|0.000").unwrap();
        assert_eq!((none.upstream, none.upstream_ms), ("-", None));
        assert_eq!(
            parse_line("127.0.0.1 - - [01/Jan/2026] \"GET /\" 200"),
            None
        );
        assert_eq!(parse_line("disco1|app1|abc|x|y|z"), None);
    }

    fn addresses(pairs: &[(&str, &str)]) -> BTreeMap<String, BTreeMap<String, Serves>> {
        BTreeMap::from([(
            "app1".to_string(),
            pairs
                .iter()
                .map(|(address, version)| {
                    (
                        address.to_string(),
                        Serves {
                            app: "app1".into(),
                            version: version.to_string(),
                            mode: disco::model::Mode::Http,
                        },
                    )
                })
                .collect(),
        )])
    }

    fn by_version(poll: &Poll) -> BTreeMap<String, (u64, u64)> {
        let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for (s, c) in &poll.samples {
            let e = out.entry(s.version.clone()).or_default();
            e.0 += c.requests;
            e.1 += c.errors_5xx;
        }
        out
    }

    fn line(status: u16, upstream: &str) -> String {
        format!("disco1|app1|{status}|{upstream}|0.002|0.003\n")
    }

    #[test]
    fn follows_appends_partial_lines_rotation_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let mut log = NginxLog::new(path.clone());
        log.set_addresses(addresses(&[("127.0.0.1:1", "v1"), ("127.0.0.1:2", "v2")]));
        // No file yet: nothing, no error.
        assert!(log.poll().unwrap().samples.is_empty());
        // The file appears: everything in it is new.
        let mut f = File::create(&path).unwrap();
        write!(
            f,
            "{}{}",
            line(200, "127.0.0.1:1"),
            line(500, "127.0.0.1:2")
        )
        .unwrap();
        // Half a line waits for its end.
        write!(f, "disco1|app1|200|127.0.0.1:2|0.0").unwrap();
        let p = log.poll().unwrap();
        assert_eq!(
            by_version(&p),
            BTreeMap::from([("v1".into(), (1, 0)), ("v2".into(), (1, 1))])
        );
        write!(f, "01|0.002\n{}", line(200, "127.0.0.1:9")).unwrap();
        let p = log.poll().unwrap();
        assert_eq!(by_version(&p), BTreeMap::from([("v2".into(), (1, 0))]));
        assert_eq!(p.unattributed, 1);

        // Rotation: lines still written to the old file, then the new one.
        std::fs::rename(&path, dir.path().join("access.log.1")).unwrap();
        write!(f, "{}", line(500, "127.0.0.1:1")).unwrap();
        let mut g = File::create(&path).unwrap();
        write!(g, "{}", line(200, "127.0.0.1:1")).unwrap();
        let p = log.poll().unwrap();
        assert_eq!(by_version(&p), BTreeMap::from([("v1".into(), (2, 1))]));

        // Truncation: read again from the start.
        write!(
            g,
            "{}{}",
            line(200, "127.0.0.1:1"),
            line(200, "127.0.0.1:1")
        )
        .unwrap();
        log.poll().unwrap();
        g.set_len(0).unwrap();
        let mut g = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        write!(g, "{}", line(502, "127.0.0.1:2")).unwrap();
        let p = log.poll().unwrap();
        assert_eq!(by_version(&p), BTreeMap::from([("v2".into(), (1, 1))]));

        // An address gone from the config still counts for what it served.
        log.set_addresses(addresses(&[("127.0.0.1:3", "v3")]));
        write!(
            g,
            "{}{}",
            line(200, "127.0.0.1:2"),
            line(200, "127.0.0.1:3")
        )
        .unwrap();
        let p = log.poll().unwrap();
        assert_eq!(
            by_version(&p),
            BTreeMap::from([("v2".into(), (1, 0)), ("v3".into(), (1, 0))])
        );
    }

    #[test]
    fn what_the_log_held_before_the_agent_started_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        std::fs::write(&path, line(200, "127.0.0.1:1").repeat(5)).unwrap();
        let mut log = NginxLog::new(path.clone());
        log.set_addresses(addresses(&[("127.0.0.1:1", "v1")]));
        assert!(log.poll().unwrap().samples.is_empty());
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        write!(f, "{}", line(200, "127.0.0.1:1")).unwrap();
        assert_eq!(
            by_version(&log.poll().unwrap()),
            BTreeMap::from([("v1".into(), (1, 0))])
        );
    }
}
