//! On-disk collateral cache that serves a bundle only while the bundle's own
//! validity window (see [`Collateral::validity`]) contains the caller's time,
//! and for at most [`DEFAULT_REFRESH`] (configurable) after it was fetched:
//! Intel's CRLs and TCB info are valid for about a month, but a revocation
//! must reach verifiers within a day, not within the bundle's own month.
//!
//! One file per (source, FMSPC, PCK CA), replaced atomically, so readers
//! never see a half-written entry and a damaged file is only a cache miss.
//!
//! A long-running verifier checks many quotes against the same bundle, so
//! each cache also keeps the bundles it has read or written in memory,
//! together with their validity window: a warm lookup then costs a map
//! lookup and a clone, not a file read, a JSON parse and X.509 parsing of
//! every CRL and certificate. Clones of a cache share that memory.

use std::collections::HashMap;
use std::{
    fs::{self, DirBuilder, File, OpenOptions, Permissions},
    io::{self, Read as _, Write as _},
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    sync::{Arc, Mutex},
};

use serde_json::{json, Value};

use super::{
    Collateral, CollateralError, CollateralSource, Fmspc, PckCa, Validity,
    MAX_COLLATERAL_JSON_BYTES,
};

/// Version of the cache file envelope; bump when its layout changes.
/// (`fetched_at` was added without a bump: an entry without it is simply
/// due for a refresh.)
const CACHE_FORMAT_VERSION: u64 = 1;

/// How long a fetched bundle is served before it is fetched again, however
/// long its own validity: 24 hours.
pub const DEFAULT_REFRESH: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Room for the envelope around the collateral document.
const MAX_CACHE_FILE_BYTES: usize = MAX_COLLATERAL_JSON_BYTES + 4096;

/// Distinguishes temporary files of concurrent writers within one process;
/// the process id distinguishes processes.
static TEMP_FILE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The default cache directory: `$XDG_CACHE_HOME/easyenclave/collateral`, or
/// `~/.cache/easyenclave/collateral` when `XDG_CACHE_HOME` is unset, empty or
/// relative (the XDG spec says to ignore relative values). `None` when
/// neither variable gives a usable directory.
pub fn default_cache_dir() -> Option<PathBuf> {
    let from_env = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
    };
    let cache_home =
        from_env("XDG_CACHE_HOME").or_else(|| Some(from_env("HOME")?.join(".cache")))?;
    Some(cache_home.join("easyenclave").join("collateral"))
}

/// What a cached bundle is for. The PCK certificate chain is per platform,
/// not per FMSPC, so it is not part of the key and is never cached.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// The service the bundle came from.
    pub source: CollateralSource,
    /// The platform family.
    pub fmspc: Fmspc,
    /// The CA whose PCK CRL the bundle holds.
    pub ca: PckCa,
}

impl CacheKey {
    /// Key for `fmspc` and `ca` as served by `source`.
    pub fn new(source: CollateralSource, fmspc: Fmspc, ca: PckCa) -> Self {
        Self { source, fmspc, ca }
    }

    fn file_name(&self) -> String {
        format!("{}_{}_{}.json", self.source.cache_id(), self.fmspc, self.ca)
    }
}

/// A cache failure; on lookup it only ever means a miss.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A file system operation failed.
    #[error("cache: cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A cache file exists but is damaged, foreign or for another key.
    #[error("cache file {} is unusable: {problem}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The bundle given to `put` cannot be interpreted.
    #[error("cache: refusing to store collateral: {0}")]
    Invalid(#[source] CollateralError),
    /// The bundle given to `put` is not for the key's FMSPC or PCK CA.
    #[error("cache: collateral is for {what} {actual}, the key says {expected}")]
    KeyMismatch {
        /// `FMSPC` or `PCK CA`.
        what: &'static str,
        /// What the bundle says.
        actual: String,
        /// What the key says.
        expected: String,
    },
}

