//! `ee quote inspect` and `ee quote verify`.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use easyenclave::allowlist::Allowlist;
use easyenclave::collateral::{Collateral, MAX_COLLATERAL_JSON_BYTES};
use easyenclave::input;
use easyenclave::quote::{Quote, MAX_QUOTE_LEN};
use easyenclave::verify::{Policy, StatusName, TrustRoot, Verifier};

use crate::Failure;

/// Largest quote file accepted (real quotes are about 5 KiB).
const MAX_QUOTE_FILE: usize = 2 * MAX_QUOTE_LEN;
/// Largest root CA certificate accepted.
const MAX_ROOT_FILE: usize = 64 * 1024;
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
    /// Exits 0 only when the quote verifies and the policy holds.
    Verify(VerifyArgs),
}

#[derive(Args)]
pub struct VerifyArgs {
    /// Quote file (raw, hex or base64).
    file: PathBuf,
    /// Collateral JSON (TCB info, QE identity, CRLs and issuer chains), in the
    /// format dcap-qvl and `ee` write.
    #[arg(long, value_name = "FILE")]
    collateral: PathBuf,
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
fn read_capped(path: &Path, max: u64) -> anyhow::Result<Vec<u8>> {
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
    let collateral_json = read_capped(&args.collateral, MAX_COLLATERAL_FILE)?;
    let collateral = Collateral::from_json(&collateral_json)
        .with_context(|| format!("collateral {}", args.collateral.display()))?;
    let policy = build_policy(args)?;
    let root = match &args.root {
        Some(path) => TrustRoot::Explicit(
            input::read_binary(path, MAX_ROOT_FILE).context("--root")?,
        ),
        None => TrustRoot::IntelProduction,
    };
    let now = match args.now {
        Some(t) => t,
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("system clock is before 1970")?
            .as_secs(),
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
                println!("  MRTD:          {}", hex::encode(m.mrtd));
                for (i, r) in [m.rtmr0, m.rtmr1, m.rtmr2, m.rtmr3].iter().enumerate() {
                    println!("  RTMR{i}:         {}", hex::encode(r));
                }
                println!("  TD attributes: {:016x}", m.td_attributes);
                println!("  XFAM:          {:016x}", m.xfam);
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
        let list = Allowlist::from_json(&bytes).with_context(|| format!("allowlist {}", path.display()))?;
        policy = policy.with_allowlist(list);
    }
    Ok(policy)
}
