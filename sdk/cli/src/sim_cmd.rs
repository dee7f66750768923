//! `ee sim`: the simulated platform's trust root and collateral, for
//! verifying quotes from dev images built with the `sim` backend.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Subcommand;
use easyenclave::collateral::Collateral;
use easyenclave::sim::pki::SimPki;
use easyenclave::sim::DEV_SEED;

use crate::Failure;

#[derive(Subcommand)]
pub enum SimCommand {
    /// Write the simulated platform's root CA certificate (DER).
    ///
    /// Pass it to `ee quote verify --root` to accept quotes from a dev image
    /// built with the sim backend. The sim's seed is public: anyone can make
    /// quotes that chain to this root. Never trust it for production.
    Root {
        /// Output file.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Write collateral (TCB info, QE identity, CRLs) for simulated quotes.
    Collateral {
        /// Output file (JSON, the format `ee quote verify --collateral` reads).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Issue time (Unix seconds) [default: now].
        #[arg(long, value_name = "UNIX_SECONDS")]
        issued: Option<u64>,
        /// Days until the collateral's next update.
        #[arg(long, value_name = "DAYS", default_value_t = 30)]
        valid_days: u64,
    },
}

pub fn run(cmd: SimCommand) -> Result<(), Failure> {
    let pki = SimPki::from_seed(DEV_SEED).context("building the simulated platform")?;
    match cmd {
        SimCommand::Root { out } => write_new(&out, pki.root_ca_der())?,
        SimCommand::Collateral {
            out,
            issued,
            valid_days,
        } => {
            let issued = match issued {
                Some(t) => t,
                None => SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .context("system clock is before 1970")?
                    .as_secs(),
            };
            let next_update = valid_days
                .checked_mul(86_400)
                .and_then(|secs| issued.checked_add(secs))
                .context("--issued plus --valid-days overflows")?;
            let collateral = Collateral::from(
                pki.collateral(issued, next_update)
                    .context("making sim collateral")?,
            );
            write_new(&out, &collateral.to_json())?;
        }
    }
    Ok(())
}

/// Write `bytes` to a new file next to `path`, then rename it over `path`, so
/// an interrupted run never leaves a half-written file.
fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let Some(name) = path.file_name() else {
        bail!("{} is not a file path", path.display());
    };
    let mut tmp_name = name.to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
