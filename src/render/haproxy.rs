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

use std::collections::BTreeMap;
use std::fmt::{self, Write};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::plan::{self, AppPlan, Backend, DarkMatch};
use super::{header, Rendered, Serves};
use crate::model::Mode;
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
        }
    }
}

/// Renders every app that has a `listen` address into an HAProxy fragment.
pub fn haproxy(snapshot: &Snapshot, options: &HaproxyOptions) -> Rendered {
    let plan = plan::plan(snapshot);
    let mut warnings = plan.warnings.clone();
    let apps = plan::rendered_apps(&plan.apps, &mut warnings, |_| None);
    for (app, _) in &apps {
        let dark = app.dark.as_ref().map(|d| ("dark canary", &d.backend));
        for (what, backend) in [("routed", &app.routed)].into_iter().chain(dark) {
            if let Some(paths) = &backend.mixed_health_paths {
                warnings.push(format!(
                    "{}: {what} endpoints have different health paths ({paths}): checked by TCP connect only",
                    app.name
                ));
            }
        }
    }
    let mut text = header();
    write_file(&mut text, &apps, options).expect("writing to a String cannot fail");
    Rendered { text, warnings }
}

/// What every server [`haproxy()`] renders for `snapshot` serves, by `(backend, server)`
/// as HAProxy names them in `show stat` (`disco_<app>` or `disco-dark_<app>`, and the
/// instance slot): how an agent attributes HAProxy's per-server counters to versions.
pub fn servers(snapshot: &Snapshot) -> BTreeMap<(String, String), Serves> {
    let plan = plan::plan(snapshot);
    let mut warnings = Vec::new();
    let mut out = BTreeMap::new();
    for (app, _) in plan::rendered_apps(&plan.apps, &mut warnings, |_| None) {
        let dark = app
            .dark
            .as_ref()
            .map(|d| (format!("disco-dark_{}", app.name), &d.backend));
        for (backend, servers) in [(format!("disco_{}", app.name), &app.routed)]
            .into_iter()
            .chain(dark)
        {
            for s in &servers.servers {
                out.insert(
                    (backend.clone(), s.instance.to_string()),
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

fn write_file(out: &mut String, apps: &[(&AppPlan, &Address)], o: &HaproxyOptions) -> fmt::Result {
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
        plan::duration(o.timeout_connect)
    )?;
    writeln!(
        out,
        "    timeout client {}",
        plan::duration(o.timeout_client)
    )?;
    writeln!(
        out,
        "    timeout server {}",
        plan::duration(o.timeout_server)
    )?;
    writeln!(out, "    retries {}", o.retries)?;
    writeln!(out, "    option redispatch 1")?;
    writeln!(out, "    default-server init-addr last,libc,none")?;
    for (app, listen) in apps {
        write_app(out, app, listen, o)?;
    }
    Ok(())
}

fn write_app(out: &mut String, app: &AppPlan, listen: &Address, o: &HaproxyOptions) -> fmt::Result {
    let name = app.name;
    let http = app.mode == Mode::Http;
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
        writeln!(out, "    option httplog")?;
        writeln!(out, "    option forwardfor")?;
        writeln!(out, "    option idle-close-on-response")?;
    } else {
        writeln!(out, "    option tcplog")?;
    }
    if let Some(dark) = &app.dark {
        let mut acls = Vec::new();
        for m in &dark.matches {
            let acl = format!("dark_{}", acls.len());
            match m {
                DarkMatch::Header { name, value } if http => {
                    writeln!(out, "    acl {acl} req.hdr({name}) -m str -- {value}")?
                }
                DarkMatch::Cookie { name, value } if http => {
                    writeln!(out, "    acl {acl} req.cook({name}) -m str -- {value}")?
                }
                DarkMatch::Network(net) => writeln!(out, "    acl {acl} src {net}")?,
                // Refused by policy validation: a tcp app can only match networks.
                DarkMatch::Header { .. } | DarkMatch::Cookie { .. } => continue,
            }
            acls.push(acl);
        }
        if !acls.is_empty() {
            writeln!(
                out,
                "    use_backend disco-dark_{name} if {}",
                acls.join(" || ")
            )?;
        }
    }
    writeln!(out, "    default_backend disco_{name}")?;
    writeln!(out)?;
    write_backend(out, &format!("disco_{name}"), &app.routed, http, o)?;
    if let Some(dark) = &app.dark {
        writeln!(out)?;
        writeln!(out, "# {name}: dark canary, {}", dark.version)?;
        write_backend(out, &format!("disco-dark_{name}"), &dark.backend, http, o)?;
    }
    Ok(())
}

fn write_backend(
    out: &mut String,
    name: &str,
    backend: &Backend,
    http: bool,
    o: &HaproxyOptions,
) -> fmt::Result {
    writeln!(out, "backend {name}")?;
    if !http {
        writeln!(out, "    mode tcp")?;
    }
    writeln!(out, "    balance roundrobin")?;
    if backend.servers.is_empty() {
        let what = if http {
            "HAProxy answers 503"
        } else {
            "connections are closed"
        };
        return writeln!(out, "    # no routable endpoint: {what}");
    }
    if let Some(path) = backend.health_path {
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
    let check = format!(
        "check inter {} fall {} rise {}",
        o.check_interval.as_millis(),
        o.check_fall,
        o.check_rise
    );
    for s in &backend.servers {
        let note = if s.weight == 0 {
            ", 0%: takes no new traffic"
        } else {
            ""
        };
        writeln!(
            out,
            "    server {} {} weight {} {check}  # {}{note}",
            s.instance, s.address, s.weight, s.version
        )?;
    }
    Ok(())
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
                "server instance1 127.0.0.1:9101 weight 100 check inter 1000 fall 2 rise 1  # v2",
                "server instance2 127.0.0.1:9002 weight 50 check inter 1000 fall 2 rise 1  # v1",
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
                ("disco-dark_app1", "instance2", "v3"),
                ("disco_app1", "instance1", "v2"),
                ("disco_app1", "instance2", "v1"),
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
    fn unroutable_slots_are_left_out_with_a_warning_and_an_empty_backend_answers_503() {
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
        assert_eq!(
            section(&r.text, "backend disco_down"),
            [
                "balance roundrobin",
                "# no routable endpoint: HAProxy answers 503"
            ]
        );
        assert!(!r.text.contains("9002"));
        assert!(r.text.contains("frontend disco_down\n"));
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
        assert_eq!(
            dark[1..3],
            ["option httpchk", "http-check send meth GET uri /healthz"]
        );
        let servers: Vec<&String> = dark.iter().filter(|l| l.starts_with("server")).collect();
        assert_eq!(servers.len(), 2, "{dark:?}");
        assert!(servers[0].starts_with("server instance1 127.0.0.1:9101 weight 100"));
        assert!(servers[1].starts_with("server instance2 127.0.0.1:9102 weight 100"));
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
                "server i1 [::1]:6432 weight 100 check inter 1000 fall 2 rise 1  # v1"
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
            servers[0].starts_with("server i1 127.0.0.1:9001 weight 256 "),
            "{servers:?}"
        );
        assert!(
            servers[1].starts_with("server i2 127.0.0.1:9002 weight 28 "),
            "{servers:?}"
        );
        assert!(
            servers[2].starts_with("server i3 127.0.0.1:9003 weight 0 "),
            "{servers:?}"
        );
        assert!(
            servers[2].ends_with("# v3, 0%: takes no new traffic"),
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
}
