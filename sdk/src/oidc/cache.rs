//! Fetching and caching an issuer's JWKS (feature `github`: blocking ureq).

use std::io::Read;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{jwks_url, verify, Claims, Expected, Jwks, OidcError, MAX_JWKS_BYTES};

/// How a [`JwksCache`] fetches and how long it keeps what it fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchOptions {
    /// Time to resolve and connect.
    pub connect_timeout: Duration,
    /// Time for the whole request, body included: a server that drips its
    /// answer cannot hold a deploy request longer than this.
    pub total_timeout: Duration,
    /// Keys are reused this long before they are fetched again.
    pub ttl: Duration,
    /// A token naming an unknown key makes the cache fetch again (the issuer
    /// rotated its keys), but not more often than this, so that tokens with
    /// made-up key ids cannot make the agent hammer the issuer.
    pub min_refetch_interval: Duration,
    /// Largest JWKS document read.
    pub max_bytes: usize,
}

impl Default for FetchOptions {
    /// 10 s to connect, 20 s in all, keys kept 5 minutes, a refetch for an
    /// unknown key at most every 10 s, at most [`MAX_JWKS_BYTES`].
    fn default() -> Self {
        FetchOptions {
            connect_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(20),
            ttl: Duration::from_secs(300),
            min_refetch_interval: Duration::from_secs(10),
            max_bytes: MAX_JWKS_BYTES,
        }
    }
}

/// The keys fetched last, and when.
#[derive(Default)]
struct State {
    keys: Option<(Arc<Jwks>, Instant)>,
    last_attempt: Option<Instant>,
}

/// The JWKS of one issuer, fetched on first use and cached with a short TTL.
pub struct JwksCache {
    issuer: String,
    url: String,
    options: FetchOptions,
    agent: ureq::Agent,
    state: Mutex<State>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("issuer", &self.issuer)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    /// A cache for the keys of `issuer` (an `https://` URL; `http://` only
    /// where the launch config allowed it, for test servers).
    pub fn new(issuer: &str, options: FetchOptions) -> JwksCache {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // The keys must come from the issuer's own origin.
            .max_redirects(0)
            .user_agent(format!("easyenclave/{}", env!("CARGO_PKG_VERSION")))
            .timeout_resolve(Some(options.connect_timeout))
            .timeout_connect(Some(options.connect_timeout))
            .timeout_global(Some(options.total_timeout))
            .build()
            .new_agent();
        JwksCache {
            issuer: issuer.to_owned(),
            url: jwks_url(issuer),
            options,
            agent,
            state: Mutex::new(State::default()),
        }
    }

    /// The issuer whose keys this cache holds.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The JWKS URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// [`super::verify`] with the issuer's current keys: cached ones while
    /// fresh, fetched ones otherwise, and fetched again once when the token
    /// names a key the cached set lacks.
    pub fn verify(&self, token: &str, expected: &Expected) -> Result<Claims, OidcError> {
        let (keys, fetched_now) = self.keys(false)?;
        match verify(token, &keys, &self.url, expected) {
            Err(OidcError::UnknownKey { .. }) if !fetched_now => {
                let (keys, _) = self.keys(true)?;
                verify(token, &keys, &self.url, expected)
            }
            outcome => outcome,
        }
    }

    /// The keys, and whether they were fetched by this call. `refresh` asks
    /// for a fetch even when the cached keys are fresh (rate-limited).
    fn keys(&self, refresh: bool) -> Result<(Arc<Jwks>, bool), OidcError> {
        // Held during the fetch: concurrent deploys wait for one fetch
        // rather than each starting their own.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if let Some((keys, at)) = &state.keys {
            let fresh = now.duration_since(*at) < self.options.ttl;
            let throttled = state
                .last_attempt
                .is_some_and(|t| now.duration_since(t) < self.options.min_refetch_interval);
            if (fresh && !refresh) || (refresh && throttled) {
                return Ok((Arc::clone(keys), false));
            }
        }
        state.last_attempt = Some(now);
        let keys = Arc::new(self.fetch()?);
        state.keys = Some((Arc::clone(&keys), now));
        Ok((keys, true))
    }

    fn fetch(&self) -> Result<Jwks, OidcError> {
        let problem = |problem: String| OidcError::Jwks {
            url: self.url.clone(),
            problem,
        };
        let mut response = self
            .agent
            .get(&self.url)
            .header("Accept", "application/json")
            .call()
            .map_err(|e| problem(format!("cannot fetch: {e}")))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(problem(format!("answered HTTP {status}, expected 200")));
        }
        let limit = self.options.max_bytes;
        let mut body = Vec::new();
        response
            .body_mut()
            .as_reader()
            .take(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
            .read_to_end(&mut body)
            .map_err(|e| problem(format!("reading the answer: {e}")))?;
        if body.len() > limit {
            return Err(problem(format!("over the {limit}-byte limit")));
        }
        Jwks::from_json(&body, &self.url)
    }
}
