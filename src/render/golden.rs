//! Golden-file tests: a rich snapshot (tests/fixtures/render/rich.kvs.json) rendered by
//! every renderer and compared with the files next to it. `UPDATE_GOLDEN=1 cargo test`
//! rewrites them; review the diff.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;
use crate::{Keyspace, Snapshot};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/render")
}

/// The snapshot of `<name>.kvs.json`: key → value, a string value taken as is, any
/// other JSON value written as JSON.
fn load(name: &str) -> Snapshot {
    let path = fixtures().join(format!("{name}.kvs.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let kvs: BTreeMap<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    Snapshot::from_kvs(
        &Keyspace::default(),
        42,
        kvs.into_iter().map(|(key, value)| match value {
            serde_json::Value::String(s) => (key, s),
            other => (key, other.to_string()),
        }),
    )
}

/// Compares `actual` with the golden file `file`, or rewrites it under UPDATE_GOLDEN=1.
fn golden(file: &str, actual: &str) {
    disco_harness::golden::check(&fixtures().join(file), actual);
}

fn rich_template() -> String {
    std::fs::read_to_string(fixtures().join("rich.template.j2")).unwrap()
}

#[test]
fn rich_snapshot_renders_like_the_golden_files() {
    let snapshot = load("rich");
    assert_eq!(snapshot.rejected.len(), 3, "{:?}", snapshot.rejected);
    let haproxy = haproxy(&snapshot, &HaproxyOptions::default());
    let nginx = nginx(&snapshot, &NginxOptions::default());
    let template = template(&snapshot, &rich_template()).unwrap();
    golden("rich.haproxy.cfg", &haproxy.text);
    let logged = super::haproxy(
        &snapshot,
        &HaproxyOptions {
            log_socket: Some("/run/disco/haproxy-log.sock".into()),
            ..HaproxyOptions::default()
        },
    );
    assert_eq!(logged.warnings, haproxy.warnings);
    golden("rich.haproxy-log.cfg", &logged.text);
    golden("rich.nginx.conf", &nginx.text);
    golden("rich.template.out", &template.text);
    let files = super::nginx::BalancerFiles {
        module_dir: "/etc/nginx/disco.conf.lua".into(),
        socket: "/run/disco/balancer.sock".into(),
    };
    let (balancer, entries) =
        super::nginx::nginx_balancer(&snapshot, &NginxOptions::default(), &files);
    golden("rich.nginx-balancer.conf", &balancer.text);
    let pushed: String = entries
        .iter()
        .map(|(app, entry)| format!("app {app}{entry}\nend\n"))
        .collect();
    golden("rich.nginx-balancer.routes", &pushed);
    let mut warnings = String::new();
    for (what, list) in [
        ("haproxy", &haproxy.warnings),
        ("nginx", &nginx.warnings),
        ("template", &template.warnings),
    ] {
        warnings.push_str(&format!("# {what}\n"));
        for w in list {
            warnings.push_str(w);
            warnings.push('\n');
        }
    }
    golden("rich.warnings.txt", &warnings);
}

#[test]
fn the_same_snapshot_renders_byte_identical_text() {
    let a = load("rich");
    // The same records read in another order, and a clone: same text, same hash.
    let kvs: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("rich.kvs.json")).unwrap())
            .unwrap();
    let b = Snapshot::from_kvs(
        &Keyspace::default(),
        42,
        kvs.into_iter().rev().map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        }),
    );
    for _ in 0..3 {
        let (ha, hb) = (
            haproxy(&a, &HaproxyOptions::default()),
            haproxy(&b, &HaproxyOptions::default()),
        );
        assert_eq!(hash(&ha.text), hash(&hb.text));
        assert_eq!(ha, hb);
        assert_eq!(
            nginx(&a, &NginxOptions::default()),
            nginx(&b, &NginxOptions::default())
        );
        assert_eq!(
            template(&a, &rich_template()),
            template(&b, &rich_template())
        );
    }
}

