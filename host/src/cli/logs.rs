//! `ee-host logs`: a VM's serial console or QEMU log, optionally followed.

use std::process::ExitCode;

use anyhow::Result;
use ee_host::vm::{self, Host, VmError};

pub(crate) fn run(host: &Host, name: &str, follow: bool, qemu_log: bool) -> Result<ExitCode> {
    let pick = |paths: &ee_host::state::VmPaths| {
        if qemu_log {
            paths.qemu_log.clone()
        } else {
            paths.serial_log.clone()
        }
    };
    let (path, record) = match host.state.read(name)? {
        Some(record) => (pick(&record.paths), Some(record)),
        None => {
            let path = pick(&host.state.paths(name)?);
            if !path.exists() {
                return Err(VmError::NotFound {
                    name: name.to_owned(),
                    state_dir: host.state.root().to_owned(),
                }
                .into());
            }
            tracing::info!("{name} is not running; this is the log of its last run");
            (path, None)
        }
    };
    let alive = || record.as_ref().is_some_and(vm::is_running);
    let mut out = std::io::stdout().lock();
    vm::copy_log(&path, &mut out, follow, &alive)?;
    Ok(ExitCode::SUCCESS)
}
