//! Graceful reloads that are confirmed, not assumed: HAProxy through its master CLI
//! (`reload`, then a new worker must appear in `show proc`), nginx by `-s reload`
//! (then a new worker generation must appear under the master).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends one command to HAProxy's master CLI and returns the answer.
pub async fn master_cli(socket: &Path, command: &str) -> std::io::Result<String> {
    let mut stream = tokio::net::UnixStream::connect(socket).await?;
    stream.write_all(format!("{command}\n").as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    Ok(answer)
}

/// The pids of HAProxy's current workers, from the master CLI's `show proc`.
pub async fn haproxy_workers(socket: &Path) -> std::io::Result<BTreeSet<u32>> {
    let answer = master_cli(socket, "show proc").await?;
    Ok(parse_show_proc(&answer))
}

fn parse_show_proc(answer: &str) -> BTreeSet<u32> {
    let mut in_workers = false;
    let mut pids = BTreeSet::new();
    for line in answer.lines() {
        if line.starts_with('#') {
            in_workers = line.trim() == "# workers";
            continue;
        }
        if in_workers {
            if let Some(pid) = line.split_whitespace().next().and_then(|p| p.parse().ok()) {
                pids.insert(pid);
            }
        }
    }
    pids
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

/// Reloads HAProxy through its master CLI and waits until a new worker runs.
pub async fn haproxy(socket: &Path, timeout: Duration) -> Result<(), String> {
    let before = haproxy_workers(socket)
        .await
        .map_err(|e| format!("HAProxy master CLI {}: {e}", socket.display()))?;
    master_cli(socket, "reload")
        .await
        .map_err(|e| format!("HAProxy master CLI {} reload: {e}", socket.display()))?;
    if wait_for_new(&before, timeout, || async {
        haproxy_workers(socket).await.ok()
    })
    .await
    {
        Ok(())
    } else {
        Err(format!(
            "HAProxy started no new worker within {timeout:?} after reload; it keeps running the previous configuration (see its log)"
        ))
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

/// Runs nginx's reload command and waits until the master runs a new worker generation.
pub async fn nginx(reload: &[String], pid_file: &Path, timeout: Duration) -> Result<(), String> {
    let master = read_pid(pid_file)?;
    let before = children(master);
    crate::command::run(reload, None, timeout)
        .await
        .map_err(|e| e.to_string())?;
    if wait_for_new(&before, timeout, || async { Some(children(master)) }).await {
        Ok(())
    } else {
        Err(format!(
            "nginx master {master} started no new workers within {timeout:?} after reload; it keeps running the previous configuration (see its error log)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_proc_current_workers_only() {
        let answer = "#<PID>          <type>          <reloads>       <uptime>        <version>\n\
            3417            master          1 [failed: 0]   0d00h00m03s     2.6.12-1+deb12u4\n\
            # workers\n\
            3500            worker          0               0d00h00m01s     2.6.12-1+deb12u4\n\
            # old workers\n\
            3418            worker          1               0d00h00m03s     2.6.12-1+deb12u4\n\
            # programs\n\n";
        assert_eq!(parse_show_proc(answer), BTreeSet::from([3500]));
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
