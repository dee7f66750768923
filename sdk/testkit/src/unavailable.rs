//! What a test does when a real part it needs is missing (root, QEMU, the
//! guest kernel, a tool): under CI it fails, because the part is the point
//! of the test and a skip must never count as a pass; elsewhere it says so
//! and records the skip, so `scripts/test` reports it apart from passes.

use std::io::Write as _;

/// The environment variable naming the file skips are appended to.
pub const SKIP_LOG_ENV: &str = "EE_SKIP_LOG";

/// Call when `test` cannot reach a real part; returns (so the caller can
/// `return`) only when `CI` is unset or empty.
///
/// # Panics
///
/// When `CI` is set: a CI run that cannot reach the real part has failed.
pub fn unavailable(test: &str, reason: &str) {
    if std::env::var_os("CI").is_some_and(|value| !value.is_empty()) {
        panic!("{test}: {reason} (CI is set: a test that cannot reach its real parts fails)");
    }
    eprintln!("SKIPPED {test}: {reason}");
    if let Some(path) = std::env::var_os(SKIP_LOG_ENV) {
        // Best effort: a lost record only makes the summary count a pass.
        if let Ok(mut log) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(log, "{test}: {reason}");
        }
    }
}
