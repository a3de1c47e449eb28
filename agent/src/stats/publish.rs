//! Publishes the statistics records to `<prefix>/stats/<app>/<agent_id>` under one lease
//! of the agent's own, so that a dead agent's records disappear with it. Its own task:
//! the LB loop hands it the latest records through a [`Sender`] and never waits for
//! etcd. Two kinds of hand-over: every app's records at the end of a window (a record of
//! an app not among them is deleted), and some apps' records between windows (the
//! canary apps' fast records: written over their earlier ones, nothing deleted). Nothing
//! queues up: what the task has not written yet is replaced by what comes after it. Some
//! apps' records go ahead of the rest of a batch of every app being written (one put per
//! app: with many apps, a while), and the batch does not write its older record of those
//! apps over them. On stop the lease is revoked.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use disco::stats::AppStats;
use disco::store::Store;
use disco::{Key, Keyspace};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::lease::Lease;

/// What the task has yet to write: the latest of each kind.
#[derive(Debug, Default, PartialEq)]
struct Pending {
    /// Every app's records (the end of a window); apps not in it lose their record.
    all: Option<BTreeMap<String, AppStats>>,
    /// Some apps' records, newer than those in `all`; other apps' records are kept.
    some: BTreeMap<String, AppStats>,
    /// The sender is gone.
    closed: bool,
}

impl Pending {
    /// Every app's records: they supersede everything not yet written.
    fn set_all(&mut self, records: BTreeMap<String, AppStats>) {
        self.some.clear();
        self.all = Some(records);
    }

