//! Running a program from a deploy thread and collecting its output and
//! exit status, even though PID1's main loop reaps every child.
//!
//! As PID1 (and in `--dev-run`) the main loop answers SIGCHLD with
//! `waitpid(-1)`, so it may reap a docker command before the deploy thread
//! that started it gets to. The deploy thread therefore registers the pid
//! in [`CLAIMS`] (under the lock, before the main loop can look it up) and
//! the main loop hands the exit status of a claimed pid back through
//! [`deliver_exit`] instead of logging it as an orphan. Whichever side
//! reaps first, the status reaches the deploy thread.
//!
//! Children start like services do (see `crate::spawn`): posix_spawn with an
//! empty signal mask and default signal actions, stdin on /dev/null, in a
//! process group of their own (so a timeout kills docker and the compose
//! plugin it runs), with exactly the environment given.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::spawn::{posix_spawn, PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags};
use nix::sys::signal::{killpg, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{pipe2, Pid};
use zeroize::Zeroizing;

use crate::supervisor::Exit;

/// Bytes of stdout kept (the head: `docker compose ps` JSON).
pub const MAX_STDOUT: usize = 4 * 1024 * 1024;
/// Bytes of stderr kept (the tail: where the error is).
pub const MAX_STDERR: usize = 64 * 1024;
/// How long output is still read after the command exited, in case a
/// process it left behind holds the pipes open.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// How long to wait for the status after the main loop reaped the child.
const DELIVERY_WAIT: Duration = Duration::from_secs(2);
/// How long to wait for the process group to die after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Pids started by deploy threads, with their exit status once the main
/// loop reaped them. Process-wide because reaping is.
static CLAIMS: Mutex<BTreeMap<i32, Option<Exit>>> = Mutex::new(BTreeMap::new());

fn claims() -> MutexGuard<'static, BTreeMap<i32, Option<Exit>>> {
    // Entries are plain values, consistent even after a panic elsewhere.
    CLAIMS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Called by whoever reaped `pid` without having started it (PID1's main
/// loop): stores the status for the deploy thread that is waiting for it.
/// Returns false when no deploy thread claimed the pid (a real orphan).
pub fn deliver_exit(pid: Pid, exit: Exit) -> bool {
    match claims().get_mut(&pid.as_raw()) {
        Some(slot) => {
            *slot = Some(exit);
            true
        }
        None => false,
    }
}

/// A command to run.
pub struct Invocation<'a> {
    /// Absolute path of the program.
    pub program: &'a Path,
    /// Arguments after the program name.
    pub args: &'a [String],
    /// The complete environment (`NAME=value`), wiped on drop.
    pub env: Vec<Zeroizing<CString>>,
    /// Killed (SIGKILL to its process group) after this long.
    pub timeout: Duration,
}

/// What a finished command left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// How it ended.
    pub exit: Exit,
    /// The first [`MAX_STDOUT`] bytes of its stdout.
    pub stdout: Vec<u8>,
    /// The last [`MAX_STDERR`] bytes of its stderr.
    pub stderr: Vec<u8>,
}

impl Output {
    /// True for exit status 0.
    pub fn success(&self) -> bool {
        self.exit == Exit::Code(0)
    }
}

/// A command could not be run to completion.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// An argument contains a NUL byte.
    #[error("argument {0:?} contains a NUL byte")]
    Nul(String),
    /// Pipes or posix_spawn failed (a missing program shows up here).
    #[error("cannot start {program}: {errno}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Why.
        errno: Errno,
    },
    /// Waiting for it failed.
    #[error("waiting for {program}: {errno}")]
    Wait {
        /// The program.
        program: PathBuf,
        /// Why.
        errno: Errno,
    },
    /// It ran past its timeout and was killed.
    #[error("{program} did not finish within {} s and was killed", timeout.as_secs())]
    Timeout {
        /// The program.
        program: PathBuf,
        /// The limit.
        timeout: Duration,
    },
    /// Something else reaped it and its status never arrived.
    #[error("{program} (pid {pid}) was reaped elsewhere and its exit status was lost")]
    Lost {
        /// The program.
        program: PathBuf,
        /// Its pid.
        pid: i32,
    },
}

