//! Property tests for everything read from etcd: keys, names, addresses, endpoint and
//! policy JSON, arbitrary bytes. Whatever is stored, building the snapshot never
//! panics, and the HAProxy and nginx files rendered from it are accepted by the real
//! `haproxy -c` and `nginx -t`: a bad record is refused, never rendered.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use disco::render::{self, HaproxyOptions, NginxOptions};
use disco::{Keyspace, Snapshot};
use proptest::prelude::*;

/// Names: mostly valid, some hostile (whitespace, newlines, `#`, `;`, braces, quotes,
/// control characters, non-ASCII, too long).
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["app1", "app2", "instance1", "instance2", "v1", "v2", "a.b-c_9"])
            .prop_map(str::to_string),
        2 => "[A-Za-z0-9][A-Za-z0-9._-]{0,70}",
        1 => "[ -~]{0,12}",
        1 => any::<String>(),
        1 => prop::sample::select(vec!["x;y", "x y", "x\ny", "x{", "x}", "x#", "\"x", "x'", "x\u{0}", "é", ""])
            .prop_map(str::to_string),
    ]
}

/// Addresses: valid and not.
fn address() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (1u16..=65535).prop_map(|p| format!("127.0.0.1:{p}")),
        1 => (1u16..=65535).prop_map(|p| format!("[::1]:{p}")),
        1 => "[a-z]{1,10}(\\.[a-z]{1,10}){0,2}:[0-9]{1,6}",
        1 => "[ -~]{0,24}",
        1 => prop::sample::select(vec!["127.0.0.1:0", "127.0.0.1:65536", "1.2.3.4:80;", "a b:1", "host:80\nlisten 1", "[::1:80", ":80", "127.0.0.1"])
            .prop_map(str::to_string),
    ]
}

/// A JSON value for `s`: a string usually, sometimes another JSON type.
fn json_text(s: String) -> serde_json::Value {
    serde_json::Value::String(s)
}

fn endpoint_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => (address(), prop::option::of(prop_oneof!["/[a-z]{0,8}", "[ -~]{0,10}"]), prop::option::of(-5i64..400))
            .prop_map(|(a, h, w)| {
                let mut o = serde_json::Map::new();
                o.insert("address".into(), json_text(a));
                if let Some(h) = h { o.insert("health_path".into(), json_text(h)); }
                if let Some(w) = w { o.insert("weight".into(), w.into()); }
                serde_json::Value::Object(o).to_string().into_bytes()
            }),
        1 => prop::collection::vec(any::<u8>(), 0..40),
        1 => Just(b"{\"address\": 5}".to_vec()),
    ]
}

fn dark_match() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        (name(), name()).prop_map(|(n, v)| serde_json::json!({"header": {"name": n, "value": v}})),
        (name(), name()).prop_map(|(n, v)| serde_json::json!({"cookie": {"name": n, "value": v}})),
        prop_oneof![
            "10\\.0\\.0\\.0/[0-9]{1,2}",
            "[ -~]{0,16}",
            Just("::1/128".to_string())
        ]
        .prop_map(|c| serde_json::json!({"cidr": c})),
    ]
}

fn policy_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => (
            prop::option::of(address()),
            prop::sample::select(vec!["http", "tcp", "udp"]),
            prop::option::of((name(), prop::collection::vec(dark_match(), 0..3))),
            prop::collection::btree_map(name(), 0u32..120, 0..3),
        )
            .prop_map(|(listen, mode, dark, weights)| {
                let mut o = serde_json::Map::new();
                if let Some(l) = listen { o.insert("listen".into(), json_text(l)); }
                o.insert("mode".into(), json_text(mode.to_string()));
                if let Some((version, matches)) = dark {
                    o.insert("dark".into(), serde_json::json!({"version": version, "matches": matches}));
                }
                if !weights.is_empty() { o.insert("weights".into(), serde_json::json!(weights)); }
                serde_json::Value::Object(o).to_string().into_bytes()
            }),
        1 => prop::collection::vec(any::<u8>(), 0..40),
    ]
}

