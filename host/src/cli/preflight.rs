//! `ee-host preflight`: can this host run TDX trust domains?

use std::process::ExitCode;

use anyhow::{Context, Result};
use ee_host::preflight::{self as checks, Preflight};
use ee_host::vm::Host;

use super::{PreflightArgs, EXIT_FAILURE};

pub(crate) fn run(host: &Host, args: &PreflightArgs) -> Result<ExitCode> {
    let report = Preflight {
        root: args.root.clone(),
        qemu: host.qemu.clone(),
        virsh: args.virsh_binary.clone(),
        firmware: args.firmware.clone(),
        qgs_port: args.qgs_port,
    }
    .run();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("encoding the report")?
        );
    } else {
        print!("{}", checks::render_text(&report));
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    })
}
