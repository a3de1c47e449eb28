//! User templates: [minijinja](https://docs.rs/minijinja) (Jinja2 syntax) rendered with
//! the routing state, for configurations the built-in renderers do not cover.
//!
//! Undefined values are errors (a typo in a template fails the render instead of
//! producing empty output), nothing is auto-escaped, `trim_blocks` and `lstrip_blocks`
//! are on (a line holding only a `{% tag %}` leaves no blank line) and a trailing
//! newline is kept.
//!
//! # Context
//!
//! ```text
//! revision        etcd revision of the snapshot (integer)
//! apps            app name → app, in name order; every valid app, with or without listen
//!   listen        "host:port" (normalised), or none
//!   mode          "http" or "tcp"
//!   slots         every routed slot, in slot order:
//!     instance, version
//!     address       the endpoint's "host:port", or none when none is registered
//!     weight        the endpoint's own weight (1-256), or none
//!     health_path   or none
//!     routable      true when the slot takes traffic
//!     reason        why it does not, or none
//!   routed        the endpoints of the routable slots = the servers of the app's backend:
//!     instance, version, address, health_path, healthy (always true here)
//!     weight        the server weight to render (0-256): the endpoint weight, or its share
//!                   of `weights` scaled so the largest server gets 256; 0 takes no new
//!                   traffic (the built-in renderers use the same numbers)
//!   dark          none, or (when its version has a healthy endpoint):
//!     version
//!     matches       [{kind: "header"|"cookie", name, value} | {kind: "cidr", name: none,
//!                   value: "10.0.0.0/8" (normalised)}]
//!     endpoints     every healthy registered endpoint of that version (as in routed,
//!                   weight = endpoint weight)
//!   weights       the policy's version → percent (empty map without weights)
//!   endpoints     every registered endpoint, routed or not, in slot then version order:
//!     instance, version, address, weight (endpoint weight), health_path, healthy
//! rejected        [{key, reason}] records refused by validation. Not validated (shown
//!                 with control characters and quotes escaped): use them in comments at
//!                 most.
//! ```
//!
//! Every other value was validated (names `[A-Za-z0-9._-]`, addresses, health paths,
//! match values), so none of them can break out of a configuration line.

use std::collections::BTreeMap;

use minijinja::{Environment, ErrorKind, UndefinedBehavior};
use serde::Serialize;

use super::resolve::{self, DarkMatch, ResolvedApp, Server};
use super::{RenderError, Rendered};
use crate::model::Mode;
use crate::Snapshot;

/// Renders `source` (a minijinja template) with the routing state of `snapshot`.
///
/// The warnings are the same notes the built-in renderers give for every app: slots left
/// out, dark canaries without endpoints, invalid records.
pub fn template(snapshot: &Snapshot, source: &str) -> Result<Rendered, RenderError> {
    let plan = resolve::resolve(snapshot);
    let mut warnings = plan.warnings.clone();
    let apps = plan
        .apps
        .iter()
        .map(|app| {
            warnings.extend(app.warnings.iter().cloned());
            (app.name, AppContext::new(app))
        })
        .collect();
    let context = Context {
        revision: snapshot.revision,
        apps,
        rejected: snapshot
            .rejected
            .iter()
            .map(|(key, reason)| RejectedContext {
                key: key.escape_debug().to_string(),
                reason: reason.escape_debug().to_string(),
            })
            .collect(),
    };

    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(true);
    let text = env
        .template_from_str(source)
        .map_err(|e| error(&e))?
        .render(&context)
        .map_err(|e| error(&e))?;
    Ok(Rendered { text, warnings })
}

fn error(e: &minijinja::Error) -> RenderError {
    let message = match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    };
    let line = e.line();
    match e.kind() {
        ErrorKind::SyntaxError | ErrorKind::BadEscape => RenderError::Syntax { line, message },
        _ => RenderError::Render { line, message },
    }
}

