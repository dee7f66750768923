//! Starting child processes with a clean signal state.
//!
//! ee-init blocks the signals it reads through its signalfd, and since Rust
//! 1.66 `std::process::Command` lets children inherit the signal mask
//! (rust-lang/rust#101077). A service started with SIGTERM and SIGCHLD
//! blocked could never be stopped gracefully, and a shell would break job
//! control. So children are started with posix_spawn(3) asking for an empty
//! signal mask and every signal at its default action (std ignores
//! SIGPIPE in ee-init itself).

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::spawn::{posix_spawn, PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags};
use nix::sys::signal::SigSet;
use nix::unistd::Pid;

/// Why a child could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// An argument or environment entry contains a NUL byte.
    #[error("argument {0:?} contains a NUL byte")]
    Nul(String),
    /// No program given.
    #[error("empty command line")]
    Empty,
    /// posix_spawn failed (setup, or exec of the program).
    #[error("{errno}")]
    Spawn {
        /// The error.
        errno: Errno,
    },
}

/// How to start the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdin {
    /// Inherit ee-init's stdin (the console), for an interactive shell.
    Inherit,
    /// /dev/null, for services.
    Null,
}

/// Start `argv[0]` (an absolute path) with `argv` and exactly `env`
/// (`NAME=value` entries), an empty signal mask and default signal
/// actions. `new_group` puts the child in a process group of its own, so
/// that it and everything it forks can be signalled together.
pub fn spawn(
    argv: &[String],
    env: &[String],
    stdin: Stdin,
    new_group: bool,
) -> Result<Pid, SpawnError> {
    let cstrings = |items: &[String]| -> Result<Vec<CString>, SpawnError> {
        items
            .iter()
            .map(|s| CString::new(s.as_str()).map_err(|_| SpawnError::Nul(s.clone())))
            .collect()
    };
    let args = cstrings(argv)?;
    let envp = cstrings(env)?;
    let program = args.first().ok_or(SpawnError::Empty)?;

    let fail = |errno| SpawnError::Spawn { errno };
    let mut attr = PosixSpawnAttr::init().map_err(fail)?;
    let mut flags =
        PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF;
    if new_group {
        flags |= PosixSpawnFlags::POSIX_SPAWN_SETPGROUP;
        attr.set_pgroup(Pid::from_raw(0)).map_err(fail)?;
    }
    attr.set_flags(flags).map_err(fail)?;
    attr.set_sigmask(&SigSet::empty()).map_err(fail)?;
    attr.set_sigdefault(&SigSet::all()).map_err(fail)?;

    let mut actions = PosixSpawnFileActions::init().map_err(fail)?;
    // Opened close-on-exec; the dup2 in the child gives it fd 0 without.
    let null = match stdin {
        Stdin::Null => File::open("/dev/null").ok(),
        Stdin::Inherit => None,
    };
    if let Some(null) = &null {
        actions.add_dup2(null.as_raw_fd(), 0).map_err(fail)?;
    }
    posix_spawn(program.as_c_str(), &actions, &attr, &args, &envp).map_err(fail)
}
