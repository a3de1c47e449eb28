//! discoctl against a real etcd: writes, reads back, refuses bad input with exit code 2
//! and writes nothing.

use std::process::{Command, Output};

use disco::store::{EtcdConfig, Store};
use disco_harness::Etcd;

fn discoctl(etcd: &Etcd, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_discoctl"))
        .args(args)
        .env("DISCO_ETCD_ENDPOINTS", etcd.endpoints().join(","))
        .env("DISCO_ACTOR", "tester@ci")
        .output()
        .expect("running discoctl")
}

fn ok(etcd: &Etcd, args: &[&str]) -> String {
    let out = discoctl(etcd, args);
    assert!(
        out.status.success(),
        "discoctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn all_keys(etcd: &Etcd) -> Vec<(String, Vec<u8>)> {
    let store = Store::new(EtcdConfig {
        endpoints: etcd.endpoints(),
        ..EtcdConfig::default()
    })
    .unwrap();
    let (_, kvs) = store.get_prefix("/", None).await.unwrap();
    kvs.into_iter().map(|kv| (kv.key, kv.value)).collect()
}

#[tokio::test]
async fn writes_and_reads_back_the_seed_layout() {
    let etcd = Etcd::start();
    ok(&etcd, &["app", "set", "app1", "--listen", "127.0.0.1:8080"]);
    for i in 1..=3 {
        let instance = format!("instance{i}");
        ok(
            &etcd,
            &[
                "endpoint",
                "add",
                "app1",
                &instance,
                "v1",
                &format!("127.0.0.1:900{i}"),
                "--health",
                "/healthz",
            ],
        );
        ok(&etcd, &["route", "set", "app1", &instance, "v1"]);
    }
    ok(
        &etcd,
        &[
            "endpoint",
            "add",
            "app1",
            "instance1",
            "v2",
            "127.0.0.1:9101",
        ],
    );
    let out = ok(&etcd, &["route", "set", "app1", "instance1", "v2"]);
    assert!(out.contains("app1/instance1: v1 -> v2"), "{out}");

    let table = ok(&etcd, &["status", "app1"]);
    assert!(table.lines().next().unwrap().starts_with("APP"), "{table}");
    assert!(
        table.contains("instance1  v2       127.0.0.1:9101"),
        "{table}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&ok(&etcd, &["-o", "json", "status"])).unwrap();
    let slots = &json["apps"]["app1"]["slots"];
    let got: Vec<(String, String, String)> = slots
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["instance"].as_str().unwrap().into(),
                s["version"].as_str().unwrap().into(),
                s["address"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("instance1".into(), "v2".into(), "127.0.0.1:9101".into()),
            ("instance2".into(), "v1".into(), "127.0.0.1:9002".into()),
            ("instance3".into(), "v1".into(), "127.0.0.1:9003".into()),
        ]
    );
    assert_eq!(json["apps"]["app1"]["policy"]["listen"], "127.0.0.1:8080");

    // Every route change left an audit record, in order.
    let keys = all_keys(&etcd).await;
    let history: Vec<serde_json::Value> = keys
        .iter()
        .filter(|(k, _)| k.starts_with("/disco/history/app1/"))
        .map(|(_, v)| serde_json::from_slice(v).unwrap())
        .collect();
    assert_eq!(history.len(), 4);
    assert_eq!(history[3]["from"]["instance1"], "v1");
    assert_eq!(history[3]["to"]["instance1"], "v2");
    assert_eq!(history[3]["actor"], "tester@ci");
    assert_eq!(history[3]["seq"], 4);

    ok(&etcd, &["endpoint", "rm", "app1", "instance1", "v2"]);
    let json: serde_json::Value =
        serde_json::from_str(&ok(&etcd, &["-o", "json", "status", "app1"])).unwrap();
    assert_eq!(json["apps"]["app1"]["slots"][0]["endpoint"], "missing");
}

#[tokio::test]
async fn bad_input_exits_2_and_writes_nothing() {
    let etcd = Etcd::start();
    ok(&etcd, &["app", "set", "app1", "--listen", "127.0.0.1:8080"]);
    let before = all_keys(&etcd).await;
    let cases: &[&[&str]] = &[
        &["endpoint", "add", "app 1", "i1", "v1", "127.0.0.1:9000"],
        &["endpoint", "add", "app1", "i1;", "v1", "127.0.0.1:9000"],
        &["endpoint", "add", "app1", "i1", "v1\n", "127.0.0.1:9000"],
        &[
            "endpoint",
            "add",
            "app1",
            "i1",
            "v1",
            "127.0.0.1:9000\n server evil 1.2.3.4:80",
        ],
        &["endpoint", "add", "app1", "i1", "v1", "127.0.0.1:0"],
        &[
            "endpoint",
            "add",
            "app1",
            "i1",
            "v1",
            "127.0.0.1:9000",
            "--health",
            "/h#x",
        ],
        &[
            "endpoint",
            "add",
            "app1",
            "i1",
            "v1",
            "127.0.0.1:9000",
            "--weight",
            "0",
        ],
        &["route", "set", "app1", "i1", "v1}"],
        &["route", "set", "{app1", "i1", "v1"],
        &["app", "set", "app1", "--listen", "127.0.0.1"],
        &["app", "set", "app1", "--mode", "udp"],
        &["app", "set", "app1"],
        &["status", "nosuchapp"],
        &["--prefix", "no-slash", "status"],
        &["frobnicate"],
    ];
    for args in cases {
        let out = discoctl(&etcd, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(!stderr.trim().is_empty(), "{args:?} must say why");
    }
    // Removing what does not exist is a failed precondition.
    assert_eq!(
        discoctl(&etcd, &["endpoint", "rm", "app1", "i1", "v1"])
            .status
            .code(),
        Some(5)
    );
    assert_eq!(all_keys(&etcd).await, before, "nothing may be written");
}

/// discoctl against `endpoint` with extra global options; returns its exit code and stderr.
fn against(endpoint: &str, extra: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_discoctl"))
        .args(["--endpoints", endpoint, "--request-timeout", "1s"])
        .args(extra)
        .arg("status")
        .env_remove("RUST_LOG")
        .env_remove("DISCO_ETCD_ENDPOINTS")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The first thing a new user sees without etcd is the cause in their terms and what to
/// check, not the transport library's debug dump.
#[tokio::test]
async fn unreachable_etcd_is_a_clear_error() {
    let readable = |stderr: &str, cause: &str| {
        assert!(stderr.contains(cause), "expected {cause:?}:\n{stderr}");
        assert!(!stderr.contains("tonic"), "no transport dump:\n{stderr}");
        assert!(!stderr.contains("grpc request error"), "{stderr}");
        assert!(
            stderr.lines().count() <= 3,
            "a few lines, not a dump:\n{stderr}"
        );
    };

    // Nothing listens.
    let port = disco_harness::ports::free_port();
    let (code, stderr) = against(&format!("http://127.0.0.1:{port}"), &[]);
    assert_eq!(code, Some(1));
    readable(&stderr, "connection refused");
    assert!(
        stderr.contains(&format!("tried http://127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(stderr.contains("--endpoints") && stderr.contains("DISCO_ETCD_ENDPOINTS"));

    // Something accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (code, stderr) = against(&format!("http://{}", silent.local_addr().unwrap()), &[]);
    assert_eq!(code, Some(1));
    readable(&stderr, "timed out");

    // https:// against a member that speaks plain HTTP.
    let mut etcd = Etcd::start();
    let plain = etcd.endpoint();
    let (code, stderr) = against(&plain.replace("http://", "https://"), &[]);
    assert_eq!(code, Some(1));
    readable(&stderr, "TLS");

    // Wrong password.
    etcd.enable_auth("s3cret");
    let (code, stderr) = against(&plain, &["--user", "root", "--password", "wrong"]);
    assert_eq!(code, Some(1));
    readable(&stderr, "authentication failed");

    // The whole chain is there for whoever asks for it.
    let out = Command::new(env!("CARGO_BIN_EXE_discoctl"))
        .args([
            "--endpoints",
            &format!("http://127.0.0.1:{port}"),
            "--request-timeout",
            "1s",
            "status",
        ])
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ConnectionRefused"), "{stderr}");
}
