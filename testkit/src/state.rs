//! The routing state in etcd as tests write and read it: keys, apps seeded straight
//! into etcd, routes and canary records read back, and the statuses agents publish,
//! with waits for what a test asserts.

use std::collections::BTreeMap;
use std::time::Duration;

use disco::model::AgentStatus;
use disco::store::{EtcdConfig, Store};
use disco::{Key, Keyspace};

/// How long a wait for an agent's status lasts before the test fails.
pub const STATUS_WAIT: Duration = Duration::from_secs(30);

/// A store client for `endpoints` with a 500 ms connect timeout.
pub fn store(endpoints: Vec<String>) -> Store {
    Store::new(EtcdConfig {
        endpoints,
        connect_timeout: Duration::from_millis(500),
        ..EtcdConfig::default()
    })
    .unwrap()
}

/// `k` under the default prefix.
pub fn key(k: Key) -> String {
    Keyspace::default().key(&k)
}

/// The route key of `app`'s slot `instance`.
pub fn route(app: &str, instance: &str) -> String {
    key(Key::Route {
        app: app.into(),
        instance: instance.into(),
    })
}

/// The endpoint key of `app`'s `instance` at `version`.
pub fn endpoint(app: &str, instance: &str, version: &str) -> String {
    key(Key::Endpoint {
        app: app.into(),
        instance: instance.into(),
        version: version.into(),
    })
}

/// The policy key of `app`.
pub fn policy(app: &str) -> String {
    key(Key::Policy { app: app.into() })
}

/// Writes app `app` listening on `listen`, with `endpoints` (instance, version,
/// address) and `routes` (instance, version), straight to etcd. Returns the revision
/// of the last write.
pub async fn seed_app(
    store: &Store,
    app: &str,
    listen: &str,
    endpoints: &[(&str, &str, String)],
    routes: &[(&str, &str)],
) -> i64 {
    seed(store, app, listen, endpoints, routes, None).await
}

/// [`seed_app`] with every endpoint health-checked at `/healthz` by the proxies.
pub async fn seed_checked_app(
    store: &Store,
    app: &str,
    listen: &str,
    endpoints: &[(&str, &str, String)],
    routes: &[(&str, &str)],
) -> i64 {
    seed(store, app, listen, endpoints, routes, Some("/healthz")).await
}

