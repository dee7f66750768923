//! Console lines with a boot-relative timestamp.
//!
//! Every line ee-init prints starts with the milliseconds since boot
//! (CLOCK_BOOTTIME), so a boot log alone shows how long each step took, e.g.
//! from PID1 start to "agent listening". Output goes to stderr, which the
//! kernel connects to /dev/console for PID1. Write errors are ignored on
//! purpose: a missing console must never take PID1 down (`eprintln!` would
//! panic).

use std::fmt;
use std::io::Write;
use std::time::Duration;

use nix::time::{clock_gettime, ClockId};

/// Time since boot, including time spent suspended. Zero if the clock is
/// unreadable (it never is on Linux; the fallback avoids a panic path).
pub fn since_boot() -> Duration {
    clock_gettime(ClockId::CLOCK_BOOTTIME)
        .ok()
        .and_then(|ts| {
            let secs = u64::try_from(ts.tv_sec()).ok()?;
            let nanos = u32::try_from(ts.tv_nsec()).ok()?;
            Some(Duration::new(secs, nanos))
        })
        .unwrap_or_default()
}

/// Print one console line: `[   1234 ms] ee-init: <message>`.
pub fn line(message: fmt::Arguments<'_>) {
    // The clock is read under the lock, so lines from several threads (the
    // power button watcher, the HTTP server) appear in timestamp order.
    let mut err = std::io::stderr().lock();
    let ms = since_boot().as_millis();
    let _ = writeln!(err, "[{ms:>7} ms] ee-init: {message}");
}

/// Print a timestamped console line (`format!` syntax).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::console::line(format_args!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_clock_is_monotonic_and_nonzero() {
        let a = since_boot();
        std::thread::sleep(Duration::from_millis(2));
        let b = since_boot();
        assert!(a > Duration::ZERO);
        assert!(b >= a + Duration::from_millis(2), "{a:?} then {b:?}");
    }
}