/// Hostile values in every field that reaches a config file: refused by the snapshot,
/// so none of them appears in any output, and the valid records still render.
#[test]
fn hostile_values_never_reach_the_output() {
    // What must not appear (the files themselves use `#`, `;`, braces and quotes).
    let hostile = [
        "evil",
        "6.6.6.6",
        "return 200",
        "\"127",
        "9003;",
        "v2 }",
        "X-Evil",
        "drop table",
        "$host",
        "allow all",
        "ssl",
        "{{",
        "c}",
    ];
    let kvs: Vec<(&str, String)> = vec![
        ("/disco/apps/app1/policy", r#"{"listen":"127.0.0.1:8080","dark":{"version":"v2","matches":[{"cidr":"10.0.0.0/8"}]}}"#.into()),
        ("/disco/apps/app1/routes/i1", "v1".into()),
        ("/disco/apps/app1/endpoints/i1/v1", r#"{"address":"127.0.0.1:9001","health_path":"/ok"}"#.into()),
        ("/disco/apps/app1/endpoints/i1/v2", r#"{"address":"127.0.0.1:9101","health_path":"/ok"}"#.into()),
        // Addresses.
        ("/disco/apps/app1/endpoints/i2/v1", r#"{"address":"127.0.0.1:9002\n    server evil 6.6.6.6:80"}"#.into()),
        ("/disco/apps/app1/endpoints/i3/v1", r#"{"address":"127.0.0.1:9003;} server { listen 6.6.6.6:80; }"}"#.into()),
        ("/disco/apps/app1/endpoints/i4/v1", r#"{"address":"\"127.0.0.1:9004\""}"#.into()),
        // Health paths.
        ("/disco/apps/app1/endpoints/i5/v1", r#"{"address":"127.0.0.1:9005","health_path":"/h\nbackend evil"}"#.into()),
        ("/disco/apps/app1/endpoints/i6/v1", r#"{"address":"127.0.0.1:9006","health_path":"/h X-Evil: 1"}"#.into()),
        ("/disco/apps/app1/endpoints/i7/v1", r#"{"address":"127.0.0.1:9007","health_path":"/h\"}"}"#.into()),
        // Routes: version names.
        ("/disco/apps/app1/routes/i2", "v2\nbackend evil".into()),
        ("/disco/apps/app1/routes/i3", "v1; return 200".into()),
        ("/disco/apps/app1/routes/i4", "$host".into()),
        ("/disco/apps/app1/routes/i5", "{{ drop table }}".into()),
        // Header/cookie values and names, networks, listen addresses, weights' versions.
        (
            "/disco/apps/app2/policy",
            r#"{"listen":"127.0.0.1:8081","dark":{"version":"v2","matches":[{"header":{"name":"X-Canary","value":"1\"; return 200; #"}}]}}"#.into(),
        ),
        (
            "/disco/apps/app3/policy",
            r#"{"listen":"127.0.0.1:8082","dark":{"version":"v2","matches":[{"cookie":{"name":"c}","value":"1"}}]}}"#.into(),
        ),
        (
            "/disco/apps/app4/policy",
            r#"{"listen":"127.0.0.1:8083","dark":{"version":"v2","matches":[{"cidr":"10.0.0.0/8; allow all"}]}}"#.into(),
        ),
        ("/disco/apps/app5/policy", r#"{"listen":"127.0.0.1:8084 ssl; #"}"#.into()),
        ("/disco/apps/app6/policy", r#"{"listen":"127.0.0.1:8085","weights":{"v2\n}":10}}"#.into()),
        ("/disco/apps/app7/policy", r#"{"listen":"127.0.0.1:8086","dark":{"version":"v2 }","matches":[{"cidr":"10.0.0.0/8"}]}}"#.into()),
        // Version names in endpoint keys.
        ("/disco/apps/app1/endpoints/i8/v1;", r#"{"address":"127.0.0.1:9008"}"#.into()),
    ];
    let snapshot = Snapshot::from_kvs(
        &Keyspace::default(),
        3,
        kvs.iter().map(|(k, v)| (*k, v.as_str())),
    );
    assert_eq!(
        snapshot.rejected.len(),
        kvs.len() - 4,
        "{:#?}",
        snapshot.rejected
    );

    let dump = "{{ revision }}{% for name, app in apps|items %} {{ name }} {{ app.listen }}\
        {% for s in app.slots %} {{ s.instance }} {{ s.version }} {{ s.address }} {{ s.health_path }}{% endfor %}\
        {% for e in app.endpoints %} {{ e.address }} {{ e.health_path }}{% endfor %}\
        {% if app.dark %}{% for m in app.dark.matches %} {{ m.name }} {{ m.value }}{% endfor %}{% endif %}{% endfor %}";
    let outputs = [
        haproxy(&snapshot, &HaproxyOptions::default()),
        nginx(&snapshot, &NginxOptions::default()),
        template(&snapshot, dump).unwrap(),
    ];
    for out in &outputs {
        for bad in hostile {
            assert!(
                !out.text.contains(bad),
                "{bad:?} reached the output:\n{}",
                out.text
            );
        }
        for port in 9002..=9008 {
            assert!(
                !out.text.contains(&format!(":{port}")),
                "endpoint :{port} reached the output:\n{}",
                out.text
            );
        }
        for port in 8081..=8086 {
            assert!(
                !out.text.contains(&format!(":{port}")),
                "listener :{port} reached the output:\n{}",
                out.text
            );
        }
        // The valid parts still render.
        assert!(out.text.contains("127.0.0.1:9001"), "{}", out.text);
        assert!(out.text.contains("127.0.0.1:9101"), "{}", out.text);
    }
    assert!(outputs[0].text.contains("uri /ok"));
    assert!(outputs[0].text.contains("acl dark_0 src 10.0.0.0/8"));
}