async fn seed(
    store: &Store,
    app: &str,
    listen: &str,
    endpoints: &[(&str, &str, String)],
    routes: &[(&str, &str)],
    health_path: Option<&str>,
) -> i64 {
    let mut rev = store
        .put(&policy(app), format!(r#"{{"listen":"{listen}"}}"#), None)
        .await
        .unwrap();
    for (instance, version, address) in endpoints {
        let mut record = serde_json::json!({ "address": address });
        if let Some(path) = health_path {
            record["health_path"] = path.into();
        }
        rev = store
            .put(&endpoint(app, instance, version), record.to_string(), None)
            .await
            .unwrap();
    }
    for (instance, version) in routes {
        rev = store
            .put(&route(app, instance), *version, None)
            .await
            .unwrap();
    }
    rev
}

/// Every key and value in etcd, in key order.
pub async fn all_keys(store: &Store) -> Vec<(String, Vec<u8>)> {
    let (_, kvs) = store.get_prefix("/", None).await.unwrap();
    kvs.into_iter().map(|kv| (kv.key, kv.value)).collect()
}

/// Every slot of `app` → its version, as stored.
pub async fn routes(store: &Store, app: &str) -> BTreeMap<String, String> {
    let (_, kvs) = store
        .get_prefix(&Keyspace::default().routes(app), None)
        .await
        .unwrap();
    kvs.into_iter()
        .map(|kv| {
            let instance = kv.key.rsplit('/').next().unwrap().to_string();
            (instance, String::from_utf8(kv.value).unwrap())
        })
        .collect()
}

/// The revision of the last change under `<prefix>/apps/`: what every LB agent must
/// apply (agent status writes move the store's revision, not this).
pub async fn apps_revision(store: &Store) -> i64 {
    let (_, kvs) = store
        .get_prefix(&Keyspace::default().apps(), None)
        .await
        .unwrap();
    kvs.iter().map(|kv| kv.mod_revision).max().unwrap_or(0)
}

/// The canary record of `app`, if any.
pub async fn rollout(store: &Store, app: &str) -> Option<serde_json::Value> {
    let (_, kv) = store
        .get(&key(Key::Rollout { app: app.into() }))
        .await
        .unwrap();
    kv.map(|kv| serde_json::from_slice(&kv.value).unwrap())
}

/// Whether `app`'s canary lock is held.
pub async fn locked(store: &Store, app: &str) -> bool {
    let (_, kv) = store
        .get(&key(Key::RolloutLock { app: app.into() }))
        .await
        .unwrap();
    kv.is_some()
}

/// Agent `id`'s published status, if any.
pub async fn status(store: &Store, id: &str) -> Option<AgentStatus> {
    let (_, kv) = store.get(&key(Key::Agent { id: id.into() })).await.ok()?;
    serde_json::from_slice(&kv?.value).ok()
}

/// Waits (up to [`STATUS_WAIT`]) until `agent` reports `revision` applied; returns its
/// status.
pub async fn applied(store: &Store, agent: &crate::Agent, revision: i64) -> AgentStatus {
    let what = format!("agent {} to apply revision {revision}", agent.id);
    wait_status(store, &agent.id, &what, |s| s.applied_revision >= revision).await
}

/// Waits (up to [`STATUS_WAIT`]) until `agent`'s status satisfies `done`.
pub async fn wait(
    store: &Store,
    agent: &crate::Agent,
    done: impl Fn(&AgentStatus) -> bool,
) -> AgentStatus {
    let what = format!("agent {}'s status to meet the condition", agent.id);
    wait_status(store, &agent.id, &what, done).await
}

async fn wait_status(
    store: &Store,
    id: &str,
    what: &str,
    done: impl Fn(&AgentStatus) -> bool,
) -> AgentStatus {
    let deadline = std::time::Instant::now() + STATUS_WAIT;
    loop {
        let last = status(store, id).await;
        match last {
            Some(s) if done(&s) => return s,
            _ if std::time::Instant::now() > deadline => {
                panic!("timed out after {STATUS_WAIT:?} waiting for {what}; status {last:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// The agent's temp files (staged, or being installed) in `dir`.
pub fn temp_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".staged-") || (n.contains(".disco-") && n.ends_with(".tmp")))
        .collect()
}

/// Writes app `app` listening on `listen` with `slots` slots (`instance1`, ...), each
/// with a running backend per version of `versions` (health-checked at `/healthz`),
/// every slot routed to `versions[0]`. Returns the revision of the last write and the
/// backends (keep them running).
pub async fn seed_with_backends(
    store: &Store,
    app: &str,
    listen: &str,
    slots: usize,
    versions: &[&str],
) -> (i64, Vec<disco_harness::Backend>) {
    let mut backends = Vec::new();
    let mut endpoints = Vec::new();
    for i in 1..=slots {
        for v in versions {
            let b = disco_harness::Backend::start(v);
            endpoints.push((format!("instance{i}"), *v, b.addr()));
            backends.push(b);
        }
    }
    let endpoints: Vec<(&str, &str, String)> = endpoints
        .iter()
        .map(|(i, v, a)| (i.as_str(), *v, a.clone()))
        .collect();
    let instances: Vec<String> = (1..=slots).map(|i| format!("instance{i}")).collect();
    let routes: Vec<(&str, &str)> = instances
        .iter()
        .map(|i| (i.as_str(), versions[0]))
        .collect();
    let rev = seed_checked_app(store, app, listen, &endpoints, &routes).await;
    (rev, backends)
}

/// Lease `id` as etcd holds it: (remaining, granted) TTL in seconds; `None` once it is
/// gone. Reading it does not renew it.
pub async fn lease_ttl(endpoints: &[String], id: i64) -> Option<(i64, i64)> {
    let mut client = etcd_client::Client::connect(endpoints, None)
        .await
        .expect("connecting to etcd");
    // etcd answers a lease it does not hold with a TTL of -1.
    let response = client
        .lease_time_to_live(id, None)
        .await
        .expect("reading a lease");
    (response.ttl() > 0).then_some((response.ttl(), response.granted_ttl()))
}

/// Follows lease `id` until it has lived `ttls` times its granted TTL from now, which it
/// can only if someone keeps it alive; fails as soon as it is gone.
pub async fn lease_kept_alive(endpoints: &[String], id: i64, ttls: u32) {
    let started = std::time::Instant::now();
    loop {
        let Some((_, granted)) = lease_ttl(endpoints, id).await else {
            panic!("lease {id} is gone after {:?}", started.elapsed());
        };
        if started.elapsed() > Duration::from_secs(granted as u64) * ttls {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
