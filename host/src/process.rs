//! Watching and signalling a QEMU process that ee-host started earlier,
//! possibly from another ee-host invocation.
//!
//! A pid alone is not an identity: after QEMU exits the kernel may give the
//! pid to an unrelated process. The record therefore keeps QEMU's start
//! time (`/proc/<pid>/stat` field 22, clock ticks since boot); a process
//! only counts as the VM when both match, and only then is it signalled.
//! Zombies (exited, not yet reaped) count as gone.

use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How often a waiting loop looks again.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// State and start time of a process, from `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// One-letter state (`R`, `S`, `Z`, ...).
    pub state: char,
    /// Start time in clock ticks since boot.
    pub start_ticks: u64,
}

/// Parse the text of `/proc/<pid>/stat`. The command name (field 2) is in
/// parentheses and may itself contain spaces and parentheses, so fields are
/// counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let after_comm = &text[text.rfind(')')? + 1..];
    let mut fields = after_comm.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state (field 3) come fields 4..; start time is field 22.
    let start_ticks = fields.nth(22 - 4)?.parse().ok()?;
    Some(ProcStat { state, start_ticks })
}

/// The current stat of `pid`, if such a process exists.
pub fn stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Whether the process `pid` started at `start_ticks` is still running.
pub fn is_running(pid: u32, start_ticks: u64) -> bool {
    matches!(stat(pid), Some(s) if s.start_ticks == start_ticks && s.state != 'Z' && s.state != 'X')
}

/// Send `signal` to the process if it is still the one identified by
/// `start_ticks`. Returns false when it is gone (nothing was sent).
pub fn signal_if_running(pid: u32, start_ticks: u64, signal: Signal) -> nix::Result<bool> {
    let Ok(raw) = i32::try_from(pid) else {
        return Ok(false);
    };
    if !is_running(pid, start_ticks) {
        return Ok(false);
    }
    match kill(Pid::from_raw(raw), signal) {
        Ok(()) => Ok(true),
        Err(nix::errno::Errno::ESRCH) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Wait until the process is gone or `timeout` passes; true if it is gone.
pub fn wait_gone(pid: u32, start_ticks: u64, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !is_running(pid, start_ticks) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_command_names() {
        // Fields 4..=21 (ppid .. priority and so on), then start time (22), then more.
        let fields_4_to_21 = vec!["7"; 18].join(" ");
        let text = format!("4242 (qemu (x) y) S {fields_4_to_21} 987654 0 0\n");
        let stat = parse_stat(&text).unwrap();
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.start_ticks, 987654);
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn own_process_is_running_and_wrong_start_time_is_not() {
        let me = std::process::id();
        let stat = stat(me).unwrap();
        assert!(is_running(me, stat.start_ticks));
        assert!(!is_running(me, stat.start_ticks + 1));
        assert!(!signal_if_running(me, stat.start_ticks + 1, Signal::SIGTERM).unwrap());
    }

    #[test]
    fn a_reaped_child_is_gone() {
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .unwrap();
        let pid = child.id();
        let ticks = stat(pid).unwrap().start_ticks;
        assert!(signal_if_running(pid, ticks, Signal::SIGKILL).unwrap());
        // Before reaping it is a zombie: already not running.
        assert!(wait_gone(pid, ticks, Duration::from_secs(5)));
        child.wait().unwrap();
        assert!(!is_running(pid, ticks));
    }
}
