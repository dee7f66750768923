//! Quotes through configfs-tsm (Linux >= 6.7).
//!
//! Protocol (kernel `Documentation/ABI/testing/configfs-tsm-report`, the same
//! one Intel's libtdx_attest follows), in a fresh report directory per quote:
//!
//! 1. `mkdir report/<name>`; ENXIO means no provider is registered.
//! 2. Check `provider` reads `tdx_guest`.
//! 3. Read `generation` (g1).
//! 4. Write exactly 64 bytes of REPORTDATA to `inblob` and close it: the
//!    kernel applies the write at close and drops any error there, so
//! 5. poll `generation` until it changes and require g1 + 1 (anything else
//!    means another writer used the directory).
//! 6. Read `outblob` to EOF: this is when the quote is generated.
//! 7. Re-read `generation`: it must not have moved while we read.
//! 8. `rmdir` the directory — always, also on error (an RAII guard).
//!
//! EBUSY, EINTR, ETIMEDOUT and EAGAIN from the kernel (a GetQuote already in
//! flight, a slow host quoting service) are retried a bounded number of times,
//! each attempt in a new directory. Older kernels do not check the host's
//! answer, so an empty or short outblob is an error and the outblob must
//! parse as a TDX quote carrying the REPORTDATA we asked for.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use easyenclave::attestation::ReportData;
use easyenclave::quote::{Quote, QuoteError};

use crate::root::FsRoot;
use crate::say;

/// Guest path of the report directory.
pub const REPORT_DIR: &str = "/sys/kernel/config/tsm/report";
/// The `provider` value of the TDX guest driver.
pub const TDX_PROVIDER: &str = "tdx_guest";
/// Smallest possible v4 quote: header (48) + TD 1.0 body (584) + u32
/// signature length. Anything shorter cannot be a quote.
pub const MIN_QUOTE_LEN: usize = 48 + 584 + 4;

/// Retry and timing policy.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in total (at least 1).
    pub attempts: u32,
    /// Pause before the second attempt; doubles each time.
    pub backoff: Duration,
    /// How long to wait for `generation` to move after the inblob write.
    pub generation_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            backoff: Duration::from_millis(200),
            generation_timeout: Duration::from_secs(5),
        }
    }
}

/// A configfs-tsm failure. Messages name the file and the step.
#[derive(Debug, thiserror::Error)]
pub enum ConfigfsError {
    /// mkdir failed with ENXIO: no TSM provider (the tdx_guest driver) is registered.
    #[error("no configfs-tsm provider is registered (mkdir in {dir}: ENXIO); is the tdx_guest module loaded?")]
    NoProvider {
        /// The report directory.
        dir: PathBuf,
    },
    /// The report directory does not exist: configfs not mounted or the tsm module absent.
    #[error("configfs-tsm is not available: {dir} does not exist (configfs not mounted, or the tsm module not loaded)")]
    NotAvailable {
        /// The report directory.
        dir: PathBuf,
    },
    /// A provider other than the TDX guest driver.
    #[error("configfs-tsm provider is {found:?}, expected {TDX_PROVIDER:?}")]
    WrongProvider {
        /// What `provider` said.
        found: String,
    },
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation (mkdir, read, write, ...).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// `generation` did not hold a number.
    #[error("{path}: {text:?} is not a generation number")]
    BadGeneration {
        /// The file.
        path: PathBuf,
        /// Its contents.
        text: String,
    },
    /// `generation` moved by more than one: someone else wrote the inblob too.
    #[error("generation went from {before} to {after} (expected {expected}): another writer used the report directory")]
    GenerationRace {
        /// Before our write.
        before: u64,
        /// After it.
        after: u64,
        /// What one write gives.
        expected: u64,
    },
    /// `generation` never moved after the inblob write.
    #[error("generation stayed at {before} for {waited_ms} ms after writing inblob: the write was not applied")]
    GenerationTimeout {
        /// The value that did not change.
        before: u64,
        /// How long we waited.
        waited_ms: u128,
    },
    /// `generation` changed while the outblob was read: the quote may be for other data.
    #[error("generation changed from {before} to {after} while reading outblob")]
    ChangedDuringRead {
        /// Before the read.
        before: u64,
        /// After it.
        after: u64,
    },
    /// The kernel returned no quote.
    #[error("outblob is empty: the host quoting service returned nothing")]
    EmptyOutblob,
    /// The kernel returned fewer bytes than any quote has.
    #[error("outblob is {len} bytes, shorter than the smallest TDX quote ({MIN_QUOTE_LEN})")]
    ShortOutblob {
        /// Bytes read.
        len: usize,
    },
    /// The outblob does not parse as a TDX quote.
    #[error("outblob is not a TDX quote: {0}")]
    NotAQuote(QuoteError),
    /// The quote binds different REPORTDATA than we wrote.
    #[error("the quote's REPORTDATA differs from the 64 bytes written to inblob")]
    ReportDataMismatch,
    /// Transient errors on every attempt.
    #[error("quote failed after {attempts} attempts; last error: {last}")]
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        last: Box<ConfigfsError>,
    },
}

impl ConfigfsError {
    fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        ConfigfsError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }

    /// Whether another attempt may succeed: the kernel's "busy, try again"
    /// answers (EBUSY, EINTR, ETIMEDOUT, EAGAIN).
    pub fn is_transient(&self) -> bool {
        let ConfigfsError::Io { source, .. } = self else {
            return false;
        };
        matches!(
            source.raw_os_error().map(nix::errno::Errno::from_raw),
            Some(
                nix::errno::Errno::EBUSY
                    | nix::errno::Errno::EINTR
                    | nix::errno::Errno::ETIMEDOUT
                    | nix::errno::Errno::EAGAIN
            )
        )
    }
}

