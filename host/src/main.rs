//! `ee-host`: launch and manage Easy Enclave trust domains (not yet implemented).

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "ee-host {}: launching trust domains is not implemented yet; see host/README.md",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(2)
}