#[derive(Serialize)]
struct Context<'a> {
    revision: i64,
    apps: BTreeMap<&'a str, AppContext<'a>>,
    rejected: Vec<RejectedContext>,
}

#[derive(Serialize)]
struct RejectedContext {
    key: String,
    reason: String,
}

#[derive(Serialize)]
struct AppContext<'a> {
    listen: Option<String>,
    mode: &'static str,
    slots: Vec<SlotContext<'a>>,
    routed: Vec<EndpointContext<'a>>,
    dark: Option<DarkContext<'a>>,
    weights: &'a BTreeMap<String, u32>,
    endpoints: Vec<EndpointContext<'a>>,
}

#[derive(Serialize)]
struct SlotContext<'a> {
    instance: &'a str,
    version: &'a str,
    address: Option<String>,
    weight: Option<u32>,
    health_path: Option<&'a str>,
    routable: bool,
    reason: Option<&'static str>,
}

#[derive(Serialize)]
struct EndpointContext<'a> {
    instance: &'a str,
    version: &'a str,
    address: String,
    weight: u32,
    health_path: Option<&'a str>,
    healthy: bool,
}

#[derive(Serialize)]
struct DarkContext<'a> {
    version: &'a str,
    matches: Vec<MatchContext<'a>>,
    endpoints: Vec<EndpointContext<'a>>,
}

#[derive(Serialize)]
struct MatchContext<'a> {
    kind: &'static str,
    name: Option<&'a str>,
    value: &'a str,
}

impl<'a> AppContext<'a> {
    fn new(app: &'a ResolvedApp<'a>) -> Self {
        AppContext {
            listen: app.listen.as_ref().map(ToString::to_string),
            mode: match app.mode {
                Mode::Http => "http",
                Mode::Tcp => "tcp",
            },
            slots: app
                .slots
                .iter()
                .map(|slot| SlotContext {
                    instance: slot.instance,
                    version: slot.version,
                    address: slot.server.as_ref().map(|s| s.address.to_string()),
                    weight: slot.server.as_ref().map(|s| s.endpoint.weight),
                    health_path: slot
                        .server
                        .as_ref()
                        .and_then(|s| s.endpoint.health_path.as_deref()),
                    routable: slot.unroutable.is_none(),
                    reason: slot.unroutable,
                })
                .collect(),
            routed: app
                .routed
                .servers
                .iter()
                .map(EndpointContext::new)
                .collect(),
            dark: app.dark.as_ref().map(|dark| DarkContext {
                version: dark.version,
                matches: dark
                    .matches
                    .iter()
                    .map(|m| match m {
                        DarkMatch::Header { name, value } => MatchContext {
                            kind: "header",
                            name: Some(name),
                            value,
                        },
                        DarkMatch::Cookie { name, value } => MatchContext {
                            kind: "cookie",
                            name: Some(name),
                            value,
                        },
                        DarkMatch::Network(net) => MatchContext {
                            kind: "cidr",
                            name: None,
                            value: net,
                        },
                    })
                    .collect(),
                endpoints: dark
                    .backend
                    .servers
                    .iter()
                    .map(EndpointContext::new)
                    .collect(),
            }),
            weights: app.percent,
            endpoints: app.registered.iter().map(EndpointContext::new).collect(),
        }
    }
}

