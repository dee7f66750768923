//! What `ee quote verify`, `ee deploy` and `ee verify` share about trust: a
//! root CA read from a file, and the simulated platform with the collateral
//! made for it (`--root sim`).

use std::path::Path;

use anyhow::Context;
use base64::Engine as _;
use easyenclave::collateral::Collateral;
use easyenclave::input;
use easyenclave::sim::pki::SimPki;
use easyenclave::sim::DEV_SEED;

use crate::quote_cmd::read_capped;

/// Largest root CA certificate file accepted.
const MAX_ROOT_FILE: u64 = 64 * 1024;
/// How long collateral made for the simulated platform is valid.
const SIM_COLLATERAL_SECS: u64 = 24 * 3600;

/// A root CA certificate file: PEM, or DER as raw bytes, hex or base64.
pub fn root_certificate(path: &Path) -> anyhow::Result<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let bytes = read_capped(path, MAX_ROOT_FILE).context("--root")?;
    let context = || format!("--root {}", path.display());
    if let Some(text) = std::str::from_utf8(&bytes)
        .ok()
        .filter(|t| t.contains(BEGIN))
    {
        let body = text
            .split_once(BEGIN)
            .and_then(|(_, rest)| rest.split_once(END))
            .map(|(body, _)| body)
            .context("PEM certificate without an END line")
            .with_context(context)?;
        let base64: String = body.split_whitespace().collect();
        return base64::engine::general_purpose::STANDARD
            .decode(base64)
            .context("PEM certificate body is not base64")
            .with_context(context);
    }
    input::decode_binary(bytes).with_context(context)
}

/// The simulated platform of dev images (public seed).
pub fn sim_pki() -> anyhow::Result<SimPki> {
    SimPki::from_seed(DEV_SEED).context("building the simulated platform")
}

/// Collateral for the simulated platform, valid from a minute before `now`
/// (Unix seconds) for a day.
pub fn sim_collateral(pki: &SimPki, now: u64) -> anyhow::Result<Collateral> {
    let made = pki
        .collateral(
            now.saturating_sub(60),
            now.saturating_add(SIM_COLLATERAL_SECS),
        )
        .context("making collateral for the simulated platform")?;
    Ok(Collateral::from(made))
}

/// `--accept-variant`: an image variant by name.
pub fn parse_variant(text: &str) -> Result<easyenclave::allowlist::Variant, String> {
    use easyenclave::allowlist::Variant;
    match text {
        "production" => Ok(Variant::Production),
        "dev" => Ok(Variant::Dev),
        "sim" => Ok(Variant::Sim),
        other => Err(format!("unknown variant {other:?} (production, dev, sim)")),
    }
}

/// `--allowlist-publisher`: `OWNER/REPO`.
pub fn parse_repo(text: &str) -> Result<easyenclave::github::RepoName, String> {
    easyenclave::github::RepoName::parse(text).map_err(|e| e.to_string())
}

/// `--allowlist-publisher` values, or the project's own image releases when
/// none is given (`easyenclave::connect::OFFICIAL_IMAGE_PUBLISHER`).
pub fn publishers_or_official(
    given: &[easyenclave::github::RepoName],
) -> Vec<easyenclave::github::RepoName> {
    if given.is_empty() {
        easyenclave::connect::ConnectOptions::default().allowlist_publishers
    } else {
        given.to_vec()
    }
}
