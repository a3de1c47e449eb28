//! Processes the harness starts (HAProxy, nginx and their workers): found through
//! `/proc`, signalled by pid with the `kill` program, and waited for, so that no test
//! leaves a process behind.

use std::path::Path;

use std::time::{Duration, Instant};

/// Runs `cmd` to its end like [`std::process::Command::output`], but kills it after
/// `timeout` (an `Err` of kind `TimedOut` then): a hung helper program (etcdctl,
/// openssl) must fail its test, not hang the suite. Its output is read while it runs.
pub fn output_within(
    cmd: &mut std::process::Command,
    timeout: Duration,
) -> std::io::Result<std::process::Output> {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{cmd:?} did not finish within {timeout:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(std::process::Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// The fields of `/proc/<pid>/stat` the harness needs.
struct Stat {
    state: char,
    ppid: u32,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; comm may itself contain spaces and parentheses.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some(Stat { state, ppid })
}

/// True if process `pid` exists and is not a zombie (an exited process nobody reaped yet
/// counts as gone: in a container whose init does not reap, orphans stay zombies).
pub fn is_running(pid: u32) -> bool {
    stat(pid).is_some_and(|s| !matches!(s.state, 'Z' | 'X' | 'x'))
}

/// The running processes whose parent is `pid`, in ascending pid order.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&candidate| {
            stat(candidate).is_some_and(|s| s.ppid == pid && !matches!(s.state, 'Z' | 'X' | 'x'))
        })
        .collect();
    found.sort_unstable();
    found
}

/// Every running descendant of `pid` (children, their children, …), in ascending order.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut all = Vec::new();
    let mut queue = vec![pid];
    while let Some(parent) = queue.pop() {
        for child in children(parent) {
            all.push(child);
            queue.push(child);
        }
    }
    all.sort_unstable();
    all
}

/// The command line of `pid` with its NUL separators turned into spaces ("" if gone).
pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| {
            String::from_utf8_lossy(&bytes)
                .trim_end_matches('\0')
                .replace('\0', " ")
        })
        .unwrap_or_default()
}

/// Sends `signal` (a name: `TERM`, `KILL`, `HUP`, `STOP`, `CONT`, `INT`, `USR1`) to those
/// of `pids` that still run, with a system call (no `kill` program: a minimal system may
/// lack procps). Processes that are already gone are not an error.
pub fn signal(pids: &[u32], signal: &str) {
    for &pid in pids {
        let _ = send(pid, signal);
    }
}

/// Sends `signal` (a name, as for [`signal`]) to `pid`; false if there is no such process.
/// Panics on an unknown signal name.
pub fn send(pid: u32, signal: &str) -> bool {
    use rustix::process::{kill_process, Pid, Signal};
    let sig = match signal {
        "TERM" => Signal::TERM,
        "KILL" => Signal::KILL,
        "HUP" => Signal::HUP,
        "STOP" => Signal::STOP,
        "CONT" => Signal::CONT,
        "INT" => Signal::INT,
        "USR1" => Signal::USR1,
        other => panic!("unknown signal name {other:?}"),
    };
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return false;
    };
    kill_process(pid, sig).is_ok()
}

/// Waits until none of `pids` runs any more; returns the ones still running at `timeout`.
pub(crate) fn wait_gone(pids: &[u32], timeout: Duration) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|&p| is_running(p)).collect();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The last `lines` lines of a log file, for panic messages ("" if it cannot be read).
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn a_helper_program_that_hangs_is_killed_and_reported() {
        let out = output_within(
            Command::new("sh").args(["-c", "echo out; echo err >&2"]),
            Duration::from_secs(30),
        )
        .unwrap();
        assert!(out.status.success());
        assert_eq!(
            (&out.stdout[..], &out.stderr[..]),
            (&b"out\n"[..], &b"err\n"[..])
        );
        let hung =
            output_within(Command::new("sleep").arg("30"), Duration::from_millis(200)).unwrap_err();
        assert_eq!(hung.kind(), std::io::ErrorKind::TimedOut, "{hung}");
    }

    #[test]
    fn sees_own_children_and_their_end() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        assert!(is_running(pid));
        assert!(children(std::process::id()).contains(&pid));
        // Between fork and exec the child still shows the test's own command line.
        crate::wait_for("the child to exec sleep", Duration::from_secs(5), || {
            cmdline(pid).starts_with("sleep 30").then_some(())
        });
        signal(&[pid], "KILL");
        // Not reaped yet: a zombie, which counts as gone.
        assert!(wait_gone(&[pid], Duration::from_secs(5)).is_empty());
        child.wait().unwrap();
        assert!(!is_running(pid));
    }
}
