//! What a client trusts about an agent: the verifier (root, policy,
//! allowlist), where collateral comes from, and the repo the agent must be
//! bound to.

use std::fmt;

use crate::collateral::{
    fetch, fmspc_and_ca_from_quote, CacheKey, Collateral, CollateralCache, CollateralSource,
    FetchOptions,
};
use crate::verify::{VerifiedQuote, Verifier};

use super::AgentError;

/// Where the collateral for an agent's quotes comes from.
pub enum CollateralSupply {
    /// The same collateral for every quote: a collateral file, or the
    /// simulated platform's.
    Fixed(Collateral),
    /// From the cache, fetched from `source` (Intel PCS or a PCCS) and stored
    /// when the cache holds none valid at the time of verification.
    Service {
        /// Intel PCS or a PCCS.
        source: CollateralSource,
        /// The on-disk cache (with its in-memory layer).
        cache: CollateralCache,
        /// Timeouts and limits of the fetch.
        options: FetchOptions,
    },
}

impl fmt::Debug for CollateralSupply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CollateralSupply::Fixed(_) => f.write_str("Fixed(..)"),
            CollateralSupply::Service { source, cache, .. } => f
                .debug_struct("Service")
                .field("source", &source.base_url())
                .field("cache", &cache.dir())
                .finish(),
        }
    }
}

impl CollateralSupply {
    /// The supply matching a `connect()` collateral choice, so a published
    /// service and its live agent are checked against the same collateral
    /// (`None` cache: the default directory).
    pub fn from_choice(
        choice: crate::connect::CollateralChoice,
    ) -> Result<Self, crate::connect::CollateralProblem> {
        use crate::connect::{CollateralChoice, CollateralProblem};
        Ok(match choice {
            CollateralChoice::Given(collateral) => CollateralSupply::Fixed(collateral),
            CollateralChoice::Service { source, cache } => CollateralSupply::Service {
                source,
                cache: match cache {
                    Some(cache) => cache,
                    None => CollateralCache::new(
                        crate::collateral::default_cache_dir()
                            .ok_or(CollateralProblem::NoCacheDir)?,
                    ),
                },
                options: FetchOptions::default(),
            },
        })
    }

    /// Collateral for `quote`, valid (per the cache) at `now`.
    pub fn for_quote(&self, quote: &[u8], now: u64) -> Result<Collateral, AgentError> {
        match self {
            CollateralSupply::Fixed(collateral) => Ok(collateral.clone()),
            CollateralSupply::Service {
                source,
                cache,
                options,
            } => {
                let (fmspc, ca) = fmspc_and_ca_from_quote(quote).map_err(|e| {
                    AgentError::Collateral(format!("cannot read the quote's PCK certificate: {e}"))
                })?;
                let key = CacheKey::new(source.clone(), fmspc, ca);
                // A failure to store a fetched bundle only costs a refetch later.
                let obtained = cache
                    .get_or_fetch(&key, now, |key| {
                        fetch(&key.source, fmspc, ca, None, options)
                    })
                    .map_err(|e| AgentError::Collateral(e.to_string()))?;
                Ok(obtained.collateral)
            }
        }
    }
}

/// How a client decides that an agent is the one it should talk to.
pub struct AgentTrust {
    /// DCAP trust root and policy; the policy's allowlist (MRTD, RTMR0-2,
    /// TD attributes, XFAM), when set, is checked on every quote.
    pub verifier: Verifier,
    /// Collateral for the agent's quotes.
    pub collateral: CollateralSupply,
    /// The repo (`owner/name`) the agent's measured launch config must name
    /// (compared case-insensitively, as GitHub does).
    pub expected_repo: String,
    /// The GitHub REST API the agent's measured launch config must name
    /// (compared in canonical form, [`crate::launch::same_github_api`]):
    /// the agent sends the deployer's token there and fetches artifacts from
    /// it. Default [`crate::launch::DEFAULT_GITHUB_API_URL`].
    pub expected_github_api_url: String,
    /// The OIDC issuer whose tokens the agent's measured launch config may
    /// accept as deploy credentials: whoever holds that issuer's keys can
    /// deploy to the agent. Default [`crate::launch::DEFAULT_OIDC_ISSUER`].
    pub expected_oidc_issuer: String,
    /// Send a token to an agent whose measured GitHub API URL is `http://`.
    /// Only for local test servers; default false.
    pub allow_http_github_api: bool,
}

impl fmt::Debug for AgentTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentTrust")
            .field("policy", self.verifier.policy())
            .field("collateral", &self.collateral)
            .field("expected_repo", &self.expected_repo)
            .field("expected_github_api_url", &self.expected_github_api_url)
            .field("expected_oidc_issuer", &self.expected_oidc_issuer)
            .field("allow_http_github_api", &self.allow_http_github_api)
            .finish()
    }
}

impl AgentTrust {
    /// Trust with `verifier` and `collateral`, for an agent bound to
    /// `expected_repo` and measured with the public GitHub API.
    pub fn new(
        verifier: Verifier,
        collateral: CollateralSupply,
        expected_repo: impl Into<String>,
    ) -> Self {
        AgentTrust {
            verifier,
            collateral,
            expected_repo: expected_repo.into(),
            expected_github_api_url: crate::launch::DEFAULT_GITHUB_API_URL.to_owned(),
            expected_oidc_issuer: crate::launch::DEFAULT_OIDC_ISSUER.to_owned(),
            allow_http_github_api: false,
        }
    }

    /// The same trust for an agent measured with the GitHub API at `url`
    /// (a GitHub Enterprise Server root, or a test server).
    pub fn with_github_api_url(mut self, url: impl Into<String>) -> Self {
        self.expected_github_api_url = url.into();
        self
    }

    /// The same trust for an agent whose launch config names the OIDC
    /// issuer at `url` (GitHub Enterprise Server, a test server).
    pub fn with_oidc_issuer(mut self, url: impl Into<String>) -> Self {
        self.expected_oidc_issuer = url.into();
        self
    }

    /// Verify `quote` with DCAP and the policy at `now` (Unix seconds).
    pub(super) fn verify_quote(&self, quote: &[u8], now: u64) -> Result<VerifiedQuote, AgentError> {
        let collateral = self.collateral.for_quote(quote, now)?;
        Ok(self.verifier.verify(quote, &collateral, now)?)
    }
}
