//! `ee-host list`: the recorded VMs, as a table or JSON.

use std::process::ExitCode;

use anyhow::Result;
use ee_host::vm::{self, Host, VmStatus};

use super::ports_text;

pub(crate) fn run(host: &Host, json: bool) -> Result<ExitCode> {
    let (records, broken) = host.state.list()?;
    let statuses: Vec<VmStatus> = records.into_iter().map(VmStatus::of).collect();
    if json {
        let doc = serde_json::json!({
            "version": 1,
            "vms": statuses.iter().map(VmStatus::to_json).collect::<Vec<_>>(),
            "broken": broken.iter().map(|b| serde_json::json!({
                "name": b.name, "path": b.path, "problem": b.problem,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    for b in &broken {
        tracing::warn!("unreadable record {}: {}", b.path.display(), b.problem);
    }
    if statuses.is_empty() {
        tracing::info!("no VMs recorded in {}", host.state.root().display());
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 6]> = statuses
        .iter()
        .map(|s| {
            let r = &s.record;
            [
                r.name.clone(),
                r.mode.to_string(),
                s.state_word().to_owned(),
                r.pid.to_string(),
                if s.running {
                    vm::human_duration(vm::uptime(r))
                } else {
                    "-".to_owned()
                },
                ports_text(&r.ports),
            ]
        })
        .collect();
    let header = ["NAME", "MODE", "STATE", "PID", "UPTIME", "PORTS"].map(str::to_owned);
    let mut widths = [0usize; 6];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    Ok(ExitCode::SUCCESS)
}
