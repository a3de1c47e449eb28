//! nginx targets with a `balancer_socket`: each app's servers are picked by disco's Lua
//! balancer from routes the agent pushes to an admin server on a unix socket and reads
//! back. Flips, weights, endpoints, health and dark canaries by header or cookie reload
//! nothing (the worker pids stay); a new app still reloads; the admin server cannot be
//! reached through a port that serves traffic; after a restart nginx serves the last
//! routes pushed. Real etcd, nginx (with Debian's lua module) and backends.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use disco::model::AgentStatus;
use disco::store::Store;
use disco_harness::{Backend, Etcd, Load, LoadOptions, Nginx};
use disco_testkit::*;

struct Lb {
    _etcd: Etcd,
    store: Store,
    nginx: Nginx,
    agent: Agent,
    dir: tempfile::TempDir,
    listen: String,
    url: String,
    _backends: Vec<Backend>,
}

fn fragment(dir: &Path) -> PathBuf {
    dir.join("disco.conf")
}

fn socket(dir: &Path) -> PathBuf {
    dir.join("balancer.sock")
}

fn config(dir: &Path, etcd: &Etcd, nginx: &Nginx, listen: &str, check: &str) -> String {
    AgentConfig::new("lb1", dir, &etcd.endpoints())
        .set("status_ttl", "3s")
        .target(
            TargetConfig::nginx(&fragment(dir), nginx)
                .set("timeout", "20s")
                .set("balancer_socket", socket(dir).display())
                .set("balancer_check", check)
                .listen("app1", listen),
        )
        .toml()
}

/// etcd, nginx, v1 and v2 on instance1..3 (routed to v1), an agent in balancer mode;
/// waits for the first apply.
async fn start() -> Lb {
    start_with("2s").await
}

/// [`start`] with `balancer_check` set to `check`.
async fn start_with(check: &str) -> Lb {
    assert!(
        disco_harness::nginx::has_lua(),
        "nginx's lua module is missing: run scripts/deps.sh"
    );
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let dir = tempfile::tempdir().unwrap();
    disco_harness::nginx::open_to_workers(dir.path());
    let nginx = Nginx::start(&fragment(dir.path()));
    let listen = format!("127.0.0.1:{}", disco_harness::ports::free_port());
    let (rev, backends) = seed_with_backends(&store, "app1", &listen, 3, &["v1", "v2"]).await;
    let agent = Agent::start(
        dir.path(),
        "lb1",
        &config(dir.path(), &etcd, &nginx, &listen, check),
    );
    applied(&store, &agent, rev).await;
    Lb {
        _etcd: etcd,
        store,
        nginx,
        agent,
        dir,
        url: format!("http://{listen}/"),
        listen,
        _backends: backends,
    }
}

impl Lb {
    async fn applied(&self) -> AgentStatus {
        let rev = apps_revision(&self.store).await;
        applied(&self.store, &self.agent, rev).await
    }

    fn versions(&self, headers: &[(&str, &str)], n: usize) -> BTreeMap<String, usize> {
        let mut seen = BTreeMap::new();
        for _ in 0..n {
            let (status, body) = disco_harness::get(&self.url, headers).expect("request");
            assert_eq!(status, 200, "{body}\n{}", self.nginx.log());
            *seen.entry(body.trim().to_string()).or_default() += 1;
        }
        seen
    }

    async fn put(&self, key: &str, value: &str) {
        self.store.put(key, value.to_string(), None).await.unwrap();
    }

    /// Puts `key`, waits for the apply and checks it reloaded nothing.
    async fn pushed(&self, key: &str, value: &str, what: &str) {
        self.put(key, value).await;
        let s = self.applied().await;
        let t = &s.targets["nginx"];
        assert_eq!(
            t.applied_by.as_deref(),
            Some("runtime"),
            "{what}: {t:?}\n{}",
            self.agent.log_text()
        );
    }
}

