//! The built-in HAProxy renderer: a configuration fragment, loaded after the operator's
//! own file (`haproxy -f haproxy.cfg -f disco.cfg`), that gives every app with a
//! `listen` address a working load balancer. HAProxy 2.6 syntax.
//!
//! The fragment opens with its own `defaults disco` section, so it does not depend on
//! the operator's defaults. Per app:
//!
//! - `frontend disco_<app>` binds the listen address; dark-canary matches are ACLs
//!   (`req.hdr`, `req.cook`, `src`) that select `backend disco-dark_<app>`, everyone
//!   else goes to `backend disco_<app>`.
//! - Servers are named after their instance slot, so a slot keeps its name when it
//!   flips to another version (the trailing comment says which version it serves).
//! - Health checks: `option httpchk` with `http-check send meth GET uri <path>` when
//!   every server of the backend has the same health path, a TCP connect check
//!   otherwise; `check inter <ms> fall <n> rise <n>` on every server.
//! - A dying instance does not fail requests: `retries`, `option redispatch 1`, and in
//!   HTTP mode `retry-on conn-failure empty-response response-timeout`, with
//!   `disable-l7-retry` for POST/PATCH/LOCK, which are only retried when the
//!   connection failed (the server never saw them). `option idle-close-on-response`
//!   closes idle keep-alive connections during a reload so the old process can leave.
//! - A backend with no routable server is rendered empty: HAProxy answers 503.
//! - Unresolvable DNS names do not fail the whole file: `init-addr last,libc,none`
//!   starts such a server in maintenance instead.
//! - With a `log_socket`, every HTTP frontend also logs each request to that unix
//!   datagram socket in disco's format ([`LOG_FORMAT`], raw, no syslog header) instead
//!   of `option httplog`: backend, server, status and times, for per-version latency
//!   histograms read by the agent. Only fixed text and validated names reach the line.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::resolve::{self, DarkMatch, ResolvedApp};
use super::{header, Rendered, Serves};
use crate::model::Mode;
use crate::snapshot::App;
use crate::validate::Address;
use crate::Snapshot;

/// Tuning of the HAProxy output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HaproxyOptions {
    /// Time between two health checks of a server (`inter`, in milliseconds). Default
    /// `"1s"`, rendered `inter 1000`.
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
    /// Consecutive failed checks before a server is taken out (`fall`). Default 2.
    pub check_fall: u32,
    /// Consecutive passed checks before a server is put back (`rise`). Default 1.
    pub check_rise: u32,
    /// How long to wait for a connection to a server (`timeout connect`). Default `"5s"`.
    #[serde(with = "humantime_serde")]
    pub timeout_connect: Duration,
    /// Client inactivity timeout (`timeout client`). Default `"30s"`.
    #[serde(with = "humantime_serde")]
    pub timeout_client: Duration,
    /// Server inactivity timeout (`timeout server`). Default `"30s"`.
    #[serde(with = "humantime_serde")]
    pub timeout_server: Duration,
    /// Retries of a failed request, each redispatched to another server (`retries`).
    /// Default 3.
    pub retries: u32,
    /// An absolute path of a unix datagram socket that every HTTP frontend sends one
    /// line per request to, in [`LOG_FORMAT`] (replacing `option httplog`; the
    /// `log global` targets get the same lines). Default: none (`option httplog`, no
    /// per-request records).
    pub log_socket: Option<String>,
}

/// The first word of every per-request line of [`LOG_FORMAT`]: lines without it are
/// someone else's.
pub const LOG_TAG: &str = "disco1";

/// What each HTTP frontend logs per request with a `log_socket`, space separated: the
/// tag, the backend (`%b`), the server (`%s`, `<NOSRV>` when none), the status (`%ST`),
/// the server's response time to the headers in ms (`%Tr`, -1 when none) and the total
/// active time in ms (`%Ta`). Names cannot hold spaces, so the fields are unambiguous.
pub const LOG_FORMAT: &str = "disco1 %b %s %ST %Tr %Ta";

/// Checks a `log_socket` path before it is written into the configuration: absolute,
/// short enough for a unix socket, and without anything that could end or extend the
/// `log` line.
pub fn check_log_socket(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("log_socket {path:?} must be an absolute path"));
    }
    if path.len() > 107 {
        return Err(format!(
            "log_socket {path:?} is longer than a unix socket path can be (107 bytes)"
        ));
    }
    if let Some(c) = path
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\\' | '\'' | '#'))
    {
        return Err(format!("log_socket {path:?} must not contain {c:?}"));
    }
    Ok(())
}

impl Default for HaproxyOptions {
    fn default() -> Self {
        HaproxyOptions {
            check_interval: Duration::from_secs(1),
            check_fall: 2,
            check_rise: 1,
            timeout_connect: Duration::from_secs(5),
            timeout_client: Duration::from_secs(30),
            timeout_server: Duration::from_secs(30),
            retries: 3,
            log_socket: None,
        }
    }
}

/// Where an agent that changes routing through HAProxy's Runtime API keeps what the
/// Runtime API changes, so that a reload or a restart reproduces the running state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeFiles {
    /// Absolute directory of the dark-canary pattern files (`<dir>/<app>.<kind>.acl`,
    /// one value per line), read by the frontends' ACLs with `-f` and changed at run
    /// time with `add acl` / `del acl`.
    pub pattern_dir: String,
    /// Absolute path of the server-state file (`show servers state`, written by the
    /// agent before each reload): a server that was down stays down after a reload.
    pub state_file: String,
}

/// What a dark-canary ACL looks at.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchKind {
    /// A request header, by name.
    Header(String),
    /// A cookie, by name.
    Cookie(String),
    /// The client's source address.
    Network,
}

impl MatchKind {
    /// The kind's part of its pattern file name.
    fn file_part(&self) -> String {
        match self {
            MatchKind::Header(name) => format!("header.{name}"),
            MatchKind::Cookie(name) => format!("cookie.{name}"),
            MatchKind::Network => "network".into(),
        }
    }
}

