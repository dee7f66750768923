//! Supervising the image's services and reaping every zombie.
//!
//! As PID1, ee-init is the parent of every orphan in the TD, so [`Supervisor::reap`]
//! collects *any* exited child (waitpid(-1)), not only the services it
//! started. Services come from the image (`/etc/ee/services`, measured with
//! the initramfs in RTMR2), never from host-supplied input. A service that
//! exits or crashes is logged and, if its policy says so, restarted after a
//! growing delay; it can never take the supervisor down.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::say;
use crate::spawn::Stdin;

/// Guest path of the service list.
pub use easyenclave::service_list::SERVICE_LIST_PATH as SERVICE_LIST;
/// The service list's format (parsed by [`parse_services`]) lives in the
/// SDK, since `ee-image` writes it.
pub use easyenclave::service_list::{Restart, ServiceListError, ServiceSpec};

/// PATH given to services (their environment is otherwise empty).
const SERVICE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Parse the service list (`#` comments and blank lines ignored); see
/// [`easyenclave::service_list`].
pub fn parse_services(text: &str) -> Result<Vec<ServiceSpec>, ServiceListError> {
    easyenclave::service_list::parse(text)
}

/// Delay before restarting a service: `initial * 2^restarts`, capped at `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Delay before the first restart.
    pub initial: Duration,
    /// Upper bound.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    fn delay(&self, restarts: u32) -> Duration {
        self.initial
            .saturating_mul(1u32 << restarts.min(16))
            .min(self.max)
    }
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// exit(code).
    Code(i32),
    /// Killed by a signal.
    Signal(Signal),
}

/// A child collected by [`Supervisor::reap`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaped {
    /// Its pid.
    pub pid: Pid,
    /// How it ended.
    pub exit: Exit,
    /// The service it was, or `None` for an orphan re-parented to us.
    pub service: Option<String>,
}

#[derive(Debug)]
struct Service {
    spec: ServiceSpec,
    pid: Option<Pid>,
    restarts: u32,
    start_at: Option<Instant>,
}

/// The set of services and their state.
#[derive(Debug)]
pub struct Supervisor {
    services: Vec<Service>,
    backoff: Backoff,
    stopping: bool,
}

impl Supervisor {
    /// Supervise `specs` (not yet started) with the given restart back-off.
    pub fn new(specs: Vec<ServiceSpec>, backoff: Backoff) -> Self {
        let services = specs
            .into_iter()
            .map(|spec| Service {
                spec,
                pid: None,
                restarts: 0,
                start_at: None,
            })
            .collect();
        Supervisor {
            services,
            backoff,
            stopping: false,
        }
    }

    /// Start every service, in list order.
    pub fn start_all(&mut self, now: Instant) {
        for service in &mut self.services {
            service.start_at = Some(now);
        }
        self.start_due(now);
    }

    /// Start the services whose (re)start time has come (none once stopping).
    pub fn start_due(&mut self, now: Instant) {
        if self.stopping {
            return;
        }
        for service in &mut self.services {
            if service.pid.is_none() && service.start_at.is_some_and(|t| t <= now) {
                service.start_at = None;
                service.pid = spawn(&service.spec);
                if service.pid.is_none() && service.spec.restart == Restart::Always {
                    service.start_at = Some(now + self.backoff.delay(service.restarts));
                    service.restarts = service.restarts.saturating_add(1);
                }
            }
        }
    }

    /// When the next pending restart is due, if any.
    pub fn next_start(&self) -> Option<Instant> {
        self.services.iter().filter_map(|s| s.start_at).min()
    }

    /// Pid of a running service.
    pub fn pid_of(&self, name: &str) -> Option<Pid> {
        self.services
            .iter()
            .find(|s| s.spec.name == name)
            .and_then(|s| s.pid)
    }

    /// How many times a service has been restarted.
    pub fn restarts_of(&self, name: &str) -> Option<u32> {
        self.services
            .iter()
            .find(|s| s.spec.name == name)
            .map(|s| s.restarts)
    }

    /// Collect every exited child without blocking; schedule restarts.
    pub fn reap(&mut self, now: Instant) -> Vec<Reaped> {
        let mut reaped = Vec::new();
        loop {
            let (pid, exit) = match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, Exit::Code(code)),
                Ok(WaitStatus::Signaled(pid, sig, _core)) => (pid, Exit::Signal(sig)),
                // Stopped/continued children are not gone; keep looking.
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => {
                    say!("waitpid failed: {e}");
                    break;
                }
            };
            let service = self.services.iter_mut().find(|s| s.pid == Some(pid));
            let name = match service {
                Some(service) => {
                    service.pid = None;
                    let next = match service.spec.restart {
                        _ if self.stopping => "stopped".into(),
                        Restart::Always => {
                            let delay = self.backoff.delay(service.restarts);
                            service.restarts = service.restarts.saturating_add(1);
                            service.start_at = Some(now + delay);
                            format!("restarting in {} ms", delay.as_millis())
                        }
                        Restart::Never => "not restarting (policy never)".into(),
                    };
                    say!(
                        "service {} (pid {pid}) {}; {next}",
                        service.spec.name,
                        describe(exit)
                    );
                    Some(service.spec.name.clone())
                }
                None => None,
            };
            reaped.push(Reaped {
                pid,
                exit,
                service: name,
            });
        }
        reaped
    }

    /// Stop running services in reverse start order: SIGTERM to the
    /// service's process group, up to `grace` for it to exit, then SIGKILL.
    /// Children keep being reaped meanwhile. No service is restarted after.
    pub fn stop_all(&mut self, grace: Duration) {
        self.stopping = true;
        for service in &mut self.services {
            service.start_at = None;
        }
        for i in (0..self.services.len()).rev() {
            let Some((pid, name)) = self
                .services
                .get(i)
                .and_then(|s| Some((s.pid?, s.spec.name.clone())))
            else {
                continue;
            };
            say!("stopping service {name} (pid {pid})");
            let _ = killpg(pid, Signal::SIGTERM);
            if !self.wait_for_exit(i, grace) {
                say!(
                    "service {name} did not stop within {} ms: SIGKILL",
                    grace.as_millis()
                );
                let _ = killpg(pid, Signal::SIGKILL);
                self.wait_for_exit(i, Duration::from_secs(5));
            }
        }
    }

    fn wait_for_exit(&mut self, index: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            self.reap(Instant::now());
            if self.services.get(index).is_none_or(|s| s.pid.is_none()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn spawn(spec: &ServiceSpec) -> Option<Pid> {
    // Its own process group, so stopping it also stops what it forked.
    match crate::spawn::spawn(
        &spec.argv,
        &[format!("PATH={SERVICE_PATH}")],
        Stdin::Null,
        true,
    ) {
        Ok(pid) => {
            say!(
                "started service {} (pid {pid}): {}",
                spec.name,
                spec.argv.join(" ")
            );
            Some(pid)
        }
        Err(e) => {
            say!("cannot start service {}: {e}", spec.name);
            None
        }
    }
}

fn describe(exit: Exit) -> String {
    match exit {
        Exit::Code(code) => format!("exited with status {code}"),
        Exit::Signal(sig) => format!("was killed by {sig}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(b.delay(0), Duration::from_millis(100));
        assert_eq!(b.delay(2), Duration::from_millis(400));
        assert_eq!(b.delay(4), Duration::from_secs(1));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(1));
    }
}
