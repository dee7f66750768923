//! `ee-host status`: one VM in detail; exit 3 when QEMU is gone.

use std::process::ExitCode;

use anyhow::Result;
use ee_host::vm::{self, Host, VmStatus};

use super::{ports_text, EXIT_NOT_RUNNING};

pub(crate) fn run(host: &Host, name: &str, json: bool) -> Result<ExitCode> {
    let status = VmStatus::of(host.find(name)?);
    let code = if status.running {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NOT_RUNNING)
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status.to_json())?);
        return Ok(code);
    }
    let r = &status.record;
    println!("name:        {}", r.name);
    println!("mode:        {}", r.mode);
    if status.running {
        println!(
            "state:       {} (pid {}, up {})",
            status.state_word(),
            r.pid,
            vm::human_duration(vm::uptime(r))
        );
    } else {
        println!(
            "state:       exited (QEMU pid {} is gone; clean up with: ee-host stop {})",
            r.pid, r.name
        );
    }
    println!("spec:        {}", r.spec.display());
    println!("ports:       {}", ports_text(&r.ports));
    if let Some(cid) = r.vsock_cid {
        println!("vsock cid:   {cid}");
    }
    for rule in &r.firewall_rules {
        println!("firewall:    iptables {}", rule.add_args().join(" "));
    }
    println!("serial log:  {}", r.paths.serial_log.display());
    println!("qemu log:    {}", r.paths.qemu_log.display());
    println!("qmp socket:  {}", r.paths.qmp_socket.display());
    Ok(code)
}
