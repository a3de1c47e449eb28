//! What a running process uses, read from `/proc`: resident memory, CPU time and open
//! file descriptors, for the benchmarks' RSS, CPU and leak columns.

/// Resident memory (`VmRSS`) of `pid` in KiB; None when it cannot be read.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU time of `pid` (user + system) in clock ticks; 0 when it cannot be read.
pub fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 1..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// Open file descriptors of `pid`; 0 when they cannot be listed.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(rss_kib(me).is_some_and(|kib| kib > 0));
        assert!(open_fds(me) > 0);
    }

    #[test]
    fn a_process_that_does_not_exist_reads_as_nothing() {
        // Above the kernel's pid limit (4,194,304 at most).
        let none = 999_999_999;
        assert_eq!(rss_kib(none), None);
        assert_eq!(cpu_ticks(none), 0);
        assert_eq!(open_fds(none), 0);
    }
}