/// Per app, the dark-canary match kinds to render even when no dark canary uses them
/// (with no value, they match nothing): once rendered, a kind stays, so that a dark
/// canary switched off and on again is a Runtime API change, not a reload.
pub type Keep = BTreeMap<String, BTreeSet<MatchKind>>;

/// What the Runtime API can change in a rendered file, and a hash of everything else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeState {
    /// [`structure()`] of the text: two files with equal structure differ only in what
    /// the Runtime API changes.
    pub structure: String,
    /// Backend → server name → server (shared with the render cache: an unchanged
    /// backend is the same allocation from one render to the next).
    pub backends: BTreeMap<String, Arc<BTreeMap<String, RuntimeServer>>>,
    /// Pattern file → its values.
    pub patterns: BTreeMap<String, BTreeSet<String>>,
    /// The match kinds rendered per app: the [`Keep`] of the next render.
    pub kinds: Keep,
    /// The check arguments every server line has (`check inter 1000 fall 2 rise 1`).
    pub check: String,
}

/// One server as the Runtime API sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeServer {
    /// `host:port`, as rendered.
    pub address: String,
    /// 0–256; 0 takes no new traffic.
    pub weight: u32,
}

/// The part of rendered HAProxy text that only a reload changes: its SHA-256 over every
/// line but server lines and pattern values. A file's structure hash
/// ([`RuntimeState::structure`]) is the hash of its opening's and each app block's.
pub fn structure(text: &str) -> String {
    let kept: String = text
        .lines()
        .filter(|l| !l.starts_with(SERVER_LINE) && !l.starts_with(VALUES_LINE))
        .flat_map(|l| [l, "\n"])
        .collect();
    super::hash(&kept)
}

const SERVER_LINE: &str = "    server ";
const VALUES_LINE: &str = "    # values:";

/// A server's name: its instance slot and version (`instance1:v2`; names cannot hold
/// `:`, so the name is unambiguous).
pub fn server_name(instance: &str, version: &str) -> String {
    format!("{instance}:{version}")
}

/// Renders every app that has a `listen` address into an HAProxy fragment.
pub fn haproxy(snapshot: &Snapshot, options: &HaproxyOptions) -> Rendered {
    haproxy_runtime(snapshot, options, None, &Keep::new()).0
}

/// [`haproxy()`] for an agent that changes routing through the Runtime API: dark-canary
/// values in pattern files under `files.pattern_dir` (and every kind of `keep`
/// rendered), server state kept across reloads in `files.state_file`; with what the
/// Runtime API can change. Without `files`, values are inline and `keep` is ignored.
pub fn haproxy_runtime(
    snapshot: &Snapshot,
    options: &HaproxyOptions,
    files: Option<&RuntimeFiles>,
    keep: &Keep,
) -> (Rendered, RuntimeState) {
    haproxy_cached(
        snapshot,
        options,
        files,
        keep,
        &mut RenderCache::default(),
        None,
    )
}

/// App blocks of earlier renders, reused when an app's record and kept match kinds are
/// unchanged: a change to one app of a thousand renders one block, not a thousand.
#[derive(Debug, Default)]
pub struct RenderCache {
    /// What the blocks were rendered with; anything else empties the cache.
    setup: Option<(HaproxyOptions, Option<RuntimeFiles>)>,
    /// The kinds kept at the last render.
    keep: Keep,
    apps: BTreeMap<String, CachedApp>,
}

/// One app, rendered.
#[derive(Debug)]
struct CachedApp {
    /// The record it was rendered from, and the kinds kept for it.
    app: App,
    keep: BTreeSet<MatchKind>,
    /// Why the whole app is left out (an invalid name or policy), if it is.
    left_out: Option<String>,
    listen: Option<Address>,
    /// The plan's warnings, and the health-path one.
    warnings: Vec<String>,
    mixed: Option<String>,
    /// Its frontend and backends.
    block: String,
    /// SHA-256 of the block's structure (see [`structure()`]).
    structure: String,
    /// Its part of the [`RuntimeState`].
    part: RuntimeState,
}

