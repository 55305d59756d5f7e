//! A starved machine on demand: a CPU cap on one process a test started, through a cgroup of
//! its own (the `cpu` controller: cgroup v1's `cpu.cfs_quota_us`, or v2's `cpu.max`).
//!
//! A busy production host is what a surge looks like to a consumer: its batches take longer
//! than they do on a quiet one. A cap makes that happen on purpose, whatever else the
//! machine is doing, so a test can show what the system does when it is short of CPU.
//!
//! The cgroup is removed when the [`CpuCap`] is dropped (its processes are moved back to the
//! root group first), so a test leaves nothing behind whether it passes or fails.

use std::path::{Path, PathBuf};

/// A CPU cap on one process; lifted when dropped.
pub struct CpuCap {
    group: PathBuf,
    /// Where the capped processes go back to.
    root: PathBuf,
}

impl CpuCap {
    /// Caps process `pid` (and the threads it starts later) at `percent` of one CPU.
    ///
    /// # Panics
    /// When no cgroup `cpu` controller can be written (the tests run as root on this
    /// project's machines), with what was tried.
    pub fn limit(pid: u32, percent: u32) -> Self {
        let name = format!("orderflow_test_{}", uuid::Uuid::new_v4().simple());
        let period: u64 = 100_000;
        let quota = period * u64::from(percent.max(1)) / 100;
        let v1 = Path::new("/sys/fs/cgroup/cpu");
        let v2 = Path::new("/sys/fs/cgroup");
        let (root, group) = if v1.join("cpu.cfs_quota_us").exists() {
            let group = v1.join(&name);
            create(&group);
            write(&group.join("cpu.cfs_period_us"), &period.to_string());
            write(&group.join("cpu.cfs_quota_us"), &quota.to_string());
            (v1.to_path_buf(), group)
        } else if std::fs::read_to_string(v2.join("cgroup.controllers"))
            .is_ok_and(|controllers| controllers.split_whitespace().any(|c| c == "cpu"))
        {
            let _ = std::fs::write(v2.join("cgroup.subtree_control"), "+cpu");
            let group = v2.join(&name);
            create(&group);
            write(&group.join("cpu.max"), &format!("{quota} {period}"));
            (v2.to_path_buf(), group)
        } else {
            panic!(
                "no writable cgroup cpu controller (tried /sys/fs/cgroup/cpu and \
                 /sys/fs/cgroup/cgroup.controllers): the CPU-starvation tests need one \
                 (they run as root on this project's machines)"
            );
        };
        write(&group.join("cgroup.procs"), &pid.to_string());
        Self { group, root }
    }

    /// The CPU time the capped processes were refused so far (the cap at work), when the
    /// kernel says.
    pub fn throttled(&self) -> Option<std::time::Duration> {
        let stat = std::fs::read_to_string(self.group.join("cpu.stat")).ok()?;
        stat.lines().find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            let value: u64 = value.trim().parse().ok()?;
            match key {
                "throttled_time" => Some(std::time::Duration::from_nanos(value)),
                "throttled_usec" => Some(std::time::Duration::from_micros(value)),
                _ => None,
            }
        })
    }
}

impl Drop for CpuCap {
    fn drop(&mut self) {
        if let Ok(procs) = std::fs::read_to_string(self.group.join("cgroup.procs")) {
            for pid in procs.lines() {
                let _ = std::fs::write(self.root.join("cgroup.procs"), pid);
            }
        }
        let _ = std::fs::remove_dir(&self.group);
    }
}

fn create(group: &Path) {
    std::fs::create_dir(group)
        .unwrap_or_else(|error| panic!("cannot create the cgroup {}: {error}", group.display()));
}

fn write(file: &Path, value: &str) {
    std::fs::write(file, value)
        .unwrap_or_else(|error| panic!("cannot write {value} to {}: {error}", file.display()));
}
