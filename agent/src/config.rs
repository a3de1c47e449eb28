//! The agent's configuration file (`/etc/disco/agent.toml`), parsed once into a
//! validated [`Config`]. Every field is documented with its default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use disco::store::EtcdConfig;
use serde::{Deserialize, Serialize};

/// The whole agent configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This agent's id, under `<prefix>/agents/<id>`. Default: the host name.
    pub agent_id: String,
    /// Key prefix of the disco key space. Default: `/disco`.
    pub prefix: String,
    /// How to reach etcd (endpoints, auth, TLS, timeouts).
    pub etcd: EtcdConfig,
    /// Where the last applied snapshot is kept, so that a restart while etcd is down
    /// still serves the last known routing. Default: `/var/lib/disco/<agent_id>.snapshot.json`.
    pub cache_path: Option<PathBuf>,
    /// Time-to-live of the status key's lease: a dead agent's status disappears after
    /// it. Default: `10s`.
    #[serde(with = "humantime_serde")]
    pub status_ttl: Duration,
    /// The shortest time between two reloads of one target: a rate limit for expensive
    /// reloads. A change is applied as soon as no apply is in progress (what arrives
    /// during one is batched into the next); Runtime API changes are never delayed; a
    /// change that needs a reload sooner than this after the last reload waits for it.
    /// Default: `0s` (no limit beyond one apply at a time).
    #[serde(default, with = "humantime_serde")]
    pub max_delay: Duration,
    /// The files this agent owns (LB role). Default: none.
    #[serde(rename = "target")]
    pub targets: Vec<TargetConfig>,
    /// Local instances this agent registers and health-checks (registration role).
    /// Default: none.
    #[serde(rename = "register")]
    pub registrations: Vec<RegisterConfig>,
    /// On SIGTERM, how long to wait for every live LB agent to apply the withdrawal of
    /// this host's endpoints before exiting anyway (naming the agents that lagged).
    /// Default: `30s`.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// How often traffic statistics are read from the proxies (targets with
    /// `stats_socket`, `log_socket` or `access_log`) and published to `<prefix>/stats/<app>/<agent_id>`:
    /// the length of a stats window. Default: `5s`.
    #[serde(with = "humantime_serde")]
    pub stats_interval: Duration,
    /// While an app this agent serves has a canary running (its `rollout` record in
    /// state `running`), that app's statistics record is also published this often,
    /// between the regular ones: totals up to now, and the current window so far (not
    /// ended; the regular `stats_interval` cycle goes on unchanged). Only per-request
    /// sources are read for it (HAProxy's `log_socket`, nginx's `access_log`); `show
    /// stat` is read on the regular cycle only. Costs one etcd write per canary app per
    /// interval (20/s at the default). `0s` turns it off; otherwise at least `10ms` and
    /// not more than `stats_interval`. Default: `50ms`.
    #[serde(with = "humantime_serde")]
    pub canary_stats_interval: Duration,
    /// Address of the agent's HTTP endpoints (`/healthz`, `/metrics`, `/status`), e.g.
    /// `127.0.0.1:9180`. Default: none (no HTTP server).
    pub http_listen: Option<std::net::SocketAddr>,
    /// Mass-expiry guard: when more than this share (0–1) of an app's endpoints lose
    /// their registration by lease expiry within `mass_expiry_window`, the last known
    /// endpoints are kept (see `mass_expiry_hold`). 1 turns the guard off. Explicit
    /// removals (a drain, `discoctl endpoint remove`) never count. Default: `0.5`.
    pub mass_expiry_share: f64,
    /// How close together the expiries must be to count as one mass expiry. Default:
    /// `10s` (the registrations' default lease TTL).
    #[serde(with = "humantime_serde")]
    pub mass_expiry_window: Duration,
    /// The longest an expired endpoint is kept; it goes earlier when it registers
    /// again. Default: `10m`.
    #[serde(with = "humantime_serde")]
    pub mass_expiry_hold: Duration,
}

