//! `ee`: the Easy Enclave command-line tool.
//!
//! Exit codes: 0 success; 1 the subject was checked and rejected (a quote that
//! does not verify, a policy that does not hold); 2 the command could not run
//! (bad arguments, unreadable or malformed input).

mod bundle_cmd;
mod deploy_cmd;
mod oidc_args;
mod quote_cmd;
mod sim_cmd;
mod trust_args;
mod verify_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ee",
    version,
    about = "Easy Enclave: inspect and verify Intel TDX attestations",
    long_about = "Easy Enclave runs workloads in Intel TDX trust domains and lets anyone \
check what runs there. `ee` inspects and verifies TDX quotes with Intel DCAP \
under an explicit policy.\n\nExit status: 0 verified/succeeded, 1 rejected \
(the input was understood and failed a check), 2 usage or input error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with TDX quotes.
    #[command(subcommand)]
    Quote(quote_cmd::QuoteCommand),
    /// The simulated TDX platform of dev images: its root and collateral.
    #[command(subcommand)]
    Sim(sim_cmd::SimCommand),
    /// Deploy bundles: canonical digest, deterministic zip, safe extraction.
    #[command(subcommand)]
    Bundle(bundle_cmd::BundleCommand),
    /// Verify a repo's published deployment: what runs for it, and where.
    Verify(verify_cmd::VerifyArgs),
    /// Verify an agent over RA-TLS, then deploy a bundle to it and follow it.
    Deploy(deploy_cmd::DeployArgs),
}

/// How a command ended, mapped to the exit status.
pub enum Failure {
    /// The input was understood and a check rejected it (exit 1).
    Rejected(anyhow::Error),
    /// The command could not run: bad arguments or unreadable input (exit 2).
    Input(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Input(e)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Quote(cmd) => quote_cmd::run(cmd),
        Command::Verify(args) => verify_cmd::run(args),
        Command::Sim(cmd) => sim_cmd::run(cmd),
        Command::Bundle(cmd) => bundle_cmd::run(cmd),
        Command::Deploy(args) => deploy_cmd::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Rejected(e)) => {
            eprintln!("ee: rejected: {e:#}");
            ExitCode::from(1)
        }
        Err(Failure::Input(e)) => {
            eprintln!("ee: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
