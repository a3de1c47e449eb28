//! An agent's config file for tests, built from parts: the top level (id, snapshot
//! cache, timings), `[etcd]`, and one `[[target]]` section per target, with the common
//! HAProxy, nginx and template targets filled in from the harness's proxies.

use std::fmt::Write;
use std::path::Path;

use disco_harness::{Haproxy, Nginx};

/// Settings in the order given; setting a key again replaces its value in place.
#[derive(Clone, Debug, Default)]
struct Settings(Vec<(String, String)>);

impl Settings {
    fn put(&mut self, key: &str, value: String) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.0.push((key.to_string(), value)),
        }
    }

    fn toml(&self) -> String {
        self.0.iter().map(|(k, v)| format!("{k} = {v}\n")).collect()
    }
}

/// The TOML of an agent's config file. Values given to `raw` are TOML as is (numbers,
/// lists, quoted strings); those given to `set` are strings and get quoted. Setting a
/// key again replaces it.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    top: Settings,
    etcd: Settings,
    tables: String,
}

impl AgentConfig {
    /// Agent `id` with its snapshot cache at `<dir>/<id>.cache.json`, reading etcd at
    /// `endpoints` with a 500 ms connect timeout.
    pub fn new(id: &str, dir: &Path, endpoints: &[String]) -> AgentConfig {
        AgentConfig {
            top: Settings::default(),
            etcd: Settings::default(),
            tables: String::new(),
        }
        .set("agent_id", id)
        .set("cache_path", dir.join(format!("{id}.cache.json")).display())
        .etcd_raw("endpoints", format!("{endpoints:?}"))
        .etcd_raw("connect_timeout", "\"500ms\"")
    }

    /// A top-level string setting (`status_ttl`, `max_delay`, `stats_interval`, ...).
    pub fn set(self, key: &str, value: impl std::fmt::Display) -> AgentConfig {
        self.raw(key, quote(&value.to_string()))
    }

    /// A top-level setting written as is (`mass_expiry_share = 1.0`).
    pub fn raw(mut self, key: &str, value: impl std::fmt::Display) -> AgentConfig {
        self.top.put(key, value.to_string());
        self
    }

    /// An `[etcd]` setting written as is.
    pub fn etcd_raw(mut self, key: &str, value: impl std::fmt::Display) -> AgentConfig {
        self.etcd.put(key, value.to_string());
        self
    }

    /// A `[[target]]` section.
    pub fn target(mut self, target: TargetConfig) -> AgentConfig {
        self.tables.push_str(&target.toml());
        self
    }

    /// Any further tables, as TOML text (`[[register]]` sections, ...).
    pub fn tables(mut self, toml: &str) -> AgentConfig {
        self.tables.push_str(toml);
        if !toml.ends_with('\n') {
            self.tables.push('\n');
        }
        self
    }

    /// The file's content.
    pub fn toml(&self) -> String {
        format!(
            "{}[etcd]\n{}{}",
            self.top.toml(),
            self.etcd.toml(),
            self.tables
        )
    }
}

/// One `[[target]]` section.
#[derive(Clone, Debug)]
pub struct TargetConfig {
    settings: Settings,
    listen: Settings,
}

impl TargetConfig {
    /// A target of `kind` writing `path`.
    pub fn new(kind: &str, path: &Path) -> TargetConfig {
        TargetConfig {
            settings: Settings::default(),
            listen: Settings::default(),
        }
        .set("kind", kind)
        .set("path", path.display())
    }

    /// A template target rendering `template` to `path`.
    pub fn template(path: &Path, template: &Path) -> TargetConfig {
        TargetConfig::new("template", path).set("template", template.display())
    }

    /// An HAProxy target writing `fragment`, reloading `haproxy` through its master CLI.
    pub fn haproxy(fragment: &Path, haproxy: &Haproxy) -> TargetConfig {
        TargetConfig::new("haproxy", fragment)
            .set("haproxy_config", haproxy.main_config().display())
            .set("master_socket", haproxy.master_socket().display())
    }

    /// An nginx target writing `fragment`, checking and reloading `nginx`.
    pub fn nginx(fragment: &Path, nginx: &Nginx) -> TargetConfig {
        TargetConfig::new("nginx", fragment)
            .raw("nginx_args", format!("{:?}", nginx.nginx_test_args()))
            .set("pid_file", nginx.pid_file().display())
    }

    /// A string setting of the target.
    pub fn set(self, key: &str, value: impl std::fmt::Display) -> TargetConfig {
        self.raw(key, quote(&value.to_string()))
    }

    /// A setting written as is (`check = ["haproxy", "-c", "-f", "{staged}"]`).
    pub fn raw(mut self, key: &str, value: impl std::fmt::Display) -> TargetConfig {
        self.settings.put(key, value.to_string());
        self
    }

    /// Serves `app` on `address` instead of its policy's listen address.
    pub fn listen(mut self, app: &str, address: &str) -> TargetConfig {
        self.listen.put(app, quote(address));
        self
    }

    /// The section's TOML.
    pub fn toml(&self) -> String {
        let mut text = format!("[[target]]\n{}", self.settings.toml());
        if !self.listen.0.is_empty() {
            let _ = write!(text, "[target.listen]\n{}", self.listen.toml());
        }
        text
    }
}

/// A TOML basic string.
fn quote(value: &str) -> String {
    format!("{value:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_is_top_level_then_etcd_then_targets() {
        let dir = Path::new("/tmp/x");
        let text = AgentConfig::new("lb1", dir, &["http://127.0.0.1:1".into()])
            .set("status_ttl", "3s")
            .etcd_raw("connect_timeout", "\"1s\"")
            .target(
                TargetConfig::template(&dir.join("out"), &dir.join("t.j2"))
                    .raw("check", r#"["true"]"#)
                    .listen("app1", "127.0.0.1:80"),
            )
            .toml();
        assert_eq!(
            text,
            "agent_id = \"lb1\"\ncache_path = \"/tmp/x/lb1.cache.json\"\nstatus_ttl = \"3s\"\n\
             [etcd]\nendpoints = [\"http://127.0.0.1:1\"]\nconnect_timeout = \"1s\"\n\
             [[target]]\nkind = \"template\"\npath = \"/tmp/x/out\"\ntemplate = \"/tmp/x/t.j2\"\n\
             check = [\"true\"]\n[target.listen]\napp1 = \"127.0.0.1:80\"\n"
        );
    }
}