/// One local instance to register: `<prefix>/apps/<app>/endpoints/<instance>/<version>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterConfig {
    /// The app. Required.
    pub app: String,
    /// The instance slot. Required.
    pub instance: String,
    /// The version this instance runs. Required.
    pub version: String,
    /// `host:port` the proxies connect to. Required.
    pub address: String,
    /// Health check: a path (`/healthz`, checked at `http://<address><path>`) or a full
    /// `http://` URL. The path is also published for the proxies' own checks.
    /// Default: none (the instance counts as healthy while the agent runs).
    #[serde(default)]
    pub health: Option<String>,
    /// Time between checks. Default: `2s`.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Bound on one check. Default: `1s`, or `interval` when that is shorter (a check
    /// never runs past the next one's time); see [`RegisterConfig::timeout`].
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Consecutive passes before the endpoint is published (or marked passing again).
    /// Default: 2.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Consecutive failures before the endpoint is marked failing, which takes it out
    /// of every proxy. Default: 3.
    #[serde(default = "default_fall")]
    pub fall: u32,
    /// TTL of the lease the endpoint is written under: if this agent or its host dies,
    /// the endpoint disappears after it. Default: `10s`.
    #[serde(default = "default_lease_ttl", with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Relative weight among the endpoints of one version, 1-256. Default: 100.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

// The defaults of a registration, defined once: the config file's (these functions, for
// serde) and `disco-agent register`'s (clap's `default_value_t`) are the same values.
fn default_interval() -> Duration {
    RegisterConfig::DEFAULT_INTERVAL
}
fn default_rise() -> u32 {
    RegisterConfig::DEFAULT_RISE
}
fn default_fall() -> u32 {
    RegisterConfig::DEFAULT_FALL
}
fn default_lease_ttl() -> Duration {
    RegisterConfig::DEFAULT_LEASE_TTL
}
fn default_weight() -> u32 {
    RegisterConfig::DEFAULT_WEIGHT
}

impl RegisterConfig {
    /// Default of `interval`.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
    /// Default of `timeout`, when `interval` is not shorter.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
    /// Default of `rise`.
    pub const DEFAULT_RISE: u32 = 2;
    /// Default of `fall`.
    pub const DEFAULT_FALL: u32 = 3;
    /// Default of `lease_ttl`.
    pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
    /// Default of `weight`.
    pub const DEFAULT_WEIGHT: u32 = 100;

    /// The bound on one check: `timeout` when set, else [`Self::DEFAULT_TIMEOUT`] or the
    /// interval when that is shorter, as HAProxy bounds a check by `inter`.
    pub fn timeout(&self) -> Duration {
        self.timeout
            .unwrap_or(Self::DEFAULT_TIMEOUT.min(self.interval))
    }

    /// The health-check URL and the path published for the proxies, if any.
    pub fn health_url(&self) -> Option<(String, String)> {
        let h = self.health.as_ref()?;
        if let Some(rest) = h.strip_prefix("http://") {
            let path = rest
                .find('/')
                .map(|i| rest[i..].to_string())
                .unwrap_or_else(|| "/".into());
            Some((h.clone(), path))
        } else {
            Some((format!("http://{}{h}", self.address), h.clone()))
        }
    }

    /// Refuses names, addresses and counts that cannot work, naming the entry.
    pub fn validate(&self) -> anyhow::Result<()> {
        let what = format!("register {}/{}/{}", self.app, self.instance, self.version);
        let ctx = |e: disco::validate::Invalid| anyhow::anyhow!("{what}: {e}");
        disco::validate::name("app name", &self.app).map_err(ctx)?;
        disco::validate::name("instance name", &self.instance).map_err(ctx)?;
        disco::validate::name("version name", &self.version).map_err(ctx)?;
        disco::validate::address(&self.address).map_err(ctx)?;
        if let Some(h) = &self.health {
            anyhow::ensure!(
                h.starts_with('/') || h.starts_with("http://"),
                "{what}: health {h:?} must be a path (/healthz) or an http:// URL"
            );
            let (_, path) = self.health_url().expect("health is set");
            disco::validate::health_path(&path).map_err(ctx)?;
        }
        anyhow::ensure!(
            self.rise >= 1 && self.fall >= 1,
            "{what}: rise and fall must be at least 1"
        );
        anyhow::ensure!(
            (1..=256).contains(&self.weight),
            "{what}: weight must be 1-256"
        );
        anyhow::ensure!(
            self.lease_ttl >= Duration::from_secs(2),
            "{what}: lease_ttl must be at least 2s"
        );
        anyhow::ensure!(
            !self.interval.is_zero() && !self.timeout().is_zero(),
            "{what}: interval and timeout must be more than 0"
        );
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            agent_id: hostname(),
            prefix: "/disco".into(),
            etcd: EtcdConfig::default(),
            cache_path: None,
            status_ttl: Duration::from_secs(10),
            max_delay: Duration::ZERO,
            targets: Vec::new(),
            registrations: Vec::new(),
            drain_timeout: Config::DEFAULT_DRAIN_TIMEOUT,
            stats_interval: Duration::from_secs(5),
            canary_stats_interval: Duration::from_millis(50),
            http_listen: None,
            mass_expiry_share: 0.5,
            mass_expiry_window: RegisterConfig::DEFAULT_LEASE_TTL,
            mass_expiry_hold: Duration::from_secs(600),
        }
    }
}

