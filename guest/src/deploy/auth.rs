//! Who may deploy: the bearer of a GitHub token whose user has push access
//! (push, maintain or admin) to the repo of the measured launch config,
//! asked of the GitHub API the launch config names.

use easyenclave::github::{GitHub, GithubError, RepoName};

/// The deploy request was refused; each maps to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No usable `Authorization: Bearer` header (401).
    #[error("{0}")]
    MissingToken(String),
    /// GitHub does not accept the token (401).
    #[error("GitHub rejected the token: {0}")]
    BadToken(String),
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
}

impl AuthError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::MissingToken(_) | AuthError::BadToken(_) => 401,
            AuthError::NoPush { .. } => 403,
            AuthError::Unreachable { .. } => 502,
        }
    }
}

/// The bearer token of an `Authorization` header value.
pub fn bearer_token(header: Option<&str>) -> Result<&str, AuthError> {
    let missing = |why: &str| {
        AuthError::MissingToken(format!(
            "{why}: POST /deploy needs an `Authorization: Bearer <GitHub token>` header"
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
    if token.is_empty() || token.len() > 1024 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(missing(
            "the bearer token is empty, longer than 1024 bytes or not printable ASCII",
        ));
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
        for (header, needle) in [
            (None, "no Authorization header"),
            (Some("ghp_abc"), "not `Bearer <token>`"),
            (Some("Basic dXNlcg=="), "scheme is not Bearer"),
            (Some("Bearer "), "empty"),
            (Some("Bearer a b"), "not printable ASCII"),
        ] {
            let err = bearer_token(header).unwrap_err();
            assert_eq!(err.status(), 401);
            let text = err.to_string();
            assert!(text.contains(needle), "{header:?}: {text}");
            assert!(text.contains("Authorization: Bearer"), "{text}");
        }
    }
}