/// Why a lookup found no usable bundle.
#[derive(Debug)]
pub enum MissReason {
    /// Nothing is cached for the key.
    Absent,
    /// The cached bundle is not current at the requested time.
    OutsideValidity(Validity),
    /// The cached bundle was fetched longer ago than the cache's refresh
    /// interval (or the entry does not say when).
    DueForRefresh {
        /// When it was fetched (Unix seconds; 0 if the entry does not say).
        fetched_at: u64,
        /// The refresh interval in seconds.
        refresh_secs: u64,
    },
    /// The cache file cannot be read or is damaged; the next `put` replaces it.
    Unreadable(CacheError),
}

/// The result of [`CollateralCache::get`].
#[derive(Debug)]
pub enum CacheLookup {
    /// A bundle current at the requested time.
    Hit(Collateral),
    /// No usable bundle, and why.
    Miss(MissReason),
}

impl CacheLookup {
    /// The bundle, if the lookup hit.
    pub fn hit(self) -> Option<Collateral> {
        match self {
            Self::Hit(collateral) => Some(collateral),
            Self::Miss(_) => None,
        }
    }
}

/// Where [`CollateralCache::get_or_fetch`] got its bundle.
#[derive(Debug)]
pub enum Provenance {
    /// From the cache, without calling the fetcher.
    Cache,
    /// From the fetcher, because of `miss`; `stored` says whether the cache
    /// now holds it (a failure to store does not fail the call).
    Fetched {
        /// Why the cache could not serve.
        miss: MissReason,
        /// Outcome of storing the fetched bundle.
        stored: Result<(), CacheError>,
    },
}

/// A bundle and where it came from.
#[derive(Debug)]
pub struct Obtained {
    /// The bundle, without a PCK certificate chain.
    pub collateral: Collateral,
    /// Cache or fetcher.
    pub provenance: Provenance,
}

/// Bundles this cache has read or written, with their validity windows and
/// when they were fetched.
type MemoryLayer = Arc<Mutex<HashMap<CacheKey, (Collateral, Validity, u64)>>>;

/// A directory of cached collateral bundles.
#[derive(Clone, Debug)]
pub struct CollateralCache {
    dir: PathBuf,
    memory: MemoryLayer,
    refresh_secs: u64,
}

