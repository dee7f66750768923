//! `ee-control`: the Easy Enclave control plane (not yet implemented).

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "ee-control {}: the control plane is not implemented yet; see control/README.md",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(2)
}
