//! `ee quote inspect` and `ee quote verify`.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use easyenclave::allowlist::Allowlist;
use easyenclave::collateral::{
    default_cache_dir, fetch, fmspc_and_ca_from_quote, CacheKey, Collateral, CollateralCache,
    CollateralSource, FetchOptions, Provenance, MAX_COLLATERAL_JSON_BYTES,
};
use easyenclave::input;
use easyenclave::quote::{Quote, MAX_QUOTE_LEN};
use easyenclave::verify::{Policy, StatusName, TrustRoot, Verifier};

use crate::Failure;

/// Largest quote file accepted (real quotes are about 5 KiB).
const MAX_QUOTE_FILE: usize = 2 * MAX_QUOTE_LEN;
/// Largest allowlist accepted.
const MAX_ALLOWLIST_FILE: u64 = 1024 * 1024;
/// Largest collateral file accepted.
const MAX_COLLATERAL_FILE: u64 = MAX_COLLATERAL_JSON_BYTES as u64;

#[derive(Subcommand)]
pub enum QuoteCommand {
    /// Print every field of a TDX quote (v4 or v5).
    ///
    /// The file may hold the quote as raw bytes, hex or base64.
    Inspect {
        /// Quote file (raw, hex or base64).
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Verify a TDX quote with Intel DCAP and check it against a policy.
    ///
    /// Exits 0 only when the quote verifies and the policy holds; 1 when it is
    /// rejected, with the failed check named; 2 on bad arguments or input.
    #[command(after_long_help = VERIFY_EXAMPLES)]
    Verify(VerifyArgs),
}

const VERIFY_EXAMPLES: &str = "\
Examples:
  # Verify with collateral from Intel PCS (cached under ~/.cache/easyenclave):
  ee quote verify quote.bin

  # Offline, with a collateral file, as of a fixed time:
  ee quote verify quote.hex --collateral collateral.json --now 1750329200

  # Also accept a platform that needs a software hardening update, except
  # when it carries a given advisory, and require known measurements:
  ee quote verify quote.b64 --accept-status SWHardeningNeeded \\
      --reject-advisory INTEL-SA-00837 --allowlist allowlist.json