    /// Some apps' records: each supersedes what that app had pending.
    fn set_some(&mut self, records: BTreeMap<String, AppStats>) {
        for (app, record) in records {
            match &mut self.all {
                Some(all) if all.contains_key(&app) => {
                    all.insert(app, record);
                }
                _ => {
                    self.some.insert(app, record);
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.all.is_none() && self.some.is_empty()
    }
}

/// The shared hand-over slot: the LB loop fills it, the task empties it.
#[derive(Default)]
struct Mailbox {
    pending: Mutex<Pending>,
    wake: Notify,
}

/// The LB loop's end: hands records to the task without waiting.
pub struct Sender {
    mailbox: Arc<Mailbox>,
}

impl Sender {
    /// Every app's records, at the end of a window: written, and the records of apps
    /// not among them deleted.
    pub fn send_all(&self, records: BTreeMap<String, AppStats>) {
        self.mailbox
            .pending
            .lock()
            .expect("stats mailbox")
            .set_all(records);
        self.mailbox.wake.notify_one();
    }

    /// Some apps' records, between windows: written over their earlier records; the
    /// other apps' records stay as they are.
    pub fn send_some(&self, records: BTreeMap<String, AppStats>) {
        if records.is_empty() {
            return;
        }
        self.mailbox
            .pending
            .lock()
            .expect("stats mailbox")
            .set_some(records);
        self.mailbox.wake.notify_one();
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        if let Ok(mut pending) = self.mailbox.pending.lock() {
            pending.closed = true;
        }
        self.mailbox.wake.notify_one();
    }
}

/// Starts the publisher. Hand it records through the returned [`Sender`]; set `stop` to
/// true (or drop the sender) to revoke the lease (removing the records) and end the task.
pub fn spawn(
    store: Store,
    keyspace: Keyspace,
    ttl: Duration,
    mut stop: watch::Receiver<bool>,
) -> (Sender, JoinHandle<()>) {
    let mailbox = Arc::new(Mailbox::default());
    let sender = Sender {
        mailbox: mailbox.clone(),
    };
    let handle = tokio::spawn(async move {
        let mut lease = Lease::new(store.clone(), "stats", ttl);
        // Keys written under the current lease.
        let mut written: Vec<String> = Vec::new();
        let mut keepalive = lease.keepalive_timer();
        loop {
            tokio::select! {
                _ = mailbox.wake.notified() => {}
                _ = keepalive.tick() => {
                    if lease.keep_alive().await {
                        written.clear();
                    }
                }
                _ = stop.changed() => break,
            }
            let pending = std::mem::take(&mut *mailbox.pending.lock().expect("stats mailbox"));
            if pending.closed {
                break;
            }
            if pending.is_empty() {
                continue;
            }
            let Pending { all, some, .. } = pending;
            let id = match lease.id().await {
                Ok(id) => id,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot publish traffic statistics: no lease");
                    continue;
                }
            };
            let key = |app: &String, record: &AppStats| {
                keyspace.key(&Key::Stats {
                    app: app.clone(),
                    agent: record.agent.clone(),
                })
            };
            // Some apps' records first (with `all` pending too, they are other apps':
            // `Pending::set_some`).
            for (app, record) in &some {
                let key = key(app, record);
                if !put(&store, &mut lease, id, &key, record).await {
                    break;
                }
                written.push(key);
            }
            // Apps whose newer record came during the batch below and was written in
            // it: the batch's older record is not written over it.
            let mut fresh: BTreeSet<String> = BTreeSet::new();
            let mut fresh_keys: Vec<String> = Vec::new();
            if let Some(records) = &all {
                let mut now_written = Vec::new();
                let mut failed = false;
                for (app, record) in records {
                    // What came for some apps meanwhile goes first: a batch of every
                    // app is one put each, and a canary's record must not wait for it.
                    let newer =
                        std::mem::take(&mut mailbox.pending.lock().expect("stats mailbox").some);
                    for (app, record) in &newer {
                        let key = key(app, record);
                        if !put(&store, &mut lease, id, &key, record).await {
                            break;
                        }
                        fresh.insert(app.clone());
                        fresh_keys.push(key);
                    }
                    let key = key(app, record);
                    if !fresh.contains(app) && !put(&store, &mut lease, id, &key, record).await {
                        failed = true;
                        break;
                    }
                    now_written.push(key);
                }
                if !failed {
                    // An app written in this round is not gone.
                    let kept: Vec<String> = some
                        .iter()
                        .map(|(app, r)| key(app, r))
                        .chain(fresh_keys.iter().cloned())
                        .collect();
                    for gone in written
                        .iter()
                        .filter(|k| !now_written.contains(k) && !kept.contains(k))
                    {
                        let _ = store.delete(gone).await;
                    }
                    written = now_written;
                } else {
                    written.extend(now_written);
                }
                written.extend(fresh_keys);
            }
            written.sort();
            written.dedup();
        }
        lease.revoke().await;
    });
    (sender, handle)
}

/// Writes one record under the lease; false (logged, the lease checked) if it failed.
async fn put(store: &Store, lease: &mut Lease, id: i64, key: &str, record: &AppStats) -> bool {
    let json = serde_json::to_vec(record).expect("stats serialize");
    match store.put(key, json, Some(id)).await {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(error = %e, %key, "publishing traffic statistics failed");
            lease.check(&e);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(app: &str, at: &str) -> (String, AppStats) {
        (
            app.to_string(),
            AppStats {
                agent: "lb1".into(),
                app: app.into(),
                at: at.into(),
                ..AppStats::default()
            },
        )
    }

    #[test]
    fn the_latest_records_win_and_all_supersedes_some() {
        let mut p = Pending::default();
        assert!(p.is_empty());
        p.set_some(BTreeMap::from([record("app1", "t1")]));
        p.set_some(BTreeMap::from([record("app1", "t2"), record("app2", "t2")]));
        assert_eq!(
            p.some,
            BTreeMap::from([record("app1", "t2"), record("app2", "t2")])
        );
        assert_eq!(p.all, None);
        // The end of a window replaces whatever was pending.
        p.set_all(BTreeMap::from([record("app1", "t3"), record("app3", "t3")]));
        assert!(p.some.is_empty());
        // A newer record of an app in it goes into it; of another app, beside it.
        p.set_some(BTreeMap::from([record("app1", "t4"), record("app2", "t4")]));
        assert_eq!(
            p.all,
            Some(BTreeMap::from([record("app1", "t4"), record("app3", "t3")]))
        );
        assert_eq!(p.some, BTreeMap::from([record("app2", "t4")]));
    }

    /// Reads `app`'s record of lb1, waiting (with a deadline) until `done` holds.
    async fn wait_record(
        store: &Store,
        app: &str,
        what: &str,
        done: impl Fn(Option<&AppStats>) -> bool,
    ) {
        let key = Keyspace::default().key(&Key::Stats {
            app: app.into(),
            agent: "lb1".into(),
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (_, kv) = store.get(&key).await.unwrap();
            let record: Option<AppStats> = kv.map(|kv| serde_json::from_slice(&kv.value).unwrap());
            if done(record.as_ref()) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: not within 10s; {record:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn some_records_leave_the_other_apps_alone_and_all_records_remove_the_missing() {
        let etcd = disco_harness::Etcd::start();
        let store = disco_testkit::store(etcd.endpoints());
        let (stop, stop_rx) = watch::channel(false);
        let (sender, task) = spawn(
            store.clone(),
            Keyspace::default(),
            Duration::from_secs(10),
            stop_rx,
        );
        let at = |r: Option<&AppStats>, at: &str| r.is_some_and(|r| r.at == at);
        sender.send_all(BTreeMap::from([record("app1", "t1"), record("app2", "t1")]));
        wait_record(&store, "app2", "app2 at t1", |r| at(r, "t1")).await;
        wait_record(&store, "app1", "app1 at t1", |r| at(r, "t1")).await;

        // A fast record of app1: written; app2's record is not deleted.
        sender.send_some(BTreeMap::from([record("app1", "t2")]));
        wait_record(&store, "app1", "app1 at t2", |r| at(r, "t2")).await;
        // One more, so that anything the first one did is done.
        sender.send_some(BTreeMap::from([record("app1", "t2b")]));
        wait_record(&store, "app1", "app1 at t2b", |r| at(r, "t2b")).await;
        wait_record(&store, "app2", "app2 kept", |r| at(r, "t1")).await;

        // The end of the next window without app2: its record goes.
        sender.send_all(BTreeMap::from([record("app1", "t3")]));
        wait_record(&store, "app2", "app2 deleted", |r| r.is_none()).await;
        wait_record(&store, "app1", "app1 at t3", |r| at(r, "t3")).await;

        // A batch of every app is one put each; a record of one app that comes while
        // it is written goes ahead of the rest, and the batch's older record of that app
        // does not overwrite it.
        let many: BTreeMap<String, AppStats> = (0..300)
            .map(|i| record(&format!("app{i:03}"), "t4"))
            .chain([record("zz", "t4")])
            .collect();
        sender.send_all(many);
        wait_record(&store, "app000", "the batch under way", |r| at(r, "t4")).await;
        sender.send_some(BTreeMap::from([record("zz", "t5")]));
        wait_record(&store, "app299", "the batch written", |r| at(r, "t4")).await;
        sender.send_some(BTreeMap::from([record("app000", "t6")]));
        wait_record(&store, "app000", "after the batch", |r| at(r, "t6")).await;
        wait_record(&store, "zz", "zz not overwritten", |r| at(r, "t5")).await;

        // Stopping revokes the lease: every record goes.
        stop.send(true).unwrap();
        task.await.unwrap();
        wait_record(&store, "app1", "app1 gone with the lease", |r| r.is_none()).await;
    }
}
