//! `ee-host launch`: start a VM, or print what would run (`--dry-run`).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use easyenclave::sim_registers::SIM_REGISTERS_FW_CFG_NAME;
use ee_host::qemu;
use ee_host::vm::{Host, LaunchOptions, VmStatus};
use ee_host::{libvirt, LAUNCH_CONFIG_FW_CFG_NAME};

use super::{ports_text, DryRunFormat, LaunchArgs};

pub(crate) fn run(host: &Host, args: &LaunchArgs) -> Result<ExitCode> {
    let options = LaunchOptions {
        mode: args.mode,
        accel: args.accel,
        startup_timeout: Duration::from_secs(args.startup_timeout),
    };
    if args.dry_run {
        let prepared = host.prepare(&args.spec, &options)?;
        let mut out = std::io::stdout().lock();
        let firewall: Vec<Vec<String>> = prepared
            .firewall_rules
            .iter()
            .map(|r| {
                let mut cmd = vec![host.iptables.clone()];
                cmd.extend(r.add_args());
                cmd
            })
            .collect();
        let text = match args.format {
            DryRunFormat::Qemu => {
                let mut text = format!(
                    "# ee-host launch {:?} ({} mode): nothing was started.\n\
                     # Launch config, written to {} and passed as fw_cfg {}:\n# {}\n",
                    prepared.plan.name,
                    prepared.plan.mode,
                    prepared.paths.launch_config.display(),
                    LAUNCH_CONFIG_FW_CFG_NAME,
                    prepared.launch_json
                );
                if let (Some(json), Some(registers)) =
                    (&prepared.sim_registers_json, &prepared.plan.sim_registers)
                {
                    text.push_str(&format!(
                        "# Simulated TD registers (allowlist entry {:?}), written to {} and passed as fw_cfg {}:\n# {}\n",
                        registers.entry,
                        prepared.paths.sim_registers().display(),
                        SIM_REGISTERS_FW_CFG_NAME,
                        json
                    ));
                }
                text.push_str(&qemu::shell_command(&host.qemu, &prepared.args));
                if !firewall.is_empty() {
                    text.push_str("# Port forwards of the bridged VM:\n");
                    for cmd in &firewall {
                        let quoted: Vec<String> =
                            cmd.iter().map(|a| qemu::shell_quote(a)).collect();
                        text.push_str(&quoted.join(" "));
                        text.push('\n');
                    }
                }
                text
            }
            DryRunFormat::Libvirt => {
                for cmd in &firewall {
                    tracing::info!("the bridged forwards also need: {}", cmd.join(" "));
                }
                libvirt::domain_xml(&prepared.plan, &prepared.runtime())?
            }
            DryRunFormat::Json => {
                let launch: serde_json::Value = serde_json::from_str(&prepared.launch_json)?;
                let mut argv = vec![host.qemu.clone()];
                argv.extend(prepared.args.iter().cloned());
                let mut doc = serde_json::json!({
                    "version": 1,
                    "name": prepared.plan.name,
                    "mode": prepared.plan.mode,
                    "qemu_argv": argv,
                    "launch_config": launch,
                    "launch_config_path": prepared.paths.launch_config,
                    "paths": prepared.paths,
                    "iptables": firewall,
                });
                // Only present when the spec has sim_registers.
                if let Some(json) = &prepared.sim_registers_json {
                    doc["sim_registers"] = serde_json::from_str(json)?;
                    doc["sim_registers_path"] = serde_json::json!(prepared.paths.sim_registers());
                }
                serde_json::to_string_pretty(&doc)? + "\n"
            }
        };
        out.write_all(text.as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.foreground {
        let error = host.launch_foreground(&args.spec, &options);
        return Err(error.into());
    }
    let record = host.launch(&args.spec, &options)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&VmStatus::of(record).to_json())?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "launched {} ({} mode), QEMU pid {}",
        record.name, record.mode, record.pid
    );
    println!("  ports:      {}", ports_text(&record.ports));
    if let Some(cid) = record.vsock_cid {
        println!("  vsock cid:  {cid}");
    }
    println!(
        "  serial log: {}   (ee-host logs -f {})",
        record.paths.serial_log.display(),
        record.name
    );
    println!("  qemu log:   {}", record.paths.qemu_log.display());
    println!("  stop with:  ee-host stop {}", record.name);
    Ok(ExitCode::SUCCESS)
}
