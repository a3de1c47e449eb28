//! The built-in renderers' output is accepted by the real HAProxy 2.6 and nginx 1.22
//! (`haproxy -c`, `nginx -t`), and a template producing a broken HAProxy file is
//! refused. Needs /usr/sbin/haproxy and /usr/sbin/nginx (Debian packages `haproxy`,
//! `nginx`): the tests fail, not skip, without them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use disco::render::{self, HaproxyOptions, NginxOptions};
use disco::{Keyspace, Snapshot};

const HAPROXY: &str = "/usr/sbin/haproxy";
const NGINX: &str = "/usr/sbin/nginx";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/render")
}

/// The rich snapshot of the golden tests: key → value, strings as is, JSON as JSON.
fn rich() -> Snapshot {
    let text = std::fs::read_to_string(fixtures().join("rich.kvs.json")).unwrap();
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

/// Runs `program args` without a shell, killing it after 30 s.
fn run(program: &str, args: &[&str]) -> Output {
    assert!(
        Path::new(program).exists(),
        "{program} is missing: install the Debian package (these tests do not skip)"
    );
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{program} {args:?} did not finish within 30s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn show(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `haproxy -c` on a minimal main configuration followed by `fragment`.
fn haproxy_check(fragment: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("haproxy.cfg");
    let disco = dir.path().join("disco.cfg");
    std::fs::write(&main, "global\n    log stderr format raw local0\n").unwrap();
    std::fs::write(&disco, fragment).unwrap();
    run(
        HAPROXY,
        &[
            "-c",
            "-f",
            main.to_str().unwrap(),
            "-f",
            disco.to_str().unwrap(),
        ],
    )
}

/// `nginx -t` on a minimal nginx.conf that includes `conf` inside `http { }`, every
/// path in a temporary directory.
fn nginx_check(conf: &str) -> Output {
    nginx_check_with(conf, "")
}

/// [`nginx_check`] with `modules` (`load_module` lines) first.
fn nginx_check_with(conf: &str, modules: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    std::fs::write(dir.path().join("disco.conf"), conf).unwrap();
    let main = format!(
        "{modules}pid {d}/nginx.pid;\n\
         error_log {d}/error.log;\n\
         events {{}}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   client_body_temp_path {d}/client_body;\n\
         \x20   proxy_temp_path {d}/proxy;\n\
         \x20   fastcgi_temp_path {d}/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/uwsgi;\n\
         \x20   scgi_temp_path {d}/scgi;\n\
         \x20   include {d}/disco.conf;\n\
         }}\n"
    );
    let main_path = dir.path().join("nginx.conf");
    std::fs::write(&main_path, main).unwrap();
    run(NGINX, &["-t", "-p", d, "-c", main_path.to_str().unwrap()])
}

#[test]
fn haproxy_accepts_the_rich_fragment_without_warnings() {
    haproxy_accepts_rich(&HaproxyOptions::default());
}

/// With a log socket (which need not exist for `haproxy -c`): the `log` and
/// `log-format` lines of every HTTP frontend are valid HAProxy 2.6.
#[test]
fn haproxy_accepts_the_rich_fragment_with_a_log_socket() {
    let dir = tempfile::tempdir().unwrap();
    haproxy_accepts_rich(&HaproxyOptions {
        log_socket: Some(dir.path().join("log.sock").display().to_string()),
        ..HaproxyOptions::default()
    });
}

fn haproxy_accepts_rich(options: &HaproxyOptions) {
    let rendered = render::haproxy(&rich(), options);
    let output = haproxy_check(&rendered.text);
    assert!(
        output.status.success(),
        "{}\n{}",
        show(&output),
        rendered.text
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("[WARNING]") && !stderr.contains("[ALERT]"),
        "{}",
        show(&output)
    );
}

/// The balancer mode needs nginx's lua module (`libnginx-mod-http-lua`, installed by
/// scripts/deps.sh): this test fails, not skips, without it.
#[test]
fn nginx_with_its_lua_module_accepts_the_rich_balancer_include() {
    // nginx -t binds the admin server's socket.
    let dir = tempfile::tempdir().unwrap();
    let files = render::nginx::BalancerFiles {
        module_dir: dir.path().join("disco.conf.lua").display().to_string(),
        socket: dir.path().join("balancer.sock").display().to_string(),
    };
    let (rendered, _) = render::nginx::nginx_balancer(&rich(), &NginxOptions::default(), &files);
    let modules = "load_module /usr/lib/nginx/modules/ndk_http_module.so;\n\
                   load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;\n";
    nginx_accepts(&rendered.text, modules);
}

#[test]
fn nginx_accepts_the_rich_include() {
    let rendered = render::nginx(&rich(), &NginxOptions::default());
    nginx_accepts(&rendered.text, "");
}

/// `nginx -t` (after `modules`) accepts `conf`, with no warning.
fn nginx_accepts(conf: &str, modules: &str) {
    let output = nginx_check_with(conf, modules);
    assert!(output.status.success(), "{}\n{conf}", show(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("[warn]") && !stderr.contains("[emerg]"),
        "{}",
        show(&output)
    );
}

#[test]
fn the_example_template_renders_a_valid_haproxy_file() {
    let source = std::fs::read_to_string(fixtures().join("rich.template.j2")).unwrap();
    let rendered = render::template(&rich(), &source).unwrap();
    let output = haproxy_check(&rendered.text);
    assert!(
        output.status.success(),
        "{}\n{}",
        show(&output),
        rendered.text
    );
}

#[test]
fn haproxy_refuses_a_template_that_renders_broken_config() {
    // Renders fine (every variable exists) but HAProxy has no `servr` keyword.
    let source = "\
defaults user
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
{% for name, app in apps|items if app.listen and app.routed %}
listen broken_{{ name }}
    bind {{ app.listen }}
{% for s in app.routed %}
    servr {{ s.instance }} {{ s.address }}
{% endfor %}
{% endfor %}
";
    let rendered = render::template(&rich(), source).unwrap();
    assert!(
        rendered.text.contains("servr instance1 127.0.0.1:19101"),
        "{}",
        rendered.text
    );
    let output = haproxy_check(&rendered.text);
    assert!(
        !output.status.success(),
        "haproxy accepted broken config:\n{}",
        show(&output)
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("servr"),
        "{}",
        show(&output)
    );
}

#[test]
fn nginx_refuses_broken_config() {
    // The check itself must be able to fail, or the test above proves nothing for nginx.
    let output = nginx_check("upstream disco_empty {\n}\n");
    assert!(
        !output.status.success(),
        "nginx accepted an empty upstream:\n{}",
        show(&output)
    );
}