/// One stored record: a key of a known shape (with hostile names) or any key, and a value.
fn record() -> impl Strategy<Value = (String, Vec<u8>)> {
    prop_oneof![
        4 => (name(), name(), name()).prop_map(|(a, i, v)| (format!("/disco/apps/{a}/routes/{i}"), v.into_bytes())),
        4 => (name(), name(), name(), endpoint_value())
            .prop_map(|(a, i, v, value)| (format!("/disco/apps/{a}/endpoints/{i}/{v}"), value)),
        2 => (name(), policy_value()).prop_map(|(a, value)| (format!("/disco/apps/{a}/policy"), value)),
        1 => ("/disco/apps/[ -~]{0,30}", prop::collection::vec(any::<u8>(), 0..20)),
    ]
}

fn run(program: &str, args: &[&std::ffi::OsStr]) -> Output {
    assert!(
        Path::new(program).exists(),
        "{program} is missing (tests do not skip)"
    );
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

fn haproxy_accepts(fragment: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("haproxy.cfg");
    let disco = dir.path().join("disco.cfg");
    // A listener of its own: `haproxy -c` refuses a configuration without any.
    std::fs::write(
        &main,
        "global\n    log stderr format raw local0\nfrontend probe\n    mode http\n    bind 127.0.0.1:9\n    http-request return status 200\n",
    )
    .unwrap();
    std::fs::write(&disco, fragment).unwrap();
    let out = run(
        "/usr/sbin/haproxy",
        &[
            "-c".as_ref(),
            "-f".as_ref(),
            main.as_os_str(),
            "-f".as_ref(),
            disco.as_os_str(),
        ],
    );
    out.status.success().then_some(()).ok_or_else(|| {
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
    })
}

fn nginx_accepts(conf: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    std::fs::write(dir.path().join("disco.conf"), conf).unwrap();
    let main = format!(
        "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n access_log off;\n client_body_temp_path {d}/cb;\n proxy_temp_path {d}/p;\n fastcgi_temp_path {d}/f;\n uwsgi_temp_path {d}/u;\n scgi_temp_path {d}/s;\n include {d}/disco.conf;\n}}\n"
    );
    let main_path = dir.path().join("nginx.conf");
    std::fs::write(&main_path, main).unwrap();
    let out = run(
        "/usr/sbin/nginx",
        &[
            "-t".as_ref(),
            "-p".as_ref(),
            dir.path().as_os_str(),
            "-c".as_ref(),
            main_path.as_os_str(),
        ],
    );
    out.status
        .success()
        .then_some(())
        .ok_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned())
}

proptest! {
    // Each case runs the real haproxy -c and nginx -t (~80 ms): a few hundred cases.
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn anything_stored_renders_config_the_proxies_accept(records in prop::collection::vec(record(), 1..14)) {
        let snapshot = Snapshot::from_kvs(&Keyspace::default(), 1, records.clone());
        let haproxy = render::haproxy(&snapshot, &HaproxyOptions::default()).text;
        let nginx = render::nginx(&snapshot, &NginxOptions::default()).text;
        if let Err(e) = haproxy_accepts(&haproxy) {
            prop_assert!(false, "haproxy -c refused:\n{e}\n--- records\n{records:?}\n--- rendered\n{haproxy}");
        }
        if let Err(e) = nginx_accepts(&nginx) {
            prop_assert!(false, "nginx -t refused:\n{e}\n--- records\n{records:?}\n--- rendered\n{nginx}");
        }
    }

    #[test]
    fn arbitrary_keys_and_bytes_never_panic(records in prop::collection::vec(("[ -~]{0,60}", prop::collection::vec(any::<u8>(), 0..60)), 0..30)) {
        let ks = Keyspace::default();
        let mut snapshot = Snapshot::from_kvs(&ks, 1, records.clone());
        let changes = records.into_iter().enumerate().map(|(i, (key, value))| {
            if i % 3 == 0 { disco::Change::Delete { key, lease: 0 } } else { disco::Change::Put { key, value } }
        });
        snapshot.apply(&ks, 2, changes.collect::<Vec<_>>());
        let _ = render::haproxy(&snapshot, &HaproxyOptions::default());
        let _ = render::nginx(&snapshot, &NginxOptions::default());
    }
}
