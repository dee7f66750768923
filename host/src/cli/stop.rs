//! `ee-host stop`: power a VM off and remove its record and rules.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use ee_host::vm::{Host, StopMethod, VmError};

pub(crate) fn run(host: &Host, name: &str, timeout: u64, missing_ok: bool) -> Result<ExitCode> {
    let report = match host.stop(name, Duration::from_secs(timeout)) {
        Ok(report) => report,
        Err(VmError::NotFound { .. }) if missing_ok => return Ok(ExitCode::SUCCESS),
        Err(e) => return Err(e.into()),
    };
    let how = match report.how {
        StopMethod::AlreadyGone => "QEMU had already exited; record cleaned up",
        StopMethod::PowerDown => "guest powered off",
        StopMethod::Terminated => "QEMU stopped with SIGTERM",
        StopMethod::Killed => "QEMU killed with SIGKILL",
    };
    println!("stopped {name}: {how}");
    for e in &report.firewall_errors {
        tracing::warn!("removing a firewall rule failed: {e}");
    }
    Ok(ExitCode::SUCCESS)
}