impl CollateralCache {
    /// A cache in `dir`; the directory is created (mode 0755) on first `put`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            memory: MemoryLayer::default(),
            refresh_secs: DEFAULT_REFRESH.as_secs(),
        }
    }

    /// The same cache, serving a bundle for at most `refresh` after it was
    /// fetched (default [`DEFAULT_REFRESH`]).
    pub fn with_refresh(mut self, refresh: std::time::Duration) -> Self {
        self.refresh_secs = refresh.as_secs();
        self
    }

    /// Whether a bundle fetched at `fetched_at` is still served at `now`.
    fn fresh(&self, fetched_at: u64, now: u64) -> bool {
        fetched_at != 0 && now.saturating_sub(fetched_at) <= self.refresh_secs
    }

    /// The in-memory copy for `key` if it is current and fresh at `now`. A
    /// poisoned lock (a panic elsewhere while holding it) only disables the
    /// layer.
    fn remembered(&self, key: &CacheKey, now: u64) -> Option<Collateral> {
        let memory = self.memory.lock().ok()?;
        let (collateral, validity, fetched_at) = memory.get(key)?;
        (validity.contains(now) && self.fresh(*fetched_at, now)).then(|| collateral.clone())
    }

    fn remember(
        &self,
        key: &CacheKey,
        collateral: &Collateral,
        validity: Validity,
        fetched_at: u64,
    ) {
        if let Ok(mut memory) = self.memory.lock() {
            memory.insert(key.clone(), (collateral.clone(), validity, fetched_at));
        }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds the bundle for `key`.
    pub fn path_for(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(key.file_name())
    }

    /// The bundle cached for `key`, if there is one and it is current at
    /// `now` (Unix seconds).
    pub fn get(&self, key: &CacheKey, now: u64) -> CacheLookup {
        if let Some(collateral) = self.remembered(key, now) {
            return CacheLookup::Hit(collateral);
        }
        let path = self.path_for(key);
        let bytes = match read_capped(&path) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return CacheLookup::Miss(MissReason::Absent),
            Err(error) => return CacheLookup::Miss(MissReason::Unreadable(error)),
        };
        let entry = decode_entry(key, &bytes).and_then(|(collateral, fetched_at)| {
            let validity = collateral.validity().map_err(|e| e.to_string())?;
            Ok((collateral, validity, fetched_at))
        });
        match entry {
            Ok((_, validity, _)) if !validity.contains(now) => {
                CacheLookup::Miss(MissReason::OutsideValidity(validity))
            }
            Ok((_, _, fetched_at)) if !self.fresh(fetched_at, now) => {
                CacheLookup::Miss(MissReason::DueForRefresh {
                    fetched_at,
                    refresh_secs: self.refresh_secs,
                })
            }
            Ok((collateral, validity, fetched_at)) => {
                self.remember(key, &collateral, validity, fetched_at);
                CacheLookup::Hit(collateral)
            }
            Err(problem) => CacheLookup::Miss(MissReason::Unreadable(CacheError::Corrupt {
                path,
                problem,
            })),
        }
    }

    /// Store `collateral` for `key` as fetched now (the system clock); see
    /// [`CollateralCache::put_at`].
    pub fn put(&self, key: &CacheKey, collateral: &Collateral) -> Result<(), CacheError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.put_at(key, collateral, now)
    }

    /// Store `collateral` for `key`, fetched at `fetched_at` (Unix seconds),
    /// replacing any previous entry atomically (temporary file in the same
    /// directory, fsync, rename, fsync of the directory). Any PCK
    /// certificate chain is left out; see [`CacheKey`].
    pub fn put_at(
        &self,
        key: &CacheKey,
        collateral: &Collateral,
        fetched_at: u64,
    ) -> Result<(), CacheError> {
        check_matches_key(key, collateral)?;
        let bundle = collateral.clone().with_pck_certificate_chain(None);
        let entry = json!({
            "version": CACHE_FORMAT_VERSION,
            "source": key.source.base_url(),
            "fmspc": key.fmspc.to_string(),
            "ca": key.ca.as_str(),
            "fetched_at": fetched_at,
            "collateral": bundle.to_json_value(),
        });
        self.create_dir()?;
        write_atomically(&self.dir, &key.file_name(), format!("{entry:#}").as_bytes())?;
        if let Ok(validity) = bundle.validity() {
            self.remember(key, &bundle, validity, fetched_at);
        }
        Ok(())
    }

    /// The cached bundle for `key` if it is current at `now`; otherwise call
    /// `fetch`, cache what it returns and return that. The returned bundle
    /// never carries a PCK certificate chain, whichever way it came.
    ///
    /// A fetched bundle that is not for the key's FMSPC and CA is returned
    /// but not stored; `stored` then holds [`CacheError::KeyMismatch`].
    /// `collateral::fetch` already refuses such bundles.
    pub fn get_or_fetch<E>(
        &self,
        key: &CacheKey,
        now: u64,
        fetch: impl FnOnce(&CacheKey) -> Result<Collateral, E>,
    ) -> Result<Obtained, E> {
        let miss = match self.get(key, now) {
            CacheLookup::Hit(collateral) => {
                return Ok(Obtained {
                    collateral,
                    provenance: Provenance::Cache,
                })
            }
            CacheLookup::Miss(reason) => reason,
        };
        let collateral = fetch(key)?.with_pck_certificate_chain(None);
        let stored = self.put_at(key, &collateral, now);
        Ok(Obtained {
            collateral,
            provenance: Provenance::Fetched { miss, stored },
        })
    }

    fn create_dir(&self) -> Result<(), CacheError> {
        if self.dir.is_dir() {
            return Ok(());
        }
        let io_error = |op| {
            let path = self.dir.clone();
            move |source| CacheError::Io { op, path, source }
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&self.dir)
            .map_err(io_error("create directory"))?;
        // The mode given to mkdir is reduced by the umask; the cache is
        // meant to be readable by other users (e.g. a service account).
        fs::set_permissions(&self.dir, Permissions::from_mode(0o755))
            .map_err(io_error("set permissions of"))
    }
}

