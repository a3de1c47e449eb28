//! The etcd store against a real etcd: watch resume after a restart, re-read after
//! compaction, and availability of a 3-member cluster with one member down.

use std::time::Duration;

use disco::store::{EtcdConfig, Store, WatchSettings, WatchUpdate};
use disco::{Keyspace, Snapshot};
use disco_harness::{wait_for_async, Etcd};
use tokio::sync::mpsc::Receiver;

fn store(endpoints: Vec<String>) -> Store {
    Store::new(EtcdConfig {
        endpoints,
        request_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_millis(500),
        ..EtcdConfig::default()
    })
    .unwrap()
}

fn fast_watch() -> WatchSettings {
    WatchSettings {
        progress_interval: Duration::from_millis(500),
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
    }
}

/// Feeds watch updates into a snapshot; records whether a resync happened.
struct Follower {
    ks: Keyspace,
    snapshot: Snapshot,
    rx: Receiver<WatchUpdate>,
    resyncs: usize,
    disconnects: usize,
}

impl Follower {
    async fn start(store: &Store) -> Follower {
        let ks = Keyspace::default();
        let (revision, kvs) = store.get_prefix(&ks.apps(), None).await.unwrap();
        let snapshot =
            Snapshot::from_kvs(&ks, revision, kvs.into_iter().map(|kv| (kv.key, kv.value)));
        let rx = store.watch(&ks.apps(), revision + 1, fast_watch());
        Follower {
            ks,
            snapshot,
            rx,
            resyncs: 0,
            disconnects: 0,
        }
    }

    /// Applies updates until the watch reports a disconnect.
    async fn until_disconnected(&mut self) {
        let seen = self.disconnects;
        while self.disconnects == seen {
            self.next().await;
        }
    }

    async fn next(&mut self) {
        let update = tokio::time::timeout(Duration::from_secs(30), self.rx.recv())
            .await
            .expect("no watch update within 30s")
            .expect("watch ended");
        self.handle(update);
    }

    fn handle(&mut self, update: WatchUpdate) {
        match update {
            WatchUpdate::Changes { revision, changes } => {
                self.snapshot.apply(&self.ks, revision, changes)
            }
            WatchUpdate::Resync { revision, kvs, .. } => {
                self.resyncs += 1;
                self.snapshot = Snapshot::from_kvs(&self.ks, revision, kvs);
            }
            WatchUpdate::Initial { revision, kvs } => {
                self.snapshot = Snapshot::from_kvs(&self.ks, revision, kvs);
            }
            WatchUpdate::Disconnected { .. } => self.disconnects += 1,
            WatchUpdate::Live => {}
        }
    }

    /// Applies updates until the snapshot has reached `revision`.
    async fn until(&mut self, revision: i64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.snapshot.revision < revision {
            let update = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "watch did not reach revision {revision}; at {}",
                        self.snapshot.revision
                    )
                })
                .expect("watch ended");
            self.handle(update);
        }
    }
}

fn route(app: &str, instance: &str) -> String {
    Keyspace::default().key(&disco::Key::Route {
        app: app.into(),
        instance: instance.into(),
    })
}