/// Run `invocation` to completion (or its timeout).
pub fn run(invocation: &Invocation<'_>) -> Result<Output, CommandError> {
    let program = invocation.program;
    let spawn_error = |errno| CommandError::Spawn {
        program: program.to_owned(),
        errno,
    };
    let mut argv = Vec::with_capacity(invocation.args.len() + 1);
    for arg in std::iter::once(program.to_string_lossy().into_owned())
        .chain(invocation.args.iter().cloned())
    {
        argv.push(CString::new(arg.as_str()).map_err(|_| CommandError::Nul(arg))?);
    }
    let envp: Vec<&CStr> = invocation.env.iter().map(|e| e.as_c_str()).collect();

    let (stdout_read, stdout_write) = pipe2(OFlag::O_CLOEXEC).map_err(spawn_error)?;
    let (stderr_read, stderr_write) = pipe2(OFlag::O_CLOEXEC).map_err(spawn_error)?;
    let mut attr = PosixSpawnAttr::init().map_err(spawn_error)?;
    attr.set_flags(
        PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK
            | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF
            | PosixSpawnFlags::POSIX_SPAWN_SETPGROUP,
    )
    .map_err(spawn_error)?;
    attr.set_pgroup(Pid::from_raw(0)).map_err(spawn_error)?;
    attr.set_sigmask(&SigSet::empty()).map_err(spawn_error)?;
    attr.set_sigdefault(&SigSet::all()).map_err(spawn_error)?;
    let null = File::open("/dev/null")
        .map_err(|e| spawn_error(e.raw_os_error().map_or(Errno::EIO, Errno::from_raw)))?;
    let mut actions = PosixSpawnFileActions::init().map_err(spawn_error)?;
    // /dev/null and the pipe ends are close-on-exec; dup2 gives the child
    // copies without.
    actions.add_dup2(null.as_raw_fd(), 0).map_err(spawn_error)?;
    actions
        .add_dup2(stdout_write.as_raw_fd(), 1)
        .map_err(spawn_error)?;
    actions
        .add_dup2(stderr_write.as_raw_fd(), 2)
        .map_err(spawn_error)?;

    let pid = {
        // Claimed before the main loop can reap it: deliver_exit takes the
        // same lock, so it sees the claim.
        let mut claims = claims();
        let pid = posix_spawn(program, &actions, &attr, &argv, &envp).map_err(spawn_error)?;
        claims.insert(pid.as_raw(), None);
        pid
    };
    drop((stdout_write, stderr_write, null));
    let result = collect(program, pid, stdout_read, stderr_read, invocation.timeout);
    claims().remove(&pid.as_raw());
    result
}

/// One output pipe being read.
struct Pipe {
    file: Option<File>,
    data: Vec<u8>,
    keep_tail: bool,
    cap: usize,
}

impl Pipe {
    fn new(fd: OwnedFd, cap: usize, keep_tail: bool) -> Self {
        Pipe {
            file: Some(File::from(fd)),
            data: Vec::new(),
            keep_tail,
            cap,
        }
    }

    /// Read what is available (poll said so); close on EOF or error.
    fn read_some(&mut self) {
        let Some(file) = &mut self.file else { return };
        let mut buf = [0u8; 16 * 1024];
        match file.read(&mut buf) {
            Ok(0) | Err(_) => self.file = None,
            Ok(n) => {
                let chunk = buf.get(..n).unwrap_or_default();
                if self.keep_tail {
                    self.data.extend_from_slice(chunk);
                    let excess = self.data.len().saturating_sub(self.cap);
                    self.data.drain(..excess);
                } else {
                    let room = self.cap.saturating_sub(self.data.len());
                    self.data
                        .extend_from_slice(chunk.get(..room.min(n)).unwrap_or_default());
                }
            }
        }
    }
}

fn collect(
    program: &Path,
    pid: Pid,
    stdout: OwnedFd,
    stderr: OwnedFd,
    timeout: Duration,
) -> Result<Output, CommandError> {
    let mut pipes = [
        Pipe::new(stdout, MAX_STDOUT, false),
        Pipe::new(stderr, MAX_STDERR, true),
    ];
    let timed_out = || CommandError::Timeout {
        program: program.to_owned(),
        timeout,
    };
    let started = Instant::now();
    let mut exit: Option<(Exit, Instant)> = None;
    let mut reaped_elsewhere: Option<Instant> = None;
    let mut killed_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        match (exit, killed_at) {
            (Some(_), Some(_)) => return Err(timed_out()),
            (Some((status, at)), None) => {
                let open = pipes.iter().any(|p| p.file.is_some());
                if !open || now.duration_since(at) > DRAIN_AFTER_EXIT {
                    let [stdout, stderr] = pipes;
                    return Ok(Output {
                        exit: status,
                        stdout: stdout.data,
                        stderr: stderr.data,
                    });
                }
            }
            (None, None) if now.duration_since(started) > timeout => {
                let _ = killpg(pid, Signal::SIGKILL);
                killed_at = Some(now);
            }
            (None, Some(at)) if now.duration_since(at) > KILL_WAIT => return Err(timed_out()),
            (None, _) => {}
        }
        wait_readable(&mut pipes);
        if exit.is_some() {
            continue;
        }
        match check_exit(pid) {
            Ok(Some(status)) => exit = Some((status, Instant::now())),
            Ok(None) => {}
            Err(Errno::ECHILD) => {
                // The main loop reaped it; its status is on the way.
                let since = *reaped_elsewhere.get_or_insert(now);
                if now.duration_since(since) > DELIVERY_WAIT {
                    return Err(CommandError::Lost {
                        program: program.to_owned(),
                        pid: pid.as_raw(),
                    });
                }
            }
            Err(errno) => {
                return Err(CommandError::Wait {
                    program: program.to_owned(),
                    errno,
                })
            }
        }
    }
}

