//! `ee verify OWNER/REPO`: verify a repo's published deployment with
//! [`easyenclave::connect`].
//!
//! This module holds the arguments and the options they make; each mode is a
//! module of its own, all reporting through the same exit codes:
//!
//! - [`published`]: what the agent published on the repo's newest deploy
//!   release (the default);
//! - [`get`]: `--get PATH`, after the published check, opens the verified
//!   client to the published endpoint ([`easyenclave::connect::open`]) and
//!   fetches PATH from the live TD, pinned to its attested TLS key;
//! - [`live`]: `--agent URL`, the live check of a running agent instead:
//!   RA-TLS and a fresh nonce, through `easyenclave::agent`.

mod get;
mod live;
mod published;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use easyenclave::allowlist::Variant;
use easyenclave::collateral::{
    Collateral, CollateralCache, CollateralSource, MAX_COLLATERAL_JSON_BYTES,
};
use easyenclave::connect::{CollateralChoice, ConnectOptions, DEFAULT_MAX_AGE};
use easyenclave::github::RepoName;
use easyenclave::launch::DEFAULT_GITHUB_API_URL;
use easyenclave::verify::{Policy, StatusName, TrustRoot};

use crate::quote_cmd::read_capped;
use crate::trust_args::{
    parse_repo, parse_variant, publishers_or_official, root_certificate, sim_collateral, sim_pki,
};
use crate::Failure;

/// `--max-age` default: the library's `easyenclave::connect::DEFAULT_MAX_AGE`
/// (a unit test keeps them equal).
#[cfg(test)]
const DEFAULT_MAX_AGE_ARG: &str = "30d";

const EXAMPLES: &str = "\
Examples:
  # A service on github.com, verified against Intel's root (collateral from
  # Intel PCS, cached under ~/.cache/easyenclave):
  ee verify acme/hello

  # Require a known bundle, as JSON; images from another publisher than the
  # project's own releases need --allowlist-publisher OWNER/REPO:
  ee verify acme/hello --expect-bundle 3f0a...c9 --json

  # A dev deployment on the simulated platform and a local test server:
  ee verify acme/hello --root sim --api-url http://127.0.0.1:8080/api/v3

  # Then call the service through the verified client (the agent proxies
  # /app/... to the workload), pinned to the attested TLS key:
  ee verify acme/hello --root sim --api-url http://127.0.0.1:8080/api/v3 --get /app/

  # Attest a running agent directly, with a fresh nonce, against an allowlist
  # (before its first deploy it runs nothing and is not sealed yet):
  ee verify acme/hello --agent https://10.0.0.5:8443 --allowlist allowlist.json \\
      --allow-unsealed

Exit status: 0 verified; 1 rejected (the failed check is named); 2 bad input,
or the check could not run (network, unreadable file).";