fn check_matches_key(key: &CacheKey, collateral: &Collateral) -> Result<(), CacheError> {
    let fmspc = collateral.fmspc().map_err(CacheError::Invalid)?;
    if fmspc != key.fmspc {
        return Err(CacheError::KeyMismatch {
            what: "FMSPC",
            actual: fmspc.to_string(),
            expected: key.fmspc.to_string(),
        });
    }
    let ca = collateral.pck_crl_ca().map_err(CacheError::Invalid)?;
    if ca != key.ca {
        return Err(CacheError::KeyMismatch {
            what: "PCK CA",
            actual: ca.to_string(),
            expected: key.ca.to_string(),
        });
    }
    Ok(())
}

/// Read a cache file; `None` if it does not exist.
fn read_capped(path: &Path) -> Result<Option<Vec<u8>>, CacheError> {
    let io_error = |source| CacheError::Io {
        op: "read",
        path: path.to_owned(),
        source,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(e)),
    };
    let mut bytes = Vec::new();
    let limit = u64::try_from(MAX_CACHE_FILE_BYTES).unwrap_or(u64::MAX);
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() > MAX_CACHE_FILE_BYTES {
        return Err(CacheError::Corrupt {
            path: path.to_owned(),
            problem: format!("larger than {MAX_CACHE_FILE_BYTES} bytes"),
        });
    }
    Ok(Some(bytes))
}

/// Decode a cache file and check it is the entry for `key`; the bundle and
/// when it was fetched (0 when the entry does not say).
fn decode_entry(key: &CacheKey, bytes: &[u8]) -> Result<(Collateral, u64), String> {
    let entry: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let version = entry.get("version").and_then(Value::as_u64);
    if version != Some(CACHE_FORMAT_VERSION) {
        return Err(format!(
            "format version is {}, expected {CACHE_FORMAT_VERSION}",
            entry.get("version").unwrap_or(&Value::Null)
        ));
    }
    let expected_key = [
        ("source", key.source.base_url().to_owned()),
        ("fmspc", key.fmspc.to_string()),
        ("ca", key.ca.as_str().to_owned()),
    ];
    for (field, expected) in expected_key {
        let actual = entry.get(field).and_then(Value::as_str);
        if actual != Some(expected.as_str()) {
            return Err(format!("`{field}` is {actual:?}, expected {expected:?}"));
        }
    }
    let fetched_at = entry.get("fetched_at").and_then(Value::as_u64).unwrap_or(0);
    let collateral = entry.get("collateral").cloned().unwrap_or(Value::Null);
    let collateral = Collateral::from_json_value(collateral).map_err(|e| e.to_string())?;
    Ok((collateral, fetched_at))
}

fn write_atomically(dir: &Path, file_name: &str, bytes: &[u8]) -> Result<(), CacheError> {
    let counter = TEMP_FILE_COUNTER.fetch_add(1, Ordering::Relaxed);
    let temp_path = dir.join(format!(".{file_name}.{}.{counter}.tmp", std::process::id()));
    let final_path = dir.join(file_name);
    let io_error = |op, path: &Path| {
        let path = path.to_owned();
        move |source| CacheError::Io { op, path, source }
    };

    let write_temp = || -> Result<(), CacheError> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&temp_path)
            .map_err(io_error("create", &temp_path))?;
        // Override the umask: cached collateral is public data.
        file.set_permissions(Permissions::from_mode(0o644))
            .map_err(io_error("set permissions of", &temp_path))?;
        file.write_all(bytes)
            .map_err(io_error("write", &temp_path))?;
        file.sync_all().map_err(io_error("fsync", &temp_path))?;
        fs::rename(&temp_path, &final_path).map_err(io_error("rename into place", &final_path))
    };
    if let Err(error) = write_temp() {
        // Best effort: the write already failed, and a leftover temporary
        // file is harmless (its name never matches a cache key).
        let _ = fs::remove_file(&temp_path);
        return Err(error);
    }
    // Make the rename itself durable.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("fsync", dir))
}
