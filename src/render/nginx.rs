//! The built-in nginx renderer: a file `include`d inside the operator's `http { }`
//! block (so only `upstream`, `geo`, `map` and `server` blocks) that gives every HTTP
//! app with a `listen` address a working load balancer. nginx 1.22 syntax, open-source
//! modules only.
//!
//! Per app:
//!
//! - `upstream disco_<app>` holds the endpoints of the routed slots; nginx OSS has only
//!   passive health checks (`max_fails`, `fail_timeout`). A version at 0% of the
//!   traffic is left out (nginx weights start at 1).
//! - A dark canary adds `upstream disco-dark_<app>` and a `map` chain selecting it:
//!   a `geo` for source networks, one `map` per header (`$http_<name>`, lowercase,
//!   `-` → `_`) or cookie (a regex over `$http_cookie`, so that names with `-` work and
//!   names match case-sensitively as in HAProxy). Values are matched exactly and
//!   case-sensitively, as anchored regexes: nginx compares plain map strings ignoring
//!   case. Header names with `_` turn on `underscores_in_headers` for that server.
//! - `server` listens on the app's address and proxies with HTTP/1.1 keep-alive to the
//!   upstream, retrying on another server after an error, a timeout or a 502/503/504
//!   (`proxy_next_upstream`; never for a non-idempotent request already sent).
//! - An app with no routable endpoint keeps its server, which answers `503`.
//! - TCP apps are not rendered (with a warning): this file lives in `http { }`; they
//!   need an nginx `stream` target.
//!
//! - With an `access_log` path set, every server logs each request to it in disco's
//!   own format (`log_format disco_<app>`, see [`ACCESS_LOG_FORMAT`]) so that the agent
//!   can count requests, 5xx and response times per version (nginx OSS has no
//!   per-upstream statistics API). A server-level `access_log` replaces the ones it
//!   would inherit from `http { }`, so these servers then log only there.
//!
//! nginx variable names allow only `[A-Za-z0-9_]`, so an app name is escaped in them:
//! `_` → `__`, `.` → `_2e`, `-` → `_2d` (`my.app-2` → `$disco_my_2eapp_2d2_upstream`).
//! The escape is reversible, so two apps never share a variable.

use std::collections::BTreeMap;
use std::fmt::{self, Write};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::resolve::{self, Backend, DarkMatch, ResolvedApp, ResolvedDark};
use super::{header, Rendered, Serves};
use crate::model::Mode;
use crate::validate::Address;
use crate::Snapshot;

/// Tuning of the nginx output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NginxOptions {
    /// Failed attempts within `fail_timeout` after which a server is skipped
    /// (`max_fails`; 0 disables). Default 1.
    pub max_fails: u32,
    /// The window for `max_fails`, and how long a failed server is then skipped
    /// (`fail_timeout`). Default `"10s"`.
    #[serde(with = "humantime_serde")]
    pub fail_timeout: Duration,
    /// Servers tried for one request, the first included (`proxy_next_upstream_tries`;
    /// 0 means no limit). Default 3.
    pub next_upstream_tries: u32,
    /// Idle keep-alive connections to an upstream kept open per worker (`keepalive`; 0
    /// renders none). Default 32.
    pub keepalive: u32,
    /// How long to wait for a connection to a server (`proxy_connect_timeout`). Default
    /// `"5s"`.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Server inactivity timeout, reading and sending (`proxy_read_timeout`,
    /// `proxy_send_timeout`). Default `"30s"`.
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    /// Absolute path of an access log in disco's format, written by every server of
    /// this file, for the agent's traffic statistics. Default: none (no such log).
    pub access_log: Option<String>,
}

/// The fields of a line of disco's access log, `|`-separated, after the app name:
/// `disco1|<app>|$status|$upstream_addr|$upstream_response_time|$request_time`.
/// `$upstream_addr` and `$upstream_response_time` list every server tried (`a, b`,
/// or `a : b` after an internal redirect); the last one answered.
pub const ACCESS_LOG_FORMAT: &str = "$status|$upstream_addr|$upstream_response_time|$request_time";

/// The first field of every line of disco's access log: its format version.
pub const ACCESS_LOG_TAG: &str = "disco1";

impl Default for NginxOptions {
    fn default() -> Self {
        NginxOptions {
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
            next_upstream_tries: 3,
            keepalive: 32,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
            access_log: None,
        }
    }
}

