//! Who may deploy. The `Authorization: Bearer` credential of `POST /deploy`
//! is one of:
//!
//! - a **GitHub Actions OIDC token** (a JWT, told apart by its shape): it
//!   must be signed by the issuer of the measured launch config (keys from
//!   its JWKS, cached), name the measured repo, carry the audience
//!   `easyenclave:<SHA-256 of this agent's attested TLS key>` (so it cannot
//!   be replayed at another agent), be current, and match the launch
//!   config's allowed refs and environments ([`easyenclave::oidc`]). The
//!   workflow's `GITHUB_TOKEN` then comes in the body's `github_token` and is
//!   used only to download the artifact and publish the release;
//! - a **GitHub token** whose user has push access (push, maintain or admin)
//!   to the measured repo, asked of the GitHub API the launch config names.
//!
//! Every refusal names what was wrong: the claim, what was found and what
//! was expected.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use easyenclave::github::{GitHub, GithubError, RepoName};
use easyenclave::launch::LaunchConfig;
use easyenclave::oidc::{self, Claims, Expected, JwksCache, OidcError};

use super::secret::Token;

/// The deploy request was refused; each maps to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No usable `Authorization: Bearer` header (401).
    #[error("{0}")]
    MissingToken(String),
    /// GitHub does not accept the token (401).
    #[error("GitHub rejected the token: {0}")]
    BadToken(String),
    /// The token names no user: an installation token such as a workflow's
    /// `GITHUB_TOKEN` (401).
    #[error(
        "GitHub answered GET /user with 403 ({0}): the bearer token names no user, as an \
         installation token such as a workflow's GITHUB_TOKEN does, so it cannot authorise \
         a deploy; send an Actions OIDC token for this agent in Authorization \
         (`ee deploy --oidc-from-actions`) and the GITHUB_TOKEN as the body's github_token"
    )]
    NotAUser(String),
    /// The user may not push to the repo (403).
    #[error("GitHub user {login} has no push access to {repo}")]
    NoPush {
        /// The token's user.
        login: String,
        /// The agent's repo.
        repo: String,
    },
    /// GitHub could not answer (502).
    #[error("cannot check the token with GitHub at {api}: {reason}")]
    Unreachable {
        /// The API base URL.
        api: String,
        /// What went wrong.
        reason: String,
    },
    /// The OIDC token was refused (401, or 403 for another repo, ref or
    /// environment; 502 when the issuer's keys cannot be fetched).
    #[error("{0}")]
    Oidc(OidcError),
    /// This agent cannot check OIDC tokens: it has no attested TLS key for
    /// the audience (503).
    #[error("OIDC deploys are unavailable: {0}")]
    NoAgentKey(String),
}

impl AuthError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::MissingToken(_) | AuthError::BadToken(_) | AuthError::NotAUser(_) => 401,
            AuthError::NoPush { .. } => 403,
            AuthError::Unreachable { .. } => 502,
            AuthError::Oidc(OidcError::Jwks { .. }) => 502,
            AuthError::Oidc(e) if e.is_forbidden() => 403,
            AuthError::Oidc(_) => 401,
            AuthError::NoAgentKey(_) => 503,
        }
    }
}

/// Who a deploy is authorised for.
#[derive(Debug)]
pub enum Deployer {
    /// A GitHub user with push access; the token also downloads and publishes.
    User {
        /// The user's login.
        login: String,
        /// Their token.
        token: Token,
    },
    /// A GitHub Actions job of the measured repo, by its verified OIDC token.
    Actions(Box<Claims>),
}

impl Deployer {
    /// Who, for logs and release notes.
    pub fn describe(&self) -> String {
        match self {
            Deployer::User { login, .. } => login.clone(),
            Deployer::Actions(claims) => format!(
                "{} (GitHub Actions OIDC: {} {})",
                claims.actor.as_deref().unwrap_or("unknown actor"),
                claims.repository,
                claims.git_ref.as_deref().unwrap_or("(no ref)"),
            ),
        }
    }
}

/// The agent's attested TLS key (SubjectPublicKeyInfo, DER), looked up at
/// each OIDC deploy: the certificate, and with it the key, is renewed.
#[derive(Clone)]
pub struct AgentKey(Arc<dyn Fn() -> Result<Vec<u8>, String> + Send + Sync>);

impl std::fmt::Debug for AgentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentKey")
    }
}

impl AgentKey {
    /// Always this key (tests).
    pub fn fixed(spki_der: Vec<u8>) -> AgentKey {
        AgentKey(Arc::new(move || Ok(spki_der.clone())))
    }

    /// No key: OIDC deploys are refused with `why`.
    pub fn unavailable(why: impl Into<String>) -> AgentKey {
        let why = why.into();
        AgentKey(Arc::new(move || Err(why.clone())))
    }

    /// The key of the certificate `tls` serves right now; only a quoted
    /// (RA-TLS) certificate has a key a deployer can have attested.
    pub fn from_tls(tls: crate::tls::AgentTls) -> AgentKey {
        AgentKey(Arc::new(move || {
            easyenclave::ratls::CertEvidence::from_cert_der(&tls.current_cert_der())
                .map(|evidence| evidence.spki_der)
                .map_err(|e| format!("the agent's TLS certificate has no attested key: {e}"))
        }))
    }

    /// The key, or why there is none.
    pub fn spki_der(&self) -> Result<Vec<u8>, String> {
        (self.0)()
    }
}

/// Checks deploy credentials for the agent bound to one launch config.
#[derive(Debug)]
pub struct Authorizer {
    repo: RepoName,
    config: LaunchConfig,
    jwks: JwksCache,
    agent_key: AgentKey,
    clock: fn() -> SystemTime,
}

