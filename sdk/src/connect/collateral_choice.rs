//! Where `connect()` gets the collateral a quote is verified against.

use serde::Serialize;

use crate::collateral::{
    default_cache_dir, fetch, fmspc_and_ca_from_quote, CacheKey, Collateral, CollateralCache,
    CollateralSource, FetchOptions, Provenance,
};

use super::{CollateralProblem, ConnectError};

/// How to obtain collateral.
#[derive(Clone, Debug)]
pub enum CollateralChoice {
    /// Use this bundle (offline verification, tests, the simulated platform).
    Given(Collateral),
    /// Serve from `cache`, fetching from `source` and caching when the cache
    /// holds no bundle valid now. `cache: None` is the default directory
    /// ([`default_cache_dir`]). Reuse one [`CollateralCache`] across calls to
    /// keep its in-memory layer warm.
    Service {
        /// Intel PCS or a PCCS.
        source: CollateralSource,
        /// The cache.
        cache: Option<CollateralCache>,
    },
}

impl Default for CollateralChoice {
    /// Intel PCS through the default cache directory.
    fn default() -> Self {
        CollateralChoice::Service {
            source: CollateralSource::IntelPcs,
            cache: None,
        }
    }
}

/// Where the collateral used came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CollateralOrigin {
    /// Given by the caller.
    Given,
    /// From the cache, without a request.
    Cache,
    /// Fetched from this service (and cached, if `cached`).
    Fetched {
        /// The service, e.g. `Intel PCS (https://api.trustedservices.intel.com)`.
        source: String,
        /// Whether the cache now holds it.
        cached: bool,
    },
}

/// Collateral for `quote`, valid at `now` if it comes from a cache.
pub(crate) fn obtain(
    choice: &CollateralChoice,
    quote: &[u8],
    now: u64,
) -> Result<(Collateral, CollateralOrigin), ConnectError> {
    let (source, cache) = match choice {
        CollateralChoice::Given(collateral) => {
            return Ok((collateral.clone(), CollateralOrigin::Given))
        }
        CollateralChoice::Service { source, cache } => (source, cache),
    };
    let problem = |p| ConnectError::Collateral(p);
    let (fmspc, ca) =
        fmspc_and_ca_from_quote(quote).map_err(|e| problem(CollateralProblem::Pck(e)))?;
    let cache = match cache {
        Some(cache) => cache.clone(),
        None => CollateralCache::new(
            default_cache_dir().ok_or_else(|| problem(CollateralProblem::NoCacheDir))?,
        ),
    };
    let key = CacheKey::new(source.clone(), fmspc, ca);
    let obtained = cache
        .get_or_fetch(&key, now, |key| {
            fetch(&key.source, fmspc, ca, None, &FetchOptions::default())
        })
        .map_err(|e| problem(CollateralProblem::Fetch(e)))?;
    let origin = match &obtained.provenance {
        Provenance::Cache => CollateralOrigin::Cache,
        Provenance::Fetched { stored, .. } => CollateralOrigin::Fetched {
            source: source.to_string(),
            cached: stored.is_ok(),
        },
    };
    Ok((obtained.collateral, origin))
}