/// Refuses an access-log path that is not absolute or could break out of its quotes
/// or be read as an nginx variable.
pub fn check_access_log(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("access_log {path:?} must be an absolute path"));
    }
    if let Some(c) = path
        .chars()
        .find(|c| c.is_control() || matches!(c, '"' | '\\' | '$' | '\'' | ';' | '{' | '}'))
    {
        return Err(format!("access_log {path:?} must not contain {c:?}"));
    }
    Ok(())
}

/// Renders every HTTP app that has a `listen` address into nginx `http { }` blocks.
pub fn nginx(snapshot: &Snapshot, options: &NginxOptions) -> Rendered {
    render(snapshot, options, None)
}

fn render(
    snapshot: &Snapshot,
    options: &NginxOptions,
    mut balancer: Option<(&BalancerFiles, &mut BalancerEntries)>,
) -> Rendered {
    let plan = resolve::resolve(snapshot);
    let mut warnings = plan.warnings.clone();
    let apps = resolve::rendered_apps(&plan.apps, &mut warnings, |app| {
        (app.mode == Mode::Tcp).then(|| {
            format!(
                "{}: tcp app not rendered: the nginx file is included in http {{ }}; it needs an nginx stream target",
                app.name
            )
        })
    });
    let mut options = options.clone();
    if let Some(e) = options
        .access_log
        .as_deref()
        .and_then(|p| check_access_log(p).err())
    {
        warnings.push(format!("{e}: not rendered"));
        options.access_log = None;
    }
    let mut text = header();
    match &mut balancer {
        None => write_file(&mut text, &apps, &options),
        Some((files, entries)) => {
            write_balancer_file(&mut text, &apps, &options, files, entries, &mut warnings)
        }
    }
    .expect("writing to a String cannot fail");
    Rendered { text, warnings }
}

/// Where an nginx target in balancer mode keeps its Lua module and its admin server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalancerFiles {
    /// The directory of `disco_balancer.lua` (put first on `lua_package_path`).
    pub module_dir: String,
    /// The unix socket of the admin server the agent pushes routes to.
    pub socket: String,
}

/// The location of the admin server, on its socket only.
pub const BALANCER_ADMIN_PATH: &str = "/_disco/balancer";

/// What a balancer push carries per app: its entry of the `disco_routes` dict (lines
/// of `routed <address> <weight>`, `dark <address> <weight>`, `header <name> <value>`,
/// `cookie <name> <value>`; see `balancer.lua`).
pub type BalancerEntries = BTreeMap<String, String>;

/// [`nginx()`] in balancer mode: each app's upstream is picked by Lua
/// (`balancer_by_lua_block`) from the entry the agent pushes to `disco_routes`, so that
/// flips, weights, endpoints, drains and dark-canary values and header or cookie names
/// change no file: the text changes only with the apps, their listen addresses and
/// the networks of dark canaries. Returns the entries to push.
pub fn nginx_balancer(
    snapshot: &Snapshot,
    options: &NginxOptions,
    files: &BalancerFiles,
) -> (Rendered, BalancerEntries) {
    let mut entries = BalancerEntries::new();
    let rendered = render(snapshot, options, Some((files, &mut entries)));
    (rendered, entries)
}

/// For each app [`nginx()`] renders from `snapshot`, what every upstream server serves,
/// by its address as nginx writes it in `$upstream_addr` (IP literals in canonical
/// form; an endpoint given by DNS name is listed by name and port, which nginx never
/// logs, so its traffic cannot be attributed). Dark-canary servers are included.
pub fn upstream_addresses(snapshot: &Snapshot) -> BTreeMap<String, BTreeMap<String, Serves>> {
    let plan = resolve::resolve(snapshot);
    let mut warnings = Vec::new();
    let apps = resolve::rendered_apps(&plan.apps, &mut warnings, |app| {
        (app.mode == Mode::Tcp).then(String::new)
    });
    let mut out = BTreeMap::new();
    for (app, _) in apps {
        let mut by_address = BTreeMap::new();
        let dark = app.dark.as_ref().map(|d| &d.backend);
        // Routed servers last: an address in both keeps its routed version.
        for backend in dark.into_iter().chain([&app.routed]) {
            for s in backend.servers.iter().filter(|s| s.weight > 0) {
                by_address.insert(
                    s.address.to_string(),
                    Serves {
                        app: app.name.to_string(),
                        version: s.version.to_string(),
                        mode: app.mode,
                    },
                );
            }
        }
        out.insert(app.name.to_string(), by_address);
    }
    out
}

