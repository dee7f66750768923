//! Progress lines for long steps: `[ee-image   12.3s] step`, on stderr.

use std::time::Instant;

/// Prints each step with the time since the build started.
#[derive(Debug)]
pub struct Progress {
    started: Instant,
    quiet: bool,
}

impl Progress {
    /// Start the clock; `quiet` suppresses every line (library callers, tests).
    pub fn new(quiet: bool) -> Self {
        Progress {
            started: Instant::now(),
            quiet,
        }
    }

    /// A new step.
    pub fn step(&self, what: &str) {
        if !self.quiet {
            eprintln!(
                "[ee-image {:7.1}s] {what}",
                self.started.elapsed().as_secs_f64()
            );
        }
    }

    /// A detail line inside the current step.
    pub fn detail(&self, what: &str) {
        if !self.quiet {
            eprintln!(
                "[ee-image {:7.1}s]   {what}",
                self.started.elapsed().as_secs_f64()
            );
        }
    }

    /// Seconds since the build started.
    pub fn elapsed_secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}
