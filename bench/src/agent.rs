//! The disco-agent processes the benchmarks measure: each one's config file (an id, a
//! cache file, the benchmark's etcd and one `[[target]]`) and its process, so that every
//! benchmark starts its agents the same way.

use std::path::Path;
use std::process::{Command, Stdio};

use disco_harness::Etcd;

use crate::{sibling, Proc};

/// What a failed start says: the agent is built next to the benchmark.
const NOT_BUILT: &str = "starting disco-agent (build it with cargo build --release -p disco-agent)";

/// Writes an agent's config to `path`: `agent_id`, its `cache` file, the endpoints of
/// `etcd`, and one `[[target]]` whose TOML lines (after the header) are `target`.
pub fn write_config(path: &Path, agent_id: &str, cache: &Path, etcd: &Etcd, target: &str) {
    write_config_with(path, agent_id, cache, etcd, "", target);
}

/// [`write_config`], with further top-level settings: `settings` is TOML lines
/// (`stats_interval = "1s"\n`), written before the `[etcd]` table.
pub fn write_config_with(
    path: &Path,
    agent_id: &str,
    cache: &Path,
    etcd: &Etcd,
    settings: &str,
    target: &str,
) {
    std::fs::write(
        path,
        format!(
            "agent_id = \"{agent_id}\"\ncache_path = \"{}\"\n{settings}[etcd]\nendpoints = {:?}\n[[target]]\n{target}",
            cache.display(),
            etcd.endpoints()
        ),
    )
    .expect("writing the agent's config");
}

/// `disco-agent --config <config>` with `RUST_LOG=<log>`: its stdin and stdout closed,
/// its stderr the benchmark's (a caller may change any of them before spawning).
pub fn command(config: &Path, log: &str) -> Command {
    let mut command = Command::new(sibling("disco-agent"));
    command
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    command
}

/// Starts `command`; the agent is killed (SIGKILL) when the returned `Proc` drops.
pub fn spawn(command: &mut Command) -> Proc {
    Proc::kill_on_drop(command.spawn().expect(NOT_BUILT))
}

/// Starts [`command`]`(config, log)`, killed (SIGKILL) on drop.
pub fn start(config: &Path, log: &str) -> Proc {
    spawn(&mut command(config, log))
}

/// The agents' `RUST_LOG` where a benchmark lets `AGENT_LOG` set it: `AGENT_LOG`, or
/// `warn` when it is not set.
pub fn log_from_env() -> String {
    std::env::var("AGENT_LOG").unwrap_or_else(|_| "warn".into())
}