fn write_file(
    out: &mut String,
    apps: &[(&ResolvedApp, &Address)],
    o: &NginxOptions,
) -> fmt::Result {
    writeln!(
        out,
        "# Include it inside the http {{ }} block of nginx.conf."
    )?;
    for (app, listen) in apps {
        write_app(out, app, listen, o)?;
    }
    Ok(())
}

/// The balancer-mode file: the dict, the module's path, the admin server, then per app
/// an upstream picked by Lua and its server.
fn write_balancer_file(
    out: &mut String,
    apps: &[(&ResolvedApp, &Address)],
    o: &NginxOptions,
    files: &BalancerFiles,
    entries: &mut BalancerEntries,
    warnings: &mut Vec<String>,
) -> fmt::Result {
    writeln!(
        out,
        "# Include it inside the http {{ }} block of nginx.conf, with the lua module loaded."
    )?;
    writeln!(
        out,
        "# Routing is pushed by disco-agent to {}.",
        files.socket
    )?;
    writeln!(out, "lua_shared_dict disco_routes {BALANCER_DICT_SIZE};")?;
    writeln!(out, "lua_package_path \"{}/?.lua;;\";", files.module_dir)?;
    writeln!(out, "server {{")?;
    writeln!(out, "    listen unix:{};", files.socket)?;
    writeln!(out, "    access_log off;")?;
    writeln!(out, "    location = {BALANCER_ADMIN_PATH} {{")?;
    writeln!(out, "        client_max_body_size 64m;")?;
    writeln!(out, "        client_body_buffer_size 1m;")?;
    writeln!(
        out,
        "        content_by_lua_block {{ require(\"disco_balancer\").admin() }}"
    )?;
    writeln!(out, "    }}")?;
    writeln!(out, "    location / {{")?;
    writeln!(out, "        return 404;")?;
    writeln!(out, "    }}")?;
    writeln!(out, "}}")?;
    for (app, listen) in apps {
        entries.insert(app.name.to_string(), balancer_entry(app, warnings));
        write_balancer_app(out, app, listen, o)?;
    }
    Ok(())
}

/// Size of the `disco_routes` dict: ~200 bytes per app entry; a change of size needs a
/// restart of nginx, so it is fixed.
const BALANCER_DICT_SIZE: &str = "16m";

/// An app's `disco_routes` entry. Servers by DNS name are left out (the balancer takes
/// addresses only), with a warning.
fn balancer_entry(app: &ResolvedApp, warnings: &mut Vec<String>) -> String {
    let mut entry = String::new();
    let dark = app.dark.as_ref();
    let sets = [
        ("routed", Some(&app.routed)),
        ("dark", dark.map(|d| &d.backend)),
    ];
    for (set, backend) in sets {
        for s in backend.into_iter().flat_map(|b| &b.servers) {
            if s.weight == 0 {
                continue;
            }
            if matches!(s.address.host, crate::validate::Host::Dns(_)) {
                warnings.push(format!(
                    "{}/{} {}: {} is a DNS name; the nginx balancer takes IP addresses only: left out",
                    app.name, s.instance, s.version, s.address
                ));
                continue;
            }
            entry.push_str(&format!("\n{set} {} {}", s.address, s.weight));
        }
    }
    for m in dark.into_iter().flat_map(|d| &d.matches) {
        match m {
            DarkMatch::Header { name, value } => {
                entry.push_str(&format!("\nheader {name} {value}"))
            }
            DarkMatch::Cookie { name, value } => {
                entry.push_str(&format!("\ncookie {name} {value}"))
            }
            DarkMatch::Network(_) => {}
        }
    }
    entry
}

