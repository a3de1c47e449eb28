//! etcd auth and TLS, for real: the store (and its watch) works with the right
//! credentials and certificates, and fails clearly without them.

use std::time::Duration;

use disco::store::{EtcdConfig, Store, StoreError, WatchSettings, WatchUpdate};
use disco_harness::Etcd;

fn config(endpoints: Vec<String>) -> EtcdConfig {
    EtcdConfig {
        endpoints,
        request_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_millis(500),
        ..EtcdConfig::default()
    }
}

/// A put seen by a watch opened before it, and read back.
async fn round_trip(store: &Store) {
    let (revision, _) = store
        .get("/disco/apps/app1/routes/instance1")
        .await
        .unwrap();
    let mut watch = store.watch("/disco/apps/", revision + 1, WatchSettings::default());
    let put = store
        .put("/disco/apps/app1/routes/instance1", "v2", None)
        .await
        .unwrap();
    let (_, kv) = store
        .get("/disco/apps/app1/routes/instance1")
        .await
        .unwrap();
    assert_eq!(kv.unwrap().value, b"v2");
    // The watch says it is established, then delivers the put.
    let mut update = WatchUpdate::Live;
    while matches!(update, WatchUpdate::Live) {
        update = tokio::time::timeout(Duration::from_secs(10), watch.recv())
            .await
            .unwrap()
            .unwrap();
    }
    match update {
        WatchUpdate::Changes { revision, .. } => assert_eq!(revision, put),
        other => panic!("expected the put on the watch, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_with_user_and_password() {
    let mut etcd = Etcd::start();
    etcd.enable_auth("s3cret");

    let store = Store::new(EtcdConfig {
        user: Some("root".into()),
        password: Some("s3cret".into()),
        ..config(etcd.endpoints())
    })
    .unwrap();
    round_trip(&store).await;

    let anonymous = Store::new(config(etcd.endpoints())).unwrap();
    let err = anonymous.get("/disco/apps/x").await.unwrap_err();
    assert!(matches!(err, StoreError::Etcd(_)), "{err}");
    assert!(
        err.to_string().contains("user name is empty")
            || err.to_string().contains("permission denied"),
        "{err}"
    );

    let wrong = Store::new(EtcdConfig {
        user: Some("root".into()),
        password: Some("wrong".into()),
        ..config(etcd.endpoints())
    })
    .unwrap();
    let err = wrong.get("/disco/apps/x").await.unwrap_err();
    assert!(err.to_string().contains("authentication failed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_client_certificate() {
    let etcd = Etcd::start_tls();
    let tls = etcd.tls_files().unwrap().clone();
    assert!(etcd.endpoint().starts_with("https://"));

    let store = Store::new(EtcdConfig {
        ca_file: Some(tls.ca.clone()),
        cert_file: Some(tls.cert.clone()),
        key_file: Some(tls.key.clone()),
        ..config(etcd.endpoints())
    })
    .unwrap();
    round_trip(&store).await;

    // Without a client certificate the server refuses the connection.
    let no_cert = Store::new(EtcdConfig {
        ca_file: Some(tls.ca.clone()),
        ..config(etcd.endpoints())
    })
    .unwrap();
    assert!(no_cert.get("/disco/apps/x").await.is_err());
    // Without TLS at all, nothing works either.
    let plain = Store::new(config(vec![etcd.endpoint().replace("https://", "http://")])).unwrap();
    assert!(plain.get("/disco/apps/x").await.is_err());
}
