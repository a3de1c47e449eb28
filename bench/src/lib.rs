//! What the benchmark binaries and the demo share: the workspace's sibling binaries,
//! child processes stopped on drop, percentiles.

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

/// A binary built next to the running one (`target/<profile>/<name>`).
pub fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .expect("current exe")
        .parent()
        .expect("target dir")
        .join(name)
}

/// A child process stopped when dropped.
pub struct Proc {
    child: Child,
    graceful: bool,
}

impl Proc {
    /// Stopped with SIGKILL.
    pub fn kill_on_drop(child: Child) -> Proc {
        Proc {
            child,
            graceful: false,
        }
    }

    /// Stopped with SIGTERM (a registering agent drains), SIGKILL after 10 s.
    pub fn term_on_drop(child: Child) -> Proc {
        Proc {
            child,
            graceful: true,
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.graceful {
            disco_harness::process::send(self.child.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `p` quantile (0–1) of sorted samples, by nearest rank; NaN when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}