fn write_balancer_app(
    out: &mut String,
    app: &ResolvedApp,
    listen: &Address,
    o: &NginxOptions,
) -> fmt::Result {
    let name = app.name;
    let var = format!("disco_{}", variable_safe(name));
    let upstream = format!("disco_{name}");
    writeln!(out)?;
    writeln!(
        out,
        "# {name}: http on {listen}; servers picked by the balancer"
    )?;
    writeln!(out, "upstream {upstream} {{")?;
    writeln!(
        out,
        "    server 0.0.0.1:1;  # never used: the balancer sets the peer"
    )?;
    writeln!(
        out,
        "    balancer_by_lua_block {{ require(\"disco_balancer\").balance({}) }}",
        o.next_upstream_tries.max(1)
    )?;
    // After the balancer block: nginx drops a keepalive placed before it.
    if o.keepalive > 0 {
        writeln!(out, "    keepalive {};", o.keepalive)?;
    }
    writeln!(out, "}}")?;
    // A dark canary by network is a `geo` of the file; headers and cookies are pushed.
    let networks = app.dark.as_ref().map(networks).unwrap_or_default();
    let network = if networks.is_empty() {
        "\"0\"".to_string()
    } else {
        format!("ngx.var.{}", &write_geo(out, &var, &networks)?[1..])
    };
    write_server_head(out, name, &var, listen, o, true)?;
    // The balancer's admin path is served on its socket only.
    writeln!(out, "    location = {BALANCER_ADMIN_PATH} {{")?;
    writeln!(out, "        return 404;")?;
    writeln!(out, "    }}")?;
    writeln!(out, "    location / {{")?;
    writeln!(
        out,
        "        access_by_lua_block {{ require(\"disco_balancer\").access(\"{name}\", {network}) }}"
    )?;
    write_proxy(out, &upstream, o)?;
    writeln!(out, "    }}")?;
    writeln!(out, "}}")
}

/// Where an app's requests go.
enum Target {
    /// A fixed upstream.
    Upstream(String),
    /// The upstream named by a variable; empty means 503.
    Variable { name: String, may_be_empty: bool },
    /// Nowhere: 503.
    Unavailable,
}

fn write_app(
    out: &mut String,
    app: &ResolvedApp,
    listen: &Address,
    o: &NginxOptions,
) -> fmt::Result {
    let name = app.name;
    let var = format!("disco_{}", variable_safe(name));
    let routed = format!("disco_{name}");
    writeln!(out)?;
    writeln!(out, "# {name}: http on {listen}")?;
    let has_routed = write_upstream(out, &routed, &app.routed, o)?;
    let mut underscores = false;
    let target = match &app.dark {
        None if has_routed => Target::Upstream(routed),
        None => Target::Unavailable,
        Some(dark) => {
            let dark_upstream = format!("disco-dark_{name}");
            writeln!(out, "# {name}: dark canary, {}", dark.version)?;
            write_upstream(out, &dark_upstream, &dark.backend, o)?;
            // 0/1 flags: one for all networks, one per header or cookie match (numbered by
            // its place in the policy); the request is dark if any flag is 1.
            let mut flags = Vec::new();
            let networks = networks(dark);
            if !networks.is_empty() {
                flags.push(write_geo(out, &var, &networks)?);
            }
            for (i, m) in dark.matches.iter().enumerate() {
                let (source, pattern) = match m {
                    DarkMatch::Header { name, value } => {
                        underscores |= name.contains('_');
                        let header = name.to_ascii_lowercase().replace('-', "_");
                        (
                            format!("$http_{header}"),
                            format!("~^{}$", regex_literal(value)),
                        )
                    }
                    DarkMatch::Cookie { name, value } => (
                        "$http_cookie".to_string(),
                        format!(
                            "\"~(^|;)\\s*{}={}\\s*(;|$)\"",
                            regex_literal(name),
                            regex_literal(value)
                        ),
                    ),
                    DarkMatch::Network(_) => continue,
                };
                let flag = format!("${var}_m{i}");
                writeln!(out, "map {source} {flag} {{")?;
                writeln!(out, "    default 0;")?;
                writeln!(out, "    {pattern} 1;")?;
                writeln!(out, "}}")?;
                flags.push(flag);
            }
            let selector = format!("${var}_upstream");
            writeln!(out, "map {} {selector} {{", flags.concat())?;
            if has_routed {
                writeln!(out, "    default {routed};")?;
            } else {
                writeln!(out, "    default \"\";")?;
            }
            writeln!(out, "    ~1 {dark_upstream};")?;
            writeln!(out, "}}")?;
            Target::Variable {
                name: selector,
                may_be_empty: !has_routed,
            }
        }
    };
    write_server_head(out, name, &var, listen, o, underscores)?;
    writeln!(out, "    location / {{")?;
    let pass = match target {
        Target::Unavailable => {
            writeln!(out, "        # no routable endpoint")?;
            writeln!(out, "        return 503;")?;
            writeln!(out, "    }}")?;
            return writeln!(out, "}}");
        }
        Target::Upstream(upstream) => upstream,
        Target::Variable { name, may_be_empty } => {
            if may_be_empty {
                writeln!(
                    out,
                    "        # no routable endpoint outside the dark canary"
                )?;
                writeln!(out, "        if ({name} = \"\") {{")?;
                writeln!(out, "            return 503;")?;
                writeln!(out, "        }}")?;
            }
            name
        }
    };
    write_proxy(out, &pass, o)?;
    writeln!(out, "    }}")?;
    writeln!(out, "}}")
}

