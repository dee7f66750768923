//! Signals PID1 acts on, read synchronously through a signalfd.
//!
//! The kernel ignores signals sent to PID1 that have the default disposition,
//! but *blocked* signals are queued, so blocking them and reading a signalfd
//! works for init without any signal handler (and without `unsafe`). The
//! mask must be set before any thread is spawned: threads inherit it, and a
//! signal not blocked in every thread could be delivered to that thread's
//! default action instead of the signalfd. std resets the mask in children
//! it spawns, so services start with a clean mask.

use std::os::fd::AsFd;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// Signals ee-init handles: SIGCHLD (reap), SIGTERM / SIGINT (Ctrl-Alt-Del
/// once CAD is disabled) / SIGPWR (power failure notices) / SIGUSR2 (the
/// power-off request sysvinit and busybox use) all mean "shut down".
pub const HANDLED: [Signal; 5] = [
    Signal::SIGCHLD,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGPWR,
    Signal::SIGUSR2,
];

/// What a received signal asks PID1 to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// A child changed state: reap.
    Reap,
    /// Stop services and power off.
    Shutdown(Signal),
}

/// The blocked-signal inbox.
#[derive(Debug)]
pub struct Signals {
    fd: SignalFd,
}

impl Signals {
    /// Block [`HANDLED`] in the calling thread and open a signalfd for them.
    /// Call from the main thread before spawning any other thread.
    pub fn install() -> nix::Result<Self> {
        let mut mask = SigSet::empty();
        for sig in HANDLED {
            mask.add(sig);
        }
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(Signals { fd })
    }

    /// Wait up to `timeout` (forever if `None`) and return every pending
    /// request, in arrival order. An empty list means the timeout passed.
    pub fn wait(&self, timeout: Option<Duration>) -> nix::Result<Vec<Request>> {
        let timeout = match timeout {
            None => PollTimeout::NONE,
            Some(t) => {
                // Round up so a 0.4 ms deadline does not busy-loop at 0 ms.
                PollTimeout::try_from(t.as_micros().div_ceil(1000)).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
        let mut requests = Vec::new();
        while let Some(info) = self.fd.read_signal()? {
            let request = match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) => Request::Reap,
                Ok(sig) => Request::Shutdown(sig),
                Err(_) => continue,
            };
            requests.push(request);
        }
        Ok(requests)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::pthread::{pthread_kill, pthread_self};

    /// Signals are directed at this test's thread (the harness runs other
    /// tests in other threads, which do not block them).
    #[test]
    fn thread_directed_signals_are_read_as_requests() {
        let signals = Signals::install().unwrap();
        assert_eq!(
            signals.wait(Some(Duration::from_millis(5))).unwrap(),
            vec![]
        );
        pthread_kill(pthread_self(), Signal::SIGTERM).unwrap();
        assert_eq!(
            signals.wait(Some(Duration::from_secs(5))).unwrap(),
            vec![Request::Shutdown(Signal::SIGTERM)]
        );
        pthread_kill(pthread_self(), Signal::SIGCHLD).unwrap();
        assert_eq!(signals.wait(None).unwrap(), vec![Request::Reap]);
    }
}
