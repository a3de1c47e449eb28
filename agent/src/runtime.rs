//! Routing changes through HAProxy's Runtime API (a worker's stats socket at `level
//! admin`), verified by reading them back: no reload, no new worker.
//!
//! The agent renders every registered endpoint as a server of its app's backends, so
//! that a flip, a weight, a drain, a health report, an endpoint added or removed and a
//! dark canary switched are changes of server weights, of the server list and of
//! pattern-file values: `set server <b>/<s> weight`, `add server`/`del server`,
//! `add acl`/`del acl`. What the proxy runs is read (`show servers state <backend>`,
//! `show acl <file>`), the commands are the difference to the next state, and the result
//! is read again and compared. Anything else — a command refused, a read-back that
//! differs, a change the Runtime API cannot make — is an error, and the caller falls back
//! to a full reload.
//!
//! Order of the commands, so that no request meets a backend without a server that
//! should have one: servers added; weights raised; pattern values added, then removed;
//! weights lowered to 0; servers removed (maintenance, then `del server`; a server that
//! still has connections is left in maintenance, which serves no new request, and
//! deleted by a later change).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use disco::render::haproxy::RuntimeState;
use disco::validate::{self, Host};

use crate::haproxy_cli::{self, CliError, Side};

/// What HAProxy runs, for the backends and pattern files read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Running {
    /// Backend → server name → server.
    pub backends: BTreeMap<String, BTreeMap<String, RunningServer>>,
    /// Pattern file → values.
    pub patterns: BTreeMap<String, BTreeSet<String>>,
}

/// One server as `show servers state` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningServer {
    pub addr: String,
    pub port: u16,
    /// The current (user) weight.
    pub weight: u32,
    /// In maintenance (forced by the Runtime API or by configuration).
    pub maint: bool,
}

/// What to read and change: the backends and pattern files whose state differs between
/// what was applied last and the next state (all of them when the last is unknown).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    pub backends: BTreeSet<String>,
    pub patterns: BTreeSet<String>,
}

impl Touched {
    /// The parts of `next` that differ from `last` (every part without `last`).
    pub fn between(last: Option<&RuntimeState>, next: &RuntimeState) -> Touched {
        let backends = next
            .backends
            .iter()
            .filter(|(b, servers)| last.and_then(|l| l.backends.get(*b)) != Some(servers))
            .map(|(b, _)| b.clone())
            .collect();
        let patterns = next
            .patterns
            .iter()
            .filter(|(f, values)| last.and_then(|l| l.patterns.get(*f)) != Some(values))
            .map(|(f, _)| f.clone())
            .collect();
        Touched { backends, patterns }
    }
}

/// One Runtime API command and the answers that mean success (besides an empty one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub text: String,
    ok: &'static [&'static str],
    /// A failure leaves nothing wrong behind (a removal that waits for connections).
    tolerated: bool,
}

impl Command {
    fn new(text: String) -> Command {
        Command {
            text,
            ok: &[],
            tolerated: false,
        }
    }
}

/// Where the fields `show servers state` (format version 1) are, by column name.
struct Columns {
    be: usize,
    srv: usize,
    addr: usize,
    admin: usize,
    uweight: usize,
    port: usize,
}

impl Columns {
    /// The columns of `answer`'s header, and its server lines.
    fn of(answer: &str) -> Result<(Columns, std::str::Lines<'_>), String> {
        let mut lines = answer.lines();
        if lines.next().map(str::trim) != Some("1") {
            return Err(format!(
                "unexpected answer to `show servers state`: {:?}",
                answer.chars().take(200).collect::<String>()
            ));
        }
        let header: Vec<&str> = match lines.next().and_then(|l| l.strip_prefix("# ")) {
            Some(h) => h.split_whitespace().collect(),
            None => return Err("`show servers state`: no header line".into()),
        };
        let column = |name: &str| {
            header
                .iter()
                .position(|c| *c == name)
                .ok_or_else(|| format!("`show servers state`: no column {name}"))
        };
        let columns = Columns {
            be: column("be_name")?,
            srv: column("srv_name")?,
            addr: column("srv_addr")?,
            admin: column("srv_admin_state")?,
            uweight: column("srv_uweight")?,
            port: column("srv_port")?,
        };
        Ok((columns, lines))
    }
}

