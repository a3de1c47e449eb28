//! A real HAProxy or nginx driven by an agent's target, one type for tests that run the
//! same scenario against both.

use std::path::Path;

use disco::store::Store;
use disco::Keyspace;

use crate::TargetConfig;

/// A real HAProxy or nginx that an agent's target drives.
pub enum Proxy {
    Haproxy(disco_harness::Haproxy),
    Nginx(disco_harness::Nginx),
}

impl Proxy {
    /// Starts `kind` (`haproxy` or `nginx`) loading `fragment`.
    pub fn start(kind: &str, fragment: &Path) -> Proxy {
        match kind {
            "haproxy" => Proxy::Haproxy(disco_harness::Haproxy::start(fragment)),
            "nginx" => Proxy::Nginx(disco_harness::Nginx::start(fragment)),
            other => panic!("no proxy kind {other:?}"),
        }
    }

    /// The agent's `[[target]]` section for this proxy and `fragment`, with a 20 s
    /// bound on its commands (a loaded 2-core machine).
    pub fn target(&self, fragment: &Path) -> TargetConfig {
        match self {
            Proxy::Haproxy(h) => TargetConfig::haproxy(fragment, h),
            Proxy::Nginx(n) => TargetConfig::nginx(fragment, n),
        }
        .set("timeout", "20s")
    }

    /// What the agent renders for the routing state in etcd now.
    pub async fn render(&self, store: &Store) -> String {
        let ks = Keyspace::default();
        let (revision, kvs) = store.get_prefix(&ks.apps(), None).await.unwrap();
        let snapshot =
            disco::Snapshot::from_kvs(&ks, revision, kvs.into_iter().map(|kv| (kv.key, kv.value)));
        match self {
            Proxy::Haproxy(_) => {
                disco::render::haproxy(&snapshot, &disco::render::HaproxyOptions::default()).text
            }
            Proxy::Nginx(_) => {
                disco::render::nginx(&snapshot, &disco::render::NginxOptions::default()).text
            }
        }
    }

    /// Reloads the proxy by hand (not through an agent).
    pub fn reload(&self) {
        match self {
            Proxy::Haproxy(h) => h.reload().map(drop),
            Proxy::Nginx(n) => n.reload().map(drop),
        }
        .expect("reloading the proxy by hand")
    }

    /// The proxy's worker pids.
    pub fn worker_pids(&self) -> Vec<u32> {
        match self {
            Proxy::Haproxy(h) => h.worker_pids(),
            Proxy::Nginx(n) => n.worker_pids(),
        }
    }
}