/// `ee verify` arguments.
#[derive(Args)]
#[command(after_long_help = EXAMPLES)]
pub struct VerifyArgs {
    /// The app repo whose deployment to verify.
    #[arg(value_name = "OWNER/REPO")]
    repo: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// GitHub REST API base URL (a GitHub Enterprise Server's `https://HOST/api/v3`,
    /// or a test server).
    #[arg(long, value_name = "URL", default_value = DEFAULT_GITHUB_API_URL)]
    api_url: String,
    /// The GitHub API the TD must have been launched with, when it reaches
    /// GitHub at another address than --api-url (a dev TD behind QEMU's NAT
    /// reaching a local test server) [default: --api-url].
    #[arg(long, value_name = "URL")]
    td_api_url: Option<String>,
    /// The OIDC issuer the TD may accept deploy tokens from (a GitHub
    /// Enterprise Server's, or a test server's).
    #[arg(long, value_name = "URL", default_value = easyenclave::launch::DEFAULT_OIDC_ISSUER)]
    oidc_issuer: String,
    /// Read a GitHub token from this environment variable (private repos,
    /// rate limits). It is sent only to the API's own origin.
    #[arg(long, value_name = "VAR")]
    token_env: Option<String>,
    /// Root CA the quote must chain to: `intel` (production), `sim` (the
    /// simulated platform of dev images; implies --accept-variant sim and,
    /// without --collateral, --pccs or --cache-dir, collateral made for it),
    /// or a DER file.
    #[arg(long, value_name = "intel|sim|CA.der", default_value = "intel", value_parser = parse_root)]
    root: RootArg,
    /// Collateral JSON (the format `ee quote verify` reads). Without it,
    /// collateral comes from the cache or, when stale, from --pccs or Intel PCS.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["pccs", "cache_dir"])]
    collateral: Option<PathBuf>,
    /// Fetch collateral from this PCCS instead of Intel PCS.
    #[arg(long, value_name = "URL")]
    pccs: Option<String>,
    /// Collateral cache directory [default: $XDG_CACHE_HOME/easyenclave/collateral].
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Verify as of this time (Unix seconds) instead of now.
    #[arg(long, value_name = "UNIX_SECONDS")]
    now: Option<u64>,
    /// Require the running bundle to have this digest (64 hex digits, as
    /// `ee bundle digest` prints it).
    #[arg(long, value_name = "HEX", value_parser = parse_digest)]
    expect_bundle: Option<[u8; 32]>,
    /// Accept a deployment that was not sealed.
    #[arg(long)]
    allow_unsealed: bool,
    /// Require every image of the running bundle to be carried in the bundle
    /// or pinned by @sha256 digest (its bundle event's images_pinned).
    #[arg(long)]
    require_pinned: bool,
    /// Oldest attestation accepted: a number with a unit s, m, h or d
    /// [default: 30d]. Published mode only: a live agent's quote is made now.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    max_age: Option<Duration>,
    /// The allowlist to trust, from a local file: the images it lists are
    /// accepted whoever published it. Published mode: used instead of
    /// downloading the attestation's allowlist, whose SHA-256 it must have.
    /// With --agent: required (a live agent names no allowlist).
    #[arg(long, value_name = "FILE")]
    allowlist: Option<PathBuf>,
    /// Accept only allowlists published as release assets of this repo
    /// (repeatable) [default: easy-enclave/easy-enclave, the project's own
    /// image releases]. Published mode only.
    #[arg(long = "allowlist-publisher", value_name = "OWNER/REPO", value_parser = parse_repo)]
    allowlist_publishers: Vec<RepoName>,
    /// Also accept this TCB status (repeatable). Default: only UpToDate.
    #[arg(long = "accept-status", value_name = "STATUS", value_parser = parse_status)]
    accept_status: Vec<StatusName>,
    /// Reject platforms whose TCB level lists this advisory id (repeatable).
    #[arg(long = "reject-advisory", value_name = "ID")]
    reject_advisory: Vec<String>,
    /// Accept DEBUG TDs (dev images only: the host can read a DEBUG TD's memory).
    #[arg(long)]
    allow_debug: bool,
    /// Also accept images of this variant (repeatable). Default: production only.
    #[arg(long = "accept-variant", value_name = "dev|sim", value_parser = parse_variant)]
    accept_variant: Vec<Variant>,
    /// After verifying the publication, GET this path from the live TD at the
    /// published endpoint through the verified client (RA-TLS, pinned key,
    /// same TD and bundle as published) and print the body. The summary goes
    /// to stderr.
    #[arg(long, value_name = "PATH", conflicts_with = "agent")]
    get: Option<String>,
    /// Attest this running agent live (RA-TLS certificate and a fresh nonce)
    /// instead of reading the publication: its quote must verify, match
    /// --allowlist (required), replay its event log, be bound to OWNER/REPO
    /// and --api-url, run --expect-bundle if given, and be sealed unless
    /// --allow-unsealed. --max-age, --now, --token-env and
    /// --allowlist-publisher do not apply and are refused.
    #[arg(long, value_name = "https://HOST:PORT")]
    agent: Option<String>,
}

/// The `--root` choice.
#[derive(Clone, Debug)]
enum RootArg {
    Intel,
    Sim,
    File(PathBuf),
}

fn parse_root(text: &str) -> Result<RootArg, String> {
    Ok(match text {
        "intel" => RootArg::Intel,
        "sim" => RootArg::Sim,
        "" => return Err("expected intel, sim or a file".to_owned()),
        path => RootArg::File(PathBuf::from(path)),
    })
}

fn parse_digest(text: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(text.trim()).map_err(|e| format!("not hex: {e}"))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("{} bytes, expected 32 (64 hex digits)", bytes.len()))
}

