//! Which process holds a lease or lock, and whether it still exists.
//!
//! A rotator killed mid-run leaves its lease (and possibly the state lock) behind. When
//! the holder ran on this host and its process is gone, waiting for the TTL helps no one:
//! the lease is taken over at once. Liveness is read from `/proc/<pid>/stat` (Linux);
//! the process start time guards against a recycled pid. Where `/proc` is unavailable,
//! or the holder ran on another host, a holder is treated as alive.

use serde::{Deserialize, Serialize};

/// A process on a host: enough to tell later whether it still runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    /// Host name (`/proc/sys/kernel/hostname`).
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Start time in clock ticks after boot (`/proc/<pid>/stat` field 22).
    pub start_ticks: u64,
}

impl ProcessId {
    /// This process, where `/proc` tells enough to recognise it later.
    pub fn current() -> Option<Self> {
        let pid = std::process::id();
        Some(Self {
            host: host_name()?,
            pid,
            start_ticks: start_ticks(pid)?,
        })
    }

    /// Known dead: it ran on this host and no process with its pid and start time exists.
    pub fn is_dead(&self) -> bool {
        if host_name().as_deref() != Some(self.host.as_str()) {
            return false;
        }
        if !std::path::Path::new("/proc/self/stat").exists() {
            return false;
        }
        start_ticks(self.pid) != Some(self.start_ticks)
    }
}

impl std::fmt::Display for ProcessId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} on {}", self.pid, self.host)
    }
}

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`: comm may contain spaces and parentheses, so fields
    // are counted after the last ')'. starttime is field 22, the 20th after comm.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_an_exited_one_is_not() {
        let me = ProcessId::current().expect("/proc is available on the test hosts");
        assert!(!me.is_dead());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let started = start_ticks(pid);
        child.wait().unwrap();
        let gone = ProcessId {
            host: me.host.clone(),
            pid,
            start_ticks: started.unwrap_or(1),
        };
        assert!(gone.is_dead());
        // A recycled pid (same pid, other start time) is not the holder.
        let recycled = ProcessId {
            start_ticks: me.start_ticks + 1,
            ..me.clone()
        };
        assert!(recycled.is_dead());
        // Another host's process is never declared dead from here.
        let remote = ProcessId {
            host: format!("{}-elsewhere", me.host),
            ..gone
        };
        assert!(!remote.is_dead());
    }
}
