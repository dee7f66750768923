//! `ee verify OWNER/REPO --get PATH`: after the published deployment
//! verified, GET PATH from the live TD through the verified client, pinned to
//! the attested TLS key.

use std::io::Write as _;

use anyhow::{anyhow, Context};
use easyenclave::connect::{ConnectOptions, VerifiedService};
use sha2::{Digest, Sha256};

use crate::Failure;

/// Open the verified client to the published endpoint and GET `path`; the
/// body goes to stdout. A non-2xx answer is a rejection (exit 1).
pub(super) fn get_through_verified_client(
    service: &VerifiedService,
    options: &ConnectOptions,
    path: &str,
) -> Result<(), Failure> {
    let client = easyenclave::connect::open(service, options).map_err(|e| {
        let error = anyhow!("check {} failed: {e}", e.check());
        if e.is_rejection() {
            Failure::Rejected(error)
        } else {
            Failure::Input(error)
        }
    })?;
    eprintln!(
        "  live TD:     same registers and bundle as published; TLS key pinned (spki sha256 {})",
        hex::encode(Sha256::digest(client.pinned_spki_der()))
    );
    let response = client
        .request("GET", path, &[], &[])
        .map_err(|e| Failure::Input(anyhow!("GET {path}: {e}")))?;
    eprintln!("  GET {path}: {}", response.status);
    std::io::stdout()
        .write_all(&response.body)
        .context("writing the body")?;
    if !(200..300).contains(&response.status) {
        return Err(Failure::Rejected(anyhow!(
            "GET {path} through the verified client answered {}",
            response.status
        )));
    }
    Ok(())
}
