//! Graceful reloads that are confirmed, not assumed: HAProxy through its master CLI
//! (`reload`, then a new worker must appear in `show proc`), nginx by `-s reload`
//! (then a new worker generation must appear under the master).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use crate::haproxy_cli::{self, Side};

/// Bound on one master CLI exchange.
const MASTER_TIMEOUT: Duration = Duration::from_secs(10);

/// What `show proc` says about the master and its current workers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Processes {
    /// Reloads the master has made.
    pub reloads: u64,
    /// Reloads that failed (the configuration was refused; old workers kept serving).
    pub failed: u64,
    /// The current workers (not the old ones still draining).
    pub workers: BTreeSet<u32>,
}

/// Parses the master CLI's `show proc` (HAProxy 2.6: `<pid> master <reloads> [failed: <n>] ...`).
pub fn parse_show_proc(answer: &str) -> Option<Processes> {
    let mut section = "";
    let mut master = None;
    let mut workers = BTreeSet::new();
    for line in answer.lines() {
        let line = line.trim();
        if let Some(title) = line.strip_prefix('#') {
            section = if title.trim() == "workers" {
                "workers"
            } else {
                ""
            };
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [_, "master", reloads, "[failed:", failed, ..] => {
                master = Some((
                    reloads.parse().ok()?,
                    failed.trim_end_matches(']').parse().ok()?,
                ));
            }
            [pid, "worker", ..] if section == "workers" => {
                if let Ok(pid) = pid.parse() {
                    workers.insert(pid);
                }
            }
            _ => {}
        }
    }
    let (reloads, failed) = master?;
    Some(Processes {
        reloads,
        failed,
        workers,
    })
}

async fn show_proc(socket: &Path) -> Result<Processes, String> {
    let answer = haproxy_cli::exchange(socket, Side::Master, "show proc", MASTER_TIMEOUT)
        .await
        .map_err(|e| format!("master CLI: {e}"))?;
    parse_show_proc(&answer).ok_or_else(|| {
        format!(
            "HAProxy master CLI {}: unexpected `show proc` answer: {answer:?}",
            socket.display()
        )
    })
}

/// Polls `current` until it holds a pid that `before` does not, or `timeout` passes.
async fn wait_for_new<F, Fut>(before: &BTreeSet<u32>, timeout: Duration, mut current: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<BTreeSet<u32>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if let Some(now) = current().await {
            if now.iter().any(|p| !before.contains(p)) {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Reloads HAProxy through its master CLI and waits until the master counts the reload
/// and a new worker runs. A reload the master counts as failed (it refused the
/// configuration and kept the old workers) is an error.
pub async fn haproxy(socket: &Path, timeout: Duration) -> Result<(), String> {
    let before = show_proc(socket).await?;
    // The master re-executes itself and drops the connection: no answer to expect.
    haproxy_cli::exchange(socket, Side::Master, "reload", MASTER_TIMEOUT)
        .await
        .map_err(|e| format!("master CLI reload: {e}"))?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        // The CLI is briefly unreachable while the master re-executes.
        if let Ok(now) = show_proc(socket).await {
            if now.failed > before.failed {
                return Err("HAProxy refused the new configuration and keeps running the previous one (see its log)".into());
            }
            if now.reloads > before.reloads
                && now.workers.iter().any(|p| !before.workers.contains(p))
            {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "HAProxy did not complete the reload within {timeout:?}; it keeps running the previous configuration (see its log)"
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Children of `pid`, from /proc.
pub fn children(pid: u32) -> BTreeSet<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
                    let rest = &stat[stat.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// Reads a pid file.
pub fn read_pid(pid_file: &Path) -> Result<u32, String> {
    std::fs::read_to_string(pid_file)
        .map_err(|e| format!("reading nginx pid file {}: {e}", pid_file.display()))?
        .trim()
        .parse()
        .map_err(|e| format!("nginx pid file {}: {e}", pid_file.display()))
}

/// True once an nginx worker no longer accepts connections: it has exited, or it retitled
/// itself "worker process is shutting down".
fn retired(pid: u32) -> bool {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => String::from_utf8_lossy(&cmdline).contains("shutting down"),
        Err(_) => true,
    }
}

/// Runs nginx's reload command and waits until the master runs a new worker generation
/// and every worker of the old one has stopped accepting. (The master leaves the old
/// workers serving for about 100 ms after starting the new ones; confirming on the new
/// workers alone would report a change applied while the old routing still answers.)
pub async fn nginx(reload: &[String], pid_file: &Path, timeout: Duration) -> Result<(), String> {
    let master = read_pid(pid_file)?;
    let before = children(master);
    crate::command::run(reload, None, timeout)
        .await
        .map_err(|e| e.to_string())?;
    let took = wait_for_new(&before, timeout, || async {
        let now = children(master);
        before.iter().all(|old| retired(*old)).then_some(now)
    })
    .await;
    if took {
        Ok(())
    } else {
        Err(format!(
            "nginx master {master} did not replace its workers within {timeout:?} after reload; it keeps running the previous configuration (see its error log)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_proc_counts_and_current_workers_only() {
        let answer = "#<PID>          <type>          <reloads>       <uptime>        <version>\n\
            3417            master          1 [failed: 0]   0d00h00m03s     2.6.12-1+deb12u4\n\
            # workers\n\
            3500            worker          0               0d00h00m01s     2.6.12-1+deb12u4\n\
            # old workers\n\
            3418            worker          1               0d00h00m03s     2.6.12-1+deb12u4\n\
            # programs\n\n";
        assert_eq!(
            parse_show_proc(answer),
            Some(Processes {
                reloads: 1,
                failed: 0,
                workers: BTreeSet::from([3500])
            })
        );
        assert_eq!(parse_show_proc("garbage"), None);
    }

    #[test]
    fn children_of_this_process() {
        let child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let id = child.id();
        let found = children(std::process::id()).contains(&id);
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
        assert!(found);
    }
}
