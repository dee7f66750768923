//! What the test server knows: tokens, repositories, permissions and limits.
//! Loadable from JSON (`ee-github-test-server --config FILE`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// A user's permission in one repository, ordered from none to admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Cannot see a private repository.
    None,
    /// May read releases, assets and artifacts.
    Read,
    /// May also create and delete releases and upload assets.
    Write,
    /// Full control.
    Admin,
}

impl Permission {
    /// The name GitHub's collaborator-permission API reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::None => "none",
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Admin => "admin",
        }
    }
}

/// One repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepoConfig {
    /// Private repositories are invisible (404) without read permission;
    /// public ones are readable by everyone.
    pub private: bool,
    /// Explicit permissions by login. The owner (the part before `/`) is
    /// always admin.
    pub collaborators: BTreeMap<String, Permission>,
    /// GitHub's immutable releases: a published release takes no new
    /// assets (422), so publishers create a draft, upload, then publish.
    pub immutable_releases: bool,
}

/// A GitHub App installation token, such as a workflow's `GITHUB_TOKEN`:
/// it acts on the listed repositories only and is no user, so `GET /user`
/// answers 403 as GitHub does ("Resource not accessible by integration").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Installation {
    /// The repositories (`owner/name`) the token may act on.
    pub repos: BTreeSet<String>,
    /// What it may do there (a workflow with `contents: write` has `write`).
    pub permission: Permission,
}

/// What the Actions runtime knows about a job: the claims of the OIDC
/// tokens it issues to a holder of the job's request token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActionsJob {
    /// `repository`: `owner/name`.
    pub repository: String,
    /// `ref`, e.g. `refs/heads/main`.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// `environment`, if the job names one.
    pub environment: Option<String>,
    /// `actor`: who started the run.
    pub actor: String,
}

/// Server configuration.
///
/// ```json
/// { "tokens": { "t-alice": "alice" },
///   "installation_tokens": { "ghs-app": { "repos": ["alice/app"], "permission": "write" } },
///   "actions_jobs": { "req-1": { "repository": "alice/app", "ref": "refs/heads/main", "actor": "alice" } },
///   "repos": { "alice/app": { "private": true, "collaborators": { "bob": "read" },
///                             "immutable_releases": true } },
///   "max_body_bytes": 67108864 }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Token → login. Requests may send `Authorization: Bearer T` or `token T`.
    pub tokens: BTreeMap<String, String>,
    /// Installation tokens (a workflow's `GITHUB_TOKEN`) → what they may do.
    pub installation_tokens: BTreeMap<String, Installation>,
    /// Actions runtime request tokens (`ACTIONS_ID_TOKEN_REQUEST_TOKEN`) →
    /// the job whose OIDC tokens `GET /_services/token/actions` issues.
    pub actions_jobs: BTreeMap<String, ActionsJob>,
    /// `owner/name` → repository.
    pub repos: BTreeMap<String, RepoConfig>,
    /// Largest accepted request body; larger ones get 413.
    pub max_body_bytes: u64,
    /// Lifetime of the signed storage URLs that downloads redirect to.
    pub storage_url_ttl_secs: u64,
    /// Worker threads per listener.
    pub workers: usize,
    /// Address of the API listener (port 0: any free port).
    pub listen: SocketAddr,
    /// Address of the storage listener; by default the API listener's IP
    /// with any free port, so storage is a different origin as on github.com.
    pub storage_listen: Option<SocketAddr>,
    /// JSON file holding releases, assets and artifacts across restarts.
    pub state_file: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            tokens: BTreeMap::new(),
            installation_tokens: BTreeMap::new(),
            actions_jobs: BTreeMap::new(),
            repos: BTreeMap::new(),
            max_body_bytes: 64 * 1024 * 1024,
            storage_url_ttl_secs: 60,
            workers: 4,
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            storage_listen: None,
            state_file: None,
        }
    }
}