/// The networks a dark canary matches.
fn networks<'a>(dark: &'a ResolvedDark) -> Vec<&'a String> {
    dark.matches
        .iter()
        .filter_map(|m| match m {
            DarkMatch::Network(net) => Some(net),
            _ => None,
        })
        .collect()
}

/// `geo $<var>_src`: 1 for a request from one of `networks`, else 0. Returns the
/// variable (with its `$`).
fn write_geo(out: &mut String, var: &str, networks: &[&String]) -> Result<String, fmt::Error> {
    let flag = format!("${var}_src");
    writeln!(out, "geo {flag} {{")?;
    writeln!(out, "    default 0;")?;
    for net in networks {
        writeln!(out, "    {net} 1;")?;
    }
    writeln!(out, "}}")?;
    Ok(flag)
}

/// An app's `log_format` (with an access log) and the opening of its `server`: the
/// listen address, the access log, and `underscores_in_headers` when asked.
fn write_server_head(
    out: &mut String,
    name: &str,
    var: &str,
    listen: &Address,
    o: &NginxOptions,
    underscores: bool,
) -> fmt::Result {
    if o.access_log.is_some() {
        writeln!(
            out,
            "log_format {var} '{ACCESS_LOG_TAG}|{name}|{ACCESS_LOG_FORMAT}';"
        )?;
    }
    writeln!(out, "server {{")?;
    writeln!(out, "    listen {listen};")?;
    if let Some(path) = &o.access_log {
        writeln!(out, "    access_log \"{path}\" {var} buffer=32k flush=1s;")?;
    }
    if underscores {
        writeln!(out, "    underscores_in_headers on;")?;
    }
    Ok(())
}

/// The `proxy_*` lines of a location that passes to `pass`.
fn write_proxy(out: &mut String, pass: &str, o: &NginxOptions) -> fmt::Result {
    writeln!(out, "        proxy_pass http://{pass};")?;
    writeln!(out, "        proxy_http_version 1.1;")?;
    writeln!(out, "        proxy_set_header Connection \"\";")?;
    writeln!(out, "        proxy_set_header Host $http_host;")?;
    writeln!(
        out,
        "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"
    )?;
    writeln!(
        out,
        "        proxy_next_upstream error timeout http_502 http_503 http_504;"
    )?;
    writeln!(
        out,
        "        proxy_next_upstream_tries {};",
        o.next_upstream_tries
    )?;
    writeln!(
        out,
        "        proxy_connect_timeout {};",
        resolve::duration(o.connect_timeout)
    )?;
    writeln!(
        out,
        "        proxy_read_timeout {};",
        resolve::duration(o.read_timeout)
    )?;
    writeln!(
        out,
        "        proxy_send_timeout {};",
        resolve::duration(o.read_timeout)
    )
}

/// Writes `upstream <name>` unless no server takes traffic (nginx refuses an empty
/// upstream). Returns whether it was written.
fn write_upstream(
    out: &mut String,
    name: &str,
    backend: &Backend,
    o: &NginxOptions,
) -> Result<bool, fmt::Error> {
    if !backend.takes_traffic() {
        return Ok(false);
    }
    writeln!(out, "upstream {name} {{")?;
    for s in &backend.servers {
        if s.weight == 0 {
            writeln!(
                out,
                "    # {} {} {}: 0% of the traffic, left out",
                s.instance, s.version, s.address
            )?;
        } else {
            writeln!(
                out,
                "    server {} weight={} max_fails={} fail_timeout={};  # {} {}",
                s.address,
                s.weight,
                o.max_fails,
                resolve::duration(o.fail_timeout),
                s.instance,
                s.version
            )?;
        }
    }
    if o.keepalive > 0 {
        writeln!(out, "    keepalive {};", o.keepalive)?;
    }
    writeln!(out, "}}")?;
    Ok(true)
}