impl<'a> EndpointContext<'a> {
    fn new(server: &Server<'a>) -> Self {
        EndpointContext {
            instance: server.instance,
            version: server.version,
            address: server.address.to_string(),
            weight: server.weight,
            health_path: server.endpoint.health_path.as_deref(),
            healthy: server.endpoint.is_healthy(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keyspace;

    fn snapshot() -> Snapshot {
        Snapshot::from_kvs(
            &Keyspace::default(),
            9,
            [
                (
                    "/disco/apps/app1/policy",
                    r#"{"listen":"127.0.0.1:8080","weights":{"v2":10},
                        "dark":{"version":"v2","matches":[{"cookie":{"name":"c","value":"1"}},{"cidr":"10.0.0.1/8"}]}}"#,
                ),
                ("/disco/apps/app1/routes/i1", "v1"),
                ("/disco/apps/app1/routes/i2", "v2"),
                ("/disco/apps/app1/routes/i3", "v1"),
                (
                    "/disco/apps/app1/endpoints/i1/v1",
                    r#"{"address":"127.0.0.1:9001","health_path":"/h"}"#,
                ),
                (
                    "/disco/apps/app1/endpoints/i2/v2",
                    r#"{"address":"127.0.0.1:9102","weight":7}"#,
                ),
                (
                    "/disco/apps/app1/endpoints/i3/v2",
                    r#"{"address":"127.0.0.1:9103"}"#,
                ),
                ("/disco/apps/app1/routes/bad", "v1\n}"),
            ],
        )
    }

    #[test]
    fn the_context_holds_slots_routed_servers_and_the_dark_canary() {
        let source = "\
rev {{ revision }}
{% for name, app in apps|items %}
{{ name }} {{ app.listen }} {{ app.mode }} weights={{ app.weights }}
{% for s in app.slots %}
slot {{ s.instance }} {{ s.version }} {{ s.address }} {{ s.weight }} {{ s.health_path }} {{ s.routable }} {{ s.reason }}
{% endfor %}
{% for s in app.routed %}
routed {{ s.instance }} {{ s.version }} {{ s.address }} {{ s.weight }}
{% endfor %}
{% if app.dark %}
dark {{ app.dark.version }}{% for m in app.dark.matches %} {{ m.kind }}:{{ m.name }}={{ m.value }}{% endfor %}

{% for e in app.dark.endpoints %}
dark {{ e.instance }} {{ e.address }} {{ e.weight }}
{% endfor %}
{% endif %}
{% for e in app.endpoints %}
endpoint {{ e.instance }} {{ e.version }} {{ e.healthy }}
{% endfor %}
{% endfor %}
{% for r in rejected %}
rejected {{ r.key }}
{% endfor %}
";
        let r = template(&snapshot(), source).unwrap();
        assert_eq!(
            r.text,
            "\
rev 9
app1 127.0.0.1:8080 http weights={\"v2\": 10}
slot i1 v1 127.0.0.1:9001 100 /h True None
slot i2 v2 127.0.0.1:9102 7 None True None
slot i3 v1 None None None False no endpoint registered for the routed version
routed i1 v1 127.0.0.1:9001 256
routed i2 v2 127.0.0.1:9102 28
dark v2 cookie:c=1 cidr:None=10.0.0.0/8
dark i2 127.0.0.1:9102 7
dark i3 127.0.0.1:9103 100
endpoint i1 v1 True
endpoint i2 v2 True
endpoint i3 v2 True
rejected /disco/apps/app1/routes/bad
"
        );
        assert_eq!(
            r.warnings,
            ["app1/i3 routes to v1: no endpoint registered for the routed version; left out"]
        );
    }

    #[test]
    fn a_typo_is_an_error_not_empty_output() {
        let e = template(&snapshot(), "line one\n{{ apps.app1.lisen }}\n").unwrap_err();
        assert!(
            matches!(e, RenderError::Render { line: Some(2), .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("undefined"), "{e}");
        let e = template(&snapshot(), "{% for x in revisions %}{% endfor %}").unwrap_err();
        assert!(matches!(e, RenderError::Render { .. }), "{e:?}");
        let e = template(&snapshot(), "ok\n{% if %}").unwrap_err();
        assert!(
            matches!(e, RenderError::Syntax { line: Some(2), .. }),
            "{e:?}"
        );
    }

    #[test]
    fn nothing_is_escaped() {
        let r = template(&snapshot(), "{{ '<&>\"' }}").unwrap();
        assert_eq!(r.text, "<&>\"");
    }
}
