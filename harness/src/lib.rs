//! Test harness: starts the real things (etcd, HAProxy, nginx) and test backends on free
//! loopback ports in temp dirs, waits until they answer, and kills them on drop — also
//! when the test panics. Shared by every integration test of the workspace.
//!
//! # Layout
//!
//! - [`ports`]: free loopback ports, never handed out twice by one test process.
//! - [`etcd`]: one etcd or a cluster; stop, restart, compact.
//! - [`haproxy`]: HAProxy in master-worker mode with a master CLI; reload, worker pids.
//! - [`nginx`]: nginx with the fragment under test included; reload, worker pids.
//! - [`backend`]: a versioned HTTP backend whose health and error rate can be set.
//! - [`load`]: a load generator counting requests by the zero-drop acceptance rules.
//! - [`http`]: the minimal HTTP/1.1 client under `load`, and [`get`] for one request.
//! - [`relay`]: a TCP relay that passes, freezes, drops replies or cuts: fault injection.
//! - [`process`]: `/proc` helpers, so that no started process outlives its test.
//! - [`golden`]: golden files, compared or rewritten under `UPDATE_GOLDEN=1`.
//! - [`generated`]: checks that generated completions and man pages are current.

pub mod backend;
pub mod etcd;
pub mod generated;
pub mod golden;
pub mod haproxy;
pub mod http;
pub mod load;
pub mod nginx;
pub mod ports;
pub mod process;
pub mod relay;

pub use backend::Backend;
pub use etcd::{Etcd, TlsFiles};
pub use haproxy::Haproxy;
pub use http::get;
pub use load::{Load, LoadOptions, LoadReport};
pub use nginx::Nginx;
pub use relay::Relay;

use std::time::{Duration, Instant};

/// Polls `check` every 20 ms until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Async twin of [`wait_for`], for checks that need etcd or HTTP.
pub async fn wait_for_async<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Finds a program in the usual places; panics with an install hint if it is missing,
/// so that a test never passes by skipping the real thing.
pub fn program(name: &str, package: &str) -> std::path::PathBuf {
    for dir in [
        "/usr/sbin",
        "/usr/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
        "/sbin",
        "/bin",
    ] {
        let p = std::path::Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "{name} not found: install it with `apt-get install -y {package}` (scripts/test.sh does)"
    );
}