fn only(version: &str, seen: &BTreeMap<String, usize>) {
    assert_eq!(seen.keys().collect::<Vec<_>>(), [version], "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_changes_are_pushed_to_the_balancer_without_a_reload() {
    let lb = start().await;
    only("v1", &lb.versions(&[], 20));
    let workers = lb.nginx.worker_pids();
    let reloads = lb.applied().await.targets["nginx"].reloads;
    let load = Load::start(&lb.url, LoadOptions::default());
    load.wait_for_ok(50);

    // Flips.
    lb.pushed(&route("app1", "instance1"), "v2", "promote one")
        .await;
    let seen = lb.versions(&[], 60);
    assert!(
        seen.get("v2").is_some_and(|n| *n > 0) && seen.get("v1").is_some_and(|n| *n > 0),
        "{seen:?}"
    );
    for i in 2..=3 {
        lb.pushed(&route("app1", &format!("instance{i}")), "v2", "promote")
            .await;
    }
    only("v2", &lb.versions(&[], 30));

    // A dark canary by header, then by cookie (a new match kind: no reload either).
    let listen = &lb.listen;
    let header = format!(
        r#"{{"listen":"{listen}","dark":{{"version":"v1","matches":[{{"header":{{"name":"X-Canary","value":"internal"}}}}]}}}}"#
    );
    lb.pushed(&policy("app1"), &header, "dark by header").await;
    only("v1", &lb.versions(&[("X-Canary", "internal")], 20));
    only("v2", &lb.versions(&[("X-Canary", "other")], 20));
    let cookie = format!(
        r#"{{"listen":"{listen}","dark":{{"version":"v1","matches":[{{"cookie":{{"name":"beta-User","value":"yes"}}}}]}}}}"#
    );
    lb.pushed(&policy("app1"), &cookie, "dark by cookie").await;
    only("v1", &lb.versions(&[("Cookie", "a=b; beta-User=yes")], 20));
    // Cookie names are compared exactly.
    only("v2", &lb.versions(&[("Cookie", "beta-user=yes")], 20));
    only("v2", &lb.versions(&[("X-Canary", "internal")], 20));
    lb.pushed(
        &policy("app1"),
        &format!(r#"{{"listen":"{listen}"}}"#),
        "dark off",
    )
    .await;
    only("v2", &lb.versions(&[("Cookie", "beta-User=yes")], 20));

    // A new endpoint, routed; then reported failing.
    let new = Backend::start("v3");
    lb.put(
        &endpoint("app1", "instance4", "v3"),
        &format!(r#"{{"address":"{}"}}"#, new.addr()),
    )
    .await;
    lb.pushed(&route("app1", "instance4"), "v3", "instance4 routed")
        .await;
    let seen = lb.versions(&[], 80);
    assert!(seen.get("v3").is_some_and(|n| *n > 0), "{seen:?}");
    lb.pushed(
        &endpoint("app1", "instance4", "v3"),
        &format!(
            r#"{{"address":"{}","health":{{"status":"failing"}}}}"#,
            new.addr()
        ),
        "instance4 failing",
    )
    .await;
    only("v2", &lb.versions(&[], 40));

    // Every request of the load so far got its 200 (no reload, no reset).
    let report = load.stop();
    assert_eq!(report.failed, 0, "{report:?}");
    assert!(report.ok > 0, "{report:?}");

    // No routable endpoint: 503, and back.
    let mut rev = 0;
    for i in 1..=4 {
        (rev, _) = lb
            .store
            .delete(&route("app1", &format!("instance{i}")))
            .await
            .unwrap();
    }
    // (A delete leaves no key behind: wait for its own revision.)
    let s = applied(&lb.store, &lb.agent, rev).await;
    assert_eq!(s.targets["nginx"].applied_by.as_deref(), Some("runtime"));
    let (status, body) = disco_harness::get(&lb.url, &[]).unwrap();
    assert_eq!(status, 503, "{body} {s:?}\n{}", lb.agent.log_text());
    for i in 1..=3 {
        lb.pushed(&route("app1", &format!("instance{i}")), "v1", "back")
            .await;
    }
    only("v1", &lb.versions(&[], 20));

    assert_eq!(lb.nginx.worker_pids(), workers, "nginx was reloaded");
    assert_eq!(lb.applied().await.targets["nginx"].reloads, reloads);

    // A new app: a reload, validated and confirmed, and then served.
    let other = format!("127.0.0.1:{}", disco_harness::ports::free_port());
    lb.put(&policy("app2"), &format!(r#"{{"listen":"{other}"}}"#))
        .await;
    let s = lb.applied().await;
    assert_eq!(s.targets["nginx"].applied_by.as_deref(), Some("reload"));
    assert_eq!(s.targets["nginx"].reloads, reloads + 1);
    only("v1", &lb.versions(&[], 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_server_is_not_reachable_through_a_traffic_port() {
    let lb = start().await;
    let admin = format!(
        "{}{}",
        lb.url.trim_end_matches('/'),
        disco::render::nginx::BALANCER_ADMIN_PATH
    );
    // Through app1's port: 404, whatever the method.
    let (status, body) = disco_harness::get(&admin, &[]).unwrap();
    assert_eq!(status, 404, "{body}");
    assert!(!body.contains("generation"), "{body}");
    let body = "app app1\nrouted 127.0.0.1:1 100\nend\ngeneration 99\n";
    let mut conn = std::net::TcpStream::connect(&lb.listen).unwrap();
    use std::io::{Read, Write};
    write!(
        conn,
        "PUT {} HTTP/1.0\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        disco::render::nginx::BALANCER_ADMIN_PATH,
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    only("v1", &lb.versions(&[], 20));
    // The agent's own read: it is there on the socket.
    let text = std::fs::read_to_string(lb.dir.path().join("disco.conf")).unwrap();
    assert!(text.contains(&format!("listen unix:{};", socket(lb.dir.path()).display())));
    assert_eq!(text.matches("content_by_lua_block").count(), 1, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_nginx_serves_the_last_routes_pushed() {
    let mut lb = start().await;
    lb.pushed(&route("app1", "instance1"), "v2", "promote one")
        .await;
    for i in 2..=3 {
        lb.pushed(&route("app1", &format!("instance{i}")), "v2", "promote")
            .await;
    }
    only("v2", &lb.versions(&[], 20));
    // The routes file is written once the push is published.
    let routes = lb.dir.path().join("disco.conf.routes");
    let v2: Vec<String> = lb
        ._backends
        .iter()
        .filter(|b| b.version() == "v2")
        .map(|b| b.addr())
        .collect();
    disco_harness::wait_for(
        "the routes file",
        std::time::Duration::from_secs(10),
        || {
            let text = std::fs::read_to_string(&routes).ok()?;
            let routed: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("routed "))
                .filter_map(|l| l.split(' ').next())
                .collect();
            (routed.len() == 3 && routed.iter().all(|a| v2.iter().any(|v| v == a))).then_some(())
        },
    );
    // Stop the agent; restart nginx (an empty dict): it loads the routes file.
    lb.agent.stop();
    lb.nginx.restart();
    only("v2", &lb.versions(&[], 20));
}

/// One HTTP/1.0 exchange with the balancer's admin server; the whole answer.
fn admin(lb: &Lb, method: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut conn = std::os::unix::net::UnixStream::connect(socket(lb.dir.path())).unwrap();
    write!(
        conn,
        "{method} {} HTTP/1.0\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        disco::render::nginx::BALANCER_ADMIN_PATH,
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_that_reads_back_wrong_falls_back_to_a_reload_that_repairs_it() {
    // No reading back between changes: the next change finds it.
    let lb = start_with("0s").await;
    // Someone else writes to the balancer: an entry the agent never pushed.
    let answer = admin(
        &lb,
        "PUT",
        "app ghost1\nrouted 127.0.0.1:1 100\nend\napp ghost2\nend\n",
    );
    assert!(answer.contains("ok 2 set 0 deleted"), "{answer}");
    // The next change reads back something else than the agent pushed: it reloads,
    // then pushes what was missing and deletes what was extra.
    lb.put(&route("app1", "instance1"), "v2").await;
    let s = lb.applied().await;
    assert_eq!(
        s.targets["nginx"].applied_by.as_deref(),
        Some("reload"),
        "{}",
        lb.agent.log_text()
    );
    assert!(lb.agent.log_text().contains("reloading instead"));
    let held = admin(&lb, "GET", "");
    // Both deleted by one push.
    assert!(!held.contains("ghost"), "{held}");
    assert!(held.contains("app app1"), "{held}");
    // And the one after is a push again.
    lb.pushed(&route("app1", "instance1"), "v1", "after the repair")
        .await;
    only("v1", &lb.versions(&[], 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_nginx_without_its_routes_file_is_filled_again_by_the_agent() {
    let mut lb = start().await;
    lb.pushed(&route("app1", "instance1"), "v2", "promote one")
        .await;
    let routes = lb.dir.path().join("disco.conf.routes");
    let v2 = lb
        ._backends
        .iter()
        .find(|b| b.version() == "v2")
        .map(|b| format!("routed {} ", b.addr()))
        .unwrap();
    // (instance1's v2 is the first v2 backend started.)
    disco_harness::wait_for(
        "the routes file",
        std::time::Duration::from_secs(10),
        || {
            let text = std::fs::read_to_string(&routes).ok()?;
            text.contains(&v2).then_some(())
        },
    );
    // The file gone too: nginx comes back with nothing to serve, until the agent,
    // reading the balancer back between changes, pushes again.
    std::fs::remove_file(&routes).unwrap();
    lb.nginx.restart();
    let url = lb.url.clone();
    disco_harness::wait_for(
        "app1 served again",
        std::time::Duration::from_secs(20),
        || matches!(disco_harness::get(&url, &[]), Ok((200, _))).then_some(()),
    );
    let seen = lb.versions(&[], 60);
    assert!(
        seen.get("v2").is_some_and(|n| *n > 0) && seen.get("v1").is_some_and(|n| *n > 0),
        "{seen:?}"
    );
    assert!(lb.agent.log_text().contains("pushing again"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_endpoint_is_served() {
    let lb = start().await;
    let v6 = Backend::start_on("[::1]:0", "v6").expect("binding [::1]");
    lb.put(
        &endpoint("app1", "instance5", "v6"),
        &format!(r#"{{"address":"{}"}}"#, v6.addr()),
    )
    .await;
    lb.pushed(&route("app1", "instance5"), "v6", "an IPv6 endpoint")
        .await;
    let seen = lb.versions(&[], 80);
    assert!(seen.get("v6").is_some_and(|n| *n > 0), "{seen:?}");
}