/// [`haproxy_runtime()`], reusing (and refreshing) the blocks of `cache`. An app's
/// block is reused when its record equals the cached one; with `changed` (the apps
/// whose records may differ from the last render with this cache — the caller must
/// name every one), an app not in it is reused without comparing records.
pub fn haproxy_cached(
    snapshot: &Snapshot,
    options: &HaproxyOptions,
    files: Option<&RuntimeFiles>,
    keep: &Keep,
    cache: &mut RenderCache,
    changed: Option<&BTreeSet<String>>,
) -> (Rendered, RuntimeState) {
    let setup = (options.clone(), files.cloned());
    let warm = cache.setup.as_ref() == Some(&setup);
    if !warm {
        cache.apps.clear();
        cache.setup = Some(setup);
    }
    let check = format!(
        "check inter {} fall {} rise {}",
        options.check_interval.as_millis(),
        options.check_fall,
        options.check_rise
    );
    let mut log_warning = None;
    let log_socket = options.log_socket.as_deref().filter(|path| {
        let checked = check_log_socket(path);
        log_warning = checked
            .as_ref()
            .err()
            .map(|e| format!("{e}: no per-request log"));
        checked.is_ok()
    });
    let no_keep = BTreeSet::new();
    let app_keep = |name: &str| {
        if files.is_some() {
            keep.get(name).unwrap_or(&no_keep)
        } else {
            &no_keep
        }
    };
    // Renders `name` unless its cached block is fresh: same kinds kept, and the same
    // record (taken as the same when `changed` does not name the app).
    let refresh = |cache: &mut RenderCache, name: &String, app: &App| {
        let app_keep = app_keep(name);
        let fresh = cache.apps.get(name).is_some_and(|c| {
            c.keep == *app_keep && (changed.is_some_and(|d| !d.contains(name)) || c.app == *app)
        });
        if !fresh {
            let rendered = render_app(name, app, app_keep, files, &check, log_socket);
            cache.apps.insert(name.clone(), rendered);
        }
    };
    // The apps whose kept kinds changed since the last render.
    let rekept: BTreeSet<String> = if files.is_some() && cache.keep != *keep {
        keep.keys()
            .chain(cache.keep.keys())
            .filter(|app| keep.get(*app) != cache.keep.get(*app))
            .cloned()
            .collect()
    } else {
        BTreeSet::new()
    };
    cache.keep.clone_from(keep);
    match changed.filter(|_| warm) {
        // Only the apps named (or whose kept kinds changed) can differ: a thousand
        // apps cost nothing each, not a render or a comparison of records.
        Some(names) => {
            for name in names.union(&rekept) {
                match snapshot.apps.get(name) {
                    Some(app) => refresh(cache, name, app),
                    None => {
                        cache.apps.remove(name);
                    }
                }
            }
        }
        None => {
            cache
                .apps
                .retain(|name, _| snapshot.apps.contains_key(name));
            for (name, app) in &snapshot.apps {
                refresh(cache, name, app);
            }
        }
    }
    // The cache now holds exactly the snapshot's apps, in the same order; if a caller
    // left a changed app out of `changed`, it does not: render everything.
    if cache.apps.len() != snapshot.apps.len()
        || !cache
            .apps
            .keys()
            .zip(snapshot.apps.keys())
            .all(|(a, b)| a == b)
    {
        debug_assert!(false, "`changed` did not name every changed app");
        return haproxy_cached(snapshot, options, files, keep, cache, None);
    }
    let mut left_out = Vec::new();
    let mut warnings: Vec<String> = log_warning.into_iter().collect();
    let mut mixed = Vec::new();
    let mut state = RuntimeState {
        check: check.clone(),
        ..RuntimeState::default()
    };
    let mut text = header();
    write_head(&mut text, options, files).expect("writing to a String cannot fail");
    let mut structures = structure(&text);
    let mut listeners = resolve::Listeners::default();
    text.reserve(cache.apps.values().map(|c| c.block.len()).sum());
    for (name, c) in &cache.apps {
        if let Some(reason) = &c.left_out {
            left_out.push(format!("app {name:?} left out: {reason}"));
            continue;
        }
        let Some(listen) = &c.listen else {
            warnings.push(resolve::no_listen(name));
            continue;
        };
        if !listeners.claim(name, listen, &mut warnings) {
            continue;
        }
        warnings.extend(c.warnings.iter().cloned());
        mixed.extend(c.mixed.iter().cloned());
        text.push_str(&c.block);
        structures.push_str(&c.structure);
        state.backends.extend(c.part.backends.clone());
        state.patterns.extend(c.part.patterns.clone());
        state.kinds.extend(c.part.kinds.clone());
    }
    left_out.extend(warnings);
    left_out.extend(mixed);
    state.structure = super::hash(&structures);
    (
        Rendered {
            text,
            warnings: left_out,
        },
        state,
    )
}

/// Plans and renders one app (whether or not it ends up in the file).
fn render_app(
    name: &str,
    app: &App,
    keep: &BTreeSet<MatchKind>,
    files: Option<&RuntimeFiles>,
    check: &str,
    log_socket: Option<&str>,
) -> CachedApp {
    let mut cached = CachedApp {
        app: app.clone(),
        keep: keep.clone(),
        left_out: None,
        listen: None,
        warnings: Vec::new(),
        mixed: None,
        block: String::new(),
        structure: String::new(),
        part: RuntimeState::default(),
    };
    let plan = match resolve::resolve_app(name, app) {
        Ok(plan) => plan,
        Err(reason) => {
            cached.left_out = Some(reason);
            return cached;
        }
    };
    cached.warnings = plan.warnings.clone();
    cached.mixed = plan.checked.mixed_health_paths.as_ref().map(|paths| {
        format!(
            "{name}: endpoints have different health paths ({paths}): checked by TCP connect only"
        )
    });
    let Some(listen) = plan.listen.clone() else {
        return cached;
    };
    let keep = Keep::from([(name.to_string(), keep.clone())]);
    cached.part.check = check.to_string();
    let mut writer = Writer {
        out: &mut cached.block,
        files,
        keep: &keep,
        state: &mut cached.part,
        log_socket,
    };
    writer
        .app(&plan, &listen)
        .expect("writing to a String cannot fail");
    cached.structure = structure(&cached.block);
    cached.listen = Some(listen);
    cached
}

/// What every server [`haproxy()`] renders for `snapshot` serves, by `(backend, server)`
/// as HAProxy names them in `show stat` (`disco_<app>` or `disco-dark_<app>`, and
/// `<instance>:<version>`): how an agent attributes HAProxy's per-server counters to
/// versions. Every registered endpoint is a server of both backends (taking traffic or
/// not); a backend that is not rendered is simply never read.
pub fn servers(snapshot: &Snapshot) -> BTreeMap<(String, String), Serves> {
    let plan = resolve::resolve(snapshot);
    let mut warnings = Vec::new();
    let mut out = BTreeMap::new();
    for (app, _) in resolve::rendered_apps(&plan.apps, &mut warnings, |_| None) {
        for backend in [
            format!("disco_{}", app.name),
            format!("disco-dark_{}", app.name),
        ] {
            for s in &app.registered {
                out.insert(
                    (backend.clone(), server_name(s.instance, s.version)),
                    Serves {
                        app: app.name.to_string(),
                        version: s.version.to_string(),
                        mode: app.mode,
                    },
                );
            }
        }
    }
    out
}

/// The file's opening: its own `defaults` section.
fn write_head(out: &mut String, o: &HaproxyOptions, files: Option<&RuntimeFiles>) -> fmt::Result {
    writeln!(
        out,
        "# Load it after the main configuration: haproxy -f haproxy.cfg -f <this file>."
    )?;
    writeln!(out)?;
    writeln!(out, "defaults disco")?;
    writeln!(out, "    mode http")?;
    writeln!(out, "    log global")?;
    writeln!(
        out,
        "    timeout connect {}",
        resolve::duration(o.timeout_connect)
    )?;
    writeln!(
        out,
        "    timeout client {}",
        resolve::duration(o.timeout_client)
    )?;
    writeln!(
        out,
        "    timeout server {}",
        resolve::duration(o.timeout_server)
    )?;
    writeln!(out, "    retries {}", o.retries)?;
    writeln!(out, "    option redispatch 1")?;
    writeln!(out, "    default-server init-addr last,libc,none")?;
    if files.is_some() {
        writeln!(out, "    load-server-state-from-file local")?;
    }
    Ok(())
}