/// What a target renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The built-in HAProxy renderer: a fragment loaded with a second `-f`.
    Haproxy,
    /// The built-in nginx renderer: a file `include`d in the `http {}` block.
    Nginx,
    /// A user's MiniJinja template.
    Template,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Haproxy => "haproxy",
            Kind::Nginx => "nginx",
            Kind::Template => "template",
        })
    }
}

/// One file the agent owns, and how to check and reload it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// A name for logs and status. Default: the kind.
    #[serde(default)]
    pub name: Option<String>,
    /// `haproxy`, `nginx` or `template`.
    pub kind: Kind,
    /// The file the agent writes (atomically). Required.
    pub path: PathBuf,
    /// For `template`: the MiniJinja template file. Required for templates.
    #[serde(default)]
    pub template: Option<PathBuf>,
    /// Validation command, program and arguments (no shell). `{staged}` is replaced by
    /// the path of the new file before it is installed; without `{staged}` the command
    /// runs after installing, and a failure restores the previous file.
    /// Default: haproxy `["haproxy", "-c", "-q", "-f", <haproxy_config>, "-f", "{staged}"]`;
    /// nginx `["nginx", "-t", "-q"]` (plus `nginx_args`); template: none.
    #[serde(default)]
    pub check: Option<Vec<String>>,
    /// Reload command (no shell). Default: haproxy reloads through `master_socket`,
    /// nginx by `nginx -s reload` (plus `nginx_args`) and waits for a new worker
    /// generation; template: none.
    #[serde(default)]
    pub reload: Option<Vec<String>>,
    /// HAProxy: the operator's main configuration, loaded before the fragment.
    /// Default: `/etc/haproxy/haproxy.cfg`.
    #[serde(default)]
    pub haproxy_config: Option<PathBuf>,
    /// HAProxy: the master CLI socket (`haproxy -W -S <socket>`), used to reload and to
    /// confirm a new worker took over. Default: `/run/haproxy-master.sock`.
    #[serde(default)]
    pub master_socket: Option<PathBuf>,
    /// nginx: extra arguments for every nginx command, e.g. `["-p", "/srv/lb", "-c",
    /// "/srv/lb/nginx.conf"]`. Default: none.
    #[serde(default)]
    pub nginx_args: Vec<String>,
    /// nginx: the master's pid file, to confirm a new worker generation after a reload.
    /// Default: `/run/nginx.pid`.
    #[serde(default)]
    pub pid_file: Option<PathBuf>,
    /// Bound on each check or reload command, and on waiting for a reload to take.
    /// Default: `30s`.
    #[serde(default = "default_command_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Per app, a listen address that replaces the policy's on this host only (e.g. a
    /// host-specific IP, or two proxies on one host). Default: none.
    #[serde(default)]
    pub listen: std::collections::BTreeMap<String, String>,
    /// HAProxy: a stats socket of the workers (`stats socket <path> level ...` in the
    /// operator's `global` section), read with `show stat` every `stats_interval` for
    /// per-version traffic statistics. Default: none (no statistics from this target).
    #[serde(default)]
    pub stats_socket: Option<PathBuf>,
    /// HAProxy: an absolute path where the agent binds a unix datagram socket (mode
    /// 0660, before the first reload; removed on exit) that every generated HTTP
    /// frontend logs each request to (`log <path> ... format raw` with disco's
    /// `log-format`, in place of `option httplog`). The agent counts HTTP requests,
    /// 5xx and response-time histograms per version from these records; with a
    /// `stats_socket` too, that socket then counts only tcp apps, so nothing is
    /// counted twice. Default: none (HTTP counts from `stats_socket`, no histogram).
    #[serde(default)]
    pub log_socket: Option<PathBuf>,
    /// HAProxy: a worker stats socket at `level admin` (`stats socket <path> level
    /// admin` in the operator's `global` section). With it, routing changes that keep
    /// the frontends and backends (flips, weights, endpoints added or removed, health,
    /// drains, a dark canary switched when its match kind is rendered already) go
    /// through the Runtime API, are read back, and reload nothing; the agent keeps
    /// dark-canary values in `<path>.patterns/` and the server state in `<path>.state`
    /// (both must be writable by the agent and readable by HAProxy). Default: none
    /// (every change reloads).
    #[serde(default)]
    pub runtime_socket: Option<PathBuf>,
    /// nginx: the unix socket of the admin server that the generated file declares
    /// (nginx must load the lua module: Debian's `libnginx-mod-http-lua`). With it,
    /// each app's servers are picked by disco's Lua balancer from routes the agent
    /// pushes there and reads back: flips, weights, endpoints, drains, health and dark
    /// canaries by header or cookie reload nothing; only a new app, a new listen
    /// address or a dark canary's networks do. The agent keeps the balancer in
    /// `<path>.lua/` and the last routes pushed in `<path>.routes` (read by nginx after
    /// a restart). Default: none (every change reloads).
    #[serde(default)]
    pub balancer_socket: Option<PathBuf>,
    /// nginx with `balancer_socket`: how often the balancer is read back between
    /// changes, so that one that lost its routes (nginx restarted without its routes
    /// file) or holds routes the agent did not push is filled again. `0s`: only at
    /// changes. Default: `2s`.
    #[serde(default = "default_balancer_check", with = "humantime_serde")]
    pub balancer_check: Duration,
    /// nginx: an absolute path where every server of the generated file logs its
    /// requests in disco's format; the agent tails it (following rotation and
    /// truncation) for per-version traffic statistics. These servers then log only
    /// there. Default: none (no access log, no statistics from this target).
    #[serde(default)]
    pub access_log: Option<PathBuf>,
}

