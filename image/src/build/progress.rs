//! Progress of long steps: info events (on stderr through the binary's
//! subscriber) carrying the seconds since the build started, `elapsed_s`.

use std::time::Instant;

/// Prints each step with the time since the build started.
#[derive(Debug)]
pub struct Progress {
    started: Instant,
    quiet: bool,
}

impl Progress {
    /// Start the clock; `quiet` suppresses every event (library callers, tests).
    pub fn new(quiet: bool) -> Self {
        Progress {
            started: Instant::now(),
            quiet,
        }
    }

    /// A new step.
    pub fn step(&self, what: &str) {
        if !self.quiet {
            tracing::info!(elapsed_s = self.elapsed_tenths(), "{what}");
        }
    }

    /// A detail line inside the current step.
    pub fn detail(&self, what: &str) {
        if !self.quiet {
            tracing::info!(elapsed_s = self.elapsed_tenths(), "  {what}");
        }
    }

    /// Seconds since the build started.
    pub fn elapsed_secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// [`Self::elapsed_secs`] to a tenth: the precision a log line needs.
    fn elapsed_tenths(&self) -> f64 {
        (self.elapsed_secs() * 10.0).round() / 10.0
    }
}
