//! A change whose reply is lost is never reported wrongly: with a TCP relay in front of
//! a real etcd that drops the reply of the transaction (it was committed) or holds the
//! request (it was not), `ChangeSet::commit` finds out which from the audit record and
//! reports the committed revision, or sends it again — exactly one audit record either
//! way. When etcd cannot be asked at all, the outcome is reported as unknown.

use std::time::Duration;

use disco::change::{ChangeSet, CommitError};
use disco::model::HistoryRecord;
use disco::store::{EtcdConfig, Store};
use disco::{Key, Keyspace};
use disco_harness::relay::{Mode, Relay};
use disco_harness::Etcd;

fn store(endpoints: Vec<String>) -> Store {
    Store::new(EtcdConfig {
        endpoints,
        request_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_millis(500),
        ..EtcdConfig::default()
    })
    .unwrap()
}

fn record(action: &str) -> HistoryRecord {
    HistoryRecord {
        seq: 0,
        at: disco::model::now_rfc3339(),
        actor: "tester@ci".into(),
        action: action.into(),
        from: Default::default(),
        to: [("instance1".to_string(), "v2".to_string())].into(),
        reason: None,
        policy: None,
        id: None,
    }
}

/// A promote of instance1 to v2 with its audit record, guarded by the route as read.
async fn promote(store: &Store) -> ChangeSet {
    let ks = Keyspace::default();
    let route = ks.key(&Key::Route {
        app: "app1".into(),
        instance: "instance1".into(),
    });
    let (_, read) = store.get(&route).await.unwrap();
    let mut set = ChangeSet::default();
    set.expect(&route, read.as_ref()).put(&route, "v2");
    set.record(store, &ks, "app1", record("promote"))
        .await
        .unwrap();
    set
}

async fn history(store: &Store) -> Vec<HistoryRecord> {
    let ks = Keyspace::default();
    let (_, kvs) = store.get_prefix(&ks.history("app1"), None).await.unwrap();
    kvs.iter()
        .map(|kv| serde_json::from_slice(&kv.value).unwrap())
        .collect()
}

async fn seed(store: &Store) {
    let ks = Keyspace::default();
    let route = ks.key(&Key::Route {
        app: "app1".into(),
        instance: "instance1".into(),
    });
    store.put(&route, "v1", None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_reply_of_a_committed_change_is_found_committed() {
    let etcd = Etcd::start();
    let relay = Relay::start(&etcd.endpoint());
    let direct = store(etcd.endpoints());
    seed(&direct).await;
    // The relay first: the change goes through it, the read-back can use the member.
    let client = store(vec![relay.url(), etcd.endpoint()]);
    let set = promote(&client).await;

    relay.set(Mode::DropReplies);
    let revision = set
        .commit(&client)
        .await
        .expect("committed, and reported so");

    let records = history(&direct).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(
        records[0].id.is_some(),
        "the record carries the change's id"
    );
    let (_, route) = direct
        .get("/disco/apps/app1/routes/instance1")
        .await
        .unwrap();
    let route = route.unwrap();
    assert_eq!(route.value, b"v2");
    assert_eq!(route.mod_revision, revision, "the revision of the commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_never_arrived_is_sent_again_and_applied_once() {
    let etcd = Etcd::start();
    let relay = Relay::start(&etcd.endpoint());
    let direct = store(etcd.endpoints());
    seed(&direct).await;
    let client = store(vec![relay.url(), etcd.endpoint()]);
    let set = promote(&client).await;

    relay.set(Mode::Freeze);
    let revision = set.commit(&client).await.expect("sent again, committed");
    assert_eq!(history(&direct).await.len(), 1);

    // The held first attempt now reaches etcd: its compares fail, nothing doubles.
    relay.set(Mode::Pass);
    disco_harness::wait_for(
        "the relay to pass the held bytes",
        Duration::from_secs(10),
        || (relay.open_connections() == 0).then_some(()),
    );
    let after = direct.get("/").await.unwrap().0;
    let records = history(&direct).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let (_, route) = direct
        .get("/disco/apps/app1/routes/instance1")
        .await
        .unwrap();
    assert_eq!(route.unwrap().mod_revision, revision);
    assert_eq!(after, revision, "nothing was written after the commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_that_cannot_answer_is_an_unknown_outcome_not_a_failure() {
    let etcd = Etcd::start();
    let relay = Relay::start(&etcd.endpoint());
    let direct = store(etcd.endpoints());
    seed(&direct).await;
    let client = store(vec![relay.url()]);
    let set = promote(&client).await;

    relay.set(Mode::DropReplies);
    let err = set.commit(&client).await.unwrap_err();
    match &err {
        CommitError::OutcomeUnknown { check, .. } => {
            assert!(check.contains("/disco/history/app1/0"), "{err}")
        }
        other => panic!("expected an unknown outcome, got {other:?}"),
    }
    // It was in fact committed: exit 1 ("nothing written") would have been a lie.
    assert_eq!(history(&direct).await.len(), 1);
}