/// `90s`, `30m`, `24h`, `7d`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit; use s, m, h or d (e.g. 24h)"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a number"))?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => return Err(format!("unknown unit {other:?}; use s, m, h or d")),
    };
    number
        .checked_mul(unit_secs)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long"))
}

fn parse_status(text: &str) -> Result<StatusName, String> {
    StatusName::parse(text).map_err(|e| e.to_string())
}

/// Run `ee verify`.
pub fn run(args: VerifyArgs) -> Result<(), Failure> {
    match &args.agent {
        Some(url) => live::verify_live(&args, url),
        None => published::verify_published(&args),
    }
}

fn options(args: &VerifyArgs) -> anyhow::Result<ConnectOptions> {
    let mut policy = Policy::default().allow_debug(args.allow_debug);
    for status in &args.accept_status {
        policy = policy.accept_status(*status);
    }
    for id in &args.reject_advisory {
        policy = policy.reject_advisory(id);
    }
    let mut accepted_variants = vec![Variant::Production];
    accepted_variants.extend(&args.accept_variant);
    let (trust_root, sim) = match &args.root {
        RootArg::Intel => (TrustRoot::IntelProduction, None),
        RootArg::File(path) => (TrustRoot::Explicit(root_certificate(path)?), None),
        RootArg::Sim => {
            let pki = sim_pki()?;
            accepted_variants.push(Variant::Sim);
            (TrustRoot::Explicit(pki.root_ca_der().to_vec()), Some(pki))
        }
    };
    let collateral = match (&args.collateral, &sim) {
        (Some(path), _) => {
            let json = read_capped(path, MAX_COLLATERAL_JSON_BYTES as u64)?;
            CollateralChoice::Given(
                Collateral::from_json(&json)
                    .with_context(|| format!("collateral {}", path.display()))?,
            )
        }
        (None, Some(pki)) if args.pccs.is_none() && args.cache_dir.is_none() => {
            let now = match args.now {
                Some(now) => now,
                None => SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .context("system clock is before 1970")?
                    .as_secs(),
            };
            CollateralChoice::Given(sim_collateral(pki, now)?)
        }
        (None, _) => CollateralChoice::Service {
            source: match &args.pccs {
                Some(url) => CollateralSource::Pccs(url.clone()),
                None => CollateralSource::IntelPcs,
            },
            cache: args.cache_dir.clone().map(CollateralCache::new),
        },
    };
    let github_token = match &args.token_env {
        Some(var) => {
            Some(std::env::var(var).with_context(|| format!("--token-env: reading ${var}"))?)
        }
        None => None,
    };
    Ok(ConnectOptions {
        github_api_url: args.api_url.clone(),
        td_github_api_url: args.td_api_url.clone(),
        oidc_issuer: args.oidc_issuer.clone(),
        github_token,
        trust_root,
        policy,
        accepted_variants,
        allowlist_publishers: publishers_or_official(&args.allowlist_publishers),
        allowlist_override: args.allowlist.clone(),
        collateral,
        expect_bundle: args.expect_bundle,
        allow_unsealed: args.allow_unsealed,
        require_pinned: args.require_pinned,
        max_age: args.max_age.unwrap_or(DEFAULT_MAX_AGE),
        now: args.now,
        ..ConnectOptions::default()
    })
}

/// Whether a bundle's images are fixed by its digest, for the summaries.
fn pinned_text(bundle: &easyenclave::eventlog::BundleEvent) -> &'static str {
    if bundle.images_pinned {
        "images: every one carried in the bundle or pinned by @sha256 digest"
    } else {
        "images: some pulled by tag or built, not fixed by the bundle digest \
         (--require-pinned refuses this)"
    }
}

fn variant_name(variant: Variant) -> &'static str {
    match variant {
        Variant::Production => "production",
        Variant::Dev => "dev",
        Variant::Sim => "sim",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_a_unit() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        for bad in ["", "24", "h", "1.5h", "-1h", "2w", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_duration(DEFAULT_MAX_AGE_ARG), Ok(DEFAULT_MAX_AGE));
    }

    #[test]
    fn digests_are_64_hex_digits() {
        assert_eq!(parse_digest(&"ab".repeat(32)), Ok([0xab; 32]));
        assert!(parse_digest("abcd").unwrap_err().contains("2 bytes"));
        assert!(parse_digest("zz").is_err());
    }
}