impl ServerConfig {
    /// Reads a JSON configuration file.
    pub fn load(path: &std::path::Path) -> anyhow::Result<ServerConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let config: ServerConfig = serde_json::from_str(&text)
            .with_context(|| format!("parsing config {}", path.display()))?;
        config.validate()?;
        Ok(config)
    }

    /// Adds a token for `login`.
    pub fn with_token(mut self, token: &str, login: &str) -> Self {
        self.tokens.insert(token.to_owned(), login.to_owned());
        self
    }

    /// Adds an installation token acting on `repos` with `permission`.
    pub fn with_installation_token(
        mut self,
        token: &str,
        repos: &[&str],
        permission: Permission,
    ) -> Self {
        self.installation_tokens.insert(
            token.to_owned(),
            Installation {
                repos: repos.iter().map(|r| (*r).to_owned()).collect(),
                permission,
            },
        );
        self
    }

    /// Adds an Actions job whose runtime request token is `request_token`.
    pub fn with_actions_job(mut self, request_token: &str, job: ActionsJob) -> Self {
        self.actions_jobs.insert(request_token.to_owned(), job);
        self
    }

    /// Turns on immutable releases for `repo` (adding it as public if unknown).
    pub fn with_immutable_releases(mut self, repo: &str) -> Self {
        self.repos
            .entry(repo.to_owned())
            .or_default()
            .immutable_releases = true;
        self
    }

    /// Adds a repository (`owner/name`).
    pub fn with_repo(mut self, repo: &str, private: bool) -> Self {
        self.repos.entry(repo.to_owned()).or_default().private = private;
        self
    }

    /// Grants `login` a permission in `repo` (adding it as public if unknown).
    pub fn with_permission(mut self, repo: &str, login: &str, permission: Permission) -> Self {
        self.repos
            .entry(repo.to_owned())
            .or_default()
            .collaborators
            .insert(login.to_owned(), permission);
        self
    }

    /// Sets the request body cap.
    pub fn with_max_body_bytes(mut self, bytes: u64) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Sets the state file.
    pub fn with_state_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.state_file = Some(path.into());
        self
    }

    /// Checks names and limits before the server starts.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (token, login) in &self.tokens {
            if token.is_empty() || token.contains(char::is_whitespace) {
                bail!("token for {login:?} is empty or contains whitespace");
            }
            check_login(login)?;
        }
        for token in self
            .installation_tokens
            .keys()
            .chain(self.actions_jobs.keys())
        {
            if token.is_empty() || token.contains(char::is_whitespace) {
                bail!("an installation or Actions request token is empty or contains whitespace");
            }
            if self.tokens.contains_key(token) {
                bail!("token {token:?} is both a user's and an installation's");
            }
        }
        for (repo, settings) in &self.repos {
            let Some((owner, name)) = repo.split_once('/') else {
                bail!("repository {repo:?} is not owner/name");
            };
            check_login(owner)?;
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                bail!("repository {repo:?} has an invalid name");
            }
            for login in settings.collaborators.keys() {
                check_login(login)?;
            }
        }
        if self.workers == 0 {
            bail!("workers must be at least 1");
        }
        Ok(())
    }

    /// The login a token belongs to.
    pub(super) fn login_for(&self, token: &str) -> Option<&str> {
        self.tokens.get(token).map(String::as_str)
    }

    /// The installation a token belongs to.
    pub(super) fn installation_for(&self, token: &str) -> Option<&Installation> {
        self.installation_tokens.get(token)
    }

    /// An installation's effective permission in `repo`; `None` if there is no such repo.
    pub(super) fn installation_permission(
        &self,
        installation: &Installation,
        repo: &str,
    ) -> Option<Permission> {
        let settings = self.repos.get(repo)?;
        let floor = if settings.private {
            Permission::None
        } else {
            Permission::Read
        };
        let granted = if installation.repos.contains(repo) {
            installation.permission
        } else {
            Permission::None
        };
        Some(granted.max(floor))
    }

    /// `login`'s effective permission in `repo`; `None` if there is no such repo.
    pub(super) fn permission(&self, login: Option<&str>, repo: &str) -> Option<Permission> {
        let settings = self.repos.get(repo)?;
        let owner = repo.split('/').next();
        let granted = match login {
            None => Permission::None,
            Some(login) if Some(login) == owner => Permission::Admin,
            Some(login) => settings
                .collaborators
                .get(login)
                .copied()
                .unwrap_or(Permission::None),
        };
        let floor = if settings.private {
            Permission::None
        } else {
            Permission::Read
        };
        Some(granted.max(floor))
    }

    /// A stable numeric id for every login the configuration mentions.
    pub(super) fn user_id(&self, login: &str) -> Option<u64> {
        let owners = self.repos.keys().filter_map(|r| r.split('/').next());
        let collaborators = self.repos.values().flat_map(|r| r.collaborators.keys());
        let logins: BTreeSet<&str> = self
            .tokens
            .values()
            .map(String::as_str)
            .chain(owners)
            .chain(collaborators.map(String::as_str))
            .collect();
        let index = logins.iter().position(|known| *known == login)?;
        u64::try_from(index).ok().map(|i| i + 1)
    }

    /// A stable numeric id for a configured repository.
    pub(super) fn repo_id(&self, repo: &str) -> Option<u64> {
        let index = self.repos.keys().position(|known| known == repo)?;
        u64::try_from(index).ok().map(|i| i + 1)
    }
}

fn check_login(login: &str) -> anyhow::Result<()> {
    if login.is_empty()
        || login.len() > 39
        || !login
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        bail!("invalid login {login:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ServerConfig {
        ServerConfig::default()
            .with_repo("alice/public", false)
            .with_repo("alice/secret", true)
            .with_permission("alice/secret", "bob", Permission::Read)
            .with_permission("alice/public", "carol", Permission::Write)
    }

    #[test]
    fn effective_permissions() {
        let c = config();
        assert_eq!(
            c.permission(Some("alice"), "alice/secret"),
            Some(Permission::Admin)
        );
        assert_eq!(
            c.permission(Some("bob"), "alice/secret"),
            Some(Permission::Read)
        );
        assert_eq!(
            c.permission(Some("carol"), "alice/secret"),
            Some(Permission::None)
        );
        assert_eq!(c.permission(None, "alice/secret"), Some(Permission::None));
        assert_eq!(c.permission(None, "alice/public"), Some(Permission::Read));
        assert_eq!(
            c.permission(Some("carol"), "alice/public"),
            Some(Permission::Write)
        );
        assert_eq!(c.permission(Some("bob"), "alice/nothing"), None);
    }

    #[test]
    fn config_round_trips_and_rejects_bad_names() {
        let c = config().with_token("t1", "bob");
        c.validate().unwrap();
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<ServerConfig>(&json).unwrap(), c);
        assert!(ServerConfig::default()
            .with_repo("noslash", false)
            .validate()
            .is_err());
        assert!(ServerConfig::default()
            .with_repo("a/b c", false)
            .validate()
            .is_err());
        assert!(ServerConfig::default()
            .with_token("t t", "bob")
            .validate()
            .is_err());
        assert!(serde_json::from_str::<ServerConfig>(r#"{"tokenz":{}}"#).is_err());
    }
}