async fn fresh(store: &Store) -> Snapshot {
    let ks = Keyspace::default();
    let (revision, kvs) = store.get_prefix(&ks.apps(), None).await.unwrap();
    Snapshot::from_kvs(&ks, revision, kvs.into_iter().map(|kv| (kv.key, kv.value)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_after_etcd_restart_without_losing_events() {
    let mut etcd = Etcd::start();
    let store = store(etcd.endpoints());
    store
        .put(&route("app1", "instance1"), "v1", None)
        .await
        .unwrap();
    let mut follower = Follower::start(&store).await;

    etcd.kill(0);
    // The watcher notices the outage.
    follower.until_disconnected().await;
    etcd.restart(0);
    // Written the moment etcd is back, before the watcher has reconnected.
    let mut last = 0;
    for i in 1..=5 {
        last = store
            .put(&route("app1", &format!("instance{i}")), "v2", None)
            .await
            .unwrap();
    }
    let (deleted_at, _) = store.delete(&route("app1", "instance5")).await.unwrap();
    follower.until(last.max(deleted_at)).await;

    assert_eq!(
        follower.resyncs, 0,
        "no compaction happened, so no re-read was needed"
    );
    let expected = fresh(&store).await;
    assert_eq!(follower.snapshot.apps, expected.apps);
    assert_eq!(follower.snapshot.apps["app1"].routes.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_during_the_watchers_outage_arrive_after_it() {
    let mut etcd = Etcd::cluster(3);
    let endpoints = etcd.endpoints();
    // The watcher knows only member 0; writes go through the others.
    let watcher_store = store(vec![endpoints[0].clone()]);
    let writer = store(endpoints[1..].to_vec());
    writer
        .put(&route("app1", "instance1"), "v1", None)
        .await
        .unwrap();
    let mut follower = Follower::start(&watcher_store).await;

    etcd.kill(0);
    let mut last = 0;
    for i in 0..20 {
        last = writer
            .put(&route("app1", &format!("slot{i}")), "v2", None)
            .await
            .unwrap();
    }
    writer.delete(&route("app1", "instance1")).await.unwrap();
    last = writer
        .put(&route("app1", "slot0"), "v3", None)
        .await
        .unwrap()
        .max(last);
    etcd.restart(0);
    follower.until(last).await;

    assert_eq!(follower.resyncs, 0);
    assert_eq!(follower.snapshot.apps, fresh(&writer).await.apps);
    assert_eq!(follower.snapshot.apps["app1"].routes["slot0"], "v3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_during_a_disconnect_leads_to_a_full_reread() {
    let mut etcd = Etcd::cluster(3);
    let endpoints = etcd.endpoints();
    let watcher_store = store(vec![endpoints[0].clone()]);
    let writer = store(endpoints[1..].to_vec());
    for i in 0..3 {
        writer
            .put(&route("app1", &format!("instance{i}")), "v1", None)
            .await
            .unwrap();
    }
    let mut follower = Follower::start(&watcher_store).await;

    etcd.kill(0);
    writer
        .put(&route("app1", "instance0"), "v2", None)
        .await
        .unwrap();
    writer.delete(&route("app1", "instance1")).await.unwrap();
    let last = writer
        .put(&route("app2", "instance0"), "v9", None)
        .await
        .unwrap();
    // Compact through a live member, past the watcher's next revision.
    etcd.compact(last);
    etcd.restart(0);
    follower.until(last).await;

    assert_eq!(
        follower.resyncs, 1,
        "compaction must be reported as a re-read"
    );
    let expected = fresh(&writer).await;
    assert_eq!(follower.snapshot.apps, expected.apps);
    assert_eq!(follower.snapshot.apps["app1"].routes["instance0"], "v2");
    assert!(!follower.snapshot.apps["app1"]
        .routes
        .contains_key("instance1"));
    assert_eq!(follower.snapshot.apps["app2"].routes["instance0"], "v9");

    // And the watch keeps delivering after the re-read.
    let after = writer
        .put(&route("app1", "instance2"), "v2", None)
        .await
        .unwrap();
    follower.until(after).await;
    assert_eq!(follower.snapshot.apps["app1"].routes["instance2"], "v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_one_member_down_keeps_serving() {
    let mut etcd = Etcd::cluster(3);
    let store = store(etcd.endpoints());
    store
        .put(&route("app1", "warmup"), "v1", None)
        .await
        .unwrap();
    let mut follower = Follower::start(&store).await;

    // Member 0 is the one the store and the watch are connected to.
    etcd.kill(0);
    let mut last = 0;
    for i in 0..100 {
        let key = route("app1", &format!("slot{i}"));
        let value = format!("v{i}");
        last = store
            .put(&key, value.clone(), None)
            .await
            .unwrap_or_else(|e| panic!("write {i}: {e}"));
        let (_, kv) = store
            .get(&key)
            .await
            .unwrap_or_else(|e| panic!("read {i}: {e}"));
        assert_eq!(kv.expect("written key").value, value.as_bytes());
    }
    follower.until(last).await;
    assert_eq!(follower.snapshot.apps["app1"].routes.len(), 101);
    assert_eq!(follower.snapshot.apps, fresh(&store).await.apps);

    // A store that starts while the member is still down works too.
    let late = self::store(etcd.endpoints());
    wait_for_async(
        "a read through a store whose first member is down",
        Duration::from_secs(10),
        || {
            let late = late.clone();
            async move {
                late.get(&route("app1", "slot99"))
                    .await
                    .ok()
                    .and_then(|(_, kv)| kv)
            }
        },
    )
    .await;
}

/// A watch from now (start revision 0) opened while writes go on: its initial read and
/// its changes add up to etcd's state, with no write missing and none delivered twice
/// (each key's values only go up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_now_has_no_gap_and_no_repeat_while_writes_go_on() {
    let etcd = Etcd::start();
    let store = store(etcd.endpoints());
    let prefix = "/disco/test/";
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..400u32 {
                let key = format!("{prefix}k{}", i % 7);
                store.put(&key, i.to_string(), None).await.unwrap();
            }
        })
    };
    // Open it mid-stream.
    wait_for_async("the first writes", Duration::from_secs(30), || async {
        (store.get_prefix(prefix, None).await.unwrap().1.len() == 7).then_some(())
    })
    .await;
    let mut rx = store.watch(prefix, 0, fast_watch());
    let mut seen: std::collections::BTreeMap<String, u32> = Default::default();
    let mut at = 0;
    let take = |key: String, value: &[u8], seen: &mut std::collections::BTreeMap<String, u32>| {
        let value: u32 = std::str::from_utf8(value).unwrap().parse().unwrap();
        if let Some(before) = seen.insert(key.clone(), value) {
            assert!(
                value > before,
                "{key}: {value} after {before}: delivered twice"
            );
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let last = loop {
        // Until the writer is done and the watch has caught up with etcd.
        if writer.is_finished() {
            let (revision, kvs) = store.get_prefix(prefix, None).await.unwrap();
            if at >= revision {
                break kvs;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the watch did not catch up within 30s"
        );
        let update = match tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
            Ok(update) => update.expect("watch ended"),
            Err(_) => continue,
        };
        match update {
            WatchUpdate::Initial { revision, kvs } => {
                assert_eq!(at, 0, "one initial read");
                at = revision;
                for (k, v) in kvs {
                    take(k, &v, &mut seen);
                }
            }
            WatchUpdate::Changes { revision, changes } => {
                assert!(at > 0 && revision > at, "changes after the initial read");
                at = revision;
                for change in changes {
                    match change {
                        disco::Change::Put { key, value } => take(key, &value, &mut seen),
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }
            WatchUpdate::Live => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    let want: std::collections::BTreeMap<String, u32> = last
        .into_iter()
        .map(|kv| {
            (
                kv.key,
                String::from_utf8(kv.value).unwrap().parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, want);
}