/// Wait up to 50 ms for output, then read what arrived.
fn wait_readable(pipes: &mut [Pipe; 2]) {
    let ready: Vec<usize> = {
        let open: Vec<(usize, &File)> = pipes
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.file.as_ref().map(|f| (i, f)))
            .collect();
        if open.is_empty() {
            std::thread::sleep(Duration::from_millis(50));
            return;
        }
        let mut fds: Vec<PollFd<'_>> = open
            .iter()
            .map(|(_, f)| PollFd::new(f.as_fd(), PollFlags::POLLIN))
            .collect();
        if poll(&mut fds, PollTimeout::from(50u8)).is_err() {
            return;
        }
        open.iter()
            .zip(&fds)
            .filter(|(_, fd)| fd.revents().is_some_and(|r| !r.is_empty()))
            .map(|((i, _), _)| *i)
            .collect()
    };
    for i in ready {
        if let Some(pipe) = pipes.get_mut(i) {
            pipe.read_some();
        }
    }
}

/// The child's status if it has exited: reaped here, or delivered by the
/// main loop. `Err(ECHILD)` while the main loop's delivery is pending.
fn check_exit(pid: Pid) -> Result<Option<Exit>, Errno> {
    match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => Ok(Some(Exit::Code(code))),
        Ok(WaitStatus::Signaled(_, signal, _)) => Ok(Some(Exit::Signal(signal))),
        Ok(_) | Err(Errno::EINTR) => Ok(None),
        Err(Errno::ECHILD) => match claims().get(&pid.as_raw()).copied().flatten() {
            Some(exit) => Ok(Some(exit)),
            None => Err(Errno::ECHILD),
        },
        Err(errno) => Err(errno),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> Result<Output, CommandError> {
        let args = ["-c".to_owned(), script.to_owned()];
        run(&Invocation {
            program: Path::new("/bin/sh"),
            args: &args,
            env: vec![Zeroizing::new(CString::new("GREETING=hello").unwrap())],
            timeout,
        })
    }

    #[test]
    fn collects_output_status_and_exactly_the_environment() {
        let out = sh(
            "echo \"$GREETING\"; env | wc -l; echo oops >&2; exit 3",
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(out.exit, Exit::Code(3));
        assert!(!out.success());
        let stdout = String::from_utf8(out.stdout).unwrap();
        let mut lines = stdout.lines();
        assert_eq!(lines.next(), Some("hello"));
        // GREETING plus what sh itself sets (PWD, SHLVL, ...), never ours.
        let count: usize = lines.next().unwrap().trim().parse().unwrap();
        assert!(count <= 4, "{stdout}");
        assert_eq!(out.stderr, b"oops\n");
    }

    #[test]
    fn stderr_keeps_its_tail_and_stdout_its_head() {
        let script = format!(
            "head -c {} /dev/zero | tr '\\0' a; head -c {} /dev/zero | tr '\\0' b >&2; echo END >&2",
            MAX_STDOUT + 10,
            MAX_STDERR
        );
        let out = sh(&script, Duration::from_secs(20)).unwrap();
        assert!(out.success());
        assert_eq!(out.stdout.len(), MAX_STDOUT);
        assert_eq!(out.stderr.len(), MAX_STDERR);
        assert!(out.stderr.ends_with(b"bbbEND\n"));
    }

    #[test]
    fn a_command_past_its_timeout_is_killed_with_its_group() {
        let started = Instant::now();
        let err = sh("sleep 30 & sleep 30", Duration::from_millis(300)).unwrap_err();
        // The killed shell is reaped and reported as killed by a signal,
        // or as a timeout if the group took long to die.
        assert!(matches!(err, CommandError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let err = run(&Invocation {
            program: Path::new("/nonexistent/docker"),
            args: &[],
            env: Vec::new(),
            timeout: Duration::from_secs(5),
        });
        // glibc and musl report exec failure from posix_spawn itself.
        match err {
            Err(CommandError::Spawn { errno, .. }) => assert_eq!(errno, Errno::ENOENT),
            Ok(out) => assert_eq!(out.exit, Exit::Code(127)),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_status_reaped_elsewhere_is_delivered_to_the_claim() {
        // A pid that is not our child: waitpid says ECHILD, as it does once
        // the main loop has reaped a claimed child.
        let pid = Pid::from_raw(i32::MAX - 7);
        assert!(!deliver_exit(pid, Exit::Code(5)), "unclaimed: an orphan");
        claims().insert(pid.as_raw(), None);
        assert_eq!(check_exit(pid), Err(Errno::ECHILD), "delivery pending");
        assert!(deliver_exit(pid, Exit::Code(5)));
        assert_eq!(check_exit(pid), Ok(Some(Exit::Code(5))));
        claims().remove(&pid.as_raw());
    }
}