impl Authorizer {
    /// An authorizer for `config` (already measured), fetching the issuer's
    /// keys with `fetch`.
    pub fn new(
        repo: RepoName,
        config: LaunchConfig,
        fetch: oidc::FetchOptions,
        agent_key: AgentKey,
        clock: fn() -> SystemTime,
    ) -> Authorizer {
        let jwks = JwksCache::new(&config.oidc.issuer, fetch);
        Authorizer {
            repo,
            config,
            jwks,
            agent_key,
            clock,
        }
    }

    /// Check the `Authorization` header value. `github` makes the GitHub
    /// client for a GitHub token (with that token).
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        github: impl FnOnce(&Token) -> Result<GitHub, GithubError>,
    ) -> Result<Deployer, AuthError> {
        let bearer = bearer_token(authorization)?;
        if oidc::looks_like_jwt(bearer) {
            return self.check_oidc(bearer);
        }
        let token = Token::new(bearer);
        let client = github(&token).map_err(|e| AuthError::Unreachable {
            api: self.config.github_api_url.clone(),
            reason: e.to_string(),
        })?;
        let login = authorize(&client, &self.repo)?;
        Ok(Deployer::User { login, token })
    }

    fn check_oidc(&self, jwt: &str) -> Result<Deployer, AuthError> {
        let spki = self.agent_key.spki_der().map_err(AuthError::NoAgentKey)?;
        let now = (self.clock)()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| AuthError::NoAgentKey("the agent's clock reads before 1970".into()))?
            .as_secs();
        let expected = Expected {
            issuer: self.config.oidc.issuer.clone(),
            repository: self.config.repo.clone(),
            audience: oidc::audience_for_spki(&spki),
            allowed_refs: self.config.oidc.allowed_refs.clone(),
            allowed_environments: self.config.oidc.allowed_environments.clone(),
            now,
            skew_secs: oidc::DEFAULT_SKEW_SECS,
        };
        let claims = self.jwks.verify(jwt, &expected).map_err(AuthError::Oidc)?;
        Ok(Deployer::Actions(Box::new(claims)))
    }
}

/// The bearer credential of an `Authorization` header value.
pub fn bearer_token(header: Option<&str>) -> Result<&str, AuthError> {
    let missing = |why: &str| {
        AuthError::MissingToken(format!(
            "{why}: POST /deploy needs an `Authorization: Bearer <GitHub Actions OIDC token \
             or GitHub token>` header"
        ))
    };
    let value = header.ok_or_else(|| missing("no Authorization header"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| missing("the Authorization header is not `Bearer <token>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(missing("the Authorization scheme is not Bearer"));
    }
    let token = token.trim();
    if token.is_empty()
        || token.len() > oidc::MAX_TOKEN_BYTES
        || !token.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(missing(&format!(
            "the bearer token is empty, longer than {} bytes or not printable ASCII",
            oidc::MAX_TOKEN_BYTES
        )));
    }
    Ok(token)
}

/// Check with GitHub (`github` carries the deployer's token) that its user
/// may push to `repo`; returns the user's login.
pub fn authorize(github: &GitHub, repo: &RepoName) -> Result<String, AuthError> {
    let unreachable = |e: GithubError| AuthError::Unreachable {
        api: github.base_url().to_owned(),
        reason: e.to_string(),
    };
    let login = match github.current_user() {
        Ok(user) => user.login,
        Err(GithubError::Unauthorized(message)) => return Err(AuthError::BadToken(message)),
        Err(GithubError::Forbidden(message)) => return Err(AuthError::NotAUser(message)),
        Err(e) => return Err(unreachable(e)),
    };
    let no_push = || AuthError::NoPush {
        login: login.clone(),
        repo: repo.to_string(),
    };
    match github.repo_permissions(repo) {
        // GitHub sets `push` for the write, maintain and admin roles.
        Ok(permissions) if permissions.push || permissions.admin => Ok(login),
        Ok(_) => Err(no_push()),
        // A private repo the user cannot see.
        Err(GithubError::NotFound(_)) => Err(no_push()),
        Err(GithubError::Unauthorized(message)) => Err(AuthError::BadToken(message)),
        Err(e) => Err(unreachable(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_rules() {
        assert_eq!(bearer_token(Some("Bearer ghp_abc")).unwrap(), "ghp_abc");
        assert_eq!(bearer_token(Some("bearer  t1 ")).unwrap(), "t1");
        let jwt = format!("eyJ{}.e30.sig", "a".repeat(2000));
        assert_eq!(
            bearer_token(Some(&format!("Bearer {jwt}"))).unwrap(),
            jwt,
            "OIDC tokens are longer than GitHub tokens"
        );
        let huge = format!("Bearer {}", "a".repeat(oidc::MAX_TOKEN_BYTES + 1));
        for (header, needle) in [
            (None, "no Authorization header"),
            (Some("ghp_abc"), "not `Bearer <token>`"),
            (Some("Basic dXNlcg=="), "scheme is not Bearer"),
            (Some("Bearer "), "empty"),
            (Some("Bearer a b"), "not printable ASCII"),
            (Some(huge.as_str()), "longer than 16384 bytes"),
        ] {
            let err = bearer_token(header).unwrap_err();
            assert_eq!(err.status(), 401);
            let text = err.to_string();
            assert!(text.contains(needle), "{header:.40?}: {text}");
            assert!(text.contains("Authorization: Bearer"), "{text}");
        }
    }
}
