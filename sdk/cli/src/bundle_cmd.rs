//! `ee bundle`: the canonical digest of a deploy bundle, deterministic
//! bundle zips, and safe extraction of a bundle zip (e.g. a downloaded
//! Actions artifact) to see what an agent will measure.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
use easyenclave::bundle::{self, BundleManifest, Limits};

use crate::Failure;

#[derive(Subcommand)]
pub enum BundleCommand {
    /// Print the bundle digest of a directory (what the agent extends into
    /// RTMR3 for the same files).
    ///
    /// Every regular file counts (hidden ones too); symbolic links, special
    /// files and empty directories are refused. See `sdk/README.md` for the
    /// format.
    Digest {
        /// The bundle directory.
        dir: PathBuf,
        /// Print `{"digest": ..., "manifest": {...}}` instead of the hex digest.
        #[arg(long)]
        json: bool,
    },
    /// Write a deterministic zip of a bundle directory (for inline deploys)
    /// and print its bundle digest.
    Zip {
        /// The bundle directory.
        dir: PathBuf,
        /// Output zip file.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Extract a bundle zip with the agent's checks and limits, and print its
    /// bundle digest.
    Extract {
        /// The zip (e.g. a downloaded Actions artifact).
        zip: PathBuf,
        /// Directory to create (must not exist).
        #[arg(long, value_name = "DIR")]
        into: PathBuf,
        /// Print `{"digest": ..., "manifest": {...}}` instead of the hex digest.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: BundleCommand) -> Result<(), Failure> {
    match cmd {
        BundleCommand::Digest { dir, json } => {
            let manifest =
                bundle::digest_dir(&dir).with_context(|| format!("digesting {}", dir.display()))?;
            print_digest(&manifest, json)?;
        }
        BundleCommand::Zip { dir, out } => {
            let (zip, manifest) = bundle::zip_dir_with_manifest(&dir)
                .with_context(|| format!("zipping {}", dir.display()))?;
            write_new(&out, &zip)?;
            eprintln!(
                "wrote {} ({} bytes, {} files)",
                out.display(),
                zip.len(),
                manifest.files().len()
            );
            print_digest(&manifest, false)?;
        }
        BundleCommand::Extract { zip, into, json } => {
            let limits = Limits::default();
            let bytes = read_zip(&zip, limits.max_zip_bytes)?;
            let manifest = bundle::extract_zip(&bytes, &into, &limits)
                .with_context(|| format!("extracting {}", zip.display()))?;
            print_digest(&manifest, json)?;
        }
    }
    Ok(())
}

fn print_digest(manifest: &BundleManifest, json: bool) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    if json {
        let doc = serde_json::json!({
            "digest": manifest.digest_hex(),
            "manifest": manifest,
        });
        serde_json::to_writer_pretty(&mut stdout, &doc).context("writing JSON")?;
        writeln!(stdout)?;
    } else {
        writeln!(stdout, "{}", manifest.digest_hex())?;
    }
    Ok(())
}

/// Read at most `max` bytes of `path`; a longer file is refused before it is
/// read whole.
fn read_zip(path: &Path, max: u64) -> anyhow::Result<Vec<u8>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > max {
        bail!("{} is over the {max}-byte zip limit", path.display());
    }
    Ok(bytes)
}

/// Write `bytes` to a new file next to `path`, then rename it over `path`, so
/// an interrupted run never leaves a half-written zip.
fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let Some(name) = path.file_name() else {
        bail!("{} is not a file path", path.display());
    };
    let mut tmp_name = name.to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}