/// Parses `show servers state [<backend>]` (format version 1), by column name.
pub fn parse_servers_state(
    answer: &str,
) -> Result<BTreeMap<String, BTreeMap<String, RunningServer>>, String> {
    let (columns, lines) = Columns::of(answer)?;
    let Columns {
        be,
        srv,
        addr,
        admin,
        uweight,
        port,
    } = columns;
    let mut out: BTreeMap<String, BTreeMap<String, RunningServer>> = BTreeMap::new();
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() || line.starts_with('#') {
            continue;
        }
        let field = |i: usize| {
            fields
                .get(i)
                .copied()
                .ok_or_else(|| format!("`show servers state`: short line {line:?}"))
        };
        let number = |i: usize| -> Result<u32, String> {
            field(i)?
                .parse()
                .map_err(|_| format!("`show servers state`: not a number in {line:?}"))
        };
        let server = RunningServer {
            addr: field(addr)?.to_string(),
            port: number(port)? as u16,
            weight: number(uweight)?,
            // SRV_ADMF_FMAINT (forced), SRV_ADMF_IMAINT (inherited), SRV_ADMF_CMAINT
            // (configuration): any of them keeps new traffic away.
            maint: number(admin)? & 0x23 != 0,
        };
        out.entry(field(be)?.to_string())
            .or_default()
            .insert(field(srv)?.to_string(), server);
    }
    Ok(out)
}

/// Parses `show acl <file>`: one `<id> <value>` line per value.
pub fn parse_acl(answer: &str) -> BTreeSet<String> {
    answer
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(_, v)| v.trim().to_string()))
        .filter(|v| !v.is_empty())
        .collect()
}

/// A client of one stats socket.
pub struct Runtime<'a> {
    pub socket: &'a Path,
    pub timeout: Duration,
}