/// A renderer's check of a path it writes into the proxy's configuration.
type PathCheck = fn(&str) -> Result<(), String>;

fn default_balancer_check() -> Duration {
    Duration::from_secs(2)
}

fn default_command_timeout() -> Duration {
    Duration::from_secs(30)
}

impl TargetConfig {
    /// The target's name in logs and status.
    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.kind.to_string())
    }
}

/// The host name, or `localhost`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

impl Config {
    /// Default of `drain_timeout` (also `disco-agent register --drain-timeout`'s).
    pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let config: Config =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        config.validate()?;
        Ok(config)
    }

    /// Refuses a config that cannot work, naming the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        disco::validate::name("agent id", &self.agent_id)?;
        disco::Keyspace::new(&self.prefix)?;
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.mass_expiry_share),
            "mass_expiry_share must be between 0 and 1 (1 turns the guard off), not {}",
            self.mass_expiry_share
        );
        let mut names = std::collections::BTreeSet::new();
        for t in &self.targets {
            let name = t.name();
            disco::validate::name("target name", &name)?;
            anyhow::ensure!(
                names.insert(name.clone()),
                "target {name:?} is configured twice"
            );
            anyhow::ensure!(
                t.path.is_absolute(),
                "target {name:?}: path {} must be absolute",
                t.path.display()
            );
            if t.kind == Kind::Template {
                anyhow::ensure!(
                    t.template.is_some(),
                    "target {name:?}: a template target needs `template`"
                );
            }
            for (app, address) in &t.listen {
                disco::validate::name("app name", app)
                    .map_err(|e| anyhow::anyhow!("target {name:?}: listen: {e}"))?;
                disco::validate::listen_address(address)
                    .map_err(|e| anyhow::anyhow!("target {name:?}: listen: {e}"))?;
            }
            if t.stats_socket.is_some() {
                anyhow::ensure!(
                    t.kind == Kind::Haproxy,
                    "target {name:?}: `stats_socket` is for haproxy targets"
                );
            }
            if t.runtime_socket.is_some() {
                anyhow::ensure!(
                    t.kind == Kind::Haproxy,
                    "target {name:?}: `runtime_socket` is for haproxy targets"
                );
                let path = t.path.display().to_string();
                anyhow::ensure!(
                    !path.chars().any(|c| c.is_whitespace() || c == '#' || c == '"' || c == '\\'),
                    "target {name:?}: with `runtime_socket` the path {path:?} is written into HAProxy's configuration and must not hold spaces, '#', quotes or backslashes"
                );
            }
            if let Some(socket) = &t.balancer_socket {
                anyhow::ensure!(
                    t.kind == Kind::Nginx,
                    "target {name:?}: `balancer_socket` is for nginx targets"
                );
                for (what, p) in [("balancer_socket", socket), ("path", &t.path)] {
                    let text = p.display().to_string();
                    anyhow::ensure!(
                        p.is_absolute()
                            && !text.chars().any(|c| c.is_whitespace()
                                || c.is_control()
                                || matches!(c, '"' | '\\' | '\'' | '$' | ';' | '{' | '}' | '#')),
                        "target {name:?}: with `balancer_socket` the {what} {text:?} is written into nginx's configuration and must be absolute, without spaces, quotes, backslashes, '$', ';', '{{', '}}' or '#'"
                    );
                }
            }
            // Paths written into the proxy's configuration, each for one kind.
            let written: [(&str, &Option<PathBuf>, Kind, PathCheck); 2] = [
                (
                    "log_socket",
                    &t.log_socket,
                    Kind::Haproxy,
                    disco::render::haproxy::check_log_socket,
                ),
                (
                    "access_log",
                    &t.access_log,
                    Kind::Nginx,
                    disco::render::nginx::check_access_log,
                ),
            ];
            for (what, path, kind, check) in written {
                let Some(path) = path else { continue };
                anyhow::ensure!(
                    t.kind == kind,
                    "target {name:?}: `{what}` is for {kind} targets"
                );
                let text = path
                    .to_str()
                    .ok_or_else(|| anyhow::anyhow!("target {name:?}: {what} must be UTF-8"))?;
                check(text).map_err(|e| anyhow::anyhow!("target {name:?}: {e}"))?;
            }
            for (what, argv) in [("check", &t.check), ("reload", &t.reload)] {
                if let Some(argv) = argv {
                    anyhow::ensure!(
                        !argv.is_empty(),
                        "target {name:?}: `{what}` must name a program"
                    );
                }
            }
        }
        let mut registered = std::collections::BTreeSet::new();
        for r in &self.registrations {
            r.validate()?;
            anyhow::ensure!(
                registered.insert((&r.app, &r.instance, &r.version)),
                "register {}/{}/{} is configured twice",
                r.app,
                r.instance,
                r.version
            );
        }
        anyhow::ensure!(!self.status_ttl.is_zero(), "status_ttl must be more than 0");
        anyhow::ensure!(
            self.stats_interval >= Duration::from_millis(100),
            "stats_interval must be at least 100ms"
        );
        let canary = self.canary_stats_interval;
        anyhow::ensure!(
            canary.is_zero() || canary >= Duration::from_millis(10),
            "canary_stats_interval must be 0s (off) or at least 10ms"
        );
        anyhow::ensure!(
            canary <= self.stats_interval,
            "canary_stats_interval ({}) must not be more than stats_interval ({})",
            humantime::format_duration(canary),
            humantime::format_duration(self.stats_interval)
        );
        Ok(())
    }

    /// The snapshot cache path.
    pub fn cache_path(&self) -> PathBuf {
        self.cache_path.clone().unwrap_or_else(|| {
            PathBuf::from(format!("/var/lib/disco/{}.snapshot.json", self.agent_id))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_config_parses_and_defaults_fill_the_rest() {
        let c: Config = toml::from_str(
            r#"
            agent_id = "lb1"
            max_delay = "100ms"
            [etcd]
            endpoints = ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
            request_timeout = "3s"
            [[target]]
            kind = "haproxy"
            path = "/etc/haproxy/conf.d/disco.cfg"
            master_socket = "/run/haproxy-master.sock"
            [[target]]
            kind = "template"
            name = "upstreams"
            path = "/etc/app/upstreams.conf"
            template = "/etc/disco/upstreams.j2"
            reload = ["systemctl", "reload", "app"]
            [target.listen]
            app1 = "10.0.0.9:80"
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.prefix, "/disco");
        assert_eq!(c.max_delay, Duration::from_millis(100));
        assert_eq!(c.etcd.request_timeout, Duration::from_secs(3));
        assert_eq!(c.targets[1].name(), "upstreams");
        assert_eq!(c.targets[0].timeout, Duration::from_secs(30));
        assert_eq!(c.targets[1].listen["app1"], "10.0.0.9:80");
        assert_eq!(c.stats_interval, Duration::from_secs(5));
        assert_eq!(c.canary_stats_interval, Duration::from_millis(50));
        assert_eq!(c.http_listen, None);
        assert_eq!(c.targets[0].stats_socket, None);
    }

    #[test]
    fn a_registration_takes_the_defaults_and_its_check_is_bounded_by_its_interval() {
        let parse = |extra: &str| -> RegisterConfig {
            let text = format!(
                "[[register]]\napp = \"a\"\ninstance = \"i\"\nversion = \"v1\"\naddress = \"10.0.0.5:80\"\n{extra}"
            );
            let c: Config = toml::from_str(&text).unwrap();
            c.validate().unwrap();
            c.registrations[0].clone()
        };
        let r = parse("");
        assert_eq!(r.interval, Duration::from_secs(2));
        assert_eq!(r.timeout(), Duration::from_secs(1));
        assert_eq!((r.rise, r.fall, r.weight), (2, 3, 100));
        assert_eq!(r.lease_ttl, Duration::from_secs(10));
        // A shorter interval bounds the default timeout, not an explicit one.
        assert_eq!(
            parse("interval = \"300ms\"").timeout(),
            Duration::from_millis(300)
        );
        let explicit = parse("interval = \"300ms\"\ntimeout = \"2s\"");
        assert_eq!(explicit.timeout(), Duration::from_secs(2));
    }

    #[test]
    fn the_packaged_examples_parse() {
        for text in [
            include_str!("../../packaging/examples/agent-lb.toml"),
            include_str!("../../packaging/examples/agent-app.toml"),
            include_str!("../../docker/lb-haproxy.toml"),
            include_str!("../../docker/lb-nginx.toml"),
        ] {
            let c: Config = toml::from_str(text).unwrap();
            c.validate().unwrap();
        }
    }

    #[test]
    fn stats_and_http_settings_parse() {
        let c: Config = toml::from_str(
            r#"
            stats_interval = "2s"
            http_listen = "127.0.0.1:9180"
            [[target]]
            kind = "haproxy"
            path = "/etc/haproxy/disco.cfg"
            stats_socket = "/run/haproxy/admin.sock"
            [[target]]
            kind = "nginx"
            path = "/etc/nginx/disco.conf"
            access_log = "/var/log/nginx/disco-access.log"
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.stats_interval, Duration::from_secs(2));
        assert_eq!(c.http_listen, Some("127.0.0.1:9180".parse().unwrap()));
        assert_eq!(
            c.targets[1].access_log.as_deref(),
            Some(Path::new("/var/log/nginx/disco-access.log"))
        );
    }

    #[test]
    fn canary_stats_interval_is_off_at_zero_and_bounded_otherwise() {
        let parse = |text: &str| -> anyhow::Result<Config> {
            let c: Config = toml::from_str(text)?;
            c.validate()?;
            Ok(c)
        };
        assert_eq!(
            parse("canary_stats_interval = \"0s\"")
                .unwrap()
                .canary_stats_interval,
            Duration::ZERO
        );
        assert_eq!(
            parse("canary_stats_interval = \"10ms\"")
                .unwrap()
                .canary_stats_interval,
            Duration::from_millis(10)
        );
        // Up to and including stats_interval.
        let c = parse("stats_interval = \"200ms\"\ncanary_stats_interval = \"200ms\"").unwrap();
        assert_eq!(c.canary_stats_interval, c.stats_interval);
        assert!(parse("stats_interval = \"200ms\"\ncanary_stats_interval = \"201ms\"").is_err());
        assert!(parse("canary_stats_interval = \"9ms\"").is_err());
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        for (text, expect) in [
            ("agent_id = \"lb 1\"", "whitespace"),
            ("prefix = \"disco\"", "must start with '/'"),
            ("unknown_field = 1", "unknown field"),
            ("[[target]]\nkind = \"template\"\npath = \"/x\"", "needs `template`"),
            ("[[target]]\nkind = \"haproxy\"\npath = \"relative.cfg\"", "must be absolute"),
            ("[[target]]\nkind = \"haproxy\"\npath = \"/a\"\n[[target]]\nkind = \"haproxy\"\npath = \"/b\"", "configured twice"),
            ("[[target]]\nkind = \"haproxy\"\npath = \"/a\"\nreload = []", "must name a program"),
            ("[[target]]\nkind = \"squid\"\npath = \"/a\"", "unknown variant"),
            ("[[target]]\nkind = \"haproxy\"\npath = \"/a\"\n[target.listen]\napp1 = \"0.0.0.0:80;\"", "listen"),
            ("[[register]]\napp = \"a\"\ninstance = \"i\"\nversion = \"v1\"\naddress = \"10.0.0.5\"", "expected host:port"),
            ("[[register]]\napp = \"a b\"\ninstance = \"i\"\nversion = \"v1\"\naddress = \"10.0.0.5:80\"", "whitespace"),
            ("[[register]]\napp = \"a\"\ninstance = \"i\"\nversion = \"v1\"\naddress = \"10.0.0.5:80\"\nhealth = \"healthz\"", "must be a path"),
            ("[[register]]\napp = \"a\"\ninstance = \"i\"\nversion = \"v1\"\naddress = \"10.0.0.5:80\"\nrise = 0", "at least 1"),
            ("[[target]]\nkind = \"nginx\"\npath = \"/a\"\nstats_socket = \"/s\"", "for haproxy targets"),
            ("[[target]]\nkind = \"template\"\npath = \"/a\"\ntemplate = \"/t\"\nruntime_socket = \"/s\"", "for haproxy targets"),
            ("[[target]]\nkind = \"haproxy\"\npath = \"/a b\"\nruntime_socket = \"/s\"", "must not hold spaces"),
            ("[[target]]\nkind = \"haproxy\"\npath = \"/a\"\nbalancer_socket = \"/s\"", "for nginx targets"),
            ("[[target]]\nkind = \"nginx\"\npath = \"/a\"\nbalancer_socket = \"/s;x\"", "must be absolute"),
            ("[[target]]\nkind = \"nginx\"\npath = \"a\"\nbalancer_socket = \"/s\"", "must be absolute"),
            ("[[target]]\nkind = \"haproxy\"\npath = \"/a\"\naccess_log = \"/l\"", "for nginx targets"),
            ("[[target]]\nkind = \"nginx\"\npath = \"/a\"\nlog_socket = \"/l\"", "for haproxy targets"),
            ("[[target]]\nkind = \"haproxy\"\npath = \"/a\"\nlog_socket = \"l.sock\"", "absolute"),
            ("[[target]]\nkind = \"haproxy\"\npath = \"/a\"\nlog_socket = \"/a b\"", "must not contain"),
            ("[[target]]\nkind = \"nginx\"\npath = \"/a\"\naccess_log = \"/l/$host\"", "must not contain"),
            ("[[target]]\nkind = \"nginx\"\npath = \"/a\"\naccess_log = \"l.log\"", "absolute"),
            ("stats_interval = \"10ms\"", "at least 100ms"),
            ("canary_stats_interval = \"5ms\"", "0s (off) or at least 10ms"),
            ("canary_stats_interval = \"9ms\"", "0s (off) or at least 10ms"),
            ("stats_interval = \"1s\"\ncanary_stats_interval = \"2s\"", "must not be more than stats_interval (1s)"),
            ("canary_stats_interval = \"6s\"", "must not be more than stats_interval (5s)"),
            ("http_listen = \"localhost\"", "invalid socket address"),
        ] {
            let err = toml::from_str::<Config>(text)
                .map_err(anyhow::Error::from)
                .and_then(|c| c.validate().map(|_| c))
                .unwrap_err();
            assert!(format!("{err:#}").contains(expect), "{text}: {err:#}");
        }
    }
}