/// A name made of `[A-Za-z0-9._-]` as the `[A-Za-z0-9_]` of an nginx variable name:
/// `_` → `__`, `.` → `_2e`, `-` → `_2d`. Reversible, so distinct names stay distinct.
fn variable_safe(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '_' => out.push_str("__"),
            c if c.is_ascii_alphanumeric() => out.push(c),
            c => {
                let _ = write!(out, "_{:02x}", u32::from(c));
            }
        }
    }
    out
}

/// `s` as a PCRE literal: metacharacters get a backslash. Validated values contain
/// only `.` and `+` of these, and no letter ever follows a backslash (nginx would read
/// `\t`, `\n`, `\r` as control characters).
fn regex_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\^$.|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keyspace;

    fn render(kvs: &[(&str, &str)]) -> Rendered {
        nginx(
            &Snapshot::from_kvs(&Keyspace::default(), 5, kvs.iter().copied()),
            &NginxOptions::default(),
        )
    }

    /// The lines of the block that starts with `title {`.
    fn block(text: &str, title: &str) -> Vec<String> {
        let start = text
            .find(&format!("\n{title} {{\n"))
            .unwrap_or_else(|| panic!("no {title:?} in\n{text}"));
        text[start + 1..]
            .lines()
            .skip(1)
            .take_while(|l| *l != "}")
            .map(|l| l.trim().to_string())
            .collect()
    }

    const APP1: [(&str, &str); 5] = [
        ("/disco/apps/app1/policy", r#"{"listen":"127.0.0.1:8080"}"#),
        ("/disco/apps/app1/routes/instance1", "v2"),
        ("/disco/apps/app1/routes/instance2", "v1"),
        (
            "/disco/apps/app1/endpoints/instance1/v2",
            r#"{"address":"127.0.0.1:9101","health_path":"/healthz"}"#,
        ),
        (
            "/disco/apps/app1/endpoints/instance2/v1",
            r#"{"address":"127.0.0.1:9002","weight":50}"#,
        ),
    ];

    #[test]
    fn an_app_gets_an_upstream_and_a_server_that_retries_elsewhere() {
        let r = render(&APP1);
        assert!(
            r.text
                .starts_with("# Generated by disco-agent from etcd. Do not edit"),
            "{}",
            r.text
        );
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        assert_eq!(
            block(&r.text, "upstream disco_app1"),
            [
                "server 127.0.0.1:9101 weight=100 max_fails=1 fail_timeout=10s;  # instance1 v2",
                "server 127.0.0.1:9002 weight=50 max_fails=1 fail_timeout=10s;  # instance2 v1",
                "keepalive 32;",
            ]
        );
        assert_eq!(
            block(&r.text, "server"),
            [
                "listen 127.0.0.1:8080;",
                "location / {",
                "proxy_pass http://disco_app1;",
                "proxy_http_version 1.1;",
                "proxy_set_header Connection \"\";",
                "proxy_set_header Host $http_host;",
                "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
                "proxy_next_upstream error timeout http_502 http_503 http_504;",
                "proxy_next_upstream_tries 3;",
                "proxy_connect_timeout 5s;",
                "proxy_read_timeout 30s;",
                "proxy_send_timeout 30s;",
                "}",
            ]
        );
        assert!(!r.text.contains("non_idempotent"));
    }

    #[test]
    fn options_reach_the_output() {
        let options = NginxOptions {
            max_fails: 3,
            fail_timeout: Duration::from_millis(2500),
            next_upstream_tries: 2,
            keepalive: 0,
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(120),
            access_log: None,
        };
        let r = nginx(&Snapshot::from_kvs(&Keyspace::default(), 5, APP1), &options);
        assert!(
            r.text
                .contains("weight=100 max_fails=3 fail_timeout=2500ms;"),
            "{}",
            r.text
        );
        assert!(!r.text.contains("keepalive"));
        for line in [
            "proxy_next_upstream_tries 2;",
            "proxy_connect_timeout 1s;",
            "proxy_send_timeout 120s;",
        ] {
            assert!(r.text.contains(line), "{line}");
        }
        let parsed: NginxOptions = serde_json::from_str(r#"{"fail_timeout":"1m"}"#).unwrap();
        assert_eq!(parsed.fail_timeout, Duration::from_secs(60));
        assert!(serde_json::from_str::<NginxOptions>(r#"{"typo":1}"#).is_err());
    }

    #[test]
    fn an_access_log_in_disco_format_per_app_and_addresses_to_attribute_it() {
        let mut kvs = APP1.to_vec();
        kvs[0] = (
            "/disco/apps/my.app/policy",
            r#"{"listen":"127.0.0.1:8080","dark":{"version":"v3","matches":[{"cidr":"10.0.0.0/8"}]}}"#,
        );
        kvs.push((
            "/disco/apps/my.app/endpoints/instance2/v3",
            r#"{"address":"[0:0::1]:9203"}"#,
        ));
        let kvs: Vec<(String, &str)> = kvs
            .iter()
            .map(|(k, v)| (k.replace("/app1/", "/my.app/"), *v))
            .collect();
        let snapshot = Snapshot::from_kvs(&Keyspace::default(), 5, kvs);
        let options = NginxOptions {
            access_log: Some("/var/log/nginx/disco access.log".into()),
            ..NginxOptions::default()
        };
        let r = nginx(&snapshot, &options);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        assert!(
            r.text.contains("\nlog_format disco_my_2eapp 'disco1|my.app|$status|$upstream_addr|$upstream_response_time|$request_time';\nserver {\n"),
            "{}",
            r.text
        );
        assert_eq!(
            block(&r.text, "server")[..2],
            [
                "listen 127.0.0.1:8080;",
                "access_log \"/var/log/nginx/disco access.log\" disco_my_2eapp buffer=32k flush=1s;"
            ]
        );
        let addresses = upstream_addresses(&snapshot);
        let got: Vec<(&str, &str)> = addresses["my.app"]
            .iter()
            .map(|(a, s)| (a.as_str(), s.version.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("127.0.0.1:9002", "v1"),
                ("127.0.0.1:9101", "v2"),
                ("[::1]:9203", "v3")
            ]
        );

        // Without the option nothing changes; a path that could inject is refused.
        assert!(!render(&APP1).text.contains("log"));
        for bad in ["relative.log", "/x\";\n", "/logs/$host.log", "/a\\b"] {
            let r = nginx(
                &snapshot,
                &NginxOptions {
                    access_log: Some(bad.into()),
                    ..NginxOptions::default()
                },
            );
            assert!(!r.text.contains("access_log"), "{bad}");
            assert!(r.warnings[0].contains("access_log"), "{:?}", r.warnings);
        }
    }

    #[test]
    fn an_app_without_routable_endpoint_answers_503() {
        let r = render(&[
            ("/disco/apps/down/policy", r#"{"listen":"127.0.0.1:8081"}"#),
            ("/disco/apps/down/routes/i1", "v1"),
        ]);
        assert!(!r.text.contains("upstream"), "{}", r.text);
        assert_eq!(
            block(&r.text, "server"),
            [
                "listen 127.0.0.1:8081;",
                "location / {",
                "# no routable endpoint",
                "return 503;",
                "}"
            ]
        );
        assert_eq!(
            r.warnings,
            ["down/i1 routes to v1: no endpoint registered for the routed version; left out"]
        );
    }

    #[test]
    fn dark_canary_maps_select_the_dark_upstream() {
        let mut kvs = APP1.to_vec();
        kvs[0] = (
            "/disco/apps/my.app-2/policy",
            r#"{"listen":"127.0.0.1:8080","dark":{"version":"v2","matches":[
                {"header":{"name":"X_Canary","value":"a.b+c"}},{"cookie":{"name":"dark-mode","value":"default"}},
                {"cidr":"10.1.2.3/8"},{"cidr":"fd00::1/16"}]}}"#,
        );
        let kvs: Vec<(String, &str)> = kvs
            .iter()
            .map(|(k, v)| (k.replace("/app1/", "/my.app-2/"), *v))
            .collect();
        let r = nginx(
            &Snapshot::from_kvs(&Keyspace::default(), 5, kvs),
            &NginxOptions::default(),
        );
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        let v = "$disco_my_2eapp_2d2";
        assert_eq!(
            block(&r.text, "upstream disco-dark_my.app-2"),
            [
                "server 127.0.0.1:9101 weight=100 max_fails=1 fail_timeout=10s;  # instance1 v2",
                "keepalive 32;"
            ]
        );
        assert_eq!(
            block(&r.text, &format!("geo {v}_src")),
            ["default 0;", "10.0.0.0/8 1;", "fd00::/16 1;"]
        );
        assert_eq!(
            block(&r.text, &format!("map $http_x_canary {v}_m0")),
            ["default 0;", r"~^a\.b\+c$ 1;"]
        );
        assert_eq!(
            block(&r.text, &format!("map $http_cookie {v}_m1")),
            ["default 0;", r#""~(^|;)\s*dark-mode=default\s*(;|$)" 1;"#]
        );
        assert_eq!(
            block(&r.text, &format!("map {v}_src{v}_m0{v}_m1 {v}_upstream")),
            ["default disco_my.app-2;", "~1 disco-dark_my.app-2;"]
        );
        let server = block(&r.text, "server");
        assert_eq!(
            server[..4],
            [
                "listen 127.0.0.1:8080;",
                "underscores_in_headers on;",
                "location / {",
                &format!("proxy_pass http://{v}_upstream;")
            ]
        );
    }

    #[test]
    fn dark_only_traffic_still_flows_when_no_slot_is_routable() {
        let r = render(&[
            (
                "/disco/apps/a/policy",
                r#"{"listen":"127.0.0.1:8080","dark":{"version":"v2","matches":[{"cidr":"127.0.0.1"}]}}"#,
            ),
            ("/disco/apps/a/routes/i1", "v1"),
            (
                "/disco/apps/a/endpoints/i1/v2",
                r#"{"address":"127.0.0.1:9101"}"#,
            ),
        ]);
        assert!(!r.text.contains("upstream disco_a "), "{}", r.text);
        assert_eq!(
            block(&r.text, "map $disco_a_src $disco_a_upstream"),
            ["default \"\";", "~1 disco-dark_a;"]
        );
        let server = block(&r.text, "server");
        assert_eq!(
            server[2..7],
            [
                "# no routable endpoint outside the dark canary",
                "if ($disco_a_upstream = \"\") {",
                "return 503;",
                "}",
                "proxy_pass http://$disco_a_upstream;"
            ]
        );
    }

    #[test]
    fn zero_percent_versions_are_left_out_and_tcp_apps_are_not_rendered() {
        let r = render(&[
            (
                "/disco/apps/w/policy",
                r#"{"listen":"127.0.0.1:8080","weights":{"v2":0}}"#,
            ),
            ("/disco/apps/w/routes/i1", "v1"),
            ("/disco/apps/w/routes/i2", "v2"),
            (
                "/disco/apps/w/endpoints/i1/v1",
                r#"{"address":"127.0.0.1:9001"}"#,
            ),
            (
                "/disco/apps/w/endpoints/i2/v2",
                r#"{"address":"127.0.0.1:9002"}"#,
            ),
            (
                "/disco/apps/db/policy",
                r#"{"listen":"127.0.0.1:5432","mode":"tcp"}"#,
            ),
        ]);
        assert_eq!(
            block(&r.text, "upstream disco_w"),
            [
                "server 127.0.0.1:9001 weight=256 max_fails=1 fail_timeout=10s;  # i1 v1",
                "# i2 v2 127.0.0.1:9002: 0% of the traffic, left out",
                "keepalive 32;"
            ]
        );
        assert!(!r.text.contains("5432"));
        assert_eq!(
            r.warnings,
            ["db: tcp app not rendered: the nginx file is included in http { }; it needs an nginx stream target"]
        );
    }

    #[test]
    fn variable_names_are_escaped_reversibly() {
        assert_eq!(variable_safe("app1"), "app1");
        assert_eq!(variable_safe("my.app-2"), "my_2eapp_2d2");
        assert_eq!(variable_safe("a_b"), "a__b");
        // Names that a lossy mapping would merge stay apart.
        let names = ["a-b", "a_b", "a.b", "a_2db", "a__b"];
        let escaped: std::collections::BTreeSet<String> =
            names.iter().map(|n| variable_safe(n)).collect();
        assert_eq!(escaped.len(), names.len());
        assert!(escaped
            .iter()
            .all(|v| v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')));
    }

    #[test]
    fn regex_literals_escape_metacharacters() {
        assert_eq!(regex_literal("a.b+c~d:e/f=g-h_i"), r"a\.b\+c~d:e/f=g-h_i");
    }
}