/// A report directory that is removed when dropped, whatever happened.
struct ReportDir {
    path: PathBuf,
}

impl ReportDir {
    fn create(parent: &Path) -> Result<Self, ConfigfsError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "ee-init-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = parent.join(name);
        match fs::create_dir(&path) {
            Ok(()) => Ok(ReportDir { path }),
            Err(e) if e.raw_os_error() == Some(nix::libc::ENXIO) => {
                Err(ConfigfsError::NoProvider {
                    dir: parent.to_owned(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ConfigfsError::NotAvailable {
                dir: parent.to_owned(),
            }),
            Err(e) => Err(ConfigfsError::io("mkdir", &path, e)),
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for ReportDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir(&self.path) {
            say!("configfs-tsm: rmdir {}: {e}", self.path.display());
        }
    }
}

/// Quote generation through a configfs-tsm report directory.
#[derive(Debug, Clone)]
pub struct ConfigfsQuotes {
    dir: PathBuf,
    retry: RetryPolicy,
}

impl ConfigfsQuotes {
    /// Check that a TDX provider is registered (a throw-away report
    /// directory whose `provider` reads `tdx_guest`).
    pub fn probe(root: &FsRoot, retry: RetryPolicy) -> Result<Self, ConfigfsError> {
        let quotes = ConfigfsQuotes {
            dir: root.path(REPORT_DIR),
            retry,
        };
        let probe = ReportDir::create(&quotes.dir)?;
        check_provider(&probe)?;
        Ok(quotes)
    }

    /// A fresh quote binding `report_data`, with bounded retries.
    pub fn quote(&self, report_data: &ReportData) -> Result<Vec<u8>, ConfigfsError> {
        let attempts = self.retry.attempts.max(1);
        let mut pause = self.retry.backoff;
        let mut attempt = 1;
        loop {
            match self.quote_once(report_data) {
                Err(e) if e.is_transient() && attempt < attempts => {
                    say!("configfs-tsm: attempt {attempt}/{attempts}: {e}; retrying");
                    std::thread::sleep(pause);
                    pause = pause.saturating_mul(2);
                    attempt += 1;
                }
                Err(e) if e.is_transient() => {
                    return Err(ConfigfsError::Exhausted {
                        attempts,
                        last: Box::new(e),
                    })
                }
                other => return other,
            }
        }
    }

    fn quote_once(&self, report_data: &ReportData) -> Result<Vec<u8>, ConfigfsError> {
        let report = ReportDir::create(&self.dir)?;
        check_provider(&report)?;
        let generation = report.file("generation");
        let before = read_generation(&generation)?;

        let inblob = report.file("inblob");
        let mut file = OpenOptions::new()
            .write(true)
            .open(&inblob)
            .map_err(|e| ConfigfsError::io("open", &inblob, e))?;
        file.write_all(report_data)
            .map_err(|e| ConfigfsError::io("write", &inblob, e))?;
        drop(file); // close(): the kernel applies the write now.

        let after = self.wait_for_generation_change(&generation, before)?;
        let expected = before.saturating_add(1);
        if after != expected {
            return Err(ConfigfsError::GenerationRace {
                before,
                after,
                expected,
            });
        }

        let outblob = report.file("outblob");
        let quote = fs::read(&outblob).map_err(|e| ConfigfsError::io("read", &outblob, e))?;
        let last = read_generation(&generation)?;
        if last != after {
            return Err(ConfigfsError::ChangedDuringRead {
                before: after,
                after: last,
            });
        }
        check_quote(&quote, report_data)?;
        Ok(quote)
    }

    fn wait_for_generation_change(&self, path: &Path, before: u64) -> Result<u64, ConfigfsError> {
        let start = Instant::now();
        let mut pause = Duration::from_micros(200);
        loop {
            let now = read_generation(path)?;
            if now != before {
                return Ok(now);
            }
            let waited = start.elapsed();
            if waited >= self.retry.generation_timeout {
                return Err(ConfigfsError::GenerationTimeout {
                    before,
                    waited_ms: waited.as_millis(),
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }
}

fn check_provider(report: &ReportDir) -> Result<(), ConfigfsError> {
    let path = report.file("provider");
    let found = fs::read_to_string(&path).map_err(|e| ConfigfsError::io("read", &path, e))?;
    let found = found.trim_end_matches('\n');
    if found != TDX_PROVIDER {
        return Err(ConfigfsError::WrongProvider {
            found: found.to_owned(),
        });
    }
    Ok(())
}

fn read_generation(path: &Path) -> Result<u64, ConfigfsError> {
    let text = fs::read_to_string(path).map_err(|e| ConfigfsError::io("read", path, e))?;
    text.trim_end_matches('\n')
        .parse()
        .map_err(|_| ConfigfsError::BadGeneration {
            path: path.to_owned(),
            text,
        })
}

/// The outblob must be a whole TDX quote for our REPORTDATA.
fn check_quote(bytes: &[u8], report_data: &ReportData) -> Result<(), ConfigfsError> {
    if bytes.is_empty() {
        return Err(ConfigfsError::EmptyOutblob);
    }
    if bytes.len() < MIN_QUOTE_LEN {
        return Err(ConfigfsError::ShortOutblob { len: bytes.len() });
    }
    let quote = Quote::parse(bytes).map_err(ConfigfsError::NotAQuote)?;
    if &quote.body().td10().report_data != report_data {
        return Err(ConfigfsError::ReportDataMismatch);
    }
    Ok(())
}