  # A simulated-platform quote (dev images): trust its root explicitly:
  ee quote verify sim.quote --collateral sim-collateral.json --root sim-root.der";

#[derive(Args)]
pub struct VerifyArgs {
    /// Quote file (raw, hex or base64).
    file: PathBuf,
    /// Collateral JSON (TCB info, QE identity, CRLs and issuer chains), in the
    /// format dcap-qvl and `ee` write. Without it, collateral comes from the
    /// cache or, when the cache has none valid now, from --pccs or Intel PCS.
    #[arg(long, value_name = "FILE")]
    collateral: Option<PathBuf>,
    /// Fetch collateral from this PCCS instead of Intel PCS
    /// (https://api.trustedservices.intel.com).
    #[arg(long, value_name = "URL", conflicts_with = "collateral")]
    pccs: Option<String>,
    /// Collateral cache directory [default: $XDG_CACHE_HOME/easyenclave/collateral].
    #[arg(long, value_name = "DIR", conflicts_with = "collateral")]
    cache_dir: Option<PathBuf>,
    /// Verify as of this time (Unix seconds) instead of now. Collateral is only
    /// valid within its own issue and next-update dates.
    #[arg(long, value_name = "UNIX_SECONDS")]
    now: Option<u64>,
    /// Trust this root CA (DER) instead of Intel's production root, e.g. the
    /// simulated platform's root in tests.
    #[arg(long, value_name = "CA.der")]
    root: Option<PathBuf>,
    /// Also accept this TCB status (repeatable). Default: only UpToDate.
    #[arg(long = "accept-status", value_name = "STATUS")]
    accept_status: Vec<String>,
    /// Reject quotes whose TCB level lists this advisory id (repeatable).
    #[arg(long = "reject-advisory", value_name = "ID")]
    reject_advisory: Vec<String>,
    /// Accept DEBUG TDs (dev images only; a DEBUG TD's memory is readable by the host).
    #[arg(long)]
    allow_debug: bool,
    /// Require MRTD, RTMR0-2, XFAM and TD attributes to match this allowlist.
    #[arg(long, value_name = "FILE")]
    allowlist: Option<PathBuf>,
    /// Print the verification result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: QuoteCommand) -> Result<(), Failure> {
    match cmd {
        QuoteCommand::Inspect { file, json } => inspect(&file, json),
        QuoteCommand::Verify(args) => verify(&args),
    }
}

fn read_quote(file: &Path) -> anyhow::Result<Vec<u8>> {
    Ok(input::read_binary(file, MAX_QUOTE_FILE)?)
}

/// Read a text file (JSON), refusing files over `max` bytes before reading them whole.
pub(crate) fn read_capped(path: &Path, max: u64) -> anyhow::Result<Vec<u8>> {
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() as u64 > max {
        bail!("{} is too large: the limit is {max} bytes", path.display());
    }
    Ok(bytes)
}

fn inspect(file: &Path, json: bool) -> Result<(), Failure> {
    let bytes = read_quote(file)?;
    let quote = Quote::parse(&bytes).with_context(|| format!("{}", file.display()))?;
    if json {
        let text = serde_json::to_string_pretty(&quote).context("encoding JSON")?;
        println!("{text}");
    } else {
        print!("{}", quote.render_text());
    }
    Ok(())
}

fn verify(args: &VerifyArgs) -> Result<(), Failure> {
    let quote = read_quote(&args.file)?;
    let policy = build_policy(args)?;
    let root = match &args.root {
        Some(path) => TrustRoot::Explicit(crate::trust_args::root_certificate(path)?),
        None => TrustRoot::IntelProduction,
    };
    let now = match args.now {
        Some(t) => t,
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("system clock is before 1970")?
            .as_secs(),
    };
    let collateral = match &args.collateral {
        Some(path) => {
            let json = read_capped(path, MAX_COLLATERAL_FILE)?;
            Collateral::from_json(&json)
                .with_context(|| format!("collateral {}", path.display()))?
        }
        None => collateral_from_service(args, &quote, now)?,
    };
    let verifier = Verifier::with_root(root, policy);
    match verifier.verify(&quote, &collateral, now) {
        Ok(verified) => {
            if args.json {
                let mut doc = serde_json::to_value(&verified).context("encoding JSON")?;
                doc["verified"] = true.into();
                println!("{doc:#}");
            } else {
                println!("OK: quote verified");
                println!("  TCB status:    {}", verified.status);
                println!(
                    "  advisory ids:  {}",
                    if verified.advisory_ids.is_empty() {
                        "none".to_string()
                    } else {
                        verified.advisory_ids.join(", ")
                    }
                );
                let m = &verified.measurements;
                println!("  MRTD:          {}", hex::encode(m.mr_td));
                for (i, r) in [m.rtmr0, m.rtmr1, m.rtmr2, m.rtmr3].iter().enumerate() {
                    println!("  RTMR{i}:         {}", hex::encode(r));
                }
                println!("  TD attributes: {}", m.td_attributes);
                println!("  XFAM:          {:016x}", u64::from_le_bytes(m.xfam));
                if let Some(entry) = &verified.allowlist_entry {
                    println!("  allowlist:     matched {entry}");
                }
            }
            Ok(())
        }
        Err(e) => {
            if args.json {
                let doc = serde_json::json!({ "verified": false, "error": e.to_string() });
                println!("{doc:#}");
            }
            Err(Failure::Rejected(anyhow!(e)))
        }
    }
}

/// Collateral for `quote` from the cache, or fetched and cached when the
/// cache holds none that is valid at `now`.
fn collateral_from_service(
    args: &VerifyArgs,
    quote: &[u8],
    now: u64,
) -> Result<Collateral, Failure> {
    let (fmspc, ca) = fmspc_and_ca_from_quote(quote)
        .map_err(|e| Failure::Rejected(anyhow!("cannot read the PCK certificate: {e}")))?;
    let source = match &args.pccs {
        Some(url) => CollateralSource::Pccs(url.clone()),
        None => CollateralSource::IntelPcs,
    };
    let dir = match args.cache_dir.clone().or_else(default_cache_dir) {
        Some(dir) => dir,
        None => {
            return Err(
                anyhow!("no cache directory: set --cache-dir, XDG_CACHE_HOME or HOME").into(),
            )
        }
    };
    let cache = CollateralCache::new(dir);
    let key = CacheKey::new(source.clone(), fmspc, ca);
    let obtained = cache
        .get_or_fetch(&key, now, |key| {
            eprintln!(
                "ee: fetching collateral for FMSPC {fmspc} from {}",
                key.source.base_url()
            );
            fetch(&key.source, fmspc, ca, None, &FetchOptions::default())
        })
        .context("fetching collateral")?;
    if let Provenance::Fetched { stored: Err(e), .. } = &obtained.provenance {
        eprintln!("ee: warning: collateral not cached: {e}");
    }
    Ok(obtained.collateral)
}

fn build_policy(args: &VerifyArgs) -> anyhow::Result<Policy> {
    let mut policy = Policy::default().allow_debug(args.allow_debug);
    for s in &args.accept_status {
        policy = policy.accept_status(StatusName::parse(s).context("--accept-status")?);
    }
    for id in &args.reject_advisory {
        policy = policy.reject_advisory(id);
    }
    if let Some(path) = &args.allowlist {
        let bytes = read_capped(path, MAX_ALLOWLIST_FILE)?;
        let list = Allowlist::from_json(&bytes)
            .with_context(|| format!("allowlist {}", path.display()))?;
        policy = policy.with_allowlist(list);
    }
    Ok(policy)
}
