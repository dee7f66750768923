//! `ee-host`: launch and manage Easy Enclave trust domains on a host.
//!
//! This file parses the command line and dispatches; the commands live in
//! [`cli`].

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use ee_host::state::StateDir;
use ee_host::vm::Host;

mod cli;

use cli::{Cli, Cmd, EXIT_FAILURE};

fn main() -> ExitCode {
    let cli = Cli::parse();
    ee_log::init("ee-host", &cli.global.log);
    let host = Host {
        state: StateDir::new(&cli.global.state_dir),
        qemu: cli.global.qemu_binary.clone(),
        iptables: cli.global.iptables_binary.clone(),
    };
    match run(&host, cli.command) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn run(host: &Host, command: Cmd) -> Result<ExitCode> {
    match command {
        Cmd::Launch(args) => cli::launch::run(host, &args),
        Cmd::List { json } => cli::list::run(host, json),
        Cmd::Status { name, json } => cli::status::run(host, &name, json),
        Cmd::Logs { name, follow, qemu } => cli::logs::run(host, &name, follow, qemu),
        Cmd::Stop {
            name,
            timeout,
            missing_ok,
        } => cli::stop::run(host, &name, timeout, missing_ok),
        Cmd::Preflight(args) => cli::preflight::run(host, &args),
    }
}