struct Writer<'w> {
    out: &'w mut String,
    files: Option<&'w RuntimeFiles>,
    keep: &'w Keep,
    state: &'w mut RuntimeState,
    /// Where HTTP frontends send [`LOG_FORMAT`] lines (checked already).
    log_socket: Option<&'w str>,
}

impl Writer<'_> {
    /// The match kinds of `app`'s frontend, each with its values (none when no dark
    /// canary uses it).
    fn kinds(&self, app: &ResolvedApp) -> BTreeMap<MatchKind, BTreeSet<String>> {
        let http = app.mode == Mode::Http;
        let mut kinds: BTreeMap<MatchKind, BTreeSet<String>> = BTreeMap::new();
        if self.files.is_some() {
            for kind in self.keep.get(app.name).into_iter().flatten() {
                // A kept header or cookie match cannot apply to a tcp app.
                if http || *kind == MatchKind::Network {
                    kinds.entry(kind.clone()).or_default();
                }
            }
        }
        for m in app.dark.iter().flat_map(|d| &d.matches) {
            let (kind, value) = match m {
                DarkMatch::Header { name, value } if http => {
                    (MatchKind::Header(name.to_string()), value.to_string())
                }
                DarkMatch::Cookie { name, value } if http => {
                    (MatchKind::Cookie(name.to_string()), value.to_string())
                }
                DarkMatch::Network(net) => (MatchKind::Network, net.clone()),
                // Refused by policy validation: a tcp app can only match networks.
                DarkMatch::Header { .. } | DarkMatch::Cookie { .. } => continue,
            };
            kinds.entry(kind).or_default().insert(value);
        }
        kinds
    }

    fn app(&mut self, app: &ResolvedApp, listen: &Address) -> fmt::Result {
        let name = app.name;
        let http = app.mode == Mode::Http;
        let kinds = self.kinds(app);
        let out = &mut *self.out;
        writeln!(out)?;
        writeln!(
            out,
            "# {name}: {} on {listen}",
            if http { "http" } else { "tcp" }
        )?;
        writeln!(out, "frontend disco_{name}")?;
        if !http {
            writeln!(out, "    mode tcp")?;
        }
        writeln!(out, "    bind {listen}")?;
        if http {
            match self.log_socket {
                Some(path) => {
                    writeln!(out, "    log {path} len 1024 format raw local0 info")?;
                    writeln!(out, "    log-format \"{LOG_FORMAT}\"")?;
                }
                None => writeln!(out, "    option httplog")?,
            }
            writeln!(out, "    option forwardfor")?;
            writeln!(out, "    option idle-close-on-response")?;
        } else {
            writeln!(out, "    option tcplog")?;
        }
        let mut acls = Vec::new();
        for (kind, values) in &kinds {
            let acl = format!("dark_{}", acls.len());
            let fetch = match kind {
                MatchKind::Header(h) => format!("req.hdr({h}) -m str"),
                MatchKind::Cookie(c) => format!("req.cook({c}) -m str"),
                MatchKind::Network => "src".to_string(),
            };
            match self.files {
                Some(files) => {
                    let file = format!("{}/{name}.{}.acl", files.pattern_dir, kind.file_part());
                    writeln!(out, "    acl {acl} {fetch} -f {file}")?;
                    let list: Vec<&str> = values.iter().map(String::as_str).collect();
                    writeln!(out, "{VALUES_LINE} {}", list.join(" "))?;
                    self.state.patterns.insert(file, values.clone());
                }
                None => {
                    for value in values {
                        let acl = format!("dark_{}", acls.len());
                        match kind {
                            MatchKind::Network => writeln!(out, "    acl {acl} {fetch} {value}")?,
                            _ => writeln!(out, "    acl {acl} {fetch} -- {value}")?,
                        }
                        acls.push(acl);
                    }
                    continue;
                }
            }
            acls.push(acl);
        }
        if !kinds.is_empty() {
            self.state
                .kinds
                .insert(name.to_string(), kinds.keys().cloned().collect());
        }
        if !acls.is_empty() {
            writeln!(
                out,
                "    use_backend disco-dark_{name} if {}",
                acls.join(" || ")
            )?;
        }
        writeln!(out, "    default_backend disco_{name}")?;
        writeln!(out)?;
        let routed: BTreeMap<(&str, &str), u32> = app
            .routed
            .servers
            .iter()
            .map(|s| ((s.instance, s.version), s.weight))
            .collect();
        self.backend(app, &format!("disco_{name}"), |s| {
            match routed.get(&(s.instance, s.version)) {
                Some(0) => (0, "routed, 0%: takes no new traffic"),
                Some(w) => (*w, "routed"),
                None if !s.endpoint.is_healthy() => (0, "reported failing: takes no traffic"),
                None => (0, "not routed"),
            }
        })?;
        if !acls.is_empty() {
            let dark: BTreeMap<(&str, &str), u32> = app
                .dark
                .iter()
                .flat_map(|d| &d.backend.servers)
                .map(|s| ((s.instance, s.version), s.weight))
                .collect();
            let out = &mut *self.out;
            writeln!(out)?;
            // Which version (if any) is in the weights: not structure.
            writeln!(out, "# {name}: dark canary")?;
            self.backend(app, &format!("disco-dark_{name}"), |s| {
                match dark.get(&(s.instance, s.version)) {
                    Some(w) => (*w, "dark canary"),
                    None => (0, "not the dark canary"),
                }
            })?;
        }
        Ok(())
    }

    /// A backend of every registered endpoint of `app`, weighted by `weigh` (weight and
    /// a note for the line's comment).
    fn backend<'a>(
        &mut self,
        app: &ResolvedApp<'a>,
        name: &str,
        weigh: impl Fn(&resolve::Server<'a>) -> (u32, &'static str),
    ) -> fmt::Result {
        let http = app.mode == Mode::Http;
        let out = &mut *self.out;
        writeln!(out, "backend {name}")?;
        if !http {
            writeln!(out, "    mode tcp")?;
        }
        writeln!(out, "    balance roundrobin")?;
        if let Some(files) = self.files {
            writeln!(out, "    server-state-file-name {}", files.state_file)?;
        }
        let mut servers = BTreeMap::new();
        if app.registered.is_empty() {
            let what = if http {
                "HAProxy answers 503"
            } else {
                "connections are closed"
            };
            self.state
                .backends
                .insert(name.to_string(), Arc::new(servers));
            return writeln!(out, "    # no registered endpoint: {what}");
        }
        if let Some(path) = app.checked.health_path {
            writeln!(out, "    option httpchk")?;
            writeln!(out, "    http-check send meth GET uri {path}")?;
        }
        if http {
            writeln!(
                out,
                "    retry-on conn-failure empty-response response-timeout"
            )?;
            writeln!(
                out,
                "    # a non-idempotent request is retried only if it never reached a server"
            )?;
            writeln!(
                out,
                "    http-request disable-l7-retry if {{ method POST PATCH LOCK }}"
            )?;
        }
        let check = &self.state.check;
        for s in &app.registered {
            let (weight, note) = weigh(s);
            let server = server_name(s.instance, s.version);
            writeln!(
                out,
                "{SERVER_LINE}{server} {} weight {weight} {check}  # {}, {note}",
                s.address, s.version
            )?;
            servers.insert(
                server,
                RuntimeServer {
                    address: s.address.to_string(),
                    weight,
                },
            );
        }
        self.state
            .backends
            .insert(name.to_string(), Arc::new(servers));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keyspace;

    fn render(kvs: &[(&str, &str)]) -> Rendered {
        haproxy(
            &Snapshot::from_kvs(&Keyspace::default(), 5, kvs.iter().copied()),
            &HaproxyOptions::default(),
        )
    }

    /// The lines of the section that starts with `title`.
    fn section(text: &str, title: &str) -> Vec<String> {
        let start = text
            .find(&format!("\n{title}\n"))
            .unwrap_or_else(|| panic!("no {title:?} in\n{text}"));
        text[start + 1..]
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("    "))
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
            r#"{"address":"127.0.0.1:9002","health_path":"/healthz","weight":50}"#,
        ),
    ];

    #[test]
    fn an_app_gets_a_frontend_and_a_checked_backend_of_its_routed_slots() {
        let r = render(&APP1);
        assert!(
            r.text
                .starts_with("# Generated by disco-agent from etcd. Do not edit"),
            "{}",
            r.text
        );
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        assert_eq!(
            section(&r.text, "frontend disco_app1"),
            [
                "bind 127.0.0.1:8080",
                "option httplog",
                "option forwardfor",
                "option idle-close-on-response",
                "default_backend disco_app1"
            ]
        );
        assert_eq!(
            section(&r.text, "backend disco_app1"),
            [
                "balance roundrobin",
                "option httpchk",
                "http-check send meth GET uri /healthz",
                "retry-on conn-failure empty-response response-timeout",
                "# a non-idempotent request is retried only if it never reached a server",
                "http-request disable-l7-retry if { method POST PATCH LOCK }",
                "server instance1:v2 127.0.0.1:9101 weight 100 check inter 1000 fall 2 rise 1  # v2, routed",
                "server instance2:v1 127.0.0.1:9002 weight 50 check inter 1000 fall 2 rise 1  # v1, routed",
            ]
        );
        let defaults = section(&r.text, "defaults disco");
        for line in [
            "mode http",
            "retries 3",
            "option redispatch 1",
            "timeout connect 5s",
        ] {
            assert!(defaults.contains(&line.to_string()), "{defaults:?}");
        }
        assert!(!r.text.contains("http-server-close"));
    }

    #[test]
    fn a_log_socket_replaces_httplog_in_http_frontends_only() {
        let mut kvs = APP1.to_vec();
        kvs.push((
            "/disco/apps/db/policy",
            r#"{"listen":"127.0.0.1:5432","mode":"tcp"}"#,
        ));
        let snapshot = Snapshot::from_kvs(&Keyspace::default(), 5, kvs.iter().copied());
        let with = |path: &str| {
            haproxy(
                &snapshot,
                &HaproxyOptions {
                    log_socket: Some(path.into()),
                    ..HaproxyOptions::default()
                },
            )
        };
        assert!(LOG_FORMAT.starts_with(&format!("{LOG_TAG} ")));
        let r = with("/run/disco/log.sock");
        assert_eq!(
            section(&r.text, "frontend disco_app1")[..3],
            [
                "bind 127.0.0.1:8080",
                "log /run/disco/log.sock len 1024 format raw local0 info",
                "log-format \"disco1 %b %s %ST %Tr %Ta\"",
            ]
        );
        assert!(!section(&r.text, "frontend disco_app1").contains(&"option httplog".into()));
        let db = section(&r.text, "frontend disco_db");
        assert!(db.contains(&"option tcplog".into()), "{db:?}");
        assert!(!db.iter().any(|l| l.starts_with("log")), "{db:?}");
        // A path that could extend the line is refused: httplog as without one.
        for bad in [
            "relative.sock",
            "/run/a b.sock",
            "/run/a\nglobal",
            "/run/a#b",
        ] {
            let r = with(bad);
            assert!(r.text.contains("option httplog"), "{bad}");
            assert!(!r.text.contains("log-format"), "{bad}");
            assert!(
                r.warnings.iter().any(|w| w.contains("log_socket")),
                "{bad}: {:?}",
                r.warnings
            );
        }
    }

    #[test]
    fn servers_name_the_version_each_backend_server_serves() {
        let mut kvs = APP1.to_vec();
        kvs[0] = (
            "/disco/apps/app1/policy",
            r#"{"listen":"127.0.0.1:8080","dark":{"version":"v3","matches":[{"cidr":"10.0.0.0/8"}]}}"#,
        );
        kvs.push((
            "/disco/apps/app1/endpoints/instance2/v3",
            r#"{"address":"127.0.0.1:9203"}"#,
        ));
        kvs.push(("/disco/apps/nolisten/routes/i1", "v1"));
        let servers = super::servers(&Snapshot::from_kvs(&Keyspace::default(), 5, kvs));
        let got: Vec<(&str, &str, &str)> = servers
            .iter()
            .map(|((b, s), serves)| (b.as_str(), s.as_str(), serves.version.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("disco-dark_app1", "instance1:v2", "v2"),
                ("disco-dark_app1", "instance2:v1", "v1"),
                ("disco-dark_app1", "instance2:v3", "v3"),
                ("disco_app1", "instance1:v2", "v2"),
                ("disco_app1", "instance2:v1", "v1"),
                ("disco_app1", "instance2:v3", "v3"),
            ]
        );
        assert!(servers
            .values()
            .all(|s| s.app == "app1" && s.mode == Mode::Http));
    }

    #[test]
    fn options_reach_the_output() {
        let options = HaproxyOptions {
            check_interval: Duration::from_millis(250),
            check_fall: 5,
            check_rise: 3,
            timeout_connect: Duration::from_millis(1500),
            timeout_client: Duration::from_secs(60),
            timeout_server: Duration::from_secs(90),
            retries: 1,
            log_socket: None,
        };
        let r = haproxy(&Snapshot::from_kvs(&Keyspace::default(), 5, APP1), &options);
        assert!(
            r.text.contains("check inter 250 fall 5 rise 3"),
            "{}",
            r.text
        );
        let defaults = section(&r.text, "defaults disco");
        for line in [
            "timeout connect 1500ms",
            "timeout client 60s",
            "timeout server 90s",
            "retries 1",
        ] {
            assert!(defaults.contains(&line.to_string()), "{line}: {defaults:?}");
        }
        // Options deserialize from the agent's config with humantime durations.
        let parsed: HaproxyOptions = serde_json::from_str(r#"{"check_interval":"250ms"}"#).unwrap();
        assert_eq!(parsed.check_interval, Duration::from_millis(250));
        assert_eq!(parsed.retries, 3);
    }

    #[test]
    fn unroutable_slots_take_no_traffic_with_a_warning_and_no_endpoint_answers_503() {
        let r = render(&[
            ("/disco/apps/down/policy", r#"{"listen":"127.0.0.1:8081"}"#),
            ("/disco/apps/down/routes/i1", "v1"),
            ("/disco/apps/down/routes/i2", "v1"),
            (
                "/disco/apps/down/endpoints/i2/v1",
                r#"{"address":"127.0.0.1:9002","health":{"status":"failing"}}"#,
            ),
        ]);
        assert_eq!(
            r.warnings,
            [
                "down/i1 routes to v1: no endpoint registered for the routed version; left out",
                "down/i2 routes to v1: endpoint reported failing; left out",
            ]
        );
        // Every server has weight 0: HAProxy answers 503.
        assert_eq!(
            section(&r.text, "backend disco_down")[4..],
            ["server i2:v1 127.0.0.1:9002 weight 0 check inter 1000 fall 2 rise 1  # v1, reported failing: takes no traffic"]
        );
        assert!(r.text.contains("frontend disco_down\n"));
        let r = render(&[
            ("/disco/apps/none/policy", r#"{"listen":"127.0.0.1:8081"}"#),
            ("/disco/apps/none/routes/i1", "v1"),
        ]);
        assert_eq!(
            section(&r.text, "backend disco_none"),
            [
                "balance roundrobin",
                "# no registered endpoint: HAProxy answers 503"
            ]
        );
    }

    #[test]
    fn dark_canary_matches_select_a_backend_of_every_healthy_dark_endpoint() {
        let mut kvs = APP1.to_vec();
        kvs[0] = (
            "/disco/apps/app1/policy",
            r#"{"listen":"127.0.0.1:8080","dark":{"version":"v2","matches":[
                {"header":{"name":"X-Canary","value":"-1"}},{"cookie":{"name":"canary","value":"yes"}},{"cidr":"10.1.2.3/8"}]}}"#,
        );
        kvs.push((
            "/disco/apps/app1/endpoints/instance2/v2",
            r#"{"address":"127.0.0.1:9102","health_path":"/healthz"}"#,
        ));
        kvs.push((
            "/disco/apps/app1/endpoints/instance3/v2",
            r#"{"address":"127.0.0.1:9103","health":{"status":"failing"}}"#,
        ));
        let r = render(&kvs);
        let frontend = section(&r.text, "frontend disco_app1");
        assert_eq!(
            frontend[4..],
            [
                "acl dark_0 req.hdr(X-Canary) -m str -- -1",
                "acl dark_1 req.cook(canary) -m str -- yes",
                "acl dark_2 src 10.0.0.0/8",
                "use_backend disco-dark_app1 if dark_0 || dark_1 || dark_2",
                "default_backend disco_app1",
            ]
        );
        let dark = section(&r.text, "backend disco-dark_app1");
        // instance3 has no health path: TCP checks for all.
        assert!(!dark.iter().any(|l| l.contains("httpchk")), "{dark:?}");
        let servers: Vec<&String> = dark.iter().filter(|l| l.starts_with("server")).collect();
        assert_eq!(servers.len(), 4, "{dark:?}");
        assert!(servers[0].starts_with("server instance1:v2 127.0.0.1:9101 weight 100"));
        assert!(servers[1].starts_with("server instance2:v1 127.0.0.1:9002 weight 0"));
        assert!(servers[2].starts_with("server instance2:v2 127.0.0.1:9102 weight 100"));
        assert!(servers[3].starts_with("server instance3:v2 127.0.0.1:9103 weight 0"));
    }

    #[test]
    fn a_dark_version_without_endpoints_renders_no_dark_routing() {
        let mut kvs = APP1.to_vec();
        kvs[0] = (
            "/disco/apps/app1/policy",
            r#"{"listen":"127.0.0.1:8080","dark":{"version":"v9","matches":[{"cidr":"10.0.0.0/8"}]}}"#,
        );
        let r = render(&kvs);
        assert!(!r.text.contains("dark_"), "{}", r.text);
        assert_eq!(
            r.warnings,
            ["app1: dark canary version v9 has no healthy endpoint: no dark routing rendered"]
        );
    }

    #[test]
    fn tcp_apps_use_tcp_mode_and_tcp_checks() {
        let r = render(&[
            (
                "/disco/apps/db/policy",
                r#"{"listen":"[::1]:5432","mode":"tcp","dark":{"version":"v2","matches":[{"cidr":"::1"}]}}"#,
            ),
            ("/disco/apps/db/routes/i1", "v1"),
            (
                "/disco/apps/db/endpoints/i1/v1",
                r#"{"address":"[::1]:6432"}"#,
            ),
            (
                "/disco/apps/db/endpoints/i1/v2",
                r#"{"address":"[::1]:7432"}"#,
            ),
        ]);
        assert_eq!(
            section(&r.text, "frontend disco_db"),
            [
                "mode tcp",
                "bind [::1]:5432",
                "option tcplog",
                "acl dark_0 src ::1/128",
                "use_backend disco-dark_db if dark_0",
                "default_backend disco_db"
            ]
        );
        assert_eq!(
            section(&r.text, "backend disco_db"),
            [
                "mode tcp",
                "balance roundrobin",
                "server i1:v1 [::1]:6432 weight 100 check inter 1000 fall 2 rise 1  # v1, routed",
                "server i1:v2 [::1]:7432 weight 0 check inter 1000 fall 2 rise 1  # v2, not routed",
            ]
        );
    }

    #[test]
    fn weights_split_traffic_between_versions() {
        let r = render(&[
            (
                "/disco/apps/w/policy",
                r#"{"listen":"127.0.0.1:8080","weights":{"v2":10,"v3":0}}"#,
            ),
            ("/disco/apps/w/routes/i1", "v1"),
            ("/disco/apps/w/routes/i2", "v2"),
            ("/disco/apps/w/routes/i3", "v3"),
            (
                "/disco/apps/w/endpoints/i1/v1",
                r#"{"address":"127.0.0.1:9001"}"#,
            ),
            (
                "/disco/apps/w/endpoints/i2/v2",
                r#"{"address":"127.0.0.1:9002"}"#,
            ),
            (
                "/disco/apps/w/endpoints/i3/v3",
                r#"{"address":"127.0.0.1:9003"}"#,
            ),
        ]);
        let servers: Vec<String> = section(&r.text, "backend disco_w")
            .into_iter()
            .filter(|l| l.starts_with("server"))
            .collect();
        // v1 90% → 256, v2 10% → 28.4 → 28, v3 0% → 0 (kept, checked, no new traffic).
        assert!(
            servers[0].starts_with("server i1:v1 127.0.0.1:9001 weight 256 "),
            "{servers:?}"
        );
        assert!(
            servers[1].starts_with("server i2:v2 127.0.0.1:9002 weight 28 "),
            "{servers:?}"
        );
        assert!(
            servers[2].starts_with("server i3:v3 127.0.0.1:9003 weight 0 "),
            "{servers:?}"
        );
        assert!(
            servers[2].ends_with("# v3, routed, 0%: takes no new traffic"),
            "{servers:?}"
        );
    }

    #[test]
    fn apps_without_listen_and_duplicate_listeners_are_not_rendered() {
        let r = render(&[
            ("/disco/apps/a/policy", r#"{"listen":"127.0.0.1:8080"}"#),
            ("/disco/apps/b/policy", r#"{"listen":"127.0.0.1:8080"}"#),
            ("/disco/apps/c/policy", r#"{}"#),
            ("/disco/apps/d/routes/i1", "v1"),
        ]);
        assert_eq!(
            r.warnings,
            [
                "b: listen address 127.0.0.1:8080 is already used by a: not rendered",
                "c: the policy has no listen address: not rendered",
                "d: the policy has no listen address: not rendered",
            ]
        );
        assert!(r.text.contains("frontend disco_a\n"));
        assert!(
            !r.text.contains("disco_b")
                && !r.text.contains("disco_c")
                && !r.text.contains("disco_d")
        );
    }

    fn runtime(kvs: &[(&str, &str)], keep: &Keep) -> (Rendered, RuntimeState) {
        let files = RuntimeFiles {
            pattern_dir: "/var/lib/disco/patterns".into(),
            state_file: "/var/lib/disco/lb1.state".into(),
        };
        haproxy_runtime(
            &Snapshot::from_kvs(&Keyspace::default(), 5, kvs.iter().copied()),
            &HaproxyOptions::default(),
            Some(&files),
            keep,
        )
    }

    #[test]
    fn runtime_changes_keep_the_structure_and_new_apps_change_it() {
        let base = APP1.to_vec();
        let (_, before) = runtime(&base, &Keep::new());
        let keep = before.kinds.clone();
        let same = |kvs: &[(&str, &str)], keep: &Keep, what: &str| {
            let (r, next) = runtime(kvs, keep);
            assert_eq!(before.structure, next.structure, "{what}:\n{}", r.text);
            next
        };
        // A flip: instance2 to v2 (registered already).
        let mut flipped = base.clone();
        flipped[2] = ("/disco/apps/app1/routes/instance2", "v2");
        flipped.push((
            "/disco/apps/app1/endpoints/instance2/v2",
            r#"{"address":"127.0.0.1:9102","health_path":"/healthz"}"#,
        ));
        let with_v2 = same(
            &base.iter().copied().chain([flipped[5]]).collect::<Vec<_>>(),
            &keep,
            "endpoint added",
        );
        let after_flip = same(&flipped, &keep, "flip");
        assert_eq!(after_flip.backends["disco_app1"]["instance2:v1"].weight, 0);
        assert_eq!(
            after_flip.backends["disco_app1"]["instance2:v2"].weight,
            100
        );
        assert_eq!(with_v2.backends["disco_app1"]["instance2:v2"].weight, 0);
        // Weights and a failing endpoint.
        let mut weighted = base.clone();
        weighted[0] = (
            "/disco/apps/app1/policy",
            r#"{"listen":"127.0.0.1:8080","weights":{"v2":10}}"#,
        );
        same(&weighted, &keep, "weights");
        let mut failing = base.clone();
        failing[3] = (
            "/disco/apps/app1/endpoints/instance1/v2",
            r#"{"address":"127.0.0.1:9101","health_path":"/healthz","health":{"status":"failing"}}"#,
        );
        let failed = same(&failing, &keep, "failing");
        assert_eq!(failed.backends["disco_app1"]["instance1:v2"].weight, 0);

        // A dark canary: the first one of a kind is structure; then on, off and on again
        // with the kind kept are not.
        let mut dark = base.clone();
        dark[0] = (
            "/disco/apps/app1/policy",
            r#"{"listen":"127.0.0.1:8080","dark":{"version":"v2","matches":[{"header":{"name":"X-Canary","value":"internal"}}]}}"#,
        );
        let (r, on) = runtime(&dark, &keep);
        assert_ne!(before.structure, on.structure);
        assert!(r.text.contains("    acl dark_0 req.hdr(X-Canary) -m str -f /var/lib/disco/patterns/app1.header.X-Canary.acl\n    # values: internal\n"), "{}", r.text);
        assert_eq!(
            on.patterns["/var/lib/disco/patterns/app1.header.X-Canary.acl"],
            BTreeSet::from(["internal".to_string()])
        );
        let keep = on.kinds.clone();
        let (r, off) = runtime(&base, &keep);
        assert_eq!(on.structure, off.structure, "{}", r.text);
        assert!(off.patterns.values().all(BTreeSet::is_empty));
        assert!(off.backends["disco-dark_app1"]
            .values()
            .all(|s| s.weight == 0));
        // Another version and another value of the same kind.
        dark[0] = (
            "/disco/apps/app1/policy",
            r#"{"listen":"127.0.0.1:8080","dark":{"version":"v1","matches":[{"header":{"name":"X-Canary","value":"qa"}}]}}"#,
        );
        let (_, other) = runtime(&dark, &keep);
        assert_eq!(on.structure, other.structure);
        assert_eq!(other.backends["disco-dark_app1"]["instance2:v1"].weight, 50);
        assert_eq!(other.backends["disco-dark_app1"]["instance1:v2"].weight, 0);

        // A new app, a new listen address, a new match kind: structure.
        let mut more = base.clone();
        more.push(("/disco/apps/app2/policy", r#"{"listen":"127.0.0.1:8081"}"#));
        assert_ne!(runtime(&more, &keep).1.structure, off.structure);
        let mut moved = base.clone();
        moved[0] = ("/disco/apps/app1/policy", r#"{"listen":"127.0.0.1:8090"}"#);
        assert_ne!(runtime(&moved, &keep).1.structure, off.structure);
    }

    #[test]
    fn runtime_mode_keeps_server_state_across_reloads() {
        let (r, _) = runtime(&APP1, &Keep::new());
        assert!(section(&r.text, "defaults disco")
            .contains(&"load-server-state-from-file local".to_string()));
        assert!(section(&r.text, "backend disco_app1")
            .contains(&"server-state-file-name /var/lib/disco/lb1.state".to_string()));
        // Without runtime files, none of it.
        assert!(!render(&APP1).text.contains("server-state"));
    }

    #[test]
    fn the_cache_renders_what_a_fresh_render_does() {
        let files = RuntimeFiles {
            pattern_dir: "/p".into(),
            state_file: "/s".into(),
        };
        let mut cache = RenderCache::default();
        let mut told_cache = RenderCache::default();
        let mut kvs: Vec<(String, String)> = APP1
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        kvs.push((
            "/disco/apps/app2/policy".into(),
            r#"{"listen":"127.0.0.1:8081"}"#.into(),
        ));
        let keep_dark = Keep::from([(
            "app1".to_string(),
            BTreeSet::from([MatchKind::Header("X-Canary".into())]),
        )]);
        let none = Keep::new();
        // (what, a key written, the kinds kept)
        type Step<'a> = (&'a str, Option<(&'a str, &'a str)>, &'a Keep);
        let steps: Vec<Step> = vec![
            ("first", None, &none),
            (
                "flip",
                Some(("/disco/apps/app1/routes/instance2", "v2")),
                &none,
            ),
            ("kept kind", None, &keep_dark),
            (
                "listen taken",
                Some(("/disco/apps/app2/policy", r#"{"listen":"127.0.0.1:8080"}"#)),
                &keep_dark,
            ),
            (
                "invalid policy",
                Some(("/disco/apps/app2/policy", "{")),
                &keep_dark,
            ),
            (
                "back",
                Some(("/disco/apps/app2/policy", r#"{"listen":"127.0.0.1:8082"}"#)),
                &none,
            ),
        ];
        for (what, change, keep) in steps {
            if let Some((k, v)) = change {
                kvs.retain(|(key, _)| key != k);
                kvs.push((k.to_string(), v.to_string()));
            }
            let snapshot = Snapshot::from_kvs(
                &Keyspace::default(),
                5,
                kvs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            );
            let options = HaproxyOptions::default();
            let cached = haproxy_cached(&snapshot, &options, Some(&files), keep, &mut cache, None);
            let fresh = haproxy_runtime(&snapshot, &options, Some(&files), keep);
            assert_eq!(cached, fresh, "{what}");
            // Told which app changed, the cache skips comparing the others: the same.
            let named =
                change.map(|(k, _)| BTreeSet::from([k.split('/').nth(3).unwrap().to_string()]));
            let told = haproxy_cached(
                &snapshot,
                &options,
                Some(&files),
                keep,
                &mut told_cache,
                named.as_ref().or(Some(&BTreeSet::new())),
            );
            assert_eq!(told, fresh, "{what}, told");
        }
        // Other options: nothing stale.
        let snapshot = Snapshot::from_kvs(&Keyspace::default(), 5, APP1);
        let options = HaproxyOptions {
            retries: 7,
            ..HaproxyOptions::default()
        };
        let cached = haproxy_cached(&snapshot, &options, None, &Keep::new(), &mut cache, None);
        assert_eq!(
            cached,
            haproxy_runtime(&snapshot, &options, None, &Keep::new())
        );
        assert!(!cached.0.text.contains("acl dark_0"));
    }
}