impl Runtime<'_> {
    async fn show(&self, command: &str) -> Result<String, CliError> {
        haproxy_cli::exchange(self.socket, Side::Worker, command, self.timeout).await
    }

    /// Reads the state of the `touched` backends and pattern files. Many backends are
    /// read with one `show servers state`.
    pub async fn read(&self, touched: &Touched) -> Result<Running, String> {
        let mut running = Running::default();
        if touched.backends.len() > 8 {
            let answer = self
                .show("show servers state")
                .await
                .map_err(|e| e.to_string())?;
            let mut all = parse_servers_state(&answer)?;
            for backend in &touched.backends {
                let servers = all
                    .remove(backend)
                    .ok_or_else(|| format!("backend {backend} is not running"))?;
                running.backends.insert(backend.clone(), servers);
            }
        }
        for backend in touched
            .backends
            .iter()
            .filter(|_| touched.backends.len() <= 8)
        {
            let answer = self
                .show(&format!("show servers state {backend}"))
                .await
                .map_err(|e| e.to_string())?;
            let mut parsed = parse_servers_state(&answer)
                .map_err(|e| format!("backend {backend}: {e}: {}", answer.trim()))?;
            running
                .backends
                .insert(backend.clone(), parsed.remove(backend).unwrap_or_default());
        }
        for file in &touched.patterns {
            let answer = self
                .show(&format!("show acl {file}"))
                .await
                .map_err(|e| e.to_string())?;
            if answer.starts_with("Unknown") {
                return Err(format!(
                    "pattern file {file} is not loaded: {}",
                    answer.trim()
                ));
            }
            running.patterns.insert(file.clone(), parse_acl(&answer));
        }
        Ok(running)
    }

    /// Runs `commands` in order; the first refusal that is not tolerated stops them.
    /// Returns how many ran and how many tolerated ones failed.
    pub async fn run(&self, commands: &[Command]) -> Result<usize, CliError> {
        let mut deferred = 0;
        for c in commands {
            match haproxy_cli::change(self.socket, &c.text, c.ok, self.timeout).await {
                Ok(()) => {}
                Err(CliError::Refused { answer, .. }) if c.tolerated => {
                    tracing::debug!(command = %c.text, answer = %answer.trim(), "deferred to a later change");
                    deferred += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(deferred)
    }

    /// Writes `show servers state` (every backend) to `path`, for the reload to `next`:
    /// what the new worker takes from it is each server's health (a server that is down
    /// stays down). HAProxy would also restore a weight changed at run time when the
    /// configured weight did not change, and a maintenance state: for the servers of
    /// `next`, the file carries `next`'s weight and no maintenance instead.
    pub async fn save_state(&self, path: &Path, next: &RuntimeState) -> Result<(), String> {
        let answer = self
            .show("show servers state")
            .await
            .map_err(|e| e.to_string())?;
        let text = state_for(&answer, next)?;
        crate::atomic_write::install(path, text.as_bytes())
            .map_err(|e| format!("writing {}: {e}", path.display()))
    }
}

/// `show servers state` with, for every server of `next`, `next`'s weight as its
/// current weight and no maintenance.
pub fn state_for(answer: &str, next: &RuntimeState) -> Result<String, String> {
    parse_servers_state(answer)?;
    let (
        Columns {
            be,
            srv,
            admin,
            uweight,
            ..
        },
        lines,
    ) = Columns::of(answer)?;
    let mut out = String::with_capacity(answer.len());
    for line in answer.lines().take(2) {
        out.push_str(line);
        out.push('\n');
    }
    for line in lines {
        let mut fields: Vec<&str> = line.split_whitespace().collect();
        let weight = fields
            .get(be)
            .zip(fields.get(srv))
            .and_then(|(b, s)| next.backends.get(*b)?.get(*s))
            .map(|s| s.weight.to_string());
        if let (Some(weight), true) = (&weight, fields.len() > admin.max(uweight)) {
            fields[uweight] = weight;
            fields[admin] = "0";
            out.push_str(&fields.join(" "));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    Ok(out)
}

/// The IP of a rendered address, or None for a host name.
fn ip_of(address: &str) -> Option<(IpAddr, u16)> {
    let a = validate::address(address).ok()?;
    match a.host {
        Host::V4(ip) => Some((IpAddr::V4(ip), a.port)),
        Host::V6(ip) => Some((IpAddr::V6(ip), a.port)),
        Host::Dns(_) => None,
    }
}

/// The commands that make `running` serve `next` in the touched parts, or why the
/// Runtime API cannot make the change.
pub fn commands(
    running: &Running,
    next: &RuntimeState,
    touched: &Touched,
) -> Result<Vec<Command>, String> {
    let mut add = Vec::new();
    let mut raise = Vec::new();
    let mut lower = Vec::new();
    let mut remove = Vec::new();
    for backend in &touched.backends {
        let want: &BTreeMap<_, _> = next
            .backends
            .get(backend)
            .ok_or_else(|| format!("backend {backend} is not in the next configuration"))?;
        let have = running.backends.get(backend);
        let have = have.ok_or_else(|| format!("backend {backend} is not running"))?;
        for (name, server) in want {
            let id = format!("{backend}/{name}");
            match have.get(name) {
                None => {
                    let Some((ip, port)) = ip_of(&server.address) else {
                        return Err(format!(
                            "{id}: a new server with a host name ({}) needs a reload",
                            server.address
                        ));
                    };
                    let addr = match ip {
                        IpAddr::V4(v4) => format!("{v4}:{port}"),
                        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
                    };
                    add.push(Command {
                        text: format!(
                            "add server {id} {addr} weight {} {}",
                            server.weight, next.check
                        ),
                        ok: &["New server registered."],
                        tolerated: false,
                    });
                    add.push(Command::new(format!("enable health {id}")));
                    add.push(Command::new(format!("set server {id} state ready")));
                }
                Some(running) => {
                    if let Some((ip, port)) = ip_of(&server.address) {
                        let same =
                            running.addr.parse::<IpAddr>().ok() == Some(ip) && running.port == port;
                        if !same {
                            return Err(format!(
                                "{id}: address changed from {}:{} to {}: needs a reload",
                                running.addr, running.port, server.address
                            ));
                        }
                    }
                    if running.weight != server.weight {
                        let c = Command::new(format!("set server {id} weight {}", server.weight));
                        if server.weight > 0 {
                            raise.push(c);
                        } else {
                            lower.push(c);
                        }
                    }
                    if running.maint {
                        raise.push(Command::new(format!("set server {id} state ready")));
                    }
                }
            }
        }
        for (name, running) in have {
            if want.contains_key(name) {
                continue;
            }
            let id = format!("{backend}/{name}");
            if !running.maint {
                remove.push(Command::new(format!("set server {id} state maint")));
            }
            remove.push(Command {
                text: format!("del server {id}"),
                ok: &["Server deleted."],
                tolerated: true,
            });
        }
    }
    let mut patterns_add = Vec::new();
    let mut patterns_del = Vec::new();
    for file in &touched.patterns {
        let want = next.patterns.get(file).cloned().unwrap_or_default();
        let have = running.patterns.get(file).cloned().unwrap_or_default();
        for v in want.difference(&have) {
            patterns_add.push(Command::new(format!("add acl {file} {v}")));
        }
        for v in have.difference(&want) {
            patterns_del.push(Command::new(format!("del acl {file} {v}")));
        }
    }
    Ok(add
        .into_iter()
        .chain(raise)
        .chain(patterns_add)
        .chain(patterns_del)
        .chain(lower)
        .chain(remove)
        .collect())
}

/// Compares what HAProxy runs with `next` in the touched parts. A server that is not in
/// `next` may remain in maintenance (its removal waits for its connections).
pub fn verify(running: &Running, next: &RuntimeState, touched: &Touched) -> Result<(), String> {
    for backend in &touched.backends {
        let (none, absent) = (BTreeMap::new(), BTreeMap::new());
        let want: &BTreeMap<_, _> = next.backends.get(backend).map_or(&none, |b| b);
        let have = running.backends.get(backend).unwrap_or(&absent);
        for (name, server) in want {
            let Some(r) = have.get(name) else {
                return Err(format!("{backend}/{name} is missing"));
            };
            if r.weight != server.weight || r.maint {
                return Err(format!(
                    "{backend}/{name} has weight {}{} instead of {}",
                    r.weight,
                    if r.maint { " in maintenance" } else { "" },
                    server.weight
                ));
            }
            if let Some((ip, port)) = ip_of(&server.address) {
                if r.addr.parse::<IpAddr>().ok() != Some(ip) || r.port != port {
                    return Err(format!(
                        "{backend}/{name} is at {}:{} instead of {}",
                        r.addr, r.port, server.address
                    ));
                }
            }
        }
        if let Some((name, _)) = have
            .iter()
            .find(|(name, r)| !want.contains_key(*name) && !r.maint)
        {
            return Err(format!("{backend}/{name} should be gone but takes traffic"));
        }
    }
    for file in &touched.patterns {
        let want = next.patterns.get(file).cloned().unwrap_or_default();
        let have = running.patterns.get(file).cloned().unwrap_or_default();
        if want != have {
            return Err(format!(
                "pattern file {file} holds {have:?} instead of {want:?}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use disco::render::haproxy::RuntimeServer;

    const STATE: &str = "1\n\
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n\
4 disco_app1 1 instance1:v1 127.0.0.1 2 0 0 100 1 15 3 2 6 0 0 0 - 35093 - 0 0 - - 0\n\
4 disco_app1 2 instance1:v2 127.0.0.1 2 0 100 0 1 15 3 2 6 0 0 0 - 44189 - 0 0 - - 0\n\
4 disco_app1 7 instance4:v1 127.0.0.1 2 1 0 0 0 1 0 1 6 0 0 0 - 33737 - 0 0 - - 0\n\n";

    fn server(port: u16, weight: u32) -> RuntimeServer {
        RuntimeServer {
            address: format!("127.0.0.1:{port}"),
            weight,
        }
    }

    fn next(servers: &[(&str, RuntimeServer)], patterns: &[(&str, &[&str])]) -> RuntimeState {
        RuntimeState {
            backends: BTreeMap::from([(
                "disco_app1".to_string(),
                std::sync::Arc::new(
                    servers
                        .iter()
                        .map(|(n, s)| (n.to_string(), s.clone()))
                        .collect(),
                ),
            )]),
            patterns: patterns
                .iter()
                .map(|(f, v)| (f.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
            check: "check inter 1000 fall 2 rise 1".into(),
            ..RuntimeState::default()
        }
    }

    fn running(patterns: &[(&str, &[&str])]) -> Running {
        Running {
            backends: parse_servers_state(STATE).unwrap(),
            patterns: patterns
                .iter()
                .map(|(f, v)| (f.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
        }
    }

    #[test]
    fn servers_state_is_read_by_column_name() {
        let state = parse_servers_state(STATE).unwrap();
        let app = &state["disco_app1"];
        assert_eq!(
            app["instance1:v2"],
            RunningServer {
                addr: "127.0.0.1".into(),
                port: 44189,
                weight: 100,
                maint: false
            }
        );
        assert!(app["instance4:v1"].maint);
        assert!(parse_servers_state("Can't find backend.\n").is_err());
        assert_eq!(
            parse_acl("0x55d0c1a0f7c0 internal\n0x55d0c1a0f7d0 10.0.0.0/8\n\n"),
            BTreeSet::from(["internal".to_string(), "10.0.0.0/8".to_string()])
        );
    }

    #[test]
    fn commands_never_leave_a_routed_backend_or_a_dark_match_without_servers() {
        let file = "/p/app1.header.X-Canary.acl";
        // instance1 flips v2 → v1, a dark value comes, one server goes, one arrives.
        let want = next(
            &[
                ("instance1:v1", server(35093, 100)),
                ("instance1:v2", server(44189, 0)),
                ("instance5:v1", server(9005, 50)),
            ],
            &[(file, &["internal"])],
        );
        let touched = Touched::between(None, &want);
        let cmds: Vec<String> = commands(&running(&[(file, &["old"])]), &want, &touched)
            .unwrap()
            .into_iter()
            .map(|c| c.text)
            .collect();
        assert_eq!(
            cmds,
            [
                "add server disco_app1/instance5:v1 127.0.0.1:9005 weight 50 check inter 1000 fall 2 rise 1",
                "enable health disco_app1/instance5:v1",
                "set server disco_app1/instance5:v1 state ready",
                "set server disco_app1/instance1:v1 weight 100",
                "add acl /p/app1.header.X-Canary.acl internal",
                "del acl /p/app1.header.X-Canary.acl old",
                "set server disco_app1/instance1:v2 weight 0",
                // Already in maintenance: only the deletion.
                "del server disco_app1/instance4:v1",
            ]
        );
    }

    #[test]
    fn what_the_runtime_api_cannot_do_is_said() {
        let moved = next(&[("instance1:v2", server(1, 100))], &[]);
        let e = commands(&running(&[]), &moved, &Touched::between(None, &moved)).unwrap_err();
        assert!(e.contains("address changed"), "{e}");
        let mut named = next(&[], &[]);
        std::sync::Arc::make_mut(named.backends.get_mut("disco_app1").unwrap()).insert(
            "instance9:v1".into(),
            RuntimeServer {
                address: "app.example:80".into(),
                weight: 1,
            },
        );
        let e = commands(&running(&[]), &named, &Touched::between(None, &named)).unwrap_err();
        assert!(e.contains("host name"), "{e}");
    }

    #[test]
    fn verify_finds_every_difference() {
        let have = running(&[("/p/f.acl", &["a"])]);
        let same = next(
            &[
                ("instance1:v1", server(35093, 0)),
                ("instance1:v2", server(44189, 100)),
            ],
            &[("/p/f.acl", &["a"])],
        );
        let all = Touched::between(None, &same);
        // instance4:v1 is not wanted but in maintenance: a removal that waits.
        verify(&have, &same, &all).unwrap();
        let mut weight = same.clone();
        std::sync::Arc::make_mut(weight.backends.get_mut("disco_app1").unwrap())
            .get_mut("instance1:v1")
            .unwrap()
            .weight = 5;
        assert!(verify(&have, &weight, &all)
            .unwrap_err()
            .contains("weight 0 instead of 5"));
        let values = next(&[], &[("/p/f.acl", &["b"])]);
        let patterns_only = Touched {
            patterns: BTreeSet::from(["/p/f.acl".to_string()]),
            ..Touched::default()
        };
        assert!(verify(&have, &values, &patterns_only)
            .unwrap_err()
            .contains("pattern file /p/f.acl"));
        let mut missing = same.clone();
        std::sync::Arc::make_mut(missing.backends.get_mut("disco_app1").unwrap())
            .insert("instance7:v1".into(), server(7, 1));
        assert!(verify(&have, &missing, &all)
            .unwrap_err()
            .contains("missing"));
        // Only what was touched is compared.
        let none = Touched::default();
        verify(&have, &weight, &none).unwrap();
        // An unwanted server that takes traffic.
        let mut lost = same.clone();
        std::sync::Arc::make_mut(lost.backends.get_mut("disco_app1").unwrap())
            .remove("instance1:v1");
        assert!(verify(&have, &lost, &all)
            .unwrap_err()
            .contains("should be gone"));
    }

    #[test]
    fn the_saved_state_carries_the_next_weights_and_no_maintenance() {
        let want = next(
            &[
                ("instance1:v1", server(35093, 100)),
                ("instance4:v1", server(33737, 5)),
            ],
            &[],
        );
        let text = state_for(STATE, &want).unwrap();
        let state = parse_servers_state(&text).unwrap();
        let app = &state["disco_app1"];
        // Weight from next (HAProxy would otherwise restore 0 over the configured 100).
        assert_eq!(app["instance1:v1"].weight, 100);
        // Maintenance cleared for a server next keeps.
        assert_eq!(app["instance4:v1"].weight, 5);
        assert!(!app["instance4:v1"].maint);
        // Servers next does not name: as they were.
        assert_eq!(app["instance1:v2"].weight, 100);
        assert!(text.starts_with("1\n# be_id "));
        assert!(state_for("garbage", &want).is_err());
    }
}
